"""Text corpora, tokenize-and-pack for causal LM training, seeded splits, and crash-safe JSONL.

- :func:`iter_documents` reads ``.txt``/``.md`` files (one document per file or per paragraph)
  and ``.jsonl`` files (one document per line) from files or directory trees, in sorted order.
- :func:`pack_tokens` is the standard pre-training packing (as in GPT-2 / ``run_clm``'s
  ``group_texts``): tokenize every document, join them with EOS separators into one stream and
  cut it into fixed-length blocks; :class:`PackedDataset` serves those blocks as
  ``{"input_ids", "labels", "attention_mask"}`` for :class:`transformers.Trainer`.
- :func:`shuffled_indices`, :func:`train_val_split`, :func:`split_dataset`: seeded, reproducible
  permutations and splits (Python's Mersenne Twister, stable across versions and platforms).
- :func:`write_jsonl` (atomic), :func:`read_jsonl` / :func:`iter_jsonl`, and :class:`JsonlAppender`
  / :func:`append_jsonl` for resumable logs: one ``write`` + flush + fsync per record, so a crash
  can at worst leave a torn final line, which readers skip (with a warning) and
  :func:`repair_jsonl` truncates.

JSONL lines are split on ``"\\n"`` only (not :meth:`str.splitlines`, which would also split on
U+2028 and other characters that ``json.dumps(..., ensure_ascii=False)`` leaves unescaped).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from papercraft.core.io import StrPath, atomic_write

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "JsonlAppender",
    "PackedDataset",
    "append_jsonl",
    "iter_documents",
    "iter_jsonl",
    "pack_tokens",
    "read_jsonl",
    "repair_jsonl",
    "shuffled_indices",
    "split_dataset",
    "train_val_split",
    "write_jsonl",
]

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
_TEXT_SUFFIXES = (".txt", ".md")

# --------------------------------------------------------------------------------------------
# Reading corpora
# --------------------------------------------------------------------------------------------


def _walk_sorted(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files under ``root`` with a wanted suffix, hidden entries skipped, sorted by path parts."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(suffixes):
                found.append(Path(dirpath, name))
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def iter_documents(
    paths: StrPath | Iterable[StrPath],
    *,
    text_field: str = "text",
    suffixes: Sequence[str] = (".txt", ".jsonl", ".md"),
    split_paragraphs: bool = False,
    skip_empty: bool = True,
    encoding: str = "utf-8",
) -> Iterator[str]:
    """Iterate over the documents of text files and directory trees, deterministically.

    Paths are taken in the given order; a directory is walked recursively and its files (those
    ending in one of ``suffixes``, case-insensitive; hidden files and directories skipped) are
    read in sorted path order. ``.txt``/``.md`` files give one document per file (leading and
    trailing whitespace stripped) or, with ``split_paragraphs``, one per blank-line-separated
    paragraph. ``.jsonl`` files give one document per non-blank line, the string ``text_field``
    of a JSON object. All paths are checked before anything is read.

    Args:
        paths (str | os.PathLike[str] | Iterable[str | os.PathLike[str]]): a file or
            directory, or several.
        text_field (str): JSON field holding the text in ``.jsonl`` files. Default: "text"
        suffixes (Sequence[str]): file endings to read, from ``.txt``, ``.md``, ``.jsonl``.
            Default: (".txt", ".jsonl", ".md")
        split_paragraphs (bool): split ``.txt``/``.md`` files on blank lines. Default: False
        skip_empty (bool): drop empty (or whitespace-only) documents. Default: True
        encoding (str): file encoding. Default: "utf-8"

    Returns:
        Iterator[str]: the documents.

    Raises:
        FileNotFoundError: if a path does not exist.
        ValueError: on an unsupported suffix, a file given explicitly whose suffix is not in
            ``suffixes``; while iterating, ``file:line`` errors for invalid JSON, a line that is
            not an object, or a missing or non-string ``text_field``.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    wanted = tuple(s.lower() for s in suffixes)
    unknown = [s for s in wanted if s not in (*_TEXT_SUFFIXES, ".jsonl")]
    if not wanted or unknown:
        raise ValueError(
            "suffixes must be a non-empty subset of ('.txt', '.md', '.jsonl'), "
            f"got {tuple(suffixes)}"
        )
    if not isinstance(text_field, str) or not text_field:
        raise ValueError(f"text_field must be a non-empty string, got {text_field!r}")
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(_walk_sorted(path, wanted))
        elif path.is_file():
            if not path.name.lower().endswith(wanted):
                raise ValueError(f"paths: {path} does not end with one of {wanted}")
            files.append(path)
        else:
            raise FileNotFoundError(f"paths: no such file or directory: {path}")
    return _read_documents(files, text_field, split_paragraphs, skip_empty, encoding)


def _read_documents(
    files: list[Path], text_field: str, split_paragraphs: bool, skip_empty: bool, encoding: str
) -> Iterator[str]:
    for path in files:
        if path.name.lower().endswith(".jsonl"):
            for lineno, record in _iter_jsonl_records(path, torn_tail="error", encoding=encoding):
                if not isinstance(record, dict):
                    raise ValueError(
                        f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}"
                    )
                if text_field not in record:
                    raise ValueError(f"{path}:{lineno}: missing field {text_field!r}")
                text = record[text_field]
                if not isinstance(text, str):
                    raise ValueError(
                        f"{path}:{lineno}: field {text_field!r} must be a string, "
                        f"got {type(text).__name__}"
                    )
                if text.strip() or not skip_empty:
                    yield text
            continue
        content = path.read_text(encoding=encoding)
        pieces = _PARAGRAPH_BREAK.split(content) if split_paragraphs else [content]
        for piece in pieces:
            document = piece.strip()
            if document or not skip_empty:
                yield document


# --------------------------------------------------------------------------------------------
# Tokenize and pack
# --------------------------------------------------------------------------------------------


def _pack(
    documents: Iterable[str],
    tokenizer: PreTrainedTokenizerBase,
    *,
    block_size: int,
    add_eos: bool,
    drop_last: bool,
    batch_size: int,
    add_special_tokens: bool,
    pad_token_id: int | None,
) -> tuple[torch.Tensor, int]:
    """Blocks (N, block_size) and the number of real (non-padding) tokens in them."""
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(documents, str):
        raise TypeError("documents must be an iterable of strings, not a single string")
    eos_id = tokenizer.eos_token_id
    if add_eos and eos_id is None:
        raise ValueError("add_eos=True needs a tokenizer with an eos_token_id; it has none")
    if not drop_last:
        pad_token_id = tokenizer.pad_token_id if pad_token_id is None else pad_token_id
        if pad_token_id is None:
            pad_token_id = eos_id
        if pad_token_id is None:
            raise ValueError(
                "drop_last=False needs pad_token_id: the tokenizer has no pad or eos token"
            )

    blocks: list[np.ndarray] = []
    carry = np.zeros(0, dtype=np.int64)
    doc_iter = iter(documents)
    while batch := list(itertools.islice(doc_iter, batch_size)):
        for i, doc in enumerate(batch):
            if not isinstance(doc, str):
                raise TypeError(
                    f"documents must be strings, got {type(doc).__name__} in a batch at {i}"
                )
        encoded = tokenizer(batch, add_special_tokens=add_special_tokens, verbose=False)[
            "input_ids"
        ]
        pieces = [carry]
        for ids in encoded:
            pieces.append(np.asarray(ids, dtype=np.int64))
            if add_eos:
                pieces.append(np.asarray([eos_id], dtype=np.int64))
        stream = np.concatenate(pieces)
        full = len(stream) // block_size * block_size
        if full:
            blocks.append(stream[:full].reshape(-1, block_size))
        carry = stream[full:]
    num_tokens = sum(b.size for b in blocks)
    if len(carry) and not drop_last:
        assert pad_token_id is not None
        padded = np.full(block_size, pad_token_id, dtype=np.int64)
        padded[: len(carry)] = carry
        blocks.append(padded[None, :])
        num_tokens += len(carry)
    if not blocks:
        return torch.zeros((0, block_size), dtype=torch.long), 0
    return torch.from_numpy(np.concatenate(blocks)), num_tokens


def pack_tokens(
    documents: Iterable[str],
    tokenizer: PreTrainedTokenizerBase,
    *,
    block_size: int,
    add_eos: bool = True,
    drop_last: bool = True,
    batch_size: int = 1000,
    add_special_tokens: bool = False,
    pad_token_id: int | None = None,
) -> torch.Tensor:
    """Tokenize documents, join them with EOS separators and cut the stream into blocks.

    The stream is ``tok(d0) + [eos] + tok(d1) + [eos] + …``; block ``i`` holds stream tokens
    ``[i*block_size, (i+1)*block_size)``. Documents are tokenized ``batch_size`` at a time with
    the (fast) tokenizer's batched call, so an iterator such as :func:`iter_documents` is
    consumed lazily. Blocks cross document boundaries, as in GPT-2-style pre-training.

    Args:
        documents (Iterable[str]): the texts.
        tokenizer (PreTrainedTokenizerBase): a Hugging Face tokenizer.
        block_size (int): tokens per block, ``>= 1``.
        add_eos (bool): put ``tokenizer.eos_token_id`` after every document. Default: True
        drop_last (bool): drop the final incomplete block; if False it is padded with
            ``pad_token_id``. Default: True
        batch_size (int): documents per tokenizer call. Default: 1000
        add_special_tokens (bool): let the tokenizer add its specials (e.g. a Llama BOS) to
            each document. Default: False
        pad_token_id (int | None): padding for ``drop_last=False``; None uses the tokenizer's
            pad token, else its EOS. Default: None

    Returns:
        torch.Tensor: int64 tensor of shape (N, block_size); (0, block_size) when too short.

    Raises:
        ValueError: on a non-positive ``block_size``/``batch_size``, ``add_eos`` without an EOS
            token, or ``drop_last=False`` with no padding id.
        TypeError: if a document is not a string.
    """
    blocks, _ = _pack(
        documents,
        tokenizer,
        block_size=block_size,
        add_eos=add_eos,
        drop_last=drop_last,
        batch_size=batch_size,
        add_special_tokens=add_special_tokens,
        pad_token_id=pad_token_id,
    )
    return blocks


class PackedDataset(Dataset[dict[str, torch.Tensor]]):
    """Fixed-length token blocks served as causal-LM examples for :class:`transformers.Trainer`.

    Item ``i`` is ``{"input_ids": (T,), "labels": (T,), "attention_mask": (T,)}``, all int64.
    ``labels`` equals ``input_ids`` (Hugging Face causal LMs shift inside the model) except on
    padding, where it is -100 and ``attention_mask`` is 0. Padding is the flattened tail after
    the first ``num_tokens`` tokens (only a last block from ``drop_last=False`` has any).

    Args:
        blocks (torch.Tensor): integer tensor (N, T), e.g. from :func:`pack_tokens`.
        num_tokens (int | None): real tokens at the start of ``blocks.flatten()``; None means
            all of them. Default: None

    Raises:
        ValueError: if ``blocks`` is not a 2-D integer tensor or ``num_tokens`` is out of range.
    """

    def __init__(self, blocks: torch.Tensor, *, num_tokens: int | None = None) -> None:
        if not isinstance(blocks, torch.Tensor) or blocks.dim() != 2:
            shape = (
                tuple(blocks.shape) if isinstance(blocks, torch.Tensor) else type(blocks).__name__
            )
            raise ValueError(f"blocks must be a 2-D tensor (N, block_size), got {shape}")
        if blocks.dtype.is_floating_point or blocks.dtype.is_complex or blocks.dtype == torch.bool:
            raise ValueError(f"blocks must hold integer token ids, got dtype {blocks.dtype}")
        total = blocks.numel()
        if num_tokens is None:
            num_tokens = total
        if not 0 <= num_tokens <= total:
            raise ValueError(f"num_tokens must be in [0, {total}], got {num_tokens}")
        self.blocks = blocks.long()
        self.num_tokens = num_tokens

    @classmethod
    def from_documents(
        cls,
        documents: Iterable[str],
        tokenizer: PreTrainedTokenizerBase,
        *,
        block_size: int,
        add_eos: bool = True,
        drop_last: bool = True,
        batch_size: int = 1000,
        add_special_tokens: bool = False,
    ) -> PackedDataset:
        """Pack ``documents`` (see :func:`pack_tokens`) and mask the padding of a last block.

        Args:
            documents (Iterable[str]): the texts.
            tokenizer (PreTrainedTokenizerBase): a Hugging Face tokenizer.
            block_size (int): tokens per block.
            add_eos (bool): EOS after every document. Default: True
            drop_last (bool): drop the incomplete last block. Default: True
            batch_size (int): documents per tokenizer call. Default: 1000
            add_special_tokens (bool): let the tokenizer add its specials. Default: False

        Returns:
            PackedDataset: the dataset.
        """
        blocks, num_tokens = _pack(
            documents,
            tokenizer,
            block_size=block_size,
            add_eos=add_eos,
            drop_last=drop_last,
            batch_size=batch_size,
            add_special_tokens=add_special_tokens,
            pad_token_id=None,
        )
        return cls(blocks, num_tokens=num_tokens)

    def __len__(self) -> int:
        return int(self.blocks.shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} blocks")
        index %= n
        input_ids = self.blocks[index]
        block_size = input_ids.shape[0]
        real = min(max(self.num_tokens - index * block_size, 0), block_size)
        attention_mask = torch.zeros(block_size, dtype=torch.long)
        attention_mask[:real] = 1
        labels = input_ids.clone()
        labels[real:] = -100
        return {"input_ids": input_ids.clone(), "labels": labels, "attention_mask": attention_mask}


# --------------------------------------------------------------------------------------------
# Seeded shuffles and splits
# --------------------------------------------------------------------------------------------


def _check_count_and_seed(n: int, seed: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")


def shuffled_indices(n: int, *, seed: int = 0) -> list[int]:
    """A seeded permutation of ``range(n)``, identical across processes, platforms and versions.

    Args:
        n (int): how many indices.
        seed (int): the seed. Default: 0

    Returns:
        list[int]: the permutation.

    Raises:
        ValueError: if ``n`` is negative or ``seed`` is not an int.
    """
    _check_count_and_seed(n, seed)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def train_val_split(n: int, *, val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` into seeded random train and validation index sets.

    The validation set is the first ``round(n * val_fraction)`` indices of
    :func:`shuffled_indices` (at least 1 when ``val_fraction > 0`` and ``n >= 2``, and never all
    of them); both lists are returned in ascending order, so subsets keep the data's order.

    Args:
        n (int): dataset size.
        val_fraction (float): share for validation, in ``[0, 1)``.
        seed (int): the seed. Default: 0

    Returns:
        tuple[list[int], list[int]]: ``(train_indices, val_indices)``, disjoint, together
        ``range(n)``.

    Raises:
        ValueError: if ``n`` is negative or ``val_fraction`` is outside ``[0, 1)``.
    """
    _check_count_and_seed(n, seed)
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, (int, float))
        or not 0 <= val_fraction < 1
    ):
        raise ValueError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    num_val = round(n * val_fraction)
    if val_fraction > 0 and n >= 2:
        num_val = min(max(num_val, 1), n - 1)
    num_val = min(num_val, max(n - 1, 0))
    order = shuffled_indices(n, seed=seed)
    return sorted(order[num_val:]), sorted(order[:num_val])


def split_dataset(
    dataset: Dataset[Any], *, val_fraction: float, seed: int = 0
) -> tuple[Subset[Any], Subset[Any]]:
    """Split a map-style dataset with :func:`train_val_split` into two :class:`Subset`\\s.

    Args:
        dataset (Dataset): a dataset with ``__len__``.
        val_fraction (float): share for validation, in ``[0, 1)``.
        seed (int): the seed. Default: 0

    Returns:
        tuple[Subset, Subset]: ``(train, val)``.

    Raises:
        TypeError: if ``dataset`` has no length.
    """
    if not hasattr(dataset, "__len__"):
        raise TypeError(
            f"dataset must be a map-style dataset with __len__, got {type(dataset).__name__}"
        )
    train, val = train_val_split(len(dataset), val_fraction=val_fraction, seed=seed)
    return Subset(dataset, train), Subset(dataset, val)


# --------------------------------------------------------------------------------------------
# JSONL
# --------------------------------------------------------------------------------------------


def _dumps_line(record: Any, *, allow_nan: bool) -> bytes:
    try:
        text = json.dumps(record, ensure_ascii=False, allow_nan=allow_nan)
    except (TypeError, ValueError) as error:
        raise ValueError(f"record is not JSON-serializable: {error}") from error
    return (text + "\n").encode("utf-8")


def write_jsonl(path: StrPath, records: Iterable[Any], *, allow_nan: bool = False) -> int:
    """Write records as JSON Lines (UTF-8, non-ASCII kept) atomically, via :func:`atomic_write`.

    Args:
        path (str | os.PathLike[str]): the file to write (parent directories are created).
        records (Iterable[Any]): JSON-serializable records, one per line.
        allow_nan (bool): allow NaN/Infinity (not valid JSON). Default: False

    Returns:
        int: the number of records written.

    Raises:
        ValueError: if a record is not JSON-serializable (the file is then left untouched).
    """
    count = 0
    with atomic_write(path, "wb") as handle:
        for count, record in enumerate(records, start=1):  # noqa: B007 - count is the result
            handle.write(_dumps_line(record, allow_nan=allow_nan))
    return count


def _torn_tail_size(data: bytes) -> int:
    """Bytes after the last newline (0 when the data ends with a newline or is empty)."""
    return len(data) - (data.rfind(b"\n") + 1)


def _iter_jsonl_records(
    path: Path, *, torn_tail: Literal["warn", "ignore", "error"], encoding: str = "utf-8"
) -> Iterator[tuple[int, Any]]:
    """(line number, record) pairs; blank lines skipped; see :func:`iter_jsonl` for the tail."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    last = len(lines) - 1  # lines[last] is what follows the final newline ("" if none)
    for index, raw in enumerate(lines):
        lineno = index + 1
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode(encoding))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            if index == last:  # no newline after it: a write interrupted by a crash
                message = (
                    f"{path}:{lineno}: torn final line ({len(raw)} bytes without a newline) "
                    "left by an interrupted write"
                )
                if torn_tail == "error":
                    raise ValueError(
                        f"{message}; run repair_jsonl({str(path)!r}) to drop it"
                    ) from error
                if torn_tail == "warn":
                    warnings.warn(f"{message}; ignoring it", RuntimeWarning, stacklevel=3)
                return
            reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
            raise ValueError(f"{path}:{lineno}: invalid JSON ({reason})") from error
        yield lineno, record


def iter_jsonl(
    path: StrPath, *, torn_tail: Literal["warn", "ignore", "error"] = "warn"
) -> Iterator[Any]:
    """Iterate over the records of a JSON Lines file (blank lines skipped).

    A final line that has no trailing newline *and* does not parse is a torn write from a
    crash (see :class:`JsonlAppender`): it is skipped with a :class:`RuntimeWarning` (``"warn"``),
    silently (``"ignore"``), or raises (``"error"``). A bad line anywhere else always raises.

    Args:
        path (str | os.PathLike[str]): the file.
        torn_tail (str): ``"warn"``, ``"ignore"`` or ``"error"``. Default: "warn"

    Returns:
        Iterator[Any]: the decoded records.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: ``"<path>:<line>: invalid JSON (...)"`` for a corrupt line.
    """
    if torn_tail not in ("warn", "ignore", "error"):
        raise ValueError(f"torn_tail must be 'warn', 'ignore' or 'error', got {torn_tail!r}")
    file_path = Path(path)
    if not file_path.is_file():
        raise FileNotFoundError(f"path: no such file: {file_path}")
    return (record for _, record in _iter_jsonl_records(file_path, torn_tail=torn_tail))


def read_jsonl(
    path: StrPath, *, torn_tail: Literal["warn", "ignore", "error"] = "warn"
) -> list[Any]:
    """Read all records of a JSON Lines file; see :func:`iter_jsonl` for the torn-tail policy.

    Args:
        path (str | os.PathLike[str]): the file.
        torn_tail (str): ``"warn"``, ``"ignore"`` or ``"error"``. Default: "warn"

    Returns:
        list[Any]: the records.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: ``"<path>:<line>: invalid JSON (...)"`` for a corrupt line.
    """
    return list(iter_jsonl(path, torn_tail=torn_tail))


def repair_jsonl(path: StrPath) -> int:
    """Make a JSON Lines file end cleanly after a crash, so appending can resume.

    If the file does not end with a newline, its final line is either a complete record (a file
    written by another tool: a newline is added) or a torn write (it is truncated away). The
    change is fsynced.

    Args:
        path (str | os.PathLike[str]): the file; a missing file is left alone.

    Returns:
        int: bytes of torn data removed (0 when nothing was dropped).
    """
    file_path = Path(path)
    if not file_path.is_file():
        return 0
    data = file_path.read_bytes()
    tail = _torn_tail_size(data)
    if tail == 0:
        return 0
    raw = data[len(data) - tail :]
    try:
        json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        with open(file_path, "r+b") as handle:
            handle.truncate(len(data) - tail)
            handle.flush()
            os.fsync(handle.fileno())
        return tail
    with open(file_path, "ab") as handle:
        handle.write(b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return 0


class JsonlAppender:
    """Append records to a JSON Lines log durably: one write + flush + fsync per record.

    Opening repairs a torn final line left by an earlier crash (see :func:`repair_jsonl`;
    ``repaired_bytes`` tells how much was dropped), so a resumed run never glues a new record
    onto garbage. Each record is serialized before anything is written, then written as one
    ``"<json>\\n"`` chunk to a file opened in append mode.

    Args:
        path (str | os.PathLike[str]): the log file (created, with its parent directories, if
            missing).
        fsync (bool): fsync after every record; False only flushes (faster, survives a process
            crash but not a power loss). Default: True
        allow_nan (bool): allow NaN/Infinity (not valid JSON). Default: False

    Example::

        with JsonlAppender("run/log.jsonl") as log:
            log.append({"step": 1, "loss": 2.5})
    """

    def __init__(self, path: StrPath, *, fsync: bool = True, allow_nan: bool = False) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise IsADirectoryError(f"path must be a file, but {self.path} is a directory")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.allow_nan = allow_nan
        self.repaired_bytes = repair_jsonl(self.path)
        self.num_written = 0
        self._file: io.FileIO = open(self.path, "ab", buffering=0)  # noqa: SIM115 - see close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return bool(self._file.closed)

    def append(self, record: Any) -> None:
        """Serialize ``record`` and append it as one line, durably.

        Args:
            record (Any): a JSON-serializable value (usually a dict).

        Raises:
            ValueError: if the record is not JSON-serializable (nothing is written) or the
                appender is closed.
        """
        if self.closed:
            raise ValueError(f"JsonlAppender for {self.path} is closed")
        line = memoryview(_dumps_line(record, allow_nan=self.allow_nan))
        while line:
            written = self._file.write(line)
            line = line[written:]
        if self.fsync:
            os.fsync(self._file.fileno())
        self.num_written += 1

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._file.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def append_jsonl(
    path: StrPath, record: Any, *, fsync: bool = True, allow_nan: bool = False
) -> None:
    """Append one record to a JSON Lines file durably (opens, repairs, appends, closes).

    Args:
        path (str | os.PathLike[str]): the log file.
        record (Any): a JSON-serializable value.
        fsync (bool): fsync after writing. Default: True
        allow_nan (bool): allow NaN/Infinity. Default: False

    Raises:
        ValueError: if the record is not JSON-serializable (nothing is written).
    """
    _dumps_line(record, allow_nan=allow_nan)  # fail before touching the file
    with JsonlAppender(path, fsync=fsync, allow_nan=allow_nan) as log:
        log.append(record)
