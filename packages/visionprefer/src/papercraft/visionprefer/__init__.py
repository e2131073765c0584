"""papercraft.visionprefer — VisionPrefer: MLLM-annotated preference data, VP-Score, reward tuning.

Paper: Multimodal Large Language Model is a Human-Aligned Annotator for Text-to-Image Generation
(arXiv 2404.15100). Modules load lazily: ``records`` (schema, files, pairs), ``judge``
(multimodal-LLM annotation), ``candidates`` (diffusers generation), ``vpscore`` (the reward
model), ``alignment`` (ReFL, DDPO, Diffusion-DPO), ``shapes`` (a synthetic preference set),
``testing`` (tiny pipelines and configs).
"""

from __future__ import annotations

import importlib
from typing import Any

from papercraft.visionprefer._version import __version__

_EXPORTS = {
    "ASPECTS": "records",
    "AspectJudgment": "records",
    "ImageCandidate": "records",
    "PreferencePair": "records",
    "PreferenceRecord": "records",
    "load_records": "records",
    "save_records": "records",
    "load_pairs": "records",
    "save_pairs": "records",
    "make_pairs": "records",
    "pair_counts": "records",
    "from_imagereward": "records",
    "annotate": "judge",
    "parse_judgment": "judge",
    "judge_messages": "judge",
    "generate_candidates": "candidates",
    "VPScore": "vpscore",
    "VPScoreConfig": "vpscore",
    "train_vpscore": "vpscore",
    "evaluate_preferences": "vpscore",
    "pairwise_loss": "vpscore",
    "ReFLConfig": "alignment",
    "DDPOConfig": "alignment",
    "DPOConfig": "alignment",
    "refl_train": "alignment",
    "ddpo_train": "alignment",
    "dpo_train": "alignment",
    "add_unet_lora": "alignment",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"papercraft.visionprefer.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'papercraft.visionprefer' has no attribute {name!r}")
