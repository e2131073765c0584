"""Expert parallelism for the MH-MoE layer over ``torch.distributed``.

The experts of a Multi-Head Mixture-of-Experts layer (Wu et al., 2024, arXiv 2404.15045,
Section 3) are split across the ranks of a process group: with ``E`` experts and ``W`` ranks,
rank ``r`` holds experts ``[r·E/W, (r+1)·E/W)``; the head / merge projections and the router are
replicated. Sub-tokens travel to the rank of their expert and back with two all-to-all
exchanges, the scheme of GShard (Lepikhin et al., 2020, Section 2.2) and of the official MH-MoE
code (tutel's all-to-all):

1. every rank projects, splits and routes its own batch exactly as :class:`~papercraft.mhmoe.layer.MHMoE`
   does; the capacity is computed over the rank's LOCAL real sub-tokens (as GShard's per-group
   capacity), so each rank drops exactly what one process running the full layer on that
   rank's batch would drop;
2. the kept assignments are stably sorted by global expert id — which also sorts them by
   destination rank, since rank ``r`` owns a contiguous block of experts;
3. a first ``all_to_all_single`` exchanges the per-(rank, expert) row counts; a second one sends
   the sub-token rows. Expert ids are not sent: the receiver rebuilds them from the counts,
   because every sender's block arrives sorted by expert;
4. the local experts run on the received rows with the layer's dispatcher (``"grouped"``: one
   sort, grouped / batched matmuls), each row with gate 1;
5. a reverse ``all_to_all_single`` returns the results, which are scaled by their gates and
   added back to their sub-tokens; heads are merged and ``W_merge`` applied.

Both row exchanges are differentiable (:func:`all_to_all_rows`, whose backward is the reverse
exchange), so a loss summed over ranks gives every rank's experts the gradient from all ranks'
sub-tokens. The replicated parameters only see the local batch: all-reduce (sum) their gradients
as data parallelism does. Checked with ``gloo`` on CPU (uneven splits and empty blocks work) in
torch 2.13; ``nccl`` needs the inputs on the rank's CUDA device.

Every rank must call ``forward`` (and ``backward``) the same number of times: the exchanges are
collectives, and a rank that skips one blocks the others.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from papercraft.mhmoe.dispatch import DISPATCHERS
from papercraft.mhmoe.experts import SwiGLUExperts
from papercraft.mhmoe.layer import MHMoE, MoEOutput
from papercraft.mhmoe.routing import (
    Routing,
)

__all__ = ["ExpertParallelMHMoE", "all_to_all_rows", "expert_shard", "shard_experts"]


def expert_shard(num_experts: int, world_size: int, rank: int) -> tuple[int, int]:
    """The block of experts ``[start, stop)`` that ``rank`` holds.

    Args:
        num_experts (int): total number of experts ``E``.
        world_size (int): number of ranks ``W``; must divide ``E``.
        rank (int): rank in ``[0, W)``.

    Returns:
        tuple[int, int]: ``(rank · E/W, (rank + 1) · E/W)``.

    Raises:
        ValueError: if a size is not a positive int, ``rank`` is out of range or
            ``num_experts % world_size != 0``.
    """
    for name, value in (("num_experts", num_experts), ("world_size", world_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, {world_size}), got {rank!r}")
    if num_experts % world_size != 0:
        raise ValueError(
            f"num_experts ({num_experts}) must be divisible by the world size ({world_size}) "
            "so that every rank holds the same number of experts"
        )
    per_rank = num_experts // world_size
    return rank * per_rank, (rank + 1) * per_rank


class _AllToAllRows(torch.autograd.Function):
    """``all_to_all_single`` along dim 0 whose backward is the reverse exchange."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        output_splits: list[int],
        input_splits: list[int],
        group: dist.ProcessGroup | None,
    ) -> Tensor:
        ctx.output_splits = output_splits
        ctx.input_splits = input_splits
        ctx.group = group
        out = x.new_empty((sum(output_splits), *x.shape[1:]))
        dist.all_to_all_single(out, x.contiguous(), output_splits, input_splits, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        grad_in = grad.new_empty((sum(ctx.input_splits), *grad.shape[1:]))
        dist.all_to_all_single(
            grad_in, grad.contiguous(), ctx.input_splits, ctx.output_splits, group=ctx.group
        )
        return grad_in, None, None, None


def all_to_all_rows(
    x: Tensor,
    output_splits: list[int],
    input_splits: list[int],
    group: dist.ProcessGroup | None = None,
) -> Tensor:
    """Differentiable all-to-all of rows: block ``i`` of ``x`` goes to rank ``i``.

    Written as a small ``autograd.Function`` (backward = the same exchange with the splits
    swapped) rather than ``torch.distributed.nn.functional.all_to_all_single``, which works with
    gloo in torch 2.13 but is deprecated there.

    Args:
        x (Tensor): ``(sum(input_splits), ...)``, rows sorted by destination rank.
        output_splits (list[int]): rows received from each rank.
        input_splits (list[int]): rows sent to each rank.
        group (dist.ProcessGroup | None): process group; None is the default group.
            Default: None.

    Returns:
        Tensor: ``(sum(output_splits), ...)``, rows grouped by source rank.

    Raises:
        ValueError: if ``x`` has no leading dim or its length is not ``sum(input_splits)``.
    """
    if x.ndim < 1 or x.shape[0] != sum(input_splits):
        raise ValueError(
            f"x must have sum(input_splits) = {sum(input_splits)} rows, got shape {tuple(x.shape)}"
        )
    out: Tensor = _AllToAllRows.apply(x, list(output_splits), list(input_splits), group)
    return out


def _local_experts(experts: SwiGLUExperts, start: int, stop: int) -> SwiGLUExperts:
    """A new bank holding copies of experts ``[start, stop)`` of ``experts``."""
    w = experts.w_gate
    local = SwiGLUExperts(stop - start, experts.dim, experts.hidden, bias=experts.has_bias)
    local = local.to(device=w.device, dtype=w.dtype)
    with torch.no_grad():
        for name in ("w_gate", "w_up", "w_down", "b_gate", "b_up", "b_down"):
            src = getattr(experts, name)
            if src is not None:
                getattr(local, name).copy_(src[start:stop])
    return local


class ExpertParallelMHMoE(MHMoE):
    """An :class:`~papercraft.mhmoe.layer.MHMoE` whose experts are sharded over a process group.

    Built from a full layer (the same on every rank, e.g. same seed): this rank keeps copies of
    its ``E/W`` experts and SHARES (not copies) the layer's router and head / merge projections,
    so ``state_dict()`` holds the replicated parameters plus the local experts only. The output
    on each rank equals the full layer's output on that rank's batch; see the module docstring
    for the exchange and for the capacity, which is per rank.

    Args:
        layer (MHMoE): the full layer to shard (its settings are copied; it is not kept).
        group (dist.ProcessGroup | None): the expert-parallel group; None is the default group.
            Default: None.

    Raises:
        RuntimeError: if ``torch.distributed`` is not initialised.
        ValueError: if ``layer`` is not an MHMoE or its ``num_experts`` is not divisible by the
            group size.
    """

    def __init__(self, layer: MHMoE, *, group: dist.ProcessGroup | None = None) -> None:
        nn.Module.__init__(self)  # the settings are copied from ``layer``, not rebuilt
        if not isinstance(layer, MHMoE):
            raise ValueError(f"layer must be an MHMoE, got {type(layer).__name__}")
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "ExpertParallelMHMoE needs an initialised torch.distributed process group "
                "(call torch.distributed.init_process_group first)"
            )
        self.group = group
        self.world_size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        start, stop = expert_shard(layer.num_experts, self.world_size, self.rank)
        self.expert_start = start
        self.num_local_experts = stop - start
        self.d_model = layer.d_model
        self.num_experts = layer.num_experts
        self.num_heads = layer.num_heads
        self.head_dim = layer.head_dim
        self.top_k = layer.top_k
        self.capacity_factor = layer.capacity_factor
        self.aux_loss_coef = layer.aux_loss_coef
        self.z_loss_coef = layer.z_loss_coef
        self.dispatch = layer.dispatch
        self.router = layer.router
        self.head_proj = layer.head_proj
        self.merge_proj = layer.merge_proj
        self.experts = _local_experts(layer.experts, start, stop)

    def replicated_parameters(self) -> list[nn.Parameter]:
        """The parameters every rank holds a copy of (router, head and merge projections).

        Returns:
            list[nn.Parameter]: all-reduce (sum or mean) their gradients across the group.
        """
        return [
            *self.router.parameters(),
            *self.head_proj.parameters(),
            *self.merge_proj.parameters(),
        ]

    def _run_experts(self, sub: Tensor, routing: Routing) -> Tensor:
        """Send kept assignments to their experts' ranks, run them, bring results back."""
        world, per_rank = self.world_size, self.num_local_experts
        num_experts = self.num_experts
        k = routing.expert_index.shape[1]
        expert = routing.expert_index.reshape(-1)  # (S·k,), row s·k + j
        keep = routing.keep.reshape(-1)
        key = torch.where(keep, expert, torch.full_like(expert, num_experts))  # dropped last
        order = torch.sort(key, stable=True).indices  # by expert, hence by destination rank
        send_counts = torch.bincount(key, minlength=num_experts + 1)[:num_experts]  # (E,)
        recv_counts = torch.empty_like(send_counts)
        # recv_counts[src · per_rank + e]: rows rank src sends to my local expert e
        dist.all_to_all_single(recv_counts, send_counts.contiguous(), group=self.group)
        send_host = send_counts.reshape(world, per_rank).tolist()
        recv_host = recv_counts.reshape(world, per_rank).tolist()  # the host syncs
        input_splits = [sum(row) for row in send_host]
        output_splits = [sum(row) for row in recv_host]
        num_send = sum(input_splits)
        order = order[:num_send]
        tokens = order // k
        weights = torch.where(routing.keep, routing.gates.to(sub.dtype), 0.0).reshape(-1)[order]
        xs = sub.index_select(0, tokens)  # (n_send, d/h), sorted by (rank, expert)
        received = all_to_all_rows(xs, output_splits, input_splits, self.group)  # (n_recv, d/h)
        local_expert = torch.repeat_interleave(
            torch.arange(per_rank, device=sub.device).repeat(world),
            recv_counts.to(sub.device),
        )  # (n_recv,) local expert of every received row
        num_recv = received.shape[0]
        ones = torch.ones(num_recv, 1, dtype=torch.bool, device=sub.device)
        local_routing = Routing(
            expert_index=local_expert[:, None],
            gates=torch.ones(num_recv, 1, dtype=sub.dtype, device=sub.device),
            keep=ones,
            valid=ones[:, 0],
            router_logits=sub.new_zeros(num_recv, per_rank),
            num_experts=per_rank,
            capacity=None,
        )
        ys = DISPATCHERS[self.dispatch](received, local_routing, self.experts)  # (n_recv, d/h)
        back = all_to_all_rows(ys, input_splits, output_splits, self.group)  # (n_send, d/h)
        out = torch.zeros_like(sub)
        return out.index_add_(0, tokens, back * weights[:, None])  # (S, d/h)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> MoEOutput:
        """Apply the layer to this rank's batch (a collective: every rank must call it).

        As :meth:`MHMoE.forward`, with the expert step exchanged between ranks; batches may
        differ in size between ranks, and the losses and routing are local to the rank. A bad
        ``x`` or ``padding_mask`` raises before any communication.
        """
        return super().forward(x, padding_mask)

    def extra_repr(self) -> str:
        """Summarise the sharding."""
        stop = self.expert_start + self.num_local_experts
        return (
            f"d_model={self.d_model}, num_experts={self.num_experts}, num_heads={self.num_heads}, "
            f"top_k={self.top_k}, rank={self.rank}/{self.world_size}, "
            f"experts=[{self.expert_start}, {stop}), dispatch={self.dispatch!r}"
        )


def shard_experts(layer: MHMoE, group: dist.ProcessGroup | None = None) -> ExpertParallelMHMoE:
    """Shard ``layer``'s experts over ``group`` (see :class:`ExpertParallelMHMoE`).

    Args:
        layer (MHMoE): the full layer, identical on every rank.
        group (dist.ProcessGroup | None): the expert-parallel group; None is the default group.
            Default: None.

    Returns:
        ExpertParallelMHMoE: this rank's shard.

    Raises:
        RuntimeError: if ``torch.distributed`` is not initialised.
        ValueError: if ``layer.num_experts`` is not divisible by the group size.
    """
    return ExpertParallelMHMoE(layer, group=group)
