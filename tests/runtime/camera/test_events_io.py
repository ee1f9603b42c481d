"""The events file: one flushed JSON line per event, valid even when the writer is killed."""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reclnet.runtime.camera.events_io import EventsFormatError, EventWriter, read_events


def test_round_trip_with_numpy_values(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    with EventWriter(path) as writer:
        writer.write({"kind": "start", "track_id": np.int64(3), "score": np.float32(0.5)})
        # Readable by another process before close: flushed per event.
        assert json.loads(path.read_text().splitlines()[0])["track_id"] == 3
        writer.write({"kind": "end", "tube": np.arange(6, dtype=np.float32).reshape(2, 3)})
    events = read_events(path)
    assert events[0] == {"kind": "start", "track_id": 3, "score": 0.5}
    assert events[1]["tube"] == [[0, 1, 2], [3, 4, 5]]
    assert writer.count == 2


def test_bad_events_are_refused_and_leave_the_file_valid(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    with EventWriter(path) as writer:
        writer.write({"a": 1})
        with pytest.raises(ValueError, match="finite"):
            writer.write({"score": float("nan")})
        with pytest.raises(TypeError):
            writer.write({"x": object()})
    assert read_events(path) == [{"a": 1}]
    with pytest.raises(ValueError, match="closed"):
        writer.write({"a": 2})


def test_reader_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(EventsFormatError, match="line 2 is not valid JSON"):
        read_events(path)
    path.write_text('{"a": 1}\n[1]\n')
    with pytest.raises(EventsFormatError, match="line 2 is not a JSON object"):
        read_events(path)


WRITER = """
import sys, itertools
from reclnet.runtime.camera.events_io import EventWriter
with EventWriter(sys.argv[1]) as w:
    for i in itertools.count():
        w.write({"kind": "end", "i": i, "tube": [[i, 1.5, 2.5, 3.5, 4.5]] * 50})
        if i == 999:
            print("1000 events written", flush=True)  # the parent signals now, mid-writing
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_file_stays_valid_when_the_writer_is_killed(tmp_path: Path, sig: int) -> None:
    path = tmp_path / "e.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        # Synchronized on the writer's output; the timeout only guards against a hang.
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(120), "the writer printed nothing within 120 s"
        assert proc.stdout.readline() == "1000 events written\n"
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.communicate()
    events = read_events(path)  # raises on a partial line
    assert len(events) >= 1000
    assert [e["i"] for e in events] == list(range(len(events)))
