"""The overlay video: frames with person boxes, track ids, the current top action and open segments.

:class:`VideoWriter` encodes BGR frames with PyAV (H.264 when FFmpeg has an
encoder for it, MPEG-4 part 2 otherwise); :func:`draw_overlay` draws one
frame's tracks on a copy of the image.

MP4 / MOV files are written fragmented (``movflags=frag_keyframe+empty_moov``,
a keyframe every second, packets flushed as they are muxed): a plain MP4 keeps
its index in a ``moov`` box written only when the file is closed, so a process
killed with ``kill -9`` would leave an unreadable file. Fragmented, everything
up to the last completed fragment (about a second before the kill, plus the
encoder's few frames of delay) stays playable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

# Distinct, colour-blind-friendly BGR colours (Okabe-Ito), cycled by track id.
_PALETTE = [
    (0, 159, 230),
    (233, 180, 86),
    (115, 158, 0),
    (66, 228, 240),
    (178, 114, 0),
    (0, 94, 213),
    (167, 121, 204),
    (255, 255, 255),
]


# Containers written fragmented so that a killed process leaves a playable file.
FRAGMENTED_SUFFIXES = (".mp4", ".m4v", ".mov")


def track_color(track_id: int) -> tuple[int, int, int]:
    """The BGR colour used for a track id (stable across frames)."""
    return _PALETTE[int(track_id) % len(_PALETTE)]


class VideoWriter:
    """Encode BGR frames to a video file.

    Parameters
    ----------
    path : str or Path
        Output file; the container follows the extension (``.mp4``, ``.avi``, ``.mkv``).
    fps : float
        Frame rate.
    width, height : int
        Frame size (even sizes are required by 4:2:0 encoders; odd ones are
        padded by one pixel).
    codec : str, optional
        FFmpeg encoder name; default ``libx264`` (``h264``) when available,
        else ``mpeg4``.
    threads : int, optional
        Encoder threads; FFmpeg's choice (all cores) by default. ``1`` encodes
        on one thread with no frame or slice threading: x264's output depends on
        its thread count, so files that must be byte-identical on any machine
        need it.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        width: int,
        height: int,
        *,
        codec: str | None = None,
        threads: int | None = None,
    ) -> None:
        if width <= 0 or height <= 0 or fps <= 0:
            raise ValueError(f"VideoWriter: bad size {width}x{height} or fps {fps}")
        if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
            raise ValueError(f"VideoWriter: threads must be >= 1, got {threads}")
        self.path = Path(path)
        if codec is None:
            available = av.codecs_available
            codec = next((c for c in ("libx264", "h264", "mpeg4") if c in available), "mpeg4")
        self.width, self.height = int(width), int(height)
        self.fragmented = self.path.suffix.lower() in FRAGMENTED_SUFFIXES
        options = (
            {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
            if self.fragmented
            else {}
        )
        try:
            self._container = av.open(str(self.path), "w", options=options)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise ValueError(
                f"cannot write the video {self.path} (unknown extension or unwritable path): {exc}"
            ) from exc
        try:
            rate = Fraction(fps).limit_denominator(1001)
            self._stream = self._container.add_stream(codec, rate=rate)
            self._stream.width = self.width + self.width % 2
            self._stream.height = self.height + self.height % 2
            self._stream.pix_fmt = "yuv420p"
            # A keyframe every second: fragments (and seeking) at that granularity.
            self._stream.codec_context.gop_size = max(1, round(fps))
            if threads is not None:
                ctx = self._stream.codec_context
                ctx.thread_count = int(threads)
                ctx.thread_type = "NONE" if int(threads) == 1 else "AUTO"
            if codec in ("libx264", "h264"):
                # Fast and small: a preview video, not an archive.
                self._stream.options = {"preset": "veryfast", "crf": "26"}
        except BaseException:
            self._container.close()
            raise
        self.frames = 0
        self._closed = False

    def write(self, image: np.ndarray) -> None:
        """Append one BGR uint8 ``[height, width, 3]`` frame."""
        if self._closed:
            raise ValueError(f"VideoWriter for {self.path} is closed")
        if image.dtype != np.uint8 or image.shape != (self.height, self.width, 3):
            raise ValueError(
                f"VideoWriter: expected uint8 [{self.height}, {self.width}, 3], "
                f"got {image.dtype} {list(image.shape)}"
            )
        if image.shape[:2] != (self._stream.height, self._stream.width):
            image = cv2.copyMakeBorder(
                image,
                0,
                self._stream.height - self.height,
                0,
                self._stream.width - self.width,
                cv2.BORDER_REPLICATE,
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _label(text: str, image: np.ndarray, org: tuple[int, int], color: tuple[int, int, int]) -> None:
    """Text on a filled box, kept inside the image."""
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    x = int(min(max(org[0], 0), max(image.shape[1] - tw - 2, 0)))
    y = int(min(max(org[1], th + base + 2), image.shape[0] - 1))
    cv2.rectangle(image, (x, y - th - base - 2), (x + tw + 2, y), color, cv2.FILLED)
    luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    ink = (0, 0, 0) if luminance > 128 else (255, 255, 255)
    cv2.putText(image, text, (x + 1, y - base - 1), font, scale, ink, thick, cv2.LINE_AA)


def draw_overlay(
    image: np.ndarray,
    track_ids: np.ndarray,
    boxes: np.ndarray,
    probs: np.ndarray | None,
    class_names: Sequence[str],
    *,
    open_segments: Mapping[int, Sequence[tuple[int, int, float]]] | None = None,
    frame: int | None = None,
    status: str | None = None,
) -> np.ndarray:
    """Draw one frame's tracks on a copy of the image.

    Parameters
    ----------
    image : np.ndarray
        uint8 ``[H, W, 3]`` BGR.
    track_ids : np.ndarray
        int64 ``[N]``.
    boxes : np.ndarray
        float32 ``[N, 4]`` ``x1 y1 x2 y2``.
    probs : np.ndarray, optional
        float32 ``[N, C+1]`` (background last): each box is captioned with its
        top action and probability.
    class_names : sequence of str
        The C action names.
    open_segments : dict, optional
        ``track_id -> [(label, first_frame, score), ...]`` of the segments open
        now: such a track's box is drawn thick, with a line per open segment.
    frame : int, optional
        Written in the top-left corner with ``status``.
    status : str, optional
        Extra text for the corner (fps, ...).

    Returns
    -------
    np.ndarray
        The annotated copy, uint8 ``[H, W, 3]``.
    """
    out = image.copy()
    open_segments = open_segments or {}
    c = len(class_names)
    for i, (tid, box) in enumerate(zip(np.asarray(track_ids), np.asarray(boxes), strict=True)):
        tid = int(tid)
        color = track_color(tid)
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        segments = open_segments.get(tid, ())
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 4 if segments else 2)
        caption = f"#{tid}"
        if probs is not None and c:
            row = np.asarray(probs[i])
            top = int(np.argmax(row[:c]))
            caption += f" {class_names[top]} {row[top]:.2f}"
        _label(caption, out, (x1, y1), color)
        # The two best open segments, so that a crowded frame stays readable.
        best = sorted(segments, key=lambda s: -s[2])
        for k, (label, first, score) in enumerate(best[:2]):
            name = class_names[label] if 0 <= label < c else str(label)
            more = f" +{len(best) - 2}" if k == 1 and len(best) > 2 else ""
            _label(
                f"> {name} since {first} ({score:.2f}){more}", out, (x1, y2 + 16 * (k + 1)), color
            )
    if frame is not None or status:
        text = " ".join(t for t in (f"frame {frame}" if frame is not None else "", status) if t)
        _label(text, out, (4, 4), (32, 32, 32))
    return out
