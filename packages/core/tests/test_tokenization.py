"""Tests for papercraft.core.tokenization.train_byte_level_bpe."""

from __future__ import annotations

import pytest

from papercraft.core.testing import sample_texts
from papercraft.core.tokenization import train_byte_level_bpe


def test_trains_a_round_tripping_tokenizer_with_specials_first() -> None:
    tok = train_byte_level_bpe(sample_texts(200, seed=0), vocab_size=400, model_max_length=128)
    assert len(tok) == 400
    assert [tok.convert_tokens_to_ids(t) for t in ("<s>", "</s>", "<pad>")] == [0, 1, 2]
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")
    assert tok.model_max_length == 128
    text = "Ünïcode, emoji 🙂 and\ttabs survive: x = f(y)"
    ids = tok(text)["input_ids"]
    assert tok.bos_token_id not in ids  # no hidden special tokens
    assert tok.decode(ids) == text
    # merges were learned: English prose needs clearly fewer tokens than bytes
    prose = sample_texts(1, seed=1, min_words=40, max_words=40)[0]
    assert len(tok(prose)["input_ids"]) < 0.75 * len(prose.encode())


def test_is_deterministic() -> None:
    corpus = sample_texts(100, seed=3)
    a = train_byte_level_bpe(corpus, vocab_size=300)
    b = train_byte_level_bpe(corpus, vocab_size=300)
    assert a.get_vocab() == b.get_vocab()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vocab_size": 100}, "vocab_size must be an int >= 259"),
        ({"vocab_size": 300, "special_tokens": ("<s>", "<s>")}, "distinct"),
        ({"vocab_size": 300, "pad_token": "[PAD]"}, "pad_token='\\[PAD\\]' must be one of"),
    ],
)
def test_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        train_byte_level_bpe(["some text"], **kwargs)  # type: ignore[arg-type]
