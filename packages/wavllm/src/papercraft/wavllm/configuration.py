"""``WavLLMConfig`` and the audio-length arithmetic shared by the model and the processor.

WavLLM (Hu et al., 2024, arXiv 2404.00656; official code microsoft/SpeechT5 ``WavLLM/``): a frozen
Whisper encoder and a frozen WavLM encoder read the audio; each branch goes through a Conv1d-GLU
subsampler (two stride-2 convolutions, ×4), a bottleneck adapter and a projection to half the LLM
width; the two are truncated to the shorter length, concatenated and mixed by a linear layer into
the LLM's input embeddings. Both encoders run at 50 Hz, so audio tokens come at 12.5 Hz (80 ms
each). LoRA on the LLM's q/k/v/o, and (stage 2) a prompt-aware LoRA weight adapter that scales
every LoRA delta by a gate computed from the instruction.

Every sample's number of audio tokens is a function of its own length only
(:func:`audio_token_count`), which is what lets the processor expand the audio placeholder to
exactly the right number of positions — and what makes the model batch-invariant, unlike the
official code, which concatenated padded frames.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from transformers import LlamaConfig, PretrainedConfig, WavLMConfig, WhisperConfig

__all__ = [
    "WavLLMConfig",
    "audio_token_count",
    "subsampled_length",
    "wavlm_frames",
    "whisper_frames",
]


def subsampled_length(length: int, layers: int = 2) -> int:
    """Length after ``layers`` stride-2 convolutions (kernel 3, padding 1): ``⌊(L-1)/2⌋+1`` each."""
    for _ in range(layers):
        length = (length - 1) // 2 + 1 if length > 0 else 0
    return length


def whisper_frames(num_samples: int, *, hop_length: int = 160, max_frames: int) -> int:
    """Whisper encoder output frames of one clip (mel frames ``⌈n/hop⌉``, then the stride-2 conv)."""
    mel = min(math.ceil(num_samples / hop_length), max_frames)
    return (mel - 1) // 2 + 1 if mel > 0 else 0


def wavlm_frames(num_samples: int, config: WavLMConfig) -> int:
    """WavLM feature-extractor output frames of one clip (``⌊(L-k)/s⌋+1`` per conv layer)."""
    length = num_samples
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        length = (length - kernel) // stride + 1
        if length <= 0:
            return 0
    return length


class WavLLMConfig(PretrainedConfig):
    """Configuration of :class:`~papercraft.wavllm.modeling.WavLLMForConditionalGeneration`.

    Args:
        whisper_config (dict | WhisperConfig | None): the Whisper encoder (default: Whisper
            defaults; the paper: large-v2, 1280 d, 32 layers).
        wavlm_config (dict | WavLMConfig | None): the WavLM encoder (paper: base, 768 d).
        text_config (dict | PretrainedConfig | None): the causal LM (default: Llama; the paper:
            LLaMA-2-7B-chat). ``model_type`` picks the class.
        whisper_subsample_mid (int | None): Conv1d-GLU middle channels of the Whisper branch
            (official: the Whisper width, 1280). Default: None (the Whisper width).
        wavlm_subsample_mid (int): the WavLM branch's (official: 512). Default: 512.
        adapter_dim (int): subsampler output width and adapter width (official: 1024).
        adapter_bottleneck (int): adapter bottleneck (official: 512).
        lora_r (int): LoRA rank (official: 32). lora_alpha (int): LoRA alpha (official: 32).
        lora_dropout (float): official 0.1. lora_targets (list[str]): official q/k/v/o.
        prompt_adapter_dim (int): the prompt adapter's hidden width (official: 1024).
        gate_max (float): the gate's clamp (official: 3.0).
        audio_token_id (int | None): id of the audio placeholder token.
        sampling_rate (int): audio rate the encoders expect (16 kHz).
        chunk_seconds (float | None): Whisper window; None derives it from
            ``max_source_positions`` (30 s for real Whisper).
    """

    model_type = "wavllm"
    sub_configs: ClassVar[dict[str, Any]] = {
        "whisper_config": WhisperConfig,
        "wavlm_config": WavLMConfig,
    }

    def __init__(
        self,
        whisper_config: dict[str, Any] | WhisperConfig | None = None,
        wavlm_config: dict[str, Any] | WavLMConfig | None = None,
        text_config: dict[str, Any] | PretrainedConfig | None = None,
        whisper_subsample_mid: int | None = None,
        wavlm_subsample_mid: int = 512,
        adapter_dim: int = 1024,
        adapter_bottleneck: int = 512,
        lora_r: int = 32,
        lora_alpha: int = 32,
        lora_dropout: float = 0.1,
        lora_targets: list[str] | None = None,
        prompt_adapter_dim: int = 1024,
        gate_max: float = 3.0,
        audio_token_id: int | None = None,
        sampling_rate: int = 16000,
        chunk_seconds: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.whisper_config = self._sub(whisper_config, WhisperConfig)
        self.wavlm_config = self._sub(wavlm_config, WavLMConfig)
        if isinstance(text_config, PretrainedConfig):
            self.text_config = text_config
        else:
            data = dict(text_config or {})
            kind = data.pop("model_type", "llama")
            if kind == "llama":
                self.text_config = LlamaConfig(**data)
            else:
                from transformers import AutoConfig

                self.text_config = AutoConfig.for_model(kind, **data)
        self.whisper_subsample_mid = whisper_subsample_mid or self.whisper_config.d_model
        self.wavlm_subsample_mid = wavlm_subsample_mid
        self.adapter_dim = adapter_dim
        self.adapter_bottleneck = adapter_bottleneck
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.lora_targets = list(lora_targets or ["q_proj", "k_proj", "v_proj", "o_proj"])
        self.prompt_adapter_dim = prompt_adapter_dim
        self.gate_max = gate_max
        self.audio_token_id = audio_token_id
        self.sampling_rate = sampling_rate
        self.chunk_seconds = chunk_seconds
        hidden = self.text_config.hidden_size
        if hidden % 2:
            raise ValueError(
                f"text_config.hidden_size must be even (two halves fused), got {hidden}"
            )
        if self.wavlm_subsample_mid % 2 or self.whisper_subsample_mid % 2:
            raise ValueError("the subsamplers' middle channels must be even (GLU halves them)")
        super().__init__(**kwargs)

    @staticmethod
    def _sub(value: Any, cls: type[PretrainedConfig]) -> Any:
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls(**value)
        raise ValueError(f"expected a dict or {cls.__name__}, got {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """Serialise, sub-configs included."""
        out = super().to_dict()
        out["whisper_config"] = self.whisper_config.to_dict()
        out["wavlm_config"] = self.wavlm_config.to_dict()
        out["text_config"] = self.text_config.to_dict()
        return out

    @property
    def window_samples(self) -> int:
        """int: samples per Whisper window (30 s for real Whisper)."""
        if self.chunk_seconds is not None:
            return int(self.chunk_seconds * self.sampling_rate)
        return self.whisper_config.max_source_positions * 2 * 160

    @property
    def mel_frames(self) -> int:
        """int: mel frames per Whisper window (``2 × max_source_positions``)."""
        return int(self.whisper_config.max_source_positions * 2)

    @classmethod
    def tiny(cls, vocab_size: int = 64, **overrides: Any) -> WavLLMConfig:
        """A few-hundred-thousand-parameter config for tests and the demo (5 s windows)."""
        whisper = WhisperConfig(num_mel_bins=80, d_model=32, encoder_layers=1, encoder_attention_heads=2,
                                encoder_ffn_dim=64, decoder_layers=1, decoder_attention_heads=2,
                                decoder_ffn_dim=64, max_source_positions=250, vocab_size=64,
                                pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                decoder_start_token_id=1)  # fmt: skip
        wavlm = WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
                            num_buckets=32, max_bucket_distance=100, vocab_size=32)  # fmt: skip
        text = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=256)  # fmt: skip
        settings: dict[str, Any] = {
            "whisper_config": whisper,
            "wavlm_config": wavlm,
            "text_config": text,
            "wavlm_subsample_mid": 32,
            "adapter_dim": 48,
            "adapter_bottleneck": 24,
            "lora_r": 8,
            "lora_alpha": 8,
            "lora_dropout": 0.0,
            "prompt_adapter_dim": 32,
        }
        settings.update(overrides)
        return cls(**settings)


def audio_token_count(num_samples: int, config: WavLLMConfig) -> int:
    """Audio tokens of one clip: the shorter of the two branches after ×4 subsampling.

    The Whisper branch encodes ``⌈n / window⌉`` windows and concatenates their valid frames.

    Args:
        num_samples (int): the clip's length at ``config.sampling_rate``.
        config (WavLLMConfig): the model config.

    Returns:
        int: the number of placeholder positions the clip fills.
    """
    if num_samples <= 0:
        return 0
    window = config.window_samples
    whisper = 0
    for start in range(0, num_samples, window):
        piece = min(window, num_samples - start)
        whisper += whisper_frames(piece, max_frames=config.mel_frames)
    wavlm = wavlm_frames(num_samples, config.wavlm_config)
    return min(subsampled_length(whisper), subsampled_length(wavlm))
