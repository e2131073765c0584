"""Visual navigation: every map of levels 2-7, the move simulator, and route / next-step scoring.

Visualization-of-Thought (Wu et al., 2024, arXiv 2404.03622), Section 3.2 and Appendix: a level-k
map is built from a sequence of k directions, each at 90° to the one before (``4 · 2^(k-1)``
sequences). Each direction becomes at least two road cells; when the next two cells of a new
direction would touch the road already laid (a cell next to an earlier road cell), the previous
segment is lengthened one cell at a time; if that is blocked too the map is dropped. The map is
the bounding box of the road, every other cell an obstacle. This reproduces the official
generator's counts (paper Table 4): 8, 16, 32, 64, 128, 248 route-planning maps (496) and
8, 32, 96, 256, 640, 1488 next-step questions (2520, ``k - 1`` per map).

A move means "go in this direction to the end of the continuous road" (:func:`simulate`).
Route planning is scored by :func:`route_scores`: consecutive repeats merged, a move equal to the
next gold move advances, the opposite of the last matched move steps back, anything else is
ignored; completing rate ``t / k``, success ``t == k``; 100 or more (merged) moves score 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "DESTINATION",
    "DIRECTIONS",
    "OBSTACLE",
    "ROAD",
    "START",
    "NavigationMap",
    "all_maps",
    "build_map",
    "direction_sequences",
    "next_step_questions",
    "route_scores",
    "simulate",
    "solve_route",
]

START = "🏠"
DESTINATION = "🏢"
ROAD = "⬜"
OBSTACLE = "🚧"
#: the official order of directions (``up``, ``left``, ``down``, ``right``).
DIRECTIONS: tuple[str, ...] = ("up", "left", "down", "right")
_VECTORS: dict[str, tuple[int, int]] = {
    "up": (-1, 0),
    "left": (0, -1),
    "down": (1, 0),
    "right": (0, 1),
}
_OPPOSITE = {"up": "down", "down": "up", "left": "right", "right": "left"}
#: parsed routes this long or longer score 0 (the official cut-off).
MAX_PARSED_MOVES = 100


def direction_sequences(level: int) -> list[tuple[str, ...]]:
    """Every sequence of ``level`` directions turning 90° at each step, in the official order.

    Args:
        level (int): ``k >= 1``.

    Returns:
        list[tuple[str, ...]]: ``4 · 2^(k-1)`` sequences; for each first direction, a left turn
        (``+1`` in :data:`DIRECTIONS`) is explored before a right turn (``+3``).

    Raises:
        ValueError: if ``level < 1``.
    """
    if isinstance(level, bool) or not isinstance(level, int) or level < 1:
        raise ValueError(f"level must be a positive int, got {level!r}")

    def extend(index: int, rest: int) -> Iterator[tuple[str, ...]]:
        head = (DIRECTIONS[index],)
        if rest == 1:
            yield head
            return
        for nxt in ((index + 1) % 4, (index + 3) % 4):
            for tail in extend(nxt, rest - 1):
                yield head + tail

    return [seq for first in range(4) for seq in extend(first, level)]


def _lay_road(directions: Sequence[str]) -> list[tuple[int, int]] | None:
    """The unit moves of the road, or None when a map cannot be laid out without touching itself."""
    path: set[tuple[int, int]] = {(0, 0)}
    blocked: set[tuple[int, int]] = set()
    pos = (0, 0)
    moves: list[tuple[int, int]] = []
    previous: tuple[int, int] | None = None

    def step(vec: tuple[int, int]) -> None:
        nonlocal pos
        nxt = (pos[0] + vec[0], pos[1] + vec[1])
        path.add(nxt)
        for dy, dx in _VECTORS.values():  # the cell left behind fences off its free neighbours
            neighbour = (pos[0] + dy, pos[1] + dx)
            if neighbour not in path:
                blocked.add(neighbour)
        pos = nxt
        moves.append(vec)

    def free(vecs: Sequence[tuple[int, int]]) -> bool:
        y, x = pos
        for dy, dx in vecs:
            y, x = y + dy, x + dx
            if (y, x) in blocked:
                return False
        return True

    for direction in directions:
        vec = _VECTORS[direction]
        while not free([vec, vec]):
            if previous is None or not free([previous]):
                return None
            step(previous)  # lengthen the previous segment
        step(vec)
        step(vec)  # every segment is at least two road cells
        previous = vec
    return moves


@dataclass(frozen=True)
class NavigationMap:
    """One visual-navigation map.

    Args:
        grid (tuple[str, ...]): rows of emoji (:data:`START`, :data:`DESTINATION`, :data:`ROAD`,
            :data:`OBSTACLE`), no separators.
        directions (tuple[str, ...]): the gold route, one direction per segment.
        start (tuple[int, int]): (row, column) of the start.
        destination (tuple[int, int]): (row, column) of the destination.
    """

    grid: tuple[str, ...]
    directions: tuple[str, ...]
    start: tuple[int, int]
    destination: tuple[int, int]

    @property
    def level(self) -> int:
        """int: the number of segments ``k``."""
        return len(self.directions)

    @property
    def height(self) -> int:
        """int: rows."""
        return len(self.grid)

    @property
    def width(self) -> int:
        """int: columns (emoji, not characters)."""
        return len(self.grid[0])

    def text(self) -> str:
        """The map as the prompts show it: one row per line."""
        return "\n".join(self.grid)

    def cell(self, row: int, col: int) -> str:
        """The emoji at ``(row, col)``."""
        return self.grid[row][col]


def build_map(directions: Sequence[str]) -> NavigationMap | None:
    """Lay out the map of one direction sequence (None if the official generator drops it).

    Args:
        directions (Sequence[str]): directions from :data:`DIRECTIONS`, each at 90° to the last.

    Returns:
        NavigationMap | None: the map.

    Raises:
        ValueError: on an unknown direction or two consecutive parallel directions.
    """
    for i, d in enumerate(directions):
        if d not in _VECTORS:
            raise ValueError(f"directions[{i}] must be one of {DIRECTIONS}, got {d!r}")
        if i and (d == directions[i - 1] or d == _OPPOSITE[directions[i - 1]]):
            raise ValueError(f"directions[{i}] ({d}) must turn 90° from {directions[i - 1]}")
    if not directions:
        raise ValueError("directions must not be empty")
    moves = _lay_road(directions)
    if moves is None:
        return None
    y = x = 0
    cells = [(0, 0)]
    for dy, dx in moves:
        y, x = y + dy, x + dx
        cells.append((y, x))
    top = min(c[0] for c in cells)
    left = min(c[1] for c in cells)
    height = max(c[0] for c in cells) - top + 1
    width = max(c[1] for c in cells) - left + 1
    rows = [[OBSTACLE] * width for _ in range(height)]
    for cy, cx in cells:
        rows[cy - top][cx - left] = ROAD
    start = (-top, -left)
    dest = (cells[-1][0] - top, cells[-1][1] - left)
    rows[start[0]][start[1]] = START
    rows[dest[0]][dest[1]] = DESTINATION
    return NavigationMap(
        grid=tuple("".join(r) for r in rows),
        directions=tuple(directions),
        start=start,
        destination=dest,
    )


def all_maps(level: int) -> list[NavigationMap]:
    """Every map of one level, in the official order (dropped layouts left out)."""
    maps = [build_map(seq) for seq in direction_sequences(level)]
    return [m for m in maps if m is not None]


def simulate(nav: NavigationMap, position: tuple[int, int], direction: str) -> tuple[int, int]:
    """Move from ``position`` in ``direction`` to the end of the continuous road.

    Args:
        nav (NavigationMap): the map.
        position (tuple[int, int]): (row, column).
        direction (str): one of :data:`DIRECTIONS`; anything else does not move.

    Returns:
        tuple[int, int]: the new position (unchanged when the next cell is an obstacle or off
        the map).
    """
    vec = _VECTORS.get(direction)
    if vec is None:
        return position
    y, x = position
    while 0 <= y + vec[0] < nav.height and 0 <= x + vec[1] < nav.width:
        if nav.cell(y + vec[0], x + vec[1]) == OBSTACLE:
            break
        y, x = y + vec[0], x + vec[1]
    return (y, x)


def solve_route(nav: NavigationMap) -> list[tuple[str, ...]]:
    """Every shortest route from start to destination, by breadth-first search over moves.

    An exact solver independent of the generator: states are positions, edges are the moves of
    :func:`simulate`. A well-formed map has exactly one shortest route, its ``directions``.

    Args:
        nav (NavigationMap): the map.

    Returns:
        list[tuple[str, ...]]: the shortest direction sequences (empty if unreachable).
    """
    frontier: list[tuple[tuple[int, int], tuple[str, ...]]] = [(nav.start, ())]
    seen = {nav.start}
    while frontier:
        found = [route for pos, route in frontier if pos == nav.destination]
        if found:
            return sorted(found)
        following: list[tuple[tuple[int, int], tuple[str, ...]]] = []
        reached: set[tuple[int, int]] = set()
        for pos, route in frontier:
            for direction in DIRECTIONS:
                nxt = simulate(nav, pos, direction)
                if nxt != pos and nxt not in seen:
                    following.append((nxt, (*route, direction)))
                    reached.add(nxt)
        seen |= reached
        frontier = following
    return []


def next_step_questions(nav: NavigationMap) -> list[tuple[tuple[str, ...], str]]:
    """The ``k - 1`` next-step questions of a map: (moves so far, the correct next move)."""
    return [(nav.directions[:i], nav.directions[i]) for i in range(1, nav.level)]


def route_scores(parsed: Sequence[str], gold: Sequence[str]) -> tuple[float, bool]:
    """Completing rate and success of a parsed route against the gold route.

    Consecutive repeats are merged; a move equal to the next gold move advances, the opposite of
    the last matched gold move steps back, anything else is ignored. 100 or more moves (after
    merging, the official ``total_cost``) score ``(0.0, False)``.

    Args:
        parsed (Sequence[str]): the moves read from a response.
        gold (Sequence[str]): the map's directions.

    Returns:
        tuple[float, bool]: ``t / k`` and ``t == k``.
    """
    if not gold:
        raise ValueError("gold must not be empty")
    merged: list[str] = []
    for move in parsed:
        if not merged or merged[-1] != move:
            merged.append(move)
    if len(merged) >= MAX_PARSED_MOVES:  # the official cost threshold counts merged moves
        return 0.0, False
    matched = 0
    for move in merged:
        if matched < len(gold) and move == gold[matched]:
            matched += 1
        elif matched > 0 and move == _OPPOSITE.get(gold[matched - 1]):
            matched -= 1
    return matched / len(gold), matched == len(gold)
