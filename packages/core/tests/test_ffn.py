"""Tests for papercraft.core.ffn: SwiGLU against transformers' LlamaMLP."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaMLP

from papercraft.core.ffn import SwiGLU


def _pair(bias: bool, seed: int) -> tuple[SwiGLU, LlamaMLP]:
    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=12,
        intermediate_size=20,
        num_attention_heads=2,
        mlp_bias=bias,
        hidden_act="silu",
    )
    hf = LlamaMLP(config)
    ours = SwiGLU(12, 20, bias=bias)
    ours.load_state_dict(hf.state_dict())  # strict: the parameter names agree
    return ours, hf


@pytest.mark.parametrize("bias", [False, True])
def test_matches_llama_mlp(bias: bool) -> None:
    ours, hf = _pair(bias, seed=0)
    assert set(ours.state_dict()) == set(hf.state_dict())
    x = torch.randn(2, 7, 12)
    torch.testing.assert_close(ours(x), hf(x))


def test_formula_and_gradients() -> None:
    ours, hf = _pair(True, seed=1)
    x = torch.randn(3, 12)
    g, u, d = ours.gate_proj, ours.up_proj, ours.down_proj
    manual = F.linear(
        F.silu(F.linear(x, g.weight, g.bias)) * F.linear(x, u.weight, u.bias), d.weight, d.bias
    )
    torch.testing.assert_close(ours(x), manual)

    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    upstream = torch.randn(3, 12)
    (ours(xa) * upstream).sum().backward()
    (hf(xb) * upstream).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    for (name, p_ours), p_hf in zip(ours.named_parameters(), hf.parameters(), strict=True):
        torch.testing.assert_close(p_ours.grad, p_hf.grad, msg=name)

    small = SwiGLU(4, 6).double()
    xd = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(small, (xd,))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="dim must be a positive int"):
        SwiGLU(0, 8)
    with pytest.raises(ValueError, match="hidden_dim must be a positive int"):
        SwiGLU(4, -1)
    with pytest.raises(ValueError, match="hidden_dim must be a positive int"):
        SwiGLU(4, 8.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 4\)"):
        SwiGLU(4, 8)(torch.randn(2, 5))


def test_inference_path_matches_autograd_path() -> None:
    """Under no_grad the block computes in place; the result must not change."""
    torch.manual_seed(0)
    block = SwiGLU(16, 40)
    x = torch.randn(3, 5, 16)
    with_grad = block(x)
    with torch.no_grad():
        without_grad = block(x)
    torch.testing.assert_close(without_grad, with_grad.detach(), rtol=0, atol=0)
    assert with_grad.requires_grad
