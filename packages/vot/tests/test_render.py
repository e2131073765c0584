"""Tests of papercraft.vot.render: offline PNG rendering of emoji grids."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from papercraft.vot.render import (
    EMOJI_FONT_SIZE,
    SQUARE_COLORS,
    grid_png_base64,
    render_grid,
    save_grid_png,
    split_cells,
)

NAV = ["🏠⬜🚧", "⬜🚧⬜", "⬜⬜🏢"]


def _centre(image: Image.Image, row: int, col: int, cell: int, spacing: int) -> tuple[int, ...]:
    pitch = cell + spacing
    pixel = image.getpixel((spacing + col * pitch + cell // 2, spacing + row * pitch + cell // 2))
    assert isinstance(pixel, tuple)
    return pixel


def _close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 3) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("rows", "cols", "cell", "spacing", "expected"),
    [
        (3, 3, 36, None, (136, 136)),  # (36 + 7) * 3 + 7
        (7, 9, 20, None, (220, 172)),  # (20 + 4) * n + 4
        (7, 9, 36, 0, (324, 252)),
        (3, 3, EMOJI_FONT_SIZE, None, (411, 411)),  # the official size before downsizing by 3
    ],
)
def test_image_size_follows_the_official_geometry(
    rows: int, cols: int, cell: int, spacing: int | None, expected: tuple[int, int]
) -> None:
    grid = ["⬜" * cols] * rows
    image = render_grid(grid, cell_size=cell, spacing=spacing)
    assert image.mode == "RGB"
    assert image.size == expected
    step = cell + (cell // 5 if spacing is None else spacing)
    assert image.size == (step * cols + (step - cell), step * rows + (step - cell))


def test_cell_centres_have_the_symbol_colours() -> None:
    symbols = list(SQUARE_COLORS)
    image = render_grid([symbols], cell_size=40)
    for col, symbol in enumerate(symbols):
        assert _close(_centre(image, 0, col, 40, 8), SQUARE_COLORS[symbol]), symbol
    assert image.getpixel((0, 0)) == (0, 0, 0)  # black spacing


def test_navigation_symbols_are_distinct() -> None:
    image = render_grid(NAV)
    road, obstacle = _centre(image, 0, 1, 36, 7), _centre(image, 0, 2, 36, 7)
    assert min(road) > 200  # a light square
    assert not _close(road, obstacle, tol=40)
    tiles = {
        symbol: render_grid([symbol], spacing=0).tobytes() for symbol in ("🏠", "🏢", "⬜", "🚧")
    }
    assert len(set(tiles.values())) == 4
    unknown = render_grid(["A"], cell_size=40, spacing=0)
    assert _close(unknown.getpixel((8, 8)), (0x75, 0x75, 0x75))  # type: ignore[arg-type]
    assert unknown.tobytes() != render_grid(["B"], cell_size=40, spacing=0).tobytes()


def test_background_and_row_forms_agree() -> None:
    assert render_grid(NAV, background=(9, 9, 9)).getpixel((0, 0)) == (9, 9, 9)
    reference = render_grid(NAV).tobytes()
    assert render_grid([split_cells(row) for row in NAV]).tobytes() == reference
    assert render_grid("\n".join(NAV)).tobytes() == reference
    assert render_grid([row.replace("⬜", "⬜\ufe0f") for row in NAV]).tobytes() == reference


def test_rendering_is_deterministic() -> None:
    assert grid_png_base64(NAV) == grid_png_base64(NAV)
    assert grid_png_base64(NAV) != grid_png_base64(NAV, cell_size=30)


def test_save_grid_png_writes_a_valid_png_atomically(tmp_path: Path) -> None:
    target = tmp_path / "map.png"
    assert save_grid_png(NAV, target, cell_size=24) == target
    first = target.read_bytes()
    assert first.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(target) as image:
        image.load()
        assert image.format == "PNG"
        assert image.size == ((24 + 4) * 3 + 4,) * 2
        assert image.tobytes() == render_grid(NAV, cell_size=24).tobytes()
    save_grid_png(NAV, str(target), cell_size=24)  # overwrite, str path
    assert target.read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.png"]


def test_base64_round_trip() -> None:
    text = grid_png_base64(NAV)
    assert text.isascii()
    data = base64.b64decode(text, validate=True)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        assert image.tobytes() == render_grid(NAV).tobytes()


@pytest.mark.parametrize(
    "grid",
    [[], "", [""], ["🏠⬜", "⬜"], [["🏠", "⬜"], ["⬜"]], [["🏠", ""]], [["🏠", 3]]],
)
def test_bad_grids_raise_value_error_naming_grid(grid: object) -> None:
    with pytest.raises(ValueError, match="grid"):
        render_grid(grid)  # type: ignore[arg-type]


def test_bad_sizes_raise() -> None:
    with pytest.raises(ValueError, match="cell_size"):
        render_grid(NAV, cell_size=0)
    with pytest.raises(ValueError, match="spacing"):
        render_grid(NAV, spacing=-1)


def test_split_cells() -> None:
    assert split_cells("🏠⬜🚧🏢") == ["🏠", "⬜", "🚧", "🏢"]
    assert split_cells("⬜\ufe0f⬜\ufe0f🟥") == ["⬜\ufe0f", "⬜\ufe0f", "🟥"]
    assert split_cells("🟥 🟩\t🟦") == ["🟥", "🟩", "🟦"]
    family = "👨\u200d👩\u200d👧"
    assert split_cells(family + "🏠") == [family, "🏠"]
    assert split_cells("🇺🇸🇬🇧⬜") == ["🇺🇸", "🇬🇧", "⬜"]
    assert split_cells("👍🏽1\ufe0f\u20e3") == ["👍🏽", "1\ufe0f\u20e3"]
    assert split_cells("") == []


def test_font_path_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="font_path"):
        render_grid(NAV, font_path=tmp_path / "missing.ttf")
    bogus = tmp_path / "bogus.ttf"
    bogus.write_bytes(b"not a font")
    with pytest.raises(ValueError, match="font_path"):
        render_grid(NAV, font_path=bogus)


def _emoji_fonts() -> list[Path]:
    root = Path("/usr/share/fonts")
    return sorted(root.rglob("Noto*Color*Emoji*.ttf")) if root.is_dir() else []


@pytest.mark.skipif(not _emoji_fonts(), reason="no Noto colour-emoji font in /usr/share/fonts")
def test_render_with_a_colour_emoji_font() -> None:
    font = _emoji_fonts()[0]
    image = render_grid(["🟥⬜", "🏠🏢"], cell_size=30, font_path=font)
    assert image.size == ((30 + 6) * 2 + 6,) * 2
    red = _centre(image, 0, 0, 30, 6)
    assert red[0] > red[1] + 80
    assert red[0] > red[2] + 80
    assert grid_png_base64(["🟥⬜"], font_path=font) == grid_png_base64(["🟥⬜"], font_path=font)
