"""YOCO vs Llama benchmark: early-exit prefill, cache bytes, decode and FLOP theory at 2K–16K.

    python packages/yoco/benchmarks/bench_yoco.py --output packages/yoco/benchmarks/results
    nox -s "bench(package='yoco')"

Takes every option of ``papercraft yoco bench`` (``--lengths``, ``--hidden``, ``--layers``,
``--heads``, ``--kv-heads``, ``--self-decoder``, ``--window``, ``--chunk-size``, ``--dtype``,
``--device``, ``--repeats``, ``--decode-tokens``, ``--json``). Writes yoco_vs_llama.json,
yoco_vs_llama.md and yoco_vs_llama_{prefill,cache}.png. Every ratio is Llama / YOCO at the same
length, measured in the same run on this machine (YOCO §4.3, arXiv 2405.05254).
"""

from __future__ import annotations

import sys

from papercraft.core.cli import main

if __name__ == "__main__":
    sys.exit(main(["yoco", "bench", *sys.argv[1:]]))
