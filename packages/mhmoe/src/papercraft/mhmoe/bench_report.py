"""Turning :mod:`papercraft.mhmoe.bench` timings into report rows, target verdicts and files.

``_rows`` makes one table row per implementation of a measured point (ms, tokens/s, ratios to the
compute floor), ``_targets`` states the issue's targets as PASS / MISS lines with their numbers, and
:func:`write_report` writes the JSON, Markdown and plots of a :class:`~papercraft.core.bench.BenchReport`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from papercraft.core.bench import BenchReport

if TYPE_CHECKING:
    from papercraft.mhmoe.bench import BenchOptions, _Point

__all__ = ["write_report"]

_STEM = "mhmoe_layer"


def _rows(
    point: _Point,
    times: dict[str, dict[str, float | None]],
    floor_impl: dict[str, str],
    tokens: int,
) -> list[dict[str, Any]]:
    floor = times["floor"]
    rows = []
    for name in [*point.layers, "floor"]:
        t = times.get(name)
        if not t or t.get("fwd_s") is None:
            continue  # it could not run here (see the notes)
        row: dict[str, Any] = {
            "section": point.section,
            "impl": name,
            "experts": point.experts,
            "heads": point.heads,
            "top_k": point.top_k,
            "expert_hidden": point.expert_hidden,
            "fwd_ms": _ms(t.get("fwd_s")),
            "fwdbwd_ms": _ms(t.get("fwdbwd_s")),
            "fwd_min_ms": _ms(t.get("fwd_min_s")),
            "fwd_tok_s": _per_s(tokens, t.get("fwd_s")),
            "fwdbwd_tok_s": _per_s(tokens, t.get("fwdbwd_s")),
            "fwd_vs_floor": _ratio(t.get("fwd_s"), floor.get("fwd_s")),
            "fwdbwd_vs_floor": _ratio(t.get("fwdbwd_s"), floor.get("fwdbwd_s")),
            "fwd_min_vs_floor": _ratio(t.get("fwd_min_s"), floor.get("fwd_min_s")),
            "dropped": point.dropped,
            "gflops_per_call": point.flops_per_token * tokens / 1e9,
            "params": point.params,
        }
        if name == "floor":
            row["impl"] = "floor (" + "/".join(sorted(set(floor_impl.values()))) + ")"
        rows.append(row)
    return rows


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def _per_s(tokens: int, seconds: float | None) -> float | None:
    return None if not seconds else tokens / seconds


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _targets(rows: list[dict[str, Any]], options: BenchOptions, device: torch.device) -> list[str]:
    """The issue's targets as PASS / MISS lines with the numbers behind them."""
    lines: list[str] = []

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    at = 32 if 32 in options.experts else max(options.experts)
    grouped = _find(rows, section="dispatch", impl="grouped", experts=at)
    if grouped is not None and grouped["fwd_vs_floor"] is not None:
        ratio = grouped["fwd_vs_floor"]
        bwd = grouped["fwdbwd_vs_floor"]
        bwd_text = "" if bwd is None else f"; fwd+bwd {bwd:.2f}× (not a target)"
        lines.append(
            f"{verdict(ratio <= 1.2)} layer (grouped) within 1.2× of the compute floor at "
            f"E={at}: forward {ratio:.2f}× (min-based {grouped['fwd_min_vs_floor']:.2f}×)"
            f"{bwd_text}"
        )
        loop = _find(rows, section="dispatch", impl="loop", experts=at)
        if loop is not None and loop["fwd_vs_floor"] is not None:
            lines.append(
                f"{verdict(loop['fwd_vs_floor'] <= 1.2)} layer (loop) within 1.2× of the compute "
                f"floor at E={at}: forward {loop['fwd_vs_floor']:.2f}× (min-based "
                f"{loop['fwd_min_vs_floor']:.2f}×)"
            )
    ds = _find(rows, section="dispatch", impl="deepspeed", experts=at)
    if grouped is not None and ds is not None:
        lines.append(
            f"{verdict(grouped['fwd_ms'] < ds['fwd_ms'])} layer (grouped) faster than DeepSpeed MoE "
            f"at E={at}: forward {grouped['fwd_ms']:.1f} ms vs {ds['fwd_ms']:.1f} ms "
            f"({ds['fwd_ms'] / grouped['fwd_ms']:.2f}×; min {grouped['fwd_min_ms']:.1f} vs "
            f"{ds['fwd_min_ms']:.1f} ms)"
        )
    for section, heads, what in (
        ("parity", options.heads, f"d {options.d_model}, {options.parity_experts}-expert SMoE"),
        ("parity_mhv2", options.mhv2_heads, "MH-v2 configuration, d 768"),
    ):
        smoe = _find(rows, section=section, impl="grouped", heads=1)
        for h in heads:
            mh = _find(rows, section=section, impl="grouped", heads=h)
            if smoe is None or mh is None:
                continue
            ratio = mh["fwd_ms"] / smoe["fwd_ms"]
            lines.append(
                f"{verdict(ratio <= 1.25)} MH-MoE h={h} ({mh['experts']} experts, "
                f"top-{mh['top_k']}, hidden {mh['expert_hidden']}; {what}) within 1.25× of SMoE "
                f"at {options.parity_match} parity: forward {ratio:.2f}× ({mh['fwd_ms']:.1f} vs "
                f"{smoe['fwd_ms']:.1f} ms; min-based {mh['fwd_min_ms'] / smoe['fwd_min_ms']:.2f}×)"
            )
    loop = _find(rows, section="dispatch", impl="loop", experts=at)
    if device.type == "cuda" and loop is not None and grouped is not None:
        speedup = loop["fwd_ms"] / grouped["fwd_ms"]
        lines.append(
            f"{verdict(speedup >= 3)} GPU: grouped ≥ 3× faster than loop at E={at}: {speedup:.2f}×"
        )
    return lines


# ----------------------------------------------------------------------------------------------
# Running and reporting
# ----------------------------------------------------------------------------------------------
def write_report(
    report: BenchReport, output_dir: str | os.PathLike[str], *, stem: str = _STEM
) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and, with matplotlib, two PNG plots (atomically).

    The plots show the dispatch section against the expert count, one line per implementation:
    forward tokens/s (``<stem>_tok_s.png``) and forward time over the floor
    (``<stem>_vs_floor.png``).

    Args:
        report (BenchReport): from :func:`run_bench`.
        output_dir (str | os.PathLike[str]): created if missing.
        stem (str): file-name stem. Default: ``"mhmoe_layer"``.

    Returns:
        dict[str, Path]: ``json``, ``markdown`` and the plots drawn.

    Raises:
        ValueError: if ``output_dir`` is a file or ``stem`` is empty.
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir must be a directory, got the file {out}")
    if not stem or "/" in stem:
        raise ValueError(f"stem must be a non-empty file-name stem, got {stem!r}")
    paths = report.write(out, stem)
    dispatch = replace(
        report, rows=[r for r in report.rows if r["section"] == "dispatch"], notes=[]
    )
    metrics = {
        "tok_s": ("fwd_tok_s", "forward tokens/s"),
        "vs_floor": ("fwd_vs_floor", "forward time / compute floor"),
    }
    paths.update(
        dispatch.plot_metrics(
            out, stem, x="experts", series="impl", metrics=metrics, logx=True, logy=False
        )
    )
    return paths
