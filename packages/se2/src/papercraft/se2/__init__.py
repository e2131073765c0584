"""papercraft.se2 — Se²: sequential example selection for in-context learning.

Paper: Se²: Sequential Example Selection for In-Context Learning (arXiv 2402.13874,
https://arxiv.org/abs/2402.13874).

- :mod:`~papercraft.se2.tasks` — the 23 task definitions of the paper (templates, options,
  metrics) over data on disk;
- :mod:`~papercraft.se2.scoring` and :mod:`~papercraft.se2.sequences` — LLM feedback on
  candidate sequences through the core's ``LanguageModel``, cached and resumable;
- :mod:`~papercraft.se2.retriever` — the DPR bi-encoder trained on that feedback;
- :mod:`~papercraft.se2.search` — beam search over a FAISS index, and the random, BM25 and
  similarity baselines; :mod:`~papercraft.se2.evaluate` — k-shot ICL scoring;
- :mod:`~papercraft.se2.pipeline` — the four stages in four calls;
  :mod:`~papercraft.se2.synthetic` — a laptop-scale task where selection and order matter.
"""

from __future__ import annotations

from papercraft.se2._version import __version__
from papercraft.se2.evaluate import SelectorResult, evaluate_selections
from papercraft.se2.pipeline import (
    SELECTORS,
    compare_selectors,
    score_pool,
    select,
    train_on_scores,
)
from papercraft.se2.retriever import BiEncoder, dpr_loss, train_retriever, training_examples
from papercraft.se2.scoring import CandidateScore, Scorer, build_prompt
from papercraft.se2.search import PoolIndex, Selection, beam_search
from papercraft.se2.sequences import ScoredStep, build_sequences, exponential_rank_probs
from papercraft.se2.tasks import Example, TaskSpec, get_task, load_examples, register_task

__all__ = [
    "SELECTORS",
    "BiEncoder",
    "CandidateScore",
    "Example",
    "PoolIndex",
    "ScoredStep",
    "Scorer",
    "Selection",
    "SelectorResult",
    "TaskSpec",
    "__version__",
    "beam_search",
    "build_prompt",
    "build_sequences",
    "compare_selectors",
    "dpr_loss",
    "evaluate_selections",
    "exponential_rank_probs",
    "get_task",
    "load_examples",
    "register_task",
    "score_pool",
    "select",
    "train_on_scores",
    "train_retriever",
    "training_examples",
]
