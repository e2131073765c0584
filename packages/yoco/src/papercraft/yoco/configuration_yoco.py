"""Configuration of the YOCO decoder-decoder language model.

YOCO (Sun et al., 2024, "You Only Cache Once: Decoder-Decoder Architectures for Language Models",
arXiv 2405.05254) stacks a cross-decoder on a self-decoder (§2). The first
``num_self_decoder_layers`` layers are the self-decoder (§2.1), built from gated retention (gRet,
§3.1) or sliding-window attention (SWA, §3.2); their output produces one global key/value cache
(§2.1) that every one of the remaining cross-decoder layers attends to with grouped-query
cross-attention (§2.2). The paper's ablation on the layer ratio found the 1:1
split best and 3:1 equal, so the default is ``num_hidden_layers // 2`` self-decoder layers.

Defaults follow the official code (microsoft/unilm ``YOCO/``): RMSNorm eps 1e-5, RoPE with the
``1 / θ^linspace(0, 1, d/2)`` frequencies in the interleaved (GPT-J) channel layout, the gate
logit normalizer τ = 16 (``log γ = logsigmoid(x W_γ) / τ``) and an untied output projection.
``intermediate_size=None`` means ``3 · hidden_size``: the FFN width the paper gives YOCO in its
scaling experiments (against the Transformer's ``8/3 · d``). The paper's 3B configuration instead
uses ``intermediate_size=8192`` for ``hidden_size=3072``; pass it explicitly for that shape.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig

__all__ = ["ROPE_FREQUENCIES", "ROPE_LAYOUTS", "SELF_DECODERS", "YocoConfig"]

#: Self-decoder kinds: gated retention (§3.1) or sliding-window attention (§3.2).
SELF_DECODERS: tuple[str, ...] = ("gret", "swa")
#: RoPE channel layouts, as :func:`papercraft.core.rope.apply_rope` names them.
ROPE_LAYOUTS: tuple[str, ...] = ("interleaved", "half")
#: RoPE frequency exponents, as ``freq_exponents`` of :func:`papercraft.core.rope.rope_inv_freq`.
ROPE_FREQUENCIES: tuple[str, ...] = ("linspace", "arange")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class YocoConfig(PreTrainedConfig):
    r"""Configuration of :class:`~papercraft.yoco.YocoForCausalLM` (``model_type="yoco"``).

    Every field is a keyword argument; ``None`` defaults are resolved in ``__post_init__`` (so
    ``config.intermediate_size``, ``config.num_self_decoder_layers``,
    ``config.num_key_value_heads`` and ``config.head_dim`` are always ints afterwards), and
    invalid combinations raise a ``ValueError`` naming the field before any model is built.

    Args:
        vocab_size (int): vocabulary size. Default: 32000.
        hidden_size (int): model width ``d``. Default: 1024.
        intermediate_size (int | None): SwiGLU inner width. Default: None (``3 · hidden_size``,
            the paper's YOCO setting in the scaling runs).
        num_hidden_layers (int): total layers ``L`` (self-decoder + cross-decoder). Default: 24.
        num_self_decoder_layers (int | None): self-decoder layers, in ``[1, L - 1]``.
            Default: None (``L // 2``, the 1:1 split).
        self_decoder (str): ``"gret"`` (gated retention) or ``"swa"`` (sliding-window attention).
            Default: "gret".
        sliding_window (int): SWA window ``W`` (each query sees the ``W`` most recent tokens,
            itself included); ignored by gRet. Default: 1024.
        num_attention_heads (int): heads ``H`` of the self-decoder and query heads of the
            cross-decoder. Default: 16.
        num_key_value_heads (int | None): key/value heads of the global cache (GQA); must divide
            ``H``. Default: None (``H``).
        head_dim (int | None): per-head size, even (RoPE). Default: None
            (``hidden_size // num_attention_heads``).
        rope_theta (float): RoPE base θ. Default: 10000.0.
        rope_layout (str): ``"interleaved"`` (official YOCO, GPT-J pairs) or ``"half"``
            (rotate-half, Hugging Face Llama). Default: "interleaved".
        rope_frequencies (str): ``"linspace"`` (official YOCO, ``1/θ^linspace(0, 1, d/2)``) or
            ``"arange"`` (Llama, ``1/θ^(2i/d)``). Default: "linspace".
        chunk_size (int): chunk length of chunkwise gated retention. Default: 64.
        gate_logit_normalizer (float): τ in ``log γ = logsigmoid(x W_γ) / τ``. Default: 16.0.
        rms_norm_eps (float): RMSNorm epsilon. Default: 1e-5.
        max_position_embeddings (int): informational only: RoPE has no hard length limit.
            Default: 8192.
        initializer_range (float): kept for transformers tooling; YOCO's own init (the
            paper's, see :class:`~papercraft.yoco.YocoPreTrainedModel`) does not read it.
            Default: 0.02.
        tie_word_embeddings (bool): tie ``lm_head`` to the embedding (the paper does not).
            Default: False.
        pad_token_id (int | None): padding token. Default: None.
        bos_token_id (int | None): beginning-of-sequence token. Default: 1.
        eos_token_id (int | list[int] | None): end-of-sequence token(s). Default: 2.
        use_cache (bool): return a :class:`~papercraft.yoco.YocoCache` from the forward.
            Default: True.

    Raises:
        ValueError: for a value of the wrong type or range, or an invalid combination: a hidden
            size the heads do not divide (without ``head_dim``), heads not a multiple of KV heads,
            an odd ``head_dim``, ``num_self_decoder_layers`` outside ``[1, L - 1]``, an unknown
            ``self_decoder`` / ``rope_layout`` / ``rope_frequencies``, ``sliding_window < 1``,
            ``chunk_size < 1``, ...

    Example::

        >>> from papercraft.yoco import YocoConfig
        >>> cfg = YocoConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4)
        >>> cfg.num_self_decoder_layers, cfg.head_dim, cfg.intermediate_size
        (2, 16, 192)
    """

    model_type = "yoco"

    vocab_size: int = 32000
    hidden_size: int = 1024
    intermediate_size: int | None = None
    num_hidden_layers: int = 24
    num_self_decoder_layers: int | None = None
    self_decoder: str = "gret"
    sliding_window: int = 1024
    num_attention_heads: int = 16
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    rope_theta: float = 10000.0
    rope_layout: str = "interleaved"
    rope_frequencies: str = "linspace"
    chunk_size: int = 64
    gate_logit_normalizer: float = 16.0
    rms_norm_eps: float = 1e-5
    max_position_embeddings: int = 8192
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False
    pad_token_id: int | None = None
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    use_cache: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        self._check_types()
        if self.num_self_decoder_layers is None:
            self.num_self_decoder_layers = self.num_hidden_layers // 2
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads != 0:
                raise ValueError(
                    f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                    f"({self.num_attention_heads}) when head_dim is not given"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.intermediate_size is None:
            self.intermediate_size = 3 * self.hidden_size
        self.validate()
        super().__post_init__(**kwargs)

    def _check_types(self) -> None:
        """Each field has the right type and range on its own (before defaults are resolved)."""
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads")
        optional_positive = (
            "intermediate_size",
            "num_self_decoder_layers",
            "num_key_value_heads",
            "head_dim",
        )
        for name in (*positive, "sliding_window", "chunk_size", "max_position_embeddings"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in optional_positive:
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise ValueError(f"{name} must be an int >= 1 or None, got {value!r}")
        if self.num_hidden_layers < 2:
            raise ValueError(
                "num_hidden_layers must be >= 2 (at least one self-decoder and one cross-decoder "
                f"layer), got {self.num_hidden_layers}"
            )
        for name in ("rope_theta", "gate_logit_normalizer", "rms_norm_eps"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if not _is_number(self.initializer_range) or self.initializer_range < 0:
            raise ValueError(
                f"initializer_range must be a number >= 0, got {self.initializer_range!r}"
            )
        choices = (
            ("self_decoder", SELF_DECODERS),
            ("rope_layout", ROPE_LAYOUTS),
            ("rope_frequencies", ROPE_FREQUENCIES),
        )
        for name, allowed in choices:
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        for name in ("tie_word_embeddings", "use_cache"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")

    def validate(self) -> None:
        """Check the resolved configuration; also run by ``save_pretrained``.

        Raises:
            ValueError: naming the offending field(s) and what was expected.
        """
        self._check_types()
        layers, self_layers = self.num_hidden_layers, self.num_self_decoder_layers
        if self_layers is not None and not 1 <= self_layers <= layers - 1:
            raise ValueError(
                f"num_self_decoder_layers must be in [1, num_hidden_layers - 1] = [1, {layers - 1}] "
                f"so both the self-decoder and the cross-decoder have a layer, got {self_layers}"
            )
        heads, kv_heads = self.num_attention_heads, self.num_key_value_heads
        if kv_heads is not None and heads % kv_heads != 0:
            raise ValueError(
                f"num_attention_heads ({heads}) must be a multiple of num_key_value_heads "
                f"({kv_heads}) for grouped-query cross-attention"
            )
        if self.head_dim is not None and self.head_dim % 2 != 0:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")

    @property
    def num_cross_decoder_layers(self) -> int:
        """Number of cross-decoder layers, ``num_hidden_layers - num_self_decoder_layers``."""
        assert self.num_self_decoder_layers is not None  # resolved in __post_init__
        return self.num_hidden_layers - self.num_self_decoder_layers
