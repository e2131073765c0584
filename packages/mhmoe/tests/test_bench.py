"""Tests for papercraft.mhmoe.bench (a --quick smoke run) and papercraft.mhmoe.deepspeed_compat."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from papercraft.mhmoe import bench, deepspeed_compat
from papercraft.mhmoe.bench import BenchOptions, run_bench, write_report
from papercraft.mhmoe.dispatch import DISPATCHERS
from papercraft.mhmoe.layer import MHMoE, SparseMoE

# ------------------------------------------------------------------------------------------
# bench
# ------------------------------------------------------------------------------------------
_QUICK = {
    "tokens": 64,
    "d_model": 32,
    "expert_hidden": 48,
    "experts": (4, 8),
    "heads": (2,),
    "parity_experts": 4,
    "impls": ("loop", "grouped", "grouped_bmm"),
    "threads": 1,  # no oversubscription on a shared CI machine
}


@pytest.fixture(scope="module")
def quick_report() -> bench.BenchReport:
    return run_bench(BenchOptions.quick(**_QUICK), progress=False)


def test_quick_run_rows_and_ratios(quick_report: bench.BenchReport) -> None:
    rows = quick_report.rows
    dispatch = [r for r in rows if r["section"] == "dispatch"]
    # every implementation and the floor at every expert count
    for e in (4, 8):
        impls = [r["impl"] for r in dispatch if r["experts"] == e]
        assert impls[:3] == ["loop", "grouped", "grouped_bmm"]
        assert len(impls) == 4
        assert impls[3].startswith("floor (")
    for row in rows:
        floor = next(
            r
            for r in rows
            if r["impl"].startswith("floor")
            and (r["section"], r["experts"], r["heads"])
            == (row["section"], row["experts"], row["heads"])
        )
        assert row["fwd_ms"] > 0
        assert row["fwdbwd_ms"] > 0
        assert row["fwd_vs_floor"] == pytest.approx(row["fwd_ms"] / floor["fwd_ms"])
        assert row["fwdbwd_vs_floor"] == pytest.approx(row["fwdbwd_ms"] / floor["fwdbwd_ms"])
        assert row["fwd_tok_s"] == pytest.approx(64 / (row["fwd_ms"] / 1e3))
        assert 0.0 <= row["dropped"] < 1.0
    parity = [r for r in rows if r["section"] == "parity" and r["impl"] == "grouped"]
    assert [r["heads"] for r in parity] == [1, 2]
    assert parity[0]["vs_smoe"] == 1.0
    assert parity[1]["vs_smoe"] == pytest.approx(parity[1]["fwd_ms"] / parity[0]["fwd_ms"])
    # params+flops parity: MH-MoE (h=2) has top-4 and more, narrower experts
    assert parity[1]["top_k"] == 4
    assert parity[1]["experts"] > 4
    assert parity[1]["params"] == pytest.approx(parity[0]["params"], rel=0.15)


def test_quick_run_notes_machine_and_cleanup(quick_report: bench.BenchReport) -> None:
    notes = "\n".join(quick_report.notes)
    assert "compute floor at E=8" in notes  # 32 not measured: the largest count is used
    assert "within 1.25× of SMoE" in notes
    assert all(n.split()[0] in ("PASS", "MISS") for n in quick_report.notes[:2])
    assert quick_report.machine["torch_threads"] >= 1
    assert len(quick_report.machine["loadavg_start"]) == 3
    # the forced grouped variants are unregistered after the run
    assert set(DISPATCHERS) == {"loop", "grouped", "dense"}


def test_mhv2_section_times_the_published_parity_configs() -> None:
    options = BenchOptions.quick(
        tokens=16, experts=(4,), heads=(), mhv2_heads=(2,), impls=("grouped",), threads=1
    )
    options = BenchOptions(**{**options.__dict__, "backward": False})
    report = run_bench(options, progress=False)
    rows = [r for r in report.rows if r["section"] == "parity_mhv2" and r["impl"] == "grouped"]
    # MH-v2 (arXiv 2411.16205): SMoE 8 experts, hidden 2048, top-1 -> h=2: 40 experts, 768, top-2
    assert [(r["heads"], r["experts"], r["expert_hidden"], r["top_k"]) for r in rows] == [
        (1, 8, 2048, 1),
        (2, 40, 768, 2),
    ]
    assert rows[1]["vs_smoe"] == pytest.approx(rows[1]["fwd_ms"] / rows[0]["fwd_ms"])
    assert any("MH-v2 configuration, d 768" in n for n in report.notes)


def test_kept_counts_match_routing() -> None:
    torch.manual_seed(0)
    layer = SparseMoE(16, 4, top_k=2, expert_hidden=8, capacity_factor=0.5)
    x = torch.randn(40, 16)
    counts, dropped = bench._kept_counts(layer, x)
    capacity = math.ceil(0.5 * 2 * math.ceil(40 / 4))
    assert max(counts) <= capacity
    assert dropped > 0
    assert sum(counts) == round(40 * 2 * (1 - dropped))


def test_floor_calls_run_the_same_expert_work() -> None:
    torch.manual_seed(0)
    layer = SparseMoE(16, 4, top_k=2, expert_hidden=8)
    counts = [5, 0, 7, 3]
    calls = bench._floor_calls(layer.experts, counts, backward=True, seed=0)
    assert {"floor_slices", "floor_bmm"} <= set(calls)
    for call in calls.values():
        call()
        grad = layer.experts.w_gate.grad
        assert grad is not None
        # expert 1 has no rows: no gradient reaches it; the others get one
        assert torch.count_nonzero(grad[1]) == 0
        assert all(torch.count_nonzero(grad[e]) > 0 for e in (0, 2, 3))


def test_write_report(quick_report: bench.BenchReport, tmp_path: object) -> None:
    from pathlib import Path

    out = Path(str(tmp_path)) / "res"
    paths = write_report(quick_report, out)
    data = json.loads(paths["json"].read_text())
    assert len(data["rows"]) == len(quick_report.rows)
    assert "| impl |" in paths["markdown"].read_text().replace("| section | impl |", "| impl |")
    pytest.importorskip("matplotlib")
    assert paths["tok_s_plot"].stat().st_size > 0
    with pytest.raises(ValueError, match="output_dir"):
        write_report(quick_report, paths["json"])


def test_argv_parsing_and_threads_restored(tmp_path: object) -> None:
    threads = torch.get_num_threads()
    report = run_bench(
        [
            "--quick",
            "--tokens",
            "32",
            "--experts",
            "4",
            "--impls",
            "grouped",
            "--heads",
            "--capacity-factor",
            "0",
            "--no-backward",
            "--threads",
            "1",
            "--output",
            str(tmp_path),
        ],
        progress=False,
    )
    assert torch.get_num_threads() == threads
    assert report.machine["torch_threads"] == 1
    assert {r["section"] for r in report.rows} == {"dispatch"}
    assert all(r["fwdbwd_ms"] is None and r["dropped"] == 0.0 for r in report.rows)
    assert "capacity factor None" in report.title


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"experts": ()}, "experts"),
        ({"experts": (1,)}, "top_k"),
        ({"heads": (3,)}, "divide d_model"),
        ({"heads": (1,)}, "heads"),
        ({"impls": ("fast",)}, "impls"),
        ({"threads": 0}, "threads"),
        ({"repeats": 0}, "repeats"),
        ({"dtype": "float16"}, "dtype"),
        ({"device": "tpu"}, "device"),
        ({"capacity_factor": math.nan}, "capacity_factor"),
        ({"parity_match": "flops"}, "parity_match"),
        ({"mhv2_heads": (5,)}, "divide 768"),
        ({"mhv2_heads": (1,)}, "mhv2_heads"),
    ],
)
def test_options_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BenchOptions(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# deepspeed_compat
# ------------------------------------------------------------------------------------------
needs_deepspeed = pytest.mark.skipif(
    not deepspeed_compat.deepspeed_available(),
    reason="DeepSpeed is not installed (DS_BUILD_OPS=0 pip install deepspeed)",
)


def _reference_smoe(layer: MHMoE, x: torch.Tensor) -> torch.Tensor:
    """Independent dropless top-k SMoE: softmax gate, renormalised top-k, SwiGLU experts."""
    assert layer.router.weight is not None
    probs = (x @ layer.router.weight.t()).softmax(-1)
    top_p, top_i = probs.topk(layer.top_k, dim=-1)
    top_p = top_p / top_p.sum(-1, keepdim=True)
    ex = layer.experts
    out = torch.zeros_like(x)
    for s in range(x.shape[0]):
        for j in range(layer.top_k):
            e = int(top_i[s, j])
            h = F.silu(x[s] @ ex.w_gate[e]) * (x[s] @ ex.w_up[e])
            out[s] += top_p[s, j] * (h @ ex.w_down[e])
    return out


def _smoe(top_k: int, capacity_factor: float | None, seed: int = 0) -> SparseMoE:
    torch.manual_seed(seed)
    layer = SparseMoE(16, 4, top_k=top_k, expert_hidden=24, capacity_factor=capacity_factor)
    with torch.no_grad():  # spread the routing so that top-k choices are clear
        assert layer.router.weight is not None
        layer.router.weight.normal_(std=0.5)
    return layer


@needs_deepspeed
def test_deepspeed_matches_reference_dropless_with_gradients() -> None:
    layer = _smoe(2, None)
    ds = deepspeed_compat.deepspeed_moe_layer(16, 4, 2, 24, None)
    deepspeed_compat.copy_weights_to_deepspeed(layer, ds)
    x = torch.randn(24, 16, requires_grad=True)
    ref = _reference_smoe(layer, x)
    ours = layer(x).hidden_states
    theirs, _, _ = ds(x)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(theirs, ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(ref)
    ds_up = ds.deepspeed_moe.experts.deepspeed_experts[0].up.weight
    gx_ours, gw_ours = torch.autograd.grad(ours, (x, layer.experts.w_up), g)
    gx_ds, gw_ds = torch.autograd.grad(theirs, (x, ds_up), g)
    torch.testing.assert_close(gx_ds, gx_ours, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gw_ds, gw_ours[0].t(), atol=1e-5, rtol=1e-5)
    assert torch.count_nonzero(gw_ds) > 0


@needs_deepspeed
@pytest.mark.parametrize("top_k", [1, 2])
def test_compare_with_deepspeed_dropless(top_k: int) -> None:
    layer = _smoe(top_k, None)
    x = torch.randn(2, 12, 16)
    result = deepspeed_compat.compare_with_deepspeed(layer, x, repeats=1)
    assert result.outputs_comparable, result.reason
    assert result.max_abs_diff < 1e-5
    assert result.ours_s > 0
    assert result.deepspeed_s > 0
    assert result.speedup == pytest.approx(result.deepspeed_s / result.ours_s)
    assert result.ours_dropped == 0.0


@needs_deepspeed
def test_compare_with_deepspeed_drops_are_not_compared() -> None:
    layer = _smoe(2, 0.5)
    result = deepspeed_compat.compare_with_deepspeed(layer, torch.randn(32, 16), repeats=1)
    assert result.ours_dropped > 0
    assert not result.outputs_comparable
    assert "renormalises" in result.reason


@needs_deepspeed
def test_deepspeed_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="top_k must be <="):
        deepspeed_compat.deepspeed_moe_layer(16, 2, 3, 24, 1.0)
    with pytest.raises(ValueError, match="expert_hidden"):
        deepspeed_compat.deepspeed_moe_layer(16, 4, 2, 0, 1.0)
    ds = deepspeed_compat.deepspeed_moe_layer(16, 4, 2, 24, 1.0)
    with pytest.raises(ValueError, match="num_heads=1"):
        deepspeed_compat.copy_weights_to_deepspeed(MHMoE(16, 4, num_heads=2), ds)
    with pytest.raises(ValueError, match="softmax"):
        deepspeed_compat.copy_weights_to_deepspeed(SparseMoE(16, 4, router="xmoe"), ds)
    with pytest.raises(ValueError, match="8 experts"):
        deepspeed_compat.copy_weights_to_deepspeed(SparseMoE(16, 8, expert_hidden=24), ds)
    with pytest.raises(ValueError, match="hidden 32"):
        deepspeed_compat.copy_weights_to_deepspeed(SparseMoE(16, 4, expert_hidden=32), ds)
    with pytest.raises(ValueError, match="x must have shape"):
        deepspeed_compat.compare_with_deepspeed(_smoe(2, None), torch.randn(4, 8))
    # a DeepSpeed without the general top-k gate refuses k > 2, naming the limitation
    from deepspeed.moe import sharded_moe

    monkeypatch.delattr(sharded_moe, "topkgating", raising=False)
    assert not deepspeed_compat.deepspeed_supports_topk()
    with pytest.raises(ValueError, match="only k=1 or k=2"):
        deepspeed_compat.deepspeed_moe_layer(16, 4, 3, 24, 1.0)


@needs_deepspeed
def test_deepspeed_topk_above_two_where_supported() -> None:
    if not deepspeed_compat.deepspeed_supports_topk():
        pytest.skip("this DeepSpeed has no k > 2 gate")
    layer = _smoe(3, None)
    result = deepspeed_compat.compare_with_deepspeed(layer, torch.randn(20, 16), repeats=1)
    assert result.outputs_comparable
    assert result.max_abs_diff < 1e-5


def test_deepspeed_missing_is_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deepspeed_compat, "deepspeed_available", lambda: False)
    with pytest.raises(ImportError, match="pip install deepspeed"):
        deepspeed_compat.deepspeed_moe_layer(16, 4, 2, 24, 1.0)
    with pytest.raises(ImportError, match="pip install deepspeed"):
        deepspeed_compat.deepspeed_supports_topk()
