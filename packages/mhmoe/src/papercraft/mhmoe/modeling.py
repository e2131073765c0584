"""MH-MoE decoder-only language model for Hugging Face transformers.

A Llama-style pre-norm decoder whose feed-forward network is an MH-MoE layer (Wu et al., 2024,
"Multi-Head Mixture-of-Experts", arXiv 2404.15045, §3) in every ``moe_every``-th block:

    X⁰ = embed(x)
    Xˡ⁺¹ = Xˡ + Attn(RMSNorm(Xˡ))                     causal GQA with RoPE (papercraft.core)
    Xˡ⁺¹ += FFN(RMSNorm(Xˡ⁺¹))                        FFN = MHMoE for MoE blocks, else SwiGLU
    logits = RMSNorm(X^L) W_out

Block ``i`` is an MoE block when ``i % moe_every == moe_every - 1`` (the official torchscale rule,
see :mod:`papercraft.mhmoe.configuration`). The training loss is the next-token cross-entropy plus
``Σ_layers MoEOutput.loss`` (each layer's ``aux_loss_coef · load-balancing + z_loss_coef ·
z-loss``, computed inside the layer over its real sub-tokens); ``aux_loss`` in the outputs is that
sum, so ``loss = lm_loss + aux_loss``.

Padding: ``attention_mask`` (1 = token, 0 = left padding) hides padded keys, gives positions
``cumsum - 1`` as in transformers, and is passed to every MoE layer as its padding mask (padded
tokens are neither routed nor counted in the balancing loss). The KV cache is the transformers
:class:`~transformers.DynamicCache`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn
from transformers import DynamicCache, GenerationMixin, PreTrainedModel
from transformers import initialization as hf_init
from transformers.cache_utils import Cache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import MoeCausalLMOutputWithPast, MoeModelOutputWithPast

from papercraft.core.attention import attention
from papercraft.core.ffn import SwiGLU
from papercraft.core.norm import RMSNorm
from papercraft.core.rope import RotaryEmbedding, apply_rope
from papercraft.mhmoe.configuration import MHMoEConfig
from papercraft.mhmoe.layer import MHMoE, MoEOutput
from papercraft.mhmoe.routing import RouterKind

__all__ = [
    "MHMoEAttention",
    "MHMoECausalLMOutput",
    "MHMoEDecoderLayer",
    "MHMoEForCausalLM",
    "MHMoEModel",
    "MHMoEModelOutput",
    "MHMoEPreTrainedModel",
    "register_auto_classes",
]


@dataclass
class MHMoEModelOutput(MoeModelOutputWithPast):
    """Output of :class:`MHMoEModel`: ``MoeModelOutputWithPast`` plus ``aux_loss``.

    Args:
        aux_loss (Tensor | None): ``Σ_layers MoEOutput.loss`` (coefficients applied), a scalar;
            None for a model without MoE blocks. Default: None.
    """

    aux_loss: Tensor | None = None


@dataclass
class MHMoECausalLMOutput(MoeCausalLMOutputWithPast):
    """Output of :class:`MHMoEForCausalLM`: ``loss = lm_loss + aux_loss`` (when labels are given).

    Args:
        lm_loss (Tensor | None): the next-token cross-entropy alone. Default: None.
    """

    lm_loss: Tensor | None = None


def _resolved(config: MHMoEConfig) -> tuple[int, int, int]:
    """``(head_dim, num_key_value_heads, intermediate_size)``, resolved by the config."""
    head_dim, kv_heads, ffn = config.head_dim, config.num_key_value_heads, config.intermediate_size
    assert head_dim is not None
    assert kv_heads is not None
    assert ffn is not None
    return head_dim, kv_heads, ffn


class MHMoEAttention(nn.Module):
    """Causal grouped-query self-attention with RoPE (rotate-half layout) and a KV cache.

    Args:
        config (MHMoEConfig): the model configuration.
        layer_idx (int): index of the block (its slot in the cache).
    """

    def __init__(self, config: MHMoEConfig, layer_idx: int) -> None:
        super().__init__()
        head_dim, kv_heads, _ = _resolved(config)
        d = config.hidden_size
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = kv_heads
        self.head_dim = head_dim
        self.backend = config.attention_backend
        self.q_proj = nn.Linear(d, self.num_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(d, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(d, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * head_dim, d, bias=False)

    def forward(
        self,
        hidden: Tensor,
        cos: Tensor,
        sin: Tensor,
        *,
        key_padding: Tensor | None = None,
        cache: Cache | None = None,
    ) -> Tensor:
        """Attend from ``T`` new tokens to the cached and new keys.

        Args:
            hidden (Tensor): normalised input ``(B, T, d)``.
            cos (Tensor): RoPE cosines ``(B or 1, T, head_dim/2)``.
            sin (Tensor): RoPE sines, same shape.
            key_padding (Tensor | None): ``(B, past + T)`` bool, False at padded keys.
                Default: None (no padding).
            cache (Cache | None): cache to append these keys/values to. Default: None.

        Returns:
            Tensor: ``(B, T, d)``.
        """
        batch, length, _ = hidden.shape
        q = self.q_proj(hidden).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(hidden).view(batch, length, self.num_kv_heads, self.head_dim)
        v = self.v_proj(hidden).view(batch, length, self.num_kv_heads, self.head_dim)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # (B, H_kv, T, D)
        q = apply_rope(q, cos, sin, layout="half")  # (B, H, T, D)
        k = apply_rope(k, cos, sin, layout="half")
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, H_kv, past + T, D)
        attn_mask = None if key_padding is None else key_padding[:, None, None, :]
        out = attention(q, k, v, causal=True, attn_mask=attn_mask, backend=self.backend)
        out = out.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.o_proj(out)  # (B, T, d)


class MHMoEDecoderLayer(GradientCheckpointingLayer):
    """A pre-norm block: ``x += attn(norm(x)); x += ffn(norm(x))``, ffn = MHMoE or SwiGLU.

    Args:
        config (MHMoEConfig): the model configuration.
        layer_idx (int): index of the block; MoE when ``config.is_moe_layer(layer_idx)``.
    """

    def __init__(self, config: MHMoEConfig, layer_idx: int) -> None:
        super().__init__()
        _, _, ffn = _resolved(config)
        d, eps = config.hidden_size, config.rms_norm_eps
        self.layer_idx = layer_idx
        self.is_moe = config.is_moe_layer(layer_idx)
        self.input_layernorm = RMSNorm(d, eps=eps)
        self.self_attn = MHMoEAttention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(d, eps=eps)
        self.mlp: MHMoE | SwiGLU
        if self.is_moe:
            self.mlp = MHMoE(
                d,
                config.num_experts,
                num_heads=config.moe_heads,
                top_k=config.num_experts_per_tok,
                expert_hidden=config.moe_ffn_dim,
                capacity_factor=config.capacity_factor,
                router=cast("RouterKind", config.router),  # checked by MHMoEConfig
                router_dim=config.router_dim,
                gate_temperature=config.gate_temperature,
                aux_loss_coef=config.aux_loss_coef,
                z_loss_coef=config.z_loss_coef,
                dispatch=config.moe_dispatch,
                head_projection=config.moe_head_projection,
            )
        else:
            self.mlp = SwiGLU(d, ffn)

    def forward(
        self,
        hidden: Tensor,
        cos: Tensor,
        sin: Tensor,
        key_padding: Tensor | None = None,
        token_padding: Tensor | None = None,
        cache: Cache | None = None,
    ) -> tuple[Tensor, MoEOutput | None]:
        """Run the block on ``T`` new tokens.

        Args:
            hidden (Tensor): ``(B, T, d)``.
            cos (Tensor): RoPE cosines ``(B or 1, T, head_dim/2)``.
            sin (Tensor): RoPE sines, same shape.
            key_padding (Tensor | None): ``(B, past + T)`` bool, False at padding. Default: None.
            token_padding (Tensor | None): ``(B, T)`` bool, True at real tokens (the MoE
                padding mask). Default: None.
            cache (Cache | None): KV cache, updated in place. Default: None.

        Returns:
            tuple[Tensor, MoEOutput | None]: the output ``(B, T, d)`` and, for an MoE block,
            the layer's :class:`~papercraft.mhmoe.layer.MoEOutput`.
        """
        attn_in = self.input_layernorm(hidden)
        hidden = hidden + self.self_attn(attn_in, cos, sin, key_padding=key_padding, cache=cache)
        ffn_in = self.post_attention_layernorm(hidden)
        if isinstance(self.mlp, MHMoE):
            moe_out = self.mlp(ffn_in, token_padding)
            return hidden + moe_out.hidden_states, moe_out
        return hidden + self.mlp(ffn_in), None


class MHMoEPreTrainedModel(PreTrainedModel):
    """Weights init and the Hugging Face plumbing shared by the MH-MoE models.

    Init: embeddings and the attention / dense-FFN / ``lm_head`` linear layers ``N(0,
    initializer_range)`` with zero biases (as Llama); RMSNorm gains 1. The MH-MoE layers keep the
    init of :class:`~papercraft.mhmoe.layer.MHMoE` (Xavier head/merge projections, ``N(0, 0.02)``
    experts): :class:`MHMoEModel` marks them initialised before ``post_init``.
    """

    config_class = MHMoEConfig
    config: MHMoEConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["MHMoEDecoderLayer"]  # noqa: RUF012

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = float(self.config.initializer_range)
        if isinstance(module, nn.Linear):
            hf_init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                hf_init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            hf_init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, RMSNorm) and module.weight is not None:
            hf_init.ones_(module.weight)


def _positions_from_mask(mask: Tensor, length: int) -> Tensor:
    """Positions of the last ``length`` tokens from a ``(B, S)`` bool mask (``cumsum - 1``)."""
    positions = mask.long().cumsum(-1) - 1  # (B, S)
    return positions.masked_fill(~mask, 0)[:, -length:]


class MHMoEModel(MHMoEPreTrainedModel):
    """The MH-MoE decoder stack without the output projection.

    Args:
        config (MHMoEConfig): the model configuration.
    """

    def __init__(self, config: MHMoEConfig) -> None:
        super().__init__(config)
        head_dim, _, _ = _resolved(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            MHMoEDecoderLayer(config, i) for i in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary = RotaryEmbedding(head_dim, base=config.rope_theta, layout="half")
        self.gradient_checkpointing = False
        for module in self.modules():  # keep MHMoE's own init (see MHMoEPreTrainedModel)
            if isinstance(module, MHMoE):
                for sub in module.modules():
                    sub._is_hf_initialized = True  # type: ignore[assignment]
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
        past: int,
        attention_mask: Tensor | None,
    ) -> tuple[int, int]:
        """Validate the inputs; return ``(B, T)``."""
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
        if attention_mask is not None:
            expected = (batch, past + length)
            if attention_mask.ndim != 2 or tuple(attention_mask.shape) != expected:
                raise ValueError(
                    f"attention_mask must be 2-dim (B, past + T) = {expected} (1 = token, "
                    f"0 = padding), got shape {tuple(attention_mask.shape)}"
                )
        return batch, length

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        output_router_logits: bool | None = None,
        **kwargs: Any,
    ) -> MHMoEModelOutput:
        """Run the decoder over ``T`` new tokens, continuing ``cache``.

        Args:
            input_ids (Tensor | None): token ids ``(B, T)``. Default: None.
            attention_mask (Tensor | None): ``(B, past + T)``, 1 for tokens, 0 for (left)
                padding. Default: None (no padding).
            position_ids (Tensor | None): ``(B, T)`` or ``(1, T)``. Default: None (from
                ``attention_mask``, else ``past + arange(T)``).
            cache (Cache | None): KV cache to continue, updated in place. Default: None.
            inputs_embeds (Tensor | None): ``(B, T, d)`` instead of ``input_ids``. Default: None.
            use_cache (bool | None): build/extend and return a cache. Default: None
                (``config.use_cache`` in eval mode, or when a cache is given).
            output_hidden_states (bool | None): also return the embedding output and every
                block's output. Default: None (``config.output_hidden_states``).
            output_router_logits (bool | None): return each MoE layer's router logits
                ``(B·T·h, E)``. Default: None (``config.output_router_logits``).
            **kwargs (Any): ignored (transformers passes extra generation arguments).

        Returns:
            MHMoEModelOutput: ``last_hidden_state`` ``(B, T, d)`` after the final norm,
            ``cache``, ``hidden_states``, ``router_logits``, ``aux_loss``.

        Raises:
            ValueError: on inconsistent inputs (both or neither of ids/embeds, mask or position
                shapes, a non-empty cache with ``use_cache=False``, ``output_attentions``).
        """
        if kwargs.get("output_attentions"):
            raise ValueError("output_attentions is not supported by MHMoEModel")
        past = 0 if cache is None else int(cache.get_seq_length())
        batch, length = self._check_inputs(input_ids, inputs_embeds, past, attention_mask)
        if use_cache is None:
            use_cache = cache is not None or (bool(self.config.use_cache) and not self.training)
        if not use_cache and past:
            raise ValueError("a non-empty cache was given with use_cache=False")
        if not use_cache:
            cache = None
        elif cache is None:
            cache = DynamicCache(config=self.config)
        if output_hidden_states is None:
            output_hidden_states = bool(self.config.output_hidden_states)
        if output_router_logits is None:
            output_router_logits = bool(self.config.output_router_logits)

        mask: Tensor | None = None  # (B, past + T), None when nothing is padded
        if attention_mask is not None:
            mask = attention_mask.to(torch.bool)
            if bool(mask.all()):
                mask = None
        device = self.embed_tokens.weight.device
        if position_ids is None:
            if mask is not None:
                position_ids = _positions_from_mask(mask, length)
            else:
                position_ids = torch.arange(past, past + length, device=device)[None]
        elif position_ids.ndim == 1:
            position_ids = position_ids[None]
        if position_ids.shape[-1] != length or position_ids.shape[0] not in (1, batch):
            raise ValueError(
                f"position_ids must have shape ({batch}, {length}) or (1, {length}), "
                f"got {tuple(position_ids.shape)}"
            )
        cos, sin = self.rotary.cos_sin(position_ids)  # (B or 1, T, head_dim/2), fp32
        token_padding = None if mask is None else mask[:, -length:]  # (B, T)

        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        all_hidden: list[Tensor] = [hidden] if output_hidden_states else []
        router_logits: list[Tensor] = []
        aux_loss: Tensor | None = None
        for layer in self.layers:
            hidden, moe_out = layer(
                hidden, cos, sin, key_padding=mask, token_padding=token_padding, cache=cache
            )
            if moe_out is not None:
                aux_loss = moe_out.loss if aux_loss is None else aux_loss + moe_out.loss
                if output_router_logits:
                    router_logits.append(moe_out.routing.router_logits)
            if output_hidden_states:
                all_hidden.append(hidden)
        hidden = self.norm(hidden)
        return MHMoEModelOutput(
            last_hidden_state=hidden,
            cache=cache,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            # transformers annotates tuple[Tensor]; it is one tensor per MoE layer
            router_logits=tuple(router_logits) if output_router_logits else None,  # type: ignore[arg-type]
            aux_loss=aux_loss,
        )


class MHMoEForCausalLM(MHMoEPreTrainedModel, GenerationMixin):
    """MH-MoE decoder with a language-modeling head: training loss and ``generate``.

    Args:
        config (MHMoEConfig): the model configuration.

    Example::

        >>> import torch
        >>> from papercraft.mhmoe.configuration import MHMoEConfig
        >>> from papercraft.mhmoe.modeling import MHMoEForCausalLM
        >>> cfg = MHMoEConfig(vocab_size=128, hidden_size=32, num_hidden_layers=2,
        ...                   num_attention_heads=4, num_experts=4, moe_heads=2)
        >>> model = MHMoEForCausalLM(cfg).eval()
        >>> model.generate(torch.tensor([[1, 5, 7]]), max_new_tokens=4, do_sample=False).shape
        torch.Size([1, 7])
    """

    # tied only when config.tie_word_embeddings
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}  # noqa: RUF012

    def __init__(self, config: MHMoEConfig) -> None:
        super().__init__(config)
        self.model = MHMoEModel(config)
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

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | Tensor = 0,
        return_dict: bool | None = True,
        past_key_values: Cache | None = None,
        **kwargs: Any,
    ) -> MHMoECausalLMOutput | tuple[Any, ...]:
        """Logits, and with ``labels`` the loss ``lm_loss + Σ_layers MoEOutput.loss``.

        Args:
            input_ids (Tensor | None): token ids ``(B, T)``. Default: None.
            attention_mask (Tensor | None): ``(B, past + T)``, 0 at (left) padding. Default: None.
            position_ids (Tensor | None): ``(B, T)``. Default: None (from the mask).
            cache (Cache | None): KV cache to continue, updated in place. Default: None.
            inputs_embeds (Tensor | None): ``(B, T, d)`` instead of ids. Default: None.
            labels (Tensor | None): ``(B, T)`` targets, shifted inside as in Llama; -100 is
                ignored. Default: None.
            use_cache (bool | None): return a cache. Default: None (config, eval mode only).
            logits_to_keep (int | Tensor): ``n > 0`` keeps the last ``n`` logits, ``0`` all; a
                tensor selects positions (transformers' convention). Default: 0.
            return_dict (bool | None): return an :class:`MHMoECausalLMOutput` (else a tuple).
                Default: True.
            past_key_values (Cache | None): alias of ``cache`` (older transformers name).
                Default: None.
            **kwargs (Any): ``num_items_in_batch`` / ``ignore_index`` go to the loss, the rest
                to :meth:`MHMoEModel.forward`.

        Returns:
            MHMoECausalLMOutput | tuple[Any, ...]: ``loss``, ``aux_loss``, ``logits``
            ``(B, n, V)``, ``cache``, ``hidden_states``, ``router_logits``, ``lm_loss``.

        Raises:
            ValueError: if ``cache`` and ``past_key_values`` are both given and differ, or
                ``logits_to_keep`` is a negative int; see :meth:`MHMoEModel.forward`.
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
            **kwargs,
        )
        hidden = outputs.last_hidden_state  # (B, T, d)
        lm_loss = loss = None
        if labels is not None:
            logits = self.lm_head(hidden)  # (B, T, V)
            lm_loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.vocab_size, **loss_kwargs
            )
            loss = lm_loss if outputs.aux_loss is None else lm_loss + outputs.aux_loss
            if isinstance(logits_to_keep, int) and logits_to_keep > 0:
                logits = logits[:, -logits_to_keep:]
            elif not isinstance(logits_to_keep, int):
                logits = logits[:, logits_to_keep]
        elif isinstance(logits_to_keep, int):
            kept = hidden[:, -logits_to_keep:] if logits_to_keep > 0 else hidden
            logits = self.lm_head(kept)
        else:
            logits = self.lm_head(hidden[:, logits_to_keep])
        output = MHMoECausalLMOutput(
            loss=loss,
            aux_loss=outputs.aux_loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            router_logits=outputs.router_logits,
            lm_loss=lm_loss,
        )
        return output if return_dict is not False else output.to_tuple()


def register_auto_classes() -> None:
    """Register the MH-MoE classes with the transformers Auto factories (idempotent).

    Run on import of this module, so ``AutoModelForCausalLM.from_pretrained(path)`` loads a saved
    checkpoint without ``trust_remote_code``.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    AutoConfig.register(MHMoEConfig.model_type, MHMoEConfig, exist_ok=True)
    AutoModel.register(MHMoEConfig, MHMoEModel, exist_ok=True)
    AutoModelForCausalLM.register(MHMoEConfig, MHMoEForCausalLM, exist_ok=True)


register_auto_classes()
