"""papercraft-mole: Mixture of LoRA Experts (arXiv 2404.13628) on top of peft.

Learned gates over several frozen peft LoRAs in a frozen base model (transformers or diffusers):
``MoleConfig`` / ``MoleModel`` (gates per matrix, layer, block or network), ``MoleTrainer``
(task loss + balance loss, only gates train), masking of LoRAs at inference, gate-only
checkpoints, and the peft baselines (``cat`` merge, sum, single adapter).
"""

from __future__ import annotations

from papercraft.mole._version import __version__
from papercraft.mole.baselines import cat_merge, single_adapter, sum_merge
from papercraft.mole.config import MoleConfig
from papercraft.mole.gates import MoleGate, balance_loss, group_key
from papercraft.mole.model import MoleModel, load_adapters
from papercraft.mole.trainer import MoleTrainer

__all__ = [
    "MoleConfig",
    "MoleGate",
    "MoleModel",
    "MoleTrainer",
    "__version__",
    "balance_loss",
    "cat_merge",
    "group_key",
    "load_adapters",
    "single_adapter",
    "sum_merge",
]
