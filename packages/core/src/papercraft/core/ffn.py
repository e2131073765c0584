"""SwiGLU feed-forward block.

Implements the SwiGLU variant of Shazeer (2020), "GLU Variants Improve Transformer", Eq. 6:
``FFN_SwiGLU(x) = (Swish₁(x W) ⊗ x V) W₂`` — here ``down_proj(silu(gate_proj(x)) * up_proj(x))``.
The submodule names follow Hugging Face's ``LlamaMLP`` (``gate_proj``, ``up_proj``, ``down_proj``),
so its weights load by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SwiGLU"]


class SwiGLU(nn.Module):
    """Gated feed-forward block ``down_proj(silu(gate_proj(x)) * up_proj(x))``.

    Args:
        dim (int): model (input and output) dimension.
        hidden_dim (int): inner dimension of the gate and up projections.
        bias (bool): give the three projections a bias. Default: False.

    Raises:
        ValueError: if ``dim`` or ``hidden_dim`` is not a positive int.
    """

    def __init__(self, dim: int, hidden_dim: int, *, bias: bool = False) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("hidden_dim", hidden_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.dim = dim
        self.hidden_dim = hidden_dim
        self.gate_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.up_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.down_proj = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x (Tensor): shape ``(..., dim)``.

        Returns:
            Tensor: shape ``(..., dim)``.

        Raises:
            ValueError: if ``x``'s last dim is not ``dim``.
        """
        if x.ndim < 1 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (..., {self.dim}), got {tuple(x.shape)}")
        gate = self.gate_proj(x)  # (..., hidden)
        up = self.up_proj(x)  # (..., hidden)
        if torch.is_grad_enabled() and (gate.requires_grad or up.requires_grad):
            return self.down_proj(F.silu(gate) * up)  # (..., dim)
        # inference: reuse the gate buffer instead of allocating two more (..., hidden) tensors
        return self.down_proj(F.silu(gate, inplace=True).mul_(up))  # (..., dim)
