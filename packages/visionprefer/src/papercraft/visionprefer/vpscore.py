"""VP-Score: a BLIP-based text-to-image reward model trained on preference pairs.

VisionPrefer trains VP-Score on its ~1.2 M AI-annotated pairs; its architecture follows
ImageReward (Xu et al., 2023), which is what this module implements (VisionPrefer details are
from summaries, so everything is configurable):

- a BLIP image-text backbone (``transformers.BlipForImageTextRetrieval``: ViT image encoder, a
  BERT text encoder cross-attending to the image patches);
- the text encoder's ``[CLS]`` state → an MLP head ``h → 1024 → 128 → 64 → 16 → 1`` with
  dropout 0.2/0.2/0.1 and no activations, initialised N(0, 1/(h+1));
- rewards normalised as ``(r − 0.16717) / 1.03334`` (ImageReward's statistics; recompute them
  for your model with :meth:`VPScore.calibrate`);
- prompts padded/truncated to 35 tokens; the first 70% of the layers of both towers (and their
  embeddings) frozen;
- the pairwise loss ``−log σ(r_chosen − r_rejected)``, which equals
  ``cross_entropy([r_chosen, r_rejected], target=0)``.

``aspects=(...)`` gives one head per aspect (prompt-following, aesthetic, fidelity, harmlessness)
over the shared backbone instead of a single head. :meth:`VPScore.score_pixels` is
differentiable, with the signature reward fine-tuning expects (``reward_fn(images01, prompts)``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from papercraft.core.io import StrPath, atomic_directory, read_manifest, write_manifest
from papercraft.visionprefer.records import load_image

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "VPScore",
    "VPScoreConfig",
    "evaluate_preferences",
    "pairwise_loss",
    "train_vpscore",
]

FORMAT = "papercraft.visionprefer.vpscore"
FORMAT_VERSION = 1
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class VPScoreConfig:
    """VP-Score settings (ImageReward's by default).

    Args:
        blip (dict): a ``BlipConfig`` as a dict (``BlipConfig.to_dict()``).
        aspects (tuple[str, ...] | None): one head per aspect, or None for one shared head.
            Default: None
        head_dims (tuple[int, ...]): hidden sizes of the MLP head. Default: (1024, 128, 64, 16)
        head_dropout (tuple[float, ...]): dropout after the first layers. Default: (0.2, 0.2, 0.1)
        mean (float): reward normalisation mean. Default: 0.16717
        std (float): reward normalisation std. Default: 1.03334
        max_prompt_tokens (int): prompt length (pad/truncate). Default: 35
        freeze_fraction (float): share of each tower's layers frozen (with embeddings).
            Default: 0.7
        image_mean (tuple[float, ...]): pixel normalisation mean. Default: CLIP's
        image_std (tuple[float, ...]): pixel normalisation std. Default: CLIP's
    """

    blip: dict[str, Any]
    aspects: tuple[str, ...] | None = None
    head_dims: tuple[int, ...] = (1024, 128, 64, 16)
    head_dropout: tuple[float, ...] = (0.2, 0.2, 0.1)
    mean: float = 0.16717
    std: float = 1.03334
    max_prompt_tokens: int = 35
    freeze_fraction: float = 0.7
    image_mean: tuple[float, ...] = field(default=CLIP_MEAN)
    image_std: tuple[float, ...] = field(default=CLIP_STD)

    def __post_init__(self) -> None:
        if self.aspects is not None:
            self.aspects = tuple(self.aspects)
            if not self.aspects or len(set(self.aspects)) != len(self.aspects):
                raise ValueError(f"aspects must be None or distinct names, got {self.aspects}")
        self.head_dims = tuple(int(d) for d in self.head_dims)
        self.head_dropout = tuple(float(p) for p in self.head_dropout)
        self.image_mean, self.image_std = tuple(self.image_mean), tuple(self.image_std)
        if any(d < 1 for d in self.head_dims) or len(self.head_dropout) > len(self.head_dims):
            raise ValueError("head_dims must be >= 1, with at most one dropout per hidden layer")
        if not 0.0 <= self.freeze_fraction <= 1.0:
            raise ValueError(f"freeze_fraction must be in [0, 1], got {self.freeze_fraction}")
        if not self.std > 0 or self.max_prompt_tokens < 2:
            raise ValueError("std must be > 0 and max_prompt_tokens >= 2")


def _head(hidden: int, dims: Sequence[int], dropout: Sequence[float]) -> nn.Sequential:
    layers: list[nn.Module] = []
    sizes = [hidden, *dims, 1]
    for i in range(len(sizes) - 1):
        linear = nn.Linear(sizes[i], sizes[i + 1])
        nn.init.normal_(linear.weight, mean=0.0, std=1.0 / (sizes[i] + 1))
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(dropout):
            layers.append(nn.Dropout(dropout[i]))
    return nn.Sequential(*layers)


def pairwise_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean ``−log σ(r_chosen − r_rejected)`` (ImageReward's ranking loss)."""
    if chosen.shape != rejected.shape:
        raise ValueError(
            f"chosen {tuple(chosen.shape)} and rejected {tuple(rejected.shape)} differ"
        )
    return -F.logsigmoid(chosen - rejected).mean()


def _to_tensor(images: Sequence[Any]) -> torch.Tensor:
    import numpy as np

    arrays = [np.asarray(load_image(im), dtype=np.float32) / 255.0 for im in images]
    sizes = {a.shape for a in arrays}
    if len(sizes) == 1:
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    # mixed sizes: resize each to the first one's size before stacking
    h, w = arrays[0].shape[:2]
    return torch.cat([F.interpolate(torch.from_numpy(a).permute(2, 0, 1)[None], size=(h, w),
                                    mode="bilinear", align_corners=False) for a in arrays])  # fmt: skip


class VPScore(nn.Module):
    """The reward model: BLIP vision + cross-attending text encoder, [CLS] → MLP head(s).

    Args:
        config (VPScoreConfig): the settings.
        tokenizer (Any): a BERT-style tokenizer for the text encoder.
        backbone (Any): a ``BlipForImageTextRetrieval`` to take the towers from (pretrained
            weights); None builds one from ``config.blip``. Default: None
    """

    def __init__(self, config: VPScoreConfig, tokenizer: Any, backbone: Any = None) -> None:
        super().__init__()
        from transformers import BlipConfig, BlipForImageTextRetrieval

        self.config = config
        self.tokenizer = tokenizer
        if backbone is None:
            backbone = BlipForImageTextRetrieval(BlipConfig.from_dict(config.blip))
        self.vision_model = backbone.vision_model
        self.text_encoder = backbone.text_encoder
        self.image_size = int(backbone.config.vision_config.image_size)
        hidden = int(backbone.config.text_config.hidden_size)
        names = config.aspects or ("all",)
        self.heads = nn.ModuleDict(
            {name: _head(hidden, config.head_dims, config.head_dropout) for name in names}
        )
        self.pixel_mean: torch.Tensor
        self.pixel_std: torch.Tensor
        self.register_buffer(
            "pixel_mean", torch.tensor(config.image_mean).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("pixel_std", torch.tensor(config.image_std).view(1, 3, 1, 1), persistent=False)  # fmt: skip
        self.freeze()

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_blip(cls, path: StrPath, **config: Any) -> VPScore:
        """Start from a BLIP image-text retrieval checkpoint on disk (e.g. blip-itm-large-coco).

        Args:
            path (StrPath): a folder with the BLIP weights and its tokenizer.
            **config (Any): other :class:`VPScoreConfig` fields.
        """
        from transformers import AutoTokenizer, BlipForImageTextRetrieval

        kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
        backbone = BlipForImageTextRetrieval.from_pretrained(str(path), **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(str(path), **kwargs)
        return cls(VPScoreConfig(blip=backbone.config.to_dict(), **config), tokenizer, backbone)

    def freeze(self) -> dict[str, int]:
        """Freeze embeddings and the first ``freeze_fraction`` of each tower's layers.

        Returns:
            dict[str, int]: how many text and vision layers are frozen.
        """
        text_layers = self.text_encoder.encoder.layer
        vision_layers = self.vision_model.encoder.layers
        n_text = int(len(text_layers) * self.config.freeze_fraction)
        n_vision = int(len(vision_layers) * self.config.freeze_fraction)
        for module in (self.text_encoder, self.vision_model):
            module.requires_grad_(True)
        if self.config.freeze_fraction > 0:
            self.text_encoder.embeddings.requires_grad_(False)
            self.vision_model.embeddings.requires_grad_(False)
        for layer in list(text_layers)[:n_text]:
            layer.requires_grad_(False)
        for layer in list(vision_layers)[:n_vision]:
            layer.requires_grad_(False)
        return {"text": n_text, "vision": n_vision}

    # -- scoring --------------------------------------------------------------------------
    def _head_name(self, aspect: str | None) -> str:
        if self.config.aspects is None:
            return "all"
        if aspect is None or aspect not in self.heads:
            raise ValueError(f"aspect must be one of {self.config.aspects}, got {aspect!r}")
        return aspect

    def tokenize(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Prompts → ``input_ids``/``attention_mask`` padded to ``max_prompt_tokens``."""
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise TypeError("prompts must be a sequence of strings")
        encoded = self.tokenizer(list(prompts), padding="max_length", truncation=True,
                                 max_length=self.config.max_prompt_tokens, return_tensors="pt")  # fmt: skip
        device = self.pixel_mean.device
        return {"input_ids": encoded["input_ids"].to(device),
                "attention_mask": encoded["attention_mask"].to(device)}  # fmt: skip

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor,
        aspect: str | Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Raw (unnormalised) rewards ``(B,)`` of normalised pixel values ``(B, 3, S, S)``.

        ``aspect`` is one name for the whole batch or one per sample (per-aspect heads).
        """
        image_embeds = self.vision_model(pixel_values=pixel_values).last_hidden_state  # (B, P, h)
        image_mask = torch.ones(
            image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device
        )
        text = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask,
                                 encoder_hidden_states=image_embeds,
                                 encoder_attention_mask=image_mask).last_hidden_state  # fmt: skip
        cls_state = text[:, 0, :]  # (B, h)
        if aspect is None or isinstance(aspect, str):
            return self.heads[self._head_name(aspect)](cls_state).squeeze(-1)
        if len(aspect) != cls_state.shape[0]:
            raise ValueError(f"aspect has {len(aspect)} names for a batch of {cls_state.shape[0]}")
        out = torch.empty(cls_state.shape[0], dtype=cls_state.dtype, device=cls_state.device)
        for name in set(aspect):
            rows = torch.tensor([i for i, a in enumerate(aspect) if a == name], device=out.device)
            out[rows] = self.heads[self._head_name(name)](cls_state[rows]).squeeze(-1)
        return out

    def preprocess(self, images01: torch.Tensor) -> torch.Tensor:
        """Resize ``[0, 1]`` images to the backbone's size and normalise them (differentiable)."""
        if images01.dim() != 4 or images01.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images01.shape)}")
        if images01.shape[-2:] != (self.image_size, self.image_size):
            images01 = F.interpolate(images01, size=(self.image_size, self.image_size),
                                     mode="bilinear", align_corners=False)  # fmt: skip
        return (images01 - self.pixel_mean) / self.pixel_std

    def score_pixels(
        self, images01: torch.Tensor, prompts: Sequence[str], *, aspect: str | None = None
    ) -> torch.Tensor:
        """Normalised rewards ``(B,)`` of images in ``[0, 1]``; gradients flow to the pixels.

        Runs in the module's current mode: call ``.eval()`` first (no dropout) when using it as
        a reward for fine-tuning.

        Raises:
            ValueError: on a shape, range or length mismatch.
        """
        if images01.dim() != 4 or images01.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images01.shape)}")
        if len(prompts) != images01.shape[0]:
            raise ValueError(f"got {len(prompts)} prompts for {images01.shape[0]} images")
        with torch.no_grad():
            low, high = float(images01.min()), float(images01.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(f"images must be in [0, 1], got values in [{low:.3f}, {high:.3f}]")
        tokens = self.tokenize(prompts)
        pixels = self.preprocess(images01.to(self.pixel_mean.device, self.pixel_mean.dtype))
        raw = self(tokens["input_ids"], tokens["attention_mask"], pixels, aspect)
        return (raw - self.config.mean) / self.config.std

    @torch.no_grad()
    def score(
        self,
        prompts: Sequence[str],
        images: Sequence[Any],
        *,
        aspect: str | None = None,
        batch_size: int = 32,
    ) -> list[float]:
        """Normalised rewards of ``images`` (PIL images or paths) for ``prompts``, batched.

        Raises:
            ValueError: on a length mismatch or ``batch_size`` < 1.
        """
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not one string")
        if len(prompts) != len(images):
            raise ValueError(f"got {len(prompts)} prompts for {len(images)} images")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._head_name(aspect)
        was_training = self.training
        self.eval()
        out: list[float] = []
        try:
            for start in range(0, len(prompts), batch_size):
                pixels = _to_tensor(images[start : start + batch_size])
                out.extend(self.score_pixels(pixels, prompts[start : start + batch_size],
                                             aspect=aspect).tolist())  # fmt: skip
        finally:
            self.train(was_training)
        return out

    def calibrate(self, prompts: Sequence[str], images: Sequence[Any], *, aspect: str | None = None
                  ) -> tuple[float, float]:  # fmt: skip
        """Set ``config.mean``/``config.std`` to the raw-reward statistics of these images."""
        old = (self.config.mean, self.config.std)
        self.config.mean, self.config.std = 0.0, 1.0
        try:
            raw = self.score(prompts, images, aspect=aspect)
        except Exception:
            self.config.mean, self.config.std = old
            raise
        mean = sum(raw) / len(raw)
        std = math.sqrt(sum((r - mean) ** 2 for r in raw) / max(1, len(raw) - 1)) or 1.0
        self.config.mean, self.config.std = mean, std
        return mean, std

    # -- persistence ----------------------------------------------------------------------
    def save_pretrained(self, directory: StrPath) -> Path:
        """Write ``vpscore.json``, ``model.safetensors``, the tokenizer and a manifest atomically."""
        from safetensors.torch import save_file

        target = Path(directory)
        with atomic_directory(target) as tmp:
            state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / "model.safetensors"))
            self.tokenizer.save_pretrained(str(tmp / "tokenizer"))
            config = asdict(self.config)
            (tmp / "vpscore.json").write_text(json.dumps(config), encoding="utf-8")
            write_manifest(tmp, format=FORMAT, format_version=FORMAT_VERSION,
                           metadata={"aspects": list(self.config.aspects or [])})  # fmt: skip
        return target

    @classmethod
    def from_pretrained(cls, directory: StrPath) -> VPScore:
        """Load a :meth:`save_pretrained` folder (format and version checked, safetensors only).

        Raises:
            FormatVersionError / CheckpointError: for another format or a newer version.
        """
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        root = Path(directory)
        read_manifest(root, format=FORMAT, max_format_version=FORMAT_VERSION)
        raw = json.loads((root / "vpscore.json").read_text(encoding="utf-8"))
        if raw.get("aspects") is not None:
            raw["aspects"] = tuple(raw["aspects"])
        tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizer"), local_files_only=True,
                                                  trust_remote_code=False)  # fmt: skip
        model = cls(VPScoreConfig(**raw), tokenizer)
        model.load_state_dict(load_file(str(root / "model.safetensors")))
        return model.eval()


# -- training --------------------------------------------------------------------------------


class _PairObjective(nn.Module):
    """Wraps a VPScore so ``Trainer`` gets ``{"loss": −log σ(r_c − r_r)}`` from a pair batch."""

    def __init__(self, model: VPScore) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                chosen: torch.Tensor, rejected: torch.Tensor,
                aspects: list[str] | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
        n = chosen.shape[0]
        pixels = self.model.preprocess(torch.cat([chosen, rejected]))
        both_aspects = None if aspects is None else [*aspects, *aspects]
        rewards = self.model(input_ids.repeat(2, 1), attention_mask.repeat(2, 1), pixels,
                             both_aspects)  # fmt: skip
        return {"loss": pairwise_loss(rewards[:n], rewards[n:])}


class _PairCollator:
    def __init__(self, model: VPScore) -> None:
        self.model = model

    def __call__(self, pairs: Sequence[Any]) -> dict[str, Any]:
        tokens = self.model.tokenize([p.prompt for p in pairs])
        size = (self.model.image_size, self.model.image_size)
        chosen = F.interpolate(_to_tensor([p.chosen for p in pairs]), size=size, mode="bilinear",
                               align_corners=False)  # fmt: skip
        rejected = F.interpolate(_to_tensor([p.rejected for p in pairs]), size=size,
                                 mode="bilinear", align_corners=False)  # fmt: skip
        batch: dict[str, Any] = {**tokens, "chosen": chosen, "rejected": rejected}
        if self.model.config.aspects is not None:
            batch["aspects"] = [str(getattr(p, "aspect", "")) for p in pairs]
        return batch


def _check_pairs(pairs: Sequence[Any], name: str, model: VPScore) -> None:
    if not pairs:
        raise ValueError(f"{name} must not be empty")
    for i, pair in enumerate(pairs):
        for attribute in ("prompt", "chosen", "rejected"):
            if not hasattr(pair, attribute):
                raise ValueError(f"{name}[{i}] has no {attribute!r} (need prompt/chosen/rejected)")
        if model.config.aspects is not None and str(getattr(pair, "aspect", "")) not in model.heads:
            raise ValueError(f"{name}[{i}].aspect must be one of {model.config.aspects}")


def train_vpscore(
    model: VPScore,
    pairs: Sequence[Any],
    *,
    output_dir: StrPath,
    epochs: float = 10.0,
    learning_rate: float = 1e-5,
    batch_size: int = 4,
    seed: int = 0,
    **training_args: Any,
) -> list[dict[str, Any]]:
    """Train with ``transformers.Trainer`` (cosine schedule; ImageReward: lr 1e-5, 10 epochs,
    batch 4 per GPU) and save the model to ``output_dir``.

    Args:
        model (VPScore): the model (its frozen layers stay frozen).
        pairs (Sequence[Any]): objects with ``prompt``, ``chosen``, ``rejected`` (PIL images or
            paths) and, for per-aspect heads, ``aspect``.
        output_dir (StrPath): where the trained model is saved.
        epochs (float): passes over the pairs. Default: 10.0
        learning_rate (float): peak learning rate. Default: 1e-5
        batch_size (int): pairs per step. Default: 4
        seed (int): Trainer seed. Default: 0
        **training_args (Any): more ``TrainingArguments`` fields.

    Returns:
        list[dict[str, Any]]: the Trainer's log history.

    Raises:
        ValueError: on empty/malformed pairs or bad hyper-parameters (before training).
    """
    from transformers import Trainer, TrainingArguments

    _check_pairs(pairs, "pairs", model)
    if not learning_rate > 0 or batch_size < 1 or not epochs > 0:
        raise ValueError(
            f"need learning_rate > 0, batch_size >= 1, epochs > 0; got {learning_rate}, "
            f"{batch_size}, {epochs}"
        )
    out = Path(output_dir)
    args = TrainingArguments(
        output_dir=str(out.parent / f".{out.name}.trainer"),
        learning_rate=learning_rate,
        per_device_train_batch_size=batch_size,
        num_train_epochs=epochs,
        lr_scheduler_type=training_args.pop("lr_scheduler_type", "cosine"),
        seed=seed,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        logging_steps=training_args.pop("logging_steps", 10),
        **training_args,
    )
    trainer = Trainer(model=_PairObjective(model), args=args, train_dataset=list(pairs),
                      data_collator=_PairCollator(model))  # fmt: skip
    trainer.train()
    model.eval()
    model.save_pretrained(out)
    return list(trainer.state.log_history)


@torch.no_grad()
def evaluate_preferences(
    model: VPScore, pairs: Sequence[Any], *, batch_size: int = 32
) -> dict[str, Any]:
    """Pairwise accuracy (chosen scored above rejected) overall and per aspect.

    Returns:
        dict[str, Any]: ``accuracy``, ``n``, ``per_aspect`` (``{aspect: accuracy}``) and
        ``mean_margin`` (mean normalised ``r_chosen − r_rejected``).
    """
    _check_pairs(pairs, "pairs", model)
    hits: dict[str, list[bool]] = {}
    margins = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        by_aspect: dict[str | None, list[Any]] = {}
        for pair in chunk:
            key = getattr(pair, "aspect", None) if model.config.aspects is not None else None
            by_aspect.setdefault(key, []).append(pair)
        for aspect, group in by_aspect.items():
            prompts = [p.prompt for p in group]
            chosen = model.score(prompts, [p.chosen for p in group], aspect=aspect)
            rejected = model.score(prompts, [p.rejected for p in group], aspect=aspect)
            for pair, c, r in zip(group, chosen, rejected, strict=True):
                hits.setdefault(str(getattr(pair, "aspect", "all")), []).append(c > r)
                margins.append(c - r)
    flat = [h for values in hits.values() for h in values]
    return {
        "accuracy": sum(flat) / len(flat),
        "n": len(flat),
        "per_aspect": {a: sum(v) / len(v) for a, v in sorted(hits.items())},
        "mean_margin": sum(margins) / len(margins),
    }
