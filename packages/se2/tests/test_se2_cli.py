"""Tests of the ``papercraft se2`` command line on a built-in task with tiny local models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from papercraft.core.data import read_jsonl, write_jsonl
from papercraft.core.testing import tiny_bert, tiny_causal_lm
from papercraft.se2 import cli

WORDS = ["good", "bad", "fine", "awful", "great", "dull", "lovely", "boring", "superb", "poor"]


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="papercraft")
    cli.command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["se2", *argv])
    return int(args.func(args))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("se2cli")
    rows = [{"sentence": f"a {w} film number {i}", "label": int(j % 2 == 0)}
            for i in range(3) for j, w in enumerate(WORDS)]  # fmt: skip
    write_jsonl(root / "train.jsonl", rows[:24])
    write_jsonl(root / "dev.jsonl", rows[24:])
    model, tokenizer = tiny_causal_lm(seed=0)
    model.save_pretrained(root / "lm")
    tokenizer.save_pretrained(root / "lm")
    bert, bert_tok = tiny_bert(seed=0)
    bert.save_pretrained(root / "bert")
    bert_tok.save_pretrained(root / "bert")
    return {"root": root, "train": root / "train.jsonl", "dev": root / "dev.jsonl",
            "lm": root / "lm", "bert": root / "bert"}  # fmt: skip


def test_score_train_select_eval(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = files["root"]
    base = ["--task", "sst2", "--data", str(files["train"])]
    assert _run(["score", *base, "--model", f"hf:{files['lm']}", "--out", str(root / "s.jsonl"),
                 "--num-candidates", "4", "--steps", "2"]) == 0  # fmt: skip
    assert "scored 48 steps of 24 queries" in capsys.readouterr().out
    assert len(read_jsonl(root / "s.jsonl")) == 48
    assert _run(["train", *base, "--scores", str(root / "s.jsonl"), "--backbone", str(files["bert"]),
                 "--out", str(root / "r"), "--epochs", "1", "--warmup", "0", "--hard", "2",
                 "--random", "2", "--pooling", "mean", "--max-length", "64"]) == 0  # fmt: skip
    assert (root / "r" / "manifest.json").is_file()
    tests = ["--test-data", str(files["dev"]), "--retriever", str(root / "r"), "--shots", "2"]
    assert _run(["select", *base, *tests, "--out", str(root / "sel.jsonl")]) == 0
    rows = read_jsonl(root / "sel.jsonl")
    assert len(rows) == 6
    assert all(len(r["ids"]) == 2 for r in rows)
    assert _run(["eval", *base, *tests, "--model", f"hf:{files['lm']}", "--similarity",
                 str(files["bert"]), "--json", str(root / "res.json")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "| se2 |" in out
    assert "| bm25 |" in out
    assert "| similarity |" in out
    results = json.loads((root / "res.json").read_text(encoding="utf-8"))["results"]
    assert set(results) == {"se2", "random", "bm25", "similarity"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["score", "--task", "nope", "--data", "x.jsonl", "--model", "hf:x", "--out", "o"], "name"),
        (["score", "--task", "sst2", "--data", "/missing.jsonl", "--model", "hf:x", "--out", "o"],
         "missing"),
        (["select", "--task", "sst2", "--data", "TRAIN", "--test-data", "TRAIN", "--out", "o"],
         "needs --retriever"),
    ],
)  # fmt: skip
def test_errors_exit_2(
    argv: list[str], message: str, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(files["train"]) if a == "TRAIN" else a for a in argv]
    assert _run(argv) == 2
    assert message in capsys.readouterr().err
