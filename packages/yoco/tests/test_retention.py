"""Tests for papercraft.yoco.retention: gated retention (YOCO §2.2) in its four equivalent forms.

Every form is checked against a naive float64 loop over tokens written here, the forms against
each other (values, final states and gradients), and the padding contract the model relies on.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import papercraft.yoco.retention as retention_module
from papercraft.yoco.retention import (
    DEFAULT_CHUNK_SIZE,
    retention_chunkwise,
    retention_parallel,
    retention_recurrent,
    retention_step,
)

RTOL = 1e-5


def _inputs(
    batch: int = 2,
    heads: int = 3,
    length: int = 37,
    dk: int = 8,
    dv: int = 6,
    *,
    seed: int = 0,
    gate_scale: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Random float32 q, k, v and YOCO-style gates ``logsigmoid(x) / 16`` (times ``gate_scale``)."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, length, dk, generator=gen)
    k = torch.randn(batch, heads, length, dk, generator=gen) * dk**-0.5
    v = torch.randn(batch, heads, length, dv, generator=gen)
    log_decay = F.logsigmoid(torch.randn(batch, heads, length, generator=gen)) / 16 * gate_scale
    return q, k, v, log_decay


def _state(batch: int = 2, heads: int = 3, dk: int = 8, dv: int = 6, seed: int = 1) -> Tensor:
    return torch.randn(batch, heads, dk, dv, generator=torch.Generator().manual_seed(seed))


def _naive(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The definition, token by token in float64: S_t = γ_t S_{t-1} + k_tᵀ v_t, o_t = q_t S_t."""
    batch, heads, length, dk = q.shape
    s = (
        torch.zeros(batch, heads, dk, v.shape[-1], dtype=torch.float64)
        if state is None
        else state.double()
    )
    outs = []
    for t in range(length):
        gamma = log_decay[:, :, t].double().exp()
        kv = k[:, :, t].double().unsqueeze(-1) * v[:, :, t].double().unsqueeze(-2)
        s = gamma[..., None, None] * s + kv
        outs.append(torch.einsum("bhd,bhde->bhe", q[:, :, t].double(), s))
    out = torch.stack(outs, dim=2) if outs else torch.zeros(batch, heads, 0, v.shape[-1])
    return out, s


def _assert_close(actual: Tensor, expected: Tensor, rtol: float = RTOL) -> None:
    """Equal up to ``rtol`` relative to the largest magnitude of ``expected``."""
    assert actual.shape == expected.shape
    scale = expected.double().abs().max().clamp_min(1.0)
    err = (actual.double() - expected.double()).abs().max() / scale
    assert err <= rtol, f"max error {float(err):.3g} (relative to {float(scale):.3g}) > {rtol}"


# --------------------------------------------------------------------------------------------------
# values


def test_parallel_matches_naive_loop() -> None:
    q, k, v, g = _inputs(length=29, gate_scale=4.0)
    expected, _ = _naive(q, k, v, g)
    out = retention_parallel(q, k, v, g)
    assert out.dtype == torch.float32
    _assert_close(out, expected)


@pytest.mark.parametrize(
    ("length", "chunk_size"),
    [(1, 64), (16, 16), (37, 16), (64, 64), (100, 7), (100, 32), (100, 128), (130, 1)],
)
@pytest.mark.parametrize("with_state", [False, True])
def test_forms_agree(length: int, chunk_size: int, with_state: bool) -> None:
    q, k, v, g = _inputs(length=length, seed=length)
    state = _state() if with_state else None
    expected, expected_state = _naive(q, k, v, g, state)

    out_rec, state_rec = retention_recurrent(q, k, v, g, initial_state=state)
    out_chunk, state_chunk = retention_chunkwise(
        q, k, v, g, chunk_size=chunk_size, initial_state=state, output_final_state=True
    )
    _assert_close(out_rec, expected)
    _assert_close(out_chunk, expected)
    assert state_chunk is not None
    _assert_close(state_rec, expected_state)
    _assert_close(state_chunk, expected_state)
    _assert_close(state_chunk, state_rec)
    if not with_state:
        _assert_close(retention_parallel(q, k, v, g), expected)


def test_chunkwise_many_segments_and_both_intra_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    # small segments so that one call crosses many segment boundaries, with a ragged tail
    monkeypatch.setattr(retention_module, "_SEGMENT_TOKENS", 24)
    q, k, v, g = _inputs(length=131, gate_scale=8.0)
    state = _state()
    expected, expected_state = _naive(q, k, v, g, state)
    for allow_factorized in (True, False):
        with torch.no_grad():
            out, final = retention_module._chunkwise(
                q,
                k,
                v,
                g,
                chunk_size=10,
                initial_state=state,
                allow_factorized=allow_factorized,
            )
        _assert_close(out, expected)
        _assert_close(final, expected_state)


def test_chunkwise_default_chunk_and_output_final_state_flag() -> None:
    q, k, v, g = _inputs(length=DEFAULT_CHUNK_SIZE * 2 + 5, heads=1, batch=1)
    out, final = retention_chunkwise(q, k, v, g)
    assert final is None
    _assert_close(out, _naive(q, k, v, g)[0])


def test_chunkwise_accepts_non_contiguous_inputs() -> None:
    # the model builds (B, T, H, D) projections and transposes them
    q, k, v, g = _inputs(length=45)
    qt, kt, vt = (x.transpose(1, 2).contiguous().transpose(1, 2) for x in (q, k, v))
    gt = g.transpose(1, 2).contiguous().transpose(1, 2)
    assert not qt.is_contiguous()
    assert not gt.is_contiguous()
    out, final = retention_chunkwise(qt, kt, vt, gt, chunk_size=8, output_final_state=True)
    expected, expected_state = _naive(q, k, v, g)
    _assert_close(out, expected)
    assert final is not None
    _assert_close(final, expected_state)


def test_empty_sequence() -> None:
    q, k, v, g = _inputs(length=0)
    state = _state()
    out, final = retention_chunkwise(q, k, v, g, initial_state=state, output_final_state=True)
    assert out.shape == (2, 3, 0, 6)
    assert final is not None
    assert torch.equal(final, state)
    assert final is not state
    out, final = retention_chunkwise(q, k, v, g, output_final_state=True)
    assert final is not None
    assert final.shape == (2, 3, 8, 6)
    assert not final.any()
    out_rec, final_rec = retention_recurrent(q, k, v, g, initial_state=state)
    assert out_rec.shape == (2, 3, 0, 6)
    assert torch.equal(final_rec, state)
    assert retention_parallel(q, k, v, g).shape == (2, 3, 0, 6)


def test_step_chained_equals_recurrent() -> None:
    q, k, v, g = _inputs(length=12)
    state = _state()
    expected, expected_state = retention_recurrent(q, k, v, g, initial_state=state)
    before = state.clone()
    outs = []
    s = state
    for t in range(q.shape[2]):
        o, s = retention_step(
            q[:, :, t : t + 1], k[:, :, t : t + 1], v[:, :, t : t + 1], g[:, :, t : t + 1], s
        )
        assert o.shape == (2, 3, 1, 6)
        assert s.dtype == torch.float32
        outs.append(o)
    assert torch.equal(state, before), "retention_step must not modify the state it is given"
    _assert_close(torch.cat(outs, dim=2), expected)
    _assert_close(s, expected_state)


def test_prefill_then_steps_equals_one_pass() -> None:
    # the decode path: chunkwise prefill hands its state to token-by-token steps
    q, k, v, g = _inputs(length=40)
    expected, _ = _naive(q, k, v, g)
    out, s = retention_chunkwise(
        q[:, :, :33],
        k[:, :, :33],
        v[:, :, :33],
        g[:, :, :33],
        chunk_size=16,
        output_final_state=True,
    )
    assert s is not None
    outs = [out]
    for t in range(33, 40):
        o, s = retention_step(
            q[:, :, t : t + 1], k[:, :, t : t + 1], v[:, :, t : t + 1], g[:, :, t : t + 1], s
        )
        outs.append(o)
    _assert_close(torch.cat(outs, dim=2), expected)


# --------------------------------------------------------------------------------------------------
# gradients


def test_chunkwise_gradients_match_parallel_and_naive() -> None:
    q, k, v, g = _inputs(length=53, gate_scale=4.0)
    upstream = torch.randn(2, 3, 53, 6, generator=torch.Generator().manual_seed(5))

    def grads(fn: str) -> tuple[Tensor, ...]:
        leaves = [x.double() if fn == "naive" else x.clone() for x in (q, k, v, g)]
        for x in leaves:
            x.requires_grad_(True)
        if fn == "naive":
            out = _naive(*leaves)[0]
        elif fn == "parallel":
            out = retention_parallel(*leaves)
        else:
            out = retention_chunkwise(*leaves, chunk_size=16)[0]
        return torch.autograd.grad((out * upstream.to(out.dtype)).sum(), leaves)

    reference = grads("naive")
    for name in ("parallel", "chunkwise"):
        for got, want in zip(grads(name), reference, strict=True):
            _assert_close(got, want, rtol=2e-5)
    for got, want in zip(grads("chunkwise"), grads("parallel"), strict=True):
        _assert_close(got, want, rtol=2e-5)


def test_state_gradients_match_recurrent(monkeypatch: pytest.MonkeyPatch) -> None:
    # gradients flowing through initial_state and the final state, across segments
    monkeypatch.setattr(retention_module, "_SEGMENT_TOKENS", 16)
    q, k, v, g = _inputs(length=37)
    gen = torch.Generator().manual_seed(9)
    up_out, up_state = (
        torch.randn(2, 3, 37, 6, generator=gen),
        torch.randn(2, 3, 8, 6, generator=gen),
    )

    def grads(chunked: bool) -> tuple[Tensor, ...]:
        leaves = [x.clone().requires_grad_(True) for x in (q, k, v, g, _state())]
        if chunked:
            out, final = retention_chunkwise(
                *leaves[:4], chunk_size=5, initial_state=leaves[4], output_final_state=True
            )
            assert final is not None
        else:
            out, final = retention_recurrent(*leaves[:4], initial_state=leaves[4])
        loss = (out * up_out).sum() + (final * up_state).sum()
        return torch.autograd.grad(loss, leaves)

    for got, want in zip(grads(True), grads(False), strict=True):
        _assert_close(got, want, rtol=2e-5)


def test_inference_mode_then_autograd() -> None:
    # in-place fast paths under no_grad/inference_mode, out-of-place under autograd: same values,
    # and nothing created in inference mode may leak into a later backward pass
    q, k, v, g = _inputs(length=40)
    with torch.inference_mode():
        fast_chunk = retention_chunkwise(q, k, v, g, chunk_size=8)[0]
        fast_parallel = retention_parallel(q, k, v, g)
    leaves = [x.clone().requires_grad_(True) for x in (q, k, v, g)]
    slow_chunk = retention_chunkwise(*leaves, chunk_size=8)[0]
    slow_parallel = retention_parallel(*leaves)
    _assert_close(slow_chunk.detach(), fast_chunk)
    _assert_close(slow_parallel.detach(), fast_parallel)
    (slow_chunk + slow_parallel).sum().backward()
    assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in leaves)


# --------------------------------------------------------------------------------------------------
# dtypes and numerics


def test_bf16_inputs_close_to_fp32() -> None:
    q, k, v, g = _inputs(length=70)
    qb, kb, vb, gb = (x.bfloat16() for x in (q, k, v, g))
    reference, reference_state = _naive(qb, kb, vb, gb)  # the same rounded inputs, float64
    out, final = retention_chunkwise(qb, kb, vb, gb, chunk_size=16, output_final_state=True)
    assert out.dtype == torch.bfloat16
    assert final is not None
    assert final.dtype == torch.float32
    _assert_close(final, reference_state)  # the state never leaves float32
    _assert_close(out, reference, rtol=1e-2)  # only the final rounding to bf16
    out_rec, state_rec = retention_recurrent(qb, kb, vb, gb)
    assert out_rec.dtype == torch.bfloat16
    assert state_rec.dtype == torch.float32
    _assert_close(out_rec, reference, rtol=1e-2)
    assert retention_parallel(qb, kb, vb, gb).dtype == torch.bfloat16
    o_step, s_step = retention_step(
        qb[:, :, :1], kb[:, :, :1], vb[:, :, :1], gb[:, :, :1], torch.zeros(2, 3, 8, 6)
    )
    assert o_step.dtype == torch.bfloat16
    assert s_step.dtype == torch.float32


def test_strong_decay_is_finite_and_exact() -> None:
    # log γ ~ -20 per token: chunk totals far beyond e^{±88}; nothing may overflow
    q, k, v, _ = _inputs(length=150)
    g = -20.0 + torch.rand(2, 3, 150, generator=torch.Generator().manual_seed(3))
    g[:, :, ::7] = 0.0  # mixed with tokens that do not decay at all
    expected, expected_state = _naive(q, k, v, g)
    for chunk_size in (16, 64, 150):
        out, final = retention_chunkwise(q, k, v, g, chunk_size=chunk_size, output_final_state=True)
        assert torch.isfinite(out).all()
        assert final is not None
        assert torch.isfinite(final).all()
        _assert_close(out, expected)
        _assert_close(final, expected_state)
    out_par = retention_parallel(q, k, v, g)
    assert torch.isfinite(out_par).all()
    _assert_close(out_par, expected)

    leaves = [x.clone().requires_grad_(True) for x in (q, k, v, g)]
    out, _ = retention_chunkwise(*leaves, chunk_size=64)
    for grad in torch.autograd.grad(out.square().sum(), leaves):
        assert torch.isfinite(grad).all()


# --------------------------------------------------------------------------------------------------
# padding contract


@pytest.mark.parametrize("zeroed", ["k", "v"])
def test_left_padding_is_invisible(zeroed: str) -> None:
    """k = 0 (or v = 0) and log γ = 0 at left-padded positions == the padded tokens don't exist."""
    pad, length = 11, 30
    q, k, v, g = _inputs(length=length)
    junk = _inputs(length=pad, seed=99)
    qp, kp, vp = (torch.cat([j, x], dim=2) for j, x in zip(junk[:3], (q, k, v), strict=True))
    gp = torch.cat([junk[3], g], dim=2)
    gp[:, :, :pad] = 0.0
    if zeroed == "k":
        kp[:, :, :pad] = 0.0
    else:
        vp[:, :, :pad] = 0.0
    state = _state()

    for init in (None, state):
        want, want_state = retention_chunkwise(
            q, k, v, g, chunk_size=8, initial_state=init, output_final_state=True
        )
        got, got_state = retention_chunkwise(
            qp, kp, vp, gp, chunk_size=8, initial_state=init, output_final_state=True
        )
        assert want_state is not None
        assert got_state is not None
        _assert_close(got[:, :, pad:], want)
        _assert_close(got_state, want_state)
        got_rec, got_rec_state = retention_recurrent(qp, kp, vp, gp, initial_state=init)
        _assert_close(got_rec[:, :, pad:], want)
        _assert_close(got_rec_state, want_state)
    _assert_close(retention_parallel(qp, kp, vp, gp)[:, :, pad:], retention_parallel(q, k, v, g))


# --------------------------------------------------------------------------------------------------
# bad input


def test_bad_inputs_raise_clear_errors() -> None:
    q, k, v, g = _inputs(length=5)
    state = _state()
    with pytest.raises(ValueError, match="q must have rank 4"):
        retention_parallel(q[0], k, v, g)
    with pytest.raises(ValueError, match="log_decay must have rank 3"):
        retention_recurrent(q, k, v, g[..., None])
    with pytest.raises(ValueError, match="k must have the same shape as q"):
        retention_chunkwise(q, k[..., :4], v, g)
    with pytest.raises(ValueError, match="v must have shape"):
        retention_chunkwise(q, k, v[:, :, :3], g)
    with pytest.raises(ValueError, match=r"log_decay must have shape \(B, H, T\)"):
        retention_chunkwise(q, k, v, g[:, :2])
    with pytest.raises(TypeError, match="share one dtype"):
        retention_chunkwise(q, k.double(), v, g)
    with pytest.raises(TypeError, match="floating-point"):
        retention_chunkwise(q.long(), k.long(), v.long(), g)
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor"):
        retention_chunkwise(q, k, v, [0.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be <= 0"):
        retention_chunkwise(q, k, v, g.abs() + 0.1)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        retention_chunkwise(q, k, v, g, chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        retention_chunkwise(q, k, v, g, chunk_size=True)
    with pytest.raises(ValueError, match=r"initial_state must have shape \(B, H, Dk, Dv\)"):
        retention_chunkwise(q, k, v, g, initial_state=state[:, :, :, :2])
    with pytest.raises(TypeError, match="initial_state must be float32"):
        retention_recurrent(q, k, v, g, initial_state=state.bfloat16())
    with pytest.raises(ValueError, match="exactly one token"):
        retention_step(q, k, v, g, state)
    with pytest.raises(ValueError, match=r"state must have shape"):
        retention_step(q[:, :, :1], k[:, :, :1], v[:, :, :1], g[:, :, :1], state[:1])


# --------------------------------------------------------------------------------------------------
# accelerator


@pytest.mark.cuda
def test_cuda_matches_cpu() -> None:
    q, k, v, g = _inputs(length=300, gate_scale=4.0)
    state = _state()
    want, want_state = retention_chunkwise(q, k, v, g, initial_state=state, output_final_state=True)
    assert want_state is not None
    dev = [x.cuda() for x in (q, k, v, g, state)]
    got, got_state = retention_chunkwise(
        *dev[:4], chunk_size=32, initial_state=dev[4], output_final_state=True
    )
    assert got_state is not None
    _assert_close(got.cpu(), want, rtol=1e-4)
    _assert_close(got_state.cpu(), want_state, rtol=1e-4)
    _assert_close(retention_parallel(*dev[:4]).cpu(), retention_parallel(q, k, v, g), rtol=1e-4)
    qd, kd, vd, gd = (x[:, :, :1] for x in dev[:4])
    o, s = retention_step(qd, kd, vd, gd, dev[4])
    o_cpu, s_cpu = retention_step(q[:, :, :1], k[:, :, :1], v[:, :, :1], g[:, :, :1], state)
    _assert_close(o.cpu(), o_cpu, rtol=1e-4)
    _assert_close(s.cpu(), s_cpu, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_kernels_run_under_cpu_autocast(dtype: torch.dtype) -> None:
    """Training with bf16 autocast on CPU must not feed mixed-dtype operands to the kernels."""
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, 37, 8, generator=gen) for _ in range(3))
    log_decay = -torch.rand(1, 2, 37, generator=gen)
    reference, _ = retention_chunkwise(q, k, v, log_decay, chunk_size=16)
    with torch.autocast(device_type="cpu", dtype=dtype):
        out, _ = retention_chunkwise(q, k, v, log_decay, chunk_size=16)
        par = retention_parallel(q, k, v, log_decay)
        rec, _ = retention_recurrent(q, k, v, log_decay)
    for result in (out, par, rec):
        assert result.dtype == torch.float32
        torch.testing.assert_close(result, reference, rtol=1e-5, atol=1e-5)
