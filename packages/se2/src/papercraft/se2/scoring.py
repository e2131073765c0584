"""LLM feedback: how much each candidate example helps the model answer a query.

Se² (arXiv 2402.13874), Section 3.1, and the official ``scorer.py`` / ``scorer_dsr.py``:

- a demonstration is ``question + answer`` with runs of spaces collapsed; demonstrations are
  joined by ``" \\n "`` and the query's question follows the last one;
- the candidate being scored is **prepended** to the examples chosen so far, so a sequence
  grows outward from the input: ``candidate \\n chosen_1 \\n … \\n question``;
- classification / multiple choice: the mean token NLL of every option given that prompt,
  L1-normalised across the options; the candidate's loss is the gold option's normalised NLL
  and it is *accurate* when the gold option has the lowest NLL;
- generation: greedy decoding to the first newline (at most 100 tokens); the loss is
  ``1 - score`` (ROUGE-1 F or exact match).

Everything goes through the core's :class:`~papercraft.core.llm.LanguageModel`
(``loglikelihood`` / ``generate``), batched across candidates and queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from papercraft.core.llm import LanguageModel
from papercraft.se2.metrics import example_score
from papercraft.se2.tasks import DEMO_SEPARATOR, collapse_spaces

__all__ = [
    "JOIN",
    "CandidateScore",
    "ExampleLike",
    "Scorer",
    "build_prompt",
    "demonstration",
    "normalized_losses",
    "remove_double_space",
]

#: what separates demonstrations (and the last one from the question).
JOIN = DEMO_SEPARATOR


class ExampleLike(Protocol):
    """What scoring needs of an example (see :class:`papercraft.se2.tasks.Example`)."""

    @property
    def id(self) -> str: ...
    @property
    def question(self) -> str: ...
    @property
    def answer(self) -> str: ...
    @property
    def options(self) -> tuple[str, ...]: ...
    @property
    def label(self) -> int | None: ...


#: collapse runs of spaces into one (the official ``remove_double_space``).
remove_double_space = collapse_spaces


def demonstration(example: ExampleLike) -> str:
    """An example shown in a prompt: its question followed by its answer."""
    return remove_double_space(f"{example.question}{example.answer}")


def build_prompt(demos: Sequence[ExampleLike], query: ExampleLike) -> str:
    """``demo_1 \\n demo_2 \\n … \\n question`` (demos in prompt order, the last next to it)."""
    return remove_double_space("".join(demonstration(d) + JOIN for d in demos) + query.question)


def normalized_losses(losses: Sequence[float]) -> list[float]:
    """L1-normalise option losses (``torch.nn.functional.normalize(p=1)``, eps 1e-12)."""
    total = max(sum(abs(x) for x in losses), 1e-12)
    return [x / total for x in losses]


@dataclass(frozen=True)
class CandidateScore:
    """The LLM feedback for one candidate.

    Args:
        id (str): the candidate's example id.
        loss (float): gold option's normalised NLL (choice) or ``1 - score`` (generation);
            lower is better.
        accurate (float): 1.0 when the gold option is the argmin (choice), or the generation
            score.
        pred (Any): the predicted option index or generated text.
    """

    id: str
    loss: float
    accurate: float
    pred: Any


class Scorer:
    """Scores candidates for queries with a language model (batched).

    Args:
        lm (LanguageModel): the scoring model (``loglikelihood`` for choice tasks: a local
            transformers model, or a completions server that returns prompt log-probs).
        kind (str): ``"choice"`` or ``"generation"``.
        metric (str): for generation, ``"rouge"`` or ``"accuracy"``. Default: "rouge".
        batch_size (int): requests per model call. Default: 32.
        max_new_tokens (int): generation budget (official: 100). Default: 100.
    """

    def __init__(
        self,
        lm: LanguageModel,
        kind: str,
        *,
        metric: str = "rouge",
        batch_size: int = 32,
        max_new_tokens: int = 100,
    ) -> None:
        if kind not in ("choice", "generation"):
            raise ValueError(f"kind must be 'choice' or 'generation', got {kind!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.lm, self.kind, self.metric = lm, kind, metric
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens

    def option_nll(
        self, prompts: Sequence[str], options: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        """Mean token NLL of every option after each prompt."""
        contexts, continuations, owners = [], [], []
        for i, (prompt, opts) in enumerate(zip(prompts, options, strict=True)):
            if not opts:
                raise ValueError(f"options[{i}] is empty; a choice task needs options")
            for option in opts:
                context = prompt.rstrip(" ") if option.startswith(" ") else prompt
                contexts.append(context)
                continuations.append(remove_double_space(option))
                owners.append(i)
        out: list[list[float]] = [[] for _ in prompts]
        for start in range(0, len(contexts), self.batch_size):
            stop = start + self.batch_size
            results = self.lm.loglikelihood(contexts[start:stop], continuations[start:stop])
            for owner, result in zip(owners[start:stop], results, strict=True):
                out[owner].append(-result.logprob / max(result.num_tokens, 1))
        return out

    def generate(self, prompts: Sequence[str]) -> list[str]:
        """Greedy continuations, cut at the first newline."""
        out: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = list(prompts[start : start + self.batch_size])
            texts = self.lm.generate(batch, max_new_tokens=self.max_new_tokens, temperature=0.0,
                                     stop=["\n"])  # fmt: skip
            out.extend(t.split("\n")[0] for t in texts)
        return out

    def score(
        self,
        requests: Sequence[tuple[ExampleLike, Sequence[ExampleLike], Sequence[ExampleLike]]],
    ) -> list[list[CandidateScore]]:
        """Score every (query, chosen, candidates) request; each result sorted by loss.

        Args:
            requests: per request the query, the examples chosen so far (prompt order) and the
                candidates to try in front of them.

        Returns:
            list[list[CandidateScore]]: per request, its candidates from best (lowest loss) to
            worst; ties keep the candidates' order.
        """
        prompts: list[str] = []
        owners: list[tuple[int, ExampleLike]] = []
        for r, (query, chosen, candidates) in enumerate(requests):
            for cand in candidates:
                prompts.append(build_prompt([cand, *chosen], query))
                owners.append((r, cand))
        out: list[list[CandidateScore]] = [[] for _ in requests]
        if self.kind == "choice":
            options = [requests[r][0].options for r, _ in owners]
            losses = self.option_nll(prompts, options)
            for (r, cand), loss in zip(owners, losses, strict=True):
                label = requests[r][0].label
                if label is None or not 0 <= label < len(loss):
                    raise ValueError(f"query {requests[r][0].id!r} has no valid gold label")
                normed = normalized_losses(loss)
                pred = min(range(len(loss)), key=loss.__getitem__)
                out[r].append(CandidateScore(cand.id, normed[label], float(pred == label), pred))
        else:
            texts = self.generate(prompts)
            for (r, cand), text in zip(owners, texts, strict=True):
                score = example_score(self.metric, text, requests[r][0].answer)
                out[r].append(CandidateScore(cand.id, 1.0 - score, score, text))
        for scores in out:
            scores.sort(key=lambda s: s.loss)
        return out
