"""The ``blockwise`` backend: sliding-window attention in query blocks, O(T·W) not O(T²).

With a window of ``W`` keys, a block of ``b`` consecutive queries can see at most
``b + W - 1`` consecutive keys (``2W + b - 2`` for a symmetric, non-causal window). Each query
block is attended only against that key slab, so the score tensors live in
``(B, H, b, b + W - 1)`` pieces and the total work and saved-for-backward memory grow with
``T·(W + b)`` instead of ``T·S``. This is the blockwise evaluation that sliding-window
self-decoders need (YOCO, arXiv 2405.05254, §2.1 "sliding-window attention"; a dense ``T × S``
mask would keep prefill quadratic). Each block is computed exactly like the eager reference
(float32 scores, explicit masks, empty rows -> zeros), so results match it to rounding.

Without a window the backend still runs (the slab is the causal prefix or every key) but then
offers no asymptotic gain; automatic selection only picks it for windows over long key ranges.
"""

from __future__ import annotations

import torch
from torch import Tensor

from papercraft.core.attention import _masks
from papercraft.core.attention._eager import grouped_attention_fp32
from papercraft.core.attention._registry import AttentionBackend

__all__ = ["BLOCKWISE", "DEFAULT_BLOCK_SIZE", "blockwise_plan"]

DEFAULT_BLOCK_SIZE = 128
"""Queries per block: the score pieces are ``(B, H, 128, 128 + W - 1)``."""


def blockwise_plan(
    num_queries: int,
    num_keys: int,
    *,
    causal: bool = True,
    window: int | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> list[tuple[int, int, int, int]]:
    """The query blocks and the key slab each one can see.

    Args:
        num_queries (int): number of queries ``T`` (bottom-right aligned with the keys).
        num_keys (int): number of keys ``S``.
        causal (bool): causal masking. Default: True.
        window (int | None): sliding-window size ``W``. Default: None.
        block_size (int): queries per block. Default: 128.

    Returns:
        list[tuple[int, int, int, int]]: ``(q_start, q_end, k_start, k_end)`` per block, half-open
        ranges; the blocks tile ``[0, T)``. ``k_end - k_start <= block_size + W - 1`` when causal
        with a window. A block that sees no key has ``k_start == k_end``.

    Raises:
        ValueError: if a size is below 1 or ``window`` is given and below 1.
    """
    for name, value in (
        ("num_queries", num_queries),
        ("num_keys", num_keys),
        ("block_size", block_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if window is not None and (
        isinstance(window, bool) or not isinstance(window, int) or window < 1
    ):
        raise ValueError(f"window must be an int >= 1 or None, got {window!r}")

    offset = num_keys - num_queries  # absolute position of query 0
    plan = []
    for q_start in range(0, num_queries, block_size):
        q_end = min(q_start + block_size, num_queries)
        first, last = offset + q_start, offset + q_end - 1  # positions of the block's queries
        if causal:
            k_start = 0 if window is None else first - window + 1
            k_end = last + 1
        elif window is not None:
            k_start, k_end = first - window + 1, last + window
        else:
            k_start, k_end = 0, num_keys
        k_end = max(0, min(num_keys, k_end))
        k_start = min(max(0, k_start), k_end)
        plan.append((q_start, q_end, k_start, k_end))
    return plan


def blockwise_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool,
    window: int | None,
    scale: float,
    attn_mask: Tensor | None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Tensor:
    """Attention over :func:`blockwise_plan` blocks (validated inputs, see ``AttentionKernel``).

    Args:
        q (Tensor): ``(B, H, T, D)``.
        k (Tensor): ``(B, H_kv, S, D)``.
        v (Tensor): ``(B, H_kv, S, D)``.
        causal (bool): causal masking.
        window (int | None): sliding-window size.
        scale (float): score scale.
        attn_mask (Tensor | None): 4-dim boolean or additive mask, sliced per block.
        block_size (int): queries per block. Default: 128.

    Returns:
        Tensor: ``(B, H, T, D)`` in the dtype of ``q``.
    """
    batch, heads, num_queries, dim = q.shape
    num_keys = k.shape[2]
    q_pos = _masks.query_positions(num_queries, num_keys, device=q.device)
    k_pos = torch.arange(num_keys, device=q.device)
    pieces = []
    plan = blockwise_plan(
        num_queries, num_keys, causal=causal, window=window, block_size=block_size
    )
    for q_start, q_end, k_start, k_end in plan:
        if k_start == k_end:  # nothing visible: the defined output is zero
            pieces.append(q.new_zeros(batch, heads, q_end - q_start, dim, dtype=torch.float32))
            continue
        rows, cols = slice(q_start, q_end), slice(k_start, k_end)
        visible = _masks.visibility(q_pos[rows], k_pos[cols], causal=causal, window=window)
        block_mask = None if attn_mask is None else _masks.slice_mask(attn_mask, rows, cols)
        pieces.append(
            grouped_attention_fp32(
                q[:, :, rows],
                k[:, :, cols],
                v[:, :, cols],
                scale=scale,
                visible=visible,
                attn_mask=block_mask,
            )
        )
    return torch.cat(pieces, dim=2).to(q.dtype)


def _blockwise_forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool,
    window: int | None,
    scale: float,
    attn_mask: Tensor | None,
) -> Tensor:
    return blockwise_attention(
        q, k, v, causal=causal, window=window, scale=scale, attn_mask=attn_mask
    )


def _prefer_blockwise(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool,
    window: int | None,
    attn_mask: Tensor | None,
) -> str | None:
    if window is None:
        return "no window set (blockwise only pays off for sliding windows)"
    num_keys = k.shape[2]
    slab = window + DEFAULT_BLOCK_SIZE - 1 if causal else 2 * window + DEFAULT_BLOCK_SIZE - 2
    if 2 * slab > num_keys:
        return f"key length S={num_keys} too short for window {window} (needs S >= {2 * slab})"
    return None


BLOCKWISE = AttentionBackend(
    name="blockwise",
    priority=80,
    forward=_blockwise_forward,
    auto_check=_prefer_blockwise,
    description=(
        "sliding-window attention in query blocks, O(T·W) time and memory (any device, any dtype)"
    ),
)
