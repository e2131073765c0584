"""Top-k routing of sub-tokens to experts: routers, expert capacity and the auxiliary losses.

Implements the gating of Multi-Head Mixture-of-Experts (Wu et al., 2024, arXiv 2404.15045,
Section 3, Eq. 3-4): every sub-token is scored against ``E`` experts, a softmax turns the scores
into gates, and the ``top_k`` best experts process it. Two routers:

- ``"softmax"``: a linear score ``x W_r`` (Shazeer et al., 2017; GShard).
- ``"xmoe"``: the X-MoE router (Chi et al., 2022, "On the Representation Collapse of Sparse
  Mixture of Experts", Section 3) used by the official MH-MoE code: project the sub-token to a
  ``router_dim``-dimensional space, L2-normalise it and the expert embeddings (renormalised to
  norm 1.5 during training, as the official code does) and score by cosine similarity divided
  by a temperature (paper Table 9: 0.3).

Capacity (GShard, Lepikhin et al., 2020, Section 2.2; MH-MoE Section 3):
``capacity = ceil(capacity_factor · top_k · ceil(S / E))`` assignments per expert, ``S`` the
number of real (non-padded) sub-tokens. Over-capacity assignments are dropped in priority order:
all first choices before any second choice, and within one choice by sub-token position (the
GShard / tutel order). Dropped assignments contribute 0 to the output.

Losses, over real sub-tokens only: the load-balancing loss of GShard / Switch Transformer
(Fedus et al., 2021, Eq. 4), ``E · Σ_e mean_gate_e · frac_top1_e`` (1 under uniform routing,
``E`` when all routing collapses onto one expert), and the router z-loss of ST-MoE (Zoph et al.,
2022, Eq. 5), ``mean(logsumexp(logits)²)``.

Router logits and gates are computed in at least float32 (float64 stays float64) whatever the
model's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "RouterKind",
    "Routing",
    "TopKRouter",
    "apply_capacity",
    "expert_capacity",
    "load_balancing_loss",
    "router_z_loss",
    "select_topk",
]

RouterKind = Literal["softmax", "xmoe"]
_ROUTER_KINDS: tuple[str, ...] = get_args(RouterKind)

#: norm the X-MoE expert embeddings are renormalised to (official MH-MoE / X-MoE code).
XMOE_EXPERT_NORM = 1.5


@dataclass
class Routing:
    """The routing decision for ``S`` sub-tokens.

    Args:
        expert_index (Tensor): ``(S, k)`` long, the chosen experts per sub-token, best first.
        gates (Tensor): ``(S, k)`` float, combine weights (0 for padded sub-tokens).
        keep (Tensor): ``(S, k)`` bool, False where the assignment was dropped by capacity or the
            sub-token is padding.
        valid (Tensor): ``(S,)`` bool, True for real (non-padded) sub-tokens.
        router_logits (Tensor): ``(S, E)`` router scores (at least float32) (before the softmax).
        num_experts (int): number of experts ``E``.
        capacity (int | None): per-expert capacity that was applied; None when dropless.
        router_probs (Tensor | None): ``(S, E)`` softmax of ``router_logits`` when the router
            already computed it (the losses reuse it). Default: None
        all_valid (bool): every sub-token is real (the losses then skip the masking copy).
            Default: False
    """

    expert_index: Tensor
    gates: Tensor
    keep: Tensor
    valid: Tensor
    router_logits: Tensor
    num_experts: int
    capacity: int | None = None
    router_probs: Tensor | None = None
    all_valid: bool = False

    @property
    def num_tokens(self) -> int:
        """int: number of sub-tokens ``S`` (padded ones included)."""
        return int(self.expert_index.shape[0])

    @property
    def top_k(self) -> int:
        """int: number of experts chosen per sub-token."""
        return int(self.expert_index.shape[1])

    @property
    def dropped_fraction(self) -> float:
        """float: share of the assignments of real sub-tokens dropped by capacity (0 if none)."""
        total = int(self.valid.sum()) * self.top_k
        if total == 0:
            return 0.0
        kept = int((self.keep & self.valid[:, None]).sum())
        return 1.0 - kept / total


class TopKRouter(nn.Module):
    """Score sub-tokens against experts and pick the ``top_k`` best.

    Args:
        dim (int): input width (``d/h`` in MH-MoE).
        num_experts (int): number of experts ``E``.
        top_k (int): experts per sub-token, ``1 <= top_k <= num_experts``.
        kind (RouterKind): ``"softmax"`` (linear scores) or ``"xmoe"`` (low-dim cosine scores).
            Default: "softmax".
        router_dim (int): width of the X-MoE projection (``xmoe`` only). Default: 16.
        temperature (float): logits are divided by it (the X-MoE paper and MH-MoE Table 9 use
            0.3 with ``xmoe``). Default: 1.0.
        normalize_topk (bool): renormalise the ``top_k`` gates of a sub-token to sum to 1. Not
            applied when ``top_k == 1``: the single gate would always be 1 and the router would
            get no gradient from the task loss (Switch / GShard top-1 keep the raw softmax
            probability). Default: True.

    Raises:
        ValueError: on a non-positive size, ``top_k`` out of range, an unknown ``kind`` or a
            non-positive ``temperature``.
    """

    def __init__(
        self,
        dim: int,
        num_experts: int,
        top_k: int,
        *,
        kind: RouterKind = "softmax",
        router_dim: int = 16,
        temperature: float = 1.0,
        normalize_topk: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (
            ("dim", dim),
            ("num_experts", num_experts),
            ("top_k", top_k),
            ("router_dim", router_dim),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if top_k > num_experts:
            raise ValueError(f"top_k must be <= num_experts ({num_experts}), got {top_k}")
        if kind not in _ROUTER_KINDS:
            raise ValueError(f"kind must be one of {_ROUTER_KINDS}, got {kind!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise ValueError(f"temperature must be a positive float, got {temperature!r}")
        if not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be a positive float, got {temperature!r}")
        self.dim = dim
        self.num_experts = num_experts
        self.top_k = top_k
        self.kind: RouterKind = kind
        self.router_dim = router_dim
        self.temperature = float(temperature)
        self.normalize_topk = normalize_topk
        self.weight: nn.Parameter | None
        self.proj: nn.Linear | None
        self.expert_embeddings: nn.Parameter | None
        if kind == "softmax":
            self.weight = nn.Parameter(torch.empty(num_experts, dim))
            self.register_module("proj", None)
            self.register_parameter("expert_embeddings", None)
        else:
            self.register_parameter("weight", None)
            self.proj = nn.Linear(dim, router_dim, bias=False)
            self.expert_embeddings = nn.Parameter(torch.empty(num_experts, router_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise scores: ``N(0, 0.02²)`` for the linear router; for X-MoE an orthogonal
        projection (as the official code) and expert embeddings ``N(0, 0.32²)`` renormalised to
        norm 1.5."""
        if self.weight is not None:
            nn.init.normal_(self.weight, std=0.02)
        if self.proj is not None and self.expert_embeddings is not None:
            nn.init.orthogonal_(self.proj.weight, gain=0.1)
            nn.init.normal_(self.expert_embeddings, std=0.32)
            self._renorm_expert_embeddings()

    @torch.no_grad()
    def _renorm_expert_embeddings(self) -> None:
        # Through ``.data``: the scores use the L2-normalised embeddings, so the rescale changes no
        # forward value, and it must not bump the parameter's version (a graph still waiting for
        # its backward, e.g. two forwards before one backward, would otherwise fail).
        emb = self.expert_embeddings
        assert emb is not None
        norm = emb.data.norm(p=2.0, dim=1, keepdim=True).clamp_min(1e-6)
        emb.data.mul_(XMOE_EXPERT_NORM / norm)

    def logits(self, x: Tensor) -> Tensor:
        """Router scores in float32.

        Args:
            x (Tensor): shape ``(S, dim)``.

        Returns:
            Tensor: shape ``(S, num_experts)``, at least float32, already divided by ``temperature``.
        """
        dtype = torch.promote_types(x.dtype, torch.float32)
        if self.weight is not None:
            scores = F.linear(x.to(dtype), self.weight.to(dtype))
        else:
            assert self.proj is not None
            assert self.expert_embeddings is not None
            if self.training:
                # the official code renormalises W_g in place at every training step
                self._renorm_expert_embeddings()
            reduced = F.normalize(self.proj(x).to(dtype), p=2.0, dim=-1, eps=1e-4)
            experts = F.normalize(self.expert_embeddings.to(dtype), p=2.0, dim=-1, eps=1e-4)
            scores = reduced @ experts.t()  # cosine similarity in [-1, 1]
        return scores if self.temperature == 1.0 else scores / self.temperature

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Routing:
        """Route sub-tokens (no capacity; see :func:`apply_capacity`).

        Args:
            x (Tensor): shape ``(S, dim)``.
            valid (Tensor | None): ``(S,)`` bool, True for real sub-tokens; None means all are
                real. Default: None.

        Returns:
            Routing: ``keep`` equals ``valid`` for every choice; padded sub-tokens get gate 0.

        Raises:
            ValueError: if ``x`` is not ``(S, dim)`` or ``valid`` is not a bool ``(S,)`` tensor.
        """
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (S, {self.dim}), got {tuple(x.shape)}")
        num = x.shape[0]
        all_valid = valid is None
        if valid is None:
            valid = torch.ones(num, dtype=torch.bool, device=x.device)
        elif valid.dtype != torch.bool or tuple(valid.shape) != (num,):
            raise ValueError(
                f"valid must be a bool tensor of shape ({num},), got {valid.dtype} {tuple(valid.shape)}"
            )
        logits = self.logits(x)  # (S, E) float32
        probs = logits.softmax(dim=-1)
        top_p, top_i = select_topk(probs, self.top_k)  # (S, k), best first
        if self.normalize_topk and self.top_k > 1:
            top_p = top_p / top_p.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(top_p.dtype).tiny)
        keep = valid[:, None].expand(num, self.top_k).clone()
        gates = top_p if all_valid else torch.where(keep, top_p, torch.zeros_like(top_p))
        return Routing(
            expert_index=top_i,
            gates=gates,
            keep=keep,
            valid=valid,
            router_logits=logits,
            num_experts=self.num_experts,
            capacity=None,
            router_probs=probs,
            all_valid=all_valid,
        )

    def extra_repr(self) -> str:
        """Summarise the router."""
        text = (
            f"dim={self.dim}, num_experts={self.num_experts}, top_k={self.top_k}, kind={self.kind}"
        )
        if self.kind == "xmoe":
            text += f", router_dim={self.router_dim}"
        return text + f", temperature={self.temperature}"


#: on CPU, ``top_k`` up to this many is selected by repeated row maxima (≈2× faster than
#: ``torch.topk`` at 160 experts, top-4); larger ``k`` uses ``torch.topk``.
ITERATIVE_TOPK_MAX_K = 4


def select_topk(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` largest scores of every row and their columns, best first.

    Equal to ``scores.topk(k, dim=-1)`` up to the order of exactly tied scores (here the lower
    column comes first). On CPU with ``k <= ITERATIVE_TOPK_MAX_K`` it takes ``k`` row maxima,
    masking each winner, which is faster than ``torch.topk``'s per-row selection for the few
    winners MoE routing needs; the values are gathered from ``scores``, so gradients flow to
    them as through ``topk``.

    Args:
        scores (Tensor): ``(S, E)``.
        k (int): ``1 <= k <= E``.

    Returns:
        tuple[Tensor, Tensor]: values ``(S, k)`` and long column indices ``(S, k)``.
    """
    if scores.device.type != "cpu" or k > ITERATIVE_TOPK_MAX_K:
        values, index = scores.topk(k, dim=-1)
        return values, index
    with torch.no_grad():
        work = scores.detach()
        picks = []
        for j in range(k):
            col = work.argmax(dim=-1, keepdim=True) if k == 1 else work.max(-1, keepdim=True)[1]
            picks.append(col)
            if j + 1 < k:
                if j == 0:
                    work = work.clone()
                work.scatter_(1, col, float("-inf"))
        index = picks[0] if k == 1 else torch.cat(picks, dim=1)
    return scores.gather(1, index), index


def expert_capacity(
    num_valid: int, num_experts: int, top_k: int, capacity_factor: float | None
) -> int | None:
    """Per-expert capacity ``ceil(capacity_factor · top_k · ceil(num_valid / num_experts))``.

    Args:
        num_valid (int): number of real sub-tokens ``S``.
        num_experts (int): number of experts ``E``.
        top_k (int): experts per sub-token.
        capacity_factor (float | None): slack over a perfectly even load; None or ``<= 0``
            disables capacity (dropless routing).

    Returns:
        int | None: the capacity, or None when dropless.

    Raises:
        ValueError: on a negative ``num_valid``, non-positive ``num_experts``/``top_k`` or a
            non-finite ``capacity_factor``.
    """
    if isinstance(num_valid, bool) or not isinstance(num_valid, int) or num_valid < 0:
        raise ValueError(f"num_valid must be a non-negative int, got {num_valid!r}")
    for name, value in (("num_experts", num_experts), ("top_k", top_k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if capacity_factor is None:
        return None
    if isinstance(capacity_factor, bool) or not isinstance(capacity_factor, (int, float)):
        raise ValueError(f"capacity_factor must be a float or None, got {capacity_factor!r}")
    if not math.isfinite(capacity_factor):
        raise ValueError(f"capacity_factor must be finite, got {capacity_factor!r}")
    if capacity_factor <= 0:
        return None
    per_expert = -(-num_valid // num_experts)  # ceil(S / E)
    return math.ceil(capacity_factor * top_k * per_expert)


def apply_capacity(routing: Routing, capacity: int | None) -> Routing:
    """Drop the assignments over ``capacity`` per expert.

    Priority: every first choice (``k = 0``) of every sub-token comes before any second choice,
    and so on; within one choice, lower sub-token positions come first (GShard / tutel order).
    Assignments already not kept (padding) take no slot. Uses one stable sort, no Python loop.

    Args:
        routing (Routing): routing without (or with a looser) capacity.
        capacity (int | None): max assignments per expert; None returns ``routing`` unchanged.

    Returns:
        Routing: a copy with ``keep`` (and the zeroed ``gates``) updated and ``capacity`` set.

    Raises:
        ValueError: if ``capacity`` is negative or not an int.
    """
    if capacity is None:
        return routing
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
        raise ValueError(f"capacity must be a non-negative int or None, got {capacity!r}")
    num, k = routing.expert_index.shape
    num_experts = routing.num_experts
    # choice-major order: flat position p = choice · S + sub-token
    expert = routing.expert_index.t().reshape(-1)
    keep = routing.keep.t().reshape(-1)
    key = torch.where(keep, expert, torch.full_like(expert, num_experts))  # non-kept sort last
    order = torch.sort(key, stable=True).indices
    sorted_key = key[order]
    counts = torch.bincount(key, minlength=num_experts + 1)
    starts = torch.cumsum(counts, 0) - counts  # first sorted slot of every expert
    rank_sorted = torch.arange(order.numel(), device=order.device) - starts[sorted_key]
    rank = torch.empty_like(rank_sorted)
    rank[order] = rank_sorted  # slot of every assignment inside its expert's queue
    new_keep = (keep & (rank < capacity)).reshape(k, num).t()
    gates = torch.where(new_keep, routing.gates, torch.zeros_like(routing.gates))
    return replace(routing, keep=new_keep, gates=gates, capacity=capacity)


def _as_float(t: Tensor) -> Tensor:
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _valid_logits(routing: Routing) -> Tensor:
    logits = _as_float(routing.router_logits)
    return logits if routing.all_valid else logits[routing.valid]


def load_balancing_loss(routing: Routing) -> Tensor:
    """GShard / Switch load-balancing loss ``E · Σ_e mean_gate_e · frac_top1_e``.

    ``mean_gate_e`` is the mean softmax probability of expert ``e`` and ``frac_top1_e`` the
    share of sub-tokens whose first choice is ``e``, both over real sub-tokens only. It equals 1
    when routing is uniform and ``E`` when every sub-token goes to the same expert with
    probability 1. Only ``mean_gate`` carries a gradient.

    Args:
        routing (Routing): the routing of one layer.

    Returns:
        Tensor: scalar, at least float32 (0, still attached to the logits, when no sub-token is real).
    """
    probs = routing.router_probs
    if probs is None or probs.dtype != _as_float(routing.router_logits).dtype:
        probs = _as_float(routing.router_logits).softmax(dim=-1)
    if not routing.all_valid:
        probs = probs[routing.valid]
    if probs.shape[0] == 0:
        return _as_float(routing.router_logits).sum() * 0.0
    mean_gate = probs.mean(dim=0)  # (E,)
    top1 = routing.expert_index[:, 0]
    if not routing.all_valid:
        top1 = top1[routing.valid]
    frac = torch.bincount(top1, minlength=routing.num_experts).to(mean_gate.dtype) / top1.numel()
    return routing.num_experts * (mean_gate * frac).sum()


def router_z_loss(routing: Routing) -> Tensor:
    """ST-MoE router z-loss ``mean(logsumexp(logits)²)`` over real sub-tokens.

    Args:
        routing (Routing): the routing of one layer.

    Returns:
        Tensor: scalar, at least float32 (0, still attached to the logits, when no sub-token is real).
    """
    logits = _valid_logits(routing)
    if logits.shape[0] == 0:
        return _as_float(routing.router_logits).sum() * 0.0
    return torch.logsumexp(logits, dim=-1).square().mean()
