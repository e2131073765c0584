"""Record schema, files, pairs, ImageReward conversion, judge parsing and annotation over HTTP."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from _judge_server import JudgeServer, redness_score
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from papercraft.core.io import FormatVersionError
from papercraft.core.llm import OpenAICompatibleModel
from papercraft.visionprefer.judge import (
    JudgmentParseError,
    annotate,
    judge_messages,
    parse_judgment,
)
from papercraft.visionprefer.records import (
    ASPECTS,
    AspectJudgment,
    ImageCandidate,
    PreferenceRecord,
    RecordError,
    from_imagereward,
    load_pairs,
    load_records,
    make_pairs,
    pair_counts,
    save_pairs,
    save_records,
)


def _record(pid: str, scores: list[float], aspect: str = "aesthetic") -> PreferenceRecord:
    images = [ImageCandidate(f"{pid}/{i}.png", f"gen{i}", seed=i) for i in range(len(scores))]
    return PreferenceRecord(
        pid,
        f"prompt {pid}",
        images,
        [{aspect: AspectJudgment(s, f"r{i}")} for i, s in enumerate(scores)],
    )


def _write_images(
    root: Path, records: list[PreferenceRecord], colours: list[tuple[int, int, int]]
) -> None:
    for record in records:
        for image, colour in zip(record.images, colours, strict=False):
            (root / image.path).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), colour).save(root / image.path)


def test_four_images_give_six_pairs_per_aspect_and_ties_are_dropped() -> None:
    records = [_record("a", [1, 2, 3, 4]), _record("b", [5, 5, 2, 1])]
    pairs = make_pairs(records, aspects=["aesthetic"])
    assert len([p for p in pairs if p.prompt_id == "a"]) == 6
    assert len([p for p in pairs if p.prompt_id == "b"]) == 5  # one tie (5, 5)
    assert all(p.chosen_score > p.rejected_score for p in pairs)
    assert pair_counts(records, aspects=["aesthetic"])["aesthetic"] == {
        "prompts": 2,
        "possible": 12,
        "ties": 1,
        "pairs": 11,
    }
    assert make_pairs(records, aspects=["fidelity"]) == []  # never judged on it


def test_jsonl_and_parquet_round_trip(tmp_path: Path) -> None:
    records = [_record("a", [1, 2.5, 3]), _record("b", [4, 1, 1])]
    _write_images(tmp_path, records, [(255, 0, 0)] * 3)
    for name in ("r.jsonl", "r.parquet"):
        save_records(tmp_path / name, records)
        assert load_records(tmp_path / name) == records
    save_pairs(tmp_path / "pairs.jsonl", make_pairs(records))
    assert load_pairs(tmp_path / "pairs.jsonl") == make_pairs(records)


def test_loading_names_line_and_field(tmp_path: Path) -> None:
    good = _record("a", [1, 2]).to_dict()
    bad = json.loads(json.dumps(good))
    bad["prompt_id"] = "b"
    bad["judgments"][1]["aesthetic"]["score"] = "x"
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(RecordError, match=r"r.jsonl line 2: judgments\[1\]\['aesthetic'\].score"):
        load_records(path, check_images=False)
    bad["judgments"][1] = {"beauty": {"score": 1}}
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(RecordError, match="unknown aspect 'beauty'"):
        load_records(path, check_images=False)
    path.write_text(json.dumps({**good, "format_version": 99}) + "\n")
    with pytest.raises(FormatVersionError, match="format_version 99"):
        load_records(path, check_images=False)
    path.write_text(json.dumps(good) + "\n")
    with pytest.raises(RecordError, match="not found"):
        load_records(path)  # the images do not exist
    path.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(RecordError, match="duplicate prompt_id"):
        load_records(path, check_images=False)


def test_from_imagereward_keeps_ties_as_ties() -> None:
    rows = [
        {
            "prompt_id": "7",
            "prompt": "a cat",
            "generations": ["x.png", "y.png", "z.png"],
            "ranking": [2, 1, 2],
        }
    ]
    records = from_imagereward(rows)
    assert [j["prompt_following"].score for j in records[0].judgments] == [1.0, 2.0, 1.0]
    pairs = make_pairs(records)
    assert [(p.chosen, p.rejected) for p in pairs] == [("y.png", "x.png"), ("y.png", "z.png")]
    with pytest.raises(ValueError, match="ranking"):
        from_imagereward([{**rows[0], "ranking": [0, 1, 2]}])
    with pytest.raises(ValueError, match="aspect"):
        from_imagereward(rows, aspect="beauty")


@pytest.mark.parametrize(
    ("text", "score", "rationale"),
    [
        ("Rationale: Sharp and clean.\nScore: 7", 7.0, "Sharp and clean."),
        ("Score: 8/10\nRationale: Nice colours.", 8.0, "Nice colours."),
        ("**Score**: 8.5\n**Rationale**: good", 8.5, "good"),
        ("The score is 6 out of 10 because it is blurry.", 6.0, None),
        (
            '```json\n{"score": 9, "rationale": "Exactly what was asked."}\n```',
            9.0,
            "Exactly what was asked.",
        ),
        ("Score: 4/5", 8.0, None),  # rescaled to the 1–10 scale
        ("On a scale from 1 to 10 ... Rationale: ok.\nScore: 3", 3.0, "ok."),
    ],
)
def test_parse_judgment_reads_real_answer_styles(
    text: str, score: float, rationale: str | None
) -> None:
    judgment = parse_judgment(text)
    assert judgment.score == pytest.approx(score)
    if rationale is not None:
        assert judgment.rationale == rationale


@pytest.mark.parametrize("text", ["No idea.", "Score: 11", "Score: 0", '{"score": "high"}'])
def test_parse_judgment_refuses_unusable_answers(text: str) -> None:
    with pytest.raises(JudgmentParseError):
        parse_judgment(text)
    with pytest.raises(JudgmentParseError, match="no rationale"):
        parse_judgment("Score: 5", require_rationale=True)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parse_judgment_fuzz_raises_only_its_error(text: str) -> None:
    try:
        judgment = parse_judgment(text)
    except JudgmentParseError:
        return
    assert 1 <= judgment.score <= 10
    assert math.isfinite(judgment.score)


def test_judge_messages_embed_the_image_and_refuse_unknown_aspects(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "i.png")
    message = judge_messages("a red cube", tmp_path / "i.png", "fidelity")[0]
    text, image = message["content"]
    assert "a red cube" in text["text"]
    assert "fidelity" in text["text"]
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    with pytest.raises(ValueError, match="aspect 'beauty'"):
        judge_messages("x", tmp_path / "i.png", "beauty")


def test_annotate_over_http_retries_caches_and_resumes(tmp_path: Path) -> None:
    colours = [(250, 10, 10), (120, 60, 60), (10, 10, 250)]
    records = [PreferenceRecord(pid, "a red square",
                                [ImageCandidate(f"{pid}/{i}.png") for i in range(3)])
               for pid in ("p1", "p2")]  # fmt: skip
    _write_images(tmp_path, records, colours)
    expected = [redness_score(Image.new("RGB", (4, 4), c)) for c in colours]
    assert expected[0] > expected[1] > expected[2]
    cache = tmp_path / "cache.jsonl"
    with JudgeServer() as server:
        server.fail_500, server.garbled = 2, 3  # HTTP retries (core) and parse retries (annotate)
        judge = OpenAICompatibleModel(server.url, "judge", endpoint="chat", backoff_base=0.01,
                                      show_progress=False, api_key="test")  # fmt: skip
        out, stats = annotate(records, judge, aspects=["prompt_following", "aesthetic"],
                              image_root=tmp_path, cache_path=cache, batch_size=5)  # fmt: skip
        assert stats.requested == 12
        assert stats.failed == 0
        assert stats.parse_failures == 3
        assert stats.calls == 12 + 3
        assert server.requests == 12 + 3 + 2
        for record in out:
            assert [j["aesthetic"].score for j in record.judgments] == expected
            assert "red" in record.judgments[0]["aesthetic"].rationale
        pairs = make_pairs(out)
        assert len(pairs) == 2 * 2 * 3
        assert all(p.chosen < p.rejected for p in pairs)
        before = server.requests
        again, stats2 = annotate(records, judge, aspects=["prompt_following", "aesthetic"],
                                 image_root=tmp_path, cache_path=cache)  # fmt: skip
        assert server.requests == before
        assert stats2.cached == 12
        assert again == out
        # a torn last line (a crash mid-write) is dropped and only that item is asked again
        lines = cache.read_bytes().splitlines(keepends=True)
        cache.write_bytes(b"".join(lines[:-1]) + lines[-1][:10])
        _, stats3 = annotate(records, judge, aspects=["prompt_following", "aesthetic"],
                             image_root=tmp_path, cache_path=cache)  # fmt: skip
        assert stats3.calls == 1
        assert server.requests == before + 1


def test_annotate_checks_arguments_before_calling() -> None:
    record = PreferenceRecord("p", "x", [ImageCandidate("missing.png")])
    with pytest.raises(ValueError, match="aspects"):
        annotate([record], object(), aspects=["beauty"])
    with pytest.raises(TypeError, match="chat"):
        annotate([record], object())
    assert set(ASPECTS) == {"prompt_following", "aesthetic", "fidelity", "harmlessness"}
