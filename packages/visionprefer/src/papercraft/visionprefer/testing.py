"""Tiny, offline building blocks for tests, the demo and quick experiments.

- :func:`tiny_clip_tokenizer`: a character-level ``CLIPTokenizer`` (vocab/merges written to a
  folder), the tokenizer type Stable Diffusion pipelines expect.
- :func:`tiny_stable_diffusion_pipeline`: a randomly initialised ``StableDiffusionPipeline``
  (UNet, VAE, CLIP text encoder, DDIM scheduler) built from configs; 16×16 images in a few
  denoising steps on a CPU.
- :func:`tiny_blip_config`: a ``BlipConfig`` for a few-ten-thousand-parameter image-text
  retrieval backbone (the VP-Score backbone) at 32×32 pixels.

Nothing here downloads anything.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["tiny_blip_config", "tiny_clip_tokenizer", "tiny_stable_diffusion_pipeline"]

_CLIP_ALPHABET = string.ascii_lowercase + string.digits + ".,'-!?"


def tiny_clip_tokenizer(directory: str | Path | None = None) -> Any:
    """A character-level ``CLIPTokenizer`` (lower-case letters, digits, a little punctuation).

    Args:
        directory (str | Path | None): where to write ``vocab.json`` and ``merges.txt``; a fresh
            temporary folder when None. Default: None

    Returns:
        transformers.CLIPTokenizer: with ``model_max_length=77``, BOS ``<|startoftext|>`` (id 0)
        and EOS/pad ``<|endoftext|>`` (id 1).
    """
    from transformers import CLIPTokenizer

    folder = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="clip-"))
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in _CLIP_ALPHABET:
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77,
        pad_token="<|endoftext|>",
    )  # fmt: skip


def tiny_stable_diffusion_pipeline(*, seed: int = 0, image_size: int = 16) -> Any:
    """A randomly initialised Stable Diffusion pipeline small enough for CPU tests.

    The UNet has two resolution levels (32/64 channels, one cross-attention level), the VAE
    downsamples ×2 to 4 latent channels, the text encoder is a 2-layer CLIP with 32 hidden
    units; the scheduler is DDIM with Stable Diffusion's scaled-linear betas.

    Args:
        seed (int): initialisation seed. Default: 0
        image_size (int): the pixel size the VAE/UNet are configured for (a multiple of 8).
            Default: 16

    Returns:
        diffusers.StableDiffusionPipeline: on the CPU, safety checker disabled.

    Raises:
        ValueError: if ``image_size`` is not a positive multiple of 8.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    if not isinstance(image_size, int) or image_size <= 0 or image_size % 8:
        raise ValueError(f"image_size must be a positive multiple of 8, got {image_size!r}")
    tokenizer = tiny_clip_tokenizer()
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=37,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=77,
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
            )
        )
        unet = UNet2DConditionModel(
            sample_size=image_size // 2, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
            norm_num_groups=32, attention_head_dim=4,
        )  # fmt: skip
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 64),
            latent_channels=4, norm_num_groups=32, sample_size=image_size,
        )  # fmt: skip
    finally:
        torch.random.set_rng_state(state)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)  # fmt: skip
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]
    return pipe


def tiny_blip_config(
    *, vocab_size: int = 512, image_size: int = 32, hidden_size: int = 32, patch_size: int = 8
) -> Any:
    """A ``BlipConfig`` for a tiny image-text retrieval backbone (2 vision + 2 text layers).

    Pair it with :func:`papercraft.core.testing.tiny_wordpiece_tokenizer` (same ``vocab_size``).

    Args:
        vocab_size (int): text vocabulary size. Default: 512
        image_size (int): input resolution (patch size 8). Default: 32
        hidden_size (int): width of both towers. Default: 32
        patch_size (int): ViT patch size (divides ``image_size``). Default: 8

    Returns:
        transformers.BlipConfig: the config.

    Raises:
        ValueError: if ``image_size`` is not a positive multiple of 8.
    """
    from transformers import BlipConfig

    if not isinstance(image_size, int) or image_size <= 0 or image_size % 8:
        raise ValueError(f"image_size must be a positive multiple of 8, got {image_size!r}")
    if not isinstance(patch_size, int) or patch_size <= 0 or image_size % patch_size:
        raise ValueError(f"patch_size must divide image_size ({image_size}), got {patch_size!r}")
    text = {"vocab_size": vocab_size, "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size, "num_hidden_layers": 2, "num_attention_heads": 4,
            "encoder_hidden_size": hidden_size, "max_position_embeddings": 64,
            "bos_token_id": 2, "sep_token_id": 3, "pad_token_id": 0}  # fmt: skip
    vision = {"hidden_size": hidden_size, "intermediate_size": 2 * hidden_size,
              "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": image_size,
              "patch_size": patch_size}  # fmt: skip
    return BlipConfig(text_config=text, vision_config=vision, projection_dim=hidden_size)
