"""The wavllm demo that ``papercraft demo`` runs (``papercraft.demos`` entry point)."""

from __future__ import annotations

import json
from pathlib import Path

from papercraft.wavllm._version import __version__

__all__ = ["run_demo"]


def run_demo(output_dir: Path) -> None:
    """Run the demo at laptop scale, print what it shows and write its files under ``output_dir``.

    Args:
        output_dir (Path): directory for the demo's tables and plots; created if missing.

    Raises:
        ValueError: if ``output_dir`` exists and is not a directory.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output_dir must be a directory, got the file {output_dir}")
    output_dir.mkdir(parents=True, exist_ok=True)
    report = {"package": "papercraft-wavllm", "version": __version__, "status": "planned"}
    path = output_dir / "wavllm.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"papercraft-wavllm {__version__}: no demo yet (status: planned); wrote {path}")
