"""A camera worker: the camera pipeline of its cameras, periodic snapshots and resume after a crash.

:class:`CameraWorker` owns one or several cameras (:class:`CameraRunner` each:
source, persons, feature networks, step runner, :class:`OnlineScorer` and its C
post-processing bank, in a :class:`~reclnet.runtime.camera.pipeline.StreamPipeline`)
and one :class:`~reclnet.runtime.serve.sink.BufferedSink`. The driver calls
:meth:`CameraWorker.advance` again and again; each call runs the cameras
round robin, one frame at a time, for about the time asked, and returns every
camera's progress. On a Ray cluster the worker is an actor (:mod:`.ray_backend`);
here it is plain Python.

Exactly-once protocol, per camera:

1. every event gets its stable id (:func:`~reclnet.runtime.serve.sink.event_id`)
   and goes to the sink, which writes each id once;
2. every ``snapshot_every`` frames the sink is flushed (every event of the
   frames so far is durable) and then the camera's state is written
   (:class:`CameraState`: the scorer's atomic snapshot, the previous feature
   image for the flow, then ``latest.json`` renamed into place atomically);
3. a worker that starts finds ``latest.json`` and restores: the scorer from its
   snapshot, and for a file (replayable) the frames after the snapshot's frame
   (persons from a detector are replayed over the skipped frames, so the
   tracker's ids and state are the same); for a live camera the current frame,
   numbered after a gap long enough (> ``max_age``) that the restored tracks
   end, their open segments closed; the gap is reported as a ``"gap"`` event.

The replayed frames regenerate the events written after the snapshot with the
same ids; the sink drops them, so the final events equal an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from .config import CameraConfig, SinkConfig
from .sink import BufferedSink, JsonlSink, event_id

__all__ = ["CameraRunner", "CameraState", "CameraStateError", "CameraWorker"]

STATE_FORMAT = "reclnet-serve-camera/1"

# camera -> a StepRunner for it (the step service's client); None: the local ONNX Runtime step.
StepFactory = Callable[[CameraConfig], Any]


class CameraStateError(RuntimeError):
    """A camera's state folder is unreadable or belongs to another configuration."""


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (old or new, never torn)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class CameraState:
    """The state folder of one camera: ``camera.json``, ``latest.json`` and the snapshots.

    ``latest.json`` (replaced atomically, last) says which snapshot is current:
    ``{"format", "frame", "scorer", "flow", "done", "time"}`` with ``frame``
    the last frame processed, ``scorer`` / ``flow`` file names in the folder
    (or null), ``done`` whether the camera finished and ``time`` the wall
    clock of the snapshot (a live camera's gap).

    Parameters
    ----------
    folder : Path
        ``<state_dir>/<camera>``; created when missing.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def latest_path(self) -> Path:
        return self.folder / "latest.json"

    def check_fingerprint(self, fingerprint: Mapping[str, Any]) -> None:
        """Refuse a state made with other camera settings; record them the first time.

        Raises
        ------
        CameraStateError
            ``camera.json`` differs (names the first differing setting).
        """
        path = self.folder / "camera.json"
        fingerprint = dict(fingerprint)
        if path.is_file():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CameraStateError(f"{path} is unreadable: {exc}") from None
            if saved != fingerprint:
                keys = sorted(set(saved) | set(fingerprint))
                diff = next(k for k in keys if saved.get(k) != fingerprint.get(k))
                raise CameraStateError(
                    f"{path}: the saved state of camera {fingerprint.get('name')!r} was made with "
                    f"{diff}={saved.get(diff)!r}, the configuration now says "
                    f"{fingerprint.get(diff)!r}; run with --fresh to start this camera over"
                )
            return
        _write_atomic(path, json.dumps(fingerprint, sort_keys=True).encode())

    def load(self) -> dict[str, Any] | None:
        """``latest.json`` checked, or None when the camera never snapshotted.

        Raises
        ------
        CameraStateError
            The file is not a valid state record or names a missing snapshot.
        """
        path = self.latest_path
        if not path.is_file():
            return None
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CameraStateError(f"{path} is unreadable: {exc}") from None
        ok = (
            isinstance(meta, dict)
            and meta.get("format") == STATE_FORMAT
            and isinstance(meta.get("frame"), int)
            and isinstance(meta.get("done"), bool)
            and isinstance(meta.get("time"), int | float)
        )
        if not ok:
            raise CameraStateError(f"{path} is not a {STATE_FORMAT} state record")
        for key in ("scorer", "flow"):
            name = meta.get(key)
            if name is not None and (
                not isinstance(name, str) or "/" in name or not (self.folder / name).is_file()
            ):
                raise CameraStateError(f"{path}: {key} file {name!r} is missing")
        return meta

    def save(
        self,
        frame: int,
        *,
        write_scorer: Callable[[Path], Path] | None,
        flow_prev: np.ndarray | None,
        done: bool = False,
    ) -> None:
        """Write a new snapshot, then point ``latest.json`` at it, then drop the older ones.

        Parameters
        ----------
        frame : int
            The last frame processed.
        write_scorer : callable, optional
            ``path -> path``: writes the scorer's snapshot (atomically) there.
        flow_prev : np.ndarray, optional
            uint8 ``[h, w, 3]``: the last image the flow saw (the next frame's previous).
        done : bool
            The camera finished (nothing to resume).
        """
        scorer_name = flow_name = None
        if write_scorer is not None:
            scorer_name = f"scorer-{frame:012d}.snap"
            write_scorer(self.folder / scorer_name)
        if flow_prev is not None:
            flow_name = f"flow-{frame:012d}.npy"
            import io

            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(flow_prev), allow_pickle=False)
            _write_atomic(self.folder / flow_name, buf.getvalue())
        meta = {
            "format": STATE_FORMAT,
            "frame": int(frame),
            "scorer": scorer_name,
            "flow": flow_name,
            "done": bool(done),
            "time": time.time(),
        }
        _write_atomic(self.latest_path, json.dumps(meta).encode())
        keep = {scorer_name, flow_name}
        for old in [*self.folder.glob("scorer-*.snap"), *self.folder.glob("flow-*.npy")]:
            if old.name not in keep:
                old.unlink(missing_ok=True)

    def flow_prev(self, meta: Mapping[str, Any]) -> np.ndarray | None:
        """The saved previous flow image of a state record (None when it has none)."""
        if meta.get("flow") is None:
            return None
        path = self.folder / meta["flow"]
        try:
            image = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CameraStateError(f"{path} is unreadable: {exc}") from None
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise CameraStateError(f"{path} is not a uint8 [h, w, 3] image")
        return image


class _ResumableFlow:
    """The flow function, remembering the last image it saw and primed with it after a restore.

    The pipeline passes the previous feature image to the flow; a restored
    pipeline has none, so the first call after a restore gets the image
    saved with the snapshot instead: the flow, and so the features, equal
    the uninterrupted run's.
    """

    def __init__(self, flow: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        self.flow = flow
        self.last: np.ndarray | None = None
        self._primed: np.ndarray | None = None

    def prime(self, previous: np.ndarray) -> None:
        self._primed = previous

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        if self._primed is not None:
            prev, self._primed = self._primed, None
        self.last = cur
        return self.flow(prev, cur)


class CameraRunner:
    """One camera in a worker: built (or restored) by :meth:`start`, one frame per :meth:`step`.

    Parameters
    ----------
    camera : CameraConfig
    sink : BufferedSink
        Shared by the worker's cameras; the camera is opened on it here.
    state_dir : Path
        The camera's state lives in ``state_dir/<camera>``.
    snapshot_every : int
        Frames between snapshots.
    step_factory : callable, optional
        ``camera -> StepRunner`` (the step service's client); default the local
        ONNX Runtime step.
    exit_at : int, optional
        Test hook: the process ends (``os._exit``) right after this frame, once
        (a marker in the state folder stops a restarted worker from doing it again).
    """

    def __init__(
        self,
        camera: CameraConfig,
        *,
        sink: BufferedSink,
        state_dir: str | Path,
        snapshot_every: int,
        step_factory: StepFactory | None = None,
        exit_at: int | None = None,
    ) -> None:
        self.camera = camera
        self.name = camera.name
        self.sink = sink
        self.state = CameraState(Path(state_dir) / camera.name)
        self.snapshot_every = int(snapshot_every)
        self.step_factory = step_factory
        self.exit_at = exit_at
        self.status = "starting"
        self.error: str | None = None
        self.frame: int | None = None  # last frame processed
        self.resumed_from: int | None = None
        self.processed = 0  # frames processed by this runner (after a restore: since it)
        self._stack = ExitStack()
        self._pipeline: Any = None
        self._frames: Iterator[Any] | None = None
        self._flow: _ResumableFlow | None = None
        self._offset = 0  # live cameras: added to the source's frame index after a gap
        self._t0 = time.perf_counter()
        self._clock0: float | None = None  # wall time of the source's time 0 (lag)
        self.lag: float | None = None
        self._next_due = 0.0
        self._last_row: dict[str, float] = {}

    # ------------------------------------------------------------ building
    def start(self) -> None:
        """Open everything and restore the last snapshot (if any); errors propagate."""
        from reclnet.runtime.backends import load_backend
        from reclnet.runtime.camera.cli import class_names_of
        from reclnet.runtime.camera.features import (
            feature_network_path,
            flow_for,
            open_feature_network,
        )
        from reclnet.runtime.camera.pipeline import StageTimer, StreamPipeline, TimedRunner
        from reclnet.runtime.camera.source import open_source
        from reclnet.runtime.scorer import OnlineScorer

        cam = self.camera
        stack = self._stack
        self.state.check_fingerprint(cam.fingerprint())
        meta = self.state.load()
        self.sink.open(self.name)
        if meta is not None and meta["done"]:
            self.frame = meta["frame"]
            self.status = "done"
            return
        if self.step_factory is not None:
            runner = stack.enter_context(self.step_factory(cam))
        else:
            runner = stack.enter_context(
                load_backend("onnxruntime", model=cam.step_path, threads=cam.threads)
            )
        features = {}
        for modality, size in runner.config.modalities.items():
            path = feature_network_path(cam.model, modality, cam.feature_precision)
            net = stack.enter_context(
                open_feature_network(
                    cam.model,
                    modality,
                    cam.feature_precision,
                    backend=cam.feature_backend,
                    threads=cam.threads,
                )
            )
            if net.dim is not None and net.dim != size:
                raise ValueError(
                    f"{path.name} gives {net.dim}-d features but the step model's "
                    f"{modality!r} modality takes {size}"
                )
            features[modality] = net
        flow = None
        if "flow" in features:
            flow = self._flow = _ResumableFlow(flow_for(features["flow"]))
        source = stack.enter_context(
            open_source(cam.source, retries=cam.retries, backoff=cam.backoff)
        )
        persons = self._persons(source)
        # A bounded timer: a camera may run for weeks.
        timer = StageTimer(keep=1000)
        timed = TimedRunner(runner, timer)
        if meta is not None and meta["scorer"] is not None:
            scorer = OnlineScorer.restore(self.state.folder / meta["scorer"], timed)
        else:
            scorer = OnlineScorer(
                timed,
                lookahead=cam.lookahead,
                threshold=cam.threshold,
                max_age=cam.max_age,
                video=cam.name,
            )
        self._pipeline = StreamPipeline(
            scorer,
            persons,
            features,
            timer=timer,
            class_names=class_names_of(runner.artifact),
            flow=flow,
            fps=source.fps,
            feature_scale=cam.feature_scale,
        )
        self._fps = source.fps
        frames = iter(source)
        if meta is not None:
            self.resumed_from = meta["frame"]
            self.frame = meta["frame"]
            if self._flow is not None:
                previous = self.state.flow_prev(meta)
                if previous is not None:
                    self._flow.prime(previous)
            if cam.live:
                self._resume_live(meta)
            else:
                frames = self._skip(frames, meta["frame"], persons)
        self._frames = frames
        self.status = "running"
        self._t0 = time.perf_counter()

    def _persons(self, source: Any) -> Any:
        from reclnet.runtime.camera.persons import OnnxPersonDetector, hog_detector, read_mot
        from reclnet.runtime.camera.pipeline import DetectAndTrack, MotPersons
        from reclnet.runtime.camera.tracking import PersonTracker

        cam = self.camera
        if cam.tracks is not None:
            return MotPersons(read_mot(cam.tracks, frame_size=(source.width, source.height)))
        detector: Any = (
            OnnxPersonDetector(cam.detector)
            if cam.detector is not None
            else hog_detector(cam.hog_regions, upscale=cam.hog_upscale)
        )
        return DetectAndTrack(
            detector,
            PersonTracker(frame_size=(source.width, source.height)),
            detect_every=cam.detect_every,
        )

    def _skip(self, frames: Iterator[Any], last: int, persons: Any) -> Iterator[Any]:
        """Frames after ``last``; a detector + tracker sees the skipped ones (same state and ids)."""
        from reclnet.runtime.camera.pipeline import MotPersons, StageTimer

        stateless = isinstance(persons, MotPersons)
        scratch = StageTimer()
        for frame in frames:
            if frame.index <= last:
                if not stateless:
                    persons(frame, scratch)
                    scratch.end_frame()
                continue
            yield frame

    def _resume_live(self, meta: Mapping[str, Any]) -> None:
        """Number the live frames after a gap that ends every restored track; report the gap."""
        gap_seconds = max(0.0, time.time() - float(meta["time"]))
        missed = round(gap_seconds * self._fps)
        # Beyond max_age the restored tracks end at the first frame (segments closed):
        # a new tracker's ids then start new tracks, never continue old ones.
        skip = max(missed, self.camera.max_age + 1)
        first = meta["frame"] + 1
        self._offset = first + skip
        self._put(
            {
                "event_id": event_id(self.name, "-", "-", first, "gap"),
                "camera": self.name,
                "kind": "gap",
                "frame": self._offset,
                "first_frame": first,
                "last_frame": self._offset - 1,
                "seconds": round(gap_seconds, 3),
            }
        )

    # ------------------------------------------------------------- running
    def _put(self, event: Mapping[str, Any]) -> None:
        self.sink.put(self.name, event)

    def _emit(self, events: list[dict[str, Any]]) -> None:
        for e in events:
            eid = event_id(self.name, e["track_id"], e["label"], e["first_frame"], e["kind"])
            self._put({"event_id": eid, "camera": self.name, **e})

    def due_in(self) -> float:
        """Seconds until the next frame is due (``pace``); 0 without pacing."""
        if self.camera.pace <= 0:
            return 0.0
        return max(0.0, self._next_due - time.perf_counter())

    @property
    def active(self) -> bool:
        return self.status == "running"

    def step(self) -> bool:
        """Process one frame (or finish); returns whether the camera is still running."""
        if not self.active:
            return False
        pipeline = self._pipeline
        cam = self.camera
        if (
            cam.max_frames is not None
            and self.frame is not None
            and self.frame + 1 >= cam.max_frames
        ):
            return self._finish()
        t0 = time.perf_counter()
        frame = next(self._frames, None)
        decode = time.perf_counter() - t0
        if frame is None:
            return self._finish()
        if self._offset:
            from dataclasses import replace

            frame = replace(frame, index=frame.index + self._offset)
        if cam.pace > 0:
            self._next_due = max(self._next_due, t0) + 1.0 / cam.pace
        pipeline.timer.add("decode", decode)
        out = pipeline.process(frame)
        self._last_row = pipeline.timer.end_frame()
        self._emit(out.events)
        self.frame = out.frame
        self.processed += 1
        now = time.time()
        if cam.live or cam.pace > 0:
            if self._clock0 is None:
                self._clock0 = now - frame.time
            self.lag = max(0.0, now - (self._clock0 + frame.time))
        if (out.frame + 1) % self.snapshot_every == 0:
            self.snapshot()
        if self.exit_at is not None and out.frame == self.exit_at:
            self._test_exit()
        return True

    def snapshot(self) -> None:
        """Flush the sink (every event so far durable), then write the camera's state."""
        if self._pipeline is None or self.frame is None:
            return
        self.sink.flush(self.name)
        self.state.save(
            self.frame,
            write_scorer=self._pipeline.snapshot,
            flow_prev=self._flow.last if self._flow is not None else None,
        )

    def _finish(self) -> bool:
        """End of the source: end every track, write their events, mark the camera done."""
        self._emit(self._pipeline.close())
        self.sink.flush(self.name)
        self.state.save(
            self.frame if self.frame is not None else -1,
            write_scorer=None,
            flow_prev=None,
            done=True,
        )
        self.status = "done"
        self._stack.close()
        return False

    def _test_exit(self) -> None:
        marker = self.state.folder / f"test-exit-at-{self.exit_at}"
        if marker.exists():
            return
        marker.touch()
        # A crash, not an exit: no flush, no close, queued events lost.
        os._exit(17)

    def fail(self, exc: BaseException) -> None:
        """Mark the camera failed (its resources released); the other cameras go on."""
        self.status = "failed"
        self.error = f"{type(exc).__name__}: {exc}"
        try:
            self._stack.close()
        except Exception:  # noqa: BLE001 - the first error is the one reported
            pass

    def progress(self) -> dict[str, Any]:
        """This camera's progress (JSON-serializable)."""
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        scorer = getattr(self._pipeline, "scorer", None)
        live = 0
        if scorer is not None and self.status == "running":
            live = len(scorer.live_track_ids)
        seen = self.sink.sink.count(self.name)
        return {
            "camera": self.name,
            "status": self.status,
            "frame": self.frame,
            "frames": self.processed,
            "fps": round(self.processed / elapsed, 3) if self.processed else 0.0,
            "live_tracks": live,
            "events": seen,
            "lag_s": None if self.lag is None else round(self.lag, 3),
            "resumed_from": self.resumed_from,
            "stage_ms": {k: round(1e3 * v, 3) for k, v in self._last_row.items()},
            "error": self.error,
        }

    def close(self) -> None:
        """Stop without finishing: snapshot a running camera (the resume point), release it."""
        try:
            if self.active:
                self.snapshot()
        finally:
            self._stack.close()


class CameraWorker:
    """Several cameras in one process, one sink, run round robin.

    Parameters
    ----------
    cameras : list of CameraConfig
    sink : SinkConfig
    state_dir : str or Path
    snapshot_every : int
    step_factory : callable, optional
        See :class:`CameraRunner`.
    exit_at : dict[str, int], optional
        Test hook: camera name -> frame after which the process ends (once).
    """

    def __init__(
        self,
        cameras: list[CameraConfig],
        *,
        sink: SinkConfig,
        state_dir: str | Path,
        snapshot_every: int = 50,
        step_factory: StepFactory | None = None,
        exit_at: Mapping[str, int] | None = None,
    ) -> None:
        if not cameras:
            raise ValueError("a worker needs at least one camera")
        self.sink = BufferedSink(JsonlSink(sink.dir, fsync=sink.fsync), sink.queue)
        exit_at = dict(exit_at or {})
        self.cameras = [
            CameraRunner(
                c,
                sink=self.sink,
                state_dir=state_dir,
                snapshot_every=snapshot_every,
                step_factory=step_factory,
                exit_at=exit_at.get(c.name),
            )
            for c in cameras
        ]
        self._started = False
        self.pid = os.getpid()

    def _start(self) -> None:
        for cam in self.cameras:
            try:
                cam.start()
            except Exception as exc:  # noqa: BLE001 - reported per camera, the others go on
                cam.fail(exc)
        self._started = True

    def advance(self, seconds: float = 0.5) -> dict[str, Any]:
        """Run the cameras, one frame each in turn, for about ``seconds``; returns the progress.

        Returns
        -------
        dict
            ``{"pid", "done": bool, "cameras": [progress per camera], "sink": {...}}``.
        """
        if not self._started:
            self._start()
        deadline = time.perf_counter() + seconds
        while True:
            active = [c for c in self.cameras if c.active]
            if not active:
                break
            ran = False
            for cam in active:
                if cam.due_in() > 0:
                    continue
                try:
                    cam.step()
                except Exception as exc:  # noqa: BLE001 - one broken camera does not stop the rest
                    cam.fail(exc)
                ran = True
            if time.perf_counter() >= deadline:
                break
            if not ran:
                wait = min(c.due_in() for c in active)
                time.sleep(min(wait, max(0.0, deadline - time.perf_counter())))
        return self.report()

    def report(self) -> dict[str, Any]:
        """Every camera's progress and the sink's queue."""
        return {
            "pid": self.pid,
            "done": all(not c.active for c in self.cameras) and self._started,
            "cameras": [c.progress() for c in self.cameras],
            "sink": {
                "pending": self.sink.pending,
                "high_water": self.sink.high_water,
                "blocked_s": round(self.sink.blocked_seconds, 3),
                "duplicates": self.sink.sink.duplicates,
            },
        }

    def close(self) -> None:
        """Release the cameras (unfinished ones resume from their snapshots) and the sink."""
        try:
            for cam in self.cameras:
                cam.close()
        finally:
            self.sink.close()

    def __enter__(self) -> CameraWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
