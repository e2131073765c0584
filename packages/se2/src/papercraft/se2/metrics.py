"""The metrics of the Se² tasks: accuracy, binary F1 and ROUGE-1/2/L.

They follow the official ``src/utils/metric.py``: ``simple_accuracy`` compares stripped strings
(or option indices); F1 is the binary F1 of the positive class (``sklearn.metrics.f1_score``'s
default); ROUGE is the F-measure of unigrams, bigrams and the longest common subsequence over
lower-cased word tokens (as pltrdy's ``rouge`` package computes it). While scoring candidates,
generation tasks use ROUGE-1 F (or accuracy) and the loss ``1 - score``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

__all__ = ["METRICS", "accuracy_list", "binary_f1", "example_score", "rouge_scores", "tokens"]

#: the metric names a task may declare.
METRICS = ("accuracy", "f1", "rouge")


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits and underscores)."""
    return re.findall(r"\w+", text.lower())


def accuracy_list(preds: Sequence[str | int], labels: Sequence[str | int]) -> list[int]:
    """1 where the prediction equals the label (strings compared stripped)."""
    if len(preds) != len(labels):
        raise ValueError(f"preds and labels differ in length: {len(preds)} vs {len(labels)}")
    out = []
    for pred, label in zip(preds, labels, strict=True):
        if isinstance(pred, str) and isinstance(label, str):
            out.append(int(pred.strip() == label.strip()))
        else:
            out.append(int(pred == label))
    return out


def binary_f1(preds: Sequence[int], labels: Sequence[int], positive: int = 1) -> float:
    """F1 of the positive class over a whole set (0 when it is never predicted nor present)."""
    if len(preds) != len(labels):
        raise ValueError(f"preds and labels differ in length: {len(preds)} vs {len(labels)}")
    tp = sum(1 for p, y in zip(preds, labels, strict=True) if p == positive and y == positive)
    fp = sum(1 for p, y in zip(preds, labels, strict=True) if p == positive and y != positive)
    fn = sum(1 for p, y in zip(preds, labels, strict=True) if p != positive and y == positive)
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def _f(overlap: int, n_pred: int, n_ref: int) -> float:
    if overlap == 0 or n_pred == 0 or n_ref == 0:
        return 0.0
    precision, recall = overlap / n_pred, overlap / n_ref
    return 2 * precision * recall / (precision + recall)


def _ngrams(words: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def _lcs(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_scores(pred: str, reference: str) -> tuple[float, float, float]:
    """(ROUGE-1 F, ROUGE-2 F, ROUGE-L F) of one prediction against one reference."""
    p, r = tokens(pred), tokens(reference)
    out = []
    for n in (1, 2):
        a, b = _ngrams(p, n), _ngrams(r, n)
        out.append(_f(sum((a & b).values()), sum(a.values()), sum(b.values())))
    out.append(_f(_lcs(p, r), len(p), len(r)))
    return out[0], out[1], out[2]


def example_score(metric: str, pred: str, reference: str) -> float:
    """The per-example score used to rank candidates of a generation task (higher is better).

    Args:
        metric (str): ``"rouge"`` (ROUGE-1 F, as the official scorer) or ``"accuracy"``.
        pred (str): the generated text.
        reference (str): the gold answer.
    """
    if metric == "rouge":
        return rouge_scores(pred, reference)[0]
    if metric in ("accuracy", "f1"):
        return float(pred.strip() == reference.strip())
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
