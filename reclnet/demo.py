"""``reclnet demo`` (``make demo``): the whole product on a fresh machine, with nothing brought.

1. build the built-in synthetic track-feature dataset (:mod:`reclnet.train.synthetic`);
2. train a small two-stream RecLNet on it (:func:`reclnet.train.train.train`);
3. export it to ONNX (step model + sidecar, and the feature networks);
4. replay the held-out synthetic videos as one live stream through
   :class:`reclnet.runtime.OnlineScorer` on ONNX Runtime, printing events as
   they happen, how they match the ground truth, a per-frame latency table, and
   writing a timeline plot (like the paper's Figure 3);
5. when ``video/vtest.avi`` of the data folder (``--data``, ``RECLNET_DATA``, or
   ``../shared/data`` in a source checkout) or ``--video PATH`` exists, run
   ``reclnet stream`` on it: HOG people detector + tracker, flow, features,
   the same model, and write the overlay video.

The model only knows the synthetic data's feature patterns: on a real video
it shows the camera path working, not real action recognition (README: Demo).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.argparsing import ArgumentParser
from reclnet.paths import ENV_VAR, vtest_video


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="reclnet demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    p.add_argument(
        "--video",
        type=Path,
        default=None,
        help="a real video for the camera path (default: video/vtest.avi in the data folder "
        f"of --data, ${ENV_VAR} or ../shared/data in a source checkout, when present)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help=f"data folder holding video/vtest.avi (default: ${ENV_VAR}, or ../shared/data "
        "in a source checkout)",
    )
    p.add_argument("--no-video", action="store_true", help="skip the real-video part")
    p.add_argument("--video-frames", type=int, default=100, help="frames of the real video")
    p.add_argument("--quick", action="store_true", help="tiny dataset and model (for tests)")
    p.add_argument("--seed", type=int, default=0)
    return p


def _say(text: str) -> None:
    print(text, flush=True)


def temporal_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """IoU of two inclusive frame intervals."""
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    union = max(a[1], b[1]) - min(a[0], b[0]) + 1
    return max(0, inter) / union


def match_events(
    segments: list[tuple[int, int, int, int, float]],
    truth: list[tuple[int, int, int, int]],
    iou: float = 0.5,
) -> tuple[int, int, int]:
    """Greedy matching of detected segments to true ones (same track, same label).

    Parameters
    ----------
    segments : list of (track, label, first, last, score)
    truth : list of (track, label, first, last)
    iou : float
        Temporal IoU needed for a match.

    Returns
    -------
    (true_positives, detections, ground_truths)
    """
    used: set[int] = set()
    tp = 0
    for track, label, first, last, _ in sorted(segments, key=lambda s: -s[4]):
        best, best_j = iou, -1
        for j, (t_track, t_label, t_first, t_last) in enumerate(truth):
            if j in used or t_track != track or t_label != label:
                continue
            v = temporal_iou((first, last), (t_first, t_last))
            if v >= best:
                best, best_j = v, j
        if best_j >= 0:
            used.add(best_j)
            tp += 1
    return tp, len(segments), len(truth)


def synthetic_live_stream(videos: list[Any], gap: int = 5) -> tuple[list, list, dict]:
    """Lay held-out videos end to end as one stream of frames.

    Returns ``(frames, truth, names)``: ``frames`` a list of ``(frame, ids
    int64[N], features {stream: float32[N, D]}, boxes float32[N, 4])``; the
    ground truth as ``(track, label, first, last)`` in stream frames; and
    ``track -> video name``. Track ids are made unique across videos; videos
    are ``gap`` empty frames apart.
    """
    from reclnet.train.data import box_iou_rows

    per_frame: dict[int, list[tuple[int, dict[str, np.ndarray], np.ndarray]]] = {}
    truth: list[tuple[int, int, int, int]] = []
    names: dict[int, str] = {}
    offset = 0
    for v, video in enumerate(videos):
        for track in video.tracks:
            tid = 1000 * (v + 1) + int(track.track_id)
            names[tid] = video.name
            for i, f in enumerate(track.frames.tolist()):
                feats = {s: np.asarray(x[i], np.float32) for s, x in track.features.items()}
                per_frame.setdefault(offset + f, []).append((tid, feats, track.boxes[i]))
            # The tube this track follows (the synthetic tracks overlap their tube closely).
            for tube in video.tubes:
                common, ti, gi = np.intersect1d(track.frames, tube.frames, return_indices=True)
                if len(common) == 0:
                    continue
                overlap = box_iou_rows(track.boxes[ti], tube.boxes[gi])
                if float(np.mean(overlap)) > 0.5:
                    first, last = int(tube.frames[0]), int(tube.frames[-1])
                    truth.append((tid, int(tube.label), offset + first, offset + last))
        offset += int(video.num_frames) + gap
    frames = []
    for f in sorted(per_frame):
        rows = per_frame[f]
        ids = np.array([r[0] for r in rows], np.int64)
        modalities = rows[0][1].keys()
        feats = {s: np.stack([r[1][s] for r in rows]) for s in modalities}
        boxes = np.stack([r[2] for r in rows]).astype(np.float32)
        frames.append((f, ids, feats, boxes))
    return frames, truth, names


def run_live_demo(
    model_dir: Path,
    dataset: Path,
    out: Path,
    *,
    print_events: int = 25,
    threshold: float | None = 0.2,
) -> dict[str, Any]:
    """Step 4: the synthetic live stream through the online scorer. Returns the figures.

    ``threshold`` overrides the sidecar's (the paper's 0.1 is for 24 classes; with
    5 the background-free probability mass per action is larger); None keeps it.
    """
    from reclnet.runtime.backends import load_backend
    from reclnet.runtime.camera.pipeline import StageTimer, TimedRunner
    from reclnet.runtime.camera.timeline import ScoreHistory, plot_timeline
    from reclnet.runtime.scorer import OnlineScorer
    from reclnet.train.data import open_dataset

    with open_dataset(dataset) as reader:
        videos = list(reader.videos("val")) or list(reader.videos())
        class_names = list(reader.class_names) or [f"action_{c}" for c in range(reader.num_actions)]
    frames, truth, _ = synthetic_live_stream(videos)
    timer = StageTimer(["step", "postproc"])
    history = ScoreHistory()
    events: list[Any] = []
    with load_backend("onnxruntime", model=model_dir / "step.onnx", threads=2) as runner:
        pp = runner.postprocess
        if threshold is not None:
            pp = replace(pp, threshold=float(threshold))
        # Median centred on each frame: events come (window - 1) / 2 frames late, and match
        # the offline localization exactly.
        scorer = OnlineScorer(
            TimedRunner(runner, timer),
            postprocess=pp,
            lookahead=(pp.window - 1) // 2,
            max_age=3,
            video="synthetic",
        )
        _say(
            f"live stream: {len(videos)} held-out synthetic videos as one stream of "
            f"{len(frames)} frames, {len({t for f in frames for t in f[1].tolist()})} tracks; "
            f"window {pp.window}, lookahead {(pp.window - 1) // 2}, threshold {pp.threshold}"
        )
        shown = 0
        for f, ids, feats, boxes in frames:
            t0 = time.perf_counter()
            step0 = scorer.runner.step_seconds
            result = scorer.update(f, ids, feats, boxes)
            timer.add("postproc", time.perf_counter() - t0 - (scorer.runner.step_seconds - step0))
            timer.end_frame()
            history.add(f, result.track_ids, result.probs)
            for e in result.events:
                events.append(e)
                if shown < print_events:
                    shown += 1
                    _say(
                        f"  frame {f:>5}  {e.kind.upper():5} track {e.track_id:>5} "
                        f"{class_names[e.label]:<10} frames {e.first_frame}-{e.last_frame} "
                        f"score {e.score:.3f}"
                    )
        events += scorer.flush()
    if len(events) > shown:
        _say(f"  ... {len(events) - shown} more events")
    segments = [
        (e.track_id, e.label, e.first_frame, e.last_frame, e.score)
        for e in events
        if e.kind == "end"
    ]
    tp, n_det, n_true = match_events(segments, truth)
    precision = tp / n_det if n_det else 0.0
    recall = tp / n_true if n_true else 0.0
    _say(
        f"segments vs ground truth (same track and action, temporal IoU >= 0.5): "
        f"{tp} of {n_det} detected segments are right (precision {precision:.2f}), "
        f"{tp} of {n_true} true actions found (recall {recall:.2f})"
    )
    _say("per-frame latency of the online scorer (ONNX Runtime step + C post-processing):")
    _say(timer.format())
    gt: dict[int, list[tuple[int, int, int]]] = {}
    for track, label, first, last in truth:
        gt.setdefault(track, []).append((label, first, last))
    # Plot the first videos' tracks: a readable figure, like the paper's.
    first_tracks = sorted({t for t, *_ in truth})[:6]
    small = ScoreHistory()
    for tid in first_tracks:
        fr, pr = history.track(tid)
        for f, p in zip(fr.tolist(), pr, strict=True):
            small.add(f, np.array([tid]), p[None])
    timeline = plot_timeline(
        small,
        out / "timeline_synthetic.png",
        class_names,
        events=[e for e in events if e.track_id in set(first_tracks)],
        threshold=pp.threshold,
        max_tracks=6,
        ground_truth=gt,
        title="synthetic live stream: RecLNet scores per track "
        "(coloured bars: detected segments, black: ground truth)",
    )
    _say(f"timeline plot: {timeline}")
    rows = {r["stage"]: r for r in timer.summary()}
    return {
        "frames": len(frames),
        "events": len(events),
        "precision": precision,
        "recall": recall,
        "p50_ms": rows["total"]["p50_ms"],
        "p99_ms": rows["total"]["p99_ms"],
        "timeline": timeline,
    }


def main(argv: list[str] | None = None) -> int:
    """``reclnet demo``; returns the exit status."""
    args = build_parser().parse_args(argv)
    t_start = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    from reclnet.export.cli import main as export_main
    from reclnet.train.synthetic import make_builtin_dataset
    from reclnet.train.train import train

    quick = args.quick
    _say(f"[1/5] synthetic dataset -> {out / 'synthetic.h5'}")
    t0 = time.perf_counter()
    dataset = make_builtin_dataset(
        out / "synthetic.h5", num_videos=24 if quick else 80, num_actions=5, seed=args.seed
    )
    _say(f"      {time.perf_counter() - t0:.1f} s")

    _say("[2/5] training a small two-stream GRU RecLNet (2 stages: each stream, then fusion)")
    t0 = time.perf_counter()
    result = train(
        dataset,
        out / "train",
        projection_size=32 if quick else 64,
        memory_size=16 if quick else 64,
        epochs=1 if quick else 6,
        fusion_epochs=1 if quick else 2,
        lr=3e-3,
        batch_tracks=50,
        seed=args.seed,
        threads=2,
        progress=None if not quick else False,
    )
    acc = result.metrics.get("frame_accuracy", result.metrics.get("accuracy"))
    _say(
        f"      {time.perf_counter() - t0:.1f} s; validation frame accuracy "
        f"{acc if acc is None else f'{acc:.3f}'}; checkpoint {result.checkpoint}"
    )

    model_dir = out / "model"
    # An installed package without --data / RECLNET_DATA has no default video: skip that part.
    video = args.video if args.video is not None else vtest_video(args.data)
    use_video = not args.no_video and video is not None and video.is_file()
    _say(f"[3/5] export to ONNX -> {model_dir}")
    t0 = time.perf_counter()
    export_args = [str(result.checkpoint), "--out", str(model_dir)]
    if use_video:
        export_args += ["--features"]
    status = export_main(export_args)
    if status:
        _say(f"export failed (status {status})")
        return status
    _say(f"      {time.perf_counter() - t0:.1f} s")

    _say("[4/5] online scoring of a synthetic live stream")
    figures = run_live_demo(model_dir, dataset, out)

    if use_video:
        _say(f"[5/5] camera path on a real video: {video} (HOG people + tracker + flow + features)")
        _say(
            "      the model was trained on synthetic features: its 'actions' on a real video "
            "are not meaningful, this shows the pipeline running"
        )
        from reclnet.runtime.camera.cli import main as stream_main

        status = stream_main(
            [
                str(video),
                "--model",
                str(model_dir),
                "--events",
                str(out / "vtest_events.jsonl"),
                "--render",
                str(out / "vtest_overlay.mp4"),
                "--timeline",
                str(out / "vtest_timeline.png"),
                "--max-frames",
                str(args.video_frames),
                # HOG is the slowest stage: every 2nd frame, the tracker predicts in between.
                "--detect-every",
                "2",
                "--quiet",
            ]
        )
        if status:
            return status
        _say(f"      overlay video: {out / 'vtest_overlay.mp4'}")
    else:
        if args.no_video:
            why = "--no-video"
        elif video is None:
            why = f"no data folder (pass --video PATH or --data DIR, or set {ENV_VAR})"
        else:
            why = f"{video} not found (README: Demo)"
        _say(f"[5/5] real-video part skipped: {why}")
    _say(
        f"demo done in {time.perf_counter() - t_start:.0f} s: {figures['events']} events, "
        f"precision {figures['precision']:.2f}, recall {figures['recall']:.2f}, "
        f"scorer p50 {figures['p50_ms']:.2f} ms / frame; outputs in {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
