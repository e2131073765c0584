"""The eager reference backend: ``softmax(q kᵀ · scale + mask) v`` with explicit masks.

Scaled dot-product attention (Vaswani et al., 2017, "Attention Is All You Need", Eq. 1),
computed in float32 whatever the input dtype, with grouped-query heads (Ainslie et al., 2023,
GQA) handled by broadcasting instead of copying keys and values. Every other backend is tested
against this one, values and gradients.

The softmax is written out so that a query row that may attend to no key yields weights of
zero (hence an output of zero and zero gradients) instead of ``NaN``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from papercraft.core.attention import _masks
from papercraft.core.attention._registry import AttentionBackend

__all__ = ["EAGER"]


def masked_softmax(scores: Tensor, visible: Tensor | None, bias: Tensor | None) -> Tensor:
    """Softmax over the last dim after adding ``bias`` and hiding ``~visible``; empty rows -> 0.

    Args:
        scores (Tensor): float32 scores ``(..., t, s)``.
        visible (Tensor | None): boolean mask broadcastable to ``scores`` (True = visible).
        bias (Tensor | None): additive float mask broadcastable to ``scores``.

    Returns:
        Tensor: attention weights, rows summing to 1, or to 0 where every key is hidden.
    """
    if bias is not None:
        scores = scores + bias
    if visible is not None:
        scores = scores.masked_fill(~visible, float("-inf"))
    if bias is None and visible is None:
        return torch.softmax(scores, dim=-1)
    # a row hiding every key would softmax to NaN: give it finite scores, then zero its weights
    # (its output is then constant, so no gradient flows back through it either)
    empty = torch.isneginf(scores.amax(dim=-1, keepdim=True))
    weights = torch.softmax(scores.masked_fill(empty, 0.0), dim=-1)
    return weights.masked_fill(empty, 0.0)


def grouped_attention_fp32(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: float,
    visible: Tensor | None,
    attn_mask: Tensor | None,
) -> Tensor:
    """Attention of one query slab over one key slab in float32, grouped-query layout.

    Args:
        q (Tensor): ``(B, H, t, D)`` any floating dtype.
        k (Tensor): ``(B, H_kv, s, D)``.
        v (Tensor): ``(B, H_kv, s, D)``.
        scale (float): score scale.
        visible (Tensor | None): boolean position mask ``(t, s)``.
        attn_mask (Tensor | None): 4-dim user mask (bool or additive) already sliced to
            ``(b, h, t or 1, s or 1)``.

    Returns:
        Tensor: float32 output ``(B, H, t, D)``.
    """
    batch, heads, t, dim = q.shape
    kv_heads = k.shape[1]
    groups = heads // kv_heads
    num_keys = k.shape[2]
    # the G query heads sharing one key/value head are stacked along the query axis, so one
    # batched matmul per key/value head serves them all without copying keys or values
    qf = (q.float() * scale).reshape(batch, kv_heads, groups * t, dim)  # (B, H_kv, G·t, D)
    scores = torch.matmul(qf, k.float().transpose(-1, -2))  # (B, H_kv, G·t, s)
    scores = scores.view(batch, kv_heads, groups, t, num_keys)  # (B, H_kv, G, t, s)
    bias = None
    if attn_mask is not None:
        grouped = _masks.group_heads(attn_mask, kv_heads)
        if grouped.dtype == torch.bool:
            visible = grouped if visible is None else grouped & visible
        else:
            bias = grouped.float()
    weights = masked_softmax(scores, visible, bias)
    weights = weights.reshape(batch, kv_heads, groups * t, num_keys)
    out = torch.matmul(weights, v.float())  # (B, H_kv, G·t, D)
    return out.reshape(batch, heads, t, dim)


def _eager_forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool,
    window: int | None,
    scale: float,
    attn_mask: Tensor | None,
) -> Tensor:
    num_queries, num_keys = q.shape[2], k.shape[2]
    visible = _masks.visibility(
        _masks.query_positions(num_queries, num_keys, device=q.device),
        torch.arange(num_keys, device=q.device),
        causal=causal,
        window=window,
    )
    out = grouped_attention_fp32(q, k, v, scale=scale, visible=visible, attn_mask=attn_mask)
    return out.to(q.dtype)


EAGER = AttentionBackend(
    name="eager",
    priority=0,
    forward=_eager_forward,
    description="reference: float32 matmul + softmax with explicit masks (any device, any dtype)",
)
