"""The core's demo and its attention benchmark (eager vs SDPA vs blockwise windowed attention).

``papercraft demo`` runs this first, then every installed method package's demo. It prints the
environment (what ``papercraft info`` shows) and measures causal self-attention at 1K–8K tokens:

- ``eager`` — the reference backend, full causal attention (a T×T score matrix);
- ``sdpa`` — torch's fused ``scaled_dot_product_attention``, full causal;
- ``eager+window`` — a sliding window expressed as a mask over the full T×T scores;
- ``blockwise`` — the same sliding window computed block by block, time and memory O(T·W).

Time is the median of repeated calls; memory is the peak of one call in a child process (CPU) or
the CUDA allocator's peak. Ratios are against ``eager`` at the same length, measured in the same run.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from papercraft.core.bench import (
    BenchReport,
    format_bytes,
    machine_info,
    peak_memory,
    time_callable,
)

__all__ = [
    "ATTENTION_METHODS",
    "attention_benchmark",
    "default_methods",
    "run_demo",
    "write_attention_report",
]

# method name -> (backend, uses the window)
ATTENTION_METHODS: dict[str, tuple[str, bool]] = {
    "eager": ("eager", False),
    "sdpa": ("sdpa", False),
    "eager+window": ("eager", True),
    "blockwise": ("blockwise", True),
    "flash": ("flash", False),
    "xformers": ("xformers", False),
}
_CUDA_ONLY = ("flash", "xformers")


def default_methods(device: str) -> list[str]:
    """Every method that can run on ``device``: the CUDA kernels only where they are available."""
    from papercraft.core.attention import available_backends

    methods = [m for m in ATTENTION_METHODS if m not in _CUDA_ONLY]
    if device.startswith("cuda"):
        report = available_backends()
        methods += [m for m in _CUDA_ONLY if report[ATTENTION_METHODS[m][0]][0]]
    return methods


def _make_inputs(
    seq_len: int, heads: int, kv_heads: int, head_dim: int, dtype_name: str, device: str
) -> tuple[Any, Any, Any]:
    import torch

    dtype = getattr(torch, dtype_name)
    gen = torch.Generator(device="cpu").manual_seed(0)
    q = torch.randn(1, heads, seq_len, head_dim, generator=gen).to(device=device, dtype=dtype)
    k = torch.randn(1, kv_heads, seq_len, head_dim, generator=gen).to(device=device, dtype=dtype)
    v = torch.randn(1, kv_heads, seq_len, head_dim, generator=gen).to(device=device, dtype=dtype)
    return q, k, v


def _forward(q: Any, k: Any, v: Any, *, window: int | None, backend: str) -> None:
    import torch

    from papercraft.core.attention import attention

    with torch.no_grad():
        attention(q, k, v, causal=True, window=window, backend=backend)


def _attention_call(
    method: str,
    seq_len: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    window: int,
    dtype_name: str,
    device: str,
) -> None:
    """One forward pass, inputs included (module-level so a child process can run it)."""
    backend, windowed = ATTENTION_METHODS[method]
    q, k, v = _make_inputs(seq_len, heads, kv_heads, head_dim, dtype_name, device)
    _forward(q, k, v, window=window if windowed else None, backend=backend)


def attention_benchmark(
    *,
    seq_lens: Sequence[int] = (1024, 2048, 4096, 8192),
    methods: Sequence[str] | None = None,
    heads: int = 4,
    kv_heads: int = 4,
    head_dim: int = 64,
    window: int = 256,
    dtype: str = "float32",
    device: str = "cpu",
    repeats: int = 3,
    measure_memory: bool = True,
    progress: bool = True,
) -> BenchReport:
    """Measure each attention method at each length; ratios against ``eager``.

    Args:
        seq_lens (Sequence[int]): sequence lengths T (queries = keys = T). Default: 1K–8K.
        methods (Sequence[str] | None): names from :data:`ATTENTION_METHODS`. Default: every
            method that can run on ``device`` (:func:`default_methods`).
        heads (int): query heads. Default: 4.
        kv_heads (int): key/value heads (GQA when fewer than ``heads``). Default: 4.
        head_dim (int): head dimension. Default: 64.
        window (int): sliding-window size for the windowed methods. Default: 256.
        dtype (str): torch dtype name. Default: ``"float32"``.
        device (str): ``"cpu"`` or ``"cuda"``. Default: ``"cpu"``.
        repeats (int): timed repeats per point (median reported). Default: 3.
        measure_memory (bool): also measure peak memory per point. Default: True.
        progress (bool): print one line per point. Default: True.

    Returns:
        BenchReport: rows with method, seq_len, median_s, peak_bytes and ratios to eager. A
        point that runs out of GPU memory is kept with ``status="out of memory"`` and no numbers.
    """
    import torch

    if methods is None:
        methods = default_methods(device)
    unknown = [m for m in methods if m not in ATTENTION_METHODS]
    if unknown:
        raise ValueError(f"methods must be among {sorted(ATTENTION_METHODS)}, got {unknown}")
    if not seq_lens or any(int(t) < 1 for t in seq_lens):
        raise ValueError(f"seq_lens must be positive integers, got {list(seq_lens)}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    report = BenchReport(
        title=f"Causal self-attention, B=1, H={heads}, H_kv={kv_heads}, D={head_dim}, "
        f"window={window}, {dtype}, {device}",
        machine=machine_info(device),
    )
    for seq_len in seq_lens:
        q, k, v = _make_inputs(seq_len, heads, kv_heads, head_dim, dtype, device)
        for method in methods:
            backend, windowed = ATTENTION_METHODS[method]

            call = functools.partial(
                _forward, q, k, v, window=window if windowed else None, backend=backend
            )
            try:
                median: float | None = time_callable(call, warmup=1, repeats=repeats).median
                peak = None
                if measure_memory:
                    peak = peak_memory(
                        _attention_call,
                        method,
                        seq_len,
                        heads,
                        kv_heads,
                        head_dim,
                        window,
                        dtype,
                        device,
                        device=device,
                    )
                status = "ok"
            except torch.OutOfMemoryError:  # e.g. eager's T×T scores at 32K on a GPU
                median, peak, status = None, None, "out of memory"
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            report.add(
                method=method, seq_len=int(seq_len), median_s=median, peak_bytes=peak, status=status
            )
            if progress:
                if median is None:
                    print(f"  attention {method:>13} T={seq_len:>5}: {status}")
                else:
                    mem = "" if peak is None else f", peak {format_bytes(peak)}"
                    print(f"  attention {method:>13} T={seq_len:>5}: {median * 1e3:8.1f} ms{mem}")
    metrics = ["median_s", "peak_bytes"] if measure_memory else ["median_s"]
    report.add_ratios(by="method", baseline="eager", metrics=metrics, keys=["seq_len"])
    report.notes.append(
        "ratios are against the eager reference at the same length, measured in the same run; "
        "peak memory includes the inputs."
    )
    return report


def write_attention_report(report: BenchReport, output_dir: Path) -> dict[str, Path]:
    """Write ``attention.json``/``.md`` and, with matplotlib, time and memory plots (PNG)."""
    paths = report.write(output_dir, "attention")
    metrics = {
        "time": ("median_s", "median time (s)"),
        "memory": ("peak_bytes", "peak memory (bytes)"),
    }
    paths.update(
        report.plot_metrics(output_dir, "attention", x="seq_len", series="method", metrics=metrics)
    )
    return paths


def run_demo(output_dir: Path, *, quick: bool = False) -> BenchReport:
    """The core's demo: environment info, then the attention benchmark with table + plot.

    Args:
        output_dir (Path): where ``attention.json``, ``attention.md`` and ``attention.png`` go.
        quick (bool): shorter lengths and fewer repeats (for smoke tests). Default: False.
    """
    from rich.console import Console

    from papercraft.core.info import render_info

    console = Console()
    render_info(console)
    seq_lens = (256, 512) if quick else (1024, 2048, 4096, 8192)
    console.print("\n[bold]Attention benchmark[/bold] (eager vs sdpa vs windowed)")
    report = attention_benchmark(
        seq_lens=seq_lens,
        window=64 if quick else 256,
        repeats=1 if quick else 3,
        measure_memory=not quick,
    )
    paths = write_attention_report(report, output_dir)
    console.print()
    console.print(report.to_markdown())
    for kind, path in paths.items():
        console.print(f"wrote {kind}: {path}")
    return report
