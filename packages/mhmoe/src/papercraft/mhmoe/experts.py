"""A bank of SwiGLU experts with stacked weights, as used by the MH-MoE layer.

Multi-Head Mixture-of-Experts (Wu et al., 2024, arXiv 2404.15045, Section 3, step 4) runs every
sub-token of width ``d/h`` through a feed-forward expert ``d/h → hidden → d/h``. Here each expert is
the SwiGLU block of Shazeer (2020), Eq. 6: ``expert_e(x) = (silu(x W_gate[e]) ⊗ x W_up[e]) W_down[e]``.

The weights of all ``E`` experts are stored stacked (``w_gate``/``w_up``: ``(E, dim, hidden)``,
``w_down``: ``(E, hidden, dim)``, applied as ``x @ w``), so the dispatchers in
:mod:`papercraft.mhmoe.dispatch` can run all experts with one grouped or batched matmul instead of
a Python loop over ``nn.Linear`` modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SwiGLUExperts", "swiglu"]

#: standard deviation of the normal initialisation of every expert weight.
INIT_STD = 0.02


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def swiglu(
    x: Tensor,
    w_gate: Tensor,
    w_up: Tensor,
    w_down: Tensor,
    b_gate: Tensor | None = None,
    b_up: Tensor | None = None,
    b_down: Tensor | None = None,
) -> Tensor:
    """One SwiGLU expert: ``(silu(x W_gate + b_gate) ⊗ (x W_up + b_up)) W_down + b_down``.

    Args:
        x (Tensor): ``(n, dim)``.
        w_gate (Tensor): ``(dim, hidden)``.
        w_up (Tensor): ``(dim, hidden)``.
        w_down (Tensor): ``(hidden, dim)``.
        b_gate (Tensor | None): ``(hidden,)`` or None. Default: None.
        b_up (Tensor | None): ``(hidden,)`` or None. Default: None.
        b_down (Tensor | None): ``(dim,)`` or None. Default: None.

    Returns:
        Tensor: ``(n, dim)``.
    """
    gate = x @ w_gate if b_gate is None else torch.addmm(b_gate, x, w_gate)
    up = x @ w_up if b_up is None else torch.addmm(b_up, x, w_up)
    hidden = F.silu(gate) * up
    return hidden @ w_down if b_down is None else torch.addmm(b_down, hidden, w_down)


class SwiGLUExperts(nn.Module):
    """``num_experts`` independent SwiGLU feed-forward experts ``dim → hidden → dim``.

    Weights are initialised from ``N(0, 0.02²)`` (the GPT-2 / Llama convention used by the
    official MH-MoE code for expert FFNs); biases, when present, start at zero.

    Args:
        num_experts (int): number of experts ``E``.
        dim (int): input and output width of each expert (``d/h`` in MH-MoE).
        hidden (int): inner width of each expert.
        bias (bool): give the three projections of every expert a bias
            (``b_gate``/``b_up``: ``(E, hidden)``, ``b_down``: ``(E, dim)``). Default: False.

    Raises:
        ValueError: if ``num_experts``, ``dim`` or ``hidden`` is not a positive int.
    """

    def __init__(self, num_experts: int, dim: int, hidden: int, *, bias: bool = False) -> None:
        super().__init__()
        for name, value in (("num_experts", num_experts), ("dim", dim), ("hidden", hidden)):
            _check_positive_int(name, value)
        self.num_experts = num_experts
        self.dim = dim
        self.hidden = hidden
        self.w_gate = nn.Parameter(torch.empty(num_experts, dim, hidden))
        self.w_up = nn.Parameter(torch.empty(num_experts, dim, hidden))
        self.w_down = nn.Parameter(torch.empty(num_experts, hidden, dim))
        self.b_gate: nn.Parameter | None
        self.b_up: nn.Parameter | None
        self.b_down: nn.Parameter | None
        if bias:
            self.b_gate = nn.Parameter(torch.zeros(num_experts, hidden))
            self.b_up = nn.Parameter(torch.zeros(num_experts, hidden))
            self.b_down = nn.Parameter(torch.zeros(num_experts, dim))
        else:
            self.register_parameter("b_gate", None)
            self.register_parameter("b_up", None)
            self.register_parameter("b_down", None)
        self.reset_parameters()

    @property
    def has_bias(self) -> bool:
        """bool: whether the experts carry biases."""
        return self.b_gate is not None

    def reset_parameters(self) -> None:
        """Re-initialise weights from ``N(0, 0.02²)`` and biases to zero."""
        for weight in (self.w_gate, self.w_up, self.w_down):
            nn.init.normal_(weight, mean=0.0, std=INIT_STD)
        for b in (self.b_gate, self.b_up, self.b_down):
            if b is not None:
                nn.init.zeros_(b)

    def unbind_experts(self) -> list[tuple[Tensor, ...]]:
        """Per-expert views of the weights: ``[(w_gate[e], w_up[e], w_down[e], b_gate[e] | None,
        b_up[e] | None, b_down[e] | None) for e in range(E)]``.

        Made with one ``unbind`` per stacked parameter, so the backward of a loop over experts
        stacks the per-expert gradients once; indexing ``w_gate[e]`` per expert instead makes
        every expert's backward write a zero-filled gradient of the whole ``(E, dim, hidden)``
        stack.

        Returns:
            list[tuple[Tensor, ...]]: one 6-tuple per expert (biases None without ``bias``).
        """
        weights = [w.unbind(0) for w in (self.w_gate, self.w_up, self.w_down)]
        biases: list[tuple[Tensor | None, ...]] = [
            (None,) * self.num_experts if b is None else b.unbind(0)
            for b in (self.b_gate, self.b_up, self.b_down)
        ]
        return list(zip(*weights, *biases, strict=True))

    def expert_forward(self, e: int, x: Tensor) -> Tensor:
        """Run expert ``e`` on a batch of rows.

        Args:
            e (int): expert index in ``[0, num_experts)``.
            x (Tensor): shape ``(n, dim)``.

        Returns:
            Tensor: ``(silu(x W_gate[e] + b_gate[e]) * (x W_up[e] + b_up[e])) W_down[e] + b_down[e]``,
            shape ``(n, dim)``.

        Raises:
            ValueError: if ``e`` is out of range or ``x`` is not ``(n, dim)``.
        """
        if isinstance(e, bool) or not isinstance(e, int) or not 0 <= e < self.num_experts:
            raise ValueError(f"e must be an int in [0, {self.num_experts}), got {e!r}")
        if x.ndim != 2 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {tuple(x.shape)}")
        bias = [None if b is None else b[e] for b in (self.b_gate, self.b_up, self.b_down)]
        return swiglu(x, self.w_gate[e], self.w_up[e], self.w_down[e], *bias)

    def extra_repr(self) -> str:
        """Summarise the shape of the bank."""
        return (
            f"num_experts={self.num_experts}, dim={self.dim}, hidden={self.hidden}, "
            f"bias={self.has_bias}"
        )
