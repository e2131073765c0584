"""Train an SVDR encoder with the semi-parametric loss on DPR-format data (transformers ``Trainer``).

A batch holds ``N`` questions, their ``N`` positive passages and ``h`` hard negatives per question
(``[N]`` blocks, positives first), tokenized by :class:`SVDRCollator`. :class:`SVDRForTraining`
encodes both sides densely, builds the bags of tokens, and returns the mean of the four symmetric
InfoNCE terms (:func:`~papercraft.svdr.loss.semi_parametric_loss`), with in-batch negatives
gathered across processes. The loss is computed inside ``forward``, so ``Trainer`` runs it
unchanged under DDP, DeepSpeed or FSDP. The paper's recipe: batch 32 per GPU × 4, AdamW 2e-5 with
linear decay, gradient clipping 2.0, fp16, 80 epochs, one hard negative.

Checkpoints and the final model are SVDR encoder folders (``model/`` inside the checkpoint or
output folder), loadable with :meth:`SVDREncoder.from_pretrained`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import Trainer

from papercraft.core.io import atomic_write_json
from papercraft.svdr.data import DprExample, passage_text, read_dpr
from papercraft.svdr.loss import semi_parametric_loss
from papercraft.svdr.model import MODEL_DIRNAME, SVDREncoder, bag_of_tokens, load_encoder

__all__ = [
    "SVDRCollator",
    "SVDRForTraining",
    "SVDRTrainer",
    "SVDRTrainingDataset",
    "TrainResult",
    "load_encoder",
    "train",
]

RESULT_FORMAT = "papercraft.svdr.train_result"
RESULT_FORMAT_VERSION = 1
_TERMS = ("q_topk_p", "q_p_topk", "q_bin_p", "q_p_bin")


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


# ------------------------------------------------------------------------------------------------
# Data


class SVDRTrainingDataset(torch.utils.data.Dataset[DprExample]):
    """DPR examples that have enough negatives for ``hard_negatives`` per question.

    Examples short of negatives (hard negatives first, then the plain ``negative_ctxs``) are left
    out and counted in :attr:`dropped`, as DPR's own reader does with examples lacking positives.

    Args:
        examples (Sequence[DprExample]): the examples.
        hard_negatives (int): negatives per question (0 trains on in-batch negatives only). Default: 1

    Raises:
        ValueError: when no example is left.
    """

    def __init__(self, examples: Sequence[DprExample], *, hard_negatives: int = 1) -> None:
        self.hard_negatives = _positive_int("hard_negatives", hard_negatives, 0)
        kept = [
            e
            for e in examples
            if len(e.hard_negatives) + len(e.negatives) >= hard_negatives and e.positives
        ]
        self.dropped = len(examples) - len(kept)
        if not kept:
            raise ValueError(
                f"examples: none of the {len(examples)} examples has a positive and "
                f"{hard_negatives} negative(s)"
            )
        self.examples = kept

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> DprExample:
        return self.examples[index]


def _key(text: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


class SVDRCollator:
    """Tokenize a list of :class:`DprExample` into one training batch.

    The first positive of each question is its positive (as DPR); hard negatives are drawn at
    random from ``hard_negatives`` (then ``negatives``) with the collator's own seeded generator.
    Passages are ``title text`` strings (:func:`~papercraft.svdr.data.passage_text`), the same
    strings the indexes see.

    Args:
        tokenizer (PreTrainedTokenizerBase): the encoder's tokenizer.
        query_max_length (int): question truncation. Default: 128
        passage_max_length (int): passage truncation. Default: 256
        hard_negatives (int): negatives per question. Default: 1
        seed (int): seed of the negative sampling. Default: 0

    Returns (when called):
        dict[str, Tensor]: ``query_input_ids``/``query_attention_mask`` ``[N, Lq]``,
        ``passage_input_ids``/``passage_attention_mask`` ``[N·(1+h), Lp]`` (positives, then one
        block of ``N`` per negative) and ``passage_keys`` ``[N·(1+h)]`` (a hash of each text).
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        query_max_length: int = 128,
        passage_max_length: int = 256,
        hard_negatives: int = 1,
        seed: int = 0,
    ) -> None:
        self.tokenizer = tokenizer
        self.query_max_length = _positive_int("query_max_length", query_max_length)
        self.passage_max_length = _positive_int("passage_max_length", passage_max_length)
        self.hard_negatives = _positive_int("hard_negatives", hard_negatives, 0)
        self.rng = random.Random(seed)

    def _negatives(self, example: DprExample) -> list[str]:
        pool = [passage_text(p.title, p.text) for p in example.hard_negatives]
        chosen = self.rng.sample(pool, min(self.hard_negatives, len(pool)))
        rest = self.hard_negatives - len(chosen)
        if rest:
            others = [passage_text(p.title, p.text) for p in example.negatives]
            if len(others) < rest:
                raise ValueError(
                    f"example {example.question!r:.60} has fewer than {self.hard_negatives} "
                    "negatives (filter with SVDRTrainingDataset)"
                )
            chosen += self.rng.sample(others, rest)
        return chosen

    def __call__(self, examples: Sequence[DprExample]) -> dict[str, Tensor]:
        if not examples:
            raise ValueError("examples must not be empty")
        questions = [e.question for e in examples]
        positives = [passage_text(e.positives[0].title, e.positives[0].text) for e in examples]
        negatives = [self._negatives(e) for e in examples]
        passages = positives + [n[j] for j in range(self.hard_negatives) for n in negatives]
        q = self.tokenizer(
            questions,
            padding=True,
            truncation=True,
            max_length=self.query_max_length,
            return_tensors="pt",
        )
        p = self.tokenizer(
            passages,
            padding=True,
            truncation=True,
            max_length=self.passage_max_length,
            return_tensors="pt",
        )
        return {
            "query_input_ids": q["input_ids"],
            "query_attention_mask": q["attention_mask"],
            "passage_input_ids": p["input_ids"],
            "passage_attention_mask": p["attention_mask"],
            "passage_keys": torch.tensor([_key(t) for t in passages], dtype=torch.long),
        }


# ------------------------------------------------------------------------------------------------
# Model and trainer


class SVDRForTraining(nn.Module):
    """An :class:`SVDREncoder` whose ``forward`` returns the semi-parametric loss.

    Args:
        encoder (SVDREncoder): the encoder to train.
        loss_topk (int): ``k`` of the loss's sparse terms (768 as the paper). Default: 768
        temperature (float): τ. Default: 1.0
        mask_duplicates (bool): do not count copies of a question's positive as its negatives
            (the official code does). Default: True
    """

    def __init__(
        self,
        encoder: SVDREncoder,
        *,
        loss_topk: int = 768,
        temperature: float = 1.0,
        mask_duplicates: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.loss_topk = _positive_int("loss_topk", loss_topk, 0)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)
        self.mask_duplicates = mask_duplicates

    def forward(
        self,
        query_input_ids: Tensor,
        query_attention_mask: Tensor,
        passage_input_ids: Tensor,
        passage_attention_mask: Tensor,
        passage_keys: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """``{"loss": mean of the 4 terms, "terms": the 4 terms (detached)}``."""
        space = self.encoder.space
        q = self.encoder.dense(query_input_ids, query_attention_mask, tower="query")
        p = self.encoder.dense(passage_input_ids, passage_attention_mask, tower="passage")
        parts = semi_parametric_loss(
            q,
            p,
            bag_of_tokens(query_input_ids, query_attention_mask, space),
            bag_of_tokens(passage_input_ids, passage_attention_mask, space),
            k=self.loss_topk,
            temperature=self.temperature,
            passage_keys=passage_keys if self.mask_duplicates else None,
        )
        terms = torch.tensor([getattr(parts, t) for t in _TERMS], device=q.device)
        return {"loss": parts.loss, "terms": terms}


class SVDRTrainer(Trainer):
    """``Trainer`` that saves SVDR encoder folders and logs the four loss terms."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._term_sum = torch.zeros(len(_TERMS))
        self._term_count = 0

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        outputs = model(**inputs)
        if model.training:
            self._term_sum += outputs["terms"].detach().float().cpu()
            self._term_count += 1
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._term_count:
            means = self._term_sum / self._term_count
            logs.update({t: round(float(v), 4) for t, v in zip(_TERMS, means, strict=True)})
            self._term_sum.zero_()
            self._term_count = 0
        super().log(logs, start_time)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        if not self.args.should_save:
            return
        wrapper = self.accelerator.unwrap_model(self.model)
        encoder_state = None
        if state_dict is not None:
            encoder_state = {
                k[len("encoder.") :]: v for k, v in state_dict.items() if k.startswith("encoder.")
            }
        target = Path(str(output_dir or self.args.output_dir)) / MODEL_DIRNAME
        tokenizer = self.processing_class
        wrapper.encoder.save_pretrained(target, tokenizer, state_dict=encoder_state)

    def _load_from_checkpoint(
        self, resume_from_checkpoint: str, model: nn.Module | None = None
    ) -> None:
        saved = SVDREncoder.from_pretrained(Path(resume_from_checkpoint) / MODEL_DIRNAME)
        wrapper = self.accelerator.unwrap_model(model if model is not None else self.model)
        wrapper.encoder.load_state_dict(saved.state_dict())


# ------------------------------------------------------------------------------------------------
# One call


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a run produced (also written to ``output_dir/train_result.json``).

    Args:
        output_dir (str): the run folder.
        model_dir (str): the trained encoder (with its tokenizer).
        global_step (int): optimizer steps.
        initial_train_loss (float | None): the first logged loss.
        train_loss (float | None): the last logged loss.
        last_terms (dict[str, float]): the four terms at the last log.
        num_examples (int): examples trained on.
        dropped (int): examples left out (no positive or too few negatives).
        world_size (int): data-parallel processes.
    """

    output_dir: str
    model_dir: str
    global_step: int
    initial_train_loss: float | None
    train_loss: float | None
    last_terms: dict[str, float]
    num_examples: int
    dropped: int
    world_size: int

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data with its format tag and version."""
        data = {"format": RESULT_FORMAT, "format_version": RESULT_FORMAT_VERSION}
        return data | dataclasses.asdict(self)


def _examples(data: Any) -> tuple[list[DprExample], int]:
    if isinstance(data, (str, os.PathLike)):
        data = [data]
    items = list(data)
    if not items:
        raise ValueError("data must name DPR .json files or hold DprExample objects, got nothing")
    if all(isinstance(x, DprExample) for x in items):
        return items, 0
    if not all(isinstance(x, (str, os.PathLike)) for x in items):
        raise ValueError("data must be DPR .json paths or DprExample objects, not a mixture")
    examples: list[DprExample] = []
    dropped = 0
    for path in items:
        if not Path(path).is_file():
            raise FileNotFoundError(f"data: no such DPR file {path}")
        got, lost = read_dpr(path)
        examples += got
        dropped += lost
    return examples, dropped


def train(
    data: Sequence[DprExample] | Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    backbone: str | os.PathLike[str] | None = None,
    init_from: str | os.PathLike[str] | None = None,
    shared: bool = False,
    topk: int | None = 768,
    query_max_length: int = 128,
    passage_max_length: int = 256,
    hard_negatives: int = 1,
    loss_topk: int = 768,
    temperature: float = 1.0,
    mask_duplicates: bool = True,
    num_train_epochs: float = 1.0,
    max_steps: int | None = None,
    per_device_train_batch_size: int = 32,
    learning_rate: float = 2e-5,
    warmup_steps: int = 0,
    lr_scheduler_type: str = "linear",
    weight_decay: float = 0.0,
    max_grad_norm: float = 2.0,
    fp16: bool = False,
    bf16: bool = False,
    seed: int = 0,
    logging_steps: int = 10,
    save_steps: int = 1000,
    save_total_limit: int | None = 2,
    deepspeed: str | Mapping[str, Any] | None = None,
    report_to: str | list[str] = "none",
    use_cpu: bool | None = None,
    overwrite_output_dir: bool = False,
    resume_from_checkpoint: str | bool | None = None,
    training_args: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train an SVDR encoder (a new one on ``backbone``, or a saved one from ``init_from``).

    Args:
        data (Sequence[DprExample] | paths): DPR-format ``.json`` files or examples.
        output_dir (str | os.PathLike): run folder: checkpoints, ``model/`` and
            ``train_result.json``.
        backbone (str | os.PathLike | None): a local BERT-family model folder for a new encoder.
        init_from (str | os.PathLike | None): a saved SVDR encoder to continue from.
        shared (bool): one tower for queries and passages (new encoders only). Default: False
        topk (int | None): the encoder's encode-time sparsification (new encoders). Default: 768
        query_max_length (int): question truncation. Default: 128
        passage_max_length (int): passage truncation. Default: 256
        hard_negatives (int): hard negatives per question. Default: 1
        loss_topk (int): ``k`` of the loss's sparse terms. Default: 768
        temperature (float): τ of the loss. Default: 1.0
        mask_duplicates (bool): copies of a positive are not its question's negatives. Default: True
        num_train_epochs (float): epochs (paper: 80). Default: 1.0
        max_steps (int | None): optimizer steps, overriding epochs. Default: None
        per_device_train_batch_size (int): questions per device per step (paper: 32). Default: 32
        learning_rate (float): AdamW peak rate (paper: 2e-5). Default: 2e-5
        warmup_steps (int): linear warm-up steps. Default: 0
        lr_scheduler_type (str): schedule after warm-up (paper: linear). Default: "linear"
        weight_decay (float): AdamW weight decay. Default: 0.0
        max_grad_norm (float): gradient clipping (paper: 2.0). Default: 2.0
        fp16 (bool): mixed precision (paper: fp16, on GPU). Default: False
        bf16 (bool): bfloat16 mixed precision. Default: False
        seed (int): seed of the new LayerNorms, data order and negative sampling. Default: 0
        logging_steps (int): log every N steps. Default: 10
        save_steps (int): checkpoint every N steps. Default: 1000
        save_total_limit (int | None): checkpoints kept. Default: 2
        deepspeed (str | Mapping | None): a DeepSpeed config (file or dict). Default: None
        report_to (str | list[str]): Trainer loggers. Default: "none"
        use_cpu (bool | None): train on the CPU (None: when no CUDA device). Default: None
        overwrite_output_dir (bool): write into a non-empty ``output_dir``. Default: False
        resume_from_checkpoint (str | bool | None): a checkpoint folder, or True for the latest
            in ``output_dir``. Default: None
        training_args (Mapping | None): further ``TrainingArguments`` fields. Default: None

    Returns:
        TrainResult: what the run did.

    Raises:
        ValueError: on bad arguments or data (before any model is loaded).
        FileNotFoundError: on a missing data file, backbone or encoder folder.
    """
    from transformers import TrainingArguments, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    # ---- validate (cheap) before loading anything heavy -----------------------------------------
    if (backbone is None) == (init_from is None):
        raise ValueError(
            "give exactly one of backbone= (a new encoder) or init_from= (a saved one)"
        )
    source = Path(backbone if backbone is not None else init_from)  # type: ignore[arg-type]
    if not source.is_dir():
        raise FileNotFoundError(f"{'backbone' if backbone else 'init_from'}: no folder {source}")
    _positive_int("per_device_train_batch_size", per_device_train_batch_size)
    _positive_int("logging_steps", logging_steps)
    _positive_int("save_steps", save_steps)
    if max_steps is not None:
        _positive_int("max_steps", max_steps)
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir must be a directory, got the file {out}")
    checkpoint: str | None = None
    if resume_from_checkpoint is True:
        checkpoint = get_last_checkpoint(str(out)) if out.is_dir() else None
        if checkpoint is None:
            raise ValueError(f"resume_from_checkpoint=True but {out} has no checkpoint-N folder")
    elif resume_from_checkpoint:
        checkpoint = str(resume_from_checkpoint)
        if not (Path(checkpoint) / MODEL_DIRNAME / "svdr.json").is_file():
            raise FileNotFoundError(
                f"resume_from_checkpoint: {checkpoint} is not an SVDR checkpoint"
            )
    if checkpoint is None and out.is_dir() and any(out.iterdir()) and not overwrite_output_dir:
        raise ValueError(
            f"output_dir {out} is not empty; pass overwrite_output_dir=True to write into it or "
            "resume_from_checkpoint=True to continue"
        )
    examples, dropped_unreadable = _examples(data)
    dataset = SVDRTrainingDataset(examples, hard_negatives=hard_negatives)
    extra = dict(training_args or {})
    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    unknown = sorted(set(extra) - known)
    if unknown:
        raise ValueError(f"training_args: unknown TrainingArguments fields {unknown}")

    arguments: dict[str, Any] = {
        "output_dir": str(out),
        "num_train_epochs": num_train_epochs,
        "max_steps": -1 if max_steps is None else max_steps,
        "per_device_train_batch_size": per_device_train_batch_size,
        "learning_rate": learning_rate,
        "warmup_steps": warmup_steps,
        "lr_scheduler_type": lr_scheduler_type,
        "weight_decay": weight_decay,
        "max_grad_norm": max_grad_norm,
        "fp16": fp16,
        "bf16": bf16,
        "seed": seed,
        "logging_steps": logging_steps,
        "save_steps": save_steps,
        "save_total_limit": save_total_limit,
        "save_strategy": "steps",
        "deepspeed": dict(deepspeed) if isinstance(deepspeed, Mapping) else deepspeed,
        "report_to": report_to,
        "remove_unused_columns": False,
        "dataloader_drop_last": True,  # every step sees full blocks of N
        "use_cpu": (not torch.cuda.is_available()) if use_cpu is None else bool(use_cpu),
    }
    arguments.update(extra)
    args = TrainingArguments(**arguments)

    # ---- model -----------------------------------------------------------------------------------
    set_seed(seed)
    if backbone is not None:
        encoder, tokenizer = SVDREncoder.from_backbone(source, shared=shared, topk=topk)
    else:
        encoder, tokenizer = load_encoder(source)
    if len(dataset) < per_device_train_batch_size * args.world_size:
        raise ValueError(
            f"{len(dataset)} usable examples cannot fill one batch of "
            f"{per_device_train_batch_size} × {args.world_size} process(es)"
        )
    model = SVDRForTraining(
        encoder.train(),
        loss_topk=loss_topk,
        temperature=temperature,
        mask_duplicates=mask_duplicates,
    )
    collator = SVDRCollator(
        tokenizer,
        query_max_length=query_max_length,
        passage_max_length=passage_max_length,
        hard_negatives=hard_negatives,
        seed=seed + args.process_index,
    )
    trainer = SVDRTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=tokenizer,
    )
    restored = 0  # log entries a resumed run inherits from its checkpoint
    state_file = Path(checkpoint or "") / "trainer_state.json"
    if checkpoint is not None and state_file.is_file():
        restored = len(json.loads(state_file.read_text(encoding="utf-8")).get("log_history", []))
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(out))  # writes out/model (all ranks call it: ZeRO-3 gathers)
    history = [e for e in trainer.state.log_history[restored:] if "loss" in e]
    result = TrainResult(
        output_dir=str(out.resolve()),
        model_dir=str((out / MODEL_DIRNAME).resolve()),
        global_step=int(trainer.state.global_step),
        initial_train_loss=float(history[0]["loss"]) if history else None,
        train_loss=float(history[-1]["loss"]) if history else None,
        last_terms={t: float(history[-1][t]) for t in _TERMS if history and t in history[-1]},
        num_examples=len(dataset),
        dropped=dataset.dropped + dropped_unreadable,
        world_size=int(args.world_size),
    )
    if trainer.is_world_process_zero():
        atomic_write_json(out / "train_result.json", result.to_dict())
    return result
