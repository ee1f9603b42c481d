"""Frame sources: a video file, a camera index or an RTSP / HTTP URL, as BGR frames.

Files are decoded with PyAV, which reports the frame count the container
declares, so a truncated or corrupt file is detected (fewer frames decoded than
declared, or no frame at all) and raised as :class:`VideoSourceError` instead of
ending the stream early without a word. Corrupted packets inside a file are
counted (:attr:`FileSource.decode_errors`: packets the decoder refused, frames
it flagged corrupt, packets whose decoding logged an error while it concealed
the damage); above ``max_error_fraction`` of the packets the file is an error,
below it the caller reports a warning. Cameras and network streams go through
OpenCV's ``VideoCapture``; a live source that stops delivering frames is
re-opened with exponential backoff and, when every retry fails, raises
:class:`CameraLostError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import av
import cv2
import numpy as np

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "udp://", "tcp://", "srt://")
NETWORK_SCHEMES = (*LIVE_SCHEMES, "http://", "https://")


# More packets with decoding errors than this fraction make a file an error, not a warning.
MAX_ERROR_FRACTION = 0.05


class VideoSourceError(RuntimeError):
    """A source could not be opened or decoded (missing, corrupt or truncated file)."""


class CameraLostError(VideoSourceError):
    """A live source stopped delivering frames and could not be re-opened."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes
    ----------
    index : int
        0-based position in the stream (consecutive, whatever the timestamps).
    time : float
        Seconds since the start of the stream (presentation time for files,
        wall-clock time since opening for live sources).
    image : np.ndarray
        uint8 ``[H, W, 3]``, BGR (OpenCV's channel order), C-contiguous.
    captured : float or None
        When the frame was captured, on the clock of the reader that stamped it
        (:class:`reclnet.runtime.camera.live.LatestFrames`, ``time.monotonic``
        by default); None for frames nobody stamped (files read in order).
    """

    index: int
    time: float
    image: np.ndarray
    captured: float | None = None


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` a live source uses (tests pass fakes)."""

    def isOpened(self) -> bool: ...  # noqa: N802 - OpenCV's name

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


def describe_source(spec: str | int) -> str:
    """A short human-readable name of a source (for messages)."""
    return f"camera {spec}" if isinstance(spec, int) else str(spec)


def parse_source(spec: str | int) -> str | int:
    """A camera index as ``int``, anything else unchanged (``"0"`` -> ``0``)."""
    if isinstance(spec, int):
        return spec
    text = str(spec).strip()
    return int(text) if text.isdigit() else text


class FileSource:
    """Frames of a video file, decoded with PyAV.

    Parameters
    ----------
    path : str or Path
        The video file.
    truncation_tolerance : int
        How many frames fewer than the container declares may be decoded before
        the file is called truncated (some muxers round the declared count).
    max_error_fraction : float
        The file is an error when more than this fraction of its packets had
        decoding errors; below it :attr:`decode_errors` tells the caller to warn.

    Attributes
    ----------
    decode_errors : int
        Packets with decoding errors so far (refused by the decoder, giving a
        frame flagged corrupt, or logging a decoder error).
    packets : int
        Video packets read so far.

    Raises
    ------
    VideoSourceError
        On opening: the file is missing, is not a video, or has no video
        stream. While iterating: a demuxing error, no decodable frame, more than
        ``max_error_fraction`` of the packets with decoding errors, or fewer
        frames than the container declares (a truncated or corrupt file). The
        frames decoded before the problem was found have been yielded.
    """

    live = False

    def __init__(
        self,
        path: str | Path,
        *,
        truncation_tolerance: int = 2,
        max_error_fraction: float = MAX_ERROR_FRACTION,
    ) -> None:
        self.path = Path(path)
        self.truncation_tolerance = int(truncation_tolerance)
        if not 0 <= max_error_fraction <= 1:
            raise ValueError(f"max_error_fraction must be in [0, 1], got {max_error_fraction}")
        self.max_error_fraction = float(max_error_fraction)
        self.decode_errors = 0
        self.packets = 0
        self._restore_level: list[int | None] = []
        if not self.path.exists():
            raise VideoSourceError(f"video file {self.path} does not exist")
        if not self.path.is_file():
            raise VideoSourceError(f"video source {self.path} is not a file")
        try:
            self._container = av.open(str(self.path))
        except av.error.FFmpegError as exc:
            raise VideoSourceError(
                f"cannot open {self.path} as a video (corrupt or not a video file): {exc}"
            ) from exc
        if not self._container.streams.video:
            self._container.close()
            raise VideoSourceError(f"{self.path} has no video stream")
        stream = self._container.streams.video[0]
        # Let FFmpeg use both cores for decoding (frame threading keeps order).
        stream.thread_type = "AUTO"
        self._stream = stream
        self.width = int(stream.codec_context.width)
        self.height = int(stream.codec_context.height)
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 25.0
        self.declared_frames = int(stream.frames or 0)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        decoder = self._stream.codec_context.name
        # FFmpeg conceals most damage (H.264 draws over broken macroblocks) and only
        # logs it; PyAV's log callback is off by default, so turn it on at ERROR
        # level while decoding and count the decoder's error lines.
        level = av.logging.get_level()
        if level is None or level < av.logging.ERROR:
            av.logging.set_level(av.logging.ERROR)
            self._restore_level = [level]
        try:
            with av.logging.Capture(local=False) as logs:
                seen = 0
                for packet in self._container.demux(self._stream):
                    if packet.size == 0:  # the end-of-stream flush packet
                        decoded = self._decode(packet)
                    else:
                        self.packets += 1
                        decoded = self._decode(packet)
                        errors = [e for e in logs[seen:] if e[1] == decoder]
                        seen = len(logs)
                        if (
                            decoded is None
                            or errors
                            or packet.is_corrupt
                            or any(f.is_corrupt for f in decoded)
                        ):
                            self.decode_errors += 1
                    for frame in decoded or ():
                        image = frame.to_ndarray(format="bgr24")
                        t = float(frame.time) if frame.time is not None else index / self.fps
                        yield Frame(index, t, np.ascontiguousarray(image))
                        index += 1
        except av.error.FFmpegError as exc:
            raise VideoSourceError(
                f"{self.path}: decoding failed after {index} frames (corrupt video data): {exc}"
            ) from exc
        finally:
            self._restore_logging()
        if index == 0:
            raise VideoSourceError(
                f"{self.path}: no frame could be decoded (corrupt or empty video stream)"
            )
        if self.declared_frames and index < self.declared_frames - self.truncation_tolerance:
            raise VideoSourceError(
                f"{self.path}: decoded only {index} of the {self.declared_frames} frames the "
                f"container declares: the file is truncated or corrupt"
            )
        if self.decode_errors > self.max_error_fraction * self.packets:
            raise VideoSourceError(
                f"{self.path}: {self.decode_errors} of {self.packets} packets had decoding "
                f"errors (more than {100 * self.max_error_fraction:g}%): the file is corrupt"
            )

    def _decode(self, packet: av.Packet) -> list[av.VideoFrame] | None:
        """The frames of one packet, or None when the decoder refuses it (corrupt data)."""
        try:
            return list(packet.decode())
        except av.error.InvalidDataError:
            return None

    def _restore_logging(self) -> None:
        if self._restore_level:
            av.logging.set_level(self._restore_level.pop())

    def close(self) -> None:
        """Release the decoder (idempotent)."""
        # Logging off first: a decoder thread logging while the container closes
        # would wait for the GIL that the closing thread holds.
        self._restore_logging()
        self._container.close()

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LiveSource:
    """Frames of a camera or network stream through OpenCV, with reconnection.

    Parameters
    ----------
    spec : int or str
        Camera index or URL.
    retries : int
        Re-open attempts after the source stops delivering frames (or fails to
        open) before :class:`CameraLostError` is raised.
    backoff : float
        Seconds before the first retry; doubled after each failed attempt.
    max_backoff : float
        Cap on the wait between attempts.
    open_capture : callable, optional
        ``spec -> Capture``; ``cv2.VideoCapture`` by default (tests pass fakes).
    sleep : callable
        ``seconds -> None``; ``time.sleep`` by default.
    ends : bool, optional
        Whether running out of frames is the normal end of the stream (an HTTP
        URL of a finished file) rather than a lost camera. By default: true
        for HTTP(S) URLs whose frame count OpenCV reports, false otherwise.
    """

    live = True

    def __init__(
        self,
        spec: int | str,
        *,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        open_capture: Callable[[int | str], Capture] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        ends: bool | None = None,
    ) -> None:
        if retries < 0 or backoff < 0 or max_backoff < 0:
            raise ValueError("retries, backoff and max_backoff must be >= 0")
        self.spec = spec
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._open_capture = open_capture or cv2.VideoCapture
        self._sleep = sleep
        self.reconnects = 0
        self._cap: Capture | None = None
        self._connect(first=True)
        cap = self._cap
        assert cap is not None
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else 25.0
        self.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        self.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        self._pending: np.ndarray | None = None
        if self.width <= 0 or self.height <= 0:
            # Some backends report no size before the first frame: read it now, serve it first.
            ok, image = cap.read()
            if not ok or image is None:
                raise CameraLostError(f"{describe_source(spec)} opened but delivered no frame")
            self._pending = image
            self.height, self.width = image.shape[:2]
        count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
        self.declared_frames = int(count) if count > 0 else 0
        if ends is None:
            ends = (
                isinstance(spec, str)
                and spec.startswith(("http://", "https://"))
                and self.declared_frames > 0
            )
        self.ends = bool(ends)

    def _try_open(self) -> bool:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        cap = self._open_capture(self.spec)
        if cap.isOpened():
            self._cap = cap
            return True
        cap.release()
        return False

    def _connect(self, *, first: bool) -> None:
        """Open the source, retrying with exponential backoff; raise when all attempts fail."""
        if first and self._try_open():
            return
        wait = self.backoff
        for _ in range(self.retries):
            self._sleep(wait)
            wait = min(self.max_backoff, wait * 2 if wait > 0 else self.backoff)
            self.reconnects += 1
            if self._try_open():
                return
        what = "could not be opened" if first else "stopped delivering frames"
        raise CameraLostError(
            f"{describe_source(self.spec)} {what} and did not come back after "
            f"{self.retries} retries with exponential backoff "
            f"(first wait {self.backoff:g} s, at most {self.max_backoff:g} s)"
        )

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        start = time.monotonic()
        while True:
            assert self._cap is not None
            if self._pending is not None:
                ok, image, self._pending = True, self._pending, None
            else:
                ok, image = self._cap.read()
            if ok and image is not None:
                if image.ndim == 2:
                    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
                yield Frame(index, time.monotonic() - start, np.ascontiguousarray(image))
                index += 1
                continue
            if self.ends and (self.declared_frames == 0 or index >= self.declared_frames - 2):
                return
            # A live source that stops is retried (a network hiccup, a replugged camera).
            self._connect(first=False)

    def close(self) -> None:
        """Release the capture (idempotent)."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(spec: str | int | Path, **live_options: object) -> FileSource | LiveSource:
    """Open a video file, camera index or URL.

    Parameters
    ----------
    spec : str, int or Path
        A file path, a camera index (``0`` or ``"0"``) or an ``rtsp://``,
        ``http(s)://`` ... URL.
    **live_options
        Passed to :class:`LiveSource` for cameras and URLs (``retries``,
        ``backoff``, ``max_backoff``).

    Returns
    -------
    FileSource or LiveSource
        A context manager iterating over :class:`Frame`; ``.fps``, ``.width``
        and ``.height`` describe the stream.
    """
    parsed = parse_source(spec if not isinstance(spec, Path) else str(spec))
    if isinstance(parsed, int) or parsed.startswith(NETWORK_SCHEMES):
        return LiveSource(parsed, **live_options)  # type: ignore[arg-type]
    return FileSource(parsed)
