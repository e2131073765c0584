"""Tests of the ``papercraft wavllm`` command line: train (tiny, manifests) and generate."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from papercraft.wavllm import cli
from papercraft.wavllm.training import read_manifest


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="papercraft")
    cli.command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["wavllm", *argv])
    return int(args.func(args))


def _wav(path: Path, seconds: float, freq: float, rate: int = 22050) -> None:
    t = np.arange(int(seconds * rate)) / rate
    wavfile.write(path, rate, (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16))


def test_manifests_train_and_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _wav(tmp_path / "a.wav", 0.8, 220)
    _wav(tmp_path / "b.wav", 1.3, 440)
    (tmp_path / "train.tsv").write_text(
        "id\taudio\tn_frames\tprompt\ttgt_text\twith_speech\n"
        "a\ta.wav\t17640\tWhat tone?\tlow\tTrue\nb\tb.wav\t28665\tWhat tone?\thigh\tTrue\n",
        encoding="utf-8",
    )
    rows = [{"id": "a", "audio": "a.wav", "prompt": "Pitch?", "target": "low"},
            {"id": "b", "audio": "b.wav", "prompt": "Pitch?", "target": "high"}]  # fmt: skip
    (tmp_path / "multi.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    assert [r.target for r in read_manifest(tmp_path / "train.tsv")] == ["low", "high"]
    out = tmp_path / "run"
    code = _run(["train", "--tiny", "--stage1", str(tmp_path / "train.tsv"), "--stage2",
                 str(tmp_path / "multi.jsonl"), "--out", str(out), "--epochs", "2", "--lr", "1e-3",
                 "--batch-size", "2"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "stage 1: loss" in printed
    assert "stage 2: loss" in printed
    assert (out / "stage-2" / "model.safetensors").is_file()
    assert _run(["generate", "--model", str(out / "stage-2"), "--audio", str(tmp_path / "a.wav"),
                 str(tmp_path / "b.wav"), "--prompt", "Pitch?", "--max-new-tokens", "3",
                 "--temperature", "0"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(str(tmp_path / "a.wav"))


def test_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.tsv").write_text("id\tpath\n1\tx.wav\n", encoding="utf-8")
    assert _run(["train", "--tiny", "--stage1", str(tmp_path / "bad.tsv"), "--out", "o"]) == 2
    assert "TSV header needs" in capsys.readouterr().err
    assert _run(["train", "--stage1", str(tmp_path / "bad.tsv"), "--out", "o"]) == 2
    assert "--model" in capsys.readouterr().err
    assert _run(["generate", "--model", str(tmp_path), "--audio", "x.wav", "--prompt", "p"]) == 2
    assert "config.json" in capsys.readouterr().err


@pytest.mark.slow
def test_deepspeed_zero2_two_process_cpu_run(tmp_path: Path) -> None:
    """The shipped ZeRO-2 config, unchanged, under torchrun with DeepSpeed's CPU accelerator."""
    pytest.importorskip("deepspeed")
    from papercraft.core.testing import run_torchrun

    for name, freq in (("a", 220), ("b", 330), ("c", 440), ("d", 550)):
        _wav(tmp_path / f"{name}.wav", 0.6, freq)
    rows = [{"audio": f"{n}.wav", "prompt": "Pitch?", "target": n} for n in "abcd"]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    done = run_torchrun(
        "papercraft.core.cli",
        ["wavllm", "train", "--tiny", "--stage1", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "run"),
         "--epochs", "1", "--batch-size", "1", "--lr", "1e-3", "--deepspeed", "ds_zero2"],
        env={"DS_ACCELERATOR": "cpu"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "stage-1" / "model.safetensors").is_file()
