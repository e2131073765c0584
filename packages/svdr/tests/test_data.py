"""DPR and BEIR readers on small files written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from papercraft.svdr.data import Passage, read_beir, read_dpr


def test_read_dpr(tmp_path: Path) -> None:
    rows = [
        {"question": "who?", "answers": ["x"],
         "positive_ctxs": [{"title": "T", "text": "p1", "passage_id": 7}],
         "hard_negative_ctxs": [{"title": "", "text": "h1"}], "negative_ctxs": []},
        {"question": "none?", "answers": [], "positive_ctxs": []},
    ]  # fmt: skip
    path = tmp_path / "train.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    examples, dropped = read_dpr(path)
    assert dropped == 1
    assert len(examples) == 1
    assert examples[0].positives == (Passage("p1", "T", "7"),)
    assert examples[0].hard_negatives == (Passage("h1", ""),)
    assert examples[0].answers == ("x",)
    path.write_text(json.dumps([{"question": "q", "positive_ctxs": [{"title": "t"}]}]))
    with pytest.raises(ValueError, match=r"example 0.positive_ctxs\[0\]: a passage needs a 'text'"):
        read_dpr(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_dpr(path)


def _beir(root: Path, qrels: str) -> None:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "A", "text": "alpha"}\n{"_id": "d2", "text": "beta"}\n'
    )
    (root / "queries.jsonl").write_text(
        '{"_id": "q1", "text": "a?"}\n{"_id": "q2", "text": "b?"}\n'
    )
    (root / "qrels" / "test.tsv").write_text(qrels)


def test_read_beir(tmp_path: Path) -> None:
    _beir(tmp_path / "ok", "query-id\tcorpus-id\tscore\nq1\td1\t2\n")
    data = read_beir(tmp_path / "ok")
    assert data.corpus == {
        "d1": {"title": "A", "text": "alpha"},
        "d2": {"title": "", "text": "beta"},
    }
    assert data.queries == {"q1": "a?"}  # q2 has no judgement in this split
    assert data.qrels == {"q1": {"d1": 2}}
    _beir(tmp_path / "bad", "query-id\tcorpus-id\tscore\nq1\td9\t1\n")
    with pytest.raises(ValueError, match="line 2: unknown query or document id"):
        read_beir(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match=r"no qrels/dev\.tsv"):
        read_beir(tmp_path / "ok", split="dev")
