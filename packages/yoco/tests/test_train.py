"""Tests of :mod:`papercraft.yoco.train`: a tiny real CPU run, the CLI, shipped configs, errors."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import torch

import papercraft.yoco
from papercraft.core.data import PackedDataset, iter_documents, split_dataset
from papercraft.core.testing import run_torchrun, sample_texts, tiny_tokenizer
from papercraft.yoco import YocoConfig
from papercraft.yoco.train import PRESETS, add_cli, load_preset, load_recipe, train

BLOCK = 64
STEPS = 30
SEED = 0


def _write_corpus(root: Path) -> list[Path]:
    """Two text files and a JSONL file of real English prose."""
    root.mkdir(parents=True, exist_ok=True)
    texts = sample_texts(360, seed=7, min_words=20, max_words=60)
    first = root / "a.txt"
    first.write_text("\n\n".join(texts[:120]), encoding="utf-8")
    second = root / "sub" / "b.md"
    second.parent.mkdir()
    second.write_text("\n\n".join(texts[120:240]), encoding="utf-8")
    third = root / "c.jsonl"
    third.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[240:]), "utf-8")
    return [first, second.parent, third]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _write_corpus(tmp_path_factory.mktemp("corpus"))


def _tiny_kwargs(**extra: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model_config": "tiny",
        "block_size": BLOCK,
        "max_steps": STEPS,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 64,
        "learning_rate": 3e-3,
        "warmup_steps": 3,
        "eval_fraction": 0.1,
        "logging_steps": 1,
        "save_steps": 1000,
        "seed": SEED,
        "training_args": {"disable_tqdm": True},
    }
    kwargs.update(extra)
    return kwargs


@pytest.fixture(scope="module")
def trained(corpus: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """One tiny run with a tokenizer trained on the corpus (the ``tokenizer=None`` path)."""
    out = tmp_path_factory.mktemp("run") / "model"
    result = train(data=corpus, output_dir=out, **_tiny_kwargs())
    return out, result


# ------------------------------------------------------------------------------------------------
# The tiny run


def test_tiny_run_lowers_the_loss(trained: tuple[Path, Any]) -> None:
    _, result = trained
    assert result.global_step == STEPS
    assert result.initial_eval_loss is not None
    assert result.eval_loss is not None
    # A random model starts near ln(vocab); 30 steps of real prose must beat that clearly.
    assert result.initial_eval_loss > math.log(result.vocab_size) - 0.5
    assert result.eval_loss < result.initial_eval_loss - 1.0
    assert result.train_loss < result.initial_train_loss - 0.8
    assert result.eval_perplexity == pytest.approx(math.exp(result.eval_loss))
    assert result.num_eval_blocks >= 1
    assert result.num_train_blocks > 5 * result.num_eval_blocks


def test_tiny_run_writes_model_tokenizer_and_result(trained: tuple[Path, Any]) -> None:
    out, result = trained
    assert (out / "model.safetensors").is_file()
    assert not (out / "pytorch_model.bin").exists()  # safetensors only, never pickle
    saved = json.loads((out / "train_result.json").read_text(encoding="utf-8"))
    assert saved == result.to_dict()
    assert saved["format"] == "papercraft.yoco.train_result"
    assert saved["format_version"] == 1
    assert saved["output_dir"] == str(out.resolve())


def test_trained_tokenizer_is_byte_level_bpe_of_the_config_size(trained: tuple[Path, Any]) -> None:
    from transformers import AutoTokenizer

    out, result = trained
    assert result.tokenizer_trained
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert len(tok) == result.vocab_size == load_preset("tiny")["vocab_size"]
    text = "YOCO caches key-value pairs once. ünïcode ✓ 漢字"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level: lossless on any text
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["eos_token_id"] == tok.eos_token_id is not None
    assert config["pad_token_id"] == tok.pad_token_id is not None


def test_saved_model_reloads_with_automodel_and_reproduces_the_eval_loss(
    trained: tuple[Path, Any], corpus: list[Path]
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, result = trained
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    assert type(model) is papercraft.yoco.YocoForCausalLM
    again = papercraft.yoco.YocoForCausalLM.from_pretrained(out, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    blocks = PackedDataset.from_documents(iter_documents(corpus), tok, block_size=BLOCK)
    _, held_out = split_dataset(blocks, val_fraction=0.1, seed=SEED)
    input_ids = torch.stack([held_out[i]["input_ids"] for i in range(len(held_out))])
    with torch.no_grad():
        first = model(input_ids=input_ids, labels=input_ids)
        second = again(input_ids=input_ids)
    torch.testing.assert_close(first.logits, second.logits, rtol=0, atol=0)
    # The weights on disk are the trained ones: they give the eval loss the run recorded.
    assert float(first.loss) == pytest.approx(result.eval_loss, rel=1e-4)


def test_init_from_continues_from_the_saved_weights(
    trained: tuple[Path, Any], corpus: list[Path], tmp_path: Path
) -> None:
    out, result = trained
    again = train(
        data=corpus,
        output_dir=tmp_path / "continued",
        **_tiny_kwargs(model_config=out, init_from=out, max_steps=2, learning_rate=1e-4),
    )
    assert not again.tokenizer_trained  # the tokenizer saved with the model is reused
    # Same split, same weights: the first evaluation reproduces where the first run ended.
    assert again.initial_eval_loss == pytest.approx(result.eval_loss, rel=1e-5)


# ------------------------------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="papercraft yoco")
    add_cli(parser.add_subparsers(dest="action"))
    return parser


def test_cli_trains_with_a_given_tokenizer_then_resumes(
    trained: tuple[Path, Any], corpus: list[Path], tmp_path: Path
) -> None:
    tokenizer_dir, _ = trained
    out = tmp_path / "cli"
    common = [
        "train", "--config", "tiny", "--data", *map(str, corpus), "--output", str(out),
        "--tokenizer", str(tokenizer_dir), "--block-size", "32", "--batch-size", "4",
        "--grad-accum", "2", "--lr", "1e-3", "--warmup", "1", "--seed", "3",
        "--eval-fraction", "0.05", "--set", "rope_theta=20000.0",
    ]  # fmt: skip
    args = _parser().parse_args([*common, "--max-steps", "2"])
    assert args.func(args) == 0
    first = json.loads((out / "train_result.json").read_text(encoding="utf-8"))
    assert first["global_step"] == 2
    assert first["block_size"] == 32
    assert not first["tokenizer_trained"]
    assert json.loads((out / "config.json").read_text())["rope_theta"] == 20000.0
    assert (out / "checkpoint-2").is_dir()
    args = _parser().parse_args([*common, "--max-steps", "3", "--resume"])
    assert args.func(args) == 0
    resumed = json.loads((out / "train_result.json").read_text(encoding="utf-8"))
    assert resumed["global_step"] == 3
    # The resumed call's first evaluation is of the step-2 weights, where the first call ended.
    assert resumed["initial_eval_loss"] == pytest.approx(first["eval_loss"], rel=1e-5)


def test_cli_reports_bad_arguments_with_exit_status_2(
    corpus: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parser().parse_args(
        ["train", "--config", "tiny", "--data", str(corpus[0]), "--output", str(tmp_path / "o"),
         "--block-size", "0"]
    )  # fmt: skip
    assert args.func(args) == 2
    assert "block_size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "--config", "tiny", "--data", "x", "--output", "o",
                              "--bf16", "--fp16"])  # fmt: skip


def test_two_process_gloo_run_trains_the_tokenizer_once(corpus: list[Path], tmp_path: Path) -> None:
    """torchrun, world size 2 on CPU (gloo): rank 0 trains the tokenizer, rank 1 loads it."""
    out = tmp_path / "ddp"
    done = run_torchrun("papercraft.yoco.train", [
        "--config", "tiny", "--data", *map(str, corpus),
        "--output", str(out), "--block-size", "64", "--max-steps", "3", "--batch-size", "4",
        "--lr", "1e-3", "--warmup", "1", "--eval-fraction", "0.1", "--cpu",
    ])  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "train_result.json").read_text(encoding="utf-8"))
    assert result["world_size"] == 2
    assert result["global_step"] == 3
    assert result["tokenizer_trained"]
    assert (out / "tokenizer.json").is_file()
    assert done.stdout.count('"format": "papercraft.yoco.train_result"') == 1  # rank 0 reports


def test_cli_maps_options_to_train_arguments() -> None:
    args = _parser().parse_args(
        ["train", "--config", "yoco-160m-swa", "--data", "a", "b", "--output", "o", "--lr", "1e-4",
         "--batch-size", "2", "--grad-accum", "4", "--set", "rope_theta=640000", "--set",
         "self_decoder=swa", "--resume", "--local_rank=3", "--deepspeed", "ds_zero2"]
    )  # fmt: skip
    names = set(inspect.signature(train).parameters)
    given = {key for key in vars(args) if key not in {"action", "func", "local_rank"}}
    assert given <= names  # every option lands on a train() argument of the same name
    assert (args.model_config, args.data, args.output_dir) == ("yoco-160m-swa", ["a", "b"], "o")
    assert (args.learning_rate, args.per_device_train_batch_size) == (1e-4, 2)
    assert args.gradient_accumulation_steps == 4
    assert args.resume_from_checkpoint is True
    assert args.local_rank == 3  # the deepspeed launcher's extra argument is accepted
    assert args.config_overrides == ["rope_theta=640000", "self_decoder=swa"]


# ------------------------------------------------------------------------------------------------
# Bad input is refused before any tokenizer training or model building


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make building a model fail loudly, so the errors below must come first."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model was built before the argument was checked")

    monkeypatch.setattr(papercraft.yoco.YocoForCausalLM, "__init__", refuse)
    monkeypatch.setattr(papercraft.yoco.YocoForCausalLM, "from_pretrained", refuse)


def _bad_cases(tmp: Path, corpus: list[Path]) -> list[tuple[dict[str, Any], type, str]]:
    (tmp / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp / "stage5.json").write_text('{"zero_optimization": {"stage": 5}}', encoding="utf-8")
    (tmp / "notes.csv").write_text("a,b\n", encoding="utf-8")
    (tmp / "full").mkdir()
    (tmp / "full" / "old.txt").write_text("x", encoding="utf-8")
    return [
        ({"block_size": 0}, ValueError, "block_size"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
        ({"adam_beta2": 1.0}, ValueError, "adam_beta2"),
        ({"eval_fraction": 1.0}, ValueError, "eval_fraction"),
        ({"per_device_train_batch_size": 0}, ValueError, "per_device_train_batch_size"),
        ({"bf16": True, "fp16": True}, ValueError, "bf16"),
        ({"data": [tmp / "missing"]}, FileNotFoundError, "data"),
        ({"data": [tmp / "notes.csv"]}, ValueError, "does not end with"),
        ({"data": []}, ValueError, "data"),
        ({"model_config": "no-such-preset"}, FileNotFoundError, "model_config"),
        ({"config_overrides": {"hiden_size": 8}}, ValueError, "hiden_size"),
        ({"deepspeed": tmp / "bad.json"}, ValueError, "deepspeed"),
        ({"deepspeed": tmp / "stage5.json"}, ValueError, "stage"),
        ({"deepspeed": tmp / "absent.json"}, FileNotFoundError, "deepspeed"),
        ({"tokenizer": tmp / "no-tokenizer"}, FileNotFoundError, "tokenizer"),
        ({"tokenizer": tiny_tokenizer(1024)}, ValueError, "vocab_size"),
        ({"config_overrides": {"vocab_size": 200}}, ValueError, "vocab_size"),
        ({"output_dir": tmp / "full"}, ValueError, "not empty"),
        ({"output_dir": tmp / "notes.csv"}, ValueError, "output_dir"),
        ({"resume_from_checkpoint": True}, FileNotFoundError, "resume_from_checkpoint"),
        ({"training_args": {"no_such_field": 1}}, ValueError, "no_such_field"),
        ({"data": [corpus[0]], "block_size": 10**6}, ValueError, "block_size"),
    ]


def test_bad_arguments_fail_before_the_model_is_built(
    no_model: None, corpus: list[Path], tmp_path: Path
) -> None:
    for overrides, error, needle in _bad_cases(tmp_path, corpus):
        kwargs = {"data": corpus, "output_dir": tmp_path / "out", **_tiny_kwargs()}
        kwargs.update(overrides)
        with pytest.raises(error, match=needle):
            train(**kwargs)
        assert not (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="deepspeed present")
def test_deepspeed_without_the_package_names_the_extra(
    no_model: None, corpus: list[Path], tmp_path: Path
) -> None:
    shipped = resources.files("papercraft.yoco") / "configs" / "ds_zero2.json"
    for config in (str(shipped), "ds_zero2"):  # a path, or the shipped file by name
        with pytest.raises(ImportError, match=r"papercraft-yoco\[deepspeed\]"):
            train(data=corpus, output_dir=tmp_path, **_tiny_kwargs(deepspeed=config))


# ------------------------------------------------------------------------------------------------
# Shipped configs


def test_shipped_deepspeed_config_is_zero2_with_trainer_auto_values() -> None:
    text = (resources.files("papercraft.yoco") / "configs" / "ds_zero2.json").read_text("utf-8")
    config = json.loads(text)
    assert config["zero_optimization"]["stage"] == 2
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                "gradient_clipping"):  # fmt: skip
        assert config[key] == "auto", key
    assert config["bf16"]["enabled"] == config["fp16"]["enabled"] == "auto"
    # No optimizer/scheduler block: the Trainer's AdamW and linear schedule (the paper's) apply.
    assert "optimizer" not in config
    assert "scheduler" not in config


def test_presets_are_valid_configs_and_the_3b_one_matches_the_paper() -> None:
    for name in PRESETS:
        config = YocoConfig(**load_preset(name))
        assert config.vocab_size >= 259, name
    big = YocoConfig(**load_preset("yoco-3b-gret"))
    assert (big.hidden_size, big.intermediate_size, big.num_hidden_layers) == (3072, 8192, 26)
    assert (big.num_attention_heads, big.num_key_value_heads) == (24, 8)
    assert big.vocab_size == 100288
    assert big.self_decoder == "gret"
    small = YocoConfig(**load_preset("yoco-160m-gret"))
    assert small.intermediate_size == 3 * small.hidden_size  # YOCO's FFN is 3d in the scaling runs
    assert small.head_dim == 256  # the paper's gRet head size in the scaling runs
    assert YocoConfig(**load_preset("yoco-160m-swa")).self_decoder == "swa"


def test_recipe_matches_the_paper_and_only_uses_train_arguments() -> None:
    recipe = load_recipe()
    parameters = set(inspect.signature(train).parameters)
    pre = recipe["pretraining"]
    assert set(pre) <= parameters
    assert recipe["model"] in PRESETS
    assert (pre["block_size"], pre["learning_rate"], pre["warmup_steps"]) == (4096, 3.2e-4, 1000)
    assert (pre["adam_beta1"], pre["adam_beta2"], pre["weight_decay"]) == (0.9, 0.95, 0.1)
    assert pre["lr_scheduler_type"] == "linear"
    blocks = pre["per_device_train_batch_size"] * pre["gradient_accumulation_steps"]
    assert blocks * recipe["launch"]["world_size"] * pre["block_size"] == 4 * 2**20
    stages = [(s["train"]["block_size"], s["train"]["learning_rate"],
               s["train"]["config_overrides"]["rope_theta"]) for s in recipe["length_extension"]]  # fmt: skip
    assert stages == [(2**16, 8e-5, 6.4e5), (2**18, 4e-5, 5e6), (2**20, 2e-5, 8e7)]
    for stage in recipe["length_extension"]:
        assert set(stage["train"]) <= parameters
    defaults = {k: v.default for k, v in inspect.signature(train).parameters.items()}
    for key in ("learning_rate", "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2"):
        assert defaults[key] == pre[key], key  # the Python entry's defaults are the paper's
