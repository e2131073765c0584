"""Smoke tests: the package imports, carries its version and plugs into the papercraft command."""

from __future__ import annotations

import argparse
import json
import re
from importlib import metadata
from pathlib import Path

import pytest

import papercraft.wavllm
from papercraft.wavllm import cli, demo
from papercraft.wavllm._version import __version__


def test_version_is_exported_and_well_formed() -> None:
    assert papercraft.wavllm.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", __version__)


def test_cli_registers_the_info_action(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="papercraft")
    cli.command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["wavllm", "info"])
    assert args.func(args) == 0
    assert f"papercraft-wavllm {__version__}" in capsys.readouterr().out


def test_entry_point_values_resolve() -> None:
    targets = {
        "papercraft.commands": ("papercraft.wavllm.cli:command", cli.command),
        "papercraft.demos": ("papercraft.wavllm.demo:run_demo", demo.run_demo),
    }
    for group, (value, expected) in targets.items():
        entry_point = metadata.EntryPoint(name="wavllm", value=value, group=group)
        assert entry_point.load() is expected


def test_installed_metadata_registers_the_entry_points() -> None:
    try:
        installed = metadata.distribution("papercraft-wavllm")
    except metadata.PackageNotFoundError:
        pytest.skip("papercraft-wavllm is not installed; running from a source tree")
    assert installed.version == __version__
    commands = {ep.name: ep.value for ep in metadata.entry_points(group="papercraft.commands")}
    demos = {ep.name: ep.value for ep in metadata.entry_points(group="papercraft.demos")}
    assert commands.get("wavllm") == "papercraft.wavllm.cli:command"
    assert demos.get("wavllm") == "papercraft.wavllm.demo:run_demo"


def test_demo_runs_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from papercraft.wavllm.speech import espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    report = demo.run_demo(tmp_path / "out", train_clips=9, test_clips=6, epochs=2.0)
    saved = json.loads((tmp_path / "out" / "wavllm_demo.json").read_text(encoding="utf-8"))
    assert saved["version"] == __version__ == report["version"]
    assert saved["same_single_and_batched"] == 1.0  # batch-invariant inference
    assert 0.0 <= saved["exact_match_single"] <= 1.0
    out = capsys.readouterr().out
    assert "one padded batch" in out
    assert "digits per clip" in out
    assert set(saved["clips_by_length"]) <= {"1", "2", "3"}
    assert sum(saved["clips_by_length"].values()) == 6


def test_digit_rows_speak_sequences_in_the_requested_range() -> None:
    from papercraft.wavllm.speech import espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    rows = demo.digit_rows(6, min_digits=2, max_digits=3, seed=1)
    assert {len(r.target) for r in rows} <= {2, 3}
    assert all(r.target.isdigit() for r in rows)
    assert rows[0].target == demo.digit_rows(1, min_digits=2, max_digits=3, seed=1)[0].target
    # more spoken digits, longer audio (commas add pauses between them)
    by_len = {len(r.target): r.audio.shape[0] for r in rows}
    if {2, 3} <= set(by_len):
        assert by_len[3] > by_len[2] * 0.9


@pytest.mark.parametrize(("n", "lo", "hi"), [(0, 1, 1), (2, 0, 1), (2, 3, 2)])
def test_digit_rows_rejects_bad_arguments(n: int, lo: int, hi: int) -> None:
    with pytest.raises(ValueError, match=r"n must|min_digits"):
        demo.digit_rows(n, min_digits=lo, max_digits=hi)


def test_demo_rejects_a_file_as_output_dir(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="output_dir"):
        demo.run_demo(target)
