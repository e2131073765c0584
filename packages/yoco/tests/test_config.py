"""YocoConfig: resolved defaults, refusal of invalid combinations, round trips, Auto registration."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

import papercraft.yoco
from papercraft.yoco import YocoConfig, YocoForCausalLM, YocoModel

TINY: dict[str, Any] = {
    "vocab_size": 64,
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


def _comparable(cfg: YocoConfig) -> dict[str, Any]:
    data = cfg.to_dict()
    data.pop("transformers_version", None)
    return data


def test_defaults_follow_the_paper() -> None:
    cfg = YocoConfig()
    assert cfg.model_type == "yoco"
    assert cfg.num_self_decoder_layers == cfg.num_hidden_layers // 2 == 12  # 1:1 split
    assert cfg.num_cross_decoder_layers == 12
    assert cfg.num_key_value_heads == cfg.num_attention_heads
    assert cfg.head_dim == cfg.hidden_size // cfg.num_attention_heads
    assert cfg.intermediate_size == 3 * cfg.hidden_size  # YOCO's FFN width in the scaling runs
    assert (cfg.self_decoder, cfg.rope_layout, cfg.rope_frequencies) == (
        "gret",
        "interleaved",
        "linspace",
    )
    assert cfg.gate_logit_normalizer == 16.0
    assert cfg.rms_norm_eps == 1e-5
    assert cfg.tie_word_embeddings is False


def test_explicit_values_are_kept() -> None:
    cfg = YocoConfig(
        **TINY,
        num_self_decoder_layers=3,  # 3:1
        head_dim=16,
        intermediate_size=80,
        self_decoder="swa",
        sliding_window=7,
    )
    assert (cfg.num_self_decoder_layers, cfg.num_cross_decoder_layers) == (3, 1)
    assert (cfg.head_dim, cfg.intermediate_size, cfg.sliding_window) == (16, 80, 7)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"hidden_size": 30}, "hidden_size"),  # 30 not divisible by 4 heads
        ({"num_key_value_heads": 3}, "num_key_value_heads"),  # 4 heads not a multiple of 3
        ({"head_dim": 7}, "head_dim"),  # odd: RoPE needs pairs
        ({"hidden_size": 36, "num_attention_heads": 4}, "head_dim"),  # derived 9 is odd
        ({"num_self_decoder_layers": 0}, "num_self_decoder_layers"),
        ({"num_self_decoder_layers": 4}, "num_self_decoder_layers"),  # no cross layer left
        ({"num_hidden_layers": 1}, "num_hidden_layers"),
        ({"self_decoder": "mamba"}, "self_decoder"),
        ({"rope_layout": "neox"}, "rope_layout"),
        ({"rope_frequencies": "log"}, "rope_frequencies"),
        ({"sliding_window": 0}, "sliding_window"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunk_size": 2.5}, "chunk_size"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"rope_theta": -1.0}, "rope_theta"),
        ({"gate_logit_normalizer": 0.0}, "gate_logit_normalizer"),
        ({"rms_norm_eps": 0}, "rms_norm_eps"),
        ({"intermediate_size": 0}, "intermediate_size"),
        ({"num_attention_heads": True}, "num_attention_heads"),
    ],
)
def test_invalid_combinations_are_refused(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        YocoConfig(**{**TINY, **overrides})


def test_save_refuses_a_config_made_invalid_after_init(tmp_path: Path) -> None:
    cfg = YocoConfig(**TINY)
    cfg.num_self_decoder_layers = 9
    with pytest.raises(ValueError, match="num_self_decoder_layers"):
        cfg.save_pretrained(tmp_path)


def test_dict_and_disk_round_trip(tmp_path: Path) -> None:
    cfg = YocoConfig(**TINY, self_decoder="swa", sliding_window=5, rope_layout="half", chunk_size=8)
    again = YocoConfig.from_dict(cfg.to_dict())
    assert _comparable(again) == _comparable(cfg)
    cfg.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert saved["model_type"] == "yoco"
    assert saved["num_self_decoder_layers"] == 2  # the resolved value is stored
    loaded = YocoConfig.from_pretrained(tmp_path)
    assert _comparable(loaded) == _comparable(cfg)


def test_auto_config_registration(tmp_path: Path) -> None:
    assert isinstance(AutoConfig.for_model("yoco", **TINY), YocoConfig)
    YocoConfig(**TINY).save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is YocoConfig
    assert loaded.hidden_size == TINY["hidden_size"]


def test_auto_model_registration() -> None:
    cfg = YocoConfig(**TINY)
    torch.manual_seed(0)
    assert type(AutoModelForCausalLM.from_config(cfg)) is YocoForCausalLM
    assert type(AutoModel.from_config(cfg)) is YocoModel


def test_reimport_keeps_the_registration() -> None:
    importlib.reload(papercraft.yoco)  # registering again must not raise
    papercraft.yoco.register_auto_classes()
    assert isinstance(AutoConfig.for_model("yoco", **TINY), YocoConfig)
