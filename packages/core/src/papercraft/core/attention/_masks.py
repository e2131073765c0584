"""Position masks shared by the attention backends: causal, sliding window, and user masks.

Alignment is bottom-right (as in flash-attn and xformers' ``...FromBottomRight`` biases):
with ``T`` queries over ``S`` keys, query ``i`` sits at absolute position ``S - T + i``, so
the last query lines up with the last key and a decode step (``T = 1``) sees every key.

Visibility of key ``j`` from a query at position ``p`` (``W`` the window):

- causal, no window: ``j <= p``;
- causal, window ``W``: ``p - W < j <= p`` (the ``W`` most recent keys, itself included; the
  sliding-window attention of Mistral and YOCO's self-decoder, flash-attn
  ``window_size=(W - 1, 0)``);
- not causal, window ``W``: ``|j - p| < W`` (a symmetric band of ``2W - 1`` keys, flash-attn
  ``window_size=(W - 1, W - 1)``);
- not causal, no window: every key.

A user ``attn_mask`` is either boolean (True = may attend) or additive (a float bias added to
the scores, ``-inf`` = masked); it is combined with the position mask by logical AND.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__: list[str] = []


def query_positions(num_queries: int, num_keys: int, *, device: torch.device) -> Tensor:
    """Absolute positions of the queries under bottom-right alignment, shape ``(T,)``."""
    return torch.arange(num_keys - num_queries, num_keys, device=device)


def visibility(q_pos: Tensor, k_pos: Tensor, *, causal: bool, window: int | None) -> Tensor | None:
    """Boolean ``(Tq, Sk)`` mask (True = visible) for the given positions, None if all visible."""
    if not causal and window is None:
        return None
    diff = q_pos[:, None] - k_pos[None, :]  # (Tq, Sk): how far each key lies behind the query
    if causal:
        visible = diff >= 0
        if window is not None:
            visible &= diff < window
        return visible
    assert window is not None
    return diff.abs() < window


def needs_position_mask(
    num_queries: int, num_keys: int, *, causal: bool, window: int | None
) -> bool:
    """Whether causal/window masking hides any key from any query (closed form, no tensors)."""
    if causal:
        # the first query (position S - T) must see key S - 1, the last query (S - 1) key 0
        hides_future = num_queries > 1
        hides_past = window is not None and window < num_keys
        return hides_future or hides_past
    if window is None:
        return False
    # largest |j - p| over all pairs: p ranges over [S - T, S - 1], j over [0, S - 1]
    return window <= max(num_queries - 1, num_keys - 1)


def leading_empty_rows(num_queries: int, num_keys: int, *, causal: bool, window: int | None) -> int:
    """How many leading queries see no key at all by position (only possible when ``T > S``).

    A causal query at position ``p < 0`` sees nothing; a non-causal windowed query sees
    nothing when ``p <= -W``. These rows' output is defined as zero.
    """
    first_pos = num_keys - num_queries
    if causal:
        limit = 0  # rows with position < 0 are empty
    elif window is not None:
        limit = 1 - window  # rows with position <= -W are empty
    else:
        return 0
    return max(0, min(num_queries, limit - first_pos))


def slice_mask(attn_mask: Tensor, rows: slice, cols: slice) -> Tensor:
    """Slice a 4-dim mask along its query and key dims, leaving broadcast (size-1) dims whole."""
    row_index = rows if attn_mask.shape[-2] > 1 else slice(None)
    col_index = cols if attn_mask.shape[-1] > 1 else slice(None)
    return attn_mask[:, :, row_index, col_index]


def group_heads(mask: Tensor, num_kv_heads: int) -> Tensor:
    """Reshape a 4-dim mask ``(b, h, t, s)`` to ``(b, h_kv, g, t, s)`` for grouped-query heads.

    ``h`` is 1 (broadcast over heads) or ``H = H_kv * G``; query head ``n`` belongs to
    key/value head ``n // G``.
    """
    b, h, t, s = mask.shape
    if h == 1:
        return mask.unsqueeze(2)
    return mask.reshape(b, num_kv_heads, h // num_kv_heads, t, s)


def merge_masks(
    position: Tensor | None, attn_mask: Tensor | None, *, dtype: torch.dtype
) -> Tensor | None:
    """One mask from the position mask and the user mask, as kernels with one mask input need.

    Args:
        position (Tensor | None): boolean ``(t, s)`` position mask or None.
        attn_mask (Tensor | None): 4-dim boolean or additive mask or None.
        dtype (torch.dtype): dtype of an additive result (the query dtype for SDPA).

    Returns:
        Tensor | None: None when nothing is masked; boolean (True = visible) when no additive
        mask is involved, else an additive mask of ``dtype`` with ``-inf`` where hidden.
    """
    if attn_mask is None:
        return position
    if attn_mask.dtype == torch.bool:
        return attn_mask if position is None else attn_mask & position
    bias = attn_mask.to(dtype)
    if position is not None:
        bias = bias.masked_fill(~position, float("-inf"))
    return bias


def empty_rows(mask: Tensor) -> Tensor:
    """Which query rows of a merged mask hide every key, shape ``mask.shape[:-1] + (1,)``."""
    hidden = ~mask if mask.dtype == torch.bool else torch.isneginf(mask)
    return hidden.all(dim=-1, keepdim=True)


def unmask_rows(mask: Tensor, rows: Tensor) -> Tensor:
    """Make fully hidden rows fully visible so a kernel's softmax stays finite there.

    The caller zeroes those rows' output afterwards; since the output is then a constant zero,
    the gradients flowing back through the kernel for those rows are zero too.
    """
    if mask.dtype == torch.bool:
        return mask | rows
    return mask.masked_fill(rows, 0.0)
