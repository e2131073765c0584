"""``train_gates``: build a MoLE over frozen LoRAs, train its gates with :class:`MoleTrainer`, save.

The loss is the task loss plus ``balance_coef`` times the balance loss (arXiv 2404.13628,
Section 3.3); only the gates train. The gates are written with
:meth:`MoleModel.save_pretrained` under ``output_dir/mole`` and a summary under
``output_dir/train_summary.json`` (both atomically).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from papercraft.core.io import atomic_write_json
from papercraft.mole.config import MoleConfig
from papercraft.mole.model import MoleModel
from papercraft.mole.trainer import MoleTrainer

__all__ = ["gate_entropy", "train_gates"]


def gate_entropy(weights: dict[str, torch.Tensor]) -> float:
    """Mean normalised entropy (in ``[0, 1]``) of per-unit mean gate weights.

    Args:
        weights (dict[str, torch.Tensor]): unit → ``(N,)`` weights (:meth:`MoleModel.gate_weights`).

    Returns:
        float: 1 for uniform gates, 0 when every unit picks one LoRA; NaN without units.
    """
    values = []
    for w in weights.values():
        p = w.clamp_min(1e-12)
        values.append(float(-(p * p.log()).sum()) / math.log(p.numel()))
    return sum(values) / len(values) if values else float("nan")


def train_gates(
    base_model: nn.Module,
    config: MoleConfig,
    dataset: Dataset[Any],
    *,
    output_dir: str | Path,
    steps: int = 200,
    learning_rate: float = 1e-2,
    batch_size: int = 16,
    seed: int = 0,
    quiet: bool = True,
) -> tuple[MoleModel, dict[str, Any]]:
    """Train MoLE gates on ``dataset`` (rows with ``input_ids``, ``attention_mask``, ``labels``).

    Args:
        base_model (nn.Module): the base model (the LoRAs in ``config.adapters`` are loaded
            into it).
        config (MoleConfig): the MoLE settings (``balance_coef`` weighs the balance loss).
        dataset (Dataset[Any]): training rows.
        output_dir (str | Path): where the gates and the summary are written.
        steps (int): optimizer steps. Default: 200.
        learning_rate (float): AdamW learning rate of the gates. Default: 1e-2.
        batch_size (int): rows per step. Default: 16.
        seed (int): seed of the data order. Default: 0.
        quiet (bool): no progress bars or per-step logs. Default: True.

    Returns:
        tuple[MoleModel, dict[str, Any]]: the trained MoLE and a JSON-ready summary (first and
        last losses, balance-loss history, gate weights and their entropy on the first batch).

    Raises:
        ValueError: on a non-positive ``steps``/``batch_size``/``learning_rate``.
    """
    from transformers import TrainingArguments

    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    out = Path(output_dir)
    mole = MoleModel.from_adapters(base_model, config)
    args = TrainingArguments(
        output_dir=str(out / "trainer"),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        seed=seed,
        use_cpu=not torch.cuda.is_available(),
        report_to=[],
        save_strategy="no",
        logging_steps=max(1, steps // 10),
        disable_tqdm=quiet,
        log_level="error" if quiet else "passive",
    )
    trainer = MoleTrainer(mole, args=args, train_dataset=dataset)
    if quiet:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    result = trainer.train()
    mole.eval()
    first = next(iter(torch.utils.data.DataLoader(dataset, batch_size=batch_size)))
    with torch.no_grad():
        mole(**{k: v for k, v in first.items() if k in ("input_ids", "attention_mask")})
    weights = mole.gate_weights()
    mole.save_pretrained(out / "mole")
    history = trainer.balance_history
    summary: dict[str, Any] = {
        "format": "papercraft.mole.train_summary",
        "format_version": 1,
        "steps": steps,
        "train_loss": float(result.training_loss),
        "balance_coef": config.balance_coef,
        "balance_loss_first": history[0] if history else None,
        "balance_loss_last": history[-1] if history else None,
        "balance_loss_min": config.num_adapters * math.log(config.num_adapters),
        "gate_weights": {k: [round(float(x), 4) for x in v] for k, v in weights.items()},
        "gate_entropy": gate_entropy(weights),
        "mole_dir": str(out / "mole"),
    }
    atomic_write_json(out / "train_summary.json", summary)
    return mole, summary
