"""The core's attention benchmark (``papercraft bench attention`` / the demo), on tiny sizes."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch

from papercraft.core import demo


def test_benchmark_rows_and_ratios_on_cpu() -> None:
    report = demo.attention_benchmark(
        seq_lens=(64, 96), window=16, repeats=1, measure_memory=False, progress=False
    )
    assert [(r["method"], r["seq_len"]) for r in report.rows] == [
        (m, t) for t in (64, 96) for m in ("eager", "sdpa", "eager+window", "blockwise")
    ]
    for row in report.rows:
        assert row["status"] == "ok"
        assert row["median_s"] > 0
        if row["method"] == "eager":
            assert row["median_s_ratio"] == 1.0


def test_out_of_memory_point_is_kept_without_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    real = demo.time_callable

    def flaky(fn: functools.partial[Any], **kwargs: Any) -> Any:
        if (
            fn.keywords["backend"] == "eager"
            and fn.args[0].shape[2] == 96
            and not fn.keywords["window"]
        ):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")
        return real(fn, **kwargs)

    monkeypatch.setattr(demo, "time_callable", flaky)
    report = demo.attention_benchmark(
        seq_lens=(64, 96), window=16, repeats=1, measure_memory=False, progress=False
    )
    rows = {(r["method"], r["seq_len"]): r for r in report.rows}
    lost = rows[("eager", 96)]
    assert (lost["status"], lost["median_s"], lost["median_s_ratio"]) == (
        "out of memory",
        None,
        None,
    )
    # the other methods at that length still ran; with no baseline they have no ratio
    assert rows[("sdpa", 96)]["median_s"] > 0
    assert rows[("sdpa", 96)]["median_s_ratio"] is None
    assert rows[("sdpa", 64)]["median_s_ratio"] is not None
    assert "out of memory" in report.to_markdown()


def test_default_methods_add_cuda_kernels_only_where_available(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu = ["eager", "sdpa", "eager+window", "blockwise"]
    assert demo.default_methods("cpu") == cpu
    import papercraft.core.attention as attention

    fake = {name: (True, "available") for name in ("eager", "sdpa", "blockwise")}
    fake["flash"] = (False, "flash-attn not installed")
    fake["xformers"] = (True, "available")
    monkeypatch.setattr(attention, "available_backends", lambda: fake)
    assert demo.default_methods("cuda") == [*cpu, "xformers"]


def test_unknown_method_is_refused_before_any_work() -> None:
    with pytest.raises(ValueError, match="methods must be among"):
        demo.attention_benchmark(seq_lens=(64,), methods=["nope"], progress=False)
