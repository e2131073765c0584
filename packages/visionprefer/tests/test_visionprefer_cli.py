"""``papercraft visionprefer`` actions end to end on small files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from _judge_server import JudgeServer
from PIL import Image

from papercraft.visionprefer import cli
from papercraft.visionprefer.records import (
    AspectJudgment,
    ImageCandidate,
    PreferenceRecord,
    load_pairs,
    load_records,
    save_records,
)


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="papercraft")
    cli.command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["visionprefer", *argv])
    return int(args.func(args))


def _dataset(root: Path, judged: bool) -> Path:
    colours = [(250, 0, 0), (128, 64, 64), (0, 0, 250)]
    images = []
    for i, colour in enumerate(colours):
        (root / "p1").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), colour).save(root / "p1" / f"{i}.png")
        images.append(ImageCandidate(f"p1/{i}.png", f"g{i}", seed=i))
    judgments = ([{"prompt_following": AspectJudgment(float(3 - i))} for i in range(3)]
                 if judged else [])  # fmt: skip
    return save_records(root / "records.jsonl",
                        [PreferenceRecord("p1", "a red square", images, judgments)])  # fmt: skip


def test_annotate_pairs_train_score(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = _dataset(tmp_path, judged=False)
    with JudgeServer() as server:
        code = _run("annotate", "--records", str(records), "--judge", f"openai:{server.url}#j",
                    "--out", str(tmp_path / "annotated.jsonl"), "--aspects", "aesthetic")  # fmt: skip
    assert code == 0
    annotated = load_records(tmp_path / "annotated.jsonl")
    assert [j["aesthetic"].score for j in annotated[0].judgments] == [10.0, 3.0, 1.0]
    assert _run("pairs", "--records", str(tmp_path / "annotated.jsonl"),
                "--out", str(tmp_path / "pairs.jsonl")) == 0  # fmt: skip
    pairs = load_pairs(tmp_path / "pairs.jsonl")
    assert len(pairs) == 3
    assert Path(pairs[0].chosen).is_file()
    out = capsys.readouterr().out
    assert "wrote 3 pairs" in out
    assert (
        json.loads(out[out.rindex('{\n  "prompt_following') : out.rindex("wrote")])["aesthetic"][
            "pairs"
        ]
        == 3
    )
    assert _run("train-reward", "--pairs", str(tmp_path / "pairs.jsonl"), "--tiny",
                "--eval-pairs", str(tmp_path / "pairs.jsonl"), "--epochs", "1",
                "--out", str(tmp_path / "vp")) == 0  # fmt: skip
    assert "accuracy" in capsys.readouterr().out
    images = [str(tmp_path / "p1" / f"{i}.png") for i in range(3)]
    assert _run("score", "--model", str(tmp_path / "vp"), "--prompt", "a red square",
                "--images", *images) == 0  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert all("\t" in line for line in lines)


def test_bad_input_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("pairs", "--records", str(tmp_path / "missing.jsonl"), "--out", "x") == 2
    assert "visionprefer pairs: error" in capsys.readouterr().err
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("")
    assert _run("train-reward", "--pairs", str(pairs), "--out", str(tmp_path / "vp")) == 2
    assert _run("score", "--model", str(tmp_path / "nope"), "--prompt", "x", "--images", "a") == 2
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n")
    assert _run("finetune", "--pipeline", str(tmp_path), "--reward", str(tmp_path),
                "--prompts", str(prompts), "--out", str(tmp_path / "o")) == 2  # fmt: skip
