"""Inference latency of a MoLE against merged adapters (``nox -s bench`` / ``papercraft mole bench``).

One run builds a Llama-style decoder from a config (no download), ``N`` random peft LoRAs on
``q_proj``/``v_proj`` and times one forward pass (``torch.no_grad``, batch × tokens) of:

- ``base``: the base model alone;
- ``merged_weights``: the normalised linear merge folded into the weights (``cat`` merge, then
  ``merge_and_unload``) — the base's speed with the merged behaviour;
- ``cat_adapter``: the ``cat``-merged LoRA as one active adapter (rank ``N·r``);
- ``mole`` at every requested granularity: ``N`` LoRA branches per matrix plus the gates.

Ratios are against ``cat_adapter`` (the issue's "merged adapter"; target ``mole ≤ 1.5×`` at 4
LoRAs) and against ``merged_weights``. Repeats of all systems are interleaved so that a busy
machine slows them alike; medians and minima are reported.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from papercraft.core.bench import BenchReport, machine_info, time_interleaved
from papercraft.mole._version import __version__
from papercraft.mole.baselines import cat_merge
from papercraft.mole.config import MoleConfig
from papercraft.mole.model import MoleModel

__all__ = ["BenchOptions", "add_arguments", "main", "run_bench"]

_STEM = "mole_latency"


@dataclass(frozen=True)
class BenchOptions:
    """What the latency benchmark measures.

    Args:
        num_adapters (int): LoRAs ``N``. Default: 4.
        rank (int): rank of every LoRA. Default: 8.
        hidden_size (int): decoder width. Default: 256.
        num_layers (int): decoder layers. Default: 4.
        batch (int): sequences per forward. Default: 8.
        tokens (int): tokens per sequence (the flatten gate's ``seq_len``). Default: 64.
        granularities (Sequence[str]): MoLE gate granularities to time. Default: ("layer",
            "matrix", "network").
        threads (int | None): ``torch.set_num_threads``; None uses all CPUs. Default: None.
        repeats (int): timed forwards per system. Default: 15.
        warmup (int): untimed forwards first. Default: 3.
        seed (int): weights and inputs. Default: 0.

    Raises:
        ValueError: on a bad value, naming the field.
    """

    num_adapters: int = 4
    rank: int = 8
    hidden_size: int = 256
    num_layers: int = 4
    batch: int = 8
    tokens: int = 64
    granularities: Sequence[str] = ("layer", "matrix", "network")
    threads: int | None = None
    repeats: int = 15
    warmup: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_adapters", "rank", "hidden_size", "num_layers", "batch", "tokens",
                     "repeats"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.num_adapters < 2:
            raise ValueError(f"num_adapters must be >= 2, got {self.num_adapters}")
        if self.hidden_size % 4:
            raise ValueError(f"hidden_size must be a multiple of 4 heads, got {self.hidden_size}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        grans = tuple(self.granularities)
        allowed = ("matrix", "layer", "block", "network")
        if not grans or any(g not in allowed for g in grans):
            raise ValueError(f"granularities must be from {allowed}, got {self.granularities!r}")
        object.__setattr__(self, "granularities", grans)
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


def _base_model(options: BenchOptions) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(options.seed)
    config = LlamaConfig(
        vocab_size=1024,
        hidden_size=options.hidden_size,
        intermediate_size=4 * options.hidden_size,
        num_hidden_layers=options.num_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max(128, options.tokens),
    )
    return LlamaForCausalLM(config).eval()


def _adapters(base: Any, options: BenchOptions, root: Path) -> dict[str, str]:
    from peft import LoraConfig, get_peft_model

    paths = {}
    for i in range(options.num_adapters):
        torch.manual_seed(options.seed + 100 + i)
        lora = LoraConfig(
            r=options.rank,
            lora_alpha=2 * options.rank,
            target_modules=["q_proj", "v_proj"],
            init_lora_weights=False,
        )
        get_peft_model(copy.deepcopy(base), lora).save_pretrained(str(root / f"lora{i}"))
        paths[f"lora{i}"] = str(root / f"lora{i}")
    return paths


def run_bench(options: BenchOptions | None = None, *, progress: bool = True) -> BenchReport:
    """Time the systems and return the report (rows: ``system``, ``median_ms``, ``min_ms``,
    ``vs_cat_adapter``, ``vs_merged_weights``; notes with the target verdict).

    Args:
        options (BenchOptions | None): the settings. Default: None (``BenchOptions()``).
        progress (bool): print one line per system. Default: True.

    Returns:
        BenchReport: the measurements.
    """
    options = options or BenchOptions()
    old_threads = torch.get_num_threads()
    threads = options.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    try:
        return _run(options, threads, progress)
    finally:
        torch.set_num_threads(old_threads)


def _run(options: BenchOptions, threads: int, progress: bool) -> BenchReport:
    base = _base_model(options)
    gen = torch.Generator().manual_seed(options.seed)
    ids = torch.randint(0, 1024, (options.batch, options.tokens), generator=gen)
    systems: dict[str, Callable[[], Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        adapters = _adapters(base, options, Path(tmp))
        systems["base"] = lambda: base(input_ids=ids)
        cat = cat_merge(copy.deepcopy(base), adapters)
        systems["cat_adapter"] = lambda: cat(input_ids=ids)
        merged = cat_merge(copy.deepcopy(base), adapters).merge_and_unload()
        systems["merged_weights"] = lambda: merged(input_ids=ids)
        for granularity in options.granularities:
            config = MoleConfig(
                adapters=adapters,
                granularity=granularity,  # type: ignore[arg-type]
                seq_len=options.tokens,
            )
            mole = MoleModel.from_adapters(copy.deepcopy(base), config).eval()
            systems[f"mole ({granularity})"] = lambda m=mole: m(input_ids=ids)  # type: ignore[misc]
        with torch.no_grad():
            timings = time_interleaved(systems, warmup=options.warmup, repeats=options.repeats)
    report = BenchReport(
        title=(
            f"MoLE inference latency: {options.num_adapters} LoRAs (r {options.rank}, q/v), "
            f"Llama d {options.hidden_size} × {options.num_layers} layers, batch "
            f"{options.batch} × {options.tokens} tokens, forward, cpu"
        ),
        machine=machine_info("cpu"),
    )
    medians = {n: t.median for n, t in timings.items()}
    for name, timing in timings.items():
        report.add(
            system=name,
            median_ms=medians[name] * 1e3,
            min_ms=timing.min * 1e3,
            vs_cat_adapter=medians[name] / medians["cat_adapter"],
            vs_merged_weights=medians[name] / medians["merged_weights"],
        )
        if progress:
            print(f"  {name}: {medians[name] * 1e3:.1f} ms", flush=True)
    report.machine.update(torch_threads=threads, papercraft_mole=__version__)
    for granularity in options.granularities:
        ratio = medians[f"mole ({granularity})"] / medians["cat_adapter"]
        verdict = "PASS" if ratio <= 1.5 else "MISS"
        report.notes.append(
            f"{verdict} MoLE ({granularity} gates) within 1.5× of the merged adapter at "
            f"{options.num_adapters} LoRAs: {ratio:.2f}× (min-based "
            f"{timings[f'mole ({granularity})'].min / timings['cat_adapter'].min:.2f}×)"
        )
    report.notes.append(
        f"median of {options.repeats} interleaved repeats after {options.warmup} warm-up; "
        f"torch threads {threads}; cat_adapter = peft add_weighted_adapter(combination_type="
        "'cat', w = 1/N) as one active adapter; merged_weights = the same merged into the "
        "weights (merge_and_unload)."
    )
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of :class:`BenchOptions` and ``--output`` to ``parser``."""
    defaults = BenchOptions()
    parser.add_argument("--output", type=Path, default=None, help="write JSON/MD here")
    for f in fields(BenchOptions):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "granularities":
            parser.add_argument(flag, nargs="+", default=None, help="default layer matrix network")
        else:
            parser.add_argument(
                flag, type=int, default=None, help=f"default {getattr(defaults, f.name)}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: run, print the Markdown, write it under ``--output`` when given."""
    parser = argparse.ArgumentParser(prog="bench_mole")
    add_arguments(parser)
    args = parser.parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in fields(BenchOptions)}
    options = BenchOptions(**{k: v for k, v in given.items() if v is not None})
    report = run_bench(options)
    print(report.to_markdown())
    if args.output is not None:
        report.write(args.output, _STEM)
    return 0
