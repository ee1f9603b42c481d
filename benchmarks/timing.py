"""Timing primitives shared by every benchmark: repeated runs, min / median / max.

Absolute times drift on shared machines, so every benchmark times its subject
and its baseline in the same process, interleaved, and reports ratios.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Seconds per call over ``repeat`` runs of ``number`` calls each."""

    min: float
    median: float
    max: float
    p99: float
    repeat: int
    number: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def scaled(self, factor: float) -> Timing:
        """The same timing in another unit (e.g. ``factor=1e3`` for ms)."""
        return Timing(
            self.min * factor,
            self.median * factor,
            self.max * factor,
            self.p99 * factor,
            self.repeat,
            self.number,
        )


def measure(
    fn: Callable[[], object], *, repeat: int = 7, number: int | None = None, warmup: int = 1
) -> Timing:
    """Time ``fn()``.

    Parameters
    ----------
    fn : callable
        Called with no arguments.
    repeat : int
        Independent runs; their spread is reported.
    number : int, optional
        Calls per run; chosen so that one run takes about 20 ms when None.
    warmup : int
        Untimed calls first (caches, lazy initialisation).

    Returns
    -------
    Timing
        Seconds per call.
    """
    for _ in range(warmup):
        fn()
    if number is None:
        number, elapsed = 1, 0.0
        while True:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            elapsed = time.perf_counter() - t0
            if elapsed >= 0.02 or number >= 1 << 20:
                break
            number *= 2
    per_call = np.empty(repeat)
    for i in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        per_call[i] = (time.perf_counter() - t0) / number
    return Timing(
        float(per_call.min()),
        float(np.median(per_call)),
        float(per_call.max()),
        float(np.percentile(per_call, 99)),
        repeat,
        number,
    )


def measure_each(fn: Callable[[], object], *, calls: int, warmup: int = 3) -> Timing:
    """Time ``calls`` single calls individually (for p50 / p99 latency per frame)."""
    for _ in range(warmup):
        fn()
    samples = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn()
        samples[i] = time.perf_counter() - t0
    return Timing(
        float(samples.min()),
        float(np.median(samples)),
        float(samples.max()),
        float(np.percentile(samples, 99)),
        calls,
        1,
    )
