"""DeepSpeed comparison mode: the same sparse MoE built with ``deepspeed.moe.layer.MoE``.

DeepSpeed's MoE layer (GShard-style ``TopKGate`` + ``MOELayer``, Rajbhandari et al., 2022,
"DeepSpeed-MoE", arXiv 2201.05596) is the usual peer of a top-k sparse MoE. This module builds one
with a SwiGLU expert of the same size as :class:`~papercraft.mhmoe.experts.SwiGLUExperts`, copies
the weights of a :class:`~papercraft.mhmoe.layer.SparseMoE` into it, and runs both side by side
(:func:`compare_with_deepspeed`), so that outputs are compared where they can be equal and speed
is compared everywhere. It runs on CPU in one process: with ``ep_size = 1`` DeepSpeed's layer
needs no process group.

What can be made equal:

- the expert weights (``W_gate``, ``W_up``, ``W_down``, copied transposed into ``nn.Linear``);
- the router: DeepSpeed's gate is ``softmax(x W_gᵀ)`` with an fp32 ``Linear(d, E, bias=False)``,
  the same as our ``"softmax"`` router at temperature 1 (its weight is copied); top-2 gates are
  renormalised over the two choices in both; top-1 keeps the raw probability in both;
- the capacity order: first choices before second choices, by position (``use_rts=False`` and
  ``top2_2nd_expert_sampling=False`` switch off DeepSpeed's random token selection and its
  Gumbel-sampled second expert).

What cannot: DeepSpeed's top-2 renormalises the surviving gate after a capacity drop (a token
whose second choice is dropped gets gate 1 on its first), ours keeps the pre-drop gate; its
capacity is ``max(ceil(k·S/E·cf), min_capacity)`` against our ``ceil(cf·k·ceil(S/E))``; its
``k > 2`` gate drops by probability, not by position; its top-1 gate (with ``use_rts=False``)
picks the survivors with ``torch.topk`` over a 0/1 mask, whose order among ties is unspecified; X-MoE routers, gate temperatures, MH-MoE
heads and padding masks have no DeepSpeed counterpart. Outputs are therefore compared only when
neither layer drops anything (dropless, or a capacity nobody reaches); otherwise only the speed
is.
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papercraft.mhmoe.layer import MHMoE

__all__ = [
    "DeepSpeedComparison",
    "DeepSpeedSwiGLU",
    "compare_with_deepspeed",
    "copy_weights_to_deepspeed",
    "deepspeed_available",
    "deepspeed_moe_layer",
    "deepspeed_supports_topk",
]

_INSTALL_HINT = "DeepSpeed is not installed: DS_BUILD_OPS=0 pip install deepspeed"


def deepspeed_available() -> bool:
    """Whether ``deepspeed`` can be imported here (checked without importing it)."""
    return importlib.util.find_spec("deepspeed") is not None


def deepspeed_supports_topk() -> bool:
    """Whether the installed DeepSpeed's ``TopKGate`` has a general ``k > 2`` gate.

    ``deepspeed.moe.layer.MoE`` documents ``k`` in ``{1, 2}`` only (DeepSpeed issues #1442,
    #5155); newer releases add ``sharded_moe.topkgating`` for ``k > 2``, which drops over-capacity
    assignments by gate probability rather than by position.

    Raises:
        ImportError: if DeepSpeed is not installed.
    """
    sharded_moe = _import_sharded_moe()
    return hasattr(sharded_moe, "topkgating")


def _import_sharded_moe() -> Any:
    if not deepspeed_available():
        raise ImportError(_INSTALL_HINT)
    from deepspeed.moe import sharded_moe

    return sharded_moe


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class DeepSpeedSwiGLU(nn.Module):
    """One SwiGLU expert ``(silu(x W_g) ⊙ x W_u) W_d`` as DeepSpeed's ``Experts`` deep-copies it.

    Args:
        dim (int): input and output width.
        hidden (int): inner width.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        _check_positive_int("dim", dim)
        _check_positive_int("hidden", hidden)
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)
        for lin in (self.gate, self.up, self.down):
            nn.init.normal_(lin.weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the expert to ``(..., dim)``."""
        out: Tensor = self.down(F.silu(self.gate(x)) * self.up(x))
        return out


def deepspeed_moe_layer(
    d_model: int,
    num_experts: int,
    top_k: int,
    expert_hidden: int,
    capacity_factor: float | None = 1.0,
    *,
    min_capacity: int = 0,
) -> nn.Module:
    """Build ``deepspeed.moe.layer.MoE`` with SwiGLU experts, deterministic routing, ``ep_size=1``.

    Random token selection and the Gumbel-sampled second expert are switched off so that routing
    depends only on the gate logits; train and eval use the same capacity factor.

    Args:
        d_model (int): token width (also the experts' width).
        num_experts (int): number of experts ``E``.
        top_k (int): experts per token; DeepSpeed's ``MoE`` documents 1 or 2 (``k > 2`` is accepted
            only where the installed DeepSpeed has :func:`deepspeed_supports_topk`).
        expert_hidden (int): SwiGLU inner width.
        capacity_factor (float | None): DeepSpeed capacity factor; None (or ``<= 0``) is dropless
            (``drop_tokens=False``). Default: 1.0.
        min_capacity (int): DeepSpeed's lower bound on the capacity (its own default is 4).
            Default: 0.

    Returns:
        nn.Module: the DeepSpeed layer; ``layer(x)`` returns ``(output, l_aux, exp_counts)``.

    Raises:
        ValueError: for a bad size, ``top_k > num_experts``, or ``top_k > 2`` on a DeepSpeed
            without a ``k > 2`` gate.
        ImportError: if DeepSpeed is not installed.
    """
    for name, value in (
        ("d_model", d_model),
        ("num_experts", num_experts),
        ("top_k", top_k),
        ("expert_hidden", expert_hidden),
    ):
        _check_positive_int(name, value)
    if top_k > num_experts:
        raise ValueError(f"top_k must be <= num_experts ({num_experts}), got {top_k}")
    if isinstance(min_capacity, bool) or not isinstance(min_capacity, int) or min_capacity < 0:
        raise ValueError(f"min_capacity must be an int >= 0, got {min_capacity!r}")
    if capacity_factor is not None and (
        isinstance(capacity_factor, bool)
        or not isinstance(capacity_factor, (int, float))
        or not math.isfinite(capacity_factor)
    ):
        raise ValueError(f"capacity_factor must be a finite float or None, got {capacity_factor!r}")
    if not deepspeed_available():
        raise ImportError(_INSTALL_HINT)
    if top_k > 2 and not deepspeed_supports_topk():
        raise ValueError(
            f"top_k={top_k}: deepspeed.moe.layer.MoE supports only k=1 or k=2 in this DeepSpeed "
            "version (TopKGate has top1gating/top2gating only; DeepSpeed issues #1442, #5155)"
        )
    from deepspeed.moe.layer import MoE

    drop = capacity_factor is not None and capacity_factor > 0
    factor = float(capacity_factor) if drop and capacity_factor is not None else 1.0
    layer: nn.Module = MoE(
        d_model,
        DeepSpeedSwiGLU(d_model, expert_hidden),
        num_experts=num_experts,
        ep_size=1,
        k=top_k,
        capacity_factor=factor,
        eval_capacity_factor=factor,
        min_capacity=min_capacity,
        noisy_gate_policy=None,
        drop_tokens=drop,
        use_rts=False,
        top2_2nd_expert_sampling=False,
    )
    return layer


def _deepspeed_parts(ds_layer: nn.Module) -> tuple[nn.Linear, nn.ModuleList]:
    try:
        inner: Any = cast(Any, ds_layer).deepspeed_moe
        gate: nn.Linear = inner.gate.wg
        experts: nn.ModuleList = inner.experts.deepspeed_experts
    except AttributeError as exc:
        raise ValueError(
            "ds_layer must be a deepspeed.moe.layer.MoE from deepspeed_moe_layer()"
        ) from exc
    return gate, experts


def _check_pair(moe: MHMoE, ds_layer: nn.Module) -> tuple[nn.Linear, nn.ModuleList]:
    if not isinstance(moe, MHMoE):
        raise ValueError(f"moe must be an MHMoE / SparseMoE, got {type(moe).__name__}")
    if moe.num_heads != 1 or not isinstance(moe.head_proj, nn.Identity):
        raise ValueError(
            "moe must be a plain SMoE (num_heads=1, head_projection=False): DeepSpeed has no "
            f"multi-head split, got num_heads={moe.num_heads}"
        )
    if moe.router.weight is None:
        raise ValueError(
            f"moe.router must be the 'softmax' router (DeepSpeed's gate), got {moe.router.kind!r}"
        )
    if moe.experts.has_bias:
        raise ValueError("moe.experts must have no biases (the DeepSpeed SwiGLU expert has none)")
    gate, experts = _deepspeed_parts(ds_layer)
    want = (moe.num_experts, moe.d_model)
    if tuple(gate.weight.shape) != want or len(experts) != moe.num_experts:
        raise ValueError(
            f"ds_layer must have {moe.num_experts} experts of width {moe.d_model}, got a gate of "
            f"shape {tuple(gate.weight.shape)} and {len(experts)} experts"
        )
    first = experts[0]
    if not isinstance(first, DeepSpeedSwiGLU) or first.gate.out_features != moe.experts.hidden:
        raise ValueError(
            f"ds_layer experts must be DeepSpeedSwiGLU of hidden {moe.experts.hidden}, "
            f"got {first!r}"
        )
    return gate, experts


@torch.no_grad()
def copy_weights_to_deepspeed(moe: MHMoE, ds_layer: nn.Module) -> None:
    """Copy the router and expert weights of a plain SMoE into a DeepSpeed layer, in place.

    Args:
        moe (MHMoE): a :class:`~papercraft.mhmoe.layer.SparseMoE` (``num_heads=1``, no
            projections, ``"softmax"`` router, no expert biases).
        ds_layer (nn.Module): from :func:`deepspeed_moe_layer` with the same sizes.

    Raises:
        ValueError: if the layers cannot hold the same weights.
    """
    gate, experts = _check_pair(moe, ds_layer)
    assert moe.router.weight is not None
    gate.weight.copy_(moe.router.weight)
    bank = moe.experts
    for e, module in enumerate(experts):
        expert = cast(DeepSpeedSwiGLU, module)
        expert.gate.weight.copy_(bank.w_gate[e].t())
        expert.up.weight.copy_(bank.w_up[e].t())
        expert.down.weight.copy_(bank.w_down[e].t())


def _deepspeed_capacity(
    num_tokens: int, num_experts: int, top_k: int, factor: float, min_capacity: int
) -> int:
    return max(math.ceil(num_tokens / num_experts * factor * top_k), min_capacity)


@dataclass
class DeepSpeedComparison:
    """:func:`compare_with_deepspeed`'s result.

    Args:
        outputs_comparable (bool): whether the two layers must give the same output here.
        max_abs_diff (float): largest absolute output difference (meaningful when comparable).
        ours_s (float): median forward seconds of our layer.
        deepspeed_s (float): median forward seconds of the DeepSpeed layer.
        ours_dropped (float): fraction of our assignments dropped by capacity.
        reason (str): why the outputs are or are not comparable.
        notes (list[str]): what was made equal.
    """

    outputs_comparable: bool
    max_abs_diff: float
    ours_s: float
    deepspeed_s: float
    ours_dropped: float
    reason: str
    notes: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        """DeepSpeed time over ours (> 1: ours is faster)."""
        return self.deepspeed_s / self.ours_s if self.ours_s > 0 else math.inf


def _median_seconds(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare_with_deepspeed(
    moe: MHMoE,
    x: Tensor,
    *,
    ds_layer: nn.Module | None = None,
    copy_weights: bool = True,
    repeats: int = 3,
) -> DeepSpeedComparison:
    """Run a plain SMoE and DeepSpeed's MoE on the same tokens: output difference and speed.

    Both run in eval mode under ``torch.no_grad``. Outputs are comparable when the router is the
    softmax router at temperature 1 and neither layer drops an assignment (see the module
    docstring).

    Args:
        moe (MHMoE): a :class:`~papercraft.mhmoe.layer.SparseMoE` as
            :func:`copy_weights_to_deepspeed` needs.
        x (Tensor): tokens ``(N, d)`` or ``(B, T, d)``, no padding.
        ds_layer (nn.Module | None): the DeepSpeed layer; None builds it with
            :func:`deepspeed_moe_layer` from ``moe``'s sizes and capacity factor. Default: None.
        copy_weights (bool): copy ``moe``'s weights into ``ds_layer`` first. Default: True.
        repeats (int): timed forward calls of each layer (after one warm-up). Default: 3.

    Returns:
        DeepSpeedComparison: the difference, the timings and why they are comparable or not.

    Raises:
        ValueError: on a bad ``moe``/``ds_layer``/``x``/``repeats``.
        ImportError: if DeepSpeed is not installed.
    """
    _check_positive_int("repeats", repeats)
    if x.ndim not in (2, 3) or x.shape[-1] != moe.d_model:
        raise ValueError(
            f"x must have shape (N, {moe.d_model}) or (B, T, {moe.d_model}), got {tuple(x.shape)}"
        )
    if ds_layer is None:
        ds_layer = deepspeed_moe_layer(
            moe.d_model, moe.num_experts, moe.top_k, moe.experts.hidden, moe.capacity_factor
        )
    _check_pair(moe, ds_layer)
    if copy_weights:
        copy_weights_to_deepspeed(moe, ds_layer)
    moe_mode, ds_mode = moe.training, ds_layer.training
    moe.eval()
    ds_layer.eval()
    try:
        with torch.no_grad():
            ours = moe(x)
            theirs, _, ds_counts = ds_layer(x)
            diff = float((ours.hidden_states.float() - theirs.float()).abs().max())
            ours_s = _median_seconds(lambda: moe(x), repeats)
            ds_s = _median_seconds(lambda: ds_layer(x), repeats)
    finally:
        moe.train(moe_mode)
        ds_layer.train(ds_mode)

    gate: Any = cast(Any, ds_layer).deepspeed_moe.gate
    num_tokens = int(x.numel() // moe.d_model)
    k, num_experts = moe.top_k, moe.num_experts
    ours_dropped = float(ours.routing.dropped_fraction)
    if gate.drop_tokens:
        ds_cap = _deepspeed_capacity(
            num_tokens, num_experts, k, float(gate.eval_capacity_factor), int(gate.min_capacity)
        )
        ds_drops = bool(int(ds_counts.max()) > ds_cap)
    else:
        ds_drops = False
    if moe.router.temperature != 1.0:
        comparable, reason = False, "our gate temperature is not 1 (DeepSpeed has none)"
    elif ours_dropped == 0.0 and not ds_drops:
        comparable, reason = True, "nothing dropped by either layer"
    else:
        comparable, reason = (
            False,
            "capacity drops differ: DeepSpeed renormalises the surviving top-2 gate, picks top-1 "
            "survivors with torch.topk over ties (not by position), drops k > 2 by probability "
            "and rounds the capacity differently",
        )
    notes = [
        "weights copied: router W_g, expert W_gate/W_up/W_down" if copy_weights else "own weights",
        "DeepSpeed: use_rts=False, top2_2nd_expert_sampling=False, ep_size=1, eval mode",
    ]
    return DeepSpeedComparison(
        outputs_comparable=comparable,
        max_abs_diff=diff,
        ours_s=ours_s,
        deepspeed_s=ds_s,
        ours_dropped=ours_dropped,
        reason=reason,
        notes=notes,
    )
