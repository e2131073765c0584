"""generate() on YOCO: cache vs no cache (greedy, sampling, beam), left padding, early-exit
prefill inside generate, chunked prefill, inputs_embeds and returning / reusing the cache."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from papercraft.yoco import YocoCache, YocoConfig, YocoForCausalLM

TINY: dict[str, Any] = {
    "vocab_size": 97,
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "chunk_size": 4,
    "sliding_window": 5,  # shorter than prompt + generation: the window cache slides
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
KINDS = ("gret", "swa")
NEW = 7


def _model(kind: str, seed: int = 0) -> YocoForCausalLM:
    torch.manual_seed(seed)
    model = YocoForCausalLM(YocoConfig(**TINY, self_decoder=kind)).eval()
    model.generation_config.eos_token_id = None  # always generate NEW tokens
    return model


def _ids(batch: int, length: int, seed: int = 1) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, TINY["vocab_size"], (batch, length), generator=gen)


def _greedy_by_hand(model: YocoForCausalLM, ids: Tensor, steps: int) -> Tensor:
    """Greedy decoding by full forwards, no cache and no generate machinery."""
    with torch.no_grad():
        for _ in range(steps):
            nxt = model(ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
    return ids


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_with_and_without_cache_gives_the_same_tokens(kind: str) -> None:
    model = _model(kind)
    ids = _ids(2, 6)
    cached = model.generate(ids, max_new_tokens=NEW, do_sample=False)
    uncached = model.generate(ids, max_new_tokens=NEW, do_sample=False, use_cache=False)
    assert cached.shape == (2, 6 + NEW)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached, _greedy_by_hand(model, ids, NEW))


@pytest.mark.parametrize("kind", KINDS)
def test_sampling_with_a_seed_is_reproducible(kind: str) -> None:
    model = _model(kind)
    ids = _ids(2, 5)
    runs = []
    for use_cache in (True, True, False):
        torch.manual_seed(1234)
        runs.append(
            model.generate(ids, max_new_tokens=NEW, do_sample=True, top_k=20, use_cache=use_cache)
        )
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(runs[0], runs[2])  # the cache changes nothing, even when sampling
    torch.manual_seed(99)
    other = model.generate(ids, max_new_tokens=NEW, do_sample=True, top_k=20)
    assert not torch.equal(other, runs[0])


@pytest.mark.parametrize("kind", KINDS)
def test_beam_search_matches_no_cache_beam_search(kind: str) -> None:
    model = _model(kind)
    ids = _ids(2, 5)
    kwargs: dict[str, Any] = {"max_new_tokens": NEW, "num_beams": 3, "do_sample": False}
    cached = model.generate(ids, num_return_sequences=2, **kwargs)
    uncached = model.generate(ids, num_return_sequences=2, use_cache=False, **kwargs)
    assert cached.shape == (4, 5 + NEW)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("kind", KINDS)
def test_left_padded_batch_generates_what_each_sequence_generates_alone(kind: str) -> None:
    model = _model(kind)
    long, short = _ids(1, 9, seed=2), _ids(1, 4, seed=3)
    pad = torch.full((1, 5), TINY["pad_token_id"], dtype=torch.long)
    batch = torch.cat([long, torch.cat([pad, short], dim=1)])
    mask = (batch != TINY["pad_token_id"]).long()
    together = model.generate(batch, attention_mask=mask, max_new_tokens=NEW, do_sample=False)
    alone_long = model.generate(long, max_new_tokens=NEW, do_sample=False)
    alone_short = model.generate(short, max_new_tokens=NEW, do_sample=False)
    assert torch.equal(together[0, 9:], alone_long[0, 9:])
    assert torch.equal(together[1, 9:], alone_short[0, 4:])


@pytest.mark.parametrize("kind", KINDS)
def test_generate_prefills_with_early_exit_and_then_decodes_one_token(kind: str) -> None:
    model = _model(kind)
    ids = _ids(1, 8)
    cross_queries: list[int] = []
    self_queries: list[int] = []
    hooks = [
        model.model.cross_layers[0].register_forward_hook(
            lambda _m, args, _o: cross_queries.append(args[0].shape[1])
        ),
        model.model.self_layers[0].register_forward_hook(
            lambda _m, args, _o: self_queries.append(args[0].shape[1])
        ),
    ]
    out = model.generate(ids, max_new_tokens=3, do_sample=False, return_dict_in_generate=True)
    for hook in hooks:
        hook.remove()
    assert self_queries == [8, 1, 1]  # the prompt runs through the self-decoder once
    assert cross_queries == [1, 1, 1]  # ... and the cross-decoder for its last token only
    assert isinstance(out.cache, YocoCache)
    assert out.cache.get_seq_length() == 8 + 3 - 1  # the last token was never fed back


@pytest.mark.parametrize("kind", KINDS)
def test_chunked_prefill_gives_the_same_tokens(kind: str) -> None:
    model = _model(kind)
    ids = _ids(2, 11)
    plain = model.generate(ids, max_new_tokens=NEW, do_sample=False)
    chunked = model.generate(ids, max_new_tokens=NEW, do_sample=False, prefill_chunk_size=4)
    assert torch.equal(plain, chunked)


def test_generate_from_inputs_embeds_and_from_a_returned_cache() -> None:
    model = _model("gret")
    ids = _ids(1, 6)
    reference = model.generate(ids, max_new_tokens=NEW, do_sample=False)
    embeds = model.get_input_embeddings()(ids).detach()
    from_embeds = model.generate(inputs_embeds=embeds, max_new_tokens=NEW, do_sample=False)
    assert torch.equal(from_embeds, reference[:, 6:])
    # continue generation from a cache handed over by the user (new tokens only are run)
    first = model.generate(ids, max_new_tokens=3, do_sample=False, return_dict_in_generate=True)
    resumed = model.generate(
        first.sequences, cache=first.cache, max_new_tokens=NEW - 3, do_sample=False
    )
    assert torch.equal(resumed, reference)


def test_generate_refuses_a_foreign_cache_or_cache_implementation() -> None:
    model = _model("gret")
    ids = _ids(1, 4)
    with pytest.raises(ValueError, match="cache_implementation"):
        model.generate(ids, max_new_tokens=2, cache_implementation="static")
    with pytest.raises(TypeError, match="YocoCache"):
        model.generate(ids, max_new_tokens=2, cache=object())
