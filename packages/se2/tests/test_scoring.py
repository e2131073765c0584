"""Tests of papercraft.se2.scoring and .metrics: prompt layout and the feedback maths."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
import torch

from papercraft.core.llm import HFLanguageModel, LoglikelihoodResult
from papercraft.core.testing import tiny_causal_lm
from papercraft.se2.metrics import accuracy_list, binary_f1, example_score, rouge_scores
from papercraft.se2.scoring import Scorer, build_prompt, demonstration, normalized_losses


@dataclass(frozen=True)
class Ex:
    id: str
    question: str
    answer: str
    options: tuple[str, ...] = (" Yes", " No")
    label: int | None = 0


class TableLM:
    """Returns fixed log-probabilities per (context suffix, continuation): hand-made logits."""

    def __init__(self, table: dict[tuple[str, str], tuple[float, int]]) -> None:
        self.table, self.calls = table, 0

    def loglikelihood(
        self, contexts: Sequence[str], continuations: Sequence[str]
    ) -> list[LoglikelihoodResult]:
        self.calls += 1
        out = []
        for context, continuation in zip(contexts, continuations, strict=True):
            key = next(k for k in self.table if context.startswith(k[0]) and k[1] == continuation)
            logprob, n = self.table[key]
            out.append(LoglikelihoodResult(logprob, False, n))
        return out

    def generate(self, prompts: Sequence[str], **kwargs: object) -> list[str]:
        return ["the cat sat\nignored" if p.startswith("good") else "a dog" for p in prompts]


QUERY = Ex("q", "Is it?", " Yes")


def test_prompt_layout_prepends_candidates() -> None:
    a, b = Ex("a", "A  question?", " Yes"), Ex("b", "B?", " No")
    assert demonstration(a) == "A question? Yes"  # double spaces collapsed
    assert build_prompt([b, a], QUERY) == "B? No \n A question? Yes \n Is it?"
    assert build_prompt([], QUERY) == "Is it?"


def test_choice_feedback_matches_hand_computed_losses() -> None:
    # mean NLL = -logprob / tokens: candidate "good": Yes 2/2 = 1.0, No 6/2 = 3.0 → [0.25, 0.75]
    # candidate "bad": Yes 3/1 = 3.0, No 1/1 = 1.0 → [0.75, 0.25]; gold is " Yes" (label 0)
    lm = TableLM({("good", " Yes"): (-2.0, 2), ("good", " No"): (-6.0, 2),
                  ("bad", " Yes"): (-3.0, 1), ("bad", " No"): (-1.0, 1)})  # fmt: skip
    good, bad = Ex("g", "good", " Yes"), Ex("b", "bad", " No")
    (ranked,) = Scorer(lm, "choice", batch_size=3).score([(QUERY, [], [bad, good])])  # type: ignore[arg-type]
    assert [c.id for c in ranked] == ["g", "b"]
    assert ranked[0].loss == pytest.approx(0.25)
    assert ranked[1].loss == pytest.approx(0.75)
    assert (ranked[0].accurate, ranked[1].accurate) == (1.0, 0.0)
    assert (ranked[0].pred, ranked[1].pred) == (0, 1)
    assert lm.calls == 2  # 4 pairs in batches of 3
    assert normalized_losses([2.0, 6.0, 0.0]) == [0.25, 0.75, 0.0]
    assert normalized_losses([0.0, 0.0]) == [0.0, 0.0]


def test_option_nll_equals_a_manual_forward_pass() -> None:
    model, tokenizer = tiny_causal_lm(seed=0)
    lm = HFLanguageModel(model, tokenizer, batch_size=4, show_progress=False)
    scorer = Scorer(lm, "choice")
    prompts, options = ["The cat is", "Water is"], [(" happy", " a dog"), (" wet", " dry")]
    got = scorer.option_nll(prompts, options)
    for prompt, opts, row in zip(prompts, options, got, strict=True):
        for option, value in zip(opts, row, strict=True):
            ctx, cont = lm.encode_pair(prompt, option)
            ids = torch.tensor([ctx + cont])
            with torch.no_grad():
                logprobs = torch.log_softmax(model(ids).logits[0].float(), -1)
            nll = -sum(float(logprobs[len(ctx) - 1 + i, t]) for i, t in enumerate(cont)) / len(cont)
            assert value == pytest.approx(nll, rel=1e-4)


def test_generation_feedback_is_one_minus_rouge() -> None:
    lm = TableLM({})
    good, bad = Ex("g", "good", " x", options=()), Ex("b", "bad", " y", options=())
    query = Ex("q", "Describe:", " the cat sat", options=(), label=None)
    (ranked,) = Scorer(lm, "generation", metric="rouge").score([(query, [], [bad, good])])  # type: ignore[arg-type]
    assert [c.id for c in ranked] == ["g", "b"]
    assert ranked[0].loss == pytest.approx(0.0)
    assert ranked[0].pred == "the cat sat"
    assert ranked[1].loss == pytest.approx(1.0)


def test_metrics() -> None:
    assert rouge_scores("the cat sat on the mat", "the cat sat")[0] == pytest.approx(
        2 * 0.5 * 1 / 1.5
    )
    r1, r2, rl = rouge_scores("a b c d", "a c b d")
    assert (r1, r2) == (1.0, 0.0)  # no shared bigram
    assert rl == pytest.approx(0.75)  # LCS 3 of 4
    assert rouge_scores("", "x") == (0.0, 0.0, 0.0)
    assert accuracy_list([" Yes", 1], ["Yes ", 2]) == [1, 0]
    assert binary_f1([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert example_score("accuracy", " a ", "a") == 1.0
    with pytest.raises(ValueError, match="metric"):
        example_score("bleu", "a", "a")
    with pytest.raises(ValueError, match="kind"):
        Scorer(TableLM({}), "ranking")  # type: ignore[arg-type]


def test_bad_queries_are_reported() -> None:
    lm = TableLM({("x", " Yes"): (-1.0, 1), ("x", " No"): (-1.0, 1)})
    query = Ex("q", "?", " Yes", label=None)
    with pytest.raises(ValueError, match="gold label"):
        Scorer(lm, "choice").score([(query, [], [Ex("c", "x", " Yes")])])  # type: ignore[arg-type]
