"""Offline rendering of emoji grids (navigation maps, tiling boards) to PNG.

Visualization-of-Thought (arXiv 2404.03622) shows multimodal models its grids as images: each
cell's emoji drawn at 109 px with ``109 // 5`` px of black spacing around and between cells, the
result downsized by 3. This module keeps that geometry — ``cell_size`` px cells and
``cell_size // 5`` px spacing — without the official code's emoji downloads. By default the known
symbols are drawn as vector art in Noto's colours; with ``font_path`` (a local colour-emoji font
such as NotoColorEmoji.ttf) the real glyphs are drawn at 109 px and scaled to the cell.

Rendering is deterministic: the same grid and arguments give the same PNG bytes.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeAlias

from PIL import Image, ImageDraw, ImageFont

from papercraft.core.io import atomic_write_bytes

__all__ = [
    "EMOJI_FONT_SIZE",
    "SQUARE_COLORS",
    "grid_png_base64",
    "render_grid",
    "save_grid_png",
    "split_cells",
]

Color: TypeAlias = "tuple[int, int, int] | str"
Grid: TypeAlias = "str | Sequence[str | Sequence[str]]"

#: the only size at which NotoColorEmoji's bitmap strike loads.
EMOJI_FONT_SIZE = 109
#: fill colours of the coloured squares (Noto's palette).
SQUARE_COLORS: dict[str, tuple[int, int, int]] = {
    "🟥": (0xF4, 0x43, 0x36),
    "🟩": (0x4C, 0xAF, 0x50),
    "🟦": (0x21, 0x96, 0xF3),
    "🟨": (0xFF, 0xEB, 0x3B),
    "🟪": (0x9C, 0x27, 0xB0),
    "🟧": (0xFF, 0x98, 0x00),
}
_SUPERSAMPLE = 4  # vector art is drawn this many times larger, then downsampled
_ZWJ = "\u200d"
_COMBINING = frozenset("\ufe0e\ufe0f\u20e3")  # variation selectors 15/16, keycap


def _extends(ch: str) -> bool:
    """Whether ``ch`` attaches to the preceding code point (selector, skin tone, tag, ZWJ)."""
    cp = ord(ch)
    return ch in _COMBINING or ch == _ZWJ or 0x1F3FB <= cp <= 0x1F3FF or 0xE0020 <= cp <= 0xE007F


def _is_regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def split_cells(row: str) -> list[str]:
    """Split a row string into cells, one emoji each.

    A base code point keeps its variation selectors (U+FE0E/U+FE0F), keycap, skin-tone modifiers
    and tag characters; code points joined by ZWJ (U+200D) form one cell, as do pairs of regional
    indicators (flags). Whitespace separates nothing and is dropped.

    Args:
        row (str): e.g. ``"🏠⬜🚧"`` or ``"⬜️⬜️"``.

    Returns:
        list[str]: the cells, e.g. ``["🏠", "⬜", "🚧"]``.
    """
    cells: list[str] = []
    joined = False  # the previous code point was a ZWJ
    for ch in row:
        pair = bool(cells) and _is_regional(ch) and len(cells[-1]) == 1 and _is_regional(cells[-1])
        if cells and (joined or pair or _extends(ch)):
            cells[-1] += ch
        elif not ch.isspace():
            cells.append(ch)
        joined = ch == _ZWJ and bool(cells)
    return cells


def _cells(grid: Grid) -> list[list[str]]:
    """Validate ``grid`` and return it as rows of cells."""
    rows = grid.splitlines() if isinstance(grid, str) else grid
    if not isinstance(rows, Sequence) or len(rows) == 0:
        raise ValueError("grid must be a non-empty sequence of rows")
    table: list[list[str]] = []
    for index, row in enumerate(rows):
        cells = split_cells(row) if isinstance(row, str) else list(row)
        if not cells:
            raise ValueError(f"grid row {index} is empty")
        if not all(isinstance(cell, str) and cell for cell in cells):
            raise ValueError(f"grid row {index} holds a cell that is not a non-empty str")
        if table and len(cells) != len(table[0]):
            raise ValueError(
                f"grid is ragged: row {index} has {len(cells)} cells, row 0 has {len(table[0])}"
            )
        table.append(cells)
    return table


# --- vector art, drawn on an s × s transparent tile --------------------------------------------

Painter: TypeAlias = Callable[[Image.Image, int], None]


def _box(s: int, x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
    """Fractions of the tile to a pixel box."""
    return round(x0 * s), round(y0 * s), round(x1 * s) - 1, round(y1 * s) - 1


def _square(fill: tuple[int, int, int], outline: tuple[int, int, int] | None = None) -> Painter:
    def paint(tile: Image.Image, s: int) -> None:
        draw = ImageDraw.Draw(tile)
        width = max(1, round(0.04 * s)) if outline else 0
        draw.rounded_rectangle(
            _box(s, 0.04, 0.04, 0.96, 0.96), round(0.12 * s), fill, outline, width
        )

    return paint


def _barrier(tile: Image.Image, s: int) -> None:
    """🚧: grey legs and feet under an orange/black diagonally striped board."""
    draw = ImageDraw.Draw(tile)
    grey, black, orange = (0x61, 0x61, 0x61), (0x21, 0x21, 0x21), (0xFF, 0x98, 0x00)
    for x0 in (0.2, 0.72):
        draw.rectangle(_box(s, x0, 0.3, x0 + 0.08, 0.9), grey)
    for x0 in (0.1, 0.62):
        draw.rectangle(_box(s, x0, 0.86, x0 + 0.28, 0.94), black)
    left, top, right, bottom = _box(s, 0.06, 0.3, 0.94, 0.68)
    board = Image.new("RGB", (right - left + 1, bottom - top + 1), orange)
    stripes = ImageDraw.Draw(board)
    period, height = max(2, round(0.24 * s)), board.height
    for x in range(-height, board.width + period, period):
        stripes.polygon([(x, height), (x + period // 2, height), (x + height + period // 2, 0),
                         (x + height, 0)], black)  # fmt: skip
    tile.paste(board, (left, top))
    draw.rectangle((left, top, right, bottom), outline=black, width=max(1, round(0.02 * s)))


def _house(tile: Image.Image, s: int) -> None:
    """🏠: tan body, red-brown roof, brown door, two blue windows."""
    draw = ImageDraw.Draw(tile)
    draw.rectangle(_box(s, 0.2, 0.44, 0.8, 0.92), (0xFF, 0xCC, 0x80))
    draw.polygon(
        [(0.06 * s, 0.47 * s), (0.5 * s, 0.08 * s), (0.94 * s, 0.47 * s)], (0xD8, 0x43, 0x15)
    )
    draw.rectangle(_box(s, 0.42, 0.62, 0.58, 0.92), (0x6D, 0x4C, 0x41))
    for x0 in (0.26, 0.63):
        draw.rectangle(_box(s, x0, 0.56, x0 + 0.11, 0.67), (0x81, 0xD4, 0xFA))


def _office(tile: Image.Image, s: int) -> None:
    """🏢: a blue-grey block with a 3 × 5 grid of windows and a door."""
    draw = ImageDraw.Draw(tile)
    draw.rectangle(_box(s, 0.18, 0.06, 0.82, 0.94), (0x78, 0x90, 0x9C))
    for row in range(5):
        for col in range(3):
            x0, y0 = 0.25 + 0.19 * col, 0.12 + 0.14 * row
            draw.rectangle(_box(s, x0, y0, x0 + 0.12, y0 + 0.09), (0xB3, 0xE5, 0xFC))
    draw.rectangle(_box(s, 0.42, 0.82, 0.58, 0.94), (0x37, 0x47, 0x4F))


_PAINTERS: dict[str, Painter] = {
    **{symbol: _square(color) for symbol, color in SQUARE_COLORS.items()},
    "⬜": _square((0xFA, 0xFA, 0xFA), (0xBD, 0xBD, 0xBD)),
    "🚧": _barrier,
    "🏠": _house,
    "🏢": _office,
}


@lru_cache(maxsize=16)
def _default_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _unknown(symbol: str) -> Painter:
    def paint(tile: Image.Image, s: int) -> None:
        draw = ImageDraw.Draw(tile)
        draw.rounded_rectangle(_box(s, 0.04, 0.04, 0.96, 0.96), round(0.12 * s), (0x75, 0x75, 0x75))
        font = _default_font(max(1, round(0.6 * s)))
        draw.text((s / 2, s / 2), symbol, (255, 255, 255), font, anchor="mm")

    return paint


def _fit(tile: Image.Image, cell_size: int) -> Image.Image:
    """Scale an RGBA tile into a transparent ``cell_size`` square, keeping its aspect ratio."""
    box = tile.getbbox()
    if box is not None:
        tile = tile.crop(box)
    scale = cell_size / max(tile.width, tile.height)
    size = (max(1, round(tile.width * scale)), max(1, round(tile.height * scale)))
    small = tile.convert("RGBa").resize(size, Image.Resampling.LANCZOS).convert("RGBA")
    cell = Image.new("RGBA", (cell_size, cell_size), (0, 0, 0, 0))
    cell.paste(small, ((cell_size - size[0]) // 2, (cell_size - size[1]) // 2))
    return cell


def _vector_tile(symbol: str, cell_size: int) -> Image.Image:
    s = cell_size * _SUPERSAMPLE
    tile = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    painter = _PAINTERS.get(symbol.replace("\ufe0f", "")) or _unknown(symbol)
    painter(tile, s)
    small = tile.convert("RGBa").resize((cell_size, cell_size), Image.Resampling.LANCZOS)
    return small.convert("RGBA")


def _glyph_tile(symbol: str, font: ImageFont.FreeTypeFont, cell_size: int) -> Image.Image:
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    x0, y0, x1, y1 = probe.textbbox((0, 0), symbol, font, embedded_color=True)
    left, top, right, bottom = math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)
    tile = Image.new("RGBA", (max(1, right - left), max(1, bottom - top)), (0, 0, 0, 0))
    ImageDraw.Draw(tile).text(
        (-left, -top), symbol, (255, 255, 255, 255), font, embedded_color=True
    )
    return _fit(tile, cell_size)


def _load_font(font_path: str | os.PathLike[str]) -> ImageFont.FreeTypeFont:
    path = Path(font_path)
    if not path.is_file():
        raise FileNotFoundError(f"font_path does not exist or is not a file: {str(path)!r}")
    try:
        return ImageFont.truetype(str(path), size=EMOJI_FONT_SIZE)
    except OSError as err:
        raise ValueError(
            f"font_path {str(path)!r} could not be loaded as a TrueType/OpenType font at size "
            f"{EMOJI_FONT_SIZE} ({err}); colour bitmap fonts such as NotoColorEmoji.ttf only "
            f"load at that size"
        ) from err


def render_grid(
    grid: Grid,
    *,
    cell_size: int = 36,
    spacing: int | None = None,
    font_path: str | os.PathLike[str] | None = None,
    background: Color = (0, 0, 0),
) -> Image.Image:
    """Draw an emoji grid as an RGB image, ``cell_size`` px per cell.

    The image is ``(cell_size + spacing) * columns + spacing`` wide and likewise high, as in the
    official renderer (there 109 px emoji, ``109 // 5`` spacing, downsized by 3).

    Args:
        grid (str | Sequence[str | Sequence[str]]): rows, each a string (split with
            :func:`split_cells`) or a sequence of cells; a single string is split into lines.
        cell_size (int): side of a cell in pixels. Default: 36
        spacing (int | None): pixels around and between cells; None means ``cell_size // 5``.
            Default: None
        font_path (str | os.PathLike[str] | None): a colour-emoji font (e.g. NotoColorEmoji.ttf)
            to draw the real glyphs at size 109, scaled to the cell; None draws built-in vector
            art for 🏠 🏢 ⬜ 🚧 🟥 🟩 🟦 🟨 🟪 🟧 and a grey cell with the character otherwise.
            Default: None
        background (tuple[int, int, int] | str): the colour between cells. Default: (0, 0, 0)

    Returns:
        PIL.Image.Image: the RGB image.

    Raises:
        ValueError: if ``grid`` is empty, has an empty row or is ragged; if ``cell_size`` or
            ``spacing`` is out of range; if ``font_path`` cannot be loaded.
        FileNotFoundError: if ``font_path`` does not exist.
    """
    table = _cells(grid)
    if isinstance(cell_size, bool) or not isinstance(cell_size, int) or cell_size < 1:
        raise ValueError(f"cell_size must be a positive int, got {cell_size!r}")
    if spacing is None:
        spacing = cell_size // 5
    if isinstance(spacing, bool) or not isinstance(spacing, int) or spacing < 0:
        raise ValueError(f"spacing must be a non-negative int or None, got {spacing!r}")
    font = None if font_path is None else _load_font(font_path)
    pitch = cell_size + spacing
    rows, cols = len(table), len(table[0])
    image = Image.new("RGB", (pitch * cols + spacing, pitch * rows + spacing), background)
    tiles: dict[str, Image.Image] = {}
    for r, row in enumerate(table):
        for c, symbol in enumerate(row):
            if symbol not in tiles:
                tiles[symbol] = (
                    _vector_tile(symbol, cell_size)
                    if font is None
                    else _glyph_tile(symbol, font, cell_size)
                )
            tile = tiles[symbol]
            image.paste(tile, (spacing + c * pitch, spacing + r * pitch), tile)
    return image


def _png_bytes(grid: Grid, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    render_grid(grid, **kwargs).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def save_grid_png(grid: Grid, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Render ``grid`` and write it to ``path`` as PNG, atomically.

    Args:
        grid (str | Sequence[str | Sequence[str]]): see :func:`render_grid`.
        path (str | os.PathLike[str]): the PNG file to write (its directory must exist).
        **kwargs (Any): keyword arguments of :func:`render_grid`.

    Returns:
        Path: the written path.
    """
    return atomic_write_bytes(path, _png_bytes(grid, **kwargs))


def grid_png_base64(grid: Grid, **kwargs: Any) -> str:
    """Render ``grid`` and return the PNG's base64 text (mime type ``image/png``).

    For a data URL use ``"data:image/png;base64," + grid_png_base64(grid)``.

    Args:
        grid (str | Sequence[str | Sequence[str]]): see :func:`render_grid`.
        **kwargs (Any): keyword arguments of :func:`render_grid`.

    Returns:
        str: the base64 (ASCII) encoding of the PNG bytes.
    """
    return base64.b64encode(_png_bytes(grid, **kwargs)).decode("ascii")
