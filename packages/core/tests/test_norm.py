"""Tests for papercraft.core.norm: RMSNorm against transformers' LlamaRMSNorm and a naive formula."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from papercraft.core.norm import RMSNorm, rms_norm


def _naive(x: Tensor, weight: Tensor | None, eps: float) -> Tensor:
    y = x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps)
    return y if weight is None else y * weight


def _pair(dim: int, eps: float, seed: int) -> tuple[RMSNorm, LlamaRMSNorm]:
    torch.manual_seed(seed)
    hf = LlamaRMSNorm(dim, eps=eps)
    with torch.no_grad():
        hf.weight.copy_(torch.rand(dim) * 2 + 0.1)
    ours = RMSNorm(dim, eps=eps)
    ours.load_state_dict(hf.state_dict())  # same parameter name: "weight"
    return ours, hf


@pytest.mark.parametrize("eps", [1e-6, 1e-2])
def test_matches_llama_rmsnorm_fp32(eps: float) -> None:
    ours, hf = _pair(24, eps, seed=0)
    x = torch.randn(3, 5, 24) * 0.3
    torch.testing.assert_close(ours(x), hf(x))
    torch.testing.assert_close(rms_norm(x, hf.weight, eps), hf(x))


def test_matches_llama_rmsnorm_bf16() -> None:
    ours, hf = _pair(64, 1e-6, seed=1)
    ours, hf = ours.to(torch.bfloat16), hf.to(torch.bfloat16)
    x = (torch.randn(4, 7, 64) * 3).to(torch.bfloat16)
    got = ours(x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, hf(x))  # bf16 tolerances: HF rounds once more
    # ours computes in fp32 and rounds exactly once, at the end
    expected = _naive(x.float(), ours.weight.float(), 1e-6).to(torch.bfloat16)  # type: ignore[union-attr]
    assert torch.equal(got, expected)


def test_without_weight() -> None:
    torch.manual_seed(2)
    norm = RMSNorm(16, eps=1e-6, elementwise_affine=False)
    assert norm.weight is None
    assert list(norm.parameters()) == []
    x = torch.randn(6, 16, dtype=torch.float64) * 5 + 1
    got = norm(x)
    torch.testing.assert_close(got, _naive(x, None, 1e-6))
    # the output has unit root mean square, and a gain of ones changes nothing
    torch.testing.assert_close(got.pow(2).mean(-1), torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(RMSNorm(16).double()(x), got)


def test_eps_is_inside_the_square_root() -> None:
    x = torch.full((1, 4), 1e-3)
    # mean square 1e-6; with eps 1e-6 the output is 1e-3 / sqrt(2e-6)
    torch.testing.assert_close(rms_norm(x, eps=1e-6), torch.full((1, 4), 1e-3 / (2e-6) ** 0.5))


def test_gradients_match_naive_formula() -> None:
    torch.manual_seed(3)
    x = torch.randn(3, 10, requires_grad=True)
    w = (torch.rand(10) + 0.5).requires_grad_()
    upstream = torch.randn(3, 10)
    (rms_norm(x, w, 1e-5) * upstream).sum().backward()
    gx, gw = x.grad, w.grad
    x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    (_naive(x2, w2, 1e-5) * upstream).sum().backward()
    torch.testing.assert_close(gx, x2.grad)
    torch.testing.assert_close(gw, w2.grad)
    xd = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    wd = torch.rand(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: rms_norm(a, b, 1e-6), (xd, wd))


def test_reset_parameters_and_repr() -> None:
    norm = RMSNorm(4, eps=1e-5)
    with torch.no_grad():
        norm.weight.mul_(3)  # type: ignore[union-attr]
    norm.reset_parameters()
    assert torch.equal(norm.weight, torch.ones(4))  # type: ignore[arg-type]
    assert "eps=1e-05" in repr(norm)


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match="dim must be a positive int"):
        RMSNorm(0)
    with pytest.raises(ValueError, match="eps must be a positive finite number"):
        RMSNorm(4, eps=0.0)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 4\)"):
        RMSNorm(4)(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"weight must have shape \(5,\)"):
        rms_norm(torch.randn(2, 5), torch.ones(4))
    with pytest.raises(ValueError, match="x must be a floating tensor"):
        rms_norm(torch.ones(2, 5, dtype=torch.long))
