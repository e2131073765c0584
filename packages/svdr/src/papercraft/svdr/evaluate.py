"""Retrieval evaluation: ranked-list metrics in the TREC/BEIR sense and a runner over systems.

Metrics (per query, over the top ``k`` of the ranked list; a document is relevant when its
qrels grade is > 0; a document retrieved twice counts once, at its first rank):

* ``recall@k`` — relevant documents in the top ``k`` / all relevant documents of the query.
* ``mrr@k`` — 1 / rank of the first relevant document in the top ``k`` (0 if none).
* ``ndcg@k`` — ``DCG@k / IDCG@k`` with linear gains (the grade, as ``trec_eval``'s
  ``ndcg_cut`` and BEIR) and ``log2(rank + 1)`` discounts; the ideal list sorts the query's
  qrels grades, so relevant documents that were not retrieved lower the score.

:func:`score_run` averages over the queries that have at least one relevant document (a query
missing from the run scores 0), as BEIR reports. :func:`evaluate_systems` runs several searchers
(BM25, dense, SVDR in its modes, see SiDR arXiv 2405.01924 §5) on a BEIR split, times them and
scores them into an :class:`EvaluationReport`, which prints as a Markdown table and saves as
versioned JSON.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from papercraft.core.io import (
    CheckpointError,
    FormatVersionError,
    StrPath,
    atomic_write_json,
)
from papercraft.svdr.data import BeirData, passage_text
from papercraft.svdr.retriever import MODES, Hit, Retriever

__all__ = [
    "DEFAULT_K_VALUES",
    "REPORT_FORMAT",
    "REPORT_FORMAT_VERSION",
    "EvaluationReport",
    "Searcher",
    "corpus_texts",
    "evaluate_systems",
    "mrr_at_k",
    "ndcg_at_k",
    "per_query_scores",
    "recall_at_k",
    "score_run",
    "svdr_searcher",
]

DEFAULT_K_VALUES = (1, 5, 10, 20, 100)
REPORT_FORMAT = "papercraft.svdr.evaluation"
REPORT_FORMAT_VERSION = 1
_METRICS = ("recall", "mrr", "ndcg")
_TABLE = (
    ("Recall@1", "recall@1"),
    ("Recall@5", "recall@5"),
    ("Recall@20", "recall@20"),
    ("Recall@100", "recall@100"),
    ("MRR@10", "mrr@10"),
    ("nDCG@10", "ndcg@10"),
)

Run = Mapping[str, Sequence[str] | Sequence[Hit] | Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


# --------------------------------------------------------------------------------------------
# Per-query metrics
# --------------------------------------------------------------------------------------------


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    return k


def _top(ranked: Sequence[str], k: int) -> list[str]:
    """The first ``k`` distinct ids of ``ranked``."""
    seen: set[str] = set()
    out: list[str] = []
    for doc_id in ranked:
        if doc_id in seen:
            continue
        seen.add(doc_id)
        out.append(doc_id)
        if len(out) == k:
            break
    return out


def recall_at_k(ranked: Sequence[str], grades: Mapping[str, int], k: int) -> float:
    """Share of the query's relevant documents found in the top ``k``.

    Args:
        ranked (Sequence[str]): retrieved document ids, best first.
        grades (Mapping[str, int]): the query's qrels, doc id -> grade (<= 0: not relevant).
        k (int): the cut-off.

    Returns:
        float: in [0, 1]; 0 when the query has no relevant document.
    """
    _check_k(k)
    relevant = {d for d, g in grades.items() if g > 0}
    if not relevant:
        return 0.0
    return sum(1 for d in _top(ranked, k) if d in relevant) / len(relevant)


def mrr_at_k(ranked: Sequence[str], grades: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant document in the top ``k`` (0 if none).

    Args:
        ranked (Sequence[str]): retrieved document ids, best first.
        grades (Mapping[str, int]): the query's qrels, doc id -> grade (<= 0: not relevant).
        k (int): the cut-off.

    Returns:
        float: in [0, 1].
    """
    _check_k(k)
    for rank, doc_id in enumerate(_top(ranked, k), start=1):
        if grades.get(doc_id, 0) > 0:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], grades: Mapping[str, int], k: int) -> float:
    """Normalised discounted cumulative gain of the top ``k`` with graded relevance.

    ``DCG@k = Σ_{r=1..k} grade(d_r) / log2(r + 1)``; the ideal DCG uses the query's positive
    grades sorted in decreasing order.

    Args:
        ranked (Sequence[str]): retrieved document ids, best first.
        grades (Mapping[str, int]): the query's qrels, doc id -> grade (<= 0: not relevant).
        k (int): the cut-off.

    Returns:
        float: in [0, 1]; 0 when the query has no relevant document.
    """
    _check_k(k)
    ideal_grades = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
    ideal = sum(g / math.log2(r + 1) for r, g in enumerate(ideal_grades, start=1))
    if ideal == 0:
        return 0.0
    dcg = sum(
        max(grades.get(d, 0), 0) / math.log2(r + 1) for r, d in enumerate(_top(ranked, k), start=1)
    )
    return dcg / ideal


_FUNCTIONS = {"recall": recall_at_k, "mrr": mrr_at_k, "ndcg": ndcg_at_k}


# --------------------------------------------------------------------------------------------
# Whole runs
# --------------------------------------------------------------------------------------------


def _ranking(qid: str, entry: Any) -> list[str]:
    """Doc ids in rank order from a list of ids, a list of hits or a {doc id: score} map."""
    if isinstance(entry, Mapping):
        items = list(entry.items())
        for doc_id, score in items:
            if not isinstance(doc_id, str) or isinstance(score, bool):
                raise ValueError(f"run[{qid!r}] must map doc ids to scores, got {doc_id!r}")
            if not isinstance(score, (int, float)):
                raise ValueError(f"run[{qid!r}][{doc_id!r}] must be a number, got {score!r}")
        return [d for d, _ in sorted(items, key=lambda item: -float(item[1]))]
    if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence):
        raise ValueError(
            f"run[{qid!r}] must be a list of doc ids, a list of Hits or a {{doc id: score}} "
            f"mapping, got {type(entry).__name__}"
        )
    ranked = []
    for item in entry:
        doc_id = item.doc_id if isinstance(item, Hit) else item
        if not isinstance(doc_id, str):
            raise ValueError(f"run[{qid!r}] must hold doc id strings or Hits, got {item!r}")
        ranked.append(doc_id)
    return ranked


def _check_k_values(k_values: Iterable[int]) -> tuple[int, ...]:
    if isinstance(k_values, (str, bytes)):
        raise ValueError(f"k_values must be positive ints, got {k_values!r}")
    values = tuple(k_values)
    if not values or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in values):
        raise ValueError(f"k_values must be a non-empty sequence of positive ints, got {values!r}")
    return tuple(sorted(set(values)))


def _check_qrels(qrels: Qrels) -> None:
    if not isinstance(qrels, Mapping):
        raise ValueError(f"qrels must be a mapping qid -> {{doc id: grade}}, got {qrels!r:.80}")
    for qid, grades in qrels.items():
        if not isinstance(grades, Mapping) or not all(
            isinstance(g, int) and not isinstance(g, bool) for g in grades.values()
        ):
            raise ValueError(f"qrels[{qid!r}] must map doc ids to int grades, got {grades!r:.80}")


def per_query_scores(
    run: Run, qrels: Qrels, k_values: Iterable[int] = DEFAULT_K_VALUES
) -> dict[str, dict[str, float]]:
    """Every metric at every cut-off for each judged query with a relevant document.

    Args:
        run (Mapping[str, Sequence[str] | Sequence[Hit] | Mapping[str, float]]): per query id,
            the retrieved doc ids in rank order, the hits, or doc id -> score.
        qrels (Mapping[str, Mapping[str, int]]): per query id, doc id -> grade.
        k_values (Iterable[int]): the cut-offs. Default: (1, 5, 10, 20, 100)

    Returns:
        dict[str, dict[str, float]]: qid -> {"recall@k", "mrr@k", "ndcg@k": value}; queries
        without a relevant document are left out, queries missing from ``run`` score 0.
    """
    ks = _check_k_values(k_values)
    _check_qrels(qrels)
    if not isinstance(run, Mapping):
        raise ValueError(f"run must be a mapping qid -> ranked doc ids, got {type(run).__name__}")
    out: dict[str, dict[str, float]] = {}
    for qid, grades in qrels.items():
        if not any(g > 0 for g in grades.values()):
            continue
        ranked = _ranking(qid, run[qid]) if qid in run else []
        out[qid] = {
            f"{name}@{k}": _FUNCTIONS[name](ranked, grades, k) for name in _METRICS for k in ks
        }
    return out


def score_run(
    run: Run, qrels: Qrels, k_values: Iterable[int] = DEFAULT_K_VALUES
) -> dict[str, float]:
    """Mean metrics of a run over the queries that have at least one relevant document.

    Args:
        run (Mapping[str, Sequence[str] | Sequence[Hit] | Mapping[str, float]]): per query id,
            the retrieved doc ids in rank order, the hits, or doc id -> score.
        qrels (Mapping[str, Mapping[str, int]]): per query id, doc id -> grade.
        k_values (Iterable[int]): the cut-offs. Default: (1, 5, 10, 20, 100)

    Returns:
        dict[str, float]: ``"recall@k"``, ``"mrr@k"``, ``"ndcg@k"`` for every ``k``.

    Raises:
        ValueError: if no query of ``qrels`` has a relevant document.
    """
    return _mean(per_query_scores(run, qrels, k_values))


def _mean(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    if not per_query:
        raise ValueError("qrels must hold at least one query with a relevant document (grade > 0)")
    keys = next(iter(per_query.values())).keys()
    return {key: sum(row[key] for row in per_query.values()) / len(per_query) for key in keys}


# --------------------------------------------------------------------------------------------
# Searchers
# --------------------------------------------------------------------------------------------


@runtime_checkable
class Searcher(Protocol):
    """Anything that answers ``search(queries, k)`` with one list of hits per query."""

    def search(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """The top ``k`` hits of each query, best first."""
        ...


class _RetrieverSearcher:
    """An SVDR :class:`Retriever` with its mode and rerank depth fixed."""

    def __init__(self, retriever: Retriever, mode: str, rerank: int | None) -> None:
        self.retriever = retriever
        self.mode = mode
        self.rerank = rerank

    def search(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        depth = None if self.rerank is None else max(self.rerank, k)
        return self.retriever.search(queries, k, mode=self.mode, rerank=depth)

    def __repr__(self) -> str:
        return f"svdr_searcher(mode={self.mode!r}, rerank={self.rerank!r})"


def svdr_searcher(retriever: Retriever, mode: str, rerank: int | None = None) -> Searcher:
    """An SVDR retriever as a :class:`Searcher` with ``mode`` (and rerank depth) fixed.

    Args:
        retriever (Retriever): the retriever.
        mode (str): ``"beta"``, ``"alpha"`` or ``"parametric"``.
        rerank (int | None): re-score the top ``rerank`` hits parametrically (raised to ``k``
            when smaller). Default: None

    Returns:
        Searcher: ``search(queries, k)`` calling ``retriever.search(..., mode=mode)``.
    """
    if not isinstance(retriever, Retriever):
        raise ValueError(f"retriever must be a Retriever, got {type(retriever).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if rerank is not None:
        _check_k(rerank)
    return _RetrieverSearcher(retriever, mode, rerank)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


@dataclass
class EvaluationReport:
    """Scores and speed of several systems on one BEIR split.

    Args:
        metrics (dict[str, dict[str, float]]): system -> metric name -> mean value.
        timings (dict[str, dict[str, float]]): system -> ``{"seconds", "queries_per_second"}``.
        num_queries (int): queries searched.
        num_docs (int): documents in the corpus.
        k (int): hits retrieved per query.
        k_values (tuple[int, ...]): the metric cut-offs.
        per_query (dict[str, dict[str, dict[str, float]]]): system -> qid -> metric -> value.
            Default: {}
    """

    metrics: dict[str, dict[str, float]]
    timings: dict[str, dict[str, float]]
    num_queries: int
    num_docs: int
    k: int
    k_values: tuple[int, ...]
    per_query: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready content, with ``format`` and ``format_version``."""
        return {
            "format": REPORT_FORMAT,
            "format_version": REPORT_FORMAT_VERSION,
            "num_queries": self.num_queries,
            "num_docs": self.num_docs,
            "k": self.k,
            "k_values": list(self.k_values),
            "metrics": self.metrics,
            "timings": self.timings,
            "per_query": self.per_query,
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as JSON text (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, allow_nan=False)

    def to_markdown(self) -> str:
        """A Markdown table, one row per system: Recall@1/5/20/100, MRR@10, nDCG@10 (in %), q/s.

        A metric whose cut-off was not evaluated shows as ``–``.
        """
        header = ["system", *(title for title, _ in _TABLE), "q/s"]
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
        ]
        for system, values in self.metrics.items():
            cells = [system]
            for _, key in _TABLE:
                cells.append(f"{100 * values[key]:.2f}" if key in values else "–")
            speed = self.timings.get(system, {}).get("queries_per_second")
            cells.append("–" if speed is None else f"{speed:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
        caption = (
            f"{self.num_queries} queries, {self.num_docs} documents; metrics in %, "
            "q/s = queries per second"
        )
        return "\n".join([*lines, "", caption]) + "\n"

    def save(self, path: StrPath) -> Path:
        """Write :meth:`to_json` to ``path`` atomically."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: StrPath) -> EvaluationReport:
        """Read a report written by :meth:`save`.

        Raises:
            CheckpointError: not a report file or malformed.
            FormatVersionError: written with a newer format version.
        """
        file = Path(path)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"{file} is not a readable JSON report: {error}") from error
        if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
            raise CheckpointError(f"{file} is not a {REPORT_FORMAT!r} report")
        version = data.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise CheckpointError(f"{file} has an invalid format_version {version!r}")
        if version > REPORT_FORMAT_VERSION:
            raise FormatVersionError(
                f"{file} has {REPORT_FORMAT!r} format_version {version}, but this papercraft "
                f"reads versions up to {REPORT_FORMAT_VERSION}; upgrade to load it"
            )
        try:
            return cls(
                metrics={str(s): dict(v) for s, v in data["metrics"].items()},
                timings={str(s): dict(v) for s, v in data["timings"].items()},
                num_queries=int(data["num_queries"]),
                num_docs=int(data["num_docs"]),
                k=int(data["k"]),
                k_values=tuple(int(k) for k in data["k_values"]),
                per_query=dict(data.get("per_query") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise CheckpointError(f"{file} is a malformed report: {error}") from error


# --------------------------------------------------------------------------------------------
# Running systems
# --------------------------------------------------------------------------------------------


def _doc_text(doc: Mapping[str, str]) -> str:
    """A BEIR document as one passage (:func:`~papercraft.svdr.data.passage_text`)."""
    return passage_text(doc.get("title") or "", doc.get("text") or "")


def corpus_texts(data: BeirData) -> tuple[list[str], list[str]]:
    """The ids and passage texts (``"title text"``) of a BEIR corpus, in corpus order.

    Args:
        data (BeirData): the split.

    Returns:
        tuple[list[str], list[str]]: ``(ids, texts)``, ready for an index's ``build``.
    """
    ids = list(data.corpus)
    return ids, [_doc_text(data.corpus[d]) for d in ids]


def evaluate_systems(
    data: BeirData,
    systems: Mapping[str, Searcher],
    *,
    k: int = 100,
    batch_size: int = 64,
    k_values: Iterable[int] = DEFAULT_K_VALUES,
    progress: bool = False,
) -> EvaluationReport:
    """Search the split's queries with every system, time it and score its run.

    Args:
        data (BeirData): corpus, queries and qrels (see :func:`~papercraft.svdr.data.read_beir`).
        systems (Mapping[str, Searcher]): name -> anything with ``search(queries, k)``; wrap an
            SVDR :class:`Retriever` with :func:`svdr_searcher`.
        k (int): hits retrieved per query. Default: 100
        batch_size (int): queries per ``search`` call. Default: 64
        k_values (Iterable[int]): metric cut-offs, each <= ``k``. Default: (1, 5, 10, 20, 100)
        progress (bool): show a progress bar per system. Default: False

    Returns:
        EvaluationReport: metrics, per-query values and timings (wall clock of the searches).
    """
    if not isinstance(data, BeirData):
        raise ValueError(f"data must be a BeirData (read_beir), got {type(data).__name__}")
    if not isinstance(systems, Mapping) or not systems:
        raise ValueError("systems must be a non-empty mapping name -> searcher")
    for name, system in systems.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"systems keys must be non-empty strings, got {name!r}")
        if not callable(getattr(system, "search", None)):
            raise ValueError(
                f"systems[{name!r}] must have a search(queries, k) method, got "
                f"{type(system).__name__} (wrap a Retriever with svdr_searcher)"
            )
    _check_k(k)
    _check_k(batch_size)
    ks = _check_k_values(k_values)
    if ks[-1] > k:
        raise ValueError(f"k_values must all be <= k ({k}), got {list(ks)}")
    qids = [q for q in data.queries if q in data.qrels]
    if not qids:
        raise ValueError("data has no query with qrels to evaluate")
    texts = [data.queries[q] for q in qids]
    starts = range(0, len(texts), batch_size)
    metrics: dict[str, dict[str, float]] = {}
    timings: dict[str, dict[str, float]] = {}
    per_query: dict[str, dict[str, dict[str, float]]] = {}
    for name, system in systems.items():
        batches: Iterable[int] = starts
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(starts, desc=name, unit="batch")
        run: dict[str, list[str]] = {}
        elapsed = 0.0
        for start in batches:
            chunk = texts[start : start + batch_size]
            began = time.perf_counter()
            results = system.search(chunk, k)
            elapsed += time.perf_counter() - began
            if len(results) != len(chunk):
                raise ValueError(
                    f"systems[{name!r}].search returned {len(results)} result lists for "
                    f"{len(chunk)} queries"
                )
            for qid, hits in zip(qids[start : start + batch_size], results, strict=True):
                run[qid] = [hit.doc_id for hit in hits]
        per_query[name] = per_query_scores(run, data.qrels, ks)
        metrics[name] = _mean(per_query[name])
        timings[name] = {
            "seconds": elapsed,
            "queries_per_second": len(texts) / max(elapsed, 1e-9),
        }
    return EvaluationReport(
        metrics=metrics,
        timings=timings,
        num_queries=len(texts),
        num_docs=len(data.corpus),
        k=k,
        k_values=ks,
        per_query=per_query,
    )
