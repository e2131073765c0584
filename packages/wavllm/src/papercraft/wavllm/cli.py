"""The ``papercraft wavllm`` sub-command: ``info``, ``train``, ``generate``, ``demo``.

The core's ``papercraft`` command finds this module through the ``papercraft.commands`` entry
point and calls ``command.register(subparsers)``. Each action stores its handler as ``func``
(``handler(args) -> int``, the exit status: 0, or 2 on bad input) on the parsed namespace.

    papercraft wavllm train --model saved-wavllm --stage1 asr.tsv --stage2 multitask.tsv --out run
    papercraft wavllm train --tiny --stage1 digits.jsonl --out run        # from scratch, tiny
    papercraft wavllm generate --model run/stage-2 --audio clip.wav --prompt "Transcribe it."
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import Any

from papercraft.core.cli import add_package_command, command_error
from papercraft.wavllm._version import __version__

__all__ = ["Command", "command"]

_DIST = "papercraft-wavllm"
_SUMMARY = "WavLLM: dual-encoder speech LLM with a prompt-aware LoRA weight adapter."
_PAPER = "WavLLM: Towards Robust and Adaptive Speech Large Language Model (arXiv 2404.00656)"


def _error(action: str, error: Exception) -> int:
    return command_error(f"wavllm {action}", error)


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    from transformers import AutoTokenizer

    from papercraft.wavllm.modeling import WavLLMForConditionalGeneration
    from papercraft.wavllm.processing import WavLLMProcessor

    if getattr(args, "tiny", False):
        from papercraft.wavllm.configuration import WavLLMConfig
        from papercraft.wavllm.processing import AUDIO_TOKEN
        from papercraft.wavllm.speech import char_tokenizer

        tok = char_tokenizer()
        config = WavLLMConfig.tiny(
            vocab_size=len(tok), audio_token_id=tok.convert_tokens_to_ids(AUDIO_TOKEN)
        )
        return WavLLMForConditionalGeneration(config), WavLLMProcessor(tok, config)
    if not args.model:
        raise ValueError("pass --model (a saved WavLLM directory) or --tiny")
    root = Path(args.model)
    if not (root / "config.json").is_file():
        raise FileNotFoundError(f"model {root} has no config.json (save it with save_pretrained)")
    model = WavLLMForConditionalGeneration.from_pretrained(root)
    tok = AutoTokenizer.from_pretrained(str(root), local_files_only=True, trust_remote_code=False)
    return model, WavLLMProcessor(tok, model.config)


def _train(args: argparse.Namespace) -> int:
    from papercraft.wavllm.training import StageConfig, read_manifest, train_curriculum

    try:
        model, processor = _load(args)
        extra: dict[str, Any] = {}
        if args.deepspeed:
            shipped = resources.files("papercraft.wavllm") / "configs" / f"{args.deepspeed}.json"
            extra["deepspeed"] = str(shipped) if shipped.is_file() else args.deepspeed
        stages = [StageConfig(1, read_manifest(args.stage1), epochs=args.epochs, learning_rate=args.lr,
                              batch_size=args.batch_size, train_language_model=args.tiny,
                              training_args=extra)]  # fmt: skip
        if args.stage2:
            stages.append(StageConfig(2, read_manifest(args.stage2), epochs=args.epochs, learning_rate=args.lr,
                                      batch_size=args.batch_size, training_args=extra))  # fmt: skip
        histories = train_curriculum(model, processor, stages, args.out, seed=args.seed)
    except (ValueError, FileNotFoundError) as error:
        return _error("train", error)
    for stage, history in zip(stages, histories, strict=True):
        losses = [h["loss"] for h in history if "loss" in h] or [
            h["train_loss"] for h in history if "train_loss" in h
        ]
        trace = f"loss {losses[0]:.3f} → {losses[-1]:.3f}" if losses else "no loss logged"
        print(f"stage {stage.stage}: {trace}; saved {args.out}/stage-{stage.stage}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from papercraft.wavllm.training import load_audio

    try:
        model, processor = _load(args)
        clips, rates = zip(*(load_audio(a) for a in args.audio), strict=True)
        if len(set(rates)) != 1:
            raise ValueError(f"audio files must share one sampling rate, got {sorted(set(rates))}")
        inputs = processor(
            list(clips), [args.prompt] * len(clips), sampling_rate=rates[0], padding_side="left"
        )
        tok = processor.tokenizer
        sample = args.temperature > 0
        ids = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=sample,
                             temperature=args.temperature if sample else None,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)  # fmt: skip
    except (ValueError, FileNotFoundError) as error:
        return _error("generate", error)
    for path, text in zip(args.audio, processor.batch_decode(ids), strict=True):
        print(f"{path}\t{text.strip()}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from papercraft.wavllm.demo import run_demo

    try:
        run_demo(Path(args.output_dir))
    except RuntimeError as error:
        return _error("demo", error)
    return 0


class Command:
    """Registers ``papercraft wavllm`` and its actions on the core's argument parser."""

    name = "wavllm"

    def register(self, subparsers: argparse._SubParsersAction) -> None:
        """Add the ``wavllm`` sub-parser.

        Args:
            subparsers (argparse._SubParsersAction): the core parser's sub-command group.
        """
        actions = add_package_command(subparsers, self.name, dist=_DIST, version=__version__,
                                      summary=_SUMMARY, paper=_PAPER)  # fmt: skip

        train = actions.add_parser("train", help="the two-stage curriculum on TSV/JSONL manifests")
        train.add_argument(
            "--model", default=None, help="a saved WavLLM directory (with tokenizer)"
        )
        train.add_argument("--tiny", action="store_true", help="a tiny model from scratch instead")
        train.add_argument("--stage1", required=True, help="stage-1 manifest (single tasks)")
        train.add_argument(
            "--stage2", default=None, help="stage-2 manifest (multi-task, +prompt adapter)"
        )
        train.add_argument("--out", required=True, help="output directory (stage-N subfolders)")
        train.add_argument("--epochs", type=float, default=1.0)
        train.add_argument("--lr", type=float, default=1e-4)
        train.add_argument("--batch-size", type=int, default=4)
        train.add_argument(
            "--deepspeed", default=None, help="a DeepSpeed JSON config (passed unchanged)"
        )
        train.add_argument("--seed", type=int, default=0)
        train.set_defaults(func=_train)

        gen = actions.add_parser("generate", help="answer a prompt about audio files")
        gen.add_argument("--model", required=True, help="a saved WavLLM directory (with tokenizer)")
        gen.add_argument("--audio", required=True, nargs="+", help="WAV files")
        gen.add_argument("--prompt", required=True, help="the instruction")
        gen.add_argument("--max-new-tokens", type=int, default=512)
        gen.add_argument("--temperature", type=float, default=0.5, help="0 for greedy (paper: 0.5)")
        gen.set_defaults(func=_generate)

        demo = actions.add_parser(
            "demo", help="train a tiny model on espeak-ng digits, evaluate it"
        )
        demo.add_argument(
            "--output-dir", default="demo-output", help="where to write (demo-output)"
        )
        demo.set_defaults(func=_demo)


command = Command()
