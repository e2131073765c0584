"""Tests for papercraft.mhmoe.routing: routers, capacity, load-balancing and z losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from papercraft.mhmoe.routing import (
    ITERATIVE_TOPK_MAX_K,
    Routing,
    TopKRouter,
    apply_capacity,
    expert_capacity,
    load_balancing_loss,
    router_z_loss,
    select_topk,
)


def _routing(
    expert_index: list[list[int]], num_experts: int, valid: list[bool] | None = None
) -> Routing:
    idx = torch.tensor(expert_index, dtype=torch.long)
    num, k = idx.shape
    v = torch.ones(num, dtype=torch.bool) if valid is None else torch.tensor(valid)
    keep = v[:, None].expand(num, k).clone()
    gates = torch.where(keep, torch.full((num, k), 0.5), torch.zeros(num, k))
    return Routing(idx, gates, keep, v, torch.zeros(num, num_experts), num_experts)


def _reference_capacity_keep(
    idx: torch.Tensor, keep: torch.Tensor, num_experts: int, capacity: int
) -> torch.Tensor:
    """Independent reference: walk choice by choice, sub-token by sub-token, count slots."""
    num, k = idx.shape
    used = [0] * num_experts
    out = torch.zeros(num, k, dtype=torch.bool)
    for j in range(k):
        for s in range(num):
            if not bool(keep[s, j]):
                continue
            e = int(idx[s, j])
            if used[e] < capacity:
                used[e] += 1
                out[s, j] = True
    return out


def test_expert_capacity_formula() -> None:
    assert expert_capacity(10, 4, 2, 1.0) == 2 * 3  # ceil(10/4) = 3
    assert expert_capacity(8, 4, 1, 1.25) == math.ceil(1.25 * 2)
    assert expert_capacity(0, 4, 2, 1.0) == 0
    assert expert_capacity(100, 8, 3, 0.5) == math.ceil(0.5 * 3 * 13)
    assert expert_capacity(10, 4, 2, None) is None
    assert expert_capacity(10, 4, 2, 0.0) is None
    assert expert_capacity(10, 4, 2, -1.0) is None


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((-1, 4, 2, 1.0), "num_valid"),
        ((4, 0, 2, 1.0), "num_experts"),
        ((4, 4, 0, 1.0), "top_k"),
        ((4, 4, 2, float("inf")), "capacity_factor"),
        ((4, 4, 2, "1"), "capacity_factor"),
    ],
)
def test_expert_capacity_errors(args: tuple[object, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        expert_capacity(*args)  # type: ignore[arg-type]


def test_apply_capacity_documented_priority() -> None:
    # 4 sub-tokens, top-2, 3 experts, capacity 2.
    r = _routing([[0, 1], [0, 2], [0, 1], [1, 0]], 3)
    out = apply_capacity(r, 2)
    # first choices: expert 0 gets s0, s1 (full), s2 dropped; expert 1 gets s3.
    # second choices: expert 1 gets s0 (2nd slot), s2 dropped (full); expert 2 gets s1; expert 0 full -> s3 dropped.
    expected = torch.tensor([[True, True], [True, True], [False, False], [True, False]])
    assert torch.equal(out.keep, expected)
    assert out.capacity == 2
    assert torch.equal(out.gates == 0, ~expected)
    assert out.dropped_fraction == pytest.approx(3 / 8)
    # the input is not modified
    assert bool(r.keep.all())
    assert r.dropped_fraction == 0.0


def test_apply_capacity_padding_takes_no_slot() -> None:
    r = _routing([[0], [0], [0], [0]], 2, valid=[False, True, False, True])
    out = apply_capacity(r, 1)
    assert torch.equal(out.keep[:, 0], torch.tensor([False, True, False, False]))
    assert out.dropped_fraction == pytest.approx(0.5)  # one of the two real assignments


@pytest.mark.parametrize("top_k", [1, 2, 3, 4])
@pytest.mark.parametrize("capacity", [0, 1, 3, 7])
def test_apply_capacity_matches_reference(top_k: int, capacity: int) -> None:
    g = torch.Generator().manual_seed(100 * top_k + capacity)
    num, num_experts = 23, 5
    idx = torch.stack([torch.randperm(num_experts, generator=g)[:top_k] for _ in range(num)])
    valid = torch.rand(num, generator=g) > 0.2
    keep = valid[:, None].expand(num, top_k).clone()
    r = Routing(
        idx,
        torch.rand(num, top_k, generator=g),
        keep,
        valid,
        torch.zeros(num, num_experts),
        num_experts,
    )
    out = apply_capacity(r, capacity)
    assert torch.equal(out.keep, _reference_capacity_keep(idx, keep, num_experts, capacity))
    per_expert = torch.bincount(idx[out.keep], minlength=num_experts)
    assert int(per_expert.max()) <= capacity


def test_apply_capacity_none_and_errors() -> None:
    r = _routing([[0, 1]], 2)
    assert apply_capacity(r, None) is r
    with pytest.raises(ValueError, match="capacity"):
        apply_capacity(r, -1)
    with pytest.raises(ValueError, match="capacity"):
        apply_capacity(r, 1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("top_k", [1, 2, 3, 4])
def test_softmax_router_matches_reference(top_k: int) -> None:
    torch.manual_seed(0)
    router = TopKRouter(6, 5, top_k, temperature=0.7)
    x = torch.randn(9, 6)
    valid = torch.tensor([True] * 7 + [False] * 2)
    r = router(x, valid)
    logits = x @ router.weight.detach().t() / 0.7  # type: ignore[union-attr]
    probs = torch.softmax(logits, -1)
    top_p, top_i = probs.topk(top_k, -1)
    if top_k > 1:
        top_p = top_p / top_p.sum(-1, keepdim=True)
    assert torch.equal(r.expert_index, top_i)
    torch.testing.assert_close(r.router_logits, logits)
    torch.testing.assert_close(r.gates[:7], top_p[:7])
    assert bool((r.gates[7:] == 0).all())
    assert torch.equal(r.keep, valid[:, None].expand(9, top_k))
    assert r.capacity is None
    assert r.num_experts == 5
    assert r.top_k == top_k
    assert r.num_tokens == 9
    # best first
    chosen = probs.gather(1, r.expert_index)
    assert bool((chosen[:, :-1] >= chosen[:, 1:]).all())


def test_router_gradients_reach_weights_but_not_padding() -> None:
    torch.manual_seed(1)
    router = TopKRouter(4, 3, 2)
    x = torch.randn(5, 4, requires_grad=True)
    valid = torch.tensor([True, True, False, True, False])
    r = router(x, valid)
    (r.gates.sum() + load_balancing_loss(r) + router_z_loss(r)).backward()
    assert x.grad is not None
    assert router.weight is not None
    assert router.weight.grad is not None
    assert bool((x.grad[~valid] == 0).all())
    assert float(x.grad[valid].abs().sum()) > 0


def test_xmoe_router() -> None:
    torch.manual_seed(2)
    router = TopKRouter(8, 4, 2, kind="xmoe", router_dim=3, temperature=0.3)
    assert router.expert_embeddings is not None
    assert router.proj is not None
    with torch.no_grad():
        router.expert_embeddings.mul_(3.0)
    router.train()
    x = torch.randn(6, 8)
    r = router(x)
    norms = router.expert_embeddings.detach().norm(dim=1)
    torch.testing.assert_close(norms, torch.full((4,), 1.5))
    reduced = F.normalize(x @ router.proj.weight.detach().t(), dim=-1)
    emb = F.normalize(router.expert_embeddings.detach(), dim=-1)
    torch.testing.assert_close(r.router_logits, reduced @ emb.t() / 0.3)
    assert float(r.router_logits.detach().abs().max()) <= 1 / 0.3 + 1e-5
    assert r.router_logits.shape == (6, 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dim": 0}, "dim"),
        ({"num_experts": 0}, "num_experts"),
        ({"top_k": 5}, "top_k"),
        ({"top_k": 0}, "top_k"),
        ({"kind": "noisy"}, "kind"),
        ({"temperature": 0.0}, "temperature"),
        ({"router_dim": 0}, "router_dim"),
    ],
)
def test_router_init_errors(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"dim": 4, "num_experts": 4, "top_k": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        TopKRouter(**args)  # type: ignore[arg-type]


def test_router_forward_errors() -> None:
    router = TopKRouter(4, 4, 2)
    with pytest.raises(ValueError, match="x must"):
        router(torch.randn(3, 5))
    with pytest.raises(ValueError, match="valid"):
        router(torch.randn(3, 4), torch.ones(3))
    with pytest.raises(ValueError, match="valid"):
        router(torch.randn(3, 4), torch.ones(2, dtype=torch.bool))


def _loss_routing(logits: torch.Tensor, valid: torch.Tensor) -> Routing:
    num, num_experts = logits.shape
    idx = logits.topk(2, -1).indices
    keep = valid[:, None].expand(num, 2).clone()
    return Routing(idx, torch.zeros(num, 2), keep, valid, logits, num_experts)


def test_load_balancing_loss_uniform_and_collapse() -> None:
    num_experts = 8
    # uniform routing: equal probabilities, top-1 spread evenly
    logits = torch.zeros(16, num_experts)
    r = _loss_routing(logits, torch.ones(16, dtype=torch.bool))
    r.expert_index[:, 0] = torch.arange(16) % num_experts
    torch.testing.assert_close(load_balancing_loss(r), torch.tensor(1.0))
    # collapse: every sub-token on expert 3 with probability 1
    logits = torch.full((16, num_experts), -1e4)
    logits[:, 3] = 0.0
    r = _loss_routing(logits, torch.ones(16, dtype=torch.bool))
    torch.testing.assert_close(load_balancing_loss(r), torch.tensor(float(num_experts)))


def test_load_balancing_loss_reference_and_padding() -> None:
    torch.manual_seed(3)
    logits = torch.randn(10, 4, requires_grad=True)
    valid = torch.tensor([True] * 6 + [False] * 4)
    r = _loss_routing(logits, valid)
    loss = load_balancing_loss(r)
    p = torch.softmax(logits.detach()[:6], -1)
    frac = torch.stack([(logits.detach()[:6].argmax(-1) == e).float().mean() for e in range(4)])
    torch.testing.assert_close(loss, 4 * (p.mean(0) * frac).sum())
    loss.backward()
    assert logits.grad is not None
    assert bool((logits.grad[6:] == 0).all())
    # padding rows routed anywhere do not change the loss
    other = logits.detach().clone()
    other[6:] = torch.tensor([100.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(load_balancing_loss(_loss_routing(other, valid)), loss.detach())


def test_z_loss_reference_and_padding() -> None:
    torch.manual_seed(4)
    logits = torch.randn(7, 5)
    valid = torch.tensor([True, False, True, True, False, True, True])
    r = _loss_routing(logits, valid)
    expected = torch.logsumexp(logits[valid], -1).pow(2).mean()
    torch.testing.assert_close(router_z_loss(r), expected)


def test_losses_with_no_valid_subtoken() -> None:
    logits = torch.randn(3, 4, requires_grad=True)
    r = _loss_routing(logits, torch.zeros(3, dtype=torch.bool))
    total = load_balancing_loss(r) + router_z_loss(r)
    assert float(total.detach()) == 0.0
    total.backward()
    assert logits.grad is not None
    assert bool((logits.grad == 0).all())
    assert r.dropped_fraction == 0.0


def test_xmoe_router_allows_two_forwards_before_one_backward() -> None:
    """The in-place renormalisation of the expert embeddings must not break a pending graph."""
    from papercraft.mhmoe.layer import MHMoE

    torch.manual_seed(0)
    layer = MHMoE(32, 4, num_heads=2, router="xmoe").train()
    x = torch.randn(2, 5, 32)
    first = layer(x).hidden_states.sum()
    second = layer(x).hidden_states.sum()
    (first + second).backward()
    assert layer.router.expert_embeddings is not None
    norms = layer.router.expert_embeddings.detach().norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, 1.5))


@pytest.mark.parametrize(("num_experts", "k"), [(5, 1), (5, 3), (160, 4), (40, 6), (8, 8)])
def test_select_topk_equals_torch_topk_with_gradients(num_experts: int, k: int) -> None:
    # k <= ITERATIVE_TOPK_MAX_K takes the repeated-max path on CPU, larger k torch.topk
    torch.manual_seed(num_experts + k)
    scores = torch.randn(257, num_experts, dtype=torch.float64, requires_grad=True)
    values, index = select_topk(scores, k)
    ref_values, ref_index = scores.topk(k, dim=-1)
    assert torch.equal(index, ref_index)
    assert torch.equal(values, ref_values)
    weight = torch.randn(257, k, dtype=torch.float64)
    (grad,) = torch.autograd.grad((values * weight).sum(), scores)
    (ref_grad,) = torch.autograd.grad((ref_values * weight).sum(), scores)
    assert torch.equal(grad, ref_grad)


def test_select_topk_ties_take_the_lower_column_first() -> None:
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    values, index = select_topk(scores, 3)
    assert index.tolist() == [[1, 2, 0], [0, 1, 2]]
    assert values.tolist() == [[3.0, 3.0, 1.0], [2.0, 2.0, 2.0]]
    assert ITERATIVE_TOPK_MAX_K >= 3  # the path this test is about
