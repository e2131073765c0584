"""Tests of the FLOP theory (papercraft.yoco.flops) and the YOCO-vs-Llama benchmark (bench).

No timing is asserted: the benchmark runs on tiny models at tiny lengths and the tests check the
rows, ratios, cache bytes and files it produces.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from papercraft.core.testing import seed_everything
from papercraft.yoco.bench import (
    BenchSettings,
    bench_models,
    cache_nbytes,
    llama_cache_nbytes,
    llama_expected_cache_nbytes,
    ratio_rows,
    run_benchmark,
    write_report,
)
from papercraft.yoco.flops import prefill_flops, prefill_flops_breakdown, prefill_flops_ratio

TINY = BenchSettings(
    lengths=(24, 40),
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    num_kv_heads=1,
    intermediate_size=48,
    vocab_size=64,
    chunk_size=8,
    repeats=1,
    warmup=0,
    decode_tokens=2,
)


def _config(**overrides: Any) -> SimpleNamespace:
    """A duck-typed config with the target setting's sizes (d=256, 8 layers, 4/2 heads)."""
    values: dict[str, Any] = {
        "hidden_size": 256,
        "intermediate_size": 768,
        "num_hidden_layers": 8,
        "num_self_decoder_layers": None,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "vocab_size": 8192,
        "self_decoder": "gret",
        "sliding_window": 1024,
        "chunk_size": 64,
    }
    values.update(overrides)
    return SimpleNamespace(**values)


# --------------------------------------------------------------------------------------------------
# FLOP theory


def test_hand_computed_flops_of_a_tiny_config() -> None:
    # d=8, F=16, L=2 (1 self + 1 cross), H=2, H_kv=1, d_h=4, V=10, T=4, C=2
    cfg = _config(
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=4,
        vocab_size=10,
        chunk_size=2,
    )
    llama = prefill_flops_breakdown(cfg, 4, arch="llama")
    assert llama == {
        "projections": 2 * (2 * 4 * 8 * (8 + 8 + 4 + 4)),  # q, o: 8 wide; k, v: 4 wide
        "attention": 2 * (2 * 2 * 10 * 4 * 2),  # 10 causal pairs, QKᵀ and PV, 2 heads
        "ffn": 2 * (3 * 2 * 4 * 8 * 16),
        "lm_head": 2 * 8 * 10,
    }
    assert prefill_flops(cfg, 4, arch="llama") == 3072 + 640 + 6144 + 160
    yoco = prefill_flops_breakdown(cfg, 4, arch="yoco")
    # retention per head (d_k = d_v = 4, 2 chunks of 2): intra 2·2·2²·8, updates 2·2·2·16,
    # reads 2·1·2·16
    assert yoco == {
        "self_projections": 2 * 4 * 8 * (5 * 8 + 2),  # q, k, v, g, out + gt (8 -> 2 heads)
        "self_mixer": 2 * (128 + 128 + 64),
        "self_ffn": 3 * 2 * 4 * 8 * 16,
        "global_kv": 2 * 2 * 4 * 8 * 4,
        "cross_projections": 2 * 2 * 8 * 8,
        "cross_attention": 2 * 2 * 4 * 4 * 2,
        "cross_ffn": 3 * 2 * 8 * 16,
        "lm_head": 160,
    }
    assert prefill_flops(cfg, 4, arch="yoco") == 8224


def test_llama_attention_term_is_quadratic_in_length() -> None:
    cfg = _config()
    for t in (512, 1000, 4096):
        small = prefill_flops_breakdown(cfg, t, arch="llama")
        large = prefill_flops_breakdown(cfg, 2 * t, arch="llama")
        assert large["attention"] / small["attention"] == pytest.approx(4.0, rel=2 / t)
        # everything else is linear (or constant, the one-position LM head)
        assert large["projections"] == 2 * small["projections"]
        assert large["ffn"] == 2 * small["ffn"]
        assert large["lm_head"] == small["lm_head"]


def test_yoco_gret_prefill_is_affine_in_length_at_a_fixed_chunk() -> None:
    cfg = _config(chunk_size=64)
    lengths = [64 * n for n in (1, 2, 3, 8, 64, 256)]
    totals = [prefill_flops(cfg, t, arch="yoco") for t in lengths]
    # all points on one line: equal slopes between consecutive points
    points = list(zip(lengths, totals, strict=True))
    slopes = [(f1 - f0) / (t1 - t0) for (t0, f0), (t1, f1) in itertools.pairwise(points)]
    assert max(slopes) == pytest.approx(min(slopes), rel=1e-12)
    mixer = [prefill_flops_breakdown(cfg, t, arch="yoco")["self_mixer"] for t in lengths]
    assert mixer[2] - 2 * mixer[1] + mixer[0] == 0  # no T² term in the retention


def test_smaller_chunks_cost_fewer_retention_flops() -> None:
    costs = [
        prefill_flops_breakdown(_config(chunk_size=c), 8192, arch="yoco")["self_mixer"]
        for c in (256, 128, 64)
    ]
    assert costs[0] > costs[1] > costs[2]


def test_swa_self_decoder_is_causal_inside_the_window_and_linear_beyond() -> None:
    cfg = _config(self_decoder="swa", sliding_window=128)
    heads, head_dim, layers = 4, 64, 4
    inside = prefill_flops_breakdown(cfg, 100, arch="yoco")["self_mixer"]
    assert inside == layers * 2 * 2 * (100 * 101 // 2) * head_dim * heads
    beyond = [prefill_flops_breakdown(cfg, t, arch="yoco")["self_mixer"] for t in (256, 512, 768)]
    assert (
        beyond[2] - beyond[1] == beyond[1] - beyond[0] == layers * 4 * 256 * 128 * head_dim * heads
    )


def test_theory_ratio_grows_with_length() -> None:
    for kind in ("gret", "swa"):
        ratios = [prefill_flops_ratio(_config(self_decoder=kind), 2**p) for p in range(9, 16)]
        assert all(b > a for a, b in itertools.pairwise(ratios))
    assert prefill_flops_ratio(_config(), 16384) > 4.0


def test_flops_match_the_linear_layers_of_a_real_llama() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=40,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    layer_weights = sum(
        m.weight.numel() for m in model.model.layers.modules() if isinstance(m, nn.Linear)
    )
    terms = prefill_flops_breakdown(cfg, 9, arch="llama")
    assert terms["projections"] + terms["ffn"] == 2 * 9 * layer_weights
    assert terms["lm_head"] == 2 * model.lm_head.weight.numel()


@pytest.mark.parametrize("kind", ["gret", "swa"])
def test_flops_match_the_linear_layers_of_a_real_yoco(kind: str) -> None:
    import dataclasses

    from papercraft.yoco import YocoForCausalLM

    cfg = dataclasses.replace(TINY, self_decoder=kind, sliding_window=16).yoco_config()
    model = YocoForCausalLM(cfg)
    t = 40
    linear = {
        name: m.weight.numel() for name, m in model.named_modules() if isinstance(m, nn.Linear)
    }
    lm_head = model.get_output_embeddings()
    assert isinstance(lm_head, nn.Linear)
    terms = prefill_flops_breakdown(cfg, t, arch="yoco")
    total_linear = sum(linear.values()) - lm_head.weight.numel()
    over_prompt = terms["self_projections"] + terms["self_ffn"] + terms["global_kv"]
    for_one = terms["cross_projections"] + terms["cross_ffn"]
    # every linear weight of the model is used either for all T tokens or for the last one
    assert over_prompt % (2 * t) == 0
    assert for_one % 2 == 0
    assert over_prompt // (2 * t) + for_one // 2 == total_linear
    assert terms["lm_head"] == 2 * lm_head.weight.numel()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"arch": "gpt"}, "arch must be one of"),
        ({"arch": "llama", "seq_len": 0}, "seq_len must be a positive int"),
    ],
)
def test_flop_counter_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    seq_len = kwargs.pop("seq_len", 16)
    with pytest.raises(ValueError, match=match):
        prefill_flops(_config(), seq_len, **kwargs)


def test_flop_counter_names_a_missing_config_field() -> None:
    with pytest.raises(ValueError, match=r"config\.intermediate_size"):
        prefill_flops(_config(intermediate_size=None), 16, arch="llama")
    with pytest.raises(ValueError, match=r"config\.self_decoder"):
        prefill_flops(_config(self_decoder="mamba"), 16, arch="yoco")


# --------------------------------------------------------------------------------------------------
# cache bytes


def test_llama_cache_bytes_are_measured_from_the_cache_tensors() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=40,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
    )
    seed_everything(0)
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 50, (1, 11))
    with torch.no_grad():
        out = model(ids, use_cache=True, logits_to_keep=1)
        fp32 = 2 * 3 * 2 * 8 * 11 * 4  # 2·L·n_kv·d_h·T·4
        assert llama_cache_nbytes(out.cache) == fp32 == cache_nbytes(out.cache)
        assert fp32 == llama_expected_cache_nbytes(
            cfg, batch_size=1, seq_len=11, dtype=torch.float32
        )
        step = model(ids[:, :1], cache=out.cache, use_cache=True)
        assert llama_cache_nbytes(step.cache) == 2 * 3 * 2 * 8 * 12 * 4
        half = model.to(torch.bfloat16)(ids, use_cache=True, logits_to_keep=1)
        assert llama_cache_nbytes(half.cache) == fp32 // 2


def test_llama_cache_nbytes_rejects_a_non_cache() -> None:
    with pytest.raises(TypeError, match="cache must be a transformers Cache"):
        llama_cache_nbytes((torch.zeros(1), torch.zeros(1)))


# --------------------------------------------------------------------------------------------------
# settings and the benchmark


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"lengths": ()}, "lengths must be a non-empty list"),
        ({"lengths": (16, 0)}, "lengths must be"),
        ({"hidden_size": 30, "num_heads": 4}, r"hidden_size \(30\) must be divisible"),
        ({"num_heads": 4, "num_kv_heads": 3}, r"num_heads \(4\) must be a multiple"),
        ({"num_layers": 1}, "num_layers must be an int >= 2"),
        ({"repeats": 0}, "repeats must be an int >= 1"),
        ({"decode_tokens": -1}, "decode_tokens must be an int >= 0"),
        ({"self_decoder": "mamba"}, "self_decoder must be one of"),
        ({"dtype": "float64"}, "dtype must be one of"),
        ({"device": "tpu"}, "device must be 'cpu' or 'cuda"),
        ({"chunk_size": 0}, "chunk_size must be an int >= 1"),
    ],
)
def test_settings_reject_bad_values(changes: dict[str, Any], match: str) -> None:
    import dataclasses

    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TINY, **changes)


def test_llama_config_matches_the_yoco_config() -> None:
    yoco = TINY.yoco_config()
    llama = TINY.llama_config(yoco)
    for name in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
    ):
        assert getattr(llama, name) == getattr(yoco, name), name
    assert llama.intermediate_size == 48
    assert llama._attn_implementation == "sdpa"
    models = bench_models(TINY)
    assert not any(m.training for m in models.values())


def test_benchmark_rows_ratios_and_files(tmp_path: Path) -> None:
    from papercraft.yoco import YocoCache

    report = run_benchmark(TINY, progress=False)
    assert [(r["model"], r["seq_len"]) for r in report.rows] == [
        ("llama", 24),
        ("yoco", 24),
        ("llama", 40),
        ("yoco", 40),
    ]
    yoco_config = TINY.yoco_config()
    for row in report.rows:
        assert row["prefill_s"] > 0
        assert row["decode_tok_s"] > 0
        assert row["flops"] == prefill_flops(yoco_config, row["seq_len"], arch=row["model"])
        if row["model"] == "llama":
            # 2·L·n_kv·d_h·T·4 bytes, measured from the DynamicCache's tensors
            assert row["cache_bytes"] == 2 * 2 * 1 * 16 * row["seq_len"] * 4
            assert row["prefill_s_ratio"] == pytest.approx(
                row["prefill_s"] / _yoco(report, row)["prefill_s"]
            )
            assert row["measured_over_theory"] == pytest.approx(
                row["prefill_s_ratio"] / row["flops_ratio"]
            )
        else:
            assert row["cache_bytes"] == YocoCache.expected_nbytes(
                yoco_config, batch_size=1, seq_len=row["seq_len"], dtype=torch.float32
            )
            assert row["prefill_s_ratio"] == 1.0
            assert row["measured_over_theory"] is None
        assert row["cache_bytes"] == row["expected_cache_bytes"]
    summary = ratio_rows(report)
    assert [r["seq_len"] for r in summary] == [24, 40]
    assert all(r["cache_reduction"] > 1 for r in summary)

    paths = write_report(report, tmp_path / "out")
    assert set(paths) == {"json", "markdown", "prefill_plot", "cache_plot"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert len(data["rows"]) == 4
    assert data["machine"]["device"] == "cpu"
    markdown = paths["markdown"].read_text(encoding="utf-8")
    assert "prefill_s_ratio" in markdown
    assert "theory_speedup" in markdown
    assert paths["prefill_plot"].read_bytes()[:4] == b"\x89PNG"


def _yoco(report: Any, llama_row: dict[str, Any]) -> dict[str, Any]:
    (row,) = [
        r for r in report.rows if r["model"] == "yoco" and r["seq_len"] == llama_row["seq_len"]
    ]
    return row


def test_write_report_refuses_a_file_as_output_dir(tmp_path: Path) -> None:
    from papercraft.core.bench import BenchReport

    target = tmp_path / "file.txt"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="output_dir must be a directory"):
        write_report(BenchReport(title="t", rows=[{"model": "yoco"}]), target)
