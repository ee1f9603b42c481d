"""End-to-end camera path on vtest.avi: today's path against the new default, side by side.

The default CPU models are exported into a temporary folder first: the
paper-sized step model (``RecLNetConfig()``, 2 x 4096-d modalities, random
weights: speed does not depend on them), the two ResNet-18 feature networks
with heads to 4096 as ``reclnet export --features`` writes them (frame head,
float32 + static INT8 copy), and the same networks with the per-box head.
Then, in one process, over the same frames of vtest.avi (768x576):

- **today's path** (the baseline): per-box head in float32, OpenCV's HOG at
  native size on every frame, the stages one after another;
- **the new default** (what ``reclnet stream`` runs): INT8 step, frame head in
  INT8 on the default feature backend (OpenVINO where installed, else ONNX
  Runtime: :func:`~reclnet.runtime.camera.features.feature_backend`), HOG (``--hog-regions`` default: on the regions that moved or held people,
  the whole frame now and then) every
  :data:`~reclnet.runtime.camera.cli.DEFAULT_DETECT_EVERY` frames with
  the tracker predicting in between, in its own pipeline stage, decode |
  detect + track | flow + features | step + post-processing + output
  concurrently (the rgb network beside the flow image and the flow network),
  one thread per feature session;
- where OpenVINO is the default feature backend: the same INT8 networks on ONNX
  Runtime (``--feature-backend onnxruntime``), and, where the CPU has bf16 (AMX /
  AVX-512 BF16), the float networks on OpenVINO in bf16 (``--feature-precision bf16``);
- (full run) the new models and schedule run sequentially, to show what the
  models give and what the pipelining gives; and the new default with HOG on
  the whole frame (``--hog-regions frame``), to show what the gating gives.

Each gives fps (wall clock, every frame processed), the process's CPU ms per
frame (the work: less sensitive to a shared machine's load, recorded with each
row), per-stage ms and people (tracks) per frame; HOG on every frame at native size is the recall
reference. Then each path reads a simulated live camera (vtest.avi paced at
25 fps, newest frame kept, the rest dropped) as ``reclnet stream`` reads a
camera, one frame at a time (the default path also pipelined, as for files):
capture-to-output latency p50 / p99 (an event is emitted ``lookahead`` frames
later still) and frames dropped.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.benchmarks.rows import row
from reclnet.paths import vtest_video

VTEST = vtest_video() or Path("vtest.avi")
CASE = "vtest.avi 768x576"
PIPELINE, LIVE = "stream pipeline", "stream pipeline, live 25 fps"
#: variants: today's path (the baseline), the new default, and the new models run sequentially.
TODAY = "per-box head fp32, HOG every frame, sequential"
NEW = "frame head {precision} ({backend}), HOG {regions} every {n}, pipelined"
NEW_SEQ = "frame head {precision} ({backend}), HOG {regions} every {n}, sequential"


def _openvino_bf16() -> bool:
    """Whether OpenVINO is installed and reports bf16 on this CPU (the bf16 row runs)."""
    try:
        from reclnet.runtime.backends.openvino.loader import bf16_reason

        return bf16_reason() is None
    except ImportError:
        return False


LIVE_FPS = 25.0


def export_default_models(out: Path) -> Path:
    """The paper-sized step model, the default feature networks and the per-box ones (``box/``)."""
    import torch

    from reclnet.config import RecLNetConfig
    from reclnet.export.cli import main as export_main
    from reclnet.export.features import export_features
    from reclnet.train.checkpoint import save_checkpoint
    from reclnet.train.model import RecLNet

    torch.manual_seed(0)
    config = RecLNetConfig()
    ckpt = save_checkpoint(out / "model.pt", RecLNet(config).eval())
    status = export_main([str(ckpt), "--out", str(out), "--int8", "--features"])
    if status:
        raise RuntimeError(f"export of the default models failed (status {status})")
    (out / "box").mkdir()
    for modality, size in config.modalities.items():
        export_features(
            out / "box" / f"features_{modality}.onnx",
            stream=modality,
            out_dim=size,
            head="box",
            int8=False,
        )
    return out


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages (``/proc/loadavg``); None where there is none.

    On a shared machine the other jobs' load changes the wall-clock figures: each
    row records it.
    """
    try:
        fields = Path("/proc/loadavg").read_text().split()
        return (float(fields[0]), float(fields[1]), float(fields[2]))
    except (OSError, ValueError, IndexError):
        return None


def _paths(model_dir: Path, today: bool, precision: str = "int8") -> dict[str, Path]:
    from reclnet.runtime.camera.features import feature_network_path

    if today:
        return {m: model_dir / "box" / f"features_{m}.onnx" for m in ("rgb", "flow")}
    # bf16: the fp32 networks, which OpenVINO runs in bf16 (--feature-precision bf16).
    return {m: feature_network_path(model_dir, m, precision) for m in ("rgb", "flow")}


def _run_path(
    model_dir: Path,
    *,
    today: bool,
    pipelined: bool,
    detect_every: int,
    frames: int,
    live: bool,
    regions: str = "frame",
    precision: str = "int8",
    backend: str = "onnxruntime",
) -> dict[str, Any]:
    """One pass of one path; wall-clock fps, per-stage ms, people per frame (and live latency)."""
    from reclnet.runtime.backends import load_backend
    from reclnet.runtime.camera.features import FeatureNetwork, flow_for
    from reclnet.runtime.camera.live import LatestFrames, PacedFrames
    from reclnet.runtime.camera.persons import hog_detector
    from reclnet.runtime.camera.pipeline import (
        DetectAndTrack,
        StageTimer,
        StreamPipeline,
        TimedRunner,
    )
    from reclnet.runtime.camera.source import FileSource
    from reclnet.runtime.camera.tracking import PersonTracker
    from reclnet.runtime.scorer import OnlineScorer

    paths = _paths(model_dir, today, precision)
    bf16 = precision == "bf16" and not today
    backend = "onnxruntime" if today else backend
    threads = None if not pipelined else 1
    with (
        load_backend(
            "onnxruntime", model=model_dir / ("step.onnx" if today else "step.int8.onnx")
        ) as runner,
        FeatureNetwork(paths["rgb"], threads=threads, backend=backend, bf16=bf16) as rgb,
        FeatureNetwork(paths["flow"], threads=threads, backend=backend, bf16=bf16) as flow_net,
        FileSource(VTEST) as source,
    ):
        timer = StageTimer()
        scorer = OnlineScorer(TimedRunner(runner, timer), max_age=10, video="vtest")
        persons = DetectAndTrack(
            hog_detector(regions),
            PersonTracker(frame_size=(768, 576)),
            detect_every=detect_every,
        )
        pipeline = StreamPipeline(
            scorer,
            persons,
            {"rgb": rgb, "flow": flow_net},
            timer=timer,
            class_names=[f"action{i}" for i in range(scorer.config.num_actions)],
            flow=flow_for(flow_net),
            fps=source.fps,
            feature_scale=0.5,
        )
        tracks: list[int] = []
        done_at: list[float] = []

        def on_frame(out: Any) -> None:
            tracks.append(len(out.tracks))
            done_at.append(time.perf_counter())

        latest = None
        feed: Any = source
        if live:
            # ``frames`` frames of camera time; those the path cannot keep up with are dropped.
            camera = itertools.islice(source, frames)
            latest = LatestFrames(PacedFrames(camera, LIVE_FPS), capacity=1, start=False)
            feed = latest
        load = load_average()
        t0, cpu0 = time.perf_counter(), time.process_time()
        with pipeline:
            n = pipeline.run(
                feed,
                max_frames=None if live else frames,
                on_frame=on_frame,
                pipelined=pipelined,
                queue_size=1 if live else max(2, detect_every),
            )
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        if latest is not None:
            latest.close()
    table = timer.table()
    gaps = np.diff(np.asarray([t0, *done_at])) * 1e3
    result: dict[str, Any] = {
        "frames": n,
        "wall_s": wall,
        "fps": n / wall,
        "ms_per_frame": 1e3 * wall / max(n, 1),
        # CPU time of every thread of this process per frame: the work, which a
        # shared machine's load changes far less than the wall clock.
        "cpu_ms_per_frame": 1e3 * cpu / max(n, 1),
        "load_average": load,
        "gap_ms": (float(gaps.min()), float(gaps.max())) if len(gaps) else (0.0, 0.0),
        "stage_ms": {
            s: round(float(table[:, j].mean() * 1e3), 2) for j, s in enumerate(timer.stages)
        },
        "people_per_frame": float(np.mean(tracks)) if tracks else 0.0,
        "lookahead": int(scorer.postprocess.lookahead),
    }
    if latest is not None:
        lat = np.asarray(pipeline.latencies, np.float64) * 1e3
        result.update(
            captured=latest.captured,
            dropped=latest.dropped,
            latency_ms=(float(lat.min()), float(np.percentile(lat, 50)), float(lat.max())),
            latency_p99_ms=float(np.percentile(lat, 99)),
        )
    return result


def run(quick: bool = False) -> list[dict]:
    """Today's path vs the new default: fps, stage ms, people per frame, live latency."""
    if not VTEST.exists():
        return [
            row(
                "stream",
                CASE,
                PIPELINE,
                unit="ms/frame",
                stats=None,
                label="end to end",
                skipped=f"{VTEST} not found (docs/demo.md tells how to get it)",
            )
        ]
    from reclnet.runtime.camera.cli import DEFAULT_DETECT_EVERY as N
    from reclnet.runtime.camera.cli import DEFAULT_HOG_REGIONS as R
    from reclnet.runtime.camera.features import feature_backend

    frames = 60 if quick else 200
    live_frames = 100 if quick else 250  # captured at 25 fps: 4 / 10 s of camera
    B = feature_backend()  # the default feature backend here
    new = {"precision": "int8", "backend": B, "n": N}
    # (variant, today, pipelined, detect every, HOG regions, feature precision, backend)
    paths = [(TODAY, True, False, 1, "frame", "fp32", "onnxruntime")]
    if not quick:
        paths.append((NEW_SEQ.format(regions=R, **new), False, False, N, R, "int8", B))
        if R != "frame":
            paths.append((NEW.format(regions="frame", **new), False, True, N, "frame", "int8", B))
    default = NEW.format(regions=R, **new)  # what reclnet stream runs on a file
    paths.append((default, False, True, N, R, "int8", B))
    if B != "onnxruntime":
        ort = {**new, "backend": "onnxruntime"}
        paths.append((NEW.format(regions=R, **ort), False, True, N, R, "int8", "onnxruntime"))
    if _openvino_bf16():
        bf16 = {**new, "precision": "bf16", "backend": "openvino"}
        paths.append((NEW.format(regions=R, **bf16), False, True, N, R, "bf16", "openvino"))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = export_default_models(Path(tmp))
        # Warm-up (sessions, page cache, HOG) outside the timed passes.
        _run_path(
            model_dir,
            today=False,
            pipelined=True,
            detect_every=N,
            frames=8,
            live=False,
            regions=R,
            backend=B,
        )
        base: dict | None = None
        base_people = None
        for variant, today, pipelined, every, regions, precision, backend in paths:
            r = _run_path(
                model_dir,
                today=today,
                pipelined=pipelined,
                detect_every=every,
                frames=frames,
                live=False,
                regions=regions,
                precision=precision,
                backend=backend,
            )
            if base_people is None:
                base_people = r["people_per_frame"]
            out = row(
                "stream",
                CASE,
                PIPELINE,
                unit="ms/frame",
                # median: the wall-clock mean over the run (a pipelined run's frames
                # arrive in bursts, its per-frame gaps are not a per-frame cost);
                # min / max: the shortest / longest gap between two frames' outputs.
                stats=(
                    min(r["gap_ms"][0], r["ms_per_frame"]),
                    r["ms_per_frame"],
                    max(r["gap_ms"][1], r["ms_per_frame"]),
                ),
                precision=precision,
                feature_backend=backend,
                variant=variant,
                baseline=base,
                label=f"end to end: {variant}",
                statistic="wall-clock ms per frame over the run",
                fps=r["fps"],
                frames=r["frames"],
                cpu_ms_per_frame=r["cpu_ms_per_frame"],
                load_average=r["load_average"],
                stage_ms=r["stage_ms"],
                people_per_frame=r["people_per_frame"],
                people_vs_hog_every_frame=r["people_per_frame"] / base_people
                if base_people
                else None,
                detect_every=every,
                hog_regions=regions,
                pipelined=pipelined,
            )
            rows.append(out)
            if base is None:
                base = out
            if not pipelined and not today:
                continue
            # A live source runs sequentially by default (reclnet stream: the lowest latency);
            # the default path also shows it pipelined, what files run.
            schedules = [False] if today or variant != default else [False, True]
            for live_pipelined in schedules:
                live = _run_path(
                    model_dir,
                    today=today,
                    pipelined=live_pipelined,
                    detect_every=every,
                    frames=live_frames,
                    live=True,
                    regions=regions,
                    precision=precision,
                    backend=backend,
                )
                schedule = "pipelined" if live_pipelined else "sequential"
                rows.append(
                    row(
                        "stream",
                        CASE,
                        LIVE,
                        unit="ms",
                        stats=live["latency_ms"],
                        precision=precision,
                        feature_backend=backend,
                        variant=variant,
                        label=f"capture-to-output latency (p50; p99 apart), live 25 fps, "
                        f"{schedule}: {variant}",
                        statistic="median of capture-to-output latency",
                        live_schedule=schedule,
                        latency_p50_ms=live["latency_ms"][1],
                        latency_p99_ms=live["latency_p99_ms"],
                        lookahead_frames=live["lookahead"],
                        lookahead_ms=1e3 * live["lookahead"] / LIVE_FPS,
                        captured=live["captured"],
                        dropped=live["dropped"],
                        processed=live["frames"],
                        fps=live["fps"],
                        load_average=live["load_average"],
                        stage_ms=live["stage_ms"],
                    )
                )
    return rows


if __name__ == "__main__":
    import sys

    for r in run(quick="--quick" in sys.argv):
        if r.get("skipped"):
            print(f"{r['case']}: skipped ({r['skipped']})")
            continue
        if r["impl"] == PIPELINE:
            ratio = r["ratio_vs_baseline"]
            print(
                f"{r['variant']:<48} {r['median']:7.1f} ms/frame {r['fps']:6.2f} fps"
                f"  {r['people_per_frame']:.2f} people/frame"
                + (f"  {ratio:.2f}x today's path" if ratio else "")
                + f"  cpu {r['cpu_ms_per_frame']:.0f} ms/frame  load {r['load_average']}"
            )
            print("    stages ms: " + " ".join(f"{k} {v:.1f}" for k, v in r["stage_ms"].items()))
        else:
            print(
                f"{'  live 25 fps, ' + r['live_schedule']:<48} latency p50 {r['latency_p50_ms']:.0f} ms, p99 "
                f"{r['latency_p99_ms']:.0f} ms (+ lookahead {r['lookahead_ms']:.0f} ms), "
                f"{r['dropped']} of {r['captured']} frames dropped, {r['fps']:.1f} fps processed"
                f"  load {r['load_average']}"
            )
