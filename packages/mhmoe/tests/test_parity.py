"""Tests for papercraft.mhmoe.parity: formulas against real modules, MH-v2 configs, the table."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from papercraft.mhmoe.parity import (
    config_flops,
    config_params,
    moe_layer_flops,
    moe_layer_params,
    parity_config,
    parity_table,
)

MH_V2_BASELINE = {"d_model": 768, "num_experts": 8, "top_k": 1, "expert_hidden": 2048}


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- MH-v2 configs


@pytest.mark.parametrize(
    ("heads", "hidden", "top_k", "experts"), [(2, 768, 2, 40), (3, 512, 3, 96)]
)
def test_params_flops_parity_reproduces_mh_v2(
    heads: int, hidden: int, top_k: int, experts: int
) -> None:
    config = parity_config(MH_V2_BASELINE, heads, "params+flops")
    assert config == {
        "d_model": 768,
        "num_experts": experts,
        "top_k": top_k,
        "expert_hidden": hidden,
        "num_heads": heads,
        "head_projection": True,
    }
    # the hidden dim satisfies k·H = d_moe − 2d/3 exactly (head + merge = 2d/3 hidden units)
    assert top_k * hidden == 2048 - 2 * 768 // 3
    base = {**MH_V2_BASELINE, "num_heads": 1, "head_projection": False}
    # FLOPs match up to the router, whose cost grows with the expert count (< 2%)
    assert config_flops(config) == pytest.approx(config_flops(base), rel=0.02)
    # params match up to rounding the expert count to a multiple of 8 (< half a step of 8 experts)
    per_expert = 3 * (768 // heads) * hidden + 768 // heads
    assert abs(config_params(config) - config_params(base)) <= 4 * per_expert


def test_expert_multiple_one_gives_nearest_integer_count() -> None:
    # exact param-matching counts are 41.3 (h=2) and 92.95 (h=3)
    assert parity_config(MH_V2_BASELINE, 2, expert_multiple=1)["num_experts"] == 41
    assert parity_config(MH_V2_BASELINE, 3, expert_multiple=1)["num_experts"] == 93


def test_params_only_parity_keeps_experts_and_multiplies_flops() -> None:
    base = {**MH_V2_BASELINE, "num_heads": 1, "head_projection": False}
    for heads in (2, 3, 4):
        config = parity_config(MH_V2_BASELINE, heads, "params", hidden_multiple=1)
        assert (config["num_experts"], config["top_k"]) == (8, 1)
        aligned = parity_config(MH_V2_BASELINE, heads, "params")["expert_hidden"]
        assert aligned % 8 == 0
        assert abs(aligned - config["expert_hidden"]) <= 4
        per_hidden_unit = 8 * 3 * (768 // heads)
        assert abs(config_params(config) - config_params(base)) <= per_hidden_unit // 2
        ratio = config_flops(config) / config_flops(base)
        assert heads - 0.2 < ratio < heads + 0.3  # expert width grows ~h-fold, so FLOPs do too


def test_parity_config_copies_other_keys_and_honours_top_k() -> None:
    baseline = {**MH_V2_BASELINE, "capacity_factor": 1.25, "router": "softmax"}
    config = parity_config(baseline, 2, top_k=4)
    assert config["capacity_factor"] == 1.25
    assert config["top_k"] == 4
    assert config["expert_hidden"] == (2048 - 512) // 4
    # without head/merge projections the whole expert budget is shared by the k experts
    no_proj = parity_config({**MH_V2_BASELINE, "head_projection": False}, 1, top_k=2)
    assert no_proj["expert_hidden"] == 1024
    assert no_proj["head_projection"] is False


def test_parity_config_errors() -> None:
    with pytest.raises(ValueError, match="match must be one of"):
        parity_config(MH_V2_BASELINE, 2, "flops")
    with pytest.raises(ValueError, match="num_heads must divide"):
        parity_config(MH_V2_BASELINE, 5)
    with pytest.raises(ValueError, match="num_heads must be a positive int"):
        parity_config(MH_V2_BASELINE, 0)
    with pytest.raises(ValueError, match="'expert_hidden'"):
        parity_config({"d_model": 768, "num_experts": 8, "top_k": 1}, 2)
    with pytest.raises(ValueError, match=r"baseline\['num_heads'\] must be 1"):
        parity_config({**MH_V2_BASELINE, "num_heads": 2}, 2)
    with pytest.raises(ValueError, match="top_k can only be set"):
        parity_config(MH_V2_BASELINE, 2, "params", top_k=2)
    with pytest.raises(ValueError, match="leave no budget"):
        parity_config({"d_model": 768, "num_experts": 8, "top_k": 1, "expert_hidden": 256}, 2)
    # H = round(3/2) = 2 leaves params for round(640/448) = 1 expert, fewer than top-2
    tiny = {"d_model": 64, "num_experts": 1, "top_k": 1, "expert_hidden": 3}
    with pytest.raises(ValueError, match="exceeds the"):
        parity_config(tiny, 1, top_k=2, expert_multiple=1)
    with pytest.raises(ValueError, match="expert_multiple"):
        parity_config(MH_V2_BASELINE, 2, expert_multiple=0)


# ----------------------------------------------------------------------------- formulas


def test_formulas_by_hand() -> None:
    d, e, hid = 768, 40, 768
    sub = d // 2
    assert moe_layer_params(d, e, hid, num_heads=2) == e * 3 * sub * hid + sub * e + 2 * (d * d + d)
    assert (
        moe_layer_params(d, e, hid, num_heads=2, bias=False)
        == e * 3 * sub * hid + sub * e + 2 * d * d
    )
    assert moe_layer_params(d, e, hid, num_heads=2, router="xmoe", router_dim=16) == (
        e * 3 * sub * hid + sub * 16 + e * 16 + 2 * (d * d + d)
    )
    assert moe_layer_flops(d, e, hid, num_heads=2, top_k=2) == 2 * (
        2 * 2 * 3 * sub * hid + 2 * sub * e + 2 * d * d
    )
    assert moe_layer_flops(d, 8, 2048) == 2 * (3 * d * 2048 + d * 8)
    assert moe_layer_params(d, 8, 2048) == 8 * 3 * d * 2048 + d * 8


def test_formula_errors() -> None:
    with pytest.raises(ValueError, match="d_model must be divisible by num_heads"):
        moe_layer_params(10, 4, 8, num_heads=3)
    with pytest.raises(ValueError, match="num_experts must be a positive int"):
        moe_layer_params(8, 0, 8)
    with pytest.raises(ValueError, match="router must be one of"):
        moe_layer_flops(8, 4, 8, router="hash")
    with pytest.raises(ValueError, match="top_k must be <= num_experts"):
        moe_layer_flops(8, 4, 8, top_k=5)
    with pytest.raises(ValueError, match="expert_hidden must be a positive int"):
        moe_layer_flops(8, 4, True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'top_k'"):
        config_flops({"d_model": 8, "num_experts": 4, "expert_hidden": 8})


LAYER_CASES = [
    # (num_heads, num_experts, top_k, expert_hidden, router, head_projection, bias)
    (1, 4, 1, 24, "softmax", False, True),
    (2, 6, 2, 16, "softmax", True, True),
    (4, 5, 3, 8, "xmoe", True, False),
    (2, 3, 2, 12, "xmoe", True, True),
]


@pytest.mark.parametrize(
    ("heads", "experts", "top_k", "hidden", "router", "proj", "bias"), LAYER_CASES
)
def test_params_match_real_module(
    heads: int, experts: int, top_k: int, hidden: int, router: str, proj: bool, bias: bool
) -> None:
    from papercraft.mhmoe.layer import MHMoE

    d = 32
    layer = MHMoE(
        d,
        experts,
        num_heads=heads,
        top_k=top_k,
        expert_hidden=hidden,
        router=router,
        router_dim=8,
        head_projection=proj,
        bias=bias,
    )
    kwargs = {"num_heads": heads, "head_projection": proj, "bias": bias, "router": router}
    assert _numel(layer) == moe_layer_params(d, experts, hidden, router_dim=8, **kwargs)
    config = {"d_model": d, "num_experts": experts, "expert_hidden": hidden, "router_dim": 8}
    assert _numel(layer) == config_params({**config, **kwargs})


@pytest.mark.parametrize(
    ("heads", "experts", "top_k", "hidden", "router", "proj", "bias"), LAYER_CASES
)
def test_flops_match_counted_forward(
    heads: int, experts: int, top_k: int, hidden: int, router: str, proj: bool, bias: bool
) -> None:
    """Count the matmul FLOPs of a real dropless forward pass with torch's FLOP counter."""
    from papercraft.mhmoe.layer import MHMoE

    torch.manual_seed(0)
    d, tokens = 32, 10
    layer = MHMoE(
        d,
        experts,
        num_heads=heads,
        top_k=top_k,
        expert_hidden=hidden,
        router=router,
        router_dim=8,
        head_projection=proj,
        bias=bias,
        capacity_factor=None,
        dispatch="loop",
    )
    x = torch.randn(tokens, d)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        layer(x)
    expected = moe_layer_flops(
        d,
        experts,
        hidden,
        num_heads=heads,
        top_k=top_k,
        head_projection=proj,
        router=router,
        router_dim=8,
    )
    assert counter.get_total_flops() == tokens * expected


def test_parity_config_builds_a_module_with_the_predicted_size() -> None:
    from papercraft.mhmoe.layer import MHMoE

    baseline = {"d_model": 48, "num_experts": 4, "top_k": 1, "expert_hidden": 96}
    config = parity_config(baseline, 3, expert_multiple=1, hidden_multiple=1)
    assert config["expert_hidden"] == (96 - 32) // 3
    assert config["top_k"] == 3
    layer = MHMoE(**config)
    smoe = MHMoE(**{**baseline, "num_heads": 1, "head_projection": False})
    assert _numel(layer) == config_params(config)
    assert _numel(smoe) == config_params({**baseline, "head_projection": False})
    # the expert count is the integer closest to parameter parity
    per_expert = 3 * 16 * config["expert_hidden"] + 16
    assert abs(_numel(layer) - _numel(smoe)) <= per_expert // 2


# ----------------------------------------------------------------------------- table


def test_parity_table_lists_ratios() -> None:
    table = parity_table(MH_V2_BASELINE)
    lines = table.strip().splitlines()
    assert lines[0].startswith("| model | match |")
    assert len(lines) == 2 + 1 + 4
    assert "| SMoE (baseline) | - | 1 | 1 | 8 | 2048 | 37,754,880 | 1.000 |" in table
    assert "| MH-MoE h=2 | params+flops | 2 | 2 | 40 | 768 |" in table
    assert "| MH-MoE h=3 | params+flops | 3 | 3 | 96 | 512 |" in table
    h2_params_row = next(line for line in lines if line.startswith("| MH-MoE h=2 | params |"))
    flops_ratio = float(h2_params_row.rstrip(" |").split("|")[-1])
    assert flops_ratio > 2.0  # params-only parity doubles the FLOPs at h=2
    only = parity_table(MH_V2_BASELINE, [2], match="params+flops")
    assert len(only.strip().splitlines()) == 4
    with pytest.raises(ValueError, match="num_heads must list"):
        parity_table(MH_V2_BASELINE, [])
    with pytest.raises(ValueError, match="match must name"):
        parity_table(MH_V2_BASELINE, match=[])
