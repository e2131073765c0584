"""Tests for the `papercraft` command: built-ins, plug-in discovery, the demo."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from papercraft.core import __version__
from papercraft.core.cli import main


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real installed-looking distribution providing a sub-command and a demo."""
    site = tmp_path / "site"
    pkg = site / "pc_fake_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path

            class _Command:
                def register(self, subparsers):
                    p = subparsers.add_parser("fake", help="a fake method package")
                    p.add_argument("--shout", action="store_true")
                    p.set_defaults(func=lambda args: print("FAKE!" if args.shout else "fake") or 0)

            command = _Command()

            def run_demo(output_dir: Path) -> None:
                output_dir.mkdir(parents=True, exist_ok=True)
                (output_dir / "result.txt").write_text("fake demo ran")

            class _Broken:
                def register(self, subparsers):
                    raise RuntimeError("boom")

            broken = _Broken()
            """
        )
    )
    dist_info = site / "papercraft_fake-0.0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: papercraft-fake\nVersion: 0.0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[papercraft.commands]\nfake = pc_fake_plugin:command\nbroken = pc_fake_plugin:broken\n"
        "info = pc_fake_plugin:command\n\n"
        "[papercraft.demos]\nfake = pc_fake_plugin:run_demo\n"
    )
    monkeypatch.syspath_prepend(str(site))
    return site


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"papercraft-core {__version__}"


def test_info_json_lists_backends_and_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["papercraft_core"] == __version__
    backends = info["attention_backends"]
    assert {"eager", "sdpa", "flash", "xformers", "blockwise"} <= set(backends)
    assert backends["eager"]["available"] is True
    for entry in backends.values():  # every unusable backend says why
        assert entry["available"] or entry["reason"]
    assert "papercraft-core" in info["packages"]


def test_info_renders_tables(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    from papercraft.core.info import render_info

    info = {
        "papercraft_core": __version__,
        "python": "3.11",
        "platform": "Linux",
        "libraries": {"torch": "2.13.0"},
        "packages": {"papercraft-core": __version__},
        "device": {"cpu_count": 2, "torch_threads": 2, "cuda": [], "mps": False},
        "attention_backends": {
            "flash": {"available": False, "reason": "pip install 'papercraft-core[cuda]'"},
            "eager": {"available": True, "reason": "available"},
        },
        "attention_env": None,
    }
    console = Console(width=200, record=True)
    render_info(console, info)
    text = console.export_text()
    assert "attention backends" in text
    # reasons are printed literally: "[cuda]" must not be swallowed as rich markup
    assert "pip install 'papercraft-core[cuda]'" in text
    assert main(["info"]) == 0
    assert "eager" in capsys.readouterr().out


def test_plugin_subcommand_is_discovered(
    plugin_dist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fake", "--shout"]) == 0
    captured = capsys.readouterr()
    assert "FAKE!" in captured.out
    # the broken plug-in and the one clashing with a built-in are reported, not fatal
    assert "could not load sub-command 'broken'" in captured.err
    assert "clashes with a built-in" in captured.err


def test_demo_only_runs_the_named_plugin_demo(
    plugin_dist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo-output"
    assert main(["demo", "--only", "fake", "--output", str(out)]) == 0
    assert (out / "fake" / "result.txt").read_text() == "fake demo ran"
    assert not (out / "core").exists()


def test_demo_rejects_unknown_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--only", "nope", "--output", str(tmp_path)]) == 2
    assert "--only must be one of" in capsys.readouterr().out


def test_core_demo_quick_writes_table_and_plot(tmp_path: Path) -> None:
    assert main(["demo", "--only", "core", "--quick", "--output", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "core" / "attention.json").read_text())
    methods = {row["method"] for row in data["rows"]}
    assert methods == {"eager", "sdpa", "eager+window", "blockwise"}
    eager_rows = [r for r in data["rows"] if r["method"] == "eager"]
    assert all(r["median_s_ratio"] == pytest.approx(1.0) for r in eager_rows)
    assert (tmp_path / "core" / "attention_time.png").read_bytes()[:4] == b"\x89PNG"
    assert "| method |" in (tmp_path / "core" / "attention.md").read_text()


def test_bench_attention_rejects_bad_lengths(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "attention", "--seq-lens", "0,abc"])
    assert "--seq-lens" in capsys.readouterr().err


def test_console_script_runs_in_a_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "papercraft.core.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert proc.stdout.strip() == f"papercraft-core {__version__}"


def test_add_package_command_gives_help_info_and_an_action_group(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse

    from papercraft.core.cli import add_package_command, command_error

    parser = argparse.ArgumentParser(prog="papercraft")
    actions = add_package_command(parser.add_subparsers(dest="command"), "demo-pkg",
                                  dist="papercraft-demo-pkg", version="9.9.9", summary="One line.",
                                  paper="A paper (arXiv 0000.00000)")  # fmt: skip
    actions.add_parser("go").set_defaults(func=lambda args: 7)
    args = parser.parse_args(["demo-pkg", "info"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.splitlines() == [
        "papercraft-demo-pkg 9.9.9",
        "One line.",
        "paper: A paper (arXiv 0000.00000)",
    ]
    bare = parser.parse_args(["demo-pkg"])
    assert bare.func(bare) == 0
    assert "ACTION" in capsys.readouterr().out
    go = parser.parse_args(["demo-pkg", "go"])
    assert go.func(go) == 7
    assert command_error("demo-pkg go", ValueError("bad --x")) == 2
    assert capsys.readouterr().err == "papercraft demo-pkg go: error: bad --x\n"
