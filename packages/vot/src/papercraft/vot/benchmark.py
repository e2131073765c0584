"""Write the whole benchmark to a directory in the official layout, and load it back.

Layout (as the official ``gen-data.sh`` scripts and the released dataset)::

    OUT/manifest.json                        format papercraft.vot.benchmark, version 1
    OUT/visual-navigation/route-planning.jsonl
    OUT/visual-navigation/next-step-prediction.jsonl
    OUT/visual-navigation/configurations/level-K/N/map.png            (with png=True)
    OUT/visual-tiling/visual-tiling.jsonl
    OUT/visual-tiling/configurations/level-K/N/target-rectangle.png   (with png=True)
    OUT/natural-language-navigation/natural-language-navigation.jsonl

``puzzle_path`` and ``config_path`` of each record are relative to its JSONL file, as
officially. The directory is built in a temporary sibling and moved into place when complete;
the manifest lists every file with its SHA-256, and :func:`load_benchmark` checks the format
version (and, with ``verify=True``, the checksums).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from papercraft.core.io import (
    StrPath,
    atomic_directory,
    read_manifest,
    verify_manifest,
    write_manifest,
)
from papercraft.vot.dataset import Instance, build_task, load_instances, save_instances, task_file
from papercraft.vot.prompts import TASKS, resolve_task

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "PAPER_COUNTS",
    "load_benchmark",
    "task_path",
    "write_benchmark",
]

FORMAT = "papercraft.vot.benchmark"
FORMAT_VERSION = 1
_GROUP = {
    "route-planning": "visual-navigation",
    "next-step-prediction": "visual-navigation",
    "visual-tiling": "visual-tiling",
    "natural-language-navigation": "natural-language-navigation",
}
#: question counts per level in the paper (Table 4; NL navigation: 200 maps).
PAPER_COUNTS: dict[str, dict[int, int] | int] = {
    "route-planning": {2: 8, 3: 16, 4: 32, 5: 64, 6: 128, 7: 248},
    "next-step-prediction": {2: 8, 3: 32, 4: 96, 5: 256, 6: 640, 7: 1488},
    "visual-tiling": 796,
    "natural-language-navigation": 200,
}


def task_path(root: StrPath, task: str) -> Path:
    """The JSONL file of ``task`` inside a benchmark directory."""
    name = resolve_task(task)
    return Path(root) / _GROUP[name] / task_file(name)


def _pngs(directory: Path, instances: Sequence[Instance], **render: Any) -> int:
    from papercraft.vot.render import save_grid_png

    written: set[Path] = set()
    for inst in instances:
        if inst.task in ("route-planning", "next-step-prediction") and inst.meta.get("grid"):
            path = directory / inst.config_path / "map.png"
            rows = inst.meta["grid"]
        elif inst.task == "visual-tiling" and inst.meta.get("board"):
            path = directory / inst.config_path / "target-rectangle.png"
            rows = inst.meta["board"]
        else:
            continue
        if path not in written:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_grid_png(rows, path, **render)
            written.add(path)
    return len(written)


def write_benchmark(
    out: StrPath,
    tasks: Iterable[str] = TASKS,
    *,
    images: bool = True,
    png: bool = True,
    overwrite: bool = False,
    nl_navigation: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Generate the benchmark and write it (atomically) under ``out``.

    Args:
        out (str | PathLike): the directory to create.
        tasks (Iterable[str]): which tasks. Default: all four.
        images (bool): embed base64 PNGs in ``desc_multimodal``. Default: True.
        png (bool): also write the maps and boards as PNG files. Default: True.
        overwrite (bool): replace an existing directory. Default: False.
        nl_navigation (dict | None): keyword arguments of
            :func:`papercraft.vot.dataset.build_nl_navigation` (``n``, ``size``, ``steps``,
            ``seed``). Default: None.

    Returns:
        dict[str, int]: instances written per task (and ``"png"``: image files).

    Raises:
        FileExistsError: if ``out`` exists and ``overwrite`` is False.
    """
    names = [resolve_task(t) for t in tasks]
    if not names:
        raise ValueError("tasks must name at least one task")
    target = Path(out)
    if target.exists() and not overwrite:
        raise FileExistsError(f"out {target} already exists; pass overwrite=True to replace it")
    counts: dict[str, int] = {}
    with atomic_directory(target, overwrite=overwrite) as tmp:
        pngs = 0
        for name in names:
            extra = dict(nl_navigation or {}) if name == "natural-language-navigation" else {}
            instances = build_task(name, images=images, **extra)
            path = task_path(tmp, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_instances(instances, path)
            counts[name] = len(instances)
            if png:
                pngs += _pngs(path.parent, instances)
        counts["png"] = pngs
        write_manifest(tmp, format=FORMAT, format_version=FORMAT_VERSION,
                       metadata={"counts": counts, "images": images})  # fmt: skip
    return counts


def load_benchmark(root: StrPath, task: str, *, verify: bool = False) -> list[Instance]:
    """Load one task from a benchmark directory (checks the manifest's format and version).

    Args:
        root (str | PathLike): a directory written by :func:`write_benchmark`.
        task (str): the task (or an alias).
        verify (bool): also check every file's size and SHA-256. Default: False.

    Raises:
        CheckpointError / FormatVersionError: on a missing manifest, another format, or a newer
            version.
        FileNotFoundError: if the task was not written.
    """
    manifest = read_manifest(root, format=FORMAT, max_format_version=FORMAT_VERSION)
    if verify:
        verify_manifest(root, manifest)
    path = task_path(root, task)
    if not path.is_file():
        raise FileNotFoundError(f"task {resolve_task(task)!r} is not in the benchmark at {root}")
    return load_instances(path, task)
