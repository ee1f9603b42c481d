"""Linking per-frame person detections into tracks with stable ids (norfair).

The tracker is Tryolabs' norfair, through its maintained fork
``norfair-enough`` (imported as ``norfair``): a Kalman filter per object and
IoU matching, the SORT recipe that ByteTrack and BoxMOT build on. It was
chosen because it needs only numpy, scipy and rich (``supervision`` /
``trackers`` pull in the non-headless ``opencv-python`` 5, the original
``norfair`` pins numpy < 2, ``motpy`` and the ``bytetracker`` packages are
unmaintained since 2021-2023), it takes detections from any detector, and its
``initialization_delay`` / ``hit_counter_max`` give the two knobs a person-track
scorer cares about: no track from a single spurious box, and no id switch when
a person is missed for a few frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from norfair import Detection, Tracker

from reclnet.runtime.camera.persons import Detections


@dataclass(frozen=True)
class Tracks:
    """The live tracks after one frame.

    Attributes
    ----------
    ids : np.ndarray
        int64 ``[N]``, stable track ids (1, 2, ... in order of creation).
    boxes : np.ndarray
        float32 ``[N, 4]``, ``x1 y1 x2 y2``: the matched detection's box, or
        the Kalman prediction for a track missed in this frame.
    scores : np.ndarray
        float32 ``[N]``, the matched detection's score (0 when missed).
    """

    ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls) -> Tracks:
        return cls(np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0, np.float32))


class PersonTracker:
    """IoU + Kalman multi-person tracker.

    Parameters
    ----------
    iou_threshold : float
        Minimum IoU between a detection and a track's predicted box for a match.
    init_frames : int
        Consecutive detections before a track is reported (filters one-off
        false positives).
    max_missed : int
        Frames a track survives without a detection (its box is predicted).
    frame_size : tuple[int, int], optional
        ``(width, height)``: boxes are clipped to the frame when given.
    """

    def __init__(
        self,
        *,
        iou_threshold: float = 0.3,
        init_frames: int = 2,
        max_missed: int = 5,
        frame_size: tuple[int, int] | None = None,
    ) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if init_frames < 1 or max_missed < 0:
            raise ValueError("init_frames must be >= 1 and max_missed >= 0")
        # norfair counts "hits": +1 per match, -1 per miss, the object dies below 0.
        self._tracker = Tracker(
            distance_function="iou",
            distance_threshold=1.0 - float(iou_threshold),
            hit_counter_max=max(int(max_missed), int(init_frames)),
            initialization_delay=int(init_frames) - 1,
        )
        self.frame_size = frame_size

    def predict(self) -> Tracks:
        """Advance one frame on which the detector was not run (Kalman prediction only)."""
        return self._report(self._tracker.update(detections=None), set())

    def update(self, detections: Detections, *, period: int = 1) -> Tracks:
        """Advance one frame.

        Parameters
        ----------
        detections : Detections
            This frame's person boxes (possibly none).
        period : int
            Frames since the detector last ran (> 1 when it runs on every
            n-th frame only and :meth:`predict` fills the frames between).

        Returns
        -------
        Tracks
            The confirmed tracks alive after this frame.
        """
        dets = [
            Detection(points=box.reshape(2, 2).astype(np.float64), scores=np.array([s, s]))
            for box, s in zip(detections.boxes, detections.scores, strict=True)
        ]
        objects = self._tracker.update(detections=dets, period=int(period))
        return self._report(objects, {id(d) for d in dets})

    def _report(self, objects: list, current: set[int]) -> Tracks:
        ids, boxes, scores = [], [], []
        for obj in objects:
            if obj.id is None:
                continue
            matched = obj.last_detection is not None and id(obj.last_detection) in current
            if matched:
                box = obj.last_detection.points.reshape(4)
                score = float(obj.last_detection.scores[0])
            else:
                box = np.asarray(obj.estimate, np.float64).reshape(4)
                score = 0.0
            ids.append(int(obj.id))
            boxes.append(box)
            scores.append(score)
        if not ids:
            return Tracks.empty()
        out = np.asarray(boxes, np.float32)
        # Keep x1 <= x2, y1 <= y2 even if the Kalman prediction flipped a corner.
        out = np.concatenate(
            [np.minimum(out[:, :2], out[:, 2:]), np.maximum(out[:, :2], out[:, 2:])], axis=1
        )
        if self.frame_size is not None:
            w, h = self.frame_size
            out = np.clip(out, 0, np.array([w, h, w, h], np.float32))
        order = np.argsort(ids, kind="stable")
        return Tracks(
            np.asarray(ids, np.int64)[order],
            out[order],
            np.asarray(scores, np.float32)[order],
        )
