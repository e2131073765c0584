"""A laptop-scale task where which demonstrations are chosen, and their order, decide the answer.

**The task.** Each query is ``"k07 ->"`` and its answer is the colour of key ``k07`` (one of four
options). The pool of demonstrations (``"k07 -> red"``) holds, for every key, some examples
with the key's true colour and some *noisy* ones with a wrong colour — a noisy training set.
Test queries use the same keys.

**The model.** A small causal LM (a tiny Llama) is trained on freshly randomised prompts to do
in-context lookup: it answers with the colour of the **last** demonstration whose key matches
the query, and guesses uniformly when none matches. It knows no key's colour itself, so
everything it gets right comes from the selected demonstrations, and their order matters:
among matching demonstrations with different colours, the one nearest the query wins.

**What each selector can do.** Random demonstrations rarely contain the key (≈ chance, 25%).
BM25 and plain dense similarity find demonstrations with the key but cannot tell true from
noisy ones, nor which should come last (≈ the share of true examples). Se²'s LLM feedback
prefers candidates that make the model answer correctly, so its retriever learns which
demonstrations are trustworthy and the beam search places them next to the query.

Everything is offline and seeded: a word-level tokenizer built with ``tokenizers``, a
``LlamaForCausalLM`` from a config, and a plain AdamW loop on CPU.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "LABELS",
    "SyntheticExample",
    "SyntheticTask",
    "make_task",
    "tiny_lm",
    "train_lm",
    "word_tokenizer",
]

#: the answer options (with the leading space they follow ``->`` with).
LABELS: tuple[str, ...] = ("red", "green", "blue", "gold")
_OPTIONS = tuple(f" {label}" for label in LABELS)


@dataclass(frozen=True)
class SyntheticExample:
    """One example (the fields :class:`papercraft.se2.scoring.ExampleLike` needs).

    Args:
        id (str): unique id.
        question (str): ``"k07 ->"``.
        answer (str): ``" red"``.
        label (int | None): index of the answer in ``options``.
        options (tuple[str, ...]): the four colours.
        noisy (bool): a pool example whose colour is not the key's true colour.
    """

    id: str
    question: str
    answer: str
    label: int | None
    options: tuple[str, ...] = _OPTIONS
    noisy: bool = False

    @property
    def key(self) -> str:
        """str: the key token."""
        return self.question.split()[0]


@dataclass(frozen=True)
class SyntheticTask:
    """The pool, the test queries and the true colour of every key."""

    pool: tuple[SyntheticExample, ...]
    train: tuple[SyntheticExample, ...]
    tests: tuple[SyntheticExample, ...]
    truth: dict[str, int]
    keys: tuple[str, ...]


def make_task(
    *,
    n_keys: int = 24,
    true_per_key: int = 2,
    noisy_per_key: int = 2,
    tests_per_key: int = 4,
    seed: int = 0,
) -> SyntheticTask:
    """Build the pool and test set (see the module docstring).

    Args:
        n_keys (int): distinct keys (``k00`` …). Default: 24.
        true_per_key (int): pool examples with the true colour, per key. Default: 2.
        noisy_per_key (int): pool examples with a wrong colour, per key. Default: 2.
        tests_per_key (int): training queries and test queries per key (clean labels).
            Default: 4.
        seed (int): seeds the colours and the order. Default: 0.
    """
    for name, value in (("n_keys", n_keys), ("true_per_key", true_per_key),
                        ("tests_per_key", tests_per_key)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not noisy_per_key >= 0 or n_keys > 100:
        raise ValueError("noisy_per_key must be >= 0 and n_keys <= 100")
    rng = random.Random(seed)
    keys = tuple(f"k{i:02d}" for i in range(n_keys))
    truth = {key: rng.randrange(len(LABELS)) for key in keys}
    rows: list[tuple[str, int, bool]] = []
    for key in keys:
        rows += [(key, truth[key], False)] * true_per_key
        for _ in range(noisy_per_key):
            wrong = rng.choice([c for c in range(len(LABELS)) if c != truth[key]])
            rows.append((key, wrong, True))
    rng.shuffle(rows)
    pool = tuple(SyntheticExample(f"pool-{i}", k, _OPTIONS[c], c, noisy=noisy)
                 for i, (k, c, noisy) in enumerate(rows))  # fmt: skip
    splits = []
    for name in ("train", "test"):
        split_keys = [k for k in keys for _ in range(tests_per_key)]
        rng.shuffle(split_keys)
        splits.append(tuple(SyntheticExample(f"{name}-{i}", k, _OPTIONS[truth[k]], truth[k])
                            for i, k in enumerate(split_keys)))  # fmt: skip
    return SyntheticTask(pool, splits[0], splits[1], truth, keys)


def word_tokenizer(n_keys: int = 100) -> Any:
    """A word-level ``PreTrainedTokenizerFast`` over keys, colours, ``->`` and ``\\n``."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "<s>", "\n", "->", *LABELS, *(f"k{i:02d}" for i in range(n_keys))]
    backend = Tokenizer(
        models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>")
    )
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(" +"), behavior="removed")
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<s>", eos_token="\n")  # fmt: skip


def tiny_lm(tokenizer: Any, *, hidden_size: int = 96, num_layers: int = 2, seed: int = 0) -> Any:
    """A randomly initialised tiny ``LlamaForCausalLM`` for the word tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size,
                         intermediate_size=2 * hidden_size, num_hidden_layers=num_layers,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    return LlamaForCausalLM(config)


def _training_prompt(
    rng: random.Random, keys: list[str], max_demos: int, match_prob: float = 0.5
) -> tuple[str, str]:
    query = rng.choice(keys)
    demos = []
    for _ in range(rng.randint(0, max_demos)):
        key = query if rng.random() < match_prob else rng.choice(keys)
        demos.append((key, rng.choice(LABELS)))
    matches = [label for key, label in demos if key == query]
    target = matches[-1] if matches else rng.choice(LABELS)
    prompt = "".join(f"{key} {label} \n " for key, label in demos) + query
    return prompt, f" {target}"


def train_lm(
    model: Any,
    tokenizer: Any,
    *,
    steps: int = 1500,
    batch_size: int = 64,
    lr: float = 3e-3,
    max_demos: int = 3,
    match_prob: float = 0.5,
    n_keys: int = 100,
    seed: int = 0,
) -> list[float]:
    """Teach the model in-context lookup on random prompts (loss on the answer token only).

    Every prompt draws fresh colours for its keys, so the model cannot memorise any task's
    answers: it can only read them from the demonstrations.

    Returns:
        list[float]: the loss of every step.
    """
    rng = random.Random(seed)
    keys = [f"k{i:02d}" for i in range(n_keys)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 100) * max(0.05, 1 - s / steps)
    )
    model.train()
    losses = []
    for _ in range(steps):
        pairs = [_training_prompt(rng, keys, max_demos, match_prob) for _ in range(batch_size)]
        ids = [tokenizer(p + a, add_special_tokens=False)["input_ids"] for p, a in pairs]
        width = max(len(x) for x in ids)
        inputs = torch.full((batch_size, width), tokenizer.pad_token_id)
        mask = torch.zeros((batch_size, width), dtype=torch.long)
        labels = torch.full((batch_size, width), -100)
        for i, row in enumerate(ids):
            inputs[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
            labels[i, len(row) - 1] = row[-1]
        loss = model(input_ids=inputs, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses
