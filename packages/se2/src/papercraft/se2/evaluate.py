"""k-shot in-context evaluation of example selectors, with the same LM and test set in one run.

The prompt is the selected demonstrations in prompt order, each followed by ``" \\n "``, then the
test question (:func:`papercraft.se2.scoring.build_prompt`). Choice tasks predict the option with
the lowest mean token NLL; generation tasks decode greedily to the first newline. Scores:
accuracy, binary F1 (``f1`` tasks, plus accuracy) or ROUGE-1/2/L F (``rouge`` tasks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from papercraft.core.llm import LanguageModel
from papercraft.se2.metrics import accuracy_list, binary_f1, rouge_scores
from papercraft.se2.scoring import ExampleLike, Scorer, build_prompt
from papercraft.se2.search import Selection

__all__ = ["SelectorResult", "evaluate_selections", "icl_predictions"]


@dataclass
class SelectorResult:
    """One selector's scores on the test set.

    Attributes:
        name (str): the selector.
        metrics (dict[str, float]): ``accuracy`` (and ``f1``) or ``rouge1/rouge2/rougeL``.
        predictions (list[Any]): per test example, the predicted option index or text.
    """

    name: str
    metrics: dict[str, float]
    predictions: list[Any] = field(default_factory=list, repr=False)


def icl_predictions(
    lm: LanguageModel,
    kind: str,
    pool: Sequence[ExampleLike],
    tests: Sequence[ExampleLike],
    selections: Sequence[Selection],
    *,
    batch_size: int = 32,
    max_new_tokens: int = 100,
) -> list[Any]:
    """Predict every test example with its selected demonstrations."""
    if len(selections) != len(tests):
        raise ValueError(
            f"selections ({len(selections)}) and tests ({len(tests)}) differ in length"
        )
    by_id = {ex.id: ex for ex in pool}
    missing = {i for s in selections for i in s.ids if i not in by_id}
    if missing:
        raise ValueError(f"selections name ids not in the pool: {sorted(missing)[:5]}")
    prompts = [
        build_prompt([by_id[i] for i in s.ids], t) for s, t in zip(selections, tests, strict=True)
    ]
    scorer = Scorer(lm, kind, batch_size=batch_size, max_new_tokens=max_new_tokens)
    if kind == "choice":
        losses = scorer.option_nll(prompts, [t.options for t in tests])
        return [min(range(len(row)), key=row.__getitem__) for row in losses]
    return scorer.generate(prompts)


def _metrics(
    metric: str, kind: str, tests: Sequence[ExampleLike], preds: Sequence[Any]
) -> dict[str, float]:
    if kind == "choice":
        labels = [t.label for t in tests]
        out = {"accuracy": sum(accuracy_list(list(preds), labels)) / len(tests)}  # type: ignore[arg-type]
        if metric == "f1":
            out["f1"] = binary_f1(list(preds), [int(y or 0) for y in labels])
        return out
    if metric == "rouge":
        rows = [rouge_scores(p, t.answer) for p, t in zip(preds, tests, strict=True)]
        return {name: sum(r[i] for r in rows) / len(rows)
                for i, name in enumerate(("rouge1", "rouge2", "rougeL"))}  # fmt: skip
    return {"accuracy": sum(accuracy_list(list(preds), [t.answer for t in tests])) / len(tests)}


def evaluate_selections(
    lm: LanguageModel,
    kind: str,
    metric: str,
    pool: Sequence[ExampleLike],
    tests: Sequence[ExampleLike],
    selections: Mapping[str, Sequence[Selection]],
    *,
    batch_size: int = 32,
    max_new_tokens: int = 100,
) -> list[SelectorResult]:
    """Score each selector's demonstrations with the same LM on the same test set.

    Args:
        lm (LanguageModel): the in-context learner.
        kind (str): ``"choice"`` or ``"generation"``.
        metric (str): ``"accuracy"``, ``"f1"`` or ``"rouge"``.
        pool (Sequence[Example]): where the selected ids come from.
        tests (Sequence[Example]): the test examples.
        selections (Mapping[str, Sequence[Selection]]): selector name → one selection per test.
        batch_size (int): requests per model call. Default: 32.
        max_new_tokens (int): generation budget. Default: 100.

    Returns:
        list[SelectorResult]: in the mapping's order.
    """
    if not tests:
        raise ValueError("tests must not be empty")
    if metric not in ("accuracy", "f1", "rouge"):
        raise ValueError(f"metric must be 'accuracy', 'f1' or 'rouge', got {metric!r}")
    out = []
    for name, chosen in selections.items():
        preds = icl_predictions(lm, kind, pool, tests, chosen, batch_size=batch_size,
                                max_new_tokens=max_new_tokens)  # fmt: skip
        out.append(SelectorResult(name, _metrics(metric, kind, tests, preds), preds))
    return out
