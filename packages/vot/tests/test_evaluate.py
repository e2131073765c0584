"""Tests of papercraft.vot.evaluate and the reference responders."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from papercraft.core.data import read_jsonl
from papercraft.core.llm import HFLanguageModel, LanguageModel, LogprobsNotSupportedError
from papercraft.core.testing import tiny_causal_lm
from papercraft.vot.dataset import Instance, build_task
from papercraft.vot.evaluate import METRICS, evaluate, select, wilson_interval
from papercraft.vot.prompts import TASKS
from papercraft.vot.responders import OracleModel, PerpendicularModel, RandomModel


@cache
def _instances(task: str, images: bool = False) -> tuple[Instance, ...]:
    return tuple(build_task(task, images=images))


@pytest.mark.parametrize("task", TASKS)
def test_oracle_scores_100_with_complete_tracking(task: str) -> None:
    pool = list(_instances(task))
    for setting in ("cot", "no-viz", "vot"):
        result = evaluate(OracleModel(pool), task, setting, instances=pool, batch_size=64)
        overall = result.rows[-1]
        assert overall["n"] == len(pool)
        for metric in METRICS[task]:
            assert overall[metric] == 1.0, (setting, metric)
        assert overall["parse_fail"] == 0.0
        assert overall["tracking_complete"] == 1.0
        assert overall["tracking_partial"] == 1.0
    assert isinstance(OracleModel(pool), LanguageModel)


@pytest.mark.parametrize("task", TASKS[:3])
def test_oracle_multimodal_through_chat(task: str) -> None:
    pool = [i for i in _instances(task, True) if i.difficulty in (2, 3)]
    result = evaluate(OracleModel(pool), task, "multimodal-cot", instances=pool, limit=40)
    assert result.rows[-1]["n"] == min(40, len(pool))
    assert all(result.overall(m) == 1.0 for m in METRICS[task])


def test_guessers_match_their_analytic_baselines() -> None:
    steps = list(_instances("next-step-prediction"))
    for model, expected in ((RandomModel(steps, seed=1), 0.25), (PerpendicularModel(steps), 0.5)):
        row = evaluate(model, "next-step", "vot", instances=steps).rows[-1]
        assert row["accuracy_low"] <= expected <= row["accuracy_high"]
        assert abs(row["accuracy"] - expected) < 0.04
    tiles = list(_instances("visual-tiling"))
    row = evaluate(RandomModel(tiles), "tiling", "cot", instances=tiles).rows[-1]
    assert row["verbal_accuracy_low"] <= 1 / 3 <= row["verbal_accuracy_high"]
    routes = list(_instances("route-planning"))
    row = evaluate(RandomModel(routes), "route", "cot", instances=routes).rows[-1]
    assert row["success_rate"] < 0.05
    assert 0 < row["completing_rate"] < 0.3
    with pytest.raises(LogprobsNotSupportedError):
        RandomModel(routes).loglikelihood(["a"], ["b"])


class _Counting:
    """Wraps a model and counts the prompts it was sent."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seen = inner, 0

    def generate(self, prompts: Sequence[str], **kwargs: Any) -> list[str]:
        self.seen += len(prompts)
        return list(self.inner.generate(prompts, **kwargs))


def test_resumable_log(tmp_path: Path) -> None:
    pool = list(_instances("next-step-prediction"))
    log = tmp_path / "log.jsonl"
    first = _Counting(OracleModel(pool))
    evaluate(first, "next-step", "vot", instances=pool, limit=10, log_path=log)  # type: ignore[arg-type]
    assert first.seen == 10
    assert len(read_jsonl(log)) == 10
    with log.open("ab") as handle:  # a crash in the middle of a write
        handle.write(b'{"format": "papercraft-vot-eval/1", "uid": "tor')
    second = _Counting(OracleModel(pool))
    with pytest.warns(RuntimeWarning, match="torn final line"):
        result = evaluate(second, "next-step", "vot", instances=pool, limit=20, log_path=log)  # type: ignore[arg-type]
    assert second.seen == 10  # the first ten came from the log
    assert result.rows[-1]["n"] == 20
    assert result.overall("accuracy") == 1.0
    records = read_jsonl(log)
    assert len(records) == 20
    assert len({r["uid"] for r in records}) == 20
    record = records[0]
    assert record["prompt"].endswith("Visualize the state after each reasoning step.")
    assert record["parsed"] == record["answer"]
    assert record["scores"]["accuracy"] == 1.0
    third = _Counting(OracleModel(pool))
    evaluate(third, "next-step", "vot", instances=pool, limit=20, log_path=log)  # type: ignore[arg-type]
    assert third.seen == 0
    with pytest.raises(ValueError, match="not next-step-prediction/cot"):
        evaluate(OracleModel(pool), "next-step", "cot", instances=pool, log_path=log)


def test_multimodal_log_elides_images(tmp_path: Path) -> None:
    pool = [i for i in _instances("route-planning", True) if i.difficulty == 2]
    log = tmp_path / "mm.jsonl"
    evaluate(OracleModel(pool), "route", "multimodal-cot", instances=pool, log_path=log)
    (record, *_) = read_jsonl(log)
    parts = record["prompt"][0]["content"]
    assert {"type": "image_url", "image_url": {"url": "<image>"}} in parts


def test_a_real_tiny_model_runs_end_to_end(tmp_path: Path) -> None:
    model, tokenizer = tiny_causal_lm(seed=0)
    lm = HFLanguageModel(model, tokenizer, batch_size=4, show_progress=False)
    pool = list(_instances("next-step-prediction"))
    result = evaluate(lm, "next-step", "vot", instances=pool, limit=6, max_new_tokens=12,
                      batch_size=3, log_path=tmp_path / "tiny.jsonl")  # fmt: skip
    assert result.rows[-1]["n"] == 6
    assert all(isinstance(r["response"], str) for r in result.records)
    assert 0.0 <= result.overall("accuracy") <= 1.0
    assert "| all | 6 |" in result.to_markdown()


def test_select_spreads_a_limit_over_levels() -> None:
    pool = list(_instances("next-step-prediction"))
    picked = select(pool, limit=12)
    assert sorted({i.difficulty for i in picked}) == [2, 3, 4, 5, 6, 7]
    assert [i.uid for i in picked] == [i.uid for i in pool if i in picked]  # order kept
    assert {i.difficulty for i in select(pool, levels=[3])} == {3}
    with pytest.raises(ValueError, match="limit"):
        select(pool, limit=0)
    with pytest.raises(ValueError, match="levels"):
        select(pool, levels=[9])


def test_bad_arguments_fail_before_any_call() -> None:
    pool = list(_instances("route-planning"))
    model = _Counting(OracleModel(pool))
    with pytest.raises(ValueError, match="setting"):
        evaluate(model, "route", "tot", instances=pool)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(model, "route", "vot", instances=pool, batch_size=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="desc_multimodal"):
        evaluate(model, "route", "multimodal-cot", instances=pool)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no image"):
        evaluate(model, "nl-nav", "multimodal-cot")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="instances must all be"):
        evaluate(model, "tiling", "vot", instances=pool)  # type: ignore[arg-type]
    assert model.seen == 0


def test_wilson_interval() -> None:
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3)
    assert high == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 0.0)
