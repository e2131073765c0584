"""The shared Trainer helpers of ``papercraft.core.training``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from papercraft.core.training import (
    close_process_group,
    collate_blocks,
    data_paths,
    finite,
    logged,
    parse_overrides,
    resolve_resume_checkpoint,
)


def test_parse_overrides_reads_json_values_and_keeps_strings() -> None:
    got = parse_overrides(["lr=0.001", "name=tiny", "flags=[1, 2]", "on=true"])
    assert got == {"lr": 0.001, "name": "tiny", "flags": [1, 2], "on": True}
    assert parse_overrides(None) is None
    assert parse_overrides([]) is None
    with pytest.raises(ValueError, match="--set expects KEY=VALUE"):
        parse_overrides(["novalue"])
    with pytest.raises(ValueError, match="--set expects KEY=VALUE"):
        parse_overrides(["=3"])


def test_data_paths_and_resume_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    assert data_paths(tmp_path / "a.txt") == [tmp_path / "a.txt"]
    with pytest.raises(FileNotFoundError, match="missing"):
        data_paths([tmp_path / "a.txt", tmp_path / "missing"])
    with pytest.raises(ValueError, match="non-empty"):
        data_paths([])
    run = tmp_path / "run"
    assert resolve_resume_checkpoint(False, run) is None
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        resolve_resume_checkpoint(True, run)
    for step in (5, 20):
        (run / f"checkpoint-{step}").mkdir(parents=True)
    assert resolve_resume_checkpoint(True, run) == run / "checkpoint-20"
    assert resolve_resume_checkpoint(str(run / "checkpoint-5"), run) == run / "checkpoint-5"
    with pytest.raises(TypeError, match="bool or a path"):
        resolve_resume_checkpoint(3, run)


def test_collate_blocks_drops_an_all_ones_mask() -> None:
    def block(mask: list[int]) -> dict[str, torch.Tensor]:
        ids = torch.arange(len(mask))
        return {"input_ids": ids, "labels": ids, "attention_mask": torch.tensor(mask)}

    full = collate_blocks([block([1, 1, 1]), block([1, 1, 1])])
    assert set(full) == {"input_ids", "labels"}
    assert full["input_ids"].shape == (2, 3)
    padded = collate_blocks([block([1, 1, 1]), block([1, 1, 0])])
    assert padded["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_finite_logged_and_closing_without_a_group() -> None:
    assert finite(None) is None
    assert finite(math.nan) is None
    assert finite(math.inf) is None
    assert finite(2) == 2.0
    history = [{"loss": 3.0, "step": 1}, {"eval_loss": 2.0}, {"loss": "1.5"}]
    assert logged(history, "loss") == [3.0, 1.5]
    close_process_group()  # no process group: nothing to do, no error


def test_run_train_command_passes_known_fields_and_reports(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse
    import json

    from papercraft.core.training import run_train_command

    seen: dict[str, object] = {}

    class Result:
        def to_dict(self) -> dict[str, object]:
            return {"steps": 3}

    def train(*, data: str, config_overrides: dict[str, object] | None = None) -> Result:
        if data == "bad":
            raise ValueError("data is bad")
        seen.update(data=data, config_overrides=config_overrides)
        return Result()

    args = argparse.Namespace(data="x", config_overrides=["lr=0.5"], func=None, local_rank=None)
    assert run_train_command(train, args, command="papercraft demo train") == 0
    assert seen == {"data": "x", "config_overrides": {"lr": 0.5}}
    assert json.loads(capsys.readouterr().out) == {"steps": 3}
    args.data = "bad"
    assert run_train_command(train, args, command="papercraft demo train") == 2
    assert "papercraft demo train: error: data is bad" in capsys.readouterr().err
