"""The ``papercraft yoco`` sub-command: ``info``, ``bench``, ``demo`` and ``train``.

The core's ``papercraft`` command finds this module through the ``papercraft.commands`` entry
point and calls ``command.register(subparsers)``. Each action stores its handler as ``func``
(``handler(args) -> int``, the exit status) on the parsed namespace.

- ``papercraft yoco info`` — the package, its version and its paper;
- ``papercraft yoco bench`` — YOCO vs a Llama of the same size: prefill latency, cache bytes,
  decode tokens/s and the FLOP-theory ratio (YOCO §4.3, arXiv 2405.05254), see
  :mod:`papercraft.yoco.bench`;
- ``papercraft yoco demo`` — the ratio table at 2K–8K tokens in under a minute;
- ``papercraft yoco train`` — added by :mod:`papercraft.yoco.train` (``add_cli``) when present.

Arguments are checked before any model is built; a bad one exits with status 2 and a message that
names it. Heavy imports (torch models) happen inside the handlers so ``papercraft --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from papercraft.yoco._version import __version__

if TYPE_CHECKING:
    from papercraft.yoco.bench import BenchSettings

__all__ = ["Command", "command", "parse_lengths"]

_DIST = "papercraft-yoco"
_SUMMARY = "YOCO decoder-decoder language model that caches KV once"
_PAPER = "You Only Cache Once: Decoder-Decoder Architectures for Language Models (arXiv 2405.05254, https://arxiv.org/abs/2405.05254)"
_DTYPES = ("float32", "bfloat16", "float16")


def _info(args: argparse.Namespace) -> int:
    """Print the distribution name, version and paper, like ``--version`` does."""
    print(f"{_DIST} {__version__}")
    print(_SUMMARY)
    if _PAPER:
        print(f"paper: {_PAPER}")
    return 0


def parse_lengths(text: str) -> list[int]:
    """Parse ``--lengths``: comma-separated positive integers, e.g. ``"2048,4096"``.

    Args:
        text (str): the option's value.

    Returns:
        list[int]: the lengths in the given order.

    Raises:
        argparse.ArgumentTypeError: for anything else, naming what was expected.
    """
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as 2048,4096, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as 2048,4096, got {text!r}"
        )
    return values


def _add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lengths",
        type=parse_lengths,
        default=[2048, 4096, 8192, 16384],
        metavar="N,N,...",
        help="prompt lengths (default: 2048,4096,8192,16384)",
    )
    parser.add_argument("--hidden", type=int, default=256, help="model width (default: 256)")
    parser.add_argument("--layers", type=int, default=8, help="layers of both models (default: 8)")
    parser.add_argument("--heads", type=int, default=4, help="query heads (default: 4)")
    parser.add_argument("--kv-heads", type=int, default=2, help="key/value heads (default: 2)")
    parser.add_argument(
        "--ffn", type=int, default=None, help="SwiGLU size of both models (default: YOCO's)"
    )
    parser.add_argument("--vocab", type=int, default=8192, help="vocabulary (default: 8192)")
    parser.add_argument(
        "--self-decoder", choices=["gret", "swa"], default="gret", help="default: gret"
    )
    parser.add_argument("--window", type=int, default=1024, help="SWA window (default: 1024)")
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="gRet chunk size (default: YOCO's)"
    )
    parser.add_argument("--dtype", choices=list(_DTYPES), default="float32")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="timed prefills (default: 3)")
    parser.add_argument(
        "--decode-tokens", type=int, default=32, help="decode steps, 0 skips (default: 32)"
    )
    parser.add_argument("--seed", type=int, default=0, help="weights and prompt seed (default: 0)")
    parser.add_argument("--output", default=None, help="write JSON, Markdown and PNG here")
    parser.add_argument(
        "--json", action="store_true", help="print the report as JSON instead of Markdown"
    )


def _bench_settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> BenchSettings:
    """Build and check the settings (and the YOCO config) before any model exists."""
    from papercraft.yoco.bench import BenchSettings

    options = {
        "--hidden": args.hidden,
        "--layers": args.layers,
        "--heads": args.heads,
        "--kv-heads": args.kv_heads,
        "--vocab": args.vocab,
        "--window": args.window,
        "--repeats": args.repeats,
    }
    for flag, value in options.items():
        if value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    for flag, maybe in {"--ffn": args.ffn, "--chunk-size": args.chunk_size}.items():
        if maybe is not None and maybe < 1:
            parser.error(f"{flag} must be >= 1, got {maybe}")
    if args.decode_tokens < 0:
        parser.error(f"--decode-tokens must be >= 0, got {args.decode_tokens}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.output is not None and Path(args.output).exists() and not Path(args.output).is_dir():
        parser.error(f"--output must be a directory, got the file {args.output}")
    try:
        settings = BenchSettings(
            lengths=tuple(args.lengths),
            hidden_size=args.hidden,
            num_layers=args.layers,
            num_heads=args.heads,
            num_kv_heads=args.kv_heads,
            intermediate_size=args.ffn,
            vocab_size=args.vocab,
            self_decoder=args.self_decoder,
            sliding_window=args.window,
            chunk_size=args.chunk_size,
            dtype=args.dtype,
            device=args.device,
            repeats=args.repeats,
            decode_tokens=args.decode_tokens,
            seed=args.seed,
        )
        settings.yoco_config()  # the model's own checks of the combination
    except ValueError as exc:
        parser.error(str(exc))
    return settings


_Handler = Callable[[argparse.Namespace], int]


def _make_bench_handler(parser: argparse.ArgumentParser) -> _Handler:
    def handler(args: argparse.Namespace) -> int:
        from papercraft.yoco.bench import run_benchmark, write_report

        settings = _bench_settings(args, parser)
        report = run_benchmark(settings, progress=not args.json)
        if args.json:
            print(json.dumps(report.to_dict(), indent=2))
        else:
            print(report.to_markdown())
        if args.output:
            for kind, path in write_report(report, Path(args.output)).items():
                print(f"wrote {kind}: {path}", file=sys.stderr if args.json else sys.stdout)
        return 0

    return handler


def _make_demo_handler(parser: argparse.ArgumentParser) -> _Handler:
    def handler(args: argparse.Namespace) -> int:
        from papercraft.yoco.demo import run_demo

        output = Path(args.output)
        if output.exists() and not output.is_dir():
            parser.error(f"--output must be a directory, got the file {output}")
        run_demo(output)
        return 0

    return handler


def _add_train(actions: argparse._SubParsersAction) -> None:
    """Add ``train`` from :mod:`papercraft.yoco.train` when that module exists."""
    if importlib.util.find_spec("papercraft.yoco.train") is None:
        return
    try:
        train = importlib.import_module("papercraft.yoco.train")
        train.add_cli(actions)
    except Exception as exc:  # a broken train module must not take info/bench/demo down with it
        print(f"papercraft yoco: warning: the train action is unavailable: {exc}", file=sys.stderr)


class Command:
    """Registers ``papercraft yoco`` and its actions on the core's argument parser."""

    name = "yoco"

    def register(self, subparsers: argparse._SubParsersAction) -> None:
        """Add the ``yoco`` sub-parser with its ``info``, ``bench``, ``demo`` and ``train`` actions.

        Args:
            subparsers (argparse._SubParsersAction): the core parser's sub-command group.
        """
        parser = subparsers.add_parser(self.name, help=_SUMMARY, description=_SUMMARY)

        def show_help(args: argparse.Namespace) -> int:
            parser.print_help()
            return 0

        parser.set_defaults(func=show_help)
        actions = parser.add_subparsers(dest="yoco_action", metavar="ACTION")
        info = actions.add_parser("info", help="print the package, its version and its paper")
        info.set_defaults(func=_info)

        bench = actions.add_parser(
            "bench",
            help="prefill, cache and decode of YOCO vs a Llama of the same size",
            description=(
                "Compare YOCO's early-exit prefill, cache bytes and decode speed with a "
                "LlamaForCausalLM of the same width, depth, heads, KV heads, FFN and vocabulary, "
                "side by side in one run; also the FLOP-theory prefill ratio."
            ),
        )
        _add_bench_arguments(bench)
        bench.set_defaults(func=_make_bench_handler(bench))

        demo = actions.add_parser("demo", help="the YOCO/Llama ratio table at 2K-8K (< 1 min)")
        demo.add_argument(
            "--output", default="demo-output/yoco", help="output folder (default: demo-output/yoco)"
        )
        demo.set_defaults(func=_make_demo_handler(demo))

        _add_train(actions)


command = Command()
