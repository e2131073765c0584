"""Visual tiling: polyomino variations, the exact-cover solver, masked boards and their questions.

Visualization-of-Thought (arXiv 2404.03622), visual tiling: a rectangle 4 wide and 5 high is
tiled by two T, one L and two I tetrominoes (TTLII). A level-``k`` configuration blanks ``k``
pieces of different types (⬜) and keeps the others in colour; one question per blanked piece
asks which of two variations (rotations/reflections; only translation is allowed when placing)
fits, with "C. Neither" as the third option.

This module follows the official generator (``src/visual-tiling``: ``run.js`` and
``gen_puzzle.py``) where it is deterministic and replaces its random parts by exact ones:

- **Variations** are numbered as the official ``generateVariations`` does: for ``i = 0..3`` the
  shape rotated ``i`` quarter turns, then that rotation reflected, each kept when new
  (:func:`variations`). T has 4, L 8, I 2, O 1, Z 4.
- **Tilings.** The official sampler calls a SAT solver 100 times and kept 31 distinct tilings of
  the board; :func:`solve_tilings` enumerates all of them by exact cover: 32. Pieces inside a
  tiling are ordered as the official solver sorts them (by the leftmost, then topmost cell),
  which fixes their colours.
- **Configurations** (:func:`tiling_configurations`): every combination of ``k`` piece indices
  with distinct types, numbered from 1 in the order of the tilings. For each, every way to
  tile the blanked region with the blanked pieces is an *answer*.
- **Questions** (:func:`tiling_questions`): as ``gen_puzzle.py``: for each answer, each piece's
  distractor is a variation used by no other answer, preferring one with the same bounding box;
  a piece whose every variation fits some answer has no distractor and its question is skipped
  (the skip rule). One answer is drawn per configuration with a seeded generator.

The paper reports 376 configurations and 796 questions: 31 level-2 tilings × 8 masks plus
32 level-3 tilings × 4 masks. With all 32 tilings there are 256 + 128 = 384 configurations.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "EMOJIS",
    "EMPTY",
    "PIECES",
    "TTLII",
    "Placement",
    "Tiling",
    "TilingConfiguration",
    "TilingQuestion",
    "fenced",
    "normalize",
    "piece_name",
    "solve_tilings",
    "tile_region",
    "tiling_configurations",
    "tiling_questions",
    "variation_rows",
    "variations",
]

Cell = tuple[int, int]
Shape = tuple[Cell, ...]

#: the official base shapes as (row, column) cells (``total_polyominoes`` in ``run.js``).
PIECES: dict[str, Shape] = {
    "I": ((0, 0), (1, 0), (2, 0), (3, 0)),
    "O": ((0, 0), (0, 1), (1, 0), (1, 1)),
    "T": ((0, 1), (1, 0), (1, 1), (1, 2)),
    "L": ((0, 0), (0, 1), (1, 0), (2, 0)),
    "Z": ((0, 0), (0, 1), (1, 1), (1, 2)),
}
#: the paper's board: two T, one L and two I on 5 rows × 4 columns.
TTLII: dict[str, int] = {"T": 2, "L": 1, "I": 2}
#: the colours of the pieces, by index in the tiling (the official ``default_emoji_list``).
EMOJIS: tuple[str, ...] = ("🟥", "🟩", "🟦", "🟨", "🟪", "🟧")
#: an empty (blanked) square.
EMPTY = "⬜"


def piece_name(piece: str) -> str:
    """The official display name of a piece type: ``"T"`` → ``"Tetromino T"``."""
    return f"Tetromino {piece}"


def fenced(rows: Iterable[str]) -> str:
    """Rows inside a fenced block, as the official prompts show grids."""
    return "```\n" + "\n".join(rows) + "\n```"


def normalize(cells: Iterable[Cell]) -> Shape:
    """Translate cells so the smallest row and column are 0, sorted row-major."""
    cells = list(cells)
    if not cells:
        raise ValueError("cells must not be empty")
    top = min(c[0] for c in cells)
    left = min(c[1] for c in cells)
    return tuple(sorted((r - top, c - left) for r, c in cells))


def variations(shape: Iterable[Cell]) -> list[Shape]:
    """The distinct rotations and reflections of a shape, in the official numbering order.

    Variation ``n`` of the prompts is ``variations(shape)[n - 1]``. Works in the official (x, y)
    frame (``x`` = column, ``y`` = row): for ``i = 0..3`` rotate the base shape by ``i`` quarter
    turns (``(x, y) → (-y, x)``), then reflect that rotation (``(x, y) → (-x, y)``); each
    normalised shape is kept the first time it appears.

    Args:
        shape (Iterable[Cell]): (row, column) cells.

    Returns:
        list[Shape]: T has 4, L 8, I 2, O 1, Z 4.
    """
    base = [(c, r) for r, c in shape]  # (x, y)
    if not base:
        raise ValueError("shape must not be empty")
    turns = (
        lambda x, y: (x, y),
        lambda x, y: (-y, x),
        lambda x, y: (-x, -y),
        lambda x, y: (y, -x),
    )
    found: list[Shape] = []
    for turn in turns:
        rotated = [turn(x, y) for x, y in base]
        for cells in (rotated, [(-x, y) for x, y in rotated]):
            shape_rc = normalize((y, x) for x, y in cells)
            if shape_rc not in found:
                found.append(shape_rc)
    return found


def _variation_number(piece: str, cells: Iterable[Cell]) -> int:
    return variations(PIECES[piece]).index(normalize(cells)) + 1


def _grid_rows(cells_by_symbol: Mapping[str, Iterable[Cell]], height: int, width: int) -> list[str]:
    board = [[EMPTY] * width for _ in range(height)]
    for symbol, cells in cells_by_symbol.items():
        for r, c in cells:
            board[r][c] = symbol
    return ["".join(row) for row in board]


def variation_rows(shape: Shape, symbol: str) -> list[str]:
    """A variation drawn in its bounding box (the official ``textual_representation_mask``)."""
    height = max(r for r, _ in shape) + 1
    width = max(c for _, c in shape) + 1
    return _grid_rows({symbol: shape}, height, width)


@dataclass(frozen=True, order=True)
class Placement:
    """One placed piece: its type and the board cells it covers (sorted row-major)."""

    piece: str
    cells: Shape

    @property
    def variation(self) -> int:
        """int: the official variation number (1-based) of the placed shape."""
        return _variation_number(self.piece, self.cells)


def _official_key(placement: Placement) -> tuple[int, int]:
    """The official solver's piece order: leftmost column first, then topmost row."""
    return min((c, r) for r, c in placement.cells)


@dataclass(frozen=True)
class Tiling:
    """A tiling of a ``height × width`` board, pieces in the official order."""

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

    def text(self) -> str:
        """The board with each piece's type letter, one row per line."""
        board = self.grid()
        return "\n".join("".join(self.placements[i].piece for i in row) for row in board)


def _check_pieces(pieces: Mapping[str, int]) -> dict[str, int]:
    counts = dict(pieces)
    for name, n in counts.items():
        if name not in PIECES:
            raise ValueError(f"pieces: unknown piece {name!r}; known: {sorted(PIECES)}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"pieces[{name!r}] must be a non-negative int, got {n!r}")
    return counts


def tile_region(region: Iterable[Cell], pieces: Mapping[str, int]) -> list[tuple[Placement, ...]]:
    """Every distinct way to cover ``region`` exactly with the given pieces (exact cover).

    Pieces of one type are interchangeable, so each tiling is counted once. Search fills the
    first uncovered cell in row-major order with every piece variation anchored on it.

    Args:
        region (Iterable[Cell]): the (row, column) cells to cover.
        pieces (Mapping[str, int]): piece type (a key of :data:`PIECES`) → count.

    Returns:
        list[tuple[Placement, ...]]: each tiling's placements in the official order; the
        tilings sorted by their letter grids. Empty when no tiling exists.

    Raises:
        ValueError: on an unknown piece or a piece area that differs from the region's.
    """
    counts = _check_pieces(pieces)
    cells = frozenset(region)
    area = sum(len(PIECES[p]) * n for p, n in counts.items())
    if area != len(cells):
        raise ValueError(f"the pieces cover {area} cells but the region has {len(cells)}")
    order = sorted(cells)
    shapes = {p: variations(PIECES[p]) for p in counts}
    found: set[frozenset[Placement]] = set()
    placed: list[Placement] = []
    filled: set[Cell] = set()

    def search(start: int) -> None:
        index = start
        while index < len(order) and order[index] in filled:
            index += 1
        if index == len(order):
            found.add(frozenset(placed))
            return
        target = order[index]
        for name in sorted(counts):
            if counts[name] == 0:
                continue
            for shape in shapes[name]:
                anchor = shape[0]  # the first cell in row-major order lands on the target
                moved = tuple(
                    (target[0] + r - anchor[0], target[1] + c - anchor[1]) for r, c in shape
                )
                if all(cell in cells and cell not in filled for cell in moved):
                    counts[name] -= 1
                    filled.update(moved)
                    placed.append(Placement(name, tuple(sorted(moved))))
                    search(index + 1)
                    placed.pop()
                    filled.difference_update(moved)
                    counts[name] += 1

    search(0)
    tilings = [tuple(sorted(f, key=_official_key)) for f in found]

    def letters(tiling: tuple[Placement, ...]) -> tuple[tuple[Cell, str], ...]:
        return tuple(sorted((cell, p.piece) for p in tiling for cell in p.cells))

    return sorted(tilings, key=letters)


def solve_tilings(
    height: int = 5, width: int = 4, pieces: Mapping[str, int] | None = None
) -> list[Tiling]:
    """Every distinct tiling of a rectangle by the given pieces (exact cover).

    Args:
        height (int): rows. Default: 5.
        width (int): columns. Default: 4.
        pieces (Mapping[str, int] | None): piece type (a key of :data:`PIECES`) → count;
            None means :data:`TTLII`. Default: None.

    Returns:
        list[Tiling]: in a fixed order; empty when the pieces cannot tile the board.

    Raises:
        ValueError: on an unknown piece, a non-positive size, or pieces whose area differs
            from the board's.
    """
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    region = [(r, c) for r in range(height) for c in range(width)]
    return [
        Tiling(height, width, t) for t in tile_region(region, TTLII if pieces is None else pieces)
    ]


@dataclass(frozen=True)
class TilingConfiguration:
    """One masked board: a tiling with ``level`` pieces of different types blanked.

    Args:
        level (int): how many pieces are blanked.
        case_id (int): the official case number (1-based, per level).
        tiling (Tiling): the full solution.
        masked (tuple[int, ...]): indices (into ``tiling.placements``) of the blanked pieces.
        answers (tuple[tuple[Placement, ...], ...]): every tiling of the blanked region by the
            blanked pieces, the original one included.
    """

    level: int
    case_id: int
    tiling: Tiling
    masked: tuple[int, ...]
    answers: tuple[tuple[Placement, ...], ...]

    @property
    def provided(self) -> list[str]:
        """list[str]: the blanked pieces' types, in mask order."""
        return [self.tiling.placements[i].piece for i in self.masked]

    def emoji(self, piece: str) -> str:
        """The colour the prompts give a blanked piece (its index in the tiling)."""
        for i in self.masked:
            if self.tiling.placements[i].piece == piece:
                return EMOJIS[i % len(EMOJIS)]
        raise ValueError(f"piece must be one of the blanked pieces {self.provided}, got {piece!r}")

    def board_rows(self) -> list[str]:
        """The masked board: kept pieces in colours not used by the blanked ones, blanks ⬜."""
        free = [e for i, e in enumerate(EMOJIS) if i not in self.masked]
        symbols: dict[str, list[Cell]] = {}
        kept = 0
        for index, placement in enumerate(self.tiling.placements):
            if index in self.masked:
                continue
            symbol = free[kept % len(free)]
            kept += 1
            symbols.setdefault(symbol, []).extend(placement.cells)
        return _grid_rows(symbols, self.tiling.height, self.tiling.width)

    @property
    def empty_squares(self) -> int:
        """int: the number of blanked cells."""
        return sum(len(self.tiling.placements[i].cells) for i in self.masked)


def tiling_configurations(
    level: int, tilings: Sequence[Tiling] | None = None
) -> list[TilingConfiguration]:
    """Every masked board of one level, numbered as the official generator does.

    Args:
        level (int): how many pieces to blank (2 or 3 in the paper).
        tilings (Sequence[Tiling] | None): the full solutions; None means all 32 TTLII tilings.

    Returns:
        list[TilingConfiguration]: for each tiling, every combination of ``level`` piece
        indices with distinct types (lexicographic), ``case_id`` counting from 1.

    Raises:
        ValueError: if ``level`` is not a positive int.
    """
    if isinstance(level, bool) or not isinstance(level, int) or level < 1:
        raise ValueError(f"level must be a positive int, got {level!r}")
    boards = solve_tilings() if tilings is None else list(tilings)
    out: list[TilingConfiguration] = []
    for tiling in boards:
        for masked in itertools.combinations(range(len(tiling.placements)), level):
            kinds = [tiling.placements[i].piece for i in masked]
            if len(set(kinds)) != level:
                continue
            region = [cell for i in masked for cell in tiling.placements[i].cells]
            answers = tile_region(region, {k: 1 for k in kinds})
            out.append(TilingConfiguration(level, len(out) + 1, tiling, masked, tuple(answers)))
    return out


@dataclass(frozen=True)
class TilingQuestion:
    """One question: which variation of ``piece`` fits the blanked squares.

    Args:
        configuration (TilingConfiguration): the masked board.
        piece (str): the piece asked about (a key of :data:`PIECES`).
        options (tuple[int, int]): variation numbers behind ``A.`` and ``B.`` (ascending).
        answer (str): ``"A"`` or ``"B"``.
        shown (tuple[tuple[str, tuple[int, ...]], ...]): the variations listed in the prompt,
            per blanked piece in the drawn answer's order (all of them for a skipped piece).
        solution (tuple[Placement, ...]): the drawn answer (how the blanked pieces fill the
            board).
    """

    configuration: TilingConfiguration
    piece: str
    options: tuple[int, int]
    answer: str
    shown: tuple[tuple[str, tuple[int, ...]], ...] = field(repr=False)
    solution: tuple[Placement, ...] = field(repr=False, default=())

    @property
    def name(self) -> str:
        """str: the display name, e.g. ``"Tetromino T"``."""
        return piece_name(self.piece)

    @property
    def instance_id(self) -> str:
        """str: ``"<case>/<name>"``, the official instance id."""
        return f"{self.configuration.case_id}/{self.name}"

    def solved_rows(self) -> list[str]:
        """The board with the blanked pieces placed as in the drawn answer, in their colours."""
        board = [list(row) for row in self.configuration.board_rows()]
        for placement in self.solution:
            for r, c in placement.cells:
                board[r][c] = self.configuration.emoji(placement.piece)
        return ["".join(row) for row in board]

    @property
    def correct_variation(self) -> int:
        """int: the variation number of the right option."""
        return self.options[0] if self.answer == "A" else self.options[1]

    def option_lines(self) -> list[str]:
        """The three options as the prompt lists them."""
        return [f"A. {self.options[0]}", f"B. {self.options[1]}", "C. Neither"]

    def provided_lines(self) -> list[str]:
        """``"1. Tetromino T (🟥)"`` lines for the blanked pieces."""
        conf = self.configuration
        return [f"{i + 1}. {piece_name(p)} ({conf.emoji(p)})" for i, p in enumerate(conf.provided)]

    def variation_blocks(self) -> list[tuple[str, list[str] | None]]:
        """The variations section as (text, grid rows or None) items, one per prompt line."""
        conf = self.configuration
        items: list[tuple[str, list[str] | None]] = []
        for piece, numbers in self.shown:
            shapes = variations(PIECES[piece])
            items.append((f"Variations for {piece_name(piece)}:", None))
            for number in numbers:
                items.append((f"Variation {number} fitting into its bounding box:", None))
                rows = variation_rows(shapes[number - 1], conf.emoji(piece))
                items.append((fenced(rows), rows))
            items.append(("-------------------------", None))
        return items

    def fields(self) -> dict[str, str]:
        """The text placeholders of the official templates."""
        conf = self.configuration
        return {
            "EMPTY_SQUARES": str(conf.empty_squares),
            "TARGET_RECTANGLE": fenced(conf.board_rows()),
            "PROVIDED_POLYOMINOES": "\n".join(self.provided_lines()),
            "POLYOMINO_VARIATIONS": "\n".join(text for text, _ in self.variation_blocks()),
            "CHOSED_POLYOMINO": self.name,
            "OPTIONS": "\n".join(self.option_lines()),
        }


def _select_options(
    conf: TilingConfiguration, answer: tuple[Placement, ...], rng: random.Random
) -> list[tuple[str, tuple[int, ...], bool, int]]:
    """Per piece of one answer: (piece, shown variations, all_correct, answer variation)."""
    used: dict[str, set[int]] = {}
    for other in conf.answers:
        for placement in other:
            used.setdefault(placement.piece, set()).add(placement.variation)
    subset = []
    for placement in answer:
        piece, target = placement.piece, placement.variation
        blocked = used[placement.piece] - {target}
        shapes = variations(PIECES[piece])

        def box(number: int, shapes: list[Shape] = shapes) -> tuple[int, int]:
            cells = shapes[number - 1]
            return (max(r for r, _ in cells) + 1, max(c for _, c in cells) + 1)

        others = [n for n in range(1, len(shapes) + 1) if n != target and n not in blocked]
        same_box = [n for n in others if box(n) == box(target)]
        other_box = [n for n in others if box(n) != box(target)]
        if not others:
            subset.append((piece, tuple(range(1, len(shapes) + 1)), True, target))
            continue
        distractor = rng.choice(same_box) if same_box else rng.choice(other_box)
        subset.append((piece, tuple(sorted((target, distractor))), False, target))
    return subset


def tiling_questions(
    configurations: Sequence[TilingConfiguration], *, seed: int = 42
) -> list[TilingQuestion]:
    """The questions of some configurations (skipped pieces left out), seeded per configuration.

    For each configuration the generator ``random.Random(f"{seed}/{level}/{case_id}")`` draws
    the distractors of every answer, then one answer, as ``gen_puzzle.py`` does with its single
    global generator (whose draws depend on the directory listing order).

    Args:
        configurations (Sequence[TilingConfiguration]): from :func:`tiling_configurations`.
        seed (int): base seed. Default: 42 (the official default).

    Returns:
        list[TilingQuestion]: per configuration, one question per blanked piece in mask order,
        except pieces every variation of which fits (the skip rule).
    """
    questions: list[TilingQuestion] = []
    for conf in configurations:
        rng = random.Random(f"{seed}/{conf.level}/{conf.case_id}")
        subsets = [_select_options(conf, answer, rng) for answer in conf.answers]
        drawn = rng.choice(range(len(subsets)))  # the same draw as choice(subsets)
        chosen = subsets[drawn]
        shown = tuple((piece, numbers) for piece, numbers, _, _ in chosen)
        by_piece = {piece: (numbers, skip, target) for piece, numbers, skip, target in chosen}
        for piece in conf.provided:
            numbers, skip, target = by_piece[piece]
            if skip:
                continue
            options = (numbers[0], numbers[1])
            answer = "A" if target == options[0] else "B"
            questions.append(
                TilingQuestion(conf, piece, options, answer, shown, conf.answers[drawn])
            )
    return questions
