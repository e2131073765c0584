"""Configuration of the MH-MoE decoder-only language model.

Multi-Head Mixture-of-Experts (Wu et al., 2024, arXiv 2404.15045) replaces the feed-forward
network of some pre-norm Transformer blocks with an MH-MoE layer (§3): each token is projected,
split into ``h`` sub-tokens of width ``d/h`` that are routed to experts independently, then merged
and projected back (:class:`papercraft.mhmoe.layer.MHMoE`).

The decoder around it is Llama-style: RMSNorm pre-norm blocks, rotary position embeddings,
grouped-query attention and a dense SwiGLU FFN in the blocks that are not MoE blocks.

Which blocks are MoE blocks: block ``i`` (0-based) is an MoE block when
``i % moe_every == moe_every - 1``, i.e. the last block of every group of ``moe_every`` blocks.
This is the rule of the official code (torchscale's ``(layer_id + 1) % moe_freq == 0``):
``moe_every=2`` makes blocks 1, 3, 5, ... MoE blocks (the paper's "every other layer"),
``moe_every=1`` makes every block an MoE block and ``moe_every=0`` none (a dense baseline).

``capacity_factor`` defaults to ``None`` (dropless). A finite expert capacity depends on how
many sub-tokens share a forward pass, so with it a token's output depends on the other tokens of
the batch and on whether decoding is incremental: a causal LM then no longer gives the same
logits with and without a KV cache. Set a factor (the paper trains with capacity) when that
trade-off is wanted.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import PreTrainedConfig

__all__ = ["MOE_DISPATCHERS", "MOE_ROUTERS", "MHMoEConfig"]

#: Router kinds of :class:`papercraft.mhmoe.routing.TopKRouter`.
MOE_ROUTERS: tuple[str, ...] = ("softmax", "xmoe")
#: Dispatch implementations of :mod:`papercraft.mhmoe.dispatch`.
MOE_DISPATCHERS: tuple[str, ...] = ("loop", "grouped", "dense")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class MHMoEConfig(PreTrainedConfig):
    r"""Configuration of :class:`~papercraft.mhmoe.modeling.MHMoEForCausalLM`.

    ``model_type="papercraft_mhmoe"``. Every field is a keyword argument; ``None`` defaults of
    the decoder are resolved in ``__post_init__`` (``intermediate_size``,
    ``num_key_value_heads`` and ``head_dim`` are ints afterwards), and invalid values raise a
    ``ValueError`` naming the field before any model is built.

    Args:
        vocab_size (int): vocabulary size. Default: 32000.
        hidden_size (int): model width ``d``. Default: 768.
        intermediate_size (int | None): inner width of the dense SwiGLU FFN blocks.
            Default: None (``8 · hidden_size // 3``, the usual SwiGLU width; 2048 at d = 768).
        num_hidden_layers (int): number of blocks ``L``. Default: 12.
        num_attention_heads (int): attention query heads. Default: 12.
        num_key_value_heads (int | None): key/value heads (GQA); must divide the query heads.
            Default: None (``num_attention_heads``).
        head_dim (int | None): attention head size, even (RoPE). Default: None
            (``hidden_size // num_attention_heads``).
        rope_theta (float): RoPE base θ. Default: 10000.0.
        rms_norm_eps (float): RMSNorm epsilon. Default: 1e-6.
        max_position_embeddings (int): informational only: RoPE has no hard length limit.
            Default: 2048.
        initializer_range (float): std of the normal init of embeddings and the non-MoE
            linear layers (the MoE layers keep their own init). Default: 0.02.
        attention_backend (str | None): backend of :func:`papercraft.core.attention.attention`
            (``"eager"``, ``"sdpa"``, ...). Default: None (automatic selection).
        tie_word_embeddings (bool): tie ``lm_head`` to the input embedding. Default: False.
        num_experts (int): experts ``E`` per MoE layer. Default: 8.
        moe_heads (int): MH-MoE heads ``h`` (sub-tokens per token); must divide
            ``hidden_size``. ``1`` with ``moe_head_projection=False`` is a plain sparse MoE.
            Default: 4.
        num_experts_per_tok (int): experts per sub-token (the layer's ``top_k``), in
            ``[1, num_experts]``; named as Mixtral does so that transformers does not take it for
            the ``top_k`` sampling flag of ``generate``. Default: 2.
        moe_ffn_dim (int | None): hidden width of each expert's SwiGLU (``d/h → moe_ffn_dim →
            d/h``). Default: None (the default of :class:`~papercraft.mhmoe.layer.MHMoE`).
        moe_every (int): block ``i`` is an MoE block when ``i % moe_every == moe_every - 1``;
            ``0`` makes a dense model. Default: 2.
        moe_head_projection (bool): use the multi-head and merge projections (``d × d``);
            False makes them identities. Default: True.
        capacity_factor (float | None): expert capacity factor; None is dropless (see the
            module docstring for why this is the default). Default: None.
        router (str): ``"softmax"`` (linear gate) or ``"xmoe"`` (X-MoE cosine router).
            Default: "softmax".
        router_dim (int): X-MoE routing dimension (ignored by ``"softmax"``). Default: 16.
        gate_temperature (float): X-MoE gating temperature (paper: 0.3). Default: 1.0.
        aux_loss_coef (float): coefficient of each layer's load-balancing loss. Default: 1e-2.
        z_loss_coef (float): coefficient of each layer's router z-loss. Default: 0.0.
        moe_dispatch (str): ``"loop"``, ``"grouped"`` or ``"dense"``. Default: "grouped".
        output_router_logits (bool): return every MoE layer's router logits. Default: False.
        pad_token_id (int | None): padding token. Default: None.
        bos_token_id (int | None): beginning-of-sequence token. Default: 1.
        eos_token_id (int | list[int] | None): end-of-sequence token(s). Default: 2.
        use_cache (bool): return a KV cache from the forward in eval mode. Default: True.

    Raises:
        ValueError: for a value of the wrong type or range, or an invalid combination: a hidden
            size the attention heads (without ``head_dim``) or ``moe_heads`` do not divide, query
            heads not a multiple of the KV heads, an odd ``head_dim``, ``num_experts_per_tok > num_experts``,
            ``moe_every > num_hidden_layers``, an unknown ``router`` / ``moe_dispatch``, ...

    Example::

        >>> from papercraft.mhmoe.configuration import MHMoEConfig
        >>> cfg = MHMoEConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4)
        >>> cfg.moe_layer_indices, cfg.head_dim, cfg.intermediate_size
        ((1, 3), 16, 170)
    """

    model_type = "papercraft_mhmoe"

    vocab_size: int = 32000
    hidden_size: int = 768
    intermediate_size: int | None = None
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    attention_backend: str | None = None
    tie_word_embeddings: bool = False
    num_experts: int = 8
    moe_heads: int = 4
    num_experts_per_tok: int = 2
    moe_ffn_dim: int | None = None
    moe_every: int = 2
    moe_head_projection: bool = True
    capacity_factor: float | None = None
    router: str = "softmax"
    router_dim: int = 16
    gate_temperature: float = 1.0
    aux_loss_coef: float = 1e-2
    z_loss_coef: float = 0.0
    moe_dispatch: str = "grouped"
    output_router_logits: bool = False
    pad_token_id: int | None = None
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    use_cache: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        self._check_types()
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
            self.intermediate_size = max(1, 8 * self.hidden_size // 3)
        self.validate()
        super().__post_init__(**kwargs)

    def _check_types(self) -> None:
        """Each field has the right type and range on its own (before defaults are resolved)."""
        positive = (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "max_position_embeddings",
            "num_experts",
            "moe_heads",
            "num_experts_per_tok",
            "router_dim",
        )
        for name in positive:
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("intermediate_size", "num_key_value_heads", "head_dim", "moe_ffn_dim"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise ValueError(f"{name} must be an int >= 1 or None, got {value!r}")
        if not _is_int(self.moe_every) or self.moe_every < 0:
            raise ValueError(
                f"moe_every must be an int >= 0 (0 = no MoE layer), got {self.moe_every!r}"
            )
        for name in ("rope_theta", "rms_norm_eps", "gate_temperature"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        for name in ("initializer_range", "aux_loss_coef", "z_loss_coef"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        factor = self.capacity_factor
        if factor is not None and (not _is_number(factor) or not 0 < factor < math.inf):
            raise ValueError(
                "capacity_factor must be a positive finite number, or None for dropless "
                f"routing, got {factor!r}"
            )
        for name, allowed in (("router", MOE_ROUTERS), ("moe_dispatch", MOE_DISPATCHERS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        backend = self.attention_backend
        if backend is not None and (not isinstance(backend, str) or not backend):
            raise ValueError(f"attention_backend must be a backend name or None, got {backend!r}")
        for name in (
            "tie_word_embeddings",
            "use_cache",
            "moe_head_projection",
            "output_router_logits",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")

    def validate(self) -> None:
        """Check the resolved configuration; also run by ``save_pretrained``.

        Raises:
            ValueError: naming the offending field(s) and what was expected.
        """
        self._check_types()
        heads, kv_heads = self.num_attention_heads, self.num_key_value_heads
        if kv_heads is not None and heads % kv_heads != 0:
            raise ValueError(
                f"num_attention_heads ({heads}) must be a multiple of num_key_value_heads "
                f"({kv_heads})"
            )
        if self.head_dim is not None and self.head_dim % 2 != 0:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")
        if self.hidden_size % self.moe_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by moe_heads "
                f"({self.moe_heads}): each token splits into moe_heads sub-tokens"
            )
        if self.num_experts_per_tok > self.num_experts:
            raise ValueError(
                f"num_experts_per_tok must be <= num_experts ({self.num_experts}), got "
                f"{self.num_experts_per_tok}"
            )
        if self.moe_every > self.num_hidden_layers:
            raise ValueError(
                f"moe_every must be <= num_hidden_layers ({self.num_hidden_layers}) so that at "
                f"least one block is an MoE block (or 0 for a dense model), got {self.moe_every}"
            )

    def is_moe_layer(self, index: int) -> bool:
        """Whether block ``index`` (0-based) uses MH-MoE: ``index % moe_every == moe_every - 1``.

        Args:
            index (int): block index in ``[0, num_hidden_layers)``.

        Returns:
            bool: True for an MoE block, False for a dense SwiGLU block.

        Raises:
            ValueError: if ``index`` is outside ``[0, num_hidden_layers)``.
        """
        if not _is_int(index) or not 0 <= index < self.num_hidden_layers:
            raise ValueError(
                f"index must be an int in [0, {self.num_hidden_layers}), got {index!r}"
            )
        every = self.moe_every
        return every > 0 and index % every == every - 1

    @property
    def moe_layer_indices(self) -> tuple[int, ...]:
        """Indices of the MoE blocks, ascending."""
        return tuple(i for i in range(self.num_hidden_layers) if self.is_moe_layer(i))
