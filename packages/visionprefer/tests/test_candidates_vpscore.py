"""Candidate generation with a tiny diffusers pipeline; VP-Score (tiny BLIP) end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from papercraft.core.io import CheckpointError
from papercraft.core.testing import tiny_wordpiece_tokenizer
from papercraft.visionprefer.candidates import generate_candidates
from papercraft.visionprefer.records import load_records, save_records
from papercraft.visionprefer.shapes import COLOURS, SHAPES, draw_shape, matches, shape_pairs
from papercraft.visionprefer.testing import tiny_blip_config, tiny_stable_diffusion_pipeline
from papercraft.visionprefer.vpscore import (
    VPScore,
    VPScoreConfig,
    evaluate_preferences,
    pairwise_loss,
    train_vpscore,
)


def test_candidates_record_seeds_reproduce_and_resume(tmp_path: Path) -> None:
    pipes = {"tiny-a": tiny_stable_diffusion_pipeline(seed=0),
             "tiny-b": tiny_stable_diffusion_pipeline(seed=1)}  # fmt: skip
    kwargs = {"num_inference_steps": 2, "height": 16, "width": 16}
    records = generate_candidates(pipes, ["a red circle", "a blue square"], tmp_path, **kwargs)
    assert [len(r.images) for r in records] == [2, 2]
    image = records[0].images[1]
    assert image.generator == "tiny-b"
    assert isinstance(image.seed, int)
    first = np.asarray(Image.open(tmp_path / image.path))
    assert first.shape == (16, 16, 3)
    save_records(tmp_path / "records.jsonl", records)
    assert load_records(tmp_path / "records.jsonl") == records
    # regenerate from the recorded seed: the same pixels
    again = pipes["tiny-b"](prompt="a red circle", num_inference_steps=2, height=16, width=16,
                            generator=torch.Generator().manual_seed(image.seed),
                            output_type="pil").images[0]  # fmt: skip
    assert np.array_equal(np.asarray(again), first)
    # resume: existing files are kept (not regenerated)
    stamp = (tmp_path / image.path).stat().st_mtime_ns
    assert (
        generate_candidates(pipes, ["a red circle", "a blue square"], tmp_path, **kwargs) == records
    )
    assert (tmp_path / image.path).stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="prompts"):
        generate_candidates(pipes, ["ok", " "], tmp_path)
    with pytest.raises(ValueError, match="generator name"):
        generate_candidates({"bad name": pipes["tiny-a"]}, ["x"], tmp_path)


def test_shapes_ground_truth() -> None:
    pairs = shape_pairs(30, seed=3)
    assert all(matches(p.prompt, *p.prompt.split()[1:]) for p in pairs)
    assert not any(matches(p.prompt, p.rejected_colour, p.rejected_shape) for p in pairs)
    assert np.array_equal(np.asarray(pairs[0].chosen), np.asarray(shape_pairs(1, seed=3)[0].chosen))
    assert draw_shape("red", "circle").size == (32, 32)
    assert set(COLOURS)
    assert set(SHAPES)
    with pytest.raises(ValueError, match="colour"):
        draw_shape("pink", "circle")


def _model(**config: object) -> VPScore:
    torch.manual_seed(0)
    return VPScore(
        VPScoreConfig(blip=tiny_blip_config().to_dict(), **config),  # type: ignore[arg-type]
        tiny_wordpiece_tokenizer(512),
    )


def test_pairwise_loss_is_the_two_way_cross_entropy() -> None:
    chosen, rejected = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 1.0, 0.5])
    ce = torch.nn.functional.cross_entropy(torch.stack([chosen, rejected], 1),
                                           torch.zeros(3, dtype=torch.long))  # fmt: skip
    assert torch.allclose(pairwise_loss(chosen, rejected), ce)
    by_hand = sum(-np.log(1 / (1 + np.exp(-(c - r)))) for c, r in [(2, 1), (-1, 1), (0.5, 0.5)]) / 3
    assert pairwise_loss(chosen, rejected).item() == pytest.approx(by_hand, rel=1e-6)


def test_head_init_freezing_and_normalisation() -> None:
    model = _model(aspects=("aesthetic", "fidelity"))
    head = model.heads["aesthetic"]
    linears = [m for m in head if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [1024, 128, 64, 16, 1]
    assert [m.p for m in head if isinstance(m, torch.nn.Dropout)] == [0.2, 0.2, 0.1]
    assert linears[0].weight.std().item() == pytest.approx(1 / 33, rel=0.05)  # N(0, 1/(h+1))
    frozen = model.freeze()
    assert frozen == {"text": 1, "vision": 1}  # int(2 * 0.7)
    assert not any(p.requires_grad for p in model.text_encoder.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in model.text_encoder.encoder.layer[1].parameters())
    assert not any(p.requires_grad for p in model.vision_model.embeddings.parameters())
    pairs = shape_pairs(4, seed=0)
    prompts, images = [p.prompt for p in pairs], [p.chosen for p in pairs]
    model.config.mean, model.config.std = 0.0, 1.0
    raw = model.score(prompts, images, aspect="aesthetic")
    model.config.mean, model.config.std = 0.5, 2.0
    assert model.score(prompts, images, aspect="aesthetic") == pytest.approx(
        [(r - 0.5) / 2.0 for r in raw], rel=1e-5
    )
    assert model.score(prompts, images, aspect="fidelity") != model.score(
        prompts, images, aspect="aesthetic"
    )
    with pytest.raises(ValueError, match="aspect"):
        model.score(prompts, images, aspect="harmlessness")


def test_batched_score_equals_single_and_score_pixels_is_differentiable(tmp_path: Path) -> None:
    model = _model().eval()  # score() switches to eval itself; score_pixels uses the mode as is
    pairs = shape_pairs(5, seed=1)
    prompts = [p.prompt for p in pairs]
    images = [p.chosen for p in pairs]
    batched = model.score(prompts, images, batch_size=5)
    single = [model.score([p], [i])[0] for p, i in zip(prompts, images, strict=True)]
    assert batched == pytest.approx(single, abs=1e-5)
    images[0].save(tmp_path / "0.png")
    assert model.score([prompts[0]], [tmp_path / "0.png"])[0] == pytest.approx(batched[0], abs=1e-5)
    pixels = torch.stack([torch.from_numpy(np.asarray(i, dtype=np.float32) / 255).permute(2, 0, 1)
                          for i in images]).requires_grad_(True)  # fmt: skip
    rewards = model.score_pixels(pixels, prompts)
    assert rewards.detach().tolist() == pytest.approx(batched, abs=1e-5)
    rewards.sum().backward()
    assert pixels.grad is not None
    assert pixels.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.score_pixels(pixels.detach() * 255, prompts)
    with pytest.raises(ValueError, match="prompts"):
        model.score_pixels(pixels.detach(), prompts[:2])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model.score_pixels(pixels.detach()[0], prompts)


def test_save_load_round_trip_and_version_check(tmp_path: Path) -> None:
    model = _model(aspects=("aesthetic",))
    pairs = shape_pairs(3, seed=2)
    prompts, images = [p.prompt for p in pairs], [p.rejected for p in pairs]
    model.save_pretrained(tmp_path / "vp")
    loaded = VPScore.from_pretrained(tmp_path / "vp")
    assert loaded.score(prompts, images, aspect="aesthetic") == model.score(
        prompts, images, aspect="aesthetic"
    )
    manifest = tmp_path / "vp" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"format_version": 1', '"format_version": 9'))
    with pytest.raises(CheckpointError):
        VPScore.from_pretrained(tmp_path / "vp")


def test_tiny_vpscore_learns_synthetic_preferences(tmp_path: Path) -> None:
    model = _model(freeze_fraction=0.0)
    held_out = shape_pairs(200, seed=1)
    history = train_vpscore(model, shape_pairs(1500, seed=0), output_dir=tmp_path / "vp",
                            epochs=12, learning_rate=2e-3, batch_size=16, logging_steps=50)  # fmt: skip
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses[-1] < losses[0] - 0.2
    result = evaluate_preferences(model, held_out)
    assert result["n"] == 200
    assert result["accuracy"] >= 0.8, result  # 87.5% measured (seed 0); chance is 50%
    reloaded = VPScore.from_pretrained(tmp_path / "vp")
    assert evaluate_preferences(reloaded, held_out)["accuracy"] == result["accuracy"]


def test_training_checks_pairs_first(tmp_path: Path) -> None:
    model = _model(aspects=("aesthetic",))
    with pytest.raises(ValueError, match="must not be empty"):
        train_vpscore(model, [], output_dir=tmp_path / "x")
    with pytest.raises(ValueError, match="aspect"):
        train_vpscore(model, shape_pairs(2), output_dir=tmp_path / "x")  # prompt_following
