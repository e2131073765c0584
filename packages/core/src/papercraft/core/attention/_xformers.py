"""The ``xformers`` backend: ``xformers.ops.memory_efficient_attention``.

Memory-efficient attention (Rabe & Staats, 2021, "Self-attention does not need O(n²) memory")
from xformers. CUDA only (xformers has no CPU kernel for it), float16/bfloat16/float32.

- Causal masks use the bottom-right bias classes: ``LowerTriangularFromBottomRightMask`` and,
  with a window, ``LowerTriangularFromBottomRightLocalAttentionMask(W)`` (the ``W`` most recent
  keys, the query itself included, the same rule as here).
- A user ``attn_mask`` or a symmetric (non-causal) window is passed as a dense additive bias
  tensor of shape ``(B, H, T, S)``, allocated with its rows padded to a multiple of 8 elements
  as the kernels require; fully hidden rows are unmasked for the kernel and zeroed after.
- Grouped-query heads: xformers supports its 5-dim GQA layout for the forward pass only, so keys
  and values are repeated per query head (``repeat_interleave``) to keep gradients exact.

xformers is an optional dependency (``papercraft-core[cuda]``), imported on first use only.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from types import ModuleType

import torch
from torch import Tensor

from papercraft.core.attention import _masks
from papercraft.core.attention._inputs import bthd
from papercraft.core.attention._registry import AttentionBackend

__all__ = ["XFORMERS"]

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_NOT_INSTALLED = "xformers not installed (pip install 'papercraft-core[cuda]')"
_BIAS_ALIGNMENT = 8  # elements; covers the 16-byte alignment for 16-bit and 32-bit biases


@functools.cache
def _import_xformers() -> tuple[ModuleType | None, ModuleType | None, str]:
    """Import ``xformers.ops`` and its bias module once; None and the reason on failure."""
    try:
        ops = importlib.import_module("xformers.ops")
        bias = importlib.import_module("xformers.ops.fmha.attn_bias")
    except ModuleNotFoundError:
        return None, None, _NOT_INSTALLED
    except Exception as exc:  # a build for another torch/CUDA raises at import
        return None, None, f"xformers failed to import: {type(exc).__name__}: {exc}"
    return ops, bias, "available"


@functools.cache  # installed libraries and devices do not change within a process
def _xformers_availability() -> tuple[bool, str]:
    if importlib.util.find_spec("xformers") is None:  # looks, does not import
        return False, _NOT_INSTALLED
    if not torch.cuda.is_available():
        return False, "needs a CUDA device (none found)"
    ops, _, reason = _import_xformers()
    if ops is None:
        return False, reason
    return _probe_kernels(ops, device="cuda")


def _probe_kernels(ops: ModuleType, *, device: str) -> tuple[bool, str]:
    """Run one tiny attention call: a wheel built for another torch/CUDA/Python imports fine (it
    only warns) but has no kernels, and only a call tells."""
    try:
        probe = torch.zeros(1, 8, 1, 64, device=device, dtype=torch.float16)
        ops.memory_efficient_attention(probe, probe, probe)
    except Exception as exc:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        return False, (
            f"xformers is installed but its kernels cannot run here ({first}); "
            "see `python -m xformers.info`"
        )
    return True, "available"


def _xformers_supports(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool,
    window: int | None,
    attn_mask: Tensor | None,
) -> str | None:
    if not q.is_cuda:
        return f"needs CUDA tensors, got device {q.device}"
    if q.dtype not in _DTYPES:
        return f"needs float16, bfloat16 or float32 inputs, got {q.dtype}"
    return None


def _prefer_xformers(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool,
    window: int | None,
    attn_mask: Tensor | None,
) -> str | None:
    if window is not None and not causal:
        return "a symmetric window would need a dense (B, H, T, S) bias tensor"
    return None


def _aligned_bias(mask: Tensor, shape: tuple[int, int, int, int], dtype: torch.dtype) -> Tensor:
    """Materialize an additive mask as ``shape`` with rows padded to the kernel's alignment."""
    batch, heads, num_queries, num_keys = shape
    padded = -(-num_keys // _BIAS_ALIGNMENT) * _BIAS_ALIGNMENT
    storage = torch.empty(batch, heads, num_queries, padded, dtype=dtype, device=mask.device)
    bias = storage[..., :num_keys]
    bias.copy_(mask.expand(shape))
    return bias


def _xformers_forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool,
    window: int | None,
    scale: float,
    attn_mask: Tensor | None,
) -> Tensor:
    ops, bias_module, reason = _import_xformers()
    if ops is None or bias_module is None:
        raise RuntimeError(reason)
    batch, heads, num_queries, _ = q.shape
    num_keys = k.shape[2]
    groups = heads // k.shape[1]
    if groups > 1:
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)

    rows = None
    attn_bias: object
    if attn_mask is None and (causal or window is None):
        if not causal:
            attn_bias = None
        elif window is None:
            attn_bias = bias_module.LowerTriangularFromBottomRightMask()
        else:
            attn_bias = bias_module.LowerTriangularFromBottomRightLocalAttentionMask(window)
    else:
        position = _masks.visibility(
            _masks.query_positions(num_queries, num_keys, device=q.device),
            torch.arange(num_keys, device=q.device),
            causal=causal,
            window=window,
        )
        bool_or_bias = _masks.merge_masks(position, attn_mask, dtype=q.dtype)
        assert bool_or_bias is not None
        rows = _masks.empty_rows(bool_or_bias)
        bool_or_bias = _masks.unmask_rows(bool_or_bias, rows)
        if bool_or_bias.dtype == torch.bool:
            additive = torch.zeros(bool_or_bias.shape, dtype=q.dtype, device=q.device)
            additive = additive.masked_fill(~bool_or_bias, float("-inf"))
        else:
            additive = bool_or_bias
        attn_bias = _aligned_bias(additive, (batch, heads, num_queries, num_keys), q.dtype)

    out = ops.memory_efficient_attention(
        bthd(q),  # xformers' layout is (B, T, H, D)
        bthd(k),
        bthd(v),
        attn_bias=attn_bias,
        scale=scale,
    ).transpose(1, 2)  # (B, H, T, D)
    if rows is not None:
        out = out.masked_fill(rows, 0.0)
    return out


XFORMERS = AttentionBackend(
    name="xformers",
    priority=90,
    forward=_xformers_forward,
    availability=_xformers_availability,
    check=_xformers_supports,
    auto_check=_prefer_xformers,
    description="xformers memory_efficient_attention (CUDA, bottom-right causal/window biases)",
)
