"""The MoLE gate, the grouping of LoRA matrices into gated units, and the balance loss.

Mixture of LoRA Experts (arXiv 2404.13628), Section 3.2: the ``N`` LoRA outputs
``E_i(x) ∈ R^{L×d}`` of a gated unit are concatenated, normalised and flattened
(``ξ = N·L·d``); a learnable ``e ∈ R^{ξ×N}`` maps them to logits ``ε``, and
``G = softmax(ε / τ)`` with a learnable temperature ``τ``. Section 3.3: the balance loss
``L_balance = −log Π_i q_i``, ``q_i`` the mean gate of LoRA ``i`` over the ``M`` gated units,
is minimal (``N log N``) when the mean gates are uniform. Masking (inference mode 2) sets the
logits of unwanted LoRAs to ``−∞``, which redistributes their weight proportionally.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papercraft.mole.config import Granularity, Pooling

__all__ = ["MoleGate", "balance_loss", "group_key"]

_INDEX = re.compile(r"^\d+$")


def group_key(module_name: str, granularity: Granularity, *, layers_per_block: int = 1) -> str:
    """The gated unit a LoRA-wrapped matrix belongs to.

    ``"matrix"``: the matrix itself. ``"layer"``: its path up to the last numeric component
    (``model.layers.3``; ``down_blocks.1.attentions.0.transformer_blocks.0``). ``"block"``: up to
    the first numeric component, whose index is divided by ``layers_per_block``
    (``model.layers.3`` → ``model.layers.1`` with 2 layers per block; ``down_blocks.1``).
    ``"network"``: one unit. A path without numeric components is its own layer and block.

    Args:
        module_name (str): dotted module path.
        granularity (Granularity): ``"matrix"``, ``"layer"``, ``"block"`` or ``"network"``.
        layers_per_block (int): consecutive indices per block. Default: 1.

    Returns:
        str: the unit's key.

    Raises:
        ValueError: on an unknown granularity or a non-positive ``layers_per_block``.
    """
    if layers_per_block < 1:
        raise ValueError(f"layers_per_block must be >= 1, got {layers_per_block}")
    if granularity == "matrix":
        return module_name
    if granularity == "network":
        return "network"
    parts = module_name.split(".")
    numeric = [i for i, p in enumerate(parts) if _INDEX.match(p)]
    if not numeric:
        return module_name
    if granularity == "layer":
        return ".".join(parts[: numeric[-1] + 1])
    if granularity == "block":
        first = numeric[0]
        index = int(parts[first]) // layers_per_block
        return ".".join([*parts[:first], str(index)])
    raise ValueError(f"granularity must be matrix/layer/block/network, got {granularity!r}")


class MoleGate(nn.Module):
    """One gate: ``G = softmax(e(normalise(pool(z))) / τ)`` over ``N`` LoRAs, per sample.

    The weight ``e`` starts at zero, so an untrained gate is uniform (the normalised linear
    merge with ``w = 1/N``); ``τ = exp(log_tau)`` stays positive.

    Args:
        in_features (int): width of one position of the gate input (``N · d_out`` for LoRA
            outputs, ``d_in`` for hidden states).
        num_adapters (int): ``N``.
        pooling (Pooling): ``"flatten"`` (``seq_len`` positions flattened) or ``"mean"``.
        seq_len (int | None): positions in ``"flatten"`` mode. Default: None.
        temperature_init (float): initial ``τ``. Default: 1.0.

    Raises:
        ValueError: on non-positive sizes or a missing ``seq_len`` in ``"flatten"`` mode.
    """

    def __init__(
        self,
        in_features: int,
        num_adapters: int,
        *,
        pooling: Pooling,
        seq_len: int | None = None,
        temperature_init: float = 1.0,
    ) -> None:
        super().__init__()
        if in_features < 1 or num_adapters < 2:
            raise ValueError(
                f"in_features must be >= 1 and num_adapters >= 2, got {in_features}, {num_adapters}"
            )
        if pooling == "flatten" and (seq_len is None or seq_len < 1):
            raise ValueError(
                f"seq_len must be a positive int with pooling='flatten', got {seq_len!r}"
            )
        if not temperature_init > 0:
            raise ValueError(f"temperature_init must be > 0, got {temperature_init!r}")
        self.in_features = in_features
        self.num_adapters = num_adapters
        self.pooling: Pooling = pooling
        self.seq_len = seq_len
        width = in_features * (seq_len if pooling == "flatten" and seq_len else 1)
        self.weight = nn.Parameter(torch.zeros(num_adapters, width))
        self.log_tau = nn.Parameter(torch.tensor(math.log(temperature_init)))

    @property
    def temperature(self) -> Tensor:
        """Tensor: ``τ`` (a scalar)."""
        return self.log_tau.exp()

    def features(self, z: Tensor, mask: Tensor | None = None) -> Tensor:
        """Pool and L2-normalise the gate input per sample.

        Args:
            z (Tensor): ``(B, L, F)`` (or ``(B, F)``, read as one position).
            mask (Tensor | None): ``(B, L)`` bool/0-1, real tokens; used by ``"mean"``.
                Default: None.

        Returns:
            Tensor: ``(B, width)`` in float32 or wider.

        Raises:
            ValueError: if the width or (``"flatten"``) the number of positions is wrong.
        """
        if z.ndim == 2:
            z = z[:, None, :]
        if z.ndim != 3 or z.shape[-1] != self.in_features:
            raise ValueError(f"gate input must be (B, L, {self.in_features}), got {tuple(z.shape)}")
        z = z.to(torch.promote_types(z.dtype, torch.float32))
        if self.pooling == "flatten":
            if z.shape[1] != self.seq_len:
                raise ValueError(
                    f"pooling='flatten' needs exactly seq_len={self.seq_len} tokens per input, got "
                    f"{z.shape[1]}; pad inputs to seq_len, or use pooling='mean' for variable "
                    "lengths and generation"
                )
            pooled = z.reshape(z.shape[0], -1)
        elif mask is not None and tuple(mask.shape) == tuple(z.shape[:2]):
            weights = mask.to(z.dtype)[..., None]
            pooled = (z * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        else:
            pooled = z.mean(1)
        return F.normalize(pooled, p=2.0, dim=-1, eps=1e-6)

    def logits(self, z: Tensor, mask: Tensor | None = None) -> Tensor:
        """``ε / τ``, shape ``(B, N)``."""
        feats = self.features(z, mask)
        return F.linear(feats, self.weight.to(feats.dtype)) / self.temperature.to(feats.dtype)

    def forward(self, z: Tensor, mask: Tensor | None = None, keep: Tensor | None = None) -> Tensor:
        """Gate weights ``(B, N)``, rows summing to 1.

        Args:
            z (Tensor): the gate input ``(B, L, F)``.
            mask (Tensor | None): ``(B, L)`` real tokens (``"mean"`` pooling). Default: None.
            keep (Tensor | None): ``(N,)`` bool, the LoRAs left in (others get weight 0 and
                the rest renormalise). Default: None (all).

        Returns:
            Tensor: ``(B, N)``.
        """
        logits = self.logits(z, mask)
        if keep is not None:
            logits = logits.masked_fill(~keep.to(logits.device), float("-inf"))
        return logits.softmax(dim=-1)


def balance_loss(gates: list[Tensor]) -> Tensor:
    """``−Σ_i log q_i``, ``q_i`` the mean weight of LoRA ``i`` over all gates and samples.

    Args:
        gates (list[Tensor]): the ``(B, N)`` gate weights of every gated unit of one forward.

    Returns:
        Tensor: scalar, ``N log N`` at uniform mean gates and larger otherwise; differentiable
        through the live gate tensors.

    Raises:
        ValueError: if ``gates`` is empty.
    """
    if not gates:
        raise ValueError("gates is empty: run a forward pass through the MoLE first")
    mean = torch.cat([g.reshape(-1, g.shape[-1]) for g in gates]).mean(0)
    return -mean.clamp_min(torch.finfo(mean.dtype).tiny).log().sum()
