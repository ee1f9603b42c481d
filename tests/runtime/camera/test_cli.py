"""`reclnet stream` end to end: vtest.avi -> tracks -> events, interruption, bad input."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
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


def _walker_tracks(path: Path, n: int, track_id: int = 1) -> Path:
    """One person walking through :func:`_write_clip`'s clip, as a MOTChallenge file."""
    write_mot(
        path,
        np.arange(n),
        np.full(n, track_id),
        np.array([[10 + 3 * (i % 40), 20, 40 + 3 * (i % 40), 100] for i in range(n)], np.float64),
    )
    return path


def _stream_args(tmp_path: Path, model_dir: Path, n: int = 40) -> list[str]:
    clip = tmp_path / "clip.avi"
    _write_clip(clip, n)
    return [
        str(clip),
        "--model",
        str(model_dir),
        "--tracks",
        str(_walker_tracks(tmp_path / "t.txt", n)),
        "--events",
        str(tmp_path / "events.jsonl"),
        "--snapshot",
        str(tmp_path / "state.snap"),
        "--render",
        str(tmp_path / "overlay.mp4"),
        "--quiet",
    ]


def _check_interrupted_outputs(tmp_path: Path, frames: int) -> None:
    """Events closed and written, snapshot readable, overlay playable: all ``frames`` frames."""
    from reclnet.runtime.snapshot import read_snapshot

    events = read_events(tmp_path / "events.jsonl")
    assert any(e["kind"] == "start" for e in events)
    check_events(events, frames, (160, 120))  # every open segment was ended and written
    meta, arrays = read_snapshot(tmp_path / "state.snap")
    assert meta["frame"] == frames - 1 and arrays["track_ids"].tolist() == [1]
    assert not list(tmp_path.glob(".state.snap*"))  # nothing left aside
    with open_source(tmp_path / "overlay.mp4") as video:
        assert sum(1 for _ in video) == frames


@pytest.mark.parametrize(("sig", "name"), [("SIGINT", "Ctrl-C"), ("SIGTERM", "SIGTERM")])
def test_signal_stops_after_the_current_frame_with_everything_written(
    model_dir: Path, tmp_path: Path, capsys, monkeypatch, sig: str, name: str
) -> None:
    # The hook raises the signal in this (main) thread right after frame 12: the
    # handler the CLI installed must turn it into a clean stop.
    monkeypatch.setenv("RECLNET_TEST_SIGNAL_AT_FRAME", f"12:{sig}")
    previous = signal.getsignal(getattr(signal, sig))
    status = stream_main(_stream_args(tmp_path, model_dir))
    out = capsys.readouterr().out
    assert status == 0
    assert f"interrupted ({name}): 12 frames" in out
    _check_interrupted_outputs(tmp_path, 12)
    assert signal.getsignal(getattr(signal, sig)) is previous  # handler restored


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_real_signal_from_outside_ends_cleanly(model_dir: Path, tmp_path: Path, sig) -> None:
    cmd = [sys.executable, "-m", "reclnet.cli", "stream", *_stream_args(tmp_path, model_dir)]
    env = {**os.environ, "RECLNET_TEST_HOLD_AT_FRAME": "15"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    try:
        # Synchronized on output: the process says it holds after frame 15.
        line = _read_line_until(proc, "holding after frame 15")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, line + err
    name = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
    assert f"interrupted ({name}): 15 frames" in out
    _check_interrupted_outputs(tmp_path, 15)


def test_kill_9_leaves_valid_events_and_a_playable_overlay(model_dir: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "reclnet.cli", "stream", *_stream_args(tmp_path, model_dir, 60)]
    env = {**os.environ, "RECLNET_TEST_HOLD_AT_FRAME": "40"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    try:
        _read_line_until(proc, "holding after frame 40")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    events = read_events(tmp_path / "events.jsonl")  # only complete lines
    assert events and all(e["frame"] < 40 for e in events)
    # Fragmented MP4 with a keyframe a second (10 frames): at least the fragments
    # completed before the encoder's delay are playable (30 frames in practice).
    with open_source(tmp_path / "overlay.mp4") as video:
        frames = [f.index for f in video]
    assert 10 <= len(frames) <= 40 and frames == list(range(len(frames)))


def _read_line_until(proc: subprocess.Popen, text: str, timeout: float = 240) -> str:
    """stderr lines of ``proc`` up to one containing ``text`` (the timeout is a hang guard)."""
    import selectors

    seen = []
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while True:
            if not sel.select(timeout):
                raise AssertionError(f"no {text!r} line within {timeout} s: {seen}")
            line = proc.stderr.readline()
            if not line:
                raise AssertionError(f"process ended before {text!r}: {seen}")
            seen.append(line)
            if text in line:
                return "".join(seen)


def test_failing_snapshot_is_reported_after_the_events_are_written(
    model_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    import errno

    import reclnet.runtime.scorer as scorer_module

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(scorer_module, "write_snapshot", full_disk)
    args = _stream_args(tmp_path, model_dir)
    status = stream_main(args)
    err = capsys.readouterr().err
    assert status == 1
    assert err.strip().splitlines() == [
        f"reclnet stream: error: cannot write the snapshot {tmp_path / 'state.snap'}: "
        "[Errno 28] No space left on device"
    ]
    events = read_events(tmp_path / "events.jsonl")
    assert any(e["kind"] == "start" for e in events)
    check_events(events, 40, (160, 120))  # the final END events were written anyway
    assert not (tmp_path / "state.snap").exists() and not list(tmp_path.glob(".state*"))


def test_timeline_onto_a_full_disk_is_reported(
    model_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    import errno

    from matplotlib.figure import Figure

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    timeline = tmp_path / "timeline.png"
    status = stream_main([*_stream_args(tmp_path, model_dir, 20), "--timeline", str(timeline)])
    err = capsys.readouterr().err
    assert status == 1
    assert f"cannot write the timeline {timeline}: [Errno 28] No space left on device" in err
    assert len(err.strip().splitlines()) == 1
    check_events(read_events(tmp_path / "events.jsonl"), 20, (160, 120))
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []  # the figure was closed despite the error


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
    # A live source is never waited for: the frames processing could not keep up
    # with were dropped (the fake camera delivers instantly) and counted.
    assert "live: 25 frames captured" in captured.out
    processed = int(re.search(r"(\d+) frames, \d+ tracks", captured.out).group(1))
    dropped = int(re.search(r"(\d+) dropped", captured.out).group(1))
    assert processed >= 1 and processed + dropped == 25
    events = read_events(events_path)
    assert events and {e["track_id"] for e in events} == {3}
    check_events(events, 25, (160, 120))  # the open segments were ended and written
    with open_source(tmp_path / "o.mp4") as video:
        assert sum(1 for _ in video) == processed


def test_step_precision_auto_takes_the_int8_copy_and_says_so(
    model_dir: Path, tmp_path: Path, capsys
) -> None:
    import shutil

    from reclnet.export.quantize import quantize_step

    # A copy of the model folder with an INT8 step beside the float one.
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    quantize_step(folder / "step.onnx", folder / "step.int8.onnx")
    clip = tmp_path / "clip.avi"
    _write_clip(clip, 8)
    tracks = str(_walker_tracks(tmp_path / "t.txt", 8))
    base = [str(clip), "--model", str(folder), "--tracks", tracks, "--quiet"]
    for extra, name in (([], "step.int8.onnx"), (["--step-precision", "fp32"], "step.onnx")):
        capsys.readouterr()
        assert stream_main([*base, *extra]) == 0
        models = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("models:")]
        assert models and models[0].startswith(f"models: {name}, features_rgb"), models
    (folder / "step.int8.onnx").unlink()
    assert stream_main([*base, "--step-precision", "int8"]) == 2
    assert "step.int8.onnx not found" in capsys.readouterr().err


def test_schedule_follows_the_source_unless_asked(model_dir: Path, tmp_path: Path, capsys) -> None:
    """Files run pipelined, live sources (here --realtime) one frame at a time; both say so."""
    runs = {
        (): "schedule: pipelined (file)",
        ("--realtime",): "schedule: sequential (live)",
        ("--realtime", "--pipelined"): "schedule: pipelined (asked)",
        ("--sequential",): "schedule: sequential (asked)",
    }
    for k, (extra, expected) in enumerate(runs.items()):
        folder = tmp_path / str(k)
        folder.mkdir()
        args = _stream_args(folder, model_dir, n=12)
        assert stream_main([*args, *extra]) == 0
        out = capsys.readouterr().out
        assert expected in out, out
        # --realtime reads the file like a camera: frames captured (and maybe dropped).
        assert ("live: " in out) == ("--realtime" in extra)
        assert ("decode includes waiting" in out) == ("--realtime" in extra)
    with pytest.raises(SystemExit) as exc:
        stream_main([*_stream_args(tmp_path, model_dir, n=12), "--sequential", "--pipelined"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
