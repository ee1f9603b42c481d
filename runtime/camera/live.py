"""Live sources that never fall behind: keep the newest frames, drop the rest, count the drops.

A camera delivers frames at its own rate whatever the processing does. When
processing is slower, reading frames one after the other would fall further
behind every second (and the camera driver's or the network's buffer would
fill). :class:`LatestFrames` reads the source in its own capture thread as
fast as it delivers, keeps only the newest ``capacity`` frames and drops the
older ones (counted in :attr:`LatestFrames.dropped`), and stamps each frame
with its capture time so that the pipeline can report capture-to-event
latency. Memory is bounded by ``capacity`` frames. The consumer sees frames in
capture order with increasing (possibly non-consecutive) indices, so the
tracker and the scorer keep a consistent history (their ages count frames
of the source). :class:`PacedFrames` replays a file at its frame rate (``reclnet
stream --realtime``, the benchmark's simulated camera).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from reclnet.runtime.camera.source import Frame

__all__ = ["LatestFrames", "PacedFrames"]


class PacedFrames:
    """Frames of a source released no faster than ``fps`` (a file replayed as a camera).

    Frame ``i`` is released at ``start + i / fps`` (or at once when late), so
    a slow consumer does not slow the pacing down: wrapped in
    :class:`LatestFrames`, the frames it cannot take are dropped, as a
    camera's would be.

    Parameters
    ----------
    frames : iterable of Frame
        The source.
    fps : float
        Release rate, frames per second (> 0).
    clock : callable
        Seconds, monotonic (``time.monotonic``).
    sleep : callable
        ``seconds -> None`` (``time.sleep``; tests pass a fake clock's advance).
    """

    def __init__(
        self,
        frames: Iterable[Frame],
        fps: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.frames = frames
        self.fps = float(fps)
        self.clock = clock
        self.sleep = sleep

    def __iter__(self) -> Iterator[Frame]:
        start = None
        for i, frame in enumerate(self.frames):
            if start is None:
                start = self.clock()
            wait = start + i / self.fps - self.clock()
            if wait > 0:
                self.sleep(wait)
            yield frame


class LatestFrames:
    """Read a source in a capture thread; hand out the newest frames, drop older ones.

    Parameters
    ----------
    frames : iterable of Frame
        The source (a :class:`~reclnet.runtime.camera.source.LiveSource`, a
        :class:`PacedFrames`, ...); it is iterated in the capture thread only.
    capacity : int
        Frames kept for the consumer (>= 1). When a frame arrives and the
        buffer is full, the oldest kept frame is dropped: with 1, the consumer
        always gets the newest frame.
    clock : callable
        Stamps :attr:`Frame.captured` when a frame is read (``time.monotonic``).
    start : bool
        Start the capture thread now (else at the first iteration).

    Attributes
    ----------
    captured : int
        Frames read from the source.
    dropped : int
        Frames dropped because the consumer was behind.
    delivered : int
        Frames handed to the consumer.
    high_water : int
        Most frames the buffer ever held (never above ``capacity``).

    Notes
    -----
    An error of the source (a lost camera) is raised to the consumer after the
    frames kept before it. Iterate once; :meth:`close` (or leaving the ``with``
    block) stops the capture thread after its current read.
    """

    #: A live source: :meth:`StreamPipeline.run` pulls a frame only when its first stage is free.
    live = True

    def __init__(
        self,
        frames: Iterable[Frame],
        *,
        capacity: int = 1,
        clock: Callable[[], float] = time.monotonic,
        start: bool = True,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.frames = frames
        self.capacity = int(capacity)
        self.clock = clock
        self.captured = 0
        self.dropped = 0
        self.delivered = 0
        self.high_water = 0
        self._buffer: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._finished = False
        self._closed = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        #: Set once the source has ended (or failed) and every read frame is buffered or dropped.
        self.source_done = threading.Event()
        if start:
            self.start()

    def start(self) -> None:
        """Start the capture thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._capture, name="reclnet-capture", daemon=True
            )
            self._thread.start()

    def offer(self, frame: Frame) -> None:
        """Keep ``frame`` (stamped now) for the consumer, dropping the oldest when full."""
        frame = dataclasses.replace(frame, captured=self.clock())
        with self._cond:
            self.captured += 1
            if len(self._buffer) >= self.capacity:
                self._buffer.popleft()
                self.dropped += 1
            self._buffer.append(frame)
            self.high_water = max(self.high_water, len(self._buffer))
            self._cond.notify_all()

    def _capture(self) -> None:
        try:
            for frame in self.frames:
                if self._closed:
                    break
                self.offer(frame)
        except BaseException as exc:  # raised to the consumer, after the kept frames
            self._error = exc
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()
            self.source_done.set()

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        while True:
            with self._cond:
                while not self._buffer and not self._finished and not self._closed:
                    self._cond.wait(timeout=0.1)
                if self._buffer:
                    frame = self._buffer.popleft()
                    self.delivered += 1
                elif self._error is not None:
                    error, self._error = self._error, None
                    raise error
                else:
                    return
            yield frame

    def close(self) -> None:
        """Stop capturing (after the current read) and forget the kept frames."""
        self._closed = True
        with self._cond:
            self._buffer.clear()
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def __enter__(self) -> LatestFrames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
