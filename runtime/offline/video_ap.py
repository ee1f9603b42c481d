"""Spatio-temporal detection evaluation: video-AP, frame-AP, presets and classification-only AP.

Published evaluation code disagrees in details that change the numbers, so the rules
are chosen by a named preset (:data:`PRESETS`):

``ucf101-act`` (ACT, Kalogeiton et al. 2017, ``ACT_utils.py``)
    * box area ``(x2 - x1 + 1) * (y2 - y1 + 1)`` and intersection with the same ``+1``;
    * temporal IoU with inclusive frame counts: ``(tmax - tmin + 1) /
      (max(last) - min(first) + 1)``; spatial IoU averaged over the frames both cover;
    * detections of a class are visited by decreasing score; each is compared with the
      *remaining* ground truths of its video and class, takes the best (first on ties)
      and, if IoU >= threshold, is a true positive and removes that ground truth;
    * AP is the trapezoidal area under the raw (precision, recall) points, the first
      point being (precision 1, recall 0): ``sum((r[i+1] - r[i]) * (p[i+1] + p[i]) / 2)``.
``multisports`` (MultiSports / MMAction2 port of ACT)
    * no ``+1`` in box areas;
    * temporal IoU ``(tmax - tmin) / (max(last) - min(first))`` over first/last frames
      (so a one-frame overlap has IoU 0; two identical one-frame tubes, where the
      reference divides by zero, have temporal IoU 1 here);
    * each detection is compared with *all* ground truths of its video and class, takes
      the best; it is a true positive if IoU >= threshold and that ground truth is not
      already matched, otherwise a false positive;
    * AP is VOC all-point interpolated: precision made monotone from the right, summed
      over the recall steps.
``daly`` (DALY, Weinzaepfel et al. 2016)
    * no ``+1``; inclusive temporal IoU; the spatial IoU is averaged over the ground
      truth's annotated keyframes only (``Tube.keyframes``, every frame when None), a
      keyframe the detection does not cover counting 0; matching and AP as ``multisports``.

Common rules: detections are ranked by decreasing score, ties in input order (stable
sort). A class without ground truth has AP NaN and is left out of every mean (the
references divide by zero there); a class with ground truth but no detection has AP 0.
mAP is the mean AP over classes with ground truth; the short-class mAP is the same mean
over the paper's short classes (:data:`SHORT_CLASSES`) present in ``class_names``;
``0.5:0.95`` is the mean of the mAPs at 0.50, 0.55, ..., 0.95. APs are fractions in
[0, 1]; tables print percentages.

Frame-AP (ACT ``frameAP``): every box of every detection tube is a detection scored
with its tube's score; in each (video, frame) boxes are matched greedily by decreasing
score to the remaining ground-truth boxes of the class with 2-D IoU >= threshold; AP by
the preset's AP rule.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reclnet.config import PostprocessConfig

from .localize import segment_score
from .tube_geometry import spatial_iou, temporal_iou, tube_iou
from .tubes import Tube

__all__ = [
    "Preset",
    "PRESETS",
    "DEFAULT_THRESHOLDS",
    "COCO_THRESHOLDS",
    "SHORT_CLASSES",
    "VideoAPResult",
    "evaluate_video_ap",
    "frame_ap",
    "average_precision",
    "preset_tube_iou",
    "ScoredTrack",
    "trimmed_detections",
    "evaluate_classification",
]

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75)
COCO_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
SHORT_CLASSES: tuple[str, ...] = (
    "Basketball",
    "BasketballDunk",
    "CricketBowling",
    "SalsaSpin",
    "TennisSwing",
    "VolleyballSpiking",
)


@dataclass(frozen=True)
class Preset:
    """Rules of one published evaluation protocol (see the module docstring)."""

    name: str
    plus_one: bool
    inclusive: bool
    matching: str  # "remaining" (ACT) or "best" (MultiSports)
    ap: str  # "trapezoid" (ACT) or "voc" (all-point interpolated)
    keyframes: bool  # spatial IoU over ground-truth keyframes only (DALY)


PRESETS: dict[str, Preset] = {
    "ucf101-act": Preset("ucf101-act", True, True, "remaining", "trapezoid", False),
    "multisports": Preset("multisports", False, False, "best", "voc", False),
    "daly": Preset("daly", False, True, "best", "voc", True),
}


def _preset(preset: str | Preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}") from None


def preset_tube_iou(det: Tube, gt: Tube, preset: str | Preset) -> float:
    """Spatio-temporal IoU of a detection with a ground truth under a preset's rules."""
    p = _preset(preset)
    if not p.keyframes:
        return tube_iou(det, gt, plus_one=p.plus_one, inclusive=p.inclusive)
    t = temporal_iou(
        det.first_frame, det.last_frame, gt.first_frame, gt.last_frame, inclusive=p.inclusive
    )
    if t == 0.0:
        return 0.0
    kf = gt.frames if gt.keyframes is None else gt.keyframes
    covered = (kf >= det.first_frame) & (kf <= det.last_frame)
    ious = np.zeros(kf.shape[0])
    if covered.any():
        k = kf[covered]
        ious[covered] = spatial_iou(
            det.boxes[k - det.first_frame], gt.boxes[k - gt.first_frame], plus_one=p.plus_one
        )
    return t * float(ious.mean())


def _batch_iou(pairs: Sequence[tuple[Tube, Tube]], preset: Preset) -> np.ndarray:
    """:func:`preset_tube_iou` of many (detection, ground truth) pairs in one numpy pass.

    The box rows each pair compares are gathered into two long arrays, their IoUs
    computed at once and summed per pair (``np.add.reduceat``): per-pair numpy calls
    would cost more than the arithmetic.
    """
    out = np.zeros(len(pairs))
    rows_a: list[np.ndarray] = []
    rows_b: list[np.ndarray] = []
    idx: list[int] = []
    temporal: list[float] = []
    denoms: list[int] = []  # number of frames the spatial IoU is averaged over
    for i, (d, g) in enumerate(pairs):
        d0, d1, g0, g1 = int(d.frames[0]), int(d.frames[-1]), int(g.frames[0]), int(g.frames[-1])
        t = temporal_iou(d0, d1, g0, g1, inclusive=preset.inclusive)
        if t == 0.0:
            continue
        if preset.keyframes:
            kf = g.frames if g.keyframes is None else g.keyframes
            k = kf[(kf >= d0) & (kf <= d1)]
            if k.size == 0:
                continue
            rows_a.append(d.boxes[k - d0])
            rows_b.append(g.boxes[k - g0])
            denom = kf.shape[0]
        else:
            lo, hi = max(d0, g0), min(d1, g1)
            rows_a.append(d.boxes[lo - d0 : hi - d0 + 1])
            rows_b.append(g.boxes[lo - g0 : hi - g0 + 1])
            denom = hi - lo + 1
        idx.append(i)
        temporal.append(t)
        denoms.append(denom)
    if idx:
        iou = spatial_iou(np.concatenate(rows_a), np.concatenate(rows_b), plus_one=preset.plus_one)
        starts = np.cumsum([0] + [len(r) for r in rows_a[:-1]])
        # mean first, then x temporal IoU: the same rounding as preset_tube_iou
        out[idx] = np.add.reduceat(iou, starts) / np.asarray(denoms) * np.asarray(temporal)
    return out


def average_precision(precision: np.ndarray, recall: np.ndarray, rule: str) -> float:
    """AP from the raw precision/recall points of a ranked list.

    Parameters
    ----------
    precision, recall : np.ndarray
        float64 [N] after each of the N ranked detections (N may be 0).
    rule : str
        ``"trapezoid"`` (ACT: points prefixed by (p=1, r=0), trapezoidal area) or
        ``"voc"`` (all-point interpolated).
    """
    p = np.concatenate([[1.0], np.asarray(precision, dtype=np.float64)])
    r = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64)])
    if rule == "trapezoid":
        return float(np.sum((r[1:] - r[:-1]) * (p[1:] + p[:-1]) * 0.5))
    if rule == "voc":
        mrec = np.concatenate([[0.0], r, [1.0]])
        mpre = np.concatenate([[0.0], p, [0.0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        i = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
    raise ValueError(f"unknown AP rule {rule!r}")


def _pr(tp: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    ctp = np.cumsum(tp)
    n = np.arange(1, tp.shape[0] + 1)
    precision = ctp / n
    recall = ctp / num_gt if num_gt else np.zeros_like(precision)
    return precision, recall


@dataclass
class VideoAPResult:
    """Video-AP of every class at every threshold.

    Attributes
    ----------
    preset : str
    thresholds : tuple of float
        Thresholds evaluated (requested ones first, then any of :data:`COCO_THRESHOLDS`
        not requested).
    requested : tuple of float
        Thresholds the caller asked for (the table's columns).
    class_names : list of str
    ap : np.ndarray
        float64 [n_thresholds, C]; NaN for classes without ground truth.
    num_gt, num_det : np.ndarray
        int64 [C].
    short : tuple of int
        Class indices of the short-class subset.
    curves : dict
        ``(threshold, class) -> (precision, recall)`` float64 arrays.
    """

    preset: str
    thresholds: tuple[float, ...]
    requested: tuple[float, ...]
    class_names: list[str]
    ap: np.ndarray
    num_gt: np.ndarray
    num_det: np.ndarray
    short: tuple[int, ...]
    curves: dict[tuple[float, int], tuple[np.ndarray, np.ndarray]] = field(repr=False)

    def _index(self, threshold: float) -> int:
        for i, t in enumerate(self.thresholds):
            if abs(t - threshold) < 1e-9:
                return i
        raise KeyError(f"threshold {threshold} was not evaluated")

    def class_ap(self, threshold: float) -> np.ndarray:
        """float64 [C] AP per class at ``threshold`` (NaN without ground truth)."""
        return self.ap[self._index(threshold)]

    def mAP(self, threshold: float, classes: Sequence[int] | None = None) -> float:  # noqa: N802
        """Mean AP over classes with ground truth (optionally within ``classes``)."""
        ap = self.class_ap(threshold)
        if classes is not None:
            ap = ap[list(classes)]
        ap = ap[~np.isnan(ap)]
        return float(ap.mean()) if ap.size else float("nan")

    def short_mAP(self, threshold: float) -> float:  # noqa: N802
        """Mean AP over the short classes with ground truth (NaN when there are none)."""
        return self.mAP(threshold, self.short) if self.short else float("nan")

    def mAP_50_95(self, classes: Sequence[int] | None = None) -> float:  # noqa: N802
        """Mean of the mAPs at 0.50, 0.55, ..., 0.95."""
        return float(np.mean([self.mAP(t, classes) for t in COCO_THRESHOLDS]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (percentages; NaN becomes None)."""

        def pct(x: float) -> float | None:
            return None if np.isnan(x) else round(100.0 * x, 4)

        cols = [f"{t:g}" for t in self.requested]
        return {
            "preset": self.preset,
            "thresholds": list(self.requested),
            "mAP": {c: pct(self.mAP(t)) for c, t in zip(cols, self.requested, strict=True)}
            | {"0.5:0.95": pct(self.mAP_50_95())},
            "short_mAP": {
                c: pct(self.short_mAP(t)) for c, t in zip(cols, self.requested, strict=True)
            }
            | {"0.5:0.95": pct(self.mAP_50_95(self.short) if self.short else float("nan"))},
            "short_classes": [self.class_names[i] for i in self.short],
            "classes": [
                {
                    "name": name,
                    "num_gt": int(self.num_gt[c]),
                    "num_det": int(self.num_det[c]),
                    "ap": {
                        col: pct(self.class_ap(t)[c])
                        for col, t in zip(cols, self.requested, strict=True)
                    },
                }
                for c, name in enumerate(self.class_names)
            ],
        }

    def table(self) -> str:
        """Plain-text table: per-class AP, mAP and short-class mAP per threshold (percent)."""
        cols = [f"{t:g}" for t in self.requested] + ["0.5:0.95"]
        width = max([len(n) for n in self.class_names] + [12])

        def fmt(x: float) -> str:
            return "    -" if np.isnan(x) else f"{100 * x:5.1f}"

        lines = [f"video-AP ({self.preset}) " + "-" * 20]
        lines.append(
            f"{'class':<{width}} {'#gt':>5} {'#det':>6} " + " ".join(f"{c:>5}" for c in cols)
        )
        for c, name in enumerate(self.class_names):
            vals = [self.class_ap(t)[c] for t in self.requested]
            vals.append(float(np.mean([self.class_ap(t)[c] for t in COCO_THRESHOLDS])))
            mark = "*" if c in self.short else " "
            lines.append(
                f"{name + mark:<{width}} {self.num_gt[c]:>5} {self.num_det[c]:>6} "
                + " ".join(fmt(v) for v in vals)
            )
        rows = [("mAP", None)] + ([("short mAP (*)", self.short)] if self.short else [])
        for title, classes in rows:
            vals = [self.mAP(t, classes) for t in self.requested] + [self.mAP_50_95(classes)]
            lines.append(f"{title:<{width}} {'':>5} {'':>6} " + " ".join(fmt(v) for v in vals))
        return "\n".join(lines)


def _class_names(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    return list(class_names)


def _check_labels(tubes: Sequence[Tube], num_classes: int, what: str) -> None:
    for i, t in enumerate(tubes):
        if t.label >= num_classes:
            raise ValueError(
                f"{what}[{i}] ({t.video}) has unknown label {t.label} (C={num_classes})"
            )


def _match(ious: list[list[float]], keys: list[int], threshold: float, matching: str) -> np.ndarray:
    """True-positive flags of ranked detections.

    ``ious[i]`` holds detection i's IoUs with the ground truths of its video and class
    (``keys[i]`` identifies that video). Plain Python on purpose: a video has one to a
    few ground truths, where numpy's per-call overhead would dominate.
    """
    used: dict[int, list[bool]] = {}
    tp = np.zeros(len(ious), dtype=bool)
    remaining = matching == "remaining"
    for i, (iou, key) in enumerate(zip(ious, keys, strict=True)):
        if not iou:
            continue
        taken = used.get(key)
        if taken is None:
            taken = used[key] = [False] * len(iou)
        best, j = -1.0, -1
        for k, v in enumerate(iou):
            # first index wins ties, like numpy.argmax
            if v > best and not (remaining and taken[k]):
                best, j = v, k
        if j >= 0 and best >= threshold and not taken[j]:
            tp[i] = taken[j] = True
    return tp


def evaluate_video_ap(
    gt: Sequence[Tube],
    detections: Sequence[Tube],
    *,
    num_classes: int,
    preset: str | Preset = "ucf101-act",
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    class_names: Sequence[str] | None = None,
    short_classes: Sequence[str] = SHORT_CLASSES,
) -> VideoAPResult:
    """Video-AP per class at every threshold (plus the 0.5:0.95 grid).

    Parameters
    ----------
    gt : sequence of Tube
        Ground-truth tubes (scores ignored).
    detections : sequence of Tube
        Detection tubes, each with a finite score.
    num_classes : int
        C; every label must be below it.
    preset : str or Preset
        ``"ucf101-act"``, ``"multisports"`` or ``"daly"`` (rules in the module docstring).
    thresholds : sequence of float
        Spatio-temporal IoU thresholds in (0, 1].
    class_names : sequence of str, optional
        C names (default ``"0".."C-1"``).
    short_classes : sequence of str
        Names forming the short-class subset (those absent from ``class_names`` ignored).

    Returns
    -------
    VideoAPResult
    """
    p = _preset(preset)
    names = _class_names(num_classes, class_names)
    requested = tuple(float(t) for t in thresholds)
    if not requested or any(not (0.0 < t <= 1.0) for t in requested):
        raise ValueError(f"thresholds must be in (0, 1], got {list(requested)}")
    extra = [t for t in COCO_THRESHOLDS if all(abs(t - r) > 1e-9 for r in requested)]
    all_thr = requested + tuple(extra)
    _check_labels(gt, num_classes, "gt")
    _check_labels(detections, num_classes, "detections")
    for i, d in enumerate(detections):
        if d.score is None:
            raise ValueError(f"detections[{i}] ({d.video}) has no score")
    gt_by: dict[tuple[int, str], list[Tube]] = defaultdict(list)
    for t in gt:
        gt_by[(t.label, t.video)].append(t)
    det_by: list[list[Tube]] = [[] for _ in range(num_classes)]
    for d in detections:
        det_by[d.label].append(d)
    num_gt = np.zeros(num_classes, dtype=np.int64)
    for (label, _), tubes in gt_by.items():
        num_gt[label] += len(tubes)
    num_det = np.array([len(d) for d in det_by], dtype=np.int64)
    ap = np.full((len(all_thr), num_classes), np.nan)
    curves: dict[tuple[float, int], tuple[np.ndarray, np.ndarray]] = {}
    ranked: list[list[Tube]] = []
    pairs: list[tuple[Tube, Tube]] = []
    for c in range(num_classes):
        scores = np.array([d.score for d in det_by[c]], dtype=np.float64)
        ranked.append([det_by[c][j] for j in np.argsort(-scores, kind="stable").tolist()])
        pairs += [(d, g) for d in ranked[c] for g in gt_by.get((c, d.video), ())]
    pair_iou = _batch_iou(pairs, p).tolist()
    pos = 0
    for c in range(num_classes):
        ious, keys = [], []
        video_key: dict[str, int] = {}
        for d in ranked[c]:
            n = len(gt_by.get((c, d.video), ()))
            ious.append(pair_iou[pos : pos + n])
            pos += n
            keys.append(video_key.setdefault(d.video, len(video_key)))
        for k, th in enumerate(all_thr):
            tp = _match(ious, keys, th, p.matching)
            precision, recall = _pr(tp, int(num_gt[c]))
            curves[(th, c)] = (precision, recall)
            if num_gt[c]:
                ap[k, c] = average_precision(precision, recall, p.ap)
    short = tuple(names.index(n) for n in short_classes if n in names)
    return VideoAPResult(p.name, all_thr, requested, names, ap, num_gt, num_det, short, curves)


def frame_ap(
    gt: Sequence[Tube],
    detections: Sequence[Tube],
    *,
    num_classes: int,
    preset: str | Preset = "ucf101-act",
    threshold: float = 0.5,
) -> np.ndarray:
    """Frame-AP per class (rules in the module docstring).

    Parameters
    ----------
    gt, detections : sequence of Tube
        As in :func:`evaluate_video_ap`.
    num_classes : int
    preset : str or Preset
        Gives the ``+1`` box convention and the AP rule.
    threshold : float
        2-D IoU threshold.

    Returns
    -------
    np.ndarray
        float64 [C] AP per class, NaN for classes without ground-truth boxes.
    """
    p = _preset(preset)
    _check_labels(gt, num_classes, "gt")
    _check_labels(detections, num_classes, "detections")
    for i, d in enumerate(detections):
        if d.score is None:
            raise ValueError(f"detections[{i}] ({d.video}) has no score")
    video_id: dict[str, int] = {}
    for t in [*gt, *detections]:
        video_id.setdefault(t.video, len(video_id))
    span = 1 + max([0] + [abs(t.first_frame) + abs(t.last_frame) for t in [*gt, *detections]])

    def flatten(tubes: list[Tube]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not tubes:
            return np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0)
        # One integer key per (video, frame) so boxes of a frame are found by searchsorted.
        keys = np.concatenate([video_id[t.video] * 2 * span + span + t.frames for t in tubes])
        boxes = np.concatenate([t.boxes for t in tubes])
        scores = np.concatenate([np.full(len(t), t.score or 0.0) for t in tubes])
        return keys, boxes, scores

    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        gkeys, gboxes, _ = flatten([t for t in gt if t.label == c])
        if gkeys.size == 0:
            continue
        dkeys, dboxes, dscores = flatten([d for d in detections if d.label == c])
        order = np.argsort(-dscores, kind="stable")
        dkeys, dboxes = dkeys[order], dboxes[order]
        gsort = np.argsort(gkeys, kind="stable")
        gkeys, gboxes = gkeys[gsort], gboxes[gsort]
        lo = np.searchsorted(gkeys, dkeys, "left")
        count = np.searchsorted(gkeys, dkeys, "right") - lo
        # Every (detection box, gt box of the same frame) pair, detections in rank order.
        pair_det = np.repeat(np.arange(dkeys.size), count)
        first = np.repeat(np.cumsum(count) - count, count)
        pair_gt = np.repeat(lo, count) + np.arange(pair_det.size) - first
        iou = spatial_iou(dboxes[pair_det], gboxes[pair_gt], plus_one=p.plus_one)
        ok = iou >= threshold
        pair_det, pair_gt, iou = pair_det[ok], pair_gt[ok], iou[ok]
        # A box takes the best-overlapping remaining gt box; only pairs over the threshold
        # can ever match, so visit them by (rank, decreasing IoU, gt order).
        seq = np.lexsort((pair_gt, -iou, pair_det))
        tp = np.zeros(dkeys.size, dtype=bool)
        used = np.zeros(gkeys.size, dtype=bool)
        for d, g in zip(pair_det[seq].tolist(), pair_gt[seq].tolist(), strict=True):
            if not tp[d] and not used[g]:
                tp[d] = used[g] = True
        precision, recall = _pr(tp, int(gkeys.size))
        out[c] = average_precision(precision, recall, p.ap)
    return out


@dataclass(frozen=True, eq=False)
class ScoredTrack:
    """A human track with per-sample class scores (the model's output on it).

    Attributes
    ----------
    video : str
    frames : np.ndarray
        int64 [T] consecutive frames.
    boxes : np.ndarray
        float32 [T, 4] ``x1 y1 x2 y2``.
    scores : np.ndarray
        float32 [T, C] class scores (background excluded).
    """

    video: str
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        tube = Tube(self.video, 0, self.frames, self.boxes)  # validates frames and boxes
        scores = np.asarray(self.scores, dtype=np.float32)
        if scores.ndim != 2 or scores.shape[0] != len(tube):
            raise ValueError(f"scores must be [{len(tube)}, C], got {scores.shape}")
        if not np.all(np.isfinite(scores)):
            raise ValueError(f"scores of track in {self.video!r} are not all finite")
        object.__setattr__(self, "frames", tube.frames)
        object.__setattr__(self, "boxes", tube.boxes)
        object.__setattr__(self, "scores", scores)


def trimmed_detections(
    tracks: Sequence[ScoredTrack], gt: Sequence[Tube], *, top_k: int = PostprocessConfig.top_k
) -> list[Tube]:
    """Detections of the classification-only protocol (paper Table 4).

    Each track is cut to each distinct ground-truth interval of its video (its frames
    inside ``[gt.first_frame, gt.last_frame]``); every cut yields one detection per
    class scored by the mean of its top-k scores of that class (:func:`segment_score`).

    Returns
    -------
    list of Tube
    """
    intervals: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for g in gt:
        intervals[g.video].add((g.first_frame, g.last_frame))
    out = []
    for tr in tracks:
        for first, last in sorted(intervals.get(tr.video, ())):
            sel = (tr.frames >= first) & (tr.frames <= last)
            if not sel.any():
                continue
            frames, boxes, scores = tr.frames[sel], tr.boxes[sel], tr.scores[sel]
            for c in range(scores.shape[1]):
                out.append(Tube(tr.video, c, frames, boxes, segment_score(scores[:, c], top_k)))
    return out


def evaluate_classification(
    tracks: Sequence[ScoredTrack],
    gt: Sequence[Tube],
    *,
    num_classes: int,
    top_k: int = PostprocessConfig.top_k,
    **kwargs: Any,
) -> VideoAPResult:
    """Video-AP of tracks trimmed to the ground-truth intervals (no temporal localization).

    ``kwargs`` go to :func:`evaluate_video_ap` (preset, thresholds, class_names, ...).
    """
    for i, tr in enumerate(tracks):
        if tr.scores.shape[1] != num_classes:
            raise ValueError(
                f"tracks[{i}] has {tr.scores.shape[1]} score columns, not {num_classes}"
            )
    dets = trimmed_detections(tracks, gt, top_k=top_k)
    return evaluate_video_ap(gt, dets, num_classes=num_classes, **kwargs)
