"""``reclnet stream SOURCE --model DIR``: online action localization on a video, camera or URL.

Wires a frame source, person tracks (a MOTChallenge file, OpenCV's HOG
detector or a user's ONNX detector + the norfair tracker), the flow image, the
exported feature networks and the step model into :class:`OnlineScorer`, and
writes the events (JSON Lines, flushed per event), an overlay video and a
timeline plot. End of stream, Ctrl-C and a lost camera all end cleanly: every
live track is ended so the events of open segments are written, and the
scorer's live state is saved first when ``--snapshot`` is given.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

EPILOG = """\
persons: --tracks FILE (MOTChallenge lines: frame,id,left,top,width,height[,conf,...],
1-based frames) or --detector MODEL.onnx (input [1,3,H,W] RGB in [0,1]; output [K,6] or
[1,K,6] rows x1,y1,x2,y2,score,class in input pixels, class 0 = person); default: OpenCV's
HOG people detector. Exit status: 0 at the end of the stream or on Ctrl-C, 1 when the source
fails (corrupt file, lost camera) after the pending events were written, 2 on bad arguments.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reclnet stream",
        description="Localize actions of the people in a video, camera or stream, online.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="video file, camera index (0, 1, ...) or rtsp:// / http:// URL")
    p.add_argument("--model", type=Path, required=True, help="exported model directory")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--tracks", type=Path, help="person tracks in MOTChallenge format")
    who.add_argument("--detector", type=Path, help="a person detector in ONNX (see below)")
    p.add_argument("--events", type=Path, help="write events here (JSON Lines)")
    p.add_argument("--render", type=Path, help="write the overlay video here (.mp4)")
    p.add_argument("--timeline", type=Path, help="write the score timeline plot here (.png)")
    p.add_argument("--snapshot", type=Path, help="save the scorer's live state here at the end")
    p.add_argument("--save-tracks", type=Path, help="write the person tracks (MOTChallenge)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--int8", action="store_true", help="use step.int8.onnx")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per session")
    p.add_argument(
        "--feature-scale",
        type=float,
        default=0.5,
        help="resize frames by this before flow and features (default 0.5)",
    )
    p.add_argument(
        "--hog-upscale",
        type=float,
        default=1.0,
        help="HOG: upscale frames (2 finds more people, ~7x slower)",
    )
    p.add_argument("--detect-every", type=int, default=1, help="run the detector every N frames")
    p.add_argument("--lookahead", type=int, default=None, help="median lookahead (frames of delay)")
    p.add_argument("--threshold", type=float, default=None, help="segment score threshold")
    p.add_argument("--max-age", type=int, default=10, help="end a track unseen for N frames")
    p.add_argument("--retries", type=int, default=5, help="live source: reconnection attempts")
    p.add_argument("--backoff", type=float, default=0.5, help="live source: first retry wait (s)")
    p.add_argument(
        "--quiet", action="store_true", help="no progress display and no event lines (summary only)"
    )
    return p


@contextmanager
def stop_on_sigint():
    """Turn the first Ctrl-C into a request to stop after the current frame.

    Yields a callable telling whether a stop was requested. A second Ctrl-C
    interrupts at once. Outside the main thread signals cannot be caught and
    nothing is installed.
    """
    state = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield lambda: state["stop"]
        return

    def handler(signum: int, frame: Any) -> None:
        if state["stop"]:
            raise KeyboardInterrupt
        state["stop"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: state["stop"]
    finally:
        signal.signal(signal.SIGINT, previous)


def class_names_of(artifact: Any) -> list[str]:
    """Action names from the step sidecar (``class_names``), else ``action0`` ..."""
    c = artifact.config.num_actions
    names = artifact.metadata.get("class_names") or artifact.metadata.get("classes")
    if isinstance(names, list) and len(names) >= c:
        return [str(n) for n in names[:c]]
    return [f"action{i}" for i in range(c)]


class _Progress:
    """A one-line live display: frames, fps, tracks, events, per-stage ms (rich)."""

    def __init__(self, enabled: bool, total: int | None) -> None:
        self.enabled = enabled
        self._progress = None
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]stream"),
                BarColumn(),
                TextColumn("{task.completed} frames"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                transient=False,
            )
            self._task = self._progress.add_task("stream", total=total, info="")
            self._progress.start()
        self._t0 = time.perf_counter()
        self._n = 0

    def update(self, out: Any, pipeline: Any) -> None:
        self._n += 1
        if self._progress is None:
            return
        if self._n % 5 == 0 or out.events:
            fps = self._n / max(time.perf_counter() - self._t0, 1e-9)
            ms = " ".join(f"{k} {1e3 * v:.0f}" for k, v in out.seconds.items() if v >= 5e-4)
            info = f"{fps:.1f} fps | {len(out.tracks)} tracks | {len(pipeline.events)} events | ms: {ms}"
            self._progress.update(self._task, completed=self._n, info=info)
        for event in out.events:
            self._progress.console.print(_event_line(event))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self._n)
            self._progress.stop()


def _event_line(e: dict[str, Any]) -> str:
    span = f"frames {e['first_frame']}-{e['last_frame']}"
    return f"{e['kind'].upper():5} track {e['track_id']:>3} {e['action']:<16} {span:<18} score {e['score']:.3f}"


def main(argv: list[str] | None = None) -> int:
    """``reclnet stream``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.max_frames is not None and args.max_frames < 1:
        print("reclnet stream: --max-frames must be >= 1", file=sys.stderr)
        return 2
    return run_stream(args)


def run_stream(args: argparse.Namespace) -> int:
    """Run the pipeline for parsed arguments (see :func:`build_parser`)."""
    import numpy as np

    from reclnet.runtime.artifacts import ArtifactError
    from reclnet.runtime.backends import BackendError, load_backend
    from reclnet.runtime.camera.events_io import EventWriter
    from reclnet.runtime.camera.features import FeatureNetwork
    from reclnet.runtime.camera.persons import (
        HogPersonDetector,
        MotFormatError,
        OnnxPersonDetector,
        read_mot,
        write_mot,
    )
    from reclnet.runtime.camera.pipeline import (
        DetectAndTrack,
        MotPersons,
        StageTimer,
        StreamPipeline,
        TimedRunner,
    )
    from reclnet.runtime.camera.render import VideoWriter
    from reclnet.runtime.camera.source import VideoSourceError, open_source
    from reclnet.runtime.camera.timeline import ScoreHistory, plot_timeline
    from reclnet.runtime.camera.tracking import PersonTracker
    from reclnet.runtime.scorer import OnlineScorer

    def fail(message: str, status: int = 2) -> int:
        print(f"reclnet stream: {message}", file=sys.stderr)
        return status

    model_dir: Path = args.model
    step_path = model_dir / ("step.int8.onnx" if args.int8 else "step.onnx")
    if not step_path.is_file():
        return fail(f"{step_path} not found (export the model with `reclnet export`)")
    status = 0
    with ExitStack() as stack:
        try:
            runner = stack.enter_context(
                load_backend("onnxruntime", model=step_path, threads=args.threads)
            )
            modalities = list(runner.config.modalities)
            features = {}
            for modality in modalities:
                path = model_dir / f"features_{modality}.onnx"
                if not path.is_file():
                    return fail(
                        f"{path} not found: export the feature networks with "
                        f"`reclnet export CHECKPOINT --out {model_dir} --features`"
                    )
                net = stack.enter_context(FeatureNetwork(path, threads=args.threads))
                if net.dim is not None and net.dim != runner.config.modalities[modality]:
                    return fail(
                        f"{path.name} gives {net.dim}-d features but the step model's "
                        f"{modality!r} modality takes {runner.config.modalities[modality]}"
                    )
                features[modality] = net
            flow = None
            if "flow" in features:
                from reclnet.runtime.camera.flow import flow_image as flow
        except (ArtifactError, BackendError, ValueError) as exc:
            return fail(str(exc))
        try:
            source = stack.enter_context(
                open_source(args.source, retries=args.retries, backoff=args.backoff)
            )
        except VideoSourceError as exc:
            return fail(str(exc), 1)
        try:
            if args.tracks is not None:
                persons: Any = MotPersons(read_mot(args.tracks))
            else:
                detector: Any = (
                    OnnxPersonDetector(args.detector)
                    if args.detector is not None
                    else HogPersonDetector(upscale=args.hog_upscale)
                )
                persons = DetectAndTrack(
                    detector,
                    PersonTracker(frame_size=(source.width, source.height)),
                    detect_every=args.detect_every,
                )
        except (MotFormatError, FileNotFoundError, ValueError) as exc:
            return fail(str(exc))

        timer = StageTimer()
        scorer = OnlineScorer(
            TimedRunner(runner, timer),
            lookahead=args.lookahead,
            threshold=args.threshold,
            max_age=args.max_age,
            video=Path(str(args.source)).stem or "stream",
        )
        class_names = class_names_of(runner.artifact)
        events = EventWriter(args.events) if args.events else None
        render = (
            VideoWriter(args.render, source.fps, source.width, source.height)
            if args.render
            else None
        )
        history = ScoreHistory() if args.timeline else None
        pipeline = StreamPipeline(
            scorer,
            persons,
            features,
            timer=timer,
            class_names=class_names,
            flow=flow,
            fps=source.fps,
            feature_scale=args.feature_scale,
            events=events,
            render=render,
            history=history,
        )
        track_rows: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        progress = _Progress(not args.quiet and sys.stderr.isatty(), args.max_frames)

        def on_frame(out: Any) -> None:
            if args.save_tracks is not None and len(out.tracks):
                track_rows.append((out.frame, out.tracks.ids, out.tracks.boxes, out.tracks.scores))
            progress.update(out, pipeline)
            if not args.quiet and not progress.enabled:
                for event in out.events:
                    print(_event_line(event), flush=True)

        reason = "end of stream"
        with stop_on_sigint() as stop_requested:
            try:
                n = pipeline.run(
                    source,
                    max_frames=args.max_frames,
                    should_stop=stop_requested,
                    on_frame=on_frame,
                )
                if stop_requested():
                    reason = "interrupted (Ctrl-C)"
                elif args.max_frames is not None and n >= args.max_frames:
                    reason = f"--max-frames {args.max_frames}"
            except VideoSourceError as exc:
                reason = f"source failed: {exc}"
                status = 1
            except KeyboardInterrupt:
                reason = "interrupted (Ctrl-C twice)"
            finally:
                progress.close()
                if args.snapshot is not None:
                    pipeline.snapshot(args.snapshot)
                last = pipeline.close()
                if not args.quiet:
                    for event in last:
                        print(_event_line(event), flush=True)

        if args.save_tracks is not None:
            if track_rows:
                frames = np.concatenate([np.full(len(i), f) for f, i, _, _ in track_rows])
                write_mot(
                    args.save_tracks,
                    frames,
                    np.concatenate([r[1] for r in track_rows]),
                    np.concatenate([r[2] for r in track_rows]),
                    np.concatenate([r[3] for r in track_rows]),
                )
            else:
                args.save_tracks.write_text("")
        if history is not None:
            plot_timeline(
                history,
                args.timeline,
                class_names,
                events=pipeline.events,
                threshold=scorer.postprocess.threshold,
                fps=source.fps,
                title=f"{Path(str(args.source)).name}: action scores per track",
            )
        if status:
            print(f"reclnet stream: {reason}", file=sys.stderr)
        # The summary and the latency table, also with --quiet.
        print(
            f"{reason}: {pipeline.frames} frames, {len(pipeline.track_ids_seen)} tracks, "
            f"{len(pipeline.events)} events"
        )
        print(timer.format())
    return status
