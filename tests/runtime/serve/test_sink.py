"""The exactly-once sink: ids written once, read back on reopen, torn lines cut, backpressure."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from reclnet.runtime.serve.sink import BufferedSink, EventSink, JsonlSink, SinkError, event_id


def ev(track: int, first: int, kind: str = "start", camera: str = "cam") -> dict:
    return {
        "event_id": event_id(camera, track, 1, first, kind),
        "kind": kind,
        "track_id": track,
        "first_frame": first,
    }


def test_event_id_is_made_of_the_identifying_fields() -> None:
    assert event_id("lobby", 7, 2, 120, "end") == "lobby:7:2:120:end"
    assert event_id("lobby", 7, 2, 120, "end") != event_id("lobby", 7, 2, 120, "start")
    with pytest.raises(ValueError, match="':'"):
        event_id("a:b", 1, 1, 1, "start")


def test_jsonl_sink_writes_each_id_once_across_reopens(tmp_path: Path) -> None:
    with JsonlSink(tmp_path) as sink:
        assert sink.open("cam") == set()
        assert sink.write("cam", ev(1, 5))
        assert not sink.write("cam", ev(1, 5))  # the same id again
        assert sink.write("cam", ev(1, 5, "end"))
        assert sink.duplicates == 1
    # A restarted worker: the ids are read back, a replay writes only what is new.
    with JsonlSink(tmp_path) as sink:
        assert sink.open("cam") == {ev(1, 5)["event_id"], ev(1, 5, "end")["event_id"]}
        assert not sink.write("cam", ev(1, 5, "end"))
        assert sink.write("cam", ev(2, 9))
        assert sink.count("cam") == 3
    lines = [json.loads(x) for x in (tmp_path / "cam.jsonl").read_text().splitlines()]
    assert [x["event_id"] for x in lines] == [
        "cam:1:1:5:start",
        "cam:1:1:5:end",
        "cam:2:1:9:start",
    ]


def test_a_torn_last_line_is_cut_and_replayed(tmp_path: Path) -> None:
    with JsonlSink(tmp_path) as sink:
        sink.open("cam")
        sink.write("cam", ev(1, 5))
    path = tmp_path / "cam.jsonl"
    whole = path.read_bytes()
    line = json.dumps(ev(2, 7)).encode()
    path.write_bytes(whole + line[:10])  # the writer died inside its write
    with JsonlSink(tmp_path) as sink:
        assert sink.open("cam") == {ev(1, 5)["event_id"]}
        assert sink.write("cam", ev(2, 7))
    assert path.read_text().splitlines()[1] == json.dumps(ev(2, 7), separators=(",", ":"))


def test_foreign_files_and_unopened_cameras_are_errors(tmp_path: Path) -> None:
    (tmp_path / "cam.jsonl").write_text('{"kind": "start"}\n')
    with JsonlSink(tmp_path) as sink:
        with pytest.raises(SinkError, match="line 1 has no event_id"):
            sink.open("cam")
        with pytest.raises(SinkError, match="not opened"):
            sink.write("other", ev(1, 1, camera="other"))
    (tmp_path / "b.jsonl").write_text("not json\n")
    with JsonlSink(tmp_path) as sink, pytest.raises(SinkError, match="line 1 is not valid JSON"):
        sink.open("b")
    with JsonlSink(tmp_path) as sink:
        sink.open("c")
        with pytest.raises(SinkError, match="no event_id"):
            sink.write("c", {"kind": "start"})


class GatedSink(EventSink):
    """A sink whose writes wait for a gate: a sink slower than its producer."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.events: list[dict] = []
        self.fail = False

    def _open(self, camera: str) -> list[str]:
        return []

    def _write(self, camera: str, event: dict) -> None:
        self.gate.wait()
        if self.fail:
            raise OSError("disk full")
        self.events.append(event)

    def _flush(self, camera: str) -> None:
        pass


def test_a_slow_sink_blocks_the_producer_instead_of_queueing_everything() -> None:
    inner = GatedSink()
    sink = BufferedSink(inner, maxsize=4)
    sink.open("cam")
    done = threading.Event()

    def produce() -> None:
        for i in range(20):
            sink.put("cam", ev(i, i))
        done.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    # With the sink stuck, the producer cannot get past queue + the one in the writer's hands.
    assert not done.wait(0.5)
    assert sink.pending <= 4 and sink.high_water <= 4
    inner.gate.set()
    producer.join(timeout=30)
    assert done.is_set()
    sink.flush("cam")
    assert [e["track_id"] for e in inner.events] == list(range(20))
    assert sink.blocked_seconds > 0
    sink.close()


def test_writer_errors_reach_the_producer() -> None:
    inner = GatedSink()
    inner.fail = True
    inner.gate.set()
    sink = BufferedSink(inner, maxsize=2)
    sink.open("cam")
    sink.put("cam", ev(1, 1))
    with pytest.raises(SinkError, match="disk full"):
        sink.flush("cam")
    with pytest.raises(SinkError, match="disk full"):
        sink.put("cam", ev(2, 2))
    with pytest.raises(SinkError):
        sink.close()
