"""Expert parallelism (papercraft.mhmoe.parallel) against one process holding every expert.

Two gloo ranks on CPU are spawned ONCE for the whole module; for every configuration each rank
shards the same seeded layer, runs its own batch (batches differ in size and content between
ranks), back-propagates its part of a loss summed over ranks, all-reduces the replicated
gradients and saves what it got. The reference, in the test process without torch.distributed,
runs the full layer on both batches, sums both losses and back-propagates once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import torch
import torch.distributed as dist

from papercraft.mhmoe.dispatch import dispatch_dense
from papercraft.mhmoe.experts import SwiGLUExperts
from papercraft.mhmoe.layer import MHMoE
from papercraft.mhmoe.parallel import (
    ExpertParallelMHMoE,
    all_to_all_rows,
    expert_shard,
    shard_experts,
)
from papercraft.mhmoe.routing import Routing

WORLD = 2
D_MODEL = 16

# name -> (layer kwargs, padding kind, dtype)
CONFIGS: dict[str, tuple[dict[str, Any], str, torch.dtype]] = {
    "top1_capacity": (
        {"num_experts": 4, "top_k": 1, "capacity_factor": 0.5},
        "none",
        torch.float64,
    ),
    "top2_capacity": (
        {"num_experts": 4, "top_k": 2, "capacity_factor": 0.75},
        "none",
        torch.float64,
    ),
    "top1_dropless": (
        {"num_experts": 4, "top_k": 1, "capacity_factor": None},
        "none",
        torch.float64,
    ),
    "top2_dropless": (
        {"num_experts": 4, "top_k": 2, "capacity_factor": None},
        "none",
        torch.float64,
    ),
    "top2_capacity_padding": (
        {"num_experts": 4, "top_k": 2, "capacity_factor": 0.75, "z_loss_coef": 1e-2},
        "random",
        torch.float64,
    ),
    "top1_dropless_padding": (
        {"num_experts": 4, "top_k": 1, "capacity_factor": None},
        "random",
        torch.float64,
    ),
    "rank1_all_padding": (
        {"num_experts": 4, "top_k": 2, "capacity_factor": 1.0},
        "rank1_empty",
        torch.float64,
    ),
    "xmoe_6experts_loop": (
        {
            "num_experts": 6,
            "top_k": 2,
            "capacity_factor": 1.0,
            "router": "xmoe",
            "dispatch": "loop",
        },
        "random",
        torch.float64,
    ),
    "smoe_h1_dense": (
        {
            "num_experts": 4,
            "top_k": 2,
            "num_heads": 1,
            "head_projection": False,
            "dispatch": "dense",
        },
        "none",
        torch.float64,
    ),
    "float32_grouped": (
        {"num_experts": 4, "top_k": 2, "capacity_factor": 1.0, "bias": True},
        "random",
        torch.float32,
    ),
}


def _make_layer(name: str) -> MHMoE:
    kwargs, _, dtype = CONFIGS[name]
    kwargs = {"num_heads": 2, "expert_hidden": 8, "aux_loss_coef": 0.1, **kwargs}
    torch.manual_seed(1234)
    layer = MHMoE(D_MODEL, **kwargs).to(dtype)
    with torch.no_grad():  # non-zero biases so the projections' bias gradients are checked too
        for module in (layer.head_proj, layer.merge_proj):
            bias = getattr(module, "bias", None)
            if bias is not None:
                bias.normal_(0.0, 0.1)
    return layer


def _make_batch(name: str, rank: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Input, padding mask and loss weights of ``rank`` (rank 0: (2, 5, d), rank 1: (3, 4, d))."""
    _, padding, dtype = CONFIGS[name]
    gen = torch.Generator().manual_seed(100 + rank)
    shape = (2, 5) if rank == 0 else (3, 4)
    x = torch.randn(*shape, D_MODEL, generator=gen, dtype=dtype)
    weights = torch.randn(*shape, D_MODEL, generator=gen, dtype=dtype)
    mask: torch.Tensor | None = None
    if padding == "random":
        mask = torch.rand(*shape, generator=gen) < 0.7
        mask[:, 0] = True
        mask[0, -1] = False
    elif padding == "rank1_empty":
        mask = (
            torch.ones(*shape, dtype=torch.bool)
            if rank == 0
            else torch.zeros(*shape, dtype=torch.bool)
        )
    return x, mask, weights


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=60),
    )
    try:
        results: dict[str, Any] = {}
        for name in CONFIGS:
            model = shard_experts(_make_layer(name))
            x, mask, weights = _make_batch(name, rank)
            x.requires_grad_(True)
            out = model(x, mask)
            ((out.hidden_states * weights).sum() + out.loss).backward()
            grads: dict[str, torch.Tensor] = {}
            for pname, param in model.named_parameters():
                grad = param.grad if param.grad is not None else torch.zeros_like(param)
                if not pname.startswith("experts."):
                    dist.all_reduce(grad)  # replicated: sum over ranks (data parallelism)
                grads[pname] = grad.detach().clone()
            results[name] = {
                "out": out.hidden_states.detach(),
                "aux": out.aux_loss.detach(),
                "x_grad": x.grad,
                "grads": grads,
                "expert_start": model.expert_start,
                "num_local": model.num_local_experts,
            }
        # an autograd check of the raw exchange: rank r sends r+1 rows to rank 0 and 2 to rank 1
        rows = torch.arange(2.0 * (rank + 3), dtype=torch.float64).reshape(-1, 2) + 10 * rank
        rows.requires_grad_(True)
        in_splits = [rank + 1, 2]
        out_splits = [1, 2] if rank == 0 else [2, 2]
        moved = all_to_all_rows(rows, out_splits, in_splits)
        (moved * (1.0 + rank)).sum().backward()
        results["exchange"] = {"moved": moved.detach(), "grad": rows.grad}
        try:
            shard_experts(MHMoE(8, 3, num_heads=2, top_k=1))
            results["odd_experts"] = "no error"
        except ValueError as err:
            results["odd_experts"] = str(err)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    from torch.multiprocessing.spawn import spawn

    root = tmp_path_factory.mktemp("expert_parallel")
    spawn(_worker, args=(str(root / "store"), str(root)), nprocs=WORLD, join=True)
    return [torch.load(root / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _reference(name: str) -> tuple[MHMoE, list[Any], list[torch.Tensor]]:
    """Full layer, both ranks' batches; gradients of the summed loss (accumulated per batch).

    One backward per batch rather than one of the sum: the X-MoE router renormalises its expert
    embeddings in place at every training forward, so a second forward before the first
    backward would invalidate the first graph.
    """
    layer = _make_layer(name)
    outs, x_grads = [], []
    for rank in range(WORLD):
        x, mask, weights = _make_batch(name, rank)
        x.requires_grad_(True)
        out = layer(x, mask)
        ((out.hidden_states * weights).sum() + out.loss).backward()
        outs.append(out)
        assert x.grad is not None
        x_grads.append(x.grad)
    return layer, outs, x_grads


def _prefixed(prefix: str) -> Callable[[str], str]:
    return lambda message: f"{prefix}: {message}"


def _tol(name: str) -> tuple[float, float]:
    """(rtol, atol) for a configuration's dtype."""
    return (1e-5, 1e-6) if CONFIGS[name][2] == torch.float32 else (1e-9, 1e-11)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_single_process(name: str, rank_results: list[dict[str, Any]]) -> None:
    layer, outs, x_grads = _reference(name)
    rtol, atol = _tol(name)
    if CONFIGS[name][0].get("capacity_factor") in (0.5, 0.75):
        # the configurations meant to exercise capacity really drop assignments
        assert all(out.routing.dropped_fraction > 0 for out in outs)
    full = dict(layer.named_parameters())
    for rank in range(WORLD):
        res = rank_results[rank][name]
        torch.testing.assert_close(
            res["out"], outs[rank].hidden_states.detach(), rtol=rtol, atol=atol
        )
        torch.testing.assert_close(res["aux"], outs[rank].aux_loss.detach(), rtol=rtol, atol=atol)
        torch.testing.assert_close(res["x_grad"], x_grads[rank], rtol=rtol, atol=atol)
        start, num_local = res["expert_start"], res["num_local"]
        assert (start, num_local) == (rank * layer.num_experts // WORLD, layer.num_experts // WORLD)
        assert set(res["grads"]) == set(full)
        for pname, grad in res["grads"].items():
            ref = full[pname].grad
            assert ref is not None, pname
            if pname.startswith("experts."):
                ref = ref[start : start + num_local]  # this rank's experts only
            assert grad.shape == ref.shape, pname
            torch.testing.assert_close(grad, ref, rtol=rtol, atol=atol, msg=_prefixed(pname))


def test_expert_gradients_are_nonzero_on_both_ranks(rank_results: list[dict[str, Any]]) -> None:
    # each rank's experts must receive gradient (sub-tokens arrived from somewhere)
    for rank in range(WORLD):
        grad = rank_results[rank]["top2_dropless"]["grads"]["experts.w_down"]
        assert grad.abs().sum(dim=(1, 2)).min() > 0


def test_rank_with_only_padding_gets_zero_output(rank_results: list[dict[str, Any]]) -> None:
    res = rank_results[1]["rank1_all_padding"]
    assert torch.count_nonzero(res["out"]) == 0
    assert torch.count_nonzero(res["x_grad"]) == 0
    # ...while its experts still serve rank 0's sub-tokens
    assert res["grads"]["experts.w_gate"].abs().sum() > 0


def test_all_to_all_rows_moves_rows_and_gradients(rank_results: list[dict[str, Any]]) -> None:
    rows = [
        torch.arange(2.0 * (r + 3), dtype=torch.float64).reshape(-1, 2) + 10 * r
        for r in range(WORLD)
    ]
    in_splits = [[r + 1, 2] for r in range(WORLD)]
    sent = [list(rows[r].split(in_splits[r])) for r in range(WORLD)]
    for dst in range(WORLD):
        expected = torch.cat([sent[src][dst] for src in range(WORLD)])
        torch.testing.assert_close(rank_results[dst]["exchange"]["moved"], expected)
    for src in range(WORLD):
        # every row's gradient is the loss weight (1 + rank) of the rank it was sent to
        scale = torch.cat(
            [
                torch.full((n, 2), 1.0 + dst, dtype=torch.float64)
                for dst, n in enumerate(in_splits[src])
            ]
        )
        torch.testing.assert_close(rank_results[src]["exchange"]["grad"], scale)


def test_indivisible_experts_raise_in_a_group(rank_results: list[dict[str, Any]]) -> None:
    for rank in range(WORLD):
        message = rank_results[rank]["odd_experts"]
        assert "num_experts (3) must be divisible by the world size (2)" in message


def test_expert_shard_blocks_and_errors() -> None:
    assert [expert_shard(8, 4, r) for r in range(4)] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    with pytest.raises(ValueError, match="divisible"):
        expert_shard(6, 4, 0)
    with pytest.raises(ValueError, match="rank"):
        expert_shard(8, 2, 2)
    with pytest.raises(ValueError, match="world_size"):
        expert_shard(8, 0, 0)


def test_needs_an_initialised_process_group() -> None:
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    with pytest.raises(RuntimeError, match="init_process_group"):
        ExpertParallelMHMoE(MHMoE(8, 2, num_heads=2, top_k=1))
    with pytest.raises(ValueError, match="MHMoE"):
        ExpertParallelMHMoE(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_local_expert_routing_assumption() -> None:
    # the shard runs received rows through the dispatcher with gate 1 and one choice per row;
    # check that this gives exactly expert_e(x) for each row (no mixing, no scaling)
    torch.manual_seed(0)
    experts = SwiGLUExperts(2, 4, 6).double()
    rows = torch.randn(5, 4, dtype=torch.float64)
    index = torch.tensor([1, 0, 1, 1, 0])
    ones = torch.ones(5, 1, dtype=torch.bool)
    routing = Routing(
        index[:, None],
        torch.ones(5, 1, dtype=torch.float64),
        ones,
        ones[:, 0],
        torch.zeros(5, 2),
        2,
    )
    expected = torch.stack(
        [experts.expert_forward(int(e), rows[i : i + 1])[0] for i, e in enumerate(index)]
    )
    torch.testing.assert_close(dispatch_dense(rows, routing, experts), expected)
