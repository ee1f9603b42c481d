"""`reclnet stream` end to end: vtest.avi -> tracks -> events, interruption, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from reclnet.paths import source_checkout, vtest_video
from reclnet.runtime.camera.cli import main as stream_main
from reclnet.runtime.camera.events_io import read_events
from reclnet.runtime.camera.persons import read_mot, write_mot
from reclnet.runtime.camera.source import open_source

ROOT = source_checkout()
VTEST = vtest_video() or Path("vtest.avi")
needs_vtest = pytest.mark.skipif(
    not VTEST.exists(), reason=f"{VTEST} is absent (README: Demo tells how to get it)"
)

EVENT_KEYS = {
    "kind",
    "frame",
    "time",
    "track_id",
    "label",
    "action",
    "first_frame",
    "last_frame",
    "num_samples",
    "score",
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random two-stream model with its step model and ResNet-18 feature networks."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from reclnet.config import RecLNetConfig
    from reclnet.export.cli import main as export_main
    from reclnet.train.checkpoint import save_checkpoint
    from reclnet.train.model import RecLNet

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model")
    config = RecLNetConfig(
        num_actions=3, modalities={"rgb": 32, "flow": 32}, projection_size=16, memory_size=8
    )
    ckpt = save_checkpoint(out / "model.pt", RecLNet(config).eval())
    assert export_main([str(ckpt), "--out", str(out), "--no-sequence", "--features"]) == 0
    return out


def check_events(events: list[dict], num_frames: int, size: tuple[int, int]) -> None:
    """Every event well formed; every START closed by an END; tubes inside the frame."""
    open_: set[tuple[int, int, int]] = set()
    last_frame_seen = -1
    for e in events:
        assert EVENT_KEYS <= set(e), e
        assert e["kind"] in ("start", "end")
        assert 0 <= e["first_frame"] <= e["last_frame"] < num_frames
        assert 0.0 <= e["score"] <= 1.0 and e["num_samples"] >= 1
        assert e["frame"] >= last_frame_seen  # written in stream order
        last_frame_seen = e["frame"]
        key = (e["track_id"], e["label"], e["first_frame"])
        if e["kind"] == "start":
            assert key not in open_
            open_.add(key)
        else:
            open_.discard(key)
            tube = np.array(e["tube"], np.float64)
            assert tube.shape == (e["last_frame"] - e["first_frame"] + 1, 5)
            assert tube[:, 0].tolist() == list(range(e["first_frame"], e["last_frame"] + 1))
            w, h = size
            assert (tube[:, 1] < tube[:, 3]).all() and (tube[:, 2] < tube[:, 4]).all()
            assert (tube[:, 1:] >= -1).all() and (tube[:, [1, 3]] <= w + 1).all()
            assert (tube[:, [2, 4]] <= h + 1).all()
    assert not open_, f"segments started but never ended: {sorted(open_)[:5]}"


@pytest.mark.data
@needs_vtest
def test_vtest_100_frames_end_to_end(model_dir: Path, tmp_path: Path, capsys) -> None:
    events_path, tracks_path = tmp_path / "events.jsonl", tmp_path / "tracks.txt"
    video, timeline = tmp_path / "overlay.mp4", tmp_path / "timeline.png"
    status = stream_main(
        [
            str(VTEST),
            "--model",
            str(model_dir),
            "--max-frames",
            "100",
            "--events",
            str(events_path),
            "--save-tracks",
            str(tracks_path),
            "--render",
            str(video),
            "--timeline",
            str(timeline),
            "--snapshot",
            str(tmp_path / "state.snap"),
            # Keep the test cheap on 2 shared cores: quarter-size features, HOG every 2nd frame.
            "--feature-scale",
            "0.25",
            "--detect-every",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "--max-frames 100: 100 frames" in out
    for stage in ("decode", "detect", "track", "flow", "features", "step", "postproc"):
        assert stage in out
    tracks = read_mot(tracks_path)
    assert tracks.num_tracks >= 3  # several pedestrians, tracked
    assert tracks.frames.max() <= 99
    # Real tracks last: at least one person followed for 30+ frames.
    lengths = np.bincount(tracks.ids)
    assert lengths.max() >= 30
    events = read_events(events_path)
    assert events, "an untrained 3-class model scores ~0.25 > threshold 0.1: segments must appear"
    check_events(events, 100, (768, 576))
    assert {e["track_id"] for e in events} <= set(tracks.ids.tolist())
    with open_source(video) as source:
        assert sum(1 for _ in source) == 100
    assert timeline.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "state.snap").exists()


@pytest.mark.data
@needs_vtest
def test_given_mot_tracks_are_used_as_is(model_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = np.repeat(np.arange(20), 2)
    ids = np.tile([7, 9], 20)
    boxes = np.tile([[100, 100, 160, 250], [400, 200, 450, 330]], (20, 1)).astype(np.float64)
    boxes += rng.normal(0, 1, boxes.shape)
    write_mot(tmp_path / "in.txt", frames, ids, boxes)
    events_path = tmp_path / "events.jsonl"
    status = stream_main(
        [
            str(VTEST),
            "--model",
            str(model_dir),
            "--tracks",
            str(tmp_path / "in.txt"),
            "--max-frames",
            "30",
            "--events",
            str(events_path),
            "--quiet",
        ]
    )
    assert status == 0
    events = read_events(events_path)
    assert {e["track_id"] for e in events} == {7, 9}
    check_events(events, 30, (768, 576))


def test_malformed_tracks_file_is_reported(model_dir: Path, tmp_path: Path, capsys) -> None:
    clip = tmp_path / "clip.avi"
    _write_clip(clip)
    bad = tmp_path / "bad.txt"
    bad.write_text("1,1,10,10,20,40\n1,2,10\n")
    status = stream_main([str(clip), "--model", str(model_dir), "--tracks", str(bad)])
    assert status == 2
    assert "line 2: expected at least 6" in capsys.readouterr().err


def _write_clip(path: Path, n: int = 20) -> None:
    from reclnet.runtime.camera.render import VideoWriter

    with VideoWriter(path, 10, 160, 120, codec="mpeg4") as writer:
        for i in range(n):
            img = np.full((120, 160, 3), 60, np.uint8)
            img[20:100, 10 + 3 * i : 40 + 3 * i] = 200
            writer.write(img)


def test_truncated_video_gives_a_clear_error_and_valid_events(
    model_dir: Path, tmp_path: Path, capsys
) -> None:
    clip = tmp_path / "clip.avi"
    _write_clip(clip, 40)
    data = clip.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 2 // 3])
    # One person walking through the clip, as a given track.
    write_mot(
        tmp_path / "t.txt",
        np.arange(40),
        np.ones(40, np.int64),
        np.array([[10 + 3 * i, 20, 40 + 3 * i, 100] for i in range(40)], np.float64),
    )
    events_path = tmp_path / "e.jsonl"
    status = stream_main(
        [
            str(cut),
            "--model",
            str(model_dir),
            "--tracks",
            str(tmp_path / "t.txt"),
            "--events",
            str(events_path),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert status == 1
    assert "cut.avi" in err and "truncated or corrupt" in err
    check_events(read_events(events_path), 40, (160, 120))


def test_garbage_video_is_a_clear_error(model_dir: Path, tmp_path: Path, capsys) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(30_000))
    assert stream_main([str(junk), "--model", str(model_dir)]) == 1
    assert "cannot open" in capsys.readouterr().err


def test_missing_model_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert stream_main(["0", "--model", str(tmp_path)]) == 2
    assert "step.onnx not found" in capsys.readouterr().err


@pytest.mark.data
@needs_vtest
def test_ctrl_c_ends_cleanly_with_events_flushed(model_dir: Path, tmp_path: Path) -> None:
    events_path = tmp_path / "events.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "reclnet.cli",
        "stream",
        str(VTEST),
        "--model",
        str(model_dir),
        "--events",
        str(events_path),
        "--detect-every",
        "3",
        "--feature-scale",
        "0.25",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    deadline = time.monotonic() + 240
    # Wait until the run is well under way (events written), then press Ctrl-C.
    while time.monotonic() < deadline and proc.poll() is None:
        if events_path.exists() and events_path.stat().st_size > 0:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "interrupted (Ctrl-C)" in out
    events = read_events(events_path)
    frames_done = int(out.split("interrupted (Ctrl-C): ")[1].split(" frames")[0])
    assert 0 < frames_done < 795
    check_events(events, frames_done, (768, 576))  # every open segment was closed
    json.dumps(events)


class _DyingCamera:
    """A camera delivering ``frames`` frames of a walking figure, then unplugged for good."""

    opened = 0

    def __init__(self, spec) -> None:
        type(self).opened += 1
        self.first = type(self).opened == 1
        self.i = 0

    def isOpened(self) -> bool:  # noqa: N802
        return self.first

    def read(self):
        if self.i >= 25:
            return False, None
        img = np.full((120, 160, 3), 60, np.uint8)
        img[20:100, 10 + 3 * self.i : 40 + 3 * self.i] = 200
        self.i += 1
        return True, img

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        pass


def test_lost_camera_is_retried_then_ends_cleanly(
    model_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    import reclnet.runtime.camera.source as source_module

    _DyingCamera.opened = 0
    monkeypatch.setattr(source_module.cv2, "VideoCapture", _DyingCamera)
    write_mot(
        tmp_path / "t.txt",
        np.arange(25),
        np.full(25, 3),
        np.array([[10 + 3 * i, 20, 40 + 3 * i, 100] for i in range(25)], np.float64),
    )
    events_path = tmp_path / "e.jsonl"
    status = stream_main(
        [
            "0",
            "--model",
            str(model_dir),
            "--tracks",
            str(tmp_path / "t.txt"),
            "--events",
            str(events_path),
            "--render",
            str(tmp_path / "o.mp4"),
            "--retries",
            "2",
            "--backoff",
            "0.01",
        ]
    )
    captured = capsys.readouterr()
    assert status == 1
    assert (
        "camera 0 stopped delivering frames and did not come back after 2 retries" in captured.err
    )
    assert _DyingCamera.opened == 3  # the first session + 2 retries
    assert "25 frames" in captured.out
    events = read_events(events_path)
    assert events and {e["track_id"] for e in events} == {3}
    check_events(events, 25, (160, 120))  # the open segments were ended and written
    with open_source(tmp_path / "o.mp4") as video:
        assert sum(1 for _ in video) == 25
