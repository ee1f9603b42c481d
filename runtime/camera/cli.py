"""``reclnet stream SOURCE --model DIR``: online action localization on a video, camera or URL.

Wires a frame source, person tracks (a MOTChallenge file, OpenCV's HOG
detector or a user's ONNX detector + the norfair tracker), the flow image, the
exported feature networks and the step model into :class:`OnlineScorer`, and
writes the events (JSON Lines, flushed per event), an overlay video and a
timeline plot. End of stream, Ctrl-C, SIGTERM (``docker stop``, systemd) and a
lost camera all end cleanly: every live track is ended so the events of open
segments are written first; the scorer's live state (``--snapshot``) is taken
before the tracks end but moved to its path only after the events are safe,
and a failing snapshot or plot is reported (exit 1) after them. Output paths
are checked before anything is opened (:mod:`.output_paths`): none may be an
input, a model artifact or anything but a regular file or a new path.

Test hooks (environment variables, for the test suite; not a user interface):

* ``RECLNET_TEST_SIGNAL_AT_FRAME=K[:SIGNAME]`` raises the signal (SIGINT by
  default) in the process itself right after the K-th frame is processed, so an
  interruption lands at a known frame without any sleeping;
* ``RECLNET_TEST_HOLD_AT_FRAME=K`` after the K-th frame prints
  ``reclnet stream: test hook: holding after frame K`` on stderr and waits for a
  stop request (SIGINT / SIGTERM), so a test can send a real signal from
  outside to a process known to be mid-stream.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from reclnet.argparsing import ArgumentParser
from reclnet.runtime.artifacts import PRECISIONS, model_file
from reclnet.runtime.camera.features import FEATURE_BACKENDS, FEATURE_PRECISIONS

EPILOG = """\
persons: --tracks FILE (MOTChallenge lines: frame,id,left,top,width,height[,conf,...],
1-based frames) or --detector MODEL.onnx (input [1,3,H,W] RGB in [0,1]; output [K,6] or
[1,K,6] rows x1,y1,x2,y2,score,class in input pixels, class 0 = person); default: OpenCV's
HOG people detector, run by default (--hog-regions motion) only where a static camera's
frame moved or held people (--hog-regions frame for a moving camera). Exit status: 0 at the
end of the stream, on Ctrl-C or SIGTERM; 1 when the source fails (corrupt file, lost camera)
or an output cannot be written, after the pending events were written; 2 on bad arguments
(one line on stderr). An output may not be an input, a file of the model directory, or an
existing non-regular file (FIFO, device, folder).
"""


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
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
    p.add_argument(
        "--step-precision",
        default="auto",
        choices=list(PRECISIONS),
        help="step model: step.int8.onnx (int8), step.onnx (fp32), or the INT8 copy when "
        "exported (auto, default: faster at every number of tracks)",
    )
    p.add_argument("--int8", action="store_true", help="same as --step-precision int8")
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
    p.add_argument(
        "--hog-regions",
        default=DEFAULT_HOG_REGIONS,
        choices=list(HOG_REGIONS),
        help="HOG: search the whole frame (frame) or, for a static camera, only where "
        "something moved or someone was found on the last calls, plus one band of a sweep "
        f"over the frame (motion; default {DEFAULT_HOG_REGIONS}); use frame for a moving camera",
    )
    p.add_argument(
        "--detect-every",
        type=int,
        default=DEFAULT_DETECT_EVERY,
        help=f"run the detector every N frames, the tracker predicts between "
        f"(default {DEFAULT_DETECT_EVERY})",
    )
    p.add_argument(
        "--feature-precision",
        default="auto",
        choices=list(FEATURE_PRECISIONS),
        help="feature networks: features_<m>.int8.onnx (int8), features_<m>.onnx (fp32), "
        "the INT8 copy when exported (auto, default), or features_<m>.onnx on OpenVINO in "
        "bf16 (bf16: CPUs with AMX / AVX-512 BF16, the openvino extra)",
    )
    p.add_argument(
        "--feature-backend",
        default="auto",
        choices=list(FEATURE_BACKENDS),
        help="what runs the feature networks: OpenVINO when installed, else ONNX Runtime "
        "(auto, default; OpenVINO ran the INT8 networks 2.6x faster on a Xeon), or one of them",
    )
    schedule = p.add_mutually_exclusive_group()
    schedule.add_argument(
        "--sequential",
        dest="schedule",
        action="store_const",
        const="sequential",
        help="run the stages one after another in one thread, each with every core "
        "(the default for cameras, URLs and --realtime: the lowest capture-to-output latency)",
    )
    schedule.add_argument(
        "--pipelined",
        dest="schedule",
        action="store_const",
        const="pipelined",
        help="decode | detect + track | flow + features | step + outputs concurrently, one "
        "thread per feature network (the default for files: the highest throughput)",
    )
    p.add_argument(
        "--realtime",
        action="store_true",
        help="replay a file at its frame rate and, like a camera, drop the frames "
        "processing cannot keep up with (default for files: every frame is processed)",
    )
    p.add_argument("--lookahead", type=int, default=None, help="median lookahead (frames of delay)")
    p.add_argument("--threshold", type=float, default=None, help="segment score threshold")
    p.add_argument("--max-age", type=int, default=10, help="end a track unseen for N frames")
    p.add_argument("--retries", type=int, default=5, help="live source: reconnection attempts")
    p.add_argument("--backoff", type=float, default=0.5, help="live source: first retry wait (s)")
    p.add_argument(
        "--quiet", action="store_true", help="no progress display and no event lines (summary only)"
    )
    return p


STOP_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
#: HOG costs ~95 ms a frame on 2 cores: on every 5th frame (its own pipeline stage,
#: overlapping the features) it leaves the frame budget of a 25 fps camera to the rest,
#: and the tracker's predictions keep the people found per frame (bench_stream reports both).
DEFAULT_DETECT_EVERY = 5
#: Where HOG searches: ``frame`` (:class:`HogPersonDetector`) or ``motion``
#: (:class:`MotionGatedHogDetector`). Motion is the default: on vtest.avi, detector on
#: every 5th frame, it runs HOG on ~half of the frame's area (75 vs 218 ms a call) and
#: keeps 98% of the people per call full-frame HOG finds (docs/camera.md). A moving
#: camera falls back to the full frame on every call by itself, paying only the
#: background model.
HOG_REGIONS = ("frame", "motion")
DEFAULT_HOG_REGIONS = "motion"


@contextmanager
def stop_on_signals():
    """Turn the first SIGINT (Ctrl-C) or SIGTERM into a request to stop after the current frame.

    Yields a callable returning the name of the signal that asked to stop
    (``"Ctrl-C"``, ``"SIGTERM"``) or None. A second signal interrupts at once
    (:class:`KeyboardInterrupt`). Outside the main thread signals cannot be
    caught and nothing is installed.
    """
    state: dict[str, str | None] = {"stop": None}
    if threading.current_thread() is not threading.main_thread():
        yield lambda: state["stop"]
        return

    def handler(signum: int, frame: Any) -> None:
        if state["stop"] is not None:
            raise KeyboardInterrupt
        state["stop"] = STOP_SIGNALS.get(signal.Signals(signum), signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield lambda: state["stop"]
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _test_hooks() -> tuple[tuple[int, signal.Signals] | None, int | None]:
    """The test hooks of the module docstring: ``(signal at (frame, sig), hold at frame)``."""
    signal_at = hold_at = None
    spec = os.environ.get("RECLNET_TEST_SIGNAL_AT_FRAME")
    if spec:
        frame, _, name = spec.partition(":")
        signal_at = (int(frame), signal.Signals[name or "SIGINT"])
    spec = os.environ.get("RECLNET_TEST_HOLD_AT_FRAME")
    if spec:
        hold_at = int(spec)
    return signal_at, hold_at


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
        #: The live drop buffer (:class:`LatestFrames`), whose drops the line shows.
        self.latest: Any = None

    def update(self, out: Any, pipeline: Any) -> None:
        self._n += 1
        if self._progress is None:
            return
        if self._n % 5 == 0 or out.events:
            fps = self._n / max(time.perf_counter() - self._t0, 1e-9)
            ms = " ".join(f"{k} {1e3 * v:.0f}" for k, v in out.seconds.items() if v >= 5e-4)
            info = f"{fps:.1f} fps | {len(out.tracks)} tracks | {len(pipeline.events)} events | ms: {ms}"
            if self.latest is not None:
                info += f" | dropped {self.latest.dropped}"
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


def _check_arguments(args: argparse.Namespace) -> str | None:
    """The first out-of-range option as a one-line message, or None."""
    checks = [
        ("--max-frames", args.max_frames, lambda v: v >= 1, ">= 1"),
        ("--threads", args.threads, lambda v: v >= 1, ">= 1"),
        ("--feature-scale", args.feature_scale, lambda v: 0 < v <= 4, "in (0, 4]"),
        ("--hog-upscale", args.hog_upscale, lambda v: 0 < v <= 8, "in (0, 8]"),
        ("--detect-every", args.detect_every, lambda v: v >= 1, ">= 1"),
        ("--lookahead", args.lookahead, lambda v: v >= 0, ">= 0"),
        ("--threshold", args.threshold, lambda v: 0 <= v <= 1, "in [0, 1]"),
        ("--max-age", args.max_age, lambda v: v >= 0, ">= 0"),
        ("--retries", args.retries, lambda v: v >= 0, ">= 0"),
        ("--backoff", args.backoff, lambda v: 0 <= v <= 3600, "in [0, 3600] seconds"),
    ]
    for option, value, ok, what in checks:
        # float options: NaN fails every comparison, so it is refused too.
        if value is not None and not ok(value):
            return f"{option} must be {what}, got {value}"
    return None


def main(argv: list[str] | None = None) -> int:
    """``reclnet stream``; returns the exit status."""
    args = build_parser().parse_args(argv)
    problem = _check_arguments(args)
    if problem is not None:
        print(f"reclnet stream: error: {problem}", file=sys.stderr)
        return 2
    return run_stream(args)


def _file_source(spec: str) -> Path | None:
    """The path of a file source (None for a camera index or a URL)."""
    from reclnet.runtime.camera.source import NETWORK_SCHEMES, parse_source

    parsed = parse_source(spec)
    if isinstance(parsed, int) or parsed.startswith(NETWORK_SCHEMES):
        return None
    return Path(parsed)


def run_stream(args: argparse.Namespace) -> int:
    """Run the pipeline for parsed arguments (see :func:`build_parser`)."""
    import numpy as np

    from reclnet.runtime.artifacts import ArtifactError
    from reclnet.runtime.backends import BackendError, load_backend
    from reclnet.runtime.camera.events_io import EventWriter
    from reclnet.runtime.camera.features import (
        feature_network_path,
        flow_for,
        open_feature_network,
    )
    from reclnet.runtime.camera.live import LatestFrames, PacedFrames
    from reclnet.runtime.camera.output_paths import OutputPathError, check_outputs, place_file
    from reclnet.runtime.camera.persons import (
        MotFormatError,
        MotionGatedHogDetector,
        OnnxPersonDetector,
        hog_detector,
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
    try:
        # Before anything is opened: no output may destroy an input or a model artifact.
        check_outputs(
            {
                "the source video": _file_source(args.source),
                "the --tracks input": args.tracks,
                "the --detector model": args.detector,
            },
            {
                "--events": args.events,
                "--render": args.render,
                "--timeline": args.timeline,
                "--snapshot": args.snapshot,
                "--save-tracks": args.save_tracks,
            },
            protected_dirs=[model_dir],
        )
    except OutputPathError as exc:
        return fail(f"error: {exc}")
    try:
        signal_at, hold_at = _test_hooks()
    except (ValueError, KeyError) as exc:
        return fail(f"error: bad RECLNET_TEST_* hook variable: {exc}")
    step_path = model_file(model_dir, "step", "int8" if args.int8 else args.step_precision)
    if not step_path.is_file():
        return fail(f"{step_path} not found (export the model with `reclnet export`)")
    # Files: pipelined, for throughput. Live sources (and --realtime) keep only the newest
    # frame, so what matters is how old it is when its output comes: one frame at a time
    # with every core gives a third of the pipelined latency at the same frame rate
    # (bench_stream: p50 43 vs 135 ms, p99 115 vs 218 ms, 21 fps processed both).
    live_input = _file_source(args.source) is None or args.realtime
    pipelined = args.schedule == "pipelined" if args.schedule is not None else not live_input
    status = 0
    errors: list[str] = []  # output failures, reported after the events are safe
    with ExitStack() as stack:
        try:
            runner = stack.enter_context(
                load_backend("onnxruntime", model=step_path, threads=args.threads)
            )
            modalities = list(runner.config.modalities)
            features = {}
            # Pipelined, the stages share the cores: one intra-op thread per feature
            # session unless asked otherwise (more oversubscribes them; measured in bench_stream).
            feature_threads = (
                args.threads if args.threads is not None else (1 if pipelined else None)
            )
            for modality in modalities:
                path = feature_network_path(model_dir, modality, args.feature_precision)
                if not path.is_file():
                    return fail(
                        f"{path} not found: export the feature networks with "
                        f"`reclnet export CHECKPOINT --out {model_dir} --features`"
                    )
                try:
                    net = stack.enter_context(
                        open_feature_network(
                            model_dir,
                            modality,
                            args.feature_precision,
                            backend=args.feature_backend,
                            threads=feature_threads,
                        )
                    )
                except ImportError as exc:
                    asked = (
                        "--feature-precision bf16"
                        if args.feature_precision == "bf16"
                        else "--feature-backend openvino"
                    )
                    return fail(
                        f"{asked} runs the feature networks on OpenVINO, "
                        f"which is not installed ({exc}): pip install 'reclnet[openvino]'"
                    )
                except ValueError as exc:
                    return fail(str(exc))
                if net.dim is not None and net.dim != runner.config.modalities[modality]:
                    return fail(
                        f"{path.name} gives {net.dim}-d features but the step model's "
                        f"{modality!r} modality takes {runner.config.modalities[modality]}"
                    )
                features[modality] = net
            flow = None
            if "flow" in features:
                flow = flow_for(features["flow"])
        except (ArtifactError, BackendError, ValueError) as exc:
            return fail(str(exc))
        try:
            source = stack.enter_context(
                open_source(args.source, retries=args.retries, backoff=args.backoff)
            )
        except VideoSourceError as exc:
            return fail(str(exc), 1)
        gated: MotionGatedHogDetector | None = None
        try:
            if args.tracks is not None:
                tracks_file = read_mot(args.tracks, frame_size=(source.width, source.height))
                persons: Any = MotPersons(tracks_file)
            else:
                detector: Any = (
                    OnnxPersonDetector(args.detector)
                    if args.detector is not None
                    else hog_detector(args.hog_regions, upscale=args.hog_upscale)
                )
                if isinstance(detector, MotionGatedHogDetector):
                    gated = detector
                persons = DetectAndTrack(
                    detector,
                    PersonTracker(frame_size=(source.width, source.height)),
                    detect_every=args.detect_every,
                )
        except (MotFormatError, FileNotFoundError, ValueError) as exc:
            return fail(str(exc))

        timer = StageTimer()
        try:
            scorer = OnlineScorer(
                TimedRunner(runner, timer),
                lookahead=args.lookahead,
                threshold=args.threshold,
                max_age=args.max_age,
                video=Path(str(args.source)).stem or "stream",
            )
        except ValueError as exc:
            return fail(f"error: {exc}")
        class_names = class_names_of(runner.artifact)
        try:
            render = (
                stack.enter_context(
                    VideoWriter(args.render, source.fps, source.width, source.height)
                )
                if args.render
                else None
            )
            events = stack.enter_context(EventWriter(args.events)) if args.events else None
        except (OSError, ValueError) as exc:
            return fail(f"error: {exc}")
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
        live = bool(getattr(source, "live", False))
        frames: Any = source
        latest = None
        if live or args.realtime:
            # Never fall behind: keep the newest frame, drop (and count) the rest.
            frames = PacedFrames(source, source.fps) if not live else source
            latest = stack.enter_context(LatestFrames(frames, capacity=1, start=False))
            frames = latest
        track_rows: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        progress = _Progress(not args.quiet and sys.stderr.isatty(), args.max_frames)
        progress.latest = latest

        with stop_on_signals() as stop_requested:

            def on_frame(out: Any) -> None:
                if args.save_tracks is not None and len(out.tracks):
                    track_rows.append(
                        (out.frame, out.tracks.ids, out.tracks.boxes, out.tracks.scores)
                    )
                progress.update(out, pipeline)
                if not args.quiet and not progress.enabled:
                    for event in out.events:
                        print(_event_line(event), flush=True)
                if signal_at is not None and pipeline.frames == signal_at[0]:
                    # raise_signal: delivered to this thread before it returns.
                    signal.raise_signal(signal_at[1])
                if hold_at is not None and pipeline.frames == hold_at:
                    print(
                        f"reclnet stream: test hook: holding after frame {hold_at}",
                        file=sys.stderr,
                        flush=True,
                    )
                    # A hang guard only: the test sends its signal at once.
                    deadline = time.monotonic() + 600
                    while stop_requested() is None and time.monotonic() < deadline:
                        time.sleep(0.01)

            reason = "end of stream"
            pending_snapshot: Path | None = None
            try:
                n = pipeline.run(
                    frames,
                    max_frames=args.max_frames,
                    should_stop=lambda: stop_requested() is not None,
                    on_frame=on_frame,
                    pipelined=pipelined,
                    # Live: short queues, so frames wait in the drop buffer, not in the pipeline.
                    queue_size=1 if latest is not None else max(2, args.detect_every),
                )
                if stop_requested() is not None:
                    reason = f"interrupted ({stop_requested()})"
                elif args.max_frames is not None and n >= args.max_frames:
                    reason = f"--max-frames {args.max_frames}"
            except VideoSourceError as exc:
                reason = f"source failed: {exc}"
                status = 1
            except OSError as exc:
                reason = f"writing the outputs failed: {exc}"
                status = 1
            except KeyboardInterrupt:
                reason = f"interrupted ({stop_requested() or 'Ctrl-C'} twice)"
            finally:
                progress.close()
                if args.snapshot is not None:
                    # The live state before the tracks end, written aside: it is
                    # placed only once the events of the ending tracks are safe.
                    aside = args.snapshot.parent / f".{args.snapshot.name}.pending"
                    try:
                        pending_snapshot = pipeline.snapshot(aside)
                    except (OSError, ValueError, TypeError) as exc:
                        aside.unlink(missing_ok=True)
                        errors.append(f"cannot write the snapshot {args.snapshot}: {exc}")
                try:
                    last = pipeline.close()
                except OSError as exc:
                    last = []
                    errors.append(f"writing the last events failed: {exc}")
                if not args.quiet:
                    for event in last:
                        print(_event_line(event), flush=True)
        if pending_snapshot is not None:
            try:
                place_file(pending_snapshot, args.snapshot)
            except OSError as exc:
                pending_snapshot.unlink(missing_ok=True)
                errors.append(f"cannot write the snapshot {args.snapshot}: {exc}")

        if args.save_tracks is not None:
            try:
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
            except OSError as exc:
                errors.append(f"cannot write the tracks {args.save_tracks}: {exc}")
        if history is not None:
            try:
                plot_timeline(
                    history,
                    args.timeline,
                    class_names,
                    events=pipeline.events,
                    threshold=scorer.postprocess.threshold,
                    fps=source.fps,
                    title=f"{Path(str(args.source)).name}: action scores per track",
                )
            except (OSError, ValueError) as exc:
                errors.append(f"cannot write the timeline {args.timeline}: {exc}")
        decode_errors = getattr(source, "decode_errors", 0)
        if decode_errors and status == 0:
            print(
                f"reclnet stream: warning: {decode_errors} of {source.packets} packets of "
                f"{args.source} had decoding errors (corrupt video data); the frames "
                f"near them may be damaged",
                file=sys.stderr,
            )
        if status:
            print(f"reclnet stream: {reason}", file=sys.stderr)
        for message in errors:
            print(f"reclnet stream: error: {message}", file=sys.stderr)
        if errors:
            status = 1
        # The summary and the latency table, also with --quiet.
        warning = f", {decode_errors} packets with decoding errors" if decode_errors else ""
        print(
            f"{reason}: {pipeline.frames} frames, {len(pipeline.track_ids_seen)} tracks, "
            f"{len(pipeline.events)} events{warning}"
        )
        if latest is not None:
            lat = np.asarray(pipeline.latencies, np.float64)
            latency = (
                f", capture-to-output latency p50 {1e3 * np.percentile(lat, 50):.0f} ms, "
                f"p99 {1e3 * np.percentile(lat, 99):.0f} ms (events: + the lookahead)"
                if len(lat)
                else ""
            )
            print(
                f"live: {latest.captured} frames captured, {latest.dropped} dropped "
                f"(processing behind the source){latency}"
            )
        if gated is not None and gated.calls:
            print(
                f"hog regions: motion, HOG on {100 * gated.area_fraction:.0f}% of the frame "
                f"area per call ({gated.full_calls} full-frame calls, {gated.crop_calls} on "
                f"regions)"
            )
        print(
            f"models: {step_path.name}, "
            + ", ".join(f"{n.path.name} ({n.backend} {n.precision})" for n in features.values())
        )
        why = "asked" if args.schedule is not None else ("live" if live_input else "file")
        print(f"schedule: {'pipelined' if pipelined else 'sequential'} ({why})")
        print(timer.format(wall_seconds=pipeline.wall_seconds))
        if latest is not None:
            # A live source's next frame is awaited inside the decode stage.
            print("live: decode includes waiting for the source's next frame")
    return status
