"""Candidate images for preference annotation, from any diffusers pipelines (VisionPrefer §3).

VisionPrefer generates four images per prompt, one from each of SD 1.5, SD 2.1, Dreamlike
Photoreal 2.0 and SDXL (from summaries). :func:`generate_candidates` takes any mapping of
generator names to diffusers text-to-image pipelines, draws ``images_per_generator`` images per
prompt and generator, each from its own recorded seed (``torch.Generator().manual_seed``), writes
PNGs atomically and returns :class:`~papercraft.visionprefer.records.PreferenceRecord` s ready
for annotation. Images that already exist are not generated again, so an interrupted run
resumes; regenerating from a recorded seed gives the same image.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from papercraft.core.io import StrPath, atomic_write_bytes
from papercraft.visionprefer.records import ImageCandidate, PreferenceRecord

__all__ = ["candidate_seed", "generate_candidates"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def candidate_seed(base_seed: int, prompt_id: str, generator: str, index: int) -> int:
    """A stable 31-bit seed for one image, independent of the order prompts are processed in."""
    digest = hashlib.sha256(f"{base_seed}|{prompt_id}|{generator}|{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def generate_candidates(
    pipelines: Mapping[str, Any] | Any,
    prompts: Sequence[str] | Mapping[str, str],
    out_dir: StrPath,
    *,
    images_per_generator: int = 1,
    base_seed: int = 0,
    num_inference_steps: int = 30,
    guidance_scale: float = 7.5,
    height: int | None = None,
    width: int | None = None,
    **pipeline_kwargs: Any,
) -> list[PreferenceRecord]:
    """Generate, save and describe candidate images.

    Args:
        pipelines (Mapping[str, Any] | Any): ``{name: pipeline}`` or one pipeline (named
            ``"generator"``); each is called as ``pipe(prompt=..., generator=...,
            num_inference_steps=..., guidance_scale=..., height=..., width=...,
            output_type="pil")``.
        prompts (Sequence[str] | Mapping[str, str]): prompts, or ``{prompt_id: prompt}``
            (ids default to ``p00000``, ``p00001`` …).
        out_dir (StrPath): image folder; files are ``<prompt_id>/<generator>-<i>.png``.
        images_per_generator (int): images per prompt and generator. Default: 1
        base_seed (int): mixed into every image's seed (:func:`candidate_seed`). Default: 0
        num_inference_steps (int): denoising steps. Default: 30
        guidance_scale (float): classifier-free guidance. Default: 7.5
        height (int | None): image height (None: the pipeline's default). Default: None
        width (int | None): image width (None: the pipeline's default). Default: None
        **pipeline_kwargs (Any): passed on (e.g. ``negative_prompt``).

    Returns:
        list[PreferenceRecord]: one record per prompt, image paths relative to ``out_dir``.

    Raises:
        ValueError: on empty prompts, bad names or counts (before any generation).
    """
    import torch

    named = dict(pipelines) if isinstance(pipelines, Mapping) else {"generator": pipelines}
    if not named:
        raise ValueError("pipelines must name at least one pipeline")
    for name, pipe in named.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"pipelines: generator name {name!r} must match {_NAME.pattern}")
        if not callable(pipe):
            raise TypeError(f"pipelines[{name!r}] must be a callable diffusers pipeline")
    items = (
        list(prompts.items())
        if isinstance(prompts, Mapping)
        else [(f"p{i:05d}", p) for i, p in enumerate(prompts)]
    )
    if not items:
        raise ValueError("prompts must not be empty")
    for pid, prompt in items:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompts[{pid!r}] must be a non-empty string, got {prompt!r}")
        if not _NAME.match(str(pid)):
            raise ValueError(f"prompt id {pid!r} must match {_NAME.pattern}")
    if images_per_generator < 1 or num_inference_steps < 1:
        raise ValueError(
            "images_per_generator and num_inference_steps must be >= 1, got "
            f"{images_per_generator} and {num_inference_steps}"
        )
    root = Path(out_dir)
    records = []
    for pid, prompt in items:
        images = []
        for name, pipe in named.items():
            device = getattr(pipe, "device", torch.device("cpu"))
            for index in range(images_per_generator):
                seed = candidate_seed(base_seed, pid, name, index)
                relative = f"{pid}/{name}-{index}.png"
                metadata = {"num_inference_steps": num_inference_steps,
                            "guidance_scale": guidance_scale, "height": height, "width": width}  # fmt: skip
                images.append(ImageCandidate(relative, name, seed, metadata))
                if (root / relative).is_file():
                    continue
                generator = torch.Generator(device=device).manual_seed(seed)
                output = pipe(prompt=prompt, generator=generator, output_type="pil",
                              num_inference_steps=num_inference_steps,
                              guidance_scale=guidance_scale, height=height, width=width,
                              **pipeline_kwargs)  # fmt: skip
                buffer = io.BytesIO()
                output.images[0].save(buffer, format="PNG")
                atomic_write_bytes(root / relative, buffer.getvalue())
        records.append(PreferenceRecord(str(pid), prompt, images))
    return records
