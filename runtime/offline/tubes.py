"""Action tubes and their JSON Lines file format (ground truth and detections).

One tube per line, UTF-8, ``\\n`` separated::

    {"video": "Basketball/v_Basketball_g01_c01", "label": 0, "score": 0.93,
     "tube": [[12, 10.0, 20.0, 60.5, 120.0], [13, 11.0, 20.0, 61.5, 121.0]]}

* ``video``: any non-empty string identifying the video;
* ``label``: 0-based class index (``0 <= label < num_classes`` when the reader is
  given ``num_classes``);
* ``score``: finite number, required for detections, absent or null for ground truth;
* ``tube``: non-empty list of ``[frame, x1, y1, x2, y2]`` rows, frames consecutive
  integers (``frame[i+1] == frame[i] + 1``), boxes finite with ``x1 <= x2``,
  ``y1 <= y2``, in pixels;
* ``keyframes`` (optional, ground truth only): frames whose boxes were annotated by
  hand (used by the ``daly`` evaluation preset); each must lie inside the tube.

Blank lines are ignored. Every problem is reported as ``ValueError`` subclass
:class:`TubeFormatError` whose message starts with ``<file>:<line>:``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.jsonsafe import JSONLimitError, loads_bounded

__all__ = ["Tube", "TubeFormatError", "read_tubes", "write_tubes", "tube_from_dict", "tube_to_dict"]


#: Deepest nesting of a tube line (a real one nests 3 deep: object, rows, row).
MAX_LINE_DEPTH = 8
#: Longest tube line (a tube of 100,000 boxes is about 5 MB).
MAX_LINE_BYTES = 256 << 20


class TubeFormatError(ValueError):
    """A tube file (or tube object) is malformed; the message names file, line and problem."""


@dataclass(frozen=True, eq=False)
class Tube:
    """A spatio-temporal tube: one box per consecutive frame of one video.

    Attributes
    ----------
    video : str
        Video identifier.
    label : int
        0-based class index.
    frames : np.ndarray
        int64 [T], consecutive frame numbers (T >= 1).
    boxes : np.ndarray
        float32 [T, 4], ``x1 y1 x2 y2`` per frame.
    score : float or None
        Detection score (None for ground truth).
    keyframes : np.ndarray or None
        int64 [K], sorted frames annotated by hand (ground truth of sparsely annotated
        datasets such as DALY); None means every frame.
    """

    video: str
    label: int
    frames: np.ndarray
    boxes: np.ndarray
    score: float | None = None
    keyframes: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        problem = _tube_problem(self)
        if problem is not None:
            raise TubeFormatError(f"invalid tube for video {self.video!r}: {problem}")

    @property
    def first_frame(self) -> int:
        return int(self.frames[0])

    @property
    def last_frame(self) -> int:
        return int(self.frames[-1])

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def with_score(self, score: float | None) -> Tube:
        """A copy with another score (arrays shared)."""
        return Tube(self.video, self.label, self.frames, self.boxes, score, self.keyframes)

    def __repr__(self) -> str:
        return (
            f"Tube(video={self.video!r}, label={self.label}, frames={self.first_frame}.."
            f"{self.last_frame}, score={self.score})"
        )


def _tube_problem(t: Tube) -> str | None:
    """Normalise the arrays of ``t`` in place (frozen: via object.__setattr__) or say why not."""
    if not isinstance(t.video, str) or not t.video:
        return "video must be a non-empty string"
    if isinstance(t.label, bool) or not isinstance(t.label, int | np.integer) or t.label < 0:
        return f"label must be a non-negative integer, got {t.label!r}"
    object.__setattr__(t, "label", int(t.label))
    frames = np.asarray(t.frames)
    if frames.ndim != 1 or frames.shape[0] == 0:
        return f"frames must be a non-empty 1-D array, got shape {frames.shape}"
    if frames.dtype.kind not in "iu":
        if frames.dtype.kind != "f" or not np.all(
            np.isfinite(frames) & (frames == np.round(frames))
        ):
            return f"frames must be integers, got dtype {frames.dtype}"
    frames = frames.astype(np.int64)
    bad = np.flatnonzero(np.diff(frames) != 1)
    if bad.size:
        i = int(bad[0])
        return f"frames not consecutive: frame {frames[i]} is followed by {frames[i + 1]}"
    boxes = np.asarray(t.boxes)
    if boxes.shape != (frames.shape[0], 4):
        return f"boxes must have shape ({frames.shape[0]}, 4), got {boxes.shape}"
    if boxes.dtype.kind not in "iuf":
        return f"boxes must be numeric, got dtype {boxes.dtype}"
    boxes = np.ascontiguousarray(boxes, dtype=np.float32)
    if not np.all(np.isfinite(boxes)):
        i = int(np.flatnonzero(~np.all(np.isfinite(boxes), axis=1))[0])
        return f"non-finite box at frame {frames[i]}"
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if inverted.any():
        i = int(np.flatnonzero(inverted)[0])
        return f"box at frame {frames[i]} has x2 < x1 or y2 < y1: {boxes[i].tolist()}"
    if t.score is not None:
        if isinstance(t.score, bool) or not isinstance(t.score, int | float | np.number):
            return f"score must be a number, got {t.score!r}"
        if not math.isfinite(float(t.score)):
            return f"score must be finite, got {t.score!r}"
        object.__setattr__(t, "score", float(t.score))
    if t.keyframes is not None:
        kf = np.asarray(t.keyframes)
        if kf.ndim != 1 or kf.dtype.kind not in "iu":
            return "keyframes must be a 1-D integer array"
        kf = np.unique(kf.astype(np.int64))
        if kf.size == 0 or kf[0] < frames[0] or kf[-1] > frames[-1]:
            return f"keyframes must be non-empty and within frames {frames[0]}..{frames[-1]}"
        object.__setattr__(t, "keyframes", kf)
    object.__setattr__(t, "frames", frames)
    object.__setattr__(t, "boxes", boxes)
    return None


def tube_to_dict(tube: Tube) -> dict[str, Any]:
    """The JSON object of one tube (see the module docstring)."""
    rows = np.concatenate([tube.frames[:, None].astype(np.float64), tube.boxes], axis=1).tolist()
    for row in rows:
        row[0] = int(row[0])
    out: dict[str, Any] = {"video": tube.video, "label": tube.label}
    if tube.score is not None:
        out["score"] = tube.score
    out["tube"] = rows
    if tube.keyframes is not None:
        out["keyframes"] = tube.keyframes.tolist()
    return out


def tube_from_dict(obj: Any, *, num_classes: int | None = None) -> Tube:
    """Build a tube from its JSON object; raises ``TubeFormatError`` naming the problem.

    Parameters
    ----------
    obj : dict
        Parsed JSON object.
    num_classes : int, optional
        When given, labels must be below it.
    """
    if not isinstance(obj, dict):
        raise TubeFormatError(f"expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("video", "label", "tube") if k not in obj]
    if missing:
        raise TubeFormatError(f"missing key(s) {', '.join(missing)}")
    unknown = set(obj) - {"video", "label", "score", "tube", "keyframes"}
    if unknown:
        raise TubeFormatError(f"unknown key(s) {', '.join(sorted(unknown))}")
    label = obj["label"]
    if isinstance(label, bool) or not isinstance(label, int):
        raise TubeFormatError(f"label must be an integer, got {label!r}")
    if label < 0 or (num_classes is not None and label >= num_classes):
        limit = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
        raise TubeFormatError(f"unknown label {label} (expected {limit})")
    score = obj.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
        raise TubeFormatError(f"score must be a number, got {score!r}")
    if score is not None and not math.isfinite(score):
        raise TubeFormatError(f"score must be finite, got {score!r}")
    rows = obj["tube"]
    if not isinstance(rows, list) or not rows:
        raise TubeFormatError("tube must be a non-empty list of [frame, x1, y1, x2, y2]")
    for i, row in enumerate(rows):
        if (
            not isinstance(row, list)
            or len(row) != 5
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in row)
        ):
            raise TubeFormatError(f"tube row {i} must be 5 numbers [frame, x1, y1, x2, y2]")
        if not isinstance(row[0], int):
            raise TubeFormatError(f"tube row {i}: frame must be an integer, got {row[0]!r}")
    arr = np.asarray(rows, dtype=np.float64)
    keyframes = obj.get("keyframes")
    if keyframes is not None:
        if not isinstance(keyframes, list) or not all(
            isinstance(k, int) and not isinstance(k, bool) for k in keyframes
        ):
            raise TubeFormatError("keyframes must be a list of integer frames")
        keyframes = np.asarray(keyframes, dtype=np.int64)
    frames = np.asarray([r[0] for r in rows], dtype=np.int64)
    return Tube(obj["video"], label, frames, arr[:, 1:5], score, keyframes)


def read_tubes(
    path: str | os.PathLike[str],
    *,
    num_classes: int | None = None,
    require_score: bool | None = None,
) -> list[Tube]:
    """Read a JSON Lines tube file.

    Parameters
    ----------
    path : path-like
        The file.
    num_classes : int, optional
        When given, a label outside ``0..num_classes-1`` is an error.
    require_score : bool, optional
        True (detections): every tube must have a score. False (ground truth): none may.
        None: either.

    Returns
    -------
    list of Tube
        In file order.

    Raises
    ------
    TubeFormatError
        ``<path>:<line>: <problem>`` for a malformed line, an empty file or a file whose
        last line is cut short.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TubeFormatError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TubeFormatError(f"{path}:{line}: not UTF-8 text") from exc
    tubes: list[Tube] = []
    lines = text.split("\n")
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            # NaN parses: tube_from_dict then names the field ("score must be finite").
            obj = loads_bounded(
                line, max_depth=MAX_LINE_DEPTH, max_bytes=MAX_LINE_BYTES, allow_nan=True
            )
        except JSONLimitError as exc:
            last = lineno == len(lines) and not text.endswith("\n")
            hint = " (file truncated?)" if last else ""
            problem = str(exc).removeprefix("invalid JSON: ")
            kind = "invalid JSON" if problem != str(exc) else "refused JSON"
            raise TubeFormatError(f"{path}:{lineno}: {kind}{hint}: {problem}") from None
        try:
            tube = tube_from_dict(obj, num_classes=num_classes)
        except TubeFormatError as exc:
            raise TubeFormatError(f"{path}:{lineno}: {exc}") from None
        if require_score is True and tube.score is None:
            raise TubeFormatError(f"{path}:{lineno}: detection without a score")
        if require_score is False and tube.score is not None:
            raise TubeFormatError(f"{path}:{lineno}: ground-truth tube must not have a score")
        tubes.append(tube)
    if not tubes:
        raise TubeFormatError(f"{path}:1: empty file: expected one JSON tube per line")
    return tubes


def write_tubes(path: str | os.PathLike[str], tubes: Iterable[Tube]) -> int:
    """Write tubes as JSON Lines (see the module docstring); returns the number written."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for tube in tubes:
            f.write(json.dumps(tube_to_dict(tube), separators=(",", ":")))
            f.write("\n")
            n += 1
    return n
