"""Further tuning of an APE position table with PoSE-style position skipping (E5-Base-4k).

LongEmbed (arXiv 2404.12096, further tuning on top of PI) extends E5-Base from 512 to 4,096
positions: the table is interpolated (:func:`~papercraft.longembed.extension.extend` with ``"pi"``,
``E_t[i·s] = E_o[i]``, ``s = L_t / L_o``), every weight of the encoder stays frozen and, inside the
position table, only the NEW rows are trained — the original rows, at the multiples of ``s``, keep
their values bit for bit. Inputs of at most ``L_o`` tokens read exactly those rows (the ``pi``
short-input rule), so the tuned model reproduces the original one on short inputs.

Training inputs stay short (PoSE, Zhu et al. 2023, arXiv 2309.10400): each one holds at most
``L_o`` tokens and reads the positions ``u, u+1, …, u+n−1`` with ``u ~ U{0, …, L_t − L_o}``
drawn per text from a seeded generator (the paper: ``u..u+511``), so every row of the long table
is visited without ever encoding a long input. :class:`PoSECollator` tokenizes the (query,
passage) pairs and writes those ``position_ids``; the extended model's forward pre-hook fills
``position_ids`` only when none are given, so explicit ones pass through untouched (and skip the
``×s`` rule for short inputs, which is what PoSE wants).

Objective: contrastive InfoNCE over (query, passage) pairs with in-batch negatives,
``−log softmax(q_i·p_j / τ)_{j=i}`` on L2-normalised pooled embeddings (:func:`info_nce_loss`;
``τ = 0.01`` as in E5). The loop is ``transformers.Trainer`` (:class:`_PositionTrainer` overrides
``compute_loss``); a gradient hook zeroes the frozen rows' gradient, decoupled weight decay is
refused (it would shrink frozen rows that get no gradient), and after training the frozen rows
are checked to be bit-identical. The model is saved with ``save_pretrained`` (safetensors; the
config keeps ``longembed``) so :func:`~papercraft.longembed.extension.load_extended` reloads it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
from torch import Tensor, nn

from papercraft.core.io import atomic_directory, atomic_write_json
from papercraft.longembed.embedder import pool as pool_states
from papercraft.longembed.extension import _position_table as find_position_table
from papercraft.longembed.extension import (
    extend,
    extension_info,
    original_length,
    position_kind,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "POOLINGS",
    "RESULT_FORMAT",
    "RESULT_FORMAT_VERSION",
    "RESULT_NAME",
    "PoSECollator",
    "TuneResult",
    "info_nce_loss",
    "pool",
    "position_rows",
    "tune_positions",
]

POOLINGS = ("mean", "cls")
RESULT_FORMAT = "papercraft.longembed.tuning_result"
RESULT_FORMAT_VERSION = 1
#: File written next to the model in ``output_dir``.
RESULT_NAME = "longembed_tuning.json"
_SIDES = ("query", "passage")


# ------------------------------------------------------------------------------------------------
# Pieces: pooling, loss, rows, collator


def pool(hidden: Tensor, attention_mask: Tensor, pooling: str = "mean") -> Tensor:
    """Pool token states into one L2-normalised float32 vector per input.

    Args:
        hidden (Tensor): ``(B, T, d)`` last hidden states.
        attention_mask (Tensor): ``(B, T)``, 1 for real tokens.
        pooling (str): ``"mean"`` over real tokens (E5, GTE) or ``"cls"`` (the first token,
            BGE). Default: "mean"

    Returns:
        Tensor: ``(B, d)`` unit vectors.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
    return nn.functional.normalize(pool_states(hidden, attention_mask, pooling), dim=-1)


def info_nce_loss(query: Tensor, passage: Tensor, temperature: float = 0.01) -> Tensor:
    """InfoNCE with in-batch negatives: ``mean_i −log softmax_j(q_i·p_j / τ)[i]``.

    Passage ``i`` is the positive of query ``i``; every other passage of the batch is a negative
    (extra passages beyond the queries, e.g. hard negatives, are negatives of every query).

    Args:
        query (Tensor): ``(B, d)`` query embeddings (L2-normalised for cosine scores).
        passage (Tensor): ``(P, d)`` passage embeddings, ``P >= B``.
        temperature (float): ``τ > 0`` (E5: 0.01). Default: 0.01

    Returns:
        Tensor: the scalar mean loss.
    """
    if query.dim() != 2 or passage.dim() != 2:
        raise ValueError(
            f"query and passage must be 2-D (batch, dim), got {tuple(query.shape)} and "
            f"{tuple(passage.shape)}"
        )
    if query.shape[1] != passage.shape[1] or passage.shape[0] < query.shape[0]:
        raise ValueError(
            f"need passage rows >= query rows and equal dims, got query {tuple(query.shape)}, "
            f"passage {tuple(passage.shape)}"
        )
    _check_temperature(temperature)
    scores = query.float() @ passage.float().T / temperature  # (B, P)
    targets = torch.arange(query.shape[0], device=query.device)
    return nn.functional.cross_entropy(scores, targets)


def _position_table(model: nn.Module) -> tuple[str, nn.Embedding]:
    table = find_position_table(model)
    if table is None:
        raise ValueError(
            f"{type(model).__name__} has no learned position table (embeddings.position_embeddings);"
            " further tuning applies to absolute-position encoders (BERT family)"
        )
    for name, module in model.named_modules():
        if module is table:
            return f"{name}.weight", table
    raise ValueError("the position table is not a submodule of the model")  # pragma: no cover


def position_rows(model: nn.Module) -> tuple[Tensor, Tensor]:
    """The frozen and the trainable rows of a ``pi``-extended position table.

    Frozen: RoBERTa's offset rows (``0 … offset−1``, if any) and the original rows, at
    ``offset + i·s`` for ``i < L_o``. Trainable: every other row (``L_t − L_o`` of them).

    Args:
        model (PreTrainedModel): a model extended with ``extend(model, L_t, "pi")``.

    Returns:
        tuple[Tensor, Tensor]: sorted ``int64`` row indices ``(frozen, trainable)``.
    """
    info = extension_info(model)
    if info is None or info.method != "pi" or info.position != "absolute":
        raise ValueError(
            f"model must be extended with extend(model, target_length, 'pi') on an absolute-"
            f"position encoder, got {info}"
        )
    _, table = _position_table(model)
    offset = int(table.num_embeddings) - info.target_length
    scale = info.target_length // info.original_length
    if offset < 0 or info.target_length % info.original_length:
        raise ValueError(
            f"position table of {table.num_embeddings} rows does not match the extension {info}"
        )
    rows = torch.arange(table.num_embeddings)
    original = (rows >= offset) & ((rows - offset) % scale == 0)
    frozen = (rows < offset) | original
    return rows[frozen], rows[~frozen]


def _text_pair(feature: Any) -> tuple[str, str]:
    if isinstance(feature, Mapping):
        pair = (feature.get("query"), feature.get("passage"))
    elif isinstance(feature, Sequence) and not isinstance(feature, str) and len(feature) == 2:
        pair = (feature[0], feature[1])
    else:
        pair = (None, None)
    if not all(isinstance(text, str) for text in pair):
        raise ValueError(
            "each feature must be a (query, passage) pair of strings or a mapping with 'query' "
            f"and 'passage' strings, got {feature!r}"
        )
    return pair  # type: ignore[return-value]


class PoSECollator:
    """Tokenize (query, passage) pairs and give each text PoSE-skipped position ids.

    Each text is truncated to ``original_length`` tokens (specials included) and reads positions
    ``offset + u + j`` for ``j = 0 … width−1``, ``u ~ U{0, …, L_t − L_o}`` drawn per text from a
    ``torch.Generator`` seeded with ``seed``; padding positions continue the run (they stay
    inside the table and are masked out). The same seed gives the same draws; in DataLoader worker
    processes each worker reseeds with ``(seed, worker id)``.

    Args:
        tokenizer (PreTrainedTokenizerBase): the model's tokenizer (needs a pad token).
        original_length (int): ``L_o``, the longest training input.
        target_length (int): ``L_t``, the rows of the extended table (without offset).
        seed (int): seed of the start draws. Default: 0
        query_prefix (str): prepended to every query (E5: ``"query: "``). Default: ""
        passage_prefix (str): prepended to every passage (E5: ``"passage: "``). Default: ""
        position_offset (int): first position row (RoBERTa: ``pad_token_id + 1``). Default: 0
        query_positions (str): ``"skip"`` (queries get PoSE positions too) or ``"original"``
            (queries read the original rows ``p·s``, as short queries do at inference).
            Default: "skip"

    Returns (``__call__``): a dict of ``(B, T)`` int64 tensors ``query_input_ids``,
    ``query_attention_mask``, ``query_position_ids`` and the same three for ``passage_``.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        original_length: int,
        target_length: int,
        seed: int = 0,
        query_prefix: str = "",
        passage_prefix: str = "",
        position_offset: int = 0,
        query_positions: Literal["skip", "original"] = "skip",
    ) -> None:
        _check_int("original_length", original_length, minimum=2)
        _check_int("target_length", target_length, minimum=original_length + 1)
        _check_int("seed", seed, minimum=0)
        _check_int("position_offset", position_offset, minimum=0)
        if query_positions not in ("skip", "original"):
            raise ValueError(
                f"query_positions must be 'skip' or 'original', got {query_positions!r}"
            )
        if query_positions == "original" and target_length % original_length:
            raise ValueError(
                f"query_positions='original' needs target_length a multiple of original_length "
                f"{original_length}, got {target_length}"
            )
        for name, value in (("query_prefix", query_prefix), ("passage_prefix", passage_prefix)):
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string, got {value!r}")
        if getattr(tokenizer, "pad_token_id", None) is None:
            raise ValueError("tokenizer must define a pad token (batches are padded)")
        self.tokenizer = tokenizer
        self.original_length = original_length
        self.target_length = target_length
        self.seed = seed
        self.prefixes = {"query": query_prefix, "passage": passage_prefix}
        self.position_offset = position_offset
        self.query_positions = query_positions
        self.generator = torch.Generator().manual_seed(seed)
        self._worker: int | None = None

    @property
    def max_start(self) -> int:
        """The largest start ``u``: ``L_t − L_o``."""
        return self.target_length - self.original_length

    def draw_starts(self, n: int) -> Tensor:
        """Draw ``n`` starts ``u ~ U{0, …, L_t − L_o}`` (int64) from the collator's generator."""
        worker = torch.utils.data.get_worker_info()
        if worker is not None and self._worker != worker.id:
            self._worker = worker.id
            self.generator.manual_seed(self.seed * 1_000_003 + worker.id + 1)
        return torch.randint(0, self.max_start + 1, (n,), generator=self.generator)

    def _encode(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        batch = self.tokenizer(
            texts,
            max_length=self.original_length,
            truncation=True,
            padding="longest",
            return_tensors="pt",
        )
        return batch["input_ids"].long(), batch["attention_mask"].long()

    def __call__(self, features: Sequence[Any]) -> dict[str, Tensor]:
        if len(features) == 0:
            raise ValueError("features must hold at least one (query, passage) pair")
        pairs = [_text_pair(feature) for feature in features]
        out: dict[str, Tensor] = {}
        for index, side in enumerate(_SIDES):
            texts = [self.prefixes[side] + pair[index] for pair in pairs]
            input_ids, attention_mask = self._encode(texts)
            width = input_ids.shape[1]
            steps = torch.arange(width).unsqueeze(0)  # (1, T)
            if side == "query" and self.query_positions == "original":
                scale = self.target_length // self.original_length
                positions = (steps * scale).expand(len(pairs), -1)
            else:
                positions = self.draw_starts(len(pairs)).unsqueeze(1) + steps  # (B, T)
            out[f"{side}_input_ids"] = input_ids
            out[f"{side}_attention_mask"] = attention_mask
            out[f"{side}_position_ids"] = (positions + self.position_offset).contiguous()
        return out


# ------------------------------------------------------------------------------------------------
# Trainer


class _PairDataset(torch.utils.data.Dataset[dict[str, str]]):
    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = [(str(q), str(p)) for q, p in pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, str]:
        query, passage = self.pairs[index]
        return {"query": query, "passage": passage}


def _encode_side(model: nn.Module, inputs: Mapping[str, Tensor], side: str, pooling: str) -> Tensor:
    mask = inputs[f"{side}_attention_mask"]
    output = model(
        input_ids=inputs[f"{side}_input_ids"],
        attention_mask=mask,
        position_ids=inputs[f"{side}_position_ids"],
    )
    hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
    return pool(hidden, mask, pooling)


def _make_trainer_class() -> type:
    from transformers import Trainer

    class _PositionTrainer(Trainer):
        """``Trainer`` whose loss is InfoNCE over the collator's query/passage batches."""

        loss_is_scaled_for_ga = False  # a per-batch mean: Trainer divides by the GA steps

        def __init__(self, *args: Any, temperature: float, pooling: str, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.temperature = temperature
            self.pooling = pooling
            self.batch_losses: list[Tensor] = []

        def compute_loss(
            self,
            model: nn.Module,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            query = _encode_side(model, inputs, "query", self.pooling)
            passage = _encode_side(model, inputs, "passage", self.pooling)
            loss = info_nce_loss(query, passage, self.temperature)
            if model.training:
                self.batch_losses.append(loss.detach())
            return (loss, {"query": query, "passage": passage}) if return_outputs else loss

    return _PositionTrainer


# ------------------------------------------------------------------------------------------------
# Freezing


def _freeze_all_but_table(model: nn.Module, table_name: str) -> dict[str, bool]:
    """Set ``requires_grad`` on the table only; return the previous flags by name."""
    previous = {name: p.requires_grad for name, p in model.named_parameters()}
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name == table_name)
    return previous


def _check_trainable(model: nn.Module, table: nn.Embedding, table_name: str) -> None:
    """Raise unless the position table's weight is the one trainable parameter (and unshared)."""
    trainable = [
        name
        for name, p in model.named_parameters(remove_duplicate=False)
        if p.requires_grad and (p is not table.weight or name != table_name)
    ]
    if trainable or not table.weight.requires_grad:
        raise ValueError(
            f"further tuning trains only {table_name} (its new rows); trainable parameters "
            f"besides it: {trainable or 'none'}, table trainable: {table.weight.requires_grad}. "
            "A parameter shared with the position table, or one unfrozen afterwards, breaks the "
            "guarantee that everything else stays bit-identical"
        )


def _zero_rows_hook(frozen: Tensor) -> Any:
    def hook(grad: Tensor) -> Tensor:
        return grad.index_fill(0, frozen.to(grad.device), 0.0)

    return hook


# ------------------------------------------------------------------------------------------------
# Public entry point


@dataclasses.dataclass(frozen=True)
class TuneResult:
    """What :func:`tune_positions` did (also written to ``output_dir/longembed_tuning.json``).

    Args:
        output_dir (str): the saved model (``load_extended(output_dir)``) and tokenizer.
        losses (list[float]): InfoNCE loss of every training batch, in order.
        trainable_parameters (int): trained weights: ``(L_t − L_o) × d`` (the new rows).
        frozen_rows (int): rows kept bit-identical (original rows plus offset rows).
        trained_rows (int): ``L_t − L_o``.
        original_length (int): ``L_o``.
        target_length (int): ``L_t``.
        global_step (int): optimizer steps done.
        temperature (float): InfoNCE ``τ``.
        pooling (str): ``"mean"`` or ``"cls"``.
    """

    output_dir: str
    losses: list[float]
    trainable_parameters: int
    frozen_rows: int
    trained_rows: int
    original_length: int
    target_length: int
    global_step: int
    temperature: float
    pooling: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with its format tag and version."""
        return {
            "format": RESULT_FORMAT,
            "format_version": RESULT_FORMAT_VERSION,
            **dataclasses.asdict(self),
        }


def tune_positions(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    *,
    target_length: int,
    output_dir: str | os.PathLike[str],
    max_steps: int = 1000,
    learning_rate: float = 1e-4,
    batch_size: int = 32,
    temperature: float = 0.01,
    seed: int = 0,
    pooling: str = "mean",
    query_prefix: str = "",
    passage_prefix: str = "",
    query_positions: Literal["skip", "original"] = "skip",
    overwrite: bool = False,
    training_args: Mapping[str, Any] | None = None,
) -> TuneResult:
    """Train the new rows of a PI-extended position table with PoSE skipping and InfoNCE.

    The model is extended in place with ``extend(model, target_length, "pi")`` unless it already
    is (with ``pi`` to the same ``target_length``; its ``attention_scaling`` choice is kept).
    Every parameter except the position table is frozen, and a gradient hook zeroes the rows
    that must not move (:func:`position_rows`). Afterwards the model is in eval mode with its
    ``requires_grad`` flags restored, and is saved with ``save_pretrained`` (safetensors) plus the
    tokenizer and :data:`RESULT_NAME` into ``output_dir`` (written atomically).

    Args:
        model (PreTrainedModel): an absolute-position encoder (``AutoModel``), unextended or
            ``pi``-extended to ``target_length``.
        tokenizer (PreTrainedTokenizerBase): its tokenizer.
        pairs (Sequence[tuple[str, str]]): (query, passage) training pairs, at least
            ``batch_size``; passages longer than ``L_o`` tokens are truncated.
        target_length (int): ``L_t``, a multiple of ``L_o`` (E5-Base-4k: 4096).
        output_dir (str | os.PathLike[str]): where the tuned model goes.
        max_steps (int): optimizer steps. Default: 1000
        learning_rate (float): peak AdamW learning rate (linear decay, 10% warm-up). Default: 1e-4
        batch_size (int): pairs per device batch (in-batch negatives: ``batch_size − 1`` per
            query), ``>= 2``. Default: 32
        temperature (float): InfoNCE ``τ`` (E5 uses 0.01; 0.01–0.05 is the usual range).
            Default: 0.01
        seed (int): seed of the position starts, data order and dropout. Default: 0
        pooling (str): ``"mean"`` (E5) or ``"cls"`` (BGE). Default: "mean"
        query_prefix (str): prepended to queries (E5: ``"query: "``). Default: ""
        passage_prefix (str): prepended to passages (E5: ``"passage: "``). Default: ""
        query_positions (str): ``"skip"`` or ``"original"``, see :class:`PoSECollator`.
            Default: "skip"
        overwrite (bool): replace a non-empty ``output_dir``. Default: False
        training_args (Mapping[str, Any] | None): further ``TrainingArguments`` fields, which
            win over the above (e.g. ``bf16``, ``gradient_accumulation_steps``,
            ``disable_tqdm``); a nonzero ``weight_decay`` is refused. Default: None

    Returns:
        TuneResult: losses, trainable parameter count and the output path.

    Raises:
        ValueError: on a bad argument (named in the message), a model that is not an
            absolute-position encoder, or parameters other than the table left trainable.
        RuntimeError: if a frozen row moved during training (nothing is saved then).
    """
    from transformers import TrainingArguments

    # ---- checks (cheap, before the model is touched) ------------------------------------------
    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise ValueError(
            f"model must be a transformers PreTrainedModel, got {type(model).__name__}"
        )
    if not callable(tokenizer) or getattr(tokenizer, "pad_token_id", None) is None:
        raise ValueError("tokenizer must be a transformers tokenizer with a pad token")
    _check_int("max_steps", max_steps, minimum=1)
    _check_int("batch_size", batch_size, minimum=2)
    _check_int("seed", seed, minimum=0)
    if not isinstance(learning_rate, (int, float)) or not 0 < learning_rate < math.inf:
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
    _check_temperature(temperature)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
    given: Any = pairs
    if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
        raise ValueError(f"pairs must be a sequence of (query, passage) pairs, got {type(given)}")
    for feature in pairs:
        _text_pair(feature)
    if len(pairs) < batch_size:
        raise ValueError(
            f"pairs must hold at least batch_size={batch_size} pairs (full batches of in-batch "
            f"negatives), got {len(pairs)}"
        )
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir must be a directory, got the file {out}")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"output_dir {out} is not empty; pass overwrite=True to replace it")
    extra = dict(training_args or {})
    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    unknown = sorted(set(extra) - known)
    if unknown:
        raise ValueError(f"training_args: unknown TrainingArguments fields {unknown}")
    if extra.get("weight_decay", 0.0):
        raise ValueError(
            f"training_args weight_decay must be 0, got {extra['weight_decay']!r}: AdamW's "
            "decoupled decay would shrink the frozen original rows, which get no gradient"
        )
    info = extension_info(model)
    if info is None:
        if position_kind(model) != "absolute":
            raise ValueError(
                f"further tuning applies to absolute-position encoders; "
                f"{type(model).__name__} has {position_kind(model)} positions"
            )
        found = original_length(model)
        if isinstance(target_length, bool) or not isinstance(target_length, int):
            raise ValueError(f"target_length must be an int, got {target_length!r}")
        if target_length <= found or target_length % found:
            raise ValueError(
                f"target_length must be a multiple of the model's original length {found} "
                f"above it, got {target_length}"
            )
    elif info.method != "pi" or info.position != "absolute" or info.target_length != target_length:
        raise ValueError(
            f"model is already extended ({info.method}, target_length {info.target_length}); "
            f"tuning needs an unextended model or one extended with 'pi' to {target_length}"
        )

    # ---- extend, freeze, hook ----------------------------------------------------------------
    if info is None:
        extend(model, target_length, "pi")
        info = extension_info(model)
        assert info is not None
    table_name, table = _position_table(model)
    frozen, trainable = position_rows(model)
    offset = int(table.num_embeddings) - info.target_length
    previous = _freeze_all_but_table(model, table_name)
    handle = None
    try:
        _check_trainable(model, table, table_name)
        snapshot = table.weight.detach()[frozen].clone()
        handle = table.weight.register_hook(_zero_rows_hook(frozen))
        collator = PoSECollator(
            tokenizer,
            original_length=info.original_length,
            target_length=info.target_length,
            seed=seed,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            position_offset=offset,
            query_positions=query_positions,
        )
        with tempfile.TemporaryDirectory(prefix="longembed-tuning-") as scratch:
            arguments: dict[str, Any] = {
                "output_dir": scratch,
                "max_steps": max_steps,
                "per_device_train_batch_size": batch_size,
                "learning_rate": float(learning_rate),
                "weight_decay": 0.0,
                "warmup_steps": 0.1,
                "lr_scheduler_type": "linear",
                "seed": seed,
                "remove_unused_columns": False,
                "dataloader_drop_last": True,
                "save_strategy": "no",
                "logging_steps": max(1, max_steps // 20),
                "report_to": "none",
                "use_cpu": not torch.cuda.is_available(),
            }
            arguments.update(extra)
            trainer = _make_trainer_class()(
                model=model,
                args=TrainingArguments(**arguments),
                train_dataset=_PairDataset([_text_pair(feature) for feature in pairs]),
                data_collator=collator,
                temperature=float(temperature),
                pooling=pooling,
            )
            trainer.train()
        moved = table.weight.detach()[frozen].to(snapshot.device)
        if not torch.equal(moved, snapshot):
            raise RuntimeError(
                "frozen position rows changed during training (an optimizer with weight decay "
                "or a custom one that updates zero-gradient rows?); nothing was saved"
            )
    finally:
        if handle is not None:
            handle.remove()
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(previous.get(name, True))
        model.eval()

    losses = (
        torch.stack(trainer.batch_losses).float().cpu().tolist() if trainer.batch_losses else []
    )
    result = TuneResult(
        output_dir=str(out.resolve()),
        losses=[float(x) for x in losses],
        trainable_parameters=int(trainable.numel()) * int(table.embedding_dim),
        frozen_rows=int(frozen.numel()),
        trained_rows=int(trainable.numel()),
        original_length=info.original_length,
        target_length=info.target_length,
        global_step=int(trainer.state.global_step),
        temperature=float(temperature),
        pooling=pooling,
    )
    if trainer.is_world_process_zero():
        with atomic_directory(out, overwrite=True) as tmp:
            cast(Any, model).save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            atomic_write_json(tmp / RESULT_NAME, result.to_dict())
    return result


# ------------------------------------------------------------------------------------------------
# Checks


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_temperature(temperature: Any) -> None:
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 < temperature < math.inf
    ):
        raise ValueError(
            f"temperature must be a positive number (E5: 0.01, usual 0.01–0.05), got {temperature!r}"
        )
