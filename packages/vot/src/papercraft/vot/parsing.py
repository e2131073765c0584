"""Answer parsers and metrics, as the official evaluation scripts define them.

Each parser takes arbitrary model output and never raises (fuzzed with hypothesis in the tests).

- **Route planning** (``route-planning/util.py``): look for a summary (``so/thus … is/are:``,
  ``the steps … are:``, ``summary of steps:``) and take every direction word after the first one
  that is followed by any; else read one move per line with the instruction patterns (after
  cutting a repeated summary). Consecutive repeats are merged. Scored by
  :func:`papercraft.vot.navigation.route_scores` (completing rate, success, the 100-move cut).
- **Next-step prediction** (``next-step-prediction/util.py``): single-line option patterns from
  the last line up, then two multi-line patterns, then "none"/"mistake" phrases; a bare option
  letter becomes its direction through the question's option list. Correct when the parsed
  answer occurs in the gold answer.
- **Visual tiling** (``visual-tiling/util.py``): a verbal answer (A/B/C) from the last line up;
  a visual answer from the last fenced grid of the output (pre-filled squares unchanged, the
  asked piece's cells cropped to their bounding box and looked up among the listed
  variations). Verbal accuracy counts the verbal answer; overall accuracy also counts the
  visual one when the verbal one is wrong.
- **Natural-language navigation**: the object's name occurs in the output (case-insensitive).
- **State tracking** (paper Section 5.1): how many visualizations (grids drawn as text) the
  output holds; *complete* tracking when there is at least one per reasoning step, *partial*
  when at least one comes before the end of the answer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from papercraft.vot.navigation import route_scores

__all__ = [
    "NULL",
    "RouteResult",
    "TilingResult",
    "Tracking",
    "count_visualizations",
    "parse_next_step",
    "parse_route",
    "parse_tiling_verbal",
    "parse_tiling_visual",
    "score_next_step",
    "score_route",
    "score_tiling",
    "tracking",
]

#: what a parser returns when it finds no answer (the official ``default_answer``).
NULL = "NULL"

_DIR = r"(left(?:ward|wards)?|right(?:ward|wards)?|up(?:ward|wards)?|down(?:ward|wards)?)"
_SUMMARY = ("(?:so|thus)[^.!?]*(?:is|are):", "the steps[^,.!?]*(?:are|were):", "summary of steps:")
_REPEATS = (*_SUMMARY, "visual representation", "destination", "reach 🏢")
_ROUTE_PATTERNS = (
    r"\d+[:\.].*?(?:mov(?:e|ing)|take(?:\s+the)?|go(?:ing)?)\s+" + _DIR,
    r"^\d+\.\s*" + _DIR,
    r"mov(?:e|ing) " + _DIR + ":",
    r"- .*(?:we can )?(?:only )?move " + _DIR,
)
_COMPASS = {"west": "left", "east": "right", "north": "up", "south": "down"}


def _compile(patterns: Sequence[str], flags: int = 0) -> list[re.Pattern[str]]:
    out = []
    for i, pattern in enumerate(patterns):
        try:
            out.append(re.compile(pattern, flags))
        except re.error as error:
            raise ValueError(f"patterns[{i}] is not a valid regex ({error}): {pattern!r}") from None
    return out


def _direction_summary(output: str) -> list[str]:
    for pattern in _SUMMARY:
        for match in re.finditer(pattern, output, re.IGNORECASE):
            found = re.findall(r"\b(?:up|left|down|right)\b", output[match.end() :], re.IGNORECASE)
            if found:
                return [d.lower() for d in found]
    return []


def _cut_repeated_summary(lines: list[str]) -> list[str]:
    move = re.compile(r"mov(?:e|ing) " + _DIR, re.IGNORECASE)
    for pattern in _REPEATS:
        seen_move = False
        for index, line in enumerate(lines):
            seen_move = seen_move or move.search(line) is not None
            if index and re.search(pattern, line, re.IGNORECASE):
                if not seen_move:
                    break
                return lines[: index + 1]
    return lines


def _route_moves(output: str, patterns: Sequence[str] | None) -> list[str]:
    """The per-line moves (before merging), as ``parse_instructions``."""
    lines = output.split("\n")
    if not patterns:
        lines = _cut_repeated_summary(lines)
    compiled = _compile(patterns or _ROUTE_PATTERNS, re.IGNORECASE)
    moves: list[str] = []
    for line in lines:
        for pattern in compiled:  # every matching pattern adds a move, as officially
            match = pattern.search(line)
            if match and match.groups() and match.group(1):
                word = match.group(1).lower().split("ward")[0]
                moves.append(_COMPASS.get(word, word))
    return [m for m in moves if m in ("up", "left", "down", "right")]


def parse_route(output: str, patterns: Sequence[str] | None = None) -> list[str]:
    """The moves of a route-planning answer, consecutive repeats merged.

    Args:
        output (str): the model's response.
        patterns (Sequence[str] | None): per-line regexes whose group 1 is a direction, to use
            instead of the built-in ones (e.g. :func:`papercraft.vot.prompts.regex_patterns`
            ``(task, "llama")``). Default: None.

    Returns:
        list[str]: directions from ``up``, ``left``, ``down``, ``right``.
    """
    moves = _direction_summary(output) or _route_moves(output, patterns)
    merged: list[str] = []
    for move in moves:
        if not merged or merged[-1] != move:
            merged.append(move)
    return merged


@dataclass(frozen=True)
class RouteResult:
    """The score of one route-planning answer."""

    moves: tuple[str, ...]
    completing_rate: float
    success: bool

    @property
    def parse_fail(self) -> bool:
        """bool: no move was found."""
        return not self.moves


def score_route(
    output: str, answer: Sequence[str], patterns: Sequence[str] | None = None
) -> RouteResult:
    """Parse and score a route-planning answer against the gold directions."""
    moves = parse_route(output, patterns)
    rate, success = route_scores(moves, answer)
    return RouteResult(tuple(moves), rate, success)


_NEXT_STEP_PATTERNS = (
    r"[A-D]\. (\w+)\.",
    r"[A-D]\. (\w+)$",
    r"[A-D]\.(\w+)\.",
    r"[A-D]\.(\w+)$",
    r"(?:is|be) [A-D]\. (\w+)[,]",
    r"(Up|up|Right|right|Down|down|Left|left) \([A-D]\)",
    r"\([A-D]\. (\w+)\)",
    r'"[A-D]\. (\w+)"',
    r"\**[A-D]\. (\w+)\**",
    r"\**Answer:\** ([A-D])",
    r"\*\*([A-D])\*\*",
    r"answer is[\s*:]\s*\**([A-D])\**\.",
    r"(?:\"|`|\*\*)?(Up|up|Right|right|Down|down|Left|left)(?:\"|`|\*\*)? \((?:option )?[A-D]\)",
    _DIR + r" \([A-D]\)",
)
_NEXT_STEP_MULTILINE = (
    r"\n\n[A-D]\. (?:Move |move )?(\w+).*$\n(?![B-D]\. )",
    r":\n[A-D]\. (?:Move |move )?(\w+).*$\n(?![B-D]\. )",
)
_NONE_PATTERNS = (
    r"none of (?:the above|them)",
    r"next movement (?:is|would be) not (?:applicable|necessary)",
    r"there (?:is|would be) no next movement",
    r"there(?:'s| is| would be) no need for",
    r"no further \b\w+\b (?:is |are |would be )?(?:required|necessary|needed)",
    r"cannot (\b\w+\b )?(?:proceed|determine)",
    r"\bNone\b",
)


def _first_group(pattern: re.Pattern[str], text: str) -> str:
    match = pattern.search(text)
    if match is None or not match.groups() or match.group(1) is None:
        return ""
    return match.group(1)


def parse_next_step(problem: str, output: str, patterns: Sequence[str] | None = None) -> str:
    """The direction a next-step answer picks, as ``next-step-prediction/util.py`` reads it.

    Args:
        problem (str): the question (its option list maps a bare letter to a direction).
        output (str): the model's response.
        patterns (Sequence[str] | None): single-line patterns to use instead of the built-in
            ones. Default: None.

    Returns:
        str: a lower-case direction, ``"None"`` / ``"Incorrect"`` (the model says there is no
        next move / that something is wrong), or :data:`NULL`.
    """
    parsed = ""
    compiled = _compile(patterns or _NEXT_STEP_PATTERNS)
    for line in reversed(output.split("\n")):
        for pattern in compiled:
            parsed = _first_group(pattern, line)
            if parsed:
                break
        if parsed:
            break
    if not parsed:
        text = output + "\n"
        for multiline in _NEXT_STEP_MULTILINE:
            found = re.findall(multiline, text, re.MULTILINE)
            if found:
                parsed = found[-1]
                break
    parsed = parsed.split("ward")[0].lower()
    if not parsed:
        if any(re.search(p, output, re.IGNORECASE) for p in _NONE_PATTERNS):
            return "None"
        if re.search(r"\b(?:mistake|error|discrepancy)\b", output, re.IGNORECASE):
            return "Incorrect"
        return NULL
    if len(parsed) == 1:  # an option letter
        lower = problem.lower()
        for direction in ("up", "left", "down", "right"):
            if f"{parsed}. {direction}" in lower:
                return direction
        return NULL
    return parsed


def score_next_step(
    problem: str, output: str, answer: str, patterns: Sequence[str] | None = None
) -> tuple[str, bool]:
    """(parsed answer, correct): correct when the parsed answer occurs in ``answer``."""
    parsed = parse_next_step(problem, output, patterns)
    return parsed, parsed != NULL and parsed in answer


def _tiling_patterns(name: str) -> list[str]:
    piece = re.escape(name)
    return [
        r"([A-C])\. Neither",
        r"([A-C])\.Neither",
        r"([A-B])\. (\d+) ",
        r"([A-B])\. (\d+),",
        r"([A-B])\. (\d+)\.",
        r"([A-B])\. (\d+)$",
        r"([A-B])\.(\d+) ",
        r"([A-B])\.(\d+),",
        r"([A-B])\.(\d+)\.",
        r"([A-B])\.(\d+)$",
        r"(?:V|v)ariation \d+ \(([A-B])\)",
        r"([A-B]) \(Variation \d+\)",
        r"Answer\**:\** ([A-C])",
        r"answer is \**([A-C])\**",
        r"([A-B])\. (\d+)\*\*",
        r"\*\*([A-C])\*\*",
        rf"{piece} is ([A-B])",
        rf"{piece} is (?:\*\*)?(?:Variation )?(\d+)",
        rf"{piece}[^,.]*Variation (\d+)[^,.]*is (?:the )?correct",
    ]


def _option_of_variation(variation: str, problem: str) -> str:
    if f"A. {variation}" in problem:
        return "A"
    return "B" if f"B. {variation}" in problem else "C"


def parse_tiling_verbal(
    problem: str, output: str, name: str, patterns: Sequence[str] | None = None
) -> str:
    """The option (``A``/``B``/``C``) a tiling answer states, or :data:`NULL`.

    Args:
        problem (str): the question (a variation number is mapped to its option).
        output (str): the model's response.
        name (str): the asked piece's name, e.g. ``"Tetromino T"``.
        patterns (Sequence[str] | None): patterns to use instead of the built-in ones (the
            official script accepts but ignores them). Default: None.
    """
    compiled = _compile(patterns or _tiling_patterns(name))
    for line in reversed(output.split("\n")):
        for pattern in compiled:
            found = _first_group(pattern, line)
            if found:
                return found if found.isalpha() else _option_of_variation(found, problem)
    return NULL


def _grids(text: str) -> list[str]:
    return re.findall(r"```\n(.*?)\n```", text, re.DOTALL)


def parse_tiling_visual(problem: str, output: str, name: str) -> str:
    """The option whose variation the last grid of the output draws for the asked piece.

    The grid must have the question's board size with every pre-filled square unchanged; the
    asked piece's cells (its colour in the question's list) are cropped to their bounding box,
    which must be one of the variations listed in the question.

    Returns:
        str: ``A``, ``B``, ``C`` or :data:`NULL`.
    """
    empty = "⬜"
    colour = re.search(rf"{re.escape(name)} \((.)\)", problem, re.DOTALL)
    board = _grids(problem)
    drawn = _grids(output)
    if colour is None or not board or not drawn:
        return NULL
    emoji, original, final = colour.group(1), board[0], drawn[-1]
    if len(original) != len(final):
        return NULL
    if any(a != b and a != empty for a, b in zip(original, final, strict=True)):
        return NULL
    rows = [
        "".join(ch if ch == emoji else empty for ch in line)
        for line in final.replace(" ", "").split("\n")
    ]
    hits = [(r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch == emoji]
    if not hits:
        return NULL
    top, bottom = min(r for r, _ in hits), max(r for r, _ in hits)
    left, right = min(c for _, c in hits), max(c for _, c in hits)
    crop = "\n".join(row[left : right + 1] for row in rows[top : bottom + 1])
    block = f"\n```\n{crop}\n```"
    if block not in problem:
        return NULL
    match = re.search(r"Variation (\d+) fitting into its bounding box:" + re.escape(block), problem)
    if match is None:
        return NULL
    return _option_of_variation(match.group(1), problem)


@dataclass(frozen=True)
class TilingResult:
    """The score of one tiling answer."""

    verbal: str
    visual: str
    verbal_correct: bool
    visual_correct: bool

    @property
    def overall_correct(self) -> bool:
        """bool: verbal correct, or visual correct when the verbal answer is not."""
        return self.verbal_correct or self.visual_correct

    @property
    def parse_fail(self) -> bool:
        """bool: no verbal answer was found."""
        return self.verbal == NULL


def score_tiling(
    problem: str, output: str, answer: str, name: str, patterns: Sequence[str] | None = None
) -> TilingResult:
    """Parse and score a tiling answer (verbal and visual) against the gold option."""
    verbal = parse_tiling_verbal(problem, output, name, patterns)
    visual = parse_tiling_visual(problem, output, name)
    return TilingResult(
        verbal, visual, verbal != NULL and verbal in answer, visual != NULL and visual in answer
    )


def _cells_in(line: str) -> int:
    """Grid cells on a line: pictographs / geometric shapes, or table columns."""
    symbols = sum(1 for ch in line if unicodedata.category(ch) == "So")
    return max(symbols, line.count("|") - 1)


def _visual_blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(first, last) line numbers of every visualization (see :func:`count_visualizations`)."""
    blocks: list[tuple[int, int]] = []
    fence: int | None = None
    run_start: int | None = None
    for i, line in enumerate([*lines, ""]):
        if fence is not None:
            if line.strip().startswith("```"):
                if sum(1 for x in lines[fence + 1 : i] if x.strip()) >= 2:
                    blocks.append((fence, i))
                fence = None
            continue
        if i < len(lines) and _cells_in(line) >= 2:
            run_start = i if run_start is None else run_start
            continue
        if run_start is not None and i - run_start >= 2:
            blocks.append((run_start, i - 1))
        run_start = None
        if i < len(lines) and line.strip().startswith("```"):
            fence = i
    return blocks


def count_visualizations(output: str) -> int:
    """How many grids the output draws as text.

    A visualization is a fenced block holding at least two non-empty lines, or, outside
    fences, a run of at least two consecutive lines with at least two grid cells each (emoji /
    symbols, or ``|``-separated columns).
    """
    return len(_visual_blocks(output.split("\n")))


@dataclass(frozen=True)
class Tracking:
    """State tracking in one output (paper Section 5.1)."""

    visualizations: int
    steps: int
    partial: bool

    @property
    def complete(self) -> bool:
        """bool: at least one visualization per reasoning step."""
        return self.steps > 0 and self.visualizations >= self.steps


def tracking(output: str, steps: int) -> Tracking:
    """Count visualizations against the instance's reasoning steps.

    Args:
        output (str): the model's response.
        steps (int): reasoning steps of the instance (moves of the route, moves given plus the
            one asked, pieces to place, walk steps).

    Returns:
        Tracking: *partial* when text follows the first visualization (the answer comes
        after a drawing).
    """
    lines = output.split("\n")
    blocks = _visual_blocks(lines)
    partial = False
    if blocks:
        inside = {i for first, last in blocks for i in range(first, last + 1)}
        partial = any(
            line.strip() and i > blocks[0][1] and i not in inside for i, line in enumerate(lines)
        )
    return Tracking(len(blocks), steps, partial)
