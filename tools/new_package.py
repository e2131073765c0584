"""Scaffold a papercraft method package with the house layout.

Usage (from the repository root)::

    python tools/new_package.py NAME [--description TEXT] [--root PATH]

writes ``packages/NAME/`` — pyproject.toml, README.md, CHANGELOG.md,
``src/papercraft/NAME/{__init__,_version,cli,demo}.py`` + ``py.typed``, ``tests/{conftest,
test_smoke}.py`` and ``benchmarks/README.md`` (the layout of ``DESIGN.md``) — and names the new
distribution in the root pyproject's ``[tool.uv.sources]`` block. The package is built in a hidden
temporary directory next to its destination and renamed into place, so a failure never leaves half
a package behind. Bad names (not a lowercase identifier, ``core``, an existing directory) are
refused before anything is written.
"""

from __future__ import annotations

import argparse
import keyword
import os
import re
import secrets
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools._layout import CORE, METHODS, REPO_ROOT, dist_name, loads_toml
from tools._templates import render_package

__all__ = ["add_workspace_source", "main", "scaffold", "validate_description", "validate_name"]

_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
_MAX_DESCRIPTION = 200


def validate_name(name: str, root: Path) -> None:
    """Refuse a package name that cannot become ``packages/<name>`` / ``papercraft.<name>``.

    Args:
        name (str): the proposed package name.
        root (Path): the repository root.

    Raises:
        ValueError: if ``name`` is not a lowercase Python identifier, is a keyword, is the core's
            name, or ``packages/<name>`` already exists; or if ``root`` has no ``packages/``.
    """
    if not _NAME_RE.fullmatch(name) or keyword.iskeyword(name):
        raise ValueError(
            "NAME must be a lowercase Python identifier (a-z first, then a-z, 0-9 or '_'; "
            f"not a keyword) so that 'papercraft.{name}' can be imported, got {name!r}"
        )
    if name == CORE:
        raise ValueError("NAME 'core' is reserved for the shared core package papercraft-core")
    packages = root / "packages"
    if not packages.is_dir():
        raise ValueError(f"--root must be the repository root holding packages/, got {root}")
    if (packages / name).exists():
        raise ValueError(f"packages/{name} already exists under {root}; pick another NAME")


def validate_description(description: str) -> str:
    """Check a package description and return it stripped.

    Args:
        description (str): one line of plain text.

    Returns:
        str: the description without surrounding white space.

    Raises:
        ValueError: if it is empty, longer than 200 characters, spans several lines, or holds a
            backslash or triple quotes (it is written into Python docstrings and TOML).
    """
    text = description.strip()
    if not text:
        raise ValueError("--description must not be empty")
    if len(text) > _MAX_DESCRIPTION:
        raise ValueError(
            f"--description must be at most {_MAX_DESCRIPTION} characters, got {len(text)}"
        )
    if any(ord(char) < 32 for char in text):
        raise ValueError("--description must be a single line without control characters")
    if "\\" in text or '"""' in text:
        raise ValueError("--description must not contain backslashes or triple quotes")
    return text


def scaffold(name: str, root: Path, description: str | None = None) -> Path:
    """Create ``root/packages/<name>`` from the house templates, atomically.

    Args:
        name (str): the package name (directory, ``papercraft.<name>``, dist ``papercraft-<name>``).
        root (Path): the repository root.
        description (str | None): one-line description. Default: the method's summary when the
            name is one of the nine methods, else a generic sentence.

    Returns:
        Path: the new package directory.

    Raises:
        ValueError: on a bad name or description (see :func:`validate_name`,
            :func:`validate_description`).
    """
    validate_name(name, root)
    if description is None:
        info = METHODS.get(name)
        description = info.summary if info else f"The {name} method for papercraft."
    text = validate_description(description)
    files = render_package(name, text)
    packages = root / "packages"
    target = packages / name
    # A hidden sibling (same file system, so the final rename is atomic); mkdir honours the umask.
    staging = packages / f".{name}-{secrets.token_hex(4)}.tmp"
    staging.mkdir()
    try:
        for relative, content in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        if target.exists():  # created by someone else while we were writing
            raise ValueError(f"packages/{name} appeared while scaffolding; nothing was written")
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


_SOURCES_HEADER = re.compile(r"^\[tool\.uv\.sources\]\s*(#.*)?$")
_TABLE_HEADER = re.compile(r"^\s*\[")


def add_workspace_source(pyproject: Path, dist: str) -> str:
    """Name ``dist`` as a workspace source in the root pyproject's ``[tool.uv.sources]`` block.

    The block is edited as text (one line inserted after its last entry), then the result is
    parsed and compared with the original so that nothing else changed; otherwise the file is
    left alone and instructions are returned instead.

    Args:
        pyproject (Path): the workspace root's pyproject.toml.
        dist (str): the distribution name to add, e.g. ``papercraft-yoco``.

    Returns:
        str: a one-line report of what happened, or instructions for a manual edit.
    """
    line = f"{dist} = {{ workspace = true }}"
    manual = f"add this line to the [tool.uv.sources] block of {pyproject} by hand:\n    {line}"
    try:
        text = pyproject.read_text(encoding="utf-8")
        before = loads_toml(text)
    except (OSError, ValueError, RuntimeError) as error:
        return f"could not read {pyproject} ({error}); {manual}"
    sources = before.get("tool", {}).get("uv", {}).get("sources")
    if isinstance(sources, dict) and dist in sources:
        return f"{dist} is already a uv workspace source in {pyproject}"
    lines = text.splitlines(keepends=True)
    headers = [
        index for index, value in enumerate(lines) if _SOURCES_HEADER.match(value.rstrip("\n"))
    ]
    if len(headers) != 1:
        return f"no single [tool.uv.sources] table header found; {manual}"
    end = next(
        (i for i in range(headers[0] + 1, len(lines)) if _TABLE_HEADER.match(lines[i])), len(lines)
    )
    last = headers[0]
    for index in range(headers[0] + 1, end):
        stripped = lines[index].strip()
        if stripped and not stripped.startswith("#"):
            last = index
    if not lines[last].endswith("\n"):
        lines[last] += "\n"
    lines.insert(last + 1, line + "\n")
    edited = "".join(lines)
    try:
        after = loads_toml(edited)
    except ValueError:
        return f"editing would break the TOML; {manual}"
    added = after.get("tool", {}).get("uv", {}).get("sources", {}).pop(dist, None)
    if added != {"workspace": True} or after != before:
        return f"the edit did not come out as expected; {manual}"
    staging = pyproject.with_name(f".{pyproject.name}.tmp")
    staging.write_text(edited, encoding="utf-8")
    os.replace(staging, pyproject)
    return f"added {dist} to [tool.uv.sources] in {pyproject}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tools/new_package.py",
        description="Scaffold packages/NAME with the papercraft house layout.",
    )
    parser.add_argument(
        "name", metavar="NAME", help="package name, e.g. yoco (dist papercraft-NAME)"
    )
    parser.add_argument(
        "--description",
        help="one-line description (default: the method's summary for the nine known methods)",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=REPO_ROOT,
        help="repository root (default: the checkout holding this script)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 done, 2 refused)."""
    args = _parser().parse_args(argv)
    root: Path = args.root.resolve()
    try:
        target = scaffold(args.name, root, args.description)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"created {target}")
    print(add_workspace_source(root / "pyproject.toml", dist_name(args.name)))
    print(
        "next: fill in the README placeholders, then run "
        f"`python tools/check_layout.py` and `nox -s \"tests(package='{args.name}')\"`"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
