"""Pre-train a YOCO language model on text files with Hugging Face's ``Trainer``.

Implements the training setup of YOCO §5 / Appendix D (arXiv 2405.05254): next-token loss on
packed blocks, AdamW β = (0.9, 0.95), weight decay 0.1, LR 3.2e-4 with 1000 warm-up steps and
linear decay (3B: 4096-token blocks, 4M-token batches); the length-extension stages of §5.3 are
further calls with ``init_from`` and a larger ``rope_theta`` in ``config_overrides``.

Data goes through the core (``iter_documents`` → ``PackedDataset.from_documents`` → seeded
``split_dataset``); the loop is ``transformers.Trainer``, so DeepSpeed ZeRO (the shipped
``configs/ds_zero2.json``) and FSDP work unchanged under ``accelerate``, ``torchrun``, ``deepspeed``.

Tokenizer rule: a local tokenizer (never downloaded, never remote code) or, with none, a byte-level
BPE of ``config.vocab_size`` tokens trained on the corpus and saved with the model. Its ids must
fit: ``len(tokenizer) <= config.vocab_size`` (spare rows allowed), else training is refused before
any model is built; the config's bos/eos/pad ids are copied from the tokenizer.
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

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from papercraft.yoco import YocoConfig

__all__ = [
    "PRESETS",
    "RESULT_FORMAT",
    "RESULT_FORMAT_VERSION",
    "TrainResult",
    "add_cli",
    "load_preset",
    "load_recipe",
    "main",
    "train",
]

logger = logging.getLogger(__name__)

#: Model configs shipped under ``papercraft/yoco/configs/`` (``<name>.json``).
PRESETS = ("tiny", "yoco-160m-gret", "yoco-160m-swa", "yoco-3b-gret")
RESULT_FORMAT = "papercraft.yoco.train_result"
RESULT_FORMAT_VERSION = 1
_BOS, _EOS, _PAD = "<s>", "</s>", "<pad>"
_MIN_TRAINED_VOCAB = 256 + 3  # the byte alphabet plus the three special tokens
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
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
        output_dir (str): where the model, tokenizer and this result are saved.
        global_step (int): optimizer steps done (counting a resumed run's earlier steps).
        train_loss (float | None): the last logged training loss.
        initial_train_loss (float | None): the first logged training loss of this call.
        mean_train_loss (float | None): the Trainer's mean training loss over this call.
        eval_loss (float | None): loss on the held-out blocks after training.
        eval_perplexity (float | None): ``exp(eval_loss)``.
        initial_eval_loss (float | None): held-out loss before the first step (``eval_on_start``).
        num_train_blocks (int): training blocks of ``block_size`` tokens.
        num_eval_blocks (int): held-out blocks.
        block_size (int): tokens per block.
        num_parameters (int): parameters of the model.
        vocab_size (int): the model's vocabulary.
        world_size (int): processes that trained together (data-parallel ranks).
        tokenizer_trained (bool): whether the tokenizer was trained on the corpus by this run.
    """

    output_dir: str
    global_step: int
    train_loss: float | None
    initial_train_loss: float | None
    mean_train_loss: float | None
    eval_loss: float | None
    eval_perplexity: float | None
    initial_eval_loss: float | None
    num_train_blocks: int
    num_eval_blocks: int
    block_size: int
    num_parameters: int
    vocab_size: int
    world_size: int
    tokenizer_trained: bool

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict with its format tag and version."""
        return {
            "format": RESULT_FORMAT,
            "format_version": RESULT_FORMAT_VERSION,
            **dataclasses.asdict(self),
        }


# ------------------------------------------------------------------------------------------------
# Shipped configs


def _config_text(name: str) -> str:
    return (resources.files("papercraft.yoco") / "configs" / name).read_text(encoding="utf-8")


def load_preset(name: str) -> dict[str, Any]:
    """The keyword arguments of a shipped model config, e.g. ``"tiny"`` or ``"yoco-160m-gret"``.

    Args:
        name (str): one of :data:`PRESETS`.

    Returns:
        dict[str, Any]: ``YocoConfig`` keyword arguments.

    Raises:
        ValueError: if ``name`` is not a preset.
    """
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {list(PRESETS)}, got {name!r}")
    data: dict[str, Any] = json.loads(_config_text(f"{name}.json"))
    return data


def load_recipe(name: str = "recipe-3b") -> dict[str, Any]:
    """The paper's 3B training recipe: model preset, :func:`train` arguments, extension stages.

    Args:
        name (str): the recipe file's stem. Default: "recipe-3b"

    Returns:
        dict[str, Any]: ``{"model", "pretraining", "length_extension", ...}``.
    """
    data: dict[str, Any] = json.loads(_config_text(f"{name}.json"))
    return data


def _resolve_config(
    model_config: YocoConfig | str | os.PathLike[str], overrides: Mapping[str, Any] | None
) -> YocoConfig:
    """A fresh, validated ``YocoConfig`` from an object, preset, JSON file or model directory."""
    from papercraft.yoco import YocoConfig

    if isinstance(model_config, YocoConfig):
        values = model_config.to_dict()
    elif isinstance(model_config, (str, os.PathLike)):
        path = Path(model_config)
        if isinstance(model_config, str) and model_config in PRESETS and not path.exists():
            values = load_preset(model_config)
        elif path.is_dir():
            if not (path / "config.json").is_file():
                raise FileNotFoundError(f"model_config: directory {path} has no config.json")
            values = json.loads((path / "config.json").read_text(encoding="utf-8"))
        elif path.is_file():
            try:
                values = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise ValueError(f"model_config: {path} is not valid JSON: {error}") from error
        else:
            raise FileNotFoundError(
                f"model_config must be a preset ({', '.join(PRESETS)}), a config JSON file or a "
                f"model directory; {str(model_config)!r} is none of these"
            )
    else:
        raise TypeError(
            f"model_config must be a YocoConfig, preset name or path, got {type(model_config)}"
        )
    if not isinstance(values, dict):
        raise ValueError(f"model_config must hold a JSON object, got {type(values).__name__}")
    if values.get("model_type", "yoco") != "yoco":
        raise ValueError(f"model_config has model_type {values['model_type']!r}, expected 'yoco'")
    if overrides:
        known = set(YocoConfig().to_dict()) | set(inspect.signature(YocoConfig).parameters)
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"config_overrides: unknown YocoConfig fields {unknown}")
        values = {**values, **overrides}
    values.pop("model_type", None)
    values.pop("transformers_version", None)
    return YocoConfig(**values)


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


def _check_numbers(params: Mapping[str, Any]) -> None:
    """Sizes are positive ints and rates lie in their ranges; the message names the argument."""

    def is_int(value: Any, low: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    for name in _POSITIVE.split():
        if not is_int(params[name], 1):
            raise ValueError(f"{name} must be an int >= 1, got {params[name]!r}")
    for name in _OPTIONAL_POSITIVE.split():
        if params[name] is not None and not is_int(params[name], 1):
            raise ValueError(f"{name} must be an int >= 1 or None, got {params[name]!r}")
    for name in ("warmup_steps", "seed"):
        if not is_int(params[name], 0):
            raise ValueError(f"{name} must be an int >= 0, got {params[name]!r}")
    for name, (low, high, closed) in _RANGES.items():
        value = params[name]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not (low <= value <= high and (closed or value < high)):
            bracket = "]" if closed else ")"
            raise ValueError(f"{name} must be a number in [{low}, {high}{bracket}, got {value!r}")
    if params["bf16"] and params["fp16"]:
        raise ValueError("bf16 and fp16 are exclusive; pass at most one of them")


def _load_json_config(name: str, value: Any) -> dict[str, Any] | None:
    """Parse a DeepSpeed/FSDP config given as a path or a mapping."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a JSON file path or a dict, got {type(value).__name__}")
    path = Path(value)
    # The shipped DeepSpeed config can be named: deepspeed="ds_zero2".
    shipped = "ds_zero2.json" if name == "deepspeed" and str(value) == "ds_zero2" else None
    if not path.is_file() and shipped is None:
        raise FileNotFoundError(f"{name}: no such JSON file: {path}")
    try:
        text = _config_text(shipped) if shipped else path.read_text(encoding="utf-8")
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name}: {path} is not valid JSON: {error}") from error
    if not isinstance(parsed, dict):
        raise ValueError(f"{name}: {path} must hold a JSON object, got {type(parsed).__name__}")
    return parsed


def _check_deepspeed(config: dict[str, Any]) -> None:
    zero = config.get("zero_optimization", {})
    stage = zero.get("stage", 0) if isinstance(zero, dict) else None
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"deepspeed: zero_optimization.stage must be 0, 1, 2 or 3, got {stage!r}")
    if importlib.util.find_spec("deepspeed") is None:
        raise ImportError(
            "deepspeed was given but the deepspeed package is not installed: "
            "pip install 'papercraft-yoco[deepspeed]'"
        )


# ------------------------------------------------------------------------------------------------
# Tokenizer


def _load_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)


def _train_tokenizer(
    documents: Any, *, vocab_size: int, block_size: int
) -> PreTrainedTokenizerBase:
    """A byte-level BPE (GPT-2 kind) with ``<s>``, ``</s>``, ``<pad>`` trained on ``documents``."""
    return train_byte_level_bpe(
        documents,
        vocab_size=vocab_size,
        special_tokens=(_BOS, _EOS, _PAD),
        bos_token=_BOS,
        eos_token=_EOS,
        pad_token=_PAD,
        model_max_length=block_size,
    )


def _has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in _TOKENIZER_FILES)


# ------------------------------------------------------------------------------------------------
# Training


def train(
    *,
    model_config: YocoConfig | str | os.PathLike[str],
    data: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    tokenizer: str | os.PathLike[str] | PreTrainedTokenizerBase | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    init_from: str | os.PathLike[str] | None = None,
    block_size: int = 4096,
    max_steps: int | None = None,
    num_train_epochs: float = 1.0,
    per_device_train_batch_size: int = 8,
    per_device_eval_batch_size: int | None = None,
    gradient_accumulation_steps: int = 1,
    learning_rate: float = 3.2e-4,
    warmup_steps: int = 1000,
    lr_scheduler_type: str = "linear",
    weight_decay: float = 0.1,
    adam_beta1: float = 0.9,
    adam_beta2: float = 0.95,
    adam_epsilon: float = 1e-6,
    max_grad_norm: float = 2.0,
    bf16: bool = False,
    fp16: bool = False,
    gradient_checkpointing: bool = False,
    deepspeed: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    fsdp: str | None = None,
    fsdp_config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
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
    """Train a YOCO causal LM on text files and save model, tokenizer and result to ``output_dir``.

    Global batch = ``per_device_train_batch_size × gradient_accumulation_steps × world size`` blocks
    of ``block_size`` tokens (the paper's 4M tokens: 1024 blocks of 4096). Every argument is
    checked before the tokenizer is trained or the model is built.

    Args:
        model_config (YocoConfig | str | os.PathLike[str]): a config, a preset name
            (:data:`PRESETS`), a config JSON file, or a model directory holding ``config.json``.
        data (Sequence[str | os.PathLike[str]]): ``.txt``/``.md``/``.jsonl`` files or folders.
        output_dir (str | os.PathLike[str]): where checkpoints and the final model go.
        tokenizer (str | os.PathLike[str] | PreTrainedTokenizerBase | None): a local tokenizer
            directory or object; None trains a byte-level BPE of ``vocab_size`` tokens on
            ``data`` (or, when resuming / with ``init_from``, reuses the saved one). Default: None
        config_overrides (Mapping[str, Any] | None): config fields to replace, e.g.
            ``{"rope_theta": 640000.0}`` for length extension. Default: None
        init_from (str | os.PathLike[str] | None): a saved YOCO model whose weights start the
            run (continued pre-training, length extension). Default: None
        block_size (int): tokens per training block (paper: 4096). Default: 4096
        max_steps (int | None): optimizer steps; None trains ``num_train_epochs``. Default: None
        num_train_epochs (float): epochs when ``max_steps`` is None. Default: 1.0
        per_device_train_batch_size (int): blocks per device per micro-step. Default: 8
        per_device_eval_batch_size (int | None): None uses the training value. Default: None
        gradient_accumulation_steps (int): micro-steps per optimizer step. Default: 1
        learning_rate (float): peak learning rate (paper 3B: 3.2e-4). Default: 3.2e-4
        warmup_steps (int): linear warm-up steps (paper: 1000). Default: 1000
        lr_scheduler_type (str): Trainer schedule after warm-up (paper: linear decay).
            Default: "linear"
        weight_decay (float): AdamW weight decay (paper: 0.1). Default: 0.1
        adam_beta1 (float): AdamW β1 (paper: 0.9). Default: 0.9
        adam_beta2 (float): AdamW β2 (paper: 0.95). Default: 0.95
        adam_epsilon (float): AdamW ε (official YOCO script: 1e-6). Default: 1e-6
        max_grad_norm (float): gradient clipping (official YOCO script: 2.0). Default: 2.0
        bf16 (bool): bfloat16 mixed precision. Default: False
        fp16 (bool): float16 mixed precision. Default: False
        gradient_checkpointing (bool): recompute activations in the backward pass. Default: False
        deepspeed (str | os.PathLike[str] | Mapping[str, Any] | None): DeepSpeed config (JSON
            path or dict); ``"ds_zero2"`` names the shipped ``configs/ds_zero2.json``.
            Default: None
        fsdp (str | None): Trainer FSDP option, e.g. ``"full_shard auto_wrap"``. Default: None
        fsdp_config (str | os.PathLike[str] | Mapping[str, Any] | None): FSDP config.
            Default: None
        seed (int): seed of weights, data order and the evaluation split. Default: 0
        eval_fraction (float): share of blocks held out, in [0, 1). Default: 0.01
        eval_steps (int | None): evaluate every N steps; None only at start and end. Default: None
        eval_on_start (bool): evaluate before the first step. Default: True
        logging_steps (int): log the training loss every N steps. Default: 10
        save_steps (int): write a resumable checkpoint every N steps. Default: 1000
        save_total_limit (int | None): checkpoints kept. Default: 2
        resume_from_checkpoint (bool | str | os.PathLike[str]): True resumes from the last
            ``checkpoint-*`` in ``output_dir``; a path resumes from that one. Default: False
        overwrite_output_dir (bool): allow a non-empty ``output_dir`` without resuming.
            Default: False
        text_field (str): JSON field of ``.jsonl`` documents. Default: "text"
        report_to (str | list[str]): Trainer loggers. Default: "none"
        use_cpu (bool | None): train on the CPU even where CUDA exists (e.g. several CPU
            processes with gloo on a one-GPU machine); None uses CUDA when present. Default: None
        training_args (Mapping[str, Any] | None): further ``TrainingArguments`` fields, which
            win over the above (e.g. ``disable_tqdm``). Default: None

    Returns:
        TrainResult: losses, sizes and the output path.

    Raises:
        ValueError, TypeError, FileNotFoundError: on a bad argument (its name in the message).
        ImportError: if ``deepspeed`` is given and the package is missing.
    """
    params = dict(locals())  # the arguments by name, for the checks and the pass-through
    from transformers import Trainer, TrainingArguments, set_seed

    from papercraft.yoco import YocoForCausalLM

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
    init_dir = None if init_from is None else Path(init_from)
    if init_dir is not None and not (init_dir / "config.json").is_file():
        raise FileNotFoundError(f"init_from must be a saved YOCO model directory, got {init_dir}")
    tokenizer_dir: Path | None = None
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer_dir = Path(tokenizer)
        if not (tokenizer_dir.is_dir() and _has_tokenizer(tokenizer_dir)):
            raise FileNotFoundError(
                f"tokenizer must be a local tokenizer directory (with tokenizer.json or "
                f"tokenizer_config.json); nothing is downloaded; got {tokenizer_dir}"
            )
    elif tokenizer is None:
        for candidate in (checkpoint, out if checkpoint is not None else None, init_dir):
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
    ds_config = _load_json_config("deepspeed", deepspeed)
    if ds_config is not None:
        _check_deepspeed(ds_config)
    fsdp_dict = _load_json_config("fsdp_config", fsdp_config)
    extra = dict(training_args or {})
    known_fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    unknown = sorted(set(extra) - known_fields)
    if unknown:
        raise ValueError(f"training_args: unknown TrainingArguments fields {unknown}")
    if max_steps is not None and warmup_steps >= max_steps:
        logger.warning(
            "warmup_steps=%d >= max_steps=%d: the LR never peaks", warmup_steps, max_steps
        )

    has_eval = eval_fraction > 0  # then at least one block is held out (2+ blocks are required)
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
    if gradient_checkpointing:  # transformers 5 renamed it; pass whichever this version has
        known = "activation_checkpointing" in known_fields
        arguments["activation_checkpointing" if known else "gradient_checkpointing"] = True
    if fsdp:
        arguments["fsdp"] = fsdp
        arguments["fsdp_config"] = fsdp_dict
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
            documents = iter_documents(paths, text_field=text_field)
            tok = _train_tokenizer(documents, vocab_size=config.vocab_size, block_size=block_size)
            out.mkdir(parents=True, exist_ok=True)
            tok.save_pretrained(str(out))  # a resumed run finds it here
            trained = True
        else:
            tok = _load_tokenizer(out)
            trained = True
    if tok.eos_token_id is None:
        raise ValueError("tokenizer must define an eos_token (documents are joined with it)")
    if len(tok) > config.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tok)} tokens but the model's vocab_size is "
            f"{config.vocab_size}; set vocab_size >= {len(tok)} (config_overrides={{'vocab_size': "
            f"{-(-len(tok) // 64) * 64}}}) or use a smaller tokenizer"
        )
    config.bos_token_id = tok.bos_token_id
    config.eos_token_id = tok.eos_token_id
    config.pad_token_id = tok.pad_token_id

    # ---- data ----------------------------------------------------------------------------------
    dataset = PackedDataset.from_documents(
        iter_documents(paths, text_field=text_field), tok, block_size=block_size
    )
    min_blocks = 2 if eval_fraction > 0 else 1
    if len(dataset) < min_blocks:
        raise ValueError(
            f"data gives {len(dataset)} full block(s) of block_size={block_size} tokens "
            f"({dataset.num_tokens} tokens); need at least {min_blocks}: add text or lower block_size"
        )
    train_set, eval_set = split_dataset(dataset, val_fraction=eval_fraction, seed=seed)

    # ---- model and Trainer ----------------------------------------------------------------------
    set_seed(seed)
    if init_dir is not None:
        model = YocoForCausalLM.from_pretrained(str(init_dir), config=config, local_files_only=True)
    else:
        model = YocoForCausalLM(config)
    trainer = Trainer(
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
    output = trainer.train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint))
    history = trainer.state.log_history[restored:]
    final_eval: float | None = None
    step = trainer.state.global_step
    done = [e for e in trainer.state.log_history if "eval_loss" in e and e["step"] == step > 0]
    if has_eval:  # reuse an evaluation the loop already ran at the last step
        final_eval = float((done[-1] if done else trainer.evaluate())["eval_loss"])
    trainer.save_model(str(out))  # safetensors + config + tokenizer (all ranks: ZeRO gathers)

    losses = logged(history, "loss")
    eval_losses = logged(history, "eval_loss")
    result = TrainResult(
        output_dir=str(out.resolve()),
        global_step=int(trainer.state.global_step),
        train_loss=losses[-1] if losses else None,
        initial_train_loss=losses[0] if losses else None,
        mean_train_loss=finite(output.training_loss),
        eval_loss=final_eval,
        eval_perplexity=None if final_eval is None else finite(math.exp(min(final_eval, 700.0))),
        initial_eval_loss=eval_losses[0] if (args.eval_on_start and eval_losses) else None,
        num_train_blocks=len(train_set),
        num_eval_blocks=len(eval_set),
        block_size=block_size,
        num_parameters=sum(p.numel() for p in model.parameters()),
        vocab_size=int(config.vocab_size),
        world_size=int(args.world_size),
        tokenizer_trained=trained,
    )
    if trainer.is_world_process_zero():
        atomic_write_json(out / "train_result.json", result.to_dict())
    return result


# ------------------------------------------------------------------------------------------------
# Command line


# (flag, train() argument, type, default, help) of the numeric options
_NUMERIC_OPTIONS: tuple[NumericOption, ...] = (
    ("--block-size", "block_size", int, 4096, "tokens per block"),
    ("--max-steps", "max_steps", int, None, "optimizer steps (None: --epochs)"),
    ("--epochs", "num_train_epochs", float, 1.0, "epochs when --max-steps is unset"),
    ("--batch-size", "per_device_train_batch_size", int, 8, "blocks per device per micro-step"),
    ("--grad-accum", "gradient_accumulation_steps", int, 1, "micro-steps per optimizer step"),
    ("--lr", "learning_rate", float, 3.2e-4, "peak learning rate"),
    ("--warmup", "warmup_steps", int, 1000, "linear warm-up steps"),
    ("--weight-decay", "weight_decay", float, 0.1, "AdamW weight decay"),
    ("--seed", "seed", int, 0, "seed of weights, data order and split"),
    ("--eval-fraction", "eval_fraction", float, 0.01, "share of blocks held out"),
    ("--eval-steps", "eval_steps", int, None, "evaluate every N steps (None: start and end)"),
    ("--logging-steps", "logging_steps", int, 10, "log every N steps"),
    ("--save-steps", "save_steps", int, 1000, "checkpoint every N steps"),
)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``papercraft yoco train``; each ``dest`` is a :func:`train` argument."""

    def init_from(p: argparse.ArgumentParser) -> None:
        p.add_argument("--init-from", metavar="DIR", help="start from a saved model's weights")

    def fsdp(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--fsdp", metavar="OPTION", help='Trainer FSDP option, e.g. "full_shard auto_wrap"'
        )
        p.add_argument("--fsdp-config", metavar="JSON", help="FSDP config JSON")

    def checkpointing(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--gradient-checkpointing", action="store_true", help="recompute activations"
        )

    add_lm_train_arguments(
        parser,
        presets=PRESETS,
        numeric=_NUMERIC_OPTIONS,
        deepspeed_help="DeepSpeed config JSON; ds_zero2 = the shipped one",
        after_tokenizer=init_from,
        after_deepspeed=fsdp,
        after_precision=checkpointing,
    )


def _run(args: argparse.Namespace) -> int:
    """Handler of ``papercraft yoco train``: 0 on success, 2 on a bad argument."""
    return run_train_command(train, args, command="papercraft yoco train")


def add_cli(actions: argparse._SubParsersAction) -> None:
    """Add the ``train`` action to ``papercraft yoco``.

    Args:
        actions (argparse._SubParsersAction): the ``yoco`` command's sub-parsers.
    """
    parser = actions.add_parser(
        "train",
        help="train a YOCO model on text files (transformers Trainer; DeepSpeed/FSDP ready)",
        description="Train a YOCO model from a config on .txt/.md/.jsonl files.",
    )
    _add_arguments(parser)
    parser.set_defaults(func=_run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m papercraft.yoco.train ...`` (also under ``accelerate launch -m``).

    Args:
        argv (Sequence[str] | None): arguments; None reads ``sys.argv``. Default: None

    Returns:
        int: the exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m papercraft.yoco.train")
    _add_arguments(parser)
    return _run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
