"""The ``sdpa`` backend: :func:`torch.nn.functional.scaled_dot_product_attention`.

Torch picks its own kernel (flash, memory-efficient, cuDNN or math) underneath. Two pitfalls
are handled here:

- SDPA's ``is_causal=True`` aligns the causal mask top-left, while this package aligns it
  bottom-right (see :mod:`._masks`). ``is_causal`` is therefore used only when ``T == S`` and
  nothing else is masked; every other masked case passes an explicit mask.
- Grouped-query heads go through ``enable_gqa=True`` on torch >= 2.5; older torch gets keys and
  values repeated per query head.

Rows of a user mask that hide every key are made visible for the kernel and their output is
zeroed afterwards, so no torch version or kernel can turn them into ``NaN``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.torch_version import TorchVersion

from papercraft.core.attention import _masks
from papercraft.core.attention._registry import AttentionBackend

__all__ = ["SDPA"]

_HAS_ENABLE_GQA = TorchVersion(torch.__version__) >= "2.5.0"


def _call(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None,
    is_causal: bool,
    scale: float,
    gqa: bool,
) -> Tensor:
    if gqa:  # only reached on torch >= 2.5, which knows enable_gqa
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale, enable_gqa=True
        )
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale)


def _sdpa_forward(
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
    groups = q.shape[1] // k.shape[1]
    if groups > 1 and not _HAS_ENABLE_GQA:
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
    gqa = k.shape[1] != q.shape[1]

    needs = _masks.needs_position_mask(num_queries, num_keys, causal=causal, window=window)
    if attn_mask is None and (not needs or (causal and window is None and num_queries == num_keys)):
        # top-left and bottom-right causal coincide when T == S
        return _call(q, k, v, mask=None, is_causal=needs, scale=scale, gqa=gqa)

    position = None
    if needs:
        position = _masks.visibility(
            _masks.query_positions(num_queries, num_keys, device=q.device),
            torch.arange(num_keys, device=q.device),
            causal=causal,
            window=window,
        )
    mask = _masks.merge_masks(position, attn_mask, dtype=q.dtype)
    assert mask is not None
    rows = None
    if attn_mask is not None or _masks.leading_empty_rows(
        num_queries, num_keys, causal=causal, window=window
    ):
        rows = _masks.empty_rows(mask)
        mask = _masks.unmask_rows(mask, rows)
    out = _call(q, k, v, mask=mask, is_causal=False, scale=scale, gqa=gqa)
    if rows is not None:
        out = out.masked_fill(rows, 0.0)
    return out


SDPA = AttentionBackend(
    name="sdpa",
    priority=50,
    forward=_sdpa_forward,
    description="torch.nn.functional.scaled_dot_product_attention with bottom-right masks",
)
