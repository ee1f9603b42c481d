"""Offline localization: median filter, threshold segments, Viterbi, tube IoU and NMS vs slow twins."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reclnet.runtime.offline.localize import (
    Segment,
    localize_track,
    median_filter,
    segment_score,
    segments_to_tubes,
    viterbi_track,
)
from reclnet.runtime.offline.tube_geometry import nms_tubes, spatial_iou, temporal_iou, tube_iou
from reclnet.runtime.offline.tubes import Tube

# ---------------------------------------------------------------- slow twins


def pandas_median(scores: np.ndarray, window: int) -> np.ndarray:
    """pandas' centred rolling median with clipped windows (min_periods=1)."""
    df = pd.DataFrame(scores.astype(np.float64))
    return df.rolling(window, center=True, min_periods=1).median().to_numpy().astype(np.float32)


def loop_median(scores: np.ndarray, window: int) -> np.ndarray:
    ahead = (window - 1) // 2
    back = window - 1 - ahead
    out = np.empty_like(scores)
    for u in range(scores.shape[0]):
        lo, hi = max(0, u - back), min(scores.shape[0], u + ahead + 1)
        for c in range(scores.shape[1]):
            vals = sorted(scores[lo:hi, c].tolist())
            n = len(vals)
            if n % 2:
                out[u, c] = vals[n // 2]
            else:
                out[u, c] = (np.float32(vals[n // 2 - 1]) + np.float32(vals[n // 2])) * np.float32(
                    0.5
                )
    return out


def reference_localize(
    scores, frames, *, window, threshold, close_threshold, top_k, min_length, max_gap
):
    """The documented state machine, one sample at a time."""
    num, num_classes = scores.shape
    frames = np.arange(num) if frames is None else frames
    smoothed = pandas_median(scores, window)
    thr = np.float32(threshold)
    close = thr if close_threshold is None else np.float32(close_threshold)
    out = []

    def emit(c, s, e):
        if e - s >= min_length:
            top = sorted((float(v) for v in scores[s:e, c]), reverse=True)[:top_k]
            total = 0.0
            for v in top:
                total += v
            out.append(
                Segment(c, s, e, int(frames[s]), int(frames[e - 1]), e - s, total / len(top))
            )

    for c in range(num_classes):
        start = None
        for u in range(num):
            gap = max_gap is not None and u > 0 and frames[u] - frames[u - 1] > max_gap
            if start is not None and gap:
                emit(c, start, u)
                start = None
            if start is None:
                if smoothed[u, c] >= thr:
                    start = u
            elif smoothed[u, c] < close:
                emit(c, start, u)
                start = None
        if start is not None:
            emit(c, start, num)
    return sorted(out, key=lambda s: (s.start, s.label))


def brute_force_viterbi(s: np.ndarray, alpha: float) -> tuple[float, tuple[int, ...]]:
    best = (-np.inf, ())
    for labels in itertools.product((0, 1), repeat=s.shape[0]):
        lab = np.array(labels)
        value = np.sum(np.where(lab == 1, s, 1.0 - s)) - alpha * np.sum(lab[1:] != lab[:-1])
        if value > best[0] + 1e-12:
            best = (value, labels)
    return best


# ---------------------------------------------------------------- median


@pytest.mark.parametrize("window", [1, 2, 3, 4, 5, 24, 25, 26])
@pytest.mark.parametrize("length", [1, 2, 7, 24, 25, 26, 60])
def test_median_matches_pandas_and_loop(window: int, length: int) -> None:
    rng = np.random.default_rng(window * 100 + length)
    x = rng.random((length, 3), dtype=np.float32)
    x[:, 2] = np.round(x[:, 2] * 4) / 4  # many ties
    got = median_filter(x, window)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_array_equal(got, pandas_median(x, window))
    np.testing.assert_array_equal(got, loop_median(x, window))


def test_median_one_dimensional_and_even_count_mean() -> None:
    x = np.array([0.0, 1.0, 0.5, 0.2], dtype=np.float32)
    # window 3, clipped at both ends: [0, 1] -> 0.5, [0, 1, .5] -> .5, [1, .5, .2] -> .5,
    # [.5, .2] -> .35
    np.testing.assert_array_equal(median_filter(x, 3), np.float32([0.5, 0.5, 0.5, 0.35]))
    np.testing.assert_array_equal(median_filter(x, 1), x)


def test_median_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="non-finite value at sample 1, class 0"):
        median_filter(np.float32([[0.1], [np.nan]]), 3)
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        median_filter(np.zeros((3, 1), np.float32), 0)


# ---------------------------------------------------------------- threshold segments


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    length=st.integers(1, 70),
    num_classes=st.integers(1, 3),
    window=st.sampled_from([1, 2, 3, 5, 8, 25]),
    threshold=st.sampled_from([0.1, 0.3, 0.5, 0.7]),
    hysteresis=st.sampled_from([None, 0.0, 0.15]),
    top_k=st.sampled_from([1, 3, 40]),
    min_length=st.sampled_from([1, 2, 5]),
    max_gap=st.sampled_from([None, 0, 1, 2, 3]),
)
def test_localize_matches_reference(
    data, length, num_classes, window, threshold, hysteresis, top_k, min_length, max_gap
) -> None:
    seed = data.draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    # Blocky scores so that segments of many lengths appear.
    level = rng.random((length // 4 + 1, num_classes)).astype(np.float32)
    scores = np.repeat(level, 4, axis=0)[:length]
    scores = np.clip(scores + 0.05 * rng.standard_normal(scores.shape), 0, 1).astype(np.float32)
    frames = np.cumsum(rng.integers(1, 4, size=length)) + 100
    close = None if hysteresis is None else max(0.0, threshold - hysteresis)
    kwargs = dict(
        window=window,
        threshold=threshold,
        close_threshold=close,
        top_k=top_k,
        min_length=min_length,
        max_gap=max_gap,
    )
    got = localize_track(scores, frames, **kwargs)
    assert got == reference_localize(scores, frames, **kwargs)


def test_localize_hand_case() -> None:
    scores = np.zeros((20, 2), np.float32)
    scores[3:8, 0] = [0.5, 0.9, 0.2, 0.8, 0.6]  # one segment 3..7 with window 1
    scores[12:15, 1] = 0.3
    segs = localize_track(scores, window=1, threshold=0.1, top_k=2)
    assert segs == [
        Segment(0, 3, 8, 3, 7, 5, (np.float64(np.float32(0.9)) + np.float32(0.8)) / 2),
        Segment(1, 12, 15, 12, 14, 3, float(np.float32(0.3))),
    ]
    assert localize_track(scores, window=1, top_k=2, min_length=4) == segs[:1]
    # Hysteresis keeps the segment open through the 0.2 dip when closing below 0.15 only.
    dip = np.float32([[0.0], [0.5], [0.2], [0.5], [0.0]])
    assert [(s.start, s.stop) for s in localize_track(dip, window=1, threshold=0.3)] == [
        (1, 2),
        (3, 4),
    ]
    assert [
        (s.start, s.stop)
        for s in localize_track(dip, window=1, threshold=0.3, close_threshold=0.15)
    ] == [(1, 4)]


def test_frame_gap_ends_segment_but_median_counts_samples() -> None:
    scores = np.full((6, 1), 0.9, np.float32)
    frames = np.array([0, 1, 2, 10, 11, 12])
    segs = localize_track(scores, frames, window=3, max_gap=5)
    assert [(s.first_frame, s.last_frame, s.num_samples) for s in segs] == [(0, 2, 3), (10, 12, 3)]
    assert len(localize_track(scores, frames, window=3)) == 1
    # A lone high sample after the gap is smoothed with the samples before it.
    scores = np.float32([[0.0], [0.0], [0.9], [0.9]])
    segs = localize_track(scores, np.array([0, 1, 50, 51]), window=3, max_gap=1)
    assert [(s.start, s.stop) for s in segs] == [(2, 4)]


def test_float32_threshold_comparison() -> None:
    # 0.7 rounds below itself in float32: a float32 0.7 score reaches a 0.7 threshold.
    scores = np.full((3, 1), 0.7, np.float32)
    assert len(localize_track(scores, window=1, threshold=0.7)) == 1


def test_segment_score_sums_in_descending_order() -> None:
    vals = np.float32([1e-8, 1.0, 3e-8, 0.5])
    assert segment_score(vals, 40) == (((1.0 + 0.5) + np.float64(np.float32(3e-8))) + 1e-8) / 4
    assert segment_score(vals, 1) == 1.0


def test_localize_rejects_bad_input() -> None:
    ok = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="non-finite value at sample 2, class 1"):
        bad = ok.copy()
        bad[2, 1] = np.inf
        localize_track(bad)
    with pytest.raises(ValueError, match="strictly increase: sample 2 has frame 1 after frame 1"):
        localize_track(ok, np.array([0, 1, 1, 2]))
    with pytest.raises(ValueError, match="frames must have shape"):
        localize_track(ok, np.arange(3))
    with pytest.raises(ValueError, match="must be 2-D"):
        localize_track(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="close_threshold 0.5 must not exceed"):
        localize_track(ok, threshold=0.1, close_threshold=0.5)
    for name in ("window", "top_k", "min_length"):
        with pytest.raises(ValueError, match=f"{name} must be an integer >= 1"):
            localize_track(ok, **{name: 0})
    with pytest.raises(ValueError, match="max_gap must be an integer >= 0"):
        localize_track(ok, max_gap=-1)
    assert localize_track(np.zeros((0, 3), np.float32)) == []


# ---------------------------------------------------------------- Viterbi


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0, 3.0])
def test_viterbi_matches_brute_force(seed: int, alpha: float) -> None:
    rng = np.random.default_rng(seed)
    s = rng.random((9, 1), dtype=np.float32)
    _, labels = brute_force_viterbi(s[:, 0].astype(np.float64), alpha)
    got = np.zeros(9, dtype=int)
    for seg in viterbi_track(s, alpha=alpha):
        got[seg.start : seg.stop] = 1
    assert tuple(got.tolist()) == labels


@pytest.mark.parametrize("seed", range(6))
def test_viterbi_background_forms(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = rng.random((8, 2), dtype=np.float32)
    bg = rng.random(8)

    def labels(segs, c):
        out = np.zeros(8, dtype=int)
        for g in segs:
            if g.label == c:
                out[g.start : g.stop] = 1
        return tuple(out.tolist())

    for background, unary_bg in [(0.3, np.full(8, 0.3)), (bg, bg)]:
        segs = viterbi_track(s, alpha=0.5, background=background)
        for c in range(2):
            # brute force with the given background unary: s' = s - bg + 1/2 (same argmax)
            shifted = s[:, c].astype(np.float64) - unary_bg
            best = max(
                itertools.product((0, 1), repeat=8),
                key=lambda lab: np.sum(np.array(lab) * shifted) - 0.5 * np.sum(np.diff(lab) != 0),
            )
            assert labels(segs, c) == best
    with pytest.raises(ValueError, match="background must be"):
        viterbi_track(s, background=np.zeros(3))


def test_viterbi_penalty_removes_short_flips() -> None:
    s = np.full((30, 1), 0.05, np.float32)
    s[10:20, 0] = 0.95
    s[14, 0] = 0.1  # one-sample dip inside the action
    s[25, 0] = 0.9  # one-sample blip in the background
    assert [(g.start, g.stop) for g in viterbi_track(s, alpha=0.0)] == [
        (10, 14),
        (15, 20),
        (25, 26),
    ]
    assert [(g.start, g.stop) for g in viterbi_track(s, alpha=1.0)] == [(10, 20)]


@pytest.mark.parametrize("seed", range(6))
def test_viterbi_and_threshold_agree_on_clean_steps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_classes, length = 3, 400
    scores = np.full((length, num_classes), 0.02, np.float32)
    # Steps at least 30 samples long, 30 apart and 30 from the track ends: longer than the
    # median window, so the median and the Viterbi penalty both keep them intact.
    for c in range(num_classes):
        t = 30 + int(rng.integers(0, 20))
        while t + 60 < length - 30:
            n = int(rng.integers(30, 60))
            scores[t : t + n, c] = rng.uniform(0.6, 0.95)
            t += n + 30 + int(rng.integers(0, 40))
    frames = np.arange(length) + 1000
    thr = localize_track(scores, frames)
    vit = viterbi_track(scores, frames, alpha=3.0)
    assert len(thr) >= num_classes
    assert thr == vit


# ---------------------------------------------------------------- tubes: IoU and NMS


def brute_iou(a: Tube, b: Tube, plus_one: bool, inclusive: bool) -> float:
    fa, fb = set(a.frames.tolist()), set(b.frames.tolist())
    both = sorted(fa & fb)
    one = 1 if inclusive else 0
    tmin, tmax = max(a.first_frame, b.first_frame), min(a.last_frame, b.last_frame)
    if tmax < tmin:
        return 0.0
    union = max(a.last_frame, b.last_frame) - min(a.first_frame, b.first_frame) + one
    t = 1.0 if union == 0 else (tmax - tmin + one) / union
    ious = []
    p = 1.0 if plus_one else 0.0
    for f in both:
        x = a.boxes[f - a.first_frame].astype(float)
        y = b.boxes[f - b.first_frame].astype(float)
        iw = max(0.0, min(x[2], y[2]) - max(x[0], y[0]) + p)
        ih = max(0.0, min(x[3], y[3]) - max(x[1], y[1]) + p)
        inter = iw * ih
        union_area = (
            (x[2] - x[0] + p) * (x[3] - x[1] + p) + (y[2] - y[0] + p) * (y[3] - y[1] + p) - inter
        )
        ious.append(inter / union_area if union_area > 0 else 0.0)
    return t * float(np.mean(ious))


def random_tube(rng, video="v", label=0, score=None) -> Tube:
    n = int(rng.integers(1, 15))
    first = int(rng.integers(0, 20))
    xy = rng.uniform(0, 50, size=(n, 2))
    wh = rng.uniform(0, 30, size=(n, 2))
    return Tube(video, label, np.arange(first, first + n), np.hstack([xy, xy + wh]), score)


@pytest.mark.parametrize("seed", range(30))
def test_tube_iou_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = random_tube(rng), random_tube(rng)
    for plus_one, inclusive in itertools.product([False, True], repeat=2):
        got = tube_iou(a, b, plus_one=plus_one, inclusive=inclusive)
        assert got == pytest.approx(brute_iou(a, b, plus_one, inclusive), abs=1e-12)
        assert got == pytest.approx(tube_iou(b, a, plus_one=plus_one, inclusive=inclusive))
    assert tube_iou(a, a) == pytest.approx(1.0) or np.any(a.boxes[:, 2:] == a.boxes[:, :2])


def test_iou_hand_cases() -> None:
    box = np.float32([[0, 0, 10, 10]])
    assert spatial_iou(box, box + [5, 0, 5, 0])[0] == pytest.approx(50 / 150)
    assert spatial_iou(box, box + [5, 0, 5, 0], plus_one=True)[0] == pytest.approx(66 / 176)
    assert spatial_iou(np.zeros((1, 4)), np.zeros((1, 4)))[0] == 0.0  # empty union
    # one-frame overlap: inclusive counts 1 of 19 frames, exclusive 0 of 18
    assert temporal_iou(0, 9, 9, 18) == pytest.approx(1 / 19)
    assert temporal_iou(0, 9, 9, 18, inclusive=False) == 0.0
    assert temporal_iou(5, 5, 5, 5, inclusive=False) == 1.0
    assert temporal_iou(0, 4, 6, 9) == 0.0


def test_nms_keeps_best_per_video_and_label() -> None:
    rng = np.random.default_rng(0)
    base = random_tube(rng, score=0.9)
    near = base.with_score(0.8)  # identical: suppressed
    other_label = Tube("v", 1, base.frames, base.boxes, 0.7)
    other_video = Tube("w", 0, base.frames, base.boxes, 0.6)
    far = Tube("v", 0, base.frames + 100, base.boxes, 0.95)
    kept = nms_tubes([base, near, other_label, other_video, far], 0.2)
    assert kept == [far, base, other_label, other_video]
    with pytest.raises(ValueError, match="score None"):
        nms_tubes([Tube("v", 0, base.frames, base.boxes)])


@pytest.mark.parametrize("seed", range(10))
def test_nms_matches_quadratic_twin(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tubes = [
        random_tube(rng, label=int(rng.integers(0, 2)), score=float(rng.random()))
        for _ in range(25)
    ]
    order = sorted(range(len(tubes)), key=lambda i: -tubes[i].score)
    alive = [True] * len(tubes)
    for pos, i in enumerate(order):
        if not alive[i]:
            continue
        for j in order[pos + 1 :]:
            same = tubes[j].label == tubes[i].label
            if alive[j] and same and brute_iou(tubes[i], tubes[j], False, True) > 0.2:
                alive[j] = False
    assert nms_tubes(tubes, 0.2) == [tubes[i] for i in order if alive[i]]


def test_segments_to_tubes_cuts_boxes() -> None:
    scores = np.zeros((10, 1), np.float32)
    scores[2:6] = 0.9
    frames = np.arange(50, 60)
    boxes = np.arange(40, dtype=np.float32).reshape(10, 4)
    boxes[:, 2:] += 10
    (tube,) = segments_to_tubes("vid", frames, boxes, localize_track(scores, frames, window=1))
    assert (tube.video, tube.label, tube.first_frame, tube.last_frame) == ("vid", 0, 52, 55)
    np.testing.assert_array_equal(tube.boxes, boxes[2:6])
    assert tube.score == pytest.approx(0.9)
