"""The blockwise backend stays O(T·W): its block plan and the tensors it actually creates."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from papercraft.core.attention import attention, blockwise_plan


class LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any aten op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.largest = max(self.largest, leaf.numel())
        return out


def _visible(t: int, s: int, causal: bool, window: int | None) -> torch.Tensor:
    pos = torch.arange(s - t, s)[:, None]
    key = torch.arange(s)[None, :]
    visible = torch.ones(t, s, dtype=torch.bool)
    if causal:
        visible &= key <= pos
        if window is not None:
            visible &= key > pos - window
    elif window is not None:
        visible &= (key - pos).abs() < window
    return visible


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize(
    ("t", "s", "window", "block"),
    [
        (64, 64, 5, 8),
        (64, 64, 1, 7),
        (10, 100, 8, 4),
        (1, 50, 6, 128),
        (30, 12, 4, 5),
        (33, 33, None, 8),
        (200, 200, 300, 16),
    ],
)
def test_plan_covers_exactly_the_visible_keys(
    t: int, s: int, window: int | None, block: int, causal: bool
) -> None:
    plan = blockwise_plan(t, s, causal=causal, window=window, block_size=block)
    visible = _visible(t, s, causal, window)
    assert [p[0] for p in plan] == list(range(0, t, block))  # blocks tile [0, T) in order
    assert plan[-1][1] == t
    assert all(a[1] == b[0] for a, b in itertools.pairwise(plan))
    for q0, q1, k0, k1 in plan:
        assert 0 <= k0 <= k1 <= s
        rows = visible[q0:q1]
        # every visible key lies inside the slab ...
        assert not rows[:, :k0].any()
        assert not rows[:, k1:].any()
        # ... and the slab is no wider than the keys the block can see
        seen = rows.any(dim=0).nonzero()
        if k1 > k0:
            assert seen.min() == k0
            assert seen.max() == k1 - 1
        else:
            assert len(seen) == 0
        if window is not None:
            width = block + window - 1 if causal else block + 2 * window - 2
            assert k1 - k0 <= width


def test_plan_area_grows_with_t_times_w_not_t_squared() -> None:
    window, block = 32, 64
    for length in (1024, 4096, 16384):
        plan = blockwise_plan(length, length, window=window, block_size=block)
        area = sum((q1 - q0) * (k1 - k0) for q0, q1, k0, k1 in plan)
        assert area <= length * (block + window - 1)
        assert max(k1 - k0 for *_, k0, k1 in plan) <= block + window - 1


def test_plan_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="block_size must be an int >= 1, got 0"):
        blockwise_plan(4, 4, block_size=0)
    with pytest.raises(ValueError, match="window must be an int >= 1 or None, got 0"):
        blockwise_plan(4, 4, window=0)
    with pytest.raises(ValueError, match="num_keys must be an int >= 1"):
        blockwise_plan(4, 0)


def test_blockwise_never_materializes_a_t_by_s_tensor() -> None:
    # forward and backward of a long windowed sequence, watching every aten op's output
    batch, heads, kv_heads, length, dim, window, block = 1, 2, 1, 512, 8, 16, 128
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(batch, heads, length, dim, generator=gen, requires_grad=True)
    k = torch.randn(batch, kv_heads, length, dim, generator=gen, requires_grad=True)
    v = torch.randn(batch, kv_heads, length, dim, generator=gen, requires_grad=True)

    def largest_for(backend: str) -> int:
        with LargestTensor() as probe:
            out = attention(q, k, v, window=window, backend=backend)
            out.square().sum().backward()
        return probe.largest

    bound = max(batch * heads * length * dim, batch * heads * block * (block + window - 1))
    assert largest_for("blockwise") <= bound
    # the probe does see quadratic tensors when they exist (the eager reference makes them)
    assert largest_for("eager") >= batch * heads * length * length
