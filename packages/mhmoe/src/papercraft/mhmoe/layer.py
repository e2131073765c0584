"""The Multi-Head Mixture-of-Experts layer (MH-MoE) and plain sparse MoE as its ``h = 1`` case.

Implements Wu et al., 2024, "Multi-Head Mixture-of-Experts" (arXiv 2404.15045), Section 3:

1. multi-head projection ``X̂ = X W_headᵀ + b`` (``d × d``; Eq. 2);
2. split every token into ``h`` sub-tokens of width ``d/h`` — sub-token ``j`` of token ``i`` is
   row ``i·h + j`` and inherits the token's padding flag;
3. route the sub-tokens top-k (:class:`~papercraft.mhmoe.routing.TopKRouter`) with a per-expert
   capacity (:func:`~papercraft.mhmoe.routing.expert_capacity`), dropped sub-tokens giving 0;
4. run SwiGLU experts ``d/h → expert_hidden → d/h`` (:class:`~papercraft.mhmoe.experts.SwiGLUExperts`);
5. merge the ``h`` outputs back into ``(N, d)`` and apply ``W_merge`` (``d × d``; Eq. 5).

The residual connection stays in the surrounding block. With ``num_heads = 1`` and no head /
merge projections the layer is a plain top-k sparse MoE (:class:`SparseMoE`). The layer returns
its load-balancing loss (GShard / Switch) and router z-loss (ST-MoE) computed over real
sub-tokens, because a loss computed outside from stacked router logits (Mixtral's
``load_balancing_loss_func``) cannot tell ``B·T·h`` sub-token rows apart from the padding mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from papercraft.mhmoe.dispatch import DISPATCHERS
from papercraft.mhmoe.experts import SwiGLUExperts
from papercraft.mhmoe.routing import (
    RouterKind,
    Routing,
    TopKRouter,
    apply_capacity,
    expert_capacity,
    load_balancing_loss,
    router_z_loss,
)

__all__ = ["MHMoE", "MoEOutput", "SparseMoE"]


@dataclass
class MoEOutput:
    """What an MH-MoE layer returns.

    Args:
        hidden_states (Tensor): the layer output, same shape as the input (0 at padded tokens).
        aux_loss (Tensor): load-balancing loss (unscaled; 1 under uniform routing).
        z_loss (Tensor): router z-loss (unscaled); 0 when the layer's ``z_loss_coef`` is 0 (then
            not computed).
        routing (Routing): the routing of the sub-tokens (after capacity).
        loss (Tensor): ``aux_loss_coef · aux_loss + z_loss_coef · z_loss``, to add to the LM loss.
    """

    hidden_states: Tensor
    aux_loss: Tensor
    z_loss: Tensor
    routing: Routing
    loss: Tensor


def _check_coef(name: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite float >= 0, got {value!r}")


class MHMoE(nn.Module):
    """Multi-Head Mixture-of-Experts layer.

    Args:
        d_model (int): token width ``d``; must be divisible by ``num_heads``.
        num_experts (int): number of experts ``E``.
        num_heads (int): sub-tokens per token ``h``; every expert works on width ``d/h``.
            Default: 4.
        top_k (int): experts per sub-token. Default: 2.
        expert_hidden (int | None): inner width of every expert; None gives
            ``4 · d_model // num_heads``, the usual 4× expansion of the expert's own input width
            ``d/h`` (per-token expert FLOPs are then ``1/h`` of an SMoE with the same ``top_k``; use
            :mod:`papercraft.mhmoe.parity` to match a budget). Default: None.
        capacity_factor (float | None): expert capacity is
            ``ceil(capacity_factor · top_k · ceil(S/E))`` for ``S`` real sub-tokens; None or
            ``<= 0`` routes dropless. Default: 1.0.
        router (RouterKind): ``"softmax"`` or ``"xmoe"``. Default: "softmax".
        router_dim (int): X-MoE projection width (``xmoe`` only). Default: 16.
        gate_temperature (float): router logits are divided by it (paper, xmoe: 0.3).
            Default: 1.0.
        aux_loss_coef (float): weight of the load-balancing loss in ``MoEOutput.loss``.
            Default: 1e-2.
        z_loss_coef (float): weight of the router z-loss in ``MoEOutput.loss``. Default: 0.0.
        dispatch (str): a key of :data:`~papercraft.mhmoe.dispatch.DISPATCHERS`
            (``"loop"``, ``"grouped"``, ``"dense"``). Default: "grouped".
        head_projection (bool): use the ``W_head`` / ``W_merge`` projections (``nn.Identity``
            otherwise). ``W_head``: xavier-uniform with gain ``1/√2``; ``W_merge``:
            xavier-uniform; both biases start at 0. Default: True.
        bias (bool): give ``W_head`` and ``W_merge`` a bias. Default: True.

    Raises:
        ValueError: if a size is not a positive int, ``d_model % num_heads != 0``,
            ``top_k > num_experts``, a coefficient is negative or ``dispatch`` / ``router`` is
            unknown.
    """

    def __init__(
        self,
        d_model: int,
        num_experts: int,
        *,
        num_heads: int = 4,
        top_k: int = 2,
        expert_hidden: int | None = None,
        capacity_factor: float | None = 1.0,
        router: RouterKind = "softmax",
        router_dim: int = 16,
        gate_temperature: float = 1.0,
        aux_loss_coef: float = 1e-2,
        z_loss_coef: float = 0.0,
        dispatch: str = "grouped",
        head_projection: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (
            ("d_model", d_model),
            ("num_experts", num_experts),
            ("num_heads", num_heads),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if d_model % num_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        if expert_hidden is None:
            expert_hidden = max(1, 4 * d_model // num_heads)
        if capacity_factor is not None and (
            isinstance(capacity_factor, bool)
            or not isinstance(capacity_factor, (int, float))
            or not math.isfinite(capacity_factor)
        ):
            raise ValueError(
                f"capacity_factor must be a finite float or None, got {capacity_factor!r}"
            )
        _check_coef("aux_loss_coef", aux_loss_coef)
        _check_coef("z_loss_coef", z_loss_coef)
        self._check_dispatch(dispatch)
        self.d_model = d_model
        self.num_experts = num_experts
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.top_k = top_k
        self.capacity_factor = capacity_factor
        self.aux_loss_coef = float(aux_loss_coef)
        self.z_loss_coef = float(z_loss_coef)
        self.dispatch = dispatch
        self.router = TopKRouter(
            self.head_dim,
            num_experts,
            top_k,
            kind=router,
            router_dim=router_dim,
            temperature=gate_temperature,
        )
        self.experts = SwiGLUExperts(num_experts, self.head_dim, expert_hidden)
        self.head_proj: nn.Module
        self.merge_proj: nn.Module
        if head_projection:
            head = nn.Linear(d_model, d_model, bias=bias)
            merge = nn.Linear(d_model, d_model, bias=bias)
            nn.init.xavier_uniform_(head.weight, gain=1.0 / math.sqrt(2.0))
            nn.init.xavier_uniform_(merge.weight)
            for lin in (head, merge):
                if lin.bias is not None:
                    nn.init.zeros_(lin.bias)
            self.head_proj, self.merge_proj = head, merge
        else:
            self.head_proj, self.merge_proj = nn.Identity(), nn.Identity()

    @staticmethod
    def _check_dispatch(name: str) -> None:
        if name not in DISPATCHERS:
            raise ValueError(f"dispatch must be one of {tuple(DISPATCHERS)}, got {name!r}")

    def set_dispatch(self, name: str) -> None:
        """Switch the dispatch implementation (``"loop"``, ``"grouped"`` or ``"dense"``).

        Args:
            name (str): a key of :data:`~papercraft.mhmoe.dispatch.DISPATCHERS`.

        Raises:
            ValueError: if ``name`` is unknown.
        """
        self._check_dispatch(name)
        self.dispatch = name

    def split_heads(self, x: Tensor) -> Tensor:
        """``(N, d) → (N·h, d/h)``; sub-token ``j`` of token ``i`` is row ``i·h + j``."""
        return x.reshape(x.shape[0] * self.num_heads, self.head_dim)

    def merge_heads(self, x: Tensor) -> Tensor:
        """``(N·h, d/h) → (N, d)``, the inverse of :meth:`split_heads`."""
        return x.reshape(x.shape[0] // self.num_heads, self.d_model)

    def _route(self, sub: Tensor, sub_valid: Tensor, *, all_valid: bool) -> Routing:
        """Top-k routing of the sub-tokens, then the capacity over the real ones."""
        routing: Routing = self.router(sub, sub_valid)
        if self.capacity_factor is not None and self.capacity_factor > 0:
            num_valid = sub.shape[0] if all_valid else int(sub_valid.sum())
            capacity = expert_capacity(
                num_valid, self.num_experts, self.top_k, self.capacity_factor
            )
            routing = apply_capacity(routing, capacity)
        return routing

    def _run_experts(self, sub: Tensor, routing: Routing) -> Tensor:
        """``Σ_k keep · gate · expert(sub)`` per sub-token (the expert-parallel layer overrides
        this step with its all-to-all exchange)."""
        out: Tensor = DISPATCHERS[self.dispatch](sub, routing, self.experts)
        return out

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> MoEOutput:
        """Apply the layer.

        Args:
            x (Tensor): ``(B, T, d_model)`` or ``(N, d_model)``.
            padding_mask (Tensor | None): bool, ``(B, T)`` or ``(N,)`` matching ``x``; True marks
                a real token. Padded tokens are not routed, take no capacity, get output 0 and
                no gradient, and are left out of the losses. Default: None (all real).

        Returns:
            MoEOutput: output of the same shape as ``x``, losses and routing.

        Raises:
            ValueError: on a wrong shape of ``x`` or ``padding_mask``.
        """
        if x.ndim not in (2, 3) or x.shape[-1] != self.d_model:
            raise ValueError(
                f"x must have shape (B, T, {self.d_model}) or (N, {self.d_model}), got {tuple(x.shape)}"
            )
        lead = tuple(x.shape[:-1])
        if padding_mask is not None and (
            padding_mask.dtype != torch.bool or tuple(padding_mask.shape) != lead
        ):
            raise ValueError(
                f"padding_mask must be a bool tensor of shape {lead}, got "
                f"{padding_mask.dtype} {tuple(padding_mask.shape)}"
            )
        tokens = x.reshape(-1, self.d_model)  # (N, d)
        num = tokens.shape[0]
        if padding_mask is None:
            valid = torch.ones(num, dtype=torch.bool, device=x.device)
        else:
            valid = padding_mask.reshape(-1).to(x.device)
        sub = self.split_heads(self.head_proj(tokens))  # (N·h, d/h)
        sub_valid = valid.repeat_interleave(self.num_heads)  # (N·h,)
        routing = self._route(sub, sub_valid, all_valid=padding_mask is None)
        expert_out = self._run_experts(sub, routing)  # (N·h, d/h)
        out = self.merge_proj(self.merge_heads(expert_out))  # (N, d)
        if padding_mask is not None:
            out = torch.where(valid[:, None], out, torch.zeros_like(out))
        aux = load_balancing_loss(routing)
        # the z-loss is only computed when it is used (an (S, E) logsumexp is not free)
        z = router_z_loss(routing) if self.z_loss_coef > 0 else aux.new_zeros(())
        loss = self.aux_loss_coef * aux + self.z_loss_coef * z
        return MoEOutput(
            hidden_states=out.reshape(x.shape),
            aux_loss=aux,
            z_loss=z,
            routing=routing,
            loss=loss,
        )

    def extra_repr(self) -> str:
        """Summarise the layer's routing settings."""
        return (
            f"d_model={self.d_model}, num_experts={self.num_experts}, num_heads={self.num_heads}, "
            f"top_k={self.top_k}, capacity_factor={self.capacity_factor}, dispatch={self.dispatch!r}"
        )


class SparseMoE(MHMoE):
    """Plain top-k sparse MoE: :class:`MHMoE` with ``num_heads = 1`` and no head/merge projections.

    Args:
        d_model (int): token width (also the experts' width).
        num_experts (int): number of experts.
        **kwargs: any keyword of :class:`MHMoE` except ``num_heads`` and ``head_projection``
            (``expert_hidden`` defaults to ``4 · d_model``).

    Raises:
        ValueError: if ``num_heads`` or ``head_projection`` is passed, or as :class:`MHMoE`.
    """

    def __init__(self, d_model: int, num_experts: int, **kwargs: object) -> None:
        for name in ("num_heads", "head_projection"):
            if name in kwargs:
                raise ValueError(f"SparseMoE fixes {name}; use MHMoE to set it")
        super().__init__(d_model, num_experts, num_heads=1, head_projection=False, **kwargs)  # type: ignore[arg-type]
