"""The C post-processing core through its Python facade, against slow twins.

References: the numpy twin ``reclnet.runtime.postproc.slow`` (same events, recomputed from
scratch), pandas rolling medians, and the offline ``reclnet.runtime.offline.localize``.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from reclnet.runtime.offline import localize
from reclnet.runtime.postproc import (
    EVENT_DTYPE,
    EVENT_END,
    EVENT_START,
    PostprocError,
    SegmentBank,
    causal_median,
    slow,
)

WINDOWS = [1, 2, 3, 5, 24, 25, 64]
GRID = sorted({(w, lk) for w in WINDOWS for lk in (0, 1, (w - 1) // 2) if lk <= (w - 1) // 2})


def random_scores(
    rng: np.random.Generator, T: int, C: int, ties: bool = False, decades: bool = False
) -> np.ndarray:
    x = rng.random((T, C), dtype=np.float32)
    if ties:  # few distinct values: many equal elements in the sorted windows
        x = np.floor(x * 4).astype(np.float32) / 4
    if decades:  # 1e-24..1: top-k sums whose float64 value depends on the order
        x = (10.0 ** (-24 * x) * (rng.random((T, C)) < 0.6)).astype(np.float32)
    return x


def random_frames(rng: np.random.Generator, T: int) -> np.ndarray:
    steps = 1 + (rng.random(T) < 0.15) * rng.integers(1, 6, T)
    return (np.cumsum(steps) + 100).astype(np.int64)


def run_track(bank, frames: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """All events of one track pushed alone and closed, with the push index of each."""
    slot = bank.open_track(42)
    out, at = [], []
    for i, f in enumerate(frames):
        ev = bank.push(int(f), [slot], scores[i : i + 1])
        out.append(ev)
        at += [i] * len(ev)
    ev = bank.close_track(slot)
    out.append(ev)
    assert all(e.dtype == EVENT_DTYPE for e in out)
    at += [len(frames)] * len(ev)
    return np.concatenate(out), at


# ---------------------------------------------------------------------- median


@pytest.mark.parametrize("window,lookahead", GRID)
def test_causal_median_equals_slow_twin_and_pandas(window: int, lookahead: int) -> None:
    rng = np.random.default_rng(window * 100 + lookahead)
    for T in (0, 1, window // 2 + 1, 3 * window + 7):
        x = random_scores(rng, T, 3, ties=T % 2 == 1)
        got = causal_median(x, window, lookahead)
        assert got.dtype == np.float32 and got.shape == x.shape
        np.testing.assert_array_equal(got, slow.causal_median(x, window, lookahead))
        if lookahead == 0:
            ref = pd.DataFrame(x).rolling(window, min_periods=1).median().to_numpy()
            np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
        if lookahead == (window - 1) // 2:
            ref = pd.DataFrame(x).rolling(window, center=True, min_periods=1).median().to_numpy()
            np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
            if T:
                np.testing.assert_array_equal(got, localize.median_filter(x, window))


def test_causal_median_accepts_views_and_other_dtypes() -> None:
    x = np.random.default_rng(0).random((50, 6))
    ref = causal_median(x.astype(np.float32), 5, 2)
    np.testing.assert_array_equal(causal_median(x, 5, 2), ref)  # float64 cast to float32
    np.testing.assert_array_equal(causal_median(x.astype(np.float32)[:, :3], 5, 2), ref[:, :3])
    np.testing.assert_array_equal(causal_median(np.asfortranarray(x, np.float32), 5, 2), ref)


@pytest.mark.parametrize(
    "args,match",
    [
        ((np.zeros(5, np.float32), 3, 0), "2-D"),
        ((np.zeros((5, 2), np.float32), 0, 0), "window"),
        ((np.zeros((5, 2), np.float32), 5, 3), "lookahead"),
        ((np.zeros((5, 2), object), 5, 0), "dtype"),
        ((np.array([[0.1, np.nan]], np.float32), 3, 0), "NaN or infinite"),
        ((np.array([[0.1, -np.inf]], np.float32), 3, 0), "NaN or infinite"),
    ],
)
def test_causal_median_rejects_bad_input(args, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        causal_median(*args)


# ---------------------------------------------------------------------- one track


@pytest.mark.parametrize("window,lookahead", GRID)
@pytest.mark.parametrize(
    "variant",
    [
        dict(threshold=0.5),
        dict(threshold=0.55, close_threshold=0.45, min_length=3, top_k=4, max_gap=2),
        dict(threshold=0.5, top_k=1, max_gap=0, ties=True),
        dict(threshold=1e-12, close_threshold=0.0, top_k=7, decades=True),
    ],
    ids=["plain", "hysteresis-minlen-gaps", "ties-gap0", "decades"],
)
def test_track_events_equal_slow_twin(window: int, lookahead: int, variant: dict) -> None:
    variant = dict(variant)
    ties, decades = variant.pop("ties", False), variant.pop("decades", False)
    rng = np.random.default_rng(window * 7 + lookahead)
    T = int(rng.integers(window // 2, 2 * window + 20))
    x = random_scores(rng, T, 4, ties=ties, decades=decades)
    frames = random_frames(rng, T)
    kw = dict(window=window, lookahead=lookahead, **variant)
    got, got_at = run_track(SegmentBank(4, **kw), frames, x)
    ref, ref_at = run_track(slow.SlowSegmentBank(4, **kw), frames, x)
    np.testing.assert_array_equal(got, ref)  # score too: same summation order
    assert got_at == ref_at


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("max_gap", [None, 0, 3])
def test_centred_bank_equals_offline_localize(window: int, max_gap: int | None) -> None:
    rng = np.random.default_rng(window + 1000 * (max_gap or 7))
    for rep in range(3):
        T = int(rng.integers(1, 4 * window + 30))
        x = random_scores(rng, T, 5, ties=rep == 2)
        frames = random_frames(rng, T)
        kw = dict(
            window=window,
            threshold=0.5,
            close_threshold=0.5 - 0.1 * rep,
            top_k=3 + rep,
            min_length=1 + rep,
            max_gap=max_gap,
        )
        events, _ = run_track(SegmentBank(5, lookahead=(window - 1) // 2, **kw), frames, x)
        ends = events[events["kind"] == EVENT_END]
        got = sorted(
            (
                int(e["first_frame"]),
                int(e["label"]),
                int(e["last_frame"]),
                int(e["num_samples"]),
                float(e["score"]),
            )
            for e in ends
        )
        ref = sorted(
            (s.first_frame, s.label, s.last_frame, s.num_samples, s.score)
            for s in localize.localize_track(x, frames, **kw)
        )
        assert got == ref
        # every segment was announced by exactly one START with the same first frame
        starts = events[events["kind"] == EVENT_START]
        assert sorted(
            zip(starts["first_frame"].tolist(), starts["label"].tolist(), strict=True)
        ) == [(r[0], r[1]) for r in ref]


def test_trailing_filter_reacts_without_delay() -> None:
    # L = 0: each push smooths the sample just pushed with the ones before it.
    bank = SegmentBank(1, window=3, threshold=0.5, top_k=2)
    s = bank.open_track(7)
    hi = float(np.float32(0.9))
    assert bank.push(10, [s], [[0.9]]).tolist() == [(EVENT_START, 7, s, 0, 10, 10, 1, hi)]
    # median(0.9, 0.0) = 0.45 < 0.5: the segment ends at the previous sample
    assert bank.push(11, [s], [[0.0]]).tolist() == [(EVENT_END, 7, s, 0, 10, 10, 1, hi)]
    assert bank.close_track(s).tolist() == []


@pytest.mark.parametrize("window,lookahead", [(1, 0), (4, 1), (25, 12), (25, 0)])
def test_push_track_equals_single_pushes(window: int, lookahead: int) -> None:
    rng = np.random.default_rng(window)
    T = 3 * window + 11
    x, frames = random_scores(rng, T, 5), random_frames(rng, T)
    kw = dict(window=window, lookahead=lookahead, threshold=0.5, top_k=3, max_gap=2)
    ref, _ = run_track(SegmentBank(5, **kw), frames, x)
    bank = SegmentBank(5, **kw)
    slot = bank.open_track(42)
    cut = T // 3
    parts = [bank.push_track(slot, frames[:cut], x[:cut])]
    before = bank.get_state()
    bad = x[cut:].copy()
    bad[4, 1] = np.nan
    with pytest.raises(PostprocError, match=r"sample 4 \(frame \d+\): score is NaN"):
        bank.push_track(slot, frames[cut:], bad)
    with pytest.raises(PostprocError, match="sample 0 .*frame not after"):
        bank.push_track(slot, frames[cut - 1 :], x[cut - 1 :])
    assert bank.get_state() == before
    parts += [bank.push_track(slot, frames[cut:], x[cut:]), bank.close_track(slot)]
    assert all(p.dtype == EVENT_DTYPE for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), ref)


def test_long_push_track_is_chunked_but_atomic() -> None:
    rng = np.random.default_rng(1)
    T = 2600  # more than one chunk of 1024 samples
    x = random_scores(rng, T, 2)
    frames = random_frames(rng, T)
    kw = dict(window=7, lookahead=3, threshold=0.5, max_gap=3)
    ref, _ = run_track(SegmentBank(2, **kw), frames, x)
    bank = SegmentBank(2, **kw)
    slot = bank.open_track(42)
    before = bank.get_state()
    bad = x.copy()
    bad[2100, 0] = np.inf
    with pytest.raises(PostprocError, match=r"sample 2100 \(frame \d+\): score is NaN"):
        bank.push_track(slot, frames, bad)
    bad_frames = frames.copy()
    bad_frames[1500] = bad_frames[1499]
    with pytest.raises(PostprocError, match="sample 1500 .*frame not after"):
        bank.push_track(slot, bad_frames, x)
    assert bank.get_state() == before
    got = np.concatenate([bank.push_track(slot, frames, x), bank.close_track(slot)])
    np.testing.assert_array_equal(got, ref)


# ---------------------------------------------------------------------- many tracks


@pytest.mark.parametrize("window,lookahead", [(1, 0), (2, 0), (5, 2), (24, 11), (25, 1), (25, 12)])
def test_bank_with_many_tracks_equals_slow_twin(window: int, lookahead: int) -> None:
    rng = np.random.default_rng(window * 31 + lookahead)
    kw = dict(
        window=window,
        lookahead=lookahead,
        threshold=0.55,
        close_threshold=0.5,
        top_k=5,
        min_length=2,
        max_gap=2,
        capacity=2,
    )
    C = 3
    fast, ref = SegmentBank(C, **kw), slow.SlowSegmentBank(C, **kw)
    open_slots: list[int] = []
    next_id = 0
    for frame in range(0, 400, 2):
        if len(open_slots) < 6 and rng.random() < 0.3:
            a, b = fast.open_track(next_id), ref.open_track(next_id)
            assert a == b
            open_slots.append(a)
            next_id += 1
        if open_slots and rng.random() < 0.05:
            s = open_slots.pop(int(rng.integers(len(open_slots))))
            np.testing.assert_array_equal(fast.close_track(s), ref.close_track(s))
        chosen = [s for s in open_slots if rng.random() < 0.8]  # the others see a gap
        rng.shuffle(chosen)
        probs = rng.random((len(chosen), C + 1), dtype=np.float32)
        # a column slice of the scorer's [n, C+1] output, passed without a copy
        np.testing.assert_array_equal(
            fast.push(frame, chosen, probs[:, :C]), ref.push(frame, chosen, probs[:, :C])
        )
    assert fast.num_tracks == len(open_slots)
    for s in open_slots:
        np.testing.assert_array_equal(fast.close_track(s), ref.close_track(s))
    assert fast.num_tracks == 0 and fast.capacity >= 6


# ---------------------------------------------------------------------- errors


def make_bank() -> tuple[SegmentBank, int, int]:
    bank = SegmentBank(3, window=5, lookahead=2, threshold=0.3, max_gap=4, capacity=1)
    a, b = bank.open_track(1), bank.open_track(2)
    rng = np.random.default_rng(5)
    for f in range(8):
        bank.push(f, [a, b], rng.random((2, 3), dtype=np.float32))
    return bank, a, b


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_scores_rejected_state_unchanged(bad: float) -> None:
    bank, a, b = make_bank()
    before = bank.get_state()
    x = np.full((2, 3), 0.5, np.float32)
    x[1, 2] = bad
    with pytest.raises(PostprocError, match=r"row 1 \(slot 1\).*NaN or infinite"):
        bank.push(9, [a, b], x)
    assert bank.get_state() == before
    bank.push(9, [a, b], np.full((2, 3), 0.5, np.float32))  # and it goes on


@pytest.mark.parametrize(
    "frame,slots,scores,match",
    [
        (9, [0, 5], np.zeros((2, 3)), r"row 1 \(slot 5\): slot out of range or not open"),
        (9, [0, -1], np.zeros((2, 3)), "slot out of range"),
        (9, [1, 1], np.zeros((2, 3)), "slot given twice"),
        (7, [0], np.zeros((1, 3)), "last frame 7: frame not after"),
        (9, [0, 1], np.zeros((2, 4)), "3 columns"),
        (9, [0, 1], np.zeros((3, 3)), "2 slots but 3 score rows"),
        (9, [0, 1], np.zeros(3), "2-D"),
        (9, [0.0, 1.0], np.zeros((2, 3)), "integer"),
        (9.5, [0, 1], np.zeros((2, 3)), "frame must be an integer"),
        (9, [0, 1], np.array([["a"] * 3] * 2), "dtype"),
    ],
)
def test_bad_push_rejected_state_unchanged(frame, slots, scores, match: str) -> None:
    bank, _, _ = make_bank()
    before = bank.get_state()
    with pytest.raises(PostprocError, match=match):
        bank.push(frame, slots, scores)
    assert bank.get_state() == before


def test_closed_and_unknown_slots_and_duplicate_tracks() -> None:
    bank, a, b = make_bank()
    assert len(bank.close_track(a)) >= 0
    for call in (lambda: bank.close_track(a), lambda: bank.push(20, [a], [[0.1] * 3])):
        with pytest.raises(PostprocError, match="not open"):
            call()
    with pytest.raises(PostprocError, match="already open"):
        bank.open_track(2)
    assert bank.open_track(1) == a  # lowest free slot is reused
    bank.reset()
    assert bank.num_tracks == 0
    with pytest.raises(PostprocError, match="not open"):
        bank.close_track(b)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        # The C core's refusal quotes the values given (and its rules).
        (dict(num_classes=0), "invalid configuration num_classes=0"),
        (dict(window=0), "window=0"),
        (dict(window=5, lookahead=3), "window=5, lookahead=3"),
        (dict(lookahead=-1), "lookahead=-1"),
        (dict(threshold=float("nan")), "threshold=nan"),
        (dict(threshold=0.2, close_threshold=0.3), "close_threshold=0.3"),
        (dict(threshold=1e300), "threshold=1e[+]?300"),  # inf as float32
        (dict(top_k=0), "top_k=0"),
        (dict(min_length=0), "min_length=0"),
        (dict(max_gap=-1), "max_gap must be in"),
        (dict(capacity=0), "capacity=0"),
        (dict(window=True), "window must be an integer"),
        (dict(threshold="high"), "threshold must be a real number"),
    ],
)
def test_bad_config_rejected(kwargs: dict, match: str) -> None:
    kwargs = {"num_classes": 2, **kwargs}
    with pytest.raises(PostprocError, match=match):
        SegmentBank(kwargs.pop("num_classes"), **kwargs)


# ---------------------------------------------------------------------- snapshot


def test_snapshot_restores_and_continues_identically() -> None:
    rng = np.random.default_rng(11)
    kw = dict(
        window=7,
        lookahead=3,
        threshold=0.5,
        close_threshold=0.4,
        top_k=3,
        min_length=2,
        max_gap=1,
        capacity=2,
    )
    bank = SegmentBank(4, **kw)
    slots = [bank.open_track(i * 10) for i in range(3)]
    for frame in range(60):
        if frame % 10 == 5:
            state = bank.get_state()
            copy = SegmentBank.from_state(state)
            assert copy.get_state() == state and copy.config == bank.config
            clone = pickle.loads(pickle.dumps(bank))
            base = 1000 + 100 * frame
            rest = [(f, rng.random((3, 4), dtype=np.float32)) for f in range(base, base + 12)]
            for f, x in rest:
                chosen = slots if f % 4 else slots[:2]
                ev = bank.push(f, chosen, x[: len(chosen)])
                np.testing.assert_array_equal(copy.push(f, chosen, x[: len(chosen)]), ev)
                np.testing.assert_array_equal(clone.push(f, chosen, x[: len(chosen)]), ev)
            for s in slots:
                np.testing.assert_array_equal(copy.close_track(s), clone.close_track(s))
            assert copy.num_tracks == 0
        else:
            bank.push(1000 + 100 * frame, slots, rng.random((3, 4), dtype=np.float32))


def test_corrupt_state_rejected() -> None:
    bank, _, _ = make_bank()
    state = bytearray(bank.get_state())
    for pos in (0, 9, 20, len(state) // 2, len(state) - 1):
        bad = bytearray(state)
        bad[pos] ^= 0x10
        with pytest.raises(PostprocError, match="state buffer corrupt"):
            SegmentBank.from_state(bytes(bad))
    with pytest.raises(PostprocError, match="state buffer corrupt"):
        SegmentBank.from_state(bytes(state[:-3]))
    with pytest.raises(PostprocError, match="bytes"):
        SegmentBank.from_state("not bytes")  # type: ignore[arg-type]


def test_event_dtype_layout() -> None:
    assert EVENT_DTYPE.itemsize == 48
    assert EVENT_DTYPE.names == (
        "kind",
        "track_id",
        "slot",
        "label",
        "first_frame",
        "last_frame",
        "num_samples",
        "score",
    )
    bank = SegmentBank(2, window=1, threshold=0.5, top_k=2)
    s = bank.open_track(-(2**40))
    ev = bank.push(2**40, [s], [[0.75, 0.25]])
    assert ev.tolist() == [(EVENT_START, -(2**40), s, 0, 2**40, 2**40, 1, 0.75)]
    ev = bank.push(2**40 + 3, [s], [[0.25, 0.25]])
    assert ev.tolist() == [(EVENT_END, -(2**40), s, 0, 2**40, 2**40, 1, 0.75)]


def test_independent_banks_in_threads_match_sequential_runs() -> None:
    # No global state: banks pushed concurrently (the GIL is released in C) give the
    # same events as the same work done one after another.
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(8)
    data = [(random_scores(rng, 400, 6), random_frames(rng, 400)) for _ in range(4)]

    def work(i: int) -> np.ndarray:
        x, frames = data[i]
        bank = SegmentBank(6, window=9, lookahead=4, threshold=0.5, max_gap=2)
        return run_track(bank, frames, x)[0]

    sequential = [work(i) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(work, range(4)))
    for a, b in zip(sequential, concurrent, strict=True):
        np.testing.assert_array_equal(a, b)
