"""Tests of the ``papercraft mhmoe`` actions: parity, train, compare, bench, errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from papercraft.core.testing import sample_texts
from papercraft.mhmoe import cli


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="papercraft")
    cli.command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["mhmoe", *argv])
    status: int = args.func(args)
    return status


def test_parity_defaults_reproduce_the_mhv2_configs(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["parity"]) == 0
    out = capsys.readouterr().out
    rows = {
        line.split("|")[1].strip() + line.split("|")[2].strip(): line for line in out.splitlines()
    }
    h2 = [c.strip() for c in rows["MH-MoE h=2params+flops"].split("|")]
    h3 = [c.strip() for c in rows["MH-MoE h=3params+flops"].split("|")]
    # | model | match | heads | top-k | experts | expert hidden | ...
    assert h2[3:7] == ["2", "2", "40", "768"]
    assert h3[3:7] == ["3", "3", "96", "512"]


def test_parity_flags_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        _run(
            [
                "parity",
                "--d-model",
                "128",
                "--expert-hidden",
                "256",
                "--heads",
                "2,4",
                "--match",
                "params",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "MH-MoE h=4" in out
    assert "params+flops" not in out
    assert _run(["parity", "--heads", "5"]) == 2  # 5 does not divide 768
    assert "num_heads" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        _run(["parity", "--heads", "two"])
    assert exc.value.code == 2


def test_train_action_trains_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "prose.txt"
    data.write_text("\n\n".join(sample_texts(120, seed=5)), encoding="utf-8")
    status = _run(
        [
            "train",
            "--config",
            "tiny",
            "--data",
            str(data),
            "--output",
            str(tmp_path / "out"),
            "--block-size",
            "32",
            "--max-steps",
            "2",
            "--batch-size",
            "2",
            "--warmup",
            "0",
            "--eval-fraction",
            "0.1",
            "--set",
            "hidden_size=32",
            "--set",
            "num_hidden_layers=2",
            "--set",
            "vocab_size=300",
            "--set",
            "intermediate_size=64",
            "--cpu",
        ]
    )
    assert status == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.rindex('{\n  "format"') :])
    assert report["global_step"] == 2
    assert report["expert_stats"]["num_dead_experts"] >= 0
    assert (tmp_path / "out" / "stats.json").is_file()


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--config", "tiny", "--data", "missing.txt", "--output", "o"],
        ["train", "--config", "tiny", "--data", "x.txt", "--output", "o", "--set", "oops"],
        ["train", "--config", "nope", "--data", ".", "--output", "o"],
        ["compare", "--top-k", "3", "--output", "o"],
        ["compare", "--heads", "3", "--output", "o"],
    ],
)
def test_bad_arguments_exit_with_status_2(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.txt").write_text("text", encoding="utf-8")
    assert _run(argv) == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_compare_action_prints_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = _run(
        [
            "compare",
            "--output",
            str(tmp_path / "cmp"),
            "--max-documents",
            "3",
            "--hidden",
            "32",
            "--layers",
            "1",
            "--attention-heads",
            "2",
            "--experts",
            "4",
            "--expert-hidden",
            "64",
            "--vocab",
            "300",
            "--block-size",
            "32",
            "--batch-size",
            "2",
            "--steps",
            "2",
            "--json",
        ]
    )
    assert status == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index('{\n  "format"') :])
    assert report["systems"]["smoe"]["num_heads"] == 1
    assert report["systems"]["mhmoe"]["num_heads"] == 2


def test_bench_uses_the_benchmark_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _run(["bench", "--help"])
    assert exc.value.code == 0
    assert "--quick" in capsys.readouterr().out  # the benchmark's own options are registered
    assert _run(["bench", "--tokens", "-5"]) == 2
    assert "tokens" in capsys.readouterr().err


def test_demo_action_rejects_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        _run(["demo", "--output", str(target)])
    assert exc.value.code == 2
