"""Numerics of papercraft.core.attention: eager vs a naive loop, every backend vs eager.

Tolerances:
- eager (float32) vs the naive float64 per-query loop: atol 1e-5, rtol 1e-5;
- CPU backends vs eager, float32: atol 2e-5, rtol 1e-4 (values and gradients);
- CPU backends vs eager, bfloat16 (both fed the same bf16 inputs): atol/rtol 2e-2 on values,
  3e-2 on gradients (one bf16 ulp near 1 is 7.8e-3; both accumulate in float32);
- CUDA backends (flash, xformers) vs eager on the GPU: atol/rtol 2e-2 (fp16/bf16), 2e-4 (fp32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor

from papercraft.core.attention import attention, get_backend
from papercraft.core.attention._blockwise import blockwise_attention


@dataclass(frozen=True)
class Case:
    """One attention configuration; ``mask`` names a mask recipe from :func:`make_mask`."""

    name: str
    batch: int = 2
    heads: int = 4
    kv_heads: int = 2
    num_queries: int = 6
    num_keys: int = 6
    dim: int = 8
    causal: bool = True
    window: int | None = None
    mask: str | None = None


CASES = [
    Case("mha_causal", kv_heads=4),
    Case("gqa_causal"),
    Case("mqa_full", kv_heads=1, causal=False),
    Case("gqa_window", num_queries=9, num_keys=9, window=3),
    Case("window_1", window=1),
    Case("symmetric_window", num_queries=7, num_keys=7, causal=False, window=2),
    Case("chunk_t_lt_s", num_queries=3, num_keys=10, window=4),
    Case("chunk_t_lt_s_full", num_queries=4, num_keys=9),
    Case("decode_t1", num_queries=1, num_keys=9),
    Case("decode_t1_window", num_queries=1, num_keys=9, window=4),
    Case("decode_symmetric", num_queries=1, num_keys=9, causal=False, window=3),
    Case("t_gt_s_causal", num_queries=7, num_keys=3),
    Case("t_gt_s_symmetric", num_queries=8, num_keys=3, causal=False, window=2),
    Case("bool_mask", mask="bool"),
    Case("bool_mask_2d_full", causal=False, num_queries=5, num_keys=7, mask="bool_2d"),
    Case("additive_mask_window", num_queries=8, num_keys=8, window=3, mask="additive"),
    Case("additive_mask_decode", num_queries=2, num_keys=9, mask="additive"),
    Case("empty_rows_bool", mask="empty_rows_bool"),
    Case("empty_rows_additive", causal=False, mask="empty_rows_additive"),
]
CPU_BACKENDS = ["eager", "sdpa", "blockwise"]
FP32_TOLS = (2e-5, 2e-5, 2e-5, 2e-5)
BF16_TOLS = (2e-2, 3e-2, 3e-2, 3e-2)


def make_mask(case: Case, gen: torch.Generator) -> Tensor | None:
    """A deterministic mask for ``case`` (True / finite = may attend)."""
    b, h, t, s = case.batch, case.heads, case.num_queries, case.num_keys
    if case.mask is None:
        return None
    if case.mask == "bool":
        return torch.rand(b, 1, t, s, generator=gen) > 0.3
    if case.mask == "bool_2d":
        return torch.rand(t, s, generator=gen) > 0.4
    if case.mask == "additive":
        bias = torch.randn(1, h, t, s, generator=gen)
        return bias.masked_fill(torch.rand(1, h, t, s, generator=gen) < 0.2, float("-inf"))
    if case.mask == "empty_rows_bool":
        keep = torch.rand(b, h, t, s, generator=gen) > 0.3
        keep[0, 1, 2] = False  # one row of one head
        keep[1, :, 0] = False  # one query of every head
        return keep
    if case.mask == "empty_rows_additive":
        bias = torch.randn(b, h, t, s, generator=gen)
        bias[0, 3, 4] = float("-inf")
        bias[1, :, 1] = float("-inf")
        return bias
    raise AssertionError(case.mask)


def make_inputs(
    case: Case, dtype: torch.dtype, *, seed: int = 0, device: str = "cpu"
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor]:
    """Leaf tensors q, k, v (requiring grad), the mask and an upstream gradient."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(case.batch, case.heads, case.num_queries, case.dim, generator=gen)
    k = torch.randn(case.batch, case.kv_heads, case.num_keys, case.dim, generator=gen)
    v = torch.randn(case.batch, case.kv_heads, case.num_keys, case.dim, generator=gen)
    grad = torch.randn(case.batch, case.heads, case.num_queries, case.dim, generator=gen)
    mask = make_mask(case, gen)
    leaves = [x.to(device=device, dtype=dtype).requires_grad_() for x in (q, k, v)]
    if mask is not None:
        mask = mask.to(device)
    return leaves[0], leaves[1], leaves[2], mask, grad.to(device=device, dtype=dtype)


def naive_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool,
    window: int | None,
    attn_mask: Tensor | None,
) -> Tensor:
    """Attention written one query at a time from the definition, in float64."""
    batch, heads, num_queries, dim = q.shape
    num_keys = k.shape[2]
    group = heads // k.shape[1]
    if attn_mask is not None:
        attn_mask = attn_mask.expand(batch, heads, num_queries, num_keys)
    rows = []
    for b in range(batch):
        for h in range(heads):
            for i in range(num_queries):
                pos = num_keys - num_queries + i
                keys, biases = [], []
                for j in range(num_keys):
                    if causal and j > pos:
                        continue
                    if window is not None and causal and j <= pos - window:
                        continue
                    if window is not None and not causal and abs(j - pos) >= window:
                        continue
                    bias = 0.0
                    if attn_mask is not None:
                        entry = attn_mask[b, h, i, j]
                        if attn_mask.dtype == torch.bool:
                            if not entry:
                                continue
                        elif math.isinf(float(entry)):
                            continue
                        else:
                            bias = float(entry)
                    keys.append(j)
                    biases.append(bias)
                if not keys:
                    rows.append(torch.zeros(dim, dtype=torch.float64))
                    continue
                kh = k[b, h // group, keys].double()
                vh = v[b, h // group, keys].double()
                logits = kh @ q[b, h, i].double() / math.sqrt(dim)
                logits = logits + torch.tensor(biases, dtype=torch.float64)
                weights = torch.softmax(logits, dim=0)
                rows.append(weights @ vh)
    return torch.stack(rows).reshape(batch, heads, num_queries, dim)


def run_with_grads(
    out: Tensor, leaves: tuple[Tensor, Tensor, Tensor], grad: Tensor
) -> tuple[Tensor, ...]:
    """``(out, dq, dk, dv)`` for the upstream gradient ``grad``."""
    grads = torch.autograd.grad(out, leaves, grad)
    return (out.detach(), *grads)


def assert_matches(
    got: tuple[Tensor, ...],
    want: tuple[Tensor, ...],
    *,
    tols: tuple[float, float, float, float],
    label: str,
) -> None:
    """Compare ``(out, dq, dk, dv)`` tuples with per-item atol = rtol, naming the item."""
    for name, g, w, tol in zip(("out", "dq", "dk", "dv"), got, want, tols, strict=True):
        assert g.dtype == w.dtype, f"{label} {name}: dtype {g.dtype} != {w.dtype}"

        def describe(message: str, prefix: str = f"{label} {name}") -> str:
            return f"{prefix}: {message}"

        torch.testing.assert_close(g, w, atol=tol, rtol=tol, msg=describe)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_eager_matches_naive_loop(case: Case) -> None:
    q, k, v, mask, grad = make_inputs(case, torch.float32)
    got = run_with_grads(
        attention(q, k, v, causal=case.causal, window=case.window, attn_mask=mask, backend="eager"),
        (q, k, v),
        grad,
    )
    ref_out = naive_attention(q, k, v, causal=case.causal, window=case.window, attn_mask=mask)
    want = run_with_grads(ref_out, (q, k, v), grad.double())
    as_double = tuple(x.double() for x in got), tuple(x.double() for x in want)
    assert_matches(*as_double, tols=(1e-5,) * 4, label=f"eager vs naive, {case.name}")


def test_naive_loop_is_plain_softmax_attention_without_masks() -> None:
    # anchors the naive loop itself to the textbook formula on a maskless case
    case = Case("plain", kv_heads=4, causal=False)
    q, k, v, _, _ = make_inputs(case, torch.float64)
    scores = q @ k.transpose(-1, -2) / math.sqrt(case.dim)
    want = torch.softmax(scores, dim=-1) @ v
    got = naive_attention(q, k, v, causal=False, window=None, attn_mask=None)
    torch.testing.assert_close(got, want)


def test_eager_honours_explicit_scale() -> None:
    case = Case("scale", causal=False)
    q, k, v, _, _ = make_inputs(case, torch.float32)
    # scaling q by c with scale s equals scale c*s
    a = attention(q * 2.0, k, v, causal=False, scale=0.1, backend="eager")
    b = attention(q, k, v, causal=False, scale=0.2, backend="eager")
    torch.testing.assert_close(a, b)
    c = attention(q, k, v, causal=False, backend="eager")
    assert not torch.allclose(b, c, atol=1e-3)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_cpu_backend_matches_eager_fp32(backend: str, case: Case) -> None:
    q, k, v, mask, grad = make_inputs(case, torch.float32, seed=1)
    kwargs: dict[str, Any] = {"causal": case.causal, "window": case.window, "attn_mask": mask}
    want = run_with_grads(attention(q, k, v, backend="eager", **kwargs), (q, k, v), grad)
    got = run_with_grads(attention(q, k, v, backend=backend, **kwargs), (q, k, v), grad)
    assert got[0].dtype == torch.float32
    assert_matches(got, want, tols=FP32_TOLS, label=f"{backend}, {case.name}")


@pytest.mark.parametrize("backend", ["sdpa", "blockwise"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_cpu_backend_matches_eager_bf16(backend: str, case: Case) -> None:
    q, k, v, mask, grad = make_inputs(case, torch.bfloat16, seed=2)
    kwargs: dict[str, Any] = {"causal": case.causal, "window": case.window, "attn_mask": mask}
    want = run_with_grads(attention(q, k, v, backend="eager", **kwargs), (q, k, v), grad)
    got = run_with_grads(attention(q, k, v, backend=backend, **kwargs), (q, k, v), grad)
    assert got[0].dtype == torch.bfloat16
    assert_matches(got, want, tols=BF16_TOLS, label=f"{backend}, {case.name}")


@pytest.mark.parametrize("block_size", [1, 2, 3, 5])
@pytest.mark.parametrize(
    "case",
    [
        c
        for c in CASES
        if c.name
        in {
            "gqa_window",
            "symmetric_window",
            "chunk_t_lt_s",
            "t_gt_s_causal",
            "t_gt_s_symmetric",
            "additive_mask_window",
            "bool_mask_2d_full",
            "empty_rows_bool",
            "gqa_causal",
        }
    ],
    ids=lambda c: c.name,
)
def test_blockwise_small_blocks_match_eager(block_size: int, case: Case) -> None:
    # many blocks, uneven last block, empty slabs: the block plan itself is under test here
    q, k, v, mask, grad = make_inputs(case, torch.float32, seed=3)
    mask4 = None if mask is None else mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))
    out = blockwise_attention(
        q,
        k,
        v,
        causal=case.causal,
        window=case.window,
        scale=case.dim**-0.5,
        attn_mask=mask4,
        block_size=block_size,
    )
    got = run_with_grads(out, (q, k, v), grad)
    kwargs: dict[str, Any] = {"causal": case.causal, "window": case.window, "attn_mask": mask}
    want = run_with_grads(attention(q, k, v, backend="eager", **kwargs), (q, k, v), grad)
    assert_matches(got, want, tols=FP32_TOLS, label=f"blocks of {block_size}, {case.name}")


def test_blockwise_many_default_blocks_match_eager() -> None:
    # through the registry: T=S=300 spans three 128-query blocks
    case = Case("long", batch=1, heads=2, kv_heads=1, num_queries=300, num_keys=300, window=20)
    q, k, v, _, grad = make_inputs(case, torch.float32, seed=4)
    want = run_with_grads(attention(q, k, v, window=20, backend="eager"), (q, k, v), grad)
    got = run_with_grads(attention(q, k, v, window=20, backend="blockwise"), (q, k, v), grad)
    assert_matches(got, want, tols=FP32_TOLS, label="blockwise, T=S=300")


def _empty_rows(case: Case, mask: Tensor | None) -> Tensor:
    """Boolean (B, H, T) of query rows that may attend to no key, from the naive rule."""
    batch, heads, t, s = case.batch, case.heads, case.num_queries, case.num_keys
    pos = torch.arange(s - t, s)[:, None]
    key = torch.arange(s)[None, :]
    visible = torch.ones(t, s, dtype=torch.bool)
    if case.causal:
        visible &= key <= pos
        if case.window is not None:
            visible &= key > pos - case.window
    elif case.window is not None:
        visible &= (key - pos).abs() < case.window
    full = visible.expand(batch, heads, t, s)
    if mask is not None:
        allowed = mask if mask.dtype == torch.bool else ~torch.isneginf(mask)
        full = full & allowed
    return ~full.any(dim=-1)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(
    "case",
    [
        c
        for c in CASES
        if c.name in {"empty_rows_bool", "empty_rows_additive", "t_gt_s_causal", "t_gt_s_symmetric"}
    ],
    ids=lambda c: c.name,
)
def test_fully_masked_rows_give_zeros_and_zero_grads(backend: str, case: Case) -> None:
    q, k, v, mask, grad = make_inputs(case, torch.float32, seed=5)
    empty = _empty_rows(case, mask)
    assert empty.any()
    assert not empty.all()
    out = attention(
        q, k, v, causal=case.causal, window=case.window, attn_mask=mask, backend=backend
    )
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad)
    assert torch.isfinite(out).all()
    assert torch.isfinite(dq).all()
    assert torch.isfinite(dk).all()
    assert torch.isfinite(dv).all()
    assert (out[empty] == 0).all()
    assert (dq[empty] == 0).all()
    assert (out[~empty].abs().sum(-1) > 0).all()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_all_rows_empty_still_differentiable(backend: str) -> None:
    case = Case("all_empty", mask="bool")
    q, k, v, _, grad = make_inputs(case, torch.float32)
    mask = torch.zeros(case.num_queries, case.num_keys, dtype=torch.bool)
    out = attention(q, k, v, attn_mask=mask, backend=backend)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad)
    assert (out == 0).all()
    assert (dq == 0).all()
    assert (dk == 0).all()
    assert (dv == 0).all()
    # causal with T > S and every query before the first key: same, without a mask
    q2 = torch.randn(1, 2, 3, 4, requires_grad=True)
    kv = torch.randn(1, 2, 1, 4, requires_grad=True)
    out2 = attention(q2, kv, kv, window=1, backend=backend)
    assert out2.shape == (1, 2, 3, 4)
    assert (out2[:, :, :2] == 0).all()
    assert (out2[:, :, 2] != 0).any()


def test_decode_step_equals_last_row_of_prefill() -> None:
    # the bottom-right rule in one property: decoding token t over keys [0, t] equals row t
    case = Case("prefill", num_queries=10, num_keys=10, window=4)
    q, k, v, _, _ = make_inputs(case, torch.float32)
    for backend in CPU_BACKENDS:
        full = attention(q, k, v, window=4, backend=backend)
        for t in (0, 5, 9):
            step = attention(
                q[:, :, t : t + 1], k[:, :, : t + 1], v[:, :, : t + 1], window=4, backend=backend
            )
            torch.testing.assert_close(step, full[:, :, t : t + 1], atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------- CUDA backends

CUDA_CASES = [
    c
    for c in CASES
    if c.name
    in {
        "mha_causal",
        "gqa_causal",
        "mqa_full",
        "gqa_window",
        "symmetric_window",
        "chunk_t_lt_s",
        "decode_t1",
        "decode_t1_window",
        "t_gt_s_causal",
        "bool_mask",
        "additive_mask_window",
        "empty_rows_bool",
    }
]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize("backend", ["flash", "xformers"])
@pytest.mark.parametrize("case", CUDA_CASES, ids=lambda c: c.name)
def test_cuda_backend_matches_eager(backend: str, dtype: torch.dtype, case: Case) -> None:
    available, reason = get_backend(backend).is_available()
    if not available:
        pytest.skip(reason)
    wide = Case(**{**case.__dict__, "dim": 64})  # kernels want head dims that are multiples of 8
    q, k, v, mask, grad = make_inputs(wide, dtype, seed=6, device="cuda")
    refusal = get_backend(backend).supports(
        q, k, v, causal=wide.causal, window=wide.window, attn_mask=mask
    )
    if refusal is not None:
        assert backend == "flash"
        assert dtype == torch.float32 or mask is not None
        pytest.skip(refusal)
    kwargs: dict[str, Any] = {"causal": wide.causal, "window": wide.window, "attn_mask": mask}
    want = run_with_grads(attention(q, k, v, backend="eager", **kwargs), (q, k, v), grad)
    got = run_with_grads(attention(q, k, v, backend=backend, **kwargs), (q, k, v), grad)
    tol = 2e-4 if dtype == torch.float32 else 2e-2
    assert all(torch.isfinite(x).all() for x in got), f"{backend} gave non-finite values"
    assert_matches(got, want, tols=(tol,) * 4, label=f"{backend} {dtype}, {case.name}")
    if mask is not None or wide.num_queries > wide.num_keys:
        empty = _empty_rows(wide, None if mask is None else mask.cpu()).cuda()
        assert (got[0][empty] == 0).all()
        assert (got[1][empty] == 0).all()


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_sdpa_on_cuda_matches_eager(dtype: torch.dtype) -> None:
    case = Case("cuda_sdpa", num_queries=5, num_keys=12, dim=64, window=4, mask="bool")
    q, k, v, mask, grad = make_inputs(case, dtype, seed=7, device="cuda")
    kwargs: dict[str, Any] = {"window": 4, "attn_mask": mask}
    want = run_with_grads(attention(q, k, v, backend="eager", **kwargs), (q, k, v), grad)
    got = run_with_grads(attention(q, k, v, backend="sdpa", **kwargs), (q, k, v), grad)
    assert_matches(got, want, tols=(2e-2,) * 4, label=f"sdpa cuda {dtype}")
