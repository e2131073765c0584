"""YocoForCausalLM: equivalence with a float64 reference written from the paper's equations,
early-exit prefill, chunk sizes, left padding, init, save/load, training and input checks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import AutoModelForCausalLM

from papercraft.yoco import YocoConfig, YocoForCausalLM
from papercraft.yoco.layers import GatedRetention, SlidingWindowAttention

TINY: dict[str, Any] = {
    "vocab_size": 97,
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "chunk_size": 4,
    "sliding_window": 5,
}
KINDS = ("gret", "swa")


def _model(seed: int = 0, **overrides: Any) -> YocoForCausalLM:
    torch.manual_seed(seed)
    return YocoForCausalLM(YocoConfig(**{**TINY, **overrides})).eval()


def _ids(batch: int, length: int, seed: int = 1, low: int = 3) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(low, TINY["vocab_size"], (batch, length), generator=gen)


# --------------------------------------------------------------------------------------------
# an independent float64 reference, written from the methods note (no package layer is reused)


def _rms(x: Tensor, weight: Tensor | None, eps: float) -> Tensor:
    y = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y if weight is None else y * weight.double()


def _rope(x: Tensor, theta: float) -> Tensor:
    """Interleaved RoPE, frequencies 1/θ^linspace(0,1,d/2), as complex rotation. x: (B, H, T, D)."""
    d, t = x.shape[-1], x.shape[-2]
    freqs = 1.0 / theta ** torch.linspace(0, 1, d // 2, dtype=torch.float64)
    angles = torch.arange(t, dtype=torch.float64)[:, None] * freqs  # (T, D/2)
    pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], d // 2, 2).contiguous())
    rotated = pairs * torch.polar(torch.ones_like(angles), angles)
    return torch.view_as_real(rotated).reshape(x.shape)


def _lin(x: Tensor, layer: torch.nn.Linear) -> Tensor:
    return x @ layer.weight.double().t()


def _heads(x: Tensor, h: int) -> Tensor:
    b, t, _ = x.shape
    return x.reshape(b, t, h, -1).transpose(1, 2)


def _softmax_attention(q: Tensor, k: Tensor, v: Tensor, window: int | None) -> Tensor:
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    t = q.shape[2]
    i, j = torch.arange(t)[:, None], torch.arange(t)[None]
    visible = j <= i
    if window is not None:
        visible &= j > i - window
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return scores.masked_fill(~visible, float("-inf")).softmax(-1) @ v


def _reference_logits(model: YocoForCausalLM, ids: Tensor) -> Tensor:
    cfg, m = model.config, model.model
    eps, theta, h = cfg.rms_norm_eps, cfg.rope_theta, cfg.num_attention_heads
    x = m.embed_tokens.weight.double()[ids] * math.sqrt(cfg.hidden_size)
    t = ids.shape[1]
    for layer in m.self_layers:
        a = _rms(x, layer.mixer_norm.weight, eps)
        mix = layer.mixer
        q, k, v = (_heads(_lin(a, p), h) for p in (mix.q_proj, mix.k_proj, mix.v_proj))
        q, k = _rope(q, theta), _rope(k, theta)
        if isinstance(mix, GatedRetention):
            k = k * mix.head_dim**-0.5
            log_gamma = F.logsigmoid(_lin(a, mix.gt_proj)).transpose(1, 2) / 16.0  # (B, H, T)
            cum = log_gamma.cumsum(-1)
            decay = torch.exp(cum[..., :, None] - cum[..., None, :])  # D[n, m] = Π γ_{m+1..n}
            decay = decay * torch.ones(t, t, dtype=torch.float64).tril()
            o = ((q @ k.transpose(-1, -2)) * decay) @ v  # O = (Q Kᵀ ⊙ D) V
            o = _rms(o, None, eps).transpose(1, 2).reshape(*x.shape[:2], -1)
            out = _lin(F.silu(_lin(a, mix.g_proj)) * o, mix.out_proj)
        else:
            assert isinstance(mix, SlidingWindowAttention)
            o = _softmax_attention(q, k, v, cfg.sliding_window)
            out = _lin(o.transpose(1, 2).reshape(*x.shape[:2], -1), mix.out_proj)
        x = x + out
        f = _rms(x, layer.ffn_norm.weight, eps)
        x = x + _lin(
            F.silu(_lin(f, layer.ffn.gate_proj)) * _lin(f, layer.ffn.up_proj), layer.ffn.down_proj
        )
    kv_in = _rms(x, m.global_kv.kv_norm.weight, eps)
    n_kv = cfg.num_key_value_heads
    gk = _rope(_heads(_lin(kv_in, m.global_kv.k_proj), n_kv), theta)
    gv = _heads(_lin(kv_in, m.global_kv.v_proj), n_kv)
    for layer in m.cross_layers:
        a = _rms(x, layer.mixer_norm.weight, eps)
        q = _rope(_heads(_lin(a, layer.cross_attn.q_proj), h), theta)
        o = _softmax_attention(q, gk, gv, None).transpose(1, 2).reshape(*x.shape[:2], -1)
        x = x + _lin(o, layer.cross_attn.out_proj)
        f = _rms(x, layer.ffn_norm.weight, eps)
        x = x + _lin(
            F.silu(_lin(f, layer.ffn.gate_proj)) * _lin(f, layer.ffn.up_proj), layer.ffn.down_proj
        )
    return _lin(_rms(x, m.norm.weight, eps), model.lm_head)


@pytest.mark.parametrize(
    ("kind", "overrides"),
    [
        ("gret", {}),
        ("swa", {}),
        ("gret", {"num_self_decoder_layers": 3, "head_dim": 16}),  # 3:1 split, H·d_h != d
    ],
)
def test_forward_matches_the_float64_reference(kind: str, overrides: dict[str, Any]) -> None:
    model = _model(self_decoder=kind, **overrides)
    ids = _ids(2, 11)
    with torch.no_grad():
        got = model(ids).logits.double()
        want = _reference_logits(model, ids)
    # a wrong RoPE layout/frequency or gate normalizer moves logits by >= 2e-2
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------------
# early exit, chunk sizes, padding


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("keep", [1, 3])
def test_early_exit_prefill_equals_the_full_forward(kind: str, keep: int) -> None:
    model = _model(self_decoder=kind)
    ids = _ids(2, 13)
    seen: list[int] = []
    hook = model.model.cross_layers[0].register_forward_hook(
        lambda _m, args, _o: seen.append(args[0].shape[1])
    )
    with torch.no_grad():
        full = model(ids)
        early = model(ids, logits_to_keep=keep)
    hook.remove()
    assert seen == [13, keep]  # the cross-decoder really ran on `keep` positions only
    assert early.logits.shape == (2, keep, TINY["vocab_size"])
    torch.testing.assert_close(early.logits, full.logits[:, -keep:], rtol=0, atol=1e-5)
    torch.testing.assert_close(early.cache.global_key, full.cache.global_key, rtol=0, atol=0)


def test_chunk_sizes_that_do_not_divide_the_length_give_the_same_logits() -> None:
    ids = _ids(2, 23)
    with torch.no_grad():
        logits = [_model(chunk_size=c)(ids).logits for c in (1, 4, 5, 7, 64)]
    for other in logits[1:]:
        torch.testing.assert_close(other, logits[0], rtol=0, atol=2e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_left_padded_batch_equals_each_sequence_alone(kind: str) -> None:
    model = _model(self_decoder=kind)
    long, short = _ids(1, 10, seed=2), _ids(1, 4, seed=3)
    batch = torch.cat([long, torch.cat([torch.zeros(1, 6, dtype=torch.long), short], 1)])
    mask = torch.ones_like(batch)
    mask[1, :6] = 0
    with torch.no_grad():
        padded = model(batch, attention_mask=mask)
        alone_long, alone_short = model(long), model(short)
    torch.testing.assert_close(padded.logits[0], alone_long.logits[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(padded.logits[1, 6:], alone_short.logits[0], rtol=0, atol=1e-5)
    if kind == "gret":  # padded tokens left no trace in the retention state
        for got, want in zip(padded.cache.states, alone_short.cache.states, strict=True):
            assert got is not None
            assert want is not None
            torch.testing.assert_close(got[1:], want, rtol=0, atol=1e-6)


def test_inputs_embeds_equal_input_ids() -> None:
    model = _model()
    ids = _ids(2, 6)
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)
        torch.testing.assert_close(model(inputs_embeds=embeds).logits, model(ids).logits)


# --------------------------------------------------------------------------------------------
# init, save/load, training


def test_init_follows_the_paper() -> None:
    model = _model(hidden_size=64, vocab_size=300)
    d = 64
    mixer = model.model.self_layers[0].mixer
    assert isinstance(mixer, GatedRetention)

    def xavier_bound(w: Tensor, gain: float) -> float:
        return gain * math.sqrt(6.0 / (w.shape[0] + w.shape[1]))

    for proj, gain in ((mixer.q_proj, 2**-2.5), (mixer.gt_proj, 2**-2.5), (mixer.out_proj, 0.5)):
        w = proj.weight
        bound = xavier_bound(w, gain)
        assert w.abs().max() <= bound
        assert w.abs().max() > 0.9 * bound  # uniform over the whole range, not a smaller init
    emb = model.model.embed_tokens.weight
    assert abs(emb.std().item() - d**-0.5) < 0.1 * d**-0.5
    assert torch.equal(model.model.global_kv.kv_norm.weight, torch.ones(d))
    assert model.lm_head.weight.data_ptr() != emb.data_ptr()  # untied


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = _model(self_decoder="swa")
    ids = _ids(2, 9)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    for loader in (YocoForCausalLM, AutoModelForCausalLM):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert type(loaded) is YocoForCausalLM
        with torch.no_grad():
            torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_tie_word_embeddings_is_honoured(tmp_path: Path) -> None:
    model = _model(tie_word_embeddings=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    model.save_pretrained(tmp_path)
    loaded = YocoForCausalLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    torch.testing.assert_close(loaded.lm_head.weight, model.lm_head.weight, rtol=0, atol=0)


def test_loss_is_the_shifted_cross_entropy_ignoring_minus_100() -> None:
    model = _model()
    ids = _ids(2, 8)
    labels = ids.clone()
    labels[0, :3] = -100
    out = model(ids, labels=labels, logits_to_keep=2)
    full = model(ids).logits
    want = F.cross_entropy(
        full[:, :-1].reshape(-1, TINY["vocab_size"]), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, want)
    assert out.logits.shape[1] == 2  # logits_to_keep still trims the returned logits


@pytest.mark.parametrize("kind", KINDS)
def test_a_few_adamw_steps_lower_the_loss(kind: str) -> None:
    model = _model(self_decoder=kind).train()
    ids = _ids(4, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        out = model(ids, labels=ids)
        assert out.cache is None  # no cache is built in training mode
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    ids = _ids(2, 10)
    grads = []
    for checkpointing in (False, True):
        model = _model().train()
        if checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": False})
            assert model.model.self_layers[0].gradient_checkpointing
        model(ids, labels=ids).loss.backward()
        grads.append(model.model.self_layers[0].mixer.q_proj.weight.grad)
    assert grads[0] is not None
    assert grads[1] is not None
    torch.testing.assert_close(grads[1], grads[0])


# --------------------------------------------------------------------------------------------
# bad input


def test_bad_inputs_get_clear_errors() -> None:
    model = _model()
    ids = _ids(2, 5)
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        model(ids, inputs_embeds=torch.zeros(2, 5, 32))
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        model()
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids, attention_mask=torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="logits_to_keep"):
        model(ids, logits_to_keep=-1)
    with pytest.raises(ValueError, match="input_ids"):
        model(ids.float())
    with pytest.raises(ValueError, match="T >= 1"):
        model(ids[:, :0])
    with pytest.raises(TypeError, match="YocoCache"):
        model(ids, cache=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="output_attentions"):
        model(ids, output_attentions=True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("keep", [0, 3, 9])
def test_segmented_prefill_equals_one_pass(kind: str, keep: int) -> None:
    """Prompts longer than prefill_segment_size run in segments: same logits, same cache."""
    model = _model(self_decoder=kind, sliding_window=5, chunk_size=4)
    ids = torch.randint(
        0, model.config.vocab_size, (2, 37), generator=torch.Generator().manual_seed(1)
    )
    mask = torch.ones(2, 37, dtype=torch.long)
    mask[1, :6] = 0  # left padding crosses the first segment boundary
    with torch.no_grad():
        model.model.prefill_segment_size = 0
        whole = model(ids, attention_mask=mask, use_cache=True, logits_to_keep=keep)
        model.model.prefill_segment_size = 7  # 37 = 5 segments of 7 + 2
        parts = model(ids, attention_mask=mask, use_cache=True, logits_to_keep=keep)
    assert parts.logits.shape == whole.logits.shape
    torch.testing.assert_close(parts.logits, whole.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(parts.cache.global_key, whole.cache.global_key)
    torch.testing.assert_close(parts.cache.global_value, whole.cache.global_value)
    assert parts.cache.get_seq_length() == whole.cache.get_seq_length() == 37
    assert parts.cache.nbytes() == whole.cache.nbytes()
    # decoding on from either cache gives the same next-token logits
    step = torch.randint(
        0, model.config.vocab_size, (2, 1), generator=torch.Generator().manual_seed(2)
    )
    step_mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], dim=1)
    with torch.no_grad():
        a = model(step, attention_mask=step_mask, cache=whole.cache, use_cache=True)
        b = model(step, attention_mask=step_mask, cache=parts.cache, use_cache=True)
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-5)
