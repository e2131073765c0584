"""Tests of papercraft.vot.tiling: variations, the exact-cover solver, configurations, questions."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from papercraft.vot.tiling import (
    EMOJIS,
    PIECES,
    Placement,
    Tiling,
    TilingConfiguration,
    normalize,
    solve_tilings,
    tile_region,
    tiling_configurations,
    tiling_questions,
    variation_rows,
    variations,
)


def _draw(shape: tuple[tuple[int, int], ...]) -> list[str]:
    return [r.replace("⬜", ".") for r in variation_rows(shape, "X")]


def test_variations_follow_the_official_numbering() -> None:
    counts = {name: len(variations(shape)) for name, shape in PIECES.items()}
    assert counts == {"T": 4, "L": 8, "I": 2, "O": 1, "Z": 4}
    # run.js generateVariations on its base T [[0,1],[1,1],[1,0],[2,1]] (x, y), worked by hand:
    # rotation 0 (⊥), rotation 1 (⊢), its reflection (⊣), rotation 2 (⊤)
    assert [_draw(v) for v in variations(PIECES["T"])] == [
        [".X.", "XXX"],
        ["X.", "XX", "X."],
        [".X", "XX", ".X"],
        ["XXX", ".X."],
    ]
    assert [_draw(v) for v in variations(PIECES["I"])] == [["X", "X", "X", "X"], ["XXXX"]]
    assert _draw(variations(PIECES["L"])[0]) == ["XX", "X.", "X."]  # the base Γ
    assert _draw(variations(PIECES["L"])[6]) == ["X..", "XXX"]
    assert normalize([(3, 5), (2, 7)]) == ((0, 2), (1, 0))
    with pytest.raises(ValueError, match="empty"):
        normalize([])


def _check(tiling: Tiling) -> None:
    cells = [c for p in tiling.placements for c in p.cells]
    assert sorted(cells) == [(r, c) for r in range(tiling.height) for c in range(tiling.width)]
    for placement in tiling.placements:
        assert tuple(sorted(placement.cells)) == placement.cells
        assert normalize(placement.cells) in variations(PIECES[placement.piece])
    keys = [min((c, r) for r, c in p.cells) for p in tiling.placements]
    assert keys == sorted(keys)  # the official order: leftmost column, then topmost row


def test_ttlii_has_exactly_32_distinct_tilings() -> None:
    tilings = solve_tilings()
    assert len(tilings) == 32
    assert len({frozenset(t.placements) for t in tilings}) == 32
    for tiling in tilings:
        _check(tiling)
        assert sorted(p.piece for p in tiling.placements) == ["I", "I", "L", "T", "T"]
    assert solve_tilings() == tilings  # deterministic order


def test_other_boards_and_errors() -> None:
    assert len(solve_tilings(2, 4, {"I": 2})) == 1
    assert len(solve_tilings(2, 4, {"O": 2})) == 1
    assert len(solve_tilings(4, 4, {"I": 4})) == 2  # all horizontal or all vertical
    assert len(solve_tilings(4, 4, {"O": 4})) == 1
    assert solve_tilings(2, 2, {"Z": 1}) == []
    with pytest.raises(ValueError, match="cover"):
        solve_tilings(5, 4, {"T": 1})
    with pytest.raises(ValueError, match="unknown piece"):
        solve_tilings(2, 2, {"Q": 1})
    with pytest.raises(ValueError, match="height"):
        solve_tilings(0, 4)
    with pytest.raises(ValueError, match="level"):
        tiling_configurations(0)


def _brute_force_covers(
    region: list[tuple[int, int]], kinds: list[str]
) -> set[frozenset[Placement]]:
    """Every cover of ``region``, by trying each piece's variations at every offset inside it."""
    cells = set(region)
    options = []
    for kind in kinds:
        placed = []
        for shape in variations(PIECES[kind]):
            for dr, dc in itertools.product(range(-4, 5), repeat=2):
                moved = tuple(sorted((r + dr, c + dc) for r, c in shape))
                if set(moved) <= cells:
                    placed.append(Placement(kind, moved))
        options.append(placed)
    covers = set()
    for combo in itertools.product(*options):
        covered = [c for p in combo for c in p.cells]
        if len(set(covered)) == len(covered) == len(cells):
            covers.add(frozenset(combo))
    return covers


@pytest.fixture(scope="module")
def configurations() -> dict[int, list[TilingConfiguration]]:
    return {level: tiling_configurations(level) for level in (2, 3)}


def test_configurations_and_their_answers(
    configurations: dict[int, list[TilingConfiguration]],
) -> None:
    # every 2-of-5 mask with distinct types: 8 per tiling; 3-of-5: 4 per tiling
    assert len(configurations[2]) == 32 * 8 == 256
    assert len(configurations[3]) == 32 * 4 == 128
    assert 31 * 8 + 32 * 4 == 376  # the paper's count: 31 sampled level-2 tilings
    for level, confs in configurations.items():
        assert [c.case_id for c in confs] == list(range(1, len(confs) + 1))
        for conf in confs:
            assert len(set(conf.provided)) == level
            region = [cell for i in conf.masked for cell in conf.tiling.placements[i].cells]
            assert conf.empty_squares == 4 * level
            # the exact-cover answers equal an independent brute force, the original included
            assert set(map(frozenset, conf.answers)) == _brute_force_covers(region, conf.provided)
            original = frozenset(conf.tiling.placements[i] for i in conf.masked)
            assert original in set(map(frozenset, conf.answers))
            board = conf.board_rows()
            blanks = {
                (r, c) for r, row in enumerate(board) for c, ch in enumerate(row) if ch == "⬜"
            }
            assert blanks == set(region)
            kept = {ch for row in board for ch in row} - {"⬜"}
            assert kept.isdisjoint({conf.emoji(p) for p in conf.provided})
            assert {conf.emoji(p) for p in conf.provided} <= set(EMOJIS)


def test_questions_options_and_the_skip_rule(
    configurations: dict[int, list[TilingConfiguration]],
) -> None:
    questions = {k: tiling_questions(v) for k, v in configurations.items()}
    assert (len(questions[2]), len(questions[3])) == (504, 316)
    skipped = 0
    for level, confs in configurations.items():
        asked = Counter(q.configuration.case_id for q in questions[level])
        for conf in confs:
            used: dict[str, set[int]] = {}
            for answer in conf.answers:
                for p in answer:
                    used.setdefault(p.piece, set()).add(p.variation)
            all_fit = [p for p in conf.provided if len(used[p]) == len(variations(PIECES[p]))]
            assert asked[conf.case_id] == level - len(all_fit)  # skipped: every variation fits
            skipped += len(all_fit)
    assert skipped == 256 * 2 + 128 * 3 - 820
    for question in questions[2] + questions[3]:
        conf = question.configuration
        a, b = question.options
        assert a < b
        right = question.correct_variation
        wrong = b if right == a else a
        fits = {p.variation for ans in conf.answers for p in ans if p.piece == question.piece}
        assert right in fits
        assert wrong not in fits
        assert question.solution in conf.answers
        assert {p.variation for p in question.solution if p.piece == question.piece} == {right}
        assert question.option_lines()[2] == "C. Neither"
        solved = question.solved_rows()
        assert all("⬜" not in row for row in solved)


def test_questions_are_seeded(configurations: dict[int, list[TilingConfiguration]]) -> None:
    a = tiling_questions(configurations[2], seed=42)
    assert [q.options for q in a] == [q.options for q in tiling_questions(configurations[2])]
    b = tiling_questions(configurations[2], seed=7)
    assert [q.instance_id for q in a] == [q.instance_id for q in b]  # the skip rule is not random
    assert [q.options for q in a] != [q.options for q in b]


def test_first_question_prompt_fields_hand_checked(
    configurations: dict[int, list[TilingConfiguration]],
) -> None:
    question = tiling_questions(configurations[2])[0]
    fields = question.fields()
    assert fields["EMPTY_SQUARES"] == "8"
    assert (
        fields["TARGET_RECTANGLE"] == "```\n⬜⬜⬜⬜\n🟩🟩🟩🟩\n⬜⬜⬜🟪\n⬜🟨🟪🟪\n🟨🟨🟨🟪\n```"
    )
    assert fields["PROVIDED_POLYOMINOES"] == "1. Tetromino I (🟥)\n2. Tetromino L (🟦)"
    assert fields["CHOSED_POLYOMINO"] == "Tetromino I"
    assert fields["OPTIONS"] == "A. 1\nB. 2\nC. Neither"
    assert fields["POLYOMINO_VARIATIONS"].startswith(
        "Variations for Tetromino I:\nVariation 1 fitting into its bounding box:\n"
        "```\n🟥\n🟥\n🟥\n🟥\n```\nVariation 2 fitting into its bounding box:\n```\n🟥🟥🟥🟥\n```\n"
        "-------------------------\nVariations for Tetromino L:\n"
    )
    assert question.answer == "B"  # the I lies flat in row 0


def test_tile_region_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="region has 3"):
        tile_region([(0, 0), (0, 1), (0, 2)], {"I": 1})
    with pytest.raises(ValueError, match="non-negative"):
        tile_region([(0, 0)], {"I": -1})
