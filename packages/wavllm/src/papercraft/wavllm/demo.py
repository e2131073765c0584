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


def digit_rows(n: int, *, min_digits: int = 1, max_digits: int = 1, seed: int = 0) -> list[Any]:
    """``n`` espeak-ng clips of ``min_digits``–``max_digits`` spoken digits, as rows.

    Digits are read as words separated by commas ("three, seven"), so espeak-ng pauses between
    them; voices cycle through :data:`VOICES`, speed (140–180 wpm) and pitch vary per clip. The
    target is the digit string ("37").

    Raises:
        ValueError: if ``n`` < 1 or the digit range is empty or starts below 1.
    """
    from papercraft.wavllm.speech import espeak
    from papercraft.wavllm.training import ManifestRow

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 1 <= min_digits <= max_digits:
        raise ValueError(
            f"need 1 <= min_digits <= max_digits, got min_digits={min_digits}, "
            f"max_digits={max_digits}"
        )
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        spoken = [rng.randrange(10) for _ in range(rng.randint(min_digits, max_digits))]
        voice = VOICES[i % len(VOICES)]
        audio = espeak(", ".join(DIGITS[d] for d in spoken), voice=voice, speed=rng.randint(140, 180),
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


def _rate(hits: list[bool]) -> float:
    return sum(hits) / len(hits) if hits else 0.0


def run_demo(output_dir: Path, *, train_clips: int = 1200, test_clips: int = 60, epochs: float = 20.0,
             learning_rate: float = 3e-3, min_digits: int = 1, max_digits: int = 3,
             seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Train, evaluate, print and write ``wavllm_demo.{json,md}`` under ``output_dir``.

    Training and held-out clips both hold ``min_digits``–``max_digits`` digits; exact match is
    reported overall and per sequence length, with the per-digit accuracy of the transcripts.

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
    train = digit_rows(train_clips, min_digits=min_digits, max_digits=max_digits, seed=seed)
    test = digit_rows(test_clips, min_digits=min_digits, max_digits=max_digits, seed=seed + 1000)
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
    single = transcribe(model, processor, test, batched=False, max_new_tokens=max_digits + 2)
    batch = transcribe(model, processor, test, batched=True, max_new_tokens=max_digits + 2)
    gold = [r.target for r in test]
    lengths = sorted({len(g) for g in gold})
    report: dict[str, Any] = {
        "package": "papercraft-wavllm",
        "version": __version__,
        "train_clips": train_clips,
        "digits_per_clip": [min_digits, max_digits],
        "test_clips": test_clips,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "exact_match_single": _rate([p == g for p, g in zip(single, gold, strict=True)]),
        "exact_match_batched": _rate([p == g for p, g in zip(batch, gold, strict=True)]),
        "exact_match_by_length": {
            n: _rate([p == g for p, g in zip(single, gold, strict=True) if len(g) == n])
            for n in lengths
        },
        "clips_by_length": {n: sum(len(g) == n for g in gold) for n in lengths},
        "digit_accuracy": _rate(
            [
                i < len(p) and p[i] == c
                for p, g in zip(single, gold, strict=True)
                for i, c in enumerate(g)
            ]
        ),
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
        "",
        "| digits per clip | clips | exact match (one at a time) |",
        "|---|---|---|",
        *[
            f"| {n} | {report['clips_by_length'][n]} | {100 * report['exact_match_by_length'][n]:.1f}% |"
            for n in lengths
        ],
        "",
        f"per-digit accuracy: {100 * report['digit_accuracy']:.1f}%",
    ]
    print(f"WavLLM (tiny, from scratch) on espeak-ng digit sequences ({min_digits}–{max_digits} per clip): "
          f"{train_clips} training clips, {test_clips} held-out, 3 voices; "
          f"loss {report['first_loss']:.2f} → {report['last_loss']:.2f}")  # fmt: skip
    print("\n".join(lines))
    print(
        f"single and batched transcripts agree on {100 * report['same_single_and_batched']:.0f}% of clips"
    )
    atomic_write_json(output_dir / "wavllm_demo.json", report)
    atomic_write_text(output_dir / "wavllm_demo.md", "\n".join(lines) + "\n")
    print(f"wavllm demo done in {report['seconds']:.0f} s; wrote {output_dir / 'wavllm_demo.json'}")
    return report
