"""Frame sources: files decode fully, truncated / corrupt files and lost cameras give clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from reclnet.paths import vtest_video
from reclnet.runtime.camera.render import VideoWriter
from reclnet.runtime.camera.source import (
    CameraLostError,
    FileSource,
    LiveSource,
    VideoSourceError,
    open_source,
    parse_source,
)

VTEST = vtest_video() or Path("vtest.avi")


def moving_square(i: int, w: int = 160, h: int = 120) -> np.ndarray:
    img = np.full((h, w, 3), 40, np.uint8)
    img[30:70, 5 + 2 * i : 35 + 2 * i] = (255, 200, 0)
    return img


def write_clip(path: Path, n: int = 40, codec: str = "mpeg4") -> Path:
    with VideoWriter(path, 10, 160, 120, codec=codec) as writer:
        for i in range(n):
            writer.write(moving_square(i))
    return path


def test_file_source_decodes_every_frame(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", 40)
    with open_source(clip) as source:
        assert isinstance(source, FileSource)
        assert (source.width, source.height, source.fps) == (160, 120, 10.0)
        frames = list(source)
    assert [f.index for f in frames] == list(range(40))
    assert np.allclose([f.time for f in frames], np.arange(40) / 10)
    first = frames[0].image
    assert first.dtype == np.uint8 and first.shape == (120, 160, 3)
    # Lossy codec, but the square is where it was drawn, in BGR order.
    assert np.abs(first.astype(int) - moving_square(0).astype(int)).mean() < 6


def test_truncated_video_is_a_clear_error(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", 60)
    data = clip.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with open_source(cut) as source, pytest.raises(VideoSourceError, match="truncated"):
        for _ in source:
            pass


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.avi"
    junk.write_bytes(np.random.default_rng(0).bytes(50_000))
    with pytest.raises(VideoSourceError, match="cannot open .*junk.avi"):
        open_source(junk)


def test_corrupt_frames_are_a_clear_error(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", 30)
    data = bytearray(clip.read_bytes())
    # Keep the container header, destroy all the compressed frames.
    data[2048:] = np.random.default_rng(1).bytes(len(data) - 2048)
    bad = tmp_path / "bad.avi"
    bad.write_bytes(bytes(data))
    with pytest.raises(VideoSourceError, match="bad.avi"):
        with open_source(bad) as source:
            for _ in source:
                pass


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VideoSourceError, match="does not exist"):
        open_source(tmp_path / "nope.mp4")


def test_parse_source() -> None:
    assert parse_source("0") == 0 and parse_source(2) == 2
    assert parse_source("rtsp://cam/stream") == "rtsp://cam/stream"
    assert parse_source("video.mp4") == "video.mp4"


class FakeCapture:
    """A camera that delivers ``frames`` frames, then fails (unplugged)."""

    def __init__(self, frames: int, opens: bool = True) -> None:
        self.left, self.opens, self.released = frames, opens, False

    def isOpened(self) -> bool:  # noqa: N802
        return self.opens

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.zeros((8, 8, 3), np.uint8)

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


def test_lost_camera_reconnects_then_reports() -> None:
    # First session gives 3 frames; the camera comes back once with 2 more, then never.
    sessions = [FakeCapture(3), FakeCapture(0, opens=False), FakeCapture(2)]
    sessions += [FakeCapture(0, opens=False) for _ in range(10)]
    opened, sleeps = [], []

    def open_capture(spec):
        opened.append(spec)
        return sessions[len(opened) - 1]

    source = LiveSource(
        0, retries=3, backoff=0.1, max_backoff=0.25, open_capture=open_capture, sleep=sleeps.append
    )
    got = []
    with pytest.raises(CameraLostError, match="camera 0 stopped delivering frames .* 3 retries"):
        for frame in source:
            got.append(frame.index)
    assert got == [0, 1, 2, 3, 4]  # indices continue across the reconnection
    # backoff doubles and is capped; reset after a successful reconnection
    assert sleeps == [0.1, 0.2, 0.1, 0.2, 0.25]
    assert all(s.released for s in sessions[: len(opened)])
    source.close()


def test_camera_that_never_opens() -> None:
    with pytest.raises(CameraLostError, match="could not be opened"):
        LiveSource(
            "rtsp://127.0.0.1:9/none",
            retries=2,
            backoff=0,
            open_capture=lambda s: FakeCapture(0, opens=False),
            sleep=lambda s: None,
        )


@pytest.mark.data
def test_vtest_header_and_first_frames() -> None:
    if not VTEST.exists():
        pytest.skip(f"{VTEST} is absent (see README: Demo)")
    with open_source(VTEST) as source:
        assert (source.width, source.height, source.fps) == (768, 576, 10.0)
        assert source.declared_frames == 795
        for frame in source:
            assert frame.image.shape == (576, 768, 3)
            if frame.index == 5:
                break


def test_no_fd_leak_on_open_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 1000)
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
    for _ in range(5):
        with pytest.raises(VideoSourceError):
            open_source(junk)
    after = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
    assert after <= before + 1


def damage_packets(src: Path, dst: Path, which: list[int]) -> Path:
    """Copy a video overwriting the middle half of the chosen packets' payload with 0xFF."""
    import av

    data = bytearray(src.read_bytes())
    with av.open(str(src)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    for k in which:
        pos, size = packets[k]
        data[pos + size // 4 : pos + size // 4 + max(1, size // 2)] = b"\xff" * max(1, size // 2)
    dst.write_bytes(bytes(data))
    return dst


def test_clean_files_have_no_decode_errors(tmp_path: Path) -> None:
    for codec, name in (("mpeg4", "clip.avi"), (None, "clip.mp4")):
        with open_source(write_clip(tmp_path / name, 40, codec)) as source:
            assert sum(1 for _ in source) == 40
            assert (source.decode_errors, source.packets) == (0, 40)


def test_one_damaged_packet_is_counted_but_not_fatal(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", 200)
    bad = damage_packets(clip, tmp_path / "bad.avi", [100])
    with open_source(bad) as source:
        assert sum(1 for _ in source) >= 198
    # The damaged packet, and at most a few frames decoded from it, are counted.
    assert 1 <= source.decode_errors <= 5 and source.packets == 200


def test_many_damaged_packets_are_an_error(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", 100)
    bad = damage_packets(clip, tmp_path / "bad.avi", list(range(10, 100, 5)))  # 18 %
    with pytest.raises(VideoSourceError, match=r"bad.avi: \d+ of 100 packets had decoding errors"):
        with open_source(bad) as source:
            for _ in source:
                pass
    assert source.decode_errors >= 18


def test_h264_concealed_damage_is_counted(tmp_path: Path) -> None:
    # H.264 conceals damage and raises nothing: only the decoder's log says so.
    import av

    if "libx264" not in av.codecs_available:
        pytest.skip("no libx264 encoder")
    clip = write_clip(tmp_path / "clip.mp4", 60, "libx264")
    bad = damage_packets(clip, tmp_path / "bad.mp4", list(range(5, 60, 4)))
    with pytest.raises(VideoSourceError, match="packets had decoding errors"):
        with open_source(bad) as source:
            for _ in source:
                pass
    import av.logging

    assert av.logging.get_level() is None  # PyAV's logging is off again
