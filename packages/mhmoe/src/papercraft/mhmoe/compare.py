"""SMoE vs MH-MoE at laptop scale: validation perplexity and expert activation, as measured.

MH-MoE (Wu et al., 2024, arXiv 2404.15045, §4.4 and Figure 1a) reports that sub-token routing
activates far more experts than a sparse MoE (90.71% vs 8.33% on XNLI) and lowers perplexity; the
follow-up (arXiv 2411.16205, "MH-v2") compares at matched parameters *and* FLOPs. This module runs
that comparison on a tiny decoder that trains in minutes on a CPU:

- corpus: CPython's own documentation (``pydoc_data.topics``, one document per topic), offline,
  or the caller's text files; one byte-level BPE trained once and shared by both systems;
- SMoE: ``h = 1``, no head/merge projections, top-``k`` (1 or 2) of ``E`` SwiGLU experts of hidden
  width ``d_moe``;
- MH-MoE: ``h`` heads with the layer config of
  :func:`papercraft.mhmoe.parity.parity_config` (``match="params+flops"`` by default: top ``h·k``,
  narrower experts, more of them), so both have about the same parameters and FLOPs per token;
- same decoder otherwise, same seed, same split and same data order (:func:`~papercraft.mhmoe.
  train.train` with equal arguments), dropless routing, the load-balancing loss at 1e-2;
- report: parameters, MoE FLOPs/token, validation perplexity (``exp`` of the LM loss alone),
  active-expert share at ``τ = 1/(2E)`` (an expert is active with at least half of its uniform
  share; see :mod:`papercraft.mhmoe.stats`), normalised load entropy, dead experts, wall time, and
  each system's layers × experts heatmap.

Nothing here promises the paper's numbers: at this scale and step count the differences are small
and can go either way; the report states what was measured.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from papercraft.core.data import iter_documents, write_jsonl
from papercraft.core.io import atomic_write_json, atomic_write_text
from papercraft.core.tokenization import train_byte_level_bpe
from papercraft.mhmoe.parity import config_flops, config_params, parity_config

__all__ = [
    "COMPARE_FORMAT",
    "COMPARE_FORMAT_VERSION",
    "CompareResult",
    "SystemReport",
    "compare_smoe_mhmoe",
    "pydoc_corpus",
]

COMPARE_FORMAT = "papercraft.mhmoe.compare"
COMPARE_FORMAT_VERSION = 1
TAU = "1/(2E)"
_SPECIALS = ("<s>", "</s>", "<pad>")
_MATCHES = ("params", "params+flops")


@dataclasses.dataclass(frozen=True)
class SystemReport:
    """Measurements of one trained system.

    Args:
        name (str): ``"SMoE"`` or ``"MH-MoE h=<h>"``.
        num_heads (int): MoE heads ``h``.
        top_k (int): experts per sub-token.
        num_experts (int): experts per MoE layer.
        expert_hidden (int): SwiGLU hidden width of each expert.
        num_moe_layers (int): MoE blocks of the decoder.
        num_parameters (int): parameters of the whole model.
        moe_params_per_layer (int): parameters of one MoE layer.
        moe_flops_per_token (int): matmul FLOPs per token of all MoE layers together.
        val_loss (float | None): validation next-token loss (aux loss excluded).
        val_perplexity (float | None): ``exp(val_loss)``.
        active_share (float | None): mean over layers of the share of experts at or above τ.
        load_entropy (float | None): mean over layers of the normalised load entropy.
        dead_experts (int): experts never chosen on the validation set, all layers.
        wall_time_s (float): seconds of training plus final evaluation.
        output_dir (str): the system's model directory (``stats.json``, heatmap, weights).
        heatmap_path (str | None): the layers × experts heatmap (None without matplotlib).
    """

    name: str
    num_heads: int
    top_k: int
    num_experts: int
    expert_hidden: int
    num_moe_layers: int
    num_parameters: int
    moe_params_per_layer: int
    moe_flops_per_token: int
    val_loss: float | None
    val_perplexity: float | None
    active_share: float | None
    load_entropy: float | None
    dead_experts: int
    wall_time_s: float
    output_dir: str
    heatmap_path: str | None


@dataclasses.dataclass(frozen=True)
class CompareResult:
    """Both systems' reports and the settings that produced them.

    Args:
        smoe (SystemReport): the sparse-MoE baseline.
        mhmoe (SystemReport): the MH-MoE system.
        settings (dict[str, Any]): the arguments of :func:`compare_smoe_mhmoe` (JSON-ready).
        output_dir (str): where ``compare.json``, ``compare.md`` and the systems are written.
    """

    smoe: SystemReport
    mhmoe: SystemReport
    settings: dict[str, Any]
    output_dir: str

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict with its format tag and version."""
        return {
            "format": COMPARE_FORMAT,
            "format_version": COMPARE_FORMAT_VERSION,
            "tau": TAU,
            "settings": self.settings,
            "systems": {
                "smoe": dataclasses.asdict(self.smoe),
                "mhmoe": dataclasses.asdict(self.mhmoe),
            },
            "output_dir": self.output_dir,
        }

    def to_markdown(self) -> str:
        """A Markdown table, one row per system, then the heatmap paths."""

        def num(value: float | None, spec: str) -> str:
            return "n/a" if value is None else format(value, spec)

        lines = [
            "| system | heads | top-k | experts | expert hidden | params | MoE FLOPs/token | "
            f"val ppl | active share (τ={TAU}) | load entropy | dead experts | wall time |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for report in (self.smoe, self.mhmoe):
            lines.append(
                f"| {report.name} | {report.num_heads} | {report.top_k} | {report.num_experts} | "
                f"{report.expert_hidden} | {report.num_parameters:,} | "
                f"{report.moe_flops_per_token:,} | {num(report.val_perplexity, '.2f')} | "
                f"{num(report.active_share, '.1%')} | {num(report.load_entropy, '.3f')} | "
                f"{report.dead_experts} | {report.wall_time_s:.1f} s |"
            )
        lines.append("")
        for report in (self.smoe, self.mhmoe):
            lines.append(f"- {report.name} heatmap: {report.heatmap_path or 'not written'}")
        return "\n".join(lines) + "\n"


def pydoc_corpus(path: str | os.PathLike[str], *, max_documents: int | None = None) -> Path:
    """Write CPython's documentation topics (``pydoc_data.topics``) as a JSONL corpus.

    One document per topic, in sorted key order, so the corpus is identical for a given CPython
    version. Written atomically.

    Args:
        path (str | os.PathLike[str]): the ``.jsonl`` file to write.
        max_documents (int | None): keep only the first N topics. Default: None (all, about
            465k characters on CPython 3.11)

    Returns:
        Path: the written file.

    Raises:
        ValueError: if ``path`` does not end in ``.jsonl`` or ``max_documents`` is not positive.
    """
    from pydoc_data.topics import topics

    target = Path(path)
    if target.suffix != ".jsonl":
        raise ValueError(f"path must end in .jsonl, got {str(path)!r}")
    if max_documents is not None and (not isinstance(max_documents, int) or max_documents < 1):
        raise ValueError(f"max_documents must be a positive int or None, got {max_documents!r}")
    keys = sorted(topics)[:max_documents]
    write_jsonl(target, ({"text": topics[key]} for key in keys))
    return target


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def compare_smoe_mhmoe(
    output_dir: str | os.PathLike[str],
    *,
    data: Sequence[str | os.PathLike[str]] | None = None,
    max_documents: int | None = None,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_attention_heads: int = 4,
    moe_every: int = 1,
    num_experts: int = 8,
    top_k: int = 1,
    expert_hidden: int = 256,
    num_heads: int = 2,
    match: str = "params+flops",
    vocab_size: int = 2048,
    block_size: int = 128,
    batch_size: int = 8,
    max_steps: int = 300,
    learning_rate: float = 2e-3,
    warmup_steps: int | None = None,
    eval_fraction: float = 0.1,
    dispatch: str = "grouped",
    seed: int = 0,
    progress: bool = True,
) -> CompareResult:
    """Train an SMoE and a parity-matched MH-MoE alike and report both; write JSON + Markdown.

    Writes ``output_dir/compare.json``, ``compare.md``, ``tokenizer/``, and one trained model
    per system (``smoe/``, ``mhmoe/``, each with ``stats.json`` and ``expert_heatmap.png``).

    Args:
        output_dir (str | os.PathLike[str]): the report folder; created if missing, existing
            system folders are overwritten.
        data (Sequence[str | os.PathLike[str]] | None): text files or folders; None writes and
            uses CPython's ``pydoc_data.topics`` (:func:`pydoc_corpus`). Default: None
        max_documents (int | None): with ``data=None``, use only the first N topics. Default: None
        hidden_size (int): model width ``d``. Default: 128
        num_layers (int): decoder blocks. Default: 4
        num_attention_heads (int): attention heads. Default: 4
        moe_every (int): every ``moe_every``-th block is an MoE block. Default: 1 (all, so the
            heatmap has one row per block)
        num_experts (int): SMoE experts ``E``. Default: 8
        top_k (int): SMoE experts per token, 1 or 2. Default: 1
        expert_hidden (int): SMoE expert SwiGLU width ``d_moe``. Default: 256
        num_heads (int): MH-MoE heads ``h`` (2 or 4 at ``d = 128``). Default: 2
        match (str): ``"params+flops"`` (MH-v2) or ``"params"`` (the original paper), see
            :func:`~papercraft.mhmoe.parity.parity_config`. Default: "params+flops"
        vocab_size (int): BPE vocabulary trained on the corpus. Default: 2048
        block_size (int): tokens per block. Default: 128
        batch_size (int): blocks per step. Default: 8
        max_steps (int): optimizer steps of each system. Default: 300
        learning_rate (float): peak learning rate (linear warm-up and decay). Default: 2e-3
        warmup_steps (int | None): None uses 10% of ``max_steps``. Default: None
        eval_fraction (float): share of blocks held out for validation, in (0, 1). Default: 0.1
        dispatch (str): expert dispatch of both systems (``"loop"``, ``"grouped"``). Default:
            "grouped"
        seed (int): seed of weights, split and data order, equal for both. Default: 0
        progress (bool): show the Trainer's progress bars. Default: True

    Returns:
        CompareResult: both systems' measurements.

    Raises:
        ValueError: on a bad size, ``top_k`` not 1 or 2, an unknown ``match``, a head count that
            does not divide ``hidden_size``, or a parity config the tiny sizes cannot hold
            (all before any training).
        FileNotFoundError: if a ``data`` path does not exist.
    """
    settings = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in locals().items()}
    settings.pop("output_dir")
    if data is not None:
        settings["data"] = [str(p) for p in data]
    from papercraft.mhmoe.configuration import MHMoEConfig
    from papercraft.mhmoe.train import train

    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir must be a directory, got the file {out}")
    for name, value, low in (
        ("hidden_size", hidden_size, 1),
        ("num_layers", num_layers, 1),
        ("num_attention_heads", num_attention_heads, 1),
        ("moe_every", moe_every, 1),
        ("num_experts", num_experts, 2),
        ("expert_hidden", expert_hidden, 1),
        ("num_heads", num_heads, 2),
        ("vocab_size", vocab_size, 259),
        ("block_size", block_size, 2),
        ("batch_size", batch_size, 1),
        ("max_steps", max_steps, 1),
        ("seed", seed, 0),
    ):
        _check_int(name, value, low)
    if top_k not in (1, 2) or isinstance(top_k, bool):
        raise ValueError(f"top_k must be 1 or 2 (the SMoE baseline), got {top_k!r}")
    if match not in _MATCHES:
        raise ValueError(f"match must be one of {_MATCHES}, got {match!r}")
    if not (isinstance(eval_fraction, float) and 0.0 < eval_fraction < 1.0):
        raise ValueError(f"eval_fraction must be a float in (0, 1), got {eval_fraction!r}")
    if warmup_steps is not None:
        _check_int("warmup_steps", warmup_steps, 0)
    if moe_every > num_layers:
        raise ValueError(f"moe_every must be <= num_layers ({num_layers}), got {moe_every}")
    if data is not None:
        for path in data:
            if not Path(path).exists():
                raise FileNotFoundError(f"data: no such file or directory: {path}")
    baseline = {
        "d_model": hidden_size,
        "num_experts": num_experts,
        "top_k": top_k,
        "expert_hidden": expert_hidden,
    }
    smoe_layer = {**baseline, "num_heads": 1, "head_projection": False}
    mh_layer = parity_config(baseline, num_heads, match)  # ValueError if the sizes cannot hold it
    common: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_attention_heads,
        "moe_every": moe_every,
        "max_position_embeddings": block_size,
        "capacity_factor": None,
        "moe_dispatch": dispatch,
    }
    configs = {}
    for key, layer in (("smoe", smoe_layer), ("mhmoe", mh_layer)):
        configs[key] = MHMoEConfig(
            **common,
            num_experts=layer["num_experts"],
            moe_heads=layer["num_heads"],
            num_experts_per_tok=layer["top_k"],
            moe_ffn_dim=layer["expert_hidden"],
            moe_head_projection=bool(layer["head_projection"]),
        )  # validates dims, dispatch, ... before any training

    # ---- corpus and the shared tokenizer -------------------------------------------------------
    out.mkdir(parents=True, exist_ok=True)
    paths = (
        [Path(p) for p in data]
        if data is not None
        else [pydoc_corpus(out / "corpus" / "pydoc_topics.jsonl", max_documents=max_documents)]
    )
    tokenizer = train_byte_level_bpe(
        iter_documents(paths),
        vocab_size=vocab_size,
        special_tokens=_SPECIALS,
        bos_token=_SPECIALS[0],
        eos_token=_SPECIALS[1],
        pad_token=_SPECIALS[2],
        model_max_length=block_size,
    )
    tokenizer.save_pretrained(str(out / "tokenizer"))

    # ---- train both systems alike ------------------------------------------------------------------
    warmup = max(1, max_steps // 10) if warmup_steps is None else warmup_steps
    reports: dict[str, SystemReport] = {}
    for key, layer in (("smoe", smoe_layer), ("mhmoe", mh_layer)):
        config = configs[key]
        name = "SMoE" if key == "smoe" else f"MH-MoE h={num_heads}"
        if progress:
            print(f"[compare] training {name}: {layer}", flush=True)
        start = time.perf_counter()
        result = train(
            model_config=config,
            data=paths,
            output_dir=out / key,
            tokenizer=tokenizer,
            block_size=block_size,
            max_steps=max_steps,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            warmup_steps=warmup,
            seed=seed,
            eval_fraction=eval_fraction,
            eval_on_start=False,
            logging_steps=max(1, max_steps // 10) if progress else max_steps,
            overwrite_output_dir=True,
            use_cpu=True,
            training_args={"save_strategy": "no", "disable_tqdm": not progress},
        )
        wall = time.perf_counter() - start
        summary = result.expert_stats or {}
        num_moe = len(config.moe_layer_indices)
        reports[key] = SystemReport(
            name=name,
            num_heads=int(layer["num_heads"]),
            top_k=int(layer["top_k"]),
            num_experts=int(layer["num_experts"]),
            expert_hidden=int(layer["expert_hidden"]),
            num_moe_layers=num_moe,
            num_parameters=result.num_parameters,
            moe_params_per_layer=config_params(layer),
            moe_flops_per_token=config_flops(layer) * num_moe,
            val_loss=result.eval_lm_loss,
            val_perplexity=result.eval_perplexity,
            active_share=_mean([summary.get("mean_active_share")]),
            load_entropy=_mean([summary.get("mean_load_entropy")]),
            dead_experts=int(summary.get("num_dead_experts", 0)),
            wall_time_s=wall,
            output_dir=result.output_dir,
            heatmap_path=result.heatmap_path,
        )
    comparison = CompareResult(
        smoe=reports["smoe"],
        mhmoe=reports["mhmoe"],
        settings=settings,
        output_dir=str(out.resolve()),
    )
    atomic_write_json(out / "compare.json", comparison.to_dict())
    atomic_write_text(out / "compare.md", comparison.to_markdown())
    return comparison
