"""Tests of papercraft.mole.synthetic: tasks, tokenizer, encoding, LoRA training, exact match."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from peft import PeftModel

from papercraft.mole.synthetic import (
    TASKS,
    TaskDataset,
    char_tokenizer,
    encode_examples,
    exact_match,
    make_examples,
    mixed_examples,
    pretrain_base,
    tiny_llama,
    train_lora,
)


def test_tokenizer_round_trips_every_character() -> None:
    tok = char_tokenizer()
    ids = tok("0123456789>", add_special_tokens=False)["input_ids"]
    assert len(ids) == 11
    assert tok.decode(ids).replace(" ", "") == "0123456789>"
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)


def test_tasks_answers_and_input_distributions() -> None:
    for task, digits, answer in (("reverse", "031244", "442130"), ("sort", "975865", "556789"),
                                 ("shift", "0919", "1020")):  # fmt: skip
        pairs = make_examples(task, 50, seed=3)
        assert all(p.endswith(">") for p, _ in pairs)
        from papercraft.mole.synthetic import _answer

        assert _answer(task, digits) == answer
    reverse = {c for p, _ in make_examples("reverse", 200, seed=0) for c in p[:-1]}
    sort = {c for p, _ in make_examples("sort", 200, seed=0) for c in p[:-1]}
    assert reverse == set("01234")
    assert sort == set("56789")
    assert {len(p) for p, _ in make_examples("shift", 50, seed=0)} == {5}
    assert make_examples("sort", 5, seed=1) == make_examples("sort", 5, seed=1)
    mixed = mixed_examples(10, seed=2)
    assert sorted({t for t, _, _ in mixed}) == sorted(TASKS)
    assert len(mixed) == 30
    with pytest.raises(ValueError, match="task"):
        make_examples("add", 3, seed=0)


def test_encoding_masks_prompt_and_padding() -> None:
    tok = char_tokenizer()
    enc = encode_examples(tok, [("12>", "21")], seq_len=8)
    ids, labels = enc["input_ids"][0].tolist(), enc["labels"][0].tolist()
    assert len(ids) == 8
    assert ids[0] == tok.bos_token_id
    assert labels[:4] == [-100] * 4  # <s> 1 2 >
    assert labels[4:7] == [*tok("21", add_special_tokens=False)["input_ids"], tok.eos_token_id]
    assert labels[7] == -100
    assert enc["attention_mask"][0].tolist() == [1] * 7 + [0]
    assert len(TaskDataset(enc)) == 1
    with pytest.raises(ValueError, match="seq_len=4"):
        encode_examples(tok, [("12>", "21")], seq_len=4)


def test_exact_match_counts_whole_answers() -> None:
    tok = char_tokenizer()
    examples = [("12>", "21"), ("34>", "43")]
    enc = encode_examples(tok, examples, seq_len=8)

    def oracle(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        logits = torch.zeros(*input_ids.shape, len(tok))
        nxt = torch.cat([enc["input_ids"][:, 1:], enc["input_ids"][:, :1]], 1)
        logits.scatter_(2, nxt[..., None], 1.0)
        return SimpleNamespace(logits=logits)

    assert exact_match(oracle, tok, examples, seq_len=8) == 1.0

    def wrong(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, len(tok)))

    assert exact_match(wrong, tok, examples, seq_len=8) == 0.0


def test_lora_training_learns_and_leaves_the_base_frozen(tmp_path: Path) -> None:
    tok = char_tokenizer()
    base = tiny_llama(tok, hidden_size=32, seed=0)
    pretrain_base(base, tokenizer=tok, seq_len=16, steps=30)
    before = hashlib.sha256(
        b"".join(p.detach().numpy().tobytes() for p in base.parameters())
    ).hexdigest()
    model = train_lora(
        base, make_examples("sort", 200, seed=1), tokenizer=tok, seq_len=16, steps=40
    )
    after = hashlib.sha256(
        b"".join(p.detach().numpy().tobytes() for p in base.parameters())
    ).hexdigest()
    assert before == after  # trained on a copy; the copy's base weights are frozen by peft
    enc = encode_examples(tok, make_examples("sort", 64, seed=5), seq_len=16)
    with torch.no_grad():
        plain = base(**enc).loss
        tuned = model(**enc).loss
    assert float(tuned) < float(plain)
    model.save_pretrained(str(tmp_path / "lora"))
    reloaded = PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path / "lora")).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**enc).logits, model(**enc).logits)
