"""MH-MoE layer benchmark: loop vs grouped vs DeepSpeed MoE, the compute floor, MH-MoE at parity.

    python packages/mhmoe/benchmarks/bench_mhmoe.py --output packages/mhmoe/benchmarks/results
    nox -s "bench(package='mhmoe')"

Takes every option of :func:`papercraft.mhmoe.bench.add_arguments` (``--tokens``, ``--d-model``,
``--expert-hidden``, ``--experts``, ``--top-k``, ``--impls``, ``--heads``, ``--parity-experts``,
``--parity-match``, ``--capacity-factor``, ``--no-backward``, ``--threads``, ``--repeats``,
``--warmup``, ``--device``, ``--dtype``, ``--seed``, ``--quick``). Without ``--output`` it writes
into ``results/`` next to this script: mhmoe_layer.json, mhmoe_layer.md and
mhmoe_layer_{tok_s,vs_floor}.png. Multi-Head Mixture-of-Experts: arXiv 2404.15045.
"""

from __future__ import annotations

import sys
from pathlib import Path

from papercraft.mhmoe.bench import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a == "--output" or a.startswith("--output=") for a in argv):
        argv += ["--output", str(Path(__file__).resolve().parent / "results")]
    sys.exit(main(argv))
