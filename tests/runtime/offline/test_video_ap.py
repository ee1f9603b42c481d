"""Video-AP / frame-AP evaluator: hand-computed cases per preset, literal ports of the
reference code as twins, the real UCF101-24 / JHMDB ground truth, and ``reclnet eval``."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from reclnet.paths import data_dir
from reclnet.runtime.offline.tube_geometry import spatial_iou
from reclnet.runtime.offline.tubes import Tube, write_tubes
from reclnet.runtime.offline.video_ap import (
    COCO_THRESHOLDS,
    DEFAULT_THRESHOLDS,
    PRESETS,
    ScoredTrack,
    average_precision,
    evaluate_classification,
    evaluate_video_ap,
    frame_ap,
    preset_tube_iou,
    trimmed_detections,
)

DATA = data_dir() or Path("data")
UCF = DATA / "ucf101-24" / "pyannot_with_class_names.pkl"
JHMDB = DATA / "jhmdb" / "groundtruths_jhmdb.zip"
needs_ucf = [
    pytest.mark.data,
    pytest.mark.skipif(not UCF.exists(), reason=f"UCF101-24 annotations not found at {UCF}"),
]
needs_jhmdb = [
    pytest.mark.data,
    pytest.mark.skipif(not JHMDB.exists(), reason=f"JHMDB ground truth not found at {JHMDB}"),
]

A = [0, 0, 10, 10]
B = [100, 100, 110, 110]


def tube(video, label, first, last, box, score=None, keyframes=None) -> Tube:
    n = last - first + 1
    boxes = np.tile(np.asarray(box, dtype=np.float32), (n, 1))
    return Tube(video, label, np.arange(first, last + 1), boxes, score, keyframes)


def ap_of(gt, dets, preset, threshold=0.5, num_classes=3):
    r = evaluate_video_ap(gt, dets, num_classes=num_classes, preset=preset, thresholds=[threshold])
    return r


# ------------------------------------------------------------- hand-computed cases


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_duplicates_no_detections_and_class_without_gt(preset: str) -> None:
    gt = [tube("v", 0, 0, 9, A), tube("v", 0, 0, 9, B), tube("w", 1, 0, 9, A)]
    dets = [
        tube("v", 0, 0, 9, A, 0.9),
        tube("v", 0, 0, 9, A, 0.8),  # duplicate of the first: false positive
        tube("v", 0, 0, 9, B, 0.7),
        tube("w", 2, 0, 9, A, 0.6),  # class 2 has no ground truth
    ]
    r = ap_of(gt, dets, preset)
    # ranked tp = [1, 0, 1]: (p, r) = (1, .5), (.5, .5), (2/3, 1)
    expected = {
        # trapezoids from (1, 0): .5 * (1 + 1) / 2 + 0 + .5 * (.5 + 2/3) / 2
        "trapezoid": 0.5 + 0.5 * (0.5 + 2 / 3) / 2,
        # all-point interpolation: precision 1 up to recall .5, then 2/3
        "voc": 0.5 + 0.5 * 2 / 3,
    }[PRESETS[preset].ap]
    ap = r.class_ap(0.5)
    assert ap[0] == pytest.approx(expected, abs=1e-12)
    assert ap[1] == 0.0  # ground truth but no detection
    assert np.isnan(ap[2])  # detections but no ground truth: left out of the mean
    assert r.mAP(0.5) == pytest.approx(expected / 2, abs=1e-12)
    assert list(r.num_gt) == [2, 1, 0] and list(r.num_det) == [3, 0, 1]


@pytest.mark.parametrize(
    ("preset", "expected"), [("ucf101-act", 1.0), ("multisports", 0.5), ("daly", 0.5)]
)
def test_remaining_versus_best_matching(preset: str, expected: float) -> None:
    # Two overlapping ground truths; both detections fit the first best. ACT matches the
    # second detection to the remaining one; MultiSports takes its best (already used): FP.
    gt = [tube("v", 0, 0, 9, A), tube("v", 0, 0, 9, [0, 0, 10, 8])]
    dets = [tube("v", 0, 0, 9, A, 0.9), tube("v", 0, 0, 9, A, 0.8)]
    assert ap_of(gt, dets, preset).class_ap(0.5)[0] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("preset", "iou", "ap_005"),
    [
        # inclusive counts: 1 common frame of 19
        ("ucf101-act", 1 / 19, 1.0),
        # (9 - 9) / (18 - 0) = 0
        ("multisports", 0.0, 0.0),
        # 1/19 x spatial IoU over the 10 gt frames (all keyframes), 9 of them uncovered
        ("daly", 1 / 19 / 10, 0.0),
    ],
)
def test_one_frame_overlap(preset: str, iou: float, ap_005: float) -> None:
    gt = [tube("v", 0, 0, 9, A)]
    dets = [tube("v", 0, 9, 18, A, 0.5)]
    assert preset_tube_iou(dets[0], gt[0], preset) == pytest.approx(iou, abs=1e-15)
    r = evaluate_video_ap(gt, dets, num_classes=1, preset=preset, thresholds=[0.05, 0.1])
    assert r.class_ap(0.05)[0] == ap_005
    assert r.class_ap(0.1)[0] == 0.0


def test_plus_one_convention() -> None:
    gt = [tube("v", 0, 0, 0, [0, 0, 10, 10])]
    det = tube("v", 0, 0, 0, [5, 0, 15, 10], 1.0)
    assert preset_tube_iou(det, gt[0], "ucf101-act") == pytest.approx(6 * 11 / (2 * 121 - 66))
    assert preset_tube_iou(det, gt[0], "multisports") == pytest.approx(50 / 150)
    # one-frame tubes on the same frame: MultiSports' union is 0 frames -> temporal IoU 1
    assert preset_tube_iou(gt[0].with_score(1.0), gt[0], "multisports") == 1.0


def test_daly_keyframes() -> None:
    gt = tube("v", 0, 0, 9, A, keyframes=np.array([2, 7]))
    det = tube("v", 0, 0, 9, B, 0.9)
    det.boxes[[2, 7]] = A  # right at both keyframes, wrong elsewhere
    assert preset_tube_iou(det, gt, "daly") == 1.0
    assert preset_tube_iou(det, gt, "multisports") == pytest.approx(0.2)
    # covers frames 0..4: temporal 5/10, keyframe 7 not covered counts 0 -> .5 * (1 + 0)/2
    assert preset_tube_iou(tube("v", 0, 0, 4, A, 0.5), gt, "daly") == pytest.approx(0.25)
    r = evaluate_video_ap([gt], [det], num_classes=1, preset="daly", thresholds=[0.75])
    assert r.class_ap(0.75)[0] == 1.0


def test_ties_keep_input_order_and_bad_input() -> None:
    gt = [tube("v", 0, 0, 9, A)]
    first_wrong = [tube("v", 0, 0, 9, B, 0.5), tube("v", 0, 0, 9, A, 0.5)]
    # ranked [FP, TP]: ACT trapezoid (1,0)->(0,0)->(.5,1): 1 * (0 + .5)/2
    assert ap_of(gt, first_wrong, "ucf101-act", num_classes=1).mAP(0.5) == pytest.approx(0.25)
    assert ap_of(gt, first_wrong[::-1], "ucf101-act", num_classes=1).mAP(0.5) == 1.0
    with pytest.raises(ValueError, match="unknown label 3"):
        evaluate_video_ap(gt, [tube("v", 3, 0, 1, A, 1.0)], num_classes=2)
    with pytest.raises(ValueError, match="has no score"):
        evaluate_video_ap(gt, [tube("v", 0, 0, 1, A)], num_classes=1)
    with pytest.raises(ValueError, match="unknown preset 'act'"):
        evaluate_video_ap(gt, [], num_classes=1, preset="act")
    with pytest.raises(ValueError, match="thresholds must be in"):
        evaluate_video_ap(gt, [], num_classes=1, thresholds=[0.0])


def test_result_tables_and_coco_average() -> None:
    gt = [tube("v", 0, 0, 9, A), tube("w", 1, 0, 9, A)]
    dets = [tube("v", 0, 0, 9, [0, 0, 10, 7], 0.9), tube("w", 1, 0, 9, A, 0.8)]
    r = evaluate_video_ap(gt, dets, num_classes=2, class_names=["Basketball", "Diving"])
    # class 0: spatial IoU 0.7 -> AP 1 up to 0.7, 0 above; class 1 exact -> 1 everywhere
    assert [r.mAP(t) for t in DEFAULT_THRESHOLDS] == [1.0] * 7 + [0.5]
    assert r.mAP_50_95() == pytest.approx(
        np.mean([1.0 if t <= 0.7 else 0.5 for t in COCO_THRESHOLDS])
    )
    assert r.short == (0,) and r.short_mAP(0.75) == 0.0
    table = r.table()
    assert "Basketball*" in table and "short mAP" in table and "0.5:0.95" in table
    d = r.to_dict()
    assert d["mAP"]["0.75"] == 50.0 and d["short_mAP"]["0.5"] == 100.0
    assert d["classes"][1] == {
        "name": "Diving",
        "num_gt": 1,
        "num_det": 1,
        "ap": dict.fromkeys(d["mAP"].keys() - {"0.5:0.95"}, 100.0),
    }
    json.dumps(d)  # JSON-ready


# ------------------------------------------------------------- twins of the reference code


def act_pr_to_ap(pr: np.ndarray) -> float:
    """ACT_utils.pr_to_ap, literally."""
    prdif = pr[1:, 1] - pr[:-1, 1]
    prsum = pr[1:, 0] + pr[:-1, 0]
    return float(np.sum(prdif * prsum * 0.5))


def voc_ap_loop(rec: np.ndarray, prec: np.ndarray) -> float:
    """VOC devkit all-point AP with an explicit loop."""
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def reference_video_ap(gt_tubes, dets, label, th, preset) -> float:
    """ACT / MultiSports videoAP loop for one class, written like the published code."""
    gt = defaultdict(list)
    for g in gt_tubes:
        if g.label == label:
            gt[g.video].append(g)
    used = {v: [False] * len(g) for v, g in gt.items()}
    dets = [d for d in dets if d.label == label]
    pr = np.empty((len(dets) + 1, 2))
    pr[0] = [1.0, 0.0]
    fn = sum(len(g) for g in gt.values())
    tp = fp = 0
    for i, j in enumerate(np.argsort(-np.array([d.score for d in dets]), kind="stable")):
        d = dets[j]
        positive = False
        if d.video in gt:
            if preset == "ucf101-act":
                remaining = [k for k, u in enumerate(used[d.video]) if not u]
                if remaining:
                    ious = [preset_tube_iou(d, gt[d.video][k], preset) for k in remaining]
                    amax = int(np.argmax(ious))
                    if ious[amax] >= th:
                        positive = True
                        used[d.video][remaining[amax]] = True
            else:
                ious = [preset_tube_iou(d, g, preset) for g in gt[d.video]]
                amax = int(np.argmax(ious))
                if ious[amax] >= th and not used[d.video][amax]:
                    positive = True
                    used[d.video][amax] = True
        if positive:
            tp, fn = tp + 1, fn - 1
        else:
            fp += 1
        pr[i + 1] = [tp / (tp + fp), tp / (tp + fn)]
    if preset == "ucf101-act":
        return act_pr_to_ap(pr)
    return voc_ap_loop(pr[1:, 1], pr[1:, 0])


def random_problem(rng, num_videos=4, num_classes=2):
    gt, dets = [], []
    for v in range(num_videos):
        for _ in range(int(rng.integers(1, 4))):
            first = int(rng.integers(0, 20))
            last = first + int(rng.integers(0, 25))
            x, y = rng.uniform(0, 40, 2)
            gt.append(
                tube(
                    f"v{v}", int(rng.integers(0, num_classes)), first, last, [x, y, x + 30, y + 40]
                )
            )
    for _ in range(int(rng.integers(0, 25))):
        g = gt[int(rng.integers(0, len(gt)))]
        shift = int(rng.integers(-8, 9))
        first = max(0, g.first_frame + shift)
        last = max(first, g.last_frame + int(rng.integers(-8, 9)))
        jitter = rng.normal(0, 4, 4)
        box = g.boxes[0] + jitter
        box[2:] = np.maximum(box[2:], box[:2])
        label = g.label if rng.random() < 0.8 else int(rng.integers(0, num_classes))
        score = float(np.round(rng.random(), 1))  # ties on purpose
        dets.append(tube(g.video, label, first, last, box, score))
    return gt, dets


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("seed", range(15))
def test_video_ap_matches_reference_loop(preset: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt, dets = random_problem(rng)
    thresholds = [0.1, 0.3, 0.5, 0.7]
    r = evaluate_video_ap(gt, dets, num_classes=2, preset=preset, thresholds=thresholds)
    for th in thresholds:
        for c in range(2):
            if r.num_gt[c] == 0:
                assert np.isnan(r.class_ap(th)[c])
            else:
                assert r.class_ap(th)[c] == pytest.approx(
                    reference_video_ap(gt, dets, c, th, preset), abs=1e-12
                )


@pytest.mark.parametrize("seed", range(20))
def test_average_precision_twins(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tp = rng.random(int(rng.integers(0, 30))) < 0.6
    num_gt = int(tp.sum()) + int(rng.integers(0, 4)) or 1
    ctp = np.cumsum(tp)
    precision = ctp / np.arange(1, tp.size + 1)
    recall = ctp / num_gt
    pr = np.vstack([[1.0, 0.0], np.column_stack([precision, recall])])
    assert average_precision(precision, recall, "trapezoid") == pytest.approx(
        act_pr_to_ap(pr), abs=1e-12
    )
    assert average_precision(precision, recall, "trapezoid") == pytest.approx(
        np.trapezoid(pr[:, 0], pr[:, 1]), abs=1e-12
    )
    assert average_precision(precision, recall, "voc") == pytest.approx(
        voc_ap_loop(recall, precision), abs=1e-12
    )


def reference_frame_ap(gt_tubes, dets, label, th, plus_one, rule) -> float:
    gtb = defaultdict(list)
    for g in gt_tubes:
        if g.label == label:
            for f, b in zip(g.frames.tolist(), g.boxes, strict=True):
                gtb[(g.video, f)].append(b)
    num = sum(len(v) for v in gtb.values())
    boxes = [
        (d.score, d.video, f, b)
        for d in dets
        if d.label == label
        for f, b in zip(d.frames.tolist(), d.boxes, strict=True)
    ]
    order = np.argsort(-np.array([b[0] for b in boxes]), kind="stable")
    tp = []
    for j in order:
        _, v, f, b = boxes[j]
        g = gtb.get((v, f), [])
        ok = False
        if g:
            ious = spatial_iou(np.tile(b, (len(g), 1)), np.array(g), plus_one=plus_one)
            k = int(np.argmax(ious))
            if ious[k] >= th:
                ok = True
                del g[k]
        tp.append(ok)
    ctp = np.cumsum(tp)
    return average_precision(ctp / np.arange(1, len(tp) + 1), ctp / num, rule)


@pytest.mark.parametrize("preset", ["ucf101-act", "multisports"])
@pytest.mark.parametrize("seed", range(8))
def test_frame_ap_matches_reference_loop(preset: str, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    gt, dets = random_problem(rng)
    got = frame_ap(gt, dets, num_classes=2, preset=preset, threshold=0.5)
    p = PRESETS[preset]
    for c in range(2):
        if not any(g.label == c for g in gt):
            assert np.isnan(got[c])
        else:
            assert got[c] == pytest.approx(
                reference_frame_ap(gt, dets, c, 0.5, p.plus_one, p.ap), abs=1e-12
            )


def test_frame_ap_hand_case() -> None:
    gt = [tube("v", 0, 0, 1, A), tube("v", 0, 0, 0, B)]  # 3 gt boxes
    dets = [tube("v", 0, 0, 1, A, 0.9), tube("v", 0, 0, 0, A, 0.8), tube("v", 0, 0, 0, B, 0.7)]
    # ranked boxes: A@0 TP, A@1 TP, A@0 dup FP, B@0 TP -> ACT trapezoid
    p = np.array([1, 1, 1, 2 / 3, 3 / 4])
    r = np.array([0, 1 / 3, 2 / 3, 2 / 3, 1])
    expected = np.sum((r[1:] - r[:-1]) * (p[1:] + p[:-1]) / 2)
    assert frame_ap(gt, dets, num_classes=1)[0] == pytest.approx(expected)


# ------------------------------------------------------------- classification only


def test_classification_on_trimmed_tracks() -> None:
    gt = [tube("v", 0, 5, 14, A), tube("w", 1, 3, 8, B)]
    scores_v = np.zeros((30, 2), np.float32)
    scores_v[:, 0] = 0.2
    scores_v[5:15, 0] = np.linspace(0.5, 0.9, 10)
    scores_v[20:, 1] = 0.99  # outside the gt interval: ignored by trimming
    tracks = [
        ScoredTrack("v", np.arange(30), np.tile(np.float32(A), (30, 1)), scores_v),
        ScoredTrack(
            "w", np.arange(10), np.tile(np.float32(B), (10, 1)), np.float32([[0.1, 0.6]] * 10)
        ),
    ]
    dets = trimmed_detections(tracks, gt, top_k=3)
    assert [(d.video, d.label, d.first_frame, d.last_frame) for d in dets] == [
        ("v", 0, 5, 14),
        ("v", 1, 5, 14),
        ("w", 0, 3, 8),
        ("w", 1, 3, 8),
    ]
    assert dets[0].score == pytest.approx(np.mean(np.float32(np.linspace(0.5, 0.9, 10))[-3:]))
    assert dets[1].score == 0.0
    r = evaluate_classification(tracks, gt, num_classes=2, thresholds=[0.2, 0.3, 0.4])
    assert r.mAP(0.4) == 1.0
    with pytest.raises(ValueError, match="has 2 score columns, not 3"):
        evaluate_classification(tracks, gt, num_classes=3)
    with pytest.raises(ValueError, match="not all finite"):
        ScoredTrack("v", np.arange(2), np.zeros((2, 4)), np.float32([[0.1], [np.nan]]))


# ------------------------------------------------------------- real ground truth


@pytest.fixture(scope="module")
def ucf():
    from reclnet.runtime.offline.datasets import load_ucf101_24

    return load_ucf101_24(UCF)


def _data(fn):
    for mark in needs_ucf:
        fn = mark(fn)
    return fn


@_data
def test_ucf_ground_truth_as_detections_scores_100(ucf) -> None:
    assert len(ucf.num_frames) == 910 and len(ucf.tubes) == 1315
    dets = [t.with_score(1.0) for t in ucf.tubes]
    r = evaluate_video_ap(ucf.tubes, dets, num_classes=24, class_names=ucf.class_names)
    assert np.all(r.ap == 1.0)
    assert r.mAP_50_95() == 1.0 and r.short_mAP(0.75) == 1.0
    assert np.all(frame_ap(ucf.tubes, dets, num_classes=24) == 1.0)


@_data
def test_ucf_multisports_penalises_the_duplicated_ground_truth(ucf) -> None:
    # v_CricketBowling_g02_c04 holds the same tube twice. MultiSports matching sends both
    # copies to the first one, so one copy is a false positive and one gt is never found.
    dets = [t.with_score(1.0) for t in ucf.tubes]
    r = evaluate_video_ap(
        ucf.tubes, dets, num_classes=24, preset="multisports", class_names=ucf.class_names
    )
    cb = ucf.class_names.index("CricketBowling")
    assert np.all(np.delete(r.ap, cb, axis=1) == 1.0)
    precision, recall = r.curves[(0.5, cb)]
    assert recall[-1] == pytest.approx(37 / 38) and precision[-1] == pytest.approx(37 / 38)
    dup = [t for t in ucf.tubes if t.video == "CricketBowling/v_CricketBowling_g02_c04"]
    assert len(dup) == 3 and np.array_equal(dup[1].boxes, dup[2].boxes)
    dedup = [t for t in ucf.tubes if t is not dup[2]]
    r2 = evaluate_video_ap(
        dedup, [t.with_score(1.0) for t in dedup], num_classes=24, preset="multisports"
    )
    assert np.all(r2.ap == 1.0)


@_data
def test_ucf_quarter_width_shift(ucf) -> None:
    dets = []
    for t in ucf.tubes:
        dx = (t.boxes[:, 2] - t.boxes[:, 0]) / 4
        boxes = t.boxes + np.stack([dx, 0 * dx, dx, 0 * dx], axis=1)
        dets.append(Tube(t.video, t.label, t.frames, boxes, 1.0))
    # per-frame IoU = (w - w/4) / (w + w/4) = 0.6 (a little more with ACT's +1)
    r = evaluate_video_ap(ucf.tubes, dets, num_classes=24, thresholds=[0.2, 0.75])
    assert r.mAP(0.2) == 1.0 and r.mAP(0.75) == 0.0


@_data
def test_ucf_gt_stretched_to_whole_video(ucf) -> None:
    stretched, coverage = [], []
    for t in ucf.tubes:
        n = ucf.num_frames[t.video]
        frames = np.arange(n)
        boxes = t.boxes[np.clip(frames - t.first_frame, 0, len(t) - 1)]
        stretched.append(Tube(t.video, t.label, frames, boxes, 1.0))
        coverage.append(len(t) / n)
    coverage = np.array(coverage)
    # Boxes are perfect on the annotated frames, so the ST-IoU is the temporal coverage
    # len / numf: at 0.5 exactly the tubes covering >= half of their video are found (66%).
    # All scores equal, so the ranking is file order (sorted by video) and true and false
    # positives interleave: ACT's trapezoidal AP gives the README's "about 62".
    r = evaluate_video_ap(ucf.tubes, stretched, num_classes=24, thresholds=[0.5])
    assert (coverage >= 0.5).mean() == pytest.approx(868 / 1315)
    assert r.mAP(0.5) == pytest.approx(0.6170276940715368, abs=1e-12)
    # Scored by coverage (perfect ranking) the AP of a class is exactly its recall.
    ranked = [s.with_score(c) for s, c in zip(stretched, coverage, strict=True)]
    r2 = evaluate_video_ap(ucf.tubes, ranked, num_classes=24, thresholds=[0.5])
    labels = np.array([t.label for t in ucf.tubes])
    recall = [np.mean(coverage[labels == c] >= 0.5) for c in range(24)]
    assert r2.mAP(0.5) == pytest.approx(np.mean(recall), abs=1e-12)


@_data
def test_ucf_classification_with_oracle_scores(ucf) -> None:
    # Videos with one gt tube; the track is that tube stretched over the whole video and
    # scores its class 0.9, others 0.01: trimmed to the gt interval it is the gt itself.
    per_video = defaultdict(list)
    for t in ucf.tubes:
        per_video[t.video].append(t)
    gt = [ts[0] for ts in per_video.values() if len(ts) == 1][:150]
    tracks = []
    for t in gt:
        n = ucf.num_frames[t.video]
        frames = np.arange(n)
        boxes = t.boxes[np.clip(frames - t.first_frame, 0, len(t) - 1)]
        scores = np.full((n, 24), 0.01, np.float32)
        scores[:, t.label] = 0.9
        tracks.append(ScoredTrack(t.video, frames, boxes, scores))
    r = evaluate_classification(tracks, gt, num_classes=24, thresholds=[0.2, 0.3, 0.4])
    assert r.mAP(0.2) == 1.0 and r.mAP(0.4) == 1.0
    assert int(r.num_det.sum()) == 24 * len(gt)
    # Swapping two videos' scores makes both wrong: their true class ranks after 0.9s.
    tracks[0], tracks[1] = (
        ScoredTrack(
            tracks[0].video,
            tracks[0].frames,
            tracks[0].boxes,
            tracks[1].scores[:1].repeat(len(tracks[0].frames), 0),
        ),
        ScoredTrack(
            tracks[1].video,
            tracks[1].frames,
            tracks[1].boxes,
            tracks[0].scores[:1].repeat(len(tracks[1].frames), 0),
        ),
    )
    r2 = evaluate_classification(tracks, gt, num_classes=24, thresholds=[0.2])
    assert (gt[0].label == gt[1].label) == (r2.mAP(0.2) == 1.0)


@pytest.mark.data
@pytest.mark.skipif(not JHMDB.exists(), reason=f"JHMDB ground truth not found at {JHMDB}")
def test_jhmdb_ground_truth_as_detections() -> None:
    from reclnet.runtime.offline.datasets import load_jhmdb

    gt = load_jhmdb(JHMDB)
    dets = [t.with_score(1.0) for t in gt.tubes]
    for preset in PRESETS:
        r = evaluate_video_ap(gt.tubes, dets, num_classes=21, preset=preset)
        assert np.all(r.ap == 1.0)


# ------------------------------------------------------------- command line


def test_cli_table_json_plot_and_errors(tmp_path: Path, capsys) -> None:
    from reclnet.runtime.offline.cli import main

    gt = [tube("v", 0, 0, 9, A), tube("v", 0, 0, 9, B), tube("w", 1, 0, 9, A)]
    dets = [tube("v", 0, 0, 9, A, 0.9), tube("v", 0, 0, 9, A, 0.8), tube("v", 0, 0, 9, B, 0.7)]
    write_tubes(tmp_path / "gt.jsonl", gt)
    write_tubes(tmp_path / "det.jsonl", dets)
    (tmp_path / "names.txt").write_text("Basketball\nDiving\n")
    args = ["--gt", str(tmp_path / "gt.jsonl"), "--detections", str(tmp_path / "det.jsonl")]
    out_json, out_png = tmp_path / "r.json", tmp_path / "pr.png"
    extra = [
        "--class-names",
        str(tmp_path / "names.txt"),
        "--json",
        str(out_json),
        "--plot",
        str(out_png),
        "--frame-ap",
    ]
    assert main([*args, *extra, "--preset", "multisports", "--thresholds", "0.5", "0.75"]) == 0
    out = capsys.readouterr().out
    assert "Basketball*" in out and "mAP" in out and "frame-mAP@0.5" in out
    res = json.loads(out_json.read_text())
    assert res["preset"] == "multisports" and res["thresholds"] == [0.5, 0.75]
    assert res["classes"][0]["ap"]["0.5"] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3), abs=1e-3)
    assert res["mAP"]["0.5"] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3) / 2, abs=1e-3)
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"video": "v", "label": 5, "score": 1.0, "tube": [[0, 0, 0, 1, 1]]}) + "\n"
    )
    assert main(["--gt", str(tmp_path / "gt.jsonl"), "--detections", str(bad)]) == 2
    assert f"{bad}:1: unknown label 5" in capsys.readouterr().err


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_batched_iou_matches_pairwise(preset: str) -> None:
    from reclnet.runtime.offline.video_ap import _batch_iou

    rng = np.random.default_rng(7)
    gt, dets = random_problem(rng, num_videos=2)
    gt = [
        Tube(g.video, g.label, g.frames, g.boxes, None, g.frames[:: int(rng.integers(1, 4))])
        for g in gt
    ]
    pairs = [(d, g) for d in dets for g in gt]
    got = _batch_iou(pairs, PRESETS[preset])
    want = [preset_tube_iou(d, g, preset) for d, g in pairs]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.any(got > 0)
