"""``MoleConfig``: which LoRAs a MoLE mixes, and how its gates are built.

Mixture of LoRA Experts (Wu et al., 2024, arXiv 2404.13628, Section 3.2): every gated unit mixes
the outputs ``E_i(x)`` of ``N`` frozen LoRAs with ``G = softmax(ε / τ)``, ``ε`` a learned linear
function of the normalised, flattened LoRA outputs. The granularity ablation (Section 4.4) gates
per matrix, per layer, per block or once for the whole network.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

__all__ = [
    "CONFIG_FORMAT",
    "CONFIG_FORMAT_VERSION",
    "GateInput",
    "Granularity",
    "MoleConfig",
    "Pooling",
]

Granularity = Literal["matrix", "layer", "block", "network"]
GateInput = Literal["lora_outputs", "hidden"]
Pooling = Literal["flatten", "mean"]

CONFIG_FORMAT = "papercraft.mole.config"
CONFIG_FORMAT_VERSION = 1


@dataclass
class MoleConfig:
    """Settings of a Mixture of LoRA Experts.

    Args:
        adapters (dict[str, str]): adapter name → local directory of a peft LoRA
            (``adapter_config.json`` + ``adapter_model.safetensors``), in mixing order. At least
            two. Names may be given without paths (empty string) when the LoRAs are already
            injected into the model.
        granularity (Granularity): one gate per LoRA-wrapped ``"matrix"``, per ``"layer"`` (the
            module path up to its last numeric index: a decoder layer, a UNet transformer
            block), per ``"block"`` (up to its first numeric index, ``layers_per_block``
            consecutive indices together: a UNet down/mid/up block) or one for the whole
            ``"network"``. Default: "layer".
        gate_input (GateInput): what the gate reads: ``"lora_outputs"`` (the paper: the ``N``
            LoRA outputs of the unit's first matrix, concatenated) or ``"hidden"`` (the
            official code: that matrix's input hidden states). Default: "lora_outputs".
        pooling (Pooling): ``"flatten"`` (the paper: flatten all ``seq_len`` positions; inputs
            must have exactly ``seq_len`` tokens) or ``"mean"`` (average over the real tokens,
            for variable lengths and generation). Default: "flatten".
        seq_len (int | None): tokens per input in ``"flatten"`` mode (required there).
            Default: None.
        temperature_init (float): initial gate temperature ``τ`` (learned, kept positive as
            ``exp(log τ)``). Default: 1.0.
        balance_coef (float): ``α`` of the balance loss ``−log Π_i q_i`` (paper: 0.5).
            Default: 0.5.
        layers_per_block (int): consecutive layer indices per ``"block"`` gate. Default: 1.
    """

    adapters: dict[str, str]
    granularity: Granularity = "layer"
    gate_input: GateInput = "lora_outputs"
    pooling: Pooling = "flatten"
    seq_len: int | None = None
    temperature_init: float = 1.0
    balance_coef: float = 0.5
    layers_per_block: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.adapters, dict) or len(self.adapters) < 2:
            raise ValueError(
                f"adapters must be a dict of at least two adapter names, got {self.adapters!r}"
            )
        for name, path in self.adapters.items():
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(
                    f"adapters: names must be non-empty strings without '.', got {name!r}"
                )
            if not isinstance(path, str):
                raise ValueError(f"adapters[{name!r}] must be a path string, got {path!r}")
        for attr, choices in (
            ("granularity", get_args(Granularity)),
            ("gate_input", get_args(GateInput)),
            ("pooling", get_args(Pooling)),
        ):
            if getattr(self, attr) not in choices:
                raise ValueError(f"{attr} must be one of {choices}, got {getattr(self, attr)!r}")
        bad_len = (
            isinstance(self.seq_len, bool) or not isinstance(self.seq_len, int) or self.seq_len < 1
        )
        if self.pooling == "flatten" and bad_len:
            raise ValueError(
                "seq_len must be a positive int with pooling='flatten' (the paper's gate "
                f"flattens a fixed number of tokens), got {self.seq_len!r}; use "
                "pooling='mean' for variable lengths"
            )
        for attr in ("temperature_init", "balance_coef"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{attr} must be a float, got {value!r}")
            if not math.isfinite(value) or value < 0 or (attr == "temperature_init" and value == 0):
                raise ValueError(
                    f"{attr} must be finite and {'> 0' if attr == 'temperature_init' else '>= 0'}, got {value!r}"
                )
        if (
            isinstance(self.layers_per_block, bool)
            or not isinstance(self.layers_per_block, int)
            or self.layers_per_block < 1
        ):
            raise ValueError(
                f"layers_per_block must be a positive int, got {self.layers_per_block!r}"
            )

    @property
    def adapter_names(self) -> list[str]:
        """list[str]: the adapter names in mixing order."""
        return list(self.adapters)

    @property
    def num_adapters(self) -> int:
        """int: ``N``, the number of mixed LoRAs."""
        return len(self.adapters)

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data, with its format name and version."""
        return {"format": CONFIG_FORMAT, "format_version": CONFIG_FORMAT_VERSION, **asdict(self)}

    def to_json(self) -> str:
        """The config as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MoleConfig:
        """Rebuild a config written by :meth:`to_dict`.

        Args:
            data (dict[str, Any]): the saved mapping.

        Returns:
            MoleConfig: the config.

        Raises:
            ValueError: if the format is not a MoLE config or its version is newer than this
                package reads.
        """
        if data.get("format") != CONFIG_FORMAT:
            raise ValueError(
                f"not a MoLE config (format {data.get('format')!r}, expected {CONFIG_FORMAT!r})"
            )
        version = data.get("format_version")
        if not isinstance(version, int) or version > CONFIG_FORMAT_VERSION:
            raise ValueError(
                f"MoLE config format_version {version!r} is not supported (this package reads "
                f"<= {CONFIG_FORMAT_VERSION}); upgrade papercraft-mole"
            )
        fields = {k: v for k, v in data.items() if k not in ("format", "format_version")}
        return cls(**fields)
