"""``reclnet demo`` (``make demo``): from pixels to evaluated events on a fresh machine, nothing brought.

1. render a small set of action videos (:mod:`reclnet.train.rendered_videos`,
   what ``reclnet synth --kind video`` writes): figures waving, jumping,
   squatting, spinning and kicking, with their MOT tracks and ground-truth tubes;
2. export the two feature networks (ResNet-18, random weights: nothing is
   downloaded) and extract the training videos' track features with them
   (``reclnet extract``, the code ``reclnet stream`` runs);
3. train a small two-stream GRU RecLNet on them (:func:`reclnet.train.train.train`);
4. export the step model beside the feature networks (ONNX + sidecar);
5. run ``reclnet stream`` on every held-out video with its given tracks
   (decode, flow, features, step, post-processing: pixels in, events out),
   write the events and an overlay video, and score the events with
   ``reclnet eval`` (video-mAP at 0.2 and 0.5, and the segments against the
   ground truth, per track);
6. when ``video/vtest.avi`` of the data folder (``--data``, ``RECLNET_DATA``, or
   ``../shared/data`` in a source checkout) or ``--video PATH`` exists, run
   ``reclnet stream`` on it: HOG people detector + tracker, flow, features,
   the same model, and write the overlay video.

The model knows only the rendered figures' five motions: on a real video it
shows the camera path working, not real action recognition (docs/demo.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.argparsing import ArgumentParser, nonnegative_int, positive_int
from reclnet.paths import ENV_VAR, vtest_video

STEPS = 6


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
    p.add_argument(
        "--video-frames", type=positive_int, default=100, help="frames of the real video"
    )
    p.add_argument("--quick", action="store_true", help="tiny set and model (for tests)")
    p.add_argument("--videos", type=positive_int, default=None, help="rendered videos")
    p.add_argument("--cell", default="gru", choices=["gru", "lstm", "fc"], help="RecLNet cell")
    p.add_argument(
        "--lookahead",
        type=nonnegative_int,
        default=12,
        help="post-processing lookahead of reclnet stream (12: the offline centred median; "
        "0: causal)",
    )
    p.add_argument("--workers", type=positive_int, default=2, help="extraction processes")
    p.add_argument(
        "--feature-scale",
        type=float,
        default=1.0,
        help="frames are resized by this before flow and features, in extract and stream "
        "(default 1: the rendered videos are small already; reclnet stream's own default "
        "is 0.5)",
    )
    p.add_argument(
        "--feature-size",
        type=positive_int,
        default=None,
        help="feature size D per modality (default: the feature network's pooled size, "
        "no random projection)",
    )
    p.add_argument(
        "--int8-features",
        action="store_true",
        help="also export the INT8 feature networks (extract and stream then run them; "
        "about 20 s more export, faster extraction)",
    )
    p.add_argument("--seed", type=nonnegative_int, default=0)
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


def true_segments(tubes: list[Any], mot: Any, key: int) -> list[tuple[int, int, int, int]]:
    """``(track, label, first, last)`` of a video's tubes, on the track that follows each.

    The track of a tube is the MOT track (:class:`~reclnet.runtime.camera.persons.MotTracks`)
    whose boxes overlap the tube's the most (mean IoU over their common frames, above
    0.5); ``track`` is ``key`` plus the MOT id (unique across videos for distinct keys).
    """
    from reclnet.train.data import box_iou_rows

    out = []
    for tube in tubes:
        best, best_id = 0.5, None
        for tid in np.unique(mot.ids).tolist():
            rows = mot.ids == tid
            common, ti, gi = np.intersect1d(mot.frames[rows], tube.frames, return_indices=True)
            if len(common) == 0:
                continue
            overlap = float(np.mean(box_iou_rows(mot.boxes[rows][ti], tube.boxes[gi])))
            if overlap > best:
                best, best_id = overlap, tid
        if best_id is not None:
            out.append((key + best_id, int(tube.label), tube.first_frame, tube.last_frame))
    return out


def _run(label: str, status: int) -> None:
    if status:
        raise SystemExit(f"reclnet demo: {label} failed (status {status})")


def stream_rendered(
    set_dir: Path,
    model_dir: Path,
    out: Path,
    *,
    lookahead: int,
    feature_scale: float = 0.5,
    render_first: bool = True,
) -> dict[str, Any]:
    """Step 5: ``reclnet stream`` on every held-out video of a rendered set, then ``reclnet eval``.

    Reads the set from its files (``manifest.json``, ``tubes.jsonl``, ``tracks/``).
    Returns the figures: ``mAP`` ``{0.2: ..., 0.5: ...}`` (fractions), the
    segment matching ``(tp, detections, truths)``, frames, seconds and videos.
    """
    import contextlib
    import io

    from reclnet.runtime.camera.cli import main as stream_main
    from reclnet.runtime.camera.persons import read_mot
    from reclnet.runtime.offline.cli import main as eval_main
    from reclnet.runtime.offline.tubes import Tube, read_tubes, write_tubes

    manifest = json.loads((set_dir / "manifest.json").read_text())
    classes = list(manifest["classes"])
    all_tubes = read_tubes(set_dir / manifest["tubes"], require_score=False)
    test = [v for v in manifest["videos"] if v["split"] == "test"]
    events_dir = out / "events"
    events_dir.mkdir(parents=True, exist_ok=True)
    detections: list[Tube] = []
    gt: list[Tube] = []
    segments: list[tuple[int, int, int, int, float]] = []
    truth: list[tuple[int, int, int, int]] = []
    frames = 0
    t0 = time.perf_counter()
    for k, video in enumerate(test):
        name = video["name"]
        events = events_dir / f"{name}.jsonl"
        argv = [
            str(set_dir / video["video"]),
            "--model",
            str(model_dir),
            "--tracks",
            str(set_dir / video["tracks"]),
            "--events",
            str(events),
            "--lookahead",
            str(lookahead),
            "--feature-scale",
            str(feature_scale),
            "--quiet",
        ]
        if render_first and k == 0:
            argv += ["--render", str(out / "rendered_overlay.mp4")]
        # Its summary and latency table: for the first video only (the others drown the demo's).
        quiet = contextlib.redirect_stdout(io.StringIO()) if k else contextlib.nullcontext()
        with quiet:
            _run(f"reclnet stream {name}", stream_main(argv))
        frames += int(video["frames"])
        key = 1000 * (k + 1)
        tubes = [t for t in all_tubes if t.video == name]
        gt += tubes
        truth += true_segments(tubes, read_mot(set_dir / video["tracks"]), key)
        for line in events.read_text().splitlines():
            e = json.loads(line)
            if e["kind"] != "end":
                continue
            segments.append(
                (key + e["track_id"], e["label"], e["first_frame"], e["last_frame"], e["score"])
            )
            if e.get("tube"):
                rows = np.asarray(e["tube"], np.float64)
                detections.append(
                    Tube(
                        e["video"],
                        int(e["label"]),
                        rows[:, 0].astype(np.int64),
                        rows[:, 1:].astype(np.float32),
                        float(e["score"]),
                    )
                )
    seconds = time.perf_counter() - t0
    gt_file, det_file, names_file = (
        out / "test_tubes.jsonl",
        out / "detections.jsonl",
        out / "classes.txt",
    )
    write_tubes(gt_file, gt)
    write_tubes(det_file, detections)
    names_file.write_text("\n".join(classes) + "\n")
    result_file = out / "eval.json"
    if detections:
        _run(
            "reclnet eval",
            eval_main(
                ["--gt", str(gt_file), "--detections", str(det_file), "--class-names"]
                + [str(names_file), "--thresholds", "0.2", "0.5", "--json", str(result_file)]
            ),
        )
        result = json.loads(result_file.read_text())
        maps = {t: _map_at(result, t) for t in (0.2, 0.5)}
    else:
        _say("      no detections: video-mAP 0")
        maps = {0.2: 0.0, 0.5: 0.0}
    return {
        "mAP": maps,
        "match": match_events(segments, truth),
        "frames": frames,
        "seconds": seconds,
        "videos": len(test),
    }


def _map_at(result: dict[str, Any], threshold: float) -> float:
    """video-mAP at ``threshold`` (a fraction) from ``reclnet eval --json``'s object."""
    value = result["mAP"]
    if isinstance(value, dict):
        for key, v in value.items():
            if ":" not in key and abs(float(key) - threshold) < 1e-9:
                return 0.0 if v is None else float(v) / 100.0
    raise KeyError(f"no video-mAP at {threshold} in the eval results")


def pixel_pipeline(
    out: Path,
    *,
    videos: int,
    frames: tuple[int, int],
    feature_size: int | None,
    train_options: dict[str, Any],
    lookahead: int,
    workers: int,
    seed: int,
    feature_scale: float = 0.5,
    int8: bool = False,
    say: Any = _say,
) -> dict[str, Any]:
    """Steps 1-5: render, extract, train, export, stream + eval. Returns the figures."""
    from reclnet.export.cli import main as export_main
    from reclnet.export.features import export_features
    from reclnet.train.extract import main as extract_main
    from reclnet.train.rendered_videos import render_set
    from reclnet.train.train import train

    figures: dict[str, Any] = {}
    set_dir, model_dir = out / "rendered", out / "model"
    for stale in (set_dir, model_dir, out / "train", out / "events"):
        if stale.exists():
            shutil.rmtree(stale)
    say(f"[1/{STEPS}] rendering {videos} action videos (320x240) -> {set_dir}")
    t0 = time.perf_counter()
    rendered = render_set(set_dir, videos=videos, frames=frames, seed=seed)
    n_test = sum(v.split == "test" for v in rendered.videos)
    say(
        f"      {time.perf_counter() - t0:.1f} s: {sum(v.num_frames for v in rendered.videos)} "
        f"frames, classes {', '.join(rendered.classes)}; {len(rendered.videos) - n_test} for "
        f"training, {n_test} held out"
    )

    say(
        f"[2/{STEPS}] feature networks (ResNet-18, random weights, "
        f"{feature_size or 'pooled'}-d) and "
        f"reclnet extract on the training videos -> {out / 'train.h5'}"
    )
    t0 = time.perf_counter()
    for modality in ("rgb", "flow"):
        # The INT8 copy (which extract and stream would then run) only on request: its
        # calibration doubles the export time.
        export_features(
            model_dir / f"features_{modality}.onnx",
            stream=modality,
            out_dim=feature_size,
            int8=int8,
        )
    t_export = time.perf_counter() - t0
    train_videos = [
        str(set_dir / "videos" / f"{v.name}.mp4") for v in rendered.videos if v.split == "train"
    ]
    t0 = time.perf_counter()
    data = out / "train.h5"
    argv = [*train_videos, "--annotations", str(set_dir), "--subset"]
    argv += ["--tracks", str(set_dir / "tracks"), "--model", str(model_dir), "--out", str(data)]
    argv += ["--workers", str(workers), "--quiet", "--float16"]
    argv += ["--feature-scale", str(feature_scale)]
    _run("reclnet extract", extract_main(argv))
    figures["extract_seconds"] = time.perf_counter() - t0
    say(f"      export {t_export:.1f} s, extraction {figures['extract_seconds']:.1f} s")

    cell = train_options.get("cell", "gru")
    say(
        f"[3/{STEPS}] training a small two-stream {cell.upper()} RecLNet (each stream, then fusion)"
    )
    t0 = time.perf_counter()
    result = train(data, out / "train", progress=False, **train_options)
    m = result.metrics
    say(
        f"      {time.perf_counter() - t0:.1f} s; frame accuracy {m['frame_accuracy']:.3f} "
        f"(majority class {m['majority_accuracy']:.3f}) on the training tracks; "
        f"checkpoint {result.checkpoint}"
    )
    figures["train_seconds"] = time.perf_counter() - t0

    say(f"[4/{STEPS}] export the step model -> {model_dir}")
    t0 = time.perf_counter()
    _run("reclnet export", export_main([str(result.checkpoint), "--out", str(model_dir)]))
    say(f"      {time.perf_counter() - t0:.1f} s")

    say(
        f"[5/{STEPS}] reclnet stream on the {n_test} held-out videos (given tracks, lookahead "
        f"{lookahead}), then reclnet eval"
    )
    scored = stream_rendered(
        set_dir, model_dir, out, lookahead=lookahead, feature_scale=feature_scale
    )
    tp, n_det, n_true = scored["match"]
    say(
        f"      {scored['frames']} frames in {scored['seconds']:.1f} s; overlay video "
        f"{out / 'rendered_overlay.mp4'}, events in {out / 'events'}"
    )
    say(
        f"      segments vs ground truth (same track and action, temporal IoU >= 0.5): "
        f"{tp} of {n_det} detected segments are right, {tp} of {n_true} true actions found"
    )
    say(
        f"      video-mAP@0.2 {100 * scored['mAP'][0.2]:.1f}, video-mAP@0.5 "
        f"{100 * scored['mAP'][0.5]:.1f} (from pixels, held-out videos)"
    )
    figures.update(scored, model_dir=model_dir)
    return figures


def main(argv: list[str] | None = None) -> int:
    """``reclnet demo``; returns the exit status."""
    args = build_parser().parse_args(argv)
    t_start = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    quick = args.quick
    train_options = dict(
        cell=args.cell,
        projection_size=16 if quick else 64,
        memory_size=8 if quick else 64,
        epochs=1 if quick else 25,
        fusion_epochs=1 if quick else 6,
        lr=3e-3,
        batch_tracks=16,
        seed=args.seed,
        threads=2,
    )
    if not 0 < args.feature_scale <= 4:
        build_parser().error(
            f"argument --feature-scale: must be in (0, 4], got {args.feature_scale}"
        )
    figures = pixel_pipeline(
        out,
        videos=args.videos or (4 if quick else 32),
        frames=(40, 48) if quick else (60, 90),
        feature_size=16 if quick else args.feature_size,
        train_options=train_options,
        lookahead=args.lookahead,
        workers=1 if quick else args.workers,
        seed=args.seed,
        feature_scale=0.5 if quick else args.feature_scale,
        int8=args.int8_features,
    )

    model_dir = figures["model_dir"]
    # An installed package without --data / RECLNET_DATA has no default video: skip that part.
    video = args.video if args.video is not None else vtest_video(args.data)
    use_video = not args.no_video and video is not None and video.is_file()
    if use_video:
        _say(
            f"[6/{STEPS}] camera path on a real video: {video} (HOG people + tracker + flow + "
            f"features)"
        )
        _say(
            "      the model knows only the rendered figures' motions: its actions on a real "
            "video show the pipeline running, not real action recognition"
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
            why = f"{video} not found (docs/demo.md)"
        _say(f"[6/{STEPS}] real-video part skipped: {why}")
    _say(
        f"demo done in {time.perf_counter() - t_start:.0f} s: video-mAP@0.5 "
        f"{100 * figures['mAP'][0.5]:.1f} on {figures['videos']} held-out rendered videos "
        f"(from pixels); outputs in {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
