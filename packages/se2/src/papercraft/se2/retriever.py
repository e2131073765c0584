"""The sequential retriever: a DPR bi-encoder trained on the LLM feedback (Se², Section 3.2).

- **Query** = the examples chosen so far (``question + answer``), in prompt order, each followed
  by ``" \\n "``, then the query's question. **Passage** = an example's ``question + answer``.
- **Training data** per scored step (:func:`training_examples`): the positive is the best-ranked
  candidate that the model answered correctly with (``accurate > 0``; steps without one are
  dropped), the hard negatives are the ``n_hard`` worst-ranked candidates, and ``n_random``
  random pool examples (not the positive, not a hard negative) are further negatives.
- **Loss** (:func:`dpr_loss`): for each query, the negative log-likelihood of its positive under
  a softmax over its dot products with *every* passage of the batch: its own negatives and all
  other queries' positives and negatives (in-batch negatives), as in DPR.

:class:`BiEncoder` holds a query encoder and a passage encoder (two copies of any BERT-family
backbone, or one shared), pooled at ``[CLS]`` (DPR) or by mean. :func:`train_retriever` trains it
with :class:`transformers.Trainer` (paper: lr 1e-5, batch 8, 6 epochs, warm-up 1000 steps).
Checkpoints are safetensors plus a versioned manifest.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from papercraft.core.io import StrPath, atomic_directory, read_manifest, write_manifest
from papercraft.se2.scoring import JOIN, ExampleLike, demonstration, remove_double_space
from papercraft.se2.sequences import ScoredStep

__all__ = [
    "FORMAT",
    "BiEncoder",
    "dpr_loss",
    "query_text",
    "train_retriever",
    "training_examples",
]

FORMAT = "papercraft.se2.retriever"
FORMAT_VERSION = 1


def query_text(chosen: Sequence[ExampleLike], query: ExampleLike) -> str:
    """The retriever's query: chosen demonstrations (prompt order) then the question."""
    return remove_double_space("".join(demonstration(c) + JOIN for c in chosen) + query.question)


def training_examples(
    steps: Sequence[ScoredStep],
    pool: Sequence[ExampleLike],
    queries: Sequence[ExampleLike] | None = None,
    *,
    n_hard: int = 20,
    n_random: int = 20,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Turn scored steps into DPR training examples.

    Args:
        steps (Sequence[ScoredStep]): from :func:`papercraft.se2.sequences.build_sequences`.
        pool (Sequence[Example]): the candidate pool (passages).
        queries (Sequence[Example] | None): the scored queries; None means the pool.
        n_hard (int): worst-ranked candidates used as hard negatives. Default: 20.
        n_random (int): random negatives from the pool. Default: 20.
        seed (int): seeds the random negatives. Default: 0.

    Returns:
        list[dict]: ``{"query", "positive", "hard_negatives", "negatives"}`` texts.
    """
    by_id = {ex.id: ex for ex in pool}
    query_by_id = {ex.id: ex for ex in (queries if queries is not None else pool)}
    rng = random.Random(seed)
    out = []
    for step in steps:
        good = [c for c in step.ranked if c.accurate > 0]
        if not good or step.query not in query_by_id:
            continue
        positive = good[0].id
        hard = [c.id for c in step.ranked[-n_hard:]] if n_hard > 0 else []
        hard = [h for h in hard if h != positive]
        banned = {positive, *hard, step.query}
        free = [i for i in by_id if i not in banned]
        negatives = rng.choices(free, k=n_random) if free and n_random > 0 else []
        chosen = [by_id[c] for c in step.chosen]
        out.append({
            "query": query_text(chosen, query_by_id[step.query]),
            "positive": demonstration(by_id[positive]),
            "hard_negatives": [demonstration(by_id[h]) for h in hard],
            "negatives": [demonstration(by_id[n]) for n in negatives],
        })  # fmt: skip
    return out


def dpr_loss(
    query_vectors: torch.Tensor, passage_vectors: torch.Tensor, positive_index: torch.Tensor
) -> torch.Tensor:
    """Mean NLL of each query's positive under a softmax over all passages of the batch.

    Args:
        query_vectors (Tensor): ``(B, d)``.
        passage_vectors (Tensor): ``(P, d)``: every query's positive and negatives.
        positive_index (Tensor): ``(B,)`` index of each query's positive in ``passage_vectors``.
    """
    scores = query_vectors @ passage_vectors.T
    return nn.functional.cross_entropy(scores, positive_index)


class BiEncoder(nn.Module):
    """A query encoder and a passage encoder over a BERT-family backbone.

    Args:
        query_encoder (nn.Module): a transformers encoder (``AutoModel``).
        passage_encoder (nn.Module | None): a second encoder; None shares the query encoder.
        tokenizer (Any): the backbone's tokenizer.
        pooling (str): ``"cls"`` (DPR) or ``"mean"``. Default: "cls".
        max_length (int): tokens per text. Default: 256.
    """

    def __init__(
        self,
        query_encoder: nn.Module,
        passage_encoder: nn.Module | None,
        tokenizer: Any,
        *,
        pooling: str = "cls",
        max_length: int = 256,
    ) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.query_encoder = query_encoder
        self.passage_encoder = passage_encoder
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = max_length

    @classmethod
    def from_backbone(
        cls, path: StrPath, *, shared: bool = False, pooling: str = "cls", max_length: int = 256
    ) -> BiEncoder:
        """Two copies (or one shared) of a local backbone, e.g. MiniLM or BERT-base."""
        from transformers import AutoModel, AutoTokenizer

        kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
        tokenizer = AutoTokenizer.from_pretrained(str(path), **kwargs)
        query = AutoModel.from_pretrained(str(path), **kwargs)
        passage = None if shared else AutoModel.from_pretrained(str(path), **kwargs)
        return cls(query, passage, tokenizer, pooling=pooling, max_length=max_length)

    def _encoder(self, which: str) -> nn.Module:
        if which not in ("query", "passage"):
            raise ValueError(f"which must be 'query' or 'passage', got {which!r}")
        if which == "passage" and self.passage_encoder is not None:
            return self.passage_encoder
        return self.query_encoder

    def embed(
        self, which: str, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Pooled vectors of tokenized texts (with gradients)."""
        hidden = self._encoder(which)(input_ids=input_ids, attention_mask=attention_mask)[0]
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Pad and truncate texts to ``max_length``."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt")  # fmt: skip
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    @torch.no_grad()
    def encode(self, texts: Sequence[str], which: str, *, batch_size: int = 64) -> torch.Tensor:
        """Vectors of texts, ``(n, d)`` float32 on CPU, in input order."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenize(texts[start : start + batch_size])
            vecs = self.embed(which, batch["input_ids"].to(device),
                              batch["attention_mask"].to(device))  # fmt: skip
            chunks.append(vecs.float().cpu())
        self.train(was_training)
        if not chunks:
            raise ValueError("texts must not be empty")
        return torch.cat(chunks)

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """DPR loss of a collated batch (see :class:`_Collator`)."""
        q = self.embed("query", batch["query_input_ids"], batch["query_attention_mask"])
        p = self.embed("passage", batch["passage_input_ids"], batch["passage_attention_mask"])
        return {"loss": dpr_loss(q, p, batch["positive_index"])}

    def save(self, directory: StrPath) -> Path:
        """Write both encoders (safetensors), the tokenizer and a manifest, atomically."""
        target = Path(directory)
        with atomic_directory(target) as tmp:
            self.query_encoder.save_pretrained(tmp / "query")  # type: ignore[operator]
            if self.passage_encoder is not None:
                self.passage_encoder.save_pretrained(tmp / "passage")  # type: ignore[operator]
            self.tokenizer.save_pretrained(tmp / "tokenizer")
            config = {"pooling": self.pooling, "max_length": self.max_length,
                      "shared": self.passage_encoder is None}  # fmt: skip
            (tmp / "retriever.json").write_text(json.dumps(config), encoding="utf-8")
            write_manifest(tmp, format=FORMAT, format_version=FORMAT_VERSION, metadata=config)
        return target

    @classmethod
    def load(cls, directory: StrPath) -> BiEncoder:
        """Load a :meth:`save` directory (checks the format and version; local files only)."""
        from transformers import AutoModel, AutoTokenizer

        root = Path(directory)
        read_manifest(root, format=FORMAT, max_format_version=FORMAT_VERSION)
        config = json.loads((root / "retriever.json").read_text(encoding="utf-8"))
        kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
        query = AutoModel.from_pretrained(str(root / "query"), **kwargs)
        passage = (
            None if config["shared"] else AutoModel.from_pretrained(str(root / "passage"), **kwargs)
        )
        tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizer"), **kwargs)
        return cls(query, passage, tokenizer, pooling=config["pooling"],
                   max_length=int(config["max_length"]))  # fmt: skip


class _Collator:
    """Tokenizes queries and the flattened list of their passages (positive first)."""

    def __init__(self, model: BiEncoder) -> None:
        self.model = model

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        passages: list[str] = []
        positives: list[int] = []
        for row in rows:
            positives.append(len(passages))
            passages.extend([row["positive"], *row["hard_negatives"], *row["negatives"]])
        q = self.model.tokenize([row["query"] for row in rows])
        p = self.model.tokenize(passages)
        return {
            "query_input_ids": q["input_ids"],
            "query_attention_mask": q["attention_mask"],
            "passage_input_ids": p["input_ids"],
            "passage_attention_mask": p["attention_mask"],
            "positive_index": torch.tensor(positives, dtype=torch.long),
        }


def train_retriever(
    model: BiEncoder,
    examples: Sequence[Mapping[str, Any]],
    output_dir: StrPath,
    *,
    learning_rate: float = 1e-5,
    batch_size: int = 8,
    epochs: float = 6.0,
    warmup_steps: int = 1000,
    seed: int = 0,
    **training_args: Any,
) -> BiEncoder:
    """Train the bi-encoder with :class:`transformers.Trainer` and save it to ``output_dir``.

    Args:
        model (BiEncoder): the retriever to train (in place).
        examples (Sequence[dict]): from :func:`training_examples`.
        output_dir (str | PathLike): where the trained retriever is saved (:meth:`BiEncoder.save`).
        learning_rate (float): paper: 1e-5. Default: 1e-5.
        batch_size (int): queries per step (paper: 8). Default: 8.
        epochs (float): paper: 6. Default: 6.0.
        warmup_steps (int): linear warm-up (paper: 1000). Default: 1000.
        seed (int): the Trainer's seed. Default: 0.
        **training_args (Any): more :class:`transformers.TrainingArguments` fields.

    Returns:
        BiEncoder: the trained model.
    """
    from transformers import Trainer, TrainingArguments

    if not examples:
        raise ValueError("examples must not be empty (no step had an accurate candidate?)")
    for i, row in enumerate(examples):
        if not isinstance(row.get("query"), str) or not isinstance(row.get("positive"), str):
            raise ValueError(f"examples[{i}] needs str 'query' and 'positive'")
    out = Path(output_dir)
    args = TrainingArguments(
        output_dir=str(out.parent / f".{out.name}.trainer"),
        learning_rate=learning_rate,
        per_device_train_batch_size=batch_size,
        num_train_epochs=epochs,
        warmup_steps=warmup_steps,
        lr_scheduler_type="linear",
        max_grad_norm=2.0,
        seed=seed,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        logging_steps=training_args.pop("logging_steps", 10),
        **training_args,
    )
    trainer = Trainer(model=model, args=args, train_dataset=list(examples),
                      data_collator=_Collator(model))  # fmt: skip
    trainer.train()
    model.save(out)
    return model
