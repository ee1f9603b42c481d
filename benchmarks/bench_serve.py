"""`reclnet serve` on a local Ray cluster: camera throughput over workers, the step service's cost.

Two measurements, in one local Ray cluster started here (as many CPUs as the
machine has):

* **cameras on workers**: 1, 2 and 4 cameras on 1 and 2 camera-worker actors
  (:class:`~reclnet.runtime.serve.ray_backend.RayBackend`, the workers of
  ``reclnet serve``, 1 CPU each, the local step), every camera its own rendered
  action video (``reclnet synth --kind video``: 320x240, figures walking and
  acting) with its MOT tracks given, so that detection does not dominate. The
  model is the paper-sized step (``RecLNetConfig()``, random weights) with the
  default feature networks of ``reclnet export --features`` (ResNet-18, INT8
  frame head), exported once and cached. Worker start (process, sessions, first
  frame of each camera) is timed apart (``start_s``); the rate is the frames of
  all cameras after that over the wall time until the last camera ends,
  driver round trips included. ``ratio_vs_baseline``: that rate over 1 camera
  on 1 worker. One camera on 2 workers does not exist (a worker holds whole
  cameras), so that row says it is skipped.
* **step per request**: the batched step service (the Ray Serve deployment of
  ``step: {mode: service}``, one replica, 1 CPU, 1 ONNX Runtime thread) against
  the local step (``load_backend("onnxruntime")``, 1 thread), at 1, 8 and 64
  tracks per request, features and states of the paper-sized model: one request
  at a time (the per-request latency; ``overhead_ms`` is what the service adds),
  and 16 requests in flight (wall time / 16: what a request costs when the
  deployment batches many workers' requests).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.benchmarks.rows import row
from reclnet.benchmarks.timing import Timing, measure_each

BENCHMARK = "serve"
CAMERAS_CASE = "cameras on workers, rendered 320x240, tracks given"
STEP_CASE = "step per request, paper-sized model"
RAY = "ray"
LOCAL, SERVICE = "local", "service"
ONE_AT_A_TIME = "one request at a time"
IN_FLIGHT = 16
CONCURRENT = f"{IN_FLIGHT} requests in flight"
CAMERAS = (1, 2, 4)
WORKERS = (1, 2)
STEP_TRACKS = (1, 8, 64)
SLICE_SECONDS = 0.5


def _skipped(reason: str) -> list[dict]:
    return [
        row(BENCHMARK, CAMERAS_CASE, RAY, unit="frames/s", stats=None, skipped=reason),
        row(BENCHMARK, STEP_CASE, SERVICE, unit="ms", stats=None, skipped=reason),
    ]


def camera_model() -> Path:
    """The paper-sized step and the default feature networks, exported once and cached.

    Kept in ``<bench cache>/serve/<key>`` (the key follows the model and exporter
    sources, as :func:`reclnet.benchmarks.bench_peers.paper_step_onnx`).
    """
    from reclnet.benchmarks.bench_peers import _cache_dir, _export_key
    from reclnet.config import RecLNetConfig

    config = RecLNetConfig()
    root = _cache_dir() / "serve"
    target = root / _export_key(config, 0)
    if (target / "features_flow.onnx").is_file():
        return target
    import torch

    from reclnet.export.cli import main as export_main
    from reclnet.train.checkpoint import save_checkpoint
    from reclnet.train.model import RecLNet

    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root))
    try:
        torch.manual_seed(0)
        ckpt = save_checkpoint(work / "model.pt", RecLNet(config).eval())
        if export_main([str(ckpt), "--out", str(work), "--features"]):
            raise RuntimeError("reclnet export of the benchmark model failed")
        work.rename(target)
        for stale in root.iterdir():  # exports of older sources (~120 MB each)
            if stale != target:
                shutil.rmtree(stale, ignore_errors=True)
    except OSError:
        if not (target / "features_flow.onnx").is_file():  # not a concurrent run's rename
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _videos(folder: Path, count: int, frames: int) -> list[tuple[Path, Path]]:
    """``count`` rendered action videos of ``frames`` frames each, with their MOT tracks."""
    from reclnet.train.rendered_videos import render_set

    rendered = render_set(folder, videos=count, frames=(frames, frames), seed=0)
    return [
        (rendered.root / "videos" / f"{v.name}.mp4", rendered.root / "tracks" / f"{v.name}.txt")
        for v in rendered.videos
    ]


def _run_cameras(
    model: Path, videos: list[tuple[Path, Path]], workers: int, folder: Path
) -> dict[str, Any]:
    """One run of ``len(videos)`` cameras on ``workers`` Ray workers (Ray running).

    Returns ``{"fps", "start_s", "frames", "per_camera_fps"}``: frames/s of all
    cameras after every worker started and stepped each camera once.
    """
    from reclnet.runtime.serve.config import parse_config
    from reclnet.runtime.serve.driver import WorkerDied, assign
    from reclnet.runtime.serve.ray_backend import RayBackend

    config = parse_config(
        {
            "state_dir": str(folder / "state"),
            "sink": {"dir": str(folder / "events")},
            "snapshot_every": 50,
            "workers": workers,
            "cpus_per_worker": 1,
            "defaults": {"model": str(model), "threads": 1},
            "cameras": [
                {"name": f"cam{i}", "source": str(v), "tracks": str(t)}
                for i, (v, t) in enumerate(videos)
            ],
        }
    )
    backend = RayBackend(config)
    reports: dict[int, dict[str, Any]] = {}

    def collect(wanted: set[int], seconds: float | None) -> None:
        """Answers until every worker of ``wanted`` is done (or, seconds None: answered once)."""
        waiting = set(wanted)
        while waiting:
            for index, answer in backend.poll(timeout=30.0):
                if isinstance(answer, WorkerDied):
                    raise RuntimeError(f"worker {index} died during the benchmark: {answer}")
                reports[index] = answer
                if seconds is None or answer["done"]:
                    waiting.discard(index)
                else:
                    backend.submit(index, seconds)

    def frames() -> int:
        return sum(c["frames"] for r in reports.values() for c in r["cameras"])

    try:
        t_start = time.perf_counter()
        for i, group in enumerate(assign(config.cameras, workers)):
            backend.start(i, group)
        for i in range(workers):
            backend.submit(i, 0.0)  # start: sessions, sources, one frame per camera
        collect(set(range(workers)), None)
        t0, f0 = time.perf_counter(), frames()
        for i in range(workers):
            backend.submit(i, SLICE_SECONDS)
        collect(set(range(workers)), SLICE_SECONDS)
        t1 = time.perf_counter()
    finally:
        backend.shutdown()
    cams = [c for r in reports.values() for c in r["cameras"]]
    bad = [c["camera"] for c in cams if c["status"] != "done"]
    if bad:
        raise RuntimeError(f"cameras {bad} did not finish: {[c['error'] for c in cams]}")
    return {
        "fps": (frames() - f0) / (t1 - t0),
        "start_s": t0 - t_start,
        "frames": frames(),
        "per_camera_fps": sorted(c["fps"] for c in cams),
    }


def _camera_rows(model: Path, tmp: Path, quick: bool) -> list[dict]:
    frames = 60 if quick else 150
    repeat = 1 if quick else 3
    videos = _videos(tmp / "videos", max(CAMERAS), frames)
    rows: list[dict] = []
    base: dict | None = None
    for cameras in CAMERAS:
        for workers in WORKERS:
            variant = (
                f"{cameras} camera{'s' * (cameras > 1)} on {workers} worker{'s' * (workers > 1)}"
            )
            if workers > cameras:
                rows.append(
                    row(
                        BENCHMARK,
                        CAMERAS_CASE,
                        RAY,
                        unit="frames/s",
                        stats=None,
                        variant=variant,
                        skipped="a worker holds whole cameras: 1 camera runs on 1 worker",
                    )
                )
                continue
            runs = [
                _run_cameras(model, videos[:cameras], workers, tmp / f"c{cameras}w{workers}r{r}")
                for r in range(repeat)
            ]
            fps = sorted(r["fps"] for r in runs)
            median = float(np.median(fps))
            out = row(
                BENCHMARK,
                CAMERAS_CASE,
                RAY,
                unit="frames/s",
                stats=(fps[0], median, fps[-1]),
                precision="int8",
                variant=variant,
                baseline=base,
                ratio=None if base is None else median / base["median"],
                statistic="frames of all cameras per second of wall time, worker start excluded",
                cameras=cameras,
                workers=workers,
                frames_per_camera=frames,
                repeat=repeat,
                start_s=float(np.median([r["start_s"] for r in runs])),
                per_camera_fps=runs[len(runs) // 2]["per_camera_fps"],
                cpus=os.cpu_count(),
            )
            rows.append(out)
            if base is None:
                base = out
    return rows


def _step_rows(model: Path, quick: bool) -> list[dict]:
    from reclnet.runtime.backends import load_backend
    from reclnet.runtime.serve.config import StepConfig
    from reclnet.runtime.serve.ray_backend import start_step_service, stop_step_service

    calls = 20 if quick else 100
    rounds = 3 if quick else 10
    settings = StepConfig(mode="service", max_batch_size=64, num_cpus=1, threads=1)
    rows: list[dict] = []
    handle = start_step_service(settings, model / "step.onnx")
    try:
        with load_backend("onnxruntime", model=model / "step.onnx", threads=1) as local:
            rng = np.random.default_rng(0)
            for n in STEP_TRACKS:
                feats = {
                    m: rng.standard_normal((n, d), dtype=np.float32)
                    for m, d in local.config.modalities.items()
                }
                state = rng.standard_normal((n, local.config.state_size), dtype=np.float32)
                t_local = measure_each(lambda f=feats, s=state: local.step(f, s), calls=calls)
                base = row(
                    BENCHMARK,
                    STEP_CASE,
                    LOCAL,
                    unit="ms",
                    stats=t_local,
                    scale=1e3,
                    precision="fp32",
                    variant=ONE_AT_A_TIME,
                    n=n,
                )
                rows.append(base)
                t_one = measure_each(
                    lambda f=feats, s=state: handle.step.remote((f, s)).result(), calls=calls
                )
                rows.append(
                    row(
                        BENCHMARK,
                        STEP_CASE,
                        SERVICE,
                        unit="ms",
                        stats=t_one,
                        scale=1e3,
                        precision="fp32",
                        variant=ONE_AT_A_TIME,
                        n=n,
                        baseline=base,
                        overhead_ms=1e3 * (t_one.median - t_local.median),
                        max_batch_size=settings.max_batch_size,
                        batch_wait_ms=settings.batch_wait_ms,
                    )
                )

                def burst(f: dict = feats, s: np.ndarray = state) -> None:
                    answers = [handle.step.remote((f, s)) for _ in range(IN_FLIGHT)]
                    for a in answers:
                        a.result()

                t_burst = measure_each(burst, calls=rounds, warmup=1)
                per = Timing(
                    t_burst.min / IN_FLIGHT,
                    t_burst.median / IN_FLIGHT,
                    t_burst.max / IN_FLIGHT,
                    t_burst.p99 / IN_FLIGHT,
                    t_burst.repeat,
                    IN_FLIGHT,
                )
                rows.append(
                    row(
                        BENCHMARK,
                        STEP_CASE,
                        SERVICE,
                        unit="ms",
                        stats=per,
                        scale=1e3,
                        precision="fp32",
                        variant=CONCURRENT,
                        n=n,
                        baseline=base,
                        statistic=f"wall time of {IN_FLIGHT} concurrent requests / {IN_FLIGHT}",
                        overhead_ms=1e3 * (per.median - t_local.median),
                        max_batch_size=settings.max_batch_size,
                        batch_wait_ms=settings.batch_wait_ms,
                    )
                )
    finally:
        stop_step_service()
    return rows


def run(quick: bool = False) -> list[dict]:
    """Rows (see the module docstring); ``quick``: 60-frame videos, one run, fewer calls."""
    from reclnet.runtime.serve.ray_backend import ray_available

    if not ray_available():
        return _skipped("Ray is not installed (pip install 'reclnet[cluster]')")
    import ray

    with warnings.catch_warnings():
        # Ray Serve's own models use deprecated pydantic v1 idioms when imported; not ours.
        warnings.simplefilter("ignore", DeprecationWarning)
        import ray.serve  # noqa: F401

    model = camera_model()
    owns = not ray.is_initialized()
    if owns:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = _camera_rows(model, Path(tmp), quick)
        rows += _step_rows(model, quick)
    finally:
        if owns:
            ray.shutdown()
    return rows


def _print(rows: list[dict]) -> None:
    for r in rows:
        name = f"{r['case']}: {r['impl']} {r['variant'] or ''}".strip()
        n = "" if r["n"] is None else f" n={r['n']}"
        if r.get("skipped"):
            print(f"{name}{n}: skipped ({r['skipped']})")
            continue
        extra = ""
        if "start_s" in r:
            extra = f"  start {r['start_s']:.1f} s  per camera {r['per_camera_fps']}"
        if "overhead_ms" in r:
            extra = f"  overhead {r['overhead_ms']:+.2f} ms"
        ratio = r["ratio_vs_baseline"]
        ratio_text = "" if ratio is None else f"  x{ratio:.2f} vs baseline"
        print(f"{name}{n}: {r['median']:.2f} {r['unit']}{ratio_text}{extra}")


if __name__ == "__main__":
    import sys

    _print(run(quick="--quick" in sys.argv))
