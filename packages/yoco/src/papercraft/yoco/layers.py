"""YOCO token mixers: gated retention, sliding-window attention, cross-attention, global K/V.

Each layer takes explicit keyword arguments (no config) and works on ``(B, T, d)`` activations;
RoPE cosines/sines are computed once per forward by the model and passed in.

- :class:`GatedRetention` — the gRet self-decoder mixer (arXiv 2405.05254, §3.1):
  ``q, k, v, g = x W_Q, x W_K, x W_V, x W_G``, RoPE on ``q, k``, ``k · d_h^-1/2``, per-head decay
  ``log γ = logsigmoid(x W_γ) / τ``, retention through :mod:`papercraft.yoco.retention` (chunkwise
  for several tokens, one recurrent step when decoding), a per-head RMSNorm without gain, then
  ``out_proj(silu(g) ⊙ o)``.
- :class:`SlidingWindowAttention` — the SWA self-decoder mixer (§3.2): multi-head attention with
  RoPE where each query sees the ``W`` most recent tokens, itself included, via the core's windowed
  attention (blockwise ``O(T·W)`` on CPU, flash-attn's native window on GPU).
- :class:`GlobalKeyValue` — the global cache producer (end of §2.1): ``kv_norm`` (RMSNorm with
  gain), ``k_proj`` / ``v_proj`` to ``n_kv`` heads, RoPE on the keys once at absolute positions.
- :class:`CrossAttention` — the cross-decoder mixer (§2.2): own ``q_proj`` (+RoPE) and
  ``out_proj``, causal grouped-query attention over the global K/V.

Padding (left padding of a batch): gRet zeroes ``k`` and ``log γ`` at padded positions, which
leaves the retention state exactly as if those tokens did not exist; the attention layers hide
padded keys with a boolean ``attn_mask``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papercraft.core.attention import attention
from papercraft.core.norm import RMSNorm, rms_norm
from papercraft.core.rope import RoPELayout, apply_rope
from papercraft.yoco.retention import retention_chunkwise, retention_step

__all__ = [
    "OUT_INIT_GAIN",
    "QKVG_INIT_GAIN",
    "XAVIER_GAIN_ATTR",
    "CrossAttention",
    "GatedRetention",
    "GlobalKeyValue",
    "SlidingWindowAttention",
]

#: Xavier-uniform gain of gRet's q/k/v/g/gt projections (the paper's init, official
#: ``model_parallel_init.py``).
QKVG_INIT_GAIN = 2**-2.5
#: Xavier-uniform gain of gRet's output projection.
OUT_INIT_GAIN = 2**-1
#: Attribute naming the Xavier gain a linear layer is initialized with (read by the model's init).
XAVIER_GAIN_ATTR = "xavier_gain"


def _check_dims(**dims: int) -> None:
    for name, value in dims.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _split_heads(x: Tensor, heads: int) -> Tensor:
    """``(B, T, H·D)`` -> ``(B, H, T, D)``."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    """``(B, H, T, D)`` -> ``(B, T, H·D)``."""
    return x.transpose(1, 2).flatten(2)


def _key_mask(key_padding: Tensor | None) -> Tensor | None:
    """``(B, S)`` bool (True = real token) -> ``(B, 1, 1, S)`` attention mask, or ``None``."""
    return None if key_padding is None else key_padding[:, None, None, :]


class GatedRetention(nn.Module):
    """Gated retention (gRet), YOCO's self-decoder token mixer (§3.1).

    Parallel, recurrent and chunkwise forms are equivalent; this layer uses the chunkwise one for
    several tokens and the recurrent step for a single decode token.

    Args:
        hidden_size (int): model width ``d``.
        num_heads (int): retention heads ``H``.
        head_dim (int): per-head size ``d_h`` (keys and values), even.
        chunk_size (int): chunk length of the chunkwise form. Default: 64.
        gate_logit_normalizer (float): τ in ``log γ = logsigmoid(x W_γ) / τ``. Default: 16.0.
        norm_eps (float): epsilon of the per-head RMSNorm. Default: 1e-5.
        rope_layout (RoPELayout): ``"interleaved"`` or ``"half"``. Default: "interleaved".

    Raises:
        ValueError: on a non-positive size, an odd ``head_dim`` or a non-positive τ.
    """

    def __init__(
        self,
        *,
        hidden_size: int,
        num_heads: int,
        head_dim: int,
        chunk_size: int = 64,
        gate_logit_normalizer: float = 16.0,
        norm_eps: float = 1e-5,
        rope_layout: RoPELayout = "interleaved",
    ) -> None:
        super().__init__()
        _check_dims(hidden_size=hidden_size, num_heads=num_heads, head_dim=head_dim)
        _check_dims(chunk_size=chunk_size)
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
        if not gate_logit_normalizer > 0:
            raise ValueError(
                f"gate_logit_normalizer must be positive, got {gate_logit_normalizer!r}"
            )
        self.num_heads, self.head_dim, self.chunk_size = num_heads, head_dim, chunk_size
        self.gate_logit_normalizer = float(gate_logit_normalizer)
        self.norm_eps = float(norm_eps)
        self.rope_layout: RoPELayout = rope_layout
        inner = num_heads * head_dim
        self.q_proj = nn.Linear(hidden_size, inner, bias=False)
        self.k_proj = nn.Linear(hidden_size, inner, bias=False)
        self.v_proj = nn.Linear(hidden_size, inner, bias=False)
        self.g_proj = nn.Linear(hidden_size, inner, bias=False)
        self.gt_proj = nn.Linear(hidden_size, num_heads, bias=False)
        self.out_proj = nn.Linear(inner, hidden_size, bias=False)
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.g_proj, self.gt_proj):
            setattr(proj, XAVIER_GAIN_ATTR, QKVG_INIT_GAIN)
        setattr(self.out_proj, XAVIER_GAIN_ATTR, OUT_INIT_GAIN)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's init: Xavier-uniform, gain ``2^-2.5`` for q/k/v/g/gt, ``2^-1`` for out."""
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.g_proj, self.gt_proj):
            nn.init.xavier_uniform_(proj.weight, gain=QKVG_INIT_GAIN)
        nn.init.xavier_uniform_(self.out_proj.weight, gain=OUT_INIT_GAIN)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        *,
        state: Tensor | None = None,
        token_mask: Tensor | None = None,
        output_state: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Mix ``T`` tokens, continuing from ``state``.

        Args:
            x (Tensor): normalized input ``(B, T, d)``.
            cos (Tensor): RoPE cosines ``(B, T, d_h/2)`` or ``(T, d_h/2)``.
            sin (Tensor): RoPE sines, same shape as ``cos``.
            state (Tensor | None): float32 state ``(B, H, d_h, d_h)`` before these tokens;
                ``None`` means zeros. Default: None.
            token_mask (Tensor | None): ``(B, T)`` bool, False at padded positions (they leave
                the state untouched). Default: None (all real).
            output_state (bool): return the state after the last token. Default: False.

        Returns:
            tuple[Tensor, Tensor | None]: output ``(B, T, d)`` and the new float32 state
            ``(B, H, d_h, d_h)`` (``None`` unless ``output_state``).
        """
        heads, length = self.num_heads, x.shape[1]
        q = _split_heads(self.q_proj(x), heads)  # (B, H, T, D)
        k = _split_heads(self.k_proj(x), heads)  # (B, H, T, D)
        v = _split_heads(self.v_proj(x), heads)  # (B, H, T, D)
        g = self.g_proj(x)  # (B, T, H·D)
        # decay in float32: log γ = logsigmoid(x W_γ) / τ, (B, T, H) -> (B, H, T)
        log_decay = (F.logsigmoid(self.gt_proj(x).float()) / self.gate_logit_normalizer).transpose(
            1, 2
        )
        q = apply_rope(q, cos, sin, layout=self.rope_layout)
        k = apply_rope(k, cos, sin, layout=self.rope_layout) * self.head_dim**-0.5
        if token_mask is not None:
            keep = token_mask[:, None, :]  # (B, 1, T)
            k = k * keep[..., None].to(k.dtype)
            log_decay = log_decay.masked_fill(~keep, 0.0)
        if length == 1 and state is not None:
            o, new_state = retention_step(q, k, v, log_decay, state)
            out_state: Tensor | None = new_state if output_state else None
        else:
            o, out_state = retention_chunkwise(
                q,
                k,
                v,
                log_decay,
                chunk_size=self.chunk_size,
                initial_state=state,
                output_final_state=output_state,
            )
        o = rms_norm(o, None, self.norm_eps)  # per-head RMSNorm without gain, (B, H, T, D)
        out = self.out_proj(F.silu(g) * _merge_heads(o))  # (B, T, d)
        return out, out_state


class SlidingWindowAttention(nn.Module):
    """Sliding-window multi-head attention with RoPE, YOCO's SWA self-decoder mixer (§3.2).

    Args:
        hidden_size (int): model width ``d``.
        num_heads (int): attention heads ``H`` (keys and values too: plain MHA).
        head_dim (int): per-head size ``d_h``, even.
        window (int): each query sees the ``window`` most recent tokens, itself included.
        rope_layout (RoPELayout): ``"interleaved"`` or ``"half"``. Default: "interleaved".

    Raises:
        ValueError: on a non-positive size or window, or an odd ``head_dim``.
    """

    def __init__(
        self,
        *,
        hidden_size: int,
        num_heads: int,
        head_dim: int,
        window: int,
        rope_layout: RoPELayout = "interleaved",
    ) -> None:
        super().__init__()
        _check_dims(hidden_size=hidden_size, num_heads=num_heads, head_dim=head_dim, window=window)
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
        self.num_heads, self.head_dim, self.window = num_heads, head_dim, window
        self.rope_layout: RoPELayout = rope_layout
        inner = num_heads * head_dim
        self.q_proj = nn.Linear(hidden_size, inner, bias=False)
        self.k_proj = nn.Linear(hidden_size, inner, bias=False)
        self.v_proj = nn.Linear(hidden_size, inner, bias=False)
        self.out_proj = nn.Linear(inner, hidden_size, bias=False)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        *,
        past_key: Tensor | None = None,
        past_value: Tensor | None = None,
        key_padding: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Attend ``T`` queries over the cached window followed by these ``T`` tokens.

        Args:
            x (Tensor): normalized input ``(B, T, d)``.
            cos (Tensor): RoPE cosines ``(B, T, d_h/2)`` or ``(T, d_h/2)``.
            sin (Tensor): RoPE sines, same shape.
            past_key (Tensor | None): cached window keys ``(B, H, w, d_h)`` (RoPE applied).
                Default: None.
            past_value (Tensor | None): cached window values ``(B, H, w, d_h)``. Default: None.
            key_padding (Tensor | None): ``(B, w + T)`` bool, False at padded keys.
                Default: None.

        Returns:
            tuple[Tensor, Tensor, Tensor]: output ``(B, T, d)`` and the keys / values attended
            over, ``(B, H, w + T, d_h)`` each (the cache keeps their last ``W``).
        """
        q = _split_heads(self.q_proj(x), self.num_heads)  # (B, H, T, D)
        k = _split_heads(self.k_proj(x), self.num_heads)  # (B, H, T, D)
        v = _split_heads(self.v_proj(x), self.num_heads)  # (B, H, T, D)
        q = apply_rope(q, cos, sin, layout=self.rope_layout)
        k = apply_rope(k, cos, sin, layout=self.rope_layout)
        if past_key is not None and past_value is not None:
            k = torch.cat([past_key, k], dim=2)  # (B, H, w + T, D)
            v = torch.cat([past_value, v], dim=2)
        # bottom-right aligned: query i sits at key position w + i and sees W keys up to it
        o = attention(q, k, v, causal=True, window=self.window, attn_mask=_key_mask(key_padding))
        return self.out_proj(_merge_heads(o)), k, v


class GlobalKeyValue(nn.Module):
    """The global key/value producer of the cross-decoder (§2.1).

    ``K = RoPE(kv_norm(x) W_K)``, ``V = kv_norm(x) W_V`` with ``n_kv`` heads; computed once from the
    self-decoder output and shared by every cross-decoder layer.

    Args:
        hidden_size (int): model width ``d``.
        num_kv_heads (int): key/value heads ``n_kv``.
        head_dim (int): per-head size ``d_h``, even.
        norm_eps (float): epsilon of ``kv_norm``. Default: 1e-5.
        rope_layout (RoPELayout): ``"interleaved"`` or ``"half"``. Default: "interleaved".
    """

    def __init__(
        self,
        *,
        hidden_size: int,
        num_kv_heads: int,
        head_dim: int,
        norm_eps: float = 1e-5,
        rope_layout: RoPELayout = "interleaved",
    ) -> None:
        super().__init__()
        _check_dims(hidden_size=hidden_size, num_kv_heads=num_kv_heads, head_dim=head_dim)
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
        self.num_kv_heads, self.head_dim = num_kv_heads, head_dim
        self.rope_layout: RoPELayout = rope_layout
        self.kv_norm = RMSNorm(hidden_size, eps=norm_eps)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of ``T`` tokens.

        Args:
            x (Tensor): self-decoder output ``(B, T, d)``.
            cos (Tensor): RoPE cosines at the tokens' absolute positions.
            sin (Tensor): RoPE sines, same shape.

        Returns:
            tuple[Tensor, Tensor]: ``(K, V)``, each ``(B, n_kv, T, d_h)``; RoPE on K only.
        """
        h = self.kv_norm(x)
        k = _split_heads(self.k_proj(h), self.num_kv_heads)  # (B, n_kv, T, D)
        v = _split_heads(self.v_proj(h), self.num_kv_heads)  # (B, n_kv, T, D)
        return apply_rope(k, cos, sin, layout=self.rope_layout), v


class CrossAttention(nn.Module):
    """Causal grouped-query attention of queries over the global K/V (§2.2).

    Args:
        hidden_size (int): model width ``d``.
        num_heads (int): query heads ``H`` (a multiple of the global cache's ``n_kv``).
        head_dim (int): per-head size ``d_h``, even.
        rope_layout (RoPELayout): ``"interleaved"`` or ``"half"``. Default: "interleaved".
    """

    def __init__(
        self,
        *,
        hidden_size: int,
        num_heads: int,
        head_dim: int,
        rope_layout: RoPELayout = "interleaved",
    ) -> None:
        super().__init__()
        _check_dims(hidden_size=hidden_size, num_heads=num_heads, head_dim=head_dim)
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
        self.num_heads, self.head_dim = num_heads, head_dim
        self.rope_layout: RoPELayout = rope_layout
        self.q_proj = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.out_proj = nn.Linear(num_heads * head_dim, hidden_size, bias=False)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        global_key: Tensor,
        global_value: Tensor,
        *,
        key_padding: Tensor | None = None,
    ) -> Tensor:
        """Attend the ``T`` queries of ``x`` over all ``S`` global keys.

        The queries are the last ``T`` positions (bottom-right causal alignment), so an
        early-exit prefill that runs only the last positions is exact.

        Args:
            x (Tensor): normalized input ``(B, T, d)``.
            cos (Tensor): RoPE cosines of the queries ``(B, T, d_h/2)`` or ``(T, d_h/2)``.
            sin (Tensor): RoPE sines, same shape.
            global_key (Tensor): ``(B, n_kv, S, d_h)``, ``S >= T``.
            global_value (Tensor): ``(B, n_kv, S, d_h)``.
            key_padding (Tensor | None): ``(B, S)`` bool, False at padded keys. Default: None.

        Returns:
            Tensor: ``(B, T, d)``.
        """
        q = _split_heads(self.q_proj(x), self.num_heads)  # (B, H, T, D)
        q = apply_rope(q, cos, sin, layout=self.rope_layout)
        o = attention(q, global_key, global_value, causal=True, attn_mask=_key_mask(key_padding))
        return self.out_proj(_merge_heads(o))  # (B, T, d)
