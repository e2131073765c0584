"""The SVDR encoder: texts as non-negative weights over the vocabulary (arXiv 2405.01924).

For a text with last hidden states ``h_1 … h_L`` of a BERT-family backbone:

    e = elu1p( max_t  LayerNorm(h_t) · E[shift:]ᵀ )      elu1p(x) = ELU(x) + 1 > 0

``E`` is the backbone's own (tied) input word-embedding matrix and ``shift`` drops the reserved
leading ids (999 for bert-base-uncased: see :mod:`papercraft.svdr.vocab`), so ``e`` has one weight
per ordinary token, ``V = 29,523``. The LayerNorm is new (trained with the encoder); there is no MLM
head. The max runs over real tokens only: the official code also max-pools over padding, which
makes a text's embedding depend on the batch it is in. ``elu1p`` is increasing, so it is applied
after the max, and the ``[B, L, V]`` logits are never held at once: the max runs over chunks of
tokens (:attr:`SVDREncoder.token_chunk`).

Sparsification at encode time keeps the ``topk`` largest weights (768 in the paper), optionally
together with the dimensions of the text's own tokens (``lexical``); ``topk=0`` keeps only those,
``topk=None`` keeps every weight.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from papercraft.svdr.vocab import VocabularySpace

__all__ = ["SVDREncoder", "bag_of_tokens", "elu1p", "sparsify"]

FORMAT = "papercraft.svdr.encoder"
FORMAT_VERSION = 1
_TOWERS = ("query", "passage")


def elu1p(x: Tensor) -> Tensor:
    """``ELU(x) + 1``: positive everywhere, ``x + 1`` for ``x > 0``."""
    return nn.functional.elu(x) + 1.0


def bag_of_tokens(input_ids: Tensor, attention_mask: Tensor, space: VocabularySpace) -> Tensor:
    """Binary vocabulary vectors ``[B, V]``: 1.0 for every ordinary token the text contains."""
    out = torch.zeros(input_ids.shape[0], space.dim, dtype=torch.float32, device=input_ids.device)
    keep = attention_mask.bool() & (input_ids >= space.shift)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device).unsqueeze(1)
    rows = rows.expand_as(input_ids)[keep]
    out[rows, input_ids[keep] - space.shift] = 1.0
    return out


def sparsify(
    weights: Tensor,
    topk: int | None,
    *,
    lexical: bool = False,
    input_ids: Tensor | None = None,
    attention_mask: Tensor | None = None,
    space: VocabularySpace | None = None,
) -> Tensor:
    """Keep each row's ``topk`` largest weights (and, with ``lexical``, its own tokens' weights).

    Args:
        weights (Tensor): ``[B, V]`` non-negative weights.
        topk (int | None): weights kept per row; 0 keeps none (only the lexical ones); None or a
            negative value keeps all.
        lexical (bool): also keep the dimensions of the text's own tokens. Default: False
        input_ids (Tensor | None): ``[B, L]``, needed with ``lexical``.
        attention_mask (Tensor | None): ``[B, L]``, needed with ``lexical``.
        space (VocabularySpace | None): needed with ``lexical``.

    Returns:
        Tensor: ``[B, V]`` with the other weights set to 0.
    """
    if topk is None or topk < 0 or topk >= weights.shape[1]:
        keep = torch.ones_like(weights, dtype=torch.bool)
        if not lexical:
            return weights
    else:
        keep = torch.zeros_like(weights, dtype=torch.bool)
        if topk > 0:
            keep.scatter_(1, weights.topk(topk, dim=1).indices, True)
    if lexical:
        if input_ids is None or attention_mask is None or space is None:
            raise ValueError("lexical=True needs input_ids, attention_mask and space")
        keep |= bag_of_tokens(input_ids, attention_mask, space).bool()
    return weights * keep


class SVDREncoder(nn.Module):
    """Query and passage encoders into the vocabulary space (separate or shared towers).

    Args:
        query_encoder (nn.Module): a transformers encoder (``AutoModel``) with tied input
            embeddings; its output's ``last_hidden_state`` is used.
        passage_encoder (nn.Module | None): the passage tower; None shares the query tower.
        space (VocabularySpace): the vocabulary space (from the tokenizer).
        topk (int | None): default sparsification (768 as the paper; None keeps all).
        lexical (bool): default for also keeping the text's own tokens. Default: False
        token_chunk (int | None): tokens per step of the running max (None: sized so one step
            holds about 16M logits). Default: None
    """

    def __init__(
        self,
        query_encoder: nn.Module,
        passage_encoder: nn.Module | None,
        space: VocabularySpace,
        *,
        topk: int | None = 768,
        lexical: bool = False,
        token_chunk: int | None = None,
    ) -> None:
        super().__init__()
        self.query_encoder = query_encoder
        self.shared = passage_encoder is None or passage_encoder is query_encoder
        self.passage_encoder: nn.Module = (
            query_encoder if self.shared or passage_encoder is None else passage_encoder
        )
        config: Any = getattr(query_encoder, "config", None)
        hidden = int(config.hidden_size)
        embeddings = self._embeddings(query_encoder)
        if embeddings.shape[0] < space.vocab_size:
            raise ValueError(
                f"space.vocab_size {space.vocab_size} exceeds the backbone's {embeddings.shape[0]} "
                "word-embedding rows"
            )
        self.query_norm = nn.LayerNorm(hidden)
        self.passage_norm = self.query_norm if self.shared else nn.LayerNorm(hidden)
        self.space = space
        self.topk = topk
        self.lexical = lexical
        self.token_chunk = token_chunk

    @staticmethod
    def _embeddings(encoder: nn.Module) -> Tensor:
        get = getattr(encoder, "get_input_embeddings", None)
        module = get() if callable(get) else None
        weight = getattr(module, "weight", None)
        if not isinstance(weight, Tensor):
            raise ValueError(f"{type(encoder).__name__} has no input word-embedding matrix")
        return weight

    def _tower(self, tower: str) -> tuple[nn.Module, nn.LayerNorm]:
        if tower == "query":
            return self.query_encoder, self.query_norm
        if tower == "passage":
            return self.passage_encoder, self.passage_norm
        raise ValueError(f"tower must be one of {list(_TOWERS)}, got {tower!r}")

    def dense(self, input_ids: Tensor, attention_mask: Tensor, *, tower: str = "query") -> Tensor:
        """The full (unsparsified) vocabulary weights ``[B, V]`` of a tokenised batch."""
        if input_ids.shape != attention_mask.shape or input_ids.dim() != 2:
            raise ValueError(
                f"input_ids and attention_mask must both be [B, L], got "
                f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}"
            )
        if not bool(attention_mask.bool().any(dim=1).all()):
            raise ValueError("every text needs at least one token (an attention_mask row is all 0)")
        encoder, norm = self._tower(tower)
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        hidden = norm(hidden)  # [B, L, d]
        vocab = self._embeddings(encoder)[self.space.shift : self.space.vocab_size]  # [V, d]
        batch, length = input_ids.shape
        chunk = self.token_chunk or max(1, (1 << 24) // max(1, batch * vocab.shape[0]))
        mask = attention_mask.bool()
        best = torch.full(
            (batch, vocab.shape[0]), float("-inf"), dtype=hidden.dtype, device=hidden.device
        )
        for start in range(0, length, chunk):
            logits = hidden[:, start : start + chunk] @ vocab.T  # [B, c, V]
            visible = mask[:, start : start + chunk].unsqueeze(-1)
            logits = logits.masked_fill(~visible, float("-inf"))
            best = torch.maximum(best, logits.amax(dim=1))
        return elu1p(best.float())

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        *,
        tower: str = "query",
        topk: int | str | None = "default",
        lexical: bool | None = None,
    ) -> Tensor:
        """Sparsified vocabulary embeddings ``[B, V]`` (float32).

        Args:
            input_ids (Tensor): ``[B, L]``.
            attention_mask (Tensor): ``[B, L]``.
            tower (str): ``"query"`` or ``"passage"``. Default: "query"
            topk (int | None | str): overrides :attr:`topk` ("default" keeps it).
            lexical (bool | None): overrides :attr:`lexical`.
        """
        weights = self.dense(input_ids, attention_mask, tower=tower)
        k = self.topk if topk == "default" else topk
        if isinstance(k, str):
            raise ValueError(f"topk must be an int, None or 'default', got {k!r}")
        use_lexical = self.lexical if lexical is None else lexical
        return sparsify(
            weights,
            k,
            lexical=use_lexical,
            input_ids=input_ids,
            attention_mask=attention_mask,
            space=self.space,
        )

    # --------------------------------------------------------------------------------------------
    # Construction and persistence

    @classmethod
    def from_backbone(
        cls,
        path: str | os.PathLike[str],
        *,
        shared: bool = False,
        topk: int | None = 768,
        lexical: bool = False,
    ) -> tuple[SVDREncoder, Any]:
        """A new SVDR encoder on a BERT-family backbone (new LayerNorms), and its tokenizer.

        Args:
            path (str | os.PathLike): a local transformers model folder (never remote code).
            shared (bool): one tower for queries and passages. Default: False (the paper)
            topk (int | None): default sparsification. Default: 768
            lexical (bool): default lexical option. Default: False

        Returns:
            tuple[SVDREncoder, PreTrainedTokenizerBase]: the encoder and the tokenizer.
        """
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
        space = VocabularySpace.from_tokenizer(tokenizer)
        query = AutoModel.from_pretrained(path)
        passage = None if shared else AutoModel.from_pretrained(path)
        return cls(query, passage, space, topk=topk, lexical=lexical), tokenizer

    def save_pretrained(self, directory: str | os.PathLike[str], tokenizer: Any = None) -> Path:
        """Write ``svdr.json``, the towers (safetensors) and the LayerNorms, atomically."""
        from safetensors.torch import save_file

        from papercraft.core.io import atomic_directory

        with atomic_directory(directory) as tmp:
            towers: Any = (self.query_encoder, self.passage_encoder)
            towers[0].save_pretrained(tmp / "query")
            if not self.shared:
                towers[1].save_pretrained(tmp / "passage")
            norms = {f"query_norm.{k}": v for k, v in self.query_norm.state_dict().items()}
            if not self.shared:
                norms |= {f"passage_norm.{k}": v for k, v in self.passage_norm.state_dict().items()}
            save_file({k: v.contiguous() for k, v in norms.items()}, str(tmp / "norms.safetensors"))
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp / "tokenizer")
            meta = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "shared": self.shared,
                "topk": self.topk,
                "lexical": self.lexical,
                "space": self.space.to_dict(),
            }
            (tmp / "svdr.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return Path(directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str]) -> SVDREncoder:
        """Load what :meth:`save_pretrained` wrote (format version checked)."""
        from safetensors.torch import load_file
        from transformers import AutoModel

        from papercraft.core.io import FormatVersionError

        root = Path(directory)
        meta_path = root / "svdr.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{root} is not an SVDR encoder folder (no svdr.json)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise FormatVersionError(
                f"{meta_path}: expected {FORMAT} version {FORMAT_VERSION}, got "
                f"{meta.get('format')} version {meta.get('format_version')}"
            )
        space = VocabularySpace(**meta["space"])
        query = AutoModel.from_pretrained(root / "query")
        passage = None if meta["shared"] else AutoModel.from_pretrained(root / "passage")
        encoder = cls(query, passage, space, topk=meta["topk"], lexical=meta["lexical"])
        norms = load_file(str(root / "norms.safetensors"))
        encoder.query_norm.load_state_dict(
            {k.split(".", 1)[1]: v for k, v in norms.items() if k.startswith("query_norm.")}
        )
        if not encoder.shared:
            encoder.passage_norm.load_state_dict(
                {k.split(".", 1)[1]: v for k, v in norms.items() if k.startswith("passage_norm.")}
            )
        return encoder
