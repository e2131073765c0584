"""Tests of papercraft.mhmoe.train and papercraft.mhmoe.compare on tiny models and texts."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from papercraft.core.testing import run_torchrun, sample_texts
from papercraft.mhmoe.compare import compare_smoe_mhmoe, pydoc_corpus
from papercraft.mhmoe.configuration import MHMoEConfig
from papercraft.mhmoe.stats import ExpertStats
from papercraft.mhmoe.train import PRESETS, load_preset, train

_QUIET = {"disable_tqdm": True, "log_level": "error"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "prose.txt"
    path.write_text("\n\n".join(sample_texts(240, seed=3)), encoding="utf-8")
    return path


def _tiny(**overrides: Any) -> MHMoEConfig:
    values: dict[str, Any] = {
        **load_preset("tiny"),
        "vocab_size": 320,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "num_experts": 4,
        "moe_ffn_dim": 32,
        "intermediate_size": 64,
    }
    values.update(overrides)
    return MHMoEConfig(**values)


def _train(corpus: Path, out: Path, **kwargs: Any) -> Any:
    arguments: dict[str, Any] = {
        "model_config": _tiny(),
        "data": [corpus],
        "output_dir": out,
        "block_size": 32,
        "max_steps": 12,
        "per_device_train_batch_size": 4,
        "learning_rate": 5e-3,
        "warmup_steps": 1,
        "logging_steps": 3,
        "save_steps": 6,
        "eval_fraction": 0.1,
        "use_cpu": True,
        "training_args": _QUIET,
    }
    arguments.update(kwargs)
    return train(**arguments)


@pytest.fixture(scope="module")
def trained(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _train(corpus, tmp_path_factory.mktemp("run") / "out")


def test_presets_build_valid_configs() -> None:
    for name in PRESETS:
        config = MHMoEConfig(**load_preset(name))
        assert config.moe_layer_indices, name
    with pytest.raises(ValueError, match="preset"):
        load_preset("huge")


def test_training_lowers_the_loss_and_logs_the_aux_loss_apart(trained: Any) -> None:
    out = Path(trained.output_dir)
    assert trained.global_step == 12
    assert trained.train_loss < trained.initial_train_loss
    assert trained.eval_lm_loss < trained.initial_eval_lm_loss
    assert trained.eval_perplexity == pytest.approx(math.exp(trained.eval_lm_loss))
    # loss = lm_loss + aux_loss, one MoE layer (moe_every=2 of 2 blocks), coefficient 1e-2, and
    # the balancing loss is >= 1 (1 at uniform routing)
    assert trained.eval_loss == pytest.approx(
        trained.eval_lm_loss + trained.eval_aux_loss, abs=1e-5
    )
    assert 0.01 <= trained.eval_aux_loss <= 0.04
    state = json.loads((out / "checkpoint-12" / "trainer_state.json").read_text(encoding="utf-8"))
    logs = [e for e in state["log_history"] if "loss" in e]
    assert logs
    assert all("aux_loss" in e and "lm_loss" in e for e in logs)
    for entry in logs:
        assert entry["loss"] == pytest.approx(entry["lm_loss"] + entry["aux_loss"], abs=1e-4)
    saved = json.loads((out / "train_result.json").read_text(encoding="utf-8"))
    assert saved["format"] == "papercraft.mhmoe.train_result"
    assert saved["global_step"] == 12


def test_saved_model_reloads_and_stats_cover_the_eval_set(trained: Any) -> None:
    from transformers import AutoModelForCausalLM

    out = Path(trained.output_dir)
    model = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True).eval()
    assert type(model).__name__ == "MHMoEForCausalLM"
    assert model.config.vocab_size == trained.vocab_size
    assert (out / "tokenizer.json").is_file()
    assert Path(trained.heatmap_path).is_file()
    stats = ExpertStats.load(trained.stats_path)
    assert stats.layers == ["model.layers.1.mlp"]
    # every held-out token, h = 2 sub-tokens, k = 2 choices each
    tokens = trained.num_eval_blocks * trained.block_size
    assert stats.num_sub_tokens["model.layers.1.mlp"] == 2 * tokens
    assert int(stats.counts["model.layers.1.mlp"].sum()) == 2 * 2 * tokens
    assert trained.expert_stats == stats.to_dict()["summary"]
    # the reloaded model routes the eval data as recorded: recount one block by hand
    with torch.no_grad():
        ids = torch.randint(
            3, trained.vocab_size, (1, 16), generator=torch.Generator().manual_seed(0)
        )
        again = ExpertStats()
        with again.track(model):
            model(input_ids=ids)
    assert int(again.counts["model.layers.1.mlp"].sum()) == 16 * 2 * 2


def test_resume_continues_from_the_last_checkpoint(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    quick = {"eval_on_start": False, "logging_steps": 2}
    first = _train(corpus, out, max_steps=4, save_steps=4, **quick)
    assert first.tokenizer_trained
    assert (out / "checkpoint-4").is_dir()
    resumed = _train(corpus, out, max_steps=6, save_steps=2, resume_from_checkpoint=True, **quick)
    assert resumed.global_step == 6
    assert not resumed.tokenizer_trained  # the saved tokenizer was reused
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text(encoding="utf-8"))
    steps = [e["step"] for e in state["log_history"] if "loss" in e]
    assert steps == [2, 4, 6]  # the first run's logs plus this one's, no restart from 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"block_size": 0}, ValueError, "block_size"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
        ({"eval_fraction": 1.0}, ValueError, "eval_fraction"),
        ({"bf16": True, "fp16": True}, ValueError, "exclusive"),
        ({"data": ["missing.txt"]}, FileNotFoundError, "data"),
        ({"model_config": "huge"}, FileNotFoundError, "model_config"),
        ({"config_overrides": {"not_a_field": 1}}, ValueError, "not_a_field"),
        ({"config_overrides": {"moe_heads": 3}}, ValueError, "moe_heads"),
        ({"tokenizer": "no/such/dir"}, FileNotFoundError, "tokenizer"),
        ({"deepspeed": "no_such.json"}, FileNotFoundError, "deepspeed"),
        ({"deepspeed": {"zero_optimization": {"stage": 7}}}, ValueError, "stage"),
        ({"training_args": {"bogus": 1}}, ValueError, "bogus"),
        ({"resume_from_checkpoint": True}, FileNotFoundError, "checkpoint"),
        ({"block_size": 100000}, ValueError, "block"),
    ],
)
def test_bad_arguments_fail_before_training(
    corpus: Path, tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        _train(corpus, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_a_non_empty_output_dir_needs_overwrite(corpus: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="not empty"):
        _train(corpus, tmp_path / "out")


def test_shipped_deepspeed_config_is_zero2() -> None:
    from importlib import resources

    text = (resources.files("papercraft.mhmoe") / "configs" / "ds_zero2_moe.json").read_text()
    config = json.loads(text)
    assert config["zero_optimization"]["stage"] == 2
    assert config["train_micro_batch_size_per_gpu"] == "auto"


@pytest.mark.slow
def test_deepspeed_zero2_two_process_cpu_run(corpus: Path, tmp_path: Path) -> None:
    """The shipped ZeRO-2 config under torchrun, world size 2, DeepSpeed's CPU accelerator."""
    pytest.importorskip("deepspeed")
    out = tmp_path / "ds"
    done = run_torchrun(
        "papercraft.mhmoe.train",
        ["--config", "tiny", "--data", str(corpus), "--output", str(out), "--block-size", "64",
         "--max-steps", "4", "--save-steps", "4", "--batch-size", "2", "--warmup", "1",
         "--eval-fraction", "0.1", "--logging-steps", "1", "--cpu", "--deepspeed", "ds_zero2_moe"],
        env={"DS_ACCELERATOR": "cpu"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "train_result.json").read_text(encoding="utf-8"))
    assert (result["world_size"], result["global_step"]) == (2, 4)
    assert math.isfinite(result["train_loss"])
    assert result["train_aux_loss"] > 0
    # a DeepSpeed engine ran: its ZeRO checkpoint layout, not the plain Trainer's optimizer.pt
    assert (out / "checkpoint-4" / "global_step4").is_dir()
    assert not (out / "checkpoint-4" / "optimizer.pt").exists()
    assert done.stdout.count('"format": "papercraft.mhmoe.train_result"') == 1


def test_compare_reports_both_systems_at_parity(tmp_path: Path) -> None:
    result = compare_smoe_mhmoe(
        tmp_path / "cmp",
        max_documents=4,
        hidden_size=32,
        num_layers=2,
        num_attention_heads=2,
        num_experts=4,
        expert_hidden=64,
        vocab_size=300,
        block_size=32,
        batch_size=4,
        max_steps=3,
        progress=False,
    )
    smoe, mh = result.smoe, result.mhmoe
    assert (smoe.num_heads, smoe.top_k, smoe.num_experts) == (1, 1, 4)
    assert (mh.num_heads, mh.top_k) == (2, 2)
    assert mh.num_experts > smoe.num_experts
    # params and FLOPs matched within a few percent (parity_config, MH-v2 rule)
    assert mh.moe_params_per_layer == pytest.approx(smoe.moe_params_per_layer, rel=0.1)
    assert mh.moe_flops_per_token == pytest.approx(smoe.moe_flops_per_token, rel=0.1)
    for report in (smoe, mh):
        assert report.val_perplexity is not None
        assert report.val_perplexity > 1.0
        assert report.active_share is not None
        assert 0.0 < report.active_share <= 1.0
        assert report.load_entropy is not None
        assert 0.0 <= report.load_entropy <= 1.0
        assert report.heatmap_path is not None
        assert Path(report.heatmap_path).is_file()
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text(encoding="utf-8"))
    assert set(saved["systems"]) == {"smoe", "mhmoe"}
    table = (tmp_path / "cmp" / "compare.md").read_text(encoding="utf-8")
    assert "| SMoE |" in table
    assert "| MH-MoE h=2 |" in table


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"top_k": 3}, "top_k"),
        ({"match": "flops"}, "match"),
        ({"num_heads": 3}, "num_heads"),
        ({"eval_fraction": 0.0}, "eval_fraction"),
        ({"max_steps": 0}, "max_steps"),
    ],
)
def test_compare_rejects_bad_settings_before_training(
    tmp_path: Path, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        compare_smoe_mhmoe(tmp_path / "cmp", hidden_size=32, **kwargs)
    assert not (tmp_path / "cmp").exists()


def test_pydoc_corpus_is_deterministic(tmp_path: Path) -> None:
    first = pydoc_corpus(tmp_path / "a.jsonl", max_documents=3).read_bytes()
    second = pydoc_corpus(tmp_path / "b.jsonl", max_documents=3).read_bytes()
    assert first == second
    assert first.count(b"\n") == 3
    with pytest.raises(ValueError, match="jsonl"):
        pydoc_corpus(tmp_path / "a.txt")
