"""The ``flash`` backend: flash-attn 2's ``flash_attn_func`` (Dao, 2023, "FlashAttention-2").

CUDA only, float16/bfloat16 only, head dim up to 256, Ampere or newer. It handles
grouped-query heads natively, aligns the causal mask bottom-right exactly like this package,
and takes the sliding window as ``window_size=(W - 1, 0)`` (causal) or ``(W - 1, W - 1)``
(symmetric). It has no arbitrary-mask input, so calls with ``attn_mask`` go elsewhere.
flash-attn is an optional dependency (``papercraft-core[cuda]``), imported on first use only.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from papercraft.core.attention._inputs import bthd
from papercraft.core.attention._registry import AttentionBackend

__all__ = ["FLASH"]

_MAX_HEAD_DIM = 256
_NOT_INSTALLED = "flash-attn not installed (pip install 'papercraft-core[cuda]')"


@functools.cache
def _import_flash() -> tuple[Callable[..., Any] | None, str]:
    """Import ``flash_attn_func`` once; returns it, or None and the reason it failed."""
    try:
        module = importlib.import_module("flash_attn")
    except ModuleNotFoundError:
        return None, _NOT_INSTALLED
    except Exception as exc:  # a broken CUDA build raises ImportError/OSError/RuntimeError
        return None, f"flash-attn failed to import: {type(exc).__name__}: {exc}"
    return module.flash_attn_func, "available"


@functools.cache  # installed libraries and devices do not change within a process
def _flash_availability() -> tuple[bool, str]:
    if importlib.util.find_spec("flash_attn") is None:  # looks, does not import
        return False, _NOT_INSTALLED
    if not torch.cuda.is_available():
        return False, "needs a CUDA device (none found)"
    func, reason = _import_flash()
    return func is not None, reason


def _flash_supports(
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
    if q.dtype not in (torch.float16, torch.bfloat16):
        return f"needs float16 or bfloat16 inputs, got {q.dtype}"
    if attn_mask is not None:
        return "flash-attn takes no attn_mask (only causal and window masking)"
    if q.shape[-1] > _MAX_HEAD_DIM:
        return f"head dim must be <= {_MAX_HEAD_DIM}, got {q.shape[-1]}"
    major, minor = torch.cuda.get_device_capability(q.device)
    if major < 8:
        return f"flash-attn 2 needs an Ampere or newer GPU (sm80+), got sm{major}{minor}"
    return None


def _flash_forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool,
    window: int | None,
    scale: float,
    attn_mask: Tensor | None,
) -> Tensor:
    func, reason = _import_flash()
    if func is None:
        raise RuntimeError(reason)
    if window is None:
        window_size = (-1, -1)
    elif causal:
        window_size = (window - 1, 0)
    else:
        window_size = (window - 1, window - 1)
    # flash-attn's layout is (B, T, H, D)
    out = func(
        bthd(q),
        bthd(k),
        bthd(v),
        softmax_scale=scale,
        causal=causal,
        window_size=window_size,
    )
    return out.transpose(1, 2)  # (B, H, T, D)


FLASH = AttentionBackend(
    name="flash",
    priority=100,
    forward=_flash_forward,
    availability=_flash_availability,
    check=_flash_supports,
    description="flash-attn 2 (CUDA, fp16/bf16, native GQA, bottom-right causal, windows)",
)
