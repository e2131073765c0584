"""Tests of papercraft.vot.tiling: variations and the exact-cover solver."""

from __future__ import annotations

import pytest

from papercraft.vot.tiling import PIECES, Tiling, normalize, solve_tilings, variations


def test_variation_counts_and_normal_form() -> None:
    counts = {name: len(variations(shape)) for name, shape in PIECES.items()}
    assert counts == {"T": 4, "L": 8, "I": 2, "O": 1, "S": 4}
    assert variations(PIECES["I"]) == [((0, 0), (0, 1), (0, 2), (0, 3)),
                                        ((0, 0), (1, 0), (2, 0), (3, 0))]  # fmt: skip
    assert normalize([(3, 5), (2, 7)]) == ((0, 2), (1, 0))
    with pytest.raises(ValueError, match="empty"):
        normalize([])


def _check(tiling: Tiling) -> None:
    cells = [c for p in tiling.placements for c in p.cells]
    assert sorted(cells) == [(r, c) for r in range(tiling.height) for c in range(tiling.width)]
    for placement in tiling.placements:
        assert tuple(sorted(placement.cells)) == placement.cells
        assert min(placement.cells) >= (0, 0)
        # every placed piece is a translated variation of its type
        assert normalize(placement.cells) in variations(PIECES[placement.piece])


def test_ttlii_has_exactly_32_distinct_tilings() -> None:
    tilings = solve_tilings()
    assert len(tilings) == 32
    assert len({t.placements for t in tilings}) == 32
    for tiling in tilings:
        _check(tiling)
        kinds = sorted(p.piece for p in tiling.placements)
        assert kinds == ["I", "I", "L", "T", "T"]
        grid = tiling.grid()
        assert all(v >= 0 for row in grid for v in row)
    assert solve_tilings() == tilings  # deterministic order


def test_other_boards_and_errors() -> None:
    # a 2 × 4 board: two I's lying down, or two O's side by side
    assert len(solve_tilings(2, 4, {"I": 2})) == 1
    assert len(solve_tilings(2, 4, {"O": 2})) == 1
    assert len(solve_tilings(4, 4, {"I": 4})) == 2  # all horizontal or all vertical
    assert solve_tilings(2, 2, {"I": 1}) == []
    with pytest.raises(ValueError, match="cover"):
        solve_tilings(5, 4, {"T": 1})
    with pytest.raises(ValueError, match="unknown piece"):
        solve_tilings(2, 2, {"Q": 1})
