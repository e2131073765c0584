"""Reference responders that prove the harness: an oracle and two guessers.

They implement the core's :class:`~papercraft.core.llm.LanguageModel` protocol (``generate`` and
``chat``; ``loglikelihood`` raises :class:`~papercraft.core.llm.LogprobsNotSupportedError`), so
:func:`papercraft.vot.evaluate` runs them exactly as it runs a real model. Each finds the
instance a prompt was built from (the prompt starts with the instance's description) and
answers in the words a model would use, so the official parsers have to read them:

- :class:`OracleModel` writes the solver's answer, VoT style: a visualization after every
  reasoning step, then the answer. It must score 100% with complete state tracking.
- :class:`RandomModel` picks uniformly: one of the four next-step options (25%), A/B/C for
  tiling (1/3), an object of the map for NL navigation (``1/size²``), a random route.
- :class:`PerpendicularModel` answers next-step questions with a random turn of 90° from the
  last move: since routes alternate axes the answer is always such a turn, so it scores 50%.
  Other tasks fall back to :class:`RandomModel`.

Answers are drawn from ``random.Random(f"{seed}/{puzzle_path}")``, independent of batching.
"""

from __future__ import annotations

import abc
import json
import random
import re
from collections.abc import Sequence
from typing import Any

from papercraft.core.llm import LoglikelihoodResult, LogprobsNotSupportedError, Message
from papercraft.vot.dataset import Instance
from papercraft.vot.navigation import DIRECTIONS, OBSTACLE, START
from papercraft.vot.tiling import fenced

__all__ = ["OracleModel", "PerpendicularModel", "RandomModel"]

_OPTION = {"up": "A", "left": "B", "down": "C", "right": "D"}
_TURNS = {"up": ("left", "right"), "down": ("left", "right"),
          "left": ("up", "down"), "right": ("up", "down")}  # fmt: skip
_MARK = "📍"


class _Responder(abc.ABC):
    """Finds the instance behind a prompt and answers it (see the subclasses)."""

    def __init__(self, instances: Sequence[Instance], *, seed: int = 0) -> None:
        if not instances:
            raise ValueError("instances must not be empty")
        self.seed = seed
        self._by_desc: dict[str, Instance] = {}
        self._by_parts: dict[tuple[str, ...], Instance] = {}
        for inst in instances:
            self._by_desc[inst.desc] = inst
            if inst.desc_multimodal:
                self._by_parts[_parts(inst.desc_multimodal)] = inst
        self._lengths = sorted({len(d) for d in self._by_desc}, reverse=True)
        self._counts = sorted({len(k) for k in self._by_parts}, reverse=True)

    def find(self, prompt: str) -> Instance:
        """The instance whose description starts ``prompt``."""
        text = prompt.replace("continous", "continuous")
        for length in self._lengths:
            inst = self._by_desc.get(text[:length])
            if inst is not None:
                return inst
        raise ValueError("prompt was not built from any of this responder's instances")

    def _find_chat(self, conversation: list[Message]) -> Instance:
        parts = _parts(conversation)
        for count in self._counts:
            inst = self._by_parts.get(parts[:count])
            if inst is not None:
                return inst
        user = [m for m in conversation if m.get("role") == "user"]
        content = user[-1]["content"] if user else ""
        text = content if isinstance(content, str) else "\n".join(_texts([user[-1]]))
        return self.find(text)

    @abc.abstractmethod
    def respond(self, inst: Instance, rng: random.Random) -> str:
        """The response to one instance."""

    def _answer(self, inst: Instance) -> str:
        return self.respond(inst, random.Random(f"{self.seed}/{inst.puzzle_path}"))

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """Answer each prompt (the sampling arguments are accepted and ignored)."""
        return [self._answer(self.find(p)) for p in prompts]

    def chat(
        self,
        conversations: Sequence[list[Message]],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """Answer each conversation (its text parts identify the instance)."""
        return [self._answer(self._find_chat(c)) for c in conversations]

    def loglikelihood(
        self, contexts: Sequence[str], continuations: Sequence[str]
    ) -> list[LoglikelihoodResult]:
        """Not available: responders write text only."""
        raise LogprobsNotSupportedError(f"{type(self).__name__} has no log-probabilities")


def _parts(messages: list[dict[str, Any]]) -> tuple[str, ...]:
    """Every message part (text and image alike), serialised, in order."""
    out: list[str] = []
    for message in messages:
        content = message.get("content")
        parts = [content] if isinstance(content, str) else content
        if isinstance(parts, list):
            out.extend(json.dumps(p, sort_keys=True, ensure_ascii=False) for p in parts)
    return tuple(out)


def _texts(messages: list[dict[str, Any]]) -> tuple[str, ...]:
    out: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.extend(
                p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text"
            )
    return tuple(out)


def _grid_with(inst: Instance, position: Sequence[int]) -> str | None:
    grid = inst.meta.get("grid")
    if not grid:
        return None
    rows = [list(row) for row in grid]
    r, c = position
    if rows[r][c] not in (START, OBSTACLE):
        rows[r][c] = _MARK
    return fenced("".join(row) for row in rows)


def _walk(inst: Instance, moves: Sequence[str]) -> list[tuple[int, int]]:
    """Positions after each move, on the instance's grid (meta) — the simulator's rule."""
    grid = inst.meta.get("grid") or []
    y, x = inst.meta.get("start", (0, 0))
    vec = {"up": (-1, 0), "left": (0, -1), "down": (1, 0), "right": (0, 1)}
    out = []
    for move in moves:
        dy, dx = vec[move]
        while 0 <= y + dy < len(grid) and 0 <= x + dx < len(grid[0]):
            if grid[y + dy][x + dx] == OBSTACLE:
                break
            y, x = y + dy, x + dx
        out.append((y, x))
    return out


def _given_moves(desc: str) -> list[str]:
    return re.findall(r"^\d+\. Move (up|left|down|right) to the end", desc, re.MULTILINE)


def _nl_grid(inst: Instance, position: Sequence[int]) -> str:
    """The NL-navigation map as a table, top row first, the cell at ``position`` starred."""
    objects, size = inst.meta["objects"], int(inst.meta["size"])
    rows = []
    for y in reversed(range(size)):  # objects are in snake order from the bottom-left
        row = objects[y * size : (y + 1) * size]
        row = row if y % 2 == 0 else row[::-1]
        rows.append(
            [f"*{name}*" if [x, y] == list(position) else name for x, name in enumerate(row)]
        )
    return fenced("| " + " | ".join(r) + " |" for r in rows)


class OracleModel(_Responder):
    """Answers every instance correctly, drawing the state after each step.

    Args:
        instances (Sequence[Instance]): the instances it may be asked about.
        seed (int): unused by the oracle; kept for a uniform signature. Default: 0.
    """

    def respond(self, inst: Instance, rng: random.Random) -> str:
        """The correct answer, with visualizations."""
        del rng
        if inst.task == "route-planning":
            lines = ["Let's move step by step."]
            for i, (move, pos) in enumerate(
                zip(inst.answer, _walk(inst, inst.answer), strict=False), 1
            ):
                lines.append(f"{i}. Move {move} to the end of the continuous road.")
                drawn = _grid_with(inst, pos)
                if drawn:
                    lines.append(drawn)
            lines.append(f"So the steps are: {', '.join(inst.answer)}.")
            return "\n".join(lines)
        if inst.task == "next-step-prediction":
            given = _given_moves(inst.desc)
            lines = []
            for i, (move, pos) in enumerate(zip(given, _walk(inst, given), strict=False), 1):
                lines.append(f"After move {i} ({move}) we are here:")
                drawn = _grid_with(inst, pos)
                if drawn:
                    lines.append(drawn)
            answer = str(inst.answer)
            lines.append(f"The road continues {answer}, so the next movement is:")
            lines.append(f"{_OPTION[answer]}. {answer.capitalize()}.")
            return "\n".join(lines)
        if inst.task == "visual-tiling":
            lines = []
            board, solution = inst.meta.get("board"), inst.meta.get("solution")
            if board and solution:
                rows = [list(r) for r in board]
                for name, emoji in re.findall(r"^\d+\. (.+) \((.)\)$", inst.desc, re.MULTILINE):
                    for r, row in enumerate(solution):
                        for c, cell in enumerate(row):
                            if cell == emoji:
                                rows[r][c] = emoji
                    lines.append(f"Placing {name} into the empty squares:")
                    lines.append(fenced("".join(r) for r in rows))
            lines.append(f"The correct variation of {inst.piece_name} is {inst.answer}.")
            return "\n".join(lines)
        lines = []
        for step, position in enumerate(inst.meta.get("path", [])[1:], 1):
            lines.append(f"Step {step}: we are now at the marked cell.")
            lines.append(_nl_grid(inst, position))
        lines.append(f"Following the moves, you will find the {inst.answer}.")
        return "\n".join(lines)


class RandomModel(_Responder):
    """Guesses uniformly (see the module docstring for the per-task baselines).

    Args:
        instances (Sequence[Instance]): the instances it may be asked about.
        seed (int): seeds the guesses. Default: 0.
    """

    def respond(self, inst: Instance, rng: random.Random) -> str:
        """A uniform guess."""
        if inst.task == "route-planning":
            moves = [rng.choice(DIRECTIONS) for _ in range(rng.randint(1, 8))]
            return "\n".join(f"{i}. Move {m}." for i, m in enumerate(moves, 1))
        if inst.task == "next-step-prediction":
            move = rng.choice(DIRECTIONS)
            return f"The next movement is {_OPTION[move]}. {move.capitalize()}."
        if inst.task == "visual-tiling":
            return f"Answer: {rng.choice('ABC')}"
        objects = inst.meta.get("objects") or [str(inst.answer)]
        return f"You will find the {rng.choice(objects)}."


class PerpendicularModel(RandomModel):
    """Next step: a random 90° turn from the last move (50%); other tasks: random guesses."""

    def respond(self, inst: Instance, rng: random.Random) -> str:
        """A perpendicular guess for next-step questions, else a random one."""
        given = _given_moves(inst.desc) if inst.task == "next-step-prediction" else []
        if not given:
            return super().respond(inst, rng)
        move = rng.choice(_TURNS[given[-1]])
        return f"The next movement is {_OPTION[move]}. {move.capitalize()}."
