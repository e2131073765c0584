"""Visual tiling: polyomino variations and an exact-cover solver for the TTLII board.

Visualization-of-Thought (arXiv 2404.03622), visual tiling: a rectangle 4 wide and 5 high is
tiled by two T, one L and two I tetrominoes. A piece's variations are its distinct rotations and
reflections (translation only happens when it is placed). :func:`solve_tilings` enumerates every
tiling by exact cover — always filling the first empty cell in row-major order — and returns the
distinct ones, where pieces of the same type are interchangeable: 32 for TTLII (the official
JavaScript sampler found 31).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "PIECES",
    "TTLII",
    "Placement",
    "Tiling",
    "normalize",
    "solve_tilings",
    "variations",
]

Cell = tuple[int, int]
Shape = tuple[Cell, ...]

#: the tetrominoes, as (row, column) cells.
PIECES: dict[str, Shape] = {
    "T": ((0, 0), (0, 1), (0, 2), (1, 1)),
    "L": ((0, 0), (1, 0), (2, 0), (2, 1)),
    "I": ((0, 0), (1, 0), (2, 0), (3, 0)),
    "O": ((0, 0), (0, 1), (1, 0), (1, 1)),
    "S": ((0, 1), (0, 2), (1, 0), (1, 1)),
}
#: the paper's board: two T, one L and two I on 5 rows × 4 columns.
TTLII: dict[str, int] = {"T": 2, "L": 1, "I": 2}


def normalize(cells: Iterable[Cell]) -> Shape:
    """Translate cells so the smallest row and column are 0, sorted row-major."""
    cells = list(cells)
    if not cells:
        raise ValueError("cells must not be empty")
    top = min(c[0] for c in cells)
    left = min(c[1] for c in cells)
    return tuple(sorted((r - top, c - left) for r, c in cells))


def variations(shape: Iterable[Cell]) -> list[Shape]:
    """The distinct rotations and reflections of a shape, normalised and sorted.

    Args:
        shape (Iterable[Cell]): (row, column) cells.

    Returns:
        list[Shape]: T has 4, L 8, I 2, O 1, S 4.
    """
    base = list(shape)
    found: set[Shape] = set()
    for mirrored in (False, True):
        cells = [(r, -c) for r, c in base] if mirrored else list(base)
        for _ in range(4):
            cells = [(c, -r) for r, c in cells]  # rotate 90°
            found.add(normalize(cells))
    return sorted(found)


@dataclass(frozen=True, order=True)
class Placement:
    """One placed piece: its type and the board cells it covers."""

    piece: str
    cells: Shape


@dataclass(frozen=True)
class Tiling:
    """A tiling of a ``height × width`` board (placements sorted, so equal tilings compare equal)."""

    height: int
    width: int
    placements: tuple[Placement, ...]

    def grid(self) -> list[list[int]]:
        """The board as placement indices, ``grid[row][col]``."""
        board = [[-1] * self.width for _ in range(self.height)]
        for index, placement in enumerate(self.placements):
            for r, c in placement.cells:
                board[r][c] = index
        return board


def solve_tilings(
    height: int = 5, width: int = 4, pieces: Mapping[str, int] | None = None
) -> list[Tiling]:
    """Every distinct tiling of the board by the given pieces (exact cover, row-major).

    Args:
        height (int): rows. Default: 5.
        width (int): columns. Default: 4.
        pieces (Mapping[str, int] | None): piece type (a key of :data:`PIECES`) → count;
            None means :data:`TTLII`. Default: None.

    Returns:
        list[Tiling]: sorted by placements; empty when the pieces cannot tile the board.

    Raises:
        ValueError: on an unknown piece, a non-positive size, or pieces whose area differs
            from the board's.
    """
    counts = dict(TTLII if pieces is None else pieces)
    for name, n in counts.items():
        if name not in PIECES:
            raise ValueError(f"pieces: unknown piece {name!r}; known: {sorted(PIECES)}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"pieces[{name!r}] must be a non-negative int, got {n!r}")
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got {height} × {width}")
    area = sum(len(PIECES[p]) * n for p, n in counts.items())
    if area != height * width:
        raise ValueError(f"the pieces cover {area} cells but the board has {height * width}")
    shapes = {p: variations(PIECES[p]) for p in counts}
    found: set[tuple[Placement, ...]] = set()
    placed: list[Placement] = []
    filled: set[Cell] = set()

    def first_empty() -> Cell | None:
        for r in range(height):
            for c in range(width):
                if (r, c) not in filled:
                    return (r, c)
        return None

    def search() -> None:
        target = first_empty()
        if target is None:
            found.add(tuple(sorted(placed)))
            return
        for name in sorted(counts):
            if counts[name] == 0:
                continue
            for shape in shapes[name]:
                anchor = shape[0]  # the first cell in row-major order lands on the target
                cells = tuple(
                    (target[0] + r - anchor[0], target[1] + c - anchor[1]) for r, c in shape
                )
                if all(
                    0 <= r < height and 0 <= c < width and (r, c) not in filled for r, c in cells
                ):
                    counts[name] -= 1
                    filled.update(cells)
                    placed.append(Placement(name, tuple(sorted(cells))))
                    search()
                    placed.pop()
                    filled.difference_update(cells)
                    counts[name] += 1

    search()
    return [Tiling(height, width, p) for p in sorted(found)]
