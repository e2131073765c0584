"""YocoCache: prefill + decode == full forward (logits, global K/V, states, windows), byte counts
against the methods note's formula, beam reordering, the ``past_key_values`` alias."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor
from transformers import DynamicCache

from papercraft.yoco import YocoCache, YocoConfig, YocoForCausalLM

TINY: dict[str, Any] = {
    "vocab_size": 97,
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "chunk_size": 4,
    "sliding_window": 5,  # smaller than the sequences below: the window cache really slides
}
KINDS = ("gret", "swa")


def _model(seed: int = 0, **overrides: Any) -> YocoForCausalLM:
    torch.manual_seed(seed)
    return YocoForCausalLM(YocoConfig(**{**TINY, **overrides})).eval()


def _ids(batch: int, length: int, seed: int = 1) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, TINY["vocab_size"], (batch, length), generator=gen)


def _sum_of_tensors(cache: YocoCache) -> int:
    held = [*cache.states, *cache.window_keys, *cache.window_values]
    held += [cache.global_key, cache.global_value]
    return sum(t.numel() * t.element_size() for t in held if t is not None)


@pytest.mark.parametrize("kind", KINDS)
def test_prefill_then_token_by_token_decode_equals_the_full_forward(kind: str) -> None:
    model = _model(self_decoder=kind)
    ids = _ids(2, 14)
    prompt = 6
    with torch.no_grad():
        full = model(ids)
        step = model(ids[:, :prompt], logits_to_keep=1)  # early-exit prefill
        cache = step.cache
        torch.testing.assert_close(
            step.logits[:, -1], full.logits[:, prompt - 1], rtol=0, atol=1e-5
        )
        for t in range(prompt, ids.shape[1]):
            step = model(ids[:, t : t + 1], cache=cache, use_cache=True)
            assert step.cache is cache  # extended in place
            torch.testing.assert_close(step.logits[:, -1], full.logits[:, t], rtol=0, atol=1e-5)
    assert cache.get_seq_length() == full.cache.get_seq_length() == 14
    assert cache.global_key is not None
    assert full.cache.global_key is not None
    assert cache.global_key.shape == (2, 2, 14, 8)
    torch.testing.assert_close(cache.global_key, full.cache.global_key, rtol=0, atol=1e-5)
    torch.testing.assert_close(cache.global_value, full.cache.global_value, rtol=0, atol=1e-5)
    if kind == "gret":
        for got, want in zip(cache.states, full.cache.states, strict=True):
            assert got is not None
            assert got.dtype == torch.float32
            assert got.shape == (2, 4, 8, 8)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    else:
        for got, want in zip(cache.window_keys, full.cache.window_keys, strict=True):
            assert got is not None
            assert got.shape[2] == TINY["sliding_window"]
            torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_multi_token_continuation_of_a_cache(kind: str) -> None:
    """Chunked prefill: 7 tokens, then 2, then 5 (a gRet state carried into chunkwise, SWA cat)."""
    model = _model(self_decoder=kind, chunk_size=3)
    ids = _ids(2, 14)
    with torch.no_grad():
        full = model(ids).logits
        first = model(ids[:, :7])
        second = model(ids[:, 7:9], cache=first.cache)
        third = model(ids[:, 9:], cache=first.cache)
    got = torch.cat([first.logits, second.logits, third.logits], dim=1)
    torch.testing.assert_close(got, full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nbytes_equals_the_formula_and_the_tensors(kind: str, dtype: torch.dtype) -> None:
    model = _model(self_decoder=kind).to(dtype)
    cfg = model.config
    ids = _ids(3, 9)
    with torch.no_grad():
        cache = model(ids[:, :3], logits_to_keep=1).cache  # 3 tokens < W = 5
        for seq_len in (3, 9):
            if seq_len == 9:
                for t in range(3, 9):
                    model(ids[:, t : t + 1], cache=cache)
            expected = YocoCache.expected_nbytes(cfg, batch_size=3, seq_len=seq_len, dtype=dtype)
            assert cache.nbytes() == expected == _sum_of_tensors(cache)
    # the formula itself, written out for this config (s = bytes per element)
    s = torch.empty((), dtype=dtype).element_size()
    global_kv = 2 * 2 * 8 * 9 * s  # 2 · n_kv · d_h · S · s
    per_sequence = 2 * 4 * 8 * 8 * 4 if kind == "gret" else 2 * 2 * 5 * 4 * 8 * s
    assert YocoCache.expected_nbytes(cfg, batch_size=3, seq_len=9, dtype=dtype) == 3 * (
        global_kv + per_sequence
    )
    if kind == "gret":
        assert all(t is not None and t.dtype == torch.float32 for t in cache.states)


def test_the_global_cache_is_about_L_times_smaller_than_a_transformers() -> None:
    cfg = YocoConfig(**{**TINY, "num_hidden_layers": 8})
    seq_len = 100_000
    yoco = YocoCache.expected_nbytes(cfg, batch_size=1, seq_len=seq_len, dtype=torch.bfloat16)
    transformer = 2 * 8 * 2 * 8 * seq_len * 2  # 2 · L · n_kv · d_h · S · s
    assert 7.5 < transformer / yoco < 8  # → L as the sequence grows


def test_reorder_cache_selects_batch_rows() -> None:
    for kind in KINDS:
        model = _model(self_decoder=kind)
        ids = _ids(3, 6)
        with torch.no_grad():
            cache = model(ids).cache
        before = [
            t.clone()
            for t in (cache.global_key, *cache.states, *cache.window_keys)
            if t is not None
        ]
        index = torch.tensor([2, 2, 0])
        cache.reorder_cache(index)
        after = [t for t in (cache.global_key, *cache.states, *cache.window_keys) if t is not None]
        assert len(after) == len(before) == 3
        for old, new in zip(before, after, strict=True):
            torch.testing.assert_close(new, old[index], rtol=0, atol=0)
        cache.batch_repeat_interleave(2)
        assert cache.batch_size == 6
    with pytest.raises(ValueError, match="beam_idx"):
        cache.reorder_cache(torch.tensor([[0]]))


def test_past_key_values_is_an_alias_of_cache() -> None:
    model = _model()
    ids = _ids(2, 7)
    with torch.no_grad():
        full = model(ids).logits
        first = model(ids[:, :5])
        out = model(ids[:, 5:], past_key_values=first.cache)
        assert out.cache is first.cache
        torch.testing.assert_close(out.logits, full[:, 5:], rtol=0, atol=1e-5)
        other = model(ids[:, :5]).cache
        with pytest.raises(ValueError, match="not both"):
            model(ids[:, 5:], cache=first.cache, past_key_values=other)


def test_cache_protocol_and_checks() -> None:
    cfg = YocoConfig(**TINY)
    cache = YocoCache(cfg)
    assert (cache.get_seq_length(), cache.batch_size, cache.nbytes()) == (0, -1, 0)
    assert cache.is_linear == [True, True, False]  # two gRet layers, then the global K/V
    assert not cache.is_compileable
    assert not cache.is_croppable
    model = _model()
    ids = _ids(2, 4)
    with torch.no_grad():
        out = model(ids, cache=DynamicCache())  # an empty transformers cache is replaced
        assert isinstance(out.cache, YocoCache)
        assert out.cache.get_seq_length() == 4
        with pytest.raises(ValueError, match="batch size"):
            model(_ids(3, 1), cache=out.cache)
        assert model(ids, use_cache=False).cache is None
    out.cache.reset()
    assert out.cache.get_seq_length() == 0
    assert out.cache.nbytes() == 0
    with pytest.raises(TypeError, match="YocoConfig"):
        YocoCache(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seq_len"):
        YocoCache.expected_nbytes(cfg, batch_size=1, seq_len=0, dtype=torch.float32)
    with pytest.raises(ValueError, match="dtype"):
        YocoCache.expected_nbytes(cfg, batch_size=1, seq_len=1, dtype=torch.int64)


@pytest.mark.cuda
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_bf16_prefill_and_decode_match_the_full_forward(kind: str) -> None:
    """On GPU the core picks flash-attn / SDPA kernels; the cache must agree with the full pass."""
    model = _model(self_decoder=kind).to(device="cuda", dtype=torch.bfloat16)
    ids = _ids(2, 40).cuda()
    with torch.no_grad():
        full = model(ids).logits.float()
        step = model(ids[:, :30], logits_to_keep=1)
        logits = [step.logits[:, -1].float()]
        for t in range(30, 40):
            step = model(ids[:, t : t + 1], cache=step.cache)
            logits.append(step.logits[:, -1].float())
    got = torch.stack(logits, dim=1)
    torch.testing.assert_close(got, full[:, 29:], rtol=0, atol=5e-2)
    expected = YocoCache.expected_nbytes(
        model.config, batch_size=2, seq_len=40, dtype=torch.bfloat16
    )
    assert step.cache.nbytes() == expected
