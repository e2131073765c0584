"""Tests for papercraft.mhmoe.layer: MH-MoE against hand-written references, padding, losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from papercraft.mhmoe.layer import MHMoE, MoEOutput, SparseMoE


def _hand_smoe(
    x: torch.Tensor,
    router_w: torch.Tensor,
    w_gate: torch.Tensor,
    w_up: torch.Tensor,
    w_down: torch.Tensor,
    top_k: int,
    capacity_factor: float | None,
    valid: torch.Tensor,
) -> torch.Tensor:
    """Independent plain top-k SMoE with GShard capacity, written out loop by loop."""
    num, num_experts = x.shape[0], router_w.shape[0]
    probs = torch.softmax(x @ router_w.t(), -1)
    top_p, top_i = probs.topk(top_k, -1)
    if top_k > 1:
        top_p = top_p / top_p.sum(-1, keepdim=True)
    n_valid = int(valid.sum())
    cap = (
        None
        if capacity_factor is None
        else math.ceil(capacity_factor * top_k * math.ceil(n_valid / num_experts))
    )
    used = [0] * num_experts
    out = torch.zeros_like(x)
    for j in range(top_k):
        for s in range(num):
            if not bool(valid[s]):
                continue
            e = int(top_i[s, j])
            if cap is not None and used[e] >= cap:
                continue
            used[e] += 1
            y = (F.silu(x[s] @ w_gate[e]) * (x[s] @ w_up[e])) @ w_down[e]
            out[s] = out[s] + top_p[s, j] * y
    return out


def _weights(layer: MHMoE) -> tuple[torch.Tensor, ...]:
    assert layer.router.weight is not None
    ex = layer.experts
    return (layer.router.weight, ex.w_gate, ex.w_up, ex.w_down)


@pytest.mark.parametrize("top_k", [1, 2, 3, 4])
@pytest.mark.parametrize("capacity_factor", [None, 1.0])
def test_h1_identity_equals_sparse_moe_and_hand_smoe(
    top_k: int, capacity_factor: float | None
) -> None:
    torch.manual_seed(top_k)
    mh = MHMoE(
        8, 5, num_heads=1, top_k=top_k, head_projection=False, capacity_factor=capacity_factor
    ).double()
    smoe = SparseMoE(8, 5, top_k=top_k, capacity_factor=capacity_factor).double()
    smoe.load_state_dict(mh.state_dict())
    assert isinstance(mh.head_proj, torch.nn.Identity)
    assert isinstance(smoe.merge_proj, torch.nn.Identity)
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    a, b = mh(x, mask), smoe(x, mask)
    torch.testing.assert_close(a.hidden_states, b.hidden_states)
    torch.testing.assert_close(a.aux_loss, b.aux_loss)
    with torch.no_grad():
        ref = _hand_smoe(x.reshape(-1, 8), *_weights(mh), top_k, capacity_factor, mask.reshape(-1))
    torch.testing.assert_close(a.hidden_states.reshape(-1, 8), ref)


@pytest.mark.parametrize("num_heads", [2, 4])
def test_mhmoe_equals_project_split_smoe_merge(num_heads: int) -> None:
    torch.manual_seed(10 + num_heads)
    d = 16
    layer = MHMoE(d, 6, num_heads=num_heads, top_k=2, capacity_factor=1.0, dispatch="loop").double()
    with torch.no_grad():  # non-zero biases so their placement is tested
        layer.head_proj.bias.normal_()  # type: ignore[union-attr]
        layer.merge_proj.bias.normal_()  # type: ignore[union-attr]
    x = torch.randn(9, d, dtype=torch.float64)
    mask = torch.tensor([True] * 7 + [False] * 2)
    out = layer(x, mask).hidden_states
    with torch.no_grad():
        projected = x @ layer.head_proj.weight.t() + layer.head_proj.bias  # type: ignore[operator]
        dh = d // num_heads
        sub = torch.stack(
            [projected[i, j * dh : (j + 1) * dh] for i in range(9) for j in range(num_heads)]
        )
        sub_valid = torch.tensor([bool(mask[i]) for i in range(9) for _ in range(num_heads)])
        sub_out = _hand_smoe(sub, *_weights(layer), 2, 1.0, sub_valid)
        merged = torch.cat(
            [sub_out[i * num_heads : (i + 1) * num_heads].reshape(-1) for i in range(9)]
        ).reshape(9, d)
        ref = merged @ layer.merge_proj.weight.t() + layer.merge_proj.bias  # type: ignore[operator]
        ref[~mask] = 0
    torch.testing.assert_close(out, ref)


def test_split_merge_round_trip() -> None:
    layer = MHMoE(12, 4, num_heads=3)
    x = torch.randn(5, 12)
    sub = layer.split_heads(x)
    assert sub.shape == (15, 4)
    torch.testing.assert_close(sub[2 * 3 + 1], x[2, 4:8])  # sub-token j of token i is row i*h + j
    torch.testing.assert_close(layer.merge_heads(sub), x)


@pytest.mark.parametrize("dispatch", ["loop", "grouped", "dense"])
def test_padding_output_gradient_and_isolation(dispatch: str) -> None:
    torch.manual_seed(20)
    layer = MHMoE(8, 4, num_heads=2, top_k=2, capacity_factor=1.0, dispatch=dispatch).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[0, 3:] = False
    out = layer(x, mask)
    assert bool((out.hidden_states[~mask] == 0).all())
    (out.hidden_states.square().sum() + out.loss).backward()
    assert x.grad is not None
    assert bool((x.grad[~mask] == 0).all())
    assert float(x.grad[mask].abs().sum()) > 0
    # padded tokens neither take capacity nor enter the losses: junk in them changes nothing
    x2 = x.detach().clone()
    x2[~mask] = 100.0 * torch.randn_like(x2[~mask])
    out2 = layer(x2, mask)
    torch.testing.assert_close(out2.hidden_states, out.hidden_states.detach())
    torch.testing.assert_close(out2.aux_loss, out.aux_loss.detach())
    # and equal to running only the real tokens
    real = layer(x.detach()[mask])
    torch.testing.assert_close(real.hidden_states, out.hidden_states.detach()[mask])
    torch.testing.assert_close(real.z_loss, out.z_loss.detach())


def test_layer_dispatchers_agree_with_gradients() -> None:
    torch.manual_seed(30)
    layer = MHMoE(16, 6, num_heads=4, top_k=3, capacity_factor=0.75, z_loss_coef=1e-3).double()
    x = torch.randn(3, 6, 16, dtype=torch.float64)
    mask = torch.rand(3, 6) > 0.25
    results = {}
    for name in ("loop", "grouped", "dense"):
        layer.set_dispatch(name)
        layer.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_(True)
        out = layer(xi, mask)
        (out.hidden_states.sin().sum() + out.loss).backward()
        grads = [xi.grad] + [p.grad for p in layer.parameters()]
        results[name] = (out.hidden_states.detach(), grads, out.routing.dropped_fraction)
    assert results["dense"][2] > 0  # the capacity actually drops something
    for name in ("loop", "grouped"):
        torch.testing.assert_close(results[name][0], results["dense"][0])
        for g, g_ref in zip(results[name][1], results["dense"][1], strict=True):
            assert g is not None
            assert g_ref is not None
            torch.testing.assert_close(g, g_ref)


def test_gradcheck_tiny_layer() -> None:
    torch.manual_seed(40)
    layer = MHMoE(8, 4, num_heads=2, top_k=2, capacity_factor=None, z_loss_coef=0.1).double()
    x = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)

    def f(inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = layer(inp)
        return out.hidden_states, out.loss

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5)


def test_losses_and_output_fields() -> None:
    torch.manual_seed(50)
    layer = MHMoE(8, 4, num_heads=2, top_k=2, aux_loss_coef=0.5, z_loss_coef=0.25)
    out = layer(torch.randn(6, 8))
    assert isinstance(out, MoEOutput)
    assert out.hidden_states.shape == (6, 8)
    torch.testing.assert_close(out.loss, 0.5 * out.aux_loss + 0.25 * out.z_loss)
    assert out.routing.expert_index.shape == (12, 2)
    assert out.routing.capacity == math.ceil(1.0 * 2 * math.ceil(12 / 4))
    # collapsed router: aux loss = E
    with torch.no_grad():
        assert layer.router.weight is not None
        layer.router.weight.zero_()
        layer.router.weight[1] = 1e3
    x = torch.ones(6, 8)
    layer.head_proj.weight.data = torch.eye(8)  # type: ignore[union-attr]
    layer.head_proj.bias.data.zero_()  # type: ignore[union-attr]
    torch.testing.assert_close(layer(x).aux_loss, torch.tensor(4.0))


def test_defaults_and_attributes() -> None:
    layer = MHMoE(32, 8)
    assert layer.num_heads == 4
    assert layer.top_k == 2
    assert layer.num_experts == 8
    assert layer.experts.dim == 8
    assert layer.experts.hidden == 4 * 32 // 4
    assert layer.router.dim == 8
    assert isinstance(layer.head_proj, torch.nn.Linear)
    assert layer.head_proj.bias is not None
    assert bool((layer.merge_proj.bias == 0).all())  # type: ignore[operator]
    bound = math.sqrt(6 / 64) / math.sqrt(2)  # xavier-uniform bound with gain 1/sqrt(2)
    assert float(layer.head_proj.weight.detach().abs().max()) <= bound
    assert float(layer.head_proj.weight.detach().abs().max()) > 0.8 * bound
    smoe = SparseMoE(16, 4)
    assert smoe.num_heads == 1
    assert smoe.experts.hidden == 64


def test_xmoe_router_layer_trains() -> None:
    torch.manual_seed(60)
    layer = MHMoE(16, 4, num_heads=2, router="xmoe", router_dim=4, gate_temperature=0.3)
    layer.train()
    out = layer(torch.randn(2, 3, 16))
    (out.hidden_states.sum() + out.loss).backward()
    assert layer.router.expert_embeddings is not None
    assert layer.router.expert_embeddings.grad is not None
    assert float(layer.router.expert_embeddings.grad.abs().sum()) > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d_model": 10, "num_heads": 4}, "divisible"),
        ({"num_heads": 0}, "num_heads"),
        ({"top_k": 9}, "top_k"),
        ({"dispatch": "fast"}, "dispatch"),
        ({"router": "hash"}, "kind"),
        ({"aux_loss_coef": -1.0}, "aux_loss_coef"),
        ({"capacity_factor": float("nan")}, "capacity_factor"),
    ],
)
def test_init_errors(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"d_model": 16, "num_experts": 8}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        MHMoE(**args)  # type: ignore[arg-type]


def test_forward_and_set_dispatch_errors() -> None:
    layer = MHMoE(8, 4, num_heads=2)
    with pytest.raises(ValueError, match="x must"):
        layer(torch.randn(3, 7))
    with pytest.raises(ValueError, match="padding_mask"):
        layer(torch.randn(2, 3, 8), torch.ones(2, 3))
    with pytest.raises(ValueError, match="padding_mask"):
        layer(torch.randn(2, 3, 8), torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="dispatch"):
        layer.set_dispatch("gpu")
    with pytest.raises(ValueError, match="num_heads"):
        SparseMoE(8, 4, num_heads=2)
