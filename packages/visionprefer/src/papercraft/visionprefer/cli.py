"""The ``papercraft visionprefer`` sub-command.

    papercraft visionprefer annotate --records r.jsonl --judge openai:http://host/v1#gpt-4o \\
        --out annotated.jsonl --cache judge-cache.jsonl
    papercraft visionprefer pairs --records annotated.jsonl --out pairs.jsonl
    papercraft visionprefer train-reward --pairs pairs.jsonl --blip ./blip-itm-large-coco --out vp
    papercraft visionprefer score --model vp --prompt "a red circle" --images a.png b.png
    papercraft visionprefer finetune --pipeline ./sd15 --reward vp --prompts prompts.txt --out lora
    papercraft visionprefer demo

The core's ``papercraft`` command finds this module through the ``papercraft.commands`` entry
point and calls ``command.register(subparsers)``. Handlers return 0, or 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from papercraft.core.cli import add_package_command, command_error
from papercraft.visionprefer._version import __version__

__all__ = ["Command", "command"]

_DIST = "papercraft-visionprefer"
_SUMMARY = (
    "VisionPrefer: MLLM-annotated preference data, the VP-Score reward model and reward "
    "fine-tuning."
)
_PAPER = (
    "Multimodal Large Language Model is a Human-Aligned Annotator for Text-to-Image Generation "
    "(arXiv 2404.15100)"
)
_ERRORS = (ValueError, FileNotFoundError, TypeError)


def _error(action: str, error: Exception) -> int:
    return command_error(f"visionprefer {action}", error)


def _annotate(args: argparse.Namespace) -> int:
    from papercraft.core.llm import load_language_model
    from papercraft.visionprefer.judge import annotate
    from papercraft.visionprefer.records import ASPECTS, load_records, pair_counts, save_records

    try:
        records = load_records(args.records, image_root=args.image_root)
        aspects = args.aspects or list(ASPECTS)
        judge = load_language_model(args.judge, endpoint="chat") if args.judge.startswith(
            "openai:") else load_language_model(args.judge)  # fmt: skip
        root = args.image_root or Path(args.records).parent
        out, stats = annotate(records, judge, aspects=aspects, image_root=root,
                              cache_path=args.cache, retries=args.retries)  # fmt: skip
        save_records(args.out, out)
    except _ERRORS as error:
        return _error("annotate", error)
    print(f"judged {stats.requested} items ({stats.cached} from cache, {stats.calls} calls, "
          f"{stats.parse_failures} unparsable answers, {stats.failed} failed); wrote {args.out}")  # fmt: skip
    print(json.dumps(pair_counts(out, aspects=aspects), indent=2))
    return 0


def _pairs(args: argparse.Namespace) -> int:
    from papercraft.visionprefer.records import (
        ASPECTS,
        load_records,
        make_pairs,
        pair_counts,
        save_pairs,
    )

    try:
        root = Path(args.image_root) if args.image_root else Path(args.records).parent
        records = load_records(args.records, image_root=root)
        aspects = args.aspects or list(ASPECTS)
        pairs = make_pairs(records, aspects=aspects, image_root=root.resolve())
        save_pairs(args.out, pairs)
    except _ERRORS as error:
        return _error("pairs", error)
    print(json.dumps(pair_counts(records, aspects=aspects), indent=2))
    print(f"wrote {len(pairs)} pairs to {args.out}")
    return 0


def _train_reward(args: argparse.Namespace) -> int:
    from papercraft.visionprefer.records import load_pairs
    from papercraft.visionprefer.vpscore import (
        VPScore,
        VPScoreConfig,
        evaluate_preferences,
        train_vpscore,
    )

    try:
        pairs = load_pairs(args.pairs)
        aspects = tuple(args.per_aspect) if args.per_aspect else None
        if args.blip:
            model = VPScore.from_blip(args.blip, aspects=aspects, freeze_fraction=args.freeze)
        elif args.tiny:
            from papercraft.core.testing import tiny_wordpiece_tokenizer
            from papercraft.visionprefer.testing import tiny_blip_config

            config = VPScoreConfig(blip=tiny_blip_config().to_dict(), aspects=aspects,
                                   freeze_fraction=args.freeze)  # fmt: skip
            model = VPScore(config, tiny_wordpiece_tokenizer(512))
        else:
            raise ValueError("pass --blip DIR (a BLIP image-text retrieval checkpoint) or --tiny")
        eval_pairs = load_pairs(args.eval_pairs) if args.eval_pairs else None
        train_vpscore(model, pairs, output_dir=args.out, epochs=args.epochs,
                      learning_rate=args.lr, batch_size=args.batch_size, seed=args.seed)  # fmt: skip
        if eval_pairs:
            print(json.dumps(evaluate_preferences(model, eval_pairs), indent=2))
    except _ERRORS as error:
        return _error("train-reward", error)
    print(f"saved VP-Score to {args.out}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from papercraft.visionprefer.vpscore import VPScore

    try:
        if not Path(args.model).is_dir():
            raise FileNotFoundError(f"--model {args.model} is not a saved VP-Score folder")
        model = VPScore.from_pretrained(args.model)
        scores = model.score([args.prompt] * len(args.images), args.images, aspect=args.aspect)
    except _ERRORS as error:
        return _error("score", error)
    for path, value in sorted(zip(args.images, scores, strict=True), key=lambda x: -x[1]):
        print(f"{value:+.4f}\t{path}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from papercraft.visionprefer.alignment import (
        DDPOConfig,
        ReFLConfig,
        ddpo_train,
        refl_train,
        save_unet_lora,
    )
    from papercraft.visionprefer.vpscore import VPScore

    try:
        prompts = [line.strip() for line in Path(args.prompts).read_text(encoding="utf-8").splitlines()
                   if line.strip()]  # fmt: skip
        if not prompts:
            raise ValueError(f"--prompts {args.prompts} holds no prompt")
        reward = VPScore.from_pretrained(args.reward).requires_grad_(False)
        pipe = _load_pipeline(args.pipeline)
        common: dict[str, Any] = {"steps": args.steps, "learning_rate": args.lr,
                                  "batch_size": args.batch_size, "height": args.size,
                                  "width": args.size, "seed": args.seed}  # fmt: skip
        fn = reward.score_pixels
        if args.method == "refl":
            history = refl_train(pipe, prompts, fn, ReFLConfig(**common))
        else:
            history = ddpo_train(pipe, prompts, fn, DDPOConfig(**common))
        save_unet_lora(pipe.unet, Path(args.out) / "unet_lora")
    except _ERRORS as error:
        return _error("finetune", error)
    print(f"{args.method}: reward {history[0]['reward']:+.3f} → {history[-1]['reward']:+.3f}; "
          f"saved {args.out}/unet_lora")  # fmt: skip
    return 0


def _load_pipeline(path: str) -> Any:
    from diffusers import DiffusionPipeline

    if not Path(path).is_dir():
        raise FileNotFoundError(f"--pipeline {path} is not a diffusers pipeline folder")
    return DiffusionPipeline.from_pretrained(path, local_files_only=True, safety_checker=None)


def _demo(args: argparse.Namespace) -> int:
    from papercraft.visionprefer.demo import run_demo

    try:
        run_demo(Path(args.output_dir))
    except _ERRORS as error:
        return _error("demo", error)
    return 0


class Command:
    """Registers ``papercraft visionprefer`` and its actions on the core's argument parser."""

    name = "visionprefer"

    def register(self, subparsers: argparse._SubParsersAction) -> None:
        """Add the ``visionprefer`` sub-parser.

        Args:
            subparsers (argparse._SubParsersAction): the core parser's sub-command group.
        """
        actions = add_package_command(subparsers, self.name, dist=_DIST, version=__version__,
                                      summary=_SUMMARY, paper=_PAPER)  # fmt: skip
        ann = actions.add_parser("annotate", help="judge images per aspect with a multimodal LLM")
        ann.add_argument("--records", required=True, help="records JSONL/Parquet")
        ann.add_argument("--image-root", default=None, help="image folder (default: next to it)")
        ann.add_argument("--judge", required=True, help="openai:URL#MODEL or hf:PATH")
        ann.add_argument("--out", required=True, help="annotated records (.jsonl or .parquet)")
        ann.add_argument("--cache", default=None, help="JSONL cache for resuming")
        ann.add_argument("--aspects", nargs="+", default=None)
        ann.add_argument("--retries", type=int, default=2)
        ann.set_defaults(func=_annotate)

        pairs = actions.add_parser("pairs", help="all pairs per prompt and aspect, ties dropped")
        pairs.add_argument("--records", required=True)
        pairs.add_argument("--image-root", default=None)
        pairs.add_argument("--aspects", nargs="+", default=None)
        pairs.add_argument("--out", required=True, help="pairs JSONL")
        pairs.set_defaults(func=_pairs)

        train = actions.add_parser("train-reward", help="train VP-Score on pairs (Trainer)")
        train.add_argument("--pairs", required=True)
        train.add_argument("--eval-pairs", default=None, help="held-out pairs: print accuracy")
        train.add_argument("--blip", default=None, help="BLIP image-text retrieval checkpoint")
        train.add_argument("--tiny", action="store_true", help="a tiny BLIP from a config")
        train.add_argument("--per-aspect", nargs="+", default=None, help="one head per aspect")
        train.add_argument("--freeze", type=float, default=0.7, help="frozen layer share (0.7)")
        train.add_argument("--out", required=True)
        train.add_argument("--epochs", type=float, default=10.0)
        train.add_argument("--lr", type=float, default=1e-5)
        train.add_argument("--batch-size", type=int, default=4)
        train.add_argument("--seed", type=int, default=0)
        train.set_defaults(func=_train_reward)

        score = actions.add_parser("score", help="VP-Score of images for a prompt, best first")
        score.add_argument("--model", required=True)
        score.add_argument("--prompt", required=True)
        score.add_argument("--images", nargs="+", required=True)
        score.add_argument("--aspect", default=None)
        score.set_defaults(func=_score)

        tune = actions.add_parser("finetune", help="ReFL or DDPO with VP-Score (LoRA on UNet)")
        tune.add_argument("--pipeline", required=True, help="a diffusers pipeline folder")
        tune.add_argument("--reward", required=True, help="a saved VP-Score folder")
        tune.add_argument("--prompts", required=True, help="a text file, one prompt per line")
        tune.add_argument("--method", choices=("refl", "ddpo"), default="refl")
        tune.add_argument("--out", required=True)
        tune.add_argument("--steps", type=int, default=100)
        tune.add_argument("--lr", type=float, default=1e-5)
        tune.add_argument("--batch-size", type=int, default=2)
        tune.add_argument("--size", type=int, default=512)
        tune.add_argument("--seed", type=int, default=0)
        tune.set_defaults(func=_finetune)

        demo = actions.add_parser("demo", help="synthetic pairs → tiny VP-Score → a few ReFL steps")
        demo.add_argument("--output-dir", default="demo-output")
        demo.set_defaults(func=_demo)


command = Command()
