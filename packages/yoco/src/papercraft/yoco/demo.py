"""The yoco demo that ``papercraft demo`` runs (``papercraft.demos`` entry point).

It shows at laptop scale what YOCO §4.3 (arXiv 2405.05254) claims: against a Llama of the same
size, YOCO's early-exit prefill gets faster as the prompt grows (the self-decoder is linear in the
length, the cross-decoder runs for one position) and its cache is about ``L`` times smaller (one
global K/V instead of one per layer). It runs :func:`papercraft.yoco.bench.run_benchmark` at 2K–8K
tokens with one timed repeat (under a minute on a 2-core CPU), prints the ratio table with rich and
writes ``yoco_vs_llama.{json,md}`` and the prefill/cache plots under the output folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from papercraft.core.bench import BenchReport
from papercraft.yoco.bench import BenchSettings, ratio_rows, run_benchmark, write_report

__all__ = ["DEMO_SETTINGS", "run_demo"]

#: The demo's settings: the issue's target model (d=256, 8 layers, 4 heads, 2 KV heads, gRet,
#: fp32) at 2K, 4K and 8K tokens, one warm-up and one timed prefill, 8 decode steps.
DEMO_SETTINGS = BenchSettings(lengths=(2048, 4096, 8192), repeats=1, warmup=1, decode_tokens=8)


def _fmt(value: object, suffix: str = "×") -> str:
    return "—" if not isinstance(value, (int, float)) else f"{value:.2f}{suffix}"


def run_demo(
    output_dir: Path,
    *,
    settings: BenchSettings | None = None,
    lengths: Sequence[int] | None = None,
) -> BenchReport:
    """Run the demo at laptop scale, print the ratio table and write its files under ``output_dir``.

    Args:
        output_dir (Path): directory for the demo's tables and plots; created if missing.
        settings (BenchSettings | None): what to run. Default: :data:`DEMO_SETTINGS`.
        lengths (Sequence[int] | None): overrides ``settings.lengths``. Default: None.

    Returns:
        BenchReport: the measurements (see :func:`papercraft.yoco.bench.run_benchmark`).

    Raises:
        ValueError: if ``output_dir`` exists and is not a directory, or for bad settings.
    """
    from rich.console import Console
    from rich.table import Table

    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output_dir must be a directory, got the file {output_dir}")
    settings = settings if settings is not None else DEMO_SETTINGS
    if lengths is not None:
        settings = dataclasses.replace(settings, lengths=tuple(lengths))
    settings.yoco_config()  # refuse a bad combination before building anything
    output_dir.mkdir(parents=True, exist_ok=True)

    console = Console()
    console.print(
        f"[bold]YOCO vs Llama[/bold]: d={settings.hidden_size}, L={settings.num_layers}, "
        f"H={settings.num_heads}, H_kv={settings.num_kv_heads}, {settings.self_decoder}, "
        f"{settings.dtype} on {settings.device}; prompts of {list(settings.lengths)} tokens"
    )
    report = run_benchmark(settings, progress=True)
    table = Table(title="YOCO vs a Llama of the same size (higher is better for YOCO)")
    table.add_column("tokens", justify="right")
    table.add_column("prefill speed-up", justify="right")
    table.add_column("FLOP theory", justify="right")
    table.add_column("measured / theory", justify="right")
    table.add_column("cache smaller by", justify="right")
    table.add_column("decode speed-up", justify="right")
    for row in ratio_rows(report):
        table.add_row(
            str(row["seq_len"]),
            _fmt(row["prefill_speedup"]),
            _fmt(row["theory_speedup"]),
            _fmt(row["measured_over_theory"], ""),
            _fmt(row["cache_reduction"]),
            _fmt(row["decode_speedup"]),
        )
    console.print(table)
    for kind, path in write_report(report, output_dir).items():
        console.print(f"wrote {kind}: {path}")
    return report
