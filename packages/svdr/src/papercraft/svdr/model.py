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

__all__ = [
    "MODEL_DIRNAME",
    "SVDREncoder",
    "bag_of_tokens",
    "elu1p",
    "load_encoder",
    "max_over_tokens",
    "sparsify",
]

MODEL_DIRNAME = "model"  # the trained encoder inside a training run folder
FORMAT = "papercraft.svdr.encoder"
FORMAT_VERSION = 1
_TOWERS = ("query", "passage")


def elu1p(x: Tensor) -> Tensor:
    """``ELU(x) + 1``: positive everywhere, ``x + 1`` for ``x > 0``."""
    return nn.functional.elu(x) + 1.0


class _MaxOverTokens(torch.autograd.Function):
    """``max_t h_t · vᵀ`` over unmasked tokens, computed and differentiated in token chunks.

    Forward keeps only the running max ``[B, V]`` and its argmax; backward routes each gradient
    ``g[b, v]`` to the winning token, again chunk by chunk, so neither pass holds ``[B, L, V]``
    (autograd through a plain chunked ``amax`` would save every chunk's logits).
    """

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, vocab: Tensor, mask: Tensor, chunk: int) -> Tensor:
        batch, length, _ = hidden.shape
        best = hidden.new_full((batch, vocab.shape[0]), float("-inf"))
        where = torch.zeros(best.shape, dtype=torch.long, device=hidden.device)
        for start in range(0, length, chunk):
            logits = hidden[:, start : start + chunk] @ vocab.T  # [B, c, V]
            logits = logits.masked_fill(
                ~mask[:, start : start + chunk].unsqueeze(-1), float("-inf")
            )
            value, index = logits.max(dim=1)
            better = value > best
            best = torch.where(better, value, best)
            where = torch.where(better, index + start, where)
        ctx.save_for_backward(hidden, vocab, where)
        ctx.chunk = chunk
        return best

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        hidden, vocab, where = ctx.saved_tensors
        grad_hidden = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
        grad_vocab = torch.zeros_like(vocab) if ctx.needs_input_grad[1] else None
        length = hidden.shape[1]
        for start in range(0, length, ctx.chunk):
            positions = torch.arange(start, min(start + ctx.chunk, length), device=hidden.device)
            routed = (where.unsqueeze(1) == positions.view(1, -1, 1)) * grad.unsqueeze(1)  # [B,c,V]
            routed = routed.to(hidden.dtype)
            if grad_hidden is not None:
                grad_hidden[:, start : start + ctx.chunk] = routed @ vocab
            if grad_vocab is not None:
                grad_vocab += torch.einsum(
                    "bcv,bcd->vd", routed, hidden[:, start : start + ctx.chunk]
                )
        return grad_hidden, grad_vocab, None, None


def max_over_tokens(
    hidden: Tensor, vocab: Tensor, attention_mask: Tensor, chunk: int = 16
) -> Tensor:
    """``max`` over the real tokens of ``hidden · vocabᵀ``: ``[B, L, d] × [V, d] → [B, V]``.

    Equal to ``(hidden @ vocab.T).masked_fill(pad, -inf).amax(1)``, values and gradients, but
    computed ``chunk`` tokens at a time in both passes (memory ``B · chunk · V``, not ``B · L · V``).

    Args:
        hidden (Tensor): ``[B, L, d]`` token states.
        vocab (Tensor): ``[V, d]`` the vocabulary rows.
        attention_mask (Tensor): ``[B, L]``; every row needs at least one real token.
        chunk (int): tokens per step. Default: 16

    Returns:
        Tensor: ``[B, V]``.
    """
    if hidden.dim() != 3 or vocab.dim() != 2 or hidden.shape[2] != vocab.shape[1]:
        raise ValueError(
            f"hidden must be [B, L, d] and vocab [V, d], got {tuple(hidden.shape)} and "
            f"{tuple(vocab.shape)}"
        )
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    vocab = vocab.to(hidden.dtype)
    out: Tensor = _MaxOverTokens.apply(hidden, vocab, attention_mask.bool(), chunk)
    return out


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
        batch = input_ids.shape[0]
        chunk = self.token_chunk or max(1, (1 << 24) // max(1, batch * vocab.shape[0]))
        best = max_over_tokens(hidden, vocab, attention_mask, chunk)
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

    def save_pretrained(
        self,
        directory: str | os.PathLike[str],
        tokenizer: Any = None,
        *,
        state_dict: dict[str, Tensor] | None = None,
    ) -> Path:
        """Write ``svdr.json``, the towers (safetensors) and the LayerNorms, atomically.

        Args:
            directory (str | os.PathLike): the folder (replaced as a whole if it exists).
            tokenizer (PreTrainedTokenizerBase | None): saved under ``tokenizer/``. Default: None
            state_dict (dict[str, Tensor] | None): weights to write instead of the module's own,
                keyed like :meth:`state_dict` (a trainer's gathered ZeRO-3 weights). Default: None

        Returns:
            Path: the folder.
        """
        from safetensors.torch import save_file

        from papercraft.core.io import atomic_directory

        state = self.state_dict() if state_dict is None else state_dict

        def part(prefix: str) -> dict[str, Tensor]:
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

        with atomic_directory(directory) as tmp:
            towers: Any = (self.query_encoder, self.passage_encoder)
            towers[0].save_pretrained(tmp / "query", state_dict=part("query_encoder."))
            if not self.shared:
                towers[1].save_pretrained(tmp / "passage", state_dict=part("passage_encoder."))
            norms = {f"query_norm.{k}": v for k, v in part("query_norm.").items()}
            if not self.shared:
                norms |= {f"passage_norm.{k}": v for k, v in part("passage_norm.").items()}
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in norms.items()},
                str(tmp / "norms.safetensors"),
            )
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
        """Load what :meth:`save_pretrained` wrote (format version checked).

        A training run's folder also works: its trained encoder is the ``model/`` inside it.
        """
        from safetensors.torch import load_file
        from transformers import AutoModel

        from papercraft.core.io import FormatVersionError

        root = Path(directory)
        if not (root / "svdr.json").is_file() and (root / MODEL_DIRNAME / "svdr.json").is_file():
            root = root / MODEL_DIRNAME
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


def load_encoder(directory: str | os.PathLike[str]) -> tuple[SVDREncoder, Any]:
    """An encoder folder (or a training run's output folder) and the tokenizer saved with it.

    Args:
        directory (str | os.PathLike): what :meth:`SVDREncoder.save_pretrained` or :func:`train`
            wrote.

    Returns:
        tuple[SVDREncoder, PreTrainedTokenizerBase]: the encoder (eval mode) and its tokenizer.

    Raises:
        FileNotFoundError: when the folder has no encoder or no saved tokenizer.
    """
    from transformers import AutoTokenizer

    root = Path(directory)
    if not (root / "svdr.json").is_file() and (root / MODEL_DIRNAME / "svdr.json").is_file():
        root = root / MODEL_DIRNAME
    encoder = SVDREncoder.from_pretrained(root)
    if not (root / "tokenizer").is_dir():
        raise FileNotFoundError(f"{root} has no tokenizer/ folder (save it with the encoder)")
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    return encoder.eval(), tokenizer
