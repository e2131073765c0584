"""The mhmoe demo that ``papercraft demo`` runs (``papercraft.demos`` entry point).

Shows, in a couple of minutes on a laptop CPU, what Multi-Head Mixture-of-Experts (arXiv
2404.15045) is about: the parity table of the MH-v2 configs (arXiv 2411.16205: the baseline SMoE
d 768, 8 experts, top-1, d_moe 2048 against MH-MoE h = 2 / 3 at equal parameters and FLOPs), then
a short :func:`~papercraft.mhmoe.compare.compare_smoe_mhmoe` run: a tiny SMoE and a parity-matched
MH-MoE trained alike on CPython's documentation, with their validation perplexity and
expert-activation heatmaps, reported as measured (a few hundred steps show the activation
pattern, not the paper's perplexity gap).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from papercraft.core.io import atomic_write_json, atomic_write_text
from papercraft.mhmoe._version import __version__

__all__ = ["DEMO_SETTINGS", "QUICK_SETTINGS", "run_demo"]

#: :func:`~papercraft.mhmoe.compare.compare_smoe_mhmoe` arguments of the demo (~2 min, 2 cores).
DEMO_SETTINGS: dict[str, Any] = {
    "hidden_size": 128,
    "num_layers": 4,
    "num_attention_heads": 4,
    "moe_every": 1,
    "num_experts": 8,
    "top_k": 1,
    "expert_hidden": 256,
    "num_heads": 2,
    "vocab_size": 1024,
    "block_size": 64,
    "batch_size": 8,
    "max_steps": 300,
    "learning_rate": 3e-3,
    "dispatch": "grouped",
    "max_documents": 40,
}
#: Seconds-long settings of ``run_demo(..., quick=True)`` (tests, smoke checks).
QUICK_SETTINGS: dict[str, Any] = {
    "hidden_size": 32,
    "num_layers": 2,
    "num_attention_heads": 2,
    "num_experts": 4,
    "expert_hidden": 64,
    "vocab_size": 300,
    "block_size": 32,
    "batch_size": 4,
    "max_steps": 3,
    "max_documents": 4,
}
_MHV2_BASELINE = {"d_model": 768, "num_experts": 8, "top_k": 1, "expert_hidden": 2048}


def run_demo(output_dir: Path, *, quick: bool = False) -> None:
    """Run the demo at laptop scale, print what it shows and write its files under ``output_dir``.

    Writes ``parity.md``, the comparison (``compare.json``, ``compare.md``, ``smoe/`` and
    ``mhmoe/`` with their heatmaps) and a summary ``mhmoe.json``.

    Args:
        output_dir (Path): directory for the demo's tables and plots; created if missing.
        quick (bool): a seconds-long run with tiny sizes (for tests). Default: False

    Raises:
        ValueError: if ``output_dir`` exists and is not a directory.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output_dir must be a directory, got the file {output_dir}")
    from papercraft.mhmoe.compare import compare_smoe_mhmoe
    from papercraft.mhmoe.parity import parity_table

    output_dir.mkdir(parents=True, exist_ok=True)
    table = parity_table(_MHV2_BASELINE, (2, 3), match=("params", "params+flops"))
    print("MH-MoE parity configs for the MH-v2 baseline (d 768, 8 experts, top-1, d_moe 2048):")
    print(table)
    atomic_write_text(output_dir / "parity.md", table)

    settings = {**DEMO_SETTINGS, **(QUICK_SETTINGS if quick else {})}
    print(
        f"Training SMoE and MH-MoE h={settings['num_heads']} for {settings['max_steps']} steps "
        "each on CPython's pydoc topics (same seed, same data order) ..."
    )
    start = time.perf_counter()
    result = compare_smoe_mhmoe(output_dir, progress=False, **settings)
    wall = time.perf_counter() - start
    markdown = result.to_markdown()
    print(markdown)
    print(
        f"Measured in {wall:.0f} s. τ = 1/(2E): an expert counts as active with at least half "
        "of its uniform share of a layer's assignments. Tiny model, short run: no claim about "
        "the paper's numbers."
    )
    summary = {
        "package": "papercraft-mhmoe",
        "version": __version__,
        "quick": quick,
        "wall_time_s": wall,
        "parity_table": table,
        "compare_table": markdown,
        "compare": result.to_dict(),
    }
    path = atomic_write_json(output_dir / "mhmoe.json", summary)
    print(f"wrote {path}, {output_dir / 'compare.md'} and the heatmaps")
