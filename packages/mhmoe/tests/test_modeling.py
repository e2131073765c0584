"""Tests of the MH-MoE causal LM (configuration.py, modeling.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache

from papercraft.core.ffn import SwiGLU
from papercraft.mhmoe.configuration import MHMoEConfig
from papercraft.mhmoe.layer import MHMoE, MoEOutput, SparseMoE
from papercraft.mhmoe.modeling import MHMoEForCausalLM

VOCAB = 97
PAD = 0


def _config(**overrides: Any) -> MHMoEConfig:
    fields: dict[str, Any] = {
        "vocab_size": VOCAB,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_experts": 4,
        "moe_heads": 4,
        "num_experts_per_tok": 2,
        "moe_ffn_dim": 32,
        "moe_every": 2,
        "pad_token_id": PAD,
    }
    fields.update(overrides)
    return MHMoEConfig(**fields)


def _model(**overrides: Any) -> MHMoEForCausalLM:
    torch.manual_seed(0)
    return MHMoEForCausalLM(_config(**overrides)).eval()


def _ids(batch: int, length: int, seed: int = 1) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(1, VOCAB, (batch, length), generator=gen)


def _capture_moe(model: nn.Module) -> tuple[list[tuple[Tensor, MoEOutput]], list[Any]]:
    """Forward hooks recording (input, MoEOutput) of every MHMoE layer, in call order."""
    records: list[tuple[Tensor, MoEOutput]] = []

    def hook(_module: nn.Module, args: tuple[Any, ...], output: MoEOutput) -> None:
        records.append((args[0], output))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, MHMoE)]
    return records, handles


# ----------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("every", "expected"), [(1, (0, 1, 2, 3)), (2, (1, 3)), (3, (2,)), (4, (3,)), (0, ())]
)
def test_moe_blocks_follow_the_moe_every_rule(every: int, expected: tuple[int, ...]) -> None:
    cfg = _config(num_hidden_layers=4, moe_every=every)
    assert cfg.moe_layer_indices == expected
    model = MHMoEForCausalLM(cfg)
    kinds = [type(layer.mlp) for layer in model.model.layers]
    assert kinds == [MHMoE if i in expected else SwiGLU for i in range(4)]
    moe = [layer.mlp for layer in model.model.layers if isinstance(layer.mlp, MHMoE)]
    for layer in moe:
        assert (layer.num_experts, layer.num_heads, layer.top_k) == (4, 4, 2)
        assert layer.experts.hidden == 32


def test_config_resolves_defaults() -> None:
    cfg = MHMoEConfig(hidden_size=48, num_attention_heads=6, moe_heads=3)
    assert (cfg.head_dim, cfg.num_key_value_heads, cfg.intermediate_size) == (8, 6, 128)
    assert cfg.capacity_factor is None
    assert cfg.model_type == "papercraft_mhmoe"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"moe_heads": 3}, "moe_heads"),
        ({"num_experts_per_tok": 5}, "num_experts_per_tok"),
        ({"moe_every": 3}, "moe_every"),
        ({"moe_every": -1}, "moe_every"),
        ({"router": "sigmoid"}, "router"),
        ({"moe_dispatch": "fast"}, "moe_dispatch"),
        ({"capacity_factor": 0.0}, "capacity_factor"),
        ({"aux_loss_coef": -1.0}, "aux_loss_coef"),
        ({"gate_temperature": 0.0}, "gate_temperature"),
        ({"num_experts": True}, "num_experts"),
        ({"moe_ffn_dim": 0}, "moe_ffn_dim"),
        ({"num_key_value_heads": 3}, "num_key_value_heads"),
        ({"hidden_size": 62}, "num_attention_heads"),
        ({"hidden_size": 60, "moe_heads": 2}, "head_dim"),
        ({"moe_head_projection": 1}, "moe_head_projection"),
    ],
)
def test_bad_configs_raise(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _config(**overrides)


def test_config_round_trips_through_auto_config(tmp_path: Path) -> None:
    cfg = _config(moe_every=1, capacity_factor=1.25, router="xmoe", gate_temperature=0.3)
    cfg.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is MHMoEConfig
    for name in ("moe_every", "capacity_factor", "router", "gate_temperature", "moe_heads"):
        assert getattr(loaded, name) == getattr(cfg, name)


# ----------------------------------------------------------------------------- forward / loss


def test_forward_shapes_and_outputs() -> None:
    model = _model(num_hidden_layers=4)
    ids = _ids(2, 7)
    with torch.no_grad():
        out = model(ids, output_hidden_states=True, output_router_logits=True)
    assert out.logits.shape == (2, 7, VOCAB)
    assert out.loss is None
    assert out.aux_loss is not None
    assert out.aux_loss.ndim == 0
    assert len(out.hidden_states) == 5  # embedding + 4 blocks
    assert all(h.shape == (2, 7, 64) for h in out.hidden_states)
    assert len(out.router_logits) == 2  # blocks 1 and 3
    assert all(r.shape == (2 * 7 * 4, 4) for r in out.router_logits)  # (B·T·h, E)
    assert isinstance(out.cache, DynamicCache)
    assert out.cache.get_seq_length() == 7
    with torch.no_grad():
        last = model(ids, logits_to_keep=2).logits
    torch.testing.assert_close(last, out.logits[:, -2:])


def test_dense_model_has_no_aux_loss() -> None:
    model = _model(moe_every=0)
    ids = _ids(2, 5)
    out = model(ids, labels=ids)
    assert out.aux_loss is None
    torch.testing.assert_close(out.loss, out.lm_loss)


def test_loss_is_lm_cross_entropy_plus_layer_moe_losses() -> None:
    aux_coef, z_coef = 0.05, 1e-3
    model = _model(num_hidden_layers=3, moe_every=1, aux_loss_coef=aux_coef, z_loss_coef=z_coef)
    ids = _ids(2, 9)
    labels = ids.clone()
    labels[0, :3] = -100
    records, handles = _capture_moe(model)
    out = model(ids, labels=labels)
    for handle in handles:
        handle.remove()
    assert len(records) == 3

    # next-token cross-entropy, written out
    logits = out.logits[:, :-1].reshape(-1, VOCAB)
    targets = labels[:, 1:].reshape(-1)
    keep = targets != -100
    lm = -torch.log_softmax(logits[keep], dim=-1).gather(1, targets[keep, None]).mean()
    torch.testing.assert_close(out.lm_loss, lm)

    # GShard load balancing E · Σ_e mean_gate_e · frac_top1_e, z-loss mean(logsumexp²)
    expected_moe = torch.zeros(())
    for _, moe_out in records:
        router_logits = moe_out.routing.router_logits  # (B·T·h, E): no padding here
        num_experts = router_logits.shape[-1]
        probs = router_logits.float().softmax(-1)
        frac = F.one_hot(router_logits.argmax(-1), num_experts).float().mean(0)
        balance = num_experts * (probs.mean(0) * frac).sum()
        z = torch.logsumexp(router_logits.float(), -1).pow(2).mean()
        expected_moe = expected_moe + aux_coef * balance + z_coef * z
    torch.testing.assert_close(out.aux_loss, expected_moe)
    torch.testing.assert_close(out.loss, lm + expected_moe)


def test_backward_reaches_experts_router_and_projections() -> None:
    model = _model(num_hidden_layers=2).train()
    ids = _ids(2, 12)
    model(ids, labels=ids).loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    moe = model.model.layers[1].mlp
    assert isinstance(moe, MHMoE)
    for name, param in moe.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name
    for e in range(moe.num_experts):  # every expert was used and learns
        assert moe.experts.w_down.grad is not None
        assert moe.experts.w_down.grad[e].abs().sum() > 0, e
    router_grads = [p.grad for p in moe.router.parameters()]
    assert router_grads
    assert all(g is not None and g.abs().sum() > 0 for g in router_grads)


def test_init_keeps_mhmoe_projection_init() -> None:
    model = _model()
    moe = model.model.layers[1].mlp
    assert isinstance(moe, MHMoE)
    assert isinstance(moe.head_proj, nn.Linear)
    bound = (1 / math.sqrt(2)) * math.sqrt(6 / (64 + 64))  # xavier_uniform, gain 1/√2
    w = moe.head_proj.weight
    assert w.abs().max() <= bound
    assert w.abs().max() > 0.9 * bound
    dense = model.model.layers[0].mlp
    assert isinstance(dense, SwiGLU)
    assert abs(dense.gate_proj.weight.std().item() - 0.02) < 0.003


# ----------------------------------------------------------------------------- padding


def test_left_padded_batch_equals_unpadded_sequences() -> None:
    model = _model(num_hidden_layers=4)
    seqs = [_ids(1, 9, seed=3)[0], _ids(1, 5, seed=4)[0], _ids(1, 7, seed=5)[0]]
    width = max(len(s) for s in seqs)
    ids = torch.full((3, width), PAD)
    mask = torch.zeros(3, width, dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq) :] = seq
        mask[row, width - len(seq) :] = 1
    with torch.no_grad():
        batched = model(ids, attention_mask=mask).logits
        assert torch.isfinite(batched).all()
        for row, seq in enumerate(seqs):
            alone = model(seq[None]).logits[0]
            torch.testing.assert_close(
                batched[row, width - len(seq) :], alone, atol=2e-5, rtol=1e-4
            )


def test_padding_mask_reaches_the_moe_layers() -> None:
    model = _model()
    seq = _ids(1, 6, seed=7)
    padded = torch.cat([torch.full((1, 3), PAD), seq], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 6, dtype=torch.long)], 1)
    records, handles = _capture_moe(model)
    with torch.no_grad():
        alone = model(seq)
        padded_out = model(padded, attention_mask=mask)
    for handle in handles:
        handle.remove()
    # padded tokens are neither routed nor counted: the balancing loss is the unpadded one
    assert padded_out.aux_loss is not None
    assert alone.aux_loss is not None
    torch.testing.assert_close(padded_out.aux_loss, alone.aux_loss, atol=1e-6, rtol=1e-5)
    routing = records[1][1].routing
    assert routing.valid.tolist() == [False] * 12 + [True] * 24  # 3 pad tokens × h = 4
    assert records[1][1].hidden_states[0, :3].abs().max() == 0


# ----------------------------------------------------------------------------- save / load


def test_save_pretrained_round_trip(tmp_path: Path) -> None:
    model = _model(num_hidden_layers=4, z_loss_coef=1e-3)
    ids = _ids(2, 8)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    with torch.no_grad():
        expected = model(ids).logits
    for loader in (MHMoEForCausalLM, AutoModelForCausalLM):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert type(loaded) is MHMoEForCausalLM
        assert loaded.config.moe_layer_indices == (1, 3)
        assert loaded.generation_config.top_k is None  # the MoE choice is no sampling flag
        with torch.no_grad():
            torch.testing.assert_close(loaded(ids).logits, expected, rtol=0, atol=0)
    (tmp_path / "generation_config.json").unlink()  # fall back to config.json
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert loaded.generation_config.top_k is None


# ----------------------------------------------------------------------------- generation


def test_incremental_decoding_matches_the_full_forward() -> None:
    model = _model(num_hidden_layers=4)
    ids = _ids(2, 10)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, :3] = 0
    with torch.no_grad():
        full = model(ids, attention_mask=mask).logits
        cache = DynamicCache(config=model.config)
        first = model(ids[:, :6], attention_mask=mask[:, :6], cache=cache, use_cache=True)
        steps = [first.logits]
        for t in range(6, 10):
            out = model(ids[:, t : t + 1], attention_mask=mask[:, : t + 1], cache=cache)
            steps.append(out.logits)
    assert cache.get_seq_length() == 10
    incremental = torch.cat(steps, dim=1)
    real = mask.bool()
    torch.testing.assert_close(incremental[real], full[real], atol=2e-5, rtol=1e-4)


def test_generate_with_and_without_cache_agree() -> None:
    model = _model(num_hidden_layers=4)
    ids = _ids(2, 6, seed=9)
    ids[1, :2] = PAD
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    kwargs: dict[str, Any] = {
        "attention_mask": mask,
        "max_new_tokens": 8,
        "do_sample": False,
        "pad_token_id": PAD,
        "eos_token_id": None,
    }
    with torch.no_grad():
        cached = model.generate(ids, use_cache=True, **kwargs)
        uncached = model.generate(ids, use_cache=False, **kwargs)
    assert cached.shape == (2, 14)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached[:, :6], ids)


# ----------------------------------------------------------------------------- h = 1: SMoE


def test_single_head_without_projection_is_a_sparse_moe() -> None:
    model = _model(moe_heads=1, moe_head_projection=False, num_experts_per_tok=2, moe_ffn_dim=48)
    layer = model.model.layers[1].mlp
    assert isinstance(layer, MHMoE)
    assert isinstance(layer.head_proj, nn.Identity)
    assert isinstance(layer.merge_proj, nn.Identity)
    ids = _ids(2, 7)
    records, handles = _capture_moe(model)
    out = model(ids, labels=ids)
    for handle in handles:
        handle.remove()
    out.loss.backward()
    x, moe_out = records[0]  # x: (B, T, d) normalised block input
    tokens = x.detach().reshape(-1, 64)

    # the package's SparseMoE with the same weights
    smoe = SparseMoE(64, 4, top_k=2, expert_hidden=48, capacity_factor=None)
    smoe.load_state_dict(layer.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(
            smoe(x.detach()).hidden_states, moe_out.hidden_states.detach(), atol=1e-5, rtol=1e-4
        )

    # a hand-written top-2 softmax SMoE over whole tokens
    logits = moe_out.routing.router_logits.detach()  # (B·T, E): one sub-token per token
    top = logits.softmax(-1).topk(2, dim=-1)
    gates = top.values / top.values.sum(-1, keepdim=True)
    experts = layer.experts
    expected = torch.zeros_like(tokens)
    with torch.no_grad():
        for s in range(tokens.shape[0]):
            for k in range(2):
                e = int(top.indices[s, k])
                h = F.silu(tokens[s] @ experts.w_gate[e]) * (tokens[s] @ experts.w_up[e])
                expected[s] += gates[s, k] * (h @ experts.w_down[e])
    torch.testing.assert_close(
        moe_out.hidden_states.detach().reshape(-1, 64), expected, atol=1e-5, rtol=1e-4
    )
    assert experts.w_gate.grad is not None
    assert experts.w_gate.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- input errors


def test_bad_inputs_raise() -> None:
    model = _model()
    ids = _ids(2, 5)
    with pytest.raises(ValueError, match="exactly one"):
        model(ids, inputs_embeds=torch.zeros(2, 5, 64))
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids, attention_mask=torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="logits_to_keep"):
        model(ids, logits_to_keep=-1)
    with pytest.raises(ValueError, match="position_ids"):
        model(ids, position_ids=torch.arange(4)[None])
    with pytest.raises(ValueError, match="output_attentions"):
        model(ids, output_attentions=True)
