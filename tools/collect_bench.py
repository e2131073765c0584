"""Gather benchmark reports (JSON) into one Markdown page for the docs.

Usage (from the repository root)::

    python tools/collect_bench.py [DIR ...] [--root PATH] [--output docs/_generated/benchmarks.md]

reads ``packages/*/benchmarks/results/*.json`` plus every ``*.json`` below each DIR and writes one
section per package and one table per report (stdout when ``--output`` is not given). The docs'
benchmarks page includes the generated file. A report is a JSON object; the keys read are
``name`` (or ``benchmark``/``title``), ``package``, ``machine`` (text or an object), ``command``,
and the table rows under ``rows``/``results``/``records`` (a list of objects). A report without
rows is shown as a key/value table. A top-level list of objects is taken as the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools._layout import REPO_ROOT

__all__ = ["find_reports", "main", "render_page", "render_report"]

_ROW_KEYS = ("rows", "results", "records")
_NAME_KEYS = ("name", "benchmark", "title")
_META_KEYS = frozenset({*_ROW_KEYS, *_NAME_KEYS, "package", "machine", "command"})


def find_reports(root: Path, extra_dirs: list[Path]) -> list[tuple[str, Path]]:
    """Locate report files as ``(package, path)`` pairs, sorted.

    Args:
        root (Path): the repository root; ``packages/<name>/benchmarks/results/*.json`` is read.
        extra_dirs (list[Path]): more folders to search recursively; their reports are filed
            under the folder's name unless the report names its ``package``.

    Returns:
        list[tuple[str, Path]]: the package (or folder) name and the file of each report.

    Raises:
        ValueError: if one of ``extra_dirs`` is not a directory.
    """
    found = [
        (path.parents[2].name, path)
        for path in sorted((root / "packages").glob("*/benchmarks/results/*.json"))
    ]
    for folder in extra_dirs:
        if not folder.is_dir():
            raise ValueError(f"DIR must be a directory of JSON reports, got {folder}")
        found += [(folder.resolve().name, path) for path in sorted(folder.rglob("*.json"))]
    return sorted(found)


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        text = str(value)
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return lines


def render_report(report: Any, fallback_name: str) -> list[str]:
    """Markdown lines for one report: a heading, the machine and command, and a table.

    Args:
        report (Any): the decoded JSON (an object, or a list of row objects).
        fallback_name (str): the heading when the report names none (the file stem).

    Returns:
        list[str]: the lines, without trailing newlines.

    Raises:
        ValueError: if the report is neither an object nor a list of objects.
    """
    if isinstance(report, list):
        report = {"rows": report}
    if not isinstance(report, dict):
        raise ValueError(
            f"a report must be a JSON object or a list of objects, got {type(report).__name__}"
        )
    name = next((str(report[key]) for key in _NAME_KEYS if report.get(key)), fallback_name)
    lines = [f"### {name}", ""]
    machine = report.get("machine")
    if isinstance(machine, dict):
        machine = ", ".join(f"{key}: {_cell(value)}" for key, value in machine.items())
    if machine:
        lines += [f"Machine: {machine}", ""]
    if report.get("command"):
        lines += [f"Command: `{report['command']}`", ""]
    rows = next((report[key] for key in _ROW_KEYS if key in report), None)
    if rows is not None:
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ValueError("report rows must be a list of JSON objects")
        lines += _table(rows) if rows else ["_No rows._"]
    else:
        scalars = [{"key": k, "value": v} for k, v in report.items() if k not in _META_KEYS]
        lines += _table(scalars) if scalars else ["_Empty report._"]
    return [*lines, ""]


def render_page(reports: list[tuple[str, Path]]) -> str:
    """The Markdown page for the given report files (unreadable files are noted, not fatal).

    Args:
        reports (list[tuple[str, Path]]): ``(package, path)`` pairs from :func:`find_reports`.

    Returns:
        str: the page text.
    """
    if not reports:
        return "_No benchmark reports found._\n"
    sections: dict[str, list[str]] = {}
    for package, path in reports:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(report, dict) and isinstance(report.get("package"), str):
                package = report["package"]
            lines = render_report(report, path.stem)
        except (OSError, ValueError) as error:
            print(f"warning: skipped {path}: {error}", file=sys.stderr)
            lines = [f"### {path.stem}", "", f"_Unreadable report `{path.name}`: {error}_", ""]
        sections.setdefault(package, []).extend(lines)
    out: list[str] = []
    for package in sorted(sections):
        out += [f"## {package}", "", *sections[package]]
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 0, or 2 on bad arguments."""
    parser = argparse.ArgumentParser(
        prog="tools/collect_bench.py", description="Collect benchmark JSON reports into Markdown."
    )
    parser.add_argument("dirs", nargs="*", type=Path, metavar="DIR", help="more report folders")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root")
    parser.add_argument("--output", type=Path, help="write the page here (default: stdout)")
    args = parser.parse_args(argv)
    try:
        page = render_page(find_reports(args.root, args.dirs))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(page)
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    staging = args.output.with_name(f".{args.output.name}.tmp")
    staging.write_text(page, encoding="utf-8")
    os.replace(staging, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
