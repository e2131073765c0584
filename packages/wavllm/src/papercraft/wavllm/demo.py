"""The wavllm demo that ``papercraft demo`` runs (``papercraft.demos`` entry point).

A tiny WavLLM is trained from scratch on espeak-ng speech (three voices, varied speed) to
transcribe spoken digits, then its exact-match accuracy on held-out clips is measured twice:
one clip at a time and in one padded batch. Because each sample's audio-token count depends
only on its own audio, the two agree (the official code's batch dependence is fixed). A few
minutes on 2 CPU cores; everything is offline.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import torch

from papercraft.core.io import atomic_write_json, atomic_write_text
from papercraft.wavllm._version import __version__

__all__ = ["DIGITS", "digit_rows", "run_demo", "transcribe"]

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOICES = ("en-us", "en-us+f2", "en-gb+m3")


def digit_rows(n: int, *, digits: int = 1, seed: int = 0) -> list[Any]:
    """``n`` espeak-ng clips of ``digits`` spoken digits (voices and speeds vary), as rows."""
    from papercraft.wavllm.speech import espeak
    from papercraft.wavllm.training import ManifestRow

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        spoken = [rng.randrange(10) for _ in range(digits)]
        voice = VOICES[i % len(VOICES)]
        audio = espeak(" ".join(DIGITS[d] for d in spoken), voice=voice, speed=rng.randint(140, 180),
                       pitch=rng.randint(35, 65))  # fmt: skip
        rows.append(
            ManifestRow(f"{seed}-{i}", audio, "What digits are spoken?", "".join(map(str, spoken)))
        )
    return rows


def transcribe(
    model: Any, processor: Any, rows: list[Any], *, batched: bool, max_new_tokens: int = 6
) -> list[str]:
    """Greedy transcripts, in one padded batch or one clip at a time."""
    tok = processor.tokenizer
    groups = [rows] if batched else [[r] for r in rows]
    out: list[str] = []
    for group in groups:
        inputs = processor([r.audio for r in group], [r.prompt for r in group], padding_side="left")
        ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)  # fmt: skip
        out.extend(t.strip() for t in processor.batch_decode(ids))
    return out


def run_demo(output_dir: Path, *, train_clips: int = 300, test_clips: int = 40, epochs: float = 30.0,
             learning_rate: float = 3e-3, digits: int = 1, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Train, evaluate, print and write ``wavllm_demo.{json,md}`` under ``output_dir``.

    Raises:
        ValueError: if ``output_dir`` exists and is not a directory.
        RuntimeError: if espeak-ng is missing.
    """
    from papercraft.wavllm.configuration import WavLLMConfig
    from papercraft.wavllm.modeling import WavLLMForConditionalGeneration
    from papercraft.wavllm.processing import AUDIO_TOKEN, WavLLMProcessor
    from papercraft.wavllm.speech import char_tokenizer
    from papercraft.wavllm.training import StageConfig, train_curriculum

    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output_dir must be a directory, got the file {output_dir}")
    output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    train = digit_rows(train_clips, digits=digits, seed=seed)
    test = digit_rows(test_clips, digits=digits, seed=seed + 1000)
    tok = char_tokenizer()
    config = WavLLMConfig.tiny(
        vocab_size=len(tok), audio_token_id=tok.convert_tokens_to_ids(AUDIO_TOKEN)
    )
    processor = WavLLMProcessor(tok, config, system_prompt="Transcribe.")
    torch.manual_seed(seed)
    model = WavLLMForConditionalGeneration(config)
    stage = StageConfig(1, train, epochs=epochs, learning_rate=learning_rate, batch_size=8,
                        train_language_model=True, train_encoders=True)  # fmt: skip
    history = train_curriculum(model, processor, [stage], output_dir / "wavllm_model", seed=seed)
    losses = [h["loss"] for h in history[0] if "loss" in h] or [
        h["train_loss"] for h in history[0] if "train_loss" in h
    ]
    single = transcribe(model, processor, test, batched=False)
    batch = transcribe(model, processor, test, batched=True)
    gold = [r.target for r in test]
    report = {
        "package": "papercraft-wavllm",
        "version": __version__,
        "train_clips": train_clips,
        "digits_per_clip": digits,
        "test_clips": test_clips,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "exact_match_single": sum(p == g for p, g in zip(single, gold, strict=True)) / len(gold),
        "exact_match_batched": sum(p == g for p, g in zip(batch, gold, strict=True)) / len(gold),
        "same_single_and_batched": sum(a == b for a, b in zip(single, batch, strict=True))
        / len(gold),
        "examples": [
            {"gold": g, "single": s, "batched": b}
            for g, s, b in list(zip(gold, single, batch, strict=True))[:8]
        ],
        "seconds": round(time.perf_counter() - start, 1),
    }
    lines = [
        "| inference | held-out exact match |",
        "|---|---|",
        f"| one clip at a time | {100 * report['exact_match_single']:.1f}% |",
        f"| one padded batch | {100 * report['exact_match_batched']:.1f}% |",
    ]
    print(f"WavLLM (tiny, from scratch) on espeak-ng digits ({digits} per clip): {train_clips} training clips, "
          f"{test_clips} held-out, 3 voices; loss {report['first_loss']:.2f} → {report['last_loss']:.2f}")  # fmt: skip
    print("\n".join(lines))
    print(
        f"single and batched transcripts agree on {100 * report['same_single_and_batched']:.0f}% of clips"
    )
    atomic_write_json(output_dir / "wavllm_demo.json", report)
    atomic_write_text(output_dir / "wavllm_demo.md", "\n".join(lines) + "\n")
    print(f"wavllm demo done in {report['seconds']:.0f} s; wrote {output_dir / 'wavllm_demo.json'}")
    return report
