"""Selecting demonstrations: Se²'s beam search and the baselines it is compared with.

- :func:`beam_search` (official ``dense_retriever_beam_score.py``): the pool's demonstrations
  sit in a FAISS inner-product index. At each of ``shots`` steps every beam's whole current
  sequence (demonstrations in prompt order, then the question) is the query; its top
  ``beam + step + 5`` hits, minus the examples already in it, are prepended one at a time
  (at most ``beam`` per beam), each new sequence scoring the running sum of retrieval scores;
  the best ``beam`` sequences go on (at the first step only the single initial beam is
  expanded). The best sequence after ``shots`` steps is returned.
- :func:`exhaustive_search`: every ordered sequence of distinct examples, scored the same way
  (beam search equals it when the beam covers every sequence).
- Baselines: :func:`select_random`, :func:`select_bm25` (``bm25s`` over the demonstrations,
  query = the question) and :func:`select_similarity` (dense top-k of the question alone, no
  sequence context), each placing the best match next to the question.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from papercraft.se2.retriever import BiEncoder, query_text
from papercraft.se2.scoring import ExampleLike, demonstration

__all__ = [
    "BM25Selector",
    "PoolIndex",
    "Selection",
    "beam_search",
    "exhaustive_search",
    "select_random",
    "select_similarity",
]


@dataclass(frozen=True)
class Selection:
    """Chosen demonstrations for one query, in prompt order (the last next to the question)."""

    ids: tuple[str, ...]
    score: float = 0.0


class PoolIndex:
    """A flat inner-product FAISS index over the pool's demonstrations (passage encoder).

    Args:
        retriever (BiEncoder): encodes the pool and, later, the queries.
        pool (Sequence[Example]): the examples to select from.
        batch_size (int): texts per encoder call. Default: 64.
    """

    def __init__(
        self, retriever: BiEncoder, pool: Sequence[ExampleLike], *, batch_size: int = 64
    ) -> None:
        import faiss

        if not pool:
            raise ValueError("pool must not be empty")
        self.retriever, self.pool = retriever, list(pool)
        self.by_id = {ex.id: ex for ex in self.pool}
        if len(self.by_id) != len(self.pool):
            raise ValueError("pool holds duplicate example ids")
        self.batch_size = batch_size
        vectors = retriever.encode([demonstration(ex) for ex in self.pool], "passage",
                                   batch_size=batch_size).numpy().astype(np.float32)  # fmt: skip
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(np.ascontiguousarray(vectors))

    def search(self, texts: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, pool positions) of the top ``k`` for each query text, best first."""
        vectors = self.retriever.encode(list(texts), "query", batch_size=self.batch_size)
        k = min(k, len(self.pool))
        scores, positions = self.index.search(
            np.ascontiguousarray(vectors.numpy(), dtype=np.float32), k
        )
        return scores, positions


def beam_search(
    index: PoolIndex,
    queries: Sequence[ExampleLike],
    *,
    shots: int = 3,
    beam: int = 3,
    exclude_self: bool = True,
) -> list[Selection]:
    """Se²'s beam search for every query (batched over queries and beams).

    Args:
        index (PoolIndex): the pool index.
        queries (Sequence[Example]): test queries.
        shots (int): demonstrations per query (paper: 3). Default: 3.
        beam (int): beam width (paper: 3). Default: 3.
        exclude_self (bool): never select the query's own id (when it is in the pool).
            Default: True.

    Returns:
        list[Selection]: the best sequence per query.
    """
    for name, value in (("shots", shots), ("beam", beam)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    # a beam: (ids in prompt order, running score)
    beams: list[list[tuple[tuple[str, ...], float]]] = [[((), 0.0)] for _ in queries]
    for step in range(shots):
        jobs = [(q, b) for q in range(len(queries)) for b in range(len(beams[q]))]
        texts = [query_text([index.by_id[i] for i in beams[q][b][0]], queries[q]) for q, b in jobs]
        scores, positions = index.search(texts, beam + step + 5)
        candidates: list[dict[tuple[str, ...], float]] = [{} for _ in queries]
        for (q, b), row_scores, row_pos in zip(jobs, scores, positions, strict=True):
            ids, total = beams[q][b]
            banned = {*ids, queries[q].id} if exclude_self else set(ids)
            added = 0
            for score, pos in zip(row_scores, row_pos, strict=True):
                if pos < 0:
                    continue
                doc = index.pool[int(pos)].id
                if doc in banned:
                    continue
                new = (doc, *ids)
                if new not in candidates[q]:
                    candidates[q][new] = total + float(score)
                    added += 1
                if added == beam:
                    break
        for q in range(len(queries)):
            ranked = sorted(candidates[q].items(), key=lambda item: item[1], reverse=True)
            beams[q] = ranked[:beam] or beams[q]
    return [Selection(b[0][0], b[0][1]) for b in beams]


def exhaustive_search(
    index: PoolIndex, query: ExampleLike, *, shots: int = 3, exclude_self: bool = True
) -> Selection:
    """The best ordered sequence of ``shots`` distinct pool examples under the beam score."""
    best = Selection((), float("-inf"))
    ids = [ex.id for ex in index.pool if not (exclude_self and ex.id == query.id)]
    for order in itertools.permutations(ids, shots):  # order[0] is chosen first
        prompt: tuple[str, ...] = ()
        total = 0.0
        for doc in order:
            vec = index.retriever.encode(
                [query_text([index.by_id[i] for i in prompt], query)], "query"
            )
            passage = index.index.reconstruct(
                next(p for p, e in enumerate(index.pool) if e.id == doc)
            )
            total += float(vec.numpy()[0] @ passage)
            prompt = (doc, *prompt)
        if total > best.score:
            best = Selection(prompt, total)
    return best


def select_random(
    pool: Sequence[ExampleLike],
    queries: Sequence[ExampleLike],
    *,
    shots: int = 3,
    seed: int = 0,
    exclude_self: bool = True,
) -> list[Selection]:
    """``shots`` random pool examples per query, seeded per query (``exclude_self``: not the
    pool example that has the query's id)."""
    out = []
    for query in queries:
        rng = random.Random(f"{seed}/{query.id}")
        free = [ex.id for ex in pool if not (exclude_self and ex.id == query.id)]
        out.append(Selection(tuple(rng.sample(free, k=min(shots, len(free))))))
    return out


class BM25Selector:
    """BM25 (``bm25s``, whitespace tokens, lower-cased) over the pool's demonstrations."""

    def __init__(self, pool: Sequence[ExampleLike]) -> None:
        import bm25s

        self.pool = list(pool)
        self._bm25 = bm25s.BM25()
        self._bm25.index([self._tokens(demonstration(ex)) for ex in self.pool], show_progress=False)

    @staticmethod
    def _tokens(text: str) -> list[str]:
        return text.lower().split() or ["<empty>"]

    def select(
        self, queries: Sequence[ExampleLike], *, shots: int = 3, exclude_self: bool = True
    ) -> list[Selection]:
        """The top ``shots`` per query by BM25 of its question, best placed last."""
        k = min(shots + 1, len(self.pool))
        docs, scores = self._bm25.retrieve([self._tokens(q.question) for q in queries], k=k,
                                           show_progress=False)  # fmt: skip
        out = []
        for query, row, row_scores in zip(queries, docs, scores, strict=True):
            picked = [
                self.pool[int(i)].id
                for i in row
                if not (exclude_self and self.pool[int(i)].id == query.id)
            ][:shots]
            out.append(Selection(tuple(reversed(picked)), float(np.sum(row_scores))))
        return out


def select_similarity(
    index: PoolIndex,
    queries: Sequence[ExampleLike],
    *,
    shots: int = 3,
    exclude_self: bool = True,
) -> list[Selection]:
    """Dense top-``shots`` of the question alone (no sequence context), best placed last."""
    scores, positions = index.search([q.question for q in queries], shots + 1)
    out = []
    for query, row_scores, row in zip(queries, scores, positions, strict=True):
        picked = [
            index.pool[int(p)].id
            for p in row
            if p >= 0 and not (exclude_self and index.pool[int(p)].id == query.id)
        ]
        out.append(Selection(tuple(reversed(picked[:shots])), float(np.sum(row_scores))))
    return out
