"""Prefill, cache and decode benchmark: YOCO against a ``LlamaForCausalLM`` of the same size.

Measures what YOCO §4.3 (arXiv 2405.05254, Figures 7–9) reports, at laptop scale and side by side
in one run:

- **prefill latency** — YOCO's early-exit prefill ``model(ids, use_cache=True, logits_to_keep=1)``
  (self-decoder and global K/V over the prompt, cross-decoder for the last position only) against
  Llama's ``model(ids, use_cache=True, logits_to_keep=1)`` (every layer over every token; SDPA
  attention); the median of repeated calls (:func:`papercraft.core.bench.time_callable`), the
  repeats of the two models interleaved so that both see the same machine load (the minimum is
  kept too: on a shared CPU it is the least disturbed run);
- **cache bytes** — counted from the real tensors each cache holds after the prefill
  (``YocoCache.nbytes()``; the key/value tensors of every layer of Llama's ``DynamicCache``), next
  to the formula (``YocoCache.expected_nbytes``; ``2·L·n_kv·d_h·T·s`` for Llama) as a cross-check;
- **decode tokens/s** — greedy single-token steps with the cache after the prefill at each length;
- **FLOP theory** — :func:`papercraft.yoco.flops.prefill_flops` of both prefills, so the measured
  speed-up can be read against the arithmetic one (``measured_over_theory``).

Both models are built from configs with fixed seeds (random weights: speed and memory do not depend
on what the weights learned). Ratios are ``Llama / YOCO`` at the same length
(:meth:`~papercraft.core.bench.BenchReport.add_ratios` with YOCO as the baseline): a
``prefill_s_ratio`` of 4 means YOCO's prefill is 4× faster, a ``cache_bytes_ratio`` of 7 means its
cache is 7× smaller, a ``decode_tok_s_ratio`` below 1 means YOCO decodes faster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from papercraft.core.bench import BenchReport, Timing, format_bytes, machine_info, time_callable
from papercraft.core.testing import seed_everything
from papercraft.yoco._version import __version__
from papercraft.yoco.flops import prefill_flops

if TYPE_CHECKING:
    from transformers import LlamaConfig

    from papercraft.yoco import YocoConfig

__all__ = [
    "DTYPES",
    "MODELS",
    "BenchSettings",
    "bench_models",
    "cache_nbytes",
    "llama_cache_nbytes",
    "llama_expected_cache_nbytes",
    "ratio_rows",
    "run_benchmark",
    "write_report",
]

#: dtype names the benchmark accepts.
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
#: The compared models, baseline last (ratios are ``llama / yoco``).
MODELS: tuple[str, ...] = ("llama", "yoco")
_SELF_DECODERS = ("gret", "swa")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class BenchSettings:
    """What to compare and how: model sizes (shared by both models) and measurement settings.

    The defaults are the issue's target setting: width 256, 8 layers (4 self + 4 cross for YOCO),
    4 heads, 2 KV heads, gated retention, fp32, on the CPU. The vocabulary is 8192: both models
    compute logits for one position only, so the LM head barely costs anything in a prefill, and a
    small embedding keeps the weights (and the time to build them) small; it is also the largest
    vocabulary :func:`papercraft.core.testing.tiny_tokenizer` trains.

    Args:
        lengths (Sequence[int]): prompt lengths. Default: ``(2048, 4096, 8192, 16384)``.
        hidden_size (int): model width ``d``. Default: 256.
        num_layers (int): layers ``L`` of both models. Default: 8.
        num_heads (int): query heads ``H``. Default: 4.
        num_kv_heads (int): key/value heads (Llama's and YOCO's cross-decoder). Default: 2.
        intermediate_size (int | None): SwiGLU size of both models; ``None`` takes YOCO's default.
            Default: None.
        vocab_size (int): vocabulary. Default: 8192.
        self_decoder (str): ``"gret"`` or ``"swa"``. Default: ``"gret"``.
        sliding_window (int): SWA window ``W``. Default: 1024.
        chunk_size (int | None): gRet chunk; ``None`` takes YOCO's default. Default: None.
        dtype (str): one of :data:`DTYPES`. Default: ``"float32"``.
        device (str): ``"cpu"`` or ``"cuda[:N]"``. Default: ``"cpu"``.
        repeats (int): timed prefills per point (median reported). Default: 3.
        warmup (int): untimed prefills per point before timing. Default: 1.
        decode_tokens (int): timed single-token decode steps after each prefill; 0 skips decoding.
            Default: 32.
        seed (int): seed of the weights and the prompt. Default: 0.

    Raises:
        ValueError: for a bad value, naming the field and what was expected.
    """

    lengths: Sequence[int] = (2048, 4096, 8192, 16384)
    hidden_size: int = 256
    num_layers: int = 8
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int | None = None
    vocab_size: int = 8192
    self_decoder: str = "gret"
    sliding_window: int = 1024
    chunk_size: int | None = None
    dtype: str = "float32"
    device: str = "cpu"
    repeats: int = 3
    warmup: int = 1
    decode_tokens: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        lengths = tuple(self.lengths) if not isinstance(self.lengths, (str, bytes)) else ()
        if not lengths or any(
            isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in lengths
        ):
            raise ValueError(
                f"lengths must be a non-empty list of positive ints, got {self.lengths!r}"
            )
        object.__setattr__(self, "lengths", lengths)
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "vocab_size"):
            _check_int(name, getattr(self, name), 1)
        _check_int("num_layers", self.num_layers, 2)
        _check_int("sliding_window", self.sliding_window, 1)
        _check_int("repeats", self.repeats, 1)
        _check_int("warmup", self.warmup, 0)
        _check_int("decode_tokens", self.decode_tokens, 0)
        _check_int("seed", self.seed, 0)
        for name in ("intermediate_size", "chunk_size"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        if self.self_decoder not in _SELF_DECODERS:
            raise ValueError(
                f"self_decoder must be one of {list(_SELF_DECODERS)}, got {self.self_decoder!r}"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
                f"({self.num_kv_heads})"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        _check_device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        """The ``torch.dtype`` named by :attr:`dtype`."""
        dtype: torch.dtype = getattr(torch, self.dtype)
        return dtype

    def yoco_config(self) -> YocoConfig:
        """The YOCO config (its own checks may refuse a combination, with a ``ValueError``)."""
        from papercraft.yoco import YocoConfig

        kwargs: dict[str, Any] = {
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "self_decoder": self.self_decoder,
            "sliding_window": self.sliding_window,
        }
        if self.intermediate_size is not None:
            kwargs["intermediate_size"] = self.intermediate_size
        if self.chunk_size is not None:
            kwargs["chunk_size"] = self.chunk_size
        return YocoConfig(**kwargs)

    def llama_config(self, yoco_config: YocoConfig | None = None) -> LlamaConfig:
        """The Llama of the same width, depth, heads, KV heads, head size, FFN size and vocabulary.

        Args:
            yoco_config (YocoConfig | None): the YOCO config to match; ``None`` builds it.
                Default: None.
        """
        from transformers import LlamaConfig

        cfg = yoco_config if yoco_config is not None else self.yoco_config()
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        theta = float(getattr(cfg, "rope_theta", 10000.0))
        kwargs: dict[str, Any] = {
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads,
            "head_dim": head_dim,
            "rope_parameters": {"rope_type": "default", "rope_theta": theta},
            "rms_norm_eps": float(getattr(cfg, "rms_norm_eps", 1e-5)),
            "max_position_embeddings": max(self.lengths) + self.decode_tokens + 8,
            "tie_word_embeddings": False,
            "attn_implementation": "sdpa",
        }
        return LlamaConfig(**kwargs)


def _check_device(device: str) -> None:
    if not isinstance(device, str) or not (
        device == "cpu" or device == "cuda" or device.startswith("cuda:")
    ):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available on this machine")


# --------------------------------------------------------------------------------------------------
# cache bytes


def llama_cache_nbytes(cache: Any) -> int:
    """Bytes of the key and value tensors a transformers ``Cache`` holds (every layer).

    In transformers 5.x a ``DynamicCache`` keeps one ``DynamicLayer`` per decoder layer in
    ``cache.layers``, each with a ``keys`` and a ``values`` tensor ``(B, H_kv, T, d_h)`` (``None`` or
    empty before the first update).

    Args:
        cache (Any): a ``transformers.Cache`` (e.g. the ``cache`` of a Llama output).

    Returns:
        int: the summed ``nbytes`` of all key and value tensors.

    Raises:
        TypeError: if ``cache`` has no ``layers`` of key/value tensors.
    """
    layers = getattr(cache, "layers", None)
    if layers is None:
        raise TypeError(
            f"cache must be a transformers Cache with .layers, got {type(cache).__name__}"
        )
    total = 0
    for layer in layers:
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total


def llama_expected_cache_nbytes(
    config: Any, *, batch_size: int, seq_len: int, dtype: torch.dtype
) -> int:
    """The Transformer KV-cache formula ``2·L·n_kv·d_h·s`` bytes per token (methods note).

    Args:
        config (Any): a ``LlamaConfig`` (or any config with the same size fields).
        batch_size (int): sequences ``B``.
        seq_len (int): cached tokens ``T``.
        dtype (torch.dtype): the cache's element type (``s`` bytes each).

    Returns:
        int: ``2·L·n_kv·d_h·T·B·s``.
    """
    _check_int("batch_size", batch_size, 1)
    _check_int("seq_len", seq_len, 0)
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    size = torch.empty((), dtype=dtype).element_size()
    return 2 * config.num_hidden_layers * kv_heads * head_dim * seq_len * batch_size * size


def cache_nbytes(cache: Any) -> int:
    """Bytes of a model's cache: ``cache.nbytes()`` when it has one (YOCO), else Llama's tensors."""
    nbytes = getattr(cache, "nbytes", None)
    if callable(nbytes):
        return int(nbytes())
    return llama_cache_nbytes(cache)


# --------------------------------------------------------------------------------------------------
# models and measurements


def bench_models(settings: BenchSettings) -> dict[str, nn.Module]:
    """Build both models in eval mode on the settings' device and dtype, each from a fixed seed.

    Args:
        settings (BenchSettings): sizes, dtype, device and seed.

    Returns:
        dict[str, nn.Module]: ``{"llama": LlamaForCausalLM, "yoco": YocoForCausalLM}``.
    """
    from transformers import LlamaForCausalLM

    from papercraft.yoco import YocoForCausalLM

    yoco_config = settings.yoco_config()
    llama_config = settings.llama_config(yoco_config)
    models: dict[str, nn.Module] = {}
    seed_everything(settings.seed)
    models["llama"] = LlamaForCausalLM(llama_config)
    seed_everything(settings.seed)
    models["yoco"] = YocoForCausalLM(yoco_config)
    for model in models.values():
        model.to(device=settings.device, dtype=settings.torch_dtype).eval()
    return models


def _cpu_model() -> str | None:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _prompt(settings: BenchSettings, seq_len: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(settings.seed + seq_len)
    ids = torch.randint(0, settings.vocab_size, (1, seq_len), generator=gen)  # (1, T)
    return ids.to(settings.device)


def _prefill(model: nn.Module, ids: torch.Tensor) -> Any:
    return model(ids, use_cache=True, logits_to_keep=1)


def _decode_tok_s(model: nn.Module, first: Any, steps: int) -> float:
    """Greedy single-token steps continuing ``first`` (a prefill output); tokens per second."""
    state: dict[str, Any] = {
        "cache": first.cache,
        "token": first.logits[:, -1:].argmax(dim=-1),  # (B, 1)
    }

    def step() -> None:
        out = model(state["token"], cache=state["cache"], use_cache=True)
        state["cache"] = out.cache
        state["token"] = out.logits[:, -1:].argmax(dim=-1)  # (B, 1)

    step()  # untimed: first-step allocations

    def run_steps() -> None:
        for _ in range(steps):
            step()

    timing = time_callable(run_steps, warmup=0, repeats=1)
    return steps / timing.median


def _time_prefills(
    models: dict[str, nn.Module], settings: BenchSettings, ids: torch.Tensor
) -> dict[str, tuple[Timing, Any]]:
    """Time every model's prefill of ``ids``, alternating models repeat by repeat.

    On a shared machine the load changes from second to second; interleaving the repeats (Llama,
    YOCO, Llama, YOCO, ...) exposes both models to the same conditions, so their ratio is steadier
    than timing all of one model and then all of the other.

    Returns:
        dict[str, tuple[Timing, Any]]: per model, the timed repeats and the output of the last one
        (its cache is measured and decoded from).
    """
    last: dict[str, Any] = {}

    def prefill_of(name: str) -> Callable[[], None]:
        def prefill() -> None:
            last[name] = None  # drop the previous output (and its cache) before the next call
            last[name] = _prefill(models[name], ids)

        return prefill

    calls = {name: prefill_of(name) for name in models}
    for call in calls.values():
        for _ in range(settings.warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(settings.repeats):
        for name, call in calls.items():
            times[name] += time_callable(call, warmup=0, repeats=1).times
    return {name: (Timing(times[name]), last.pop(name)) for name in models}


def _row(
    name: str,
    model: nn.Module,
    settings: BenchSettings,
    yoco_config: YocoConfig,
    timing: Timing,
    first: Any,
) -> dict[str, Any]:
    """One row: prefill time, cache bytes (measured and expected), decode speed, FLOPs."""
    from papercraft.yoco import YocoCache

    seq_len = int(first.cache.get_seq_length())
    measured = cache_nbytes(first.cache)
    if name == "yoco":
        expected = YocoCache.expected_nbytes(
            yoco_config, batch_size=1, seq_len=seq_len, dtype=settings.torch_dtype
        )
    else:
        expected = llama_expected_cache_nbytes(
            model.config, batch_size=1, seq_len=seq_len, dtype=settings.torch_dtype
        )
    decode = _decode_tok_s(model, first, settings.decode_tokens) if settings.decode_tokens else None
    # both FLOP counts read the YOCO config: "llama" is the Llama of the same sizes
    return {
        "model": name,
        "seq_len": seq_len,
        "prefill_s": timing.median,
        "prefill_min_s": timing.min,
        "cache_bytes": int(measured),
        "expected_cache_bytes": int(expected),
        "decode_tok_s": decode,
        "flops": prefill_flops(yoco_config, seq_len, arch=name),
    }


def run_benchmark(settings: BenchSettings | None = None, *, progress: bool = True) -> BenchReport:
    """Measure both models at every length and return the report with ``llama / yoco`` ratios.

    Rows (one per model and length): ``model``, ``seq_len``, ``prefill_s`` (median),
    ``prefill_min_s`` (fastest repeat),
    ``cache_bytes`` (measured), ``expected_cache_bytes`` (formula), ``decode_tok_s`` (``None`` when
    ``decode_tokens == 0``), ``flops`` (theory), then ``<metric>_ratio`` columns (``llama / yoco``;
    1 on YOCO's rows) and, on Llama's rows, ``measured_over_theory`` = ``prefill_s_ratio /
    flops_ratio``.

    Args:
        settings (BenchSettings | None): what to run. Default: ``BenchSettings()`` (the issue's
            target setting at 2K–16K).
        progress (bool): print one line per measured point. Default: True.

    Returns:
        BenchReport: the measurements, the machine and notes on how to read them.

    Raises:
        ValueError: for settings the YOCO config refuses (before any model is built).
    """
    settings = settings if settings is not None else BenchSettings()
    yoco_config = settings.yoco_config()  # validates before the heavy work
    models = bench_models(settings)
    report = BenchReport(
        title=(
            f"YOCO ({settings.self_decoder}) vs Llama prefill: d={settings.hidden_size}, "
            f"L={settings.num_layers}, H={settings.num_heads}, H_kv={settings.num_kv_heads}, "
            f"FFN={yoco_config.intermediate_size}, V={settings.vocab_size}, B=1, {settings.dtype}, "
            f"{settings.device}"
        ),
        machine=machine_info(settings.device),
    )
    report.machine["papercraft_yoco"] = __version__
    cpu_model = _cpu_model()
    if cpu_model:
        report.machine["cpu_model"] = cpu_model
    report.machine["torch_dtype"] = settings.dtype
    start = time.perf_counter()
    with torch.no_grad():
        for seq_len in settings.lengths:
            ids = _prompt(settings, seq_len)  # (1, T)
            prefills = _time_prefills(models, settings, ids)
            for name in MODELS:
                timing, first = prefills.pop(name)
                row = _row(name, models[name], settings, yoco_config, timing, first)
                del first
                report.add(**row)
                if progress:
                    decode = row["decode_tok_s"]
                    decode_text = "" if decode is None else f", decode {decode:7.1f} tok/s"
                    print(
                        f"  {name:>5} T={seq_len:>6}: prefill {row['prefill_s'] * 1e3:9.1f} ms, "
                        f"cache {format_bytes(row['cache_bytes']):>10}{decode_text}",
                        flush=True,
                    )
    report.add_ratios(
        by="model",
        baseline="yoco",
        metrics=["prefill_s", "prefill_min_s", "cache_bytes", "decode_tok_s", "flops"],
        keys=["seq_len"],
    )
    for row in report.rows:
        measured, theory = row.get("prefill_s_ratio"), row.get("flops_ratio")
        row["measured_over_theory"] = (
            measured / theory if row["model"] == "llama" and measured and theory else None
        )
    report.notes.extend(
        [
            "ratios are llama / yoco at the same length, measured in the same run: prefill_s_ratio "
            "is YOCO's prefill speed-up, cache_bytes_ratio its cache reduction, flops_ratio the "
            "FLOP-theory speed-up; decode_tok_s_ratio < 1 means YOCO decodes faster.",
            "prefill = model(ids, use_cache=True, logits_to_keep=1) for both (YOCO: early exit); "
            f"median (and min) of {settings.repeats} repeats, the two models' repeats "
            f"interleaved, after {settings.warmup} warm-up; torch.no_grad; "
            f"Llama attention: sdpa; decode: {settings.decode_tokens} greedy steps after the prefill.",
            "cache_bytes counted from the cache tensors after the prefill; expected_cache_bytes "
            "from the formula (YocoCache.expected_nbytes; 2·L·n_kv·d_h·T·s for Llama).",
            f"random weights from seed {settings.seed}; total time {time.perf_counter() - start:.0f} s.",
        ]
    )
    return report


def ratio_rows(report: BenchReport) -> list[dict[str, Any]]:
    """One row per length with the ratios a reader wants (from Llama's rows of a report).

    Returns:
        list[dict[str, Any]]: ``seq_len``, ``prefill_speedup`` (Llama time / YOCO time, medians),
        ``prefill_speedup_min`` (the same from the fastest repeats),
        ``theory_speedup`` (FLOP ratio), ``measured_over_theory``, ``cache_reduction`` (Llama bytes
        / YOCO bytes) and ``decode_speedup`` (YOCO tok/s / Llama tok/s, ``None`` without decoding).
    """
    rows: list[dict[str, Any]] = []
    for row in report.rows:
        if row.get("model") != "llama":
            continue
        decode = row.get("decode_tok_s_ratio")
        rows.append(
            {
                "seq_len": row["seq_len"],
                "prefill_speedup": row.get("prefill_s_ratio"),
                "prefill_speedup_min": row.get("prefill_min_s_ratio"),
                "theory_speedup": row.get("flops_ratio"),
                "measured_over_theory": row.get("measured_over_theory"),
                "cache_reduction": row.get("cache_bytes_ratio"),
                "decode_speedup": (1.0 / decode) if decode else None,
            }
        )
    return rows


def write_report(
    report: BenchReport, output_dir: Path, *, stem: str = "yoco_vs_llama"
) -> dict[str, Path]:
    """Write ``<stem>.json`` and ``<stem>.md``, and with matplotlib two PNG plots.

    The plots are prefill time vs length (``<stem>_prefill.png``) and cache bytes vs length
    (``<stem>_cache.png``), one line per model, log–log axes. The Markdown also carries the ratio
    table of :func:`ratio_rows`.

    Args:
        report (BenchReport): from :func:`run_benchmark`.
        output_dir (Path): created if missing.
        stem (str): file-name stem. Default: ``"yoco_vs_llama"``.

    Returns:
        dict[str, Path]: ``json``, ``markdown`` and, when drawn, ``prefill_plot`` and ``cache_plot``.

    Raises:
        ValueError: if ``output_dir`` exists and is not a directory, or ``stem`` is empty.
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir must be a directory, got the file {out}")
    if not stem or "/" in stem:
        raise ValueError(f"stem must be a non-empty file-name stem, got {stem!r}")
    summary = BenchReport(
        title="Ratios (llama / yoco; decode: yoco / llama)",
        rows=ratio_rows(report),
        machine=report.machine,
        created=report.created,
    )
    giga = {"flops": lambda v: "—" if v is None else f"{v / 1e9:.1f} G"}
    markdown = report.to_markdown(giga) + "\n" + summary.to_markdown()
    paths = report.write(out, stem, markdown=markdown)
    metrics = {
        "prefill": ("prefill_s", "prefill time (s)"),
        "cache": ("cache_bytes", "cache after prefill (bytes)"),
    }
    paths.update(report.plot_metrics(out, stem, x="seq_len", series="model", metrics=metrics))
    return paths
