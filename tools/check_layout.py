"""Check that every package under ``packages/`` follows the house layout of ``DESIGN.md``.

Usage (from the repository root)::

    python tools/check_layout.py [--root PATH]

prints one line per problem and exits 1 when there is any, 0 otherwise. The rules come from
``DESIGN.md`` ("Repository layout", rules 1, 2 and 12):

- the files and folders of a package: pyproject.toml, README.md, CHANGELOG.md, tests/ with at
  least one ``test_*.py``, benchmarks/, ``src/papercraft/<name>/__init__.py`` and ``py.typed``;
- no ``src/papercraft/__init__.py`` (``papercraft`` is a PEP 420 namespace);
- the distribution is named ``papercraft-<name>``;
- no import of another method package (``papercraft.<other>``, other not the package itself nor
  the core) anywhere in ``src/`` or ``tests/``, found with :mod:`ast` in both import forms;
- torch is never pinned exactly (``==``, ``===``, or ``~=`` to a patch series); ranges are fine;
- ``requires-python`` is present and admits Python 3.10;
- a method package depends on ``papercraft-core``, by a version range;
- the CHANGELOG has a heading for the package's current version.

Standard library only; runs on Python 3.10 (with ``tomli``) and later.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools._layout import (
    CORE,
    CORE_DIST,
    NAMESPACE,
    REPO_ROOT,
    dist_name,
    load_toml,
    normalize_dist_name,
    package_dirs,
    parse_requirement,
    read_version,
    specifiers_allow,
)

__all__ = ["Problem", "check_package", "check_repository", "find_cross_imports", "main"]


@dataclass(frozen=True)
class Problem:
    """One way a package strays from the layout.

    Args:
        package (str): the package directory name under ``packages/``.
        message (str): what is wrong and what is expected.
    """

    package: str
    message: str

    def __str__(self) -> str:
        return f"packages/{self.package}: {self.message}"


def _python_files(folder: Path) -> Iterator[Path]:
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder).parts
        if not any(part.startswith(".") or part == "__pycache__" for part in parts):
            yield path


def _imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Yield ``(line, dotted module)`` for every absolute import in ``tree``.

    ``from papercraft import yoco`` yields ``papercraft.yoco`` so that both forms are seen.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == NAMESPACE:
                for alias in node.names:
                    if alias.name != "*":
                        yield node.lineno, f"{NAMESPACE}.{alias.name}"
            else:
                yield node.lineno, node.module


def find_cross_imports(package: Path, name: str) -> list[str]:
    """Imports of other method packages in ``package``'s ``src/`` and ``tests/``.

    Args:
        package (Path): the package directory.
        name (str): the package's own name (imports of ``papercraft.<name>`` and of the core are
            allowed).

    Returns:
        list[str]: one message per offending import (or unparsable file), ``path:line``-prefixed.
    """
    messages: list[str] = []
    for folder in ("src", "tests"):
        for path in _python_files(package / folder):
            relative = path.relative_to(package).as_posix()
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            except (SyntaxError, UnicodeDecodeError, ValueError) as error:
                messages.append(f"{relative}: cannot parse ({error}); imports not checked")
                continue
            for line, module in _imported_modules(tree):
                parts = module.split(".")
                if len(parts) < 2 or parts[0] != NAMESPACE or parts[1] in (name, CORE):
                    continue
                messages.append(
                    f"{relative}:{line} imports {NAMESPACE}.{parts[1]}; a package may import only "
                    f"itself and {NAMESPACE}.{CORE}, never another method package"
                )
    return messages


def _is_exact_pin(operator: str, version: str) -> bool:
    """``==``/``===`` always pin; ``~=X.Y.Z`` pins a patch series (``~=X.Y`` is a range)."""
    if operator in ("==", "==="):
        return True
    return operator == "~=" and version.count(".") >= 2


def _check_dependencies(project: dict[str, Any], name: str) -> list[str]:
    messages: list[str] = []
    groups: list[tuple[str, Any]] = [("dependencies", project.get("dependencies", []))]
    optional = project.get("optional-dependencies", {})
    if isinstance(optional, dict):
        groups += [(f"optional-dependencies.{extra}", deps) for extra, deps in optional.items()]
    depends_on_core = False
    for where, requirements in groups:
        if not isinstance(requirements, list):
            messages.append(f"pyproject.toml: [project] {where} must be a list of strings")
            continue
        for text in requirements:
            try:
                requirement = parse_requirement(str(text))
            except ValueError as error:
                messages.append(f"pyproject.toml: {where}: {error}")
                continue
            if requirement.name == "torch":
                pins = [op + v for op, v in requirement.specifiers if _is_exact_pin(op, v)]
                if pins:
                    messages.append(
                        f"pyproject.toml: exact torch pin {text!r} in {where}; "
                        "use a range such as 'torch>=2.4'"
                    )
            if requirement.name == CORE_DIST and where == "dependencies":
                depends_on_core = True
                if any(_is_exact_pin(op, v) for op, v in requirement.specifiers):
                    messages.append(
                        f"pyproject.toml: {text!r} pins the core exactly; name it by a version "
                        "range such as 'papercraft-core>=0.1,<0.2'"
                    )
    if name != CORE and not depends_on_core:
        messages.append(
            f"pyproject.toml: a method package must depend on {CORE_DIST} "
            "(e.g. 'papercraft-core>=0.1,<0.2') in [project] dependencies"
        )
    return messages


def _current_version(
    package: Path, name: str, project: dict[str, Any], pyproject: dict[str, Any]
) -> tuple[str | None, str]:
    """The package version and where it was looked for."""
    if isinstance(project.get("version"), str):
        return project["version"], "pyproject.toml [project] version"
    hatch_path = pyproject.get("tool", {}).get("hatch", {}).get("version", {}).get("path")
    relative = hatch_path if isinstance(hatch_path, str) else f"src/{NAMESPACE}/{name}/_version.py"
    return read_version(package / relative), relative


def _changelog_has(changelog: Path, version: str) -> bool:
    """Whether a Markdown heading of ``changelog`` names ``version`` (``## 0.1.0``, ``## [v0.1.0]``)."""
    token = re.compile(rf"(?<![\w.])v?{re.escape(version)}(?!\w|\.\w)")
    return any(
        line.lstrip().startswith("#") and token.search(line)
        for line in changelog.read_text(encoding="utf-8").splitlines()
    )


def _check_pyproject(package: Path, name: str, pyproject: dict[str, Any]) -> list[str]:
    project = pyproject.get("project")
    if not isinstance(project, dict):
        return ["pyproject.toml: no [project] table"]
    messages: list[str] = []
    expected = dist_name(name)
    actual = project.get("name")
    if not isinstance(actual, str) or normalize_dist_name(actual) != expected:
        messages.append(f"pyproject.toml: distribution name must be {expected!r}, got {actual!r}")
    requires_python = project.get("requires-python")
    if not isinstance(requires_python, str):
        messages.append("pyproject.toml: requires-python is missing; expected e.g. '>=3.10'")
    else:
        try:
            allowed = specifiers_allow(requires_python, 3, 10)
        except ValueError as error:
            messages.append(f"pyproject.toml: requires-python {requires_python!r}: {error}")
        else:
            if not allowed:
                messages.append(
                    f"pyproject.toml: requires-python {requires_python!r} excludes Python 3.10; "
                    "packages must support 3.10"
                )
    messages += _check_dependencies(project, name)
    version, source = _current_version(package, name, project, pyproject)
    if version is None:
        messages.append(f"cannot read __version__ from {source}")
    elif (package / "CHANGELOG.md").is_file() and not _changelog_has(
        package / "CHANGELOG.md", version
    ):
        messages.append(f"CHANGELOG.md has no entry (a heading) for the current version {version}")
    return messages


def check_package(package: Path) -> list[Problem]:
    """Every layout problem of one package directory.

    Args:
        package (Path): ``packages/<name>``.

    Returns:
        list[Problem]: empty when the package follows the layout.
    """
    name = package.name
    messages: list[str] = []
    for required in ("pyproject.toml", "README.md", "CHANGELOG.md"):
        if not (package / required).is_file():
            messages.append(f"missing {required}")
    tests = package / "tests"
    if not tests.is_dir():
        messages.append("missing tests/ (with at least one test_*.py)")
    elif not any(path.is_file() for path in tests.rglob("test_*.py")):
        messages.append("tests/ has no test_*.py file")
    if not (package / "benchmarks").is_dir():
        messages.append("missing benchmarks/")
    source = package / "src" / NAMESPACE / name
    for required in ("__init__.py", "py.typed"):
        if not (source / required).is_file():
            messages.append(f"missing src/{NAMESPACE}/{name}/{required}")
    if (package / "src" / NAMESPACE / "__init__.py").exists():
        messages.append(
            f"src/{NAMESPACE}/__init__.py must not exist: {NAMESPACE} is a PEP 420 namespace "
            "shared by all packages"
        )
    if (package / "pyproject.toml").is_file():
        try:
            pyproject = load_toml(package / "pyproject.toml")
        except ValueError as error:
            messages.append(str(error))
        else:
            messages += _check_pyproject(package, name, pyproject)
    messages += find_cross_imports(package, name)
    return [Problem(name, message) for message in messages]


def check_repository(root: Path) -> list[Problem]:
    """Every layout problem of every package under ``root/packages``.

    Args:
        root (Path): the repository root.

    Returns:
        list[Problem]: empty when all packages follow the layout.

    Raises:
        ValueError: if ``root`` has no package directories at all.
    """
    packages = package_dirs(root)
    if not packages:
        raise ValueError(f"no package directories under {root / 'packages'}")
    return [problem for package in packages for problem in check_package(package)]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 0 when every package conforms, 1 otherwise."""
    parser = argparse.ArgumentParser(
        prog="tools/check_layout.py",
        description="Check every packages/<name>/ against the papercraft house layout.",
    )
    parser.add_argument(
        "--root", type=Path, default=REPO_ROOT, help="repository root (default: this checkout)"
    )
    args = parser.parse_args(argv)
    try:
        problems = check_repository(args.root.resolve())
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"layout ok: {len(package_dirs(args.root.resolve()))} package(s) checked")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
