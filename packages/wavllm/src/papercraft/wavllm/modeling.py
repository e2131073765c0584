"""``WavLLMForConditionalGeneration``: the dual-encoder speech LLM with prompt-aware LoRA.

The audio path (per sample, batch-invariant):

1. **Whisper** (frozen): each 30 s window's mel features → encoder → its valid frames
   (``⌈samples/160⌉`` mel frames, halved by the stride-2 convolution); the windows of a clip
   are concatenated in time. **WavLM** (frozen): the waveform → every hidden state → a learned
   softmax-weighted sum. Group-normed WavLM feature extractors (WavLM-base) see padding, so
   those clips are encoded one at a time; layer-normed ones run batched with a mask.
2. Per branch: Conv1d-GLU subsampler (×4), bottleneck adapter ``LN(up(gelu(down(x)))) + x``,
   projection to half the LLM width.
3. Fusion: truncate both to the shorter length, concatenate, linear → the LLM width. The
   vectors replace the audio placeholder positions of the text embeddings (``masked_scatter``,
   as Qwen2-Audio).

The LLM (frozen) carries peft LoRA on q/k/v/o. The **prompt-aware LoRA weight adapter** runs
the instruction alone through the LLM with LoRA disabled, takes the last layer's output (before
the final norm), maps it through ``fc2(gelu(fc1(·)))``, attention-pools it over the prompt's
tokens and clamps ``relu`` of the result at ``gate_max``: one gate vector per sample. Every LoRA
delta is multiplied elementwise by it (the first ``out_features`` entries, for GQA's narrower
k/v). The gate is computed once per request and kept for decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel, WavLMModel
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from papercraft.wavllm.configuration import WavLLMConfig, subsampled_length

__all__ = [
    "BottleneckAdapter",
    "Conv1dSubsampler",
    "PromptAdapter",
    "WavLLMForConditionalGeneration",
    "WavLLMPreTrainedModel",
]


class Conv1dSubsampler(nn.Module):
    """Two stride-2 Conv1d layers (kernel 3, padding 1), each followed by a GLU: ×4 in time.

    Args:
        in_channels (int): input width. mid_channels (int): first conv's output (halved by
            its GLU). out_channels (int): output width (the second conv makes twice that).
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv1d(in_channels, mid_channels, 3, stride=2, padding=1),
            nn.Conv1d(mid_channels // 2, out_channels * 2, 3, stride=2, padding=1),
        ])  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C) → (B, ⌈T/4⌉, out)``."""
        y = x.transpose(1, 2)
        for conv in self.convs:
            y = nn.functional.glu(conv(y), dim=1)
        return y.transpose(1, 2)


class BottleneckAdapter(nn.Module):
    """``LayerNorm(up(gelu(down(x)))) + x``."""

    def __init__(self, dim: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        return self.norm(self.up(nn.functional.gelu(self.down(x)))) + x


class PromptAdapter(nn.Module):
    """Prompt hidden states → a gate per sample: ``clamp(relu(Σ_t softmax(w·z_t) z_t), max)``."""

    def __init__(self, hidden: int, inner: int, gate_max: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, inner)
        self.fc2 = nn.Linear(inner, hidden)
        self.pool = nn.Linear(hidden, 1)
        self.gate_max = gate_max

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, T, H)`` and a ``(B, T)`` mask → ``(B, H)`` gates in ``[0, gate_max]``."""
        z = self.fc2(nn.functional.gelu(self.fc1(hidden)))
        logits = self.pool(z).squeeze(-1).masked_fill(~mask.bool(), torch.finfo(z.dtype).min)
        weights = torch.softmax(logits, dim=-1).unsqueeze(-1)
        return torch.clamp(torch.relu((weights * z).sum(1)), max=self.gate_max)


class WavLLMPreTrainedModel(PreTrainedModel):
    """Weight init and config class for the WavLLM models."""

    config_class = WavLLMConfig
    base_model_prefix = "wavllm"
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Conv1d)) and getattr(module, "_wavllm_init", False):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class WavLLMForConditionalGeneration(WavLLMPreTrainedModel, GenerationMixin):
    """Whisper + WavLM encoders, adapters and fusion into a LoRA-tuned causal LM.

    Args:
        config (WavLLMConfig): the configuration.
        language_model (PreTrainedModel | None): an already loaded causal LM (e.g. real
            weights); None builds one from ``config.text_config``.
        whisper_encoder (WhisperEncoder | None): a loaded Whisper encoder; None builds one.
        wavlm (WavLMModel | None): a loaded WavLM; None builds one.
    """

    def __init__(
        self,
        config: WavLLMConfig,
        language_model: PreTrainedModel | None = None,
        whisper_encoder: WhisperEncoder | None = None,
        wavlm: WavLMModel | None = None,
    ) -> None:
        super().__init__(config)
        from peft import LoraConfig, get_peft_model

        hidden = config.text_config.hidden_size
        self.whisper = whisper_encoder or WhisperEncoder(config.whisper_config)
        self.wavlm = wavlm or WavLMModel(config.wavlm_config)
        layers = config.wavlm_config.num_hidden_layers + 1
        self.wavlm_layer_weights = nn.Parameter(torch.ones(layers))
        self.whisper_subsample = Conv1dSubsampler(
            config.whisper_config.d_model, config.whisper_subsample_mid, config.adapter_dim
        )
        self.wavlm_subsample = Conv1dSubsampler(
            config.wavlm_config.hidden_size, config.wavlm_subsample_mid, config.adapter_dim
        )
        self.whisper_adapter = BottleneckAdapter(config.adapter_dim, config.adapter_bottleneck)
        self.wavlm_adapter = BottleneckAdapter(config.adapter_dim, config.adapter_bottleneck)
        self.whisper_proj = nn.Linear(config.adapter_dim, hidden // 2)
        self.wavlm_proj = nn.Linear(config.adapter_dim, hidden // 2)
        self.fusion = nn.Linear(hidden, hidden)
        self.prompt_adapter = PromptAdapter(hidden, config.prompt_adapter_dim, config.gate_max)
        base = language_model or AutoModelForCausalLM.from_config(config.text_config)
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                          lora_dropout=config.lora_dropout, target_modules=config.lora_targets,
                          bias="none")  # fmt: skip
        self.language_model = get_peft_model(base, lora)
        self._gate: torch.Tensor | None = None
        self._hooks = [
            module.register_forward_hook(self._scale_lora)
            for name, module in self.language_model.named_modules()
            if name.endswith("lora_B.default")
        ]
        if not self._hooks:
            raise ValueError(f"lora_targets {config.lora_targets} matched no module of the LLM")
        for module in (self.whisper_subsample, self.wavlm_subsample, self.whisper_adapter,
                       self.wavlm_adapter, self.whisper_proj, self.wavlm_proj, self.fusion,
                       self.prompt_adapter):  # fmt: skip
            for sub in module.modules():
                sub._wavllm_init = True  # type: ignore[assignment]
        self.post_init()
        self.set_stage(1)
        self.whisper.eval()
        self.wavlm.eval()

    @classmethod
    def from_pretrained(cls, *args: Any, stage: int = 1, **kwargs: Any) -> Any:
        """Load a saved model (safetensors) and freeze it for curriculum ``stage`` (1 or 2)."""
        model = super().from_pretrained(*args, **kwargs)
        model.set_stage(stage)
        model.whisper.eval()
        model.wavlm.eval()
        return model

    # ------------------------------------------------------------------ training stages

    def train(self, mode: bool = True) -> WavLLMForConditionalGeneration:
        """Train mode for the trainable parts; the frozen encoders always stay in eval mode
        (no dropout, and no LayerDrop, which would also drop WavLM hidden states)."""
        super().train(mode)
        self.whisper.eval()
        self.wavlm.eval()
        return self

    def _scale_lora(
        self, module: nn.Module, args: Any, output: torch.Tensor
    ) -> torch.Tensor | None:
        if self._gate is None:
            return None
        gate = self._gate[:, : output.shape[-1]].to(output.dtype)
        return output * gate.view(gate.shape[0], *([1] * (output.dim() - 2)), gate.shape[-1])

    def set_stage(self, stage: int) -> None:
        """Freeze everything but what a curriculum stage trains.

        Stage 1: subsamplers, adapters, projections, fusion, WavLM layer weights and LoRA.
        Stage 2: all of that plus the prompt adapter. Encoders and LLM weights never train.
        """
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage!r}")
        for param in self.parameters():
            param.requires_grad_(False)
        trainable = [self.whisper_subsample, self.wavlm_subsample, self.whisper_adapter,
                     self.wavlm_adapter, self.whisper_proj, self.wavlm_proj, self.fusion]  # fmt: skip
        if stage == 2:
            trainable.append(self.prompt_adapter)
        for module in trainable:
            module.requires_grad_(True)
        self.wavlm_layer_weights.requires_grad_(True)
        for name, param in self.language_model.named_parameters():
            if "lora_" in name:
                param.requires_grad_(True)
        self.stage = stage

    # ------------------------------------------------------------------ audio

    def _whisper_features(
        self,
        input_features: torch.Tensor,
        feature_lengths: torch.Tensor,
        chunk_counts: torch.Tensor,
    ) -> list[torch.Tensor]:
        hidden = self.whisper(input_features.to(self.whisper.conv1.weight.dtype)).last_hidden_state
        valid = (feature_lengths - 1) // 2 + 1
        per_sample, start = [], 0
        for count in chunk_counts.tolist():
            pieces = [hidden[start + i, : int(valid[start + i])] for i in range(count)]
            per_sample.append(torch.cat(pieces, dim=0))
            start += count
        return per_sample

    def _wavlm_features(
        self, input_values: torch.Tensor, wav_lengths: torch.Tensor
    ) -> list[torch.Tensor]:
        weights = torch.softmax(self.wavlm_layer_weights, dim=0)
        dtype = next(self.wavlm.parameters()).dtype
        if self.config.wavlm_config.feat_extract_norm == "group":
            outputs = []
            for i, length in enumerate(wav_lengths.tolist()):
                states = self.wavlm(input_values[i : i + 1, : int(length)].to(dtype),
                                    output_hidden_states=True).hidden_states  # fmt: skip
                outputs.append(sum(w * h[0] for w, h in zip(weights, states, strict=True)))
            return outputs
        positions = torch.arange(input_values.shape[1], device=input_values.device)
        mask = (positions[None, :] < wav_lengths[:, None]).long()
        states = self.wavlm(
            input_values.to(dtype), attention_mask=mask, output_hidden_states=True
        ).hidden_states
        mixed = sum(w * h for w, h in zip(weights, states, strict=True))
        frames = self.wavlm._get_feat_extract_output_lengths(wav_lengths.long())  # type: ignore[arg-type]
        return [mixed[i, : int(frames[i])] for i in range(len(frames))]

    def encode_audio(
        self,
        input_features: torch.Tensor,
        feature_lengths: torch.Tensor,
        chunk_counts: torch.Tensor,
        input_values: torch.Tensor,
        wav_lengths: torch.Tensor,
    ) -> list[torch.Tensor]:
        """Audio embeddings per sample, ``(n_i, hidden)``; ``n_i`` depends on sample ``i`` only.

        Args:
            input_features (Tensor): ``(windows, mels, frames)`` Whisper features, every
                sample's windows in order.
            feature_lengths (Tensor): ``(windows,)`` valid mel frames per window.
            chunk_counts (Tensor): ``(batch,)`` windows per sample.
            input_values (Tensor): ``(batch, samples)`` normalised waveforms, right-padded.
            wav_lengths (Tensor): ``(batch,)`` valid samples.
        """
        whisper = self._whisper_features(input_features, feature_lengths, chunk_counts)
        wavlm = self._wavlm_features(input_values, wav_lengths)
        out = []
        for w, v in zip(whisper, wavlm, strict=True):
            a = self.whisper_proj(
                self.whisper_adapter(self.whisper_subsample(w[None].to(self.fusion.weight.dtype)))
            )
            b = self.wavlm_proj(
                self.wavlm_adapter(self.wavlm_subsample(v[None].to(self.fusion.weight.dtype)))
            )
            n = min(a.shape[1], b.shape[1])
            assert n == min(subsampled_length(w.shape[0]), subsampled_length(v.shape[0]))
            out.append(self.fusion(torch.cat([a[0, :n], b[0, :n]], dim=-1)))
        return out

    # ------------------------------------------------------------------ prompt gate

    def prompt_gate(
        self, prompt_input_ids: torch.Tensor, prompt_attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """The prompt-aware LoRA gate, ``(batch, hidden)``: prompt pass with LoRA disabled."""
        captured: list[torch.Tensor] = []
        base: Any = self.language_model.get_base_model()
        hook = base.model.layers[-1].register_forward_hook(
            lambda m, a, out: captured.append(out[0] if isinstance(out, tuple) else out)
        )
        saved, self._gate = self._gate, None
        try:
            with self.language_model.disable_adapter():
                self.language_model(
                    input_ids=prompt_input_ids, attention_mask=prompt_attention_mask
                )
        finally:
            hook.remove()
            self._gate = saved
        return self.prompt_adapter(captured[-1].to(self.fusion.weight.dtype), prompt_attention_mask)

    # ------------------------------------------------------------------ forward / generate

    def build_inputs_embeds(
        self, input_ids: torch.Tensor, audio: Sequence[torch.Tensor] | None
    ) -> torch.Tensor:
        """Text embeddings with the audio placeholders replaced by the audio vectors."""
        embeds = self.language_model.get_input_embeddings()(input_ids)
        token = self.config.audio_token_id
        if audio is None:
            if token is not None and bool((input_ids == token).any()):
                raise ValueError("input_ids hold audio placeholders but no audio was given")
            return embeds
        if token is None:
            raise ValueError(
                "config.audio_token_id is not set; use WavLLMProcessor to build inputs"
            )
        mask = input_ids == token
        for i, feats in enumerate(audio):
            found = int(mask[i].sum())
            if found != feats.shape[0]:
                raise ValueError(
                    f"sample {i}: {found} audio placeholders but the audio gives {feats.shape[0]} "
                    "positions; expand the placeholder with WavLLMProcessor"
                )
        stacked = torch.cat([f.to(embeds.dtype) for f in audio], dim=0)
        return embeds.masked_scatter(mask.unsqueeze(-1), stacked)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        feature_lengths: torch.Tensor | None = None,
        chunk_counts: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        wav_lengths: torch.Tensor | None = None,
        prompt_input_ids: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        gate: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Loss on the labelled (target) tokens; the gate comes from the prompt in stage 2."""
        audio = None
        if input_features is not None:
            if (
                feature_lengths is None
                or chunk_counts is None
                or input_values is None
                or wav_lengths is None
            ):
                raise ValueError("audio needs input_features, feature_lengths, chunk_counts, "
                                 "input_values and wav_lengths (see WavLLMProcessor)")  # fmt: skip
            audio = self.encode_audio(
                input_features, feature_lengths, chunk_counts, input_values, wav_lengths
            )
        embeds = self.build_inputs_embeds(input_ids, audio)
        if gate is None and self.stage == 2 and prompt_input_ids is not None:
            mask = (
                prompt_attention_mask
                if prompt_attention_mask is not None
                else torch.ones_like(prompt_input_ids)
            )
            gate = self.prompt_gate(prompt_input_ids, mask)
        saved, self._gate = self._gate, gate
        try:
            out: CausalLMOutputWithPast = self.language_model(
                inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **kwargs
            )
        finally:
            self._gate = saved
        return out

    @torch.no_grad()
    def generate(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> Any:
        """Decode: the audio-aware embeddings and the gate are built once, then the LM decodes.

        Keyword arguments holding audio (``input_features``, ``feature_lengths``,
        ``chunk_counts``, ``input_values``, ``wav_lengths``) and the prompt
        (``prompt_input_ids``, ``prompt_attention_mask``) are consumed here; the rest go to the
        language model's ``generate``. Returns only the new tokens.
        """
        audio_keys = (
            "input_features",
            "feature_lengths",
            "chunk_counts",
            "input_values",
            "wav_lengths",
        )
        audio_args = {k: kwargs.pop(k) for k in audio_keys if k in kwargs}
        prompt_ids = kwargs.pop("prompt_input_ids", None)
        prompt_mask = kwargs.pop("prompt_attention_mask", None)
        gate = kwargs.pop("gate", None)
        audio = self.encode_audio(**audio_args) if audio_args else None
        embeds = self.build_inputs_embeds(input_ids, audio)
        if gate is None and self.stage == 2 and prompt_ids is not None:
            gate = self.prompt_gate(
                prompt_ids, prompt_mask if prompt_mask is not None else torch.ones_like(prompt_ids)
            )
        saved, self._gate = self._gate, gate
        try:
            return self.language_model.generate(
                inputs_embeds=embeds, attention_mask=attention_mask, **kwargs
            )
        finally:
            self._gate = saved
