"""Tests of papercraft.vot.navigation: map enumeration, counts, simulator and route scoring."""

from __future__ import annotations

import pytest

from papercraft.vot.navigation import (
    DESTINATION,
    OBSTACLE,
    START,
    NavigationMap,
    all_maps,
    build_map,
    direction_sequences,
    next_step_questions,
    route_scores,
    simulate,
    solve_route,
)

# paper Table 4 (re-derived from the official generator)
ROUTE_COUNTS = {2: 8, 3: 16, 4: 32, 5: 64, 6: 128, 7: 248}
NEXT_STEP_COUNTS = {2: 8, 3: 32, 4: 96, 5: 256, 6: 640, 7: 1488}


@pytest.fixture(scope="module")
def maps() -> dict[int, list[NavigationMap]]:
    return {k: all_maps(k) for k in range(2, 8)}


def test_counts_per_level_and_totals(maps: dict[int, list[NavigationMap]]) -> None:
    assert {k: len(v) for k, v in maps.items()} == ROUTE_COUNTS
    questions = {k: sum(len(next_step_questions(m)) for m in v) for k, v in maps.items()}
    assert questions == NEXT_STEP_COUNTS
    assert sum(ROUTE_COUNTS.values()) == 496
    assert sum(NEXT_STEP_COUNTS.values()) == 2520


def test_sequences_turn_at_every_step() -> None:
    for k in range(1, 6):
        seqs = direction_sequences(k)
        assert len(seqs) == 4 * 2 ** (k - 1) == len(set(seqs))
    perpendicular = {frozenset(p) for p in (("up", "left"), ("up", "right"), ("down", "left"),
                                             ("down", "right"))}  # fmt: skip
    assert all(frozenset(s[i : i + 2]) in perpendicular for s in direction_sequences(5)
               for i in range(4))  # fmt: skip
    with pytest.raises(ValueError, match="level"):
        direction_sequences(0)


def test_every_map_is_consistent_and_solved_by_its_route(
    maps: dict[int, list[NavigationMap]],
) -> None:
    sizes = set()
    for level, level_maps in maps.items():
        for nav in level_maps:
            sizes.add((nav.height, nav.width))
            assert nav.level == level
            assert all(len(row) == nav.width for row in nav.grid)
            flat = "".join(nav.grid)
            assert flat.count(START) == 1
            assert flat.count(DESTINATION) == 1
            assert nav.cell(*nav.start) == START
            assert nav.cell(*nav.destination) == DESTINATION
            pos = nav.start
            for move in nav.directions:  # each move goes to the end of the continuous road
                new = simulate(nav, pos, move)
                assert new != pos
                pos = new
            assert pos == nav.destination
            assert solve_route(nav) == [nav.directions]  # the BFS solver: one shortest route
    assert min(sizes) == (3, 3)
    assert max(h * w for h, w in sizes) == 63
    assert {(7, 9), (9, 7)} & sizes


def test_enumeration_is_deterministic_and_maps_hand_checked() -> None:
    assert [m.grid for m in all_maps(4)] == [m.grid for m in all_maps(4)]
    nav = build_map(("up", "left", "down"))
    assert nav is not None
    assert nav.text() == "⬜⬜⬜\n⬜🚧⬜\n🏢🚧🏠"
    assert simulate(nav, nav.start, "right") == nav.start  # off the map: no move
    assert simulate(nav, nav.start, "jump") == nav.start
    assert OBSTACLE in nav.text()
    with pytest.raises(ValueError, match="turn"):
        build_map(("up", "up"))
    with pytest.raises(ValueError, match="one of"):
        build_map(("up", "north"))


def test_route_scores() -> None:
    gold = ("up", "left", "down", "left")
    assert route_scores(gold, gold) == (1.0, True)
    assert route_scores(["up", "up", "left", "left", "down", "left"], gold) == (1.0, True)
    assert route_scores(["up", "left", "right", "left"], gold) == (0.5, False)  # step back, redo
    assert route_scores(["up", "left", "right"], gold) == (0.25, False)
    assert route_scores(["down", "right"], gold) == (0.0, False)
    assert route_scores([], gold) == (0.0, False)
    assert route_scores(list(gold) * 25, gold) == (0.0, False)  # >= 100 parsed moves
    with pytest.raises(ValueError, match="gold"):
        route_scores(["up"], ())


def test_next_step_answer_is_always_perpendicular(maps: dict[int, list[NavigationMap]]) -> None:
    for nav in maps[5]:
        for so_far, answer in next_step_questions(nav):
            assert {so_far[-1], answer} not in ({"up", "down"}, {"left", "right"})
            assert answer != so_far[-1]
