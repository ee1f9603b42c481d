"""Temporal localization methods on simulated scores over the real UCF101-24 test tubes.

Compares, at video-mAP@0.2 / 0.5 / 0.75 (``ucf101-act`` preset), all classes and the
paper's short classes:

* ``threshold``: :func:`~reclnet.runtime.offline.localize.localize_track` (median window 25,
  threshold 0.1, top-40 score; the paper's method);
* ``viterbi 1-s``: :func:`~reclnet.runtime.offline.localize.viterbi_track` with ROAD's two-class
  unaries (background ``1 - s``), alpha 3;
* ``viterbi bg=0.1``: the same with a constant background unary 0.1, alpha 3;
* ``none``: no trimming, the whole track scored by its top-40 mean per class;

each followed by spatio-temporal NMS at 0.2 within a video. Timing rows give the
localization time of all tracks (ratio vs ``threshold``) and carry the accuracy as extra
fields.

Noise model (seeded; scores float32 in [0, 1], 24 classes; one sample per frame):

* Tracks. For every ground-truth tube, a *gt-following* track over the whole video: the
  gt boxes on the annotated frames, the first / last box held outside them, every box
  jittered by N(0, 0.05 w) (w the box width). For every video, one *distractor* track:
  the first tube's boxes shifted right by 1.5 widths (clamped to 320x240), over a
  random interval of at least half the video.
* True-class score of a gt-following track: a level U(0.35, 0.85) inside the action and
  U(0, 0.05) outside, the step's ends moved by round(N(0, 4)) frames (model boundary
  error) and softened by a 5-frame moving average (recurrent lag); plus AR(1) noise
  x_t = 0.8 x_(t-1) + N(0, 0.06); inside the action, dips to U(0, 0.05) starting with
  probability 0.02 per frame, lasting 1-6 frames; outside, false alarms at U(0.2, 0.6)
  starting with probability 0.01 per frame, lasting 1-8 frames.
* Confusion: with probability 0.3 one other class scores U(0.1, 0.35) during the action.
* Every other class: |N(0, 0.02)|.
* Distractor tracks: every class at background (U(0, 0.05) + AR(1) noise), and for the
  video's class false alarms at U(0.2, 0.6) with probability 0.01 per frame, lasting
  1-30 frames.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from reclnet.benchmarks.rows import row
from reclnet.benchmarks.timing import measure
from reclnet.paths import data_dir
from reclnet.runtime.offline.localize import (
    Segment,
    localize_track,
    segment_score,
    segments_to_tubes,
    viterbi_track,
)
from reclnet.runtime.offline.tube_geometry import nms_tubes
from reclnet.runtime.offline.tubes import Tube

DATA = data_dir() or Path("data")
UCF = DATA / "ucf101-24" / "pyannot_with_class_names.pkl"
NUM_CLASSES = 24
IOUS = (0.2, 0.5, 0.75)


class SimTrack:
    """A simulated track: video, frames int64 [T], boxes float32 [T, 4], scores float32 [T, C]."""

    def __init__(self, video: str, frames: np.ndarray, boxes: np.ndarray, scores: np.ndarray):
        self.video, self.frames, self.boxes, self.scores = video, frames, boxes, scores


def _ar_noise(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    eps = rng.normal(0.0, 0.06, (n, c))
    out = np.empty((n, c))
    out[0] = eps[0]
    for t in range(1, n):
        out[t] = 0.8 * out[t - 1] + eps[t]
    return out


def _bursts(rng, mask: np.ndarray, rate: float, max_len: int, low: float, high: float, x):
    """Overwrite x with bursts starting at a ``rate`` per frame where ``mask`` is True."""
    for t in np.flatnonzero(mask & (rng.random(mask.size) < rate)):
        n = int(rng.integers(1, max_len + 1))
        x[t : t + n] = rng.uniform(low, high)


def simulate(gt: list[Tube], num_frames: dict[str, int], seed: int = 0) -> list[SimTrack]:
    """The tracks of the noise model in the module docstring."""
    rng = np.random.default_rng(seed)
    by_video: dict[str, list[Tube]] = defaultdict(list)
    for t in gt:
        by_video[t.video].append(t)
    tracks = []
    for video in sorted(by_video):
        n = num_frames[video]
        frames = np.arange(n, dtype=np.int64)
        for g in by_video[video]:
            idx = np.clip(frames - g.first_frame, 0, len(g) - 1)
            boxes = g.boxes[idx].astype(np.float64)
            w = (boxes[:, 2] - boxes[:, 0])[:, None]
            boxes = boxes + rng.normal(0, 0.05, (n, 4)) * w
            boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
            scores = np.abs(rng.normal(0, 0.02, (n, NUM_CLASSES)))
            lo = int(np.clip(g.first_frame + round(rng.normal(0, 4)), 0, n - 1))
            hi = int(np.clip(g.last_frame + round(rng.normal(0, 4)), lo, n - 1))
            inside = np.zeros(n, dtype=bool)
            inside[lo : hi + 1] = True
            step = np.where(inside, rng.uniform(0.35, 0.85), rng.uniform(0, 0.05))
            step = np.convolve(np.pad(step, 2, mode="edge"), np.ones(5) / 5, mode="valid")
            true = step + _ar_noise(rng, n, 1)[:, 0]
            _bursts(rng, inside, 0.02, 6, 0.0, 0.05, true)
            _bursts(rng, ~inside, 0.01, 8, 0.2, 0.6, true)
            scores[:, g.label] = true
            if rng.random() < 0.3:
                other = (g.label + int(rng.integers(1, NUM_CLASSES))) % NUM_CLASSES
                scores[inside, other] = rng.uniform(0.1, 0.35)
            tracks.append(SimTrack(video, frames, boxes.astype(np.float32), _clip(scores)))
        g = by_video[video][0]
        length = int(rng.integers(max(1, n // 2), n + 1))
        first = int(rng.integers(0, n - length + 1))
        fr = np.arange(first, first + length, dtype=np.int64)
        boxes = g.boxes[np.clip(fr - g.first_frame, 0, len(g) - 1)].astype(np.float64)
        w = boxes[:, 2] - boxes[:, 0]
        boxes[:, [0, 2]] += 1.5 * w[:, None]
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, 320)
        boxes[:, 2] = np.maximum(boxes[:, 2], boxes[:, 0] + 1)
        scores = rng.uniform(0, 0.05, NUM_CLASSES) + _ar_noise(rng, length, NUM_CLASSES)
        col = scores[:, g.label]
        _bursts(rng, np.ones(length, dtype=bool), 0.01, 30, 0.2, 0.6, col)
        tracks.append(SimTrack(video, fr, boxes.astype(np.float32), _clip(scores)))
    return tracks


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _no_trimming(scores: np.ndarray, frames: np.ndarray) -> list[Segment]:
    n = scores.shape[0]
    return [
        Segment(c, 0, n, int(frames[0]), int(frames[-1]), n, segment_score(scores[:, c], 40))
        for c in range(scores.shape[1])
    ]


METHODS: dict[str, Callable[[np.ndarray, np.ndarray], list[Segment]]] = {
    "threshold": lambda s, f: localize_track(s, f),
    "viterbi 1-s": lambda s, f: viterbi_track(s, f, alpha=3.0),
    "viterbi bg=0.1": lambda s, f: viterbi_track(s, f, alpha=3.0, background=0.1),
    "none": _no_trimming,
}


def localize_all(tracks: list[SimTrack], method: str) -> list[list[Segment]]:
    fn = METHODS[method]
    return [fn(t.scores, t.frames) for t in tracks]


def detections(tracks: list[SimTrack], segments: list[list[Segment]]) -> list[Tube]:
    tubes = []
    for t, segs in zip(tracks, segments, strict=True):
        tubes += segments_to_tubes(t.video, t.frames, t.boxes, segs)
    return nms_tubes(tubes, 0.2)


def run(quick: bool = False) -> list[dict]:
    """Accuracy (extra fields) and localization time of each method; skips without data."""
    if not UCF.exists():
        return [
            row(
                "localization",
                "ucf101-24 test, simulated scores",
                m,
                unit="s",
                stats=None,
                classes=NUM_CLASSES,
                skipped=f"UCF101-24 annotations not found at {UCF}",
            )
            for m in METHODS
        ]
    from reclnet.runtime.offline.datasets import load_ucf101_24
    from reclnet.runtime.offline.video_ap import evaluate_video_ap

    gt = load_ucf101_24(UCF)
    tubes = gt.tubes
    if quick:  # every 8th video
        keep = set(sorted(gt.num_frames)[::8])
        tubes = [t for t in tubes if t.video in keep]
    tracks = simulate(tubes, gt.num_frames)
    case = f"ucf101-24 test, simulated scores, {len(tracks)} tracks"
    rows: list[dict] = []
    for method in METHODS:
        t = measure(lambda m=method: localize_all(tracks, m), repeat=1, number=1)
        dets = detections(tracks, localize_all(tracks, method))
        r = evaluate_video_ap(
            tubes, dets, num_classes=NUM_CLASSES, thresholds=IOUS, class_names=gt.class_names
        )
        acc = {}
        for iou in IOUS:
            acc[f"mAP@{iou:g}"] = round(100 * r.mAP(iou), 2)
            acc[f"short_mAP@{iou:g}"] = round(100 * r.short_mAP(iou), 2)
        rows.append(
            row(
                "localization",
                case,
                method,
                unit="s",
                stats=t,
                classes=NUM_CLASSES,
                baseline=rows[0] if rows else None,  # the first method: threshold
                n_tracks=len(tracks),
                n_detections=len(dets),
                **acc,
            )
        )
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table of the accuracy per method."""
    head = "| method | " + " | ".join(f"mAP@{i:g}" for i in IOUS)
    head += " | " + " | ".join(f"short@{i:g}" for i in IOUS) + " | time (s) |"
    lines = [head, "|" + "---|" * (2 + 2 * len(IOUS))]
    for r in rows:
        if r.get("skipped"):
            return f"skipped: {r['skipped']}"
        vals = [r[f"mAP@{i:g}"] for i in IOUS] + [r[f"short_mAP@{i:g}"] for i in IOUS]
        lines.append(
            f"| {r['impl']} | " + " | ".join(f"{v:.1f}" for v in vals) + f" | {r['median']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    out = run()
    print(out[0].get("case", ""))
    print(table(out))
