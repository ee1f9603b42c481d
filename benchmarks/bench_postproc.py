"""Cost of online post-processing per (track, class) sample: the C core vs median baselines.

Cases: 1 track and 100 live tracks, 24 classes each, median window 25, trailing filter
(lookahead 0), threshold 0.1, top-40 scores (the paper's settings). Every timing is
divided by the number of (track, class) samples processed.

Implementations (same scores, same process, interleaved by ``timing.measure``):

* ``reclnet C core``: median + threshold segments + top-k, i.e. the whole job. One track:
  ``SegmentBank.push_track`` over the whole stream in one call (pure C cost). 100 tracks:
  one low-level ``Bank.push`` per frame for all tracks (C cost + one binding call/frame).
* ``python SegmentBank.push``: the public Python facade, one call per frame: the C core
  plus a few microseconds of Python per call (validation, event copy), which dominate
  with one track. Named apart from the core rows on purpose: the suite's "<= 20 ns per
  sample" target judges the C core, this row shows what a Python caller pays.
* ``reclnet causal_median``: the C streaming median alone, over the whole array.
* ``bottleneck.move_median`` (the baseline), ``pandas rolling median`` and the
  ``numpy reference`` (``sliding_window_view`` + ``np.median``): the median alone.

Scores (seeded, float32): every class |N(0, 0.02)|; per track one action class at a level
U(0.35, 0.85) + N(0, 0.1) during bursts of 50-300 frames separated by 50-300 frames,
plus short false alarms: the segments the core cuts are realistic in number and length.
"""

from __future__ import annotations

import numpy as np

from reclnet.benchmarks.rows import BOTTLENECK, C_CORE, row
from reclnet.benchmarks.timing import Timing, measure
from reclnet.config import PostprocessConfig

WINDOW = PostprocessConfig.window
NUM_CLASSES = 24
BASELINE = BOTTLENECK
FACADE = "python SegmentBank.push"


def simulate(rng: np.random.Generator, frames: int, tracks: int) -> np.ndarray:
    """float32 [frames, tracks, NUM_CLASSES] scores (module docstring)."""
    x = np.abs(rng.normal(0.0, 0.02, (frames, tracks, NUM_CLASSES)))
    for k in range(tracks):
        label = int(rng.integers(NUM_CLASSES))
        t = int(rng.integers(0, 300))
        while t < frames:
            n = int(rng.integers(50, 300))
            level = rng.uniform(0.35, 0.85)
            x[t : t + n, k, label] = level + rng.normal(0.0, 0.1, x[t : t + n, k, label].shape)
            t += n + int(rng.integers(50, 300))
        alarms = rng.random(frames) < 0.01
        x[alarms, k, int(rng.integers(NUM_CLASSES))] = rng.uniform(0.2, 0.6, int(alarms.sum()))
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _row(case: str, impl: str, timing: Timing, samples: int, base: dict | None, **extra):
    return row(
        "postproc",
        case,
        impl,
        unit="ns/sample",
        stats=timing,
        scale=1e9 / samples,
        precision="fp32",
        baseline=base,
        label=impl,
        samples_per_call=samples,
        **extra,
    )


def _median_baselines(flat: np.ndarray) -> dict[str, object]:
    """Median-only implementations over a [T, N] float32 array (window 25, trailing)."""
    import bottleneck as bn
    import pandas as pd
    from numpy.lib.stride_tricks import sliding_window_view

    from reclnet.runtime.postproc import causal_median

    def numpy_reference() -> np.ndarray:
        # full windows vectorized, the first WINDOW - 1 (clipped) rows one by one
        out = np.empty_like(flat)
        out[WINDOW - 1 :] = np.median(sliding_window_view(flat, WINDOW, axis=0), axis=-1)
        for u in range(min(WINDOW - 1, flat.shape[0])):
            out[u] = np.median(flat[: u + 1], axis=0)
        return out

    frame = pd.DataFrame(flat)
    return {
        BASELINE: lambda: bn.move_median(flat, WINDOW, min_count=1, axis=0),
        "pandas rolling median": lambda: frame.rolling(WINDOW, min_periods=1).median(),
        "numpy reference": numpy_reference,
        "reclnet causal_median": lambda: causal_median(flat, WINDOW, 0),
    }


def _core_runner(x: np.ndarray):
    """The C core over x [frames, tracks, C], continuing the same bank on every call."""
    from reclnet.runtime.postproc import EVENT_DTYPE, SegmentBank

    frames, tracks, _ = x.shape
    bank = SegmentBank(NUM_CLASSES, window=WINDOW)
    slots = np.array([bank.open_track(k) for k in range(tracks)], dtype=np.int32)
    offset = [0]
    if tracks == 1:
        one = np.ascontiguousarray(x[:, 0])

        def core() -> int:
            f = np.arange(offset[0], offset[0] + frames, dtype=np.int64)
            offset[0] += frames
            return len(bank.push_track(int(slots[0]), f, one))

        return core
    low = bank._bank  # the Cython object under the facade: one C call per frame
    ev = np.empty(low.push_bound(tracks), dtype=EVENT_DTYPE)

    def core_frames() -> int:
        n = 0
        for t in range(frames):
            n += low.push(offset[0] + t, slots, x[t], ev)
        offset[0] += frames
        return n

    return core_frames


def _facade_runner(x: np.ndarray):
    """SegmentBank.push once per frame for all tracks of x [frames, tracks, C]."""
    from reclnet.runtime.postproc import SegmentBank

    frames, tracks, _ = x.shape
    bank = SegmentBank(NUM_CLASSES, window=WINDOW)
    slots = np.array([bank.open_track(k) for k in range(tracks)], dtype=np.int32)
    offset = [0]

    def facade_push() -> int:
        n = 0
        for t in range(frames):
            n += len(bank.push(offset[0] + t, slots, x[t]))
        offset[0] += frames
        return n

    return facade_push


def run(quick: bool = False) -> list[dict]:
    """Rows of ns per (track, class) sample; see the module docstring."""
    rng = np.random.default_rng(0)
    repeat = 3 if quick else 7
    rows: list[dict] = []
    for tracks, frames in ((1, 4000 if quick else 40000), (100, 100 if quick else 600)):
        case = f"window {WINDOW}, lookahead 0"
        x = simulate(rng, frames, tracks)
        samples = frames * tracks * NUM_CLASSES
        flat = np.ascontiguousarray(x.reshape(frames, tracks * NUM_CLASSES))
        timings: dict[str, Timing] = {}
        events_per_call: dict[str, int] = {}

        core = _core_runner(x)
        facade_push = _facade_runner(x)
        events_per_call[C_CORE] = core()
        timings[C_CORE] = measure(core, repeat=repeat, number=1)
        timings[FACADE] = measure(facade_push, repeat=repeat, number=1)
        for name, fn in _median_baselines(flat).items():
            timings[name] = measure(fn, repeat=repeat)
        base = _row(case, BASELINE, timings.pop(BASELINE), samples, None)
        for name, timing in [(BASELINE, None), *timings.items()]:
            whole = name in (C_CORE, FACADE)
            r = base if timing is None else _row(case, name, timing, samples, base)
            r.update(
                variant="median+threshold+top-k" if whole else "median only",
                n=tracks,
                classes=NUM_CLASSES,
                frames=frames,
            )
            if name == C_CORE:
                r["events_per_call"] = events_per_call[C_CORE]
            rows.append(r)
    return rows


def main() -> None:
    rows = run()
    print(f"{'N':>4s} {'impl':28s} {'variant':24s} {'median ns':>10s} {'min':>8s} {'vs bn':>7s}")
    for r in rows:
        ratio = "" if r["ratio_vs_baseline"] is None else f"{r['ratio_vs_baseline']:.2f}x"
        print(
            f"{r['n']:4d} {r['impl']:28s} {r['variant']:24s} {r['median']:10.2f} "
            f"{r['min']:8.2f} {ratio:>7s}"
        )


if __name__ == "__main__":
    main()
