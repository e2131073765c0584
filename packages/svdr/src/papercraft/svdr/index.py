"""SVDR's two passage indexes over the vocabulary space, stored as scipy CSR and saved safely.

* :class:`BagOfTokensIndex` — the non-parametric *binary bag-of-tokens* index of SiDR
  (arXiv 2405.01924, §3, "BoT index"): each passage is tokenized with the model's tokenizer
  (no special tokens, truncated at ``max_length``), every token present gets weight 1.0 (no tf,
  no idf, no length norm), the reserved leading ids (``< shift``, 999 for bert-base-uncased) are
  dropped and id ``i`` lands in column ``i − shift``. No model runs, so it builds on CPUs in
  minutes; ``num_workers > 1`` tokenizes shards in a spawn-safe process pool.
* :class:`EmbeddingIndex` — the parametric index: rows are the passage encoder's sparse
  vocabulary-space embeddings, computed by the caller and handed over as a matrix.

Both are a ``[num_docs, V]`` float32 :class:`scipy.sparse.csr_matrix` with string document ids.
On disk (:meth:`SparseIndex.save`, written with :func:`~papercraft.core.io.atomic_directory`)::

    data.npy  indices.npy  indptr.npy    the CSR arrays (np.save)
    ids.json                             the document ids, a JSON list in row order
    manifest.json                        papercraft.core manifest: format "papercraft.svdr.index",
                                         format_version 1, files {name: {sha256, bytes}} and
                                         metadata {kind, vocab_size, shift, dim,
                                         tokenizer_fingerprint, num_docs, nnz, max_length}

:meth:`SparseIndex.load` checks the format and version, file sizes and SHA-256, the arrays'
consistency, and (given a tokenizer) that the index was built with that tokenizer; with
``mmap=True`` the three arrays are memory-mapped and the CSR matrix is built over them
without copying.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from papercraft.core.io import (
    CheckpointError,
    ChecksumError,
    StrPath,
    atomic_directory,
    atomic_write_json,
    read_manifest,
    verify_manifest,
    write_manifest,
)
from papercraft.svdr.vocab import VocabularySpace, tokenizer_fingerprint

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "BagOfTokensIndex",
    "EmbeddingIndex",
    "SparseIndex",
]

FORMAT = "papercraft.svdr.index"
FORMAT_VERSION = 1
_ARRAYS = ("data.npy", "indices.npy", "indptr.npy")
_IDS = "ids.json"


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def _check_ids(
    ids: Sequence[str], count: int, *, rows: str, existing: set[str] | None = None
) -> list[str]:
    """``ids`` as a list of unique non-empty strings, one per row; ``existing`` ids are taken."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise ValueError(f"ids must be a sequence of strings, got {type(ids).__name__}")
    checked = list(ids)
    if len(checked) != count:
        raise ValueError(f"ids must hold one id per row of {rows} ({count}), got {len(checked)}")
    seen: set[str] = set()
    taken = existing if existing is not None else set()
    for doc_id in checked:
        if not isinstance(doc_id, str) or not doc_id:
            raise ValueError(f"ids must be non-empty strings, got {doc_id!r}")
        if doc_id in seen:
            raise ValueError(f"ids must be unique, but {doc_id!r} appears twice")
        if doc_id in taken:
            raise ValueError(f"ids must be unique, but {doc_id!r} is already in the index")
        seen.add(doc_id)
    return checked


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise ValueError(f"texts must be a sequence of strings, got {type(texts).__name__}")
    checked = list(texts)
    if not checked:
        raise ValueError("texts must hold at least one passage, got an empty corpus")
    for position, text in enumerate(checked):
        if not isinstance(text, str):
            raise ValueError(
                f"texts must be strings, but texts[{position}] is {type(text).__name__}"
            )
    return checked


def _check_positive(name: str, value: Any, *, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        expected = "an int >= 1 or None" if allow_none else "an int >= 1"
        raise ValueError(f"{name} must be {expected}, got {value!r}")


# --------------------------------------------------------------------------------------------
# Tokenization (module-level so that spawned workers can import it)
# --------------------------------------------------------------------------------------------

_WORKER_TOKENIZE: Any = None  # the tokenizing callable of a pool worker, set by _init_worker


def _tokenizer_spec(tokenizer: Any, directory: Path | None) -> tuple[str, str]:
    """A picklable description of ``tokenizer``: its backend JSON, or a saved directory."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return ("json", backend.to_str())
    if directory is None:
        raise ValueError("a slow tokenizer needs a directory to be saved into")
    tokenizer.save_pretrained(str(directory))
    return ("directory", str(directory))


def _make_tokenize(spec: tuple[str, str], max_length: int | None) -> Any:
    """A function ``texts -> list of id lists`` (no special tokens, truncated at max_length)."""
    kind, value = spec
    if kind == "json":
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(value)  # a private copy: the caller's settings stay intact
        backend.no_padding()
        if max_length is None:
            backend.no_truncation()
        else:
            backend.enable_truncation(max_length)

        def tokenize_fast(texts: list[str]) -> list[list[int]]:
            return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]

        return tokenize_fast
    from transformers import AutoTokenizer

    return _make_tokenize_slow(AutoTokenizer.from_pretrained(value), max_length)


def _make_tokenize_slow(tokenizer: Any, max_length: int | None) -> Any:
    def tokenize_slow(texts: list[str]) -> list[list[int]]:
        encoded = tokenizer(
            texts,
            add_special_tokens=False,
            truncation=max_length is not None,
            max_length=max_length,
        )
        return [list(row) for row in encoded["input_ids"]]

    return tokenize_slow


def _bag_of_tokens(token_ids: list[list[int]], shift: int, vocab_size: int) -> sp.csr_matrix:
    """Binary CSR ``[len(token_ids), vocab_size − shift]``: 1.0 where a kept id occurs."""
    lengths = np.fromiter((len(row) for row in token_ids), dtype=np.int64, count=len(token_ids))
    flat = np.fromiter(
        (i for row in token_ids for i in row), dtype=np.int64, count=int(lengths.sum())
    )
    if flat.size and (flat.min() < 0 or flat.max() >= vocab_size):
        raise ValueError(
            f"the tokenizer produced id {int(flat.max())}, outside the vocabulary space's "
            f"[0, {vocab_size})"
        )
    keep = flat >= shift
    rows = np.repeat(np.arange(len(token_ids), dtype=np.int64), lengths)[keep]
    columns = flat[keep] - shift
    matrix = sp.csr_matrix(
        (np.ones(columns.size, dtype=np.float32), (rows, columns)),
        shape=(len(token_ids), vocab_size - shift),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # binary: presence, not counts
    return matrix


def _init_worker(spec: tuple[str, str], max_length: int | None) -> None:
    global _WORKER_TOKENIZE
    _WORKER_TOKENIZE = _make_tokenize(spec, max_length)


def _worker_shard(args: tuple[list[str], int, int]) -> sp.csr_matrix:
    texts, shift, vocab_size = args
    return _bag_of_tokens(_WORKER_TOKENIZE(texts), shift, vocab_size)


def _batches(texts: list[str], batch_size: int) -> Iterator[list[str]]:
    for start in range(0, len(texts), batch_size):
        yield texts[start : start + batch_size]


def _progress(iterable: Any, total: int, enabled: bool) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc="bag-of-tokens index", unit="batch")


def _tokenize_corpus(
    texts: list[str],
    tokenizer: Any,
    space: VocabularySpace,
    *,
    max_length: int | None,
    batch_size: int,
    progress: bool,
    num_workers: int,
) -> sp.csr_matrix:
    num_batches = -(-len(texts) // batch_size)
    shards: list[sp.csr_matrix] = []
    if num_workers == 1 or num_batches == 1:
        if getattr(tokenizer, "backend_tokenizer", None) is not None:
            tokenize = _make_tokenize(_tokenizer_spec(tokenizer, None), max_length)
        else:
            tokenize = _make_tokenize_slow(tokenizer, max_length)
        for batch in _progress(_batches(texts, batch_size), num_batches, progress):
            shards.append(_bag_of_tokens(tokenize(batch), space.shift, space.vocab_size))
    else:
        scratch = Path(tempfile.mkdtemp(prefix="papercraft-svdr-tokenizer-"))
        try:
            spec = _tokenizer_spec(tokenizer, scratch)
            with ProcessPoolExecutor(
                max_workers=min(num_workers, num_batches),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(spec, max_length),
            ) as pool:
                jobs = (
                    (batch, space.shift, space.vocab_size) for batch in _batches(texts, batch_size)
                )
                shards.extend(_progress(pool.map(_worker_shard, jobs), num_batches, progress))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return _stack(shards, space.dim)


def _stack(parts: Sequence[sp.csr_matrix], dim: int) -> sp.csr_matrix:
    matrix = sp.vstack(parts, format="csr", dtype=np.float32)
    return _canonical(matrix, dim)


def _canonical(matrix: sp.csr_matrix, dim: int) -> sp.csr_matrix:
    """CSR float32 with sorted, summed indices and the index dtype scipy picks for its size."""
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.sum_duplicates()
    if matrix.shape[1] != dim:
        raise ValueError(f"matrix must have {dim} columns, got {matrix.shape[1]}")
    return matrix


# --------------------------------------------------------------------------------------------
# Matrix conversion (EmbeddingIndex input)
# --------------------------------------------------------------------------------------------


def _to_csr(matrix: Any) -> sp.csr_matrix:
    """A scipy sparse matrix, a numpy array or a torch tensor (dense/COO/CSR) as CSR float32."""
    if sp.issparse(matrix):
        return sp.csr_matrix(matrix, dtype=np.float32)
    if isinstance(matrix, np.ndarray):
        if matrix.ndim != 2:
            raise ValueError(f"matrix must be 2-D [n, V], got shape {matrix.shape}")
        return sp.csr_matrix(matrix.astype(np.float32, copy=False))
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a declared dependency
        torch = None  # type: ignore[assignment]
    if torch is not None and isinstance(matrix, torch.Tensor):
        if matrix.dim() != 2:
            raise ValueError(f"matrix must be 2-D [n, V], got shape {tuple(matrix.shape)}")
        tensor = matrix.detach().to("cpu")
        shape = (int(tensor.shape[0]), int(tensor.shape[1]))
        if tensor.layout == torch.sparse_coo:
            tensor = tensor.coalesce()
            rows, columns = tensor.indices().numpy()
            values = tensor.values().float().numpy()
            return sp.csr_matrix((values, (rows, columns)), shape=shape, dtype=np.float32)
        if tensor.layout == torch.sparse_csr:
            return sp.csr_matrix(
                (
                    tensor.values().float().numpy(),
                    tensor.col_indices().numpy(),
                    tensor.crow_indices().numpy(),
                ),
                shape=shape,
                dtype=np.float32,
            )
        if tensor.layout == torch.strided:
            return sp.csr_matrix(tensor.float().numpy())
        raise ValueError(f"matrix has an unsupported torch layout {tensor.layout}")
    raise ValueError(
        "matrix must be a scipy sparse matrix, a numpy array or a torch tensor, "
        f"got {type(matrix).__name__}"
    )


# --------------------------------------------------------------------------------------------
# Indexes
# --------------------------------------------------------------------------------------------


class SparseIndex:
    """Rows of vocabulary-space weights for a list of documents: the base of both SVDR indexes.

    Use :meth:`BagOfTokensIndex.build` or :meth:`EmbeddingIndex.from_matrix` to make one and
    :meth:`load` to read one back (``SparseIndex.load`` returns whichever kind was saved).

    Args:
        matrix (scipy.sparse.csr_matrix): ``[num_docs, space.dim]`` float32 weights.
        ids (Sequence[str]): one unique, non-empty document id per row.
        space (VocabularySpace): the vocabulary space the columns live in.
        max_length (int | None): the passage truncation used to build it (bag-of-tokens only).
            Default: None
    """

    kind: ClassVar[str] = ""

    def __init__(
        self,
        matrix: sp.csr_matrix,
        ids: Sequence[str],
        space: VocabularySpace,
        *,
        max_length: int | None = None,
    ) -> None:
        if not isinstance(space, VocabularySpace):
            raise ValueError(f"space must be a VocabularySpace, got {type(space).__name__}")
        if not sp.issparse(matrix) or matrix.format != "csr":
            raise ValueError(f"matrix must be a scipy CSR matrix, got {type(matrix).__name__}")
        if matrix.shape[1] != space.dim:
            raise ValueError(
                f"matrix must have space.dim = {space.dim} columns (vocab_size {space.vocab_size} "
                f"− shift {space.shift}), got {matrix.shape[1]}"
            )
        _check_positive("max_length", max_length, allow_none=True)
        self.ids: list[str] = _check_ids(ids, matrix.shape[0], rows="matrix")
        self.matrix: sp.csr_matrix = matrix
        self.space = space
        self.max_length = max_length
        self._positions = {doc_id: row for row, doc_id in enumerate(self.ids)}

    # -- inspection ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_docs={len(self)}, dim={self.space.dim}, "
            f"nnz={self.matrix.nnz}, density={self.density:.4%})"
        )

    @property
    def density(self) -> float:
        """Fraction of stored entries, ``nnz / (num_docs · V)`` (0.29% for Wiki21m's BoT)."""
        cells = len(self) * self.space.dim
        return self.matrix.nnz / cells if cells else 0.0

    @property
    def nbytes(self) -> int:
        """Bytes of the CSR arrays (data + indices + indptr)."""
        m = self.matrix
        return int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)

    def position(self, doc_id: str) -> int:
        """The row of document ``doc_id``.

        Raises:
            KeyError: if the id is not in the index.
        """
        return self._positions[doc_id]

    # -- growth ----------------------------------------------------------------------------------

    def _append(self, rows: sp.csr_matrix, ids: Sequence[str], *, rows_name: str) -> None:
        new_ids = _check_ids(ids, rows.shape[0], rows=rows_name, existing=set(self._positions))
        self.matrix = _stack([self.matrix, rows], self.space.dim)
        for doc_id in new_ids:
            self._positions[doc_id] = len(self.ids)
            self.ids.append(doc_id)

    # -- persistence -----------------------------------------------------------------------------

    def _metadata(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "vocab_size": self.space.vocab_size,
            "shift": self.space.shift,
            "dim": self.space.dim,
            "tokenizer_fingerprint": self.space.fingerprint,
            "num_docs": len(self),
            "nnz": int(self.matrix.nnz),
            "max_length": self.max_length,
        }

    def save(self, directory: StrPath, *, overwrite: bool = True) -> Path:
        """Write the index atomically: a failed save leaves ``directory`` as it was.

        Args:
            directory (str | os.PathLike[str]): the index directory to create or replace.
            overwrite (bool): replace an existing directory. Default: True

        Returns:
            Path: ``directory``.

        Raises:
            FileExistsError: if ``directory`` exists and ``overwrite`` is False.
        """
        matrix = self.matrix
        with atomic_directory(directory, overwrite=overwrite) as tmp:
            np.save(tmp / "data.npy", np.ascontiguousarray(matrix.data))
            np.save(tmp / "indices.npy", np.ascontiguousarray(matrix.indices))
            np.save(tmp / "indptr.npy", np.ascontiguousarray(matrix.indptr))
            atomic_write_json(tmp / _IDS, self.ids, indent=None)
            write_manifest(
                tmp,
                format=FORMAT,
                format_version=FORMAT_VERSION,
                files=[*_ARRAYS, _IDS],
                metadata=self._metadata(),
            )
        return Path(directory)

    @classmethod
    def load(
        cls,
        directory: StrPath,
        *,
        mmap: bool = True,
        verify: bool = True,
        tokenizer: Any = None,
    ) -> SparseIndex:
        """Read an index written by :meth:`save`, refusing anything it cannot trust.

        Called on :class:`SparseIndex` it returns whichever kind was saved; called on a subclass
        it also checks the kind.

        Args:
            directory (str | os.PathLike[str]): the index directory.
            mmap (bool): memory-map the three arrays (read-only) instead of reading them into
                memory; the CSR matrix is built over the maps without copying. Default: True
            verify (bool): check every file's SHA-256 (sizes are always checked); False skips
                hashing, for speed on huge indexes. Default: True
            tokenizer (PreTrainedTokenizerBase | None): if given, the index must have been built
                with this tokenizer (same vocabulary fingerprint). Default: None

        Returns:
            SparseIndex: a :class:`BagOfTokensIndex` or :class:`EmbeddingIndex`.

        Raises:
            CheckpointError: missing or malformed files, another artifact kind, a truncated or
                inconsistent array.
            FormatVersionError: written with a newer format version.
            ChecksumError: a file's size or SHA-256 differs from the manifest.
            ValueError: ``tokenizer`` is not the one the index was built with.
        """
        root = Path(directory)
        manifest = read_manifest(root, format=FORMAT, max_format_version=FORMAT_VERSION)
        meta = manifest.metadata
        missing = [name for name in (*_ARRAYS, _IDS) if name not in manifest.files]
        if missing:
            raise CheckpointError(f"{root} manifest does not list the index files {missing}")
        if verify:
            verify_manifest(root, manifest)
        else:
            for name, entry in manifest.files.items():
                path = root / name
                if not path.is_file():
                    raise CheckpointError(f"{root} is incomplete: file {name!r} is missing")
                size = path.stat().st_size
                if size != entry.num_bytes:
                    raise ChecksumError(
                        f"{path} is truncated or modified: {size} bytes, the manifest records "
                        f"{entry.num_bytes}"
                    )
        target = _KINDS.get(meta.get("kind"))  # type: ignore[arg-type]
        if target is None:
            raise CheckpointError(
                f"{root} holds an index of unknown kind {meta.get('kind')!r}, expected one of "
                f"{sorted(_KINDS)}"
            )
        if cls is not SparseIndex and target is not cls:
            raise CheckpointError(
                f"{root} holds a {target.kind!r} index, but {cls.__name__}.load reads "
                f"{cls.kind!r} indexes (use SparseIndex.load for either)"
            )
        try:
            space = VocabularySpace(
                int(meta["vocab_size"]), int(meta["shift"]), str(meta["tokenizer_fingerprint"])
            )
            num_docs, nnz, dim = int(meta["num_docs"]), int(meta["nnz"]), int(meta["dim"])
            max_length = meta.get("max_length")
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{root} manifest metadata is incomplete: {error}") from error
        if space.dim != dim:
            raise CheckpointError(
                f"{root} manifest is inconsistent: dim {dim} != vocab_size − shift {space.dim}"
            )
        if tokenizer is not None:
            fingerprint = tokenizer_fingerprint(tokenizer)
            if fingerprint != space.fingerprint:
                raise ValueError(
                    f"tokenizer does not match the index at {root}: the index was built with a "
                    f"tokenizer of {space.vocab_size} ids (fingerprint {space.fingerprint[:16]}…), "
                    f"the given one has {len(tokenizer)} ids (fingerprint {fingerprint[:16]}…)"
                )
        data, indices, indptr = (_load_array(root / name, mmap) for name in _ARRAYS)
        if data.shape != (nnz,) or indices.shape != (nnz,) or indptr.shape != (num_docs + 1,):
            raise CheckpointError(
                f"{root} arrays do not match the manifest: data {data.shape}, indices "
                f"{indices.shape}, indptr {indptr.shape}; expected nnz {nnz}, num_docs {num_docs}"
            )
        if num_docs and (int(indptr[0]) != 0 or int(indptr[-1]) != nnz):
            raise CheckpointError(f"{root}/indptr.npy is inconsistent with nnz {nnz}")
        matrix = sp.csr_matrix((data, indices, indptr), shape=(num_docs, dim), copy=False)
        ids = _load_ids(root / _IDS)
        index = target.__new__(target)
        SparseIndex.__init__(index, matrix, ids, space, max_length=max_length)
        index._after_load(tokenizer)
        return index

    def _after_load(self, tokenizer: Any) -> None:
        """Hook for subclasses to attach state that is not stored (e.g. the tokenizer)."""


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise CheckpointError(f"{path} is truncated or not a valid .npy array: {error}") from error
    if array.ndim != 1:
        raise CheckpointError(f"{path} must hold a 1-D array, got shape {array.shape}")
    return array


def _load_ids(path: Path) -> list[str]:
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise CheckpointError(f"{path} must hold a JSON list of strings")
    return ids


class BagOfTokensIndex(SparseIndex):
    """SiDR's binary bag-of-tokens index, built from the tokenizer alone (no model).

    Row ``r`` holds 1.0 in column ``i − shift`` for every token id ``i ≥ shift`` of passage ``r``
    (tokenized without special tokens, truncated at ``max_length``). Scored against a query
    embedding ``q`` it gives SiDR's "beta" score ``q · p_bin``: the sum of the query's weights over
    the tokens present in the passage.
    """

    kind: ClassVar[str] = "bag_of_tokens"

    def __init__(
        self,
        matrix: sp.csr_matrix,
        ids: Sequence[str],
        space: VocabularySpace,
        *,
        max_length: int | None = 256,
        tokenizer: Any = None,
    ) -> None:
        super().__init__(matrix, ids, space, max_length=max_length)
        self._tokenizer = tokenizer

    def _after_load(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        ids: Sequence[str],
        tokenizer: Any,
        *,
        max_length: int | None = 256,
        batch_size: int = 1024,
        progress: bool = False,
        num_workers: int = 1,
    ) -> BagOfTokensIndex:
        """Tokenize ``texts`` and build their binary bag-of-tokens rows.

        Args:
            texts (Sequence[str]): the passages (e.g. ``title + " " + text``).
            ids (Sequence[str]): one unique document id per passage.
            tokenizer (PreTrainedTokenizerBase): the retrieval model's tokenizer.
            max_length (int | None): passage truncation in tokens, None for none. Default: 256
            batch_size (int): passages tokenized per call (and per worker task). Default: 1024
            progress (bool): show a progress bar. Default: False
            num_workers (int): processes tokenizing shards in parallel (spawned; the tokenizer
                travels as its JSON, or its saved directory for a slow tokenizer). The result
                is identical to ``num_workers=1``. Default: 1

        Returns:
            BagOfTokensIndex: the index, ``[len(texts), V]`` float32.

        Raises:
            ValueError: on an empty corpus, duplicate or missing ids, or a bad argument.
        """
        checked_texts = _check_texts(texts)
        checked_ids = _check_ids(ids, len(checked_texts), rows="texts")
        _check_positive("max_length", max_length, allow_none=True)
        _check_positive("batch_size", batch_size)
        _check_positive("num_workers", num_workers)
        space = VocabularySpace.from_tokenizer(tokenizer)
        matrix = _tokenize_corpus(
            checked_texts,
            tokenizer,
            space,
            max_length=max_length,
            batch_size=batch_size,
            progress=progress,
            num_workers=num_workers,
        )
        return cls(matrix, checked_ids, space, max_length=max_length, tokenizer=tokenizer)

    def add(
        self,
        texts: Sequence[str],
        ids: Sequence[str],
        *,
        tokenizer: Any = None,
        batch_size: int = 1024,
    ) -> None:
        """Append passages without rebuilding; the result equals a build over all passages.

        Args:
            texts (Sequence[str]): the new passages.
            ids (Sequence[str]): their ids, unique and not yet in the index.
            tokenizer (PreTrainedTokenizerBase | None): needed when the index was loaded without
                one; must be the tokenizer it was built with. Default: None
            batch_size (int): passages tokenized per call. Default: 1024

        Raises:
            ValueError: on empty ``texts``, bad or duplicate ``ids``, or a missing or different
                tokenizer.
        """
        checked_texts = _check_texts(texts)
        _check_ids(ids, len(checked_texts), rows="texts", existing=set(self._positions))
        _check_positive("batch_size", batch_size)
        tokenizer = tokenizer if tokenizer is not None else self._tokenizer
        if tokenizer is None:
            raise ValueError(
                "tokenizer is required: this index was loaded without one; pass the tokenizer "
                "it was built with"
            )
        fingerprint = tokenizer_fingerprint(tokenizer)
        if fingerprint != self.space.fingerprint:
            raise ValueError(
                f"tokenizer does not match the index: built with fingerprint "
                f"{self.space.fingerprint[:16]}…, given {fingerprint[:16]}…"
            )
        rows = _tokenize_corpus(
            checked_texts,
            tokenizer,
            self.space,
            max_length=self.max_length,
            batch_size=batch_size,
            progress=False,
            num_workers=1,
        )
        self._append(rows, ids, rows_name="texts")
        self._tokenizer = tokenizer


class EmbeddingIndex(SparseIndex):
    """SVDR's parametric index: rows are sparse vocabulary-space passage embeddings.

    The caller encodes the passages (e.g. with the passage encoder, top-k sparsified) and hands
    the ``[n, V]`` matrix over; scoring is then ``q_emb · p_emb``.
    """

    kind: ClassVar[str] = "embedding"

    @classmethod
    def from_matrix(cls, matrix: Any, ids: Sequence[str], space: VocabularySpace) -> EmbeddingIndex:
        """Wrap encoder outputs as an index.

        Args:
            matrix (scipy.sparse matrix | numpy.ndarray | torch.Tensor): ``[n, space.dim]``
                weights; torch tensors may be dense, COO or CSR, any float dtype, any device.
            ids (Sequence[str]): one unique document id per row.
            space (VocabularySpace): the space the columns live in.

        Returns:
            EmbeddingIndex: the index, CSR float32.

        Raises:
            ValueError: on a wrong type, shape, non-finite values, no rows, or bad ``ids``.
        """
        if not isinstance(space, VocabularySpace):
            raise ValueError(f"space must be a VocabularySpace, got {type(space).__name__}")
        csr = _check_rows(matrix, space)
        return cls(csr, ids, space)

    def add(self, matrix: Any, ids: Sequence[str]) -> None:
        """Append embedding rows without rebuilding.

        Args:
            matrix (scipy.sparse matrix | numpy.ndarray | torch.Tensor): ``[n, space.dim]``.
            ids (Sequence[str]): their ids, unique and not yet in the index.

        Raises:
            ValueError: on a wrong type, shape, non-finite values, no rows, or bad ``ids``.
        """
        self._append(_check_rows(matrix, self.space), ids, rows_name="matrix")


def _check_rows(matrix: Any, space: VocabularySpace) -> sp.csr_matrix:
    csr = _to_csr(matrix)
    if csr.shape[0] == 0:
        raise ValueError("matrix must hold at least one row, got an empty matrix")
    if csr.shape[1] != space.dim:
        raise ValueError(
            f"matrix must have space.dim = {space.dim} columns (ids ≥ shift {space.shift}), got "
            f"{csr.shape[1]}; slice off the reserved columns first"
        )
    if not np.isfinite(csr.data).all():
        raise ValueError("matrix must hold finite values, got NaN or infinity")
    return _canonical(csr, space.dim)


_KINDS: dict[str, type[SparseIndex]] = {
    BagOfTokensIndex.kind: BagOfTokensIndex,
    EmbeddingIndex.kind: EmbeddingIndex,
}
