"""Training-free context extension of Hugging Face encoders (LongEmbed, arXiv 2404.12096).

:func:`extend` turns an encoder trained on ``L_o`` tokens into one that takes ``L_t`` tokens, with
one of the paper's strategies:

Absolute position embeddings (BERT family: a learned table of ``L_o`` rows)

- ``pcw`` — parallel context windows: the model is unchanged; :class:`~papercraft.longembed.LongEmbedder`
  cuts documents into ``L_o``-token chunks, encodes each and averages the chunk embeddings.
- ``gp`` — grouped positions: position ``p`` of an ``n``-token input reads row ``p // ceil(n / L_o)``.
- ``rp`` — recurrent positions: row ``p % L_o``.
- ``pi`` — position interpolation: a new table of ``L_t`` rows with ``E_t[i·s] = E_o[i]``
  (``s = L_t / L_o``), the rows in between linearly interpolated and those past ``(L_o − 1)·s``
  clamped to the last original row; inputs of at most ``L_o`` tokens read rows ``p·s``, so they give
  exactly the original model's output.

Rotary position embeddings (RoPE encoders, and decoder LMs used as embedders)

- ``ntk`` — a larger RoPE base, ``θ' = θ·λ``, with the paper's ``λ = 3 / 5 / 10`` for
  ``s = 2 / 4 / 8`` (other ``s``: the NTK-aware ``s^(d/(d−2))``; or pass ``base_multiplier``).
- ``pi`` — linear RoPE scaling by ``s`` (``rope_type="linear"``).
- ``selfextend`` — SelfExtend, bidirectional: keys within ``window`` of a query keep their exact
  relative position; farther ones use grouped positions (``p // group``, the query's shifted by
  ``window − window // group``; the upper triangle mirrors the lower). Inputs shorter than ``L_o``
  use plain attention.

Attention scaling, as the paper applies it at inference: each input's queries are multiplied by
``max(1, ln n / ln L_o)``, ``n`` its number of non-padding tokens (``attention_scaling=False`` turns
it off). It runs in a registered transformers attention function (``"papercraft_longembed"``)
around torch's ``scaled_dot_product_attention``; SelfExtend computes its merged logits there too.

The choices live in ``model.config.longembed`` (a dict, format version 1), so an extended model
saves with ``save_pretrained``. :func:`load_extended` reloads it with everything in place. A plain
``AutoModel.from_pretrained`` also loads it where the method changed only weights and config
(``pi``, ``ntk``) but then runs without the attention scaling, the short-input rule of APE ``pi``,
and the position rules of ``gp``/``rp``/``selfextend``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "APE_METHODS",
    "ATTENTION_NAME",
    "ROPE_METHODS",
    "ExtensionInfo",
    "default_selfextend",
    "extend",
    "extension_info",
    "interpolate_positions",
    "load_extended",
    "ntk_base_multiplier",
    "original_length",
    "position_kind",
]

APE_METHODS = ("pcw", "gp", "rp", "pi")
ROPE_METHODS = ("ntk", "selfextend", "pi")
ATTENTION_NAME = "papercraft_longembed"
FORMAT_VERSION = 1
_CONFIG_KEY = "longembed"
_ROBERTA_TYPES = frozenset({"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"})
_PAPER_NTK = {2: 3.0, 4: 5.0, 8: 10.0}  # s -> λ, the paper's Table (E5-RoPE / E5-Mistral)
_PAPER_SELFEXTEND = {2: (3, 256), 4: (5, 128), 8: (9, 64)}  # s -> (group, window) for L_o = 512
_ROPE_TYPES_FOR_SELFEXTEND = frozenset({"default", "linear"})


@dataclass(frozen=True)
class ExtensionInfo:
    """How a model was extended (``model.config.longembed``).

    Args:
        method (str): one of :data:`APE_METHODS` / :data:`ROPE_METHODS`.
        original_length (int): ``L_o``, the context the model was trained on.
        target_length (int): ``L_t``, the longest input the extended model takes.
        attention_scaling (bool): queries scaled by ``max(1, ln n / ln L_o)``.
        position (str): ``"absolute"`` or ``"rope"``.
        options (dict[str, Any]): method options (e.g. ``group``/``window``, ``base_multiplier``).
    """

    method: str
    original_length: int
    target_length: int
    attention_scaling: bool
    position: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        """``s = L_t / L_o``."""
        return self.target_length / self.original_length

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExtensionInfo:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"config.longembed has format_version {version!r}; this papercraft-longembed "
                f"reads version {FORMAT_VERSION}"
            )
        return cls(
            method=str(data["method"]),
            original_length=int(data["original_length"]),
            target_length=int(data["target_length"]),
            attention_scaling=bool(data["attention_scaling"]),
            position=str(data["position"]),
            options=dict(data.get("options") or {}),
        )


def extension_info(model_or_config: Any) -> ExtensionInfo | None:
    """The :class:`ExtensionInfo` stored on a model or config, or None if it is not extended."""
    config = getattr(model_or_config, "config", model_or_config)
    data = getattr(config, _CONFIG_KEY, None)
    if not data:
        return None
    if not isinstance(data, Mapping):
        raise ValueError(f"config.longembed must be a dict, got {type(data).__name__}")
    return ExtensionInfo.from_dict(data)


# ------------------------------------------------------------------------------------------------
# Model inspection


def _base(model: nn.Module) -> nn.Module:
    base = getattr(model, "base_model", model)
    return base if isinstance(base, nn.Module) else model


def _position_table(model: nn.Module) -> nn.Embedding | None:
    embeddings = getattr(_base(model), "embeddings", None)
    table = getattr(embeddings, "position_embeddings", None)
    return table if isinstance(table, nn.Embedding) else None


def _inv_freqs(module: nn.Module) -> list[Tensor]:
    """A rotary module's frequency buffers: ``inv_freq``, or one per layer type
    (``<layer_type>_inv_freq``, ModernBERT); the ``original_*`` copies are skipped."""
    return [
        buffer
        for name, buffer in module.named_buffers(recurse=False)
        if name.endswith("inv_freq") and not name.startswith("original")
    ]


def _rotary_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [
        (name, module)
        for name, module in model.named_modules()
        if type(module).__name__.endswith("RotaryEmbedding") and _inv_freqs(module)
    ]


def _position_offset(config: Any) -> int:
    """RoBERTa-style models number positions from ``pad_token_id + 1``."""
    if getattr(config, "model_type", None) in _ROBERTA_TYPES:
        return int(getattr(config, "pad_token_id", 1) or 0) + 1
    return 0


def position_kind(model: nn.Module) -> str:
    """``"absolute"`` (a learned position table), ``"rope"`` (rotary) or ``"unsupported"``."""
    config = getattr(model, "config", None)
    if _position_table(model) is not None:
        kind = getattr(config, "position_embedding_type", "absolute")
        return "absolute" if kind in (None, "absolute") else "unsupported"
    if _rotary_modules(model) and getattr(config, "rope_parameters", None) is not None:
        return "rope"
    return "unsupported"


def original_length(model: nn.Module) -> int:
    """The context ``L_o`` the model was trained on (before any extension).

    Args:
        model (nn.Module): a transformers encoder.

    Returns:
        int: for an extended model, the recorded ``original_length``; else the number of position
        rows (without RoBERTa's offset) or, for RoPE models, ``config.max_position_embeddings``.
    """
    info = extension_info(model)
    if info is not None:
        return info.original_length
    config = getattr(model, "config", None)
    table = _position_table(model)
    if table is not None:
        return int(table.num_embeddings) - _position_offset(config)
    value = getattr(config, "max_position_embeddings", None)
    if value is None:
        raise ValueError("cannot tell the model's trained context: pass original_length=")
    return int(value)


# ------------------------------------------------------------------------------------------------
# Method maths (pure functions, tested on their own)


def interpolate_positions(table: Tensor, target_rows: int) -> Tensor:
    """Linear interpolation of a position table (PI for absolute positions).

    Args:
        table (Tensor): ``(L_o, d)`` original rows.
        target_rows (int): ``L_t``, a multiple of ``L_o``.

    Returns:
        Tensor: ``(L_t, d)`` with ``E_t[i·s] = E_o[i]`` exactly (``s = L_t / L_o``), rows in between
        linearly interpolated, rows past ``(L_o − 1)·s`` equal to ``E_o[L_o − 1]``.
    """
    rows = table.shape[0]
    if target_rows % rows:
        raise ValueError(f"target_rows must be a multiple of {rows}, got {target_rows}")
    scale = target_rows // rows
    source = table.detach().float()
    position = torch.arange(target_rows, dtype=torch.float64) / scale
    low = position.floor().long().clamp(max=rows - 1)
    high = (low + 1).clamp(max=rows - 1)
    frac = (position - low.double()).clamp(max=1.0).float().unsqueeze(1)
    frac = torch.where(low.unsqueeze(1) == rows - 1, torch.zeros_like(frac), frac)
    out = source[low] * (1.0 - frac) + source[high] * frac
    out[::scale] = source  # exact copies at the multiples of s
    return out.to(table.dtype)


def ape_position_ids(lengths: Tensor, width: int, method: str, info: ExtensionInfo) -> Tensor:
    """Position ids ``(B, width)`` for absolute-position methods, from each input's length.

    ``gp``: ``p // ceil(n / L_o)``; ``rp``: ``p % L_o``; ``pi``: ``p·s`` when ``n ≤ L_o`` else ``p``.
    Padding positions (``p ≥ n``, masked out anyway) repeat the last real token's position, so
    they stay inside the table.
    """
    original = info.original_length
    n = lengths.clamp(min=1).unsqueeze(1)
    pos = torch.arange(width, device=lengths.device).unsqueeze(0).expand(lengths.shape[0], -1)
    pos = torch.minimum(pos, n - 1)
    if method == "gp":
        factor = torch.div(n + original - 1, original, rounding_mode="floor").clamp(min=1)
        return torch.div(pos, factor, rounding_mode="floor")
    if method == "rp":
        return pos % original
    if method == "pi":
        scale = info.target_length // original
        return torch.where(n <= original, pos * scale, pos)
    raise ValueError(f"no position rule for method {method!r}")


def ntk_base_multiplier(scale: float, rotary_dim: int) -> float:
    """The RoPE base multiplier ``λ`` for NTK extension by ``scale``.

    The paper's values for ``s = 2, 4, 8`` are ``3, 5, 10``; other scales use the NTK-aware rule
    ``s^(d/(d−2))`` with ``d`` the rotary dimension.
    """
    if scale in _PAPER_NTK:
        return _PAPER_NTK[int(scale)]
    if rotary_dim <= 2:
        raise ValueError(f"rotary_dim must be > 2, got {rotary_dim}")
    return float(scale ** (rotary_dim / (rotary_dim - 2)))


def default_selfextend(original: int, target: int) -> tuple[int, int]:
    """``(group, window)`` for SelfExtend from ``L_o`` to ``L_t``.

    The paper's settings for ``L_o = 512`` (``s = 2, 4, 8``: ``(3, 256)``, ``(5, 128)``,
    ``(9, 64)``); otherwise ``window = L_o / 4`` and the smallest group with
    ``window + (L_t − window) / group ≤ L_o``.
    """
    scale = target / original
    if original == 512 and scale in _PAPER_SELFEXTEND:
        return _PAPER_SELFEXTEND[int(scale)]
    window = max(1, original // 4)
    group = max(2, math.ceil((target - window) / (original - window)))
    return group, window


def attention_factor(lengths: Tensor, original: int) -> Tensor:
    """``max(1, ln n / ln L_o)`` per input."""
    n = lengths.clamp(min=1).double()
    return (n.log() / math.log(original)).clamp(min=1.0).float()


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _shift_rotation(x: Tensor, delta: Tensor, inv_freq: Tensor) -> Tensor:
    """Rotate already-rotated (rotate-half layout) vectors ``x`` (B, H, T, D) by ``delta`` (T,)
    more positions: ``R(p + δ) = R(δ) R(p)``. Partial rotary dims (the first ``2·len(inv_freq)``)."""
    rot = 2 * inv_freq.shape[0]
    angles = delta.to(torch.float32).unsqueeze(1) * inv_freq.to(torch.float32).unsqueeze(0)
    emb = torch.cat((angles, angles), dim=-1)  # (T, rot)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    head, tail = x[..., :rot], x[..., rot:]
    turned = head * cos + _rotate_half(head) * sin
    return torch.cat((turned, tail), dim=-1) if tail.shape[-1] else turned


# ------------------------------------------------------------------------------------------------
# Runtime state: a forward pre-hook sets the batch's lengths, the attention function reads them


class _State:
    """Shared by the model's pre-hook and its attention modules."""

    def __init__(self, info: ExtensionInfo, inv_freq: Tensor | None) -> None:
        self.info = info
        self.inv_freq = inv_freq
        self.lengths: Tensor | None = None

    def selfextend(self) -> tuple[int, int] | None:
        if self.info.method != "selfextend":
            return None
        return int(self.info.options["group"]), int(self.info.options["window"])


class _PreHook:
    """Records each input's length and, for ``gp``/``rp``/``pi`` (APE), sets ``position_ids``."""

    def __init__(self, state: _State, offset: int) -> None:
        self.state = state
        self.offset = offset

    def __call__(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        info = self.state.info
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        source = input_ids if isinstance(input_ids, Tensor) else embeds
        if not isinstance(source, Tensor):
            return args, kwargs
        batch, width = int(source.shape[0]), int(source.shape[1])
        if info.method == "pcw" and width > info.original_length:
            raise ValueError(
                f"input of {width} tokens exceeds original_length {info.original_length}: a pcw "
                "model takes long documents through LongEmbedder, which encodes them in chunks"
            )
        if width > info.target_length:
            raise ValueError(
                f"input of {width} tokens exceeds this model's target_length "
                f"{info.target_length} ({info.method}); extend to a longer target_length"
            )
        mask = kwargs.get("attention_mask")
        if mask is None and len(args) > 1 and isinstance(args[1], Tensor):
            mask = args[1]
        if isinstance(mask, Tensor) and mask.dim() == 2:
            lengths = mask.to(torch.long).sum(dim=1)
        else:
            lengths = torch.full((batch,), width, dtype=torch.long, device=source.device)
        self.state.lengths = lengths
        rule = info.position == "absolute" and info.method in ("gp", "rp", "pi")
        if rule and kwargs.get("position_ids") is None:
            ids = ape_position_ids(lengths, width, info.method, info) + self.offset
            kwargs["position_ids"] = ids
        return args, kwargs


def _repeat_heads(x: Tensor, heads: int) -> Tensor:
    groups = heads // x.shape[1]
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def _selfextend_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None,
    *,
    scale: float,
    group: int,
    window: int,
    inv_freq: Tensor,
    use_grouped: Tensor,
    dropout: float,
    training: bool,
) -> tuple[Tensor, Tensor]:
    """Merged SelfExtend attention; ``query`` (B, H, T, D) already scaled per input."""
    heads = query.shape[1]
    key, value = _repeat_heads(key, heads), _repeat_heads(value, heads)
    t, s = query.shape[2], key.shape[2]
    qpos = torch.arange(t, device=query.device)
    kpos = torch.arange(s, device=query.device)
    shift = window - window // group
    inv_freq = inv_freq.to(query.device)
    # lower triangle (key at or before the query): q at p//g + shift, k at p//g
    q_low = _shift_rotation(query, qpos // group + shift - qpos, inv_freq)
    k_low = _shift_rotation(key, kpos // group - kpos, inv_freq)
    # upper triangle (key after the query): mirrored
    q_up = _shift_rotation(query, qpos // group - qpos, inv_freq)
    k_up = _shift_rotation(key, kpos // group + shift - kpos, inv_freq)
    normal = torch.matmul(query, key.transpose(-1, -2)) * scale
    lower = torch.matmul(q_low, k_low.transpose(-1, -2)) * scale
    upper = torch.matmul(q_up, k_up.transpose(-1, -2)) * scale
    below = kpos.unsqueeze(0) <= qpos.unsqueeze(1)  # (T, S)
    grouped = torch.where(below, lower, upper)
    far = (qpos.unsqueeze(1) - kpos.unsqueeze(0)).abs() >= window  # (T, S)
    pick = far.unsqueeze(0).unsqueeze(0) & use_grouped.view(-1, 1, 1, 1)
    logits = torch.where(pick, grouped, normal).float()
    if mask is not None:
        if mask.dtype == torch.bool:
            logits = logits.masked_fill(~mask, float("-inf"))
        else:
            logits = logits + mask.float()
    probs = torch.softmax(logits, dim=-1)
    probs = torch.nan_to_num(probs, nan=0.0)  # fully masked rows
    if training and dropout > 0:
        probs = nn.functional.dropout(probs, p=dropout)
    out = torch.matmul(probs.to(value.dtype), value)
    return out.transpose(1, 2).contiguous(), probs


def _longembed_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Tensor, Tensor | None]:
    """The ``papercraft_longembed`` attention function (transformers' attention interface)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    state: _State | None = getattr(module, "_longembed_state", None)
    if state is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    batch = query.shape[0]
    lengths = state.lengths
    if lengths is None or lengths.shape[0] != batch:
        if attention_mask is not None and attention_mask.dtype == torch.bool:
            lengths = attention_mask[:, 0, -1, :].sum(dim=-1)
        else:
            lengths = torch.full((batch,), key.shape[2], dtype=torch.long)
    lengths = lengths.to(query.device)
    info = state.info
    if info.attention_scaling:
        factor = attention_factor(lengths, info.original_length).to(query.device, query.dtype)
        query = query * factor.view(-1, 1, 1, 1)
    settings = state.selfextend()
    use_grouped = lengths >= info.original_length
    if settings is None or state.inv_freq is None or not bool(use_grouped.any()):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    group, window = settings
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return _selfextend_attention(
        query,
        key,
        value,
        attention_mask,
        scale=scale,
        group=group,
        window=window,
        inv_freq=state.inv_freq,
        use_grouped=use_grouped,
        dropout=dropout,
        training=module.training,
    )


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, _longembed_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)


# ------------------------------------------------------------------------------------------------
# Applying an extension


def _supported_message() -> str:
    return (
        "supported: absolute-position encoders (BERT family: bert, roberta, xlm-roberta, electra, "
        f"… with a learned position table) with {list(APE_METHODS)}; RoPE models whose rotary "
        "embedding module and attention go through transformers' attention interface (nomic_bert, "
        f"gte, modernbert, jina_embeddings_v3, llama, mistral, qwen2/3, …) with {list(ROPE_METHODS)}"
    )


def _resize_buffers(model: nn.Module, rows: int) -> None:
    """Grow ``position_ids`` (arange) and ``token_type_ids`` (zeros) buffers of shape (1, N)."""
    for module in model.modules():
        for name in ("position_ids", "token_type_ids"):
            buffer = module._buffers.get(name)
            if buffer is None or buffer.dim() != 2 or buffer.shape[1] >= rows:
                continue
            if name == "position_ids":
                new = torch.arange(rows, device=buffer.device, dtype=buffer.dtype).unsqueeze(0)
            else:
                new = torch.zeros(1, rows, device=buffer.device, dtype=buffer.dtype)
            persistent = name not in module._non_persistent_buffers_set
            module.register_buffer(name, new, persistent=persistent)


def _rebuild_rotary(model: nn.Module) -> None:
    """Recreate every rotary module from the (updated) config, on the same device."""
    for name, module in _rotary_modules(model):
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        config = getattr(module, "config", getattr(model, "config", None))
        rebuilt = type(module)(config)
        rebuilt.to(_inv_freqs(module)[0].device)
        setattr(parent, attr, rebuilt)


def _rope_parameter_dicts(config: Any) -> list[dict[str, Any]]:
    """The rope parameter dict(s): one, or one per layer type (ModernBERT)."""
    params = config.rope_parameters
    if isinstance(params, Mapping) and "rope_theta" in params:
        return [params]  # type: ignore[list-item]
    if isinstance(params, Mapping) and all(isinstance(v, Mapping) for v in params.values()):
        return [v for v in params.values()]
    raise ValueError(f"unrecognised config.rope_parameters: {params!r}")


def _inv_freq(model: nn.Module) -> Tensor:
    frequencies = [(name, f) for name, m in _rotary_modules(model) for f in _inv_freqs(m)]
    first = frequencies[0][1]
    for name, other in frequencies[1:]:
        if other.shape != first.shape or not torch.equal(other, first):
            raise ValueError(
                f"selfextend needs one RoPE frequency set; {name} differs (per-layer RoPE, e.g. "
                "ModernBERT's local/global layers, is supported by ntk and pi only)"
            )
    return first.detach().float().clone()


def _apply_runtime(model: nn.Module, info: ExtensionInfo) -> None:
    """Attach the pre-hook and the attention function (the parts that do not survive a save)."""
    needs_attention = info.attention_scaling or info.method == "selfextend"
    needs_hook = needs_attention or (info.position == "absolute" and info.method != "pcw")
    if not needs_hook:
        return
    if getattr(model, "_longembed_hook", None) is not None:
        raise ValueError("the model already carries a LongEmbed extension")
    inv_freq = _inv_freq(model) if info.method == "selfextend" else None
    state = _State(info, inv_freq)
    base = _base(model)
    offset = _position_offset(getattr(model, "config", None))
    handle = base.register_forward_pre_hook(_PreHook(state, offset), with_kwargs=True)
    object.__setattr__(model, "_longembed_hook", handle)
    if needs_attention:
        _register_attention()
        for module in model.modules():
            if type(module).__name__.endswith("Attention"):
                object.__setattr__(module, "_longembed_state", state)
        set_attention: Any = model.set_attn_implementation
        set_attention(ATTENTION_NAME)


def _check_common(model: Any, target_length: int, method: str) -> tuple[str, int]:
    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise TypeError(f"model must be a transformers PreTrainedModel, got {type(model).__name__}")
    if isinstance(target_length, bool) or not isinstance(target_length, int) or target_length < 1:
        raise ValueError(f"target_length must be a positive int, got {target_length!r}")
    if not isinstance(method, str):
        raise ValueError(f"method must be a string, got {method!r}")
    if extension_info(model) is not None:
        raise ValueError(
            f"model is already extended ({extension_info(model)}); start from the original model"
        )
    kind = position_kind(model)
    if kind == "unsupported":
        raise ValueError(
            f"{type(model).__name__} ({getattr(model.config, 'model_type', '?')}) has neither a "
            f"learned absolute position table nor RoPE; {_supported_message()}"
        )
    methods = APE_METHODS if kind == "absolute" else ROPE_METHODS
    if method not in methods:
        raise ValueError(
            f"method {method!r} does not apply to a {kind}-position model "
            f"({getattr(model.config, 'model_type', '?')}); use one of {list(methods)}. "
            f"{_supported_message()}"
        )
    return kind, original_length(model)


def extend(
    model: Any,
    target_length: int,
    method: str,
    *,
    original_length: int | None = None,
    attention_scaling: bool = True,
    **options: Any,
) -> Any:
    """Extend a transformers encoder to ``target_length`` tokens without training.

    Args:
        model (PreTrainedModel): the encoder (e.g. ``AutoModel.from_pretrained(path)``); changed in
            place and returned.
        target_length (int): ``L_t``, the longest input afterwards.
        method (str): ``"pcw"``, ``"gp"``, ``"rp"``, ``"pi"`` (absolute positions) or ``"ntk"``,
            ``"selfextend"``, ``"pi"`` (RoPE).
        original_length (int | None): ``L_o``; None reads it from the model (its position rows, or
            ``max_position_embeddings`` for RoPE). Default: None.
        attention_scaling (bool): scale queries by ``max(1, ln n / ln L_o)``. Default: True.
        **options: ``base_multiplier`` (ntk: ``λ``, default from the paper's table),
            ``group`` and ``window`` (selfextend, default :func:`default_selfextend`).

    Returns:
        PreTrainedModel: the same model, extended; ``model.config.longembed`` records how.

    Raises:
        ValueError: for an unsupported model/method pair (the message lists what is supported), a
            ``target_length`` not above ``L_o``, a PI target that is not a multiple of ``L_o``, bad
            or unknown options.
    """
    kind, found = _check_common(model, target_length, method)
    original = found if original_length is None else int(original_length)
    if original < 2:
        raise ValueError(f"original_length must be >= 2, got {original}")
    if target_length <= original:
        raise ValueError(
            f"target_length must exceed the model's original length {original}, got {target_length}"
        )
    allowed = {"ntk": {"base_multiplier"}, "selfextend": {"group", "window"}}.get(method, set())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for method {method!r}; allowed: {sorted(allowed)}"
        )
    config = model.config
    scale = target_length / original
    recorded: dict[str, Any] = {}
    if kind == "absolute":
        offset = _position_offset(config)
        table = _position_table(model)
        assert table is not None
        if method == "pi":
            if target_length % original:
                raise ValueError(
                    f"target_length must be a multiple of {original} for pi, got {target_length}"
                )
            weight = table.weight.data
            grown = interpolate_positions(weight[offset:], target_length)
            new = nn.Embedding(
                target_length + offset,
                weight.shape[1],
                padding_idx=table.padding_idx,
                device=weight.device,
                dtype=weight.dtype,
            )
            with torch.no_grad():
                new.weight[:offset] = weight[:offset]
                new.weight[offset:] = grown
            _base(model).get_submodule("embeddings").position_embeddings = new
            config.max_position_embeddings = target_length + offset
        _resize_buffers(model, target_length + offset)
    else:
        dicts = _rope_parameter_dicts(config)
        if method == "ntk":
            rotary_dim = 2 * int(_inv_freqs(_rotary_modules(model)[0][1])[0].shape[0])
            multiplier = options.get("base_multiplier")
            if multiplier is None:
                multiplier = ntk_base_multiplier(scale, rotary_dim)
            if not isinstance(multiplier, (int, float)) or multiplier <= 1:
                raise ValueError(f"base_multiplier must be a number > 1, got {multiplier!r}")
            for params in dicts:
                params["rope_theta"] = float(params["rope_theta"]) * float(multiplier)
            recorded["base_multiplier"] = float(multiplier)
        elif method == "pi":
            for params in dicts:
                if params.get("rope_type", "default") != "default":
                    raise ValueError(
                        f"pi needs plain RoPE, the model uses rope_type={params.get('rope_type')!r}"
                    )
                params["rope_type"] = "linear"
                params["factor"] = float(scale)
        else:  # selfextend
            for params in dicts:
                rope_type = params.get("rope_type", "default")
                if rope_type not in _ROPE_TYPES_FOR_SELFEXTEND:
                    raise ValueError(
                        f"selfextend needs rope_type in {sorted(_ROPE_TYPES_FOR_SELFEXTEND)}, "
                        f"the model uses {rope_type!r}"
                    )
            group, window = default_selfextend(original, target_length)
            group = int(options.get("group", group))
            window = int(options.get("window", window))
            if group < 1 or window < 1:
                raise ValueError(f"group and window must be >= 1, got {group}, {window}")
            if window + (target_length - window) / group > original:
                raise ValueError(
                    f"selfextend settings group={group}, window={window} reach position "
                    f"{window + (target_length - window) / group:.0f} > original_length {original}: "
                    "need window + (target_length - window) / group <= original_length"
                )
            recorded.update(group=group, window=window)
            _inv_freq(model)  # fails early on per-layer RoPE
        if hasattr(config, "max_position_embeddings"):
            config.max_position_embeddings = max(int(config.max_position_embeddings), target_length)
        if method in ("ntk", "pi"):
            _rebuild_rotary(model)
        _resize_buffers(model, target_length)
    info = ExtensionInfo(
        method=method,
        original_length=original,
        target_length=target_length,
        attention_scaling=bool(attention_scaling),
        position=kind,
        options=recorded,
    )
    setattr(config, _CONFIG_KEY, info.to_dict())
    _apply_runtime(model, info)
    return model


def load_extended(path: Any, **from_pretrained_kwargs: Any) -> Any:
    """Load a model saved after :func:`extend`, with its runtime parts re-attached.

    Args:
        path (str | os.PathLike): a ``save_pretrained`` directory.
        **from_pretrained_kwargs: passed to ``AutoModel.from_pretrained`` (``trust_remote_code``
            is refused).

    Returns:
        PreTrainedModel: the extended model (an unextended checkpoint loads unchanged).
    """
    from transformers import AutoModel

    if from_pretrained_kwargs.get("trust_remote_code"):
        raise ValueError("trust_remote_code is not supported: load only built-in architectures")
    model = AutoModel.from_pretrained(path, **from_pretrained_kwargs)
    info = extension_info(model)
    if info is None:
        return model
    if info.position == "absolute":
        _resize_buffers(model, info.target_length + _position_offset(model.config))
    else:
        _resize_buffers(model, info.target_length)
    _apply_runtime(model, info)
    return model
