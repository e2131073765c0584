"""Tests for papercraft.core.rope: RoPE properties, both layouts, scaling, and parity with transformers."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from papercraft.core.rope import (
    RoPEScaling,
    RotaryEmbedding,
    apply_rope,
    convert_qk_weight_layout,
    convert_rope_layout,
    rope_cos_sin,
    rope_inv_freq,
    rope_layout_permutation,
)

LAYOUTS = ["interleaved", "half"]


def _naive_rope(
    x: Tensor, positions: Tensor, *, base: float, layout: str, rotary_dim: int | None = None
) -> Tensor:
    """Reference: rotate each channel pair by an explicit 2x2 matrix in fp64, one pair at a time.

    x: (B, H, T, D); positions: (T,) or (B, T).
    """
    out = x.double().clone()
    d = x.shape[-1]
    r = d if rotary_dim is None else rotary_dim
    pos = positions.double()
    if pos.ndim == 1:
        pos = pos[None].expand(x.shape[0], -1)
    for i in range(r // 2):
        theta = base ** (-2.0 * i / r)
        ang = pos * theta  # (B, T)
        c, s = torch.cos(ang)[:, None], torch.sin(ang)[:, None]  # (B, 1, T)
        a_idx, b_idx = (2 * i, 2 * i + 1) if layout == "interleaved" else (i, i + r // 2)
        a, b = x.double()[..., a_idx], x.double()[..., b_idx]
        out[..., a_idx] = a * c - b * s
        out[..., b_idx] = b * c + a * s
    return out


def _assert_close_to_naive(got: Tensor, ref: Tensor) -> None:
    """fp32 rotation vs the fp64 reference: fp32 angles of positions up to ~100 are off by ~1e-5."""
    torch.testing.assert_close(got, ref.to(got.dtype), atol=3e-5, rtol=1e-5)


def _hf_rope(
    head_dim: int,
    rope_parameters: dict[str, object],
    q: Tensor,
    positions: Tensor,
    max_position_embeddings: int = 32,
) -> Tensor:
    config = LlamaConfig(
        hidden_size=head_dim * 2,
        num_attention_heads=2,
        head_dim=head_dim,
        max_position_embeddings=max_position_embeddings,
        rope_parameters=rope_parameters,
    )
    rotary = LlamaRotaryEmbedding(config)
    cos, sin = rotary(q, positions)
    q_embed, _ = apply_rotary_pos_emb(q, q, cos, sin)
    return q_embed


# ------------------------------------------------------------------------------------------
# core properties
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_matches_naive_rotation_matrices(layout: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 16)
    pos = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [9, 3, 40, 7, 7, 100, 2]])
    cos, sin = rope_cos_sin(pos, dim=16, base=500.0)
    out = apply_rope(x, cos, sin, layout=layout)  # type: ignore[arg-type]
    _assert_close_to_naive(out, _naive_rope(x, pos, base=500.0, layout=layout))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("fractional", [False, True])
def test_scores_depend_only_on_relative_position(layout: str, fractional: bool) -> None:
    torch.manual_seed(1)
    d, t = 16, 6
    q = torch.randn(d).expand(1, 1, t, d)  # the same q and k at every position
    k = torch.randn(d).expand(1, 1, t, d)
    pos = torch.arange(t, dtype=torch.float32) * (1.75 if fractional else 1.0)

    def scores(p: Tensor) -> Tensor:
        cos, sin = rope_cos_sin(p, dim=d, base=100.0)
        qr = apply_rope(q, cos, sin, layout=layout)  # type: ignore[arg-type]
        kr = apply_rope(k, cos, sin, layout=layout)  # type: ignore[arg-type]
        return (qr @ kr.transpose(-1, -2))[0, 0]  # (T, T), S[i, j] = <R(p_i) q, R(p_j) k>

    base_scores = scores(pos)
    for shift in (3.0, 11.5, 250.25):
        torch.testing.assert_close(scores(pos + shift), base_scores, atol=2e-4, rtol=1e-4)
    # equally spaced positions: S is Toeplitz (constant along diagonals) ...
    for off in range(-t + 1, t):
        diag = torch.diagonal(base_scores, offset=off)
        torch.testing.assert_close(diag, diag[:1].expand_as(diag), atol=2e-4, rtol=1e-4)
    # ... and not constant overall: the rotation does something
    assert (base_scores - base_scores[0, 0]).abs().max() > 1e-2


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("rotary_dim", [16, 8])
def test_rotation_preserves_norm(layout: str, rotary_dim: int) -> None:
    torch.manual_seed(2)
    x = torch.randn(2, 2, 9, 16)
    cos, sin = rope_cos_sin(torch.randn(9) * 300, dim=rotary_dim)
    out = apply_rope(x, cos, sin, layout=layout)  # type: ignore[arg-type]
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
    assert not torch.allclose(out, x)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_position_zero_is_identity(layout: str) -> None:
    torch.manual_seed(3)
    x = torch.randn(1, 2, 4, 8)
    cos, sin = rope_cos_sin(torch.zeros(4, dtype=torch.long), dim=8)
    assert torch.equal(apply_rope(x, cos, sin, layout=layout), x)  # type: ignore[arg-type]


def test_rope_is_differentiable_and_linear() -> None:
    torch.manual_seed(4)
    x = torch.randn(1, 1, 3, 6, dtype=torch.float64, requires_grad=True)
    cos, sin = rope_cos_sin(torch.tensor([0.5, 2.0, 7.0]), dim=6)
    for layout in LAYOUTS:
        assert torch.autograd.gradcheck(
            lambda t, lay=layout: apply_rope(t, cos, sin, layout=lay),
            (x,),
        )


# ------------------------------------------------------------------------------------------
# parity with transformers (rotate-half layout)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rope_parameters", "scaling"),
    [
        ({"rope_type": "default", "rope_theta": 10000.0}, None),
        ({"rope_type": "linear", "factor": 4.0, "rope_theta": 500.0}, RoPEScaling("linear", 4.0)),
    ],
)
def test_matches_transformers_llama_static(
    rope_parameters: dict[str, Any], scaling: RoPEScaling | None
) -> None:
    torch.manual_seed(5)
    q = torch.randn(2, 3, 10, 16)
    pos = torch.stack([torch.arange(10), torch.arange(30, 40)])
    expected = _hf_rope(16, rope_parameters, q, pos)
    theta = float(rope_parameters["rope_theta"])
    rope = RotaryEmbedding(16, base=theta, scaling=scaling)
    got_q, got_k = rope(q, q.flip(1), pos)
    torch.testing.assert_close(got_q, expected, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(got_k, expected.flip(1), atol=2e-5, rtol=1e-5)
    # the functional path agrees too, and its cos equals HF's once duplicated for rotate-half
    cos, _ = rope_cos_sin(pos, dim=16, base=theta, scaling=scaling)
    hf_cos, _ = LlamaRotaryEmbedding(
        LlamaConfig(
            hidden_size=32, num_attention_heads=2, head_dim=16, rope_parameters=rope_parameters
        )
    )(q, pos)
    torch.testing.assert_close(torch.cat((cos, cos), dim=-1), hf_cos, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("seq_len", [20, 32, 75])
def test_matches_transformers_llama_dynamic(seq_len: int) -> None:
    """Below and at max_position_embeddings (32) nothing changes; above it the base grows."""
    torch.manual_seed(6)
    q = torch.randn(1, 2, seq_len, 16)
    pos = torch.arange(seq_len)[None]
    params = {"rope_type": "dynamic", "factor": 3.0, "rope_theta": 1000.0}
    expected = _hf_rope(16, params, q, pos, max_position_embeddings=32)
    scaling = RoPEScaling("dynamic", 3.0, max_position_embeddings=32)
    rope = RotaryEmbedding(16, base=1000.0, scaling=scaling)
    got, _ = rope(q, q, pos)
    torch.testing.assert_close(got, expected, atol=5e-5, rtol=1e-5)

    unscaled, _ = RotaryEmbedding(16, base=1000.0)(q, q, pos)
    if seq_len <= 32:
        torch.testing.assert_close(got, unscaled)
    else:
        assert (got - unscaled).abs().max() > 1e-2
        expected_base = 1000.0 * (3.0 * seq_len / 32 - 2.0) ** (16 / 14)
        torch.testing.assert_close(
            rope.inv_freq(seq_len=seq_len), rope_inv_freq(16, base=expected_base)
        )


def test_dynamic_is_recomputed_per_call() -> None:
    """Unlike transformers' growth-only cache, a short call after a long one is unscaled again."""
    torch.manual_seed(7)
    scaling = RoPEScaling("dynamic", 2.0, max_position_embeddings=16)
    rope = RotaryEmbedding(8, scaling=scaling)
    plain = RotaryEmbedding(8)
    q_short = torch.randn(1, 1, 8, 8)
    first, _ = rope(q_short, q_short, torch.arange(8))
    rope(torch.randn(1, 1, 64, 8), torch.randn(1, 1, 64, 8), torch.arange(64))
    again, _ = rope(q_short, q_short, torch.arange(8))
    assert torch.equal(first, again)
    assert torch.equal(again, plain(q_short, q_short, torch.arange(8))[0])
    # an explicit seq_len overrides max(position_ids) + 1
    long_cos, _ = rope.cos_sin(torch.arange(8), seq_len=64)
    assert not torch.allclose(long_cos, rope.cos_sin(torch.arange(8))[0])


def test_partial_rotary_matches_transformers_neox_style() -> None:
    torch.manual_seed(8)
    q = torch.randn(2, 2, 5, 16)
    pos = torch.tensor([3, 1, 4, 1, 5])
    rope = RotaryEmbedding(16, rotary_dim=8, base=10000.0)
    got, _ = rope(q, q, pos)
    assert torch.equal(got[..., 8:], q[..., 8:])
    expected = _hf_rope(8, {"rope_type": "default", "rope_theta": 10000.0}, q[..., :8], pos[None])
    torch.testing.assert_close(got[..., :8], expected, atol=2e-5, rtol=1e-5)
    for layout in LAYOUTS:
        inter = RotaryEmbedding(16, rotary_dim=8, layout=layout)(q, q, pos)[0]  # type: ignore[arg-type]
        ref = _naive_rope(q, pos, base=10000.0, layout=layout, rotary_dim=8)
        _assert_close_to_naive(inter, ref)


# ------------------------------------------------------------------------------------------
# scaling
# ------------------------------------------------------------------------------------------


def test_linear_scaling_is_position_interpolation() -> None:
    pos = torch.arange(12)
    scaled = rope_cos_sin(pos, dim=8, scaling=RoPEScaling("linear", 4.0))
    interpolated = rope_cos_sin(pos.float() / 4.0, dim=8)
    for a, b in zip(scaled, interpolated, strict=True):
        torch.testing.assert_close(a, b)


def test_ntk_scaling_base_and_frequency_endpoints() -> None:
    d, factor = 16, 4.0
    ntk = rope_inv_freq(d, base=10000.0, scaling=RoPEScaling("ntk", factor))
    expected = rope_inv_freq(d, base=10000.0 * factor ** (d / (d - 2)))
    torch.testing.assert_close(ntk, expected)
    plain = rope_inv_freq(d, base=10000.0)
    # NTK-aware: the highest frequency is kept, the lowest is interpolated by exactly `factor`
    assert ntk[0] == plain[0] == 1.0
    torch.testing.assert_close(ntk[-1], plain[-1] / factor)


def test_linspace_frequency_exponents() -> None:
    inv = rope_inv_freq(8, base=100.0, freq_exponents="linspace")
    torch.testing.assert_close(inv, torch.tensor([1.0, 100 ** (-1 / 3), 100 ** (-2 / 3), 0.01]))
    rope = RotaryEmbedding(8, base=100.0, freq_exponents="linspace", layout="interleaved")
    torch.testing.assert_close(rope.inv_freq(), inv)


# ------------------------------------------------------------------------------------------
# layouts
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rotary_dim", [None, 6])
def test_interleaved_equals_half_after_permutation(rotary_dim: int | None) -> None:
    torch.manual_seed(9)
    x = torch.randn(2, 3, 5, 10)
    r = 10 if rotary_dim is None else rotary_dim
    cos, sin = rope_cos_sin(torch.tensor([0, 4, 9, 2, 33]), dim=r)
    inter = apply_rope(x, cos, sin, layout="interleaved")
    as_half = convert_rope_layout(x, src="interleaved", dst="half", rotary_dim=rotary_dim)
    via_half = apply_rope(as_half, cos, sin, layout="half")
    back = convert_rope_layout(via_half, src="half", dst="interleaved", rotary_dim=rotary_dim)
    torch.testing.assert_close(back, inter)
    assert not torch.allclose(apply_rope(x, cos, sin, layout="half"), inter)


def test_layout_permutations_are_inverse() -> None:
    fwd = rope_layout_permutation(8, src="interleaved", dst="half")
    bwd = rope_layout_permutation(8, src="half", dst="interleaved")
    assert fwd.tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    assert bwd.tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    assert torch.equal(fwd[bwd], torch.arange(8))
    assert torch.equal(rope_layout_permutation(8, src="half", dst="half"), torch.arange(8))
    partial = rope_layout_permutation(8, src="interleaved", dst="half", rotary_dim=4)
    assert partial.tolist() == [0, 2, 1, 3, 4, 5, 6, 7]


def test_converted_qk_weights_give_the_same_attention_scores() -> None:
    """An interleaved checkpoint converted to rotate-half yields identical q·k scores."""
    torch.manual_seed(10)
    heads, d, hidden, t = 2, 8, 12, 6
    wq, wk = torch.randn(heads * d, hidden), torch.randn(heads * d, hidden)
    bq = torch.randn(heads * d)
    h = torch.randn(1, t, hidden)
    pos = torch.arange(t)

    def scores(wq_: Tensor, bq_: Tensor, wk_: Tensor, layout: str) -> Tensor:
        q = (h @ wq_.T + bq_).unflatten(-1, (heads, d)).transpose(1, 2)  # (1, H, T, D)
        k = (h @ wk_.T).unflatten(-1, (heads, d)).transpose(1, 2)
        q, k = RotaryEmbedding(d, layout=layout)(q, k, pos)  # type: ignore[arg-type]
        return q @ k.transpose(-1, -2)

    ref = scores(wq, bq, wk, "interleaved")
    kw = {"num_heads": heads, "src": "interleaved", "dst": "half"}
    converted = scores(
        convert_qk_weight_layout(wq, **kw),  # type: ignore[arg-type]
        convert_qk_weight_layout(bq, **kw),  # type: ignore[arg-type]
        convert_qk_weight_layout(wk, **kw),  # type: ignore[arg-type]
        "half",
    )
    torch.testing.assert_close(converted, ref, atol=1e-4, rtol=1e-5)
    assert not torch.allclose(scores(wq, bq, wk, "half"), ref, atol=1e-3)


# ------------------------------------------------------------------------------------------
# positions, dtypes, module behaviour
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_grouped_positions(layout: str) -> None:
    """SelfExtend-style floor(pos / G): tokens of a group share one rotation."""
    torch.manual_seed(11)
    g, t = 3, 10
    x = torch.randn(1, 2, 1, 8).expand(2, 2, t, 8)
    grouped = torch.arange(t) // g
    rope = RotaryEmbedding(8, layout=layout)  # type: ignore[arg-type]
    out, _ = rope(x, x, grouped)
    _assert_close_to_naive(out, _naive_rope(x, grouped, base=10000.0, layout=layout))
    assert torch.equal(out[:, :, 0], out[:, :, 2])  # group 0
    assert torch.equal(out[:, :, 3], out[:, :, 5])  # group 1
    assert not torch.allclose(out[:, :, 2], out[:, :, 3])
    # integer division and float floor give the same result; shifted groups (w - w // G) too
    float_grouped = torch.floor(torch.arange(t, dtype=torch.float32) / g) + 2.0
    torch.testing.assert_close(rope(x, x, float_grouped)[0], rope(x, x, grouped + 2)[0])


def test_bfloat16_input_rotates_in_fp32() -> None:
    torch.manual_seed(12)
    q = torch.randn(1, 2, 16, 32).to(torch.bfloat16)
    pos = torch.arange(1000, 1016)
    rope = RotaryEmbedding(32)
    got, _ = rope(q, q, pos)
    assert got.dtype == torch.bfloat16
    full, _ = rope(q.float(), q.float(), pos)
    assert torch.equal(got, full.to(torch.bfloat16))  # exactly one rounding, at the end
    # the bf16 cos/sin path of transformers rounds more; ours is never further from fp32
    hf = _hf_rope(32, {"rope_type": "default", "rope_theta": 10000.0}, q, pos[None])
    assert (got.float() - full).abs().max() <= (hf.float() - full).abs().max()


def test_module_has_no_state_and_survives_dtype_moves() -> None:
    rope = RotaryEmbedding(8, scaling=RoPEScaling("ntk", 2.0))
    assert rope.state_dict() == {}
    before = rope.inv_freq()
    rope.to(torch.bfloat16)
    assert torch.equal(rope.inv_freq(), before)
    assert rope.inv_freq().dtype == torch.float32
    # new positions in any order give fresh results (nothing stale is cached)
    q = torch.randn(1, 1, 4, 8)
    a = rope(q, q, torch.arange(4))[0]
    rope(q, q, torch.arange(500, 504))
    assert torch.equal(rope(q, q, torch.arange(4))[0], a)


def test_gqa_shapes_and_per_batch_positions() -> None:
    torch.manual_seed(13)
    q, k = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 5, 8)
    pos = torch.stack([torch.arange(5), torch.arange(5) + 7])
    rq, rk = RotaryEmbedding(8)(q, k, pos)
    assert rq.shape == q.shape
    assert rk.shape == k.shape
    _assert_close_to_naive(rq[1:], _naive_rope(q[1:], pos[1], base=10000.0, layout="half"))


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------


def test_bad_input_errors() -> None:
    x = torch.randn(1, 2, 3, 8)
    cos, sin = rope_cos_sin(torch.arange(3), dim=8)
    with pytest.raises(ValueError, match=r"x must have 4 dims \(B, H, T, D\)"):
        apply_rope(x[0], cos, sin)
    with pytest.raises(ValueError, match="layout must be one of"):
        apply_rope(x, cos, sin, layout="rotate")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="T=3"):
        apply_rope(x, cos[:2], sin[:2])
    with pytest.raises(ValueError, match="same shape"):
        apply_rope(x, cos, sin[:, :2])
    with pytest.raises(ValueError, match="only D=8"):
        apply_rope(x, *rope_cos_sin(torch.arange(3), dim=10))
    with pytest.raises(ValueError, match="batch dim"):
        apply_rope(x, cos.expand(3, 3, 4), sin.expand(3, 3, 4))
    with pytest.raises(ValueError, match="floating"):
        apply_rope(x.long(), cos, sin)
    with pytest.raises(ValueError, match="position_ids must have shape"):
        rope_cos_sin(torch.zeros(1, 2, 3), dim=8)
    with pytest.raises(ValueError, match="integer or real float"):
        rope_cos_sin(torch.ones(3, dtype=torch.bool), dim=8)
    with pytest.raises(TypeError, match=r"position_ids must be a torch\.Tensor"):
        rope_cos_sin([0, 1, 2], dim=8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dim must be an even int"):
        rope_inv_freq(7)
    with pytest.raises(ValueError, match="base must be a positive"):
        rope_inv_freq(8, base=-1.0)
    with pytest.raises(ValueError, match="seq_len is required"):
        rope_inv_freq(8, scaling=RoPEScaling("dynamic", 2.0, 16))
    with pytest.raises(ValueError, match="must be > 2"):
        rope_inv_freq(2, scaling=RoPEScaling("ntk", 2.0))
    with pytest.raises(ValueError, match="freq_exponents"):
        rope_inv_freq(8, freq_exponents="log")  # type: ignore[arg-type]


def test_bad_module_and_scaling_arguments() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        RoPEScaling("yarn", 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="factor must be a finite number >= 1"):
        RoPEScaling("linear", 0.5)
    with pytest.raises(ValueError, match="factor must be"):
        RoPEScaling("linear", math.nan)
    with pytest.raises(ValueError, match="max_position_embeddings is required"):
        RoPEScaling("dynamic", 2.0)
    with pytest.raises(ValueError, match="max_position_embeddings must be a positive int"):
        RoPEScaling("dynamic", 2.0, 0)
    with pytest.raises(ValueError, match="rotary_dim must be <= head_dim"):
        RotaryEmbedding(8, rotary_dim=10)
    with pytest.raises(ValueError, match="rotary_dim must be an even int"):
        RotaryEmbedding(9)
    with pytest.raises(ValueError, match="must be > 2 for 'dynamic'"):
        RotaryEmbedding(8, rotary_dim=2, scaling=RoPEScaling("dynamic", 2.0, 8))
    with pytest.raises(TypeError, match="scaling must be a RoPEScaling"):
        RotaryEmbedding(8, scaling={"kind": "linear"})  # type: ignore[arg-type]
    rope = RotaryEmbedding(8)
    q = torch.randn(2, 2, 4, 8)
    with pytest.raises(ValueError, match=r"q must have shape \(B, H, T, 8\)"):
        rope(q[..., :6], q, torch.arange(4))
    with pytest.raises(ValueError, match="q and k must share B and T"):
        rope(q, q[:, :, :3], torch.arange(4))
    with pytest.raises(ValueError, match="position_ids must have shape"):
        rope(q, q, torch.arange(5))
    with pytest.raises(ValueError, match="position_ids must have shape"):
        rope(q, q, torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        convert_qk_weight_layout(torch.randn(10, 4), num_heads=3, src="half", dst="interleaved")
    with pytest.raises(ValueError, match="src must be one of"):
        rope_layout_permutation(8, src="neox", dst="half")  # type: ignore[arg-type]


def test_rotary_embedding_builds_under_a_meta_device_context() -> None:
    """transformers' ``from_pretrained`` builds modules under ``torch.device("meta")``."""
    with torch.device("meta"):
        rotary = RotaryEmbedding(64)
    assert rotary.inv_freq().device == torch.device("cpu")
    torch.testing.assert_close(rotary.inv_freq(), RotaryEmbedding(64).inv_freq())
