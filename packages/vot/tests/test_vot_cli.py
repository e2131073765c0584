"""Tests of the ``papercraft vot`` command line: generate, eval (responders, hf:, errors)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from papercraft.core.testing import tiny_causal_lm
from papercraft.vot import cli


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="papercraft")
    cli.command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["vot", *argv])
    return int(args.func(args))


def test_generate_then_eval_on_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data"
    assert _run(["generate", "--out", str(out), "--tasks", "route", "next-step",
                 "--no-images", "--no-png"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "route-planning" in printed
    assert "2520   (paper: 2520)" in printed
    assert (out / "visual-navigation" / "next-step-prediction.jsonl").is_file()
    assert _run(["generate", "--out", str(out), "--tasks", "route"]) == 2  # exists
    assert "overwrite" in capsys.readouterr().err
    table = tmp_path / "table.json"
    code = _run(["eval", "--model", "oracle", "--task", "next-step", "--setting", "vot",
                 "--data", str(out), "--limit", "30", "--log", str(tmp_path / "log.jsonl"),
                 "--json", str(table)])  # fmt: skip
    assert code == 0
    assert "| all | 30 | 100.0" in capsys.readouterr().out
    rows = json.loads(table.read_text(encoding="utf-8"))["rows"]
    assert rows[-1]["accuracy"] == 1.0
    jsonl = out / "visual-navigation" / "route-planning.jsonl"
    assert _run(["eval", "--model", "perpendicular", "--task", "route", "--data", str(jsonl),
                 "--levels", "2", "--setting", "cot"]) == 0  # fmt: skip
    assert "| 2 | 8 |" in capsys.readouterr().out


def test_eval_a_local_transformers_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, tokenizer = tiny_causal_lm(seed=0)
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    code = _run(["eval", "--model", f"hf:{tmp_path / 'tiny'}", "--task", "nl-nav",
                 "--limit", "3", "--max-new-tokens", "8"])  # fmt: skip
    assert code == 0
    assert "| all | 3 |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "gpt5", "--task", "route"], "model must be one of oracle"),
        (["--model", "gguf:x.bin", "--task", "route"], "spec must start with"),
        (["--model", "oracle", "--task", "maze"], "task must be one of"),
        (["--model", "oracle", "--task", "route", "--setting", "tot"], "setting must be one of"),
        (["--model", "oracle", "--task", "route", "--limit", "0"], "limit"),
        (["--model", "oracle", "--task", "route", "--data", "/nonexistent.jsonl"], "no such file"),
    ],
)
def test_eval_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["eval", *argv]) == 2
    assert message in capsys.readouterr().err
