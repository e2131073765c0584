"""Offline speech and text helpers for tests and the demo: espeak-ng clips, a character tokenizer.

- :func:`espeak` speaks a text with Debian's ``espeak-ng`` (voices such as ``en-us``,
  ``en-us+f2``, ``en-gb+m3``; speed in words per minute, pitch 0–99) and returns 16 kHz float32
  audio (espeak-ng writes 22.05 kHz; it is resampled).
- :func:`char_tokenizer` builds a character-level ``PreTrainedTokenizerFast`` that knows the
  template's special tokens (``<s>``, ``</s>``, ``[INST]``, ``<<SYS>>``, ``<SPEECH>``,
  ``<audio>`` …), for tiny models trained from scratch.
"""

from __future__ import annotations

import io
import shutil
import string
import subprocess
import wave
from typing import Any

import numpy as np

from papercraft.wavllm.processing import AUDIO_TOKEN, resample

__all__ = ["SPECIAL_TOKENS", "char_tokenizer", "espeak", "espeak_available"]

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", AUDIO_TOKEN, "[INST]", "[/INST]", "<<SYS>>",
                  "<</SYS>>", "<SPEECH>", "</SPEECH>")  # fmt: skip


def espeak_available() -> bool:
    """Whether the ``espeak-ng`` program is on the PATH."""
    return shutil.which("espeak-ng") is not None


def espeak(text: str, *, voice: str = "en-us", speed: int = 160, pitch: int = 50,
           sampling_rate: int = 16000) -> np.ndarray:  # fmt: skip
    """Synthesise ``text`` with espeak-ng.

    Raises:
        RuntimeError: when espeak-ng is missing (``apt-get install espeak-ng``) or fails.
        ValueError: on an empty text.
    """
    if not text.strip():
        raise ValueError("text must not be empty")
    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    result = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    if result.returncode != 0 or not result.stdout:
        raise RuntimeError(
            f"espeak-ng failed ({result.returncode}): {result.stderr.decode()[:200]}"
        )
    with wave.open(io.BytesIO(result.stdout)) as handle:
        rate = handle.getframerate()
        raw = handle.readframes(handle.getnframes())
    audio = np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768.0
    return resample(audio, rate, sampling_rate)


def char_tokenizer() -> Any:
    """A character-level tokenizer with the template's special tokens (BOS ``<s>``, EOS ``</s>``)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list(
        string.ascii_lowercase + string.ascii_uppercase + string.digits + " .,?!'\":-_/()\n"
    )
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *chars])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<s>", eos_token="</s>",
                                   additional_special_tokens=list(SPECIAL_TOKENS[4:]))  # fmt: skip
