"""Data manifests, the batch collator and the two-stage curriculum on ``transformers.Trainer``.

- **Manifests**: the official TSV (header ``id audio n_frames prompt tgt_text with_speech``,
  tab-separated; ``audio`` relative to the file) or JSONL rows ``{"id", "audio", "prompt",
  "target"}``. WAV files are read with :mod:`scipy.io.wavfile` (int PCM or float, mono or the
  first channel); other formats must be converted first.
- **Curriculum** (paper Section 3.3): stage 1 trains the adapters, subsamplers, projections,
  fusion, WavLM layer weights and LoRA on single tasks; stage 2 adds the prompt adapter on
  multi-task data. :func:`train_curriculum` runs the stages in order with a ``Trainer`` each
  (DeepSpeed configs pass through ``TrainingArguments(deepspeed=...)`` unchanged) and saves the
  model after every stage.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from papercraft.core.data import read_jsonl
from papercraft.core.io import StrPath
from papercraft.wavllm.processing import WavLLMProcessor, resample

__all__ = [
    "ManifestRow",
    "SpeechCollator",
    "StageConfig",
    "load_audio",
    "read_manifest",
    "train_curriculum",
]


@dataclass(frozen=True)
class ManifestRow:
    """One training example: audio (a path or samples), instruction and target."""

    id: str
    audio: Any
    prompt: str
    target: str


def load_audio(path: StrPath) -> tuple[np.ndarray, int]:
    """A WAV file as float32 mono samples in [-1, 1] and its rate."""
    from scipy.io import wavfile

    file = Path(path)
    if file.suffix.lower() != ".wav":
        raise ValueError(f"audio {file}: only WAV is read here; convert {file.suffix} files first")
    if not file.is_file():
        raise FileNotFoundError(f"audio {file} does not exist")
    rate, data = wavfile.read(file)
    wave = np.asarray(data)
    if wave.ndim == 2:
        wave = wave[:, 0]
    if np.issubdtype(wave.dtype, np.integer):
        wave = wave.astype(np.float32) / float(np.iinfo(wave.dtype).max + 1)
    return wave.astype(np.float32), int(rate)


def read_manifest(path: StrPath) -> list[ManifestRow]:
    """Rows of an official TSV manifest or a JSONL manifest (audio paths made absolute)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"manifest {file} does not exist")
    rows: list[ManifestRow] = []
    if file.suffix == ".tsv":
        with file.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            needed = {"id", "audio", "prompt", "tgt_text"}
            if not needed <= set(reader.fieldnames or []):
                raise ValueError(
                    f"manifest {file}: the TSV header needs {sorted(needed)}, got {reader.fieldnames}"
                )
            for line in reader:
                rows.append(
                    ManifestRow(
                        line["id"],
                        str(file.parent / line["audio"]),
                        line["prompt"],
                        line["tgt_text"],
                    )
                )
    else:
        for n, item in enumerate(read_jsonl(file, torn_tail="error"), start=1):
            if not isinstance(item, dict) or not all(
                isinstance(item.get(k), str) for k in ("audio", "prompt", "target")
            ):
                raise ValueError(f"manifest {file}:{n}: needs str 'audio', 'prompt' and 'target'")
            rows.append(ManifestRow(str(item.get("id", n)), str(file.parent / item["audio"]),
                                    item["prompt"], item["target"]))  # fmt: skip
    if not rows:
        raise ValueError(f"manifest {file} holds no rows")
    return rows


class SpeechCollator:
    """Loads the clips of a batch and runs the processor (labels on the targets only)."""

    def __init__(self, processor: WavLLMProcessor) -> None:
        self.processor = processor

    def __call__(self, rows: Sequence[ManifestRow]) -> dict[str, torch.Tensor]:
        target = self.processor.config.sampling_rate
        waves = []
        for row in rows:
            if isinstance(row.audio, (str, Path)):
                wave, rate = load_audio(row.audio)
                wave = resample(wave, rate, target)
            else:
                wave = np.asarray(row.audio, dtype=np.float32)
            waves.append(wave)
        return self.processor(waves, [r.prompt for r in rows], [r.target for r in rows],
                              sampling_rate=target)  # fmt: skip


@dataclass
class StageConfig:
    """One curriculum stage.

    Args:
        stage (int): 1 (adapters + LoRA) or 2 (+ the prompt adapter).
        rows (Sequence[ManifestRow]): its training data.
        epochs (float): passes over ``rows``. learning_rate (float): peak rate.
        batch_size (int): clips per step. train_language_model (bool): also train the LLM's own
            weights; train_encoders (bool): also train Whisper and WavLM (both only for tiny
            models trained from scratch; never in the paper).
        training_args (dict): more ``TrainingArguments`` fields (e.g. ``deepspeed``).
    """

    stage: int
    rows: Sequence[ManifestRow]
    epochs: float = 1.0
    learning_rate: float = 1e-4
    batch_size: int = 4
    train_language_model: bool = False
    train_encoders: bool = False
    training_args: Mapping[str, Any] = field(default_factory=dict)


def train_curriculum(
    model: Any,
    processor: WavLLMProcessor,
    stages: Sequence[StageConfig],
    output_dir: StrPath,
    *,
    seed: int = 0,
) -> list[list[dict[str, Any]]]:
    """Run the stages in order, saving the model after each (``output_dir/stage-N``).

    Returns:
        list[list[dict]]: each stage's ``Trainer`` log history.
    """
    from transformers import Trainer, TrainingArguments

    out = Path(output_dir)
    histories = []
    for config in stages:
        if not config.rows:
            raise ValueError(f"stage {config.stage} has no rows")
        model.set_stage(config.stage)
        if config.train_language_model:
            for name, param in model.language_model.named_parameters():
                if "lora_" not in name:
                    param.requires_grad_(True)
        if config.train_encoders:
            model.whisper.requires_grad_(True)
            model.wavlm.requires_grad_(True)
        args = TrainingArguments(
            output_dir=str(out / f".stage-{config.stage}.trainer"),
            num_train_epochs=config.epochs,
            learning_rate=config.learning_rate,
            per_device_train_batch_size=config.batch_size,
            seed=seed,
            save_strategy="no",
            report_to=[],
            remove_unused_columns=False,
            use_cpu=not torch.cuda.is_available(),
            disable_tqdm=True,
            **{"logging_steps": 5, "warmup_steps": 0, **dict(config.training_args)},
        )
        trainer = Trainer(model=model, args=args, train_dataset=list(config.rows),
                          data_collator=SpeechCollator(processor))  # fmt: skip
        trainer.train()
        model.save_pretrained(out / f"stage-{config.stage}")
        processor.tokenizer.save_pretrained(out / f"stage-{config.stage}")
        histories.append(list(trainer.state.log_history))
    model.eval()
    return histories
