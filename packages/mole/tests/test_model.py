"""Tests of MoleModel, its gates, baselines, trainer and checkpoints on tiny models."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import NAMES, SEQ
from peft import LoraConfig, PeftModel
from transformers import LlamaForCausalLM, TrainingArguments

from papercraft.mole import MoleConfig, MoleModel, MoleTrainer, cat_merge, group_key, sum_merge
from papercraft.mole.gates import MoleGate, balance_loss


def _mole(base: LlamaForCausalLM, adapters: dict[str, str], **kw: object) -> MoleModel:
    settings: dict[str, object] = {"seq_len": SEQ, **kw}
    return MoleModel.from_adapters(copy.deepcopy(base), MoleConfig(adapters=adapters, **settings))  # type: ignore[arg-type]


def _ids(batch: int = 3, length: int = SEQ, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 64, (batch, length), generator=torch.Generator().manual_seed(seed))


def _randomise_gates(mole: MoleModel, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for gate in mole.gates.values():
            assert isinstance(gate, MoleGate)
            gate.weight.copy_(torch.randn(gate.weight.shape, generator=gen) * 3)


@torch.no_grad()
def test_one_hot_gates_reproduce_each_single_adapter(base, adapters) -> None:  # type: ignore[no-untyped-def]
    mole = _mole(base, adapters)
    ids = _ids()
    for i, name in enumerate(NAMES):
        mole.set_fixed_gates([float(j == i) for j in range(3)])
        single = PeftModel.from_pretrained(copy.deepcopy(base), adapters[name])
        torch.testing.assert_close(mole(input_ids=ids).logits, single(input_ids=ids).logits,
                                   atol=1e-6, rtol=1e-5)  # fmt: skip


@torch.no_grad()
def test_uniform_gates_reproduce_the_cat_merge(base, adapters) -> None:  # type: ignore[no-untyped-def]
    ids = _ids()
    merged = cat_merge(copy.deepcopy(base), adapters)  # w = 1/N
    expected = merged(input_ids=ids).logits
    mole = _mole(base, adapters)
    mole.set_fixed_gates([1 / 3] * 3)
    torch.testing.assert_close(mole(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-4)
    mole.set_fixed_gates(None)  # zero-initialised learned gates are uniform too
    torch.testing.assert_close(mole(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-4)
    summed = sum_merge(copy.deepcopy(base), adapters)(input_ids=ids).logits
    mole.set_fixed_gates([1.0] * 3)
    torch.testing.assert_close(mole(input_ids=ids).logits, summed, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(summed, expected, atol=1e-3)


@torch.no_grad()
def test_mask_renormalises_the_softmax(base, adapters) -> None:  # type: ignore[no-untyped-def]
    mole = _mole(base, adapters)
    _randomise_gates(mole)
    ids = _ids()
    mole(input_ids=ids)
    full = mole.gate_weights()
    assert all(float(w.min()) > 0 for w in full.values())
    mole.set_mask(["a", "c"])
    mole(input_ids=ids)
    per_sample = dict(mole._pass_gates)
    mole.set_mask(None)
    mole(input_ids=ids)
    for masked in per_sample.values():
        assert bool((masked[:, 1] == 0).all())
        torch.testing.assert_close(masked.sum(-1), torch.ones(3))
    # the first unit's gate input does not depend on the mixing before it: compare exactly
    first = mole.units[0]
    kept = mole._pass_gates[first][:, [0, 2]]
    torch.testing.assert_close(per_sample[first][:, [0, 2]], kept / kept.sum(-1, keepdim=True))
    with pytest.raises(ValueError, match="subset"):
        mole.set_mask(["z"])
    with pytest.raises(ValueError, match="subset"):
        mole.set_mask([])


def test_balance_loss_minimal_at_uniform_with_gradient() -> None:
    uniform = [torch.full((4, 3), 1 / 3)]
    assert float(balance_loss(uniform)) == pytest.approx(3 * math.log(3))
    logits = torch.randn(4, 3, requires_grad=True)
    loss = balance_loss([logits.softmax(-1), (2 * logits).softmax(-1)])
    assert float(loss) > 3 * math.log(3)
    loss.backward()
    assert logits.grad is not None
    assert float(logits.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="forward"):
        balance_loss([])


def test_gate_training_changes_only_the_gates(base, adapters, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mole = _mole(base, adapters)
    frozen = {n: hashlib.sha256(p.detach().numpy().tobytes()).hexdigest()
              for n, p in mole.model.named_parameters()}  # fmt: skip
    ids = _ids(batch=16, seed=3)
    rows = [{"input_ids": r, "labels": r} for r in ids]
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=6,
                             per_device_train_batch_size=4, learning_rate=0.5, use_cpu=True,
                             report_to=[], save_strategy="no", disable_tqdm=True,
                             logging_steps=1)  # fmt: skip
    trainer = MoleTrainer(mole, args=args, train_dataset=rows)
    trainer.train()
    after = {n: hashlib.sha256(p.detach().numpy().tobytes()).hexdigest()
             for n, p in mole.model.named_parameters()}  # fmt: skip
    assert after == frozen  # base and every LoRA bit-identical
    assert any(float(g.weight.abs().sum()) > 0 for g in mole.gates.values())  # type: ignore[union-attr]
    assert len(trainer.balance_history) == 6
    assert all(b >= 3 * math.log(3) - 1e-4 for b in trainer.balance_history)


def test_trainer_refuses_trainable_non_gate_parameters(base, adapters, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mole = _mole(base, adapters)
    next(mole.model.parameters()).requires_grad_(True)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    with pytest.raises(ValueError, match="only gate parameters"):
        MoleTrainer(mole, args=args, train_dataset=[])
    with pytest.raises(TypeError, match="MoleModel"):
        MoleTrainer(base, args=args)  # type: ignore[arg-type]


@torch.no_grad()
def test_save_load_round_trip_and_refusals(base, adapters, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mole = _mole(base, adapters, granularity="matrix", gate_input="hidden")
    _randomise_gates(mole, seed=4)
    ids = _ids()
    expected = mole(input_ids=ids).logits
    path = mole.save_pretrained(tmp_path / "mole")
    assert sorted(p.name for p in path.iterdir()) == ["gates.safetensors", "manifest.json"]
    restored = MoleModel.from_pretrained(copy.deepcopy(base), path)
    assert restored.config.granularity == "matrix"
    torch.testing.assert_close(restored(input_ids=ids).logits, expected)
    # the same adapters moved elsewhere are accepted; another set or other weights are not
    restored = MoleModel.from_pretrained(copy.deepcopy(base), path, adapters=adapters)
    with pytest.raises(ValueError, match="saved set"):
        MoleModel.from_pretrained(copy.deepcopy(base), path, adapters={"a": adapters["a"]})
    swapped = {"a": adapters["b"], "b": adapters["a"], "c": adapters["c"]}
    with pytest.raises(ValueError, match=r"other weights for the adapters \['a', 'b'\]"):
        MoleModel.from_pretrained(copy.deepcopy(base), path, adapters=swapped)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="version"):
        MoleModel.from_pretrained(copy.deepcopy(base), path)


def test_granularity_units(base, adapters) -> None:  # type: ignore[no-untyped-def]
    counts = {g: len(_mole(base, adapters, granularity=g).units)
              for g in ("matrix", "layer", "block", "network")}  # fmt: skip
    assert counts == {"matrix": 4, "layer": 2, "block": 2, "network": 1}
    assert len(_mole(base, adapters, granularity="block", layers_per_block=2).units) == 1
    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
    assert group_key(name, "layer") == "down_blocks.1.attentions.0.transformer_blocks.0"
    assert group_key(name, "block") == "down_blocks.1"
    assert (
        group_key("model.layers.5.self_attn.q_proj", "block", layers_per_block=2)
        == "model.layers.2"
    )
    assert group_key(name, "network") == "network"


def test_pooling_modes_and_lengths(base, adapters) -> None:  # type: ignore[no-untyped-def]
    mole = _mole(base, adapters)
    with pytest.raises(ValueError, match="seq_len=8"):
        mole(input_ids=_ids(length=5))
    pooled = _mole(base, adapters, pooling="mean", seq_len=None)
    _randomise_gates(pooled, seed=2)
    ids = _ids(batch=2, length=6)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    pooled(input_ids=ids, attention_mask=mask)
    padded_gate = next(iter(pooled._pass_gates.values()))[1]
    pooled(input_ids=ids[1:, :4], attention_mask=mask[1:, :4])
    torch.testing.assert_close(next(iter(pooled._pass_gates.values()))[0], padded_gate)
    out = pooled.generate(input_ids=ids[:1, :3], max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 6)


def test_config_and_model_errors(base, adapters) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="at least two"):
        MoleConfig(adapters={"a": adapters["a"]}, seq_len=4)
    with pytest.raises(ValueError, match="seq_len"):
        MoleConfig(adapters=adapters)
    with pytest.raises(ValueError, match="granularity"):
        MoleConfig(adapters=adapters, seq_len=4, granularity="row")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperature_init"):
        MoleConfig(adapters=adapters, seq_len=4, temperature_init=0.0)
    with pytest.raises(FileNotFoundError, match=r"adapter_config\.json"):
        MoleModel.from_adapters(
            copy.deepcopy(base), MoleConfig(adapters={"a": "/nope", "b": "/no"}, seq_len=4)
        )
    with pytest.raises(ValueError, match="no peft LoRA layers"):
        MoleModel(copy.deepcopy(base), MoleConfig(adapters={"x": "", "y": ""}, seq_len=4))
    mole = _mole(base, adapters)
    with pytest.raises(ValueError, match="non-negative"):
        mole.set_fixed_gates([1.0, 0.0])
    restored = mole.unload()
    assert all(not m._disable_adapters for m in restored.modules() if hasattr(m, "lora_A"))


@torch.no_grad()
def test_tiny_diffusers_unet(tmp_path: Path) -> None:
    diffusers = pytest.importorskip("diffusers")
    from peft import inject_adapter_in_model

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
        attention_head_dim=8, norm_num_groups=8,
    ).eval()  # fmt: skip
    for i, name in enumerate(("s1", "s2")):
        torch.manual_seed(20 + i)
        lora = LoraConfig(
            r=4, lora_alpha=4, target_modules=["to_q", "to_v"], init_lora_weights=False
        )
        inject_adapter_in_model(lora, unet, adapter_name=name)
    sample = torch.randn(2, 4, 8, 8)
    text = torch.randn(2, 5, 16)
    mole = MoleModel(unet, MoleConfig(adapters={"s1": "", "s2": ""}, granularity="block",
                                      pooling="mean"))  # fmt: skip
    assert all(u.split(".")[0] in ("down_blocks", "up_blocks", "mid_block") for u in mole.units)
    _randomise_gates(mole, seed=1)
    out = mole(sample, 10, encoder_hidden_states=text).sample
    assert out.shape == sample.shape
    assert set(mole.gate_weights()) == set(mole.units)
    mole.set_fixed_gates([1.0, 0.0])
    only_s1 = mole(sample, 10, encoder_hidden_states=text).sample
    pytest.importorskip("matplotlib")
    png = mole.plot_gate_weights(tmp_path / "gates.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    mole.set_fixed_gates([0.0, 1.0])
    only_s2 = mole(sample, 10, encoder_hidden_states=text).sample
    assert not torch.allclose(only_s1, only_s2)


@torch.no_grad()
def test_load_adapters_into_a_plain_module(tmp_path: Path) -> None:
    """Non-transformers modules get the LoRAs injected from saved peft directories."""
    from peft import get_peft_model_state_dict, inject_adapter_in_model
    from safetensors.torch import save_file

    from papercraft.mole import load_adapters

    def net() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4))

    source = net()
    lora = LoraConfig(r=2, lora_alpha=2, target_modules=["0", "2"], init_lora_weights=False)
    for seed, name in enumerate(("p", "q")):
        torch.manual_seed(seed)
        inject_adapter_in_model(lora, source, adapter_name=name)
        lora.save_pretrained(str(tmp_path / name))
        save_file(get_peft_model_state_dict(source, adapter_name=name),
                  str(tmp_path / name / "adapter_model.safetensors"))  # fmt: skip
    x = torch.randn(5, 8)
    reference = MoleModel(source, MoleConfig(adapters={"p": "", "q": ""}, pooling="mean"))
    _randomise_gates(reference, seed=3)
    expected = reference(x)
    paths = {n: str(tmp_path / n) for n in ("p", "q")}
    loaded = MoleModel.from_adapters(net(), MoleConfig(adapters=paths, pooling="mean"))
    loaded.gates.load_state_dict(reference.gates.state_dict())
    torch.testing.assert_close(loaded(x), expected)
    assert load_adapters(loaded.model, paths) is loaded.model  # already present: kept
