"""YOCO decoder-decoder language model for Hugging Face transformers.

Implements "You Only Cache Once" (Sun et al., 2024, arXiv 2405.05254), §2:

    X⁰ = embed(x) · √d
    Xˡ⁺¹ = Xˡ + mixer(RMSNorm(Xˡ));  Xˡ⁺¹ += FFN(RMSNorm(Xˡ⁺¹))      self-decoder, l < L_self
    K̂, V̂ = RoPE(kv_norm(X^L_self) W_K), kv_norm(X^L_self) W_V          global K/V, §2.1
    Xˡ⁺¹ = Xˡ + CrossAttn(RMSNorm(Xˡ) W_Q, K̂, V̂);  Xˡ⁺¹ += FFN(...)    cross-decoder, §2.2
    logits = RMSNorm(X^L) W_out                                         untied output projection

The mixer is gated retention or sliding-window attention (:mod:`papercraft.yoco.layers`). The
global K/V are computed once and cached once (:class:`~papercraft.yoco.YocoCache`).

Early-exit prefill (§2.3): the cross-decoder is position-wise except for its attention
over the fixed global K/V, so when only the last ``n`` logits are needed (``logits_to_keep=n``,
which ``generate`` passes in prefill) the cross-decoder runs for the last ``n`` positions only,
attending to all ``T`` global keys; the output equals the last ``n`` positions of the full forward.

Left padding: positions come from ``attention_mask`` (``cumsum - 1``, as in transformers), gRet
gives padded tokens ``k = 0`` and ``log γ = 0`` (they leave the state untouched), and SWA and the
cross-attention hide padded keys.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from transformers import GenerationConfig, GenerationMixin, PreTrainedModel
from transformers import initialization as hf_init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from papercraft.core.ffn import SwiGLU
from papercraft.core.norm import RMSNorm
from papercraft.core.rope import RoPELayout, RotaryEmbedding
from papercraft.yoco.cache import YocoCache
from papercraft.yoco.configuration_yoco import YocoConfig
from papercraft.yoco.layers import (
    XAVIER_GAIN_ATTR,
    CrossAttention,
    GatedRetention,
    GlobalKeyValue,
    SlidingWindowAttention,
)

__all__ = [
    "YocoCrossDecoderLayer",
    "YocoForCausalLM",
    "YocoModel",
    "YocoPreTrainedModel",
    "YocoSelfDecoderLayer",
]


def _keep_positions(hidden: Tensor, logits_to_keep: int | Tensor) -> Tensor:
    """Positions of ``hidden`` (B, T, ...) to project: the last ``n`` for an int (0 keeps all),
    or the given position indices for a tensor; transformers' ``logits_to_keep`` convention."""
    if isinstance(logits_to_keep, int):
        return hidden[:, -logits_to_keep:] if logits_to_keep > 0 else hidden
    return hidden[:, logits_to_keep]


def _resolved(config: YocoConfig) -> tuple[int, int, int, int]:
    """``(head_dim, num_key_value_heads, num_self_decoder_layers, intermediate_size)``."""
    head_dim, kv_heads = config.head_dim, config.num_key_value_heads
    self_layers, ffn = config.num_self_decoder_layers, config.intermediate_size
    # all resolved by YocoConfig.__post_init__
    assert head_dim is not None
    assert kv_heads is not None
    assert self_layers is not None
    assert ffn is not None
    return head_dim, kv_heads, self_layers, ffn


def _rope_layout(config: YocoConfig) -> RoPELayout:
    return "half" if config.rope_layout == "half" else "interleaved"


class YocoSelfDecoderLayer(GradientCheckpointingLayer):
    """A self-decoder block: ``x += mixer(norm(x)); x += ffn(norm(x))`` (§2.1, §3).

    Args:
        config (YocoConfig): the model configuration (``self_decoder`` picks the mixer).
    """

    def __init__(self, config: YocoConfig) -> None:
        super().__init__()
        head_dim, _, _, ffn = _resolved(config)
        d, eps, layout = config.hidden_size, config.rms_norm_eps, _rope_layout(config)
        self.mixer_norm = RMSNorm(d, eps=eps)
        self.mixer: GatedRetention | SlidingWindowAttention
        if config.self_decoder == "gret":
            self.mixer = GatedRetention(
                hidden_size=d,
                num_heads=config.num_attention_heads,
                head_dim=head_dim,
                chunk_size=config.chunk_size,
                gate_logit_normalizer=config.gate_logit_normalizer,
                norm_eps=eps,
                rope_layout=layout,
            )
        else:
            self.mixer = SlidingWindowAttention(
                hidden_size=d,
                num_heads=config.num_attention_heads,
                head_dim=head_dim,
                window=config.sliding_window,
                rope_layout=layout,
            )
        self.ffn_norm = RMSNorm(d, eps=eps)
        self.ffn = SwiGLU(d, ffn)

    def forward(
        self,
        hidden: Tensor,
        cos: Tensor,
        sin: Tensor,
        *,
        state: Tensor | None = None,
        past_key: Tensor | None = None,
        past_value: Tensor | None = None,
        token_mask: Tensor | None = None,
        key_padding: Tensor | None = None,
        output_memory: bool = False,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Run the block on ``T`` tokens.

        Args:
            hidden (Tensor): ``(B, T, d)``.
            cos (Tensor): RoPE cosines ``(B, T, d_h/2)``.
            sin (Tensor): RoPE sines, same shape.
            state (Tensor | None): gRet state before these tokens. Default: None.
            past_key (Tensor | None): SWA cached window keys ``(B, H, w, d_h)``. Default: None.
            past_value (Tensor | None): SWA cached window values. Default: None.
            token_mask (Tensor | None): gRet ``(B, T)`` bool, False at padding. Default: None.
            key_padding (Tensor | None): SWA ``(B, w + T)`` bool over the window keys and these
                tokens, False at padding. Default: None.
            output_memory (bool): return what the cache keeps. Default: False.

        Returns:
            tuple[Tensor, Tensor | None, Tensor | None]: the output ``(B, T, d)``, then for gRet
            ``(state, None)`` and for SWA ``(keys, values)`` of the window plus these tokens
            (``None`` unless ``output_memory``).
        """
        x = self.mixer_norm(hidden)
        first: Tensor | None
        second: Tensor | None = None
        if isinstance(self.mixer, GatedRetention):
            mixed, first = self.mixer(
                x, cos, sin, state=state, token_mask=token_mask, output_state=output_memory
            )
        else:
            mixed, first, second = self.mixer(
                x, cos, sin, past_key=past_key, past_value=past_value, key_padding=key_padding
            )
            if not output_memory:
                first = second = None
        hidden = hidden + mixed
        hidden = hidden + self.ffn(self.ffn_norm(hidden))
        return hidden, first, second


class YocoCrossDecoderLayer(GradientCheckpointingLayer):
    """A cross-decoder block over the global K/V: ``x += xattn(norm(x)); x += ffn(norm(x))``.

    Args:
        config (YocoConfig): the model configuration.
    """

    def __init__(self, config: YocoConfig) -> None:
        super().__init__()
        head_dim, _, _, ffn = _resolved(config)
        d, eps = config.hidden_size, config.rms_norm_eps
        self.mixer_norm = RMSNorm(d, eps=eps)
        self.cross_attn = CrossAttention(
            hidden_size=d,
            num_heads=config.num_attention_heads,
            head_dim=head_dim,
            rope_layout=_rope_layout(config),
        )
        self.ffn_norm = RMSNorm(d, eps=eps)
        self.ffn = SwiGLU(d, ffn)

    def forward(
        self,
        hidden: Tensor,
        cos: Tensor,
        sin: Tensor,
        global_key: Tensor,
        global_value: Tensor,
        key_padding: Tensor | None = None,
    ) -> Tensor:
        """Run the block for ``T`` query positions (the last ``T`` of the ``S`` keys).

        Args:
            hidden (Tensor): ``(B, T, d)``.
            cos (Tensor): RoPE cosines of the queries ``(B, T, d_h/2)``.
            sin (Tensor): RoPE sines, same shape.
            global_key (Tensor): ``(B, n_kv, S, d_h)``.
            global_value (Tensor): ``(B, n_kv, S, d_h)``.
            key_padding (Tensor | None): ``(B, S)`` bool, False at padded keys. Default: None.

        Returns:
            Tensor: ``(B, T, d)``.
        """
        x = self.mixer_norm(hidden)
        hidden = hidden + self.cross_attn(
            x, cos, sin, global_key, global_value, key_padding=key_padding
        )
        return hidden + self.ffn(self.ffn_norm(hidden))


class YocoPreTrainedModel(PreTrainedModel):
    """Weights init (the paper's) and the Hugging Face plumbing shared by the YOCO models.

    Init (official ``model_parallel_init.py``): gRet ``q/k/v/g/gt`` Xavier-uniform with gain
    ``2^-2.5`` and its ``out_proj`` gain ``2^-1``; embeddings ``N(0, d^-1/2)``; every other
    linear layer (SWA, global K/V, cross-attention, FFN, ``lm_head``) PyTorch's default
    ``kaiming_uniform(a=√5)`` as in the official code; RMSNorm gains 1.
    """

    config_class = YocoConfig
    config: YocoConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["YocoSelfDecoderLayer", "YocoCrossDecoderLayer"]  # noqa: RUF012
    _is_stateful = True  # the gRet state cannot be rolled back (no assisted decoding)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # transformers visits the leaf modules; gRet's projections carry their Xavier gain
        if isinstance(module, nn.Linear):
            gain = getattr(module, XAVIER_GAIN_ATTR, None)
            if gain is not None:
                hf_init.xavier_uniform_(module.weight, gain=float(gain))
            else:
                hf_init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                hf_init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            hf_init.normal_(module.weight, mean=0.0, std=module.embedding_dim**-0.5)
        elif isinstance(module, RMSNorm) and module.weight is not None:
            hf_init.ones_(module.weight)


def _positions_from_mask(mask: Tensor, length: int) -> Tensor:
    """Positions of the last ``length`` tokens from a ``(B, S)`` mask (``cumsum - 1``)."""
    positions = mask.long().cumsum(-1) - 1  # (B, S)
    positions = positions.masked_fill(~mask, 0)
    return positions[:, -length:]


class YocoModel(YocoPreTrainedModel):
    """The YOCO decoder-decoder stack without the output projection.

    Args:
        config (YocoConfig): the model configuration.

    Attributes:
        prefill_segment_size (int): in inference with a cache, prompts longer than this run
            through the self-decoder in segments of this many tokens (same result, smaller
            temporaries: faster on CPU). 0 disables it. Default: 2048.
    """

    prefill_segment_size: int = 2048

    def __init__(self, config: YocoConfig) -> None:
        super().__init__(config)
        head_dim, kv_heads, self_layers, _ = _resolved(config)
        d = config.hidden_size
        self.embed_tokens = nn.Embedding(config.vocab_size, d)
        self.embed_scale = math.sqrt(d)
        self.self_layers = nn.ModuleList(YocoSelfDecoderLayer(config) for _ in range(self_layers))
        self.global_kv = GlobalKeyValue(
            hidden_size=d,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            norm_eps=config.rms_norm_eps,
            rope_layout=_rope_layout(config),
        )
        self.cross_layers = nn.ModuleList(
            YocoCrossDecoderLayer(config) for _ in range(config.num_cross_decoder_layers)
        )
        self.norm = RMSNorm(d, eps=config.rms_norm_eps)
        self.rotary = RotaryEmbedding(
            head_dim,
            base=config.rope_theta,
            layout=_rope_layout(config),
            freq_exponents="arange" if config.rope_frequencies == "arange" else "linspace",
        )
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        if not isinstance(value, nn.Embedding):
            raise TypeError(f"value must be an nn.Embedding, got {type(value).__name__}")
        self.embed_tokens = value

    def _check_inputs(
        self,
        input_ids: Tensor | None,
        inputs_embeds: Tensor | None,
        cache: YocoCache | None,
        attention_mask: Tensor | None,
    ) -> tuple[int, int, int]:
        """Validate the inputs; return ``(B, T, past)``."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            if input_ids.ndim != 2 or input_ids.is_floating_point():
                raise ValueError(
                    f"input_ids must be an integer tensor (B, T), got {input_ids.dtype} "
                    f"of shape {tuple(input_ids.shape)}"
                )
            batch, length = input_ids.shape
        else:
            assert inputs_embeds is not None
            if inputs_embeds.ndim != 3 or inputs_embeds.shape[-1] != self.config.hidden_size:
                raise ValueError(
                    f"inputs_embeds must have shape (B, T, {self.config.hidden_size}), "
                    f"got {tuple(inputs_embeds.shape)}"
                )
            batch, length, _ = inputs_embeds.shape
        if length < 1:
            raise ValueError("the input must hold at least one token (T >= 1), got T = 0")
        past = 0
        if cache is not None:
            past = cache.get_seq_length()
            if past and cache.batch_size != batch:
                raise ValueError(
                    f"cache holds batch size {cache.batch_size} but the input has batch size {batch}"
                )
        if attention_mask is not None:
            expected = (batch, past + length)
            if attention_mask.ndim != 2 or tuple(attention_mask.shape) != expected:
                raise ValueError(
                    "attention_mask must be 2-dim (B, past + T) = "
                    f"{expected} (1 = token, 0 = padding), got shape {tuple(attention_mask.shape)}"
                )
        return batch, length, past

    def _self_decode(
        self,
        hidden: Tensor,
        cos: Tensor,
        sin: Tensor,
        cache: YocoCache | None,
        mask: Tensor | None,
        token_mask: Tensor | None,
        all_hidden: list[Tensor] | None,
    ) -> Tensor:
        """The self-decoder layers over ``hidden`` ``(B, t, d)``, continuing ``cache``.

        ``mask`` is the padding mask up to and including these ``t`` tokens, ``token_mask``
        its last ``t`` columns; each block's output is appended to ``all_hidden`` unless it is
        None (``output_hidden_states``).
        """
        for idx, layer in enumerate(self.self_layers):
            state = past_key = past_value = None
            if cache is not None:
                state = cache.states[idx]
                past_key, past_value = cache.past_window(idx)
            window_padding = None
            if mask is not None:
                cached = 0 if past_key is None else past_key.shape[2]
                window_padding = mask[:, mask.shape[1] - hidden.shape[1] - cached :]
            hidden, first, second = layer(
                hidden,
                cos,
                sin,
                state=state,
                past_key=past_key,
                past_value=past_value,
                token_mask=token_mask,
                key_padding=window_padding,
                output_memory=cache is not None,
            )
            if cache is not None and first is not None:
                if second is None:
                    cache.update_state(idx, first)
                else:
                    cache.store_window(idx, first, second)
            if all_hidden is not None:
                all_hidden.append(hidden)
        return hidden

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache: YocoCache | None = None,
        inputs_embeds: Tensor | None = None,
        use_cache: bool | None = None,
        cross_positions: int = 0,
        output_hidden_states: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        """Self-decoder, global K/V and cross-decoder over ``T`` new tokens.

        Args:
            input_ids (Tensor | None): token ids ``(B, T)``. Default: None.
            attention_mask (Tensor | None): ``(B, past + T)``, 1 for tokens, 0 for (left)
                padding. Default: None (no padding).
            position_ids (Tensor | None): ``(B, T)`` or ``(1, T)``. Default: None (from
                ``attention_mask``, else ``past + arange(T)``).
            cache (YocoCache | None): the cache to continue from; updated in place.
                Default: None.
            inputs_embeds (Tensor | None): ``(B, T, d)`` instead of ``input_ids`` (scaled by
                ``√d`` like the embedding output). Default: None.
            use_cache (bool | None): build/extend and return a cache. Default: None
                (``config.use_cache`` in eval mode, False in training mode).
            cross_positions (int): run the cross-decoder only for the last ``n`` positions
                (early-exit prefill); ``0`` runs all. Default: 0.
            output_hidden_states (bool | None): also return the embedding output and every
                block's output (cross-decoder blocks with ``cross_positions`` positions).
                Default: None (``config.output_hidden_states``).
            **kwargs (Any): ignored (transformers passes extra generation arguments).

        Returns:
            BaseModelOutputWithPast: ``last_hidden_state`` ``(B, T or n, d)`` after the final
            norm, ``cache`` (or ``None``), ``hidden_states`` if requested.

        Raises:
            ValueError: on inconsistent inputs (both or neither of ids/embeds, mask shape,
                cache batch size, ...).
            TypeError: for a cache that is not a :class:`YocoCache`.
        """
        if kwargs.get("output_attentions"):
            raise ValueError("output_attentions is not supported by YOCO (gRet has no weights)")
        given: object = cache
        if given is not None and not isinstance(given, YocoCache):
            # generate or a user may hand over an empty transformers cache: replace it
            get_length = getattr(given, "get_seq_length", None)
            if callable(get_length) and get_length() == 0:
                cache = None
            else:
                raise TypeError(f"cache must be a YocoCache, got {type(given).__name__}")
        bad_positions = isinstance(cross_positions, bool) or not isinstance(cross_positions, int)
        if bad_positions or cross_positions < 0:
            raise ValueError(f"cross_positions must be an int >= 0, got {cross_positions!r}")
        batch, length, past = self._check_inputs(input_ids, inputs_embeds, cache, attention_mask)
        if use_cache is None:  # a given cache is continued; else the config, in eval mode
            use_cache = cache is not None or (bool(self.config.use_cache) and not self.training)
        if not use_cache and past:
            raise ValueError("a non-empty cache was given with use_cache=False")
        if not use_cache:
            cache = None
        elif cache is None:
            cache = YocoCache(self.config)
        if output_hidden_states is None:
            output_hidden_states = bool(self.config.output_hidden_states)

        # padding masks: None when there is no padding (fast paths in the kernels)
        mask: Tensor | None = None
        if attention_mask is not None:
            mask = attention_mask.to(torch.bool)
            if bool(mask.all()):
                mask = None
        device = self.embed_tokens.weight.device
        if position_ids is None:
            if attention_mask is not None:
                position_ids = _positions_from_mask(attention_mask.to(torch.bool), length)
            else:
                position_ids = torch.arange(past, past + length, device=device)[None]
        elif position_ids.ndim == 1:
            position_ids = position_ids[None]
        if position_ids.shape[-1] != length or position_ids.shape[0] not in (1, batch):
            raise ValueError(
                f"position_ids must have shape ({batch}, {length}) or (1, {length}), "
                f"got {tuple(position_ids.shape)}"
            )
        cos, sin = self.rotary.cos_sin(position_ids)  # (B or 1, T, d_h/2), float32
        token_mask = None if mask is None else mask[:, -length:]  # (B, T)

        embeds = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        segment = self.prefill_segment_size
        segmented = (
            cache is not None
            and not output_hidden_states
            and not torch.is_grad_enabled()
            and segment > 0
            and length > segment
        )
        all_hidden: list[Tensor] = []
        global_key: Tensor
        global_value: Tensor
        if not segmented:
            hidden = embeds * self.embed_scale  # (B, T, d)
            if output_hidden_states:
                all_hidden.append(hidden)
            hidden = self._self_decode(
                hidden,
                cos,
                sin,
                cache,
                mask,
                token_mask,
                all_hidden if output_hidden_states else None,
            )
            global_key, global_value = self.global_kv(hidden, cos, sin)  # (B, n_kv, T, d_h)
            if cache is not None:
                global_key, global_value = cache.update_global(global_key, global_value)
        else:
            # Segmented prefill (inference only): the self-decoder and the global K/V run over
            # `segment` tokens at a time, carrying the cache from one segment to the next. Same
            # result as one pass, but every temporary stays small (no page faults from fresh
            # multi-MB buffers) and only the tail the cross-decoder needs is kept.
            assert cache is not None
            kept: list[Tensor] = []
            wanted = cross_positions if cross_positions > 0 else length
            for start in range(0, length, segment):
                stop = min(length, start + segment)
                seg_cos, seg_sin = cos[:, start:stop], sin[:, start:stop]
                seg_mask = None if mask is None else mask[:, : mask.shape[1] - length + stop]
                seg_tokens = None if token_mask is None else token_mask[:, start:stop]
                seg_hidden = embeds[:, start:stop] * self.embed_scale  # (B, t, d)
                seg_hidden = self._self_decode(
                    seg_hidden, seg_cos, seg_sin, cache, seg_mask, seg_tokens, None
                )
                seg_key, seg_value = self.global_kv(seg_hidden, seg_cos, seg_sin)
                global_key, global_value = cache.update_global(seg_key, seg_value)
                kept.append(seg_hidden)
                while len(kept) > 1 and sum(h.shape[1] for h in kept[1:]) >= wanted:
                    kept.pop(0)
            hidden = torch.cat(kept, dim=1)  # (B, tail, d): the last positions
            tail = hidden.shape[1]
            cos, sin = cos[:, length - tail :], sin[:, length - tail :]
            length = tail

        if 0 < cross_positions < length:  # early exit: only the last n query positions
            hidden = hidden[:, -cross_positions:]
            cos, sin = cos[:, -cross_positions:], sin[:, -cross_positions:]
        for cross_layer in self.cross_layers:
            hidden = cross_layer(hidden, cos, sin, global_key, global_value, mask)
            if output_hidden_states:
                all_hidden.append(hidden)
        hidden = self.norm(hidden)
        return BaseModelOutputWithPast(
            last_hidden_state=hidden,
            cache=cache,  # type: ignore[arg-type]  # a YocoCache, not a transformers Cache
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
        )


class YocoForCausalLM(YocoPreTrainedModel, GenerationMixin):
    """YOCO with a language-modeling head: ``generate``, training loss, early-exit prefill.

    Args:
        config (YocoConfig): the model configuration.

    Example::

        >>> import torch
        >>> from papercraft.yoco import YocoConfig, YocoForCausalLM
        >>> cfg = YocoConfig(vocab_size=128, hidden_size=32, num_hidden_layers=4,
        ...                  num_attention_heads=4, num_key_value_heads=2)
        >>> model = YocoForCausalLM(cfg).eval()
        >>> out = model.generate(torch.tensor([[1, 5, 7]]), max_new_tokens=4, do_sample=False)
        >>> out.shape
        torch.Size([1, 7])
    """

    # tied only when config.tie_word_embeddings (False by default, as in the paper)
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}  # noqa: RUF012

    def __init__(self, config: YocoConfig) -> None:
        super().__init__(config)
        self.model = YocoModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    def _prepare_cache_for_generation(
        self,
        generation_config: GenerationConfig,
        model_kwargs: dict[str, Any],
        generation_mode: Any,
        batch_size: int,
        max_cache_length: int,
    ) -> bool:
        # generate gets a fresh YocoCache up front (so prefill_chunk_size works too)
        return YocoCache.prepare_for_generation(self.config, generation_config, model_kwargs)

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache: YocoCache | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | Tensor = 0,
        return_dict: bool | None = True,
        past_key_values: YocoCache | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast | tuple[Any, ...]:
        """Logits (and loss) for ``T`` new tokens, continuing ``cache``.

        Args:
            input_ids (Tensor | None): token ids ``(B, T)``. Default: None.
            attention_mask (Tensor | None): ``(B, past + T)``, 0 at (left) padding. Default: None.
            position_ids (Tensor | None): ``(B, T)``. Default: None (from the mask).
            cache (YocoCache | None): cache to continue from, updated in place. Default: None.
            inputs_embeds (Tensor | None): ``(B, T, d)`` instead of ids. Default: None.
            labels (Tensor | None): ``(B, T)`` targets (shifted inside, like Llama; -100 is
                ignored). With labels every position runs. Default: None.
            use_cache (bool | None): return a cache. Default: None (config, eval mode only).
            logits_to_keep (int | Tensor): ``n > 0`` keeps the last ``n`` logits and, without
                labels, runs the cross-decoder only there (early-exit prefill); ``0`` keeps all;
                a tensor selects positions as in transformers. Default: 0.
            return_dict (bool | None): return a ``CausalLMOutputWithPast`` (else a tuple).
                Default: True.
            past_key_values (YocoCache | None): alias of ``cache`` (older transformers name).
                Default: None.
            **kwargs (Any): passed to the loss (``num_items_in_batch``, ...) and the model.

        Returns:
            CausalLMOutputWithPast | tuple[Any, ...]: ``loss``, ``logits`` ``(B, n, V)``,
            ``cache``, ``hidden_states``.

        Raises:
            ValueError: if ``cache`` and ``past_key_values`` are both given and differ, or
                ``logits_to_keep`` is a negative int; see :meth:`YocoModel.forward`.
        """
        if past_key_values is not None:
            if cache is not None and cache is not past_key_values:
                raise ValueError("pass the cache as cache= or past_key_values=, not both")
            cache = past_key_values
        if isinstance(logits_to_keep, bool) or (
            isinstance(logits_to_keep, int) and logits_to_keep < 0
        ):
            raise ValueError(
                f"logits_to_keep must be an int >= 0 or a tensor, got {logits_to_keep}"
            )
        early_exit = labels is None and isinstance(logits_to_keep, int) and logits_to_keep > 0
        loss_kwargs = {
            key: kwargs.pop(key) for key in ("num_items_in_batch", "ignore_index") if key in kwargs
        }
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            cross_positions=logits_to_keep if early_exit else 0,
            **kwargs,
        )
        hidden = outputs.last_hidden_state  # (B, T or n, d)
        loss = None
        if labels is not None:
            logits = self.lm_head(hidden)  # (B, T, V)
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.vocab_size, **loss_kwargs
            )
            if not (isinstance(logits_to_keep, int) and logits_to_keep == 0):
                logits = _keep_positions(logits, logits_to_keep)
        else:
            logits = self.lm_head(_keep_positions(hidden, logits_to_keep))
        output = CausalLMOutputWithPast(
            loss=loss, logits=logits, cache=outputs.cache, hidden_states=outputs.hidden_states
        )
        return output if return_dict is not False else output.to_tuple()
