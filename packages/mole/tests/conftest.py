"""Shared pytest configuration for papercraft-mole's tests."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM


def pytest_configure(config: pytest.Config) -> None:
    """Register the house markers so the tests also run outside the monorepo."""
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped when none is present)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds on a 2-core CPU")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``cuda`` on machines without a CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


NAMES = ("a", "b", "c")
SEQ = 8


@pytest.fixture(scope="session")
def base() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4)  # fmt: skip
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def adapters(base: LlamaForCausalLM, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("loras")
    paths = {}
    for i, name in enumerate(NAMES):
        torch.manual_seed(10 + i)
        lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                          init_lora_weights=False)  # fmt: skip
        get_peft_model(copy.deepcopy(base), lora).save_pretrained(root / name)
        paths[name] = str(root / name)
    return paths
