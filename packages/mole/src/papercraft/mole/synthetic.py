"""Synthetic tasks, a character tokenizer, a tiny Llama and LoRA training for the MoLE experiment.

Three digit-string tasks share one prompt form, ``"<digits>>"``, with no task id: ``reverse``
(the digits backwards), ``sort`` (ascending) and ``shift`` (every digit + 1 mod 10). A model
that does not know the task cannot tell which answer is wanted; what tells the tasks apart is
the input distribution: ``reverse`` reads 6 digits from 0-4, ``sort`` 6 digits from 5-9 and
``shift`` 4 digits from 0-9. MoLE's gates must learn that from LoRA outputs alone.

Everything is offline and seeded: the tokenizer is built with ``tokenizers`` over a fixed
alphabet and the model from a ``LlamaConfig``.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = [
    "TASKS",
    "TaskDataset",
    "char_tokenizer",
    "encode_examples",
    "exact_match",
    "make_examples",
    "mixed_examples",
    "pretrain_base",
    "tiny_llama",
    "train_lora",
]

TASKS: tuple[str, ...] = ("reverse", "sort", "shift")
_SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
_ALPHABET = "0123456789>"
# (digit pool, length) per task: the input distribution is what identifies the task
_INPUTS: dict[str, tuple[str, int]] = {
    "reverse": ("01234", 6),
    "sort": ("56789", 6),
    "shift": ("0123456789", 4),
    "copy": ("0123456789", 5),
}


def char_tokenizer() -> Any:
    """A character-level ``PreTrainedTokenizerFast``: ``<pad>``=0, ``<s>``, ``</s>``, ``<unk>``,
    then the digits and ``>``."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate((*_SPECIALS, *_ALPHABET))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        unk_token="<unk>",
    )  # fmt: skip


def _answer(task: str, digits: str) -> str:
    if task == "reverse":
        return digits[::-1]
    if task == "sort":
        return "".join(sorted(digits))
    if task == "shift":
        return "".join(str((int(d) + 1) % 10) for d in digits)
    if task == "copy":
        return digits
    raise ValueError(f"task must be one of {(*TASKS, 'copy')}, got {task!r}")


def make_examples(task: str, n: int, *, seed: int) -> list[tuple[str, str]]:
    """``n`` (prompt, answer) pairs of one task, e.g. ``("031244>", "442130")`` for reverse.

    Args:
        task (str): ``"reverse"``, ``"sort"``, ``"shift"`` or ``"copy"`` (the base's format
            task: the answer repeats the 5 input digits).
        n (int): number of examples (>= 1).
        seed (int): seed of the digits.

    Returns:
        list[tuple[str, str]]: the pairs.

    Raises:
        ValueError: on an unknown task or ``n < 1``.
    """
    if task not in _INPUTS:
        raise ValueError(f"task must be one of {(*TASKS, 'copy')}, got {task!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = random.Random(f"{task}-{seed}")
    pool, length = _INPUTS[task]
    pairs = []
    for _ in range(n):
        digits = "".join(rng.choice(pool) for _ in range(length))
        pairs.append((digits + ">", _answer(task, digits)))
    return pairs


def mixed_examples(n_per_task: int, *, seed: int) -> list[tuple[str, str, str]]:
    """``(task, prompt, answer)`` triples of every task, shuffled (the task is not in the prompt)."""
    rows = [(t, p, a) for t in TASKS for p, a in make_examples(t, n_per_task, seed=seed)]
    random.Random(seed).shuffle(rows)
    return rows


def encode_examples(
    tokenizer: Any, examples: Sequence[tuple[str, str]], *, seq_len: int
) -> dict[str, torch.Tensor]:
    """Encode ``<s> prompt answer </s>``, right-padded to exactly ``seq_len`` tokens.

    ``labels`` supervise the answer and ``</s>`` only (``-100`` on ``<s>``, the prompt and the
    padding).

    Args:
        tokenizer (Any): from :func:`char_tokenizer` (or any tokenizer with bos/eos/pad).
        examples (Sequence[tuple[str, str]]): (prompt, answer) pairs.
        seq_len (int): tokens per row.

    Returns:
        dict[str, torch.Tensor]: ``input_ids``, ``attention_mask``, ``labels``, ``(n, seq_len)``.

    Raises:
        ValueError: if an example does not fit in ``seq_len`` or ``examples`` is empty.
    """
    if not examples:
        raise ValueError("examples is empty")
    rows_ids, rows_labels = [], []
    for prompt, answer in examples:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a = tokenizer(answer, add_special_tokens=False)["input_ids"]
        ids = [tokenizer.bos_token_id, *p, *a, tokenizer.eos_token_id]
        if len(ids) > seq_len:
            raise ValueError(
                f"seq_len={seq_len} is too short for {prompt!r} → {answer!r} ({len(ids)} tokens)"
            )
        labels = [-100] * (1 + len(p)) + [*a, tokenizer.eos_token_id]
        pad = seq_len - len(ids)
        rows_ids.append(ids + [tokenizer.pad_token_id] * pad)
        rows_labels.append(labels + [-100] * pad)
    input_ids = torch.tensor(rows_ids)
    return {
        "input_ids": input_ids,
        "attention_mask": (input_ids != tokenizer.pad_token_id).long(),
        "labels": torch.tensor(rows_labels),
    }


class TaskDataset(Dataset[dict[str, torch.Tensor]]):
    """Rows of an :func:`encode_examples` batch, as a map-style dataset."""

    def __init__(self, encoded: dict[str, torch.Tensor]) -> None:
        self.encoded = encoded

    def __len__(self) -> int:
        return int(self.encoded["input_ids"].shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.encoded.items()}


def tiny_llama(tokenizer: Any, *, hidden_size: int = 96, num_layers: int = 2, seed: int = 0) -> Any:
    """A ``LlamaForCausalLM`` built from a config (4 heads) with the tokenizer's special ids."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=4,
        max_position_embeddings=64, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def _fit(model: nn.Module, encoded: dict[str, torch.Tensor], *, steps: int, lr: float,
         batch_size: int, seed: int) -> list[float]:  # fmt: skip
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    n = encoded["input_ids"].shape[0]
    losses = []
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, n, (batch_size,), generator=gen)
        loss = model(**{k: v[idx] for k, v in encoded.items()}).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def pretrain_base(
    model: nn.Module, *, tokenizer: Any, seq_len: int, steps: int = 400, seed: int = 0,
    quick: bool = False,
) -> list[float]:  # fmt: skip
    """Fully train the base on the ``copy`` task, so it knows the answer format (digits, then
    ``</s>``) but none of the three tasks. Returns the losses."""
    encoded = encode_examples(tokenizer, make_examples("copy", 4000, seed=seed), seq_len=seq_len)
    return _fit(model, encoded, steps=20 if quick else steps, lr=3e-3, batch_size=64, seed=seed)


def train_lora(
    base: nn.Module, examples: Sequence[tuple[str, str]], *, tokenizer: Any, seq_len: int,
    steps: int = 600, rank: int = 32, lr: float = 3e-3, seed: int = 0, quick: bool = False,
) -> Any:  # fmt: skip
    """Train one peft LoRA (all attention and MLP projections) on a copy of ``base``.

    Returns:
        Any: the ``PeftModel`` (save it with ``save_pretrained``).
    """
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )  # fmt: skip
    model = get_peft_model(copy.deepcopy(base), config)
    encoded = encode_examples(tokenizer, examples, seq_len=seq_len)
    _fit(model, encoded, steps=10 if quick else steps, lr=lr, batch_size=64, seed=seed)
    return model


@torch.no_grad()
def exact_match(
    model: Any, tokenizer: Any, examples: Sequence[tuple[str, str]], *, seq_len: int,
    batch_size: int = 128,
) -> float:  # fmt: skip
    """Teacher-forced exact match: the share of examples whose every answer token and ``</s>``
    is the argmax prediction given the gold prefix.

    Args:
        model (Any): called as ``model(input_ids=..., attention_mask=...)``, returning ``.logits``.
        tokenizer (Any): the tokenizer of :func:`encode_examples`.
        examples (Sequence[tuple[str, str]]): (prompt, answer) pairs.
        seq_len (int): padding length (a flatten-gate MoLE needs its own ``seq_len``).
        batch_size (int): rows per forward. Default: 128.

    Returns:
        float: in ``[0, 1]``.
    """
    encoded = encode_examples(tokenizer, examples, seq_len=seq_len)
    correct = 0
    for start in range(0, encoded["input_ids"].shape[0], batch_size):
        ids = encoded["input_ids"][start : start + batch_size]
        mask = encoded["attention_mask"][start : start + batch_size]
        labels = encoded["labels"][start : start + batch_size]
        logits = model(input_ids=ids, attention_mask=mask).logits
        pred = logits[:, :-1].argmax(-1)
        target = labels[:, 1:]
        ok = (pred == target) | (target == -100)
        correct += int(ok.all(dim=1).sum())
    return correct / len(examples)
