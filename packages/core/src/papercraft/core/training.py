"""Small pieces every package's ``transformers.Trainer`` entry point needs.

- :func:`resolve_resume_checkpoint`: ``resume_from_checkpoint`` (True, a path or False) as a folder.
- :func:`data_paths`: the ``data`` argument (one path or several) checked to exist.
- :func:`collate_blocks`: stack :class:`~papercraft.core.data.PackedDataset` blocks for a causal LM.
- :func:`parse_overrides`: ``--set KEY=VALUE`` command-line pairs (JSON values where they parse).
- :func:`finite` / :func:`logged`: read numbers back from a Trainer's ``log_history``.
- :func:`close_process_group`: tear ``torch.distributed`` down while every rank is still alive.
- :func:`run_train_command`: a ``papercraft <pkg> train`` handler around a package's ``train()``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "NumericOption",
    "add_lm_train_arguments",
    "close_process_group",
    "collate_blocks",
    "data_paths",
    "finite",
    "logged",
    "parse_overrides",
    "resolve_resume_checkpoint",
    "run_train_command",
]


def resolve_resume_checkpoint(resume: Any, output_dir: Path) -> Path | None:
    """The checkpoint folder to resume from, or None.

    Args:
        resume (bool | str | os.PathLike): True for the newest ``checkpoint-*`` in
            ``output_dir``, a folder, or False.
        output_dir (Path): the run folder.

    Returns:
        Path | None: the checkpoint, or None when not resuming.

    Raises:
        FileNotFoundError: no checkpoint where one was asked for.
        TypeError: ``resume`` is neither a bool nor a path.
    """
    from transformers.trainer_utils import get_last_checkpoint

    if resume is True:
        last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
        if last is None:
            raise FileNotFoundError(
                f"resume_from_checkpoint=True but output_dir {output_dir} holds no checkpoint-* "
                "folder"
            )
        return Path(last)
    if isinstance(resume, (str, os.PathLike)):
        if not Path(resume).is_dir():
            raise FileNotFoundError(f"resume_from_checkpoint: no such directory: {resume}")
        return Path(resume)
    if resume is not False:
        raise TypeError(f"resume_from_checkpoint must be a bool or a path, got {resume!r}")
    return None


def data_paths(data: Any) -> list[Path]:
    """``data`` (one path or a sequence of paths) as existing paths.

    Raises:
        ValueError: an empty sequence or another type.
        FileNotFoundError: naming the first path that does not exist.
    """
    if isinstance(data, (str, os.PathLike)):
        data = [data]
    if not isinstance(data, Sequence) or not data:
        raise ValueError("data must be a non-empty sequence of files or folders")
    paths = [Path(p) for p in data]
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"data: no such file or directory: {path}")
    return paths


def collate_blocks(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack packed blocks (``input_ids``, ``labels``, ``attention_mask``), each ``(T,)``.

    Full blocks need no attention mask, which keeps a model's fast path (and, for MoE layers, no
    padding mask): the mask is only passed on when some position is padding.
    """
    batch = {
        "input_ids": torch.stack([e["input_ids"] for e in examples]),  # (B, T)
        "labels": torch.stack([e["labels"] for e in examples]),  # (B, T)
    }
    masks = torch.stack([e["attention_mask"] for e in examples])  # (B, T)
    if not bool(masks.all()):
        batch["attention_mask"] = masks
    return batch


def finite(value: float | None) -> float | None:
    """``value`` as a float, or None when it is None, NaN or infinite (JSON-safe)."""
    return None if value is None or not math.isfinite(value) else float(value)


def logged(history: list[dict[str, Any]], key: str) -> list[float]:
    """Every value of ``key`` in a Trainer's ``log_history``, in order."""
    return [float(entry[key]) for entry in history if key in entry]


def parse_overrides(pairs: list[str] | None) -> dict[str, Any] | None:
    """``--set KEY=VALUE`` pairs as a dict; VALUE is parsed as JSON, else kept as a string.

    Raises:
        ValueError: a pair without ``=`` or with an empty key.
    """
    result: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            result[key] = json.loads(raw)
        except json.JSONDecodeError:
            result[key] = raw
    return result or None


def close_process_group() -> None:
    """Tear the process group down while every rank is still alive (no-op when there is none).

    Left to interpreter exit, gloo's threads can be destroyed while joinable on one rank
    (``terminate called without an active exception``, exit code -6) although training finished.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run_train_command(train: Callable[..., Any], args: Any, *, command: str) -> int:
    """Run ``train(**args)`` for a ``train`` command line: 0 on success, 2 on a bad argument.

    The parsed namespace's fields that name ``train`` parameters are passed on
    (``config_overrides`` as ``--set KEY=VALUE`` pairs, parsed with :func:`parse_overrides`);
    a ``ValueError``/``TypeError``/``FileNotFoundError``/``ImportError`` is printed as
    ``<command>: error: …``; rank 0 prints the result's ``to_dict()`` as JSON, once per launch;
    the process group is closed before returning.

    Args:
        train (Callable[..., Any]): the package's ``train`` (its result has ``to_dict()``).
        args (argparse.Namespace): the parsed command line.
        command (str): the command's name for messages, e.g. ``"papercraft yoco train"``.

    Returns:
        int: the exit status.
    """
    names = inspect.signature(train).parameters
    kwargs = {key: value for key, value in vars(args).items() if key in names}
    try:
        if "config_overrides" in kwargs:
            kwargs["config_overrides"] = parse_overrides(kwargs["config_overrides"])
        result = train(**kwargs)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:  # one report per launch, not one per rank
        print(json.dumps(result.to_dict(), indent=2))
    close_process_group()
    return 0


#: ``(flag, train() argument, type, default, help)`` of one numeric command-line option.
NumericOption = tuple[str, str, type, Any, str]


def add_lm_train_arguments(
    parser: argparse.ArgumentParser,
    *,
    presets: Sequence[str],
    numeric: Sequence[NumericOption],
    deepspeed_help: str,
    after_tokenizer: Callable[[argparse.ArgumentParser], None] | None = None,
    after_deepspeed: Callable[[argparse.ArgumentParser], None] | None = None,
    after_precision: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """The options every package's causal-LM ``train`` command shares; each ``dest`` names an
    argument of the package's ``train()`` (see :func:`run_train_command`).

    Adds ``--config`` (``model_config``), ``--data``, ``--output`` (``output_dir``),
    ``--tokenizer``, ``--set`` (``config_overrides``), the ``numeric`` options, ``--deepspeed``,
    ``--bf16`` / ``--fp16``, ``--resume``, ``--overwrite``, ``--report-to``, ``--cpu`` and the
    hidden ``--local_rank`` the deepspeed launcher appends. The hooks add a package's own options
    at their place in the help.

    Args:
        parser (argparse.ArgumentParser): the ``train`` sub-parser.
        presets (Sequence[str]): the package's named configs (shown in ``--config``'s help).
        numeric (Sequence[NumericOption]): ``(flag, dest, type, default, help)`` rows.
        deepspeed_help (str): help of ``--deepspeed``.
        after_tokenizer (Callable[[argparse.ArgumentParser], None] | None): adds options after
            ``--tokenizer``. Default: None.
        after_deepspeed (Callable[[argparse.ArgumentParser], None] | None): adds options after
            ``--deepspeed``. Default: None.
        after_precision (Callable[[argparse.ArgumentParser], None] | None): adds options after
            ``--bf16`` / ``--fp16``. Default: None.
    """
    add = parser.add_argument
    add(
        "--config",
        dest="model_config",
        metavar="CONFIG",
        required=True,
        help=f"one of {tuple(presets)}, a JSON or a model dir",
    )
    add("--data", required=True, nargs="+", metavar="PATH", help=".txt/.md/.jsonl files, folders")
    add("--output", dest="output_dir", required=True, metavar="DIR", help="output directory")
    add("--tokenizer", metavar="DIR", help="local tokenizer directory (default: train a BPE)")
    if after_tokenizer is not None:
        after_tokenizer(parser)
    add("--set", dest="config_overrides", action="append", metavar="KEY=JSON", help="config field")
    for flag, dest, kind, default, text in numeric:
        metavar = "N" if kind is int else "X"
        add(
            flag, dest=dest, type=kind, default=default, metavar=metavar, help=f"{text} ({default})"
        )
    add("--deepspeed", metavar="JSON", help=deepspeed_help)
    if after_deepspeed is not None:
        after_deepspeed(parser)
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision")
    precision.add_argument("--fp16", action="store_true", help="float16 mixed precision")
    if after_precision is not None:
        after_precision(parser)
    add("--resume", dest="resume_from_checkpoint", action="store_true", help="from --output")
    add("--overwrite", dest="overwrite_output_dir", action="store_true", help="non-empty --output")
    add("--report-to", metavar="NAME", default="none", help="Trainer loggers (none)")
    add("--cpu", dest="use_cpu", action="store_const", const=True, help="train on the CPU")
    # The deepspeed launcher appends --local_rank=N; the rank is read from the environment.
    add("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
