"""Evaluate a language model on a VoT task and setting: batched, resumable, fully logged.

:func:`evaluate` builds (or takes) the task's instances, sends each prompt of the chosen setting
to any :class:`~papercraft.core.llm.LanguageModel` (a local transformers model, an
OpenAI-compatible server, or a reference responder), parses and scores every response with the
official rules (:mod:`papercraft.vot.parsing`) and appends one JSON line per instance to the
log: prompt, response, parsed answer, scores and state tracking. A rerun with the same log
skips what is done. The result is a table per level and overall with 95% confidence
intervals (Wilson for rates, a normal interval for the completing rate). Conventions follow
lm-evaluation-harness (``--limit``, ``--log_samples``) and Inspect AI (task = dataset + solver +
scorer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from papercraft.core.data import JsonlAppender, read_jsonl
from papercraft.core.io import StrPath
from papercraft.core.llm import LanguageModel
from papercraft.vot.dataset import Instance, build_task
from papercraft.vot.nlnav import answer_matches
from papercraft.vot.parsing import score_next_step, score_route, score_tiling, tracking
from papercraft.vot.prompts import (
    multimodal_messages,
    regex_patterns,
    resolve_setting,
    resolve_task,
    text_prompt,
)

__all__ = ["METRICS", "EvalResult", "evaluate", "score_response", "select", "wilson_interval"]

#: the headline metrics of each task (all in [0, 1]).
METRICS: dict[str, tuple[str, ...]] = {
    "route-planning": ("completing_rate", "success_rate"),
    "next-step-prediction": ("accuracy",),
    "visual-tiling": ("verbal_accuracy", "overall_accuracy"),
    "natural-language-navigation": ("accuracy",),
}
_CONTINUOUS = {"completing_rate"}
_EXTRA = ("parse_fail", "tracking_complete", "tracking_partial")
_LOG_FORMAT = "papercraft-vot-eval/1"


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% for ``z = 1.96``)."""
    if n <= 0:
        return (0.0, 0.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _mean_interval(values: Sequence[float], z: float = 1.96) -> tuple[float, float]:
    n = len(values)
    if n < 2:
        return (0.0, 1.0) if n else (0.0, 0.0)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = z * math.sqrt(var / n)
    return (max(0.0, mean - half), min(1.0, mean + half))


def _steps(inst: Instance) -> int:
    if inst.task == "route-planning":
        return len(inst.answer)
    if inst.task == "next-step-prediction":
        return inst.desc.count(" to the end of continuous road.")
    return int(inst.difficulty)


def score_response(
    inst: Instance, response: str, *, patterns: Sequence[str] | None = None
) -> tuple[Any, dict[str, float]]:
    """Parse one response and score it: (parsed answer, metric → value incl. tracking).

    Never raises on arbitrary ``response`` text.
    """
    scores: dict[str, float] = {}
    parsed: Any
    if inst.task == "route-planning":
        route = score_route(response, list(inst.answer), patterns)
        parsed = list(route.moves)
        scores.update(completing_rate=route.completing_rate, success_rate=float(route.success))
        scores["parse_fail"] = float(route.parse_fail)
    elif inst.task == "next-step-prediction":
        parsed, correct = score_next_step(inst.desc, response, str(inst.answer), patterns)
        scores.update(accuracy=float(correct), parse_fail=float(parsed == "NULL"))
    elif inst.task == "visual-tiling":
        tiling = score_tiling(inst.desc, response, str(inst.answer), inst.piece_name, patterns)
        parsed = {"verbal": tiling.verbal, "visual": tiling.visual}
        scores.update(
            verbal_accuracy=float(tiling.verbal_correct),
            overall_accuracy=float(tiling.overall_correct),
            parse_fail=float(tiling.parse_fail),
        )
    else:
        correct = answer_matches(response, str(inst.answer))
        parsed = str(inst.answer) if correct else None
        scores.update(accuracy=float(correct), parse_fail=0.0)
    track = tracking(response, _steps(inst))
    scores.update(tracking_complete=float(track.complete), tracking_partial=float(track.partial))
    scores["visualizations"] = float(track.visualizations)
    return parsed, scores


def select(
    instances: Sequence[Instance], *, limit: int | None = None, levels: Sequence[int] | None = None
) -> list[Instance]:
    """Keep the chosen levels, then at most ``limit`` instances spread over the levels.

    ``limit`` takes instances round-robin across levels (each level in its own order), so a
    small limit still covers every level.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    chosen = [i for i in instances if levels is None or i.difficulty in set(levels)]
    if levels is not None and not chosen:
        raise ValueError(f"levels {list(levels)} select no instance")
    if limit is None or limit >= len(chosen):
        return chosen
    by_level: dict[int, list[Instance]] = {}
    for inst in chosen:
        by_level.setdefault(inst.difficulty, []).append(inst)
    queues = [by_level[k] for k in sorted(by_level)]
    picked: list[Instance] = []
    depth = 0
    while len(picked) < limit:
        for queue in queues:
            if depth < len(queue) and len(picked) < limit:
                picked.append(queue[depth])
        depth += 1
    order = {inst.uid: n for n, inst in enumerate(chosen)}
    return sorted(picked, key=lambda inst: order[inst.uid])


@dataclass
class EvalResult:
    """What :func:`evaluate` returns: the records and the table.

    Attributes:
        task (str): the task.
        setting (str): the setting.
        records (list[dict]): one log record per instance (this run's and resumed ones).
        rows (list[dict]): per level and ``"all"``: ``n`` and, per metric, the mean and its
            95% interval (``<metric>``, ``<metric>_low``, ``<metric>_high``).
    """

    task: str
    setting: str
    records: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def overall(self, metric: str) -> float:
        """The overall mean of one metric."""
        return float(self.rows[-1][metric])

    def to_markdown(self) -> str:
        """The table as Markdown (percentages with 95% intervals)."""
        metrics = (*METRICS[self.task], *_EXTRA)
        head = "| level | n | " + " | ".join(metrics) + " |"
        lines = [head, "|" + "---|" * (len(metrics) + 2)]
        for row in self.rows:
            cells = [
                f"{100 * row[m]:.1f} [{100 * row[m + '_low']:.1f}, {100 * row[m + '_high']:.1f}]"
                for m in metrics
            ]
            lines.append(f"| {row['level']} | {row['n']} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _table(task: str, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[Any, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record["difficulty"], []).append(record)
    rows = []
    for level, group in [*sorted(groups.items()), ("all", list(records))]:
        row: dict[str, Any] = {"level": level, "n": len(group)}
        for metric in (*METRICS[task], *_EXTRA):
            values = [float(r["scores"][metric]) for r in group]
            mean = sum(values) / len(values) if values else 0.0
            low, high = (
                _mean_interval(values)
                if metric in _CONTINUOUS
                else wilson_interval(sum(values), len(values))
            )
            row.update({metric: mean, f"{metric}_low": low, f"{metric}_high": high})
        rows.append(row)
    return rows


def _loggable(prompt: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """The prompt for the log, images replaced by a placeholder (they are in the dataset)."""
    if isinstance(prompt, str):
        return prompt
    out = []
    for message in prompt:
        content = message["content"]
        if isinstance(content, list):
            content = [
                {"type": "image_url", "image_url": {"url": "<image>"}}
                if p.get("type") == "image_url"
                else p
                for p in content
            ]
        out.append({**message, "content": content})
    return out


def _read_log(path: Path, task: str, setting: str) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    done = {}
    for n, record in enumerate(read_jsonl(path), start=1):
        if not isinstance(record, dict) or record.get("format") != _LOG_FORMAT:
            raise ValueError(f"log_path {path}:{n} is not a {_LOG_FORMAT} record")
        if (record.get("task"), record.get("setting")) != (task, setting):
            raise ValueError(
                f"log_path {path} holds {record.get('task')}/{record.get('setting')} results, "
                f"not {task}/{setting}; use another file"
            )
        done[record["uid"]] = record
    return done


def evaluate(
    model: LanguageModel,
    task: str,
    setting: str,
    *,
    limit: int | None = None,
    instances: Sequence[Instance] | None = None,
    levels: Sequence[int] | None = None,
    log_path: StrPath | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 2048,
    temperature: float = 0.0,
    chat: bool = False,
    fix_typo: bool = False,
    patterns: str | Sequence[str] | None = "gpt",
) -> EvalResult:
    """Run ``model`` on one task in one setting and score it.

    Args:
        model (LanguageModel): any backend of :mod:`papercraft.core.llm` or a responder of
            :mod:`papercraft.vot.responders`.
        task (str): a task or alias (``route``, ``next-step``, ``tiling``, ``nl-nav``).
        setting (str): ``cot``, ``no-viz``, ``vot`` or ``multimodal-cot``.
        limit (int | None): at most this many instances, spread over the levels (see
            :func:`select`). Default: None (all).
        instances (Sequence[Instance] | None): the instances; None builds the task's full
            benchmark (with images only for ``multimodal-cot``). Default: None.
        levels (Sequence[int] | None): only these levels. Default: None.
        log_path (str | PathLike | None): JSONL log; existing results there are reused (they
            must be of the same task and setting). Default: None (no log, nothing resumed).
        batch_size (int): prompts per model call. Default: 8.
        max_new_tokens (int): generation budget per response. Default: 2048.
        temperature (float): 0 is greedy, as in the paper. Default: 0.0.
        chat (bool): send text prompts as one user message through ``model.chat`` (chat
            models); the multimodal setting always uses ``chat``. Default: False.
        fix_typo (bool): "continuous" instead of the official "continous". Default: False.
        patterns (str | Sequence[str] | None): ``"gpt"`` (built-in parsers), ``"llama"`` (the
            official Llama patterns, navigation tasks) or your own list. Default: "gpt".

    Returns:
        EvalResult: the records of the selected instances and the table.

    Raises:
        ValueError: on a bad argument (before any model call).
    """
    task, setting = resolve_task(task), resolve_setting(setting)
    if setting == "multimodal-cot" and task == "natural-language-navigation":
        raise ValueError("setting 'multimodal-cot' has no image for natural-language-navigation")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(patterns, str):
        override = regex_patterns(task, patterns)
    else:
        override = list(patterns) if patterns is not None else None
    pool = list(instances) if instances is not None else None
    if pool is None:
        pool = build_task(task, images=setting == "multimodal-cot")
    if any(inst.task != task for inst in pool):
        raise ValueError(f"instances must all be {task!r} instances")
    chosen = select(pool, limit=limit, levels=levels)
    if setting == "multimodal-cot":
        lacking = [i.uid for i in chosen if not i.desc_multimodal]
        if lacking:
            raise ValueError(
                f"instances lack desc_multimodal (built without images): {lacking[:3]}"
            )
    path = Path(log_path) if log_path is not None else None
    done = _read_log(path, task, setting) if path is not None else {}
    pending = [inst for inst in chosen if inst.uid not in done]
    log = JsonlAppender(path) if path is not None else None
    new: dict[str, dict[str, Any]] = {}
    try:
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            prompts: list[Any]
            if setting == "multimodal-cot":
                prompts = [
                    multimodal_messages(task, i.desc_multimodal or [], fix_typo=fix_typo)
                    for i in batch
                ]
                responses = model.chat(prompts, max_new_tokens=max_new_tokens,
                                       temperature=temperature)  # fmt: skip
            else:
                prompts = [text_prompt(task, setting, i.desc, fix_typo=fix_typo) for i in batch]
                if chat:
                    conversations = [[{"role": "user", "content": p}] for p in prompts]
                    responses = model.chat(conversations, max_new_tokens=max_new_tokens,
                                           temperature=temperature)  # fmt: skip
                else:
                    responses = model.generate(prompts, max_new_tokens=max_new_tokens,
                                               temperature=temperature)  # fmt: skip
            for inst, prompt, response in zip(batch, prompts, responses, strict=True):
                parsed, scores = score_response(inst, response, patterns=override)
                record = {
                    "format": _LOG_FORMAT,
                    "uid": inst.uid,
                    "instance_id": inst.instance_id,
                    "task": task,
                    "setting": setting,
                    "difficulty": inst.difficulty,
                    "prompt": _loggable(prompt),
                    "response": response,
                    "parsed": parsed,
                    "answer": inst.answer,
                    "scores": scores,
                }
                new[inst.uid] = record
                if log is not None:
                    log.append(record)
    finally:
        if log is not None:
            log.close()
    records = [new.get(inst.uid) or done[inst.uid] for inst in chosen]
    return EvalResult(task, setting, records, _table(task, records))
