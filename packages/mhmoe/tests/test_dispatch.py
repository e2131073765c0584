"""Tests for papercraft.mhmoe.dispatch and experts: loop, grouped and dense dispatch agree."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from papercraft.mhmoe.dispatch import (
    DISPATCHERS,
    dispatch_dense,
    dispatch_grouped,
    dispatch_loop,
    grouped_mm_supported,
)
from papercraft.mhmoe.experts import SwiGLUExperts
from papercraft.mhmoe.routing import Routing, TopKRouter, apply_capacity

Case = tuple[torch.Tensor, TopKRouter, SwiGLUExperts, torch.Tensor, int | None]


def _make(
    top_k: int,
    *,
    capacity: int | None,
    bias: bool,
    dtype: torch.dtype = torch.float64,
    dim: int = 8,
    seed: int = 0,
) -> Case:
    torch.manual_seed(seed)
    num, num_experts = 13, 5
    experts = SwiGLUExperts(num_experts, dim, 12, bias=bias).to(dtype)
    with torch.no_grad():  # make the biases non-trivial
        for b in (experts.b_gate, experts.b_up, experts.b_down):
            if b is not None:
                b.normal_(std=0.1)
    router = TopKRouter(dim, num_experts, top_k).to(dtype)
    x = torch.randn(num, dim, dtype=dtype)
    valid = torch.ones(num, dtype=torch.bool)
    valid[[2, 7, 8]] = False
    return x, router, experts, valid, capacity


def _run(name: str, case: Case, **kwargs: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
    x0, router, experts, valid, capacity = case
    x = x0.clone().requires_grad_(True)
    router.zero_grad(set_to_none=True)
    experts.zero_grad(set_to_none=True)
    routing = apply_capacity(router(x, valid), capacity)
    if name == "grouped":
        out = dispatch_grouped(x, routing, experts, **kwargs)  # type: ignore[arg-type]
    else:
        out = DISPATCHERS[name](x, routing, experts)
    target = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    (out * target).sum().backward()
    params = [router.weight, *(p for p in experts.parameters())]
    grads = [x.grad] + [
        p.grad if p.grad is not None else torch.zeros_like(p) for p in params if p is not None
    ]
    return out.detach(), [g for g in grads if g is not None]


def _reference(case: Case) -> torch.Tensor:
    """Independent reference: a Python loop over sub-tokens and choices with the SwiGLU formula."""
    x, router, experts, valid, capacity = case
    with torch.no_grad():
        routing = apply_capacity(router(x, valid), capacity)
        out = torch.zeros_like(x)
        for s in range(x.shape[0]):
            for j in range(routing.top_k):
                if not bool(routing.keep[s, j]):
                    continue
                e = int(routing.expert_index[s, j])
                gate = x[s] @ experts.w_gate[e]
                up = x[s] @ experts.w_up[e]
                if (
                    experts.b_gate is not None
                    and experts.b_up is not None
                    and experts.b_down is not None
                ):
                    gate, up = gate + experts.b_gate[e], up + experts.b_up[e]
                y = (F.silu(gate) * up) @ experts.w_down[e]
                if experts.b_down is not None:
                    y = y + experts.b_down[e]
                out[s] += routing.gates[s, j] * y
    return out


@pytest.mark.parametrize("top_k", [1, 2, 3, 4])
@pytest.mark.parametrize("capacity", [None, 2])
@pytest.mark.parametrize("bias", [False, True])
def test_dispatchers_agree_values_and_gradients(
    top_k: int, capacity: int | None, bias: bool
) -> None:
    case = _make(top_k, capacity=capacity, bias=bias, seed=top_k)
    ref = _reference(case)
    out_dense, grads_dense = _run("dense", case)
    torch.testing.assert_close(out_dense, ref)
    assert bool((out_dense[~case[3]] == 0).all())  # padded sub-tokens give 0
    runs = {
        "loop": _run("loop", case),
        "bmm": _run("grouped", case, impl="bmm"),
        "slices": _run("grouped", case, impl="slices"),
        "auto": _run("grouped", case),
    }
    for name, (out, grads) in runs.items():
        torch.testing.assert_close(out, out_dense, msg=name)
        assert len(grads) == len(grads_dense)
        for g, g_ref in zip(grads, grads_dense, strict=True):
            torch.testing.assert_close(g, g_ref, msg=name)
        assert bool((grads[0][~case[3]] == 0).all()), name  # no gradient into padding


@pytest.mark.parametrize("impl", ["slices", "bmm", "auto"])
def test_grouped_without_autograd_matches_reference(impl: str) -> None:
    # under no_grad the slices path runs the SwiGLU in place and writes into one buffer
    for top_k, capacity in ((1, None), (3, 2)):
        case = _make(top_k, capacity=capacity, bias=False, seed=11 + top_k)
        x, router, experts, valid, _ = case
        with torch.no_grad():
            routing = apply_capacity(router(x, valid), capacity)
            out = dispatch_grouped(x, routing, experts, impl=impl)  # type: ignore[arg-type]
        torch.testing.assert_close(out, _reference(case))


def test_capacity_drops_change_the_output() -> None:
    # guards against a test setup where the capacity never binds
    case = _make(2, capacity=1, bias=False)
    x, router, _, valid, _ = case
    routing = apply_capacity(router(x, valid), 1)
    assert routing.dropped_fraction > 0
    dropped = _run("grouped", case)[0]
    full = _run("grouped", (*case[:4], None))[0]
    assert not torch.allclose(dropped, full)


@pytest.mark.skipif(not hasattr(torch, "_grouped_mm"), reason="torch._grouped_mm unavailable")
@pytest.mark.parametrize("top_k", [1, 3])
def test_grouped_mm_path_matches_dense(top_k: int) -> None:
    case = _make(top_k, capacity=3, bias=True, dtype=torch.float32, dim=16, seed=7)
    x, _, experts, _, _ = case
    if not grouped_mm_supported(x, experts):
        pytest.skip("grouped_mm not supported for this dtype/shape")
    try:
        out, grads = _run("grouped", case, impl="grouped_mm")
    except (RuntimeError, NotImplementedError) as exc:  # pragma: no cover - platform dependent
        pytest.skip(f"torch._grouped_mm failed here: {exc}")
    out_dense, grads_dense = _run("dense", case)
    torch.testing.assert_close(out, out_dense, atol=1e-5, rtol=1e-4)
    for g, g_ref in zip(grads, grads_dense, strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-4)


def test_grouped_mm_supported_rules() -> None:
    x = torch.randn(3, 8, dtype=torch.float64)
    assert not grouped_mm_supported(x, SwiGLUExperts(2, 8, 8).double())
    assert not grouped_mm_supported(torch.randn(3, 6), SwiGLUExperts(2, 6, 8))  # 24-byte rows
    with pytest.raises(ValueError, match="grouped_mm"):
        dispatch_grouped(
            x, _fixed_routing(3, 2), SwiGLUExperts(2, 8, 8).double(), impl="grouped_mm"
        )


def _fixed_routing(num: int, num_experts: int, *, valid: bool = True) -> Routing:
    idx = torch.zeros(num, 1, dtype=torch.long)
    v = torch.full((num,), valid)
    return Routing(
        idx,
        torch.ones(num, 1, dtype=torch.float64),
        v[:, None].clone(),
        v,
        torch.zeros(num, num_experts),
        num_experts,
    )


@pytest.mark.parametrize("name", ["loop", "grouped", "dense"])
def test_nothing_routed_gives_zero_and_zero_gradient(name: str) -> None:
    experts = SwiGLUExperts(2, 4, 4).double()
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    out = DISPATCHERS[name](x, _fixed_routing(3, 2, valid=False), experts)
    assert out.shape == (3, 4)
    assert bool((out == 0).all())
    out.sum().backward()
    assert x.grad is None or bool((x.grad == 0).all())


def test_skewed_load_all_on_one_expert() -> None:
    torch.manual_seed(5)
    experts = SwiGLUExperts(4, 4, 6).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    routing = _fixed_routing(6, 4)
    routing.gates = torch.rand(6, 1, dtype=torch.float64)
    expected = routing.gates * experts.expert_forward(0, x)
    for fn in (dispatch_loop, dispatch_grouped, dispatch_dense):
        torch.testing.assert_close(fn(x, routing, experts), expected)


def test_dispatch_errors() -> None:
    experts = SwiGLUExperts(2, 4, 4).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    for fn in DISPATCHERS.values():
        with pytest.raises(ValueError, match="x must"):
            fn(torch.randn(3, 5, dtype=torch.float64), _fixed_routing(3, 2), experts)
        with pytest.raises(ValueError, match="routing"):
            fn(x, _fixed_routing(4, 2), experts)
        with pytest.raises(ValueError, match="num_experts"):
            fn(x, _fixed_routing(3, 3), experts)
    with pytest.raises(ValueError, match="impl"):
        dispatch_grouped(x, _fixed_routing(3, 2), experts, impl="cuda")  # type: ignore[arg-type]
    assert set(DISPATCHERS) == {"loop", "grouped", "dense"}


def test_experts_shapes_init_and_errors() -> None:
    torch.manual_seed(6)
    experts = SwiGLUExperts(64, 32, 48, bias=True)
    assert experts.w_gate.shape == (64, 32, 48)
    assert experts.w_up.shape == (64, 32, 48)
    assert experts.w_down.shape == (64, 48, 32)
    assert experts.b_down is not None
    assert experts.b_down.shape == (64, 32)
    std = torch.cat([experts.w_gate.detach().flatten(), experts.w_down.detach().flatten()]).std()
    assert abs(float(std) - 0.02) < 1e-3
    assert bool((experts.b_down == 0).all())
    assert experts.num_experts == 64
    assert experts.dim == 32
    assert experts.hidden == 48
    assert SwiGLUExperts(2, 4, 4).b_gate is None
    with pytest.raises(ValueError, match="hidden"):
        SwiGLUExperts(2, 4, 0)
    with pytest.raises(ValueError, match="num_experts"):
        SwiGLUExperts(True, 4, 4)
    with pytest.raises(ValueError, match="e must"):
        experts.expert_forward(64, torch.randn(2, 32))
    with pytest.raises(ValueError, match="x must"):
        experts.expert_forward(0, torch.randn(2, 31))
