"""ReFL, DDPO and Diffusion-DPO on a tiny Stable Diffusion pipeline built from configs."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from papercraft.visionprefer.alignment import (
    DDPOConfig,
    DPOConfig,
    ReFLConfig,
    add_unet_lora,
    ddim_step_with_logprob,
    ddpo_train,
    diffusion_dpo_loss,
    dpo_batch_loss,
    dpo_train,
    load_unet_lora,
    ppo_loss,
    refl_train,
    save_unet_lora,
)
from papercraft.visionprefer.testing import tiny_stable_diffusion_pipeline

SMALL = {"height": 16, "width": 16, "num_inference_steps": 4, "guidance_scale": 1.0}


def redness(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    return images[:, 0].mean((1, 2)) - images[:, 1:].mean((1, 2, 3))


def test_refl_gradient_reaches_only_the_lora() -> None:
    pipe = tiny_stable_diffusion_pipeline(seed=0)
    params = add_unet_lora(pipe.unet, rank=4)
    config = ReFLConfig(steps=1, mid_step_range=(2, 3), learning_rate=1e-3, reward_target=None,
                        **SMALL)  # fmt: skip
    refl_train(pipe, ["a red circle"], redness, config)
    assert all(p.grad is not None for p in params)
    assert sum(p.grad.abs().sum().item() for p in params if p.grad is not None) > 0
    base = [p for n, p in pipe.unet.named_parameters() if "lora_" not in n]
    assert base
    assert not any(p.requires_grad or p.grad is not None for p in base)


def _redness_of_samples(pipe: object) -> float:
    images = pipe(
        ["a red circle"] * 4,
        num_inference_steps=4,
        guidance_scale=1.0,
        height=16,  # type: ignore[operator]
        width=16,
        output_type="pt",
        generator=torch.Generator().manual_seed(123),
    ).images
    return redness(images, []).mean().item()  # type: ignore[no-any-return]


def test_refl_raises_a_toy_reward() -> None:
    pipe = tiny_stable_diffusion_pipeline(seed=0)
    before = _redness_of_samples(pipe)  # the same 4 seeds before and after
    config = ReFLConfig(steps=20, mid_step_range=(3, 3), learning_rate=3e-2, reward_target=None,
                        loss_scale=1.0, lora_rank=8, **SMALL)  # fmt: skip
    refl_train(pipe, ["a red circle"], redness, config)
    after = _redness_of_samples(pipe)
    assert after > before + 0.005, (before, after)  # measured 0.0486 -> 0.0601


def test_ddim_step_matches_diffusers_and_a_hand_computed_density() -> None:
    pipe = tiny_stable_diffusion_pipeline(seed=0)
    scheduler = pipe.scheduler
    scheduler.set_timesteps(4)
    t = scheduler.timesteps[1]
    gen = torch.Generator().manual_seed(0)
    sample, eps, noise = (torch.randn(2, 4, 8, 8, generator=gen) for _ in range(3))
    reference = scheduler.step(eps, t, sample, eta=0.7, variance_noise=noise).prev_sample
    a_t = scheduler.alphas_cumprod[int(t)]
    a_prev = scheduler.alphas_cumprod[int(t) - 1000 // 4]
    std = 0.7 * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    x0 = (sample - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    mean = a_prev.sqrt() * x0 + (1 - a_prev - std**2).sqrt() * eps
    prev, log_prob = ddim_step_with_logprob(scheduler, eps, t, sample, eta=0.7,
                                            prev_sample=mean + std * noise)  # fmt: skip
    assert torch.allclose(prev, reference, atol=1e-5)
    by_hand = (-(noise**2) / 2 - math.log(std) - 0.5 * math.log(2 * math.pi)).mean((1, 2, 3))
    assert torch.allclose(log_prob, by_hand, atol=1e-4)
    with pytest.raises(ValueError, match="eta"):
        ddim_step_with_logprob(scheduler, eps, t, sample, eta=0.0)


def test_ppo_loss_ratio_one_and_clipping_by_hand() -> None:
    lp = torch.tensor([-1.0, -2.0, -0.5])
    adv = torch.tensor([1.0, -0.5, 2.0])
    assert ppo_loss(lp, lp.clone(), adv).item() == pytest.approx(-adv.mean().item())
    # ratio e^0.5 ≈ 1.65 for a positive advantage: clipped at 1.2; for a negative one: unclipped
    new = torch.tensor([0.5, 0.5])
    got = ppo_loss(new, torch.zeros(2), torch.tensor([1.0, -1.0]), clip_range=0.2).item()
    assert got == pytest.approx((-1.2 + math.exp(0.5)) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="shape"):
        ppo_loss(lp, lp[:2], adv)


def test_ddpo_runs_and_records_rewards() -> None:
    pipe = tiny_stable_diffusion_pipeline(seed=0)
    history = ddpo_train(pipe, ["a red circle", "a blue square"], redness,
                         DDPOConfig(steps=2, learning_rate=1e-3, **SMALL))  # fmt: skip
    assert len(history) == 2
    assert all(math.isfinite(h["loss"]) for h in history)


def test_dpo_loss_is_log2_at_the_reference_and_its_gradient_lowers_it() -> None:
    x = torch.randn(3, 4, 2, 2)
    noise = torch.randn(3, 4, 2, 2)
    assert diffusion_dpo_loss(x, x * 2, x, x * 2, noise).item() == pytest.approx(math.log(2))
    assert diffusion_dpo_loss(x, x * 2, x * 2, x, noise).item() < math.log(2)  # model prefers w
    pipe = tiny_stable_diffusion_pipeline(seed=0)
    red, blue = Image.new("RGB", (16, 16), (230, 30, 30)), Image.new("RGB", (16, 16), (30, 30, 230))
    pairs = [SimpleNamespace(prompt="a red square", chosen=red, rejected=blue)] * 4
    history = dpo_train(pipe, pairs, DPOConfig(steps=3, learning_rate=1e-3, beta=500.0, **SMALL))
    assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # fresh LoRA = reference
    # descending the loss of one fixed batch (same noise and timesteps) lowers it
    params = [p for n, p in pipe.unet.named_parameters() if "lora_" in n]
    optimizer = torch.optim.SGD(params, lr=1e-3)
    losses = []
    for _ in range(5):
        loss, _ = dpo_batch_loss(pipe, pairs, beta=500.0, height=16, width=16,
                                 generator=torch.Generator().manual_seed(7))  # fmt: skip
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


def test_lora_round_trip_and_argument_checks(tmp_path: Path) -> None:
    pipe = tiny_stable_diffusion_pipeline(seed=0)
    params = add_unet_lora(pipe.unet, rank=2)
    with torch.no_grad():
        for p in params:
            p.normal_()
    save_unet_lora(pipe.unet, tmp_path / "lora")
    other = tiny_stable_diffusion_pipeline(seed=0)
    add_unet_lora(other.unet, rank=2)
    load_unet_lora(other.unet, tmp_path / "lora")
    x, t, cond = torch.randn(1, 4, 8, 8), torch.tensor([10]), torch.randn(1, 5, 32)
    with torch.no_grad():
        assert torch.equal(pipe.unet(x, t, encoder_hidden_states=cond).sample,
                           other.unet(x, t, encoder_hidden_states=cond).sample)  # fmt: skip
    with pytest.raises(ValueError, match="mid_step_range"):
        ReFLConfig(num_inference_steps=4, mid_step_range=(2, 4))
    with pytest.raises(ValueError, match="learning_rate"):
        DDPOConfig(learning_rate=0)
    with pytest.raises(ValueError, match="prompts"):
        refl_train(pipe, [], redness, ReFLConfig(mid_step_range=(1, 2), **SMALL))
    with pytest.raises(ValueError, match="rank"):
        add_unet_lora(pipe.unet, rank=0)
