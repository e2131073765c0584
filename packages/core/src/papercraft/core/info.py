"""What ``papercraft info`` reports: versions, device, attention backends and installed packages."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

from papercraft.core._version import __version__

__all__ = ["collect_info", "installed_packages", "render_info"]

_LIBRARIES = (
    "torch",
    "transformers",
    "safetensors",
    "tokenizers",
    "numpy",
    "flash-attn",
    "xformers",
)


def installed_packages() -> dict[str, str]:
    """Installed papercraft distributions (``papercraft-*``) and their versions, sorted by name."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or ""
        if name.lower().startswith("papercraft-") and name.lower() != "papercraft-workspace":
            found[name.lower()] = dist.version
    return dict(sorted(found.items()))


def _version_of(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def collect_info() -> dict[str, Any]:
    """Everything ``papercraft info`` shows, as plain data (also printed with ``--json``)."""
    import torch

    from papercraft.core.attention import available_backends

    device: dict[str, Any] = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        device["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        device["cuda_version"] = torch.version.cuda
    else:
        device["cuda"] = []
    mps = getattr(torch.backends, "mps", None)
    device["mps"] = bool(mps is not None and mps.is_available())
    backends = {
        name: {"available": ok, "reason": reason}
        for name, (ok, reason) in available_backends().items()
    }
    return {
        "papercraft_core": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": {lib: _version_of(lib) for lib in _LIBRARIES},
        "packages": installed_packages(),
        "device": device,
        "attention_backends": backends,
        "attention_env": os.environ.get("PAPERCRAFT_ATTENTION"),
    }


def render_info(console: Any = None, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Print :func:`collect_info` as rich tables; returns the data."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    info = info or collect_info()
    console.print(
        f"[bold]papercraft-core {info['papercraft_core']}[/bold] — Python {info['python']} "
        f"on {escape(info['platform'])}"
    )
    dev = info["device"]
    accel = ", ".join(dev["cuda"]) if dev["cuda"] else ("MPS" if dev["mps"] else "none")
    console.print(
        f"device: {dev['cpu_count']} CPU cores ({dev['torch_threads']} torch threads); "
        f"accelerator: {accel}"
    )

    libs = Table(title="libraries", show_edge=False)
    libs.add_column("library")
    libs.add_column("version")
    for lib, version in info["libraries"].items():
        libs.add_row(lib, version or "[dim]not installed[/dim]")
    console.print(libs)

    pkgs = Table(title="papercraft packages", show_edge=False)
    pkgs.add_column("package")
    pkgs.add_column("version")
    for name, version in info["packages"].items():
        pkgs.add_row(name, version)
    console.print(pkgs)

    table = Table(title="attention backends", show_edge=False)
    table.add_column("backend")
    table.add_column("usable")
    table.add_column("why not")
    for name, entry in info["attention_backends"].items():
        usable = "[green]yes[/green]" if entry["available"] else "[red]no[/red]"
        table.add_row(name, usable, "" if entry["available"] else escape(str(entry["reason"])))
    console.print(table)
    if info.get("attention_env"):
        console.print(f"PAPERCRAFT_ATTENTION={info['attention_env']}")
    return info
