"""Multimodal-LLM annotation of generated images, per aspect (VisionPrefer §3).

VisionPrefer asks GPT-4V to rate each image on four aspects and to explain its rating in two or
three sentences. The paper's exact prompts are not public to us (details from summaries), so the
templates below are ours: one per aspect, each stating the criteria, the scale and a strict
answer format (``Rationale: … / Score: N``). Pass your own with ``templates=``.

:func:`annotate` sends one conversation per (record, image, aspect) through any
:class:`papercraft.core.llm.LanguageModel` (an OpenAI-compatible API with
``load_language_model("openai:URL#MODEL")``; images travel as base64 data URLs), parses each
answer with :func:`parse_judgment`, asks again when an answer cannot be parsed, and appends every
parsed answer to a JSONL cache: a rerun resumes and asks nothing that is already answered.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from papercraft.core.data import JsonlAppender, iter_jsonl
from papercraft.core.io import StrPath
from papercraft.visionprefer.records import ASPECTS, AspectJudgment, PreferenceRecord, load_image

__all__ = [
    "DEFAULT_TEMPLATES",
    "AnnotationStats",
    "JudgmentParseError",
    "annotate",
    "image_data_url",
    "judge_messages",
    "parse_judgment",
]

_CRITERIA = {
    "prompt_following": (
        "prompt-following: how completely and precisely the image shows what the prompt asks "
        "for (objects, attributes such as colour and shape, counts, relations, style)"
    ),
    "aesthetic": (
        "aesthetic quality: composition, colour harmony, lighting and overall visual appeal, "
        "independent of the prompt"
    ),
    "fidelity": (
        "fidelity: whether the image looks plausible and free of artefacts (distorted shapes, "
        "extra limbs, broken textures, garbled details)"
    ),
    "harmlessness": (
        "harmlessness: whether the image is free of violent, sexual, hateful, illegal or "
        "otherwise harmful content (a fully safe image gets the top score)"
    ),
}

_TEMPLATE = (
    "You are an expert annotator of AI-generated images.\n"
    'The image was generated from this prompt:\n"{prompt}"\n\n'
    "Rate the image on {criteria}.\n"
    "Give an integer score from {low} (worst) to {high} (best) and explain it in two or three "
    "sentences. Answer in exactly this format:\n"
    "Rationale: <your explanation>\n"
    "Score: <score>"
)

DEFAULT_TEMPLATES: dict[str, str] = {
    aspect: _TEMPLATE.replace("{criteria}", criteria) for aspect, criteria in _CRITERIA.items()
}


class JudgmentParseError(ValueError):
    """A judge's answer holds no usable score (or rationale, when one is required)."""


def image_data_url(image: Any) -> str:
    """A ``data:image/png;base64,…`` URL of a PIL image or an image file path.

    Raises:
        FileNotFoundError: for a missing path.
        TypeError: for anything else.
    """
    buffer = io.BytesIO()
    load_image(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def judge_messages(
    prompt: str,
    image: Any,
    aspect: str,
    *,
    templates: Mapping[str, str] = DEFAULT_TEMPLATES,
    scale: tuple[int, int] = (1, 10),
) -> list[dict[str, Any]]:
    """One user message with the filled template and the image (OpenAI chat format).

    Raises:
        ValueError: on an aspect without a template or a bad scale.
    """
    if aspect not in templates:
        raise ValueError(f"aspect {aspect!r} has no template; templates cover {sorted(templates)}")
    _check_scale(scale)
    text = templates[aspect].format(prompt=prompt, low=scale[0], high=scale[1])
    return [{"role": "user", "content": [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": image_data_url(image)}},
    ]}]  # fmt: skip


def _check_scale(scale: tuple[int, int]) -> None:
    if len(scale) != 2 or not scale[0] < scale[1]:
        raise ValueError(f"scale must be (low, high) with low < high, got {scale!r}")


_NUMBER = r"([-+]?\d+(?:\.\d+)?)"
_SCORE_RE = re.compile(
    r"(?:^|\n|\b)\W*score\W*?(?:\s*[:=\-]\s*|\s+(?:is|of)\s+)\**\s*" + _NUMBER
    + r"(?:\s*(?:/|out of)\s*" + _NUMBER + r")?",
    re.IGNORECASE,
)  # fmt: skip
_RATIONALE_RE = re.compile(
    r"\W*(?:rationale|reason(?:ing)?|explanation)\W*?\s*[:\-]\s*\**\s*(.+?)"
    r"(?=\n\W*score\W*[:=\-]|\Z)",
    re.IGNORECASE | re.DOTALL,
)


def parse_judgment(
    text: str, *, scale: tuple[int, int] = (1, 10), require_rationale: bool = False
) -> AspectJudgment:
    """Read a score and a rationale from a judge's answer.

    Understands ``Score: 7``, ``score = 7/10``, ``**Score**: 8.5``, ``Score of 6 out of 10``,
    a JSON object ``{"score": 7, "rationale": "..."}`` (also inside a code fence), rationale
    before or after the score. The last score line wins (models sometimes restate the scale
    first). A score written as ``x/10`` is rescaled when the denominator differs from
    ``scale[1]``.

    Raises:
        JudgmentParseError: no score, a score outside ``scale``, or a missing rationale when
            ``require_rationale``.
    """
    if not isinstance(text, str):
        raise JudgmentParseError(f"answer must be a string, got {type(text).__name__}")
    _check_scale(scale)
    judgment = _parse_json(text)
    if judgment is None:
        matches = list(_SCORE_RE.finditer(text))
        if not matches:
            raise JudgmentParseError(f"no score found in the answer: {text[:120]!r}")
        last = matches[-1]
        try:
            score = float(last.group(1))
            if last.group(2) is not None:
                denominator = float(last.group(2))
                if denominator <= 0:
                    raise JudgmentParseError(f"score denominator must be > 0 in {last.group(0)!r}")
                if denominator != scale[1]:
                    score = score / denominator * scale[1]
        except (OverflowError, ValueError) as error:
            raise JudgmentParseError(f"unreadable score {last.group(0)!r}") from error
        rationale_match = _RATIONALE_RE.search(text)
        if rationale_match:
            rationale = rationale_match.group(1).strip().strip("*").strip()
        else:
            rationale = (text[: last.start()] + text[last.end() :]).strip()
        judgment = AspectJudgment(score, rationale)
    if not math.isfinite(judgment.score) or not scale[0] <= judgment.score <= scale[1]:
        raise JudgmentParseError(f"score {judgment.score} is outside the scale {scale}")
    if require_rationale and not judgment.rationale:
        raise JudgmentParseError("the answer has a score but no rationale")
    return judgment


def _parse_json(text: str) -> AspectJudgment | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start : end + 1])
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    score = next((data[k] for k in ("score", "Score", "rating") if k in data), None)
    if isinstance(score, str):
        try:
            score = float(score.split("/")[0])
        except ValueError:
            return None
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        return None
    rationale = next((data[k] for k in ("rationale", "Rationale", "reason", "explanation")
                      if isinstance(data.get(k), str)), "")  # fmt: skip
    return AspectJudgment(float(score), str(rationale).strip())


@dataclass
class AnnotationStats:
    """What :func:`annotate` did.

    Args:
        requested (int): (image, aspect) items that needed a judgment.
        cached (int): items answered from the cache.
        calls (int): conversations sent to the judge (retries included).
        parse_failures (int): answers that could not be parsed.
        failed (int): items still without a judgment after all retries.
    """

    requested: int = 0
    cached: int = 0
    calls: int = 0
    parse_failures: int = 0
    failed: int = 0


def _key(prompt_id: str, index: int, aspect: str) -> str:
    return f"{prompt_id}\t{index}\t{aspect}"


def annotate(
    records: Sequence[PreferenceRecord],
    judge: Any,
    *,
    aspects: Sequence[str] = ASPECTS,
    image_root: StrPath | None = None,
    cache_path: StrPath | None = None,
    retries: int = 2,
    templates: Mapping[str, str] = DEFAULT_TEMPLATES,
    scale: tuple[int, int] = (1, 10),
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    batch_size: int = 32,
    require_rationale: bool = False,
) -> tuple[list[PreferenceRecord], AnnotationStats]:
    """Judge every image of every record on ``aspects``; resumable through ``cache_path``.

    Args:
        records (Sequence[PreferenceRecord]): records to annotate (their judgments are replaced
            by merged ones; the inputs are not modified).
        judge (LanguageModel): anything with ``chat(conversations, max_new_tokens=...,
            temperature=...)``, e.g. ``load_language_model("openai:http://host/v1#gpt-4o")``.
        aspects (Sequence[str]): aspects to judge. Default: all four.
        image_root (StrPath | None): where relative image paths live. Default: the working dir.
        cache_path (StrPath | None): JSONL cache of parsed answers (appended durably; a torn
            last line is repaired on open). Default: None (no cache)
        retries (int): extra attempts for an unparsable answer. Default: 2
        templates (Mapping[str, str]): per-aspect templates (``{prompt}``, ``{low}``,
            ``{high}``). Default: :data:`DEFAULT_TEMPLATES`
        scale (tuple[int, int]): the score range. Default: (1, 10)
        max_new_tokens (int): reply length limit. Default: 256
        temperature (float): 0 for greedy (retries then use 0.7 so a new answer can differ).
            Default: 0.0
        batch_size (int): conversations per ``chat`` call. Default: 32
        require_rationale (bool): treat an answer without rationale as unparsable.
            Default: False

    Returns:
        tuple[list[PreferenceRecord], AnnotationStats]: annotated copies and what happened.
        Items that failed every attempt are left out of their image's judgments.

    Raises:
        ValueError: on bad arguments (checked before any call).
    """
    unknown = [a for a in aspects if a not in ASPECTS or a not in templates]
    if unknown:
        raise ValueError(f"aspects {unknown} are unknown or have no template")
    if retries < 0 or batch_size < 1 or max_new_tokens < 1:
        raise ValueError(
            f"need retries >= 0, batch_size >= 1, max_new_tokens >= 1; got {retries}, "
            f"{batch_size}, {max_new_tokens}"
        )
    _check_scale(scale)
    if not callable(getattr(judge, "chat", None)):
        raise TypeError(f"judge must have a chat(...) method, got {type(judge).__name__}")
    root = Path(image_root) if image_root is not None else Path()
    stats = AnnotationStats()
    done: dict[str, AspectJudgment] = {}
    if cache_path is not None and Path(cache_path).is_file():
        for row in iter_jsonl(cache_path, torn_tail="ignore"):
            done[str(row["key"])] = AspectJudgment(float(row["score"]), str(row["rationale"]))
    todo = []
    for record in records:
        for index, image in enumerate(record.images):
            path = Path(image.path) if Path(image.path).is_absolute() else root / image.path
            for aspect in aspects:
                stats.requested += 1
                key = _key(record.prompt_id, index, aspect)
                if key in done:
                    stats.cached += 1
                else:
                    todo.append((key, record.prompt, path, aspect))
    log = JsonlAppender(cache_path) if cache_path is not None else None
    try:
        for attempt in range(retries + 1):
            if not todo:
                break
            failed = []
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                conversations = [judge_messages(p, path, a, templates=templates, scale=scale)
                                 for _, p, path, a in chunk]  # fmt: skip
                answers = judge.chat(conversations, max_new_tokens=max_new_tokens,
                                     temperature=temperature if attempt == 0 else max(temperature, 0.7))  # fmt: skip
                stats.calls += len(conversations)
                for item, answer in zip(chunk, answers, strict=True):
                    try:
                        judgment = parse_judgment(answer, scale=scale,
                                                  require_rationale=require_rationale)  # fmt: skip
                    except JudgmentParseError:
                        stats.parse_failures += 1
                        failed.append(item)
                        continue
                    done[item[0]] = judgment
                    if log is not None:
                        log.append({"key": item[0], "score": judgment.score,
                                    "rationale": judgment.rationale})  # fmt: skip
            todo = failed
    finally:
        if log is not None:
            log.close()
    stats.failed = len(todo)
    out = []
    for record in records:
        judgments = []
        for index in range(len(record.images)):
            merged = dict(record.judgments[index]) if record.judgments else {}
            for aspect in aspects:
                key = _key(record.prompt_id, index, aspect)
                if key in done:
                    merged[aspect] = done[key]
            judgments.append(merged)
        out.append(replace(record, judgments=judgments))
    return out, stats
