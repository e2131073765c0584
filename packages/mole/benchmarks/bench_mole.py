"""MoLE inference latency against a merged adapter and merged weights (4 LoRAs by default).

    python packages/mole/benchmarks/bench_mole.py --output packages/mole/benchmarks/results
    nox -s "bench(package='mole')"

Takes every option of :func:`papercraft.mole.bench.add_arguments` (``--num-adapters``,
``--rank``, ``--hidden-size``, ``--num-layers``, ``--batch``, ``--tokens``, ``--granularities``,
``--threads``, ``--repeats``, ``--warmup``, ``--seed``). Without ``--output`` it writes
mole_latency.json and mole_latency.md into ``results/`` next to this script. Mixture of LoRA
Experts: arXiv 2404.13628.
"""

from __future__ import annotations

import sys
from pathlib import Path

from papercraft.mole.bench import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a == "--output" or a.startswith("--output=") for a in argv):
        argv += ["--output", str(Path(__file__).resolve().parent / "results")]
    sys.exit(main(argv))
