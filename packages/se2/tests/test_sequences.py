"""Tests of papercraft.se2.sequences: exponential-rank sampling, growth, caching and resume."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from papercraft.core.data import read_jsonl
from papercraft.core.llm import LoglikelihoodResult
from papercraft.se2.scoring import Scorer
from papercraft.se2.sequences import build_sequences, exponential_rank_probs, sample_rank


@dataclass(frozen=True)
class Ex:
    id: str
    question: str
    answer: str
    options: tuple[str, ...] = (" a", " b")
    label: int | None = 0


class HashLM:
    """Deterministic pseudo log-probabilities from the text; can fail after N calls."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls, self.fail_after = 0, fail_after

    def loglikelihood(
        self, contexts: Sequence[str], continuations: Sequence[str]
    ) -> list[LoglikelihoodResult]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("server went away")
        self.calls += 1
        return [LoglikelihoodResult(-(sum(map(ord, c + o)) % 97) / 10 - 0.1, False, 1)
                for c, o in zip(contexts, continuations, strict=True)]  # fmt: skip


POOL = [Ex(f"p{i}", f"question {i}", " a" if i % 2 else " b", label=i % 2) for i in range(30)]


def test_exponential_rank_distribution() -> None:
    probs = exponential_rank_probs(50)
    assert probs[0] == pytest.approx((1 - math.exp(-1)) / (1 - math.exp(-50)))
    assert probs[0] == pytest.approx(0.632, abs=1e-3)
    assert sum(probs) == pytest.approx(1.0)
    assert all(a / b == pytest.approx(math.e) for a, b in itertools.pairwise(probs))
    rng = random.Random(0)
    counts = Counter(sample_rank(rng, 50) for _ in range(20000))
    chi2 = sum((counts[r] - 20000 * p) ** 2 / (20000 * p) for r, p in enumerate(probs[:5]))
    assert chi2 < 20  # 4 degrees of freedom: p ≈ 5e-4 at 20
    assert counts[0] / 20000 == pytest.approx(0.632, abs=0.02)
    with pytest.raises(ValueError, match="length"):
        exponential_rank_probs(0)


def test_sequences_grow_by_prepending_and_exclude_the_query() -> None:
    steps = build_sequences(Scorer(HashLM(), "choice"), POOL[:6], POOL, num_candidates=8, steps=3)  # type: ignore[arg-type]
    assert [(s.query, s.step) for s in steps[:3]] == [("p0", 1), ("p0", 2), ("p0", 3)]
    for first, second, third in zip(steps[::3], steps[1::3], steps[2::3], strict=True):
        assert first.chosen == ()
        assert len(first.ranked) == 8
        assert len(second.chosen) == 1
        assert second.chosen[0] in {c.id for c in first.ranked}
        assert third.chosen[1:] == second.chosen  # the new pick goes in front
        assert third.chosen[0] in {c.id for c in second.ranked}
        for s in (first, second, third):
            ids = [c.id for c in s.ranked]
            assert s.query not in ids
            assert not set(s.chosen) & set(ids)
            assert [c.loss for c in s.ranked] == sorted(c.loss for c in s.ranked)


def test_resume_after_interruption_gives_identical_scores(tmp_path: Path) -> None:
    full = build_sequences(Scorer(HashLM(), "choice", batch_size=4), POOL[:10], POOL,  # type: ignore[arg-type]
                           num_candidates=6, steps=3, seed=3, queries_per_batch=3)  # fmt: skip
    cache = tmp_path / "scores.jsonl"
    with pytest.raises(RuntimeError, match="went away"):
        build_sequences(Scorer(HashLM(fail_after=25), "choice", batch_size=4), POOL[:10], POOL,  # type: ignore[arg-type]
                        num_candidates=6, steps=3, seed=3, cache_path=cache, queries_per_batch=3)  # fmt: skip
    partial = len(read_jsonl(cache))
    assert 0 < partial < 30
    lm = HashLM()
    resumed = build_sequences(Scorer(lm, "choice", batch_size=4), POOL[:10], POOL,  # type: ignore[arg-type]
                              num_candidates=6, steps=3, seed=3, cache_path=cache,
                              queries_per_batch=3)  # fmt: skip
    assert resumed == full
    assert len(read_jsonl(cache)) == 30
    again = HashLM()
    assert build_sequences(Scorer(again, "choice"), POOL[:10], POOL, num_candidates=6,  # type: ignore[arg-type]
                           steps=3, seed=3, cache_path=cache) == full  # fmt: skip
    assert again.calls == 0  # everything came from the cache


def test_bad_arguments() -> None:
    scorer = Scorer(HashLM(), "choice")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_candidates"):
        build_sequences(scorer, POOL, POOL, num_candidates=0)
    with pytest.raises(ValueError, match="duplicate"):
        build_sequences(scorer, POOL, [*POOL, POOL[0]])
    with pytest.raises(ValueError, match="at least 2"):
        build_sequences(scorer, POOL[:1], POOL[:1])
