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
