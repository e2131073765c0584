"""Tests for papercraft.core.bench: timing, peak memory, reports."""

from __future__ import annotations

import json

import pytest

from papercraft.core.bench import BenchReport, format_bytes, peak_memory, time_callable


def _allocate(n_bytes: int) -> int:
    """Module-level so the CPU child process can run it: touch n_bytes of fresh memory."""
    import torch

    buf = torch.ones(n_bytes // 4, dtype=torch.float32)  # ones() writes every page
    return int(buf.numel())


def test_time_callable_counts_warmup_and_repeats() -> None:
    calls: list[int] = []
    timing = time_callable(lambda: calls.append(1), warmup=2, repeats=4)
    assert len(calls) == 6
    assert len(timing.times) == 4
    assert timing.min <= timing.median <= timing.max
    assert set(timing.as_dict()) == {"median_s", "min_s", "max_s", "mean_s"}


def test_time_callable_max_seconds_stops_early() -> None:
    import time

    timing = time_callable(lambda: time.sleep(0.02), warmup=0, repeats=50, max_seconds=0.05)
    assert 1 <= len(timing.times) < 50


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"warmup": -1}, "warmup"), ({"repeats": 0}, "repeats"), ({"max_seconds": 0}, "max_seconds")],
)
def test_time_callable_rejects_bad_arguments(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        time_callable(lambda: None, **kwargs)  # type: ignore[arg-type]


def test_peak_memory_cpu_scales_with_allocation() -> None:
    small = peak_memory(_allocate, 8 * 2**20)
    large = peak_memory(_allocate, 128 * 2**20)
    # the child's peak must see the 128 MiB buffer, and not charge the small run with it
    assert large >= 120 * 2**20
    assert small < 64 * 2**20
    assert large > small


def test_peak_memory_rejects_unknown_device() -> None:
    with pytest.raises(ValueError, match="device"):
        peak_memory(_allocate, 1024, device="tpu")


def test_peak_memory_reports_child_failure() -> None:
    with pytest.raises(RuntimeError, match="failed in the child"):
        peak_memory(_allocate, "not a number")


def test_format_bytes() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(3 * 2**20) == "3.0 MiB"
    assert format_bytes(1.5 * 2**30) == "1.5 GiB"


def _report() -> BenchReport:
    report = BenchReport(title="demo")
    for t, base, fast in [(1, 2.0, 1.0), (2, 8.0, 2.0)]:
        report.add(method="eager", seq_len=t, median_s=base, peak_bytes=1024 * t)
        report.add(method="fast", seq_len=t, median_s=fast, peak_bytes=None)
    return report


def test_ratios_match_baseline_row_with_same_keys() -> None:
    report = _report()
    report.add_ratios(
        by="method", baseline="eager", metrics=["median_s", "peak_bytes"], keys=["seq_len"]
    )
    fast = {r["seq_len"]: r for r in report.rows if r["method"] == "fast"}
    assert fast[1]["median_s_ratio"] == pytest.approx(0.5)
    assert fast[2]["median_s_ratio"] == pytest.approx(0.25)
    assert fast[1]["peak_bytes_ratio"] is None  # missing value -> no ratio, not a crash
    eager = [r for r in report.rows if r["method"] == "eager"]
    assert all(r["median_s_ratio"] == pytest.approx(1.0) for r in eager)


def test_ratios_need_a_baseline() -> None:
    with pytest.raises(ValueError, match="baseline"):
        _report().add_ratios(by="method", baseline="missing", metrics=["median_s"])


def test_report_writes_json_markdown_and_plot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    report = _report()
    report.add_ratios(by="method", baseline="eager", metrics=["median_s"], keys=["seq_len"])
    paths = report.write(tmp_path / "out", "demo")
    data = json.loads(paths["json"].read_text())
    assert data["title"] == "demo"
    assert len(data["rows"]) == 4
    assert "cpu_count" in data["machine"]
    md = paths["markdown"].read_text()
    assert "| method | seq_len | median_s | peak_bytes | median_s_ratio |" in md
    assert "1.0 KiB" in md  # bytes columns are humanised
    png = report.plot(tmp_path / "out" / "demo.png", x="seq_len", y="median_s", series="method")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "demo.json",
        "demo.md",
        "demo.png",
    ]


def test_write_custom_markdown_and_plot_metrics(tmp_path) -> None:  # type: ignore[no-untyped-def]
    report = _report()
    paths = report.write(tmp_path, "demo", markdown="# custom\n")
    assert paths["markdown"].read_text() == "# custom\n"
    plots = report.plot_metrics(
        tmp_path,
        "demo",
        x="seq_len",
        series="method",
        metrics={
            "time": ("median_s", "s"),
            "memory": ("peak_bytes", "B"),
            "none": ("missing", "?"),
        },
    )
    assert sorted(plots) == ["memory_plot", "time_plot"]  # a column no row has is skipped
    assert plots["time_plot"] == tmp_path / "demo_time.png"
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in plots.values())


def test_machine_info_names_the_device_measured_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU that is present but unused must not be reported as where a CPU benchmark ran."""
    import torch

    import papercraft.core.bench as bench_module

    assert bench_module.machine_info()["device"] == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU 80GB")
    on_cpu = bench_module.machine_info("cpu")
    assert on_cpu["device"] == "cpu"
    assert on_cpu["accelerators"] == ["Fake GPU 80GB"]
    assert bench_module.machine_info("cuda:0")["device"] == "Fake GPU 80GB"


def test_time_interleaved_runs_round_robin() -> None:
    from papercraft.core.bench import time_interleaved

    calls: list[str] = []
    timings = time_interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, warmup=2, repeats=3
    )
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3  # warm-up per function, then rounds
    assert set(timings) == {"a", "b"}
    assert all(len(t.times) == 3 and t.min >= 0 for t in timings.values())
    with pytest.raises(ValueError, match="repeats"):
        time_interleaved({"a": lambda: None}, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        time_interleaved({"a": lambda: None}, warmup=-1)
