"""Tests for papercraft.mhmoe.stats: counting, measures, hooks on real layers, JSON, heatmap."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from papercraft.mhmoe.layer import MHMoE, SparseMoE
from papercraft.mhmoe.routing import Routing
from papercraft.mhmoe.stats import STATS_FORMAT, ExpertStats


def _routing(
    index: list[list[int]], keep: list[list[bool]], valid: list[bool], experts: int
) -> Routing:
    idx = torch.tensor(index, dtype=torch.long)
    return Routing(
        expert_index=idx,
        gates=torch.full(idx.shape, 0.5),
        keep=torch.tensor(keep),
        valid=torch.tensor(valid),
        router_logits=torch.zeros(idx.shape[0], experts),
        num_experts=experts,
        capacity=None,
    )


def _reference_counts(routing: Routing) -> tuple[list[int], list[int]]:
    """Independent count with plain Python loops."""
    chosen = [0] * routing.num_experts
    kept = [0] * routing.num_experts
    for s in range(routing.expert_index.shape[0]):
        if not bool(routing.valid[s]):
            continue
        for j in range(routing.expert_index.shape[1]):
            e = int(routing.expert_index[s, j])
            chosen[e] += 1
            kept[e] += int(bool(routing.keep[s, j]))
    return chosen, kept


def test_update_counts_valid_choices_before_and_after_drops() -> None:
    # sub-token 2 is padding (its choices must not count); (0, 1) and (3, 0) were dropped
    routing = _routing(
        index=[[0, 1], [1, 2], [3, 0], [0, 3]],
        keep=[[True, False], [True, True], [False, False], [False, True]],
        valid=[True, True, False, True],
        experts=5,
    )
    stats = ExpertStats()
    stats.update("block.0", routing)
    stats.update("block.0", routing)  # accumulates
    assert stats.counts["block.0"].tolist() == [4, 4, 2, 2, 0]
    assert stats.kept_counts["block.0"].tolist() == [2, 2, 2, 2, 0]
    assert stats.num_sub_tokens["block.0"] == 6
    assert stats.top_k["block.0"] == 2
    assert stats.dead_experts() == {"block.0": [4]}
    assert stats.dead_experts(min_count=3) == {"block.0": [2, 3, 4]}
    assert stats.dead_experts(kept=True, min_count=3) == {"block.0": [0, 1, 2, 3, 4]}
    freq = stats.frequencies()["block.0"]
    torch.testing.assert_close(freq, torch.tensor([4, 4, 2, 2, 0], dtype=torch.float64) / 12)
    rates = stats.selection_rates()["block.0"]
    assert float(rates.sum()) == pytest.approx(2.0)  # k choices per valid sub-token
    assert float(stats.selection_rates(kept=True)["block.0"].sum()) == pytest.approx(8 / 6)


def test_update_random_routings_match_reference() -> None:
    gen = torch.Generator().manual_seed(3)
    stats = ExpertStats()
    total_chosen = [0] * 7
    total_kept = [0] * 7
    for _ in range(5):
        num, k = 40, 3
        index = torch.stack([torch.randperm(7, generator=gen)[:k] for _ in range(num)])
        keep = torch.rand(num, k, generator=gen) > 0.3
        valid = torch.rand(num, generator=gen) > 0.2
        routing = _routing(index.tolist(), (keep & valid[:, None]).tolist(), valid.tolist(), 7)
        chosen, kept = _reference_counts(routing)
        total_chosen = [a + b for a, b in zip(total_chosen, chosen, strict=True)]
        total_kept = [a + b for a, b in zip(total_kept, kept, strict=True)]
        stats.update("moe", routing)
    assert stats.counts["moe"].tolist() == total_chosen
    assert stats.kept_counts["moe"].tolist() == total_kept


def test_measures_at_uniform_and_collapsed_routing() -> None:
    experts = 8
    stats = ExpertStats()
    uniform = [[e % experts] for e in range(64)]
    collapsed = [[5] for _ in range(64)]
    ones = [[True]] * 64
    stats.update("uniform", _routing(uniform, ones, [True] * 64, experts))
    stats.update("collapsed", _routing(collapsed, ones, [True] * 64, experts))
    assert stats.load_entropy()["uniform"] == pytest.approx(1.0)
    assert stats.load_entropy()["collapsed"] == pytest.approx(0.0)
    assert stats.active_share()["uniform"] == 1.0
    assert stats.active_share()["collapsed"] == pytest.approx(1 / experts)
    assert stats.dead_experts()["collapsed"] == [0, 1, 2, 3, 4, 6, 7]
    assert stats.layers == ["uniform", "collapsed"]


def test_active_share_threshold_and_entropy_formula() -> None:
    # load 6/2/1/1/0 over 5 experts: shares .6 .2 .1 .1 0
    stats = ExpertStats()
    index = [[0]] * 6 + [[1]] * 2 + [[2]] + [[3]]
    stats.update("l", _routing(index, [[True]] * 10, [True] * 10, 5))
    # default τ = 1/(2·5) = 0.1: experts 0..3 reach it, expert 4 does not
    assert ExpertStats.default_tau(5) == pytest.approx(0.1)
    assert stats.active_share()["l"] == pytest.approx(4 / 5)
    assert stats.active_share(0.15)["l"] == pytest.approx(2 / 5)
    assert stats.active_share(0.0)["l"] == 1.0
    p = [0.6, 0.2, 0.1, 0.1]
    expected = -sum(v * math.log(v) for v in p) / math.log(5)
    assert stats.load_entropy()["l"] == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"tau must be a number in \[0, 1\]"):
        stats.active_share(1.5)
    with pytest.raises(ValueError, match="min_count must be a positive int"):
        stats.dead_experts(0)


def test_empty_layer_measures_are_nan() -> None:
    stats = ExpertStats()
    stats.update("pad", _routing([[0], [1]], [[False], [False]], [False, False], 3))
    assert stats.counts["pad"].tolist() == [0, 0, 0]
    assert math.isnan(stats.active_share()["pad"])
    assert math.isnan(stats.load_entropy()["pad"])
    assert stats.to_dict()["layers"]["pad"]["load_entropy"] is None


def test_update_errors() -> None:
    stats = ExpertStats()
    good = _routing([[0, 1]], [[True, True]], [True], 4)
    stats.update("a", good)
    with pytest.raises(ValueError, match="was seen with num_experts=4, top_k=2"):
        stats.update("a", _routing([[0]], [[True]], [True], 4))
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        stats.update("", good)
    bad = _routing([[0, 1]], [[True, True]], [True], 4)
    bad.valid = torch.tensor([True, True])
    with pytest.raises(ValueError, match="routing must have expert_index and keep"):
        stats.update("b", bad)


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        MHMoE(16, 6, num_heads=4, top_k=2, expert_hidden=8, capacity_factor=1.0),
        nn.GELU(),
        SparseMoE(16, 4, top_k=1, expert_hidden=8, capacity_factor=None),
    )


def test_track_counts_every_layer_of_a_real_model() -> None:
    model = _tiny_model()
    x = torch.randn(2, 5, 16)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    stats = ExpertStats()
    with torch.no_grad(), stats.track(model) as tracked:
        assert tracked is stats
        out0 = model[0](x, padding_mask=mask)
        hidden = model[1](out0.hidden_states)
        out2 = model[2](hidden, padding_mask=mask)
    assert stats.layers == ["0", "2"]
    # 8 real tokens: layer 0 has 8·4 sub-tokens with 2 choices, layer 2 has 8 with 1
    assert stats.num_sub_tokens == {"0": 32, "2": 8}
    assert int(stats.counts["0"].sum()) == 64
    assert int(stats.counts["2"].sum()) == 8
    for name, out in (("0", out0), ("2", out2)):
        chosen, kept = _reference_counts(out.routing)
        assert stats.counts[name].tolist() == chosen
        assert stats.kept_counts[name].tolist() == kept
    assert int(stats.kept_counts["2"].sum()) == 8  # dropless layer keeps everything
    # hooks are gone after the context: another forward pass changes nothing
    before = {k: v.clone() for k, v in stats.counts.items()}
    with torch.no_grad():
        model[0](x)
    assert all(torch.equal(before[k], stats.counts[k]) for k in before)


def test_track_root_layer_removes_hooks_on_error() -> None:
    layer = MHMoE(8, 4, num_heads=2, top_k=2, expert_hidden=4)
    stats = ExpertStats()

    def run_and_fail() -> None:
        with stats.track(layer):
            layer(torch.randn(3, 8))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_and_fail()
    assert stats.layers == ["moe"]
    assert len(layer._forward_hooks) == 0
    with pytest.raises(ValueError, match="must contain an MHMoE layer"):
        stats.track(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"model must be a torch\.nn\.Module"):
        stats.track("model")  # type: ignore[arg-type]


def test_to_dict_save_load_round_trip(tmp_path: Path) -> None:
    stats = ExpertStats()
    stats.update("a", _routing([[0, 2], [1, 2]], [[True, False], [True, True]], [True, True], 3))
    stats.update("b", _routing([[3]], [[True]], [True], 4))
    path = stats.save(tmp_path / "sub" / "stats.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == STATS_FORMAT
    assert data["tau"] == "1/(2E)"
    assert data["layers"]["a"]["counts"] == [1, 1, 2]
    assert data["layers"]["a"]["kept_counts"] == [1, 1, 1]
    assert data["layers"]["b"]["dead_experts"] == [0, 1, 2]
    assert data["summary"]["num_dead_experts"] == 3
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left no temporary file
    loaded = ExpertStats.load(path)
    assert loaded.layers == ["a", "b"]
    for name in ("a", "b"):
        assert torch.equal(loaded.counts[name], stats.counts[name])
        assert torch.equal(loaded.kept_counts[name], stats.kept_counts[name])
    assert loaded.to_dict() == stats.to_dict()
    with pytest.raises(ValueError, match="format_version 1"):
        ExpertStats.from_dict({**data, "format_version": 99})
    with pytest.raises(ValueError, match="must have format"):
        ExpertStats.from_dict({"format": "other"})
    broken = json.loads(json.dumps(data))
    broken["layers"]["a"]["kept_counts"] = [1]
    with pytest.raises(ValueError, match="of equal length"):
        ExpertStats.from_dict(broken)
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="JSON expert statistics"):
        ExpertStats.load(tmp_path / "bad.json")


def test_plot_heatmap_writes_an_image(tmp_path: Path) -> None:
    import matplotlib.image

    stats = ExpertStats()
    stats.update("layer.0", _routing([[e % 6] for e in range(12)], [[True]] * 12, [True] * 12, 6))
    stats.update("layer.1", _routing([[0]] * 4, [[True]] * 4, [True] * 4, 4))
    matrix = stats.matrix()
    assert matrix.shape == (2, 6)
    assert math.isnan(float(matrix[1, 5]))
    assert float(matrix[1, 0]) == 1.0
    path = stats.plot_heatmap(tmp_path / "heat.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3
    assert image.shape[0] > 50
    assert image.shape[1] > 50
    assert stats.plot_heatmap(tmp_path / "heat.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match="path must end in"):
        stats.plot_heatmap(tmp_path / "heat.txt")
    with pytest.raises(ValueError, match="no routing was recorded"):
        ExpertStats().plot_heatmap(tmp_path / "empty.png")
