"""tune_positions(): PoSE-style further tuning of a PI-extended position table (E5-Base-4k recipe),
on a tiny random BERT (L_o = 16 → L_t = 64, s = 4) and a tiny RoBERTa (offset rows)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import RobertaConfig, RobertaModel

from papercraft.core.testing import sample_texts, tiny_bert, tiny_wordpiece_tokenizer
from papercraft.longembed import tuning
from papercraft.longembed.extension import extend, extension_info, load_extended
from papercraft.longembed.tuning import (
    RESULT_NAME,
    PoSECollator,
    TuneResult,
    info_nce_loss,
    pool,
    position_rows,
    tune_positions,
)

L_O, L_T = 16, 64
SCALE = L_T // L_O
QUIET = {"disable_tqdm": True, "logging_strategy": "no"}


def _pairs(n: int = 32, seed: int = 1) -> list[tuple[str, str]]:
    """Easy pairs: the passage is the query's own text (long enough to fill L_o tokens), so the
    two sides differ only by their skipped positions — the loss falls as the new rows learn to
    keep embeddings position-invariant."""
    texts = sample_texts(n, seed=seed, min_words=20, max_words=40)
    return [(text, text) for text in texts]


def _embed(model: Any, tokenizer: Any, texts: list[str], max_length: int) -> torch.Tensor:
    batch = tokenizer(
        texts, max_length=max_length, truncation=True, padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    return pool(hidden, batch["attention_mask"], "mean")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tuning run (40 steps) on a pi-extended tiny BERT, with the state before it."""
    model, tokenizer = tiny_bert(max_position_embeddings=L_O)
    extend(model, L_T, "pi")
    before = {name: value.detach().clone() for name, value in model.state_dict().items()}
    out = tmp_path_factory.mktemp("tuned") / "model"
    result = tune_positions(
        model,
        tokenizer,
        _pairs(),
        target_length=L_T,
        output_dir=out,
        max_steps=40,
        learning_rate=1e-2,
        batch_size=8,
        temperature=0.05,
        training_args=QUIET,
    )
    model.cpu()  # the Trainer moved it to CUDA where there is one
    return {"model": model, "tokenizer": tokenizer, "before": before, "result": result, "out": out}


# ------------------------------------------------------------------------------------------------
# (1) only the new rows move


def test_only_new_position_rows_change(tuned: dict[str, Any]) -> None:
    model, before, result = tuned["model"], tuned["before"], tuned["result"]
    after = model.state_dict()
    assert after.keys() == before.keys()
    table = "embeddings.position_embeddings.weight"
    for name, value in before.items():
        if name != table:
            assert torch.equal(after[name], value), f"{name} changed"
    frozen, trainable = position_rows(model)
    assert frozen.tolist() == list(range(0, L_T, SCALE))  # the original rows, at multiples of s
    assert torch.equal(after[table][frozen], before[table][frozen])  # bit-identical
    changed = (after[table][trainable] != before[table][trainable]).any(dim=1)
    assert bool(changed.all()), f"untrained new rows: {trainable[~changed].tolist()}"
    assert result.trainable_parameters == (L_T - L_O) * model.config.hidden_size
    assert (result.frozen_rows, result.trained_rows, result.global_step) == (L_O, L_T - L_O, 40)
    assert len(result.losses) == 40
    assert all(p.requires_grad for p in model.parameters())  # flags restored
    assert not model.training


def test_short_inputs_keep_the_original_model(tuned: dict[str, Any]) -> None:
    original, tokenizer = tiny_bert(max_position_embeddings=L_O)  # same seed: same weights
    texts = sample_texts(4, seed=5, min_words=3, max_words=30)
    expected = _embed(original, tokenizer, texts, L_O)
    got = _embed(tuned["model"], tokenizer, texts, L_O)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_trainable_check_refuses_other_parameters() -> None:
    model, _ = tiny_bert(max_position_embeddings=L_O)
    extend(model, L_T, "pi")
    name, table = tuning._position_table(model)
    tuning._freeze_all_but_table(model, name)
    tuning._check_trainable(model, table, name)  # exactly the table: fine
    model.encoder.layer[0].output.dense.bias.requires_grad_(True)
    with pytest.raises(ValueError, match=r"encoder\.layer\.0\.output\.dense\.bias"):
        tuning._check_trainable(model, table, name)


def test_gradient_hook_zeroes_frozen_rows() -> None:
    model, _ = tiny_bert(max_position_embeddings=L_O)
    extend(model, L_T, "pi")
    _, table = tuning._position_table(model)
    frozen, trainable = position_rows(model)
    handle = table.weight.register_hook(tuning._zero_rows_hook(frozen))
    (table.weight**2).sum().backward()  # a gradient on every row
    handle.remove()
    grad = table.weight.grad
    assert grad is not None
    assert bool((grad[frozen] == 0).all())
    assert bool((grad[trainable] != 0).any(dim=1).all())


# ------------------------------------------------------------------------------------------------
# (2) the collator


def test_collator_positions_are_skipped_runs() -> None:
    tokenizer = tiny_wordpiece_tokenizer()
    pairs = [*_pairs(6), ("short", "tiny")]
    collator = PoSECollator(tokenizer, original_length=L_O, target_length=L_T, seed=3)
    batch = collator(pairs)
    for side in ("query", "passage"):
        ids = batch[f"{side}_input_ids"]
        positions = batch[f"{side}_position_ids"]
        assert ids.shape == positions.shape == batch[f"{side}_attention_mask"].shape
        assert ids.shape[1] <= L_O  # at most L_o tokens
        start = positions[:, :1]
        assert bool(((start >= 0) & (start <= L_T - L_O)).all())
        assert torch.equal(positions, start + torch.arange(ids.shape[1]))  # contiguous runs
        assert int(positions.max()) < L_T
    # deterministic for a seed, different for another
    again = PoSECollator(tokenizer, original_length=L_O, target_length=L_T, seed=3)(pairs)
    assert all(torch.equal(batch[key], again[key]) for key in batch)
    other = PoSECollator(tokenizer, original_length=L_O, target_length=L_T, seed=4)(pairs)
    assert not torch.equal(batch["passage_position_ids"], other["passage_position_ids"])


def test_collator_starts_cover_the_range_uniformly() -> None:
    collator = PoSECollator(
        tiny_wordpiece_tokenizer(), original_length=L_O, target_length=2 * L_O, seed=0
    )
    starts = collator.draw_starts(20_000)
    counts = torch.bincount(starts, minlength=L_O + 1)
    assert counts.shape[0] == L_O + 1  # nothing above L_t - L_o
    assert bool((counts > 0).all())  # every start 0..L_t-L_o drawn
    expected = 20_000 / (L_O + 1)
    assert float((counts - expected).abs().max()) < 0.15 * expected


def test_collator_offset_and_original_query_positions() -> None:
    tokenizer = tiny_wordpiece_tokenizer()
    collator = PoSECollator(
        tokenizer,
        original_length=L_O,
        target_length=L_T,
        position_offset=2,
        query_positions="original",
        query_prefix="query: ",
        passage_prefix="passage: ",
    )
    batch = collator([{"query": "what is a list?", "passage": "A list is a sequence."}])
    width = batch["query_input_ids"].shape[1]
    assert batch["query_position_ids"].tolist() == [[2 + SCALE * j for j in range(width)]]
    assert int(batch["passage_position_ids"].min()) >= 2
    assert tokenizer.decode(batch["query_input_ids"][0], skip_special_tokens=True).startswith(
        "query :"
    )


def test_explicit_position_ids_bypass_the_pi_rule() -> None:
    model, tokenizer = tiny_bert(max_position_embeddings=L_O)
    extend(model, L_T, "pi")
    batch = tokenizer(["a short input"], return_tensors="pt")
    width = batch["input_ids"].shape[1]
    with torch.no_grad():
        default = model(**batch).last_hidden_state  # the hook: positions p·s
        scaled = model(**batch, position_ids=torch.arange(width)[None] * SCALE).last_hidden_state
        skipped = model(**batch, position_ids=torch.arange(width)[None] + 7).last_hidden_state
    torch.testing.assert_close(scaled, default, rtol=0, atol=0)
    assert not torch.allclose(skipped, default, atol=1e-3)


# ------------------------------------------------------------------------------------------------
# (3) the loss


def test_info_nce_matches_hand_computation() -> None:
    generator = torch.Generator().manual_seed(0)
    query = torch.nn.functional.normalize(torch.randn(3, 5, generator=generator), dim=-1)
    passage = torch.nn.functional.normalize(torch.randn(4, 5, generator=generator), dim=-1)
    tau = 0.02
    total = 0.0
    for i in range(3):
        logits = [
            sum(query[i, k].item() * passage[j, k].item() for k in range(5)) / tau for j in range(4)
        ]
        peak = max(logits)
        log_sum = peak + math.log(sum(math.exp(x - peak) for x in logits))
        total += log_sum - logits[i]
    loss = info_nce_loss(query, passage, tau)
    assert loss.item() == pytest.approx(total / 3, rel=1e-5)
    assert info_nce_loss(query, query, 0.01).item() < 1e-3  # identical sides: near zero
    with pytest.raises(ValueError, match="temperature"):
        info_nce_loss(query, passage, 0.0)
    with pytest.raises(ValueError, match="passage rows"):
        info_nce_loss(query, passage[:2], 0.05)


def test_loss_goes_down(tuned: dict[str, Any]) -> None:
    losses = tuned["result"].losses
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.8 * first, f"first {first:.3f}, last {last:.3f}"


# ------------------------------------------------------------------------------------------------
# (4) save → load_extended


def test_saved_model_reloads_with_same_embeddings(tuned: dict[str, Any]) -> None:
    out: Path = tuned["out"]
    assert (out / "model.safetensors").is_file()
    loaded = load_extended(out).eval()
    info = extension_info(loaded)
    assert info is not None
    assert (info.method, info.target_length, info.original_length) == ("pi", L_T, L_O)
    tokenizer = tuned["tokenizer"]
    texts = [*sample_texts(2, seed=7, min_words=3, max_words=6), " ".join(_pairs(3)[0])]
    texts.append(" ".join(text for pair in _pairs(4, seed=9) for text in pair))  # ~L_t tokens
    for width in (L_O, L_T):  # short-input rule and long inputs reading the tuned rows
        expected = _embed(tuned["model"], tokenizer, texts, width)
        torch.testing.assert_close(
            _embed(loaded, tokenizer, texts, width), expected, rtol=0, atol=1e-6
        )
    record = json.loads((out / RESULT_NAME).read_text(encoding="utf-8"))
    assert record["format"] == tuning.RESULT_FORMAT
    assert record["losses"] == tuned["result"].losses
    assert isinstance(tuned["result"], TuneResult)


# ------------------------------------------------------------------------------------------------
# RoBERTa offset rows, errors


def test_roberta_offset_rows_stay_frozen(tmp_path: Path) -> None:
    tokenizer = tiny_wordpiece_tokenizer()
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=L_O + 1,  # pad id 0: positions start at row 1
        pad_token_id=0,
    )
    model = RobertaModel(config, add_pooling_layer=False)
    result = tune_positions(
        model,
        tokenizer,
        _pairs(8),
        target_length=2 * L_O,
        output_dir=tmp_path / "roberta",
        max_steps=3,
        learning_rate=1e-2,
        batch_size=4,
        training_args=QUIET,
    )
    model.cpu()
    frozen, _ = position_rows(model)
    assert frozen.tolist() == [0, *range(1, 2 * L_O + 1, 2)]  # offset row + originals
    assert result.trained_rows == L_O
    loaded = load_extended(tmp_path / "roberta")
    table = model.embeddings.position_embeddings.weight
    torch.testing.assert_close(loaded.embeddings.position_embeddings.weight, table, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"target_length": 40}, "multiple"),
        ({"target_length": L_O}, "multiple"),
        ({"batch_size": 1}, "batch_size"),
        ({"max_steps": 0}, "max_steps"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"temperature": 0}, "temperature"),
        ({"pooling": "last"}, "pooling"),
        ({"pairs": [("q", 3)] * 8}, "pair"),
        ({"pairs": [("q", "p")] * 2}, "at least batch_size"),
        ({"training_args": {"weight_decay": 0.1}}, "weight_decay"),
        ({"training_args": {"no_such_field": 1}}, "unknown"),
    ],
)
def test_bad_arguments_fail_before_any_work(
    tmp_path: Path, overrides: dict[str, Any], match: str
) -> None:
    model, tokenizer = tiny_bert(max_position_embeddings=L_O)
    kwargs: dict[str, Any] = {
        "pairs": [("q", "p")] * 8,
        "target_length": L_T,
        "output_dir": tmp_path / "out",
        "batch_size": 4,
    }
    kwargs.update(overrides)
    pairs = kwargs.pop("pairs")
    with pytest.raises(ValueError, match=match):
        tune_positions(model, tokenizer, pairs, **kwargs)
    assert extension_info(model) is None  # the model was not touched
    assert model.embeddings.position_embeddings.num_embeddings == L_O
    assert not (tmp_path / "out").exists()


def test_refuses_other_extensions_and_non_empty_output(tmp_path: Path) -> None:
    model, tokenizer = tiny_bert(max_position_embeddings=L_O)
    extend(model, L_T, "gp")
    with pytest.raises(ValueError, match="already extended"):
        tune_positions(
            model, tokenizer, _pairs(4), target_length=L_T, output_dir=tmp_path / "a", batch_size=2
        )
    fresh, _ = tiny_bert(max_position_embeddings=L_O)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="not empty"):
        tune_positions(
            fresh, tokenizer, _pairs(4), target_length=L_T, output_dir=tmp_path / "b", batch_size=2
        )


def test_moved_frozen_rows_abort_without_saving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The after-training check: with the gradient mask disabled the original rows move, and
    tune_positions refuses to save."""
    monkeypatch.setattr(tuning, "_zero_rows_hook", lambda frozen: lambda grad: grad)
    model, tokenizer = tiny_bert(max_position_embeddings=L_O)
    with pytest.raises(RuntimeError, match="frozen position rows changed"):
        tune_positions(
            model,
            tokenizer,
            _pairs(4),
            target_length=L_T,
            output_dir=tmp_path / "out",
            max_steps=2,
            learning_rate=1e-2,
            batch_size=4,
            training_args=QUIET,
        )
    assert not (tmp_path / "out").exists()
    assert all(p.requires_grad for p in model.parameters())
