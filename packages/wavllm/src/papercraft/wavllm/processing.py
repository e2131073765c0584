"""``WavLLMProcessor``: audio features for both encoders, the chat template, placeholder expansion.

- **Audio**: 1-D float waveforms; another sampling rate is resampled to the model's (polyphase,
  ``scipy.signal.resample_poly``), or refused when ``resample=False``; empty clips are refused.
  Whisper features are computed per window (30 s for real Whisper; longer clips give several
  windows, encoded separately and concatenated by the model); WavLM gets the waveform,
  normalised to zero mean and unit variance over its own samples, right-padded.
- **Text**: the official template (Llama-2 chat)::

      <s>[INST]<<SYS>>\\n{system}\\n<</SYS>>\\n\\n<SPEECH><audio></SPEECH> {prompt} [/INST] {target}</s>

  The ``<audio>`` placeholder is expanded to exactly the number of audio positions of that
  clip (:func:`~papercraft.wavllm.configuration.audio_token_count`), as Qwen2-Audio does.
  ``labels`` are ``-100`` everywhere but on the target tokens (and ``</s>``).
- **Prompt adapter input**: ``prompt_input_ids`` hold the instruction alone.

Raw ``text`` (no template) may be given instead of ``prompts``; it must hold one placeholder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from papercraft.wavllm.configuration import WavLLMConfig, audio_token_count

__all__ = ["AUDIO_TOKEN", "SYSTEM_PROMPT", "WavLLMProcessor", "resample"]

AUDIO_TOKEN = "<audio>"
SYSTEM_PROMPT = (
    "As a helpful language and speech assistant, you are able to understand the speech content "
    "provided by the user, and assist the user with a variety of tasks using natural language."
)
_TEMPLATE = "<s>[INST]<<SYS>>\n{system}\n<</SYS>>\n\n<SPEECH>{audio}</SPEECH> {prompt} [/INST]"


def resample(wave: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling of a 1-D waveform (``scipy.signal.resample_poly``)."""
    if orig_rate == target_rate:
        return wave
    from scipy.signal import resample_poly

    g = math.gcd(int(orig_rate), int(target_rate))
    return np.asarray(resample_poly(wave, target_rate // g, orig_rate // g), dtype=np.float32)


class WavLLMProcessor:
    """Turns (audio, instruction[, target]) triples into model inputs.

    Args:
        tokenizer (PreTrainedTokenizerBase): the LLM's tokenizer; it must know ``<audio>`` (added
            as a special token when missing; resize the model's embeddings then).
        config (WavLLMConfig): the model config (window length, encoders' strides).
        system_prompt (str): the template's system message. Default: the official one.
    """

    def __init__(
        self, tokenizer: Any, config: WavLLMConfig, *, system_prompt: str = SYSTEM_PROMPT
    ) -> None:
        from transformers import WhisperFeatureExtractor

        if AUDIO_TOKEN not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [AUDIO_TOKEN]})
        self.tokenizer = tokenizer
        self.config = config
        self.audio_token_id = int(tokenizer.convert_tokens_to_ids(AUDIO_TOKEN))
        self.system_prompt = system_prompt
        seconds = config.window_samples / config.sampling_rate
        self.feature_extractor = WhisperFeatureExtractor(
            feature_size=config.whisper_config.num_mel_bins,
            sampling_rate=config.sampling_rate,
            chunk_length=round(seconds),
        )
        if self.feature_extractor.nb_max_frames != config.mel_frames:
            raise ValueError(
                f"the Whisper window ({seconds} s) must give {config.mel_frames} mel frames "
                f"(2 × max_source_positions); got {self.feature_extractor.nb_max_frames}"
            )

    # ------------------------------------------------------------------ pieces

    def prepare_audio(
        self, audios: Any, sampling_rate: int, *, resample_audio: bool = True
    ) -> list[np.ndarray]:
        """Check, convert to float32 mono and resample every clip."""
        if isinstance(audios, np.ndarray) and audios.ndim == 1:
            raise ValueError("audios must be a sequence of clips, got a single 1-D array")
        out = []
        for i, clip in enumerate(audios):
            wave = np.asarray(clip, dtype=np.float32)
            if wave.ndim != 1:
                raise ValueError(f"audios[{i}] must be a 1-D waveform, got shape {wave.shape}")
            if wave.size == 0:
                raise ValueError(f"audios[{i}] is empty")
            if not np.isfinite(wave).all():
                raise ValueError(f"audios[{i}] holds NaN or infinite samples")
            if sampling_rate != self.config.sampling_rate:
                if not resample_audio:
                    raise ValueError(
                        f"sampling_rate is {sampling_rate} Hz but the model expects "
                        f"{self.config.sampling_rate} Hz; pass resample_audio=True or resample it"
                    )
                wave = resample(wave, sampling_rate, self.config.sampling_rate)
            out.append(wave)
        return out

    def audio_features(self, waves: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """Whisper windows and WavLM waveforms for clips already at the model's rate."""
        window = self.config.window_samples
        pieces: list[np.ndarray] = []
        lengths: list[int] = []
        counts: list[int] = []
        for wave in waves:
            chunks = [wave[s : s + window] for s in range(0, len(wave), window)]
            pieces.extend(chunks)
            lengths.extend(math.ceil(len(c) / 160) for c in chunks)
            counts.append(len(chunks))
        feats = self.feature_extractor(
            pieces, sampling_rate=self.config.sampling_rate, return_tensors="pt"
        )
        longest = max(len(w) for w in waves)
        values = torch.zeros(len(waves), longest)
        for i, wave in enumerate(waves):
            values[i, : len(wave)] = torch.from_numpy(
                (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
            )
        return {
            "input_features": feats["input_features"],
            "feature_lengths": torch.tensor(lengths, dtype=torch.long),
            "chunk_counts": torch.tensor(counts, dtype=torch.long),
            "input_values": values,
            "wav_lengths": torch.tensor([len(w) for w in waves], dtype=torch.long),
        }

    def render(self, prompt: str) -> str:
        """The template up to ``[/INST]`` with one ``<audio>`` placeholder."""
        return _TEMPLATE.format(system=self.system_prompt, audio=AUDIO_TOKEN, prompt=prompt)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # ------------------------------------------------------------------ call

    def __call__(
        self,
        audios: Sequence[Any],
        prompts: Sequence[str] | None = None,
        targets: Sequence[str] | None = None,
        *,
        text: Sequence[str] | None = None,
        sampling_rate: int = 16000,
        resample_audio: bool = True,
        padding_side: str = "right",
    ) -> dict[str, torch.Tensor]:
        """Build a batch.

        Args:
            audios (Sequence[array]): one waveform per sample.
            prompts (Sequence[str] | None): instructions, put in the template.
            targets (Sequence[str] | None): answers (training); they get labels.
            text (Sequence[str] | None): raw texts holding one ``<audio>`` each, instead of
                ``prompts`` (no template).
            sampling_rate (int): the clips' rate. Default: 16000.
            resample_audio (bool): resample other rates (else refuse). Default: True.
            padding_side (str): ``"right"`` for training, ``"left"`` for generation.

        Returns:
            dict[str, Tensor]: ``input_ids``, ``attention_mask``, (``labels``), the audio inputs
            of :meth:`audio_features`, ``prompt_input_ids``, ``prompt_attention_mask``.
        """
        if (prompts is None) == (text is None):
            raise ValueError("pass exactly one of prompts (templated) or text (raw, with <audio>)")
        rows = list(prompts if prompts is not None else text or [])
        if len(rows) != len(audios):
            raise ValueError(f"got {len(audios)} audios but {len(rows)} prompts/texts")
        if targets is not None and len(targets) != len(rows):
            raise ValueError(f"got {len(rows)} prompts but {len(targets)} targets")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if text is not None:
            for i, row in enumerate(rows):
                if row.count(AUDIO_TOKEN) != 1:
                    raise ValueError(f"text[{i}] must hold exactly one {AUDIO_TOKEN} placeholder")
        waves = self.prepare_audio(audios, sampling_rate, resample_audio=resample_audio)
        batch = self.audio_features(waves)
        sequences, label_rows = [], []
        for i, (row, wave) in enumerate(zip(rows, waves, strict=True)):
            rendered = self.render(row) if prompts is not None else row
            before, after = rendered.split(AUDIO_TOKEN)
            n = audio_token_count(len(wave), self.config)
            if n == 0:
                raise ValueError(f"audios[{i}] is too short to give one audio token")
            ids = self._encode(before) + [self.audio_token_id] * n + self._encode(after)
            labels = [-100] * len(ids)
            if targets is not None:
                answer = [*self._encode(" " + targets[i]), int(self.tokenizer.eos_token_id)]
                ids += answer
                labels += answer
            sequences.append(ids)
            label_rows.append(labels)
        pad = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)
        batch.update(
            self._pad(sequences, label_rows if targets is not None else None, pad, padding_side)
        )
        prompt_ids = [
            self._encode(p if prompts is not None else p.replace(AUDIO_TOKEN, "")) or [pad]
            for p in rows
        ]
        prompt = self._pad(prompt_ids, None, pad, "right")
        batch["prompt_input_ids"] = prompt["input_ids"]
        batch["prompt_attention_mask"] = prompt["attention_mask"]
        return batch

    @staticmethod
    def _pad(
        rows: list[list[int]], labels: list[list[int]] | None, pad: int, side: str
    ) -> dict[str, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        lab = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, row in enumerate(rows):
            span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
            ids[i, span] = torch.tensor(row)
            mask[i, span] = 1
            if labels is not None:
                lab[i, span] = torch.tensor(labels[i])
        out = {"input_ids": ids, "attention_mask": mask}
        if labels is not None:
            out["labels"] = lab
        return out

    def batch_decode(self, ids: torch.Tensor, **kwargs: Any) -> list[str]:
        """Decode generated ids (special tokens skipped)."""
        return list(self.tokenizer.batch_decode(ids, skip_special_tokens=True, **kwargs))
