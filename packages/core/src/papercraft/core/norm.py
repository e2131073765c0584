"""Root-mean-square layer normalisation (RMSNorm).

Implements Zhang & Sennrich (2019), "Root Mean Square Layer Normalization", Eq. 4:
``y = x / RMS(x) · g`` with ``RMS(x) = sqrt(mean(x²) + eps)`` over the last dimension — LayerNorm
without re-centring and without bias. The statistics and the product are computed in (at least)
fp32 and the result is cast back to the input's dtype once, so bf16/fp16 inputs lose no precision
to intermediate rounding. With ``weight=None`` the gain is omitted (e.g. YOCO's per-head norm).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["RMSNorm", "rms_norm"]


def _check_eps(eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < math.inf:
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    return float(eps)


def rms_norm(x: Tensor, weight: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    """Normalise ``x`` by its root mean square over the last dimension.

    Args:
        x (Tensor): input, shape ``(..., dim)``, floating.
        weight (Tensor | None): gain ``g``, shape ``(dim,)``. Default: None (no gain).
        eps (float): added to the mean square before the square root. Default: 1e-6.

    Returns:
        Tensor: same shape and dtype as ``x``.

    Raises:
        ValueError: if ``x`` is not a floating tensor with at least 1 dim, ``weight`` does not have
            shape ``(dim,)``, or ``eps`` is not a positive number.
    """
    eps = _check_eps(eps)
    if x.ndim < 1 or not x.is_floating_point():
        raise ValueError(
            f"x must be a floating tensor of shape (..., dim), got {x.dtype} with shape {tuple(x.shape)}"
        )
    if weight is not None and (weight.ndim != 1 or weight.shape[0] != x.shape[-1]):
        raise ValueError(
            f"weight must have shape ({x.shape[-1]},) to match x's last dim, got {tuple(weight.shape)}"
        )
    compute = torch.promote_types(x.dtype, torch.float32)
    xc = x.to(compute)
    y = xc * torch.rsqrt(xc.pow(2).mean(dim=-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.to(compute)
    return y.to(x.dtype)


class RMSNorm(nn.Module):
    """RMSNorm over the last dimension, with an optional learned gain named ``weight``.

    The parameter name matches Hugging Face's ``LlamaRMSNorm``, so its state dicts load as they are.

    Args:
        dim (int): size of the normalised (last) dimension.
        eps (float): added to the mean square before the square root. Default: 1e-6.
        elementwise_affine (bool): learn a gain ``weight`` of shape ``(dim,)``, initialised to ones.
            Default: True.

    Raises:
        ValueError: if ``dim`` is not a positive int or ``eps`` is not a positive number.
    """

    weight: nn.Parameter | None

    def __init__(self, dim: int, *, eps: float = 1e-6, elementwise_affine: bool = True) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.dim = dim
        self.eps = _check_eps(eps)
        self.elementwise_affine = bool(elementwise_affine)
        if self.elementwise_affine:
            self.weight = nn.Parameter(torch.ones(dim))
        else:
            self.register_parameter("weight", None)

    def reset_parameters(self) -> None:
        """Set the gain back to ones (no-op without a gain)."""
        if self.weight is not None:
            nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x``.

        Args:
            x (Tensor): shape ``(..., dim)``.

        Returns:
            Tensor: same shape and dtype as ``x``.

        Raises:
            ValueError: if ``x``'s last dim is not ``dim``.
        """
        if x.ndim < 1 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (..., {self.dim}), got {tuple(x.shape)}")
        return rms_norm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
