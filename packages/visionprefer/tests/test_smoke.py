"""Smoke tests: the package imports, carries its version and plugs into the papercraft command."""

from __future__ import annotations

import argparse
import json
import re
from importlib import metadata
from pathlib import Path

import pytest

import papercraft.visionprefer
from papercraft.visionprefer import cli, demo
from papercraft.visionprefer._version import __version__


def test_version_is_exported_and_well_formed() -> None:
    assert papercraft.visionprefer.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", __version__)


def test_cli_registers_the_info_action(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="papercraft")
    cli.command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["visionprefer", "info"])
    assert args.func(args) == 0
    assert f"papercraft-visionprefer {__version__}" in capsys.readouterr().out


def test_entry_point_values_resolve() -> None:
    targets = {
        "papercraft.commands": ("papercraft.visionprefer.cli:command", cli.command),
        "papercraft.demos": ("papercraft.visionprefer.demo:run_demo", demo.run_demo),
    }
    for group, (value, expected) in targets.items():
        entry_point = metadata.EntryPoint(name="visionprefer", value=value, group=group)
        assert entry_point.load() is expected


def test_installed_metadata_registers_the_entry_points() -> None:
    try:
        installed = metadata.distribution("papercraft-visionprefer")
    except metadata.PackageNotFoundError:
        pytest.skip("papercraft-visionprefer is not installed; running from a source tree")
    assert installed.version == __version__
    commands = {ep.name: ep.value for ep in metadata.entry_points(group="papercraft.commands")}
    demos = {ep.name: ep.value for ep in metadata.entry_points(group="papercraft.demos")}
    assert commands.get("visionprefer") == "papercraft.visionprefer.cli:command"
    assert demos.get("visionprefer") == "papercraft.visionprefer.demo:run_demo"


def test_demo_runs_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = demo.run_demo(tmp_path / "out", train_pairs=32, test_pairs=9, epochs=1, refl_steps=2)
    saved = json.loads((tmp_path / "out" / "visionprefer_demo.json").read_text(encoding="utf-8"))
    assert saved["version"] == __version__ == report["version"]
    assert saved["held_out_pairs"] == 9
    assert 0.0 <= saved["held_out_accuracy"] <= 1.0
    assert len(saved["refl_train_rewards"]) == 2
    assert "held-out pairwise accuracy" in capsys.readouterr().out


def test_demo_rejects_a_file_as_output_dir(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="output_dir"):
        demo.run_demo(target)
