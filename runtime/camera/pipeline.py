"""The camera pipeline: decode -> persons -> tracks -> flow -> features -> online scorer -> outputs.

:class:`StreamPipeline` runs frames through the stages, timing each
(:class:`StageTimer`), and hands the scorer's events to the events file, the
overlay video and the timeline history as they happen. :meth:`StreamPipeline.process`
runs one frame through every stage in the caller's thread; :meth:`StreamPipeline.run`
with ``pipelined=True`` (what ``reclnet stream`` does) runs four groups of
stages concurrently on consecutive frames, joined by bounded queues: decode |
detect + track | flow + features | step + post-processing + output (the
last in the caller's thread); within flow + features, the image (rgb)
network runs on a fifth thread while the flow image is computed and the flow
network runs. Each group keeps its own state and sees every frame in order, so the pipelined run computes exactly what the sequential
one does; only the throughput changes (that of the slowest group, not the
sum: numpy, OpenCV and ONNX Runtime release the GIL while they work). It is a context
manager: leaving it (end of stream, Ctrl-C, a lost camera, an error) ends every
live track, so the events of open segments are flushed, and closes the
outputs. The feature networks, the optical flow and the step backend are
passed in, so the same pipeline runs the exported ONNX models or anything with
the same call signatures.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.runtime.backends import StepRunner
from reclnet.runtime.camera.events_io import EventWriter
from reclnet.runtime.camera.features import frame_features
from reclnet.runtime.camera.persons import Detections, MotTracks
from reclnet.runtime.camera.render import VideoWriter, draw_overlay
from reclnet.runtime.camera.source import Frame
from reclnet.runtime.camera.timeline import ScoreHistory
from reclnet.runtime.camera.tracking import PersonTracker, Tracks

STAGES = ("decode", "detect", "track", "flow", "features", "step", "postproc", "output")

# How often a blocked stage looks whether the run has stopped, and how long the
# caller waits for a stage to finish its frame when the run ends.
_POLL_S = 0.05
_JOIN_S = 30.0


class _EndOfStream:
    """The marker a stage passes on when its input has ended."""


_END = _EndOfStream()


@dataclass
class _Failure:
    """An exception of a worker stage, carried to the caller's thread."""

    exc: BaseException


# (image uint8 [H, W, 3], boxes float32 [K, 4] in that image's pixels) -> float32 [K, D]
FeatureFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
# (previous BGR frame, current BGR frame) -> flow image uint8 [H, W, 3]
FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


class FrameClock:
    """The stage seconds of one frame, for stages that run in another thread.

    A :class:`StageTimer` is a FrameClock that also keeps every finished frame. A
    worker thread times into its own FrameClock and never touches the shared timer:
    the thread that finishes the frame adds these seconds to it (:meth:`StageTimer.merge`).
    """

    def __init__(self, stages: Iterable[str] = STAGES) -> None:
        self.seconds = dict.fromkeys(stages, 0.0)

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0)

    def add(self, stage: str, seconds: float) -> None:
        """Add ``seconds`` to ``stage`` of this frame."""
        if stage not in self.seconds:
            raise KeyError(f"unknown stage {stage!r}; stages: {list(self.seconds)}")
        self.seconds[stage] += seconds


class StageTimer(FrameClock):
    """Per-stage wall-clock time of every frame.

    Times are accumulated per frame (a stage may run several times in a frame)
    and kept for the last ``keep`` frames, for p50 / p99 and shares.
    """

    def __init__(self, stages: Iterable[str] = STAGES, keep: int = 100_000) -> None:
        self.stages = list(stages)
        self.keep = int(keep)
        super().__init__(self.stages)  # self.seconds: the current frame
        self._frames: list[np.ndarray] = []

    def merge(self, clock: FrameClock) -> None:
        """Add a :class:`FrameClock`'s seconds to the current frame."""
        for stage, seconds in clock.seconds.items():
            if seconds:
                self.add(stage, seconds)

    def end_frame(self) -> dict[str, float]:
        """Close the current frame; returns its per-stage seconds."""
        row = dict(self.seconds)
        self._frames.append(np.array([row[s] for s in self.stages]))
        if len(self._frames) > self.keep:
            del self._frames[: len(self._frames) - self.keep]
        self.seconds = dict.fromkeys(self.stages, 0.0)
        return row

    @property
    def frames(self) -> int:
        return len(self._frames)

    def table(self) -> np.ndarray:
        """float64 ``[frames, stages]`` seconds."""
        if not self._frames:
            return np.zeros((0, len(self.stages)))
        return np.stack(self._frames)

    def summary(self) -> list[dict[str, Any]]:
        """Per stage: mean / p50 / p99 milliseconds per frame and share of the total time.

        A last row ``"total"`` sums the stages per frame (its ``fps`` is
        frames / total time).
        """
        table = self.table()
        if not len(table):
            return []
        rows = []
        grand = float(table.sum())
        for j, stage in enumerate([*self.stages, "total"]):
            col = table[:, j] if j < len(self.stages) else table.sum(axis=1)
            rows.append(
                {
                    "stage": stage,
                    "mean_ms": float(col.mean() * 1e3),
                    "p50_ms": float(np.percentile(col, 50) * 1e3),
                    "p99_ms": float(np.percentile(col, 99) * 1e3),
                    "share": float(col.sum() / grand) if grand > 0 else 0.0,
                }
            )
        rows[-1]["fps"] = float(len(table) / grand) if grand > 0 else 0.0
        return rows

    def format(self, wall_seconds: float | None = None) -> str:
        """The summary as a text table.

        With ``wall_seconds`` (the run's wall-clock time) the last line gives
        the frames per second actually reached, which for a pipelined run is
        above frames / (sum of the stages).
        """
        lines = [f"{'stage':<10} {'mean ms':>9} {'p50 ms':>9} {'p99 ms':>9} {'share':>7}"]
        for r in self.summary():
            lines.append(
                f"{r['stage']:<10} {r['mean_ms']:>9.2f} {r['p50_ms']:>9.2f} "
                f"{r['p99_ms']:>9.2f} {100 * r['share']:>6.1f}%"
            )
        if self.frames and wall_seconds:
            lines.append(
                f"{self.frames} frames, {self.frames / wall_seconds:.2f} fps end to end "
                f"({self.summary()[-1]['fps']:.2f} fps if the stages ran one after another)"
            )
        elif self.frames:
            lines.append(f"{self.frames} frames, {self.summary()[-1]['fps']:.2f} fps end to end")
        return "\n".join(lines)


class TimedRunner(StepRunner):
    """A step backend that reports each ``step`` call's time to a :class:`StageTimer`.

    A :class:`StepRunner` itself (what :class:`OnlineScorer` requires) whose
    :meth:`step` times the wrapped runner's :meth:`StepRunner.step`, which
    checks the inputs and outputs; everything else is delegated, so the scorer
    sees the wrapped runner unchanged and its remaining time is its
    post-processing. Closing it leaves the wrapped runner open (its owner closes it).
    """

    def __init__(self, runner: StepRunner, timer: StageTimer) -> None:
        self._runner = runner
        self._timer = timer
        self.step_seconds = 0.0
        # The contract's attributes, copied: StepRunner declares them on the class.
        self.name = runner.name
        self.config = runner.config
        self.postprocess = runner.postprocess
        self.device_resident = runner.device_resident
        self.max_tracks = runner.max_tracks
        self.max_tracks_origin = runner.max_tracks_origin
        self.max_tracks_hint = runner.max_tracks_hint

    def step(self, features: Mapping[str, np.ndarray], state: Any) -> tuple[np.ndarray, Any]:
        t0 = time.perf_counter()
        try:
            return self._runner.step(features, state)
        finally:
            dt = time.perf_counter() - t0
            self.step_seconds += dt
            self._timer.add("step", dt)

    def _step(self, features: dict[str, np.ndarray], state: Any) -> tuple[np.ndarray, Any]:
        return self._runner.step(features, state)  # pragma: no cover - step() is overridden

    def fetch_state(self, state: Any) -> np.ndarray:
        return self._runner.fetch_state(state)

    def __getattr__(self, name: str) -> Any:
        # Only for what the instance lacks (artifact, ...); __init__ sets _runner first.
        if name == "_runner":
            raise AttributeError(name)
        return getattr(self._runner, name)


class MotPersons:
    """Persons from a MOTChallenge file: the file's tracks at each frame (no detection)."""

    def __init__(self, tracks: MotTracks) -> None:
        self.tracks = tracks

    def __call__(self, frame: Frame, timer: StageTimer | FrameClock) -> Tracks:
        with timer("track"):
            ids, boxes, scores = self.tracks.at(frame.index)
            return Tracks(ids.copy(), boxes.copy(), scores.copy())


class DetectAndTrack:
    """Persons from a detector (every ``detect_every`` frames) linked by a tracker.

    Parameters
    ----------
    detector : callable
        ``image -> Detections`` (HOG, ONNX, ...).
    tracker : PersonTracker
        Links detections into tracks.
    detect_every : int
        Run the detector on every n-th frame only; in between the tracker
        predicts the boxes (a speed / accuracy trade-off for slow detectors).
    """

    def __init__(
        self,
        detector: Callable[[np.ndarray], Detections],
        tracker: PersonTracker,
        detect_every: int = 1,
    ) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        self.detector = detector
        self.tracker = tracker
        self.detect_every = int(detect_every)
        # Frames seen, not frame indices: a live source that drops frames leaves gaps
        # in the indices, and the schedule must still detect every n-th processed frame.
        self._seen = 0

    def __call__(self, frame: Frame, timer: StageTimer | FrameClock) -> Tracks:
        seen, self._seen = self._seen, self._seen + 1
        with timer("detect"):
            if seen % self.detect_every == 0:
                dets = self.detector(frame.image)
            else:
                dets = None
        with timer("track"):
            if dets is None:
                return self.tracker.predict()
            # period: the hits of a match count for the frames the detector skipped.
            return self.tracker.update(dets, period=self.detect_every)


def bound_tracks(tracks: Tracks, frame_size: tuple[int, int], min_box: float = 4.0) -> Tracks:
    """The tracks a frame scores: boxes clipped to the frame, too small or non-finite ones dropped.

    Boxes are bounded by the frame before anything crops with them (a
    tracker's prediction or a tracks file may run far outside, RoIAlign must
    not). :class:`StreamPipeline` and ``reclnet extract`` both use it.

    Parameters
    ----------
    tracks : Tracks
        ``ids`` int64 ``[N]``, ``boxes`` float32 ``[N, 4]`` x1 y1 x2 y2, ``scores`` ``[N]``.
    frame_size : (int, int)
        ``(W, H)`` of the frame.
    min_box : float
        Clipped boxes narrower or lower than this (pixels) are dropped.

    Returns
    -------
    Tracks
        The kept rows, in order; boxes float32 ``[M, 4]`` within ``[0, W] x [0, H]``.
    """
    w, h = frame_size
    finite = np.isfinite(tracks.boxes).all(axis=1)
    boxes = np.clip(np.nan_to_num(tracks.boxes), 0, np.array([w, h, w, h], np.float32))
    keep = finite & (boxes[:, 2] - boxes[:, 0] >= min_box)
    keep &= boxes[:, 3] - boxes[:, 1] >= min_box
    return Tracks(tracks.ids[keep], boxes[keep].astype(np.float32), tracks.scores[keep])


def _event_dict(event: Any, frame: int, fps: float, class_names: list[str]) -> dict[str, Any]:
    """The JSON object of one event (one line of the events file)."""
    c = len(class_names)
    out: dict[str, Any] = {
        "kind": event.kind,
        "frame": int(frame),
        "time": round(frame / fps, 4) if fps > 0 else None,
        "track_id": int(event.track_id),
        "label": int(event.label),
        "action": class_names[event.label] if 0 <= event.label < c else str(event.label),
        "first_frame": int(event.first_frame),
        "last_frame": int(event.last_frame),
        "num_samples": int(event.num_samples),
        "score": float(event.score),
    }
    tube = getattr(event, "tube", None)
    if tube is not None:
        out["video"] = tube.video
        out["tube"] = [
            [int(f), *(round(float(v), 2) for v in box)]
            for f, box in zip(tube.frames, tube.boxes, strict=True)
        ]
    return out


@dataclass
class FrameOutput:
    """What one :meth:`StreamPipeline.process` call produced."""

    frame: int
    tracks: Tracks
    probs: np.ndarray
    events: list[dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=dict)


class StreamPipeline:
    """One stream through persons, flow, features and the online scorer.

    Parameters
    ----------
    scorer : OnlineScorer
        Built on a :class:`TimedRunner` around the step backend (so step time is
        reported apart from post-processing); see :meth:`build_scorer`.
    persons : callable
        ``(Frame, StageTimer) -> Tracks`` (:class:`MotPersons`, :class:`DetectAndTrack`).
    features : dict[str, FeatureFn]
        One feature network per stream of the model, in the model's stream
        order. The ``"flow"`` stream gets flow images, every other stream the
        frame (BGR).
    flow : FlowFn, optional
        Needed when ``features`` has a ``"flow"`` stream.
    class_names : list of str
        The C action names.
    timer : StageTimer
        The timer the scorer's runner reports to.
    fps : float
        The stream's frame rate (event times).
    feature_scale : float
        Frames (and boxes) are resized by this factor before flow and features.
    events : EventWriter, optional
        Where every event is written, as it happens.
    render : VideoWriter, optional
        The overlay video.
    history : ScoreHistory, optional
        Records every track's probabilities for the timeline.
    min_box : float
        Boxes are clipped to the frame; tracks whose clipped box is smaller
        than this (pixels, either side) or not finite are not scored this
        frame.
    clock : callable
        The clock of :attr:`Frame.captured` (``time.monotonic``, what
        :class:`~reclnet.runtime.camera.source.LatestFrames` stamps with):
        each frame that has a capture time adds ``clock() - captured`` after
        its outputs to :attr:`latencies`.
    """

    def __init__(
        self,
        scorer: Any,
        persons: Callable[[Frame, StageTimer], Tracks],
        features: Mapping[str, FeatureFn],
        *,
        timer: StageTimer,
        class_names: list[str],
        flow: FlowFn | None = None,
        fps: float = 25.0,
        feature_scale: float = 1.0,
        events: EventWriter | None = None,
        render: VideoWriter | None = None,
        history: ScoreHistory | None = None,
        min_box: float = 4.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        modalities = list(scorer.config.modalities)
        if list(features) != modalities:
            raise ValueError(
                f"features must give the model's modalities {modalities}, got {list(features)}"
            )
        if "flow" in features and flow is None:
            raise ValueError("the model has a flow stream: pass flow=")
        if not 0 < feature_scale <= 4:
            raise ValueError(f"feature_scale must be in (0, 4], got {feature_scale}")
        self.scorer = scorer
        self.persons = persons
        self.features = dict(features)
        self.flow = flow
        self.timer = timer
        self.class_names = list(class_names)
        self.fps = float(fps)
        self.feature_scale = float(feature_scale)
        self.events_out = events
        self.render = render
        self.history = history
        self.min_box = float(min_box)
        self.events: list[dict[str, Any]] = []
        self.open_segments: dict[int, dict[tuple[int, int], float]] = {}
        self.track_ids_seen: set[int] = set()
        self.frames = 0
        self.last_frame: int | None = None
        self._prev_small: np.ndarray | None = None
        self._closed = False
        self._t_last = time.perf_counter()
        self.fps_measured = 0.0
        self.clock = clock
        #: Capture-to-output seconds of the last frames that carry a capture time (live).
        self.latencies: deque[float] = deque(maxlen=100_000)
        #: Wall-clock seconds spent in :meth:`run`.
        self.wall_seconds = 0.0

    # ------------------------------------------------------------ events
    def _emit(self, events: Iterable[Any], frame: int) -> list[dict[str, Any]]:
        out = []
        for event in events:
            d = _event_dict(event, frame, self.fps, self.class_names)
            key = (d["label"], d["first_frame"])
            if d["kind"] == "start":
                self.open_segments.setdefault(d["track_id"], {})[key] = d["score"]
            else:
                self.open_segments.get(d["track_id"], {}).pop(key, None)
            if self.events_out is not None:
                self.events_out.write(d)
            out.append(d)
        self.events += out
        return out

    # ------------------------------------------------------------ stages
    def _persons_stage(self, frame: Frame, timer: StageTimer | FrameClock) -> Tracks:
        """Detect + track (or read the tracks file); boxes bounded by the frame."""
        tracks = self.persons(frame, timer)
        h, w = frame.image.shape[:2]
        return bound_tracks(tracks, (w, h), self.min_box)

    def _features_stage(
        self,
        frame: Frame,
        tracks: Tracks,
        timer: StageTimer | FrameClock,
        executor: Executor | None = None,
    ) -> dict[str, np.ndarray]:
        """Flow (from the previous frame) and every modality's features of the tracks.

        With ``executor``, the image networks run on it while this thread
        computes the flow image and runs the flow network (same features).
        """
        feats, self._prev_small = frame_features(
            frame.image,
            tracks.boxes,
            self.features,
            sizes=self.scorer.config.modalities,
            previous=self._prev_small,
            flow=self.flow,
            scale=self.feature_scale,
            timer=timer,
            executor=executor,
        )
        return feats

    def _score_stage(
        self, frame: Frame, tracks: Tracks, feats: dict[str, np.ndarray]
    ) -> FrameOutput:
        """Step + post-processing (the scorer) and the outputs; times go to ``self.timer``."""
        timer = self.timer
        self.track_ids_seen.update(tracks.ids.tolist())
        t0 = time.perf_counter()
        step0 = self.scorer.runner.step_seconds
        result = self.scorer.update(frame.index, tracks.ids, feats, tracks.boxes)
        post = time.perf_counter() - t0 - (self.scorer.runner.step_seconds - step0)
        timer.add("postproc", max(0.0, post))

        with timer("output"):
            events = self._emit(result.events, frame.index)
            if self.history is not None and len(tracks):
                self.history.add(frame.index, result.track_ids, result.probs)
            if self.render is not None:
                now = time.perf_counter()
                self.fps_measured = 1.0 / max(now - self._t_last, 1e-6)
                opened = {
                    tid: [(lab, first, s) for (lab, first), s in segs.items()]
                    for tid, segs in self.open_segments.items()
                    if segs
                }
                self.render.write(
                    draw_overlay(
                        frame.image,
                        tracks.ids,
                        tracks.boxes,
                        result.probs,
                        self.class_names,
                        open_segments=opened,
                        frame=frame.index,
                        status=f"{len(tracks)} tracks",
                    )
                )
        self._t_last = time.perf_counter()
        self.frames += 1
        self.last_frame = frame.index
        if frame.captured is not None:
            self.latencies.append(self.clock() - frame.captured)
        return FrameOutput(frame.index, tracks, result.probs, events)

    # ------------------------------------------------------------ frames
    def process(self, frame: Frame) -> FrameOutput:
        """Run one decoded frame through every stage (decode time is the caller's)."""
        if self._closed:
            raise RuntimeError("StreamPipeline is closed")
        tracks = self._persons_stage(frame, self.timer)
        feats = self._features_stage(frame, tracks, self.timer)
        return self._score_stage(frame, tracks, feats)

    def run(
        self,
        frames: Iterable[Frame],
        *,
        max_frames: int | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        on_frame: Callable[[FrameOutput], None] | None = None,
        pipelined: bool = False,
        queue_size: int = 2,
    ) -> int:
        """Process frames until the source ends, ``max_frames`` or ``should_stop()``.

        Decode time (the iterator's) is recorded in the ``decode`` stage.
        Returns the number of frames processed; call :meth:`close` (or leave
        the ``with`` block) to flush. ``wall_seconds`` holds the run's
        wall-clock time afterwards.

        Parameters
        ----------
        frames : iterable of Frame
            The source (a file, or a :class:`~reclnet.runtime.camera.source.LatestFrames`
            for a live source that must not fall behind).
        max_frames : int, optional
            Stop after this many frames.
        should_stop : callable
            Checked before each frame; true ends the run after the current frame.
        on_frame : callable, optional
            Called with each frame's :class:`FrameOutput`, in the caller's thread.
        pipelined : bool
            Run decode | detect + track | flow + features concurrently in three
            worker threads (and the image networks on a fourth, beside the flow),
            the scoring and outputs in the caller's thread. The frames, tracks,
            features and events are those of the sequential run.
        queue_size : int
            Frames each queue between two stage groups holds (bounded memory:
            at most about ``3 * (queue_size + 1)`` frames are in flight).

        Raises
        ------
        Exception
            Whatever the source or a stage raised (a worker's error is raised
            here, after the frames before it were processed).
        """
        if self._closed:
            raise RuntimeError("StreamPipeline is closed")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        t0 = time.perf_counter()
        try:
            if pipelined:
                return self._run_pipelined(frames, max_frames, should_stop, on_frame, queue_size)
            return self._run_sequential(frames, max_frames, should_stop, on_frame)
        finally:
            self.wall_seconds += time.perf_counter() - t0

    def _run_sequential(
        self,
        frames: Iterable[Frame],
        max_frames: int | None,
        should_stop: Callable[[], bool],
        on_frame: Callable[[FrameOutput], None] | None,
    ) -> int:
        iterator = iter(frames)
        done = 0
        while max_frames is None or done < max_frames:
            if should_stop():
                break
            t0 = time.perf_counter()
            frame = next(iterator, None)
            self.timer.add("decode", time.perf_counter() - t0)
            if frame is None:
                break
            out = self.process(frame)
            out.seconds = self.timer.end_frame()
            done += 1
            if on_frame is not None:
                on_frame(out)
        return done

    def _run_pipelined(
        self,
        frames: Iterable[Frame],
        max_frames: int | None,
        should_stop: Callable[[], bool],
        on_frame: Callable[[FrameOutput], None] | None,
        queue_size: int,
    ) -> int:
        stop = threading.Event()
        decoded: queue.Queue = queue.Queue(queue_size)
        tracked: queue.Queue = queue.Queue(queue_size)
        featured: queue.Queue = queue.Queue(queue_size)

        def put(q: queue.Queue, item: Any) -> bool:
            # Blocks while the next stage is busy, but gives up once the run stops.
            while not stop.is_set():
                try:
                    q.put(item, timeout=_POLL_S)
                    return True
                except queue.Full:
                    continue
            return False

        def get(q: queue.Queue) -> Any:
            while not stop.is_set():
                try:
                    item = q.get(timeout=_POLL_S)
                    q.task_done()
                    return item
                except queue.Empty:
                    continue
            return _END

        # A live source (its frames carry on arriving whatever we do, the stale ones are
        # dropped upstream) is pulled only when the next stage has taken the last item:
        # a frame never waits in a queue while a newer one exists, so the latency is
        # the stages' work, not the depth of the queues.
        live = bool(getattr(frames, "live", False))

        def drained(q: queue.Queue) -> None:
            if not live:
                return
            with q.all_tasks_done:
                while q.unfinished_tasks and not stop.is_set():
                    q.all_tasks_done.wait(_POLL_S)

        def decode() -> None:
            try:
                iterator = iter(frames)
                count = 0
                while max_frames is None or count < max_frames:
                    drained(decoded)
                    clock = FrameClock(self.timer.stages)
                    t0 = time.perf_counter()
                    frame = next(iterator, None)
                    clock.add("decode", time.perf_counter() - t0)
                    if frame is None or not put(decoded, (frame, clock)):
                        break
                    count += 1
                put(decoded, _END)
            except BaseException as exc:  # handed to the caller's thread, raised there
                put(decoded, _Failure(exc))

        def stage(source: queue.Queue, sink: queue.Queue, work: Callable[..., Any]) -> None:
            try:
                while True:
                    drained(sink)
                    item = get(source)
                    if item is _END or isinstance(item, _Failure):
                        put(sink, item)
                        return
                    if not put(sink, work(*item)):
                        return
            except BaseException as exc:
                put(sink, _Failure(exc))

        def persons(frame: Frame, clock: FrameClock) -> tuple[Frame, FrameClock, Tracks]:
            return frame, clock, self._persons_stage(frame, clock)

        # The image networks (rgb) do not need the flow image: they run on their own
        # thread while the features stage computes the flow and runs the flow network.
        image_streams = [m for m in self.features if m != "flow"]
        overlap = (
            ThreadPoolExecutor(len(image_streams), thread_name_prefix="reclnet-image-features")
            if "flow" in self.features and image_streams
            else None
        )

        def features(
            frame: Frame, clock: FrameClock, tracks: Tracks
        ) -> tuple[Frame, FrameClock, Tracks, dict[str, np.ndarray]]:
            return frame, clock, tracks, self._features_stage(frame, tracks, clock, overlap)

        workers = [
            threading.Thread(target=decode, name="reclnet-decode", daemon=True),
            threading.Thread(
                target=stage, args=(decoded, tracked, persons), name="reclnet-persons", daemon=True
            ),
            threading.Thread(
                target=stage,
                args=(tracked, featured, features),
                name="reclnet-features",
                daemon=True,
            ),
        ]
        for worker in workers:
            worker.start()
        done = 0
        try:
            while True:
                if should_stop():
                    break
                try:
                    item = featured.get(timeout=_POLL_S)
                    featured.task_done()
                except queue.Empty:
                    continue
                if item is _END:
                    break
                if isinstance(item, _Failure):
                    raise item.exc
                frame, clock, tracks, feats = item
                self.timer.merge(clock)
                out = self._score_stage(frame, tracks, feats)
                out.seconds = self.timer.end_frame()
                done += 1
                if on_frame is not None:
                    on_frame(out)
        finally:
            stop.set()
            for worker in workers:
                # A stage finishes its current frame first (bounded by the slowest stage).
                worker.join(timeout=_JOIN_S)
            if overlap is not None:
                # The features stage waits for its networks: none is running once it ended.
                overlap.shutdown(wait=not any(w.is_alive() for w in workers))
        return done

    def snapshot(self, path: str | Path) -> Path:
        """Write the scorer's live state (see :meth:`OnlineScorer.snapshot`)."""
        return self.scorer.snapshot(path)

    def close(self) -> list[dict[str, Any]]:
        """End every live track (flushing open segments' events) and close the outputs."""
        if self._closed:
            return []
        self._closed = True
        frame = self.last_frame if self.last_frame is not None else 0
        try:
            events = self._emit(self.scorer.flush(), frame)
        finally:
            if self.render is not None:
                self.render.close()
            if self.events_out is not None:
                self.events_out.close()
        return events

    def __enter__(self) -> StreamPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
