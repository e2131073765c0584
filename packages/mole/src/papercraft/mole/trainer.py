"""Gate training with the transformers ``Trainer``: task loss plus the MoLE balance loss.

Mixture of LoRA Experts (arXiv 2404.13628), Section 3.3: ``L = L_D + α L_balance`` with
``L_balance = −log Π_i q_i`` and ``α = 0.5``. The balance loss is computed from the live gate
tensors of the same forward (the official code computes it from detached records, so it never
trains anything). Before training starts, the trainer checks that only gate parameters require
gradients. Checkpoints hold only the gates (:meth:`MoleModel.save_pretrained`).
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import torch
from transformers import Trainer

from papercraft.mole.model import MoleModel

__all__ = ["MoleTrainer"]


class MoleTrainer(Trainer):
    """A ``transformers.Trainer`` for the gates of a :class:`MoleModel`.

    Args:
        model (MoleModel): the MoLE; the inputs must give the wrapped model a ``labels`` loss.
        *args (Any): passed to ``Trainer``.
        **kwargs (Any): passed to ``Trainer``.

    Raises:
        TypeError: if ``model`` is not a :class:`MoleModel`.
        ValueError: if any parameter outside the gates requires gradients.
    """

    def __init__(self, model: MoleModel, *args: Any, **kwargs: Any) -> None:
        if not isinstance(model, MoleModel):
            raise TypeError(f"model must be a MoleModel, got {type(model).__name__}")
        model.check_only_gates_trainable()
        super().__init__(model, *args, **kwargs)
        self._mole = model
        self.balance_history: list[float] = []

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """``task loss + balance_coef · balance loss`` of one batch."""
        outputs = model(**inputs)
        task = outputs["loss"] if isinstance(outputs, dict) else outputs[0]
        balance = self._mole.balance_loss()
        self.balance_history.append(float(balance.detach()))
        loss: torch.Tensor = task + self._mole.config.balance_coef * balance
        return (loss, outputs) if return_outputs else loss

    def _set_signature_columns_if_needed(self) -> None:
        # MoleModel.forward takes *args/**kwargs: keep the columns the wrapped model accepts
        if self._signature_columns is None:
            inner = self._mole.model
            get_base = getattr(inner, "get_base_model", None)
            target = get_base() if callable(get_base) else inner
            params = inspect.signature(target.forward).parameters
            columns = [*params, "label", "label_ids", *self.label_names]
            self._signature_columns = columns  # type: ignore[assignment]

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """Check the gates are the only trainable parameters, then train."""
        self._mole.check_only_gates_trainable()
        return super().train(*args, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        directory = str(output_dir if output_dir is not None else self.args.output_dir)
        os.makedirs(directory, exist_ok=True)
        self._mole.save_pretrained(os.path.join(directory, "mole"))
