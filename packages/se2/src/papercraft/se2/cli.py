"""The ``papercraft se2`` sub-command: ``info``, ``score``, ``train``, ``select``, ``eval``, ``demo``.

The core's ``papercraft`` command finds this module through the ``papercraft.commands`` entry
point and calls ``command.register(subparsers)``. Each action stores its handler as ``func``
(``handler(args) -> int``, the exit status: 0, or 2 on bad input) on the parsed namespace.

Data (``--data`` for the train split / pool, ``--test-data`` for the evaluation split) are raw
rows of one of the 23 tasks (``--task``; the official field names) in a JSONL file, a JSON array
file or a ``datasets.save_to_disk`` directory. Models are ``hf:PATH`` or ``openai:URL#MODEL``
(likelihood scoring needs prompt log-probs: a local model or a completions server with echo).

    papercraft se2 score  --task sst2 --data train.jsonl --model hf:./gpt-neo --out scores.jsonl
    papercraft se2 train  --task sst2 --data train.jsonl --scores scores.jsonl \\
                          --backbone ./bert-base --out retriever
    papercraft se2 select --task sst2 --data train.jsonl --test-data dev.jsonl \\
                          --method se2 --retriever retriever --out selections.jsonl
    papercraft se2 eval   --task sst2 --data train.jsonl --test-data dev.jsonl \\
                          --model hf:./gpt-neo --retriever retriever --similarity ./minilm
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from papercraft.core.cli import add_package_command, command_error
from papercraft.se2._version import __version__

__all__ = ["Command", "command"]

_DIST = "papercraft-se2"
_SUMMARY = "Se²: sequential, LLM-feedback-trained example selection for in-context learning."
_PAPER = (
    "Se²: Sequential Example Selection for In-Context Learning "
    "(arXiv 2402.13874, https://arxiv.org/abs/2402.13874)"
)


def _error(action: str, error: Exception) -> int:
    return command_error(f"se2 {action}", error)


def _pool(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    from papercraft.se2.tasks import get_task, load_examples

    spec = get_task(args.task)
    return spec, load_examples(spec, "train", data=args.data, limit=args.limit)


def _tests(args: argparse.Namespace) -> list[Any]:
    from papercraft.se2.tasks import load_examples

    tests = load_examples(args.task, "test", data=args.test_data, limit=args.test_limit)
    if not tests:
        raise ValueError(f"test-data {args.test_data} holds no usable rows")
    return tests


def _score(args: argparse.Namespace) -> int:
    from papercraft.core.llm import load_language_model
    from papercraft.se2.pipeline import score_pool

    try:
        spec, pool = _pool(args)
        lm = load_language_model(args.model)
        steps = score_pool(lm, spec.kind, pool, metric=spec.metric if spec.metric == "rouge" else "accuracy",
                           num_candidates=args.num_candidates or spec.finder_L, steps=args.steps,
                           seed=args.seed, cache_path=args.out, batch_size=args.batch_size)  # fmt: skip
    except (ValueError, FileNotFoundError) as error:
        return _error("score", error)
    good = sum(1 for s in steps if any(c.accurate > 0 for c in s.ranked))
    print(f"scored {len(steps)} steps of {len(pool)} queries ({good} with an accurate candidate); "
          f"cache: {args.out}")  # fmt: skip
    return 0


def _train(args: argparse.Namespace) -> int:
    from papercraft.core.data import read_jsonl
    from papercraft.se2.pipeline import train_on_scores
    from papercraft.se2.retriever import BiEncoder
    from papercraft.se2.sequences import ScoredStep

    try:
        _, pool = _pool(args)
        steps = [ScoredStep.from_record(r, where=f"scores line {n}")
                 for n, r in enumerate(read_jsonl(args.scores), 1)]  # fmt: skip
        model = BiEncoder.from_backbone(args.backbone, shared=args.shared, pooling=args.pooling,
                                        max_length=args.max_length)  # fmt: skip
        train_on_scores(model, steps, pool, args.out, n_hard=args.hard, n_random=args.random,
                        seed=args.seed, learning_rate=args.lr, batch_size=args.batch_size,
                        epochs=args.epochs, warmup_steps=args.warmup)  # fmt: skip
    except (ValueError, FileNotFoundError, OSError) as error:
        return _error("train", error)
    print(f"trained retriever saved to {args.out}")
    return 0


def _selections(args: argparse.Namespace, pool: list[Any], tests: list[Any], method: str) -> Any:
    from papercraft.se2.pipeline import select
    from papercraft.se2.retriever import BiEncoder

    retriever = None
    if method == "se2":
        if not args.retriever:
            raise ValueError("--method se2 needs --retriever (a directory from 'train')")
        retriever = BiEncoder.load(args.retriever)
    elif method == "similarity":
        if not args.similarity:
            raise ValueError("--method similarity needs --similarity (an encoder directory)")
        retriever = BiEncoder.from_backbone(args.similarity, shared=True, pooling="mean")
    return select(method, pool, tests, retriever=retriever, shots=args.shots, beam=args.beam,
                  seed=args.seed)  # fmt: skip


def _select(args: argparse.Namespace) -> int:
    from papercraft.core.data import write_jsonl

    try:
        _, pool = _pool(args)
        tests = _tests(args)
        chosen = _selections(args, pool, tests, args.method)
    except (ValueError, FileNotFoundError, OSError) as error:
        return _error("select", error)
    write_jsonl(args.out, ({"test_id": t.id, "ids": list(s.ids), "score": s.score}
                           for t, s in zip(tests, chosen, strict=True)))  # fmt: skip
    print(f"wrote {len(chosen)} selections ({args.method}, {args.shots} shots) to {args.out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from papercraft.core.llm import load_language_model
    from papercraft.se2.evaluate import evaluate_selections

    try:
        spec, pool = _pool(args)
        tests = _tests(args)
        methods = ["random", "bm25"]
        if args.retriever:
            methods.insert(0, "se2")
        if args.similarity:
            methods.append("similarity")
        selections = {m: _selections(args, pool, tests, m) for m in methods}
        lm = load_language_model(args.model)
        results = evaluate_selections(lm, spec.kind, spec.metric, pool, tests, selections,
                                      batch_size=args.batch_size)  # fmt: skip
    except (ValueError, FileNotFoundError, OSError) as error:
        return _error("eval", error)
    names = list(results[0].metrics)
    print(f"{args.task}: {len(tests)} test examples, {args.shots} shots, pool {len(pool)}")
    print("| selector | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for result in results:
        print(
            f"| {result.name} | "
            + " | ".join(f"{100 * result.metrics[n]:.1f}" for n in names)
            + " |"
        )
    if args.json:
        from papercraft.core.io import atomic_write_json

        atomic_write_json(args.json, {"task": args.task, "shots": args.shots,
                                      "results": {r.name: r.metrics for r in results}})  # fmt: skip
    return 0


def _demo(args: argparse.Namespace) -> int:
    from papercraft.se2.demo import run_demo

    run_demo(Path(args.output_dir))
    return 0


def _data_args(parser: argparse.ArgumentParser, *, tests: bool = False) -> None:
    parser.add_argument("--task", required=True, help="one of the 23 tasks (e.g. sst2, mnli_m)")
    parser.add_argument("--data", required=True, help="train rows: JSONL, JSON or save_to_disk dir")
    parser.add_argument("--limit", type=int, default=None, help="pool size (default 10,000)")
    parser.add_argument("--seed", type=int, default=0)
    if tests:
        parser.add_argument("--test-data", required=True, help="evaluation rows")
        parser.add_argument("--test-limit", type=int, default=None, help="at most N test rows")
        parser.add_argument("--retriever", default=None, help="a directory from 'train'")
        parser.add_argument("--similarity", default=None,
                            help="an encoder directory for the similarity baseline (e.g. MiniLM)")  # fmt: skip
        parser.add_argument("--shots", type=int, default=3)
        parser.add_argument("--beam", type=int, default=3)


class Command:
    """Registers ``papercraft se2`` and its actions on the core's argument parser."""

    name = "se2"

    def register(self, subparsers: argparse._SubParsersAction) -> None:
        """Add the ``se2`` sub-parser.

        Args:
            subparsers (argparse._SubParsersAction): the core parser's sub-command group.
        """
        actions = add_package_command(subparsers, self.name, dist=_DIST, version=__version__,
                                      summary=_SUMMARY, paper=_PAPER)  # fmt: skip

        score = actions.add_parser("score", help="LLM feedback on candidate sequences (resumable)")
        _data_args(score)
        score.add_argument("--model", required=True, help="hf:PATH | openai:URL#MODEL")
        score.add_argument("--out", required=True, help="JSONL cache of scored steps")
        score.add_argument("--num-candidates", type=int, default=None,
                           help="candidates per step (default: the task's L, 50 in most)")  # fmt: skip
        score.add_argument("--steps", type=int, default=3)
        score.add_argument("--batch-size", type=int, default=32)
        score.set_defaults(func=_score)

        train = actions.add_parser("train", help="train the sequential retriever on the scores")
        _data_args(train)
        train.add_argument("--scores", required=True, help="the JSONL from 'score'")
        train.add_argument("--backbone", required=True, help="a local BERT-family model directory")
        train.add_argument("--out", required=True, help="directory for the trained retriever")
        train.add_argument("--shared", action="store_true", help="one encoder for both sides")
        train.add_argument("--pooling", default="cls", choices=("cls", "mean"))
        train.add_argument("--max-length", type=int, default=512)
        train.add_argument("--hard", type=int, default=20, help="hard negatives (20)")
        train.add_argument("--random", type=int, default=20, help="random negatives (20)")
        train.add_argument("--lr", type=float, default=1e-5)
        train.add_argument("--batch-size", type=int, default=8)
        train.add_argument("--epochs", type=float, default=6.0)
        train.add_argument("--warmup", type=int, default=1000)
        train.set_defaults(func=_train)

        sel = actions.add_parser("select", help="choose demonstrations for the test examples")
        _data_args(sel, tests=True)
        sel.add_argument("--method", default="se2", choices=("se2", "random", "bm25", "similarity"))
        sel.add_argument("--out", required=True, help="JSONL of selections")
        sel.set_defaults(func=_select)

        ev = actions.add_parser("eval", help="k-shot ICL with Se², random, BM25, similarity")
        _data_args(ev, tests=True)
        ev.add_argument("--model", required=True, help="hf:PATH | openai:URL#MODEL")
        ev.add_argument("--batch-size", type=int, default=32)
        ev.add_argument("--json", default=None, help="write the results as JSON here")
        ev.set_defaults(func=_eval)

        demo = actions.add_parser("demo", help="the whole pipeline on the synthetic task")
        demo.add_argument(
            "--output-dir", default="demo-output", help="where to write (demo-output)"
        )
        demo.set_defaults(func=_demo)


command = Command()
