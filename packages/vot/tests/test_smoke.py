"""Smoke tests: the package imports, carries its version and plugs into the papercraft command."""

from __future__ import annotations

import argparse
import json
import re
from importlib import metadata
from pathlib import Path

import pytest

import papercraft.vot
from papercraft.vot import cli, demo
from papercraft.vot._version import __version__


def test_version_is_exported_and_well_formed() -> None:
    assert papercraft.vot.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", __version__)


def test_cli_registers_the_info_action(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="papercraft")
    cli.command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["vot", "info"])
    assert args.func(args) == 0
    assert f"papercraft-vot {__version__}" in capsys.readouterr().out


def test_entry_point_values_resolve() -> None:
    targets = {
        "papercraft.commands": ("papercraft.vot.cli:command", cli.command),
        "papercraft.demos": ("papercraft.vot.demo:run_demo", demo.run_demo),
    }
    for group, (value, expected) in targets.items():
        entry_point = metadata.EntryPoint(name="vot", value=value, group=group)
        assert entry_point.load() is expected


def test_installed_metadata_registers_the_entry_points() -> None:
    try:
        installed = metadata.distribution("papercraft-vot")
    except metadata.PackageNotFoundError:
        pytest.skip("papercraft-vot is not installed; running from a source tree")
    assert installed.version == __version__
    commands = {ep.name: ep.value for ep in metadata.entry_points(group="papercraft.commands")}
    demos = {ep.name: ep.value for ep in metadata.entry_points(group="papercraft.demos")}
    assert commands.get("vot") == "papercraft.vot.cli:command"
    assert demos.get("vot") == "papercraft.vot.demo:run_demo"


def test_demo_writes_its_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    demo.run_demo(tmp_path / "out")
    report = json.loads((tmp_path / "out" / "vot_demo.json").read_text(encoding="utf-8"))
    assert report["version"] == __version__
    assert "| route-planning | all | 496 | 496 |" in report["counts"]
    assert "| next-step-prediction | all | 2520 | 2520 |" in report["counts"]
    scores = {(r["task"], r["responder"]): r["metrics"] for r in report["scores"]}
    assert scores[("visual-tiling", "oracle")]["overall_accuracy"] == 1.0
    assert 0.45 < scores[("next-step-prediction", "perpendicular")]["accuracy"] < 0.55
    assert (tmp_path / "out" / "vot_map_level4.png").is_file()
    assert "Reference responders" in capsys.readouterr().out


def test_demo_rejects_a_file_as_output_dir(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="output_dir"):
        demo.run_demo(target)
