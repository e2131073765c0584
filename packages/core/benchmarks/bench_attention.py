"""Attention benchmark: eager vs torch SDPA vs sliding-window (masked eager, blockwise) at 1K–8K.

    python packages/core/benchmarks/bench_attention.py --output packages/core/benchmarks/results
    nox -s "bench(package='core')"

Writes attention.json, attention.md and attention_{time,memory}.png. Every ratio is against the
eager reference at the same length, measured in the same run on this machine.
"""

from __future__ import annotations

import sys

from papercraft.core.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "attention", *sys.argv[1:]]))
