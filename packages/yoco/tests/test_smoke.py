"""Smoke tests: the package imports, carries its version and plugs into the papercraft command."""

from __future__ import annotations

import argparse
import json
import re
from importlib import metadata
from pathlib import Path

import pytest

import papercraft.yoco
from papercraft.yoco import cli, demo
from papercraft.yoco._version import __version__
from papercraft.yoco.bench import BenchSettings


def test_version_is_exported_and_well_formed() -> None:
    assert papercraft.yoco.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", __version__)


def test_cli_registers_the_info_action(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="papercraft")
    cli.command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["yoco", "info"])
    assert args.func(args) == 0
    assert f"papercraft-yoco {__version__}" in capsys.readouterr().out


def test_entry_point_values_resolve() -> None:
    targets = {
        "papercraft.commands": ("papercraft.yoco.cli:command", cli.command),
        "papercraft.demos": ("papercraft.yoco.demo:run_demo", demo.run_demo),
    }
    for group, (value, expected) in targets.items():
        entry_point = metadata.EntryPoint(name="yoco", value=value, group=group)
        assert entry_point.load() is expected


def test_installed_metadata_registers_the_entry_points() -> None:
    try:
        installed = metadata.distribution("papercraft-yoco")
    except metadata.PackageNotFoundError:
        pytest.skip("papercraft-yoco is not installed; running from a source tree")
    assert installed.version == __version__
    commands = {ep.name: ep.value for ep in metadata.entry_points(group="papercraft.commands")}
    demos = {ep.name: ep.value for ep in metadata.entry_points(group="papercraft.demos")}
    assert commands.get("yoco") == "papercraft.yoco.cli:command"
    assert demos.get("yoco") == "papercraft.yoco.demo:run_demo"


def test_demo_writes_its_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps the table's headers on narrow terminals
    tiny = BenchSettings(
        lengths=(16, 32),
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        vocab_size=64,
        chunk_size=8,
        repeats=1,
        warmup=0,
        decode_tokens=1,
    )
    demo.run_demo(tmp_path / "out", settings=tiny, lengths=(16, 24))
    report = json.loads((tmp_path / "out" / "yoco_vs_llama.json").read_text(encoding="utf-8"))
    assert report["machine"]["papercraft_yoco"] == __version__
    assert sorted({row["seq_len"] for row in report["rows"]}) == [16, 24]
    for name in ("yoco_vs_llama.md", "yoco_vs_llama_prefill.png", "yoco_vs_llama_cache.png"):
        assert (tmp_path / "out" / name).is_file()
    printed = capsys.readouterr().out
    assert "prefill speed-up" in printed
    assert "cache smaller by" in printed


def test_demo_defaults_cover_2k_to_8k() -> None:
    assert demo.DEMO_SETTINGS.lengths == (2048, 4096, 8192)
    assert demo.DEMO_SETTINGS.hidden_size == 256
    assert demo.DEMO_SETTINGS.num_layers == 8


def test_demo_rejects_a_file_as_output_dir(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="output_dir"):
        demo.run_demo(target)
