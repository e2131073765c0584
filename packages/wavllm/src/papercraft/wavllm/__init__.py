"""papercraft.wavllm — WavLLM: a dual-encoder speech LLM with a prompt-aware LoRA weight adapter.

Paper: WavLLM: Towards Robust and Adaptive Speech Large Language Model (arXiv 2404.00656).

- :class:`WavLLMConfig`, :class:`WavLLMForConditionalGeneration` — Whisper + WavLM encoders,
  Conv1d-GLU subsamplers, adapters, fusion, peft LoRA and the prompt-aware gate;
- :class:`WavLLMProcessor` — features for both encoders, the chat template, placeholder
  expansion, label masking;
- :mod:`~papercraft.wavllm.training` — TSV/JSONL manifests and the two-stage curriculum on
  ``transformers.Trainer``; :mod:`~papercraft.wavllm.loading` — real Whisper (transformers or
  openai-whisper checkpoints), WavLM and LLM weights from disk.
"""

from __future__ import annotations

from papercraft.wavllm._version import __version__
from papercraft.wavllm.configuration import WavLLMConfig, audio_token_count
from papercraft.wavllm.loading import build_from_pretrained, whisper_encoder_from_openai
from papercraft.wavllm.modeling import WavLLMForConditionalGeneration
from papercraft.wavllm.processing import AUDIO_TOKEN, WavLLMProcessor
from papercraft.wavllm.training import ManifestRow, StageConfig, read_manifest, train_curriculum

__all__ = [
    "AUDIO_TOKEN",
    "ManifestRow",
    "StageConfig",
    "WavLLMConfig",
    "WavLLMForConditionalGeneration",
    "WavLLMProcessor",
    "__version__",
    "audio_token_count",
    "build_from_pretrained",
    "read_manifest",
    "train_curriculum",
    "whisper_encoder_from_openai",
]
