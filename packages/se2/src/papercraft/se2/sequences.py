"""Growing example sequences with LLM feedback (Se², Section 3.1; official ``find_random_step*``).

For every training query:

1. **step 1** — sample ``L`` candidates at random from the pool (never the query itself) and
   score each one alone in front of the query (:class:`~papercraft.se2.scoring.Scorer`);
2. **step s > 1** — pick one candidate of the previous step by its rank, drawn from an
   exponential distribution (``p(r) ∝ e^{-r}``, about 0.63 on the top rank), prepend it to the
   chosen examples, sample ``L`` fresh candidates (not the query, not a chosen one) and score
   each in front of the new sequence;

up to ``steps`` steps (3 in the paper). Every step of every query is one JSON line of the cache
(query id, step, chosen ids in prompt order, the candidates ranked by loss), appended as soon as
its batch is scored; a rerun reads the cache and scores only what is missing. The random draws
of a step come from ``random.Random(f"{seed}/{query id}/{step}")``, so an interrupted and resumed
run produces exactly the records of an uninterrupted one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from papercraft.core.data import JsonlAppender, read_jsonl
from papercraft.core.io import StrPath
from papercraft.se2.scoring import CandidateScore, ExampleLike, Scorer

__all__ = [
    "CACHE_FORMAT",
    "ScoredStep",
    "build_sequences",
    "exponential_rank_probs",
    "sample_rank",
]

CACHE_FORMAT = "papercraft-se2-scores/1"


def exponential_rank_probs(length: int) -> list[float]:
    """``p(r) = e^{-r} / Σ_{i<L} e^{-i}`` for ranks ``r = 0 … L-1`` (``scipy.stats.expon.pdf``)."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive int, got {length!r}")
    weights = [math.exp(-r) for r in range(length)]
    total = sum(weights)
    return [w / total for w in weights]


def sample_rank(rng: random.Random, length: int) -> int:
    """Draw a rank from :func:`exponential_rank_probs`."""
    probs = exponential_rank_probs(length)
    return rng.choices(range(length), weights=probs)[0]


@dataclass(frozen=True)
class ScoredStep:
    """One scored step of one query.

    Args:
        query (str): the query's example id.
        step (int): 1-based step (the number of examples in front of the query once a
            candidate is added).
        chosen (tuple[str, ...]): ids already chosen, in prompt order (the first is farthest
            from the query).
        ranked (tuple[CandidateScore, ...]): the candidates, best first.
    """

    query: str
    step: int
    chosen: tuple[str, ...]
    ranked: tuple[CandidateScore, ...]

    def to_record(self) -> dict[str, Any]:
        """The cache line."""
        return {
            "format": CACHE_FORMAT,
            "query": self.query,
            "step": self.step,
            "chosen": list(self.chosen),
            "ranked": [[c.id, c.loss, c.accurate, c.pred] for c in self.ranked],
        }

    @classmethod
    def from_record(cls, record: Any, where: str = "record") -> ScoredStep:
        """Parse a cache line (checks the format tag)."""
        if not isinstance(record, dict) or record.get("format") != CACHE_FORMAT:
            raise ValueError(f"{where} is not a {CACHE_FORMAT} record")
        ranked = tuple(CandidateScore(str(i), float(loss), float(acc), pred)
                       for i, loss, acc, pred in record["ranked"])  # fmt: skip
        return cls(str(record["query"]), int(record["step"]),
                   tuple(str(c) for c in record["chosen"]), ranked)  # fmt: skip


def _check(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def build_sequences(
    scorer: Scorer,
    queries: Sequence[ExampleLike],
    pool: Sequence[ExampleLike],
    *,
    num_candidates: int = 50,
    steps: int = 3,
    seed: int = 0,
    cache_path: StrPath | None = None,
    queries_per_batch: int = 8,
) -> list[ScoredStep]:
    """Score candidate sequences for every query (see the module docstring).

    Args:
        scorer (Scorer): the LLM-feedback scorer.
        queries (Sequence[Example]): the training queries (usually the pool itself).
        pool (Sequence[Example]): where candidates come from.
        num_candidates (int): ``L``, candidates per step (50 in the paper; at most the pool
            size minus the query and the chosen ones). Default: 50.
        steps (int): sequence length (3 in the paper). Default: 3.
        seed (int): base seed of the random draws. Default: 0.
        cache_path (str | PathLike | None): JSONL cache; existing records are reused.
            Default: None.
        queries_per_batch (int): queries scored together in one ``Scorer.score`` call.
            Default: 8.

    Returns:
        list[ScoredStep]: every step of every query, in (query, step) order.

    Raises:
        ValueError: on bad arguments or duplicate ids (before any scoring).
    """
    _check("num_candidates", num_candidates, 1)
    _check("steps", steps, 1)
    _check("queries_per_batch", queries_per_batch, 1)
    by_id = {ex.id: ex for ex in pool}
    if len(by_id) != len(pool):
        raise ValueError("pool holds duplicate example ids")
    if len({q.id for q in queries}) != len(queries):
        raise ValueError("queries hold duplicate example ids")
    if len(pool) < 2:
        raise ValueError("pool must hold at least 2 examples")
    done: dict[tuple[str, int], ScoredStep] = {}
    path = Path(cache_path) if cache_path is not None else None
    if path is not None and path.exists():
        for n, record in enumerate(read_jsonl(path), start=1):
            cached = ScoredStep.from_record(record, where=f"cache_path {path}:{n}")
            done[(cached.query, cached.step)] = cached
    log = JsonlAppender(path) if path is not None else None
    ids = list(by_id)
    try:
        previous: dict[str, ScoredStep] = {}
        for step in range(1, steps + 1):
            pending: list[tuple[ExampleLike, tuple[str, ...], list[ExampleLike]]] = []
            for query in queries:
                if (query.id, step) in done:
                    previous[query.id] = done[(query.id, step)]
                    continue
                rng = random.Random(f"{seed}/{query.id}/{step}")
                chosen: tuple[str, ...] = ()
                if step > 1:
                    before = previous.get(query.id)
                    if before is None or not before.ranked:
                        continue
                    pick = before.ranked[sample_rank(rng, len(before.ranked))]
                    chosen = (pick.id, *before.chosen)  # prepend: farthest from the query
                banned = {query.id, *chosen}
                free = [i for i in ids if i not in banned]
                if not free:
                    continue
                sampled = rng.sample(free, k=min(num_candidates, len(free)))
                pending.append((query, chosen, [by_id[i] for i in sampled]))
            for start in range(0, len(pending), queries_per_batch):
                batch = pending[start : start + queries_per_batch]
                requests = [(q, [by_id[c] for c in chosen], cands) for q, chosen, cands in batch]
                for (query, chosen, _), ranked in zip(batch, scorer.score(requests), strict=True):
                    result = ScoredStep(query.id, step, chosen, tuple(ranked))
                    done[(query.id, step)] = previous[query.id] = result
                    if log is not None:
                        log.append(result.to_record())
    finally:
        if log is not None:
            log.close()
    return [done[(q.id, s)] for q in queries for s in range(1, steps + 1) if (q.id, s) in done]
