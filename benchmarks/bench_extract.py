"""Throughput of ``reclnet extract``: frames per second (and per worker process) from video to features.

Two workloads, each through :func:`reclnet.train.extract.extract` (decode,
tracks, flow, both feature networks, part files, the merge), with the feature
networks ``reclnet export --features`` writes (ResNet-18 frame head to 4096,
float32 + static INT8 copy; ``--feature-precision auto`` runs the INT8 one, as
``reclnet stream`` does) at the default ``--feature-scale 0.5``:

- **rendered 320x240**: a small rendered set (``reclnet synth --kind video``)
  with its given MOT tracks, with 1 worker and (full run) 2 workers;
- **vtest.avi 768x576** with the built-in HOG detector + tracker (every
  :data:`~reclnet.runtime.camera.cli.DEFAULT_DETECT_EVERY` frames), on its
  first frames re-encoded as a clip (skipped when vtest.avi is absent).

Each worker runs its networks on one ONNX Runtime thread, so frames/s per
worker is the throughput of one core's worth of network work (the decoder's
threads come on top). One timed pass each, spawning the workers and merging
the parts included: what a user waits for.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from reclnet.benchmarks.rows import row
from reclnet.paths import vtest_video

BENCHMARK = "extract"
IMPL = "reclnet extract"
RENDERED = "rendered 320x240, given tracks"
VTEST_CASE = "vtest.avi 768x576, HOG tracks"


def export_networks(model_dir: Path, out_dim: int = 4096) -> Path:
    """The two feature networks as ``reclnet export --features`` writes them (+ INT8 copies)."""
    from reclnet.export.features import export_features

    for modality in ("rgb", "flow"):
        export_features(model_dir / f"features_{modality}.onnx", stream=modality, out_dim=out_dim)
    return model_dir


def _extract(
    jobs: list[Any], annotations: Any, model_dir: Path, out: Path, workers: int
) -> tuple[float, int]:
    """(wall-clock seconds, frames) of one extraction, merge included."""
    from reclnet.train.extract import ExtractSettings, extract, model_modalities

    sizes = model_modalities(model_dir)
    settings = ExtractSettings(model_dir=str(model_dir), modalities=tuple(sizes))
    t0 = time.perf_counter()
    result = extract(jobs, annotations, out, settings, workers=workers, progress=False)
    return time.perf_counter() - t0, result.frames


def _rate_row(case: str, seconds: float, frames: int, workers: int, **extra: Any) -> dict:
    fps = frames / seconds
    return row(
        BENCHMARK,
        case,
        IMPL,
        unit="frames/s",
        # One timed pass (seconds long): min = median = max.
        stats=(fps, fps, fps),
        precision="int8",
        variant=f"{workers} worker(s), 1 ORT thread each",
        label=f"{case}: {workers} worker(s)",
        statistic="frames / wall-clock seconds of one whole extraction (spawn + merge included)",
        frames=frames,
        seconds=seconds,
        workers=workers,
        frames_per_second_per_worker=fps / workers,
        cpu_count=os.cpu_count(),
        **extra,
    )


def run(quick: bool = False) -> list[dict]:
    """Frames/s of ``reclnet extract`` on rendered videos and on vtest.avi with HOG tracks."""
    from reclnet.train.extract import VideoJob, find_videos, load_annotations, plan_jobs
    from reclnet.train.rendered_videos import render_set

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = export_networks(root / "model")
        rendered = render_set(root / "set", videos=3 if quick else 6, frames=(60, 80), seed=0)
        annotations = load_annotations(rendered.root)
        jobs = plan_jobs(
            find_videos([rendered.root / "videos"]),
            annotations,
            tracks_dir=rendered.root / "tracks",
        )
        for workers in (1,) if quick else (1, 2):
            seconds, frames = _extract(
                jobs, annotations, model_dir, root / f"r{workers}.h5", workers
            )
            rows.append(_rate_row(RENDERED, seconds, frames, workers, videos=len(jobs)))
        vtest = vtest_video()
        if vtest is None or not vtest.is_file():
            rows.append(
                row(
                    BENCHMARK,
                    VTEST_CASE,
                    IMPL,
                    unit="frames/s",
                    stats=None,
                    skipped=f"{vtest or 'vtest.avi'} not found (docs/demo.md tells how to get it)",
                )
            )
            return rows
        from reclnet.runtime.camera.render import VideoWriter
        from reclnet.runtime.camera.source import FileSource
        from reclnet.train.extract import Annotations

        clip = root / "vtest_clip.mp4"
        n = 40 if quick else 120
        with (
            FileSource(vtest) as source,
            VideoWriter(clip, source.fps, source.width, source.height) as writer,
        ):
            for frame in source:
                if frame.index >= n:
                    break
                writer.write(frame.image)
        # vtest.avi has no ground truth: no tubes (every frame background).
        ann = Annotations("tubes", clip, ["none"], {"vtest_clip": "train"}, {})
        job = VideoJob(0, "vtest_clip", clip, "train", [], None)
        seconds, frames = _extract([job], ann, model_dir, root / "v.h5", 1)
        rows.append(_rate_row(VTEST_CASE, seconds, frames, 1, videos=1))
    return rows


if __name__ == "__main__":
    import sys

    for r in run(quick="--quick" in sys.argv):
        if r.get("skipped"):
            print(f"{r['case']}: skipped ({r['skipped']})")
            continue
        print(
            f"{r['case']:<34} {r['workers']} worker(s): {r['median']:6.1f} frames/s, "
            f"{r['frames_per_second_per_worker']:6.1f} frames/s per worker "
            f"({r['frames']} frames in {r['seconds']:.1f} s)"
        )
