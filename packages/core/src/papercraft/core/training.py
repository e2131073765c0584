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
