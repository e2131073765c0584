"""Evaluation harness for LongEmbed: retrieval scores per task and context length, and reports.

For every task and split (one per context length for the synthetic tasks) the split's queries are
encoded with ``embedder.encode_queries`` and its candidate documents with
``embedder.encode_corpus``; the score of a (query, document) pair is the dot product of their
embeddings (cosine similarity for L2-normalised rows). Candidates are ranked by decreasing score,
ties broken by increasing document id, and scored with (LongEmbed §3, mteb's retrieval metrics):

- ``ndcg_at_k`` — ``DCG@k / IDCG@k`` with ``DCG@k = Σ_{i≤k} rel_i / log2(i + 1)`` (linear gain,
  the relevance grade; trec_eval's form) and IDCG the DCG of the ideal ordering of the query's
  judged documents. With one relevant document nDCG@1 is Acc@1, the synthetic tasks' metric.
- ``recall_at_k`` — relevant documents in the top k / relevant documents.
- ``mrr_at_k`` — 1 / rank of the first relevant document within the top k (0 if none).

A split's score is the mean over its queries; a task's score the mean of its splits' scores (the
paper's average over lengths); the LongEmbed average the plain mean of the tasks' main scores.
Reports: JSON and Markdown (:meth:`EvaluationResult.write`), a comparison table
(:func:`compare_markdown`) and accuracy-against-length plots (:func:`plot_by_length`).
"""

from __future__ import annotations

import inspect
import io
import json
import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from papercraft.core.io import StrPath, atomic_write_bytes, atomic_write_json, atomic_write_text
from papercraft.longembed.tasks import RetrievalTask

__all__ = [
    "RESULT_FORMAT",
    "RESULT_FORMAT_VERSION",
    "Embedder",
    "EvaluationResult",
    "TaskResult",
    "compare_markdown",
    "evaluate",
    "load_result",
    "ndcg_at_k",
    "plot_by_length",
    "retrieval_metrics",
]

RESULT_FORMAT = "papercraft.longembed.evaluation"
RESULT_FORMAT_VERSION = 1
_METRIC = re.compile(r"(ndcg|recall|mrr)_at_([1-9][0-9]*)")
_METRIC_LABELS = {"ndcg_at_1": "Acc@1 (nDCG@1)", "ndcg_at_10": "nDCG@10"}


class Embedder(Protocol):
    """What :func:`evaluate` needs: two encoders returning one row per input (and a ``name``)."""

    def encode_queries(self, queries: list[str]) -> Any: ...

    def encode_corpus(self, corpus: list[dict[str, str]]) -> Any: ...


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def _check_k(k_values: Sequence[int]) -> list[int]:
    ks = list(k_values)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"k_values must be a non-empty sequence of ints >= 1, got {k_values!r}")
    return sorted(set(ks))


def retrieval_metrics(
    scores: np.ndarray, relevance: np.ndarray, k_values: Sequence[int] = (1, 10)
) -> dict[str, np.ndarray]:
    """Per-query nDCG@k, Recall@k and MRR@k of a score matrix against graded relevance.

    Documents are ranked by decreasing score; equal scores keep the column order (a stable
    sort), so ties go to the lower column index.

    Args:
        scores (np.ndarray): ``[Q, D]`` query-document scores, finite.
        relevance (np.ndarray): ``[Q, D]`` relevance grades; values <= 0 are not relevant.
        k_values (Sequence[int]): cut-offs. Default: (1, 10)

    Returns:
        dict[str, np.ndarray]: ``"ndcg_at_k"``, ``"recall_at_k"``, ``"mrr_at_k"`` -> ``[Q]``
        float64 values; 0 for a query without relevant documents.

    Raises:
        ValueError: on mismatched shapes, non-finite scores or bad ``k_values``.
    """
    ks = _check_k(k_values)
    scores = np.asarray(scores)
    relevance = np.asarray(relevance, dtype=np.float64)
    if scores.ndim != 2 or scores.shape != relevance.shape:
        raise ValueError(
            f"scores and relevance must be [Q, D] arrays of one shape, got {scores.shape} and "
            f"{relevance.shape}"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite (no NaN or infinity)")
    gains = np.clip(relevance, 0.0, None)
    order = np.argsort(-scores.astype(np.float64), axis=1, kind="stable")
    ranked = np.take_along_axis(gains, order, axis=1)  # [Q, D] gains in rank order
    ideal = -np.sort(-gains, axis=1)
    num_relevant = (gains > 0).sum(axis=1)
    discounts = 1.0 / np.log2(np.arange(2, scores.shape[1] + 2))
    hits = ranked > 0
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), scores.shape[1])
    metrics: dict[str, np.ndarray] = {}
    for k in ks:
        dcg = (ranked[:, :k] * discounts[:k]).sum(axis=1)
        idcg = (ideal[:, :k] * discounts[:k]).sum(axis=1)
        metrics[f"ndcg_at_{k}"] = np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)
        found = hits[:, :k].sum(axis=1).astype(np.float64)
        metrics[f"recall_at_{k}"] = np.divide(
            found, num_relevant, out=np.zeros_like(found), where=num_relevant > 0
        )
        metrics[f"mrr_at_{k}"] = np.where(first_hit < k, 1.0 / (first_hit + 1.0), 0.0)
    return metrics


def ndcg_at_k(scores: np.ndarray, relevance: np.ndarray, k: int) -> np.ndarray:
    """Per-query nDCG@k (see :func:`retrieval_metrics`).

    Args:
        scores (np.ndarray): ``[Q, D]`` query-document scores.
        relevance (np.ndarray): ``[Q, D]`` relevance grades.
        k (int): the cut-off, >= 1.

    Returns:
        np.ndarray: ``[Q]`` values in [0, 1].
    """
    return retrieval_metrics(scores, relevance, (k,))[f"ndcg_at_{k}"]


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class TaskResult:
    """Scores of one task: per split, the mean of each metric over the split's queries.

    Args:
        task (str): the task name.
        main_metric (str): the metric the task reports (``"ndcg_at_1"``, ``"ndcg_at_10"``).
        splits (dict[str, dict[str, float]]): split -> metric -> mean value in [0, 1].
        context_lengths (dict[str, int | None]): split -> its context length (None for a real
            task's split).
        num_queries (dict[str, int]): split -> queries scored.
        num_documents (dict[str, int]): split -> candidate documents.
        seconds (float): wall-clock time of encoding and scoring. Default: 0.0
    """

    task: str
    main_metric: str
    splits: dict[str, dict[str, float]]
    context_lengths: dict[str, int | None]
    num_queries: dict[str, int]
    num_documents: dict[str, int]
    seconds: float = 0.0

    def average(self, metric: str | None = None) -> float:
        """Mean of ``metric`` (default: the main metric) over the splits."""
        metric = metric or self.main_metric
        values = [scores[metric] for scores in self.splits.values() if metric in scores]
        if not values:
            raise ValueError(f"metric {metric!r} was not computed for task {self.task!r}")
        return float(np.mean(values))

    @property
    def main_score(self) -> float:
        """The task's score: its main metric averaged over its splits (lengths)."""
        return self.average()

    def by_length(self, metric: str | None = None) -> dict[int, float]:
        """Context length -> ``metric`` (default: the main metric), for splits with a length."""
        metric = metric or self.main_metric
        return {
            length: self.splits[split][metric]
            for split, length in sorted(self.context_lengths.items(), key=lambda item: item[1] or 0)
            if length is not None
        }


@dataclass
class EvaluationResult:
    """Scores of one embedder on several tasks.

    Args:
        embedder (str): the embedder's name.
        tasks (dict[str, TaskResult]): task name -> its scores.
        metadata (dict[str, Any]): free JSON (e.g. the extension method). Default: {}
    """

    embedder: str
    tasks: dict[str, TaskResult]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def average(self) -> float:
        """The LongEmbed average: the plain mean of the tasks' main scores."""
        return float(np.mean([t.main_score for t in self.tasks.values()]))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (scores as fractions in [0, 1])."""
        return {
            "format": RESULT_FORMAT,
            "format_version": RESULT_FORMAT_VERSION,
            "embedder": self.embedder,
            "average": self.average,
            "metadata": self.metadata,
            "tasks": {
                name: {
                    "main_metric": t.main_metric,
                    "main_score": t.main_score,
                    "seconds": t.seconds,
                    "splits": {
                        split: {
                            "context_length": t.context_lengths[split],
                            "num_queries": t.num_queries[split],
                            "num_documents": t.num_documents[split],
                            **scores,
                        }
                        for split, scores in t.splits.items()
                    },
                }
                for name, t in self.tasks.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationResult:
        """Rebuild a result from :meth:`to_dict` output (e.g. a JSON file written earlier).

        Raises:
            ValueError: if ``data`` is not an evaluation result of a supported version.
        """
        if not isinstance(data, Mapping) or data.get("format") != RESULT_FORMAT:
            raise ValueError(f"data must be a {RESULT_FORMAT!r} dict (EvaluationResult.to_dict)")
        if data.get("format_version", 0) > RESULT_FORMAT_VERSION:
            raise ValueError(
                f"format_version {data.get('format_version')} is newer than the supported "
                f"{RESULT_FORMAT_VERSION}"
            )
        tasks = {}
        for name, t in data["tasks"].items():
            info = {"context_length", "num_queries", "num_documents"}
            tasks[name] = TaskResult(
                task=name,
                main_metric=t["main_metric"],
                splits={
                    s: {k: float(v) for k, v in row.items() if k not in info}
                    for s, row in t["splits"].items()
                },
                context_lengths={s: row["context_length"] for s, row in t["splits"].items()},
                num_queries={s: row["num_queries"] for s, row in t["splits"].items()},
                num_documents={s: row["num_documents"] for s, row in t["splits"].items()},
                seconds=float(t.get("seconds", 0.0)),
            )
        return cls(str(data["embedder"]), tasks, dict(data.get("metadata", {})))

    def to_markdown(self) -> str:
        """Markdown: a summary table of main scores and, per synthetic task, scores by length.

        Scores are shown ×100 with one decimal, as in the paper.
        """
        lines = [
            f"### {self.embedder}",
            "",
            "| task | metric | score |",
            "|---|---|---:|",
        ]
        for name, t in self.tasks.items():
            label = _METRIC_LABELS.get(t.main_metric, t.main_metric)
            lines.append(f"| {name} | {label} | {_pct(t.main_score)} |")
        lines.append(f"| **average** | main scores | **{_pct(self.average)}** |")
        for name, t in self.tasks.items():
            if not t.by_length():
                continue
            lengths = list(t.by_length())
            metrics = sorted(
                next(iter(t.splits.values())), key=lambda m: (m != t.main_metric, _metric_key(m))
            )
            lines += [
                "",
                f"#### {name} by context length",
                "",
                "| metric | " + " | ".join(str(n) for n in lengths) + " | avg |",
                "|---|" + "---:|" * (len(lengths) + 1),
            ]
            for metric in metrics:
                row = t.by_length(metric)
                cells = " | ".join(_pct(row[n]) for n in lengths)
                lines.append(f"| {metric} | {cells} | {_pct(t.average(metric))} |")
        return "\n".join(lines) + "\n"

    def write(self, directory: StrPath, name: str = "longembed") -> dict[str, Path]:
        """Write ``<name>.json`` and ``<name>.md`` into ``directory`` atomically.

        Args:
            directory (str | os.PathLike[str]): the output directory (created if missing).
            name (str): the files' stem, a plain file name. Default: "longembed"

        Returns:
            dict[str, Path]: ``{"json": ..., "markdown": ...}``.

        Raises:
            ValueError: if ``name`` is not a plain file name.
        """
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
            raise ValueError(
                f"name must be a plain file name (letters, digits, _.+-), got {name!r}"
            )
        root = Path(directory)
        return {
            "json": atomic_write_json(root / f"{name}.json", self.to_dict()),
            "markdown": atomic_write_text(root / f"{name}.md", self.to_markdown()),
        }


def _pct(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{100.0 * value:.1f}"


def _metric_key(metric: str) -> tuple[int, int, str]:
    """Sort order of metric names: nDCG, Recall, MRR, each by increasing k."""
    match = _METRIC.fullmatch(metric)
    if match is None:
        return (3, 0, metric)
    return (("ndcg", "recall", "mrr").index(match.group(1)), int(match.group(2)), metric)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def _embeddings(values: Any, count: int, what: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().float().cpu().numpy()
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != count:
        raise ValueError(f"{what} must return a [{count}, dim] array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} returned non-finite values (NaN or infinity)")
    return array


def _accepts_batch_size(method: Any) -> bool:
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "batch_size" or p.kind is p.VAR_KEYWORD for p in parameters)


@contextmanager
def _batch_size(embedder: Any, batch_size: int | None) -> Iterator[dict[str, int]]:
    """Keyword arguments for the encoders; else sets ``embedder.batch_size`` for the block."""
    if batch_size is None:
        yield {}
        return
    methods = (embedder.encode_queries, embedder.encode_corpus)
    if all(_accepts_batch_size(m) for m in methods):
        yield {"batch_size": batch_size}
        return
    if not hasattr(embedder, "batch_size"):
        raise ValueError(
            "batch_size was given, but the embedder's encode_queries/encode_corpus take no "
            "batch_size argument and it has no batch_size attribute"
        )
    previous = embedder.batch_size
    embedder.batch_size = batch_size
    try:
        yield {}
    finally:
        embedder.batch_size = previous


def _k_values(tasks: Sequence[RetrievalTask]) -> list[int]:
    ks = {1, 10}
    for task in tasks:
        match = _METRIC.fullmatch(task.main_metric)
        if match:
            ks.add(int(match.group(2)))
    return sorted(ks)


def evaluate(
    embedder: Embedder,
    tasks: RetrievalTask | Sequence[RetrievalTask],
    *,
    batch_size: int | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Score ``embedder`` on ``tasks``, split by split (length by length).

    Args:
        embedder (Embedder): has ``encode_queries(list[str])`` and
            ``encode_corpus(list[dict[str, str]])`` returning ``[N, dim]`` arrays (L2-normalised
            for cosine scores) and, optionally, a ``name``.
        tasks (RetrievalTask | Sequence[RetrievalTask]): the tasks, with distinct names.
        batch_size (int | None): passed to the encoders when they take ``batch_size``, else set
            as ``embedder.batch_size`` during the run; None keeps the embedder's. Default: None
        progress (bool): show a progress bar over splits. Default: False

    Returns:
        EvaluationResult: nDCG, Recall and MRR at 1 and 10 (and at the main metric's k) per
        split, the tasks' main scores and the LongEmbed average.

    Raises:
        ValueError: on a bad embedder, task list or batch size (before any encoding), or if the
            embedder returns arrays of the wrong shape or non-finite values.
    """
    for method in ("encode_queries", "encode_corpus"):
        if not callable(getattr(embedder, method, None)):
            raise ValueError(f"embedder must have a callable {method}(...) method")
    task_list = [tasks] if isinstance(tasks, RetrievalTask) else list(tasks)
    if not task_list or not all(isinstance(t, RetrievalTask) for t in task_list):
        raise ValueError("tasks must be a RetrievalTask or a non-empty sequence of them")
    names = [t.name for t in task_list]
    if len(set(names)) != len(names):
        raise ValueError(f"tasks must have distinct names, got {names}")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be an int >= 1 or None, got {batch_size!r}")
    from tqdm.auto import tqdm

    k_values = _k_values(task_list)
    total = sum(len(t.splits) for t in task_list)
    results: dict[str, TaskResult] = {}
    with (
        _batch_size(embedder, batch_size) as kwargs,
        tqdm(total=total, disable=not progress, desc="LongEmbed", unit="split") as bar,
    ):
        for task in task_list:
            start = time.perf_counter()
            result = TaskResult(task.name, task.main_metric, {}, {}, {}, {})
            for split_name, split in task.splits.items():
                bar.set_postfix_str(f"{task.name}/{split_name}")
                doc_ids = sorted(split.corpus_ids)  # rank ties go to the smaller document id
                query_ids = list(split.query_ids)
                queries = _embeddings(
                    embedder.encode_queries([task.queries[q] for q in query_ids], **kwargs),
                    len(query_ids),
                    "embedder.encode_queries",
                )
                documents = _embeddings(
                    embedder.encode_corpus(
                        [
                            {
                                "title": task.corpus[d].get("title", ""),
                                "text": task.corpus[d]["text"],
                            }
                            for d in doc_ids
                        ],
                        **kwargs,
                    ),
                    len(doc_ids),
                    "embedder.encode_corpus",
                )
                if queries.shape[1] != documents.shape[1]:
                    raise ValueError(
                        f"query and document embeddings differ in width: {queries.shape[1]} vs "
                        f"{documents.shape[1]}"
                    )
                column = {d: j for j, d in enumerate(doc_ids)}
                relevance = np.zeros((len(query_ids), len(doc_ids)))
                for i, q in enumerate(query_ids):
                    for d, rel in task.qrels.get(q, {}).items():
                        if d in column:
                            relevance[i, column[d]] = rel
                metrics = retrieval_metrics(queries @ documents.T, relevance, k_values)
                result.splits[split_name] = {
                    name: float(values.mean()) for name, values in sorted(metrics.items())
                }
                result.context_lengths[split_name] = split.context_length
                result.num_queries[split_name] = len(query_ids)
                result.num_documents[split_name] = len(doc_ids)
                bar.update(1)
            result.seconds = time.perf_counter() - start
            results[task.name] = result
    name = getattr(embedder, "name", None) or type(embedder).__name__
    return EvaluationResult(str(name), results)


# --------------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------------


def _check_results(results: Mapping[str, EvaluationResult]) -> None:
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty mapping of method name -> EvaluationResult")
    for method, result in results.items():
        if not isinstance(result, EvaluationResult):
            raise ValueError(
                f"results[{method!r}] must be an EvaluationResult, got {type(result).__name__}"
            )


def _length_tasks(results: Mapping[str, EvaluationResult], task: str | None) -> list[str]:
    """The tasks to show: ``task``, else every task with context lengths in any result."""
    available = list(
        dict.fromkeys(
            name for r in results.values() for name, t in r.tasks.items() if t.by_length()
        )
    )
    if task is not None:
        if not any(task in r.tasks for r in results.values()):
            known = sorted({n for r in results.values() for n in r.tasks})
            raise ValueError(f"task {task!r} is in none of the results; they hold {known}")
        return [task]
    if not available:
        raise ValueError("no result holds a task with context lengths (passkey, needle)")
    return available


def compare_markdown(
    results: Mapping[str, EvaluationResult], task: str | None = None, *, metric: str | None = None
) -> str:
    """A Markdown table for one task: a row per method, a column per length, then the average.

    Args:
        results (Mapping[str, EvaluationResult]): method name -> its result.
        task (str | None): the task; None picks the only task with context lengths. Default: None
        metric (str | None): the metric; None takes the task's main metric. Default: None

    Returns:
        str: the table (scores ×100), with a heading naming task and metric.

    Raises:
        ValueError: if ``results`` is empty or the task is missing or ambiguous.
    """
    _check_results(results)
    tasks = _length_tasks(results, task)
    if len(tasks) > 1:
        raise ValueError(f"task must be given when the results hold several tasks: {tasks}")
    name = tasks[0]
    found = [r.tasks[name] for r in results.values() if name in r.tasks]
    metric = metric or found[0].main_metric
    lengths = sorted({n for t in found for n in t.by_length(metric)})
    header = [str(n) for n in lengths] or ["score"]
    lines = [
        f"#### {name}: {_METRIC_LABELS.get(metric, metric)}",
        "",
        "| method | " + " | ".join(header) + " | avg |",
        "|---|" + "---:|" * (len(header) + 1),
    ]
    for method, result in results.items():
        t = result.tasks.get(name)
        if t is None:
            lines.append(f"| {method} | " + " | ".join("–" for _ in header) + " | – |")
            continue
        row = t.by_length(metric)
        cells = [_pct(row[n]) if n in row else "–" for n in lengths] or [_pct(t.average(metric))]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {_pct(t.average(metric))} |")
    return "\n".join(lines) + "\n"


def plot_by_length(
    results: Mapping[str, EvaluationResult],
    path: StrPath,
    *,
    task: str | None = None,
    metric: str | None = None,
    title: str | None = None,
) -> Path:
    """Plot score against context length (log2 axis), one line per method, one panel per task.

    Args:
        results (Mapping[str, EvaluationResult]): method name -> its result.
        path (str | os.PathLike[str]): the PNG to write (atomically).
        task (str | None): one task; None draws every task with context lengths. Default: None
        metric (str | None): the metric; None takes each task's main metric. Default: None
        title (str | None): figure title. Default: None

    Returns:
        Path: ``path``.

    Raises:
        ValueError: if ``results`` is empty or holds no task with context lengths.
        ImportError: if matplotlib is not installed (``pip install matplotlib``).
    """
    _check_results(results)
    tasks = _length_tasks(results, task)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "plot_by_length needs matplotlib: pip install 'papercraft-longembed[plot]'"
        ) from error
    fig, axes = plt.subplots(
        1,
        len(tasks),
        figsize=(4.6 * len(tasks) + 1.6, 3.8),
        dpi=120,
        squeeze=False,
        layout="constrained",
    )
    for ax, name in zip(axes[0], tasks, strict=True):
        label = ""
        for method, result in results.items():
            t = result.tasks.get(name)
            if t is None:
                continue
            chosen = metric or t.main_metric
            label = _METRIC_LABELS.get(chosen, chosen)
            points = t.by_length(chosen)
            if points:
                xs = list(points)
                ax.plot(xs, [100.0 * points[x] for x in xs], marker="o", label=method)
        ax.set_xscale("log", base=2)
        ticks = sorted(
            {n for r in results.values() if name in r.tasks for n in r.tasks[name].by_length()}
        )
        ax.set_xticks(ticks, [f"{n // 1024}k" if n >= 1024 else str(n) for n in ticks])
        ax.set_ylim(-2, 102)
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel(f"{label} (%)")
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    if title:
        fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def load_result(path: StrPath) -> EvaluationResult:
    """Read a result written by :meth:`EvaluationResult.write` (its ``.json`` file).

    Args:
        path (str | os.PathLike[str]): the JSON file.

    Returns:
        EvaluationResult: the result.

    Raises:
        ValueError: if the file is not valid JSON or not an evaluation result.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    return EvaluationResult.from_dict(data)
