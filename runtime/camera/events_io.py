"""The events file: JSON Lines written and flushed one event at a time.

Each event is serialized in full first and then handed to the operating
system in a single ``write`` on a file opened with ``O_APPEND``, so whatever
stops the process (Ctrl-C, a crash, ``kill -9``) the file holds only complete
lines: a valid JSON Lines file of the events seen so far.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np


class EventsFormatError(ValueError):
    """An events file has a line that is not a JSON object (line number in the message)."""


def _plain(value: Any) -> Any:
    """numpy scalars / arrays -> Python values json can write; NaN / inf refused."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"events must hold finite numbers, got {value}")
    return value


class EventWriter:
    """Append events to a JSON Lines file, one flushed line per event.

    Parameters
    ----------
    path : str or Path
        The output file; truncated when opened (unless ``append``).
    fsync : bool
        Also ``fsync`` after every event (survives a power cut, costs ~ms).
    append : bool
        Keep existing lines.
    """

    def __init__(self, path: str | Path, *, fsync: bool = False, append: bool = False) -> None:
        self.path = Path(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if append else os.O_TRUNC)
        self._fd: int | None = os.open(self.path, flags, 0o644)
        self._fsync = bool(fsync)
        self.count = 0

    def write(self, event: Mapping[str, Any]) -> None:
        """Write one event (a JSON object) as one line, immediately.

        Raises
        ------
        ValueError
            The writer is closed, or the event holds NaN / infinite numbers.
        TypeError
            The event holds a value JSON cannot represent.
        """
        if self._fd is None:
            raise ValueError(f"EventWriter for {self.path} is closed")
        line = (json.dumps(_plain(event), separators=(",", ":")) + "\n").encode("utf-8")
        view = memoryview(line)
        # os.write on a regular file writes everything at once; loop only for safety.
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if self._fsync:
            os.fsync(self._fd)
        self.count += 1

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_events(path: str | Path) -> Iterator[dict[str, Any]]:
    """Read an events file back, one dict per line.

    Raises
    ------
    EventsFormatError
        A line is not valid JSON or not a JSON object (named by line number).
    """
    with Path(path).open("r", encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.endswith("\n"):
                raise EventsFormatError(f"{path}: line {number} is incomplete (no newline)")
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EventsFormatError(f"{path}: line {number} is not valid JSON: {exc}") from None
            if not isinstance(value, dict):
                raise EventsFormatError(f"{path}: line {number} is not a JSON object")
            yield value


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All events of a file (see :func:`iter_events`)."""
    return list(iter_events(path))
