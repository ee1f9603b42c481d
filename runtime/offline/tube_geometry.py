"""Tube geometry: spatial, temporal and spatio-temporal IoU, and tube NMS (numpy only).

One implementation of these overlaps serves the online scorer's optional NMS,
offline localization and video-AP evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .tubes import Tube

__all__ = ["spatial_iou", "temporal_iou", "tube_iou", "nms_tubes"]


def spatial_iou(a: np.ndarray, b: np.ndarray, *, plus_one: bool = False) -> np.ndarray:
    """Row-wise IoU of two box arrays.

    Parameters
    ----------
    a, b : np.ndarray
        float [N, 4] ``x1 y1 x2 y2``.
    plus_one : bool
        Pixel-inclusive convention: width ``x2 - x1 + 1`` (ACT, VOC devkit).

    Returns
    -------
    np.ndarray
        float64 [N]; 0 where the union is empty.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    one = 1.0 if plus_one else 0.0
    iw = np.maximum(0.0, np.minimum(a[:, 2], b[:, 2]) + one - np.maximum(a[:, 0], b[:, 0]))
    ih = np.maximum(0.0, np.minimum(a[:, 3], b[:, 3]) + one - np.maximum(a[:, 1], b[:, 1]))
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0] + one) * (a[:, 3] - a[:, 1] + one)
    area_b = (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def temporal_iou(
    first_a: int, last_a: int, first_b: int, last_b: int, *, inclusive: bool = True
) -> float:
    """Temporal IoU of two frame intervals given by their first and last frames.

    ``inclusive``: intersection ``tmax - tmin + 1`` over union ``max(last) - min(first) + 1``
    (frame counts, ACT). Otherwise ``tmax - tmin`` over ``max(last) - min(first)``
    (MultiSports); there two identical one-frame intervals (union 0) have IoU 1.
    Disjoint intervals (``tmax < tmin``) have IoU 0 either way.
    """
    tmin, tmax = max(first_a, first_b), min(last_a, last_b)
    if tmax < tmin:
        return 0.0
    one = 1 if inclusive else 0
    union = max(last_a, last_b) - min(first_a, first_b) + one
    if union == 0:
        return 1.0
    return (tmax - tmin + one) / union


def tube_iou(a: Tube, b: Tube, *, plus_one: bool = False, inclusive: bool = True) -> float:
    """Spatio-temporal IoU: temporal IoU x mean spatial IoU over the frames both tubes cover.

    Parameters
    ----------
    a, b : Tube
        Tubes (consecutive frames).
    plus_one : bool
        Pixel-inclusive box areas (see :func:`spatial_iou`).
    inclusive : bool
        Temporal IoU convention (see :func:`temporal_iou`).

    Returns
    -------
    float
        In [0, 1].
    """
    t = temporal_iou(a.first_frame, a.last_frame, b.first_frame, b.last_frame, inclusive=inclusive)
    if t == 0.0:
        return 0.0
    tmin, tmax = max(a.first_frame, b.first_frame), min(a.last_frame, b.last_frame)
    ba = a.boxes[tmin - a.first_frame : tmax - a.first_frame + 1]
    bb = b.boxes[tmin - b.first_frame : tmax - b.first_frame + 1]
    return t * float(np.mean(spatial_iou(ba, bb, plus_one=plus_one)))


def nms_tubes(
    tubes: Sequence[Tube], iou: float = 0.2, *, plus_one: bool = False, inclusive: bool = True
) -> list[Tube]:
    """Greedy spatio-temporal non-maximum suppression per (video, label).

    Tubes are visited by decreasing score (ties: input order); a tube is kept unless its
    :func:`tube_iou` with an already kept tube of the same video and label is ``> iou``.

    Parameters
    ----------
    tubes : sequence of Tube
        Detections (every tube needs a score).
    iou : float
        Overlap above which the lower-scored tube is suppressed.

    Returns
    -------
    list of Tube
        The kept tubes by decreasing score (ties: input order).
    """
    if any(t.score is None for t in tubes):
        raise ValueError("nms_tubes needs scored tubes (a tube has score None)")
    order = sorted(range(len(tubes)), key=lambda i: -tubes[i].score)  # stable
    kept: dict[tuple[str, int], list[Tube]] = {}
    out = []
    for i in order:
        t = tubes[i]
        group = kept.setdefault((t.video, t.label), [])
        if all(tube_iou(t, k, plus_one=plus_one, inclusive=inclusive) <= iou for k in group):
            group.append(t)
            out.append(t)
    return out
