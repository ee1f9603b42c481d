"""Per-frame latency of the online scorer vs live tracks, each backend, against a naive loop.

One frame = ``OnlineScorer.update``: input checks, one batched model step over all
live tracks, the C post-processing core (median window 25 with lookahead 12,
threshold, top-k), events and tubes. Model: the paper's configuration
(``RecLNetConfig()``: two 4096-d modalities, 2 GRU layers of 256, fusion layer,
11.2 M parameters) with seeded random weights, exported once per run to
``step.onnx`` and its INT8 copy (``reclnet.export.quantize``, input projections).

Implementations, same inputs, same process:

* ``scorer onnxruntime fp32`` / ``scorer onnxruntime int8``: ONNX Runtime CPU;
* ``scorer torch``: the PyTorch reference backend (batched ``RecLNet.step``);
  torch rows use 1 or 2 intra-op threads, whichever is faster at that moment
  (``torch_threads``): on a shared 2-core machine 2 threads can be 4x slower;
* ``scorer tensorrt``: when TensorRT and an engine are available (never on CPU-only machines);
* baseline ``naive per-track torch loop + numpy median``: PyTorch eager, one
  ``RecLNet.step`` per track, then per track ``np.median`` over its last 25 scores
  and a Python threshold state machine, every frame.

Per row: p50 (``median``), ``p99``, min / max in ms per frame, ``step_ms`` (median
time inside the backend step), ``outside_step_fraction`` (median over frames of the
time outside the step - input checks, state gather/scatter, post-processing,
events - divided by the median frame) and the speed-up
over the naive loop at the same N. Tracks stay live for the whole measurement
(constant N); features are fixed random rows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.benchmarks.rows import ONNXRUNTIME, PER_TRACK_LOOP, PYTORCH, TENSORRT, row
from reclnet.benchmarks.timing import Timing, measure_each
from reclnet.config import PostprocessConfig
from reclnet.runtime.backends import StepRunner

TRACKS = (1, 10, 50, 100, 200, 1000)  # 1000: the 25 fps stretch of #14
BUDGET_MS = 40.0  # 25 fps
NAIVE = "naive per-track torch loop + numpy median"
CASE = "OnlineScorer.update"


class _TimedRunner(StepRunner):
    """A step backend that forwards to ``inner`` and records the duration of each step.

    A :class:`StepRunner` itself (what :class:`OnlineScorer` requires): :meth:`step`
    times the wrapped runner's whole :meth:`StepRunner.step` (its checks included), so
    the scorer's remaining time is what it adds around the step.
    """

    def __init__(self, inner: StepRunner) -> None:
        self.inner = inner
        self.name, self.config = inner.name, inner.config
        self.postprocess, self.device_resident = inner.postprocess, inner.device_resident
        for attr in ("max_tracks", "max_tracks_origin", "max_tracks_hint"):
            if hasattr(inner, attr):
                setattr(self, attr, getattr(inner, attr))
        self.times: list[float] = []

    def step(self, features: Any, state: Any) -> Any:
        t0 = time.perf_counter()
        out = self.inner.step(features, state)
        self.times.append(time.perf_counter() - t0)
        return out

    def _step(self, features: Any, state: Any) -> Any:  # pragma: no cover - step() overrides
        return self.inner.step(features, state)

    def fetch_state(self, state: Any) -> np.ndarray:
        return self.inner.fetch_state(state)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        # Only for what the instance lacks (artifact, ...); __init__ sets inner first.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


class _NaiveScorer:
    """The baseline: each track stepped alone in PyTorch eager, numpy median per track."""

    def __init__(
        self,
        model: Any,
        window: int = PostprocessConfig.window,
        threshold: float = PostprocessConfig.threshold,
    ) -> None:
        import torch

        self.torch, self.model = torch, model
        self.window, self.threshold = window, threshold
        self.states: dict[int, Any] = {}
        self.history: dict[int, list[np.ndarray]] = {}
        self.open: dict[int, np.ndarray] = {}

    def update(self, ids: np.ndarray, features: dict[str, np.ndarray]) -> int:
        torch, c = self.torch, self.model.config.num_actions
        events = 0
        with torch.inference_mode():
            for i, tid in enumerate(ids.tolist()):
                state = self.states.get(tid)
                if state is None:
                    state = torch.zeros(1, self.model.config.state_size)
                feats = {k: torch.from_numpy(v[i : i + 1]) for k, v in features.items()}
                probs, self.states[tid] = self.model.step(feats, state)
                hist = self.history.setdefault(tid, [])
                hist.append(probs[0, :c].numpy())
                del hist[: -self.window]
                smoothed = np.median(np.stack(hist), axis=0)
                on = smoothed >= self.threshold
                was = self.open.get(tid, np.zeros(c, bool))
                events += int(np.count_nonzero(on != was))
                self.open[tid] = on
        return events


def _best_threads(torch: Any, fn: Any, choices: tuple[int, ...] = (1, 2)) -> int:
    """The torch thread count (of ``choices``) with which ``fn`` runs fastest, now.

    On a small shared machine two intra-op threads can be several times slower than
    one (oversubscription), so each torch row uses whichever is faster at that moment.
    """
    best, best_t = choices[0], float("inf")
    for threads in choices:
        torch.set_num_threads(threads)
        fn()
        t0 = time.perf_counter()
        for _ in range(3):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed < best_t:
            best, best_t = threads, elapsed
    torch.set_num_threads(best)
    return best


def _paper_model() -> tuple[Any, dict[str, Path]]:
    """The paper-sized model and its exported step files (fp32, INT8).

    The export is the one the peers benchmark caches; the PyTorch model is rebuilt
    from the same seed, so both hold the same weights.
    """
    import torch

    from reclnet.benchmarks.bench_peers import paper_step_onnx
    from reclnet.config import RecLNetConfig
    from reclnet.train.model import RecLNet

    paths = paper_step_onnx(seed=0)
    torch.manual_seed(0)
    return RecLNet(RecLNetConfig()).eval(), paths


def _inputs(config: Any, n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.arange(1000, 1000 + n, dtype=np.int64)
    feats = {k: rng.standard_normal((n, d), dtype=np.float32) for k, d in config.modalities.items()}
    boxes = np.tile(np.array([[10, 20, 60, 140]], np.float32), (n, 1))
    return ids, feats, boxes


def _row(
    impl: str,
    precision: str,
    variant: str,
    label: str,
    t: Timing,
    base: dict | None,
    n: int,
    **extra: Any,
) -> dict:
    return row(
        "scorer",
        CASE,
        impl,
        unit="ms",
        stats=t,
        scale=1e3,
        precision=precision,
        variant=variant,
        n=n,
        classes=None,
        baseline=base,
        label=label,
        **extra,
    )


def _time_scorer(runner: Any, n: int, calls: int) -> tuple[Timing, float, float]:
    from reclnet.runtime import OnlineScorer

    timed = _TimedRunner(runner)
    scorer = OnlineScorer(timed, lookahead=12)
    ids, feats, boxes = _inputs(runner.config, n, seed=n)
    frame = [0]
    totals: list[float] = []

    def one() -> None:
        frame[0] += 1
        t0 = time.perf_counter()
        scorer.update(frame[0], ids, feats, boxes)
        totals.append(time.perf_counter() - t0)

    timing = measure_each(one, calls=calls, warmup=10)
    step = np.asarray(timed.times[-calls:])
    # Per frame, the time outside the step; its median over the frame's median (a
    # difference of two medians would mix frames and is noisy on a busy machine).
    outside = float(np.median(np.asarray(totals[-calls:]) - step)) / timing.median
    return timing, float(np.median(step)), outside


def run(quick: bool = False) -> list[dict]:
    """Rows (see the module docstring); ``quick`` measures N in {1, 100} with fewer frames."""
    import torch

    from reclnet.runtime.backends import available_backends, load_backend

    tracks = (1, 100) if quick else TRACKS
    rows: list[dict] = []
    model, paths = _paper_model()
    # (impl, precision, variant, label) -> how to open the backend
    runners = {
        (ONNXRUNTIME, "fp32", "step.onnx", "scorer onnxruntime fp32"): lambda: load_backend(
            "onnxruntime", model=paths["fp32"]
        ),
        (ONNXRUNTIME, "int8", "step.int8.onnx", "scorer onnxruntime int8"): lambda: load_backend(
            "onnxruntime", model=paths["int8"]
        ),
        (PYTORCH, "fp32", "torch backend", "scorer torch"): lambda: load_backend(
            "torch", model=model
        ),
    }
    for n in tracks:
        calls = 40 if quick else max(30, min(200, 4000 // n))
        naive = _NaiveScorer(model)
        ids, feats, _ = _inputs(model.config, n, seed=n)
        one_track = {k: v[:1] for k, v in feats.items()}
        naive_threads = _best_threads(
            torch,
            lambda one_track=one_track, first=ids[:1]: _NaiveScorer(model, 25, 0.1).update(
                first, one_track
            ),
        )
        t_base = measure_each(
            lambda naive=naive, ids=ids, feats=feats: naive.update(ids, feats),
            # The naive loop is slow: fewer frames suffice for its median.
            calls=5 if n >= 100 else 10,
            warmup=1,
        )
        base = _row(
            PYTORCH, "fp32", PER_TRACK_LOOP, NAIVE, t_base, None, n, torch_threads=naive_threads
        )
        rows.append(base)
        for (impl, precision, variant, label), make in runners.items():
            with make() as runner:
                threads = None
                if impl == PYTORCH:
                    state = np.zeros((n, model.config.state_size), np.float32)
                    threads = _best_threads(torch, lambda r=runner, f=feats, s=state: r.step(f, s))
                t, step, outside = _time_scorer(runner, n, calls)
            extra: dict[str, Any] = {
                "step_ms": step * 1e3,
                "outside_step_fraction": outside,
            }
            if threads is not None:
                extra["torch_threads"] = threads
            if precision == "int8":
                extra["budget_ms"] = BUDGET_MS
                extra["fits_budget"] = bool(t.p99 * 1e3 <= BUDGET_MS)
            rows.append(_row(impl, precision, variant, label, t, base, n, **extra))
    if "tensorrt" not in available_backends():
        rows.append(
            row(
                "scorer",
                CASE,
                TENSORRT,
                unit="ms",
                stats=None,
                label="scorer tensorrt",
                skipped="TensorRT is not installed (no NVIDIA GPU on this machine)",
            )
        )
    return rows


def _print(rows: list[dict]) -> None:
    head = f"{'N':>4} {'impl':<44} {'p50 ms':>8} {'p99 ms':>8} {'step ms':>8} {'outside':>8} {'vs naive':>8}"
    print(head)
    for r in rows:
        if r.get("skipped"):
            print(f"{'':>4} {r['label']:<44} skipped: {r['skipped']}")
            continue
        ratio = r["ratio_vs_baseline"]
        step = r.get("step_ms")
        out = r.get("outside_step_fraction")
        print(
            f"{r['n']:>4} {r['label']:<44} {r['median']:8.2f} {r['p99']:8.2f} "
            f"{'' if step is None else f'{step:8.2f}':>8} "
            f"{'' if out is None else f'{100 * out:7.1f}%':>8} "
            f"{'' if ratio is None else f'{ratio:7.1f}x':>8}"
        )


if __name__ == "__main__":
    import sys

    _print(run(quick="--quick" in sys.argv))
