"""Matmul FLOP theory of a prefill: YOCO (decoder-decoder) against a Llama of the same size.

YOCO §4.3 ("Inference Advantages", arXiv 2405.05254) explains the prefill speed-up: with early exit
the prompt only passes through the self-decoder (gated retention or sliding-window attention, cost
linear in the length ``T``) and the one global K/V projection, while the cross-decoder runs for the
last position only. A Transformer runs full causal attention (cost ``∝ T²``) in every layer. This
module counts the matmul FLOPs of both prefills so that a measured speed ratio can be compared with
what the arithmetic allows.

Counting rules (every matmul ``(m×k)·(k×n)`` costs ``2·m·n·k``; elementwise work, norms, RoPE,
softmax and the decay exponentials are not counted):

- **Llama** (``L`` layers, ``H`` query heads, ``H_kv`` KV heads, head size ``d_h``, width ``d``, FFN
  size ``F``, vocabulary ``V``), per layer over ``T`` tokens: q/k/v/o projections
  ``2·T·d·(2·H·d_h + 2·H_kv·d_h)``; causal attention ``QKᵀ`` and ``PV`` over the ``T(T+1)/2``
  (query, key) pairs, ``2·2·pairs·d_h·H``; SwiGLU ``3·2·T·d·F``. Plus the LM head for one position,
  ``2·d·V`` (``logits_to_keep=1``).
- **YOCO, gRet self-decoder** (``L_self`` layers, ``H`` heads of size ``d_h``, width
  ``D = H·d_h``, usually ``d``), per layer: q/k/v/g projections ``4·2·T·d·D``, the decay projection
  ``2·T·d·H`` and the output projection ``2·T·D·d``; chunkwise retention with chunk ``C`` (the length padded to ``n = ⌈T/C⌉`` chunks)
  costs ``2·n·C²·(d_k + d_v)·H`` for the intra-chunk ``QKᵀ`` and ``PV`` on full ``C×C`` blocks,
  ``2·n·C·d_k·d_v·H`` for the state updates ``(K ⊙ decay)ᵀ V`` and ``2·(n-1)·C·d_k·d_v·H`` for the
  state reads ``(Q ⊙ decay) S`` (the first chunk enters with a zero state); SwiGLU as above.
- **YOCO, SWA self-decoder** (plain multi-head attention, ``H`` heads for keys and values too):
  q/k/v/o projections ``4·2·T·d·D``, attention over the ``Σ_t min(t, W)`` pairs inside the window
  ``W``; SwiGLU as above.
- **YOCO, global K/V**: ``k_proj`` and ``v_proj`` over ``T`` tokens, ``2·2·T·d·H_kv·d_h``.
- **YOCO, cross-decoder** (``L - L_self`` layers) for one query: q/out projections
  ``2·2·d·H·d_h``, attention over ``T`` keys ``2·2·T·d_h·H``, SwiGLU ``3·2·d·F``. Plus the LM head
  for one position.

The functions read a config duck-typed by attribute: a :class:`~papercraft.yoco.YocoConfig` gives
both architectures (the Llama of the same width, depth, heads, KV heads, FFN and vocabulary), a
``transformers.LlamaConfig`` gives the Llama one.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ARCHITECTURES",
    "prefill_flops",
    "prefill_flops_breakdown",
    "prefill_flops_ratio",
]

#: Architectures :func:`prefill_flops` knows.
ARCHITECTURES: tuple[str, ...] = ("llama", "yoco")

_DEFAULT_CHUNK_SIZE = 64  # the retention kernel's default, used when the config names none


def _positive_int(config: Any, name: str, *, optional: bool = False) -> int | None:
    """Read ``config.<name>`` as a positive int (``None`` allowed when ``optional``)."""
    value = getattr(config, name, None)
    if value is None:
        if optional:
            return None
        raise ValueError(f"config.{name} must be a positive int, got None (is it set?)")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"config.{name} must be a positive int, got {value!r}")
    return value


class _Dims:
    """The sizes that the FLOP count needs, read and checked once from a config."""

    def __init__(self, config: Any) -> None:
        self.hidden = _req(config, "hidden_size")
        self.ffn = _req(config, "intermediate_size")
        self.layers = _req(config, "num_hidden_layers")
        self.heads = _req(config, "num_attention_heads")
        self.kv_heads = _positive_int(config, "num_key_value_heads", optional=True) or self.heads
        head_dim = _positive_int(config, "head_dim", optional=True)
        if head_dim is None:
            if self.hidden % self.heads:
                raise ValueError(
                    f"config.hidden_size ({self.hidden}) must be divisible by "
                    f"config.num_attention_heads ({self.heads}) when config.head_dim is not set"
                )
            head_dim = self.hidden // self.heads
        self.head_dim = head_dim
        self.vocab = _req(config, "vocab_size")


def _req(config: Any, name: str) -> int:
    value = _positive_int(config, name)
    assert value is not None  # _positive_int raises for a missing required value
    return value


def _check_length(seq_len: int) -> None:
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")


def _causal_pairs(seq_len: int) -> int:
    """(query, key) pairs of full causal attention over ``seq_len`` tokens."""
    return seq_len * (seq_len + 1) // 2


def _window_pairs(seq_len: int, window: int) -> int:
    """(query, key) pairs when query ``t`` (1-based) sees its ``min(t, window)`` latest keys."""
    if seq_len <= window:
        return _causal_pairs(seq_len)
    return _causal_pairs(window) + (seq_len - window) * window


def _swiglu(tokens: int, d: _Dims) -> int:
    return 3 * 2 * tokens * d.hidden * d.ffn  # gate, up, down


def _llama_breakdown(d: _Dims, seq_len: int) -> dict[str, int]:
    t = seq_len
    q_width, kv_width = d.heads * d.head_dim, d.kv_heads * d.head_dim
    projections = 2 * t * d.hidden * (2 * q_width + 2 * kv_width)  # q, o; k, v
    attention = 2 * 2 * _causal_pairs(t) * d.head_dim * d.heads  # QKᵀ and PV
    return {
        "projections": d.layers * projections,
        "attention": d.layers * attention,
        "ffn": d.layers * _swiglu(t, d),
        "lm_head": 2 * d.hidden * d.vocab,
    }


def _retention_cost(seq_len: int, chunk_size: int, heads: int, dk: int, dv: int) -> int:
    """Matmul FLOPs of the chunkwise retention of one layer (all heads)."""
    size = min(chunk_size, seq_len)  # the kernel uses one chunk of length T when T < C
    n_chunks = -(-seq_len // size)
    intra = 2 * n_chunks * size * size * (dk + dv)  # QKᵀ and (scores ⊙ D) V on C×C blocks
    updates = 2 * n_chunks * size * dk * dv  # (K ⊙ decay)ᵀ V per chunk
    reads = 2 * (n_chunks - 1) * size * dk * dv  # (Q ⊙ decay) S for chunks after the first
    return heads * (intra + updates + reads)


def _yoco_breakdown(config: Any, d: _Dims, seq_len: int) -> dict[str, int]:
    t = seq_len
    self_layers = _positive_int(config, "num_self_decoder_layers", optional=True)
    if self_layers is None:
        self_layers = d.layers // 2
    if self_layers >= d.layers:
        raise ValueError(
            f"config.num_self_decoder_layers ({self_layers}) must be smaller than "
            f"config.num_hidden_layers ({d.layers}): the cross-decoder needs at least one layer"
        )
    cross_layers = d.layers - self_layers
    kind = getattr(config, "self_decoder", "gret")
    inner = d.heads * d.head_dim  # self-decoder width: H heads of d_h (MHA, no GQA)
    if kind == "gret":
        chunk = _positive_int(config, "chunk_size", optional=True) or _DEFAULT_CHUNK_SIZE
        self_proj = 2 * t * d.hidden * (5 * inner + d.heads)  # q, k, v, g, out; gt
        self_mixer = _retention_cost(t, chunk, d.heads, d.head_dim, d.head_dim)
    elif kind == "swa":
        window = _req(config, "sliding_window")
        self_proj = 2 * t * d.hidden * 4 * inner  # q, k, v, o
        self_mixer = 2 * 2 * _window_pairs(t, window) * d.head_dim * d.heads
    else:
        raise ValueError(f"config.self_decoder must be 'gret' or 'swa', got {kind!r}")
    q_width, kv_width = d.heads * d.head_dim, d.kv_heads * d.head_dim
    return {
        "self_projections": self_layers * self_proj,
        "self_mixer": self_layers * self_mixer,
        "self_ffn": self_layers * _swiglu(t, d),
        "global_kv": 2 * 2 * t * d.hidden * kv_width,  # k_proj and v_proj, once
        "cross_projections": cross_layers * 2 * 2 * d.hidden * q_width,  # q and out, 1 query
        "cross_attention": cross_layers * 2 * 2 * t * d.head_dim * d.heads,  # 1 query, T keys
        "cross_ffn": cross_layers * _swiglu(1, d),
        "lm_head": 2 * d.hidden * d.vocab,
    }


def prefill_flops_breakdown(config: Any, seq_len: int, *, arch: str) -> dict[str, int]:
    """Matmul FLOPs of one prefill (batch 1, logits for the last position), term by term.

    Args:
        config (Any): a ``YocoConfig`` (either architecture) or a ``LlamaConfig`` (``"llama"``);
            read by attribute: ``hidden_size``, ``intermediate_size``, ``num_hidden_layers``,
            ``num_attention_heads``, ``num_key_value_heads``, ``head_dim``, ``vocab_size`` and for
            YOCO ``num_self_decoder_layers``, ``self_decoder``, ``sliding_window``, ``chunk_size``.
        seq_len (int): prompt length ``T``.
        arch (str): ``"llama"`` or ``"yoco"``.

    Returns:
        dict[str, int]: FLOPs per term. Llama: ``projections``, ``attention``, ``ffn``,
        ``lm_head``. YOCO: ``self_projections``, ``self_mixer``, ``self_ffn``, ``global_kv``,
        ``cross_projections``, ``cross_attention``, ``cross_ffn``, ``lm_head``.

    Raises:
        ValueError: for an unknown ``arch``, a non-positive ``seq_len`` or a config missing a size.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {list(ARCHITECTURES)}, got {arch!r}")
    _check_length(seq_len)
    dims = _Dims(config)
    if arch == "llama":
        return _llama_breakdown(dims, seq_len)
    return _yoco_breakdown(config, dims, seq_len)


def prefill_flops(config: Any, seq_len: int, *, arch: str) -> int:
    """Total matmul FLOPs of one prefill; see :func:`prefill_flops_breakdown` for the terms.

    Args:
        config (Any): a ``YocoConfig`` or ``LlamaConfig`` (see :func:`prefill_flops_breakdown`).
        seq_len (int): prompt length ``T``.
        arch (str): ``"llama"`` or ``"yoco"``.

    Returns:
        int: the FLOPs (multiply and add counted separately).

    Raises:
        ValueError: as :func:`prefill_flops_breakdown`.
    """
    return sum(prefill_flops_breakdown(config, seq_len, arch=arch).values())


def prefill_flops_ratio(config: Any, seq_len: int) -> float:
    """The FLOP-theory prefill speed-up ``Llama FLOPs / YOCO FLOPs`` of one YOCO config.

    Args:
        config (Any): a ``YocoConfig``; the Llama is the one of the same sizes.
        seq_len (int): prompt length ``T``.

    Returns:
        float: how many times fewer matmul FLOPs YOCO's early-exit prefill needs.

    Raises:
        ValueError: as :func:`prefill_flops_breakdown`.
    """
    llama = prefill_flops(config, seq_len, arch="llama")
    return llama / prefill_flops(config, seq_len, arch="yoco")
