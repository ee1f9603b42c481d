"""Offline temporal localization of scored tracks (paper section 3.3).

This module is the reference semantics of the project's post-processing: the
online C core (``reclnet.runtime.postproc.SegmentBank`` with lookahead
``(window - 1) // 2``) must produce exactly the segments :func:`localize_track`
returns. Numpy only.

Semantics of :func:`localize_track`, per class column ``c`` of a track of ``T`` samples:

1. **Median.** ``smoothed[u]`` is the median of the raw scores of samples
   ``u - back .. u + ahead`` clipped to ``0 .. T-1``, with ``ahead = (window - 1) // 2``
   and ``back = window - 1 - ahead`` (odd windows are centred; an even window has one
   more sample behind). The window counts *samples*, not frames: frame gaps are
   ignored by the median. With ``n`` samples inside, the median is the middle value for
   odd ``n`` and, for even ``n``, the two middle values ``a <= b`` averaged in float32
   arithmetic as ``(a + b) * 0.5f`` (what ``numpy.median`` does on float32).
2. **Runs.** Both thresholds are rounded to float32 and compared with the float32
   smoothed values. A segment opens at a sample with ``smoothed >= threshold`` and extends over
   the following samples while ``smoothed >= close_threshold`` (default: ``threshold``;
   it must not exceed ``threshold``, giving hysteresis when lower). It ends before the
   first sample with ``smoothed < close_threshold``, at the end of the track, or - when
   ``frames`` and ``max_gap`` are given - before a sample ``u`` with
   ``frames[u] - frames[u-1] > max_gap``; that sample is then examined afresh (it opens a
   new segment only if ``smoothed[u] >= threshold``).
3. **Length.** Segments with fewer than ``min_length`` samples are dropped.
4. **Score.** The mean of the ``k = min(top_k, num_samples)`` largest *raw* scores of the
   segment: those values as float64, summed in descending order one after another
   (sequentially, not pairwise), divided by ``k``.

Segments are returned sorted by ``(start, label)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from reclnet.config import PostprocessConfig

from .tubes import Tube

__all__ = [
    "Segment",
    "median_filter",
    "localize_track",
    "viterbi_track",
    "segment_score",
    "segments_to_tubes",
]


@dataclass(frozen=True)
class Segment:
    """A temporal sub-track of one track for one class.

    Attributes
    ----------
    label : int
        Class column.
    start, stop : int
        Sample indices into the track, ``stop`` exclusive.
    first_frame, last_frame : int
        Frame numbers of samples ``start`` and ``stop - 1`` (inclusive).
    num_samples : int
        ``stop - start``.
    score : float
        Mean of the top-k raw scores (see the module docstring).
    """

    label: int
    start: int
    stop: int
    first_frame: int
    last_frame: int
    num_samples: int
    score: float


def _check_scores(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    arr = np.asarray(scores)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [T, C], got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        t, c = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} has a non-finite value at sample {t}, class {c}")
    return arr


def _check_frames(frames: np.ndarray | None, num: int) -> np.ndarray:
    if frames is None:
        return np.arange(num, dtype=np.int64)
    arr = np.asarray(frames)
    if arr.shape != (num,):
        raise ValueError(f"frames must have shape ({num},), got {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"frames must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = np.flatnonzero(np.diff(arr) <= 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"frames must strictly increase: sample {i + 1} has frame {arr[i + 1]} "
            f"after frame {arr[i]}"
        )
    return arr


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _median_rows(block: np.ndarray) -> np.ndarray:
    """Median over the last axis of a float32 block, even counts as documented."""
    n = block.shape[-1]
    lo, hi = (n - 1) // 2, n // 2
    part = np.partition(block, (lo, hi) if lo != hi else lo, axis=-1)
    if lo == hi:
        return part[..., lo].astype(np.float32)
    # float32 arithmetic on purpose: the C core computes (a + b) * 0.5f.
    return (part[..., lo] + part[..., hi]) * np.float32(0.5)


def median_filter(scores: np.ndarray, window: int) -> np.ndarray:
    """Per-column median over a centred window clipped to the track.

    Parameters
    ----------
    scores : np.ndarray
        float32 [T, C] (or [T]); other real dtypes are cast to float32. Must be finite.
    window : int
        Window length in samples (>= 1); sample ``u`` uses samples
        ``u - (window - 1 - (window - 1) // 2) .. u + (window - 1) // 2`` inside ``0..T-1``.

    Returns
    -------
    np.ndarray
        float32, same shape as ``scores``.
    """
    window = _check_int("window", window, 1)
    arr = np.asarray(scores)
    one_d = arr.ndim == 1
    x = _check_scores(arr[:, None] if one_d else arr)
    num = x.shape[0]
    ahead = (window - 1) // 2
    back = window - 1 - ahead
    out = np.empty_like(x)
    if num >= window:
        # Full windows at once; only the clipped rows near both ends are done one by one.
        out[back : num - ahead] = _median_rows(sliding_window_view(x, window, axis=0))
        edge = [*range(min(back, num)), *range(max(num - ahead, back), num)]
    else:
        edge = range(num)
    for u in edge:
        lo, hi = max(0, u - back), min(num, u + ahead + 1)
        out[u] = _median_rows(x[lo:hi].T)
    return out[:, 0] if one_d else out


def segment_score(raw: np.ndarray, top_k: int) -> float:
    """Mean of the ``min(top_k, len(raw))`` largest values, summed in descending order in float64.

    Parameters
    ----------
    raw : np.ndarray
        float32 [n], n >= 1.
    top_k : int
        k before clipping.
    """
    vals = np.asarray(raw, dtype=np.float32).astype(np.float64)
    k = min(int(top_k), vals.shape[0])
    top = np.sort(vals)[::-1][:k]
    # cumsum is sequential, unlike np.sum's pairwise summation: the C core adds the same way.
    return float(np.cumsum(top)[-1] / k)


def _make_segments(
    raw: np.ndarray,
    frames: np.ndarray,
    label: int,
    starts: np.ndarray,
    stops: np.ndarray,
    top_k: int,
    min_length: int,
) -> list[Segment]:
    out = []
    for s, e in zip(starts.tolist(), stops.tolist(), strict=True):
        if e - s < min_length:
            continue
        out.append(
            Segment(
                label=label,
                start=s,
                stop=e,
                first_frame=int(frames[s]),
                last_frame=int(frames[e - 1]),
                num_samples=e - s,
                score=segment_score(raw[s:e, label], top_k),
            )
        )
    return out


def localize_track(
    scores: np.ndarray,
    frames: np.ndarray | None = None,
    *,
    window: int = PostprocessConfig.window,
    threshold: float = PostprocessConfig.threshold,
    close_threshold: float | None = None,
    top_k: int = PostprocessConfig.top_k,
    min_length: int = PostprocessConfig.min_length,
    max_gap: int | None = None,
) -> list[Segment]:
    """Cut one scored track into scored segments per class (median filter + threshold).

    Exact semantics in the module docstring.

    Parameters
    ----------
    scores : np.ndarray
        float32 [T, C] raw per-sample class scores (finite).
    frames : np.ndarray, optional
        int64 [T] strictly increasing frame numbers of the samples (default ``0..T-1``).
    window : int
        Median window in samples (>= 1).
    threshold : float
        Smoothed score at or above which a segment opens.
    close_threshold : float, optional
        Smoothed score below which an open segment closes (default ``threshold``;
        must be ``<= threshold``).
    top_k : int
        Segment score = mean of its top-k raw scores (>= 1, clipped to the length).
    min_length : int
        Minimum number of samples of a segment (>= 1).
    max_gap : int, optional
        A frame difference ``frames[u] - frames[u-1] > max_gap`` (>= 0) ends open
        segments before sample ``u``; None never splits.

    Returns
    -------
    list of Segment
        Sorted by ``(start, label)``.
    """
    raw = _check_scores(scores)
    num, num_classes = raw.shape
    frames_arr = _check_frames(frames, num)
    window = _check_int("window", window, 1)
    top_k = _check_int("top_k", top_k, 1)
    min_length = _check_int("min_length", min_length, 1)
    threshold = np.float32(threshold)
    close = threshold if close_threshold is None else np.float32(close_threshold)
    if not (np.isfinite(threshold) and np.isfinite(close)):
        raise ValueError("threshold and close_threshold must be finite")
    if close > threshold:
        raise ValueError(f"close_threshold {close} must not exceed threshold {threshold}")
    if max_gap is not None:
        max_gap = _check_int("max_gap", max_gap, 0)
    if num == 0:
        return []
    smoothed = median_filter(raw, window)
    # A run boundary before sample u (u >= 1) when the frame gap is too large.
    breaks = np.zeros(num + 1, dtype=bool)
    breaks[0] = breaks[num] = True
    if max_gap is not None:
        breaks[1:num] = np.diff(frames_arr) > max_gap
    segments: list[Segment] = []
    # Most classes of a track never reach the threshold: skip them without a loop body.
    for c in np.flatnonzero(np.any(smoothed >= threshold, axis=0)).tolist():
        col = smoothed[:, c]
        # float32 comparisons, as in the C core (0.7 rounds below itself in float32).
        stay = col >= close
        opens = np.flatnonzero(col >= threshold)
        if opens.size == 0:
            continue
        # Maximal runs of `stay` not crossing a break: each yields at most one segment,
        # from its first opening sample to its end.
        padded = np.concatenate([[False], stay, [False]])
        run_start = np.flatnonzero(padded[1:-1] & (~padded[:-2] | breaks[:-1]))
        run_stop = np.flatnonzero(padded[1:-1] & (~padded[2:] | breaks[1:])) + 1
        pos = np.searchsorted(opens, run_start)
        valid = pos < opens.size
        first_open = np.where(valid, opens[np.minimum(pos, opens.size - 1)], num)
        keep = first_open < run_stop
        segments += _make_segments(
            raw, frames_arr, c, first_open[keep], run_stop[keep], top_k, min_length
        )
    segments.sort(key=lambda s: (s.start, s.label))
    return segments


def viterbi_track(
    scores: np.ndarray,
    frames: np.ndarray | None = None,
    *,
    alpha: float = 3.0,
    background: float | np.ndarray | None = None,
    top_k: int = PostprocessConfig.top_k,
    min_length: int = PostprocessConfig.min_length,
) -> list[Segment]:
    """Temporal trimming by a two-state Viterbi labelling per class (Saha et al., ROAD).

    For class ``c`` the labelling ``l_u in {action, background}`` maximizes
    ``sum_u unary(l_u) - alpha * #{u : l_u != l_{u-1}}`` with ``unary(action) = s_u`` and
    ``unary(background)`` given by ``background`` (default ``1 - s_u``, ROAD's two-class
    form), all in float64. Ties keep the previous label
    (no switch) and, at the end of the track, prefer background. Maximal action runs
    become segments, scored and filtered by ``min_length`` as in :func:`localize_track`.

    Parameters
    ----------
    scores : np.ndarray
        float32 [T, C] raw scores (finite).
    frames : np.ndarray, optional
        int64 [T] strictly increasing frame numbers (default ``0..T-1``).
    alpha : float
        Label-switch penalty (>= 0).
    background : float or np.ndarray, optional
        Background unary: None for ``1 - s_u``; a constant (a threshold-like level);
        float [T] (e.g. the model's background column) or float [T, C].
    top_k, min_length : int
        As in :func:`localize_track`.

    Returns
    -------
    list of Segment
        Sorted by ``(start, label)``.
    """
    raw = _check_scores(scores)
    num, num_classes = raw.shape
    frames_arr = _check_frames(frames, num)
    top_k = _check_int("top_k", top_k, 1)
    min_length = _check_int("min_length", min_length, 1)
    alpha = float(alpha)
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be finite and >= 0, got {alpha}")
    if num == 0:
        return []
    s = raw.astype(np.float64)
    if background is None:
        bg = 1.0 - s
    else:
        b = np.asarray(background, dtype=np.float64)
        if b.ndim == 1 and b.shape[0] == num:
            b = b[:, None]
        try:
            bg = np.broadcast_to(b, s.shape)
        except ValueError:
            raise ValueError(
                f"background must be a scalar, [T] or [T, C] = {s.shape}, got shape {b.shape}"
            ) from None
        if not np.all(np.isfinite(bg)):
            raise ValueError("background has non-finite values")
    # value[state] with state 0 = background, 1 = action; vectorized over classes.
    v_bg, v_act = bg[0].copy(), s[0].copy()
    # from_other[u, state]: the best path into `state` at u came from the other state.
    switch_bg = np.zeros((num, num_classes), dtype=bool)
    switch_act = np.zeros((num, num_classes), dtype=bool)
    for u in range(1, num):
        stay_bg, come_bg = v_bg, v_act - alpha
        stay_act, come_act = v_act, v_bg - alpha
        switch_bg[u] = come_bg > stay_bg
        switch_act[u] = come_act > stay_act
        v_bg = np.maximum(stay_bg, come_bg) + bg[u]
        v_act = np.maximum(stay_act, come_act) + s[u]
    state = v_act > v_bg
    labels = np.empty((num, num_classes), dtype=bool)
    for u in range(num - 1, -1, -1):
        labels[u] = state
        state = np.where(state, state ^ switch_act[u], state ^ switch_bg[u])
    segments: list[Segment] = []
    for c in range(num_classes):
        padded = np.concatenate([[False], labels[:, c], [False]]).astype(np.int8)
        edges = np.diff(padded)
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        segments += _make_segments(raw, frames_arr, c, starts, stops, top_k, min_length)
    segments.sort(key=lambda seg: (seg.start, seg.label))
    return segments


def segments_to_tubes(
    video: str,
    frames: np.ndarray,
    boxes: np.ndarray,
    segments: Sequence[Segment],
) -> list[Tube]:
    """Cut a track's boxes into one detection tube per segment.

    Parameters
    ----------
    video : str
        Video of the track.
    frames : np.ndarray
        int64 [T] frames of the track's samples (consecutive within each segment).
    boxes : np.ndarray
        float32 [T, 4] ``x1 y1 x2 y2`` per sample.
    segments : sequence of Segment
        From :func:`localize_track` or :func:`viterbi_track` on this track.

    Returns
    -------
    list of Tube
        Label and score from each segment.
    """
    frames = np.asarray(frames, dtype=np.int64)
    boxes = np.asarray(boxes, dtype=np.float32)
    return [
        Tube(video, s.label, frames[s.start : s.stop], boxes[s.start : s.stop], s.score)
        for s in segments
    ]
