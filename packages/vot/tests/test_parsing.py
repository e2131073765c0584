"""Tests of papercraft.vot.parsing: the official parsing rules, fuzzed, and state tracking."""

from __future__ import annotations

import itertools
from functools import lru_cache

from hypothesis import given, settings
from hypothesis import strategies as st

from papercraft.vot.dataset import Instance, build_next_step, build_visual_tiling
from papercraft.vot.parsing import (
    NULL,
    count_visualizations,
    parse_next_step,
    parse_route,
    parse_tiling_verbal,
    parse_tiling_visual,
    score_next_step,
    score_route,
    score_tiling,
    tracking,
)
from papercraft.vot.prompts import regex_patterns

NEXT_STEP = (
    "map:\n```\n🏢⬜⬜\n🚧🚧⬜\n🚧🚧🏠\n```\nWhat's the direction of next movement?\n"
    "A. Up\nB. Left\nC. Down\nD. Right"
)


@lru_cache(maxsize=1)
def _tiling() -> Instance:
    return build_visual_tiling([2], images=False)[0]


def test_route_summary_lines_and_merging() -> None:
    out = "1. Move up to the end.\n2. Move left.\nSo the final route is: up, then left."
    assert parse_route(out) == ["up", "left"]
    # no summary: one move per numbered line, repeats merged
    assert parse_route("1. Move up\n2: move up again\n3. Going right\n4. down") == [
        "up",
        "right",
        "down",
    ]
    assert parse_route("- we can only move leftwards here") == ["left"]
    assert parse_route("nothing useful") == []
    # a repeated summary after the moves is cut off (GPT style)
    out = "1. Move right\n2. Move down\nWe reach the destination.\n1. Move up"
    assert parse_route(out) == ["right", "down"]
    # the Llama patterns read compass words and bold moves
    llama = regex_patterns("route", "llama")
    assert parse_route("**left**\nThen: go north\nI'll move east", llama) == ["left", "up", "right"]


def test_route_scoring_and_cut_off() -> None:
    gold = ["up", "left", "down"]
    result = score_route("1. Move up\n2. Move left\n3. Move down", gold)
    assert (result.completing_rate, result.success, result.parse_fail) == (1.0, True, False)
    assert score_route("1. Move up\n2. Move right", gold).completing_rate == 1 / 3
    zigzag = "\n".join(f"{i}. Move {'up' if i % 2 else 'down'}" for i in range(1, 101))
    assert score_route(zigzag, gold).completing_rate == 0.0  # 100 merged moves: cut off
    same = "\n".join(f"{i}. Move up" for i in range(1, 200))
    assert score_route(same, gold).completing_rate == 1 / 3  # merged to one move
    assert score_route("", gold).parse_fail


def test_next_step_patterns() -> None:
    assert parse_next_step(NEXT_STEP, "So the answer is C. Down.") == "down"
    assert parse_next_step(NEXT_STEP, "**Answer:** B") == "left"  # option letter → direction
    assert parse_next_step(NEXT_STEP, "It is Right (D)") == "right"
    assert parse_next_step(NEXT_STEP, "the next move is upwards (A)") == "up"
    assert parse_next_step(NEXT_STEP, "Options:\nD. Right and more\n") == "right"  # multi-line
    assert parse_next_step(NEXT_STEP, "none of the above") == "None"
    assert parse_next_step(NEXT_STEP, "There is a mistake in the moves") == "Incorrect"
    assert parse_next_step(NEXT_STEP, "I do not know") == NULL
    assert parse_next_step(NEXT_STEP, "**E**") == NULL
    assert score_next_step(NEXT_STEP, "B. Left.", "left") == ("left", True)
    assert score_next_step(NEXT_STEP, "A. Up.", "left") == ("up", False)
    assert score_next_step(NEXT_STEP, "?", "left") == (NULL, False)


def test_tiling_verbal_and_visual() -> None:
    inst = _tiling()
    name, problem = inst.piece_name, inst.desc
    assert inst.answer == "B"
    assert parse_tiling_verbal(problem, "Answer: B", name) == "B"
    assert parse_tiling_verbal(problem, "the answer is **C**", name) == "C"
    assert parse_tiling_verbal(problem, f"{name} is Variation 2", name) == "B"  # number → option
    assert parse_tiling_verbal(problem, "A. 1 fits", name) == "A"
    assert parse_tiling_verbal(problem, "hmm", name) == NULL
    solved = "\n".join(inst.meta["solution"])
    assert parse_tiling_visual(problem, f"```\n{solved}\n```", name) == "B"
    broken = solved.replace("🟩", "🟥", 1)  # a pre-filled square changed
    assert parse_tiling_visual(problem, f"```\n{broken}\n```", name) == NULL
    assert parse_tiling_visual(problem, "no grid", name) == NULL
    result = score_tiling(problem, f"I think A.\n```\n{solved}\n```", "B", name)
    assert (result.verbal_correct, result.visual_correct, result.overall_correct) == (
        False,
        True,
        True,
    )


def test_visualizations_and_tracking() -> None:
    grid = "```\n⬜⬜\n🚧🏠\n```"
    assert count_visualizations(f"step 1\n{grid}\nstep 2\n{grid}\nanswer") == 2
    assert count_visualizations("⬜⬜⬜\n🚧🚧🏠\ntext\n| a | b |\n| c | d |") == 2
    assert count_visualizations("one line ⬜⬜\nplain") == 0
    assert count_visualizations("```\nsingle line\n```") == 0
    track = tracking(f"{grid}\n{grid}\nSo: up", steps=2)
    assert (track.complete, track.partial) == (True, True)
    assert not tracking(f"up\n{grid}", steps=1).partial  # the drawing is the last thing
    assert not tracking("up", steps=1).complete


TOKENS = st.sampled_from(
    ["A.", "B. ", "C. Neither", "D. Right", "**", "Answer:", "answer is ", "Move ", "move up",
     "left", "down", "upwards", "west", "1. ", "2: ", "\n", "\n\n", "```", "```\n", "⬜", "🟥",
     "🏠", "🚧", "so the steps are:", "the steps were:", "Variation 3", "(A)", "(", ")", "|",
     "Tetromino I is ", "none", "error", " ", ".", ","]
)  # fmt: skip
TEXT = st.one_of(st.text(max_size=400), st.lists(TOKENS, max_size=80).map("".join))


@settings(max_examples=300, deadline=None)
@given(output=TEXT)
def test_parsers_never_raise(output: str) -> None:
    inst = _tiling()
    moves = parse_route(output)
    assert all(m in ("up", "left", "down", "right") for m in moves)
    assert all(a != b for a, b in itertools.pairwise(moves))
    parse_route(output, regex_patterns("route", "llama"))
    assert isinstance(parse_next_step(NEXT_STEP, output), str)
    parse_next_step(NEXT_STEP, output, regex_patterns("next-step", "llama"))
    assert parse_tiling_verbal(inst.desc, output, inst.piece_name) in ("A", "B", "C", NULL)
    assert parse_tiling_visual(inst.desc, output, inst.piece_name) in ("A", "B", "C", NULL)
    rate = score_route(output, ["up", "left"]).completing_rate
    assert 0.0 <= rate <= 1.0
    assert count_visualizations(output) >= 0


@settings(max_examples=50, deadline=None)
@given(output=TEXT, index=st.integers(0, 50))
def test_next_step_scores_are_consistent(output: str, index: int) -> None:
    inst = build_next_step_cached()[index]
    parsed, correct = score_next_step(inst.desc, output, str(inst.answer))
    assert correct == (parsed != NULL and parsed in str(inst.answer))


@lru_cache(maxsize=1)
def build_next_step_cached() -> list[Instance]:
    return build_next_step([4], images=False)
