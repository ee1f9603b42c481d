"""Exactly-once event sinks: stable event ids, deduplication on replay, bounded buffering.

Every event of ``reclnet serve`` carries an id made of what identifies it
whatever run produced it, :func:`event_id` ``(camera, track, action label,
first frame, kind)``: a worker that restarts from a snapshot replays frames
whose events were already written, and regenerates the very same ids.

:class:`EventSink` is the pluggable interface. Its :meth:`EventSink.write`
writes an event only if its id was never written for that camera; on
:meth:`EventSink.open` a sink reads back the ids it already holds for the
camera, so a replay after a crash neither loses nor duplicates events
(at-least-once delivery + idempotent writes = exactly-once). A sink's
:meth:`EventSink.flush` makes what was written durable: a worker flushes before
it takes a snapshot, so no event older than a snapshot can be lost.

:class:`JsonlSink` is the default: ``<dir>/<camera>.jsonl``, one line per event
written in a single ``write`` (:class:`~reclnet.runtime.camera.events_io.EventWriter`);
a torn last line (a crash in the middle of a write) is cut off when the file is
reopened, since that event was never acknowledged and will be replayed.

:class:`BufferedSink` puts a bounded queue and a writer thread in front of
any sink: a slow sink blocks the camera loop (backpressure) when the queue is
full, instead of letting memory grow.
"""

from __future__ import annotations

import abc
import json
import os
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["BufferedSink", "EventSink", "JsonlSink", "SinkError", "event_id"]


class SinkError(RuntimeError):
    """A sink cannot open, read back or write its events (the message names the file)."""


def event_id(
    camera: str, track_id: int | str, label: int | str, first_frame: int, kind: str
) -> str:
    """The stable id of one event: ``"<camera>:<track>:<label>:<first frame>:<kind>"``.

    Parameters
    ----------
    camera : str
        Camera name (no ``':'``: camera names are ``[A-Za-z0-9_.-]``).
    track_id : int or str
        The track (``"-"`` for camera-level events such as a gap).
    label : int or str
        The action's class index (``"-"`` for camera-level events).
    first_frame : int
        First frame of the segment (of the gap).
    kind : str
        ``"start"``, ``"end"`` or ``"gap"``.

    Returns
    -------
    str
    """
    if ":" in camera:
        raise ValueError(f"camera names cannot contain ':', got {camera!r}")
    return f"{camera}:{track_id}:{label}:{int(first_frame)}:{kind}"


class EventSink(abc.ABC):
    """Where events go, each id written once per camera.

    Subclasses implement :meth:`_open` (the ids already held for a camera),
    :meth:`_write`, :meth:`_flush` and optionally :meth:`_close`; the base
    class keeps the written ids and drops duplicates. A context manager.
    """

    def __init__(self) -> None:
        self._seen: dict[str, set[str]] = {}
        self._sink_closed = False
        self.written = 0
        self.duplicates = 0

    def open(self, camera: str) -> set[str]:
        """Start (or resume) a camera; returns the ids it already holds (a copy)."""
        if camera not in self._seen:
            self._seen[camera] = set(self._open(camera))
        return set(self._seen[camera])

    def count(self, camera: str) -> int:
        """Events held for ``camera`` (written before and since it was opened)."""
        return len(self._seen.get(camera, ()))

    def write(self, camera: str, event: Mapping[str, Any]) -> bool:
        """Write one event (with an ``"event_id"`` key) unless its id was written already.

        Returns
        -------
        bool
            True when written, False for a duplicate.

        Raises
        ------
        SinkError
            The camera was not opened, or the event has no ``event_id``.
        """
        seen = self._seen.get(camera)
        if seen is None:
            raise SinkError(f"camera {camera!r} was not opened on this sink")
        eid = event.get("event_id")
        if not isinstance(eid, str) or not eid:
            raise SinkError(f"an event of camera {camera!r} has no event_id: {dict(event)}")
        if eid in seen:
            self.duplicates += 1
            return False
        self._write(camera, event)
        seen.add(eid)
        self.written += 1
        return True

    def flush(self, camera: str | None = None) -> None:
        """Make the events written so far durable (one camera, or all)."""
        for name in [camera] if camera is not None else list(self._seen):
            if name in self._seen:
                self._flush(name)

    def close(self) -> None:
        """Flush and release everything (idempotent)."""
        if not self._sink_closed:
            self._sink_closed = True
            try:
                self.flush()
            finally:
                self._close()

    def __enter__(self) -> EventSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def _open(self, camera: str) -> Iterable[str]:
        """The ids already written for ``camera`` (opening its storage)."""

    @abc.abstractmethod
    def _write(self, camera: str, event: Mapping[str, Any]) -> None:
        """Write one new event."""

    @abc.abstractmethod
    def _flush(self, camera: str) -> None:
        """Make ``camera``'s events durable."""

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Release files and connections (called once)."""


def read_ids(path: Path, *, repair: bool = True) -> list[str]:
    """The ``event_id`` of every line of a JSON Lines events file.

    Parameters
    ----------
    path : Path
        The file; a missing file has no ids.
    repair : bool
        Cut off a torn last line (no newline: a write interrupted by a crash).

    Raises
    ------
    SinkError
        A complete line is not a JSON object with a string ``event_id``
        (named by line number): the file is not a ``reclnet serve`` events file.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise SinkError(f"cannot read the events file {path}: {exc}") from None
    end = data.rfind(b"\n") + 1
    if end < len(data):
        if not repair:
            raise SinkError(f"{path}: the last line is incomplete")
        # Never acknowledged (the writer died inside the write): replay writes it again.
        with path.open("r+b") as fh:
            fh.truncate(end)
            fh.flush()
            os.fsync(fh.fileno())
        data = data[:end]
    ids = []
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            raise SinkError(f"{path}: line {number} is not valid JSON") from None
        eid = value.get("event_id") if isinstance(value, dict) else None
        if not isinstance(eid, str):
            raise SinkError(
                f"{path}: line {number} has no event_id (not a `reclnet serve` events file)"
            )
        ids.append(eid)
    return ids


class JsonlSink(EventSink):
    """One JSON Lines file per camera, ``<folder>/<camera>.jsonl``, appended to.

    Parameters
    ----------
    folder : str or Path
        Created when missing.
    fsync : bool
        ``fsync`` after every event (survives a power cut, costs ~ms per event);
        :meth:`flush` always fsyncs.
    """

    def __init__(self, folder: str | Path, *, fsync: bool = False) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.fsync = bool(fsync)
        self._writers: dict[str, Any] = {}

    def path(self, camera: str) -> Path:
        """The events file of ``camera``."""
        return self.folder / f"{camera}.jsonl"

    def _open(self, camera: str) -> list[str]:
        from reclnet.runtime.camera.events_io import EventWriter

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(camera)
        ids = read_ids(path)
        try:
            self._writers[camera] = EventWriter(path, fsync=self.fsync, append=True)
        except OSError as exc:
            raise SinkError(f"cannot open the events file {path}: {exc}") from None
        return ids

    def _write(self, camera: str, event: Mapping[str, Any]) -> None:
        self._writers[camera].write(event)

    def _flush(self, camera: str) -> None:
        if camera not in self._writers:
            return
        # fsync syncs the file, whichever descriptor names it (the writer keeps its own).
        fd = os.open(self.path(camera), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


_STOP = object()


class BufferedSink:
    """A bounded queue and one writer thread in front of an :class:`EventSink`.

    :meth:`put` returns at once while the queue has room and blocks while it is
    full: a sink slower than the cameras holds the cameras back (backpressure)
    and memory stays bounded by ``maxsize`` events. An error of the writer
    thread is raised by the next :meth:`put` or :meth:`flush`.

    Parameters
    ----------
    sink : EventSink
        Owned: closed by :meth:`close`.
    maxsize : int
        Most events waiting to be written.

    Attributes
    ----------
    blocked_seconds : float
        Total time :meth:`put` waited for room (how much the sink held the cameras back).
    """

    def __init__(self, sink: EventSink, maxsize: int = 1024) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.sink = sink
        self.maxsize = int(maxsize)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=self.maxsize)
        self._error: BaseException | None = None
        self.blocked_seconds = 0.0
        self.high_water = 0
        self._thread = threading.Thread(target=self._run, name="reclnet-sink", daemon=True)
        self._thread.start()
        self._closed = False

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                if self._error is None:
                    camera, event = item
                    self.sink.write(camera, event)
            except BaseException as exc:  # noqa: BLE001 - reported to the producer
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise SinkError(f"the event sink failed: {self._error}") from self._error

    def open(self, camera: str) -> set[str]:
        """Open a camera on the sink (in the caller's thread; nothing may be queued for it yet)."""
        self._raise()
        return self.sink.open(camera)

    def put(self, camera: str, event: Mapping[str, Any]) -> None:
        """Queue one event; blocks while the queue is full."""
        self._raise()
        if self._closed:
            raise SinkError("the sink is closed")
        try:
            self._queue.put_nowait((camera, dict(event)))
        except queue.Full:
            t0 = time.perf_counter()
            self._queue.put((camera, dict(event)))
            self.blocked_seconds += time.perf_counter() - t0
        self.high_water = max(self.high_water, self._queue.qsize())

    @property
    def pending(self) -> int:
        """Events queued and not yet written."""
        return self._queue.qsize()

    def flush(self, camera: str | None = None) -> None:
        """Wait until every queued event is written, then make it durable."""
        self._queue.join()
        self._raise()
        self.sink.flush(camera)

    def close(self) -> None:
        """Write what is queued, stop the thread, close the sink (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(_STOP)
            self._thread.join()
            self._raise()
        finally:
            self.sink.close()

    def __enter__(self) -> BufferedSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
