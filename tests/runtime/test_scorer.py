"""OnlineScorer: online == offline, the causal filter, tubes, track ends, bad input, memory."""

from __future__ import annotations

import gc
import sys
import tracemalloc

import numpy as np
import pytest
from reclnet_test_helpers import CONFIG, frame_inputs, make_tracks  # see tests/conftest.py

from reclnet.config import PostprocessConfig, RecLNetConfig
from reclnet.runtime import Event, FrameResult, OnlineScorer
from reclnet.runtime.backends import BackendError, StepRunner, load_backend
from reclnet.runtime.offline.localize import localize_track, median_filter, segment_score

torch = pytest.importorskip("torch")
pytest.importorskip("reclnet.runtime.postproc._core", reason="the C core extension is not built")

C = CONFIG.num_actions


def run_online(scorer: OnlineScorer, tracks, frames=None, end_explicitly: bool = True):
    """Feed every frame; end tracks right after their last sample (or by max_age / flush)."""
    all_frames = sorted({int(f) for fr, _, _ in tracks.values() for f in fr})
    results, events = [], []
    for f in all_frames if frames is None else frames:
        ids, feats, boxes = frame_inputs(tracks, f, scorer.config.modalities)
        res = scorer.update(f, ids, feats, boxes)
        results.append(res)
        events += res.events
        if end_explicitly:
            done = [t for t in ids.tolist() if tracks[t][0][-1] == f and t % 2 == 0]
            if done:
                events += scorer.end_tracks(done)
    return results, events


def offline_segments(model, tracks, pp: PostprocessConfig):
    from reclnet.runtime.backends.torch.runner import sequence_probs

    out, margin = {}, np.inf
    for tid, (frames, feats, _) in tracks.items():
        probs = sequence_probs(model, feats)[:, :C]
        out[tid] = localize_track(
            probs,
            frames,
            window=pp.window,
            threshold=pp.threshold,
            top_k=pp.top_k,
            min_length=pp.min_length,
        )
        margin = min(margin, float(np.abs(median_filter(probs, pp.window) - pp.threshold).min()))
    return out, margin


def ends_by_track(events: list[Event]):
    out: dict[int, list[tuple]] = {}
    for e in events:
        if e.kind == "end":
            out.setdefault(e.track_id, []).append(e)
    return out


def backend(kind: str, exported):
    model, path = exported
    if kind == "torch":
        return load_backend("torch", model=model)
    return load_backend("onnxruntime", model=path, io_binding=kind == "onnxruntime-iobinding")


# ---------------------------------------------------------------- online == offline
@pytest.mark.parametrize("kind", ["torch", "onnxruntime", "onnxruntime-iobinding"])
@pytest.mark.parametrize(("window", "min_length", "seed"), [(7, 1, 0), (8, 3, 11), (5, 2, 2)])
def test_online_equals_offline_with_centred_lookahead(
    exported, kind: str, window: int, min_length: int, seed: int
) -> None:
    model, _ = exported
    tracks = make_tracks(seed)
    pp = PostprocessConfig(
        window=window, lookahead=(window - 1) // 2, threshold=0.24, top_k=6, min_length=min_length
    )
    offline, margin = offline_segments(model, tracks, pp)
    assert margin > 1e-5, "a smoothed score sits on the threshold: the comparison would be moot"
    with backend(kind, exported) as runner:
        scorer = OnlineScorer(runner, postprocess=pp, max_age=3, video="v")
        _, events = run_online(scorer, tracks)
        events += scorer.flush()
    online = ends_by_track(events)
    num = 0
    for tid, segs in offline.items():
        got = sorted(online.get(tid, []), key=lambda e: (e.first_frame, e.label))
        want = sorted(segs, key=lambda s: (s.first_frame, s.label))
        assert [(e.label, e.first_frame, e.last_frame, e.num_samples) for e in got] == [
            (s.label, s.first_frame, s.last_frame, s.num_samples) for s in want
        ], tid
        for e, s in zip(got, want, strict=True):
            assert e.score == pytest.approx(s.score, abs=1e-5)
            num += 1
    assert num >= 5, "too few segments for a meaningful comparison"
    # Each START precedes its END, once per segment.
    starts = [(e.track_id, e.label, e.first_frame) for e in events if e.kind == "start"]
    assert sorted(starts) == sorted(
        (e.track_id, e.label, e.first_frame) for e in events if e.kind == "end"
    )


def test_end_events_carry_the_tracks_boxes_as_tubes(exported) -> None:
    model, _ = exported
    tracks = make_tracks(3)
    with backend("torch", exported) as runner:
        scorer = OnlineScorer(runner, window=5, lookahead=2, threshold=0.24, top_k=4, video="cam")
        _, events = run_online(scorer, tracks)
        events += scorer.flush()
    ends = [e for e in events if e.kind == "end"]
    assert ends
    interpolated = 0
    for e in ends:
        frames, _, boxes = tracks[e.track_id]
        tube = e.tube
        assert tube.video == "cam" and tube.label == e.label and tube.score == e.score
        np.testing.assert_array_equal(tube.frames, np.arange(e.first_frame, e.last_frame + 1))
        want = np.stack([np.interp(tube.frames, frames, boxes[:, j]) for j in range(4)], axis=1)
        np.testing.assert_allclose(tube.boxes, want, rtol=0, atol=1e-4)
        interpolated += int(np.setdiff1d(tube.frames, frames).size)
    assert interpolated > 0, "no segment spans a missed frame: interpolation untested"


# ---------------------------------------------------------------- causal filter
def causal_twin(raw: np.ndarray, frames: np.ndarray, pp: PostprocessConfig) -> list[tuple]:
    """Slow twin of lookahead 0: trailing median of the last `window` samples, then runs."""
    out = []
    smoothed = np.array(
        [np.median(raw[max(0, u - pp.window + 1) : u + 1], axis=0) for u in range(len(raw))],
        dtype=np.float32,
    )
    for c in range(raw.shape[1]):
        on = smoothed[:, c] >= np.float32(pp.threshold)
        u = 0
        while u < len(on):
            if on[u]:
                v = u
                while v < len(on) and on[v]:
                    v += 1
                if v - u >= pp.min_length:
                    score = segment_score(raw[u:v, c], pp.top_k)
                    out.append((c, int(frames[u]), int(frames[v - 1]), v - u, score))
                u = v
            else:
                u += 1
    return sorted(out)


@pytest.mark.parametrize("window", [4, 9])
def test_lookahead_zero_is_the_trailing_median(exported, window: int) -> None:
    from reclnet.runtime.backends.torch.runner import sequence_probs

    model, _ = exported
    tracks = make_tracks(4)
    pp = PostprocessConfig(window=window, lookahead=0, threshold=0.24, top_k=5, min_length=2)
    with backend("onnxruntime", exported) as runner:
        scorer = OnlineScorer(runner, postprocess=pp)
        results, events = run_online(scorer, tracks, end_explicitly=False)
        events += scorer.flush()
    online = ends_by_track(events)
    num = 0
    for tid, (frames, feats, _) in tracks.items():
        raw = sequence_probs(model, feats)[:, :C]
        want = causal_twin(raw, frames, pp)
        got = sorted(
            (e.label, e.first_frame, e.last_frame, e.num_samples, e.score)
            for e in online.get(tid, [])
        )
        assert [g[:4] for g in got] == [w[:4] for w in want]
        np.testing.assert_allclose([g[4] for g in got], [w[4] for w in want], atol=1e-5)
        num += len(got)
    assert num >= 5
    # With no lookahead a segment's START is known at its min_length-th sample's frame.
    first_seen = {}
    for res in results:
        for e in res.events:
            if e.kind == "start":
                first_seen[(e.track_id, e.label, e.first_frame)] = res.frame
                assert e.last_frame == res.frame and e.num_samples == pp.min_length


def test_probs_match_reference_per_frame(exported) -> None:
    """FrameResult.probs: input order, equal to stepping each track alone."""
    model, _ = exported
    tracks = make_tracks(5)
    from reclnet.runtime.backends.torch.runner import sequence_probs

    seq = {tid: sequence_probs(model, feats) for tid, (_, feats, _) in tracks.items()}
    with backend("torch", exported) as runner:
        scorer = OnlineScorer(runner, window=3, lookahead=1)
        results, _ = run_online(scorer, tracks, end_explicitly=False)
    for res in results:
        assert isinstance(res, FrameResult) and res.probs.shape == (res.track_ids.size, C + 1)
        for i, tid in enumerate(res.track_ids.tolist()):
            row = np.searchsorted(tracks[tid][0], res.frame)
            np.testing.assert_allclose(res.probs[i], seq[tid][row], atol=1e-5)


# ---------------------------------------------------------------- track ends
def test_max_age_ends_tracks_and_restarts_them_fresh(exported) -> None:
    model, _ = exported
    rng = np.random.default_rng(0)
    feats = {k: rng.standard_normal((1, d), dtype=np.float32) for k, d in CONFIG.modalities.items()}
    box = np.array([[0, 0, 10, 10]], np.float32)
    with backend("torch", exported) as runner:
        scorer = OnlineScorer(runner, window=3, lookahead=1, threshold=0.0, max_age=2)
        first = scorer.update(0, [9], feats, box)
        scorer.update(1, [9], feats, box)
        # Unseen at 2, 3 (two frames): still live.
        assert (
            scorer.update(
                3, np.zeros(0, np.int64), {k: v[:0] for k, v in feats.items()}, box[:0]
            ).events
            == []
        )
        assert scorer.live_track_ids.tolist() == [9]
        # Unseen for three frames at 5: ended before the frame's step, then new.
        res = scorer.update(5, [9], feats, box)
        ends = [e for e in res.events if e.kind == "end"]
        assert ends and all(e.track_id == 9 and e.last_frame == 1 for e in ends)
        # A fresh zero state: the same probabilities as the very first frame.
        np.testing.assert_array_equal(res.probs, first.probs)


def test_end_tracks_and_flush(exported) -> None:
    rng = np.random.default_rng(1)
    feats = {k: rng.standard_normal((3, d), dtype=np.float32) for k, d in CONFIG.modalities.items()}
    boxes = np.tile(np.array([[0, 0, 5, 5]], np.float32), (3, 1))
    with backend("torch", exported) as runner:
        scorer = OnlineScorer(runner, window=5, lookahead=2, threshold=0.0)
        for f in range(4):
            scorer.update(f, [1, 2, 3], feats, boxes)
        ev = scorer.end_tracks([2])
        # threshold 0: every class is one segment from the first frame on.
        assert sorted(e.label for e in ev if e.kind == "end") == list(range(C))
        assert all(
            e.track_id == 2 and (e.first_frame, e.last_frame) == (0, 3)
            for e in ev
            if e.kind == "end"
        )
        assert scorer.live_track_ids.tolist() == [1, 3]
        with pytest.raises(KeyError, match=r"unknown or already ended track id\(s\) \[2\]"):
            scorer.end_tracks([2, 3])
        assert scorer.live_track_ids.tolist() == [1, 3]
        last = scorer.flush()
        assert {e.track_id for e in last} == {1, 3}
        assert scorer.live_track_ids.size == 0 and scorer.flush() == []


def test_nms_among_ending_segments(exported) -> None:
    """Two tracks with the same boxes and features end together: NMS keeps one tube per class."""
    rng = np.random.default_rng(2)
    row = {k: rng.standard_normal((1, d), dtype=np.float32) for k, d in CONFIG.modalities.items()}
    feats = {k: np.repeat(v, 2, axis=0) for k, v in row.items()}
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10.5]], np.float32)
    out = {}
    for nms in (False, True):
        with backend("torch", exported) as runner:
            scorer = OnlineScorer(runner, window=3, lookahead=1, threshold=0.0, nms=nms)
            for f in range(5):
                scorer.update(f, [4, 5], feats, boxes)
            out[nms] = [e for e in scorer.flush() if e.kind == "end"]
    assert len(out[False]) == 2 * C
    assert len(out[True]) == C and {e.label for e in out[True]} == set(range(C))


# ---------------------------------------------------------------- bad input
def _valid(f: int, ids=(1, 2), seed: int = 0):
    rng = np.random.default_rng(seed + f)
    n = len(ids)
    feats = {k: rng.standard_normal((n, d), dtype=np.float32) for k, d in CONFIG.modalities.items()}
    boxes = np.array([[0, 0, 4 + f, 4 + f]] * n, np.float32)
    return np.array(ids, np.int64), feats, boxes


def _bad_calls():
    ids, feats, boxes = _valid(3)

    def with_feat(name, value):
        return (3, ids, {**feats, name: value}, boxes)

    nan = feats["rgb"].copy()
    nan[1, 3] = np.nan
    inf = feats["flow"].copy()
    inf[0, 0] = -np.inf
    return {
        "wrong feature shape": (with_feat("rgb", feats["rgb"][:1]), ValueError, r"\[N=2, 12\]"),
        "wrong feature dtype": (
            with_feat("rgb", feats["rgb"].astype(np.float64)),
            TypeError,
            "float32",
        ),
        "NaN feature": (with_feat("rgb", nan), ValueError, "NaN or infinite"),
        "inf feature": (with_feat("flow", inf), ValueError, "NaN or infinite"),
        "feature size": (
            with_feat("flow", np.zeros((2, 11), np.float32)),
            ValueError,
            "feature size 11, the model expects 10",
        ),
        "missing stream": ((3, ids, {"rgb": feats["rgb"]}, boxes), ValueError, "missing"),
        "duplicate ids": ((3, np.array([1, 1]), feats, boxes), ValueError, "duplicate track id"),
        "float ids": ((3, np.array([1.0, 2.0]), feats, boxes), TypeError, "integers"),
        "same frame": ((2, ids, feats, boxes), ValueError, "does not increase"),
        "older frame": ((0, ids, feats, boxes), ValueError, "does not increase"),
        "boxes shape": ((3, ids, feats, boxes[:, :3]), ValueError, "boxes must be"),
        "NaN box": (
            (3, ids, feats, np.array([[0, 0, 1, np.nan], [0, 0, 1, 1]], np.float32)),
            ValueError,
            "boxes has NaN",
        ),
        "inverted box y": (
            (3, ids, feats, np.array([[0, 0, 1, 1], [0, 5, 1, 1]], np.float32)),
            ValueError,
            r"boxes row 1 has x2 < x1 or y2 < y1",
        ),
        "inverted box": (
            (3, ids, feats, np.array([[5, 0, 1, 1], [0, 0, 1, 1]], np.float32)),
            ValueError,
            "x2 < x1",
        ),
    }


class FlakyRunner(StepRunner):
    """Wraps a runner; fails (raises, or returns NaN) on demand."""

    def __init__(self, inner, mode: str | None = None) -> None:
        self.inner, self.mode = inner, mode
        self.name, self.config, self.postprocess = "flaky", inner.config, inner.postprocess

    def _step(self, features, state):
        mode, self.mode = self.mode, None
        if mode == "raise":
            raise BackendError("device lost")
        probs, new = self.inner.step(features, state)
        if mode == "nan":
            probs = probs.copy()
            probs[0, 0] = np.nan
        return probs, new


def _signature(results: list[FrameResult], events: list[Event]):
    return (
        [(r.frame, r.track_ids.tolist(), r.probs.tobytes()) for r in results],
        [
            (e.kind, e.track_id, e.label, e.first_frame, e.last_frame, e.num_samples, e.score)
            for e in events
        ],
    )


@pytest.mark.parametrize(
    "bad", [*_bad_calls(), "unknown end_tracks id", "backend raises", "backend NaN"]
)
def test_bad_input_leaves_the_scorer_unchanged(exported, bad: str) -> None:
    model, _ = exported
    outputs = []
    for inject in (False, True):
        runner = FlakyRunner(load_backend("torch", model=model))
        # ids 2 and 5 appear and disappear so that new tracks, timeouts and segments are hit.
        scorer = OnlineScorer(runner, window=3, lookahead=1, threshold=0.2, top_k=2, max_age=1)
        results, events = [], []
        for f, ids in [(0, (1, 2)), (1, (1, 5)), (2, (1, 2))]:
            i, fe, bo = _valid(f, ids)
            res = scorer.update(f, i, fe, bo)
            results.append(res)
        if inject:
            if bad == "unknown end_tracks id":
                with pytest.raises(KeyError, match=r"\[99\]"):
                    scorer.end_tracks([1, 99])
            elif bad in ("backend raises", "backend NaN"):
                runner.mode = "raise" if bad == "backend raises" else "nan"
                with pytest.raises(BackendError):
                    scorer.update(3, *_valid(3, (1, 5, 7)))
            else:
                args, exc, match = _bad_calls()[bad]
                with pytest.raises(exc, match=match):
                    scorer.update(*args)
        for f, ids in [(3, (1, 5, 7)), (4, (1, 7)), (6, (7, 8))]:
            i, fe, bo = _valid(f, ids)
            results.append(scorer.update(f, i, fe, bo))
            events += results[-1].events
        events += scorer.flush()
        outputs.append(_signature(results, events))
    assert outputs[0] == outputs[1]
    assert any(e[0] == "end" for e in outputs[0][1])


# ---------------------------------------------------------------- memory
class NumpyRunner(StepRunner):
    """A tiny exact numpy recurrent step (test double): keeps the memory test fast."""

    name = "numpy"

    def __init__(self, config: RecLNetConfig) -> None:
        rng = np.random.default_rng(0)
        self.config, self.postprocess = config, PostprocessConfig()
        d = sum(config.modalities.values())
        self.w = rng.standard_normal((d + config.state_size, config.state_size)).astype(np.float32)
        self.h = rng.standard_normal((config.state_size, config.num_classes)).astype(np.float32)

    def _step(self, features, state):
        x = np.concatenate([*[features[k] for k in self.config.modalities], state], axis=1)
        new = np.tanh(x @ self.w).astype(np.float32)
        logits = new @ self.h
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32), new


@pytest.mark.slow
def test_memory_stays_flat_on_100k_frames_of_churn() -> None:
    """100,000 frames, ~3 live tracks at any time, a new track every ~3 frames."""
    config = RecLNetConfig(
        num_actions=2, modalities={"x": 3}, projection_size=4, memory_size=4, num_layers=1
    )
    scorer = OnlineScorer(
        NumpyRunner(config), window=5, lookahead=2, threshold=0.4, top_k=3, max_age=2
    )
    rng = np.random.default_rng(0)
    feats_pool = rng.standard_normal((64, 3), dtype=np.float32)
    lifetimes = rng.integers(4, 13, size=100_000)
    box = np.array([[0, 0, 8, 8]], np.float32)
    live: dict[int, int] = {}  # id -> frames left
    counters = {"next_id": 0, "ends": 0}
    marks = {}

    def frame(f: int) -> None:
        while len(live) < 3:  # constant churn: every track lives 4..12 frames
            live[counters["next_id"]] = int(lifetimes[counters["next_id"]])
            counters["next_id"] += 1
        ids = np.fromiter(live, np.int64)
        res = scorer.update(f, ids, {"x": feats_pool[(ids + f) % 64]}, np.repeat(box, ids.size, 0))
        counters["ends"] += sum(e.kind == "end" for e in res.events)
        for t in list(live):
            live[t] -= 1
            if live[t] == 0:
                del live[t]  # left the scene: the scorer ends it by max_age

    def mark() -> tuple:
        gc.collect()
        pool = scorer.pool
        return (
            sys.getallocatedblocks(),
            tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0,
            (pool.capacity, pool.history, pool.nbytes(), scorer.bank.capacity),
        )

    # Bytes are counted by tracemalloc (Python objects and numpy buffers, as requested
    # by the code), not by RSS, which depends on the allocator and its caching.
    try:
        for f in range(100_000):
            frame(f)
            if f + 1 == 10_000:
                marks[f + 1] = mark()
            elif f + 1 == 70_000:
                tracemalloc.start()  # the last 30,000 frames only: tracing is slow
            elif f + 1 == 100_000:
                marks[f + 1] = mark()
    finally:
        tracemalloc.stop()
    (blocks0, _, sizes0), (blocks1, traced, sizes1) = marks[10_000], marks[100_000]
    assert counters["next_id"] > 30_000 and counters["ends"] > 10_000
    assert sizes1 == sizes0, "pool or bank grew"
    assert scorer.pool.num_live <= 6 and len(scorer.pool.open_starts) <= 6
    # One leaked object per track would be > 20,000 blocks here.
    assert blocks1 - blocks0 < 2_000, f"{blocks1 - blocks0} more allocated blocks"
    # Live bytes allocated over the last 30,000 frames (~9,000 tracks): a leaked row,
    # array or dict entry per track would be about 1 MiB.
    assert traced < 256 << 10, f"{traced >> 10} KiB allocated and still alive"


class StrictDeviceRunner(StepRunner):
    """Device-resident double with TensorRT's rule: only the last step's handle is valid."""

    name = "strict-device"
    device_resident = True

    def __init__(self, inner) -> None:
        self.inner, self.config, self.postprocess = inner, inner.config, inner.postprocess
        self.generation = 0
        self.uploads = 0

    def _check(self, handle) -> None:
        if handle[0] != self.generation:
            raise ValueError("stale device state handle")

    def _state_rows(self, state) -> int:
        if not isinstance(state, tuple):
            return super()._state_rows(state)
        self._check(state)
        return int(state[1].shape()[0])

    def _step(self, features, state):
        if isinstance(state, tuple):
            state = state[1]
        else:
            self.uploads += 1
        probs, new = self.inner.step(features, state)
        self.generation += 1
        return probs, (self.generation, new)

    def _fetch_state(self, state):
        return self.inner.fetch_state(state[1])


def test_device_resident_states_give_the_host_results(exported) -> None:
    tracks = make_tracks(10)
    out = []
    for device in (False, True):
        with backend("onnxruntime-iobinding" if device else "onnxruntime", exported) as inner:
            runner = StrictDeviceRunner(inner) if device else inner
            scorer = OnlineScorer(runner, window=5, lookahead=2, threshold=0.24, max_age=1)
            results, events = run_online(scorer, tracks)
            events += scorer.flush()
            out.append(_signature(results, events))
            if device:
                # Steady frames reuse the device handle: far fewer uploads than frames.
                assert runner.uploads < len(results) // 2
    assert out[0] == out[1]


@pytest.mark.parametrize("scale", [1.0, 1e30, 3e38])
@pytest.mark.parametrize("bad", [0, 1, 3])
def test_fast_finite_check_equals_numpy(scale: float, bad: int) -> None:
    from reclnet.runtime.backends.base import all_finite

    rng = np.random.default_rng(int(scale) % 1000 + bad)
    for _ in range(200):
        n, d = int(rng.integers(1, 20)), int(rng.integers(1, 300))
        with np.errstate(over="ignore"):  # values beyond float32 become +-inf: fine here
            x = (rng.standard_normal((n, d)) * scale).astype(np.float32)
        for _ in range(bad):
            x[rng.integers(n), rng.integers(d)] = rng.choice([np.nan, np.inf, -np.inf])
        assert all_finite(x) == bool(np.isfinite(x).all())


@pytest.mark.parametrize("d", [4095, 4096, 4097, 9000])
def test_fast_finite_check_over_column_chunks(d: int) -> None:
    """Rows longer than one dot-product chunk, a bad value in any chunk, strided views."""
    from reclnet.runtime.backends.base import _DOT_COLUMNS, all_finite

    rng = np.random.default_rng(d)
    x = rng.standard_normal((3, d)).astype(np.float32)
    assert all_finite(x) and all_finite(x[:, ::3]) and all_finite(x[::2])
    for col in {0, min(d - 1, _DOT_COLUMNS - 1), min(d - 1, _DOT_COLUMNS), d - 1}:
        for value in (np.nan, np.inf, -np.inf):
            y = x.copy()
            y[1, col] = value
            assert not all_finite(y), (col, value)
            assert all_finite(y[::2]) and not all_finite(y[1:2])
    big = np.full((2, d), 3e38, np.float32)  # finite, but every row sum overflows
    assert all_finite(big)


# ---------------------------------------------------------------- parameters and contract
def test_scorer_takes_only_step_runners() -> None:
    class Duck:
        name, config, postprocess, device_resident = "duck", CONFIG, PostprocessConfig(), False

        def step(self, features, state):  # pragma: no cover - never called
            raise AssertionError

    with pytest.raises(TypeError, match="must be a reclnet.runtime.backends.StepRunner"):
        OnlineScorer(Duck())


@pytest.mark.parametrize(
    ("override", "exc", "match"),
    [
        (dict(window=0), ValueError, "PostprocessConfig.window must be >= 1 and <= 65536, got 0"),
        (dict(window=5, lookahead=3), ValueError, r"lookahead must be >= 0 and <= 2"),
        (dict(threshold=float("nan")), ValueError, "threshold must be a finite number in"),
        (dict(threshold=1.5), ValueError, r"threshold must be a finite number in \[0, 1\]"),
        (dict(top_k=2.5), TypeError, "top_k must be an integer"),
        (dict(min_length=0), ValueError, "min_length must be >= 1"),
    ],
)
def test_bad_postprocess_overrides_name_the_field(override, exc, match) -> None:
    with pytest.raises(exc, match=match):
        OnlineScorer(NumpyRunner(CONFIG), **override)


def test_an_empty_frame_still_checks_its_features() -> None:
    scorer = OnlineScorer(NumpyRunner(CONFIG))
    empty = np.zeros(0, np.int64)
    with pytest.raises(ValueError, match="missing"):
        scorer.update(0, empty, {"rgb": np.zeros((0, 12), np.float32)}, np.zeros((0, 4)))
    res = scorer.update(
        0,
        empty,
        {k: np.zeros((0, d), np.float32) for k, d in CONFIG.modalities.items()},
        np.zeros((0, 4), np.float32),
    )
    assert res.probs.shape == (0, CONFIG.num_classes) and res.events == []


class RecordingHostRunner(StepRunner):
    """Host double that records whether each step got the previous step's own states."""

    name = "recording-host"

    def __init__(self, inner) -> None:
        self.inner, self.config, self.postprocess = inner, inner.config, inner.postprocess
        self.last_out = None
        self.passed_on = 0
        self.steps = 0

    def _step(self, features, state):
        self.steps += 1
        self.passed_on += state is self.last_out
        probs, new = self.inner.step(features, state)
        self.last_out = new
        return probs, new


def test_a_steady_batch_passes_its_states_on_and_scores_like_each_track_alone(
    exported, tmp_path
) -> None:
    """Host runners: the same tracks on consecutive frames get the last step's states
    as they are (no gather / scatter through the pool); tracks joining, leaving and a
    snapshot in between still give each track's own sequence probabilities."""
    from reclnet.runtime.backends.torch.runner import sequence_probs

    model, _ = exported
    rng = np.random.default_rng(3)
    spans = {1: (0, 40), 2: (0, 40), 3: (0, 30), 4: (20, 40)}
    feats = {
        tid: {
            k: rng.standard_normal((b - a, d), dtype=np.float32)
            for k, d in CONFIG.modalities.items()
        }
        for tid, (a, b) in spans.items()
    }
    box = np.array([[10, 20, 60, 140]], np.float32)
    seq = {tid: sequence_probs(model, f) for tid, f in feats.items()}
    with backend("onnxruntime", exported) as inner:
        runner = RecordingHostRunner(inner)
        scorer = OnlineScorer(runner, window=3, lookahead=1)
        for frame in range(40):
            if frame == 25:
                scorer.snapshot(tmp_path / "mid.snap")  # syncs the carried states into the pool
            live = [t for t, (a, b) in spans.items() if a <= frame < b]
            if frame == 30:
                scorer.end_tracks([3])
            ids = np.array(live, np.int64)
            batch = {
                k: np.stack([feats[t][k][frame - spans[t][0]] for t in live])
                for k in CONFIG.modalities
            }
            res = scorer.update(frame, ids, batch, np.repeat(box, len(live), axis=0))
            for i, tid in enumerate(live):
                np.testing.assert_allclose(res.probs[i], seq[tid][frame - spans[tid][0]], atol=1e-5)
    # Gathered from the pool: frames 0, 20 and 30 (the batch changes) and 25 (after
    # the snapshot wrote the carried states back).
    assert runner.steps == 40 and runner.passed_on == 36


def test_the_same_ids_skip_the_set_check_but_changed_ids_do_not(exported) -> None:
    """The last frame's ids are known distinct; ids the caller changed since are checked again."""
    model, _ = exported
    scorer = OnlineScorer(load_backend("torch", model=model))
    ids, feats, boxes = _valid(0, ids=(4, 7, 9))
    scorer.update(0, ids, feats, boxes)
    result = scorer.update(1, ids, feats, boxes)  # the known path
    result.track_ids[2] = result.track_ids[0]  # the caller's copy, now with a duplicate
    ids[1] = ids[0]  # and the caller's own array
    for bad in (result.track_ids, ids):
        with pytest.raises(ValueError, match=r"duplicate track id\(s\) \[4\]"):
            scorer.update(2, bad, feats, boxes)
    assert scorer.frame == 1 and sorted(scorer.live_track_ids.tolist()) == [4, 7, 9]
