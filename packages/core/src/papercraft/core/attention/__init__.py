"""Attention with pluggable kernels: one function, one registry of backends.

:func:`attention` computes scaled dot-product attention (Vaswani et al., 2017, Eq. 1) over
grouped-query heads (Ainslie et al., 2023) with bottom-right-aligned causal masks, sliding
windows and boolean or additive masks. It runs on one of the registered backends:

========== ======== =============================================================
name       priority what
========== ======== =============================================================
flash      100      flash-attn 2 (CUDA, fp16/bf16, no ``attn_mask``)
xformers   90       xformers ``memory_efficient_attention`` (CUDA)
blockwise  80       sliding-window attention in query blocks, O(T·W) (any device);
                    picked automatically only for windows over long key ranges
sdpa       50       ``torch.nn.functional.scaled_dot_product_attention``
eager      0        float32 reference every other backend is tested against
========== ======== =============================================================

Choose with ``attention(..., backend="sdpa")``, the ``PAPERCRAFT_ATTENTION`` environment
variable, or let automatic selection take the first backend that is available and supports
the inputs. :func:`available_backends` says what is usable here and why the rest is not;
:func:`select_backend` says which backend a call would use.

Example::

    >>> import torch
    >>> from papercraft.core.attention import attention
    >>> q = torch.randn(1, 8, 16, 64)
    >>> kv = torch.randn(1, 2, 16, 64)
    >>> attention(q, kv, kv, window=4).shape
    torch.Size([1, 8, 16, 64])
"""

from __future__ import annotations

from papercraft.core.attention._blockwise import BLOCKWISE, blockwise_plan
from papercraft.core.attention._dispatch import ATTENTION_ENV_VAR, attention, select_backend
from papercraft.core.attention._eager import EAGER
from papercraft.core.attention._flash import FLASH
from papercraft.core.attention._registry import (
    AttentionBackend,
    AttentionKernel,
    BackendUnavailableError,
    SupportCheck,
    available_backends,
    get_backend,
    list_backends,
    register_backend,
    unregister_backend,
)
from papercraft.core.attention._sdpa import SDPA
from papercraft.core.attention._xformers import XFORMERS

__all__ = [
    "ATTENTION_ENV_VAR",
    "AttentionBackend",
    "AttentionKernel",
    "BackendUnavailableError",
    "SupportCheck",
    "attention",
    "available_backends",
    "blockwise_plan",
    "get_backend",
    "list_backends",
    "register_backend",
    "select_backend",
    "unregister_backend",
]

for _builtin in (FLASH, XFORMERS, BLOCKWISE, SDPA, EAGER):
    register_backend(_builtin, replace=True)
del _builtin
