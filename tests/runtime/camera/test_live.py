"""Live sources never fall behind: the keep-latest drop policy, pacing and capture latency.

No wall clock is asserted: a synthetic source produces frames faster than they
are consumed (gated by events, not sleeps), and the clocks are fakes.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from reclnet.runtime.camera.live import LatestFrames, PacedFrames
from reclnet.runtime.camera.persons import MotTracks
from reclnet.runtime.camera.pipeline import MotPersons, StageTimer, StreamPipeline
from reclnet.runtime.camera.source import CameraLostError, Frame


def _frame(i: int) -> Frame:
    return Frame(i, i / 25.0, np.full((48, 64, 3), i % 256, np.uint8))


def _source(n: int):
    for i in range(n):
        yield _frame(i)


def test_newest_frames_are_kept_and_the_rest_dropped() -> None:
    for capacity in (1, 3):
        with LatestFrames(_source(50), capacity=capacity) as latest:
            latest.source_done.wait(10)  # the source ran ahead of a consumer that never read
            got = [f.index for f in latest]
        assert got == list(range(50 - capacity, 50))
        assert latest.captured == 50 and latest.dropped == 50 - capacity
        assert latest.delivered == capacity and latest.high_water == capacity


def test_consumer_slower_than_the_source() -> None:
    """The source sends 10 frames for every one the consumer takes: bounded, counted."""
    taken = threading.Semaphore(0)

    def fast_source():
        for i in range(200):
            if i % 10 == 0 and i:
                taken.acquire(timeout=10)  # 10 frames per consumed frame, whatever the speeds
            yield _frame(i)

    seen: list[int] = []
    with LatestFrames(fast_source(), capacity=2) as latest:
        for frame in latest:
            seen.append(frame.index)
            taken.release()
    assert seen == sorted(seen) and len(set(seen)) == len(seen)  # in capture order, once each
    assert seen[-1] == 199  # the newest frame is never dropped
    assert latest.captured == 200
    assert latest.delivered == len(seen) and latest.dropped == 200 - len(seen)
    assert latest.dropped > 0 and latest.high_water <= 2


def test_source_error_reaches_the_consumer_after_the_kept_frames() -> None:
    def dying():
        yield from _source(3)
        raise CameraLostError("camera 0 stopped delivering frames")

    latest = LatestFrames(dying(), capacity=5, start=False)
    with latest, pytest.raises(CameraLostError):
        got = []
        for frame in latest:
            got.append(frame.index)
    assert got == [0, 1, 2]
    with pytest.raises(ValueError, match="capacity"):
        LatestFrames(_source(1), capacity=0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_paced_frames_release_at_the_frame_rate() -> None:
    clock = FakeClock()
    released = []
    for frame in PacedFrames(_source(5), 25.0, clock=clock, sleep=clock.sleep):
        released.append(clock.now - 100.0)
        if frame.index == 2:
            clock.now += 0.1  # the consumer was slow: frames 3 and 4 are due at once
    np.testing.assert_allclose(released, [0, 0.04, 0.08, 0.18, 0.18], atol=1e-12)
    assert len(clock.sleeps) == 2
    with pytest.raises(ValueError, match="fps"):
        PacedFrames([], 0)


def _fake_feature(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    return np.repeat(np.float32(image.mean()) / 255, 8 * len(boxes)).reshape(len(boxes), 8)


class _FakeScorer:
    """The part of OnlineScorer the pipeline uses, recording what it is given."""

    class _Runner:
        step_seconds = 0.0

    class config:  # noqa: N801 - mirrors scorer.config
        modalities = {"rgb": 8}

    def __init__(self) -> None:
        self.runner = self._Runner()
        self.frames: list[int] = []

    def update(self, frame, ids, feats, boxes):
        assert not self.frames or frame > self.frames[-1]  # the history stays consistent
        self.frames.append(frame)

        class R:
            events: list = []
            track_ids = ids
            probs = np.zeros((len(ids), 2), np.float32)

        return R()

    def flush(self):
        return []


def test_live_pipeline_drops_frames_and_reports_capture_latency() -> None:
    """A source faster than the pipeline: no crash, drops counted, latency from stamps."""
    n = 120
    mot = MotTracks(
        np.arange(n, dtype=np.int64),
        np.ones(n, np.int64),
        np.tile(np.array([[4, 4, 40, 40]], np.float32), (n, 1)),
        np.ones(n, np.float32),
    )
    taken = threading.Semaphore(0)

    def fast_source():
        for i in range(n):
            if i % 20 == 0 and i:  # more than the pipeline holds in flight
                taken.acquire(timeout=10)
            yield _frame(i)

    scorer = _FakeScorer()
    capture_clock = lambda: 10.0  # noqa: E731 - every frame stamped at t = 10 s
    pipeline = StreamPipeline(
        scorer,
        MotPersons(mot),
        {"rgb": _fake_feature},
        timer=StageTimer(),
        class_names=["a", "b"],
        clock=lambda: 10.25,  # ... and its outputs done at t = 10.25 s
    )
    with LatestFrames(fast_source(), capacity=1, clock=capture_clock) as latest:
        done = pipeline.run(
            latest, pipelined=True, queue_size=1, on_frame=lambda out: taken.release()
        )
    pipeline.close()
    assert done == len(scorer.frames) == latest.delivered
    assert latest.captured == n and latest.dropped == n - latest.delivered > 0
    assert scorer.frames[-1] == n - 1  # the last frame is never dropped
    assert list(pipeline.latencies) == [0.25] * done
