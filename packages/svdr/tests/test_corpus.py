"""The offline corpus: windows against a reference cut of pydoc's topics, determinism, no empty
or duplicate passages, overlapping passes, errors; keyword queries drawn from their passages."""

from __future__ import annotations

import re

import pytest

from papercraft.svdr.corpus import corpus_queries, offline_corpus


def _reference_windows(words: int, offsets: list[int]) -> set[str]:
    """pydoc's topics cut into windows, written out independently of the module."""
    from pydoc_data.topics import topics

    found: set[str] = set()
    for name in topics:
        tokens = topics[name].split()
        for offset in offsets:
            start = offset
            while start < len(tokens):
                window = tokens[start : start + words]
                if len(window) >= max(1, words // 2):
                    found.add(" ".join(window))
                start += words
    return found


def test_single_pass_matches_reference_cut() -> None:
    ids, texts = offline_corpus(1, words=40, stride=40, sources=("pydoc",))
    assert set(texts) == _reference_windows(40, [0])
    assert len(texts) == len(set(texts))
    assert ids == [f"p{i}" for i in range(len(texts))]


def test_overlapping_pass_added_when_one_pass_is_short() -> None:
    one_pass = _reference_windows(40, [0])
    ids, texts = offline_corpus(len(one_pass) + 1, words=40, stride=15, sources=("pydoc",))
    # Exactly the passes at offsets 0 and 15 were needed: nothing more, nothing less.
    assert set(texts) == _reference_windows(40, [0, 15])
    assert len(texts) > len(one_pass)
    assert len(ids) == len(texts) == len(set(ids))


def test_default_offsets_spread_and_counts() -> None:
    ids, texts = offline_corpus(5000, words=60, seed=3)
    assert len(texts) >= 5000
    assert len(set(texts)) == len(texts)
    assert ids == [f"p{i}" for i in range(len(texts))]
    for text in texts:
        assert text
        assert text == text.strip()
        assert not re.search(r"\s\s|[\t\n\r]", text)  # whitespace cleaned
        assert 30 <= len(text.split()) <= 60
    full = sum(len(t.split()) == 60 for t in texts)
    assert full > 0.9 * len(texts)  # windows are full but for documents' tails


def test_deterministic_and_seeded_order() -> None:
    first = offline_corpus(2000, words=50)
    assert offline_corpus(2000, words=50) == first
    _other_ids, other_texts = offline_corpus(2000, words=50, seed=1)
    assert set(other_texts) == set(first[1])  # the same passages ...
    assert other_texts != first[1]  # ... in another order


def test_stdlib_docstrings_are_read_not_code() -> None:
    import json

    _, texts = offline_corpus(1, words=30, stride=30, sources=("stdlib",))
    opening = " ".join((json.__doc__ or "").split()[:30])
    assert opening
    assert opening in texts
    assert not any(t[:11] == "import json" for t in texts)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_passages": 0}, "min_passages must be"),
        ({"words": 0}, "words must be"),
        ({"stride": 0}, "stride must be"),
        ({"words": 10, "stride": 11}, "stride must be at most words"),
        ({"sources": "pydoc"}, "sources must be"),
        ({"sources": ("pydoc", "wikipedia")}, "unknown"),
        ({"min_passages": 10**7}, "cannot be reached"),
        ({"min_passages": 10**5, "sources": ("pydoc",), "stride": 50}, "smaller stride"),
    ],
)
def test_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        offline_corpus(**kwargs)  # type: ignore[arg-type]


def test_queries_come_from_their_passages() -> None:
    ids, texts = offline_corpus(500, words=50, sources=("pydoc",))
    sources, queries = corpus_queries(ids, texts, 100, seed=7)
    assert (sources, queries) == corpus_queries(ids, texts, 100, seed=7)
    assert corpus_queries(ids, texts, 100, seed=8)[1] != queries
    assert len(queries) == 100
    assert len(set(sources)) == 100
    by_id = dict(zip(ids, texts, strict=True))
    for source, query in zip(sources, queries, strict=True):
        words = query.split()
        assert 2 <= len(words) <= 5
        assert len(set(words)) == len(words)
        passage_words = re.findall(r"[a-z]{4,}", by_id[source].lower())
        assert all(w in passage_words for w in words)
        # In the order they occur in the passage.
        positions = [passage_words.index(w) for w in words]
        assert positions == sorted(positions)
        assert "which" not in words
        assert "there" not in words


def test_query_errors() -> None:
    with pytest.raises(ValueError, match="content words"):
        corpus_queries(["a", "b"], ["the cat", "alpha beta gamma"], 2)
    with pytest.raises(ValueError, match="n must be"):
        corpus_queries(["a"], ["alpha beta"], 0)
    with pytest.raises(ValueError, match="one id per text"):
        corpus_queries(["a"], ["alpha", "beta"], 1)
    with pytest.raises(ValueError, match="max_words must be"):
        corpus_queries(["a"], ["alpha beta"], 1, min_words=3, max_words=2)
