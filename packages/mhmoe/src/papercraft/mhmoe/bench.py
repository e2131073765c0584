"""Layer benchmark: dispatch implementations, DeepSpeed MoE, the compute floor, and MH-MoE parity.

Measures, side by side in one run on one machine, the time of one MoE layer call (router,
capacity, dispatch, experts, combine) — forward under ``torch.no_grad`` and forward+backward —
for:

- **dispatch** (:class:`~papercraft.mhmoe.layer.SparseMoE`, ``h = 1``) at several expert counts:
  the per-expert ``loop``, ``grouped`` (``"auto"``: ``torch._grouped_mm`` where it runs, else the
  padded bmm), ``grouped_bmm`` and ``grouped_mm`` forced, and DeepSpeed's ``MoE``
  (:mod:`papercraft.mhmoe.deepspeed_compat`, same weights);
- **parity**: the SMoE baseline against MH-MoE (arXiv 2404.15045) with ``h`` heads configured at
  parameter and FLOPs parity (:func:`papercraft.mhmoe.parity.parity_config`, MH-v2, arXiv
  2411.16205), both with the default ``grouped`` dispatch;
- the **compute floor** of every configuration: the same per-expert SwiGLU matmuls on rows that
  are already sorted by expert, with the per-expert counts the layer's routing produced (after
  capacity) — no router, gather, scatter or combine. The fastest of contiguous per-expert
  slices, ``torch._grouped_mm`` (where it runs) and a ``bmm`` over rows already padded per expert
  is the floor.

Ratios are against a baseline measured in the same run: ``fwd_vs_floor`` / ``fwdbwd_vs_floor``
(layer time over its floor), ``vs_smoe`` (MH-MoE time over the SMoE's). Repeats of all
implementations of one configuration are interleaved so that they see the same machine load; the
median is reported. :func:`run_bench` takes options or command-line arguments and returns the
:class:`~papercraft.core.bench.BenchReport`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papercraft.core.bench import BenchReport, machine_info, time_interleaved
from papercraft.mhmoe._version import __version__
from papercraft.mhmoe.bench_report import _find, _ratio, _rows, _targets, write_report
from papercraft.mhmoe.dispatch import DISPATCHERS, dispatch_grouped, grouped_mm_supported
from papercraft.mhmoe.experts import SwiGLUExperts, swiglu
from papercraft.mhmoe.layer import MHMoE, SparseMoE
from papercraft.mhmoe.parity import MHV2_BASELINE, config_flops, config_params, parity_config

__all__ = [
    "IMPLS",
    "BenchOptions",
    "add_arguments",
    "main",
    "options_from_args",
    "run_bench",
    "write_report",
]

#: Implementations the dispatch section can time; ``deepspeed`` needs DeepSpeed installed.
IMPLS: tuple[str, ...] = ("loop", "grouped", "grouped_bmm", "grouped_mm", "deepspeed")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _int_tuple(
    name: str, values: Any, minimum: int, *, allow_empty: bool = False
) -> tuple[int, ...]:
    items = () if isinstance(values, (str, bytes)) else tuple(values)
    if (not items and not allow_empty) or any(
        isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in items
    ):
        raise ValueError(f"{name} must be a list of ints >= {minimum}, got {values!r}")
    return items


@dataclass(frozen=True)
class BenchOptions:
    """What the benchmark measures and how.

    The defaults are the issue's setting: 4096 tokens, ``d = 256``, expert hidden 512, top-2,
    8–64 experts, capacity factor 1, fp32 on the CPU; MH-MoE with 2 and 4 heads against the
    32-expert SMoE.

    Args:
        tokens (int): tokens per layer call ``N``. Default: 4096.
        d_model (int): token width ``d``. Default: 256.
        expert_hidden (int): SMoE expert inner width. Default: 512.
        experts (Sequence[int]): expert counts of the dispatch section. Default: (8, 16, 32, 64).
        top_k (int): SMoE experts per token. Default: 2.
        impls (Sequence[str]): dispatch-section implementations, from :data:`IMPLS`.
            Default: all of them.
        heads (Sequence[int]): MH-MoE heads of the parity section; empty skips it. Default: (2, 4).
        parity_experts (int): expert count of the parity section's SMoE baseline. Default: 32.
        parity_match (str): ``"params+flops"`` (MH-v2) or ``"params"``. Default: "params+flops".
        mhv2_heads (Sequence[int]): MH-MoE heads of the ``parity_mhv2`` section, which times
            MH-v2's own parity configurations (:data:`~papercraft.mhmoe.parity.MHV2_BASELINE`:
            ``d = 768``, 8 experts of hidden 2048, top-1, against ``h = 2``: 40 experts, top-2 and
            ``h = 3``: 96 experts, top-3) on ``tokens`` tokens; empty skips it. Default: (2, 3).
        capacity_factor (float | None): capacity factor of every layer (DeepSpeed's too); None is
            dropless. Default: 1.0.
        backward (bool): also time forward+backward. Default: True.
        threads (int | None): ``torch.set_num_threads`` for the run (restored after); None uses
            ``os.cpu_count()``. Default: None.
        repeats (int): timed calls per point (median reported). Default: 5.
        warmup (int): untimed calls per point first. Default: 2.
        device (str): ``"cpu"`` or ``"cuda[:N]"``. Default: "cpu".
        dtype (str): ``"float32"`` or ``"bfloat16"``. Default: "float32".
        seed (int): seed of weights and inputs. Default: 0.

    Raises:
        ValueError: for a bad value, naming the field and what was expected.
    """

    tokens: int = 4096
    d_model: int = 256
    expert_hidden: int = 512
    experts: Sequence[int] = (8, 16, 32, 64)
    top_k: int = 2
    impls: Sequence[str] = IMPLS
    heads: Sequence[int] = (2, 4)
    parity_experts: int = 32
    parity_match: str = "params+flops"
    mhv2_heads: Sequence[int] = (2, 3)
    capacity_factor: float | None = 1.0
    backward: bool = True
    threads: int | None = None
    repeats: int = 5
    warmup: int = 2
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("tokens", "d_model", "expert_hidden", "top_k", "parity_experts", "repeats"):
            _check_int(name, getattr(self, name), 1)
        _check_int("warmup", self.warmup, 0)
        _check_int("seed", self.seed, 0)
        object.__setattr__(self, "experts", _int_tuple("experts", self.experts, 1))
        object.__setattr__(self, "heads", _int_tuple("heads", self.heads, 2, allow_empty=True))
        object.__setattr__(
            self, "mhv2_heads", _int_tuple("mhv2_heads", self.mhv2_heads, 2, allow_empty=True)
        )
        for h in self.mhv2_heads:
            if MHV2_BASELINE["d_model"] % h:
                raise ValueError(f"mhv2_heads must divide {MHV2_BASELINE['d_model']}, got {h}")
        if any(e < self.top_k for e in (*self.experts, self.parity_experts)):
            raise ValueError(f"every expert count must be >= top_k ({self.top_k})")
        for h in self.heads:
            if self.d_model % h:
                raise ValueError(f"heads must divide d_model ({self.d_model}), got {h}")
        impls = () if isinstance(self.impls, (str, bytes)) else tuple(self.impls)
        if not impls or any(i not in IMPLS for i in impls):
            raise ValueError(
                f"impls must be a non-empty list from {list(IMPLS)}, got {self.impls!r}"
            )
        object.__setattr__(self, "impls", impls)
        if self.parity_match not in ("params", "params+flops"):
            raise ValueError(
                f"parity_match must be 'params' or 'params+flops', got {self.parity_match!r}"
            )
        cf = self.capacity_factor
        if cf is not None and (
            isinstance(cf, bool) or not isinstance(cf, (int, float)) or not math.isfinite(cf)
        ):
            raise ValueError(f"capacity_factor must be a finite float or None, got {cf!r}")
        if self.threads is not None:
            _check_int("threads", self.threads, 1)
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but CUDA is not available here")

    @classmethod
    def quick(cls, **overrides: Any) -> BenchOptions:
        """A seconds-long smoke setting (256 tokens, ``d = 64``, 4 and 8 experts, 1 repeat)."""
        base: dict[str, Any] = {
            "tokens": 256,
            "d_model": 64,
            "expert_hidden": 128,
            "experts": (4, 8),
            "heads": (2,),
            "parity_experts": 8,
            "mhv2_heads": (),
            "repeats": 1,
            "warmup": 1,
        }
        base.update(overrides)
        return cls(**base)


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _forced_grouped_impls() -> Iterator[None]:
    """Register ``grouped_bmm`` / ``grouped_mm`` dispatchers for the duration of the run.

    The layer looks its dispatcher up in :data:`~papercraft.mhmoe.dispatch.DISPATCHERS` by name,
    and ``dispatch_grouped``'s ``impl`` is not a layer option, so the forced variants are added
    to that table here and removed afterwards.
    """
    added = {
        "grouped_bmm": functools.partial(dispatch_grouped, impl="bmm"),
        "grouped_mm": functools.partial(dispatch_grouped, impl="grouped_mm"),
    }
    for name, fn in added.items():
        DISPATCHERS.setdefault(name, fn)
    try:
        yield
    finally:
        for name, fn in added.items():
            if DISPATCHERS.get(name) is fn:
                del DISPATCHERS[name]


def _layer_call(
    layer: nn.Module, x: Tensor, grad: Tensor, *, backward: bool, dispatch: str | None
) -> Callable[[], None]:
    """One layer call; with ``backward`` the output (and aux loss) is back-propagated.

    ``dispatch`` names our layer's dispatcher for this call; None marks DeepSpeed's layer.
    """
    params = [p for p in layer.parameters() if p.requires_grad]

    def forward() -> tuple[Tensor, Tensor]:
        if dispatch is None:
            out, l_aux, _ = layer(x)
            return out, 1e-2 * l_aux
        assert isinstance(layer, MHMoE)
        layer.set_dispatch(dispatch)
        result = layer(x)
        return result.hidden_states, result.loss

    if not backward:

        def call() -> None:
            with torch.no_grad():
                forward()

        return call

    def call_bwd() -> None:
        for p in params:
            p.grad = None
        x.grad = None
        out, aux = forward()
        torch.autograd.backward([out, aux], [grad, torch.ones_like(aux)])

    return call_bwd


def _floor_calls(
    experts: SwiGLUExperts, counts: list[int], *, backward: bool, seed: int
) -> dict[str, Callable[[], None]]:
    """The compute floor: the experts on pre-sorted rows, three ways.

    Per-expert slices of the sorted rows, ``torch._grouped_mm`` on them (where it runs) and a
    ``bmm`` over rows already laid out per expert, zero-padded to the largest count (more FLOPs,
    fewer kernels). The caller keeps the fastest.
    """
    n = sum(counts)
    weight = experts.w_gate
    gen = torch.Generator(device="cpu").manual_seed(seed)
    xs = torch.randn(n, experts.dim, generator=gen).to(weight.device, weight.dtype)
    xs.requires_grad_(backward)
    grad = torch.randn(n, experts.dim, generator=gen).to(weight.device, weight.dtype)
    bounds = [0]
    for c in counts:
        bounds.append(bounds[-1] + c)
    offs = torch.tensor(bounds[1:], dtype=torch.int32, device=weight.device)
    params = list(experts.parameters())

    def slices() -> tuple[list[Tensor], list[Tensor]]:
        live = [e for e in range(experts.num_experts) if counts[e]]
        per_expert = experts.unbind_experts()
        outs = [swiglu(xs[bounds[e] : bounds[e + 1]], *per_expert[e]) for e in live]
        return outs, [grad[bounds[e] : bounds[e + 1]] for e in live]

    def grouped() -> tuple[list[Tensor], list[Tensor]]:
        gate = torch._grouped_mm(xs, experts.w_gate, offs=offs)
        up = torch._grouped_mm(xs, experts.w_up, offs=offs)
        return [torch._grouped_mm(F.silu(gate) * up, experts.w_down, offs=offs)], [grad]

    max_count = max(counts) if counts else 0
    padded = torch.zeros(
        experts.num_experts, max_count, experts.dim, device=weight.device, dtype=weight.dtype
    )
    padded_grad = torch.zeros_like(padded)
    with torch.no_grad():
        for e, c in enumerate(counts):
            padded[e, :c] = xs[bounds[e] : bounds[e + 1]]
            padded_grad[e, :c] = grad[bounds[e] : bounds[e + 1]]
    padded.requires_grad_(backward)

    def bmm() -> tuple[list[Tensor], list[Tensor]]:
        gate = torch.bmm(padded, experts.w_gate)
        up = torch.bmm(padded, experts.w_up)
        return [torch.bmm(F.silu(gate) * up, experts.w_down)], [padded_grad]

    def wrap(fn: Callable[[], tuple[list[Tensor], list[Tensor]]]) -> Callable[[], None]:
        if not backward:

            def call() -> None:
                with torch.no_grad():
                    fn()

            return call

        def call_bwd() -> None:
            for p in params:
                p.grad = None
            xs.grad = None
            padded.grad = None
            outs, grads = fn()
            torch.autograd.backward(outs, grads)

        return call_bwd

    calls = {"floor_slices": wrap(slices), "floor_bmm": wrap(bmm)}
    if n and grouped_mm_supported(xs, experts) and not experts.has_bias:
        try:
            wrap(grouped)()
        except (RuntimeError, NotImplementedError):
            pass
        else:
            calls["floor_grouped_mm"] = wrap(grouped)
    return calls


# ----------------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------------
@dataclass
class _Point:
    """One timed configuration: its layers and their compute floor."""

    section: str
    experts: int
    heads: int
    top_k: int
    expert_hidden: int
    layers: dict[str, nn.Module]  # name -> layer; ours run with dispatch = name
    counts: list[int]
    dropped: float
    flops_per_token: int
    params: int


def _kept_counts(layer: MHMoE, x: Tensor) -> tuple[list[int], float]:
    with torch.no_grad():
        routing = layer(x).routing
    kept = routing.expert_index[routing.keep]
    counts = torch.bincount(kept, minlength=routing.num_experts).tolist()
    return [int(c) for c in counts], float(routing.dropped_fraction)


def _layer_config(layer: MHMoE) -> dict[str, Any]:
    return {
        "d_model": layer.d_model,
        "num_experts": layer.num_experts,
        "num_heads": layer.num_heads,
        "top_k": layer.top_k,
        "expert_hidden": layer.experts.hidden,
        "head_projection": not isinstance(layer.head_proj, nn.Identity),
    }


def _build_deepspeed(layer: MHMoE, options: BenchOptions) -> nn.Module:
    from papercraft.mhmoe.deepspeed_compat import copy_weights_to_deepspeed, deepspeed_moe_layer

    ds = deepspeed_moe_layer(
        layer.d_model,
        layer.num_experts,
        layer.top_k,
        layer.experts.hidden,
        options.capacity_factor,
    )
    ds.to(layer.experts.w_gate.device)
    copy_weights_to_deepspeed(layer, ds)
    return ds.to(layer.experts.w_gate.dtype)


def _time_point(
    point: _Point,
    x: Tensor,
    grad: Tensor,
    options: BenchOptions,
    device: torch.device,
    floor_impl: dict[str, str],
    notes: list[str],
) -> dict[str, dict[str, float | None]]:
    """Median forward and forward+backward seconds of every layer and of the floor.

    ``floor_impl`` receives, per column, which floor (``slices`` / ``grouped_mm``) was faster;
    ``notes`` an entry for every implementation that raised (it is left out).
    """
    first = next(iter(point.layers.values()))
    experts = first.experts if isinstance(first, MHMoE) else None
    assert experts is not None, "the first layer of a point must be ours (it defines the floor)"
    results: dict[str, dict[str, float | None]] = {}
    modes = [False, True] if options.backward else [False]
    for backward in modes:
        calls: dict[str, Callable[[], None]] = {}
        for name, layer in point.layers.items():
            layer.train(backward)
            dispatch = name if isinstance(layer, MHMoE) else None
            calls[name] = _layer_call(layer, x, grad, backward=backward, dispatch=dispatch)
        floors = _floor_calls(experts, point.counts, backward=backward, seed=options.seed + 1)
        calls.update(floors)
        for name in list(calls):
            try:
                calls[name]()  # one untimed call: an implementation that cannot run is dropped
            except (RuntimeError, NotImplementedError) as exc:
                del calls[name]
                first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                notes.append(f"{name} failed at E={point.experts}, h={point.heads}: {first_line}")
        times = time_interleaved(
            calls, warmup=options.warmup, repeats=options.repeats, device=device
        )
        key = "fwdbwd_s" if backward else "fwd_s"
        for name, timing in times.items():
            results.setdefault(name, {})[key] = timing.median
            results[name][key.replace("_s", "_min_s")] = timing.min
    floor_names = [n for n in results if n.startswith("floor_")]
    floor: dict[str, float | None] = {}
    for key in ("fwd_s", "fwdbwd_s", "fwd_min_s"):
        present = [(results[n][key], n) for n in floor_names if results[n].get(key) is not None]
        if present:
            best, name = min(present)
            floor[key] = best
            if key != "fwd_min_s":
                floor_impl[key] = name.removeprefix("floor_")
    results["floor"] = floor
    return results


def _dispatch_point(num_experts: int, options: BenchOptions, x: Tensor, notes: list[str]) -> _Point:
    torch.manual_seed(options.seed)
    base = SparseMoE(
        options.d_model,
        num_experts,
        top_k=options.top_k,
        expert_hidden=options.expert_hidden,
        capacity_factor=options.capacity_factor,
    ).to(x.device, x.dtype)
    layers: dict[str, nn.Module] = {}
    for impl in options.impls:
        if impl == "deepspeed":
            try:
                layers[impl] = _build_deepspeed(base, options)
            except (ImportError, ValueError, RuntimeError) as exc:
                notes.append(f"deepspeed skipped at E={num_experts}: {exc}")
            continue
        if impl == "grouped_mm" and not grouped_mm_supported(x[:, : base.head_dim], base.experts):
            notes.append(f"grouped_mm skipped at E={num_experts}: torch._grouped_mm cannot run")
            continue
        layers[impl] = base  # every variant is the same layer: one set of weights
    counts, dropped = _kept_counts(base, x)
    config = _layer_config(base)
    return _Point(
        section="dispatch",
        experts=num_experts,
        heads=1,
        top_k=options.top_k,
        expert_hidden=options.expert_hidden,
        layers=layers,
        counts=counts,
        dropped=dropped,
        flops_per_token=config_flops(config),
        params=config_params(config),
    )


def _parity_points(
    options: BenchOptions,
    x: Tensor,
    baseline: dict[str, Any],
    heads: Sequence[int],
    section: str,
) -> list[_Point]:
    configs: list[dict[str, Any]] = [{**baseline, "num_heads": 1, "head_projection": False}]
    configs += [parity_config(baseline, h, options.parity_match) for h in heads]
    points = []
    for config in configs:
        torch.manual_seed(options.seed)
        layer = MHMoE(
            config["d_model"],
            config["num_experts"],
            num_heads=config["num_heads"],
            top_k=config["top_k"],
            expert_hidden=config["expert_hidden"],
            head_projection=config["head_projection"],
            capacity_factor=options.capacity_factor,
            dispatch="grouped",
        ).to(x.device, x.dtype)
        counts, dropped = _kept_counts(layer, x)
        points.append(
            _Point(
                section=section,
                experts=config["num_experts"],
                heads=config["num_heads"],
                top_k=config["top_k"],
                expert_hidden=config["expert_hidden"],
                layers={"grouped": layer},
                counts=counts,
                dropped=dropped,
                flops_per_token=config_flops(config),
                params=config_params(config),
            )
        )
    return points


def run_bench(
    options: BenchOptions | Sequence[str] | None = None, *, progress: bool = True
) -> BenchReport:
    """Run the benchmark and return its report (written too when ``--output`` is in an argv).

    Rows (one per implementation and configuration, plus the floor's): ``section``
    (``dispatch`` / ``parity``), ``impl``, ``experts``, ``heads``, ``top_k``, ``expert_hidden``,
    ``fwd_ms`` / ``fwdbwd_ms`` (medians), ``fwd_min_ms`` (fastest repeat), ``fwd_tok_s`` /
    ``fwdbwd_tok_s``, ``fwd_vs_floor`` / ``fwdbwd_vs_floor`` / ``fwd_min_vs_floor``, ``dropped`` (fraction of assignments over capacity),
    ``gflops_per_call`` and ``params`` (:mod:`papercraft.mhmoe.parity` formulas); parity rows
    add ``vs_smoe`` (time over the SMoE baseline's). The notes carry the issue's targets as
    PASS / MISS lines.

    Args:
        options (BenchOptions | Sequence[str] | None): the options, or command-line arguments as
            :func:`add_arguments` defines them. Default: None (``BenchOptions()``).
        progress (bool): print one line per measured configuration. Default: True.

    Returns:
        BenchReport: measurements, machine (threads, load average) and notes.

    Raises:
        ValueError: for bad options (before anything is built).
    """
    output: Path | None = None
    if options is None:
        options = BenchOptions()
    elif not isinstance(options, BenchOptions):
        parser = argparse.ArgumentParser(prog="bench_mhmoe")
        add_arguments(parser)
        args = parser.parse_args(list(options))
        output = args.output
        options = options_from_args(args)
    report = _run(options, progress=progress)
    if output is not None:
        write_report(report, output)
    return report


def _run(options: BenchOptions, *, progress: bool) -> BenchReport:
    device = torch.device(options.device)
    dtype: torch.dtype = getattr(torch, options.dtype)
    old_threads = torch.get_num_threads()
    threads = options.threads if options.threads is not None else (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    start = time.perf_counter()
    load_start = os.getloadavg()
    try:
        report = BenchReport(
            title=(
                f"MH-MoE layer: N={options.tokens} tokens, d={options.d_model}, SMoE expert hidden "
                f"{options.expert_hidden}, top-{options.top_k}, capacity factor "
                f"{options.capacity_factor}, {options.dtype}, {options.device}"
            ),
            machine=machine_info(options.device),
        )
        report.machine["papercraft_mhmoe"] = __version__
        report.machine["loadavg_start"] = [round(v, 2) for v in load_start]
        gen = torch.Generator(device="cpu").manual_seed(options.seed)
        x = torch.randn(options.tokens, options.d_model, generator=gen).to(device, dtype)
        grad = torch.randn(options.tokens, options.d_model, generator=gen).to(device, dtype)
        x.requires_grad_(options.backward)
        notes: list[str] = []
        inputs = {"dispatch": (x, grad), "parity": (x, grad)}
        if options.mhv2_heads:
            d_v2 = MHV2_BASELINE["d_model"]
            x_v2 = torch.randn(options.tokens, d_v2, generator=gen).to(device, dtype)
            grad_v2 = torch.randn(options.tokens, d_v2, generator=gen).to(device, dtype)
            inputs["parity_mhv2"] = (x_v2.requires_grad_(options.backward), grad_v2)
        with _forced_grouped_impls():
            points = [_dispatch_point(e, options, x, notes) for e in options.experts]
            if options.heads:
                baseline = {
                    "d_model": options.d_model,
                    "num_experts": options.parity_experts,
                    "top_k": options.top_k,
                    "expert_hidden": options.expert_hidden,
                }
                points += _parity_points(options, x, baseline, options.heads, "parity")
            if options.mhv2_heads:
                x_v2 = inputs["parity_mhv2"][0]
                points += _parity_points(
                    options, x_v2, dict(MHV2_BASELINE), options.mhv2_heads, "parity_mhv2"
                )
            for point in points:
                floor_impl: dict[str, str] = {}
                px, pgrad = inputs[point.section]
                times = _time_point(point, px, pgrad, options, device, floor_impl, notes)
                rows = _rows(point, times, floor_impl, options.tokens)
                for row in rows:
                    report.add(**row)
                if progress:
                    text = ", ".join(f"{r['impl']} {r['fwd_ms']:.1f}" for r in rows)
                    print(
                        f"  {point.section} E={point.experts} h={point.heads}: fwd ms {text}",
                        flush=True,
                    )
        for section in ("parity", "parity_mhv2"):
            smoe = _find(report.rows, section=section, impl="grouped", heads=1)
            for row in report.rows:
                if row["section"] == section and smoe is not None and row["impl"] == "grouped":
                    row["vs_smoe"] = _ratio(row["fwd_ms"], smoe["fwd_ms"])
                    row["fwdbwd_vs_smoe"] = _ratio(row["fwdbwd_ms"], smoe["fwdbwd_ms"])
        report.machine["torch_threads"] = threads
        report.machine["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
        report.notes.extend(_targets(report.rows, options, device))
        report.notes.extend(
            [
                "fwd: one layer call under torch.no_grad (eval mode); fwdbwd: forward + backward "
                "of the output (fixed random output gradient) and the aux loss, train mode; "
                f"median of {options.repeats} repeats after {options.warmup} warm-up, all "
                "implementations of one configuration interleaved; fwd_min_ms / "
                "fwd_min_vs_floor use the fastest repeat (on a shared CPU the least disturbed).",
                "floor: the same per-expert SwiGLU matmuls on pre-sorted rows with the per-expert "
                "counts the layer's routing kept (no router / gather / scatter / combine); the "
                "fastest of per-expert slices, torch._grouped_mm and bmm on rows already padded "
                "per expert.",
                "grouped = dispatch_grouped(impl='auto'); grouped_bmm / grouped_mm force one "
                "impl; deepspeed = deepspeed.moe.layer.MoE with the same weights "
                "(papercraft.mhmoe.deepspeed_compat), its own capacity rounding.",
                f"parity: SMoE ({options.parity_experts} experts) vs MH-MoE from "
                f"parity_config(..., match={options.parity_match!r}); vs_smoe = time / SMoE time. "
                "parity_mhv2: the same for MH-v2's own configurations (d 768; SMoE 8 experts, "
                "hidden 2048, top-1; MH-MoE h=2: 40 experts, top-2, hidden 768; h=3: 96 experts, "
                f"top-3, hidden 512) on {options.tokens} tokens.",
                f"torch threads {threads}; load average {report.machine['loadavg_start']} at the "
                f"start, {report.machine['loadavg_end']} at the end; "
                f"total {time.perf_counter() - start:.0f} s.",
                *notes,
            ]
        )
    finally:
        torch.set_num_threads(old_threads)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options (those of :class:`BenchOptions`, ``--output``, ``--quick``).

    Args:
        parser (argparse.ArgumentParser): e.g. the ``papercraft mhmoe bench`` sub-parser.
    """
    d = BenchOptions()
    parser.add_argument("--output", type=Path, default=None, help="write JSON/MD/PNG here")
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke setting")
    parser.add_argument("--tokens", type=int, default=None, help=f"default {d.tokens}")
    parser.add_argument("--d-model", type=int, default=None, help=f"default {d.d_model}")
    parser.add_argument(
        "--expert-hidden", type=int, default=None, help=f"default {d.expert_hidden}"
    )
    parser.add_argument("--experts", type=int, nargs="+", default=None, help="default 8 16 32 64")
    parser.add_argument("--top-k", type=int, default=None, help=f"default {d.top_k}")
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=None, help="default all")
    parser.add_argument(
        "--heads", type=int, nargs="*", default=None, help="MH-MoE heads; none skips parity"
    )
    parser.add_argument("--parity-experts", type=int, default=None, help="default 32")
    parser.add_argument("--parity-match", choices=("params", "params+flops"), default=None)
    parser.add_argument(
        "--mhv2-heads",
        type=int,
        nargs="*",
        default=None,
        help="heads of the MH-v2-configuration parity section (default 2 3); none skips it",
    )
    parser.add_argument(
        "--capacity-factor", type=float, default=None, help="default 1.0; <= 0 is dropless"
    )
    parser.add_argument("--no-backward", action="store_true", help="forward only")
    parser.add_argument("--threads", type=int, default=None, help="default: all CPUs")
    parser.add_argument("--repeats", type=int, default=None, help=f"default {d.repeats}")
    parser.add_argument("--warmup", type=int, default=None, help=f"default {d.warmup}")
    parser.add_argument("--device", default=None, help="cpu or cuda[:N]")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None)
    parser.add_argument("--seed", type=int, default=None)


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    """:class:`BenchOptions` from parsed :func:`add_arguments` arguments (``--quick`` first)."""
    given: dict[str, Any] = {}
    for f in fields(BenchOptions):
        value = getattr(args, f.name, None)
        if value is not None:
            given[f.name] = value
    if getattr(args, "no_backward", False):
        given["backward"] = False
    cf = given.get("capacity_factor")
    if cf is not None and cf <= 0:
        given["capacity_factor"] = None
    if getattr(args, "quick", False):
        return BenchOptions.quick(**given)
    return BenchOptions(**given)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: run, print the Markdown, write to ``--output`` when given."""
    import sys

    report = run_bench(list(sys.argv[1:] if argv is None else argv))
    print(report.to_markdown())
    return 0
