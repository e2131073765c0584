"""The ``papercraft vot`` sub-command: ``info``, ``generate``, ``eval``, ``demo``.

The core's ``papercraft`` command finds this module through the ``papercraft.commands`` entry
point and calls ``command.register(subparsers)``. Each action stores its handler as ``func``
(``handler(args) -> int``, the exit status: 0, or 2 on bad input) on the parsed namespace.

- ``papercraft vot generate --out DIR`` writes the whole benchmark (official layout, JSONL + PNG).
- ``papercraft vot eval --model hf:PATH | openai:URL#MODEL | oracle | random | perpendicular
  --task next-step --setting vot --limit 50`` evaluates a model (on ``--data DIR`` if given,
  else on freshly generated instances), logs every sample (``--log``) and prints the table.
- ``papercraft vot demo`` runs the package demo.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from papercraft.core.cli import add_package_command, command_error
from papercraft.vot._version import __version__

__all__ = ["Command", "command", "load_model"]

_DIST = "papercraft-vot"
_SUMMARY = "Visualization-of-Thought: spatial-reasoning tasks, prompts, parsers and evaluation."
_PAPER = (
    "Mind's Eye of LLMs: Visualization-of-Thought Elicits Spatial Reasoning in Large Language "
    "Models (arXiv 2404.03622, https://arxiv.org/abs/2404.03622)"
)
_RESPONDERS = ("oracle", "random", "perpendicular")


def _error(action: str, error: Exception) -> int:
    return command_error(f"vot {action}", error)


def load_model(
    spec: str, instances: Any, *, chat: bool = False, seed: int = 0, **kwargs: Any
) -> Any:
    """A model from ``--model``: a reference responder name or a core spec (``hf:``/``openai:``).

    Args:
        spec (str): ``oracle``, ``random``, ``perpendicular``, ``hf:PATH`` or
            ``openai:URL#MODEL``.
        instances (Sequence[Instance]): what the responders may be asked about.
        chat (bool): use the chat endpoint of an OpenAI-compatible server. Default: False.
        seed (int): seeds the random responders. Default: 0.
        **kwargs (Any): passed to the core backend.
    """
    from papercraft.vot.responders import OracleModel, PerpendicularModel, RandomModel

    if spec == "oracle":
        return OracleModel(instances)
    if spec == "random":
        return RandomModel(instances, seed=seed)
    if spec == "perpendicular":
        return PerpendicularModel(instances, seed=seed)
    from papercraft.core.llm import load_language_model, parse_model_spec

    if ":" not in spec:
        raise ValueError(
            f"model must be one of {', '.join(_RESPONDERS)}, hf:PATH or openai:URL#MODEL, "
            f"got {spec!r}"
        )
    kind, _, _ = parse_model_spec(spec)
    if kind == "openai":
        kwargs.setdefault("endpoint", "chat" if chat else "completions")
    return load_language_model(spec, **kwargs)


def _generate(args: argparse.Namespace) -> int:
    from papercraft.vot.benchmark import PAPER_COUNTS, write_benchmark

    try:
        counts = write_benchmark(
            args.out,
            args.tasks,
            images=not args.no_images,
            png=not args.no_png,
            overwrite=args.overwrite,
            nl_navigation={"n": args.nl_n, "size": args.nl_size, "steps": args.nl_steps,
                           "seed": args.nl_seed},
        )  # fmt: skip
    except (ValueError, FileExistsError) as error:
        return _error("generate", error)
    print(f"wrote {args.out}")
    for task, n in counts.items():
        paper = PAPER_COUNTS.get(task)
        total = sum(paper.values()) if isinstance(paper, dict) else paper
        print(f"  {task:30s} {n:6d}" + (f"   (paper: {total})" if total else ""))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from papercraft.vot.benchmark import load_benchmark
    from papercraft.vot.dataset import build_task, load_instances
    from papercraft.vot.evaluate import evaluate
    from papercraft.vot.prompts import resolve_setting, resolve_task

    try:
        task, setting = resolve_task(args.task), resolve_setting(args.setting)
        levels = [int(x) for x in args.levels.split(",")] if args.levels else None
        if args.data is None:
            instances = build_task(task, images=setting == "multimodal-cot")
        elif Path(args.data).is_dir():
            instances = load_benchmark(args.data, task)
        else:
            instances = load_instances(args.data, task)
        model = load_model(args.model, instances, chat=args.chat or setting == "multimodal-cot",
                           seed=args.seed)  # fmt: skip
        result = evaluate(model, task, setting, instances=instances, limit=args.limit,
                          levels=levels, log_path=args.log, batch_size=args.batch_size,
                          max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                          chat=args.chat, fix_typo=args.fix_typo, patterns=args.patterns)  # fmt: skip
    except (ValueError, FileNotFoundError) as error:
        return _error("eval", error)
    print(f"{task} / {setting} / {args.model}: {result.rows[-1]['n']} instances")
    print(result.to_markdown())
    if args.json:
        from papercraft.core.io import atomic_write_json

        atomic_write_json(args.json, {"task": task, "setting": setting, "model": args.model,
                                      "rows": result.rows})  # fmt: skip
        print(f"wrote {args.json}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from papercraft.vot.demo import run_demo

    run_demo(Path(args.output_dir))
    return 0


class Command:
    """Registers ``papercraft vot`` and its actions on the core's argument parser."""

    name = "vot"

    def register(self, subparsers: argparse._SubParsersAction) -> None:
        """Add the ``vot`` sub-parser.

        Args:
            subparsers (argparse._SubParsersAction): the core parser's sub-command group.
        """
        from papercraft.vot.prompts import SETTINGS, TASKS

        actions = add_package_command(subparsers, self.name, dist=_DIST, version=__version__,
                                      summary=_SUMMARY, paper=_PAPER)  # fmt: skip

        gen = actions.add_parser("generate", help="write the whole benchmark (JSONL + PNG)")
        gen.add_argument("--out", required=True, help="directory to create")
        gen.add_argument("--tasks", nargs="+", default=list(TASKS), help="tasks (default: all)")
        gen.add_argument("--no-images", action="store_true", help="no base64 images in the JSONL")
        gen.add_argument("--no-png", action="store_true", help="no PNG files of maps and boards")
        gen.add_argument("--overwrite", action="store_true", help="replace an existing --out")
        gen.add_argument("--nl-n", type=int, default=200, help="NL-navigation maps (200)")
        gen.add_argument("--nl-size", type=int, default=3, help="NL-navigation grid side (3)")
        gen.add_argument("--nl-steps", type=int, default=8, help="NL-navigation walk steps (8)")
        gen.add_argument("--nl-seed", type=int, default=8, help="NL-navigation seed (8)")
        gen.set_defaults(func=_generate)

        ev = actions.add_parser("eval", help="evaluate a model on one task and setting")
        ev.add_argument("--model", required=True,
                        help="hf:PATH | openai:URL#MODEL | " + " | ".join(_RESPONDERS))  # fmt: skip
        ev.add_argument("--task", required=True,
                        help=f"one of {', '.join(TASKS)} (or route, next-step, tiling, nl-nav)")  # fmt: skip
        ev.add_argument("--setting", default="vot", help=f"one of {', '.join(SETTINGS)} (vot)")
        ev.add_argument("--data", default=None,
                        help="a directory from 'generate' or a JSONL file (official ones too); "
                        "default: generate the instances")  # fmt: skip
        ev.add_argument("--limit", type=int, default=None, help="at most N instances")
        ev.add_argument("--levels", default=None, help="comma-separated levels, e.g. 2,3")
        ev.add_argument("--log", default=None, help="JSONL log of every sample (resumable)")
        ev.add_argument("--json", default=None, help="write the table as JSON here")
        ev.add_argument("--batch-size", type=int, default=8)
        ev.add_argument("--max-new-tokens", type=int, default=2048)
        ev.add_argument("--temperature", type=float, default=0.0)
        ev.add_argument("--chat", action="store_true", help="send prompts as chat messages")
        ev.add_argument("--fix-typo", action="store_true", help="'continuous' in every prompt")
        ev.add_argument("--patterns", default="gpt", choices=("gpt", "llama"),
                        help="answer patterns: built-in (gpt) or the official Llama ones")  # fmt: skip
        ev.add_argument("--seed", type=int, default=0, help="seed of the random responders")
        ev.set_defaults(func=_eval)

        demo = actions.add_parser("demo", help="generate, count, render and score the references")
        demo.add_argument(
            "--output-dir", default="demo-output", help="where to write (demo-output)"
        )
        demo.set_defaults(func=_demo)


command = Command()
