"""Tests of papercraft.se2.tasks: the official Se² task table, formatting and loading."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from papercraft.se2 import tasks
from papercraft.se2.tasks import (
    CLUSTERS,
    DEMO_SEPARATOR,
    TASKS,
    TRAIN_CAP,
    Example,
    TaskSpec,
    collapse_spaces,
    format_example,
    get_task,
    load_examples,
    register_task,
    unregister_task,
)

# Number of (question, answer) templates per task in se2/DPR/dpr/utils/tasks.py (microsoft/LMOps).
OFFICIAL_TEMPLATE_COUNTS = {
    "mnli_m": 10,
    "mnli_mm": 10,
    "qnli": 9,
    "rte": 9,
    "snli": 9,
    "mrpc": 10,
    "qqp": 10,
    "paws": 10,
    "sst2": 8,
    "sst5": 1,
    "sentiment140": 6,
    "copa": 8,
    "hellaswag": 10,
    "arc_c": 7,
    "arc_e": 7,
    "openbookqa": 7,
    "ag_news": 8,
    "aeslc": 8,
    "gigaword": 8,
    "common_gen": 6,
    "e2e_nlg": 10,
    "roc_story": 1,
    "roc_ending": 1,
}
ONE_TEMPLATE = {"sst5", "roc_story", "roc_ending"}  # the official code defines a single template


@pytest.fixture(autouse=True)
def _keep_global_random() -> Iterator[None]:
    """Tests reseed the global ``random`` module to compare with the official draw; undo it."""
    state = random.getstate()
    yield
    random.setstate(state)


@pytest.fixture
def scratch_task() -> Iterator[str]:
    """Name for a custom task; unregistered after the test."""
    name = "test_custom_task"
    yield name
    if name in TASKS:
        unregister_task(name)


# ---------------------------------------------------------------- the task table


def test_all_23_tasks_with_official_template_counts() -> None:
    assert set(TASKS) == set(OFFICIAL_TEMPLATE_COUNTS)
    assert len(TASKS) == 23
    for name, count in OFFICIAL_TEMPLATE_COUNTS.items():
        spec = get_task(name)
        assert spec.name == name
        assert spec.num_templates == count, name
        if name not in ONE_TEMPLATE:
            assert spec.num_templates >= 3, name


def test_clusters_cover_every_task_once() -> None:
    assert CLUSTERS["nli"] == ("mnli_m", "mnli_mm", "qnli", "rte", "snli")
    assert CLUSTERS["paraphrase"] == ("mrpc", "qqp", "paws")
    assert CLUSTERS["story_generation"] == ("roc_story", "roc_ending")
    names = [n for members in CLUSTERS.values() for n in members]
    assert sorted(names) == sorted(TASKS)


def test_dataset_sources_and_settings() -> None:
    mnli_m, mnli_mm = get_task("mnli_m"), get_task("mnli_mm")
    assert mnli_m.dataset is not None
    assert mnli_mm.dataset is not None
    assert (mnli_m.dataset.path, mnli_m.dataset.name) == ("glue", "mnli_matched")
    assert (mnli_m.dataset.test_split, mnli_m.dataset.train_name) == ("validation", "mnli")
    assert mnli_mm.dataset.name == "mnli_mismatched"
    assert mnli_m.train_task == mnli_mm.train_task == "mnli"
    assert get_task("rte").train_task == "rte"
    snli = get_task("snli").dataset
    assert snli is not None
    assert (snli.path, snli.name, snli.test_split) == ("snli", None, "test")
    sst5 = get_task("sst5").dataset
    assert sst5 is not None
    assert sst5.path == "KaiLv/UDR_SST-5"
    arc = get_task("arc_c").dataset
    assert arc is not None
    assert (arc.path, arc.name) == ("ai2_arc", "ARC-Challenge")
    assert {n: get_task(n).finder_L for n in ("arc_c", "arc_e", "copa", "openbookqa")} == {
        "arc_c": 400,
        "arc_e": 400,
        "copa": 200,
        "openbookqa": 200,
    }
    assert get_task("common_gen").finder_L == get_task("gigaword").finder_L == 100
    assert get_task("mnli_m").finder_L == get_task("e2e_nlg").finder_L == 50
    assert get_task("mrpc").metric == get_task("qqp").metric == "f1"
    assert get_task("mrpc").official_metric == "acc_and_f1"
    assert get_task("paws").metric == "accuracy"
    assert get_task("gigaword").metric == "rouge"
    assert get_task("sst2").balance_class
    assert not get_task("copa").balance_class
    assert get_task("openbookqa").learning_rate == pytest.approx(3e-5)
    for spec in TASKS.values():
        assert spec.metric in ("accuracy", "f1", "rouge")
        assert spec.kind == ("generation" if spec.metric == "rouge" else "choice")
        if spec.kind == "generation":
            assert spec.class_num == 1
            assert spec.options is None


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("mnli_m", (" Yes", " Maybe", " No")),
        ("mnli_mm", (" Yes", " Maybe", " No")),
        ("rte", (" Yes", " Maybe", " No")),
        ("snli", (" Yes", " Maybe", " No")),
        ("qnli", (" Yes", " No")),
        ("mrpc", (" No", " Yes")),
        ("qqp", (" No", " Yes")),
        ("paws", (" No", " Yes")),
        ("sst2", (" Negative", " Positive")),
        ("sentiment140", (" Negative", " Positive")),
        ("sst5", (" great", " good", " okay", " bad", " terrible")),
        ("ag_news", (" World", " Sports", " Business", " Technology")),
    ],
)
def test_fixed_options_are_official(name: str, options: tuple[str, ...]) -> None:
    spec = get_task(name)
    assert spec.options == options
    assert spec.class_num == len(options)


@pytest.mark.parametrize("name", ["copa", "hellaswag", "arc_c", "arc_e", "openbookqa"])
def test_row_dependent_options(name: str) -> None:
    assert get_task(name).options is None


def test_templates_are_verbatim_pairs() -> None:
    mnli = get_task("mnli_m").templates
    assert mnli[0] == (
        'Premise: "{premise}" Hypothesis: "{hypothesis}" Does the premise entail the hypothesis?'
        " Yes, No, or Maybe?",
        "{answer}",
    )
    assert get_task("sst5").templates == (('Review: "{sentence}". It  was', "{answer}"),)
    assert get_task("aeslc").templates[0] == (
        "What is the subject line for this email? {body}",
        "{subject}",
    )
    assert get_task("common_gen").templates[-1][1] == "{target}"
    for spec in TASKS.values():
        for slot in spec.slots:
            assert all(slot.placeholder in q for q, _ in spec.templates[:1]), spec.name


def test_specs_are_frozen() -> None:
    spec = get_task("rte")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.finder_L = 3  # type: ignore[misc]
    assert spec.label_map is None
    arc = get_task("arc_c")
    assert arc.label_map is not None
    assert arc.label_map["2"] == 1
    with pytest.raises(TypeError):
        arc.label_map["E"] = 4  # type: ignore[index]


# ---------------------------------------------------------------- formatting

FORMAT_CASES: list[tuple[str, dict[str, Any], int, str, str, tuple[str, ...], int | None]] = [
    (
        "mnli_m",
        {
            "id": 7,
            "premise": "A man plays a guitar.",
            "hypothesis": "A person makes music.",
            "label": 0,
        },
        5,
        'Based on the premise "A man plays a guitar.", can we conclude the hypothesis'
        ' "A person makes music." is true? Yes, No, or Maybe?',
        " Yes",
        (" Yes", " Maybe", " No"),
        0,
    ),
    (
        "rte",
        {
            "id": 2,
            "premise": "Paris is the capital of France.",
            "hypothesis": "Paris is in France.",
            "label": 1,
        },
        0,
        'Paris is the capital of France. Based on the paragraph above can we conclude that "Paris is'
        ' in France."? Yes, No, or Maybe?',
        " Maybe",
        (" Yes", " Maybe", " No"),
        1,
    ),
    (
        "sst5",
        {"id": 0, "sentence": "a gorgeous  film", "label": 0},
        0,
        'Review: "a gorgeous  film". It  was',
        " great",
        (" great", " good", " okay", " bad", " terrible"),
        0,
    ),
    (
        "copa",
        {
            "id": 5,
            "premise": "The man broke his toe.",
            "question": "cause",
            "choice1": "He dropped a hammer on his foot.",
            "choice2": "He got a hole in his sock.",
            "label": 0,
        },
        4,
        'Based on the following sentence, what is the cause? "The man broke his toe."',
        " He dropped a hammer on his foot.",
        (" He dropped a hammer on his foot.", " He got a hole in his sock."),
        0,
    ),
    (
        "hellaswag",
        {
            "id": 1,
            "ctx": "[header] How to bake bread. [title] Mix the flour.",
            "endings": ["[step] Knead the dough.", "Eat the flour.", "Paint it.", "Sleep."],
            "label": "0",
        },
        2,
        "Continue writing the next sentence. How to bake bread. Mix the flour.",
        " Knead the dough.",
        (" Knead the dough.", " Eat the flour.", " Paint it.", " Sleep."),
        0,
    ),
    (
        "arc_c",
        {
            "id": 3,
            "question": "Which gas do plants absorb?",
            "choices": {
                "text": ["oxygen", "carbon dioxide", "helium", "neon"],
                "label": ["1", "2", "3", "4"],
            },
            "answerKey": "2",
        },
        1,
        "Question: Which gas do plants absorb? Answer:",
        " carbon dioxide",
        (" oxygen", " carbon dioxide", " helium", " neon"),
        1,
    ),
    (
        "common_gen",
        {
            "id": 4,
            "concepts": ["dog", "frisbee", "catch"],
            "target": "The dog catches the frisbee.",
        },
        1,
        "Keywords: dog, frisbee, catch. What is a sentence that includes all these keywords?",
        " The dog catches the frisbee.",
        (),
        None,
    ),
    (
        "e2e_nlg",
        {
            "id": 6,
            "meaning_representation": "name[The Eagle], food[French]",
            "target": "Fine food.",
        },
        9,
        "Generate a descriptive sentence about a restaurant using the following words:"
        " name = The Eagle, food = French.",
        " Fine food.",
        (),
        None,
    ),
    (
        "gigaword",
        {"id": 8, "document": "stocks rose sharply on monday .", "summary": "stocks rise"},
        3,
        "What is a shorter version of this: stocks rose sharply on monday .",
        " stocks rise",
        (),
        None,
    ),
    (
        "aeslc",
        {"id": 9, "email_body": "Please review\nthe draft.", "subject_line": "Draft\nreview"},
        7,
        "Please review the draft. Generate a subject line for this email.",
        " Draftreview",  # the official drops newlines of the subject without a space
        (),
        None,
    ),
    (
        "roc_story",
        {"id": 10, "question": "Tom went out.", "target": "He saw a cat."},
        0,
        "Beginning of the story: Tom went out. Please continue the story: ",
        "He saw a cat.",  # no leading space for the roc tasks
        (),
        None,
    ),
    (
        "sentiment140",
        {"id": 11, "text": "love it", "sentiment": 4},
        3,
        "Tweet: love it Predict the sentiment of this tweet.",
        " Positive",
        (" Negative", " Positive"),
        1,
    ),
    (
        "qqp",
        {"id": 12, "question1": 'What is ""AI""?', "question2": "Define AI.", "label": 1},
        7,
        "Question 1: What is 'AI'? Question 2: Define AI. Would the answer to these two questions"
        " be the same?",
        " Yes",
        (" No", " Yes"),
        1,
    ),
]


@pytest.mark.parametrize(
    ("name", "row", "template", "question", "answer", "options", "label"),
    FORMAT_CASES,
    ids=[c[0] for c in FORMAT_CASES],
)
def test_format_example_matches_official_strings(
    name: str,
    row: dict[str, Any],
    template: int,
    question: str,
    answer: str,
    options: tuple[str, ...],
    label: int | None,
) -> None:
    original = json.loads(json.dumps(row))
    ex = format_example(name, row)
    assert ex == Example(
        id=str(row["id"]),
        question=question,
        answer=answer,
        options=options,
        label=label,
        task=name,
        template=template,
    )
    assert row == original  # the row is not modified (the official arc get_label mutates it)


def test_demonstration_text_collapses_spaces() -> None:
    ex = format_example("sst5", {"id": 0, "sentence": "a gorgeous  film", "label": 0})
    assert ex.text == 'Review: "a gorgeous film". It was great'
    roc = format_example("roc_story", {"id": 1, "question": "Tom went out.", "target": "A cat."})
    assert roc.text == "Beginning of the story: Tom went out. Please continue the story: A cat."
    assert DEMO_SEPARATOR == " \n "
    assert collapse_spaces("a   b \n  c\t\td") == "a b \n c\t\td"


def test_random_instance_equals_global_seed_choice() -> None:
    seq = [f"t{i}" for i in range(10)]
    seeds: list[int | str] = [0, 1, 7, 42, 12345, "abc", "Mercury_SC_415702"]
    for seed in seeds:
        random.seed(seed)
        expected = random.choice(seq)
        assert random.Random(seed).choice(seq) == expected
        assert seq[random.Random(seed).choice(range(len(seq)))] == expected


@pytest.mark.parametrize("name", sorted(OFFICIAL_TEMPLATE_COUNTS))
def test_template_choice_is_the_official_draw(name: str) -> None:
    spec = get_task(name)
    questions = [q for q, _ in spec.templates]
    row = _synthetic_row(name)
    keys: list[int | str] = [0, 1, 2, 3, 17, 99, 1234, "7-980", "Mercury_SC_415702"]
    for key in keys:
        state = random.getstate()
        ex = format_example(name, {**row, "id": key})
        assert random.getstate() == state  # the global random module is untouched
        random.seed(key)
        assert spec.templates[ex.template][0] == random.choice(questions), (name, key)
        assert ex.id == str(key)


def test_seed_falls_back_to_index_then_42() -> None:
    row = {"premise": "p", "hypothesis": "h", "label": 2}
    questions = [q for q, _ in get_task("mnli_m").templates]
    by_index = format_example("mnli_m", row, index=3)
    assert by_index.id == "3"
    assert by_index == format_example("mnli_m", {**row, "id": 3})
    assert format_example("mnli_m", {**row, "id": 9}, index=3).id == "9"  # id wins
    assert format_example("mnli_m", {**row, "id": None}, index=3).id == "3"
    fallback = format_example("mnli_m", row)
    random.seed(42)
    assert fallback.id == "42"
    assert get_task("mnli_m").templates[fallback.template][0] == random.choice(questions)
    assert fallback.answer == " No"
    assert fallback.label == 2


# ---------------------------------------------------------------- loading


def _synthetic_row(name: str, i: int = 0, label: int = 0) -> dict[str, Any]:
    """A row carrying every field any task needs."""
    return {
        "premise": f"premise {i}",
        "hypothesis": f"hypothesis {i}",
        "question": f"question {i}",
        "sentence": f"sentence {i}",
        "sentence1": f"first {i}",
        "sentence2": f"second {i}",
        "question1": f"q1 {i}",
        "question2": f"q2 {i}",
        "text": f"text {i}",
        "label": str(label) if name == "hellaswag" else label,
        "sentiment": 4 if label else 0,
        "choice1": "one",
        "choice2": "two",
        "ctx": f"context {i}",
        "endings": ["a", "b", "c", "d"],
        "choices": {"text": ["a", "b", "c", "d"], "label": ["A", "B", "C", "D"]},
        "answerKey": "ABCD"[label % 4],
        "fact1": f"fact {i}",
        "question_stem": f"stem {i}",
        "concepts": ["x", "y"],
        "target": f"target {i}",
        "meaning_representation": f"name[R{i}]",
        "email_body": f"body {i}",
        "subject_line": f"subject {i}",
        "document": f"document {i}",
        "summary": f"summary {i}",
    }


@pytest.mark.parametrize("name", sorted(OFFICIAL_TEMPLATE_COUNTS))
def test_every_task_formats_a_row(name: str) -> None:
    ex = format_example(name, _synthetic_row(name, 5, label=1))
    spec = get_task(name)
    assert "{" not in ex.question, ex.question
    assert ex.answer
    if spec.kind == "choice":
        assert ex.label == 1
        assert ex.options[1] == ex.answer
        assert len(ex.options) == spec.class_num
    else:
        assert ex.label is None
        assert ex.options == ()


def test_load_examples_from_jsonl_and_list(tmp_path: Path) -> None:
    rows = [
        {"premise": f"p{i}", "hypothesis": f"h{i}", "label": i % 3, "id": f"orig-{i}"}
        for i in range(40)
    ]
    path = tmp_path / "rte.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    from_file = load_examples("mnli_m", "test", data=path)
    from_list = load_examples("mnli_m", "validation", data=rows)
    from_str = load_examples("mnli_m", "test", data=str(path))
    assert from_file == from_list == from_str
    assert [e.id for e in from_file] == [str(i) for i in range(40)]  # ids are positions
    assert [e.label for e in from_file] == [r["label"] for r in rows]  # order kept
    assert from_file[5] == format_example("mnli_m", {**rows[5], "id": 5})
    assert load_examples("mnli_m", "test", data=rows, limit=4) == from_list[:4]
    array = tmp_path / "pool.json"
    array.write_text(json.dumps(rows), encoding="utf-8")
    assert load_examples("mnli_m", "test", data=array) == from_list


def test_train_split_is_capped_shuffled_and_deterministic() -> None:
    rows = [{"document": f"doc {i}", "summary": f"sum {i}"} for i in range(TRAIN_CAP + 50)]
    first = load_examples("gigaword", "train", data=rows)
    assert len(first) == TRAIN_CAP == 10_000
    assert first == load_examples("gigaword", "train", data=rows)
    order = np.random.default_rng(42).permutation(len(rows))[:TRAIN_CAP]
    assert [e.answer for e in first] == [f" sum {i}" for i in order]
    assert [e.id for e in first[:3]] == ["0", "1", "2"]
    other = load_examples("gigaword", "train", data=rows, seed=7, limit=100)
    assert [e.answer for e in other] != [e.answer for e in first[:100]]
    assert len(load_examples("gigaword", "train", data=rows[:30])) == 30


def test_train_shuffle_matches_datasets_shuffle() -> None:
    datasets = pytest.importorskip("datasets")
    rows = [{"sentence": f"s{i}", "label": i % 2} for i in range(257)]
    shuffled = list(datasets.Dataset.from_list(rows).shuffle(seed=42))
    got = load_examples("sst2", "train", data=rows, limit=1000)  # balanced, never reaches 500/class
    assert [e.question.count(f'"{r["sentence"]}"') for e, r in zip(got, shuffled, strict=True)] == [
        1
    ] * 257


def test_filters_apply_like_the_official() -> None:
    rows = [{"premise": "p", "hypothesis": f"h{i}", "label": [0, -1, 2][i % 3]} for i in range(9)]
    kept = load_examples("snli", "test", data=rows)
    assert [e.label for e in kept] == [0, 2] * 3
    arc = [_synthetic_row("arc_c", i) for i in range(4)]
    arc[1]["choices"] = {"text": ["a", "b", "c"], "label": ["A", "B", "C"]}
    assert len(load_examples("arc_c", "test", data=arc)) == 3
    giga = [{"document": "a UNK b", "summary": "s"}, {"document": "ok", "summary": "#1"}]
    giga.append({"document": "fine", "summary": "good"})
    assert [e.answer for e in load_examples("gigaword", "test", data=giga)] == [" good"]
    tweets = [{"text": "t", "sentiment": s} for s in (0, 2, 4)]
    assert [e.label for e in load_examples("sentiment140", "test", data=tweets)] == [0, 1]


def test_class_balancing() -> None:
    rows = [{"sentence": f"s{i}", "label": int(i % 10 == 0)} for i in range(2000)]  # 10% positive
    got = load_examples("sst2", "train", data=rows, limit=100)
    assert Counter(e.label for e in got) == {0: 50, 1: 50}
    few = load_examples("sst2", "train", data=rows, limit=500)
    assert Counter(e.label for e in few) == {0: 250, 1: 200}  # class 1 runs out: 200 < 250
    rte = [{"premise": "p", "hypothesis": f"h{i}", "label": i % 2} for i in range(300)]
    # official quirk: rte has class_num 3 but only labels 0/1, so at most 2/3 of the cap
    assert Counter(e.label for e in load_examples("rte", "train", data=rte, limit=90)) == {
        0: 30,
        1: 30,
    }
    copa = [_synthetic_row("copa", i, label=0) for i in range(50)]
    assert len(load_examples("copa", "train", data=copa, limit=20)) == 20  # no balancing


def test_load_from_disk_directory(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": i % 3} for i in range(12)]
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(rows),
            "validation": datasets.Dataset.from_list(rows[:5]),
        }
    )
    dd.save_to_disk(str(tmp_path / "mnli"))
    assert load_examples("mnli_m", "test", data=tmp_path / "mnli") == load_examples(
        "mnli_m", "test", data=rows[:5]
    )
    assert load_examples("mnli_m", "train", data=tmp_path / "mnli", limit=6) == load_examples(
        "mnli_m", "train", data=rows, limit=6
    )
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "single"))
    assert len(load_examples("mnli_m", "test", data=tmp_path / "single")) == 12
    with pytest.raises(ValueError, match="data has no split"):
        load_examples("mnli_m", "test", data={"train": rows})


# ---------------------------------------------------------------- errors


def test_unknown_task_names_the_argument() -> None:
    with pytest.raises(ValueError, match=r"name: unknown task 'nope'.*mnli_m"):
        get_task("nope")
    with pytest.raises(ValueError, match=r"task: unknown task 'mnli'"):
        format_example("mnli", {"premise": "p", "hypothesis": "h", "label": 0})
    with pytest.raises(ValueError, match="task: unknown task"):
        load_examples("bogus", "test", data=[])


def test_bad_arguments_name_the_argument(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        load_examples("rte", "dev", data=[])
    with pytest.raises(ValueError, match="limit must be"):
        load_examples("rte", "test", data=[], limit=-1)
    with pytest.raises(ValueError, match="index must be"):
        format_example("rte", {"premise": "p", "hypothesis": "h", "label": 0}, index=-2)
    with pytest.raises(TypeError, match="entry must be a mapping"):
        format_example("rte", ["premise"])  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="data"):
        load_examples("rte", "test", data=tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"premise": "p"}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"data: .*bad.jsonl is not JSON"):
        load_examples("rte", "test", data=bad)
    with pytest.raises(ValueError, match="data: row 1"):
        load_examples("rte", "test", data=[{"premise": "p"}, "row"])  # type: ignore[list-item]


def test_missing_fields_and_bad_labels_name_the_entry() -> None:
    with pytest.raises(ValueError, match=r"entry is missing field 'hypothesis'.*'rte'"):
        format_example("rte", {"premise": "p", "label": 0})
    with pytest.raises(ValueError, match=r"entry is missing field 'choices.text'"):
        format_example("arc_e", {"question": "q", "answerKey": "A"})
    with pytest.raises(ValueError, match="entry: label 'E'"):
        format_example("arc_e", {**_synthetic_row("arc_e"), "answerKey": "E"})
    with pytest.raises(ValueError, match="entry: label 5 is out of range"):
        format_example("sst2", {"sentence": "s", "label": 5})
    with pytest.raises(ValueError, match="entry: label 'x'"):
        format_example("sst2", {"sentence": "s", "label": "x"})
    with pytest.raises(ValueError, match="entry: 'id'"):
        format_example("sst2", {"sentence": "s", "label": 0, "id": [1]})
    with pytest.raises(ValueError, match="entry: expected a list"):
        format_example("common_gen", {"concepts": "dog", "target": "t"})
    with pytest.raises(ValueError, match="data: row cannot be filtered"):
        load_examples("snli", "test", data=[{"premise": "p", "hypothesis": "h"}])


# ---------------------------------------------------------------- custom tasks


def _custom_spec(name: str, **changes: Any) -> TaskSpec:
    base: dict[str, Any] = {
        "name": name,
        "cluster": "custom",
        "kind": "choice",
        "metric": "accuracy",
        "templates": [["Is {claim} true?", "{answer}"], ["{claim} True or false?", "{answer}"]],
        "slots": [{"placeholder": "{claim}", "source": "claim"}],
        "class_num": 2,
        "balance_class": True,
        "options": [" False", " True"],
        "label_field": "verdict",
        "label_map": {"false": 0, "true": 1},
    }
    base.update(changes)
    return TaskSpec(**base)


def test_register_task_with_builtin_formatting(scratch_task: str) -> None:
    spec = register_task(_custom_spec(scratch_task))
    assert get_task(scratch_task) is spec
    assert scratch_task in CLUSTERS["custom"]
    ex = format_example(scratch_task, {"id": 3, "claim": "water is wet", "verdict": "true"})
    random.seed(3)
    expected = random.choice([q for q, _ in spec.templates]).replace("{claim}", "water is wet")
    assert (ex.question, ex.answer, ex.label) == (expected, " True", 1)
    rows = [{"claim": f"c{i}", "verdict": "true" if i % 4 else "false"} for i in range(100)]
    got = load_examples(scratch_task, "train", data=rows, limit=20)
    assert Counter(e.label for e in got) == {0: 10, 1: 10}
    with pytest.raises(ValueError, match=r"spec: task .* already registered"):
        register_task(spec)
    register_task(spec, replace=True)
    assert CLUSTERS["custom"] == (scratch_task,)
    unregister_task(scratch_task)
    assert scratch_task not in TASKS
    assert "custom" not in CLUSTERS


def test_register_task_with_formatter_and_filter(scratch_task: str) -> None:
    def formatter(
        spec: TaskSpec, row: Mapping[str, Any], template: str
    ) -> tuple[str, str, tuple[str, ...], int | None]:
        return template.replace("{claim}", row["claim"].upper()), " " + row["gold"], (), None

    spec = _custom_spec(scratch_task, kind="generation", metric="rouge", balance_class=False)
    spec = dataclasses.replace(spec, options=None, label_field=None, label_map=None)
    with pytest.raises(ValueError, match=r"spec: generation task .* needs answer_field"):
        register_task(spec)
    register_task(spec, formatter=formatter, row_filter=lambda r: r["claim"] != "skip")
    rows = [{"claim": "sky", "gold": "blue"}, {"claim": "skip", "gold": "-"}]
    [ex] = load_examples(scratch_task, "test", data=rows)
    assert ex.question in ("Is SKY true?", "SKY True or false?")
    assert (ex.answer, ex.options, ex.label, ex.text.endswith("? blue")) == (
        " blue",
        (),
        None,
        True,
    )


def test_task_spec_validation() -> None:
    with pytest.raises(ValueError, match="kind must be"):
        _custom_spec("x", kind="ranking")
    with pytest.raises(ValueError, match="metric must be"):
        _custom_spec("x", metric="bleu")
    with pytest.raises(ValueError, match="templates"):
        _custom_spec("x", templates=[])
    with pytest.raises(ValueError, match="finder_L must be"):
        _custom_spec("x", finder_L=0)
    with pytest.raises(ValueError, match="options has 2 entries, class_num is 3"):
        _custom_spec("x", class_num=3)
    with pytest.raises(ValueError, match="slots: unknown transform"):
        _custom_spec("x", slots=[{"placeholder": "{claim}", "source": "claim", "transform": "up"}])
    with pytest.raises(ValueError, match="unknown keys"):
        TaskSpec.from_dict("x", {"cluster": "c", "colour": "red"})
    with pytest.raises(TypeError, match="spec must be a TaskSpec"):
        register_task({"name": "x"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spec: unknown filter"):
        register_task(_custom_spec("x", filter="nope"))
    assert "x" not in TASKS


def test_builtin_table_is_cached_and_read_only() -> None:
    assert tasks.builtin_tasks() is tasks.builtin_tasks()
    assert dict(tasks.builtin_tasks()) == {n: TASKS[n] for n in OFFICIAL_TEMPLATE_COUNTS}
    with pytest.raises(TypeError):
        tasks.builtin_tasks()["x"] = get_task("rte")  # type: ignore[index]
