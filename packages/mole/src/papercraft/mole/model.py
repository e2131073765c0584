"""``MoleModel``: learned gates over several frozen peft LoRAs in one frozen base model.

Mixture of LoRA Experts (Wu et al., 2024, arXiv 2404.13628), built on peft's LoRA layers rather
than a fork of them. The LoRAs are loaded with peft (``PeftModel.load_adapter`` for transformers
models, ``inject_adapter_in_model`` + ``set_peft_model_state_dict`` for any other module, e.g. a
diffusers UNet). In every gated LoRA layer peft's own adapter sum is switched off and a forward
hook adds ``Σ_i G_i · E_i(x)``, where ``E_i(x) = B_i A_i dropout(x) · scaling_i`` is peft's
vanilla-LoRA branch and ``G`` the gate of the layer's unit (:mod:`papercraft.mole.gates`), so the
layer computes ``F(x) + Σ_i G_i E_i(x)`` (Eq. 4). The gate of a unit is computed once per
forward, at its first LoRA matrix, from that matrix's LoRA outputs (the paper) or input (the
official code), and reused by the unit's other matrices.

Only gate parameters are trainable; the base model and every LoRA are frozen when the MoLE is
built. The gates of the last forward are kept (live, not detached) for the balance loss.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from papercraft.core.io import load_tensors, save_tensors
from papercraft.mole.config import MoleConfig
from papercraft.mole.gates import MoleGate, balance_loss, group_key

__all__ = ["GATES_FORMAT", "GATES_FORMAT_VERSION", "MoleModel", "load_adapters"]

GATES_FORMAT = "papercraft.mole.gates"
GATES_FORMAT_VERSION = 1
_GATES_FILE = "gates.safetensors"


def _lora_classes() -> tuple[type, type]:
    from peft.tuners.lora.layer import Linear as LoraLinear
    from peft.tuners.lora.layer import LoraLayer

    return LoraLayer, LoraLinear


def _check_adapter_dir(name: str, path: str) -> Path:
    directory = Path(path)
    if not (directory / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"adapters[{name!r}] must be a local peft LoRA directory with adapter_config.json "
            f"(nothing is downloaded), got {path!r}"
        )
    return directory


def load_adapters(model: nn.Module, adapters: Mapping[str, str]) -> nn.Module:
    """Load peft LoRAs into ``model`` under the given names (those already present are kept).

    A transformers model becomes a ``PeftModel`` (``PeftModel.from_pretrained`` then
    ``load_adapter``); any other module (a diffusers UNet, a text encoder) gets the LoRA layers
    injected in place with ``inject_adapter_in_model`` and the weights set with
    ``set_peft_model_state_dict``.

    Args:
        model (nn.Module): the base model, or a model that already holds some of the adapters.
        adapters (Mapping[str, str]): adapter name → local peft LoRA directory.

    Returns:
        nn.Module: the model holding every adapter.

    Raises:
        FileNotFoundError: if a directory is not a peft adapter directory.
    """
    from peft import LoraConfig, PeftModel, inject_adapter_in_model, set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import PreTrainedModel

    present = _adapter_names(model)
    todo = {n: _check_adapter_dir(n, p) for n, p in adapters.items() if n not in present}
    for name, directory in todo.items():
        if isinstance(model, PeftModel):
            model.load_adapter(str(directory), adapter_name=name)
            continue
        if isinstance(model, PreTrainedModel):
            model = PeftModel.from_pretrained(model, str(directory), adapter_name=name)
            continue
        config = LoraConfig.from_pretrained(str(directory))
        inject_adapter_in_model(config, model, adapter_name=name)
        weights = directory / "adapter_model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"adapters[{name!r}]: {weights} is missing (safetensors only)")
        set_peft_model_state_dict(model, load_file(str(weights)), adapter_name=name)
    return model


def _adapter_names(model: nn.Module) -> set[str]:
    lora_layer, _ = _lora_classes()
    names: set[str] = set()
    for module in model.modules():
        if isinstance(module, lora_layer):
            lora: Any = module
            names.update(lora.lora_A.keys())
    return names


class MoleModel(nn.Module):
    """A base model with ``N`` frozen LoRAs mixed by learned gates.

    Args:
        model (nn.Module): a model holding the peft LoRAs named in ``config.adapters`` (see
            :meth:`from_adapters` to load them).
        config (MoleConfig): the MoLE settings.

    Raises:
        ValueError: if the model has no LoRA layers with those names, a LoRA layer lacks one of
            them, or an adapter uses a LoRA variant (DoRA, …) or a non-linear layer.
    """

    def __init__(self, model: nn.Module, config: MoleConfig) -> None:
        super().__init__()
        lora_layer, lora_linear = _lora_classes()
        self.config = config
        self.model = model
        names = config.adapter_names
        layers: list[tuple[str, Any]] = []
        for module_name, candidate in model.named_modules():
            if not isinstance(candidate, lora_layer):
                continue
            module: Any = candidate
            held = [n for n in names if n in module.lora_A]
            if not held:
                continue
            if len(held) != len(names):
                missing = sorted(set(names) - set(held))
                raise ValueError(
                    f"every LoRA must wrap the same matrices: {module_name} lacks {missing}"
                )
            if not isinstance(module, lora_linear):
                raise ValueError(
                    f"{module_name}: MoLE gates LoRA on linear layers only, got {type(module).__name__}"
                )
            variants = [n for n in names if n in getattr(module, "lora_variant", {})]
            if variants:
                raise ValueError(
                    f"{module_name}: LoRA variants (DoRA, …) are not supported: {variants}"
                )
            layers.append((module_name, module))
        if not layers:
            raise ValueError(
                f"model holds no peft LoRA layers for the adapters {names}; load them with "
                "MoleModel.from_adapters or papercraft.mole.load_adapters"
            )
        for param in model.parameters():
            param.requires_grad_(False)
        self._layers: list[tuple[str, Any]] = layers
        self._unit_of: dict[str, str] = {}
        self._leader: dict[str, str] = {}
        gates: dict[str, MoleGate] = {}
        for module_name, module in layers:
            key = group_key(
                module_name, config.granularity, layers_per_block=config.layers_per_block
            )
            self._unit_of[module_name] = key
            if key in self._leader:
                continue
            self._leader[key] = module_name
            width = (
                config.num_adapters * module.out_features
                if config.gate_input == "lora_outputs"
                else module.in_features
            )
            gates[_param_key(key)] = MoleGate(
                width,
                config.num_adapters,
                pooling=config.pooling,
                seq_len=config.seq_len,
                temperature_init=config.temperature_init,
            )
        self.gates = nn.ModuleDict(gates)
        self._keep: Tensor | None = None
        self._fixed: Tensor | None = None
        self._pass_gates: dict[str, Tensor] = {}
        self._records: list[Tensor] = []
        self._mask: Tensor | None = None
        self._was_disabled = {n: bool(m._disable_adapters) for n, m in layers}
        self._handles = [model.register_forward_pre_hook(self._start_pass, with_kwargs=True)]
        for module_name, module in layers:
            module._disable_adapters = True  # peft's own sum is off; the hook adds the mixture
            self._handles.append(module.register_forward_hook(partial(self._mix, module_name)))

    # ------------------------------------------------------------------------------------------
    # construction
    @classmethod
    def from_adapters(cls, base_model: nn.Module, config: MoleConfig) -> MoleModel:
        """Load the LoRAs in ``config.adapters`` into ``base_model`` and gate them.

        Args:
            base_model (nn.Module): a transformers model or any module peft can inject into.
            config (MoleConfig): the settings; ``adapters`` map names to local directories.

        Returns:
            MoleModel: base and LoRAs frozen, gates trainable (uniform at first).
        """
        return cls(load_adapters(base_model, config.adapters), config)

    # ------------------------------------------------------------------------------------------
    # the forward pass
    def _start_pass(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._pass_gates = {}
        self._records = []
        mask = kwargs.get("attention_mask")
        self._mask = mask if isinstance(mask, Tensor) else None

    def _mix(self, module_name: str, module: Any, args: tuple[Any, ...], output: Tensor) -> Tensor:
        x = args[0]
        names = self.config.adapter_names
        outs = []
        for name in names:
            lora_a = module.lora_A[name]
            h = x.to(lora_a.weight.dtype)
            outs.append(
                module.lora_B[name](lora_a(module.lora_dropout[name](h))) * module.scaling[name]
            )
        key = self._unit_of[module_name]
        gate = self._pass_gates.get(key)
        if gate is None:
            if module_name != self._leader[key]:
                raise RuntimeError(
                    f"{module_name} ran before {self._leader[key]}, the first LoRA matrix of its "
                    f"gated unit {key!r}; use granularity='matrix' for this model"
                )
            gate = self._gate(key, outs, x)
            self._pass_gates[key] = gate
            self._records.append(gate)
        shape = (gate.shape[0],) + (1,) * (outs[0].ndim - 1)
        mix = sum(gate[:, i].reshape(shape).to(o.dtype) * o for i, o in enumerate(outs))
        assert isinstance(mix, Tensor)
        return output + mix.to(output.dtype)

    def _gate(self, key: str, outs: list[Tensor], x: Tensor) -> Tensor:
        batch = x.shape[0] if x.ndim > 1 else 1
        if self._fixed is not None:
            fixed = self._fixed.to(x.device)
            if self._keep is not None:
                fixed = fixed * self._keep.to(fixed)
                fixed = fixed / fixed.sum()
            return fixed.expand(batch, -1)
        z = torch.cat(outs, dim=-1) if self.config.gate_input == "lora_outputs" else x
        gate: Tensor = self.gates[_param_key(key)](z, self._mask, self._keep)
        return gate

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the wrapped model (its own outputs, e.g. a transformers ``CausalLMOutput``)."""
        return self.model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped model's ``generate`` (needs ``pooling="mean"``: lengths change)."""
        return self.model.generate(*args, **kwargs)  # type: ignore[operator]

    # ------------------------------------------------------------------------------------------
    # gates
    @property
    def units(self) -> list[str]:
        """list[str]: the gated units, in model order."""
        return list(self._leader)

    def balance_loss(self) -> Tensor:
        """``−log Π_i q_i`` over the gates of the last forward (live tensors, with gradient).

        With a mask only the kept LoRAs count. Raises ``ValueError`` before any forward.
        """
        gates = self._records
        if self._keep is not None:
            keep = self._keep
            gates = [g[:, keep.to(g.device)] for g in gates]
        return balance_loss(gates)

    def gate_weights(self) -> dict[str, Tensor]:
        """Mean gate weights ``(N,)`` of every unit over the last forward's samples (detached)."""
        return {key: g.detach().mean(0).cpu() for key, g in self._pass_gates.items()}

    def last_gates(self) -> dict[str, Tensor]:
        """Per-sample gate weights ``(B, N)`` of every unit in the last forward (detached)."""
        return {key: g.detach().cpu() for key, g in self._pass_gates.items()}

    def plot_gate_weights(
        self, path: str | os.PathLike[str], weights: Mapping[str, Tensor] | None = None
    ) -> Path:
        """Draw the per-unit gate weights as a units × LoRAs heatmap (PNG, needs matplotlib).

        Args:
            path (str | os.PathLike[str]): the image file to write.
            weights (Mapping[str, Tensor] | None): unit → ``(N,)`` weights; None uses
                :meth:`gate_weights` of the last forward. Default: None.

        Returns:
            Path: the written file.

        Raises:
            ValueError: if there are no weights (no forward yet).
            ImportError: if matplotlib is missing (``pip install "papercraft-mole[plot]"``).
        """
        data = dict(weights) if weights is not None else self.gate_weights()
        if not data:
            raise ValueError("no gate weights: run a forward pass first or pass weights")
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                'plot_gate_weights needs matplotlib: pip install "papercraft-mole[plot]"'
            ) from exc
        units = list(data)
        matrix = torch.stack([data[u].float().cpu() for u in units]).numpy()
        fig, ax = plt.subplots(figsize=(1.2 + 0.9 * matrix.shape[1], 0.8 + 0.35 * len(units)))
        image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        ax.set_xticks(range(matrix.shape[1]), self.config.adapter_names, rotation=30)
        ax.set_yticks(range(len(units)), units, fontsize=7)
        ax.set_title("MoLE gate weights")
        fig.colorbar(image, ax=ax)
        fig.tight_layout()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        fig.savefig(tmp, dpi=120, format="png")
        plt.close(fig)
        os.replace(tmp, target)
        return target

    def set_mask(self, adapters: Sequence[str] | None) -> None:
        """Keep only these LoRAs (inference mode 2): the others get weight 0 and the kept ones'
        weights are renormalised proportionally (a softmax over the kept logits).

        Args:
            adapters (Sequence[str] | None): names to keep; None keeps all.

        Raises:
            ValueError: on an unknown name or an empty selection.
        """
        if adapters is None:
            self._keep = None
            return
        names = self.config.adapter_names
        unknown = sorted(set(adapters) - set(names))
        if unknown or not adapters:
            raise ValueError(
                f"adapters must be a non-empty subset of {names}, got {list(adapters)}"
            )
        self._keep = torch.tensor([n in adapters for n in names])

    def set_fixed_gates(self, weights: Sequence[float] | Tensor | None) -> None:
        """Use the same fixed weights in every unit instead of the learned gates (None: learned).

        ``[1/N] * N`` gives the normalised linear merge, a one-hot vector a single LoRA.

        Args:
            weights (Sequence[float] | Tensor | None): ``N`` non-negative weights.

        Raises:
            ValueError: on a wrong length or negative weights.
        """
        if weights is None:
            self._fixed = None
            return
        w = torch.as_tensor(weights, dtype=torch.float32).flatten()
        if w.numel() != self.config.num_adapters or bool((w < 0).any()):
            raise ValueError(
                f"weights must be {self.config.num_adapters} non-negative numbers, got {weights!r}"
            )
        self._fixed = w

    def gate_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters: every gate's ``e`` and ``log τ``."""
        return list(self.gates.parameters())

    def check_only_gates_trainable(self) -> None:
        """Raise ``ValueError`` naming any trainable parameter outside the gates."""
        gate_ids = {id(p) for p in self.gate_parameters()}
        extra = [n for n, p in self.named_parameters() if p.requires_grad and id(p) not in gate_ids]
        if extra:
            raise ValueError(
                f"only gate parameters may train, but these require grad: {extra[:5]}"
                + (f" (+{len(extra) - 5} more)" if len(extra) > 5 else "")
            )

    def adapter_fingerprints(self) -> dict[str, str]:
        """SHA-256 of every adapter's LoRA weights over the gated layers."""
        result = {}
        for name in self.config.adapter_names:
            digest = hashlib.sha256()
            for module_name, module in self._layers:
                for part in (module.lora_A[name].weight, module.lora_B[name].weight):
                    digest.update(module_name.encode())
                    digest.update(
                        part.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
                    )
                digest.update(repr(float(module.scaling[name])).encode())
            result[name] = digest.hexdigest()
        return result

    def unload(self) -> nn.Module:
        """Remove the hooks, restore peft's adapter switches and return the wrapped model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for module_name, module in self._layers:
            module._disable_adapters = self._was_disabled[module_name]
        return self.model

    # ------------------------------------------------------------------------------------------
    # persistence
    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write only the gates (safetensors) and the MoLE config with adapter references.

        The manifest records the config, the gated units and a fingerprint of every LoRA, so
        :meth:`from_pretrained` can refuse a different set. Written atomically.

        Args:
            directory (str | os.PathLike[str]): the checkpoint directory (replaced if present).

        Returns:
            Path: the directory.
        """
        tensors = {k: v for k, v in self.gates.state_dict().items()}
        metadata = {
            "config": self.config.to_dict(),
            "units": self.units,
            "fingerprints": self.adapter_fingerprints(),
        }
        save_tensors(
            directory,
            tensors,
            format=GATES_FORMAT,
            format_version=GATES_FORMAT_VERSION,
            metadata=metadata,
            filename=_GATES_FILE,
        )
        return Path(directory)

    @classmethod
    def from_pretrained(
        cls,
        model: nn.Module,
        directory: str | os.PathLike[str],
        *,
        adapters: Mapping[str, str] | None = None,
    ) -> MoleModel:
        """Rebuild a saved MoLE on ``model`` (loading its LoRAs from the saved references or
        from ``adapters``) and restore the gates.

        Args:
            model (nn.Module): the base model (or one already holding the adapters).
            directory (str | os.PathLike[str]): written by :meth:`save_pretrained`.
            adapters (Mapping[str, str] | None): new locations of the same adapters.
                Default: None (the saved references).

        Returns:
            MoleModel: outputs equal to the saved one's.

        Raises:
            ValueError: if the adapters (names or weights) differ from the saved set, or the
                checkpoint is not a MoLE of a supported version.
        """
        tensors, manifest = load_tensors(
            directory, format=GATES_FORMAT, max_format_version=GATES_FORMAT_VERSION,
            filename=_GATES_FILE,
        )  # fmt: skip
        meta = manifest.metadata
        data = dict(meta["config"])
        if adapters is not None:
            if set(adapters) != set(data["adapters"]):
                raise ValueError(
                    f"adapters must name the saved set {sorted(data['adapters'])}, got "
                    f"{sorted(adapters)}"
                )
            data["adapters"] = {n: adapters[n] for n in data["adapters"]}
        config = MoleConfig.from_dict(data)
        mole = cls.from_adapters(model, config)
        saved = meta["fingerprints"]
        now = mole.adapter_fingerprints()
        changed = sorted(n for n in config.adapter_names if saved.get(n) != now.get(n))
        if changed:
            raise ValueError(
                f"the MoLE at {directory} was trained over other weights for the adapters "
                f"{changed}: gates are only valid for the LoRAs they were trained with"
            )
        if mole.units != list(meta["units"]):
            raise ValueError(
                f"the model's gated units differ from the saved ones ({len(mole.units)} vs "
                f"{len(meta['units'])}): a different base model or LoRA targets"
            )
        mole.gates.load_state_dict(tensors, strict=True)
        return mole


def _param_key(unit: str) -> str:
    return unit.replace(".", "__")
