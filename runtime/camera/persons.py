"""Where the people are: MOTChallenge track files, OpenCV's HOG detector, a user's ONNX detector.

Four ways to get person boxes for a frame:

* :func:`read_mot` parses tracks computed elsewhere (ByteTrack, BoxMOT, ... all
  write the MOTChallenge text format) and reports every malformed line by its
  line number;
* :class:`HogPersonDetector`, OpenCV's built-in HOG + linear SVM people
  detector: no weights to download, about 3 people a frame on ``vtest.avi`` at
  native size;
* :class:`MotionGatedHogDetector`, the same HOG run only on the regions of a
  static camera's frame that moved or held people on its last calls
  (a background model decides), plus one band of a sweep over the frame;
* :class:`OnnxPersonDetector`, a user's ONNX detector run by OpenCV's DNN
  module, with the input / output format documented on the class.

Boxes everywhere are float32 ``[K, 4]`` ``x1 y1 x2 y2`` in frame pixels.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np


class MotFormatError(ValueError):
    """A MOTChallenge file has malformed lines; ``.errors`` lists ``(line_number, message)``."""

    def __init__(self, path: str | Path, errors: list[tuple[int, str]], total: int) -> None:
        self.path = str(path)
        self.errors = errors
        shown = "\n".join(f"  line {n}: {msg}" for n, msg in errors)
        more = f"\n  ... and {total - len(errors)} more" if total > len(errors) else ""
        super().__init__(f"{path}: {total} malformed MOTChallenge line(s):\n{shown}{more}")


@dataclass(frozen=True)
class Detections:
    """Person boxes of one frame.

    Attributes
    ----------
    boxes : np.ndarray
        float32 ``[K, 4]``, ``x1 y1 x2 y2`` in frame pixels.
    scores : np.ndarray
        float32 ``[K]``, detector confidence (larger is surer).
    """

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f"Detections: {len(boxes)} boxes but {len(scores)} scores")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))


@dataclass(frozen=True)
class MotTracks:
    """Person tracks read from a MOTChallenge file, sorted by (frame, id).

    Attributes
    ----------
    frames : np.ndarray
        int64 ``[R]``, 0-based frame index (the file's 1-based frame minus 1,
        so that it matches :attr:`Frame.index <reclnet.runtime.camera.source.Frame>`).
    ids : np.ndarray
        int64 ``[R]``, track ids.
    boxes : np.ndarray
        float32 ``[R, 4]``, ``x1 y1 x2 y2``.
    scores : np.ndarray
        float32 ``[R]``, the confidence column (1.0 where the file has -1 or none).
    """

    frames: np.ndarray
    ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def num_tracks(self) -> int:
        return len(np.unique(self.ids))

    def at(self, frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tracks present in a 0-based frame: ``(ids int64[N], boxes float32[N, 4], scores float32[N])``."""
        lo, hi = np.searchsorted(self.frames, [frame, frame + 1])
        return self.ids[lo:hi], self.boxes[lo:hi], self.scores[lo:hi]


# An integer field: digits, optionally written as a float with a zero fraction ("12.0").
_INTEGER = re.compile(r"[+-]?\d+(?:\.0*)?")
INT64_MAX = 2**63 - 1
# Pixel coordinates beyond this are not boxes (float32, the boxes' dtype, is exact up to 2^24).
MAX_COORDINATE = 2**24


def _parse_int(name: str, text: str, minimum: int) -> int:
    """An integer field parsed as an integer (never through float: ids above 2^53 stay exact)."""
    text = text.strip()
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"{name} must be an integer, got {text!r}")
    value = int(text.split(".")[0])
    if not minimum <= value <= INT64_MAX:
        raise ValueError(f"{name} must be an integer in [{minimum}, 2^63 - 1], got {text!r}")
    return value


def _parse_mot_line(
    fields: list[str], frame_size: tuple[int, int] | None = None
) -> tuple[int, int, float, float, float, float, float]:
    """One line's (frame, id, x1, y1, x2, y2, conf); raises ValueError with the reason.

    With ``frame_size`` ``(W, H)`` the box is clipped to the frame and a box
    that does not overlap it is an error.
    """
    if len(fields) < 6:
        raise ValueError(
            f"expected at least 6 comma-separated fields "
            f"(frame, id, bb_left, bb_top, bb_width, bb_height), got {len(fields)}"
        )
    text = fields[0].strip()
    if not _INTEGER.fullmatch(text) or int(text.split(".")[0]) < 1:
        raise ValueError(
            f"frame must be an integer >= 1 (MOTChallenge frames are 1-based), got {text!r}"
        )
    frame = _parse_int("frame", text, 1)  # the int64 bound
    track = _parse_int("id", fields[1], 0)
    names = ("bb_left", "bb_top", "bb_width", "bb_height", "conf")
    values: list[float] = []
    for name, text in zip(names, fields[2:7], strict=False):
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name} is not a number: {text.strip()!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{name} is not finite: {text.strip()!r}")
        values.append(value)
    x, y, w, h = values[:4]
    if w <= 0 or h <= 0:
        raise ValueError(f"bb_width and bb_height must be > 0, got {w:g} x {h:g}")
    if max(abs(x), abs(y), w, h) > MAX_COORDINATE:
        raise ValueError(
            f"box (left {x:g}, top {y:g}, width {w:g}, height {h:g}) is beyond "
            f"{MAX_COORDINATE} pixels: not a pixel box"
        )
    x2, y2 = x + w, y + h
    if frame_size is not None:
        fw, fh = frame_size
        if x >= fw or y >= fh or x2 <= 0 or y2 <= 0:
            raise ValueError(
                f"box (left {x:g}, top {y:g}, width {w:g}, height {h:g}) lies outside "
                f"the {fw}x{fh} frame"
            )
        # Partly outside is common (people entering the frame): keep the visible part.
        x, y, x2, y2 = max(x, 0.0), max(y, 0.0), min(x2, float(fw)), min(y2, float(fh))
    conf = values[4] if len(values) > 4 else -1.0
    return frame, track, x, y, x2, y2, conf


def read_mot(
    path: str | Path, *, max_reported: int = 20, frame_size: tuple[int, int] | None = None
) -> MotTracks:
    """Parse a MOTChallenge tracks file.

    Each line is ``frame, id, bb_left, bb_top, bb_width, bb_height[, conf[, x, y, z]]``
    with 1-based frames and pixel boxes (the ``det.txt`` / tracker-output
    format of MOT15-MOT20). Blank lines and lines starting with ``#`` are
    skipped; whitespace around fields is ignored.

    Parameters
    ----------
    path : str or Path
        The text file.
    max_reported : int
        How many malformed lines the error message lists (all are counted).
    frame_size : tuple[int, int], optional
        ``(W, H)`` of the video: boxes are clipped to the frame, and a box
        lying wholly outside it is a malformed line (tracks of another video).

    Returns
    -------
    MotTracks
        Rows sorted by (frame, id); frames converted to 0-based.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    MotFormatError
        Some lines are malformed (too few fields, not a number, not finite,
        frame or id not an integer, frame < 1, negative id or one beyond int64,
        empty box, a box outside the frame, the same id twice in a frame); the
        message names each by its 1-based line number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MOTChallenge tracks file {path} does not exist")
    rows: list[tuple[int, int, float, float, float, float, float]] = []
    errors: list[tuple[int, str]] = []
    total_errors = 0
    seen: dict[tuple[int, int], int] = {}
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                row = _parse_mot_line(text.split(","), frame_size)
                key = (row[0], row[1])
                if key in seen:
                    raise ValueError(
                        f"track {row[1]} appears twice in frame {row[0]} (first on line {seen[key]})"
                    )
                seen[key] = number
            except ValueError as exc:
                total_errors += 1
                if len(errors) < max_reported:
                    errors.append((number, str(exc)))
                continue
            rows.append(row)
    if total_errors:
        raise MotFormatError(path, errors, total_errors)
    if not rows:
        return MotTracks(
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
        )
    # Integers stay integers: through float64, ids above 2^53 would collide.
    frames = np.array([r[0] for r in rows], dtype=np.int64)
    ids = np.array([r[1] for r in rows], dtype=np.int64)
    table = np.array([r[2:] for r in rows], dtype=np.float64)
    order = np.lexsort((ids, frames))
    table = table[order]
    conf = table[:, 4]
    return MotTracks(
        frames=frames[order] - 1,
        ids=ids[order],
        boxes=table[:, :4].astype(np.float32),
        scores=np.where(conf < 0, 1.0, conf).astype(np.float32),
    )


def write_mot(
    path: str | Path,
    frames: np.ndarray,
    ids: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray | None = None,
) -> None:
    """Write tracks in the MOTChallenge format (the inverse of :func:`read_mot`).

    Parameters
    ----------
    path : str or Path
        Output text file.
    frames : np.ndarray
        int ``[R]``, 0-based frames (written 1-based).
    ids : np.ndarray
        int ``[R]``.
    boxes : np.ndarray
        float ``[R, 4]``, ``x1 y1 x2 y2``.
    scores : np.ndarray, optional
        float ``[R]``; -1 is written when None.
    """
    frames = np.asarray(frames, np.int64).reshape(-1)
    ids = np.asarray(ids, np.int64).reshape(-1)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    conf = np.full(len(frames), -1.0) if scores is None else np.asarray(scores, np.float64)
    if not (len(frames) == len(ids) == len(boxes) == len(conf)):
        raise ValueError("write_mot: frames, ids, boxes and scores must have the same length")
    with Path(path).open("w", encoding="utf-8") as fh:
        for f, i, (x1, y1, x2, y2), c in zip(frames, ids, boxes, conf, strict=True):
            fh.write(
                f"{f + 1},{i},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{c:.4f},-1,-1,-1\n"
            )


def _nms(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, iou: float) -> np.ndarray:
    """Indices kept by OpenCV's NMS (boxes x1 y1 x2 y2)."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), float(score_threshold), float(iou))
    return np.asarray(keep, dtype=np.int64).reshape(-1)


#: OpenCV's default people detector: a 64 x 128 window, run with 8 pixels of padding.
HOG_WINDOW = (64, 128)
HOG_PADDING = 8


class HogPersonDetector:
    """OpenCV's HOG + linear SVM pedestrian detector (Dalal & Triggs), no weights needed.

    Parameters
    ----------
    upscale : float
        Resize factor applied to the frame before detection: HOG's window is
        64x128 pixels, so small people are found only in an upscaled frame
        (about 3 people a frame on ``vtest.avi`` at 1.0, 7 at 2.0, at ~7x the cost).
    win_stride : int
        Window step in pixels (8 is OpenCV's usual speed / recall trade-off).
    scale : float
        Image pyramid factor between levels.
    score_threshold : float
        Minimum SVM margin kept.
    nms_iou : float
        IoU above which overlapping boxes are merged (non-maximum suppression).
    """

    def __init__(
        self,
        *,
        upscale: float = 1.0,
        win_stride: int = 8,
        scale: float = 1.05,
        score_threshold: float = 0.3,
        nms_iou: float = 0.45,
    ) -> None:
        if upscale <= 0 or win_stride <= 0 or scale <= 1.0:
            raise ValueError("HogPersonDetector: upscale and win_stride must be > 0, scale > 1")
        self.upscale = float(upscale)
        self.win_stride = int(win_stride)
        self.scale = float(scale)
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def __call__(self, image: np.ndarray) -> Detections:
        """Detect people in a BGR uint8 ``[H, W, 3]`` frame."""
        _check_image(image)
        boxes, scores = self._windows(image)
        if len(boxes) == 0:
            return Detections.empty()
        keep = _nms(boxes, scores, self.score_threshold, self.nms_iou)
        return Detections(boxes[keep], scores[keep])

    def _windows(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """HOG's grouped windows before NMS: ``(boxes float32 [K, 4], scores float32 [K])``.

        Boxes are ``x1 y1 x2 y2`` in the pixels of ``image`` (the upscale undone).
        :class:`MotionGatedHogDetector` runs it on crops, so both detectors share
        one HOG computation and differ only in what they feed it.
        """
        work = image
        if self.upscale != 1.0:
            work = cv2.resize(image, None, fx=self.upscale, fy=self.upscale)
        rects, weights = self._hog.detectMultiScale(
            work,
            winStride=(self.win_stride, self.win_stride),
            padding=(HOG_PADDING, HOG_PADDING),
            scale=self.scale,
        )
        if len(rects) == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        rects = np.asarray(rects, np.float32).reshape(-1, 4) / self.upscale
        scores = np.asarray(weights, np.float32).reshape(-1)
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        return boxes, scores


class MotionGatedHogDetector:
    """:class:`HogPersonDetector` run only where people can be: moving regions and last boxes.

    For a **static camera**. HOG costs about 300 ms a call on a 768 x 576
    frame, most of it on background where nobody is. This detector keeps a
    background model (OpenCV's MOG2 on a small grayscale copy of each frame it
    is called with) and runs the same HOG, with the same NMS, on the crops
    that can hold a person: the moving blobs of the foreground mask and the
    boxes it found on its last ``memory`` calls (people who stand still fade
    into the background but stay detected). Each region is widened by ``margin``, made
    at least as large as HOG's window plus its padding at ``upscale``, its
    origin put on the ``win_stride`` grid (so HOG's first pyramid level sees
    the windows of a full-frame run) and near regions are merged, so no person
    is cut between two crops. People who appear without moving, in parts of the
    frame that do not move, are found by a sweep: each call also searches one of
    ``full_every`` full-height bands of the frame, in turn, so every pixel is
    searched once every ``full_every`` calls at a constant cost per call (with
    ``sweep=False``, the whole frame every ``full_every``-th call instead: the
    same coverage in one burst, which sets the camera path's p99 latency). The
    whole frame is searched on the first ``warmup`` calls (the background model
    is empty) and when the regions cover more than ``max_fraction`` of the
    frame (cropping would save nothing).

    A moving camera makes the whole frame foreground: every call then falls
    back to the full frame, the background model only adding its cost.

    The detector is stateful and per camera: one instance sees one stream's
    frames in order, all of one size.

    Parameters
    ----------
    **hog_options
        :class:`HogPersonDetector`'s options (``upscale``, ``win_stride``, ``scale``,
        ``score_threshold``, ``nms_iou``), with its defaults.
    full_every : int
        Every part of the frame is searched at least once every ``full_every``
        calls (1: the whole frame on every call, the plain :class:`HogPersonDetector`).
    sweep : bool
        Cover the frame with one band per call (True) or with the whole frame
        every ``full_every``-th call (False).
    max_fraction : float
        In ``[0, 1]``: regions covering more than this fraction of the frame
        are replaced by the whole frame.
    margin : int
        Pixels (of the frame) added on every side of a blob or a previous box:
        a blob is often only the moving part of a person (legs, arms).
    background_scale : float
        In ``(0, 1]``: the background model runs on the frame resized by this
        (its cost and noise fall with the area; blobs only need to be coarse).
    min_blob_area : int
        Foreground blobs smaller than this many frame pixels are noise, not people.
    warmup : int
        The first ``warmup`` calls search the whole frame (>= 1: the background
        model knows nothing before its first frame).
    memory : int
        The boxes found on the last ``memory`` calls are searched again. HOG
        misses a person on some calls and finds them on the next: with one
        call's boxes, a person standing still is lost for good after one miss
        (on ``vtest.avi``, detector every 5th frame, 2 keeps 95-97% of
        full-frame HOG's tracks per frame, 1 keeps 90-93%, 3 no more than 2).

    Attributes
    ----------
    hog : HogPersonDetector
        The detector run on each region.
    calls, full_calls, crop_calls : int
        Calls so far; those that searched the whole frame; those that searched
        regions only (possibly none, when nothing moved and nobody was there).
    last_regions : np.ndarray
        int32 ``[R, 4]``, the regions of the last call (:meth:`regions`).
    """

    def __init__(
        self,
        *,
        full_every: int = 10,
        sweep: bool = True,
        max_fraction: float = 0.6,
        margin: int = 16,
        background_scale: float = 0.25,
        min_blob_area: int = 256,
        warmup: int = 1,
        memory: int = 2,
        **hog_options: Any,
    ) -> None:
        # HogPersonDetector declares and validates its own options (and their defaults).
        self.hog = HogPersonDetector(**hog_options)
        checks = [
            ("full_every", full_every, lambda v: v >= 1, "an integer >= 1"),
            ("max_fraction", max_fraction, lambda v: 0 <= v <= 1, "in [0, 1]"),
            ("margin", margin, lambda v: v >= 0, "an integer >= 0"),
            ("background_scale", background_scale, lambda v: 0 < v <= 1, "in (0, 1]"),
            ("min_blob_area", min_blob_area, lambda v: v >= 0, "an integer >= 0"),
            ("warmup", warmup, lambda v: v >= 1, "an integer >= 1"),
            ("memory", memory, lambda v: v >= 0, "an integer >= 0"),
        ]
        integers = {"full_every", "margin", "min_blob_area", "warmup", "memory"}
        for name, value, ok, what in checks:
            is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            is_real = is_int or isinstance(value, (float, np.floating))
            # NaN fails every comparison, so it is refused too.
            if not (is_int if name in integers else is_real) or not ok(value):
                raise ValueError(f"MotionGatedHogDetector: {name} must be {what}, got {value!r}")
        if not isinstance(sweep, bool):
            raise ValueError(f"MotionGatedHogDetector: sweep must be True or False, got {sweep!r}")
        self.full_every = int(full_every)
        self.sweep = sweep
        self.max_fraction = float(max_fraction)
        self.margin = int(margin)
        self.background_scale = float(background_scale)
        self.min_blob_area = int(min_blob_area)
        self.warmup = int(warmup)
        self.memory = int(memory)
        # HOG's window plus its padding on both sides, in frame pixels: a smaller
        # crop holds no complete window (and too few neighbours for HOG's grouping).
        self.min_size = (
            math.ceil((HOG_WINDOW[0] + 2 * HOG_PADDING) / self.hog.upscale),
            math.ceil((HOG_WINDOW[1] + 2 * HOG_PADDING) / self.hog.upscale),
        )
        self.calls = 0
        self.full_calls = 0
        self.crop_calls = 0
        self.last_regions = np.zeros((0, 4), np.int32)
        self._area_sum = 0.0
        self._size: tuple[int, int] | None = None
        self._background: cv2.BackgroundSubtractorMOG2 | None = None
        # The boxes of the last `memory` calls, newest last.
        self._previous: deque[np.ndarray] = deque(maxlen=self.memory)
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))

    @property
    def area_fraction(self) -> float:
        """Mean fraction of the frame's area HOG ran on per call (1.0: full-frame HOG; 0 before any call)."""
        return self._area_sum / self.calls if self.calls else 0.0

    def __call__(self, image: np.ndarray) -> Detections:
        """Detect people in a BGR uint8 ``[H, W, 3]`` frame of this detector's camera.

        Parameters
        ----------
        image : np.ndarray
            uint8 ``[H, W, 3]`` BGR, of the size of the first frame this
            detector was called with.

        Returns
        -------
        Detections
            float32 boxes ``[K, 4]`` ``x1 y1 x2 y2`` in frame pixels and their scores.

        Raises
        ------
        TypeError
            ``image`` is not a uint8 array.
        ValueError
            ``image`` is not ``[H, W, 3]``, or its size differs from the first frame's.
        """
        regions = self.regions(image)
        boxes, scores = [], []
        for x1, y1, x2, y2 in regions.tolist():
            # A view, no copy: OpenCV takes the strided rows as an ROI.
            b, s = self.hog._windows(image[y1:y2, x1:x2])
            boxes.append(b + np.array([x1, y1, x1, y1], np.float32))
            scores.append(s)
        if not boxes or not sum(len(s) for s in scores):
            self._previous.append(np.zeros((0, 4), np.float32))
            return Detections.empty()
        all_boxes, all_scores = np.concatenate(boxes), np.concatenate(scores)
        # One NMS over every crop's boxes: merged regions do not overlap, but a
        # person near a region's edge may be found in two of them.
        keep = _nms(all_boxes, all_scores, self.hog.score_threshold, self.hog.nms_iou)
        dets = Detections(all_boxes[keep], all_scores[keep])
        self._previous.append(dets.boxes)
        return dets

    def regions(self, image: np.ndarray) -> np.ndarray:
        """The regions the next HOG run searches, updating the background model with ``image``.

        :meth:`__call__` calls it once per frame; calling it on its own advances
        the background model and the call count the same way (the boxes of the
        previous calls are those of the last :meth:`__call__` calls).

        Parameters
        ----------
        image : np.ndarray
            uint8 ``[H, W, 3]`` BGR.

        Returns
        -------
        np.ndarray
            int32 ``[R, 4]`` ``x1 y1 x2 y2`` in frame pixels (``x2``, ``y2``
            exclusive), disjoint (but for the sweep's band, the last row, which may
            overlap the others), ``x1`` and ``y1`` multiples of ``win_stride``,
            each at least :attr:`min_size` (smaller only in a smaller frame);
            ``[[0, 0, W, H]]`` when the whole frame is searched, ``[0, 4]`` when
            nothing moved and nobody was found last time.

        Raises
        ------
        TypeError
            ``image`` is not a uint8 array.
        ValueError
            ``image`` is not ``[H, W, 3]``, or its size differs from the first frame's.
        """
        _check_image(image)
        h, w = image.shape[:2]
        if self._size is None:
            self._size = (w, h)
        elif self._size != (w, h):
            raise ValueError(
                f"MotionGatedHogDetector: frame is {w}x{h} but the first frame was "
                f"{self._size[0]}x{self._size[1]}; the background model is per frame size "
                f"(use one detector per camera)"
            )
        candidates = np.concatenate([self._foreground_boxes(image), *self._previous])
        call, self.calls = self.calls, self.calls + 1
        regions = self._grow_and_merge(candidates, w, h)
        fraction = float(np.prod(regions[:, 2:] - regions[:, :2], axis=1).sum()) / (w * h)
        # full_every = 1 is the whole frame on every call, sweep or not.
        periodic = (not self.sweep or self.full_every == 1) and call % self.full_every == 0
        full = call < self.warmup or periodic or fraction > self.max_fraction
        if self.sweep and not full and self.full_every > 1:
            # This call's band of the sweep, searched as a region of its own (merged with
            # the others, its union with them would span the frame's height and width):
            # full height, 1 / full_every of the width plus HOG's minimum width, so
            # that consecutive bands overlap by a whole window and nobody falls between.
            k, stride = call % self.full_every, self.hog.win_stride
            x2 = min(w, -(-(k + 1) * w // self.full_every) + self.min_size[0])
            # At the right edge, moved left to keep HOG's minimum width.
            x1 = max(0, min(k * w // self.full_every, x2 - self.min_size[0])) // stride * stride
            regions = np.concatenate([regions, np.array([[x1, 0, x2, h]], np.int32)])
            fraction = min(1.0, fraction + (x2 - x1) / w)
        if full:
            regions = np.array([[0, 0, w, h]], np.int32)
            fraction = 1.0
            self.full_calls += 1
        else:
            self.crop_calls += 1
        self._area_sum += fraction
        self.last_regions = regions
        return regions

    def _foreground_boxes(self, image: np.ndarray) -> np.ndarray:
        """Bounding boxes (float32 ``[B, 4]``, frame pixels) of the moving blobs in ``image``."""
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        s = self.background_scale
        if s != 1.0:
            small = cv2.resize(gray, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        else:
            small = gray
        if self._background is None:
            # No shadows: a shadow is still "something moved here", and MOG2's
            # shadow test costs time and marks them grey (127), not foreground.
            self._background = cv2.createBackgroundSubtractorMOG2(detectShadows=False)
        mask = self._background.apply(small)
        # Open: drop isolated noisy pixels; dilate: reconnect a person split into parts.
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
        mask = cv2.dilate(mask, self._kernel, iterations=2)
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        stats = stats[1:]  # label 0 is the background
        stats = stats[stats[:, cv2.CC_STAT_AREA] >= self.min_blob_area * s * s]
        if len(stats) == 0:
            return np.zeros((0, 4), np.float32)
        xy = stats[:, :2].astype(np.float32)
        wh = stats[:, 2:4].astype(np.float32)
        return np.concatenate([xy, xy + wh], axis=1) / np.float32(s)

    def _grow_and_merge(self, boxes: np.ndarray, w: int, h: int) -> np.ndarray:
        """Candidate boxes -> disjoint, grid-aligned, large-enough regions (int32 ``[R, 4]``)."""
        if len(boxes) == 0:
            return np.zeros((0, 4), np.int32)
        stride = self.hog.win_stride
        min_w, min_h = min(self.min_size[0], w), min(self.min_size[1], h)
        b = boxes.astype(np.float64)
        b = np.concatenate([b[:, :2] - self.margin, b[:, 2:] + self.margin], axis=1)
        # At least the minimum size, grown about the box's centre.
        centre = (b[:, :2] + b[:, 2:]) / 2
        half = np.maximum(b[:, 2:] - b[:, :2], [min_w, min_h]) / 2
        b = np.concatenate([centre - half, centre + half], axis=1)
        # Inside the frame, shifted rather than clipped so the minimum size holds at the edges.
        shift = np.maximum(0, -b[:, :2]) - np.maximum(0, b[:, 2:] - [w, h])
        b += np.concatenate([shift, shift], axis=1)
        lo = np.floor(np.clip(b[:, :2], 0, None) / stride) * stride  # snapped down: grows
        hi = np.minimum(np.ceil(b[:, 2:]), [w, h])
        regions = np.concatenate([lo, np.maximum(hi, lo + [min_w, min_h])], axis=1)
        regions = np.minimum(regions, [w, h, w, h]).astype(np.int64)
        return _merge_near(regions, gap=stride).astype(np.int32)


class OnnxPersonDetector:
    """A user's ONNX person detector, run with OpenCV's DNN module.

    Model format (what the ONNX file must look like):

    * **input**: one float32 tensor ``[1, 3, H, W]``, RGB, values in ``[0, 1]``
      (the frame is resized to ``H x W``; give ``input_size`` when the model's
      input shape is dynamic; the default is 640 x 640);
    * **output**: one float32 tensor ``[K, 6]`` or ``[1, K, 6]``, one row per
      detection: ``x1, y1, x2, y2, score, class`` with the box in the pixels of
      the ``H x W`` input. Rows with ``class == person_class`` (0, COCO's
      "person", by default) and ``score >= score_threshold`` are kept, then
      non-maximum suppression is applied. This is the post-NMS layout of most
      exported YOLO / RT-DETR "end-to-end" detectors; a model with a raw
      anchor grid needs its decoding added to the graph first.

    OpenCV's DNN module runs it, so no other runtime is needed next to
    ``opencv-python-headless``.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file.
    input_size : tuple[int, int], optional
        ``(H, W)`` the frame is resized to.
    score_threshold : float
        Minimum score kept.
    nms_iou : float
        IoU for non-maximum suppression.
    person_class : int
        The class id of "person" in the model's output.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        input_size: tuple[int, int] = (640, 640),
        score_threshold: float = 0.4,
        nms_iou: float = 0.5,
        person_class: int = 0,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX detector {self.path} does not exist")
        try:
            self._net = cv2.dnn.readNetFromONNX(str(self.path))
        except cv2.error as exc:
            raise ValueError(
                f"cannot load ONNX detector {self.path} with OpenCV DNN "
                f"(corrupt file or unsupported operator): {str(exc).strip()}"
            ) from exc
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.person_class = int(person_class)

    def __call__(self, image: np.ndarray) -> Detections:
        """Detect people in a BGR uint8 ``[H, W, 3]`` frame."""
        _check_image(image)
        h_in, w_in = self.input_size
        blob = cv2.dnn.blobFromImage(
            image, scalefactor=1.0 / 255.0, size=(w_in, h_in), swapRB=True, crop=False
        )
        self._net.setInput(blob)
        try:
            out = np.asarray(self._net.forward(), np.float32)
        except cv2.error as exc:
            raise ValueError(f"ONNX detector {self.path} failed: {str(exc).strip()}") from exc
        if out.ndim == 3 and out.shape[0] == 1:
            out = out[0]
        if out.ndim != 2 or out.shape[1] != 6:
            raise ValueError(
                f"ONNX detector {self.path}: output must be [K, 6] or [1, K, 6] "
                f"(x1, y1, x2, y2, score, class), got shape {list(out.shape)}"
            )
        if not np.isfinite(out).all():
            raise ValueError(f"ONNX detector {self.path}: output holds NaN or infinite values")
        rows = out[(np.rint(out[:, 5]) == self.person_class) & (out[:, 4] >= self.score_threshold)]
        h, w = image.shape[:2]
        boxes = rows[:, :4] * np.array([w / w_in, h / h_in, w / w_in, h / h_in], np.float32)
        boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
        scores = rows[:, 4].astype(np.float32)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores = boxes[valid], scores[valid]
        keep = _nms(boxes, scores, self.score_threshold, self.nms_iou)
        return Detections(boxes[keep], scores[keep])


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 BGR image, got {getattr(image, 'dtype', type(image))}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected an image of shape [H, W, 3], got {list(image.shape)}")


def hog_detector(
    regions: str, *, upscale: float = 1.0
) -> HogPersonDetector | MotionGatedHogDetector:
    """The built-in detector for ``--hog-regions`` (``reclnet stream`` and ``reclnet extract``).

    Parameters
    ----------
    regions : str
        ``"frame"`` (:class:`HogPersonDetector`) or ``"motion"``
        (:class:`MotionGatedHogDetector`, static cameras).
    upscale : float
        HOG's upscale.

    Returns
    -------
    HogPersonDetector or MotionGatedHogDetector
        A new detector (the motion-gated one is per camera: one per video).
    """
    kinds = {"frame": HogPersonDetector, "motion": MotionGatedHogDetector}
    if regions not in kinds:
        raise ValueError(f"unknown HOG regions {regions!r}; use one of {list(kinds)}")
    return kinds[regions](upscale=upscale)


def _merge_near(regions: np.ndarray, gap: int) -> np.ndarray:
    """Replace regions closer than ``gap`` pixels (or overlapping) by their union, until none are.

    ``regions`` int ``[R, 4]`` ``x1 y1 x2 y2``; returns pairwise disjoint regions
    (farther apart than ``gap``) covering all of them. The union of boxes whose
    corners lie on a grid has its corners on the grid too. Quadratic per pass,
    but a frame holds tens of regions at most.
    """
    boxes = [list(r) for r in regions.tolist()]
    merged = True
    while merged:
        merged = False
        out: list[list[int]] = []
        for box in boxes:
            for other in out:
                if (
                    box[0] <= other[2] + gap
                    and other[0] <= box[2] + gap
                    and box[1] <= other[3] + gap
                    and other[1] <= box[3] + gap
                ):
                    other[:] = [
                        min(box[0], other[0]),
                        min(box[1], other[1]),
                        max(box[2], other[2]),
                        max(box[3], other[3]),
                    ]
                    merged = True
                    break
            else:
                out.append(box)
        boxes = out
    return np.array(boxes, np.int64).reshape(-1, 4)
