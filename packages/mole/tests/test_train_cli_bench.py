"""Tests of train_gates, the latency benchmark and the command line."""

from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import SEQ
from transformers import LlamaForCausalLM

from papercraft.mole import MoleConfig, MoleModel
from papercraft.mole.bench import BenchOptions, run_bench
from papercraft.mole.cli import command, read_jsonl
from papercraft.mole.train import gate_entropy, train_gates


def _rows(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    ids = torch.randint(0, 64, (n, SEQ), generator=torch.Generator().manual_seed(seed))
    return [{"input_ids": r, "attention_mask": torch.ones(SEQ, dtype=torch.long), "labels": r}
            for r in ids]  # fmt: skip


@pytest.mark.parametrize("coef", [0.0, 0.5])
def test_train_gates_writes_a_loadable_mole(
    base: LlamaForCausalLM, adapters: dict[str, str], tmp_path: Path, coef: float
) -> None:
    config = MoleConfig(adapters=adapters, seq_len=SEQ, balance_coef=coef)
    mole, summary = train_gates(
        copy.deepcopy(base), config, _rows(24, 1), output_dir=tmp_path, steps=5, batch_size=8,
        learning_rate=0.1,
    )  # fmt: skip
    saved = json.loads((tmp_path / "train_summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert summary["balance_loss_min"] == pytest.approx(3 * math.log(3))
    assert summary["balance_loss_first"] == pytest.approx(
        3 * math.log(3), abs=1e-5
    )  # uniform start
    assert 0.0 <= summary["gate_entropy"] <= 1.0
    ids = _rows(2, 9)[0]["input_ids"][None]
    restored = MoleModel.from_pretrained(copy.deepcopy(base), tmp_path / "mole")
    with torch.no_grad():
        torch.testing.assert_close(restored(input_ids=ids).logits, mole(input_ids=ids).logits)
    with pytest.raises(ValueError, match="steps"):
        train_gates(copy.deepcopy(base), config, _rows(4, 1), output_dir=tmp_path, steps=0)


def test_gate_entropy_bounds() -> None:
    assert gate_entropy({"u": torch.full((4,), 0.25)}) == pytest.approx(1.0)
    assert gate_entropy({"u": torch.tensor([1.0, 0.0, 0.0])}) == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(gate_entropy({}))


def test_latency_bench_quick_run() -> None:
    options = BenchOptions(hidden_size=32, num_layers=1, batch=2, tokens=8, num_adapters=2,
                           rank=2, granularities=("layer",), repeats=1, warmup=0, threads=1)  # fmt: skip
    report = run_bench(options, progress=False)
    systems = [r["system"] for r in report.rows]
    assert systems == ["base", "cat_adapter", "merged_weights", "mole (layer)"]
    cat = next(r for r in report.rows if r["system"] == "cat_adapter")
    assert cat["vs_cat_adapter"] == 1.0
    assert report.notes[0].split()[0] in ("PASS", "MISS")
    with pytest.raises(ValueError, match="num_adapters"):
        BenchOptions(num_adapters=1)
    with pytest.raises(ValueError, match="granularities"):
        BenchOptions(granularities=("row",))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="papercraft")
    command.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_refuses_bad_input_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "1 2>", "completion": "2 1"}\n', encoding="utf-8")
    args = _parser().parse_args(["mole", "train-gates", "--base", str(tmp_path), "--adapter",
                                 "a", "--adapter", "b=x", "--data", str(data), "--output",
                                 str(tmp_path / "o")])  # fmt: skip
    assert args.func(args) == 2
    assert "NAME=PATH" in capsys.readouterr().err
    args = _parser().parse_args(["mole", "train-gates", "--base", str(tmp_path), "--adapter",
                                 "a=x", "--adapter", "b=y", "--data", str(data), "--output",
                                 str(tmp_path / "o")])  # fmt: skip
    assert args.func(args) == 2
    assert "config.json" in capsys.readouterr().err
    args = _parser().parse_args(["mole", "info"])
    assert args.func(args) == 0
    assert "2404.13628" in capsys.readouterr().out


def test_read_jsonl_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    with pytest.raises(FileNotFoundError):
        read_jsonl(path)
    path.write_text('{"prompt": "a", "completion": "b", "task": "t"}\n\n{"prompt": 1}\n')
    with pytest.raises(ValueError, match=r"x\.jsonl:3"):
        read_jsonl(path)
    path.write_text("")
    with pytest.raises(ValueError, match="no rows"):
        read_jsonl(path)
    path.write_text('{"prompt": "a", "completion": "b", "task": "t"}\n')
    assert read_jsonl(path) == [{"prompt": "a", "completion": "b", "task": "t"}]


def test_quick_demo_writes_its_report(tmp_path: Path) -> None:
    from papercraft.mole.demo import run_demo

    report = run_demo(tmp_path, quick=True)
    saved = json.loads((tmp_path / "mole_demo.json").read_text())
    assert saved["format"] == "papercraft.mole.demo"
    systems = [r["system"] for r in report["systems"]]
    assert systems[:4] == [
        "base (no LoRA)",
        "LoRA reverse alone",
        "LoRA sort alone",
        "LoRA shift alone",
    ]
    assert "cat merge (w = 1/N)" in systems
    assert sum(s.startswith("MoLE") for s in systems) == 4
    assert len(report["masking"]) == 3
    for row in report["systems"] + report["masking"]:
        assert all(0.0 <= v <= 1.0 for v in row["exact_match"].values())
    assert (tmp_path / "mole_demo.md").read_text().startswith("### Teacher-forced")
    with pytest.raises(ValueError, match="directory"):
        run_demo(tmp_path / "mole_demo.md")


def test_cli_train_gates_then_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from papercraft.mole.synthetic import char_tokenizer, make_examples, tiny_llama, train_lora

    tok = char_tokenizer()
    base = tiny_llama(tok, hidden_size=32, seed=0)
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    adapter_args = []
    for task in ("sort", "shift"):
        lora = train_lora(base, make_examples(task, 64, seed=1), tokenizer=tok, seq_len=16,
                          steps=3, rank=4)  # fmt: skip
        lora.save_pretrained(str(tmp_path / task))
        adapter_args += ["--adapter", f"{task}={tmp_path / task}"]
    data = tmp_path / "mixed.jsonl"
    rows = [{"prompt": p, "completion": a, "task": t}
            for t in ("sort", "shift") for p, a in make_examples(t, 16, seed=2)]  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    args = _parser().parse_args(["mole", "train-gates", "--base", str(tmp_path / "base"),
                                 *adapter_args, "--data", str(data), "--output",
                                 str(tmp_path / "run"), "--seq-len", "16", "--steps", "3",
                                 "--batch-size", "8", "--gate-input", "hidden"])  # fmt: skip
    assert args.func(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    # (DeepSpeed, where installed, logs a line to stdout when transformers imports it)
    summary = json.loads(out[out.index("{\n") :])
    assert summary["steps"] == 3
    assert (tmp_path / "run" / "mole" / "gates.safetensors").is_file()
    args = _parser().parse_args(["mole", "eval", "--base", str(tmp_path / "base"), "--mole",
                                 str(tmp_path / "run" / "mole"), "--data", str(data),
                                 "--mask", "sort"])  # fmt: skip
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["exact_match"]) == {"sort", "shift"}
    assert result["mask"] == ["sort"]
