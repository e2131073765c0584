"""The ``papercraft mhmoe`` sub-command: ``info``, ``train``, ``compare``, ``parity``, ``bench``, ``demo``.

The core's ``papercraft`` command finds this module through the ``papercraft.commands`` entry
point and calls ``command.register(subparsers)``. Each action stores its handler as ``func``
(``handler(args) -> int``, the exit status) on the parsed namespace.

- ``papercraft mhmoe info`` — the package, its version and its paper (arXiv 2404.15045);
- ``papercraft mhmoe train`` — train an MH-MoE LM on text files (:mod:`papercraft.mhmoe.train`);
- ``papercraft mhmoe compare`` — SMoE vs a parity-matched MH-MoE on an offline corpus:
  perplexity and expert activation (:mod:`papercraft.mhmoe.compare`);
- ``papercraft mhmoe parity`` — the params / FLOPs parity table of a baseline SMoE layer
  (defaults: the MH-v2 baseline of arXiv 2411.16205, :mod:`papercraft.mhmoe.parity`);
- ``papercraft mhmoe bench`` — the layer benchmark (``papercraft.mhmoe.bench.run_bench`` with the
  options of ``papercraft.mhmoe.bench.add_arguments``);
- ``papercraft mhmoe demo`` — the short SMoE vs MH-MoE comparison (a couple of minutes).

A bad argument exits with status 2 and a message that names it, before any model is built.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from papercraft.mhmoe._version import __version__

__all__ = ["Command", "command", "parse_ints"]

_DIST = "papercraft-mhmoe"
_SUMMARY = "MH-MoE: a mixture-of-experts layer that routes sub-tokens of each token to experts."
_PAPER = "Multi-Head Mixture-of-Experts (arXiv 2404.15045, https://arxiv.org/abs/2404.15045)"
_MATCHES = ("params", "params+flops")

_Handler = Callable[[argparse.Namespace], int]


def _info(args: argparse.Namespace) -> int:
    """Print the distribution name, version and paper, like ``--version`` does."""
    print(f"{_DIST} {__version__}")
    print(_SUMMARY)
    if _PAPER:
        print(f"paper: {_PAPER}")
    return 0


def parse_ints(text: str) -> list[int]:
    """Parse comma-separated positive integers, e.g. ``"2,3"``.

    Args:
        text (str): the option's value.

    Returns:
        list[int]: the values in the given order.

    Raises:
        argparse.ArgumentTypeError: for anything else, naming what was expected.
    """
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as 2,3, got {text!r}"
        )
    return values


def _error(action: str, error: Exception) -> int:
    print(f"papercraft mhmoe {action}: error: {error}", file=sys.stderr)
    return 2


# ------------------------------------------------------------------------------------------------
# parity


def _parity(args: argparse.Namespace) -> int:
    from papercraft.mhmoe.parity import parity_table

    baseline = {
        "d_model": args.d_model,
        "num_experts": args.experts,
        "top_k": args.top_k,
        "expert_hidden": args.expert_hidden,
    }
    match = list(_MATCHES) if args.match == "both" else [args.match]
    try:
        table = parity_table(
            baseline, args.heads, match=match, expert_multiple=args.expert_multiple
        )
    except ValueError as error:
        return _error("parity", error)
    print(table, end="")
    return 0


def _add_parity(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "parity",
        help="params/FLOPs parity table of MH-MoE configs for an SMoE baseline",
        description=(
            "Print the MH-MoE layer configs that match an SMoE baseline's parameters (the "
            "paper) or parameters and FLOPs (MH-v2, arXiv 2411.16205). Defaults: the MH-v2 "
            "baseline, d 768, 8 experts, top-1, SwiGLU d_moe 2048."
        ),
    )
    add = parser.add_argument
    add("--d-model", type=int, default=768, help="model width d (default: 768)")
    add("--experts", type=int, default=8, help="baseline experts (default: 8)")
    add("--top-k", type=int, default=1, help="baseline top-k (default: 1)")
    add("--expert-hidden", type=int, default=2048, help="baseline d_moe (default: 2048)")
    add("--heads", type=parse_ints, default=[2, 3], metavar="H,H", help="heads (default: 2,3)")
    add("--match", choices=[*_MATCHES, "both"], default="both", help="parity kind (default: both)")
    add("--expert-multiple", type=int, default=None, help="round expert counts (default: E)")
    parser.set_defaults(func=_parity)


# ------------------------------------------------------------------------------------------------
# compare


def _compare(args: argparse.Namespace) -> int:
    from papercraft.mhmoe.compare import compare_smoe_mhmoe

    try:
        result = compare_smoe_mhmoe(
            args.output,
            data=args.data,
            max_documents=args.max_documents,
            hidden_size=args.hidden,
            num_layers=args.layers,
            num_attention_heads=args.attention_heads,
            moe_every=args.moe_every,
            num_experts=args.experts,
            top_k=args.top_k,
            expert_hidden=args.expert_hidden,
            num_heads=args.heads,
            match=args.match,
            vocab_size=args.vocab,
            block_size=args.block_size,
            batch_size=args.batch_size,
            max_steps=args.steps,
            learning_rate=args.lr,
            dispatch=args.dispatch,
            seed=args.seed,
            progress=not args.json,
        )
    except (ValueError, FileNotFoundError) as error:
        return _error("compare", error)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.to_markdown(), end="\n")
    return 0


def _add_compare(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "compare",
        help="SMoE vs MH-MoE: validation perplexity and expert activation (tiny, offline)",
        description=(
            "Train a tiny SMoE and a params+FLOPs-matched MH-MoE with the same seed and data "
            "(default: CPython's pydoc topics) and report perplexity, active-expert share, "
            "load entropy, dead experts and heatmaps, as measured."
        ),
    )
    add = parser.add_argument
    add("--output", default="compare-output/mhmoe", help="report folder")
    add("--data", nargs="+", default=None, metavar="PATH", help="text files (default: pydoc)")
    add("--max-documents", type=int, default=None, help="first N pydoc topics (default: all)")
    add("--hidden", type=int, default=128, help="model width (default: 128)")
    add("--layers", type=int, default=4, help="decoder blocks (default: 4)")
    add("--attention-heads", type=int, default=4, help="attention heads (default: 4)")
    add("--moe-every", type=int, default=1, help="MoE every k blocks (default: 1)")
    add("--experts", type=int, default=8, help="SMoE experts (default: 8)")
    add("--top-k", type=int, default=1, help="SMoE top-k, 1 or 2 (default: 1)")
    add("--expert-hidden", type=int, default=256, help="SMoE expert width (default: 256)")
    add("--heads", type=int, default=2, help="MH-MoE heads (default: 2)")
    add("--match", choices=list(_MATCHES), default="params+flops", help="parity kind")
    add("--vocab", type=int, default=2048, help="BPE vocabulary (default: 2048)")
    add("--block-size", type=int, default=128, help="tokens per block (default: 128)")
    add("--batch-size", type=int, default=8, help="blocks per step (default: 8)")
    add("--steps", type=int, default=300, help="steps per system (default: 300)")
    add("--lr", type=float, default=2e-3, help="peak learning rate (default: 2e-3)")
    add("--dispatch", choices=["loop", "grouped", "dense"], default="grouped", help="dispatch")
    add("--seed", type=int, default=0, help="seed of both systems (default: 0)")
    add("--json", action="store_true", help="print JSON instead of Markdown")
    parser.set_defaults(func=_compare)


# ------------------------------------------------------------------------------------------------
# bench and demo


def _bench_unavailable(reason: str) -> _Handler:
    def handler(args: argparse.Namespace) -> int:
        return _error("bench", ImportError(f"the benchmark module is unavailable: {reason}"))

    return handler


def _bench(args: argparse.Namespace) -> int:
    from papercraft.mhmoe.bench import options_from_args, run_bench, write_report

    try:
        report = run_bench(options_from_args(args))
        print(report.to_markdown())
        if args.output is not None:
            for kind, path in write_report(report, args.output).items():
                print(f"wrote {kind}: {path}")
    except ValueError as error:
        return _error("bench", error)
    return 0


def _add_bench(actions: argparse._SubParsersAction) -> None:
    """Add ``bench`` with the options of :func:`papercraft.mhmoe.bench.add_arguments`."""
    parser = actions.add_parser(
        "bench",
        help="layer benchmark: dispatchers and SMoE vs MH-MoE parity configs",
        description="Time the MH-MoE layer (papercraft.mhmoe.bench.run_bench).",
    )
    try:
        from papercraft.mhmoe.bench import add_arguments
    except ImportError as error:
        parser.add_argument("bench_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        parser.set_defaults(func=_bench_unavailable(str(error)))
        return
    add_arguments(parser)
    parser.set_defaults(func=_bench)


def _make_demo_handler(parser: argparse.ArgumentParser) -> _Handler:
    def handler(args: argparse.Namespace) -> int:
        from papercraft.mhmoe.demo import run_demo

        output = Path(args.output)
        if output.exists() and not output.is_dir():
            parser.error(f"--output must be a directory, got the file {output}")
        run_demo(output)
        return 0

    return handler


def _add_train(actions: argparse._SubParsersAction) -> None:
    """Add ``train``; a broken train module must not take the other actions down with it."""
    try:
        from papercraft.mhmoe.train import add_cli
    except Exception as exc:
        print(f"papercraft mhmoe: warning: the train action is unavailable: {exc}", file=sys.stderr)
        return
    add_cli(actions)


class Command:
    """Registers ``papercraft mhmoe`` and its actions on the core's argument parser."""

    name = "mhmoe"

    def register(self, subparsers: argparse._SubParsersAction) -> None:
        """Add the ``mhmoe`` sub-parser and its actions.

        Args:
            subparsers (argparse._SubParsersAction): the core parser's sub-command group.
        """
        parser = subparsers.add_parser(self.name, help=_SUMMARY, description=_SUMMARY)

        def show_help(args: argparse.Namespace) -> int:
            parser.print_help()
            return 0

        parser.set_defaults(func=show_help)
        actions = parser.add_subparsers(dest="mhmoe_action", metavar="ACTION")
        info = actions.add_parser("info", help="print the package, its version and its paper")
        info.set_defaults(func=_info)
        _add_train(actions)
        _add_compare(actions)
        _add_parity(actions)
        _add_bench(actions)
        demo = actions.add_parser(
            "demo", help="SMoE vs MH-MoE activation comparison in a couple of minutes"
        )
        demo.add_argument(
            "--output",
            default="demo-output/mhmoe",
            help="output folder (default: demo-output/mhmoe)",
        )
        demo.set_defaults(func=_make_demo_handler(demo))


command = Command()
