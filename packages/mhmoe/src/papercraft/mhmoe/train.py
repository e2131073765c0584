"""Pre-train an MH-MoE language model on text files with Hugging Face's ``Trainer``.

Training setup of Multi-Head Mixture-of-Experts (Wu et al., 2024, arXiv 2404.15045, §4.1 and
Appendix): next-token loss on packed blocks plus the load-balancing loss of every MoE layer
(coefficient 1e-2, summed over layers, computed inside each layer over its real sub-tokens),
AdamW β = (0.9, 0.98), linear decay after a warm-up. ``MHMoEForCausalLM`` already returns
``loss = lm_loss + aux_loss``; the Trainer here (:class:`MoETrainer`) logs the two parts
separately as ``lm_loss`` / ``aux_loss`` (``eval_lm_loss`` / ``eval_aux_loss``), and the reported
perplexity is ``exp(eval_lm_loss)``: the balancing term is no part of the language model.

Data goes through the core (``iter_documents`` → ``PackedDataset.from_documents`` → seeded
``split_dataset``); the loop is ``transformers.Trainer``, so DDP and DeepSpeed ZeRO (the shipped
``configs/ds_zero2_moe.json``, named ``deepspeed="ds_zero2_moe"``) work unchanged under
``torchrun``, ``accelerate`` or ``deepspeed``. The experts are ordinary stacked parameters, so
ZeRO-2 shards their gradients and optimizer states like any dense weight (no expert-parallel
groups; see :mod:`papercraft.mhmoe.parallel` for that).

After training, expert statistics (:class:`~papercraft.mhmoe.stats.ExpertStats`) are collected
over the held-out blocks during the final evaluation (summed over ranks) and saved next to the
model as ``stats.json`` and ``expert_heatmap.png`` (the heatmap needs matplotlib).

Tokenizer rule: a local tokenizer (never downloaded) or, with none, a byte-level BPE of
``config.vocab_size`` tokens trained on the corpus and saved with the model; its ids must fit
(``len(tokenizer) <= vocab_size``), else training is refused before any model is built.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import Trainer

from papercraft.core.data import PackedDataset, iter_documents, split_dataset
from papercraft.core.io import atomic_write_json
from papercraft.core.tokenization import train_byte_level_bpe
from papercraft.core.training import (
    NumericOption,
    add_lm_train_arguments,
    collate_blocks,
    data_paths,
    finite,
    logged,
    resolve_resume_checkpoint,
    run_train_command,
)
from papercraft.mhmoe.configuration import MHMoEConfig
from papercraft.mhmoe.stats import ExpertStats

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "PRESETS",
    "RESULT_FORMAT",
    "RESULT_FORMAT_VERSION",
    "MoETrainer",
    "TrainResult",
    "add_cli",
    "load_preset",
    "main",
    "train",
]

logger = logging.getLogger(__name__)

#: Model configs shipped under ``papercraft/mhmoe/configs/`` (``<name>.json``).
PRESETS = ("tiny", "small")
RESULT_FORMAT = "papercraft.mhmoe.train_result"
RESULT_FORMAT_VERSION = 1
STATS_FILE = "stats.json"
HEATMAP_FILE = "expert_heatmap.png"
_SHIPPED_DEEPSPEED = "ds_zero2_moe"
_BOS, _EOS, _PAD = "<s>", "</s>", "<pad>"
_MIN_TRAINED_VOCAB = 256 + 3  # the byte alphabet plus the three special tokens
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
_STATS_BLOCKS = 256  # blocks used for the statistics when nothing is held out
#: ``train`` arguments handed to ``TrainingArguments`` unchanged.
_PASSED_THROUGH = (
    "num_train_epochs per_device_train_batch_size gradient_accumulation_steps learning_rate "
    "warmup_steps lr_scheduler_type weight_decay adam_beta1 adam_beta2 adam_epsilon max_grad_norm "
    "bf16 fp16 seed eval_steps logging_steps save_steps save_total_limit report_to"
)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a run produced (also written to ``output_dir/train_result.json``).

    Args:
        output_dir (str): where the model, tokenizer, statistics and this result are saved.
        global_step (int): optimizer steps done (counting a resumed run's earlier steps).
        train_loss (float | None): the last logged training loss (LM + aux).
        initial_train_loss (float | None): the first logged training loss of this call.
        train_aux_loss (float | None): the last logged load-balancing part (coefficients applied).
        eval_loss (float | None): held-out LM + aux loss after training.
        eval_lm_loss (float | None): held-out next-token loss after training.
        eval_aux_loss (float | None): held-out load-balancing part after training.
        eval_perplexity (float | None): ``exp(eval_lm_loss)``.
        initial_eval_lm_loss (float | None): held-out LM loss before the first step.
        num_train_blocks (int): training blocks of ``block_size`` tokens.
        num_eval_blocks (int): held-out blocks.
        block_size (int): tokens per block.
        num_parameters (int): parameters of the model.
        vocab_size (int): the model's vocabulary.
        world_size (int): processes that trained together.
        tokenizer_trained (bool): whether this run trained the tokenizer on the corpus.
        expert_stats (dict[str, Any] | None): the ``summary`` of ``stats.json`` (mean active
            share at τ = 1/(2E), mean load entropy, dead experts); None without MoE layers.
        stats_path (str | None): the saved ``stats.json``.
        heatmap_path (str | None): the saved heatmap (None without matplotlib).
    """

    output_dir: str
    global_step: int
    train_loss: float | None
    initial_train_loss: float | None
    train_aux_loss: float | None
    eval_loss: float | None
    eval_lm_loss: float | None
    eval_aux_loss: float | None
    eval_perplexity: float | None
    initial_eval_lm_loss: float | None
    num_train_blocks: int
    num_eval_blocks: int
    block_size: int
    num_parameters: int
    vocab_size: int
    world_size: int
    tokenizer_trained: bool
    expert_stats: dict[str, Any] | None
    stats_path: str | None
    heatmap_path: str | None

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict with its format tag and version."""
        return {
            "format": RESULT_FORMAT,
            "format_version": RESULT_FORMAT_VERSION,
            **dataclasses.asdict(self),
        }


# ------------------------------------------------------------------------------------------------
# Trainer that logs the MoE loss separately


class MoETrainer(Trainer):
    """``Trainer`` that logs ``lm_loss`` and ``aux_loss`` (and their ``eval_`` forms) apart.

    The model's loss (``lm_loss + aux_loss``) is what is optimised and logged as ``loss``. Each
    micro-batch's parts are accumulated and their mean since the last log is added to the logs
    (averaged over ranks). The model is told not to take ``num_items_in_batch``: the LM loss is
    then a per-micro-batch mean like the aux loss, and the Trainer divides both by the
    gradient-accumulation steps alike (with full packed blocks this equals the token-weighted
    mean; otherwise the aux loss would count once per micro-step).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False
        self._parts: dict[str, list[torch.Tensor]] = {"train": [], "eval": []}

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """The model's loss; records its LM and aux parts for :meth:`log`."""
        loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        lm_loss = outputs.get("lm_loss") if isinstance(outputs, Mapping) else None
        if lm_loss is not None:
            aux = outputs.get("aux_loss")
            aux_value = torch.zeros_like(lm_loss) if aux is None else aux.to(lm_loss.dtype)
            part = torch.stack([lm_loss.detach(), aux_value.detach()]).float()  # (2,)
            self._parts["train" if model.training else "eval"].append(part)
        return (loss, outputs) if return_outputs else loss

    def _mean_parts(self, kind: str) -> tuple[float, float] | None:
        parts = self._parts[kind]
        if not parts:
            return None
        mean = torch.stack(parts).mean(0)  # (2,)
        self._parts[kind] = []
        if self.args.world_size > 1:
            mean = self.accelerator.gather(mean[None]).mean(0)
        return float(mean[0]), float(mean[1])

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the mean LM / aux parts since the last log, then log as ``Trainer`` does."""
        if "loss" in logs:
            parts = self._mean_parts("train")
            if parts is not None:
                logs["lm_loss"], logs["aux_loss"] = round(parts[0], 6), round(parts[1], 6)
        prefix = next((k[: -len("loss")] for k in logs if k.endswith("_loss")), None)
        if prefix is not None and prefix != "lm_" and f"{prefix}loss" in logs:
            parts = self._mean_parts("eval")
            if parts is not None:
                logs[f"{prefix}lm_loss"], logs[f"{prefix}aux_loss"] = parts
        super().log(logs, start_time)


# ------------------------------------------------------------------------------------------------
# Shipped configs


def _config_text(name: str) -> str:
    return (resources.files("papercraft.mhmoe") / "configs" / name).read_text(encoding="utf-8")


def load_preset(name: str) -> dict[str, Any]:
    """The keyword arguments of a shipped model config, ``"tiny"`` or ``"small"``.

    Args:
        name (str): one of :data:`PRESETS`.

    Returns:
        dict[str, Any]: ``MHMoEConfig`` keyword arguments.

    Raises:
        ValueError: if ``name`` is not a preset.
    """
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {list(PRESETS)}, got {name!r}")
    data: dict[str, Any] = json.loads(_config_text(f"{name}.json"))
    return data


def _read_json_object(name: str, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{name}: {path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{name}: {path} must hold a JSON object, got {type(data).__name__}")
    return data


def _resolve_config(
    model_config: MHMoEConfig | str | os.PathLike[str], overrides: Mapping[str, Any] | None
) -> MHMoEConfig:
    """A fresh, validated ``MHMoEConfig`` from an object, preset, JSON file or model directory."""
    if isinstance(model_config, MHMoEConfig):
        values = model_config.to_dict()
    elif isinstance(model_config, (str, os.PathLike)):
        path = Path(model_config)
        if isinstance(model_config, str) and model_config in PRESETS and not path.exists():
            values = load_preset(model_config)
        elif path.is_dir():
            if not (path / "config.json").is_file():
                raise FileNotFoundError(f"model_config: directory {path} has no config.json")
            values = _read_json_object("model_config", path / "config.json")
        elif path.is_file():
            values = _read_json_object("model_config", path)
        else:
            raise FileNotFoundError(
                f"model_config must be a preset ({', '.join(PRESETS)}), a config JSON file or a "
                f"model directory; {str(model_config)!r} is none of these"
            )
    else:
        raise TypeError(
            f"model_config must be an MHMoEConfig, preset name or path, got {type(model_config)}"
        )
    model_type = values.get("model_type", MHMoEConfig.model_type)
    if model_type != MHMoEConfig.model_type:
        raise ValueError(
            f"model_config has model_type {model_type!r}, expected {MHMoEConfig.model_type!r}"
        )
    if overrides:
        known = set(MHMoEConfig().to_dict()) | set(inspect.signature(MHMoEConfig).parameters)
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"config_overrides: unknown MHMoEConfig fields {unknown}")
        values = {**values, **overrides}
    for key in ("model_type", "transformers_version", "architectures"):
        values.pop(key, None)
    return MHMoEConfig(**values)


# ------------------------------------------------------------------------------------------------
# Validation


_POSITIVE = "block_size per_device_train_batch_size gradient_accumulation_steps logging_steps"
_OPTIONAL_POSITIVE = "max_steps per_device_eval_batch_size eval_steps save_total_limit save_steps"
# name: (low, high, high included)
_RANGES: dict[str, tuple[float, float, bool]] = {
    "learning_rate": (1e-12, 10.0, True),
    "weight_decay": (0.0, 10.0, True),
    "adam_beta1": (0.0, 1.0, False),
    "adam_beta2": (0.0, 1.0, False),
    "adam_epsilon": (0.0, 1.0, True),
    "max_grad_norm": (0.0, math.inf, True),
    "eval_fraction": (0.0, 1.0, False),
    "num_train_epochs": (1e-9, math.inf, True),
}


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _check_numbers(params: Mapping[str, Any]) -> None:
    """Sizes are positive ints and rates lie in their ranges; the message names the argument."""
    for name in _POSITIVE.split():
        if not _is_int(params[name], 1):
            raise ValueError(f"{name} must be an int >= 1, got {params[name]!r}")
    for name in _OPTIONAL_POSITIVE.split():
        if params[name] is not None and not _is_int(params[name], 1):
            raise ValueError(f"{name} must be an int >= 1 or None, got {params[name]!r}")
    for name in ("warmup_steps", "seed"):
        if not _is_int(params[name], 0):
            raise ValueError(f"{name} must be an int >= 0, got {params[name]!r}")
    for name, (low, high, closed) in _RANGES.items():
        value = params[name]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not (low <= value <= high and (closed or value < high)):
            bracket = "]" if closed else ")"
            raise ValueError(f"{name} must be a number in [{low}, {high}{bracket}, got {value!r}")
    if params["bf16"] and params["fp16"]:
        raise ValueError("bf16 and fp16 are exclusive; pass at most one of them")


def _deepspeed_config(value: Any) -> dict[str, Any] | None:
    """Parse the DeepSpeed config (path, mapping or the shipped name) and check it."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        config = dict(value)
    elif isinstance(value, (str, os.PathLike)):
        if str(value) == _SHIPPED_DEEPSPEED:
            config = json.loads(_config_text(f"{_SHIPPED_DEEPSPEED}.json"))
        elif Path(value).is_file():
            config = _read_json_object("deepspeed", Path(value))
        else:
            raise FileNotFoundError(
                f"deepspeed must be a JSON file, a dict or {_SHIPPED_DEEPSPEED!r} (the shipped "
                f"config); no such file: {value}"
            )
    else:
        raise TypeError(f"deepspeed must be a JSON file path or a dict, got {type(value).__name__}")
    zero = config.get("zero_optimization", {})
    stage = zero.get("stage", 0) if isinstance(zero, dict) else None
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"deepspeed: zero_optimization.stage must be 0, 1, 2 or 3, got {stage!r}")
    if importlib.util.find_spec("deepspeed") is None:
        raise ImportError(
            "deepspeed was given but the deepspeed package is not installed: "
            "pip install 'papercraft-mhmoe[deepspeed]'"
        )
    return config


# ------------------------------------------------------------------------------------------------
# Tokenizer and data


def _load_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)


def _has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in _TOKENIZER_FILES)


def _reduce_counts(stats: ExpertStats) -> None:
    """Sum the per-rank counts of a data-parallel run (every rank has the same layers)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for name in stats.layers:
        for table in (stats.counts, stats.kept_counts):
            merged = table[name].clone()
            dist.all_reduce(merged)
            table[name] = merged
        seen = torch.tensor([stats.num_sub_tokens[name]], dtype=torch.long)
        dist.all_reduce(seen)
        stats.num_sub_tokens[name] = int(seen.item())


def _save_stats(stats: ExpertStats, out: Path) -> tuple[str, str | None]:
    """Write ``stats.json`` and, with matplotlib, the heatmap; return their paths."""
    stats_path = stats.save(out / STATS_FILE).resolve()
    if importlib.util.find_spec("matplotlib") is None:
        logger.warning("matplotlib is not installed: no %s written", HEATMAP_FILE)
        return str(stats_path), None
    heatmap = stats.plot_heatmap(out / HEATMAP_FILE).resolve()
    return str(stats_path), str(heatmap)


# ------------------------------------------------------------------------------------------------
# Training


def train(
    *,
    model_config: MHMoEConfig | str | os.PathLike[str],
    data: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    tokenizer: str | os.PathLike[str] | PreTrainedTokenizerBase | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    block_size: int = 512,
    max_steps: int | None = None,
    num_train_epochs: float = 1.0,
    per_device_train_batch_size: int = 8,
    per_device_eval_batch_size: int | None = None,
    gradient_accumulation_steps: int = 1,
    learning_rate: float = 6e-4,
    warmup_steps: int = 1000,
    lr_scheduler_type: str = "linear",
    weight_decay: float = 0.01,
    adam_beta1: float = 0.9,
    adam_beta2: float = 0.98,
    adam_epsilon: float = 1e-6,
    max_grad_norm: float = 1.0,
    bf16: bool = False,
    fp16: bool = False,
    deepspeed: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    seed: int = 0,
    eval_fraction: float = 0.01,
    eval_steps: int | None = None,
    eval_on_start: bool = True,
    logging_steps: int = 10,
    save_steps: int = 1000,
    save_total_limit: int | None = 2,
    resume_from_checkpoint: bool | str | os.PathLike[str] = False,
    overwrite_output_dir: bool = False,
    text_field: str = "text",
    report_to: str | list[str] = "none",
    use_cpu: bool | None = None,
    training_args: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train an MH-MoE causal LM on text files; save model, tokenizer, stats and result.

    Global batch = ``per_device_train_batch_size × gradient_accumulation_steps × world size``
    blocks of ``block_size`` tokens. Every argument is checked before the tokenizer is trained
    or the model is built.

    Args:
        model_config (MHMoEConfig | str | os.PathLike[str]): a config, a preset name
            (:data:`PRESETS`), a config JSON file, or a model directory holding ``config.json``.
        data (Sequence[str | os.PathLike[str]] | str | os.PathLike[str]): ``.txt``/``.md``/
            ``.jsonl`` files or folders.
        output_dir (str | os.PathLike[str]): where checkpoints and the final model go.
        tokenizer (str | os.PathLike[str] | PreTrainedTokenizerBase | None): a local tokenizer
            directory or object; None trains a byte-level BPE of ``vocab_size`` tokens on
            ``data`` (or, when resuming, reuses the saved one). Default: None
        config_overrides (Mapping[str, Any] | None): config fields to replace, e.g.
            ``{"moe_heads": 1, "moe_head_projection": False}``. Default: None
        block_size (int): tokens per training block. Default: 512
        max_steps (int | None): optimizer steps; None trains ``num_train_epochs``. Default: None
        num_train_epochs (float): epochs when ``max_steps`` is None. Default: 1.0
        per_device_train_batch_size (int): blocks per device per micro-step. Default: 8
        per_device_eval_batch_size (int | None): None uses the training value. Default: None
        gradient_accumulation_steps (int): micro-steps per optimizer step. Default: 1
        learning_rate (float): peak learning rate. Default: 6e-4
        warmup_steps (int): linear warm-up steps. Default: 1000
        lr_scheduler_type (str): Trainer schedule after warm-up. Default: "linear"
        weight_decay (float): AdamW weight decay. Default: 0.01
        adam_beta1 (float): AdamW β1. Default: 0.9
        adam_beta2 (float): AdamW β2 (paper: 0.98). Default: 0.98
        adam_epsilon (float): AdamW ε. Default: 1e-6
        max_grad_norm (float): gradient clipping. Default: 1.0
        bf16 (bool): bfloat16 mixed precision. Default: False
        fp16 (bool): float16 mixed precision. Default: False
        deepspeed (str | os.PathLike[str] | Mapping[str, Any] | None): DeepSpeed config (JSON
            path or dict); ``"ds_zero2_moe"`` names the shipped ``configs/ds_zero2_moe.json``
            (ZeRO-2, ``"auto"`` sizes filled from these arguments). Launch with
            ``deepspeed --num_gpus N -m papercraft.mhmoe.train ...``. Default: None
        seed (int): seed of weights, data order and the evaluation split. Default: 0
        eval_fraction (float): share of blocks held out, in [0, 1). Default: 0.01
        eval_steps (int | None): evaluate every N steps; None only at start and end. Default: None
        eval_on_start (bool): evaluate before the first step. Default: True
        logging_steps (int): log the training losses every N steps. Default: 10
        save_steps (int): write a resumable checkpoint every N steps. Default: 1000
        save_total_limit (int | None): checkpoints kept. Default: 2
        resume_from_checkpoint (bool | str | os.PathLike[str]): True resumes from the last
            ``checkpoint-*`` in ``output_dir``; a path resumes from that one. Default: False
        overwrite_output_dir (bool): allow a non-empty ``output_dir`` without resuming.
            Default: False
        text_field (str): JSON field of ``.jsonl`` documents. Default: "text"
        report_to (str | list[str]): Trainer loggers. Default: "none"
        use_cpu (bool | None): train on the CPU even where CUDA exists; None uses CUDA when
            present. Default: None
        training_args (Mapping[str, Any] | None): further ``TrainingArguments`` fields, which
            win over the above (e.g. ``disable_tqdm``). Default: None

    Returns:
        TrainResult: losses, expert statistics, sizes and the output path.

    Raises:
        ValueError, TypeError, FileNotFoundError: on a bad argument (its name in the message).
        ImportError: if ``deepspeed`` is given and the package is missing.
    """
    params = dict(locals())  # the arguments by name, for the checks and the pass-through
    from transformers import TrainingArguments, set_seed

    from papercraft.mhmoe.modeling import MHMoEForCausalLM

    # ---- validate everything (cheap) before tokenizer training, packing or the model --------
    _check_numbers(params)
    paths = data_paths(data)
    iter_documents(paths, text_field=text_field)  # checks suffixes before reading anything
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir must be a directory, got the file {out}")
    checkpoint = resolve_resume_checkpoint(resume_from_checkpoint, out)
    if checkpoint is None and out.is_dir() and any(out.iterdir()) and not overwrite_output_dir:
        raise ValueError(
            f"output_dir {out} is not empty; pass overwrite_output_dir=True (--overwrite) to "
            "write into it or resume_from_checkpoint=True (--resume) to continue a run"
        )
    tokenizer_dir: Path | None = None
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer_dir = Path(tokenizer)
        if not (tokenizer_dir.is_dir() and _has_tokenizer(tokenizer_dir)):
            raise FileNotFoundError(
                "tokenizer must be a local tokenizer directory (with tokenizer.json or "
                f"tokenizer_config.json); nothing is downloaded; got {tokenizer_dir}"
            )
    elif tokenizer is None:
        for candidate in (checkpoint, out if checkpoint is not None else None):
            if candidate is not None and _has_tokenizer(candidate):
                tokenizer_dir = candidate
                break
    elif not callable(getattr(tokenizer, "save_pretrained", None)):
        raise TypeError(f"tokenizer must be a path or a PreTrainedTokenizerBase, got {tokenizer!r}")
    config = _resolve_config(model_config, config_overrides)
    if tokenizer is None and tokenizer_dir is None and config.vocab_size < _MIN_TRAINED_VOCAB:
        raise ValueError(
            f"vocab_size must be >= {_MIN_TRAINED_VOCAB} (256 bytes + 3 specials) to train a "
            f"byte-level BPE tokenizer, got {config.vocab_size}"
        )
    ds_config = _deepspeed_config(deepspeed)
    extra = dict(training_args or {})
    known_fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    unknown = sorted(set(extra) - known_fields)
    if unknown:
        raise ValueError(f"training_args: unknown TrainingArguments fields {unknown}")
    if max_steps is not None and warmup_steps >= max_steps:
        logger.warning(
            "warmup_steps=%d >= max_steps=%d: the LR never peaks", warmup_steps, max_steps
        )

    has_eval = eval_fraction > 0
    arguments: dict[str, Any] = {name: params[name] for name in _PASSED_THROUGH.split()}
    arguments.update(
        output_dir=str(out),
        max_steps=-1 if max_steps is None else max_steps,
        per_device_eval_batch_size=per_device_eval_batch_size or per_device_train_batch_size,
        deepspeed=ds_config,
        eval_strategy="steps" if eval_steps and has_eval else "no",
        eval_on_start=bool(eval_on_start and has_eval),
        save_strategy="steps",
        use_cpu=(not torch.cuda.is_available()) if use_cpu is None else bool(use_cpu),
    )
    arguments.update(extra)
    args = TrainingArguments(**arguments)
    _ = args.device  # sets up the process group under torchrun / accelerate / deepspeed
    if args.distributed_state is not None:
        args.distributed_state.wait_for_everyone()  # every rank validated before anyone writes

    # ---- tokenizer: given, saved, or trained once on the main process -----------------------
    trained = False
    with args.main_process_first(local=False, desc="tokenizer"):
        if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
            tok: PreTrainedTokenizerBase = tokenizer
        elif tokenizer_dir is not None:
            tok = _load_tokenizer(tokenizer_dir)
        elif args.process_index == 0:
            tok = train_byte_level_bpe(
                iter_documents(paths, text_field=text_field),
                vocab_size=config.vocab_size,
                special_tokens=(_BOS, _EOS, _PAD),
                bos_token=_BOS,
                eos_token=_EOS,
                pad_token=_PAD,
                model_max_length=block_size,
            )
            out.mkdir(parents=True, exist_ok=True)
            tok.save_pretrained(str(out))  # a resumed run and the other ranks find it here
            trained = True
        else:
            tok = _load_tokenizer(out)
            trained = True
    if tok.eos_token_id is None:
        raise ValueError("tokenizer must define an eos_token (documents are joined with it)")
    if len(tok) > config.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tok)} tokens but the model's vocab_size is "
            f"{config.vocab_size}; set vocab_size >= {len(tok)} or use a smaller tokenizer"
        )
    config.bos_token_id = tok.bos_token_id
    config.eos_token_id = tok.eos_token_id
    config.pad_token_id = tok.pad_token_id

    # ---- data ----------------------------------------------------------------------------------
    dataset = PackedDataset.from_documents(
        iter_documents(paths, text_field=text_field), tok, block_size=block_size
    )
    min_blocks = 2 if has_eval else 1
    if len(dataset) < min_blocks:
        raise ValueError(
            f"data gives {len(dataset)} full block(s) of block_size={block_size} tokens "
            f"({dataset.num_tokens} tokens); need at least {min_blocks}: add text or lower block_size"
        )
    train_set, eval_set = split_dataset(dataset, val_fraction=eval_fraction, seed=seed)

    # ---- model and Trainer ----------------------------------------------------------------------
    set_seed(seed)
    model = MHMoEForCausalLM(config)
    trainer = MoETrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set if has_eval else None,
        data_collator=collate_blocks,
        processing_class=tok,
    )
    restored = 0  # log entries a resumed run inherits from its checkpoint; not this call's
    if checkpoint is not None and (checkpoint / "trainer_state.json").is_file():
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        restored = len(state.get("log_history", []))
    trainer.train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint))
    history = trainer.state.log_history[restored:]

    # ---- final evaluation, with the expert statistics counted on the way -----------------------
    stats = ExpertStats()
    final: dict[str, float] = {}
    has_moe = bool(config.moe_layer_indices)
    stats_set = eval_set
    if not has_eval:
        stats_set = torch.utils.data.Subset(train_set, range(min(len(train_set), _STATS_BLOCKS)))
    if has_moe:
        with stats.track(model):
            final = trainer.evaluate(eval_dataset=stats_set)
        _reduce_counts(stats)
    elif has_eval:
        final = trainer.evaluate()
    trainer.save_model(str(out))  # safetensors + config + tokenizer (all ranks: ZeRO gathers)

    losses = logged(history, "loss")
    aux_losses = logged(history, "aux_loss")
    initial_lm = [
        float(e["eval_lm_loss"]) for e in history if "eval_lm_loss" in e and e.get("step") == 0
    ]
    eval_lm = final.get("eval_lm_loss") if has_eval else None
    stats_path = heatmap_path = None
    summary = None
    if has_moe:
        summary = stats.to_dict()["summary"]
        if trainer.is_world_process_zero():
            stats_path, heatmap_path = _save_stats(stats, out)
    result = TrainResult(
        output_dir=str(out.resolve()),
        global_step=int(trainer.state.global_step),
        train_loss=losses[-1] if losses else None,
        initial_train_loss=losses[0] if losses else None,
        train_aux_loss=aux_losses[-1] if aux_losses else None,
        eval_loss=finite(final.get("eval_loss")) if has_eval else None,
        eval_lm_loss=finite(eval_lm),
        eval_aux_loss=finite(final.get("eval_aux_loss")) if has_eval else None,
        eval_perplexity=None if eval_lm is None else finite(math.exp(min(eval_lm, 700.0))),
        initial_eval_lm_loss=initial_lm[0] if initial_lm else None,
        num_train_blocks=len(train_set),
        num_eval_blocks=len(eval_set),
        block_size=block_size,
        num_parameters=sum(p.numel() for p in model.parameters()),
        vocab_size=int(config.vocab_size),
        world_size=int(args.world_size),
        tokenizer_trained=trained,
        expert_stats=summary,
        stats_path=stats_path,
        heatmap_path=heatmap_path,
    )
    if trainer.is_world_process_zero():
        atomic_write_json(out / "train_result.json", result.to_dict())
    return result


# ------------------------------------------------------------------------------------------------
# Command line


# (flag, train() argument, type, default, help) of the numeric options
_NUMERIC_OPTIONS: tuple[NumericOption, ...] = (
    ("--block-size", "block_size", int, 512, "tokens per block"),
    ("--max-steps", "max_steps", int, None, "optimizer steps (None: --epochs)"),
    ("--epochs", "num_train_epochs", float, 1.0, "epochs when --max-steps is unset"),
    ("--batch-size", "per_device_train_batch_size", int, 8, "blocks per device per micro-step"),
    ("--grad-accum", "gradient_accumulation_steps", int, 1, "micro-steps per optimizer step"),
    ("--lr", "learning_rate", float, 6e-4, "peak learning rate"),
    ("--warmup", "warmup_steps", int, 1000, "linear warm-up steps"),
    ("--weight-decay", "weight_decay", float, 0.01, "AdamW weight decay"),
    ("--seed", "seed", int, 0, "seed of weights, data order and split"),
    ("--eval-fraction", "eval_fraction", float, 0.01, "share of blocks held out"),
    ("--eval-steps", "eval_steps", int, None, "evaluate every N steps (None: start and end)"),
    ("--logging-steps", "logging_steps", int, 10, "log every N steps"),
    ("--save-steps", "save_steps", int, 1000, "checkpoint every N steps"),
)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``papercraft mhmoe train``; each ``dest`` is a :func:`train` argument."""
    add_lm_train_arguments(
        parser,
        presets=PRESETS,
        numeric=_NUMERIC_OPTIONS,
        deepspeed_help=f"DeepSpeed config; {_SHIPPED_DEEPSPEED} = shipped one",
    )


def _run(args: argparse.Namespace) -> int:
    """Handler of ``papercraft mhmoe train``: 0 on success, 2 on a bad argument."""
    return run_train_command(train, args, command="papercraft mhmoe train")


def add_cli(actions: argparse._SubParsersAction) -> None:
    """Add the ``train`` action to ``papercraft mhmoe``.

    Args:
        actions (argparse._SubParsersAction): the ``mhmoe`` command's sub-parsers.
    """
    parser = actions.add_parser(
        "train",
        help="train an MH-MoE model on text files (transformers Trainer; DDP/DeepSpeed ready)",
        description="Train an MH-MoE causal LM from a config on .txt/.md/.jsonl files.",
    )
    _add_arguments(parser)
    parser.set_defaults(func=_run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m papercraft.mhmoe.train ...`` (also under ``torchrun`` / ``deepspeed``).

    Args:
        argv (Sequence[str] | None): arguments; None reads ``sys.argv``. Default: None

    Returns:
        int: the exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m papercraft.mhmoe.train")
    _add_arguments(parser)
    return _run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
