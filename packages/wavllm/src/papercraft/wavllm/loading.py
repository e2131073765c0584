"""Real weights: Whisper (transformers or openai-whisper checkpoints), WavLM and the LLM from disk.

:func:`build_from_pretrained` assembles a :class:`WavLLMForConditionalGeneration` around
pretrained parts; the new modules (subsamplers, adapters, fusion, prompt adapter, LoRA) start
fresh. openai-whisper checkpoints (``{"dims", "model_state_dict"}`` ``.pt`` files) are read
with ``torch.load(weights_only=True)`` — tensors and plain values only, never arbitrary
pickles — and their encoder weights renamed to the transformers layout
(:func:`openai_to_hf_encoder_state`). Everything loads from local files; no hub access.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from papercraft.core.io import StrPath
from papercraft.wavllm.configuration import WavLLMConfig

__all__ = [
    "build_from_pretrained",
    "hf_to_openai_encoder_state",
    "openai_to_hf_encoder_state",
    "whisper_encoder_from_openai",
    "whisper_encoder_from_transformers",
]

_LAYER = [
    (r"attn\.query\.", "self_attn.q_proj."),
    (r"attn\.key\.", "self_attn.k_proj."),
    (r"attn\.value\.", "self_attn.v_proj."),
    (r"attn\.out\.", "self_attn.out_proj."),
    (r"attn_ln\.", "self_attn_layer_norm."),
    (r"mlp\.0\.", "fc1."),
    (r"mlp\.2\.", "fc2."),
    (r"mlp_ln\.", "final_layer_norm."),
]


def openai_to_hf_encoder_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an openai-whisper model's ``encoder.*`` weights to ``WhisperEncoder`` names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith("encoder."):
            continue
        name = key[len("encoder.") :]
        if name == "positional_embedding":
            out["embed_positions.weight"] = value
            continue
        if name.startswith("ln_post."):
            out["layer_norm." + name[len("ln_post.") :]] = value
            continue
        match = re.match(r"blocks\.(\d+)\.(.*)", name)
        if match:
            rest = match.group(2)
            for pattern, target in _LAYER:
                if re.match(pattern, rest):
                    rest = re.sub(pattern, target, rest, count=1)
                    break
            else:
                raise ValueError(f"unexpected openai-whisper encoder weight {key!r}")
            out[f"layers.{match.group(1)}.{rest}"] = value
            continue
        out[name] = value  # conv1.*, conv2.*
    return out


def hf_to_openai_encoder_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse renaming (``WhisperEncoder`` → openai-whisper ``encoder.*``)."""
    inverse = [
        (target.replace(".", r"\."), pattern.replace("\\", "")) for pattern, target in _LAYER
    ]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == "embed_positions.weight":
            out["encoder.positional_embedding"] = value
        elif key.startswith("layer_norm."):
            out["encoder.ln_post." + key[len("layer_norm.") :]] = value
        elif match := re.match(r"layers\.(\d+)\.(.*)", key):
            rest = match.group(2)
            for pattern, target in inverse:
                if re.match(pattern, rest):
                    rest = re.sub(pattern, target, rest, count=1)
                    break
            out[f"encoder.blocks.{match.group(1)}.{rest}"] = value
        else:
            out["encoder." + key] = value
    return out


def whisper_encoder_from_openai(path: StrPath) -> WhisperEncoder:
    """A ``WhisperEncoder`` with the weights of an openai-whisper ``.pt`` checkpoint."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"openai-whisper checkpoint {file} does not exist")
    checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    if (
        not isinstance(checkpoint, dict)
        or "dims" not in checkpoint
        or "model_state_dict" not in checkpoint
    ):
        raise ValueError(
            f"{file} is not an openai-whisper checkpoint (needs 'dims' and 'model_state_dict')"
        )
    dims = checkpoint["dims"]
    weights = checkpoint["model_state_dict"]
    ffn = weights.get("encoder.blocks.0.mlp.0.weight")
    config = WhisperConfig(
        num_mel_bins=dims["n_mels"], max_source_positions=dims["n_audio_ctx"], d_model=dims["n_audio_state"],
        encoder_attention_heads=dims["n_audio_head"], encoder_layers=dims["n_audio_layer"],
        encoder_ffn_dim=int(ffn.shape[0]) if ffn is not None else 4 * dims["n_audio_state"],
        activation_function="gelu",
    )  # fmt: skip
    encoder = WhisperEncoder(config)
    state = openai_to_hf_encoder_state(weights)
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if [m for m in missing if m != "embed_positions.weight"] or unexpected:
        raise ValueError(
            f"{file}: weights do not fit (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    return encoder.eval()


def whisper_encoder_from_transformers(path: StrPath) -> WhisperEncoder:
    """The encoder of a transformers Whisper checkpoint on disk."""
    from transformers import WhisperModel

    model = WhisperModel.from_pretrained(str(path), local_files_only=True)
    encoder: WhisperEncoder = model.get_encoder()
    return encoder.eval()


def build_from_pretrained(
    *,
    whisper: StrPath,
    wavlm: StrPath,
    language_model: StrPath,
    audio_token_id: int,
    **config_overrides: Any,
) -> Any:
    """A WavLLM around pretrained encoders and LLM (new modules freshly initialised).

    Args:
        whisper (str | PathLike): a transformers Whisper directory, or an openai-whisper
            ``.pt`` checkpoint (needs no openai-whisper install: the weights are renamed).
        wavlm (str | PathLike): a transformers WavLM directory.
        language_model (str | PathLike): a transformers causal-LM directory.
        audio_token_id (int): the placeholder id (add ``<audio>`` to the tokenizer first and
            resize the LLM's embeddings if needed).
        **config_overrides (Any): other :class:`WavLLMConfig` fields (LoRA rank, ...).
    """
    from transformers import AutoModelForCausalLM, WavLMModel

    from papercraft.wavllm.modeling import WavLLMForConditionalGeneration

    path = Path(whisper)
    encoder = (
        whisper_encoder_from_openai(path)
        if path.suffix == ".pt"
        else whisper_encoder_from_transformers(path)
    )
    wav = WavLMModel.from_pretrained(str(wavlm), local_files_only=True).eval()
    llm = AutoModelForCausalLM.from_pretrained(
        str(language_model), local_files_only=True, trust_remote_code=False
    )
    config = WavLLMConfig(whisper_config=encoder.config, wavlm_config=wav.config, text_config=llm.config,
                          audio_token_id=audio_token_id, **config_overrides)  # fmt: skip
    return WavLLMForConditionalGeneration(
        config, language_model=llm, whisper_encoder=encoder, wavlm=wav
    )
