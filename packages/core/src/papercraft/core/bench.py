"""Benchmark helpers: wall-clock timing, peak memory, side-by-side ratios and reports.

The house rule (DESIGN.md, rule 11) is that benchmarks are scripts, never timed assertions in
tests, and that numbers are ratios against a named baseline measured in the same run. This module
gives every package the same tools for that:

- :func:`time_callable` — warm-up, repeats, median/min/max (CUDA-synchronised on GPU).
- :func:`peak_memory` — peak memory of one call: CUDA allocator statistics on a GPU, or the peak
  resident set size (RSS) of a child process on CPU, so that the parent's memory history does not
  pollute the measurement.
- :class:`BenchReport` — rows of measurements plus the machine they came from, with ratios against a
  baseline, written as JSON, a Markdown table and (with matplotlib, the ``plot`` extra) a PNG plot.
"""

from __future__ import annotations

import datetime as _dt
import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from papercraft.core._version import __version__
from papercraft.core.io import atomic_write, atomic_write_json, atomic_write_text

__all__ = [
    "BenchReport",
    "Timing",
    "format_bytes",
    "machine_info",
    "peak_memory",
    "time_callable",
    "time_interleaved",
]


@dataclass(frozen=True)
class Timing:
    """Wall-clock statistics of repeated calls, in seconds.

    Args:
        times (list[float]): every timed repeat (warm-up calls excluded).
    """

    times: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times)

    def as_dict(self) -> dict[str, float]:
        return {"median_s": self.median, "min_s": self.min, "max_s": self.max, "mean_s": self.mean}


def _cuda_synchronize() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of the core
        return
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_callable(
    fn: Callable[[], Any],
    *,
    warmup: int = 1,
    repeats: int = 5,
    max_seconds: float | None = None,
) -> Timing:
    """Time ``fn()`` after ``warmup`` untimed calls.

    CUDA work is synchronised before and after every call, so GPU kernels are timed to completion.

    Args:
        fn (Callable[[], Any]): the work to time; called with no arguments.
        warmup (int): untimed calls first (compilation, caches, allocator). Default: 1.
        repeats (int): timed calls. Default: 5.
        max_seconds (float | None): stop repeating once this much time was spent in timed calls
            (at least one timed call always runs). Default: None (no limit).

    Returns:
        Timing: the per-call times.

    Raises:
        ValueError: if ``warmup < 0``, ``repeats < 1`` or ``max_seconds <= 0``.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be > 0 or None, got {max_seconds}")
    for _ in range(warmup):
        fn()
    _cuda_synchronize()
    times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _cuda_synchronize()
        times.append(time.perf_counter() - start)
        if max_seconds is not None and sum(times) >= max_seconds:
            break
    return Timing(times)


def time_interleaved(
    fns: Mapping[str, Callable[[], Any]],
    *,
    warmup: int = 1,
    repeats: int = 5,
    device: Any = None,
) -> dict[str, Timing]:
    """Time several functions with their repeats interleaved round-robin.

    Every function gets ``warmup`` untimed calls first; then each round calls every function
    once, so a machine that is busier at one moment slows all of them alike (the way to compare
    implementations on a shared CPU). CUDA work is synchronised after every call.

    Args:
        fns (Mapping[str, Callable[[], Any]]): name → the work to time.
        warmup (int): untimed calls per function. Default: 1.
        repeats (int): timed rounds. Default: 5.
        device (Any): a ``torch.device`` / string to synchronise; None synchronises the current
            CUDA device when CUDA is in use. Default: None.

    Returns:
        dict[str, Timing]: per name, its timed calls.

    Raises:
        ValueError: if ``warmup < 0`` or ``repeats < 1``.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")

    def sync() -> None:
        if device is None:
            _cuda_synchronize()
            return
        import torch

        dev = torch.device(device)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: Timing(values) for name, values in times.items()}


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _child_peak(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """Run in the child: peak RSS growth (bytes) while calling ``fn``."""
    before = _current_rss_bytes()
    fn(*args, **kwargs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return max(0, peak - before)


_FORKSERVER: Any = None


def _forkserver_context() -> Any:
    """A forkserver context with torch preloaded, so each measured child starts in ~1 s."""
    global _FORKSERVER
    if _FORKSERVER is None:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["torch"])
        _FORKSERVER = ctx
    return _FORKSERVER


def peak_memory(
    fn: Callable[..., Any],
    *args: Any,
    device: str = "cpu",
    **kwargs: Any,
) -> int:
    """Peak memory, in bytes, that one call ``fn(*args, **kwargs)`` needs beyond what it started with.

    On CUDA this reads the caching allocator's peak (``torch.cuda.max_memory_allocated``) around
    the call in this process. On CPU the call runs in a fresh child process (a forkserver with torch
    preloaded, not a fork of this process: forking after OpenMP threads started can deadlock) and
    the child's peak resident set size minus its size before the call is returned. The CPU path
    therefore needs ``fn`` and its arguments to be picklable: a module-level function that builds its
    own inputs from small arguments (sizes, seeds) is the intended use.

    Args:
        fn (Callable[..., Any]): the work to measure.
        *args (Any): positional arguments for ``fn``.
        device (str): ``"cpu"`` or a CUDA device string such as ``"cuda"``/``"cuda:0"``.
            Default: ``"cpu"``.
        **kwargs (Any): keyword arguments for ``fn``.

    Returns:
        int: peak bytes above the starting level.

    Raises:
        ValueError: for a device that is neither CPU nor CUDA, or CUDA when none is available.
        RuntimeError: when the CPU child process fails (its error is chained).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available on this machine")
        dev = torch.device(device)
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        start = torch.cuda.memory_allocated(dev)
        fn(*args, **kwargs)
        torch.cuda.synchronize(dev)
        return max(0, torch.cuda.max_memory_allocated(dev) - start)
    if device != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if platform.system() != "Linux":
        raise RuntimeError("CPU peak-memory measurement reads /proc and needs Linux")
    ctx = _forkserver_context()
    with ctx.Pool(1) as pool:
        try:
            return int(pool.apply(_child_peak, (fn, args, kwargs)))
        except Exception as exc:
            raise RuntimeError(f"measuring peak memory of {fn!r} failed in the child") from exc


def format_bytes(n: float) -> str:
    """Human-readable bytes: ``format_bytes(3 * 2**20) == '3.0 MiB'``."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "n/a"
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    value = float(n)
    for unit in units:
        if abs(value) < 1024 or unit == units[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """Where a benchmark ran: OS, Python, CPU count, torch version and accelerator.

    Args:
        device (str): the device the measurements were made on: ``"cpu"`` or ``"cuda[:N]"``.
            ``device`` in the result names it (the GPU's model for CUDA); a GPU that is present
            but unused is listed under ``accelerators`` only. Default: ``"cpu"``.
    """
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "papercraft_core": __version__,
        "device": "cpu",
    }
    try:
        import torch
    except ImportError:  # pragma: no cover
        return info
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        info["accelerators"] = [
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        ]
        info["cuda"] = torch.version.cuda
        if device.startswith("cuda"):
            info["device"] = torch.cuda.get_device_name(torch.device(device))
    return info


@dataclass
class BenchReport:
    """A table of benchmark measurements with the machine they came from.

    Each row is a flat mapping of parameters (e.g. ``method``, ``seq_len``) and measured values (e.g.
    ``median_s``, ``peak_bytes``). :meth:`add_ratios` adds ``<metric>_ratio`` columns relative to a
    named baseline row with the same parameters, measured in the same run.

    Args:
        title (str): what was measured.
        rows (list[dict[str, Any]]): the measurements. Default: empty.
        machine (dict[str, Any]): from :func:`machine_info`. Default: this machine.
        notes (list[str]): free-form remarks shown under the table. Default: empty.
    """

    title: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=machine_info)
    notes: list[str] = field(default_factory=list)
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )

    def add(self, **row: Any) -> None:
        """Append one row of parameters and measurements."""
        self.rows.append(dict(row))

    def add_ratios(
        self,
        *,
        by: str,
        baseline: str,
        metrics: Sequence[str],
        keys: Sequence[str] = (),
    ) -> None:
        """Add ``<metric>_ratio`` = value / baseline value for each row.

        Args:
            by (str): the column naming the compared thing (e.g. ``"method"``).
            baseline (str): the value of ``by`` that is the baseline (e.g. ``"eager"``).
            metrics (Sequence[str]): the columns to take ratios of (e.g. ``["median_s"]``).
            keys (Sequence[str]): columns that must match between a row and its baseline row
                (e.g. ``["seq_len"]``). Default: none.

        Raises:
            ValueError: if no row has ``by == baseline``.
        """
        base_rows = [r for r in self.rows if r.get(by) == baseline]
        if not base_rows:
            raise ValueError(f"baseline {by}={baseline!r} has no rows in report {self.title!r}")
        index = {tuple(r.get(k) for k in keys): r for r in base_rows}
        for row in self.rows:
            base = index.get(tuple(row.get(k) for k in keys))
            for metric in metrics:
                value = row.get(metric)
                ref = None if base is None else base.get(metric)
                ok = isinstance(value, (int, float)) and isinstance(ref, (int, float)) and ref
                row[f"{metric}_ratio"] = (value / ref) if ok else None  # type: ignore[operator]

    # ----------------------------------------------------------------------------------------
    # Output
    # ----------------------------------------------------------------------------------------
    def columns(self) -> list[str]:
        cols: list[str] = []
        for row in self.rows:
            for key in row:
                if key not in cols:
                    cols.append(key)
        return cols

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self, formats: Mapping[str, Callable[[Any], str]] | None = None) -> str:
        """A Markdown table of the rows (bytes columns humanised, floats to 4 significant digits)."""
        formats = dict(formats or {})
        cols = self.columns()

        def fmt(col: str, value: Any) -> str:
            if col in formats:
                return formats[col](value)
            if value is None:
                return "—"
            if col.endswith("_bytes") and isinstance(value, (int, float)):
                return format_bytes(value)
            if isinstance(value, float):
                return f"{value:.4g}"
            return str(value)

        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "|".join("---" for _ in cols) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(fmt(c, row.get(c)) for c in cols) + " |")
        lines.append("")
        device = self.machine.get("device", "?")
        lines.append(
            f"Machine: {self.machine.get('platform', '?')}, {self.machine.get('cpu_count', '?')} CPUs, "
            f"device {device}, torch {self.machine.get('torch', '?')}; {self.created}."
        )
        lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines) + "\n"

    def plot(
        self,
        path: str | os.PathLike[str],
        *,
        x: str,
        y: str,
        series: str,
        logx: bool = False,
        logy: bool = False,
        ylabel: str | None = None,
    ) -> Path:
        """Draw ``y`` against ``x``, one line per value of ``series``, to a PNG (atomically).

        Needs matplotlib (``pip install 'papercraft-core[plot]'``).
        """
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError(
                "plotting needs matplotlib: pip install 'papercraft-core[plot]'"
            ) from exc
        out = Path(path)
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
        names: list[Any] = []
        for row in self.rows:
            if row.get(series) not in names:
                names.append(row.get(series))
        for name in names:
            pts = sorted(
                (r[x], r[y])
                for r in self.rows
                if r.get(series) == name and r.get(x) is not None and r.get(y) is not None
            )
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=str(name))
        ax.set_xlabel(x)
        ax.set_ylabel(ylabel or y)
        if logx:
            ax.set_xscale("log", base=2)
        if logy:
            ax.set_yscale("log")
        ax.set_title(textwrap.fill(self.title, 70), fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        try:
            with atomic_write(out, "wb") as handle:
                fig.savefig(handle, format="png")
        finally:
            plt.close(fig)
        return out

    def write(
        self,
        directory: str | os.PathLike[str],
        stem: str,
        *,
        markdown: str | None = None,
    ) -> dict[str, Path]:
        """Write ``<stem>.json`` and ``<stem>.md`` under ``directory`` (atomically); return paths.

        Args:
            directory (str | os.PathLike[str]): output folder (created if missing).
            stem (str): file name without suffix.
            markdown (str | None): the Markdown to write instead of :meth:`to_markdown`
                (e.g. with extra tables). Default: None.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        json_path = out / f"{stem}.json"
        md_path = out / f"{stem}.md"
        atomic_write_json(json_path, self.to_dict())
        atomic_write_text(md_path, self.to_markdown() if markdown is None else markdown)
        return {"json": json_path, "markdown": md_path}

    def plot_metrics(
        self,
        directory: str | os.PathLike[str],
        stem: str,
        *,
        x: str,
        series: str,
        metrics: Mapping[str, tuple[str, str]],
        logx: bool = True,
        logy: bool = True,
    ) -> dict[str, Path]:
        """One PNG per metric, ``<stem>_<name>.png``, skipping metrics no row has.

        Without matplotlib it prints why and returns the plots drawn so far (none).

        Args:
            directory (str | os.PathLike[str]): output folder.
            stem (str): file-name prefix.
            x (str): the column on the x axis (e.g. ``"seq_len"``).
            series (str): the column naming one line per value (e.g. ``"method"``).
            metrics (Mapping[str, tuple[str, str]]): plot name -> (column, y-axis label).
            logx (bool): log2 x axis. Default: True.
            logy (bool): log y axis. Default: True.

        Returns:
            dict[str, Path]: ``"<name>_plot"`` -> the PNG written.
        """
        paths: dict[str, Path] = {}
        for name, (metric, label) in metrics.items():
            if all(row.get(metric) is None for row in self.rows):
                continue
            try:
                paths[f"{name}_plot"] = self.plot(
                    Path(directory) / f"{stem}_{name}.png",
                    x=x,
                    y=metric,
                    series=series,
                    logx=logx,
                    logy=logy,
                    ylabel=label,
                )
            except ImportError as exc:
                print(f"no plot: {exc}")
                break
        return paths
