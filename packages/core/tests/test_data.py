"""Tests for papercraft.core.data: corpus reading, packing, seeded splits and crash-safe JSONL."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from papercraft.core.data import (
    JsonlAppender,
    PackedDataset,
    append_jsonl,
    iter_documents,
    iter_jsonl,
    pack_tokens,
    read_jsonl,
    repair_jsonl,
    shuffled_indices,
    split_dataset,
    train_val_split,
    write_jsonl,
)
from papercraft.core.testing import sample_texts, tiny_causal_lm, tiny_tokenizer

# ------------------------------------------------------------------ iter_documents


def _corpus(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "b.txt").write_text("  bee document\n\n second para \n", encoding="utf-8")
    (root / "a.md").write_text("# Title\n\nbody ü\n", encoding="utf-8")
    (root / "z.TXT").write_text("zed", encoding="utf-8")
    (root / "sub" / "c.jsonl").write_text(
        '{"text": "json one", "id": 1}\n\n{"text": "json two 🙂"}\n', encoding="utf-8"
    )
    (root / "sub" / "deeper" / "d.txt").write_text("deep", encoding="utf-8")
    (root / "sub" / "notes.csv").write_text("not,read", encoding="utf-8")
    (root / ".hidden.txt").write_text("hidden", encoding="utf-8")
    (root / ".git" / "x.txt").write_text("git internals", encoding="utf-8")
    (root / "empty.txt").write_text("  \n", encoding="utf-8")


def test_iter_documents_directory_sorted_recursive(tmp_path: Path) -> None:
    _corpus(tmp_path)
    docs = list(iter_documents(tmp_path))
    assert docs == [
        "# Title\n\nbody ü",  # a.md
        "bee document\n\n second para",  # b.txt (stripped, one document per file)
        "json one",  # sub/c.jsonl, blank line skipped
        "json two 🙂",
        "deep",  # sub/deeper/d.txt
        "zed",  # z.TXT: suffixes match case-insensitively
    ]  # empty.txt skipped; hidden files, .git and .csv ignored
    assert docs == list(iter_documents(str(tmp_path)))  # deterministic, str paths too


def test_iter_documents_paragraphs_suffixes_and_explicit_order(tmp_path: Path) -> None:
    _corpus(tmp_path)
    paragraphs = list(iter_documents(tmp_path / "b.txt", split_paragraphs=True))
    assert paragraphs == ["bee document", "second para"]
    only_md = list(iter_documents(tmp_path, suffixes=(".md",), split_paragraphs=True))
    assert only_md == ["# Title", "body ü"]
    # Explicit paths keep the caller's order; a directory among them is expanded in place.
    mixed = list(iter_documents([tmp_path / "z.TXT", tmp_path / "sub", tmp_path / "a.md"]))
    assert mixed == ["zed", "json one", "json two 🙂", "deep", "# Title\n\nbody ü"]
    with_empty = list(iter_documents(tmp_path / "empty.txt", skip_empty=False))
    assert with_empty == [""]


def test_iter_documents_jsonl_field(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"body": "x", "text": "y"}\n{"body": "z"}\n', encoding="utf-8")
    assert list(iter_documents(path, text_field="body")) == ["x", "z"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"text": "ok"}\n{"text": broken}\n', r"c\.jsonl:2: invalid JSON"),
        ('{"text": "ok"}\n\n{"other": 1}\n', r"c\.jsonl:3: missing field 'text'"),
        ('["text"]\n', r"c\.jsonl:1: expected a JSON object, got list"),
        ('{"text": 5}\n', r"c\.jsonl:1: field 'text' must be a string, got int"),
    ],
)
def test_iter_documents_jsonl_errors_name_file_and_line(
    tmp_path: Path, content: str, match: str
) -> None:
    (tmp_path / "c.jsonl").write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        list(iter_documents(tmp_path))


def test_iter_documents_checks_paths_before_reading(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("fine")
    (tmp_path / "data.csv").write_text("a,b")
    # Errors come from the call itself, before any document is produced.
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        iter_documents([tmp_path / "ok.txt", tmp_path / "missing"])
    with pytest.raises(ValueError, match="does not end with one of"):
        iter_documents(tmp_path / "data.csv")
    with pytest.raises(ValueError, match="suffixes must be"):
        iter_documents(tmp_path, suffixes=(".pdf",))
    with pytest.raises(ValueError, match="text_field"):
        iter_documents(tmp_path, text_field="")


# ------------------------------------------------------------------ packing


def _expected_stream(docs: list[str], add_eos: bool = True) -> list[int]:
    tok = tiny_tokenizer()
    stream: list[int] = []
    for doc in docs:
        stream += tok(doc, add_special_tokens=False)["input_ids"]
        if add_eos:
            stream.append(tok.eos_token_id)
    return stream


def test_pack_tokens_is_the_concatenation_cut_into_blocks() -> None:
    tok = tiny_tokenizer()
    docs = sample_texts(25, seed=4)
    stream = _expected_stream(docs)
    blocks = pack_tokens(docs, tok, block_size=16, batch_size=4)
    n = len(stream) // 16
    assert blocks.dtype == torch.long
    assert blocks.shape == (n, 16)
    assert blocks.flatten().tolist() == stream[: n * 16]  # remainder dropped
    assert blocks.flatten().tolist().count(tok.eos_token_id) == stream[: n * 16].count(2)
    # Batching and lazy iterators do not change the result.
    assert torch.equal(pack_tokens(iter(docs), tok, block_size=16, batch_size=1000), blocks)
    assert torch.equal(pack_tokens(docs, tok, block_size=16, batch_size=1), blocks)


def test_pack_tokens_options() -> None:
    tok = tiny_tokenizer()
    docs = sample_texts(6, seed=5)
    no_eos = pack_tokens(docs, tok, block_size=8, add_eos=False)
    stream = _expected_stream(docs, add_eos=False)
    assert no_eos.flatten().tolist() == stream[: len(stream) // 8 * 8]
    assert tok.eos_token_id not in no_eos.flatten().tolist()

    full = _expected_stream(docs)
    padded = pack_tokens(docs, tok, block_size=8, drop_last=False)
    assert padded.shape[0] == -(-len(full) // 8)
    tail = len(full) % 8
    assert padded.flatten().tolist()[: len(full)] == full
    assert padded[-1, tail:].tolist() == [tok.pad_token_id] * (8 - tail)

    with_bos = pack_tokens(
        docs, tiny_tokenizer(add_bos_token=True), block_size=4, add_special_tokens=True
    )
    assert with_bos.flatten().tolist()[0] == tok.bos_token_id
    assert with_bos.flatten().tolist().count(tok.bos_token_id) >= len(docs) - 1

    assert pack_tokens(["tiny"], tok, block_size=512).shape == (0, 512)


def test_pack_tokens_errors() -> None:
    tok = tiny_tokenizer()
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        pack_tokens(["x"], tok, block_size=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        pack_tokens(["x"], tok, block_size=4, batch_size=0)
    with pytest.raises(TypeError, match="not a single string"):
        pack_tokens("a document", tok, block_size=4)
    with pytest.raises(TypeError, match="documents must be strings, got int"):
        pack_tokens(["ok", 3], tok, block_size=4)  # type: ignore[list-item]


def test_packed_dataset_items_and_padding_mask() -> None:
    tok = tiny_tokenizer()
    docs = sample_texts(5, seed=6)
    full = _expected_stream(docs)
    dataset = PackedDataset.from_documents(docs, tok, block_size=8, drop_last=False)
    assert len(dataset) == -(-len(full) // 8)
    first = dataset[0]
    assert set(first) == {"input_ids", "labels", "attention_mask"}
    assert torch.equal(first["labels"], first["input_ids"])
    assert first["attention_mask"].tolist() == [1] * 8
    last = dataset[-1]
    real = len(full) - (len(dataset) - 1) * 8
    assert last["attention_mask"].tolist() == [1] * real + [0] * (8 - real)
    assert last["labels"].tolist() == full[-real:] + [-100] * (8 - real)
    first["labels"][0] = -5  # items are copies: mutating one cannot corrupt the dataset
    assert dataset[0]["labels"][0] != -5
    with pytest.raises(IndexError):
        dataset[len(dataset)]
    with pytest.raises(ValueError, match="2-D tensor"):
        PackedDataset(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer token ids"):
        PackedDataset(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="num_tokens must be in"):
        PackedDataset(torch.zeros(2, 4, dtype=torch.long), num_tokens=9)


def test_packed_dataset_trains_a_causal_lm_batch() -> None:
    model, tok = tiny_causal_lm()
    dataset = PackedDataset.from_documents(sample_texts(12, seed=8), tok, block_size=32)
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["input_ids"].shape == (4, 32)
    out = model(**batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert model.model.embed_tokens.weight.grad is not None


# ------------------------------------------------------------------ splits


def test_shuffled_indices_pinned_and_permutation() -> None:
    order = shuffled_indices(10, seed=0)
    assert sorted(order) == list(range(10))
    # Pinned: this permutation must not change between releases (reproducible splits).
    assert order == [7, 8, 1, 5, 3, 4, 2, 0, 9, 6]
    assert shuffled_indices(10, seed=1) != order
    assert shuffled_indices(0) == []


def test_train_val_split_deterministic_disjoint_and_sized() -> None:
    train, val = train_val_split(100, val_fraction=0.2, seed=3)
    assert (train, val) == train_val_split(100, val_fraction=0.2, seed=3)
    assert train_val_split(100, val_fraction=0.2, seed=4)[1] != val
    assert len(val) == 20
    assert len(train) == 80
    assert sorted(train + val) == list(range(100))
    assert train == sorted(train)
    assert val == sorted(val)
    assert train_val_split(10, val_fraction=0.0) == (list(range(10)), [])
    assert len(train_val_split(3, val_fraction=0.01)[1]) == 1  # at least one validation item
    assert len(train_val_split(3, val_fraction=0.99)[0]) == 1  # at least one training item
    assert train_val_split(1, val_fraction=0.5) == ([0], [])
    for bad in (1.0, -0.1, float("nan"), True):
        with pytest.raises(ValueError, match="val_fraction must be a number in"):
            train_val_split(10, val_fraction=bad)
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        train_val_split(-1, val_fraction=0.1)


def test_split_dataset_subsets() -> None:
    dataset = PackedDataset(torch.arange(40).reshape(10, 4))
    train, val = split_dataset(dataset, val_fraction=0.3, seed=0)
    assert len(train) == 7
    assert len(val) == 3
    rows = {tuple(train[i]["input_ids"].tolist()) for i in range(7)}
    rows |= {tuple(val[i]["input_ids"].tolist()) for i in range(3)}
    assert len(rows) == 10


# ------------------------------------------------------------------ JSONL


RECORDS = [
    {"text": "ünïcödé 🙂 漢字", "n": 1},
    {"text": "line\nbreak and \u2028 separator \u0085 nel", "nested": {"a": [1, 2.5, None]}},
    ["a", "list"],
    "a bare string",
    3,
]


def test_jsonl_round_trip_unicode(tmp_path: Path) -> None:
    path = tmp_path / "out" / "data.jsonl"
    assert write_jsonl(path, iter(RECORDS)) == len(RECORDS)
    raw = path.read_bytes()
    assert raw.count(b"\n") == len(RECORDS)  # one line per record, even with U+2028 inside
    assert "ünïcödé 🙂".encode() in raw  # non-ASCII written as UTF-8, not escaped
    assert read_jsonl(path) == RECORDS
    assert list(iter_jsonl(path)) == RECORDS


def test_write_jsonl_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [{"old": True}])
    with pytest.raises(ValueError, match="not JSON-serializable"):
        write_jsonl(path, [{"new": 1}, {"bad": object()}])
    with pytest.raises(ValueError, match="not JSON-serializable"):
        write_jsonl(path, [{"loss": float("nan")}])
    assert read_jsonl(path) == [{"old": True}]
    assert [p.name for p in tmp_path.iterdir()] == ["data.jsonl"]
    write_jsonl(path, [{"loss": float("nan")}], allow_nan=True)
    assert read_jsonl(path)[0]["loss"] != read_jsonl(path)[0]["loss"]  # NaN


def test_read_jsonl_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": \n{"a": 3}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: invalid JSON"):
        read_jsonl(path)  # a bad line in the middle is corruption, never skipped
    with pytest.raises(FileNotFoundError):
        read_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="torn_tail must be"):
        read_jsonl(path, torn_tail="skip")  # type: ignore[arg-type]


def test_appender_and_torn_line_recovery(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with JsonlAppender(path) as log:
        log.append({"step": 1, "loss": 2.5})
        log.append({"step": 2, "text": "ü"})
        assert log.num_written == 2
    assert log.closed
    good_size = path.stat().st_size
    # A crash in the middle of writing record 3 (cut inside a multi-byte character).
    torn = '{"step": 3, "text": "ü'.encode()[:-1]
    with open(path, "ab") as handle:
        handle.write(torn)

    with pytest.warns(RuntimeWarning, match=r"log\.jsonl:3: torn final line"):
        records = read_jsonl(path)
    assert records == [{"step": 1, "loss": 2.5}, {"step": 2, "text": "ü"}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_jsonl(path, torn_tail="ignore")) == 2
    with pytest.raises(ValueError, match="repair_jsonl"):
        read_jsonl(path, torn_tail="error")

    # Resuming repairs the tail before appending, so the new record is not glued onto garbage.
    with JsonlAppender(path) as log:
        assert log.repaired_bytes == len(torn)
        log.append({"step": 3})
    assert read_jsonl(path, torn_tail="error") == [*records, {"step": 3}]
    assert path.stat().st_size == good_size + len(b'{"step": 3}\n')


def test_repair_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    assert repair_jsonl(path) == 0  # missing file: nothing to do
    path.write_bytes(b'{"a": 1}\n{"a": 2')
    assert repair_jsonl(path) == len(b'{"a": 2')
    assert path.read_bytes() == b'{"a": 1}\n'
    assert repair_jsonl(path) == 0
    # A complete last record without a newline (another tool's file) is kept and terminated.
    path.write_bytes(b'{"a": 1}\n{"a": 2}')
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    assert repair_jsonl(path) == 0
    assert path.read_bytes() == b'{"a": 1}\n{"a": 2}\n'


def test_append_jsonl_and_appender_errors(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "log.jsonl"
    append_jsonl(path, {"i": 0})
    append_jsonl(path, {"i": 1}, fsync=False)
    with pytest.raises(ValueError, match="not JSON-serializable"):
        append_jsonl(path, {"bad": {1, 2}})
    with pytest.raises(ValueError, match="not JSON-serializable"):
        append_jsonl(path, {"loss": float("inf")})
    assert read_jsonl(path, torn_tail="error") == [{"i": 0}, {"i": 1}]
    log = JsonlAppender(path)
    log.close()
    log.close()  # idempotent
    with pytest.raises(ValueError, match="is closed"):
        log.append({"i": 2})
    with pytest.raises(IsADirectoryError):
        JsonlAppender(tmp_path)
    assert os.path.getsize(path) == len(b'{"i": 0}\n{"i": 1}\n')
    assert json.loads(path.read_text().splitlines()[1]) == {"i": 1}
