"""The ``papercraft`` command.

Built-in sub-commands: ``info`` (versions, device, attention backends and why others are not
usable), ``demo`` (the core's demo, then every installed package's demo) and ``bench attention``.
Installed method packages add their own sub-commands through the entry-point group
``papercraft.commands``: each entry point names an object with a ``register(subparsers)`` method
that adds an argparse sub-parser and sets ``func`` (``args -> int``) as its default. Their demos
come through the group ``papercraft.demos``: a callable ``run_demo(output_dir: Path) -> object``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from papercraft.core._version import __version__

__all__ = [
    "COMMANDS_GROUP",
    "DEMOS_GROUP",
    "Command",
    "add_package_command",
    "build_parser",
    "command_error",
    "main",
    "parse_int_list",
]

COMMANDS_GROUP = "papercraft.commands"
DEMOS_GROUP = "papercraft.demos"


class Command(Protocol):
    """What a ``papercraft.commands`` entry point provides."""

    def register(self, subparsers: argparse._SubParsersAction) -> None:  # pragma: no cover
        """Add a sub-parser (``subparsers.add_parser(name)``) and ``set_defaults(func=...)``."""


def add_package_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    *,
    dist: str,
    version: str,
    summary: str,
    paper: str,
) -> argparse._SubParsersAction:
    """Add ``papercraft NAME`` (help when no action is given) with its ``info`` action.

    Method packages call this from their ``Command.register`` and add their own actions to the
    returned group.

    Args:
        subparsers (argparse._SubParsersAction): the core parser's sub-command group.
        name (str): the sub-command, e.g. ``"vot"``.
        dist (str): the distribution name printed by ``info``.
        version (str): its version.
        summary (str): one line for the help and ``info``.
        paper (str): the paper reference printed by ``info``.

    Returns:
        argparse._SubParsersAction: the package's action group.
    """
    parser = subparsers.add_parser(name, help=summary, description=summary)

    def show_help(args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    def info(args: argparse.Namespace) -> int:
        print(f"{dist} {version}")
        print(summary)
        print(f"paper: {paper}")
        return 0

    parser.set_defaults(func=show_help)
    actions = parser.add_subparsers(dest=f"{name}_action", metavar="ACTION")
    actions.add_parser("info", help="print the package, its version and its paper").set_defaults(
        func=info
    )
    return actions


def command_error(command: str, error: BaseException) -> int:
    """Print ``papercraft COMMAND: error: ...`` to stderr and return the bad-input status 2."""
    print(f"papercraft {command}: error: {error}", file=sys.stderr)
    return 2


def _entry_points(group: str) -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=group), key=lambda ep: ep.name)


def _warn(message: str) -> None:
    print(f"papercraft: warning: {message}", file=sys.stderr)


def _cmd_info(args: argparse.Namespace) -> int:
    from papercraft.core.info import collect_info, render_info

    if args.json:
        print(json.dumps(collect_info(), indent=2))
    else:
        render_info()
    return 0


def _demo_names() -> list[str]:
    return ["core", *(ep.name for ep in _entry_points(DEMOS_GROUP))]


def _cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from papercraft.core import demo as core_demo

    console = Console()
    output = Path(args.output)
    names = _demo_names()
    if args.only is not None and args.only not in names:
        console.print(f"[red]--only must be one of {names}, got {args.only!r}[/red]")
        return 2
    failures: list[str] = []
    timings: list[tuple[str, float, str]] = []
    for ep_name in names:
        if args.only is not None and ep_name != args.only:
            continue
        console.rule(f"[bold]demo: {ep_name}")
        start = time.perf_counter()
        try:
            if ep_name == "core":
                core_demo.run_demo(output / "core", quick=args.quick)
            else:
                (ep,) = [e for e in _entry_points(DEMOS_GROUP) if e.name == ep_name]
                run: Callable[..., Any] = ep.load()
                run(output / ep_name)
            status = "ok"
        except Exception as exc:  # a failing demo must not hide the others
            console.print_exception()
            failures.append(ep_name)
            status = f"failed: {type(exc).__name__}: {exc}"
        timings.append((ep_name, time.perf_counter() - start, status))
    console.rule("[bold]demo summary")
    for ep_name, seconds, status in timings:
        console.print(f"{ep_name:>14}  {seconds:7.1f} s  {status}")
    console.print(f"outputs under {output.resolve()}")
    return 1 if failures else 0


def parse_int_list(text: str) -> list[int]:
    """An argparse ``type``: ``"256,512"`` -> ``[256, 512]`` (positive integers; the method
    packages' commands use it too)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _cmd_bench_attention(args: argparse.Namespace) -> int:
    from papercraft.core.demo import attention_benchmark, write_attention_report

    report = attention_benchmark(
        seq_lens=args.seq_lens,
        heads=args.heads,
        kv_heads=args.kv_heads or args.heads,
        head_dim=args.head_dim,
        window=args.window,
        dtype=args.dtype,
        device=args.device,
        repeats=args.repeats,
        measure_memory=not args.no_memory,
    )
    print(report.to_markdown())
    if args.output:
        for kind, path in write_attention_report(report, Path(args.output)).items():
            print(f"wrote {kind}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full parser: built-in sub-commands plus those installed packages register."""
    parser = argparse.ArgumentParser(
        prog="papercraft",
        description="papercraft: research methods as installable, tested packages.",
    )
    parser.add_argument("--version", action="version", version=f"papercraft-core {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_info = sub.add_parser("info", help="versions, device and attention backends")
    p_info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p_info.set_defaults(func=_cmd_info)

    p_demo = sub.add_parser("demo", help="run the core's and every installed package's demo")
    p_demo.add_argument("--only", metavar="NAME", help="run one demo (core or a package name)")
    p_demo.add_argument(
        "--output", default="demo-output", help="output folder (default: demo-output)"
    )
    p_demo.add_argument("--quick", action="store_true", help="smaller settings (smoke test)")
    p_demo.set_defaults(func=_cmd_demo)

    p_bench = sub.add_parser("bench", help="core benchmarks")
    bench_sub = p_bench.add_subparsers(dest="bench_target", metavar="TARGET", required=True)
    p_att = bench_sub.add_parser("attention", help="eager vs sdpa vs windowed attention")
    p_att.add_argument("--seq-lens", type=parse_int_list, default=[1024, 2048, 4096, 8192])
    p_att.add_argument("--heads", type=int, default=4)
    p_att.add_argument("--kv-heads", type=int, default=None)
    p_att.add_argument("--head-dim", type=int, default=64)
    p_att.add_argument("--window", type=int, default=256)
    p_att.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p_att.add_argument("--device", default="cpu")
    p_att.add_argument("--repeats", type=int, default=3)
    p_att.add_argument("--no-memory", action="store_true", help="skip peak-memory measurement")
    p_att.add_argument("--output", default=None, help="write JSON, Markdown and PNG here")
    p_att.set_defaults(func=_cmd_bench_attention)

    builtin = set(sub.choices)
    for ep in _entry_points(COMMANDS_GROUP):
        if ep.name in builtin:
            _warn(f"entry point {ep.name!r} ({ep.value}) clashes with a built-in command; skipped")
            continue
        try:
            command: Command = ep.load()
            command.register(sub)
        except Exception as exc:  # a broken plug-in must not break the command
            _warn(f"could not load sub-command {ep.name!r} from {ep.value}: {exc}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``papercraft`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    return int(func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
