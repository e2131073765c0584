"""Tests for papercraft.core.testing: tiny tokenizers, models and texts, real and deterministic."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from papercraft.core import testing
from papercraft.core.testing import (
    sample_texts,
    seed_everything,
    tiny_bert,
    tiny_causal_lm,
    tiny_llama_config,
    tiny_tokenizer,
    tiny_wordpiece_tokenizer,
)

_SCRIPT = """
import hashlib, json
from papercraft.core import testing
print(json.dumps({
    "bpe": hashlib.sha256(testing._trained_bpe_json(300).encode()).hexdigest(),
    "wordpiece": hashlib.sha256(testing._trained_wordpiece_json(300).encode()).hexdigest(),
    "texts": testing.sample_texts(5, seed=3),
}))
"""


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------ tokenizers


def test_tiny_tokenizer_special_tokens_and_size() -> None:
    tok = tiny_tokenizer()
    assert len(tok) == 512
    assert (tok.unk_token, tok.bos_token, tok.eos_token, tok.pad_token) == (
        "<unk>",
        "<s>",
        "</s>",
        "<pad>",
    )
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 2, 3)
    # The trained merges must compress ordinary English well below one token per byte.
    text = " ".join(sample_texts(20, seed=0))
    assert len(tok(text)["input_ids"]) < 0.6 * len(text.encode())


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world!",
        "  leading and trailing  \n\n",
        "unicode: héllo wörld 🙂 漢字 \u2028",
        "\x00\x7f",
    ],
)
def test_tiny_tokenizer_byte_level_round_trip(text: str) -> None:
    tok = tiny_tokenizer()
    ids = tok(text)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text


def test_tiny_tokenizer_bos_choice() -> None:
    plain, with_bos = tiny_tokenizer(), tiny_tokenizer(add_bos_token=True)
    ids = plain("The with statement")["input_ids"]
    assert plain.bos_token_id not in ids
    assert plain.eos_token_id not in ids
    assert with_bos("The with statement")["input_ids"] == [with_bos.bos_token_id, *ids]
    assert with_bos("The with statement", add_special_tokens=False)["input_ids"] == ids


def test_tiny_tokenizer_calls_return_independent_objects() -> None:
    a = tiny_tokenizer()
    a.padding_side = "left"
    a.model_max_length = 7
    b = tiny_tokenizer()
    assert a is not b
    assert b.padding_side == "right"
    assert b.model_max_length != 7


def test_tokenizer_training_is_deterministic_in_process_and_across_processes() -> None:
    # Retrain without the cache: the trainer must not depend on hash order or threads.
    bpe = testing._trained_bpe_json.__wrapped__(300)
    assert bpe == testing._trained_bpe_json(300)
    env = {**os.environ, "PYTHONHASHSEED": "12345", "RAYON_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    child = json.loads(out.stdout.strip().splitlines()[-1])
    assert child["bpe"] == hashlib.sha256(bpe.encode()).hexdigest()
    wordpiece = testing._trained_wordpiece_json(300)
    assert child["wordpiece"] == hashlib.sha256(wordpiece.encode()).hexdigest()
    assert child["texts"] == sample_texts(5, seed=3)


@pytest.mark.parametrize("vocab_size", [100, 259, 100_000])
def test_tiny_tokenizer_rejects_bad_vocab_size(vocab_size: int) -> None:
    with pytest.raises(ValueError, match="vocab_size must be in"):
        tiny_tokenizer(vocab_size)


def test_wordpiece_tokenizer_is_bert_like() -> None:
    tok = tiny_wordpiece_tokenizer()
    assert len(tok) == 512
    assert tok.pad_token_id == 0
    enc = tok("Hello World", "second part")
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    assert tokens[0] == "[CLS]"
    assert tokens.count("[SEP]") == 2
    assert tokens[-1] == "[SEP]"
    first_sep = tokens.index("[SEP]")
    assert enc["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)
    assert tok.decode(enc["input_ids"], skip_special_tokens=True) == "hello world second part"


# ------------------------------------------------------------------ texts and seeds


def test_sample_texts_deterministic_and_bounded() -> None:
    texts = sample_texts(30, seed=7, min_words=5, max_words=12)
    assert texts == sample_texts(30, seed=7, min_words=5, max_words=12)
    assert texts != sample_texts(30, seed=8, min_words=5, max_words=12)
    assert len(texts) == 30
    for text in texts:
        words = text.split()
        assert 5 <= len(words) <= 12
        assert text == " ".join(words)
        assert words[0][0].isupper() or words[0][0] in "\"'“("  # starts a sentence
    assert len(set(texts)) > 20
    assert sample_texts(0) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": -1}, "n must be"),
        ({"n": 2, "min_words": 0}, "min_words"),
        ({"n": 2, "min_words": 9, "max_words": 8}, "max_words"),
        ({"n": 2, "seed": -3}, "seed"),
        ({"n": 2, "min_words": 100_000, "max_words": 100_000}, "longer than every"),
    ],
)
def test_sample_texts_validation(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sample_texts(**kwargs)


def test_seed_everything_seeds_all_generators() -> None:
    seed_everything(123)
    first = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    seed_everything(123)
    second = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert first[0] == second[0]
    assert first[1] == second[1]
    assert torch.equal(first[2], second[2])
    with pytest.raises(ValueError, match="seed"):
        seed_everything(2**32)


# ------------------------------------------------------------------ causal LM


def test_tiny_causal_lm_deterministic_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(99)
    expected_next = torch.rand(4)
    torch.manual_seed(99)
    model_a, tok_a = tiny_causal_lm(seed=5)
    assert torch.equal(torch.rand(4), expected_next)  # builder did not consume the global RNG
    model_b, tok_b = tiny_causal_lm(seed=5)
    model_c, _ = tiny_causal_lm(seed=6)
    assert _state_equal(model_a, model_b)
    assert not _state_equal(model_a, model_c)
    assert tok_a.backend_tokenizer.to_str() == tok_b.backend_tokenizer.to_str()


def test_tiny_causal_lm_config_matches_tokenizer() -> None:
    model, tok = tiny_causal_lm(vocab_size=300, max_position_embeddings=64)
    cfg = model.config
    assert not model.training
    assert cfg.vocab_size == len(tok) == 300
    assert (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (3, 1, 2)
    gen = model.generation_config
    assert (gen.pad_token_id, gen.bos_token_id, gen.eos_token_id) == (3, 1, 2)
    assert tok.model_max_length == 64
    assert cfg.num_key_value_heads == 2
    assert cfg.num_attention_heads == 4
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_tiny_causal_lm_forward_and_generate() -> None:
    model, tok = tiny_causal_lm()
    tok.padding_side = "left"
    prompts = ["The with statement is used", "Objects"]
    batch = tok(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(
            **batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        )
    assert out.logits.shape == (2, batch["input_ids"].shape[1], 512)
    assert torch.isfinite(out.loss)
    # Random weights: the loss is near uniform over the vocabulary.
    assert abs(out.loss.item() - np.log(512)) < 1.0
    generated = model.generate(**batch, max_new_tokens=6, do_sample=False)
    assert generated.shape == (2, batch["input_ids"].shape[1] + 6)
    # Left padding plus the attention mask must not change greedy output of the short prompt.
    alone = tok(prompts[1:], return_tensors="pt")
    solo = model.generate(**alone, max_new_tokens=6, do_sample=False)
    assert torch.equal(generated[1, -6:], solo[0, -6:])


def test_tiny_causal_lm_save_and_load(tmp_path: Path) -> None:
    model, tok = tiny_causal_lm(seed=2)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path)
    assert _state_equal(model, loaded)
    text = "Context managers are normally invoked using the with statement."
    assert loaded_tok(text)["input_ids"] == tok(text)["input_ids"]
    assert (loaded_tok.bos_token_id, loaded_tok.eos_token_id, loaded_tok.pad_token_id) == (1, 2, 3)
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(ids).logits, model(ids).logits)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hidden_size": 30}, "divisible by num_heads"),
        ({"num_kv_heads": 3}, "divisible by num_kv_heads"),
        ({"hidden_size": 12, "num_heads": 4}, "even for RoPE"),
        ({"num_layers": 0}, "num_layers must be a positive int"),
        ({"eos_token_id": 600}, "eos_token_id"),
    ],
)
def test_tiny_llama_config_validation(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny_llama_config(**kwargs)


# ------------------------------------------------------------------ BERT


def test_tiny_bert_runs_masks_padding_and_round_trips(tmp_path: Path) -> None:
    model, tok = tiny_bert(seed=1)
    model_again, _ = tiny_bert(seed=1)
    assert _state_equal(model, model_again)
    assert not model.training
    texts = ["a short one", "a much longer sentence about context managers and statements"]
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
        alone = model(**tok(texts[:1], return_tensors="pt")).last_hidden_state
    assert hidden.shape == (2, batch["input_ids"].shape[1], 32)
    # With the attention mask, padding must not change the short text's states.
    torch.testing.assert_close(hidden[0, : alone.shape[1]], alone[0], atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path)
    assert _state_equal(model, loaded)
    assert loaded_tok(texts)["input_ids"] == tok(texts)["input_ids"]
    assert loaded_tok("a b", "c")["token_type_ids"] == tok("a b", "c")["token_type_ids"]
