"""Backend registry and selection of papercraft.core.attention, and input validation (CPU)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor

from papercraft.core.attention import (
    ATTENTION_ENV_VAR,
    AttentionBackend,
    BackendUnavailableError,
    _dispatch,
    attention,
    available_backends,
    get_backend,
    list_backends,
    register_backend,
    select_backend,
    unregister_backend,
)

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only reasons")


def qkv(
    t: int = 4, s: int = 4, *, heads: int = 4, kv_heads: int = 2, dim: int = 8
) -> tuple[Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, heads, t, dim, generator=gen)
    k = torch.randn(2, kv_heads, s, dim, generator=gen)
    v = torch.randn(2, kv_heads, s, dim, generator=gen)
    return q, k, v


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ATTENTION_ENV_VAR, raising=False)
    monkeypatch.setattr(_dispatch, "_warned", set())


class Recorder:
    """A kernel that records its calls and returns eager's result."""

    def __init__(self) -> None:
        self.calls = 0
        self.shapes: list[tuple[int, int]] = []  # (T, S) of each call

    def __call__(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        *,
        causal: bool,
        window: int | None,
        scale: float,
        attn_mask: Tensor | None,
    ) -> Tensor:
        self.calls += 1
        self.shapes.append((q.shape[2], k.shape[2]))
        return get_backend("eager").forward(
            q, k, v, causal=causal, window=window, scale=scale, attn_mask=attn_mask
        )


def _no_masks(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool, window: int | None, attn_mask: Tensor | None
) -> str | None:
    return "takes no attn_mask" if attn_mask is not None else None


@pytest.fixture
def fake_backends() -> Iterator[dict[str, Recorder]]:
    """Two high-priority test backends: one unavailable, one that refuses masks."""
    recorders = {"fake_missing": Recorder(), "fake_nomask": Recorder()}
    register_backend(
        AttentionBackend(
            name="fake_missing",
            priority=1000,
            forward=recorders["fake_missing"],
            availability=lambda: (False, "fakelib not installed"),
        )
    )
    register_backend(
        AttentionBackend(
            name="fake_nomask", priority=999, forward=recorders["fake_nomask"], check=_no_masks
        )
    )
    try:
        yield recorders
    finally:
        unregister_backend("fake_missing")
        unregister_backend("fake_nomask")


# --------------------------------------------------------------------------- registry


def test_builtin_backends_in_priority_order() -> None:
    names = [b.name for b in list_backends()]
    assert names == ["flash", "xformers", "blockwise", "sdpa", "eager"]
    assert list(available_backends()) == names


def test_available_backends_reports_reasons() -> None:
    report = available_backends()
    for name in ("eager", "sdpa", "blockwise"):
        assert report[name] == (True, "available")
    for name, lib in (("flash", "flash-attn"), ("xformers", "xformers")):
        available, reason = report[name]
        assert isinstance(available, bool)
        assert reason
        if not available:
            assert any(
                part in reason for part in (f"{lib} not installed", "CUDA", "import", "kernels")
            )


@needs_no_cuda
def test_cuda_backends_unavailable_without_cuda() -> None:
    for name in ("flash", "xformers"):
        available, reason = available_backends()[name]
        assert available is False
        assert "not installed" in reason or "needs a CUDA device" in reason


def test_xformers_probe_reports_a_wheel_without_kernels() -> None:
    """A mismatched xformers build imports (with a warning) but has no operators; the probe call
    turns that into 'unavailable' with the library's own first line, instead of failing later."""
    from papercraft.core.attention import _xformers

    def broken(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("No operator found for `memory_efficient_attention_forward`\n...")

    def working(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return v.clone()

    ok, reason = _xformers._probe_kernels(
        SimpleNamespace(memory_efficient_attention=broken), device="cpu"
    )  # type: ignore[arg-type]
    assert ok is False
    assert "kernels cannot run here (No operator found" in reason
    assert "xformers.info" in reason
    ok, reason = _xformers._probe_kernels(
        SimpleNamespace(memory_efficient_attention=working), device="cpu"
    )  # type: ignore[arg-type]
    assert (ok, reason) == (True, "available")


def test_cuda_backends_refuse_cpu_tensors_with_reason() -> None:
    q, k, v = qkv()
    assert get_backend("flash").supports(q, k, v) == "needs CUDA tensors, got device cpu"
    assert get_backend("xformers").supports(q, k, v) == "needs CUDA tensors, got device cpu"
    for name in ("eager", "sdpa", "blockwise"):
        assert (
            get_backend(name).supports(q, k, v, attn_mask=torch.ones(4, 4, dtype=torch.bool))
            is None
        )


def test_register_get_unregister() -> None:
    backend = AttentionBackend(name="fake_extra", priority=-5, forward=Recorder())
    assert register_backend(backend) is backend
    try:
        assert get_backend("fake_extra") is backend
        assert list_backends()[-1] is backend  # lowest priority last
        with pytest.raises(ValueError, match="already registered"):
            register_backend(AttentionBackend(name="fake_extra", priority=1, forward=Recorder()))
        replacement = AttentionBackend(name="fake_extra", priority=1, forward=Recorder())
        register_backend(replacement, replace=True)
        assert get_backend("fake_extra") is replacement
    finally:
        assert unregister_backend("fake_extra").name == "fake_extra"
    with pytest.raises(ValueError, match=r"unknown attention backend 'fake_extra'.*'eager'"):
        get_backend("fake_extra")


def test_backend_description_is_validated() -> None:
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        AttentionBackend(name="two words", priority=0, forward=Recorder())
    with pytest.raises(TypeError, match="priority must be an int"):
        AttentionBackend(name="x", priority=1.5, forward=Recorder())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be an AttentionBackend"):
        register_backend("eager")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- selection


def test_auto_selection_on_cpu() -> None:
    q, k, v = qkv()
    if not torch.cuda.is_available():
        assert select_backend(q, k, v).name == "sdpa"
    # blockwise is auto-selected only for a window over a long key range
    lq, lk, lv = qkv(t=8, s=1024)
    assert select_backend(lq, lk, lv, window=16).name == "blockwise"
    assert select_backend(lq, lk, lv, window=500).name == "sdpa"  # window too wide for S
    assert select_backend(lq, lk, lv).name == "sdpa"  # no window
    assert select_backend(q, k, v, window=2).name == "sdpa"  # S too short


def test_explicit_backend_is_used_and_runs() -> None:
    q, k, v = qkv(t=3, s=6)
    for name in ("eager", "sdpa", "blockwise"):
        assert select_backend(q, k, v, backend=name).name == name
        assert attention(q, k, v, backend=name).shape == q.shape


def test_explicit_backend_that_cannot_run_raises_with_reason(
    fake_backends: dict[str, Recorder],
) -> None:
    q, k, v = qkv()
    with pytest.raises(BackendUnavailableError, match=r"'fake_missing'.*fakelib not installed"):
        attention(q, k, v, backend="fake_missing")
    with pytest.raises(BackendUnavailableError, match=r"'fake_nomask'.*takes no attn_mask"):
        attention(q, k, v, attn_mask=torch.ones(4, 4, dtype=torch.bool), backend="fake_nomask")
    assert fake_backends["fake_missing"].calls == fake_backends["fake_nomask"].calls == 0
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="'flash' cannot run"):
            attention(q, k, v, backend="flash")


def test_explicit_unknown_backend_raises() -> None:
    q, k, v = qkv()
    with pytest.raises(ValueError, match="unknown attention backend 'nope'"):
        attention(q, k, v, backend="nope")
    with pytest.raises(TypeError, match="backend must be a backend name"):
        attention(q, k, v, backend=3)  # type: ignore[arg-type]


def test_auto_skips_unavailable_and_unsupporting_backends(
    fake_backends: dict[str, Recorder],
) -> None:
    q, k, v = qkv()
    # fake_missing (priority 1000) is unavailable, fake_nomask (999) takes it
    assert select_backend(q, k, v).name == "fake_nomask"
    out = attention(q, k, v)
    assert fake_backends["fake_nomask"].calls == 1
    torch.testing.assert_close(out, attention(q, k, v, backend="eager"))
    # with a mask fake_nomask refuses and selection falls through to the built-ins
    mask = torch.ones(4, 4, dtype=torch.bool)
    assert select_backend(q, k, v, attn_mask=mask).name not in {"fake_missing", "fake_nomask"}
    attention(q, k, v, attn_mask=mask)
    assert fake_backends["fake_nomask"].calls == 1
    assert fake_backends["fake_missing"].calls == 0


def test_env_var_selects_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    q, k, v = qkv()
    monkeypatch.setenv(ATTENTION_ENV_VAR, "eager")
    assert select_backend(q, k, v).name == "eager"
    monkeypatch.setenv(ATTENTION_ENV_VAR, "blockwise")
    assert select_backend(q, k, v).name == "blockwise"
    # the explicit argument wins over the environment
    assert select_backend(q, k, v, backend="sdpa").name == "sdpa"
    monkeypatch.setenv(ATTENTION_ENV_VAR, "auto")
    assert select_backend(q, k, v).name == select_backend(q, k, v, backend=None).name


def test_env_var_that_cannot_run_warns_once_and_falls_back(
    monkeypatch: pytest.MonkeyPatch, fake_backends: dict[str, Recorder]
) -> None:
    q, k, v = qkv()
    mask = torch.ones(4, 4, dtype=torch.bool)
    monkeypatch.setenv(ATTENTION_ENV_VAR, "fake_nomask")
    assert select_backend(q, k, v).name == "fake_nomask"  # usable without a mask: no warning
    with pytest.warns(
        RuntimeWarning, match="PAPERCRAFT_ATTENTION='fake_nomask'.*takes no attn_mask"
    ):
        chosen = select_backend(q, k, v, attn_mask=mask)
    assert chosen.name not in {"fake_missing", "fake_nomask"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would raise here
        out = attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, attention(q, k, v, attn_mask=mask, backend="eager"))
    monkeypatch.setenv(ATTENTION_ENV_VAR, "fake_missing")
    with pytest.warns(RuntimeWarning, match="fakelib not installed"):
        assert select_backend(q, k, v).name == "fake_nomask"


def test_env_var_unknown_name_warns_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    q, k, v = qkv()
    monkeypatch.setenv(ATTENTION_ENV_VAR, "flash3000")
    with pytest.warns(RuntimeWarning, match="unknown attention backend 'flash3000'"):
        out = attention(q, k, v)
    assert out.shape == q.shape


@needs_no_cuda
def test_env_var_flash_on_cpu_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    q, k, v = qkv()
    monkeypatch.setenv(ATTENTION_ENV_VAR, "flash")
    with pytest.warns(RuntimeWarning, match="'flash'"):
        assert select_backend(q, k, v).name == "sdpa"


# --------------------------------------------------------------------------- validation

Q, K, V = qkv()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"q": Q[0]}, ValueError, r"q must have 4 dims \(B, H, T, D\), got shape \(4, 4, 8\)"),
        ({"k": K[0]}, ValueError, r"k must have 4 dims \(B, H_kv, S, D\)"),
        ({"v": V[:, :, :3]}, ValueError, r"v must have the same shape as k"),
        (
            {"q": torch.randn(2, 3, 4, 8)},
            ValueError,
            r"H=3 query heads must be a multiple of k's H_kv=2",
        ),
        ({"q": torch.randn(2, 4, 4, 16)}, ValueError, r"k head dim D=8 must match q's D=16"),
        ({"q": torch.randn(3, 4, 4, 8)}, ValueError, r"k batch size B=2 must match q's B=3"),
        ({"q": torch.randn(2, 4, 0, 8)}, ValueError, r"no empty dims"),
        ({"q": [1.0]}, TypeError, r"q must be a torch.Tensor, got list"),
        ({"q": Q.long(), "k": K.long(), "v": V.long()}, TypeError, r"q must be floating point"),
        ({"q": Q.double()}, ValueError, r"share one dtype, got q torch.float64, k torch.float32"),
        ({"window": 0}, ValueError, r"window must be an int >= 1 or None, got 0"),
        ({"window": 2.5}, ValueError, r"window must be an int >= 1 or None, got 2.5"),
        ({"window": True}, ValueError, r"window must be an int >= 1 or None, got True"),
        ({"causal": 1}, TypeError, r"causal must be a bool, got 1"),
        ({"scale": 0.0}, ValueError, r"scale must be a positive finite number"),
        ({"scale": float("nan")}, ValueError, r"scale must be a positive finite number"),
        (
            {"attn_mask": torch.ones(4, 5, dtype=torch.bool)},
            ValueError,
            r"attn_mask of shape \(4, 5\) does not broadcast to \(B, H, T, S\) = \(2, 4, 4, 4\)",
        ),
        (
            {"attn_mask": torch.ones(2, 2, 4, 4, dtype=torch.bool)},
            ValueError,
            r"does not broadcast",
        ),
        (
            {"attn_mask": torch.ones(1, 2, 4, 4, 4, dtype=torch.bool)},
            ValueError,
            r"does not broadcast",
        ),
        (
            {"attn_mask": torch.ones(4, 4, dtype=torch.int64)},
            TypeError,
            r"attn_mask must be boolean .* got torch.int64",
        ),
        ({"attn_mask": [[True]]}, TypeError, r"attn_mask must be a torch.Tensor or None"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs: dict[str, object], error: type, match: str) -> None:
    call: dict[str, object] = {"q": Q, "k": K, "v": V, **kwargs}
    q, k, v = call.pop("q"), call.pop("k"), call.pop("v")
    with pytest.raises(error, match=match):
        attention(q, k, v, **call)  # type: ignore[arg-type]
    if "scale" in call:  # select_backend takes no scale
        return
    with pytest.raises(error, match=match):
        select_backend(q, k, v, **call)  # type: ignore[arg-type]


def test_validation_happens_before_an_explicit_backend_is_checked() -> None:
    # a bad shape is reported as such even when the named backend could not run anyway
    with pytest.raises(ValueError, match="multiple of k's H_kv"):
        attention(torch.randn(2, 3, 4, 8), K, V, backend="flash")


def test_broadcastable_masks_are_accepted() -> None:
    q, k, v = qkv(t=3, s=5)
    for shape in [(5,), (3, 5), (1, 5), (2, 1, 3, 5), (1, 4, 1, 5), (2, 4, 3, 5)]:
        mask = torch.ones(shape, dtype=torch.bool)
        torch.testing.assert_close(
            attention(q, k, v, attn_mask=mask, backend="sdpa"), attention(q, k, v, backend="sdpa")
        )


def test_kernels_never_see_queries_that_precede_every_key(
    fake_backends: dict[str, Recorder],
) -> None:
    # causal with T > S: the first T - S queries see nothing; the kernel gets the last S only
    recorder = fake_backends["fake_nomask"]
    q, k, v = qkv(t=7, s=3)
    out = attention(q, k, v, backend="fake_nomask")
    assert recorder.shapes == [(3, 3)]
    assert (out[:, :, :4] == 0).all()
    torch.testing.assert_close(out, attention(q, k, v, backend="eager"))
    # symmetric window W=2: queries at positions <= -2 see nothing (5 of 8 here)
    attention(*qkv(t=8, s=3), causal=False, window=2, backend="fake_nomask")
    assert recorder.shapes[-1] == (4, 3)
    # nothing to drop when T <= S
    attention(*qkv(t=2, s=5), backend="fake_nomask")
    assert recorder.shapes[-1] == (2, 5)
