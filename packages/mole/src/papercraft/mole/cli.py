"""The ``papercraft mole`` sub-command: ``info``, ``train-gates``, ``eval``, ``bench``, ``demo``.

The core's ``papercraft`` command finds this module through the ``papercraft.commands`` entry
point and calls ``command.register(subparsers)``. Each action stores its handler as ``func``
(``handler(args) -> int``, the exit status: 0, or 2 on bad input) on the parsed namespace.

Data files for ``train-gates`` and ``eval`` are JSON Lines with ``prompt`` and ``completion``
strings (and an optional ``task`` that ``eval`` groups by); the loss and the exact match are
computed on the completion only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from papercraft.mole._version import __version__

__all__ = ["Command", "command", "read_jsonl"]

_DIST = "papercraft-mole"
_SUMMARY = "MoLE: learned hierarchical gating over several frozen LoRA adapters."
_PAPER = "Mixture of LoRA Experts (arXiv 2404.13628, https://arxiv.org/abs/2404.13628)"


def _info(args: argparse.Namespace) -> int:
    """Print the distribution name, version and paper, like ``--version`` does."""
    print(f"{_DIST} {__version__}")
    print(_SUMMARY)
    print(f"paper: {_PAPER}")
    return 0


def _error(action: str, error: Exception) -> int:
    print(f"papercraft mole {action}: error: {error}", file=sys.stderr)
    return 2


def read_jsonl(path: str | Path) -> list[dict[str, str]]:
    """Rows of a JSON Lines file with string ``prompt`` and ``completion`` (and ``task``).

    Args:
        path (str | Path): the file.

    Returns:
        list[dict[str, str]]: the rows.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: on a malformed line (its number is named) or an empty file.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"data file {file} does not exist")
    rows: list[dict[str, str]] = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not all(
            isinstance(row.get(k), str) for k in ("prompt", "completion")
        ):
            raise ValueError(f"{file}:{number}: needs string fields 'prompt' and 'completion'")
        rows.append({k: str(v) for k, v in row.items()})
    if not rows:
        raise ValueError(f"{file} holds no rows")
    return rows


def _adapter_pairs(items: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--adapter must be NAME=PATH, got {item!r}")
        pairs[name] = path
    return pairs


def _load_base(path: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = Path(path)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"--base must be a local model directory with config.json, got {path}"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModelForCausalLM.from_pretrained(str(directory)).eval()
    return model, tokenizer


def _train_gates(args: argparse.Namespace) -> int:
    try:
        from papercraft.mole.config import MoleConfig

        adapters = _adapter_pairs(args.adapter)
        config = MoleConfig(
            adapters=adapters,
            granularity=args.granularity,
            gate_input=args.gate_input,
            pooling=args.pooling,
            seq_len=args.seq_len if args.pooling == "flatten" else None,
            balance_coef=args.balance_coef,
        )
        rows = read_jsonl(args.data)
        output = Path(args.output)
        if output.exists() and any(output.iterdir()) and not args.overwrite:
            raise ValueError(f"--output {output} is not empty (pass --overwrite)")
        base, tokenizer = _load_base(args.base)
    except (ValueError, FileNotFoundError) as error:
        return _error("train-gates", error)
    from papercraft.mole.synthetic import TaskDataset, encode_examples
    from papercraft.mole.train import train_gates

    try:
        pairs = [(r["prompt"], r["completion"]) for r in rows]
        dataset = TaskDataset(encode_examples(tokenizer, pairs, seq_len=args.seq_len))
        _, summary = train_gates(
            base,
            config,
            dataset,
            output_dir=output,
            steps=args.steps,
            learning_rate=args.lr,
            batch_size=args.batch_size,
            seed=args.seed,
        )
    except ValueError as error:
        return _error("train-gates", error)
    print(json.dumps(summary, indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:
    try:
        rows = read_jsonl(args.data)
        base, tokenizer = _load_base(args.base)
        from papercraft.mole.model import MoleModel

        mole = MoleModel.from_pretrained(base, args.mole)
        if args.mask:
            mole.set_mask(args.mask)
    except (ValueError, FileNotFoundError) as error:
        return _error("eval", error)
    from papercraft.mole.synthetic import exact_match

    seq_len = mole.config.seq_len or args.seq_len
    groups: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        groups.setdefault(row.get("task", "all"), []).append((row["prompt"], row["completion"]))
    result = {
        task: exact_match(mole, tokenizer, pairs, seq_len=seq_len) for task, pairs in groups.items()
    }
    print(json.dumps({"exact_match": result, "mask": args.mask}, indent=2))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from papercraft.mole.bench import main

    argv = list(args.bench_args)
    return main(argv)


def _demo(args: argparse.Namespace) -> int:
    from papercraft.mole.demo import run_demo

    try:
        run_demo(Path(args.output))
    except ValueError as error:
        return _error("demo", error)
    return 0


class Command:
    """Registers ``papercraft mole`` and its actions on the core's argument parser."""

    name = "mole"

    def register(self, subparsers: argparse._SubParsersAction) -> None:
        """Add the ``mole`` sub-parser and its actions.

        Args:
            subparsers (argparse._SubParsersAction): the core parser's sub-command group.
        """
        parser = subparsers.add_parser(self.name, help=_SUMMARY, description=_SUMMARY)

        def show_help(args: argparse.Namespace) -> int:
            parser.print_help()
            return 0

        parser.set_defaults(func=show_help)
        actions = parser.add_subparsers(dest="mole_action", metavar="ACTION")
        info = actions.add_parser("info", help="print the package, its version and its paper")
        info.set_defaults(func=_info)

        train = actions.add_parser(
            "train-gates",
            help="train MoLE gates over frozen LoRAs on prompt/completion JSON Lines",
            description="Only the gates train; base and LoRAs stay frozen (checked).",
        )
        add = train.add_argument
        add("--base", required=True, help="local transformers causal-LM directory (+ tokenizer)")
        add("--adapter", required=True, action="append", metavar="NAME=PATH",
            help="a peft LoRA directory; give two or more")  # fmt: skip
        add("--data", required=True, help="JSON Lines with prompt and completion")
        add("--output", required=True, help="output directory (the gates go to OUTPUT/mole)")
        add("--granularity", default="layer", choices=("matrix", "layer", "block", "network"))
        add("--gate-input", default="lora_outputs", choices=("lora_outputs", "hidden"))
        add("--pooling", default="flatten", choices=("flatten", "mean"))
        add("--seq-len", type=int, default=32, help="tokens per padded example (32)")
        add("--balance-coef", type=float, default=0.5, help="alpha of the balance loss (0.5)")
        add("--steps", type=int, default=200, help="optimizer steps (200)")
        add("--lr", type=float, default=1e-2, help="learning rate (1e-2)")
        add("--batch-size", type=int, default=16, help="examples per step (16)")
        add("--seed", type=int, default=0)
        add("--overwrite", action="store_true", help="allow a non-empty --output")
        train.set_defaults(func=_train_gates)

        evaluate = actions.add_parser(
            "eval", help="teacher-forced exact match of a saved MoLE, per task"
        )
        add = evaluate.add_argument
        add("--base", required=True, help="local transformers causal-LM directory (+ tokenizer)")
        add("--mole", required=True, help="a directory written by MoleModel.save_pretrained")
        add("--data", required=True, help="JSON Lines with prompt, completion and optional task")
        add("--mask", nargs="+", default=None, metavar="NAME", help="keep only these LoRAs")
        add("--seq-len", type=int, default=32, help="padding length with pooling=mean (32)")
        evaluate.set_defaults(func=_eval)

        bench = actions.add_parser("bench", help="MoLE latency vs a merged adapter", add_help=False)
        bench.add_argument("bench_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        bench.set_defaults(func=_bench)

        demo = actions.add_parser("demo", help="the laptop-scale MoLE experiment (minutes)")
        demo.add_argument("--output", default="demo-output/mole", help="output folder")
        demo.set_defaults(func=_demo)


command = Command()
