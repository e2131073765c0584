"""Shared pytest configuration for papercraft-yoco's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


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


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models: one intra-op thread avoids OpenMP spin-waiting on a busy 2-core machine
    (measured: a tiny linear layer 1 ms with 2 threads vs 0.02 ms with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
