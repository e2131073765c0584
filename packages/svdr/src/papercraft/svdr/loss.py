"""The semi-parametric contrastive loss SVDR trains with (official ``compute_vdr_loss``).

Four symmetric InfoNCE terms, temperature 1, no normalisation of the embeddings, averaged:

    L = ¼ [ S(q_topk, p) + S(q, p_topk) + S(q_bin, p) + S(q, p_bin) ]

``x_topk`` keeps each row's ``k`` largest weights together with the text's own tokens (the
official training mask is top-k OR bag-of-tokens); ``x_bin`` is the binary bag of tokens. ``S`` is
the symmetric loss: for queries, cross-entropy over every passage in the batch (positives first,
then hard negatives); for the positive passages, cross-entropy over every query; the two are added
(not averaged), as the official ``symmetry_biencoder_nll_loss``. In-batch negatives are gathered
across processes (differentiably) when ``torch.distributed`` is initialised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["LossParts", "gather", "semi_parametric_loss", "symmetric_nll"]


def symmetric_nll(
    queries: Tensor, passages: Tensor, temperature: float = 1.0, keys: Tensor | None = None
) -> Tensor:
    """``CE(q·pᵀ/τ, i) + CE((q·pᵀ)[:, :N]ᵀ/τ, i)``: queries ``[N, V]``, passages ``[M, V]``
    (``M ≥ N``; row ``i < N`` is query ``i``'s positive, the rest are negatives).

    With ``keys`` (``[M]`` ints, equal for equal passages), a copy of query ``i``'s positive
    elsewhere in the batch is not counted as a negative (nor, in the passage term, a query whose
    positive is the same passage): the official code has no such mask, so a passage that is one
    query's positive and another's hard negative pushes its own query away.
    """
    n = queries.shape[0]
    if passages.shape[0] < n:
        raise ValueError(f"passages must hold at least the {n} positives, got {passages.shape[0]}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scores = queries @ passages.T / temperature  # [N, M]
    target = torch.arange(n, device=scores.device)
    if keys is not None:
        if keys.shape != (passages.shape[0],):
            raise ValueError(f"keys must be [M] = [{passages.shape[0]}], got {tuple(keys.shape)}")
        same = keys[:n].unsqueeze(1) == keys.unsqueeze(0)  # [N, M]
        same[target, target] = False
        scores = scores.masked_fill(same, float("-inf"))
    per_query = nn.functional.cross_entropy(scores, target)
    per_passage = nn.functional.cross_entropy(scores[:, :n].T, target)
    return per_query + per_passage


def gather(x: Tensor) -> Tensor:
    """All rows of ``x`` from every process, with gradients (``x`` itself when not distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def _topk_or_bin(x: Tensor, binary: Tensor, k: int) -> Tensor:
    keep = binary.bool()
    if 0 < k < x.shape[1]:
        keep = keep.clone()
        keep.scatter_(1, x.topk(k, dim=1).indices, True)
    elif k >= x.shape[1]:
        keep = torch.ones_like(keep)
    return x * keep


@dataclass(frozen=True)
class LossParts:
    """The four terms (detached) and their mean (with gradient)."""

    loss: Tensor
    q_topk_p: float
    q_p_topk: float
    q_bin_p: float
    q_p_bin: float


def semi_parametric_loss(
    q: Tensor,
    p: Tensor,
    q_bin: Tensor,
    p_bin: Tensor,
    *,
    k: int = 768,
    temperature: float = 1.0,
    passage_keys: Tensor | None = None,
) -> LossParts:
    """The mean of SVDR's four symmetric InfoNCE terms.

    Args:
        q (Tensor): ``[N, V]`` dense query weights.
        p (Tensor): ``[N·(1+h), V]`` dense passage weights: the ``N`` positives, then ``h`` hard
            negatives per query (``[N, V]`` blocks).
        q_bin (Tensor): ``[N, V]`` queries' bags of tokens.
        p_bin (Tensor): like ``p``, the passages' bags of tokens.
        k (int): top-k of the sparse terms (768 as the paper). Default: 768
        temperature (float): τ (1 as the paper). Default: 1.0
        passage_keys (Tensor | None): ``[N·(1+h)]`` ints identifying each passage's text; copies
            of a query's positive are then not its negatives (see :func:`symmetric_nll`). None
            counts every other row as a negative (the official behaviour). Default: None

    Returns:
        LossParts: the loss and its four terms.
    """
    n = q.shape[0]
    if (
        q.shape != q_bin.shape
        or p.shape != p_bin.shape
        or p.shape[0] % n
        or q.shape[1] != p.shape[1]
    ):
        raise ValueError(
            f"expected q, q_bin [N, V] and p, p_bin [N·(1+h), V]; got q {tuple(q.shape)}, q_bin "
            f"{tuple(q_bin.shape)}, p {tuple(p.shape)}, p_bin {tuple(p_bin.shape)}"
        )
    blocks = p.shape[0] // n

    def global_passages(x: Tensor) -> Tensor:
        # gather block by block so that all positives come first across processes
        return torch.cat([gather(x[b * n : (b + 1) * n]) for b in range(blocks)], dim=0)

    q_topk = gather(_topk_or_bin(q, q_bin, k))
    p_topk = global_passages(_topk_or_bin(p, p_bin, k))
    q_all, p_all = gather(q), global_passages(p)
    q_bin_all, p_bin_all = gather(q_bin), global_passages(p_bin)
    keys = None
    if passage_keys is not None:
        if passage_keys.shape != (p.shape[0],):
            raise ValueError(
                f"passage_keys must be [{p.shape[0]}] (one per passage), got "
                f"{tuple(passage_keys.shape)}"
            )
        keys = global_passages(passage_keys)
    terms = (
        symmetric_nll(q_topk, p_all, temperature, keys),
        symmetric_nll(q_all, p_topk, temperature, keys),
        symmetric_nll(q_bin_all, p_all, temperature, keys),
        symmetric_nll(q_all, p_bin_all, temperature, keys),
    )
    loss = torch.stack(terms).mean()
    values = [float(t.detach()) for t in terms]
    return LossParts(loss, *values)
