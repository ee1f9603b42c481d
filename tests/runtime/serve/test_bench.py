"""The serve benchmark's rows when Ray is absent: skipped with the reason, valid for the suite."""

from __future__ import annotations

from reclnet.benchmarks import bench_serve, suite
from reclnet.benchmarks.rows import validate_row


def test_without_ray_the_serve_benchmark_skips_with_the_reason(monkeypatch) -> None:
    from reclnet.runtime.serve import ray_backend

    monkeypatch.setattr(ray_backend, "ray_available", lambda: False)
    rows = bench_serve.run(quick=True)
    assert rows and all(validate_row(r) == [] for r in rows)
    assert {r["skipped"] for r in rows} == {"Ray is not installed (pip install 'reclnet[cluster]')"}
    result = suite.run_benchmark(suite.BENCH_DIR / "bench_serve.py", quick=True)
    assert result.status == "skipped" and "Ray is not installed" in result.reason


def test_the_serve_benchmark_is_discovered() -> None:
    assert "serve" in {suite.subject(p) for p in suite.discover()}


def test_one_camera_on_two_workers_is_a_skipped_row(tmp_path, monkeypatch) -> None:
    # The grid names the impossible cell instead of measuring it (nothing runs: no Ray).
    monkeypatch.setattr(bench_serve, "CAMERAS", (1,))
    monkeypatch.setattr(bench_serve, "WORKERS", (2,))
    monkeypatch.setattr(bench_serve, "_videos", lambda folder, count, frames: [])
    (r,) = bench_serve._camera_rows(tmp_path, tmp_path, quick=True)
    assert validate_row(r) == [] and "whole cameras" in r["skipped"]
