"""Tests of ``papercraft yoco`` (info, bench, demo, train): parsing, errors and a tiny real run."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path

import pytest

from papercraft.core.cli import main as papercraft_main
from papercraft.yoco import cli

TINY_BENCH = [
    "--lengths",
    "16,24",
    "--hidden",
    "32",
    "--layers",
    "2",
    "--heads",
    "2",
    "--kv-heads",
    "1",
    "--ffn",
    "48",
    "--vocab",
    "64",
    "--chunk-size",
    "8",
    "--repeats",
    "1",
    "--decode-tokens",
    "1",
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="papercraft")
    cli.command.register(parser.add_subparsers(dest="command"))
    return parser


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    yoco = parser._subparsers._group_actions[0].choices["yoco"]  # type: ignore[union-attr]
    (group,) = [a for a in yoco._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(group.choices)


def test_bench_defaults_are_the_target_setting() -> None:
    args = _parser().parse_args(["yoco", "bench"])
    assert args.lengths == [2048, 4096, 8192, 16384]
    assert (args.hidden, args.layers, args.heads, args.kv_heads) == (256, 8, 4, 2)
    assert (args.self_decoder, args.dtype, args.device) == ("gret", "float32", "cpu")
    assert args.vocab == 8192
    assert args.output is None
    assert not args.json


def test_bench_parses_every_option() -> None:
    args = _parser().parse_args(
        [
            *("yoco", "bench", "--lengths", "512, 1024", "--self-decoder", "swa", "--window", "64"),
            *("--dtype", "bfloat16", "--repeats", "2", "--decode-tokens", "0", "--json"),
        ]
    )
    assert args.lengths == [512, 1024]
    assert (args.self_decoder, args.window, args.dtype) == ("swa", 64, "bfloat16")
    assert (args.repeats, args.decode_tokens, args.json) == (2, 0, True)


def test_parse_lengths() -> None:
    assert cli.parse_lengths("2048,4096") == [2048, 4096]
    for bad in ("", "abc", "16,-4", "0", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="comma-separated positive integers"):
            cli.parse_lengths(bad)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lengths", "16,x"], "comma-separated positive integers"),
        (["--self-decoder", "mamba"], "invalid choice: 'mamba'"),
        (["--dtype", "float64"], "invalid choice: 'float64'"),
        (["--heads", "3"], r"hidden_size \(256\) must be divisible by num_heads \(3\)"),
        (["--kv-heads", "3"], r"num_heads \(4\) must be a multiple of num_kv_heads \(3\)"),
        (["--repeats", "0"], "--repeats must be >= 1, got 0"),
        (["--hidden", "-8"], "--hidden must be >= 1, got -8"),
        (["--chunk-size", "0"], "--chunk-size must be >= 1, got 0"),
        (["--decode-tokens", "-1"], "--decode-tokens must be >= 0, got -1"),
        (["--layers", "1"], "num_layers must be an int >= 2"),
        (["--device", "tpu"], "device must be 'cpu' or 'cuda"),
    ],
)
def test_bench_rejects_bad_arguments_before_any_work(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = _parser()

    def parse_and_run() -> None:
        args = parser.parse_args(["yoco", "bench", *argv])
        args.func(args)

    with pytest.raises(SystemExit) as exc:
        parse_and_run()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "papercraft yoco bench" in err  # the usage line of the right action
    assert re.search(message, err), err


def test_bench_rejects_a_file_as_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x", encoding="utf-8")
    parser = _parser()
    args = parser.parse_args(["yoco", "bench", *TINY_BENCH, "--output", str(target)])
    with pytest.raises(SystemExit):
        args.func(args)
    assert "--output must be a directory" in capsys.readouterr().err


def test_demo_rejects_a_file_as_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x", encoding="utf-8")
    args = _parser().parse_args(["yoco", "demo", "--output", str(target)])
    with pytest.raises(SystemExit):
        args.func(args)
    assert "--output must be a directory" in capsys.readouterr().err


def test_bench_runs_end_to_end_through_the_papercraft_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench"
    status = papercraft_main(["yoco", "bench", *TINY_BENCH, "--json", "--output", str(out)])
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["seq_len"]) for r in report["rows"]] == [
        ("llama", 16),
        ("yoco", 16),
        ("llama", 24),
        ("yoco", 24),
    ]
    assert all(r["cache_bytes"] == r["expected_cache_bytes"] for r in report["rows"])
    assert sorted(p.name for p in out.iterdir()) == [
        "yoco_vs_llama.json",
        "yoco_vs_llama.md",
        "yoco_vs_llama_cache.png",
        "yoco_vs_llama_prefill.png",
    ]


def test_actions_are_registered() -> None:
    names = set(_actions(_parser()))
    assert {"info", "bench", "demo"} <= names


@pytest.mark.skipif(
    importlib.util.find_spec("papercraft.yoco.train") is None,
    reason="papercraft.yoco.train has not landed",
)
def test_train_action_comes_from_the_train_module() -> None:
    assert "train" in _actions(_parser())
