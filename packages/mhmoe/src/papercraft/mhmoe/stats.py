"""Per-layer expert-activation statistics of (MH-)MoE layers: counts, shares, entropy, heatmap.

MH-MoE (Wu et al., 2024, arXiv 2404.15045, Figure 1a and Section 4.4) reports how densely the
experts are used: 8.33% of the experts are activated by SMoE (X-MoE) against 90.71% by MH-MoE on
XNLI, measured from "each expert's selection frequency in each MoE layer over total tokens" — the
threshold that makes an expert count as activated is not stated. :class:`ExpertStats` therefore
records the raw per-layer count matrices and derives documented measures from them:

- ``counts[layer][e]``: assignments of *valid* (non-padded) sub-tokens to expert ``e`` as chosen by
  the router, before capacity drops (every one of the ``k`` choices counts);
  ``kept_counts[layer][e]``: the assignments that survived the capacity limit.
- :meth:`~ExpertStats.frequencies`: each expert's share of the layer's assignments (sums to 1;
  the paper's "over total tokens" rate is the share times ``k``, see
  :meth:`~ExpertStats.selection_rates`).
- :meth:`~ExpertStats.active_share`: the share of experts whose frequency is at least ``τ``.
  Default ``τ = 1/(2E)``: an expert counts as active when it receives at least half of its fair
  (uniform) share of the load. A threshold relative to the uniform share ``1/E`` is independent of
  the expert count and of top-k, so SMoE with 8 experts and MH-MoE with 96 are judged alike; a fixed
  absolute threshold would call every expert of a large bank dead. Uniform routing gives 1, routing
  collapsed on one expert gives ``1/E``.
- :meth:`~ExpertStats.load_entropy`: Shannon entropy of the frequencies divided by ``log E``, in
  ``[0, 1]`` (1 = uniform load, 0 = one expert takes everything).
- :meth:`~ExpertStats.dead_experts`: experts never chosen (or chosen fewer than ``min_count``
  times).

:meth:`~ExpertStats.track` registers forward hooks on every :class:`~papercraft.mhmoe.layer.MHMoE`
module of a model; each hook reads ``MoEOutput.routing``. :meth:`~ExpertStats.save` writes JSON
atomically; :meth:`~ExpertStats.plot_heatmap` draws the layers × experts frequency matrix like the
paper's activation figure (matplotlib, Agg canvas, written atomically).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from papercraft.core.io import StrPath, atomic_write_bytes, atomic_write_json

if TYPE_CHECKING:
    from papercraft.mhmoe.routing import Routing

__all__ = ["STATS_FORMAT", "STATS_FORMAT_VERSION", "ExpertStats"]

STATS_FORMAT = "papercraft.mhmoe.expert_stats"
STATS_FORMAT_VERSION = 1
_ROOT_NAME = "moe"  # layer name used when the tracked model itself is the MoE layer


class ExpertStats:
    """Accumulates per-layer expert selection counts from :class:`~papercraft.mhmoe.routing.Routing`.

    Use :meth:`track` around forward passes of a model, or call :meth:`update` with a layer name
    and a ``Routing`` yourself. Counts accumulate until :meth:`reset`.

    Attributes:
        counts (dict[str, Tensor]): layer name → ``LongTensor[E]`` of chosen assignments of valid
            sub-tokens (all ``k`` choices, before capacity drops).
        kept_counts (dict[str, Tensor]): layer name → ``LongTensor[E]`` of assignments kept after
            the capacity limit.
        num_sub_tokens (dict[str, int]): layer name → valid sub-tokens seen.
        top_k (dict[str, int]): layer name → the layer's ``k``.
    """

    def __init__(self) -> None:
        self.counts: dict[str, Tensor] = {}
        self.kept_counts: dict[str, Tensor] = {}
        self.num_sub_tokens: dict[str, int] = {}
        self.top_k: dict[str, int] = {}

    # ------------------------------------------------------------------ collection

    @property
    def layers(self) -> list[str]:
        """list[str]: names of the layers seen so far, in first-seen order."""
        return list(self.counts)

    def reset(self) -> None:
        """Forget every count."""
        self.counts.clear()
        self.kept_counts.clear()
        self.num_sub_tokens.clear()
        self.top_k.clear()

    @torch.no_grad()
    def update(self, name: str, routing: Routing) -> None:
        """Add one routing decision of layer ``name`` to the counts.

        Args:
            name (str): layer name (a key of :attr:`counts`).
            routing (Routing): the layer's routing (``expert_index``, ``keep``, ``valid``,
                ``num_experts``).

        Raises:
            ValueError: if ``name`` is not a non-empty str, the routing tensors have inconsistent
                shapes, or the layer was seen before with another expert count or top-k.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        index, keep, valid = routing.expert_index, routing.keep, routing.valid
        num_experts = int(routing.num_experts)
        if index.ndim != 2 or keep.shape != index.shape or valid.shape != index.shape[:1]:
            raise ValueError(
                "routing must have expert_index and keep of shape (S, k) and valid of shape (S,), "
                f"got {tuple(index.shape)}, {tuple(keep.shape)}, {tuple(valid.shape)}"
            )
        top_k = int(index.shape[1])
        if name in self.counts:
            known_e, known_k = int(self.counts[name].numel()), self.top_k[name]
            if (known_e, known_k) != (num_experts, top_k):
                raise ValueError(
                    f"layer {name!r} was seen with num_experts={known_e}, top_k={known_k}, "
                    f"got num_experts={num_experts}, top_k={top_k}"
                )
        else:
            self.counts[name] = torch.zeros(num_experts, dtype=torch.long)
            self.kept_counts[name] = torch.zeros(num_experts, dtype=torch.long)
            self.num_sub_tokens[name] = 0
            self.top_k[name] = top_k
        index = index.detach().long()
        valid = valid.detach().bool()
        chosen = index[valid].reshape(-1).cpu()  # every choice of every valid sub-token
        kept = index[keep.detach().bool() & valid.unsqueeze(1)].reshape(-1).cpu()
        self.counts[name] += torch.bincount(chosen, minlength=num_experts)
        self.kept_counts[name] += torch.bincount(kept, minlength=num_experts)
        self.num_sub_tokens[name] += int(valid.sum())

    def track(self, model: nn.Module) -> contextlib.AbstractContextManager[ExpertStats]:
        """Count the routing of every MHMoE module of ``model`` while the context is open.

        Forward hooks are registered on every :class:`~papercraft.mhmoe.layer.MHMoE` (including
        :class:`~papercraft.mhmoe.layer.SparseMoE`) found by ``named_modules``; the layer name is
        the module's qualified name (``"moe"`` for the model itself). The hooks are removed when
        the context exits, also on an exception.

        Args:
            model (nn.Module): a model containing MHMoE layers, or one such layer.

        Returns:
            AbstractContextManager[ExpertStats]: yields ``self``.

        Raises:
            ValueError: if ``model`` is not an ``nn.Module`` or holds no MHMoE layer.
        """
        from papercraft.mhmoe.layer import MHMoE

        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        layers = [
            (name or _ROOT_NAME, m) for name, m in model.named_modules() if isinstance(m, MHMoE)
        ]
        if not layers:
            raise ValueError(
                f"model must contain an MHMoE layer, found none in {type(model).__name__}"
            )
        return self._track(layers)

    @contextlib.contextmanager
    def _track(self, layers: Sequence[tuple[str, nn.Module]]) -> Iterator[ExpertStats]:
        handles = []
        try:
            for name, module in layers:
                handles.append(module.register_forward_hook(self._hook(name)))
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self.update(name, output.routing)

        return hook

    # ------------------------------------------------------------------ measures

    def _source(self, kept: bool) -> dict[str, Tensor]:
        return self.kept_counts if kept else self.counts

    def frequencies(self, *, kept: bool = False) -> dict[str, Tensor]:
        """Each expert's share of its layer's assignments (float64, sums to 1 per layer).

        Args:
            kept (bool): use the assignments kept after capacity drops. Default: False

        Returns:
            dict[str, Tensor]: layer name → ``Tensor[E]``; all zeros for a layer with no
            assignment.
        """
        result = {}
        for name, counts in self._source(kept).items():
            total = int(counts.sum())
            result[name] = counts.double() / total if total else torch.zeros_like(counts).double()
        return result

    def selection_rates(self, *, kept: bool = False) -> dict[str, Tensor]:
        """Selections of each expert per valid sub-token (the paper's "over total tokens" rate).

        Sums to ``k`` per layer (less with ``kept=True`` after drops).

        Args:
            kept (bool): use the assignments kept after capacity drops. Default: False

        Returns:
            dict[str, Tensor]: layer name → float64 ``Tensor[E]`` (zeros for an empty layer).
        """
        result = {}
        for name, counts in self._source(kept).items():
            seen = self.num_sub_tokens[name]
            result[name] = counts.double() / seen if seen else torch.zeros_like(counts).double()
        return result

    @staticmethod
    def default_tau(num_experts: int) -> float:
        """float: the default activity threshold ``1/(2E)`` (half the uniform share)."""
        if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
            raise ValueError(f"num_experts must be a positive int, got {num_experts!r}")
        return 1.0 / (2 * num_experts)

    def active_share(self, tau: float | None = None, *, kept: bool = False) -> dict[str, float]:
        """Share of each layer's experts whose frequency is at least ``tau``.

        Args:
            tau (float | None): threshold on :meth:`frequencies`, in ``[0, 1]``; None means
                ``1/(2E)`` per layer (see the module docstring). Default: None
            kept (bool): use the assignments kept after capacity drops. Default: False

        Returns:
            dict[str, float]: layer name → share in ``[0, 1]`` (``nan`` for an empty layer).

        Raises:
            ValueError: if ``tau`` is not a number in ``[0, 1]``.
        """
        if tau is not None and (
            isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0.0 <= tau <= 1.0
        ):
            raise ValueError(f"tau must be a number in [0, 1] or None, got {tau!r}")
        result = {}
        for name, freq in self.frequencies(kept=kept).items():
            if float(freq.sum()) == 0.0:
                result[name] = math.nan
                continue
            threshold = self.default_tau(freq.numel()) if tau is None else float(tau)
            result[name] = float((freq >= threshold).double().mean())
        return result

    def load_entropy(self, *, kept: bool = False) -> dict[str, float]:
        """Entropy of each layer's load, ``−Σ p_e log p_e / log E``, in ``[0, 1]``.

        1 means a uniform load, 0 that one expert takes everything; a single-expert layer gives 1
        and an empty layer ``nan``.

        Args:
            kept (bool): use the assignments kept after capacity drops. Default: False

        Returns:
            dict[str, float]: layer name → normalised entropy.
        """
        result = {}
        for name, freq in self.frequencies(kept=kept).items():
            if float(freq.sum()) == 0.0:
                result[name] = math.nan
            elif freq.numel() == 1:
                result[name] = 1.0
            else:
                nonzero = freq[freq > 0]
                entropy = -float((nonzero * nonzero.log()).sum())
                result[name] = min(1.0, max(0.0, entropy / math.log(freq.numel())))
        return result

    def dead_experts(self, min_count: int = 1, *, kept: bool = False) -> dict[str, list[int]]:
        """Experts chosen fewer than ``min_count`` times, per layer.

        Args:
            min_count (int): an expert with fewer assignments is dead. Default: 1 (never chosen)
            kept (bool): use the assignments kept after capacity drops. Default: False

        Returns:
            dict[str, list[int]]: layer name → sorted expert indices.

        Raises:
            ValueError: if ``min_count`` is not a positive int.
        """
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be a positive int, got {min_count!r}")
        return {
            name: torch.nonzero(counts < min_count).flatten().tolist()
            for name, counts in self._source(kept).items()
        }

    # ------------------------------------------------------------------ persistence

    def to_dict(self, tau: float | None = None) -> dict[str, Any]:
        """JSON-ready summary: raw counts and the derived measures per layer.

        Args:
            tau (float | None): threshold for ``active_share`` (None: ``1/(2E)``). Default: None

        Returns:
            dict[str, Any]: ``{"format", "format_version", "tau", "layers": {name: {...}},
            "summary": {...}}``; ``nan`` measures of empty layers become ``None``.
        """
        active = self.active_share(tau)
        entropy = self.load_entropy()
        dead = self.dead_experts()
        layers: dict[str, Any] = {}
        for name, counts in self.counts.items():
            layers[name] = {
                "num_experts": int(counts.numel()),
                "top_k": self.top_k[name],
                "num_sub_tokens": self.num_sub_tokens[name],
                "counts": counts.tolist(),
                "kept_counts": self.kept_counts[name].tolist(),
                "active_share": _finite_or_none(active[name]),
                "load_entropy": _finite_or_none(entropy[name]),
                "dead_experts": dead[name],
            }
        return {
            "format": STATS_FORMAT,
            "format_version": STATS_FORMAT_VERSION,
            "tau": "1/(2E)" if tau is None else float(tau),
            "layers": layers,
            "summary": {
                "mean_active_share": _finite_or_none(_mean(active.values())),
                "mean_load_entropy": _finite_or_none(_mean(entropy.values())),
                "num_dead_experts": sum(len(v) for v in dead.values()),
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExpertStats:
        """Rebuild the counts from :meth:`to_dict` output (derived measures are recomputed).

        Args:
            data (Mapping[str, Any]): a dict written by :meth:`to_dict`.

        Returns:
            ExpertStats: the restored statistics.

        Raises:
            ValueError: if the format or version is not this one, or a layer entry is malformed.
        """
        if not isinstance(data, Mapping) or data.get("format") != STATS_FORMAT:
            got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"data must have format {STATS_FORMAT!r}, got {got!r}")
        version = data.get("format_version")
        if version != STATS_FORMAT_VERSION:
            raise ValueError(
                f"data must have format_version {STATS_FORMAT_VERSION}, got {version!r}"
            )
        stats = cls()
        for name, entry in dict(data.get("layers", {})).items():
            try:
                counts = torch.tensor(entry["counts"], dtype=torch.long)
                kept = torch.tensor(entry["kept_counts"], dtype=torch.long)
                seen, top_k = int(entry["num_sub_tokens"]), int(entry["top_k"])
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"layer {name!r} entry is malformed: {error}") from error
            if counts.ndim != 1 or counts.shape != kept.shape or bool((counts < 0).any()):
                raise ValueError(
                    f"layer {name!r} must have non-negative counts and kept_counts of equal "
                    f"length, got {entry['counts']!r} and {entry['kept_counts']!r}"
                )
            stats.counts[name], stats.kept_counts[name] = counts, kept
            stats.num_sub_tokens[name], stats.top_k[name] = seen, top_k
        return stats

    def save(self, path: StrPath, tau: float | None = None) -> Path:
        """Write :meth:`to_dict` as JSON, atomically.

        Args:
            path (str | os.PathLike[str]): the file to write.
            tau (float | None): threshold for ``active_share``. Default: None

        Returns:
            Path: the written path.
        """
        return atomic_write_json(path, self.to_dict(tau))

    @classmethod
    def load(cls, path: StrPath) -> ExpertStats:
        """Read statistics written by :meth:`save`.

        Args:
            path (str | os.PathLike[str]): the JSON file.

        Returns:
            ExpertStats: the restored statistics.

        Raises:
            ValueError: if the file is not valid JSON of this format and version.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"path must hold JSON expert statistics, {path}: {error}") from error
        return cls.from_dict(data)

    # ------------------------------------------------------------------ plotting

    def matrix(self, *, kept: bool = False) -> Tensor:
        """Layers × experts frequency matrix (rows in :attr:`layers` order, NaN-padded).

        Args:
            kept (bool): use the assignments kept after capacity drops. Default: False

        Returns:
            Tensor: float64 ``(num_layers, max_E)``; a layer with fewer experts is padded with NaN.
        """
        freqs = self.frequencies(kept=kept)
        width = max((f.numel() for f in freqs.values()), default=0)
        out = torch.full((len(freqs), width), math.nan, dtype=torch.float64)
        for row, freq in enumerate(freqs.values()):
            out[row, : freq.numel()] = freq
        return out

    def plot_heatmap(
        self, path: StrPath, *, kept: bool = False, title: str | None = None, dpi: int = 120
    ) -> Path:
        """Draw the layers × experts selection-frequency heatmap and write it atomically.

        The file type follows the suffix (``.png``, ``.pdf``, ``.svg``, …). Colours show each
        expert's share of its layer's assignments in percent, one row per MoE layer, like the
        paper's activation figure.

        Args:
            path (str | os.PathLike[str]): the image file to write.
            kept (bool): plot the assignments kept after capacity drops. Default: False
            title (str | None): figure title; None gives a default. Default: None
            dpi (int): resolution for raster formats. Default: 120

        Returns:
            Path: the written path.

        Raises:
            ValueError: if nothing was recorded yet or the suffix is not an image format.
        """
        if not self.counts:
            raise ValueError("no routing was recorded yet: run a forward pass inside track()")
        suffix = Path(path).suffix.lower().lstrip(".")
        if suffix not in ("png", "pdf", "svg", "jpg", "jpeg"):
            raise ValueError(f"path must end in .png, .pdf, .svg or .jpg, got {str(path)!r}")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        values = self.matrix(kept=kept).numpy() * 100.0
        num_layers, num_experts = values.shape
        figure = Figure(
            figsize=(min(16.0, 2.0 + 0.25 * num_experts), 1.2 + 0.35 * num_layers), dpi=dpi
        )
        FigureCanvasAgg(figure)  # the Agg canvas: no display or global pyplot state needed
        axes = figure.add_subplot(1, 1, 1)
        image = axes.imshow(
            values, aspect="auto", cmap="viridis", vmin=0.0, interpolation="nearest"
        )
        axes.set_xlabel("expert")
        axes.set_ylabel("MoE layer")
        axes.set_yticks(range(num_layers), labels=self.layers)
        active = self.active_share(kept=kept)
        mean_active = _mean(active.values())
        default = f"expert selection share (active share {mean_active:.1%}, τ = 1/(2E))"
        axes.set_title(default if title is None else title, fontsize=9)
        figure.colorbar(image, ax=axes, label="% of layer's assignments")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="jpeg" if suffix == "jpg" else suffix)
        return atomic_write_bytes(path, buffer.getvalue())


def _mean(values: Any) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value
