"""The whole Se² pipeline in four calls: score → train → select → compare.

>>> steps = score_pool(lm, "choice", pool, cache_path="scores.jsonl")   # LLM feedback
>>> retriever = train_on_scores(BiEncoder.from_backbone(path), steps, pool, "retriever")
>>> results = compare_selectors(lm, "choice", "accuracy", pool, tests, retriever,
...                             similarity=BiEncoder.from_backbone(path, shared=True,
...                                                                pooling="mean"))

:func:`compare_selectors` runs Se² (beam search), random, BM25 and plain similarity with the
same LM on the same test set in one run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from papercraft.core.io import StrPath
from papercraft.core.llm import LanguageModel
from papercraft.se2.evaluate import SelectorResult, evaluate_selections
from papercraft.se2.retriever import BiEncoder, train_retriever, training_examples
from papercraft.se2.scoring import ExampleLike, Scorer
from papercraft.se2.search import (
    BM25Selector,
    PoolIndex,
    Selection,
    beam_search,
    select_random,
    select_similarity,
)
from papercraft.se2.sequences import ScoredStep, build_sequences

__all__ = ["SELECTORS", "compare_selectors", "score_pool", "select", "train_on_scores"]

#: the selectors :func:`select` knows.
SELECTORS = ("se2", "random", "bm25", "similarity")


def score_pool(
    lm: LanguageModel,
    kind: str,
    pool: Sequence[ExampleLike],
    *,
    queries: Sequence[ExampleLike] | None = None,
    metric: str = "rouge",
    num_candidates: int = 50,
    steps: int = 3,
    seed: int = 0,
    cache_path: StrPath | None = None,
    batch_size: int = 32,
) -> list[ScoredStep]:
    """LLM feedback for sequences of up to ``steps`` examples (queries default to the pool)."""
    scorer = Scorer(lm, kind, metric=metric, batch_size=batch_size)
    return build_sequences(scorer, pool if queries is None else queries, pool,
                           num_candidates=num_candidates, steps=steps, seed=seed,
                           cache_path=cache_path)  # fmt: skip


def train_on_scores(
    retriever: BiEncoder,
    steps: Sequence[ScoredStep],
    pool: Sequence[ExampleLike],
    output_dir: StrPath,
    *,
    queries: Sequence[ExampleLike] | None = None,
    n_hard: int = 20,
    n_random: int = 20,
    seed: int = 0,
    **train_args: Any,
) -> BiEncoder:
    """Build the DPR examples from scored steps and train the retriever on them."""
    examples = training_examples(steps, pool, queries, n_hard=n_hard, n_random=n_random,
                                 seed=seed)  # fmt: skip
    return train_retriever(retriever, examples, output_dir, seed=seed, **train_args)


def select(
    method: str,
    pool: Sequence[ExampleLike],
    tests: Sequence[ExampleLike],
    *,
    retriever: BiEncoder | None = None,
    shots: int = 3,
    beam: int = 3,
    seed: int = 0,
    exclude_self: bool = False,
) -> list[Selection]:
    """Demonstrations for every test example with one selector.

    Args:
        method (str): ``se2`` (beam search; needs the trained ``retriever``), ``random``,
            ``bm25`` or ``similarity`` (dense top-k; needs an encoder as ``retriever``).
        pool (Sequence[Example]): candidates.
        tests (Sequence[Example]): queries.
        retriever (BiEncoder | None): see ``method``.
        shots (int): demonstrations per query. Default: 3.
        beam (int): beam width for ``se2``. Default: 3.
        seed (int): seed of ``random``. Default: 0.
        exclude_self (bool): skip the pool example with the query's id (for queries drawn from
            the pool). Default: False.
    """
    if method not in SELECTORS:
        raise ValueError(f"method must be one of {SELECTORS}, got {method!r}")
    if method == "random":
        return select_random(pool, tests, shots=shots, seed=seed, exclude_self=exclude_self)
    if method == "bm25":
        return BM25Selector(pool).select(tests, shots=shots, exclude_self=exclude_self)
    if retriever is None:
        raise ValueError(f"method {method!r} needs a retriever")
    index = PoolIndex(retriever, pool)
    if method == "se2":
        return beam_search(index, tests, shots=shots, beam=beam, exclude_self=exclude_self)
    return select_similarity(index, tests, shots=shots, exclude_self=exclude_self)


def compare_selectors(
    lm: LanguageModel,
    kind: str,
    metric: str,
    pool: Sequence[ExampleLike],
    tests: Sequence[ExampleLike],
    retriever: BiEncoder,
    *,
    similarity: BiEncoder | None = None,
    shots: int = 3,
    beam: int = 3,
    seed: int = 0,
    batch_size: int = 32,
) -> list[SelectorResult]:
    """Se², random, BM25 and similarity (when an encoder is given), same LM and test set."""
    selections = {
        "se2": select("se2", pool, tests, retriever=retriever, shots=shots, beam=beam),
        "random": select("random", pool, tests, shots=shots, seed=seed),
        "bm25": select("bm25", pool, tests, shots=shots),
    }
    if similarity is not None:
        selections["similarity"] = select("similarity", pool, tests, retriever=similarity,
                                          shots=shots)  # fmt: skip
    return evaluate_selections(lm, kind, metric, pool, tests, selections, batch_size=batch_size)
