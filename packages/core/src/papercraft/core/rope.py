"""Rotary position embeddings (RoPE), both channel layouts, with context-extension scaling.

Implements RoFormer (Su et al., 2021, "RoFormer: Enhanced Transformer with Rotary Position
Embedding", Section 3.2 and the efficient element-wise form of Section 3.4.2): channel pair ``i``
of a query or key at position ``m`` is rotated by the angle ``m · θ_i`` with
``θ_i = base^(-2i/d)``, so that ``<R(m) q, R(n) k>`` depends on ``m - n`` only.

Two channel layouts are in use and both are supported:

- ``"interleaved"`` (RoFormer, GPT-J, Meta's original Llama checkpoints): pairs
  ``(x0, x1), (x2, x3), …``.
- ``"half"`` (rotate-half; GPT-NeoX and Hugging Face Llama): pairs ``(x_i, x_{i + r/2})``.

The two differ by a fixed permutation of channels; :func:`convert_rope_layout` and
:func:`convert_qk_weight_layout` move activations and q/k projection weights between them.

Scaling for longer contexts (:class:`RoPEScaling`):

- ``"linear"`` — position interpolation (Chen et al., 2023): positions divided by ``factor``.
- ``"ntk"`` — static NTK-aware scaling: ``base' = base · factor^(d / (d - 2))``.
- ``"dynamic"`` — dynamic NTK as in transformers: for a sequence length ``L`` above
  ``max_position_embeddings`` the base becomes
  ``base · (factor · L / max_pos - (factor - 1))^(d / (d - 2))``; at or below it nothing changes.
  Recomputed on every call.

Conventions: activations are ``(B, H, T, D)``; ``cos``/``sin`` hold one value per rotated *pair*,
shape ``(T, r/2)`` or ``(B, T, r/2)``, and are the same for both layouts. Angles, ``cos`` and ``sin``
are computed in fp32 (inverse frequencies in fp64 first); the rotation runs in at least fp32 and
the result is cast back to the input's dtype. Positions may be integer or float, shape ``(T,)``
or ``(B, T)``, so grouped (``pos // G``, SelfExtend), shifted and fractional (interpolated)
positions all work. Integer positions are exact in fp32 up to 2**24.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypeGuard, get_args

import torch
from torch import Tensor, nn

__all__ = [
    "FreqExponents",
    "RoPELayout",
    "RoPEScaling",
    "RotaryEmbedding",
    "ScalingKind",
    "apply_rope",
    "convert_qk_weight_layout",
    "convert_rope_layout",
    "rope_cos_sin",
    "rope_inv_freq",
    "rope_layout_permutation",
]

RoPELayout = Literal["interleaved", "half"]
ScalingKind = Literal["linear", "ntk", "dynamic"]
FreqExponents = Literal["arange", "linspace"]

_LAYOUTS: tuple[str, ...] = get_args(RoPELayout)
_SCALING_KINDS: tuple[str, ...] = get_args(ScalingKind)
_FREQ_EXPONENTS: tuple[str, ...] = get_args(FreqExponents)


@dataclass(frozen=True)
class RoPEScaling:
    """How to stretch RoPE beyond the context length a model was trained on.

    Args:
        kind (ScalingKind): ``"linear"`` (position interpolation: positions / factor), ``"ntk"``
            (static NTK-aware base scaling) or ``"dynamic"`` (dynamic NTK, recomputed from the
            current sequence length).
        factor (float): scaling factor, ``>= 1`` (``1`` leaves linear and ntk unchanged).
        max_position_embeddings (int | None): the trained context length; required for
            ``"dynamic"``, which leaves sequences up to this length unchanged. Default: None.

    Raises:
        ValueError: if ``kind`` is unknown, ``factor`` is not a finite number ``>= 1``, or
            ``max_position_embeddings`` is missing for ``"dynamic"`` or not a positive int.
    """

    kind: ScalingKind
    factor: float
    max_position_embeddings: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _SCALING_KINDS:
            raise ValueError(f"kind must be one of {_SCALING_KINDS}, got {self.kind!r}")
        if not _is_real(self.factor) or self.factor < 1.0:
            raise ValueError(f"factor must be a finite number >= 1, got {self.factor!r}")
        mpe = self.max_position_embeddings
        if mpe is not None and (not _is_int(mpe) or mpe <= 0):
            raise ValueError(f"max_position_embeddings must be a positive int or None, got {mpe!r}")
        if self.kind == "dynamic" and mpe is None:
            raise ValueError("max_position_embeddings is required when kind='dynamic'")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_rotary_dim(dim: object, name: str = "dim") -> int:
    if not _is_int(dim) or dim < 2 or dim % 2:
        raise ValueError(f"{name} must be an even int >= 2, got {dim!r}")
    return dim


def _check_base(base: object) -> None:
    if not _is_real(base) or base <= 0:
        raise ValueError(f"base must be a positive finite number, got {base!r}")


def _check_layout(layout: object, name: str = "layout") -> None:
    if layout not in _LAYOUTS:
        raise ValueError(f"{name} must be one of {_LAYOUTS}, got {layout!r}")


def _check_position_ids(position_ids: object) -> Tensor:
    if not isinstance(position_ids, Tensor):
        raise TypeError(f"position_ids must be a torch.Tensor, got {type(position_ids).__name__}")
    if position_ids.ndim not in (1, 2):
        raise ValueError(
            f"position_ids must have shape (T,) or (B, T), got shape {tuple(position_ids.shape)}"
        )
    if position_ids.dtype == torch.bool or position_ids.is_complex():
        raise ValueError(f"position_ids must be integer or real float, got {position_ids.dtype}")
    return position_ids


def _infer_seq_len(position_ids: Tensor) -> float:
    """Current sequence length for dynamic NTK, as transformers does: ``max(position_ids) + 1``."""
    if position_ids.numel() == 0:
        return 0.0
    return float(position_ids.max().item()) + 1.0


def rope_inv_freq(
    dim: int,
    *,
    base: float = 10000.0,
    scaling: RoPEScaling | None = None,
    seq_len: float | None = None,
    freq_exponents: FreqExponents = "arange",
    device: torch.device | str | None = None,
) -> Tensor:
    """Inverse frequencies ``θ_i`` of the ``dim / 2`` rotated channel pairs.

    Computed in fp64 and returned in fp32. Linear scaling is folded in (``θ_i / factor`` is the
    same as dividing positions by ``factor``).

    Args:
        dim (int): rotary dimension (number of rotated channels), even.
        base (float): RoPE base ``θ``. Default: 10000.0.
        scaling (RoPEScaling | None): context-extension scaling. Default: None.
        seq_len (float | None): current sequence length; required for ``"dynamic"`` scaling,
            ignored otherwise. Default: None.
        freq_exponents (FreqExponents): ``"arange"`` gives exponents ``2i / dim`` (RoFormer,
            Llama); ``"linspace"`` gives ``linspace(0, 1, dim / 2)`` (the official YOCO/RetNet
            code). Default: "arange".
        device (torch.device | str | None): device of the result. Default: None (CPU).

    Returns:
        Tensor: fp32 tensor of shape ``(dim // 2,)``.

    Raises:
        ValueError: if ``dim`` is not an even int >= 2 (> 2 for ntk/dynamic), ``base`` is not a
            positive finite number, ``seq_len`` is missing for dynamic scaling or negative, or
            ``freq_exponents`` is unknown.
    """
    _check_rotary_dim(dim)
    _check_base(base)
    if freq_exponents not in _FREQ_EXPONENTS:
        raise ValueError(f"freq_exponents must be one of {_FREQ_EXPONENTS}, got {freq_exponents!r}")
    if scaling is not None and not isinstance(scaling, RoPEScaling):
        raise TypeError(f"scaling must be a RoPEScaling or None, got {type(scaling).__name__}")
    if seq_len is not None and (not _is_real(seq_len) or seq_len < 0):
        raise ValueError(f"seq_len must be a non-negative number or None, got {seq_len!r}")

    eff_base = float(base)
    if scaling is not None and scaling.kind in ("ntk", "dynamic"):
        if dim <= 2:
            raise ValueError(f"dim must be > 2 for {scaling.kind!r} scaling, got {dim}")
        exponent = dim / (dim - 2)
        if scaling.kind == "ntk":
            eff_base = eff_base * scaling.factor**exponent
        else:
            if seq_len is None:
                raise ValueError("seq_len is required for 'dynamic' scaling")
            max_pos = scaling.max_position_embeddings
            assert max_pos is not None  # enforced by RoPEScaling
            if seq_len > max_pos:
                stretch = scaling.factor * seq_len / max_pos - (scaling.factor - 1.0)
                eff_base = eff_base * stretch**exponent

    # computed on the CPU explicitly: under a ``torch.device("meta")`` context (transformers'
    # ``from_pretrained``) a default-device tensor would be meta and could not be copied
    if freq_exponents == "arange":
        exponents = torch.arange(0, dim, 2, dtype=torch.float64, device="cpu") / dim
    else:
        exponents = torch.linspace(0.0, 1.0, dim // 2, dtype=torch.float64, device="cpu")
    inv_freq = 1.0 / (eff_base**exponents)  # (dim/2,)
    if scaling is not None and scaling.kind == "linear":
        inv_freq = inv_freq / scaling.factor
    return inv_freq.to(device=device, dtype=torch.float32)


def _cos_sin_from_inv_freq(
    position_ids: Tensor, inv_freq: Tensor, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    # angles in fp32: (..., T, 1) * (r/2,) -> (..., T, r/2)
    angles = position_ids.to(device=inv_freq.device, dtype=torch.float32)[..., None] * inv_freq
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rope_cos_sin(
    position_ids: Tensor,
    *,
    dim: int,
    base: float = 10000.0,
    scaling: RoPEScaling | None = None,
    seq_len: float | None = None,
    freq_exponents: FreqExponents = "arange",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Cosines and sines of the rotation angles ``position · θ_i``, one per channel pair.

    Args:
        position_ids (Tensor): positions, shape ``(T,)`` or ``(B, T)``, integer or float.
        dim (int): rotary dimension (number of rotated channels), even.
        base (float): RoPE base ``θ``. Default: 10000.0.
        scaling (RoPEScaling | None): context-extension scaling. Default: None.
        seq_len (float | None): sequence length for dynamic scaling. Default: None, meaning
            ``max(position_ids) + 1`` (as transformers; this reads one value back from the device).
        freq_exponents (FreqExponents): see :func:`rope_inv_freq`. Default: "arange".
        dtype (torch.dtype): dtype of the returned tensors; angles are always fp32.
            Default: torch.float32.
        device (torch.device | str | None): device of the result. Default: None (that of
            ``position_ids``).

    Returns:
        tuple[Tensor, Tensor]: ``(cos, sin)``, each of shape ``(T, dim // 2)`` or
        ``(B, T, dim // 2)``, following ``position_ids``.

    Raises:
        TypeError: if ``position_ids`` is not a tensor.
        ValueError: if ``position_ids`` has the wrong rank or dtype, or for the errors of
            :func:`rope_inv_freq`.
    """
    _check_position_ids(position_ids)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    if scaling is not None and scaling.kind == "dynamic" and seq_len is None:
        seq_len = _infer_seq_len(position_ids)
    target = position_ids.device if device is None else torch.device(device)
    inv_freq = rope_inv_freq(
        dim,
        base=base,
        scaling=scaling,
        seq_len=seq_len,
        freq_exponents=freq_exponents,
        device=target,
    )
    return _cos_sin_from_inv_freq(position_ids, inv_freq, dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor, *, layout: RoPELayout = "half") -> Tensor:
    """Rotate the first ``r = 2 · cos.shape[-1]`` channels of ``x``; pass the rest through.

    Each pair ``(a, b)`` becomes ``(a cos - b sin, b cos + a sin)``. The pairs are
    ``(x_{2i}, x_{2i+1})`` for ``layout="interleaved"`` and ``(x_i, x_{i + r/2})`` for
    ``layout="half"`` (both within the first ``r`` channels, so partial rotary works the same
    way in both layouts). Runs in at least fp32 and returns ``x``'s dtype.

    Args:
        x (Tensor): queries or keys, shape ``(B, H, T, D)``.
        cos (Tensor): from :func:`rope_cos_sin`, shape ``(T, r/2)`` or ``(B, T, r/2)`` (a batch
            dim of 1 broadcasts), with ``r <= D``.
        sin (Tensor): same shape as ``cos``.
        layout (RoPELayout): ``"interleaved"`` or ``"half"``. Default: "half".

    Returns:
        Tensor: rotated ``x``, same shape and dtype.

    Raises:
        ValueError: if the shapes, dtypes or ``layout`` do not fit the description above.
    """
    _check_layout(layout)
    if x.ndim != 4:
        raise ValueError(f"x must have 4 dims (B, H, T, D), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor, got {x.dtype}")
    if cos.shape != sin.shape:
        raise ValueError(
            f"cos and sin must have the same shape, got {tuple(cos.shape)} and {tuple(sin.shape)}"
        )
    if not (cos.is_floating_point() and sin.is_floating_point()):
        raise ValueError(f"cos and sin must be floating tensors, got {cos.dtype} and {sin.dtype}")
    batch, _, seq, head_dim = x.shape
    if cos.ndim not in (2, 3) or cos.shape[-2] != seq or cos.shape[-1] < 1:
        raise ValueError(
            f"cos must have shape (T, r/2) or (B, T, r/2) with T={seq}, got {tuple(cos.shape)}"
        )
    if cos.ndim == 3 and cos.shape[0] not in (1, batch):
        raise ValueError(f"cos batch dim must be 1 or {batch} (x's batch), got {cos.shape[0]}")
    half = cos.shape[-1]
    rot = 2 * half
    if rot > head_dim:
        raise ValueError(
            f"cos/sin rotate {rot} channels (2 * cos.shape[-1]) but x has only D={head_dim}"
        )

    compute = torch.promote_types(torch.promote_types(x.dtype, cos.dtype), torch.float32)
    if cos.ndim == 3:  # (B, T, r/2) -> (B, 1, T, r/2), broadcast over heads
        cos, sin = cos[:, None], sin[:, None]
    cos, sin = cos.to(compute), sin.to(compute)
    x_rot = x[..., :rot].to(compute)  # (B, H, T, r)

    if layout == "half":
        a, b = x_rot[..., :half], x_rot[..., half:]
        out = torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)
    else:
        pairs = x_rot.unflatten(-1, (half, 2))  # (B, H, T, r/2, 2)
        a, b = pairs[..., 0], pairs[..., 1]
        out = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)
    out = out.to(x.dtype)
    if rot == head_dim:
        return out
    return torch.cat((out, x[..., rot:]), dim=-1)


def rope_layout_permutation(
    dim: int, *, src: RoPELayout, dst: RoPELayout, rotary_dim: int | None = None
) -> Tensor:
    """Channel permutation that turns a ``src``-layout head vector into a ``dst``-layout one.

    ``x_dst = x_src[..., perm]``. Only the first ``rotary_dim`` channels move.

    Args:
        dim (int): head dimension ``D``.
        src (RoPELayout): layout of the input.
        dst (RoPELayout): wanted layout.
        rotary_dim (int | None): rotated channels, even and ``<= dim``. Default: None (``dim``).

    Returns:
        Tensor: int64 tensor of shape ``(dim,)``.

    Raises:
        ValueError: on an unknown layout or a ``dim``/``rotary_dim`` that does not fit.
    """
    _check_layout(src, "src")
    _check_layout(dst, "dst")
    if not _is_int(dim) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    rot = _check_rotary_dim(dim if rotary_dim is None else rotary_dim, "rotary_dim")
    if rot > dim:
        raise ValueError(f"rotary_dim must be <= dim ({dim}), got {rot}")
    perm = torch.arange(dim)
    half = rot // 2
    if src == "interleaved" and dst == "half":
        # half[i] = inter[2i], half[half + i] = inter[2i + 1]
        perm[:rot] = torch.cat((torch.arange(0, rot, 2), torch.arange(1, rot, 2)))
    elif src == "half" and dst == "interleaved":
        # inter[2i] = half[i], inter[2i + 1] = half[half + i]
        perm[:rot] = torch.stack((torch.arange(half), torch.arange(half, rot)), dim=-1).flatten()
    return perm


def convert_rope_layout(
    x: Tensor, *, src: RoPELayout, dst: RoPELayout, rotary_dim: int | None = None
) -> Tensor:
    """Permute the last (head) dimension of ``x`` from layout ``src`` to ``dst``.

    Args:
        x (Tensor): per-head vectors, shape ``(..., D)``.
        src (RoPELayout): layout of ``x``.
        dst (RoPELayout): wanted layout.
        rotary_dim (int | None): rotated channels. Default: None (``D``).

    Returns:
        Tensor: ``x`` with its last dim permuted (a new tensor).

    Raises:
        ValueError: see :func:`rope_layout_permutation`; also if ``x`` is 0-dimensional.
    """
    if x.ndim < 1:
        raise ValueError("x must have at least 1 dim (..., D), got a scalar")
    perm = rope_layout_permutation(x.shape[-1], src=src, dst=dst, rotary_dim=rotary_dim)
    return x[..., perm.to(x.device)]


def convert_qk_weight_layout(
    weight: Tensor,
    *,
    num_heads: int,
    src: RoPELayout,
    dst: RoPELayout,
    rotary_dim: int | None = None,
) -> Tensor:
    """Permute a q or k projection's output rows so that its heads come out in layout ``dst``.

    For ``nn.Linear`` weights ``(num_heads · head_dim, in_features)`` or biases
    ``(num_heads · head_dim,)``, heads stacked along dim 0. Converting Meta's interleaved Llama
    checkpoints to the Hugging Face rotate-half layout is ``src="interleaved", dst="half"``.

    Args:
        weight (Tensor): weight or bias, rows grouped by head.
        num_heads (int): number of heads stacked in ``weight``'s first dim.
        src (RoPELayout): layout the weight produces now.
        dst (RoPELayout): wanted layout.
        rotary_dim (int | None): rotated channels per head. Default: None (all of head_dim).

    Returns:
        Tensor: permuted copy, same shape as ``weight``.

    Raises:
        ValueError: if ``weight`` is not 1- or 2-dimensional, ``num_heads`` is not a positive int
            dividing ``weight.shape[0]``, or as :func:`rope_layout_permutation`.
    """
    if weight.ndim not in (1, 2):
        raise ValueError(
            f"weight must have shape (H*D, in) or (H*D,), got shape {tuple(weight.shape)}"
        )
    if not _is_int(num_heads) or num_heads < 1:
        raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
    if weight.shape[0] % num_heads:
        raise ValueError(
            f"weight.shape[0] ({weight.shape[0]}) must be divisible by num_heads ({num_heads})"
        )
    head_dim = weight.shape[0] // num_heads
    perm = rope_layout_permutation(head_dim, src=src, dst=dst, rotary_dim=rotary_dim)
    per_head = weight.reshape(num_heads, head_dim, *weight.shape[1:])
    return per_head[:, perm.to(weight.device)].reshape(weight.shape)


class RotaryEmbedding(nn.Module):
    """Rotary embedding for queries and keys of shape ``(B, H, T, D)``.

    Holds no parameters or buffers (so ``model.to(torch.bfloat16)`` cannot degrade the
    frequencies); the static inverse frequencies are cached per device, and dynamic NTK
    frequencies are recomputed on every call from the current sequence length.

    Args:
        head_dim (int): per-head dimension ``D``.
        rotary_dim (int | None): number of rotated channels (the first ones), even and
            ``<= head_dim``; frequencies are computed over this dimension. Default: None
            (``head_dim``).
        base (float): RoPE base ``θ``. Default: 10000.0.
        layout (RoPELayout): ``"half"`` (Hugging Face Llama/NeoX) or ``"interleaved"``
            (RoFormer/GPT-J). Default: "half".
        scaling (RoPEScaling | None): context-extension scaling. Default: None.
        freq_exponents (FreqExponents): see :func:`rope_inv_freq`. Default: "arange".

    Raises:
        ValueError: on a bad ``head_dim``, ``rotary_dim``, ``base``, ``layout`` or combination
            (e.g. ntk scaling with ``rotary_dim == 2``).
    """

    def __init__(
        self,
        head_dim: int,
        *,
        rotary_dim: int | None = None,
        base: float = 10000.0,
        layout: RoPELayout = "half",
        scaling: RoPEScaling | None = None,
        freq_exponents: FreqExponents = "arange",
    ) -> None:
        super().__init__()
        if not _is_int(head_dim) or head_dim < 2:
            raise ValueError(f"head_dim must be an int >= 2, got {head_dim!r}")
        rot = _check_rotary_dim(head_dim if rotary_dim is None else rotary_dim, "rotary_dim")
        if rot > head_dim:
            raise ValueError(f"rotary_dim must be <= head_dim ({head_dim}), got {rot}")
        _check_layout(layout)
        _check_base(base)
        if scaling is not None and not isinstance(scaling, RoPEScaling):
            raise TypeError(f"scaling must be a RoPEScaling or None, got {type(scaling).__name__}")
        if scaling is not None and scaling.kind in ("ntk", "dynamic") and rot <= 2:
            raise ValueError(f"rotary_dim must be > 2 for {scaling.kind!r} scaling, got {rot}")
        self.head_dim = head_dim
        self.rotary_dim = rot
        self.base = float(base)
        self.layout: RoPELayout = layout
        self.scaling = scaling
        self.freq_exponents: FreqExponents = freq_exponents
        self._inv_freq_cache: dict[torch.device, Tensor] = {}
        # validates freq_exponents now rather than on the first forward
        self._static_inv_freq(torch.device("cpu"))

    def _static_inv_freq(self, device: torch.device) -> Tensor:
        cached = self._inv_freq_cache.get(device)
        if cached is None:
            static_scaling = self.scaling
            if static_scaling is not None and static_scaling.kind == "dynamic":
                static_scaling = None  # identical below max_position_embeddings
            cached = rope_inv_freq(
                self.rotary_dim,
                base=self.base,
                scaling=static_scaling,
                freq_exponents=self.freq_exponents,
                device=device,
            )
            self._inv_freq_cache[device] = cached
        return cached

    def inv_freq(
        self, *, seq_len: float | None = None, device: torch.device | None = None
    ) -> Tensor:
        """Inverse frequencies in use for a sequence of length ``seq_len``.

        Args:
            seq_len (float | None): current sequence length (matters only for dynamic scaling).
                Default: None (no dynamic stretch).
            device (torch.device | None): device of the result. Default: None (CPU).

        Returns:
            Tensor: fp32 tensor of shape ``(rotary_dim // 2,)``.
        """
        target = torch.device("cpu") if device is None else torch.device(device)
        scaling = self.scaling
        if (
            scaling is not None
            and scaling.kind == "dynamic"
            and seq_len is not None
            and scaling.max_position_embeddings is not None
            and seq_len > scaling.max_position_embeddings
        ):
            return rope_inv_freq(
                self.rotary_dim,
                base=self.base,
                scaling=scaling,
                seq_len=seq_len,
                freq_exponents=self.freq_exponents,
                device=target,
            )
        return self._static_inv_freq(target)

    def cos_sin(
        self, position_ids: Tensor, *, seq_len: float | None = None
    ) -> tuple[Tensor, Tensor]:
        """fp32 ``(cos, sin)`` for ``position_ids``, to share across layers with :func:`apply_rope`.

        Args:
            position_ids (Tensor): shape ``(T,)`` or ``(B, T)``, integer or float.
            seq_len (float | None): sequence length for dynamic scaling. Default: None
                (``max(position_ids) + 1``).

        Returns:
            tuple[Tensor, Tensor]: each of shape ``(T, rotary_dim/2)`` or ``(B, T, rotary_dim/2)``.
        """
        _check_position_ids(position_ids)
        if self.scaling is not None and self.scaling.kind == "dynamic" and seq_len is None:
            seq_len = _infer_seq_len(position_ids)
        inv_freq = self.inv_freq(seq_len=seq_len, device=position_ids.device)
        return _cos_sin_from_inv_freq(position_ids, inv_freq, torch.float32)

    def forward(
        self, q: Tensor, k: Tensor, position_ids: Tensor, *, seq_len: float | None = None
    ) -> tuple[Tensor, Tensor]:
        """Rotate queries and keys that share the positions ``position_ids``.

        Args:
            q (Tensor): queries, shape ``(B, Hq, T, head_dim)``.
            k (Tensor): keys, shape ``(B, Hk, T, head_dim)`` (``Hk`` may differ from ``Hq``).
            position_ids (Tensor): shape ``(T,)`` or ``(B, T)`` (or ``(1, T)``).
            seq_len (float | None): sequence length for dynamic scaling. Default: None
                (``max(position_ids) + 1``).

        Returns:
            tuple[Tensor, Tensor]: rotated ``(q, k)`` in their input dtypes.

        Raises:
            ValueError: if the shapes do not match each other, ``head_dim`` or ``position_ids``.
        """
        for name, t in (("q", q), ("k", k)):
            if t.ndim != 4 or t.shape[-1] != self.head_dim:
                raise ValueError(
                    f"{name} must have shape (B, H, T, {self.head_dim}), got {tuple(t.shape)}"
                )
        if q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
            raise ValueError(
                f"q and k must share B and T, got shapes {tuple(q.shape)} and {tuple(k.shape)}"
            )
        _check_position_ids(position_ids)
        batch, _, seq, _ = q.shape
        if position_ids.shape[-1] != seq or (
            position_ids.ndim == 2 and position_ids.shape[0] not in (1, batch)
        ):
            raise ValueError(
                f"position_ids must have shape ({seq},), (1, {seq}) or ({batch}, {seq}), "
                f"got {tuple(position_ids.shape)}"
            )
        cos, sin = self.cos_sin(position_ids, seq_len=seq_len)
        return (
            apply_rope(q, cos, sin, layout=self.layout),
            apply_rope(k, cos, sin, layout=self.layout),
        )

    def extra_repr(self) -> str:
        return (
            f"head_dim={self.head_dim}, rotary_dim={self.rotary_dim}, base={self.base}, "
            f"layout={self.layout!r}, scaling={self.scaling}, freq_exponents={self.freq_exponents!r}"
        )
