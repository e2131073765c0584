"""Work out which packages a change touches, for the CI matrix (``.github/workflows/ci.yml``).

Usage (from the repository root)::

    python tools/changed_packages.py --base origin/main [--head HEAD] [--github-output FILE]
    python tools/changed_packages.py --all

prints a JSON list of package names such as ``["core", "yoco"]``. Method packages depend only on
the core (``DESIGN.md`` rule 2), so the dependents of a change are simple: a change to the core,
to anything every package's build or tests share (``noxfile.py``, the root ``pyproject.toml``,
``uv.lock``, ``shared/``) or to the CI itself (``.github/``) selects every package; otherwise the
packages whose directory changed are selected. When the base cannot be compared (first push of a
branch, shallow clone) every package is selected: testing too much is safe, too little is not.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools._layout import CORE, REPO_ROOT, package_dirs

__all__ = [
    "ALL_PACKAGES_FILES",
    "ALL_PACKAGES_PREFIXES",
    "git_changed_files",
    "main",
    "select_packages",
]

# Paths whose change affects every package.
ALL_PACKAGES_FILES = frozenset({"noxfile.py", "pyproject.toml", "uv.lock"})
ALL_PACKAGES_PREFIXES = (f"packages/{CORE}/", ".github/", "shared/")


def select_packages(changed: Iterable[str], available: Sequence[str]) -> list[str]:
    """The packages to test for a set of changed paths.

    Args:
        changed (Iterable[str]): repository-relative POSIX paths, as ``git diff --name-only``
            prints them.
        available (Sequence[str]): the package names that exist in the checkout.

    Returns:
        list[str]: sorted package names; all of ``available`` when a shared path changed.
    """
    present = set(available)
    selected: set[str] = set()
    for raw in changed:
        path = raw.strip().removeprefix("./")
        if not path:
            continue
        if path in ALL_PACKAGES_FILES or path.startswith(ALL_PACKAGES_PREFIXES):
            return sorted(present)
        parts = path.split("/")
        if len(parts) >= 3 and parts[0] == "packages" and parts[1] in present:
            selected.add(parts[1])
    return sorted(selected)


def git_changed_files(base: str, head: str, root: Path) -> list[str] | None:
    """Paths changed between the merge base of ``base`` and ``head``, or None if git cannot tell.

    Args:
        base (str): the base revision (a branch, a commit); an empty or all-zero SHA (GitHub's
            "no previous commit") means there is nothing to compare with.
        head (str): the head revision.
        root (Path): the repository root.

    Returns:
        list[str] | None: the changed paths, or None when the comparison is impossible.
    """
    if not base.strip() or set(base.strip()) == {"0"}:
        return None
    result = subprocess.run(
        ["git", "diff", "--name-only", f"{base}...{head}"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        print(f"warning: git diff failed: {result.stderr.strip()}", file=sys.stderr)
        return None
    return [line for line in result.stdout.splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; prints the JSON list and returns 0 (2 on bad arguments)."""
    parser = argparse.ArgumentParser(
        prog="tools/changed_packages.py",
        description="Print the JSON list of packages that a change touches.",
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--base", help="base revision to diff against (merge base ... head)")
    group.add_argument("--all", action="store_true", help="select every package")
    parser.add_argument("--head", default="HEAD", help="head revision (default: HEAD)")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root")
    parser.add_argument(
        "--github-output",
        type=Path,
        default=None,
        help="also append 'packages=<json>' to this file (GitHub's $GITHUB_OUTPUT)",
    )
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    available = [path.name for path in package_dirs(root)]
    if not available:
        print(f"error: no package directories under {root / 'packages'}", file=sys.stderr)
        return 2
    changed = None if args.all else git_changed_files(args.base, args.head, root)
    packages = sorted(available) if changed is None else select_packages(changed, available)
    encoded = json.dumps(packages)
    print(encoded)
    if args.github_output is not None:
        with args.github_output.open("a", encoding="utf-8") as handle:
            handle.write(f"packages={encoded}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
