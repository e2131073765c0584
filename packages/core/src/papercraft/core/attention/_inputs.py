"""Up-front validation of attention inputs, and small layout helpers shared by the backends.

Every check runs before any kernel is chosen or any tensor is allocated, and each error names
the argument and what was expected (DESIGN.md rule 9).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__: list[str] = []


def _shape(x: Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def _tensor(name: str, x: object) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_qkv(q: object, k: object, v: object) -> tuple[Tensor, Tensor, Tensor]:
    """Check ``q (B, H, T, D)``, ``k, v (B, H_kv, S, D)`` and return them typed as tensors.

    Raises:
        TypeError: if an input is not a tensor or not floating point.
        ValueError: on a wrong number of dims, mismatched sizes, empty dims, mixed dtypes or
            devices, or ``H`` not a multiple of ``H_kv``.
    """
    q, k, v = _tensor("q", q), _tensor("k", k), _tensor("v", v)
    if q.dim() != 4:
        raise ValueError(f"q must have 4 dims (B, H, T, D), got shape {_shape(q)}")
    if k.dim() != 4:
        raise ValueError(f"k must have 4 dims (B, H_kv, S, D), got shape {_shape(k)}")
    if _shape(v) != _shape(k):
        raise ValueError(
            f"v must have the same shape as k (B, H_kv, S, D) = {_shape(k)}, got {_shape(v)}"
        )
    if any(size == 0 for size in (*q.shape, *k.shape)):
        raise ValueError(f"q and k must have no empty dims, got q {_shape(q)} and k {_shape(k)}")
    batch, heads, _, dim = q.shape
    if k.shape[0] != batch:
        raise ValueError(f"k batch size B={k.shape[0]} must match q's B={batch}")
    if k.shape[3] != dim:
        raise ValueError(f"k head dim D={k.shape[3]} must match q's D={dim}")
    if heads % k.shape[1]:
        raise ValueError(
            f"q's H={heads} query heads must be a multiple of k's H_kv={k.shape[1]} "
            "key/value heads (grouped-query attention)"
        )
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not x.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {x.dtype}")
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(
            f"q, k and v must share one dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}"
        )
    if not q.device == k.device == v.device:
        raise ValueError(
            f"q, k and v must be on one device, got q {q.device}, k {k.device}, v {v.device}"
        )
    return q, k, v


def check_options(causal: object, window: object, scale: object, *, dim: int) -> float:
    """Check ``causal``, ``window`` and ``scale``; return the resolved scale.

    Raises:
        TypeError: if ``causal`` is not a bool.
        ValueError: if ``window`` is not None or an int >= 1, or ``scale`` is not None or a
            positive finite number.
    """
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool, got {causal!r}")
    if window is not None and (
        isinstance(window, bool) or not isinstance(window, int) or window < 1
    ):
        raise ValueError(f"window must be an int >= 1 or None, got {window!r}")
    if scale is None:
        return 1.0 / math.sqrt(dim)
    if (
        isinstance(scale, bool)
        or not isinstance(scale, (int, float))
        or not math.isfinite(scale)
        or scale <= 0
    ):
        raise ValueError(f"scale must be a positive finite number or None, got {scale!r}")
    return float(scale)


def check_mask(attn_mask: object, q: Tensor, k: Tensor) -> Tensor | None:
    """Check that ``attn_mask`` broadcasts to ``(B, H, T, S)``; return it as a 4-dim view.

    Raises:
        TypeError: if it is not a bool or floating tensor.
        ValueError: if it does not broadcast to ``(B, H, T, S)`` or sits on another device.
    """
    if attn_mask is None:
        return None
    if not isinstance(attn_mask, Tensor):
        raise TypeError(f"attn_mask must be a torch.Tensor or None, got {type(attn_mask).__name__}")
    if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
        raise TypeError(
            "attn_mask must be boolean (True = may attend) or floating (additive), "
            f"got {attn_mask.dtype}"
        )
    target = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    shape = _shape(attn_mask)
    if len(shape) > 4 or any(
        size not in (1, full) for size, full in zip(reversed(shape), reversed(target), strict=False)
    ):
        raise ValueError(
            f"attn_mask of shape {shape} does not broadcast to (B, H, T, S) = {target}; "
            "each dim must be 1 or the full size"
        )
    if attn_mask.device != q.device:
        raise ValueError(f"attn_mask must be on q's device {q.device}, got {attn_mask.device}")
    while attn_mask.dim() < 4:
        attn_mask = attn_mask.unsqueeze(0)
    return attn_mask


def bthd(x: Tensor) -> Tensor:
    """``(B, H, T, D)`` -> ``(B, T, H, D)`` view for flash-attn/xformers, copied only if needed.

    Both libraries need the last dim contiguous; any other strides are accepted.
    """
    x = x.transpose(1, 2)
    return x if x.stride(-1) == 1 else x.contiguous()
