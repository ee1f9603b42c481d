"""Property tests (hypothesis) of the online segments of ``SegmentBank``.

For random settings and random streams of one track (ties, gaps, hysteresis,
minimum lengths), the events must equal the slow numpy twin and satisfy the
segment invariants: well-formed, non-overlapping, maximal runs of the smoothed
scores, each announced once, scored by the top-k of its raw samples; a snapshot
taken anywhere continues identically.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reclnet.runtime.postproc import EVENT_END, EVENT_START, SegmentBank, causal_median, slow

LEVELS = np.array([0.0, 0.1, 0.25, 0.4, 0.5, 0.5, 0.6, 0.75, 0.9, 1.0], np.float32)


@st.composite
def cases(draw):
    C = draw(st.integers(1, 3))
    window = draw(st.integers(1, 12))
    lookahead = draw(st.integers(0, (window - 1) // 2))
    threshold = draw(st.sampled_from([0.3, 0.5, 0.55, 0.7]))
    close = draw(st.sampled_from([None, threshold - 0.1, threshold - 0.25]))
    kw = dict(
        window=window,
        lookahead=lookahead,
        threshold=threshold,
        close_threshold=close,
        top_k=draw(st.integers(1, 5)),
        min_length=draw(st.integers(1, 4)),
        max_gap=draw(st.sampled_from([None, 0, 1, 3])),
    )
    T = draw(st.integers(0, 40))
    steps = draw(st.lists(st.integers(1, 5), min_size=T, max_size=T))
    frames = np.cumsum(np.asarray(steps, dtype=np.int64)) - 3
    if draw(st.booleans()):  # few levels: ties in windows and in top-k
        idx = draw(st.lists(st.integers(0, len(LEVELS) - 1), min_size=T * C, max_size=T * C))
        x = LEVELS[np.asarray(idx, dtype=np.int64)].reshape(T, C)
    else:
        vals = draw(st.lists(st.floats(0, 1, width=32), min_size=T * C, max_size=T * C))
        x = np.asarray(vals, dtype=np.float32).reshape(T, C)
    cut = draw(st.integers(0, T))
    return C, kw, frames.astype(np.int64), x, cut


def stream(bank, frames, x, cut=None, max_gap=None):
    """Events of one track, each with the push index that emitted it (T = close)."""
    slot = bank.open_track(5)
    per_push = (2 if max_gap is not None else 1) * x.shape[1]
    out = []
    for i, f in enumerate(frames):
        if cut is not None and i == cut:
            bank = SegmentBank.from_state(bank.get_state())
        ev = bank.push(int(f), [slot], x[i : i + 1])
        assert len(ev) <= per_push
        out += [(i, e) for e in ev.tolist()]
    if cut is not None and cut == len(frames):
        bank = SegmentBank.from_state(bank.get_state())
    out += [(len(frames), e) for e in bank.close_track(slot).tolist()]
    return out


@settings(max_examples=150, deadline=None)
@given(cases())
def test_events_equal_slow_twin_and_snapshot_continues(case) -> None:
    C, kw, frames, x, cut = case
    gap = kw["max_gap"]
    got = stream(SegmentBank(C, **kw), frames, x, max_gap=gap)
    assert stream(slow.SlowSegmentBank(C, **kw), frames, x, max_gap=gap) == got
    assert stream(SegmentBank(C, **kw), frames, x, cut=cut, max_gap=gap) == got


@settings(max_examples=150, deadline=None)
@given(cases())
def test_segment_invariants(case) -> None:
    C, kw, frames, x, _ = case
    T = len(frames)
    events = stream(SegmentBank(C, **kw), frames, x, max_gap=kw["max_gap"])
    thr = np.float32(kw["threshold"])
    close = thr if kw["close_threshold"] is None else np.float32(kw["close_threshold"])
    smooth = causal_median(x, kw["window"], kw["lookahead"])
    index = {int(f): i for i, f in enumerate(frames)}
    gap_before = np.zeros(T + 1, dtype=bool)  # a gap between samples u-1 and u
    if kw["max_gap"] is not None and T > 1:
        gap_before[1:T] = np.diff(frames) > kw["max_gap"]
    starts = {}
    for c in range(C):
        ends = sorted(
            (index[e[4]], index[e[5]], e) for _, e in events if e[0] == EVENT_END and e[3] == c
        )
        prev_last = -1
        for first, last, e in ends:
            _, track_id, slot, label, _, _, num, score = e
            assert (track_id, slot, label) == (5, 0, c)
            assert prev_last < first <= last and num == last - first + 1 >= kw["min_length"]
            prev_last = last
            seg = smooth[first : last + 1, c]
            # opens at >= threshold, stays >= close_threshold
            assert seg[0] >= thr and np.all(seg >= close)
            # maximal: cannot start earlier nor end later
            assert first == 0 or gap_before[first] or smooth[first - 1, c] < thr
            assert last == T - 1 or gap_before[last + 1] or smooth[last + 1, c] < close
            # no gap inside
            assert not np.any(gap_before[first + 1 : last + 1])
            raw = x[first : last + 1, c]
            assert score == slow.topk_mean(raw, kw["top_k"])
            assert raw.min() - 1e-7 <= score <= raw.max() + 1e-7
            assert score >= float(raw.astype(np.float64).mean()) - 1e-7
            starts[(c, e[4])] = (first, num)
    # exactly one START per segment, emitted when it reached min_length samples,
    # and at the push that made that sample's smoothed value known
    seen = set()
    for at, e in events:
        if e[0] != EVENT_START:
            continue
        key = (e[3], e[4])
        assert key in starts and key not in seen
        seen.add(key)
        first, _ = starts[key]
        u = first + kw["min_length"] - 1
        assert e[6] == kw["min_length"] and e[5] == frames[u]
        assert at == min(u + kw["lookahead"], T)
    assert seen == set(starts)
