"""File templates for a new papercraft method package (used by :mod:`tools.new_package`).

Every method package starts from the same files so that the nine packages look alike: the
packaging metadata of ``DESIGN.md`` rules 1, 2 and 12, the README sections of the house style, the
``papercraft.commands`` / ``papercraft.demos`` entry points of rule 8, a conftest that skips
CUDA-marked tests without a GPU, and a smoke test. Placeholders are written ``{{key}}`` so that the
braces of the generated Python and TOML need no escaping.
"""

from __future__ import annotations

import json
import re

from tools._layout import CORE_REQUIREMENT, METHODS, TORCH_REQUIREMENT, dist_name

__all__ = ["render_package"]

_REPOSITORY = "https://github.com/papercraft-ml/papercraft"

_PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.24"]
build-backend = "hatchling.build"

[project]
name = "{{dist}}"
dynamic = ["version"]
description = {{description_toml}}
readme = "README.md"
license = "MIT"
requires-python = ">=3.10"
authors = [{ name = "papercraft developers" }]
keywords = ["papercraft", "{{name}}"]
classifiers = [
    "Development Status :: 2 - Pre-Alpha",
    "Intended Audience :: Science/Research",
    "Programming Language :: Python :: 3",
    "Programming Language :: Python :: 3.10",
    "Programming Language :: Python :: 3.11",
    "Programming Language :: Python :: 3.12",
    "Topic :: Scientific/Engineering :: Artificial Intelligence",
    "Typing :: Typed",
]
dependencies = [
    "{{core_requirement}}",
    "{{torch_requirement}}",
]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-timeout>=2.3"]

[project.entry-points."papercraft.commands"]
{{name}} = "papercraft.{{name}}.cli:command"

[project.entry-points."papercraft.demos"]
{{name}} = "papercraft.{{name}}.demo:run_demo"

[project.urls]
Homepage = "{{repository}}"
Source = "{{repository}}/tree/main/packages/{{name}}"
Changelog = "{{repository}}/blob/main/packages/{{name}}/CHANGELOG.md"
{{paper_url_line}}
[tool.hatch.version]
path = "src/papercraft/{{name}}/_version.py"

[tool.hatch.build.targets.wheel]
packages = ["src/papercraft"]

[tool.hatch.build.targets.sdist]
include = ["src", "tests", "benchmarks", "README.md", "CHANGELOG.md"]
"""

_README = """\
# {{dist}}

{{description}}

<!-- What it is: one paragraph on what the method does and what this package gives you. -->
{{paper_line}}

## Install

```bash
pip install {{dist}}
# from a checkout of the repository:
pip install ./packages/{{name}}
```

## Quickstart

<!-- Replace with a ~10-line example that runs on a CPU in seconds. -->
```python
import papercraft.{{name}}

print(papercraft.{{name}}.__version__)
```

## Command line

```bash
papercraft {{name}} info  # the package, its version and its paper
papercraft demo  # runs the demo of every installed package, this one included
```

## Benchmarks

<!-- The table from benchmarks/, the command that produced it and the machine it ran on. -->
_No published numbers yet._ Run `nox -s "bench(package='{{name}}')"`.

## Limits

<!-- What the package does not do, and where it departs from the paper or official code. -->
_Planned: nothing is implemented beyond the package skeleton._
"""

_CHANGELOG = """\
# Changelog — {{dist}}

## 0.1.0 — unreleased

- Package skeleton created with `tools/new_package.py`.
"""

_INIT = '''\
"""papercraft.{{name}} — {{description}}

{{paper_text}}
"""

from __future__ import annotations

from papercraft.{{name}}._version import __version__

__all__ = ["__version__"]
'''

_VERSION = '''\
"""Version of {{dist}} (hatchling reads it when building)."""

from __future__ import annotations

__version__ = "0.1.0"
'''

_CLI = '''\
"""The ``papercraft {{name}}`` sub-command.

The core's ``papercraft`` command finds this module through the ``papercraft.commands`` entry
point and calls ``command.register(subparsers)``. Each action stores its handler as ``func``
(``handler(args) -> int``, the exit status) on the parsed namespace.
"""

from __future__ import annotations

import argparse

from papercraft.{{name}}._version import __version__

__all__ = ["Command", "command"]

_DIST = "{{dist}}"
_SUMMARY = {{description_py}}
_PAPER = {{paper_py}}


def _info(args: argparse.Namespace) -> int:
    """Print the distribution name, version and paper, like ``--version`` does."""
    print(f"{_DIST} {__version__}")
    print(_SUMMARY)
    if _PAPER:
        print(f"paper: {_PAPER}")
    return 0


class Command:
    """Registers ``papercraft {{name}}`` and its actions on the core's argument parser."""

    name = "{{name}}"

    def register(self, subparsers: argparse._SubParsersAction) -> None:
        """Add the ``{{name}}`` sub-parser.

        Args:
            subparsers (argparse._SubParsersAction): the core parser's sub-command group.
        """
        parser = subparsers.add_parser(self.name, help=_SUMMARY, description=_SUMMARY)

        def show_help(args: argparse.Namespace) -> int:
            parser.print_help()
            return 0

        parser.set_defaults(func=show_help)
        actions = parser.add_subparsers(dest="{{name}}_action", metavar="ACTION")
        info = actions.add_parser("info", help="print the package, its version and its paper")
        info.set_defaults(func=_info)


command = Command()
'''

_DEMO = '''\
"""The {{name}} demo that ``papercraft demo`` runs (``papercraft.demos`` entry point)."""

from __future__ import annotations

import json
from pathlib import Path

from papercraft.{{name}}._version import __version__

__all__ = ["run_demo"]


def run_demo(output_dir: Path) -> None:
    """Run the demo at laptop scale, print what it shows and write its files under ``output_dir``.

    Args:
        output_dir (Path): directory for the demo's tables and plots; created if missing.

    Raises:
        ValueError: if ``output_dir`` exists and is not a directory.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output_dir must be a directory, got the file {output_dir}")
    output_dir.mkdir(parents=True, exist_ok=True)
    report = {"package": "{{dist}}", "version": __version__, "status": "planned"}
    path = output_dir / "{{name}}.json"
    path.write_text(json.dumps(report, indent=2) + "\\n", encoding="utf-8")
    print(f"{{dist}} {__version__}: no demo yet (status: planned); wrote {path}")
'''

_CONFTEST = '''\
"""Shared pytest configuration for {{dist}}'s tests."""

from __future__ import annotations

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    """Register the house markers so the tests also run outside the monorepo."""
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped when none is present)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds on a 2-core CPU")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``cuda`` on machines without a CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
'''

_TEST_SMOKE = '''\
"""Smoke tests: the package imports, carries its version and plugs into the papercraft command."""

from __future__ import annotations

import argparse
import json
import re
from importlib import metadata
from pathlib import Path

import pytest

import papercraft.{{name}}
from papercraft.{{name}} import cli, demo
from papercraft.{{name}}._version import __version__


def test_version_is_exported_and_well_formed() -> None:
    assert papercraft.{{name}}.__version__ == __version__
    assert re.fullmatch(r"\\d+\\.\\d+\\.\\d+((a|b|rc)\\d+)?(\\.dev\\d+)?", __version__)


def test_cli_registers_the_info_action(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="papercraft")
    cli.command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["{{name}}", "info"])
    assert args.func(args) == 0
    assert f"{{dist}} {__version__}" in capsys.readouterr().out


def test_entry_point_values_resolve() -> None:
    targets = {
        "papercraft.commands": ("papercraft.{{name}}.cli:command", cli.command),
        "papercraft.demos": ("papercraft.{{name}}.demo:run_demo", demo.run_demo),
    }
    for group, (value, expected) in targets.items():
        entry_point = metadata.EntryPoint(name="{{name}}", value=value, group=group)
        assert entry_point.load() is expected


def test_installed_metadata_registers_the_entry_points() -> None:
    try:
        installed = metadata.distribution("{{dist}}")
    except metadata.PackageNotFoundError:
        pytest.skip("{{dist}} is not installed; running from a source tree")
    assert installed.version == __version__
    commands = {ep.name: ep.value for ep in metadata.entry_points(group="papercraft.commands")}
    demos = {ep.name: ep.value for ep in metadata.entry_points(group="papercraft.demos")}
    assert commands.get("{{name}}") == "papercraft.{{name}}.cli:command"
    assert demos.get("{{name}}") == "papercraft.{{name}}.demo:run_demo"


def test_demo_writes_its_report(tmp_path: Path) -> None:
    demo.run_demo(tmp_path / "out")
    report = json.loads((tmp_path / "out" / "{{name}}.json").read_text(encoding="utf-8"))
    assert report["version"] == __version__


def test_demo_rejects_a_file_as_output_dir(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="output_dir"):
        demo.run_demo(target)
'''

_BENCH_README = """\
# Benchmarks — {{dist}}

Benchmarks are not tests (DESIGN.md rule 11). Each script here measures speed and memory as a
ratio against the named baseline in one run, states the machine, and writes into `results/`:

- `results/<benchmark>.json` — the report that `tools/collect_bench.py` gathers for the docs;
- `results/<benchmark>.md` — the Markdown table;
- `results/<benchmark>.png` — the plot, where one helps.

Run them with `nox -s "bench(package='{{name}}')"`. Published numbers go in the package README,
together with the command that produced them.
"""

_KEY = re.compile(r"\{\{(\w+)\}\}")


def _fill(template: str, values: dict[str, str]) -> str:
    """Replace every ``{{key}}`` in ``template``; an unknown key is a bug in this module."""

    def replace(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return _KEY.sub(replace, template)


def render_package(name: str, description: str) -> dict[str, str]:
    """The files of a new method package, relative path → text.

    Args:
        name (str): the package directory and import name, already validated.
        description (str): one line of text, already validated.

    Returns:
        dict[str, str]: file contents keyed by POSIX path relative to ``packages/<name>``.
    """
    info = METHODS.get(name)
    paper = f"{info.paper} (arXiv {info.arxiv}, {info.url})" if info else ""
    values = {
        "name": name,
        "dist": dist_name(name),
        "description": description,
        # JSON strings are valid TOML basic strings and valid Python literals alike.
        "description_toml": json.dumps(description, ensure_ascii=False),
        "description_py": json.dumps(description, ensure_ascii=False),
        "paper_py": json.dumps(paper, ensure_ascii=False),
        "paper_line": (
            f"Paper: [{info.paper}]({info.url}) (arXiv {info.arxiv})."
            if info
            else "Paper: add the paper's title and link here."
        ),
        "paper_text": f"Paper: {paper}." if info else "Paper: to be added.",
        "paper_url_line": f'Paper = "{info.url}"\n' if info else "",
        "repository": _REPOSITORY,
        "core_requirement": CORE_REQUIREMENT,
        "torch_requirement": TORCH_REQUIREMENT,
    }
    source = f"src/papercraft/{name}"
    templates = {
        "pyproject.toml": _PYPROJECT,
        "README.md": _README,
        "CHANGELOG.md": _CHANGELOG,
        f"{source}/__init__.py": _INIT,
        f"{source}/_version.py": _VERSION,
        f"{source}/py.typed": "",
        f"{source}/cli.py": _CLI,
        f"{source}/demo.py": _DEMO,
        "tests/conftest.py": _CONFTEST,
        "tests/test_smoke.py": _TEST_SMOKE,
        "benchmarks/README.md": _BENCH_README,
    }
    return {path: _fill(template, values) for path, template in templates.items()}
