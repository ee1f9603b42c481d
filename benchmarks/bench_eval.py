"""Speed of the tube evaluator on the real UCF101-24 test split (910 videos, 1315 tubes).

Subject: :func:`reclnet.runtime.offline.video_ap.evaluate_video_ap` (every preset) over the
default thresholds plus the 0.5:0.95 grid (13 thresholds), and
:func:`~reclnet.runtime.offline.video_ap.frame_ap`. Baseline: a literal port of ACT's
``videoAP`` loop (IoUs recomputed at every threshold, per-pair ``iou3dt``), timed in the
same process. Detections: the ground truth itself, and a realistic set of 5 jittered,
temporally shifted detections per ground-truth tube plus 2 distractors per video
(about 8,400 tubes). The project target is the whole split in under 5 s.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from reclnet.benchmarks.rows import row
from reclnet.benchmarks.timing import Timing, measure
from reclnet.paths import data_dir
from reclnet.runtime.offline.tubes import Tube
from reclnet.runtime.offline.video_ap import COCO_THRESHOLDS, DEFAULT_THRESHOLDS, PRESETS

DATA = data_dir() or Path("data")
UCF = DATA / "ucf101-24" / "pyannot_with_class_names.pkl"
THRESHOLDS = tuple(DEFAULT_THRESHOLDS) + tuple(
    t for t in COCO_THRESHOLDS if t not in DEFAULT_THRESHOLDS
)


def act_video_ap_loop(gt: list[Tube], dets: list[Tube], num_classes: int) -> np.ndarray:
    """ACT's ``videoAP`` as published: per threshold, per class, IoU per pair on the fly."""

    def iou3dt(a: Tube, b: Tube) -> float:
        tmin, tmax = max(a.first_frame, b.first_frame), min(a.last_frame, b.last_frame)
        if tmax < tmin:
            return 0.0
        inter = tmax - tmin + 1
        union = max(a.last_frame, b.last_frame) - min(a.first_frame, b.first_frame) + 1
        x = a.boxes[tmin - a.first_frame : tmax - a.first_frame + 1].astype(np.float64)
        y = b.boxes[tmin - b.first_frame : tmax - b.first_frame + 1].astype(np.float64)
        iw = np.maximum(0, np.minimum(x[:, 2], y[:, 2]) + 1 - np.maximum(x[:, 0], y[:, 0]))
        ih = np.maximum(0, np.minimum(x[:, 3], y[:, 3]) + 1 - np.maximum(x[:, 1], y[:, 1]))
        ov = iw * ih
        area = (x[:, 2] - x[:, 0] + 1) * (x[:, 3] - x[:, 1] + 1)
        area2 = (y[:, 2] - y[:, 0] + 1) * (y[:, 3] - y[:, 1] + 1)
        return float(np.mean(ov / (area + area2 - ov))) * inter / union

    out = np.zeros((len(THRESHOLDS), num_classes))
    for k, th in enumerate(THRESHOLDS):
        for c in range(num_classes):
            gtc: dict[str, list[Tube]] = defaultdict(list)
            for g in gt:
                if g.label == c:
                    gtc[g.video].append(g)
            dc = [d for d in dets if d.label == c]
            pr = np.empty((len(dc) + 1, 2))
            pr[0] = [1.0, 0.0]
            fn = sum(len(v) for v in gtc.values())
            tp = fp = 0
            for i, j in enumerate(np.argsort(-np.array([d.score for d in dc]), kind="stable")):
                d = dc[j]
                positive = False
                if d.video in gtc:
                    ious = [iou3dt(g, d) for g in gtc[d.video]]
                    amax = int(np.argmax(ious))
                    if ious[amax] >= th:
                        positive = True
                        del gtc[d.video][amax]
                        if not gtc[d.video]:
                            del gtc[d.video]
                if positive:
                    tp, fn = tp + 1, fn - 1
                else:
                    fp += 1
                pr[i + 1] = [tp / (tp + fp), tp / (tp + fn)]
            out[k, c] = np.sum((pr[1:, 1] - pr[:-1, 1]) * (pr[1:, 0] + pr[:-1, 0]) * 0.5)
    return out


def realistic_detections(gt: list[Tube], num_frames: dict[str, int], seed: int = 0) -> list[Tube]:
    """5 noisy copies of every gt tube (jittered boxes, shifted ends, random class 20% of
    the time) and 2 distractor tubes per video."""
    rng = np.random.default_rng(seed)
    out = []
    for g in gt:
        n = num_frames[g.video]
        for _ in range(5):
            first = int(np.clip(g.first_frame + rng.integers(-15, 16), 0, n - 1))
            last = int(np.clip(g.last_frame + rng.integers(-15, 16), first, n - 1))
            idx = np.clip(np.arange(first, last + 1) - g.first_frame, 0, len(g) - 1)
            w = (g.boxes[idx, 2] - g.boxes[idx, 0])[:, None]
            boxes = g.boxes[idx] + rng.normal(0, 0.08, (idx.size, 4)).astype(np.float32) * w
            boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
            label = g.label if rng.random() < 0.8 else int(rng.integers(0, 24))
            out.append(Tube(g.video, label, np.arange(first, last + 1), boxes, float(rng.random())))
    for video, n in num_frames.items():
        for _ in range(2):
            first = int(rng.integers(0, n))
            last = int(rng.integers(first, n))
            x, y = rng.uniform(0, 250), rng.uniform(0, 170)
            boxes = np.tile(np.float32([x, y, x + 60, y + 70]), (last - first + 1, 1))
            label = int(rng.integers(0, 24))
            out.append(Tube(video, label, np.arange(first, last + 1), boxes, float(rng.random())))
    return out


ACT = "ACT videoAP loop"


def _row(
    case: str, impl: str, timing: Timing, base: dict | None, variant: str | None = None, **extra
) -> dict:
    return row(
        "eval",
        case,
        impl,
        unit="s",
        stats=timing,
        variant=variant,
        classes=24,
        baseline=base,
        label=impl if variant is None else f"{impl} {variant}",
        **extra,
    )


def run(quick: bool = False) -> list[dict]:
    """Evaluator time on the UCF101-24 test split; rows skip when the data is absent."""
    if not UCF.exists():
        return [
            row(
                "eval",
                "ucf101-24 test",
                "evaluate_video_ap",
                unit="s",
                stats=None,
                skipped=f"UCF101-24 annotations not found at {UCF}",
            )
        ]
    from reclnet.runtime.offline.datasets import load_ucf101_24
    from reclnet.runtime.offline.video_ap import evaluate_video_ap, frame_ap

    gt = load_ucf101_24(UCF)
    sets = {
        "gt as detections": [t.with_score(1.0) for t in gt.tubes],
        "realistic detections": realistic_detections(gt.tubes, gt.num_frames),
    }
    if quick:  # the ACT loop alone takes ~20 s on the realistic set
        del sets["realistic detections"]
    repeat = 3 if quick else 5
    rows = []
    for name, dets in sets.items():
        case = f"ucf101-24 test, {name}, {len(THRESHOLDS)} thresholds"
        extra = {"n_gt": len(gt.tubes), "n_detections": len(dets), "n_thresholds": len(THRESHOLDS)}
        t_base = measure(lambda d=dets: act_video_ap_loop(gt.tubes, d, 24), repeat=1, number=1)
        ref = act_video_ap_loop(gt.tubes, dets, 24)
        ours = evaluate_video_ap(gt.tubes, dets, num_classes=24, thresholds=THRESHOLDS)
        max_diff = float(np.nanmax(np.abs(ours.ap - ref)))
        base = _row(case, ACT, t_base, None, **extra)
        rows.append(base)
        for preset in PRESETS:
            t = measure(
                lambda d=dets, p=preset: evaluate_video_ap(
                    gt.tubes, d, num_classes=24, preset=p, thresholds=THRESHOLDS
                ),
                repeat=repeat,
                number=1,
            )
            diff = {"max_abs_ap_diff_vs_baseline": max_diff} if preset == "ucf101-act" else {}
            rows.append(
                _row(
                    case,
                    "evaluate_video_ap",
                    t,
                    base,
                    preset,
                    under_5s=t.median < 5.0,
                    **extra,
                    **diff,
                )
            )
        t = measure(lambda d=dets: frame_ap(gt.tubes, d, num_classes=24), repeat=repeat, number=1)
        rows.append(_row(f"ucf101-24 test, {name}, frame-AP@0.5", "frame_ap", t, None, **extra))
    return rows


if __name__ == "__main__":
    for r in run():
        if r.get("skipped"):
            print(f"{r['case']}: skipped ({r['skipped']})")
            continue
        ratio = r["ratio_vs_baseline"]
        print(
            f"{r['case']:<58} {r['label']:<30} {r['median']:8.3f} s "
            f"[{r['min']:.3f} .. {r['max']:.3f}]"
            + (f"  {ratio:6.1f}x vs {r['baseline']['label']}" if ratio else "")
            + (f"  n_det={r['n_detections']}")
        )
