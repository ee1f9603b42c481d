"""End-to-end camera path on vtest.avi: frames per second and each stage's share.

The default CPU models are exported into a temporary folder first: the
paper-sized step model (``RecLNetConfig()``, 2 x 4096-d streams, random
weights: speed does not depend on them) and the two ResNet-18 feature networks
with heads to 4096. Then every frame goes through PyAV decode -> HOG people
detector -> norfair tracker -> DIS flow -> features -> ONNX Runtime step -> C
post-processing, as ``reclnet stream`` runs it (features and flow on frames
resized by 0.5). The baseline, in the same process, is decoding alone: the
ratio says how far the whole pipeline is from the speed of the decoder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.benchmarks.rows import row
from reclnet.benchmarks.timing import Timing, measure_each
from reclnet.paths import vtest_video

VTEST = vtest_video() or Path("vtest.avi")
CASE = "vtest.avi 768x576"
#: impl of the decoder baseline and of the whole pipeline (its stages: ``stage`` field).
DECODE, PIPELINE = "decode only (PyAV)", "stream pipeline"


def _row(
    impl: str, label: str, t: Timing, base: dict | None, variant: str | None = None, **extra: Any
) -> dict:
    return row(
        "stream",
        CASE,
        impl,
        unit="ms/frame",
        stats=t,
        scale=1e3,
        variant=variant,
        baseline=base,
        label=label,
        **extra,
    )


def export_default_models(out: Path) -> Path:
    """The paper-sized step model and ResNet-18 feature networks (random weights) in ``out``."""
    import torch

    from reclnet.config import RecLNetConfig
    from reclnet.export.cli import main as export_main
    from reclnet.train.checkpoint import save_checkpoint
    from reclnet.train.model import RecLNet

    torch.manual_seed(0)
    ckpt = save_checkpoint(out / "model.pt", RecLNet(RecLNetConfig()).eval())
    status = export_main([str(ckpt), "--out", str(out), "--features"])
    if status:
        raise RuntimeError(f"export of the default models failed (status {status})")
    return out


def run(quick: bool = False) -> list[dict]:
    """End-to-end ms/frame and fps on vtest.avi vs decoding alone; per-stage rows with shares."""
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
    from reclnet.runtime.camera.source import FileSource

    frames = 20 if quick else 100
    warmup = 3
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = export_default_models(Path(tmp))

        # Baseline: decode only.
        with FileSource(VTEST) as source:
            it = iter(source)
            decode = measure_each(lambda: next(it), calls=frames, warmup=warmup)
        base = _row(DECODE, DECODE, decode, None, fps=1.0 / decode.median)
        rows.append(base)

        variants = [(1, "end to end: HOG + norfair + DIS flow + 2 x ResNet-18 + ORT step + C post")]
        if not quick:  # --quick keeps to about a minute: the main variant only
            variants.append((3, "end to end, HOG on every 3rd frame (tracker predicts between)"))
        for detect_every, impl in variants:
            rows += _run_pipeline(model_dir, impl, detect_every, frames, warmup, base)
    return rows


def _run_pipeline(
    model_dir: Path, label: str, detect_every: int, frames: int, warmup: int, base: dict
) -> list[dict]:
    """One timed pass over ``frames`` frames of vtest.avi; the e2e row and one row per stage."""
    from reclnet.runtime.backends import load_backend
    from reclnet.runtime.camera.features import FeatureNetwork
    from reclnet.runtime.camera.flow import flow_image
    from reclnet.runtime.camera.persons import HogPersonDetector
    from reclnet.runtime.camera.pipeline import (
        DetectAndTrack,
        StageTimer,
        StreamPipeline,
        TimedRunner,
    )
    from reclnet.runtime.camera.source import FileSource
    from reclnet.runtime.camera.tracking import PersonTracker

    rows = []
    with (
        load_backend("onnxruntime", model=model_dir / "step.onnx") as runner,
        FeatureNetwork(model_dir / "features_rgb.onnx") as rgb,
        FeatureNetwork(model_dir / "features_flow.onnx") as flow_net,
        FileSource(VTEST) as source,
    ):
        from reclnet.runtime.scorer import OnlineScorer

        timer = StageTimer()
        scorer = OnlineScorer(TimedRunner(runner, timer), max_age=10, video="vtest")
        persons = DetectAndTrack(
            HogPersonDetector(), PersonTracker(frame_size=(768, 576)), detect_every=detect_every
        )
        pipeline = StreamPipeline(
            scorer,
            persons,
            {"rgb": rgb, "flow": flow_net},
            timer=timer,
            class_names=[f"action{i}" for i in range(scorer.config.num_actions)],
            flow=flow_image,
            fps=source.fps,
            feature_scale=0.5,
        )
        it = iter(source)
        tracks: list[int] = []

        def one_frame() -> None:
            out = pipeline.process(timer_decode(it, timer))
            timer.end_frame()
            tracks.append(len(out.tracks))

        e2e = measure_each(one_frame, calls=frames, warmup=warmup)
        pipeline.close()
    table = timer.table()[warmup:]
    stage_share = table.sum(axis=0) / table.sum()
    shares = {s: round(float(v), 4) for s, v in zip(timer.stages, stage_share, strict=True)}
    variant = f"HOG every {detect_every}"
    rows.append(
        _row(
            PIPELINE,
            label,
            e2e,
            base,
            variant,
            stage=None,
            fps=1.0 / e2e.median,
            mean_tracks=float(np.mean(tracks[warmup:])),
            detect_every=detect_every,
            stage_share=shares,
            frames=frames,
        )
    )
    for j, stage in enumerate(timer.stages):
        col = table[:, j]
        t = Timing(
            float(col.min()),
            float(np.median(col)),
            float(col.max()),
            float(np.percentile(col, 99)),
            len(col),
            1,
        )
        rows.append(
            _row(
                PIPELINE,
                f"  stage {stage} ({variant})",
                t,
                None,
                variant,
                stage=stage,
                share=shares[stage],
                mean_ms=float(col.mean() * 1e3),
            )
        )
    return rows


def timer_decode(it: Any, timer: Any) -> Any:
    """Next frame, its decode time recorded in the ``decode`` stage."""
    import time

    t0 = time.perf_counter()
    frame = next(it)
    timer.add("decode", time.perf_counter() - t0)
    return frame


if __name__ == "__main__":
    import sys

    for r in run(quick="--quick" in sys.argv):
        if r.get("skipped"):
            print(f"{r['case']}: skipped ({r['skipped']})")
            continue
        ratio = r["ratio_vs_baseline"]
        extra = ""
        if "fps" in r:
            extra += f"  {r['fps']:6.2f} fps"
        if "mean_tracks" in r:
            extra += f"  {r['mean_tracks']:.1f} tracks/frame"
        if "share" in r:
            extra += f"  share {100 * r['share']:5.1f}% (mean {r['mean_ms']:.1f} ms)"
        if ratio is not None:
            extra += f"  {ratio:.3f}x vs {r['baseline']['label']}"
        print(
            f"{r['label']:<76} median {r['median']:9.2f} ms "
            f"[{r['min']:.2f} .. {r['max']:.2f}]{extra}"
        )
