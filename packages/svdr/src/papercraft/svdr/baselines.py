"""The two baselines SiDR is compared with (arXiv 2405.01924, §5): BM25 and a dense bi-encoder.

* :class:`BM25Index` — lexical BM25 built with `bm25s <https://github.com/xhluca/bm25s>`_ (the
  ``papercraft-svdr[bm25]`` extra). With a transformers ``tokenizer`` the corpus and the
  queries are cut into the same wordpieces as SVDR's bag-of-tokens index (no special tokens,
  truncated at ``max_length=256``), so both systems see "the same corpus and tokenization";
  without one, bm25s' own word tokenizer is used (lower-cased words of two or more characters,
  optional English stopwords). The lucene variant scores a query ``q`` against a document ``d``
  as ``Σ_{t∈q} ln(1 + (N − df_t + 0.5)/(df_t + 0.5)) · tf_{t,d} / (tf_{t,d} + k1·(1 − b +
  b·|d|/avgdl))``.
* :class:`DenseIndex` — a sentence-transformers style bi-encoder (all-MiniLM-L6-v2): a
  transformers ``AutoModel`` read from a local folder, attention-masked mean pooling of the last
  hidden state, L2 normalisation; passages are a float32 ``[N, d]`` matrix and search is an
  exact inner product.

Both answer ``search(queries, k) -> list[list[Hit]]`` like :class:`~papercraft.svdr.retriever.
Retriever` (hits by decreasing score, ties in index order) and save atomically into a folder
with a papercraft manifest (format, version, SHA-256 of every file); nothing is pickled: bm25s'
files are ``.npy`` (``allow_pickle=False``) and JSON, the dense matrix is one ``.npy``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from papercraft.core.io import (
    CheckpointError,
    StrPath,
    atomic_directory,
    atomic_write_json,
    read_manifest,
    verify_manifest,
    write_manifest,
)
from papercraft.svdr.index import _check_ids, _check_texts
from papercraft.svdr.retriever import Hit
from papercraft.svdr.vocab import tokenizer_fingerprint

__all__ = [
    "BM25_FORMAT",
    "BM25_FORMAT_VERSION",
    "BM25_METHODS",
    "DENSE_FORMAT",
    "DENSE_FORMAT_VERSION",
    "BM25Index",
    "DenseIndex",
]

BM25_FORMAT = "papercraft.svdr.bm25"
BM25_FORMAT_VERSION = 1
DENSE_FORMAT = "papercraft.svdr.dense"
DENSE_FORMAT_VERSION = 1
BM25_METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
_IDS = "ids.json"
_BM25_DIR = "bm25s"  # bm25s' own files (npy + json) live in this sub-folder
_TOKENIZER_DIR = "tokenizer"  # the transformers tokenizer, saved with save_pretrained
_EMBEDDINGS = "embeddings.npy"


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _check_corpus(texts: Sequence[str], ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """``texts`` and ``ids`` as lists: non-empty, one unique non-empty id per text."""
    checked = _check_texts(texts)
    return checked, _check_ids(ids, len(checked), rows="texts")


def _check_queries(queries: Sequence[str], k: int) -> list[str]:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if isinstance(queries, (str, bytes)) or not isinstance(queries, Sequence):
        raise ValueError(f"queries must be a sequence of strings, got {type(queries).__name__}")
    texts = list(queries)
    if not texts or not all(isinstance(q, str) and q.strip() for q in texts):
        raise ValueError("queries must be a non-empty list of non-empty strings")
    return texts


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest scores, best first; equal scores keep index order."""
    n = scores.shape[0]
    if k < n:
        # Everything strictly above the k-th largest value, plus the lowest-index ties at it.
        threshold = np.partition(scores, n - k)[n - k]
        candidates = np.flatnonzero(scores >= threshold)
    else:
        candidates = np.arange(n)
    order = np.argsort(-scores[candidates], kind="stable")
    return candidates[order][:k]


def _hits(scores: np.ndarray, ids: list[str], k: int) -> list[Hit]:
    return [Hit(ids[i], float(scores[i])) for i in _top_k(scores, k)]


def _read_ids(path: Path, count: int) -> list[str]:
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise CheckpointError(f"{path} must hold a JSON list of strings")
    if len(ids) != count or len(set(ids)) != count:
        raise CheckpointError(f"{path} must hold {count} unique ids, got {len(ids)}")
    return ids


def _import_bm25s() -> Any:
    try:
        import bm25s
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "BM25Index needs the bm25s library: pip install 'papercraft-svdr[bm25]'"
        ) from error
    return bm25s


# --------------------------------------------------------------------------------------------
# BM25
# --------------------------------------------------------------------------------------------


def _stopword_list(stopwords: str | Sequence[str] | None) -> list[str]:
    if stopwords is None:
        return []
    if isinstance(stopwords, str):
        if stopwords.lower() not in ("en", "english"):
            raise ValueError(f"stopwords must be None, 'en' or a list of words, got {stopwords!r}")
        from bm25s.stopwords import STOPWORDS_EN

        return sorted(STOPWORDS_EN)
    words = list(stopwords)
    if not all(isinstance(w, str) for w in words):
        raise ValueError("stopwords must be None, 'en' or a list of strings")
    return words


class BM25Index:
    """A BM25 index over a corpus, searched like :class:`~papercraft.svdr.retriever.Retriever`.

    Build one with :meth:`build`, read one with :meth:`load`.

    Args:
        model (bm25s.BM25): the fitted bm25s model.
        ids (Sequence[str]): one document id per indexed document.
        tokenizer (PreTrainedTokenizerBase | None): the wordpiece tokenizer, or None for bm25s'
            word tokenizer. Default: None
        stopwords (Sequence[str]): tokens dropped from documents and queries. Default: ()
        max_length (int): wordpiece truncation (tokenizer only). Default: 256
    """

    def __init__(
        self,
        model: Any,
        ids: Sequence[str],
        *,
        tokenizer: Any = None,
        stopwords: Sequence[str] = (),
        max_length: int = 256,
    ) -> None:
        self.model = model
        self.ids: list[str] = list(ids)
        self.tokenizer = tokenizer
        self.stopwords: list[str] = list(stopwords)
        self.max_length = _positive_int("max_length", max_length)

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        ids: Sequence[str],
        *,
        tokenizer: Any = None,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        stopwords: str | Sequence[str] | None = None,
        max_length: int = 256,
        progress: bool = False,
    ) -> BM25Index:
        """Index ``texts`` with bm25s.

        Args:
            texts (Sequence[str]): passage texts.
            ids (Sequence[str]): one unique, non-empty id per passage.
            tokenizer (PreTrainedTokenizerBase | None): cut texts into this tokenizer's
                wordpieces (no special tokens); None uses bm25s' lower-cased word tokenizer.
                Default: None
            k1 (float): term-frequency saturation, > 0. Default: 1.5
            b (float): length normalisation in [0, 1]. Default: 0.75
            method (str): bm25s variant, one of :data:`BM25_METHODS`. Default: "lucene"
            stopwords (str | Sequence[str] | None): None, ``"en"`` (bm25s' English list) or
                the tokens to drop. Default: None
            max_length (int): wordpiece truncation, as :class:`BagOfTokensIndex`. Default: 256
            progress (bool): show bm25s' progress bars. Default: False

        Returns:
            BM25Index: the index.
        """
        texts, ids = _check_corpus(texts, ids)
        if isinstance(k1, bool) or not isinstance(k1, (int, float)) or not k1 > 0:
            raise ValueError(f"k1 must be a number > 0, got {k1!r}")
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b <= 1:
            raise ValueError(f"b must be a number in [0, 1], got {b!r}")
        if method not in BM25_METHODS:
            raise ValueError(f"method must be one of {list(BM25_METHODS)}, got {method!r}")
        _positive_int("max_length", max_length)
        if tokenizer is not None and not callable(tokenizer):
            raise ValueError(
                f"tokenizer must be a transformers tokenizer or None, got {type(tokenizer).__name__}"
            )
        bm25s = _import_bm25s()
        words = _stopword_list(stopwords)
        index = cls(
            bm25s.BM25(k1=float(k1), b=float(b), method=method),
            ids,
            tokenizer=tokenizer,
            stopwords=words,
            max_length=max_length,
        )
        corpus_tokens = index._tokenize(texts, progress=progress)
        index.model.index(corpus_tokens, show_progress=progress)
        return index

    # -- tokenization ------------------------------------------------------------------------------

    def _tokenize(self, texts: list[str], *, progress: bool = False) -> list[list[str]]:
        """Token strings per text: wordpieces of the tokenizer, or bm25s' words."""
        if self.tokenizer is None:
            bm25s = _import_bm25s()
            tokens: list[list[str]] = bm25s.tokenize(
                texts, lower=True, stopwords=[], return_ids=False, show_progress=progress
            )
        else:
            encoded = self.tokenizer(
                texts, add_special_tokens=False, truncation=True, max_length=self.max_length
            )["input_ids"]
            tokens = [list(self.tokenizer.convert_ids_to_tokens(list(row))) for row in encoded]
        if self.stopwords:
            dropped = set(self.stopwords)
            tokens = [[t for t in row if t not in dropped] for row in tokens]
        return tokens

    # -- inspection --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        """Bytes of the score arrays held in memory (bm25s' CSC data + indices + indptr)."""
        scores = self.model.scores
        total = sum(int(np.asarray(scores[name]).nbytes) for name in ("data", "indices", "indptr"))
        extra = getattr(self.model, "nonoccurrence_array", None)
        return total + (int(extra.nbytes) if extra is not None else 0)

    # -- search ------------------------------------------------------------------------------------

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for one query, in index order (float32 ``[N]``)."""
        tokens = self._tokenize([query])[0]
        if not tokens:
            return np.zeros(len(self), dtype=np.float32)
        return np.asarray(self.model.get_scores(tokens), dtype=np.float32)

    def search(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """The top ``k`` documents of each query.

        Args:
            queries (Sequence[str]): query texts.
            k (int): hits per query (fewer when the corpus is smaller). Default: 10

        Returns:
            list[list[Hit]]: per query, hits by decreasing score (ties: index order).
        """
        texts = _check_queries(queries, k)
        return [_hits(self.scores(query), self.ids, k) for query in texts]

    # -- persistence -------------------------------------------------------------------------------

    def save(self, directory: StrPath, *, overwrite: bool = True) -> Path:
        """Write the index atomically (bm25s' npy/JSON files, ids, tokenizer, manifest).

        Args:
            directory (str | os.PathLike[str]): the folder to create or replace.
            overwrite (bool): replace an existing folder. Default: True

        Returns:
            Path: ``directory``.
        """
        model = self.model
        with atomic_directory(directory, overwrite=overwrite) as tmp:
            model.save(str(tmp / _BM25_DIR), corpus=None, allow_pickle=False)
            atomic_write_json(tmp / _IDS, self.ids, indent=None)
            fingerprint = None
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(str(tmp / _TOKENIZER_DIR))
                fingerprint = tokenizer_fingerprint(self.tokenizer)
            write_manifest(
                tmp,
                format=BM25_FORMAT,
                format_version=BM25_FORMAT_VERSION,
                metadata={
                    "num_docs": len(self),
                    "k1": model.k1,
                    "b": model.b,
                    "method": model.method,
                    "tokenization": "bm25s" if self.tokenizer is None else "tokenizer",
                    "tokenizer_fingerprint": fingerprint,
                    "max_length": self.max_length,
                    "stopwords": self.stopwords,
                },
            )
        return Path(directory)

    @classmethod
    def load(cls, directory: StrPath, *, tokenizer: Any = None) -> BM25Index:
        """Read an index written by :meth:`save`, checking format, version and checksums.

        Args:
            directory (str | os.PathLike[str]): the index folder.
            tokenizer (PreTrainedTokenizerBase | None): use this tokenizer instead of the stored
                copy; it must be the one the index was built with. Default: None

        Returns:
            BM25Index: the index.

        Raises:
            CheckpointError: missing or malformed files, another artifact kind.
            FormatVersionError: written with a newer format version.
            ChecksumError: a file differs from the manifest.
            ValueError: ``tokenizer`` differs from the one the index was built with.
        """
        root = Path(directory)
        manifest = read_manifest(root, format=BM25_FORMAT, max_format_version=BM25_FORMAT_VERSION)
        verify_manifest(root, manifest)
        meta = manifest.metadata
        try:
            num_docs = int(meta["num_docs"])
            wordpieces = meta["tokenization"] == "tokenizer"
            fingerprint = meta["tokenizer_fingerprint"]
            max_length = int(meta["max_length"])
            stopwords = [str(w) for w in meta["stopwords"]]
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{root} manifest metadata is incomplete: {error}") from error
        if wordpieces:
            if tokenizer is None:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(str(root / _TOKENIZER_DIR))
            if tokenizer_fingerprint(tokenizer) != fingerprint:
                raise ValueError(
                    f"tokenizer does not match the one the BM25 index at {root} was built with"
                )
        else:
            tokenizer = None
        bm25s = _import_bm25s()
        try:
            model = bm25s.BM25.load(
                str(root / _BM25_DIR), mmap=False, allow_pickle=False, load_corpus=False
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(
                f"{root}/{_BM25_DIR} is not a valid bm25s index: {error}"
            ) from error
        if int(model.scores["num_docs"]) != num_docs:
            raise CheckpointError(
                f"{root} holds {model.scores['num_docs']} scored documents, manifest says {num_docs}"
            )
        ids = _read_ids(root / _IDS, num_docs)
        return cls(model, ids, tokenizer=tokenizer, stopwords=stopwords, max_length=max_length)


# --------------------------------------------------------------------------------------------
# Dense bi-encoder
# --------------------------------------------------------------------------------------------


def _model_folder(model_path: StrPath) -> Path:
    folder = Path(model_path)
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"model_path must be a local model folder with a config.json, got {str(model_path)!r}"
        )
    return folder


class DenseIndex:
    """Exact inner-product search over mean-pooled transformer embeddings (all-MiniLM-L6-v2 style).

    Build one with :meth:`build`, read one with :meth:`load`. The model is read lazily, on the
    first encoding.

    Args:
        embeddings (np.ndarray): float32 ``[N, d]`` passage embeddings.
        ids (Sequence[str]): one unique document id per row.
        model_path (str | os.PathLike[str]): the local model folder (config, weights, tokenizer).
        max_length (int): truncation of passages and queries, in tokens. Default: 256
        batch_size (int): texts per forward pass. Default: 32
        normalize (bool): L2-normalise embeddings (then scores are cosines). Default: True
        device (str | None): where the model encodes (e.g. ``"cuda"``); None: the CPU.
            Default: None
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        ids: Sequence[str],
        model_path: StrPath,
        *,
        max_length: int = 256,
        batch_size: int = 32,
        normalize: bool = True,
        device: str | None = None,
    ) -> None:
        if not isinstance(embeddings, np.ndarray) or embeddings.ndim != 2:
            raise ValueError(
                f"embeddings must be a 2-D numpy array [N, d], got {type(embeddings).__name__}"
            )
        if len(ids) != embeddings.shape[0]:
            raise ValueError(
                f"ids must hold one id per embedding row ({embeddings.shape[0]}), got {len(ids)}"
            )
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.ids: list[str] = list(ids)
        self.model_path = _model_folder(model_path)
        self.max_length = _positive_int("max_length", max_length)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.normalize = bool(normalize)
        self.device = device or "cpu"
        self._model: Any = None
        self._tokenizer: Any = None

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        ids: Sequence[str],
        model_path: StrPath,
        *,
        max_length: int = 256,
        batch_size: int = 32,
        normalize: bool = True,
        progress: bool = False,
        device: str | None = None,
    ) -> DenseIndex:
        """Encode ``texts`` with the model at ``model_path``.

        Args:
            texts (Sequence[str]): passage texts.
            ids (Sequence[str]): one unique, non-empty id per passage.
            model_path (str | os.PathLike[str]): a local transformers model folder.
            max_length (int): truncation in tokens (256 as all-MiniLM-L6-v2). Default: 256
            batch_size (int): texts per forward pass. Default: 32
            normalize (bool): L2-normalise the embeddings. Default: True
            progress (bool): show a progress bar. Default: False
            device (str | None): where the model encodes; None: the CPU. Default: None

        Returns:
            DenseIndex: the index.
        """
        texts, ids = _check_corpus(texts, ids)
        empty = np.zeros((len(texts), 0), dtype=np.float32)
        index = cls(
            empty,
            ids,
            model_path,
            max_length=max_length,
            batch_size=batch_size,
            normalize=normalize,
            device=device,
        )
        index.embeddings = index.encode(texts, progress=progress)
        return index

    # -- encoding ----------------------------------------------------------------------------------

    def _load_model(self) -> tuple[Any, Any]:
        if self._model is None:
            from transformers import AutoModel, AutoTokenizer

            folder = str(self.model_path)
            self._tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModel.from_pretrained(folder, trust_remote_code=False)
            self._model = model.eval().to(self.device)
        return self._model, self._tokenizer

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed texts: masked mean of the last hidden state, L2-normalised if ``normalize``.

        Args:
            texts (Sequence[str]): the texts.
            progress (bool): show a progress bar. Default: False

        Returns:
            np.ndarray: float32 ``[len(texts), d]``, in the order of ``texts``.
        """
        import torch

        model, tokenizer = self._load_model()
        items = list(texts)
        # Longest first, so each batch pads to similar lengths; rows are put back in order.
        order = sorted(range(len(items)), key=lambda i: -len(items[i]))
        starts = range(0, len(items), self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="dense index", unit="batch")
        parts: list[np.ndarray] = []
        with torch.inference_mode():
            for start in starts:
                chunk = [items[i] for i in order[start : start + self.batch_size]]
                batch = tokenizer(
                    chunk,
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = model(**batch).last_hidden_state  # [b, L, d]
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [b, L, 1]
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                if self.normalize:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
                parts.append(pooled.float().cpu().numpy())
        width = int(model.config.hidden_size)
        stacked = np.concatenate(parts) if parts else np.zeros((0, width), dtype=np.float32)
        embeddings = np.empty_like(stacked)
        embeddings[np.asarray(order, dtype=np.int64)] = stacked
        return np.ascontiguousarray(embeddings, dtype=np.float32)

    # -- inspection --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        """Embedding width ``d``."""
        return int(self.embeddings.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes of the embedding matrix."""
        return int(self.embeddings.nbytes)

    # -- search ------------------------------------------------------------------------------------

    def search(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """The top ``k`` documents of each query by inner product.

        Args:
            queries (Sequence[str]): query texts.
            k (int): hits per query (fewer when the corpus is smaller). Default: 10

        Returns:
            list[list[Hit]]: per query, hits by decreasing score (ties: index order).
        """
        texts = _check_queries(queries, k)
        scores = self.encode(texts) @ self.embeddings.T  # [q, N]
        return [_hits(row, self.ids, k) for row in scores]

    # -- persistence -------------------------------------------------------------------------------

    def save(self, directory: StrPath, *, overwrite: bool = True) -> Path:
        """Write ``embeddings.npy``, ``ids.json`` and the manifest atomically.

        Args:
            directory (str | os.PathLike[str]): the folder to create or replace.
            overwrite (bool): replace an existing folder. Default: True

        Returns:
            Path: ``directory``.
        """
        with atomic_directory(directory, overwrite=overwrite) as tmp:
            np.save(tmp / _EMBEDDINGS, self.embeddings, allow_pickle=False)
            atomic_write_json(tmp / _IDS, self.ids, indent=None)
            write_manifest(
                tmp,
                format=DENSE_FORMAT,
                format_version=DENSE_FORMAT_VERSION,
                files=[_EMBEDDINGS, _IDS],
                metadata={
                    "num_docs": len(self),
                    "dim": self.dim,
                    "model_path": str(self.model_path),
                    "max_length": self.max_length,
                    "batch_size": self.batch_size,
                    "normalize": self.normalize,
                },
            )
        return Path(directory)

    @classmethod
    def load(
        cls, directory: StrPath, model_path: StrPath | None = None, *, device: str | None = None
    ) -> DenseIndex:
        """Read an index written by :meth:`save`, checking format, version and checksums.

        Args:
            directory (str | os.PathLike[str]): the index folder.
            model_path (str | os.PathLike[str] | None): the model folder; None uses the path
                stored at save time. Default: None
            device (str | None): where queries are encoded; None: the CPU. Default: None

        Returns:
            DenseIndex: the index.

        Raises:
            CheckpointError: missing or malformed files, another artifact kind.
            FormatVersionError: written with a newer format version.
            ChecksumError: a file differs from the manifest.
        """
        root = Path(directory)
        manifest = read_manifest(root, format=DENSE_FORMAT, max_format_version=DENSE_FORMAT_VERSION)
        missing = [name for name in (_EMBEDDINGS, _IDS) if name not in manifest.files]
        if missing:
            raise CheckpointError(f"{root} manifest does not list the index files {missing}")
        verify_manifest(root, manifest)
        meta = manifest.metadata
        try:
            num_docs, dim = int(meta["num_docs"]), int(meta["dim"])
            stored_path = str(meta["model_path"])
            max_length, batch_size = int(meta["max_length"]), int(meta["batch_size"])
            normalize = bool(meta["normalize"])
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{root} manifest metadata is incomplete: {error}") from error
        try:
            embeddings = np.load(root / _EMBEDDINGS, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise CheckpointError(
                f"{root / _EMBEDDINGS} is not a valid .npy array: {error}"
            ) from error
        if embeddings.shape != (num_docs, dim) or embeddings.dtype != np.float32:
            raise CheckpointError(
                f"{root / _EMBEDDINGS} holds {embeddings.dtype} {embeddings.shape}, expected "
                f"float32 {(num_docs, dim)}"
            )
        ids = _read_ids(root / _IDS, num_docs)
        folder = stored_path if model_path is None else model_path
        return cls(
            embeddings,
            ids,
            folder,
            max_length=max_length,
            batch_size=batch_size,
            normalize=normalize,
            device=device,
        )
