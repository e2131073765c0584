"""The baselines MoLE is compared with, built with peft: merges and the single-adapter oracle.

- :func:`cat_merge` — the paper's normalised linear arithmetic composition (Eq. 2),
  ``W + Σ_i w_i ΔW_i`` with ``w_i = 1/N``: peft's ``add_weighted_adapter(...,
  combination_type="cat")``, which stacks the LoRAs' ranks, so no cross terms appear (peft's
  ``"linear"`` merges ``A`` and ``B`` separately and does).
- :func:`sum_merge` — the plain sum ``W + Σ_i ΔW_i`` (``cat`` with all weights 1).
- :func:`single_adapter` — one LoRA alone (the per-task oracle when it is the task's own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from papercraft.mole.model import load_adapters

__all__ = ["cat_merge", "single_adapter", "sum_merge"]


def cat_merge(
    base_model: nn.Module,
    adapters: Mapping[str, str],
    weights: Sequence[float] | None = None,
    *,
    name: str = "merged",
) -> Any:
    """A ``PeftModel`` whose only active adapter is ``Σ_i w_i ΔW_i`` (peft's ``cat`` merge).

    Args:
        base_model (nn.Module): a transformers model (it becomes part of the result).
        adapters (Mapping[str, str]): adapter name → local peft LoRA directory (two or more).
        weights (Sequence[float] | None): one weight per adapter; None gives ``1/N`` each (the
            paper's normalised linear merge). Default: None.
        name (str): the merged adapter's name. Default: "merged".

    Returns:
        Any: the ``PeftModel``, with ``name`` active.

    Raises:
        ValueError: on fewer than two adapters or a wrong number of weights.
    """
    names = list(adapters)
    if len(names) < 2:
        raise ValueError(f"adapters must name at least two LoRAs, got {names}")
    if weights is None:
        weights = [1.0 / len(names)] * len(names)
    if len(weights) != len(names):
        raise ValueError(f"weights must have {len(names)} entries, got {len(weights)}")
    model: Any = load_adapters(base_model, adapters)
    if not hasattr(model, "add_weighted_adapter"):
        raise ValueError("cat_merge needs a transformers model (it builds a peft PeftModel)")
    model.add_weighted_adapter(names, list(weights), name, combination_type="cat")
    model.set_adapter(name)
    return model


def sum_merge(base_model: nn.Module, adapters: Mapping[str, str], *, name: str = "sum") -> Any:
    """``W + Σ_i ΔW_i``: :func:`cat_merge` with every weight 1."""
    return cat_merge(base_model, adapters, [1.0] * len(adapters), name=name)


def single_adapter(base_model: nn.Module, name: str, path: str) -> Any:
    """The base model with one LoRA active (the per-task oracle for its own task).

    Args:
        base_model (nn.Module): a transformers model.
        name (str): the adapter's name.
        path (str): its local peft directory.

    Returns:
        Any: the ``PeftModel``.
    """
    model = load_adapters(base_model, {name: path})
    return model
