"""A synthetic, verifiable preference set: coloured shapes and "a <colour> <shape>" prompts.

Used by the tests and the demo to train and check VP-Score where no real preference data or
judge is available. For a prompt such as "a red circle", the preferred image shows a red
circle and the rejected one differs in colour, shape or both; position, size, background and
pixel noise vary. :func:`shape_pairs` returns
:class:`~papercraft.visionprefer.records.PreferencePair`-like objects with PIL images in
memory, and :func:`matches` is the ground truth.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

__all__ = ["COLOURS", "SHAPES", "ShapePair", "draw_shape", "matches", "shape_pairs"]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 70, 230),
    "yellow": (235, 215, 40),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")


def draw_shape(colour: str, shape: str, *, size: int = 32, rng: random.Random | None = None) -> Any:
    """A ``size``×``size`` RGB PIL image of one shape on a noisy grey background.

    Raises:
        ValueError: on an unknown colour or shape, or ``size`` < 16.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    if colour not in COLOURS or shape not in SHAPES:
        raise ValueError(f"colour must be in {list(COLOURS)} and shape in {SHAPES}, got "
                         f"{colour!r}, {shape!r}")  # fmt: skip
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    rng = rng or random.Random(0)
    grey = rng.randint(70, 150)
    image = Image.new("RGB", (size, size), (grey, grey, grey))
    draw = ImageDraw.Draw(image)
    extent = rng.randint(size // 3, size // 2 + 2)
    x0, y0 = rng.randint(1, size - extent - 1), rng.randint(1, size - extent - 1)
    box = (x0, y0, x0 + extent, y0 + extent)
    fill = tuple(min(255, max(0, c + rng.randint(-25, 25))) for c in COLOURS[colour])
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(x0 + extent / 2, y0), (x0, y0 + extent), (x0 + extent, y0 + extent)],
                     fill=fill)  # fmt: skip
    pixels = np.asarray(image, dtype=np.int16)
    noise = np.random.default_rng(rng.randrange(2**32)).integers(-12, 13, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


@dataclass(frozen=True)
class ShapePair:
    """One synthetic preference pair (images in memory).

    Args:
        prompt (str): e.g. "a red circle".
        chosen (Any): a PIL image matching the prompt.
        rejected (Any): a PIL image that does not.
        aspect (str): always ``"prompt_following"``.
        rejected_colour (str): the rejected image's colour.
        rejected_shape (str): the rejected image's shape.
    """

    prompt: str
    chosen: Any
    rejected: Any
    aspect: str
    rejected_colour: str
    rejected_shape: str


def matches(prompt: str, colour: str, shape: str) -> bool:
    """Whether an image of ``colour`` ``shape`` is what ``prompt`` ("a red circle") asks for."""
    words = prompt.lower().split()
    return colour in words and shape in words


def shape_pairs(n: int, *, seed: int = 0, size: int = 32) -> list[ShapePair]:
    """``n`` seeded pairs; a third differ in colour only, a third in shape only, a third both.

    Raises:
        ValueError: if ``n`` < 1.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        kind = i % 3
        other_colour = colour if kind == 1 else rng.choice([c for c in COLOURS if c != colour])
        other_shape = shape if kind == 0 else rng.choice([s for s in SHAPES if s != shape])
        pairs.append(
            ShapePair(
                f"a {colour} {shape}",
                draw_shape(colour, shape, size=size, rng=rng),
                draw_shape(other_colour, other_shape, size=size, rng=rng),
                "prompt_following",
                other_colour,
                other_shape,
            )
        )
    return pairs
