"""The pipelined camera path against the sequential one: same frames, same tracks, same events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reclnet.runtime.camera.persons import Detections, MotTracks
from reclnet.runtime.camera.pipeline import (
    DetectAndTrack,
    FrameClock,
    MotPersons,
    StageTimer,
    StreamPipeline,
    TimedRunner,
)
from reclnet.runtime.camera.source import Frame, VideoSourceError
from reclnet.runtime.camera.tracking import PersonTracker

W, H, N = 160, 120, 40


def _frames(n: int = N) -> list[Frame]:
    """Two people walking across a textured background."""
    rng = np.random.default_rng(5)
    background = rng.integers(0, 120, (H, W, 3), dtype=np.uint8)
    frames = []
    for i in range(n):
        image = background.copy()
        image[20:100, 5 + 2 * i : 35 + 2 * i] = (200, 90, 40)
        image[30:110, 120 - i : 145 - i] = (40, 200, 220)
        frames.append(Frame(i, i / 25.0, image))
    return frames


def _mot(n: int = N) -> MotTracks:
    rows = []
    for i in range(n):
        rows.append((i, 1, 5 + 2 * i, 20, 35 + 2 * i, 100))
        if 5 <= i < 33:  # the second person enters late and leaves early
            rows.append((i, 2, 120 - i, 30, 145 - i, 110))
    a = np.array(rows, np.float64)
    return MotTracks(
        frames=a[:, 0].astype(np.int64),
        ids=a[:, 1].astype(np.int64),
        boxes=a[:, 2:].astype(np.float32),
        scores=np.ones(len(a), np.float32),
    )


def _detector(image: np.ndarray) -> Detections:
    """Boxes of the saturated colour blobs (deterministic, from the pixels alone)."""
    boxes = []
    for colour in ((200, 90, 40), (40, 200, 220)):
        ys, xs = np.nonzero((image == colour).all(axis=2))
        if len(xs):
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    b = np.array(boxes, np.float32).reshape(-1, 4)
    return Detections(b, np.ones(len(b), np.float32))


def _run(model_dir: Path, networks, persons, frames, stop_after=None, seen=None, **run_options):
    from reclnet.runtime.backends import load_backend
    from reclnet.runtime.camera.flow import flow_image
    from reclnet.runtime.scorer import OnlineScorer

    outputs = []
    with load_backend("onnxruntime", model=model_dir / "step.onnx", threads=1) as runner:
        timer = StageTimer()
        scorer = OnlineScorer(TimedRunner(runner, timer), lookahead=3, threshold=0.0, max_age=4)
        with StreamPipeline(
            scorer,
            persons,
            networks,
            timer=timer,
            class_names=["a", "b", "c"],
            flow=flow_image,
            feature_scale=0.5,
        ) as pipeline:

            def on_frame(out) -> None:
                outputs.append(out)
                if seen is not None:
                    seen.append(out.frame)

            n = pipeline.run(
                frames,
                on_frame=on_frame,
                should_stop=lambda: stop_after is not None and len(outputs) >= stop_after,
                **run_options,
            )
        events = pipeline.events
    return n, outputs, events, timer


def _same(a, b) -> None:
    n_a, out_a, events_a, _ = a
    n_b, out_b, events_b, _ = b
    assert n_a == n_b == len(out_a) == len(out_b)
    for x, y in zip(out_a, out_b, strict=True):
        assert x.frame == y.frame
        np.testing.assert_array_equal(x.tracks.ids, y.tracks.ids)
        np.testing.assert_array_equal(x.tracks.boxes, y.tracks.boxes)
        np.testing.assert_allclose(x.probs, y.probs, rtol=1e-6, atol=1e-7)
        assert x.seconds.keys() == y.seconds.keys()
    assert events_a == events_b
    assert any(e["kind"] == "end" for e in events_a)  # threshold 0: segments happen


def test_pipelined_matches_sequential_with_mot_tracks(model_dir: Path, networks) -> None:
    tracks = _mot()
    seq = _run(model_dir, networks, MotPersons(tracks), _frames())
    pip = _run(model_dir, networks, MotPersons(tracks), _frames(), pipelined=True, queue_size=1)
    _same(seq, pip)
    assert [o.frame for o in pip[1]] == list(range(N))
    # Per-stage times reach the summary from the worker threads too.
    stages = {r["stage"]: r for r in pip[3].summary()}
    assert pip[3].frames == N
    assert stages["features"]["mean_ms"] > 0 and stages["decode"]["mean_ms"] >= 0


def test_pipelined_runs_the_rgb_network_beside_the_flow(model_dir: Path, networks) -> None:
    import threading

    threads: dict[str, set[str]] = {"rgb": set(), "flow": set()}

    def recorded(modality: str):
        def net(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
            threads[modality].add(threading.current_thread().name)
            return networks[modality](image, boxes)

        return net

    wrapped = {m: recorded(m) for m in networks}
    tracks = _mot()
    pip = _run(model_dir, wrapped, MotPersons(tracks), _frames(), pipelined=True)
    _same(_run(model_dir, networks, MotPersons(tracks), _frames()), pip)
    # The flow network in the features stage's thread, the rgb one on its own thread.
    assert threads["flow"] == {"reclnet-features"}
    assert threads["rgb"] and all(t.startswith("reclnet-image-features") for t in threads["rgb"])
    # The sequential run keeps everything in the caller's thread.
    threads["rgb"].clear()
    threads["flow"].clear()
    _run(model_dir, wrapped, MotPersons(tracks), _frames(8))
    assert threads["rgb"] == threads["flow"] == {threading.current_thread().name}


def test_pipelined_matches_sequential_with_detector_every_third_frame(
    model_dir: Path, networks
) -> None:
    def persons():
        tracker = PersonTracker(init_frames=1, max_missed=3, frame_size=(W, H))
        return DetectAndTrack(_detector, tracker, detect_every=3)

    seq = _run(model_dir, networks, persons(), _frames())
    pip = _run(model_dir, networks, persons(), _frames(), pipelined=True, queue_size=3)
    _same(seq, pip)
    assert {int(i) for o in pip[1] for i in o.tracks.ids} == {1, 2}


def test_pipelined_max_frames_and_stop(model_dir: Path, networks) -> None:
    n, out, _, _ = _run(
        model_dir, networks, MotPersons(_mot()), _frames(), pipelined=True, max_frames=7
    )
    assert n == 7 and [o.frame for o in out] == list(range(7))
    n, out, events, _ = _run(
        model_dir, networks, MotPersons(_mot()), _frames(), pipelined=True, stop_after=4
    )
    assert n == 4 and [o.frame for o in out] == [0, 1, 2, 3]
    assert all(e["last_frame"] <= 3 for e in events)  # closing flushed what was open


class _Broken:
    """A source that fails after ``k`` frames (a corrupt file found mid-stream)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __iter__(self):
        yield from _frames(self.k)
        raise VideoSourceError("corrupt video data after frame 4")


def test_pipelined_source_error_reaches_the_caller_after_the_frames_before_it(
    model_dir: Path, networks
) -> None:
    seen: list[int] = []
    with pytest.raises(VideoSourceError, match="corrupt"):
        _run(model_dir, networks, MotPersons(_mot()), _Broken(5), pipelined=True, seen=seen)
    assert seen == [0, 1, 2, 3, 4]


def test_pipelined_stage_error_is_raised_in_the_caller(model_dir: Path, networks) -> None:
    def persons(frame: Frame, timer) -> object:
        if frame.index == 3:
            raise RuntimeError("detector crashed")
        return MotPersons(_mot())(frame, timer)

    with pytest.raises(RuntimeError, match="detector crashed"):
        _run(model_dir, networks, persons, _frames(), pipelined=True)


def test_frame_clock_and_merge() -> None:
    clock = FrameClock(["a", "b"])
    clock.add("a", 0.25)
    with clock("b"):
        pass
    timer = StageTimer(["a", "b"])
    timer.merge(clock)
    row = timer.end_frame()
    assert row["a"] == 0.25 and row["b"] >= 0
    with pytest.raises(KeyError, match="unknown stage"):
        clock.add("zzz", 1.0)


def test_queue_size_must_be_positive(model_dir: Path, networks) -> None:
    with pytest.raises(ValueError, match="queue_size"):
        _run(model_dir, networks, MotPersons(_mot()), _frames(3), pipelined=True, queue_size=0)


def test_pipelined_matches_sequential_on_openvino_features(model_dir: Path) -> None:
    """The default feature backend where OpenVINO is installed, in the pipeline's threads."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from reclnet.runtime.camera.features import open_feature_network

    with (
        open_feature_network(model_dir, "rgb", backend="openvino", threads=1) as rgb,
        open_feature_network(model_dir, "flow", backend="openvino", threads=1) as flow,
    ):
        networks = {"rgb": rgb, "flow": flow}
        persons = lambda: DetectAndTrack(  # noqa: E731
            _detector, PersonTracker(frame_size=(W, H)), detect_every=3
        )
        seq = _run(model_dir, networks, persons(), _frames())
        pip = _run(model_dir, networks, persons(), _frames(), pipelined=True, queue_size=2)
    _same(seq, pip)
