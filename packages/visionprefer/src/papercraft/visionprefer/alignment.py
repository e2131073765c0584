"""Reward fine-tuning of diffusion models with VP-Score (or any reward): ReFL, DDPO, Diffusion-DPO.

VisionPrefer aligns text-to-image models with its reward model by reinforcement learning (PPO
with VP-Score as the reward, DDPO-style) and with Diffusion-DPO on its preference pairs (from
summaries); ImageReward's ReFL is the reference for reward-gradient tuning. All three work on
diffusers Stable-Diffusion-style pipelines (``unet``, ``vae``, ``text_encoder``, ``tokenizer``,
a DDIM ``scheduler``) and train LoRA adapters on the UNet through peft:

- **ReFL** (Xu et al., 2023, ``ImageReward/ReFL.py``): ``T = 40`` DDIM steps; denoise without
  gradients to a random step ``mid ∈ [30, 39]``, take one step with gradients, decode the
  predicted ``x0`` with the VAE and maximise the reward: ``loss = relu(λ − r)·s`` (λ = 2,
  s = 1e-3), lr 1e-5.
- **DDPO** (Black et al., 2023): sample with DDIM ``η = 1`` recording every step's Gaussian
  log-probability, normalise rewards into advantages, then PPO's clipped surrogate on the
  ratio ``exp(log p − log p_old)`` per denoising step.
- **Diffusion-DPO** (Wallace et al., 2023): for a chosen/rejected pair, shared noise and
  timestep, ``loss = −log σ(−β/2 · ((e_w − e_l) − (e_w^ref − e_l^ref)))`` with ``e`` the
  per-sample noise-prediction MSE and the reference = the UNet with its LoRA disabled (the
  diffusers research example's form). A fresh LoRA equals the reference, so the first loss is
  ``log 2``.

A reward function takes images in ``[0, 1]`` of shape ``(B, 3, H, W)`` and the prompts and
returns ``(B,)`` differentiable rewards (:meth:`VPScore.score_pixels
<papercraft.visionprefer.vpscore.VPScore.score_pixels>` has this signature).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from papercraft.core.io import StrPath, load_tensors, save_tensors

__all__ = [
    "LORA_FORMAT",
    "DDPOConfig",
    "DPOConfig",
    "ReFLConfig",
    "RewardFn",
    "add_unet_lora",
    "ddim_step_with_logprob",
    "ddpo_train",
    "decode_latents",
    "diffusion_dpo_loss",
    "dpo_batch_loss",
    "dpo_train",
    "encode_prompts",
    "load_unet_lora",
    "ppo_loss",
    "refl_train",
    "save_unet_lora",
]

RewardFn = Callable[[torch.Tensor, list[str]], torch.Tensor]


# -- LoRA on the UNet ------------------------------------------------------------------------


def add_unet_lora(
    unet: nn.Module,
    *,
    rank: int = 4,
    alpha: float = 4.0,
    target_modules: Sequence[str] = ("to_q", "to_k", "to_v", "to_out.0"),
) -> list[nn.Parameter]:
    """Add a peft LoRA adapter to the UNet's attention projections and freeze everything else.

    ``lora_B`` starts at zero, so the adapted UNet first equals the base one.

    Returns:
        list[nn.Parameter]: the trainable LoRA parameters.

    Raises:
        ValueError: if ``rank`` < 1 or ``alpha`` <= 0.
    """
    from peft import LoraConfig

    if rank < 1 or not alpha > 0:
        raise ValueError(f"rank must be >= 1 and alpha > 0, got {rank}, {alpha}")
    unet.requires_grad_(False)
    settings: dict[str, Any] = {"r": rank, "lora_alpha": alpha, "init_lora_weights": True,
                                "target_modules": list(target_modules)}  # fmt: skip
    config = LoraConfig(**settings)
    unet.add_adapter(config)  # type: ignore[operator]
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    if not params:
        raise ValueError(f"target_modules {list(target_modules)} matched nothing in the UNet")
    return params


LORA_FORMAT = "papercraft.visionprefer.unet-lora"
LORA_FORMAT_VERSION = 1


def save_unet_lora(unet: nn.Module, directory: StrPath) -> Path:
    """Write the UNet's LoRA tensors as a versioned checkpoint folder (core ``save_tensors``)."""
    tensors = {n: p for n, p in unet.named_parameters() if "lora_" in n}
    if not tensors:
        raise ValueError("unet has no LoRA parameters (call add_unet_lora first)")
    save_tensors(directory, tensors, format=LORA_FORMAT, format_version=LORA_FORMAT_VERSION)
    return Path(directory)


def load_unet_lora(unet: nn.Module, directory: StrPath) -> None:
    """Load :func:`save_unet_lora` tensors into a UNet that has the same LoRA adapter.

    Raises:
        ValueError: when names or shapes do not match.
        CheckpointError / FormatVersionError: for another format or a newer version.
    """
    tensors, _ = load_tensors(directory, format=LORA_FORMAT, max_format_version=LORA_FORMAT_VERSION)
    params = dict(unet.named_parameters())
    missing = sorted(set(tensors) - set(params))
    if missing or not tensors:
        raise ValueError(
            f"{directory}: LoRA tensors {missing[:3]} are not in this UNet (same rank/targets?)"
        )
    with torch.no_grad():
        for name, value in tensors.items():
            if params[name].shape != value.shape:
                raise ValueError(f"{directory}: {name} has shape {tuple(value.shape)}, "
                                 f"the UNet {tuple(params[name].shape)}")  # fmt: skip
            params[name].copy_(value)


# -- shared pieces ---------------------------------------------------------------------------


def encode_prompts(pipe: Any, prompts: Sequence[str]) -> torch.Tensor:
    """Text-encoder states ``(B, L, d)`` of the prompts (padded to the tokenizer's max length)."""
    tokens = pipe.tokenizer(list(prompts), padding="max_length", truncation=True,
                            max_length=pipe.tokenizer.model_max_length, return_tensors="pt")  # fmt: skip
    device = pipe.unet.device
    return pipe.text_encoder(tokens.input_ids.to(device))[0]


def decode_latents(pipe: Any, latents: torch.Tensor) -> torch.Tensor:
    """VAE-decode latents into images in ``[0, 1]`` (differentiable)."""
    images = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    return (images / 2 + 0.5).clamp(0, 1)


def _noise_prediction(pipe: Any, latents: torch.Tensor, t: Any, cond: torch.Tensor,
                      uncond: torch.Tensor | None, guidance: float) -> torch.Tensor:  # fmt: skip
    if uncond is None or guidance == 1.0:
        return pipe.unet(latents, t, encoder_hidden_states=cond).sample
    both = pipe.unet(torch.cat([latents, latents]), t,
                     encoder_hidden_states=torch.cat([uncond, cond])).sample  # fmt: skip
    e_uncond, e_cond = both.chunk(2)
    return e_uncond + guidance * (e_cond - e_uncond)


def _latent_shape(pipe: Any, batch: int, height: int, width: int) -> tuple[int, int, int, int]:
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    if height % factor or width % factor:
        raise ValueError(f"height and width must be multiples of {factor}, got {height}×{width}")
    return (batch, pipe.unet.config.in_channels, height // factor, width // factor)


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty sequence of strings")
    if not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ValueError("prompts must hold non-empty strings")
    return list(prompts)


@dataclass
class _Common:
    steps: int = 100
    learning_rate: float = 1e-5
    batch_size: int = 2
    num_inference_steps: int = 40
    guidance_scale: float = 7.5
    height: int = 512
    width: int = 512
    seed: int = 0
    lora_rank: int = 4

    def _validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.num_inference_steps < 1:
            raise ValueError("steps, batch_size and num_inference_steps must be >= 1")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


def _lora_params(pipe: Any, rank: int) -> list[nn.Parameter]:
    params = [p for n, p in pipe.unet.named_parameters() if "lora_" in n]
    return params or add_unet_lora(pipe.unet, rank=rank, alpha=float(rank))


def _setup(
    pipe: Any, config: _Common
) -> tuple[list[nn.Parameter], torch.optim.Optimizer, random.Random, torch.Generator]:
    """The LoRA parameters (added if missing), AdamW over them, and the seeded generators."""
    params = _lora_params(pipe, config.lora_rank)
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    return params, optimizer, random.Random(config.seed), torch.Generator().manual_seed(config.seed)


# -- ReFL ------------------------------------------------------------------------------------


@dataclass
class ReFLConfig(_Common):
    """ReFL settings (ImageReward's defaults).

    Args:
        mid_step_range (tuple[int, int]): the gradient step is drawn from this inclusive range
            of step indices in ``[0, num_inference_steps)``. Default: (30, 39)
        reward_target (float | None): ``loss = relu(target − r)``; None uses ``−r``.
            Default: 2.0
        loss_scale (float): multiplies the loss. Default: 1e-3
        grad_accumulation (int): micro-batches per optimizer step. Default: 1
    """

    mid_step_range: tuple[int, int] = (30, 39)
    reward_target: float | None = 2.0
    loss_scale: float = 1e-3
    grad_accumulation: int = 1

    def __post_init__(self) -> None:
        self._validate()
        lo, hi = self.mid_step_range
        if not 0 <= lo <= hi < self.num_inference_steps:
            raise ValueError(f"mid_step_range must lie in [0, {self.num_inference_steps}), "
                             f"got {self.mid_step_range}")  # fmt: skip
        if self.grad_accumulation < 1:
            raise ValueError(f"grad_accumulation must be >= 1, got {self.grad_accumulation}")


def refl_train(pipe: Any, prompts: Sequence[str], reward_fn: RewardFn, config: ReFLConfig
               ) -> list[dict[str, float]]:  # fmt: skip
    """Reward feedback learning on the UNet's LoRA (added if missing).

    Returns:
        list[dict[str, float]]: per optimizer step, ``loss`` and ``reward`` (batch mean).
    """
    prompts = _check_prompts(prompts)
    _params, optimizer, rng, generator = _setup(pipe, config)
    uncond_all = encode_prompts(pipe, [""]).detach()
    history = []
    for _ in range(config.steps):
        optimizer.zero_grad(set_to_none=True)
        losses, rewards = [], []
        for _ in range(config.grad_accumulation):
            batch = [rng.choice(prompts) for _ in range(config.batch_size)]
            with torch.no_grad():
                cond = encode_prompts(pipe, batch)
            uncond = uncond_all.expand(len(batch), -1, -1)
            pipe.scheduler.set_timesteps(config.num_inference_steps)
            latents = torch.randn(_latent_shape(pipe, len(batch), config.height, config.width),
                                  generator=generator) * pipe.scheduler.init_noise_sigma  # fmt: skip
            latents = latents.to(pipe.unet.device)
            mid = rng.randint(*config.mid_step_range)
            timesteps = pipe.scheduler.timesteps
            with torch.no_grad():
                for t in timesteps[:mid]:
                    eps = _noise_prediction(pipe, latents, t, cond, uncond, config.guidance_scale)
                    latents = pipe.scheduler.step(eps, t, latents).prev_sample
            eps = _noise_prediction(pipe, latents, timesteps[mid], cond, uncond,
                                    config.guidance_scale)  # fmt: skip
            x0 = pipe.scheduler.step(eps, timesteps[mid], latents).pred_original_sample
            reward = reward_fn(decode_latents(pipe, x0), batch)
            gap = -reward if config.reward_target is None else F.relu(config.reward_target - reward)
            loss = gap.mean() * config.loss_scale / config.grad_accumulation
            loss.backward()
            losses.append(loss.item() * config.grad_accumulation)
            rewards.append(reward.detach().mean().item())
        optimizer.step()
        history.append({"loss": sum(losses) / len(losses), "reward": sum(rewards) / len(rewards)})
    return history


# -- DDPO ------------------------------------------------------------------------------------


def ddim_step_with_logprob(
    scheduler: Any,
    model_output: torch.Tensor,
    timestep: Any,
    sample: torch.Tensor,
    *,
    eta: float = 1.0,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step (ε-prediction) and the log-density of its result.

    The DDIM posterior is Gaussian with mean ``√ᾱ_prev·x̂0 + √(1 − ᾱ_prev − σ²)·ε`` and
    standard deviation ``σ = η·√((1 − ᾱ_prev)/(1 − ᾱ_t)·(1 − ᾱ_t/ᾱ_prev))``. When
    ``prev_sample`` is None it is drawn (with ``generator``); the log-probability is the
    Gaussian log-density **averaged over all non-batch dimensions** (as DDPO does, which keeps
    its scale independent of the image size).

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``prev_sample`` and ``log_prob`` of shape ``(B,)``.

    Raises:
        ValueError: if ``eta`` <= 0 (the step is then deterministic: no density).
    """
    if not eta > 0:
        raise ValueError(f"eta must be > 0 for a log-probability, got {eta}")
    t = int(timestep)
    prev_t = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    alphas = scheduler.alphas_cumprod.to(sample.device, torch.float32)
    a_t = alphas[t]
    a_prev = alphas[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod.to(sample.device)
    x0 = (sample - (1 - a_t).sqrt() * model_output) / a_t.sqrt()
    if scheduler.config.clip_sample:
        x0 = x0.clamp(-scheduler.config.clip_sample_range, scheduler.config.clip_sample_range)
    variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    std = eta * variance.sqrt()
    mean = a_prev.sqrt() * x0 + (1 - a_prev - std**2).clamp(min=0).sqrt() * model_output
    if prev_sample is None:
        noise = torch.randn(sample.shape, generator=generator).to(sample.device, sample.dtype)
        prev_sample = mean + std * noise
    log_prob = (-((prev_sample.detach() - mean) ** 2) / (2 * std**2) - torch.log(std)
                - 0.5 * math.log(2 * math.pi))  # fmt: skip
    return prev_sample, log_prob.mean(dim=tuple(range(1, log_prob.dim())))


def ppo_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
             clip_range: float = 1e-4) -> torch.Tensor:  # fmt: skip
    """PPO's clipped surrogate: ``mean(max(−A·ρ, −A·clip(ρ, 1 − c, 1 + c)))``, ``ρ = e^(lp − lp_old)``.

    Raises:
        ValueError: on mismatched shapes or ``clip_range`` <= 0.
    """
    if not log_prob.shape == old_log_prob.shape == advantages.shape:
        raise ValueError("log_prob, old_log_prob and advantages must have the same shape")
    if not clip_range > 0:
        raise ValueError(f"clip_range must be > 0, got {clip_range}")
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    return torch.maximum(unclipped, clipped).mean()


@dataclass
class DDPOConfig(_Common):
    """DDPO settings (paper defaults where they exist: η = 1, clip 1e-4, lr 3e-4 with LoRA).

    Args:
        eta (float): DDIM stochasticity. Default: 1.0
        clip_range (float): PPO clip. Default: 1e-4
        inner_epochs (int): PPO passes over each sampled batch. Default: 1
        adv_clip (float): advantages are clipped to ±this. Default: 5.0
    """

    eta: float = 1.0
    clip_range: float = 1e-4
    inner_epochs: int = 1
    adv_clip: float = 5.0

    def __post_init__(self) -> None:
        self._validate()
        if not self.eta > 0 or not self.clip_range > 0 or self.inner_epochs < 1:
            raise ValueError("eta and clip_range must be > 0 and inner_epochs >= 1")


def ddpo_train(pipe: Any, prompts: Sequence[str], reward_fn: RewardFn, config: DDPOConfig
               ) -> list[dict[str, float]]:  # fmt: skip
    """DDPO (PPO over the denoising chain) on the UNet's LoRA (added if missing).

    Returns:
        list[dict[str, float]]: per sampling round, ``reward`` (mean) and ``loss``.
    """
    prompts = _check_prompts(prompts)
    params, optimizer, rng, generator = _setup(pipe, config)
    uncond_all = encode_prompts(pipe, [""]).detach()
    history = []
    for _ in range(config.steps):
        batch = [rng.choice(prompts) for _ in range(config.batch_size)]
        with torch.no_grad():
            cond = encode_prompts(pipe, batch)
            uncond = uncond_all.expand(len(batch), -1, -1)
            pipe.scheduler.set_timesteps(config.num_inference_steps)
            latents = torch.randn(_latent_shape(pipe, len(batch), config.height, config.width),
                                  generator=generator).to(pipe.unet.device)  # fmt: skip
            trajectory, old_log_probs = [latents], []
            for t in pipe.scheduler.timesteps:
                eps = _noise_prediction(pipe, latents, t, cond, uncond, config.guidance_scale)
                latents, log_prob = ddim_step_with_logprob(pipe.scheduler, eps, t, latents,
                                                           eta=config.eta, generator=generator)  # fmt: skip
                trajectory.append(latents)
                old_log_probs.append(log_prob)
            rewards = reward_fn(decode_latents(pipe, latents), batch).float()
            advantages = ((rewards - rewards.mean()) / (rewards.std(unbiased=False) + 1e-8)).clamp(
                -config.adv_clip, config.adv_clip)  # fmt: skip
        losses = []
        steps = len(pipe.scheduler.timesteps)
        for _ in range(config.inner_epochs):
            # DDPO accumulates the per-timestep losses and steps once per batch (clip 1.0)
            optimizer.zero_grad(set_to_none=True)
            for i, t in enumerate(pipe.scheduler.timesteps):
                eps = _noise_prediction(pipe, trajectory[i], t, cond, uncond, config.guidance_scale)
                _, log_prob = ddim_step_with_logprob(pipe.scheduler, eps, t, trajectory[i],
                                                     eta=config.eta, prev_sample=trajectory[i + 1])  # fmt: skip
                loss = ppo_loss(log_prob, old_log_probs[i], advantages, config.clip_range)
                (loss / steps).backward()
                losses.append(loss.item())
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
        history.append({"reward": rewards.mean().item(), "loss": sum(losses) / len(losses)})
    return history


# -- Diffusion-DPO ---------------------------------------------------------------------------


def diffusion_dpo_loss(
    model_pred_w: torch.Tensor,
    model_pred_l: torch.Tensor,
    ref_pred_w: torch.Tensor,
    ref_pred_l: torch.Tensor,
    noise: torch.Tensor,
    beta: float = 5000.0,
) -> torch.Tensor:
    """``−log σ(−β/2 · ((e_w − e_l) − (e_w^ref − e_l^ref)))`` averaged over the batch.

    ``e`` is each sample's noise-prediction MSE (w: chosen, l: rejected), with the same
    ``noise`` for both. β = 5000 is the SD-1.5 setting of the Diffusion-DPO paper.
    """
    shapes = {tuple(x.shape) for x in (model_pred_w, model_pred_l, ref_pred_w, ref_pred_l, noise)}
    if len(shapes) != 1:
        raise ValueError(f"all predictions and the noise must share one shape, got {shapes}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")

    def mse(pred: torch.Tensor) -> torch.Tensor:
        return ((pred.float() - noise.float()) ** 2).mean(dim=tuple(range(1, pred.dim())))

    model_diff = mse(model_pred_w) - mse(model_pred_l)
    ref_diff = mse(ref_pred_w) - mse(ref_pred_l)
    return -F.logsigmoid(-0.5 * beta * (model_diff - ref_diff)).mean()


@dataclass
class DPOConfig(_Common):
    """Diffusion-DPO settings.

    Args:
        beta (float): the KL weight β. Default: 5000.0
    """

    beta: float = 5000.0

    def __post_init__(self) -> None:
        self._validate()
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")


def _encode_images(pipe: Any, images: Sequence[Any], height: int, width: int) -> torch.Tensor:
    import numpy as np

    from papercraft.visionprefer.records import load_image

    arrays = [np.asarray(load_image(im).resize((width, height)), dtype=np.float32) / 127.5 - 1
              for im in images]  # fmt: skip
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(pipe.vae.device)
    latents = pipe.vae.encode(pixels).latent_dist.mean
    return latents * pipe.vae.config.scaling_factor


def dpo_batch_loss(pipe: Any, pairs: Sequence[Any], *, beta: float, height: int, width: int,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The Diffusion-DPO loss of one batch of pairs (shared noise and timestep per pair).

    Returns:
        tuple[torch.Tensor, torch.Tensor]: the loss (with gradients to the LoRA) and, per pair,
        whether the model lowered the chosen image's error more than the rejected one's
        relative to the reference.
    """
    scheduler = pipe.scheduler
    with torch.no_grad():
        cond = encode_prompts(pipe, [p.prompt for p in pairs])
        latents_w = _encode_images(pipe, [p.chosen for p in pairs], height, width)
        latents_l = _encode_images(pipe, [p.rejected for p in pairs], height, width)
    noise = torch.randn(latents_w.shape, generator=generator).to(latents_w.device)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(pairs),),
                      generator=generator).to(latents_w.device)  # fmt: skip
    noisy = torch.cat([scheduler.add_noise(latents_w, noise, t),
                       scheduler.add_noise(latents_l, noise, t)])  # fmt: skip
    t2, cond2 = torch.cat([t, t]), torch.cat([cond, cond])
    with torch.no_grad():
        pipe.unet.disable_adapters()
        try:
            ref_w, ref_l = pipe.unet(noisy, t2, encoder_hidden_states=cond2).sample.chunk(2)
        finally:
            pipe.unet.enable_adapters()
    model_w, model_l = pipe.unet(noisy, t2, encoder_hidden_states=cond2).sample.chunk(2)
    loss = diffusion_dpo_loss(model_w, model_l, ref_w, ref_l, noise, beta)
    with torch.no_grad():
        err = {k: ((v - noise) ** 2).mean(dim=(1, 2, 3))
               for k, v in {"w": model_w, "l": model_l, "rw": ref_w, "rl": ref_l}.items()}  # fmt: skip
        better = (err["w"] - err["rw"]) < (err["l"] - err["rl"])
    return loss, better


def dpo_train(pipe: Any, pairs: Sequence[Any], config: DPOConfig) -> list[dict[str, float]]:
    """Diffusion-DPO on preference pairs (objects with ``prompt``, ``chosen``, ``rejected``).

    The reference model is the same UNet with its LoRA disabled.

    Returns:
        list[dict[str, float]]: per step, ``loss`` and ``implicit_accuracy`` (share of pairs
        where the model improved the chosen image's error more than the rejected one's).
    """
    if not pairs:
        raise ValueError("pairs must not be empty")
    for i, pair in enumerate(pairs):
        if not all(hasattr(pair, a) for a in ("prompt", "chosen", "rejected")):
            raise ValueError(f"pairs[{i}] needs prompt, chosen and rejected")
    _params, optimizer, rng, generator = _setup(pipe, config)
    history = []
    for _ in range(config.steps):
        batch = [pairs[rng.randrange(len(pairs))] for _ in range(config.batch_size)]
        loss, better = dpo_batch_loss(pipe, batch, beta=config.beta, height=config.height,
                                      width=config.width, generator=generator)  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append({"loss": loss.item(), "implicit_accuracy": better.float().mean().item()})
    return history
