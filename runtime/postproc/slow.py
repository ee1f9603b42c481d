"""Slow, obviously-correct numpy twins of the C post-processing core (tests only).

Like bottleneck's ``slow/`` package: every result of ``reclnet.runtime.postproc``
is recomputed here from its definition (a sorted copy of every window, a sorted
copy of every segment) with no incremental state, so tests can compare the two
over random streams. Semantics: ``csrc/include/reclnet/postproc.h``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reclnet.config import PostprocessConfig
from reclnet.runtime.postproc import EVENT_DTYPE, EVENT_END, EVENT_START

__all__ = ["SlowSegmentBank", "causal_median", "median_of", "topk_mean"]


def median_of(values: np.ndarray) -> np.ndarray:
    """Column medians of float32 ``[n, C]``: middle value, or the two middle ones averaged
    in float32 as ``(a + b) * 0.5``."""
    s = np.sort(np.asarray(values, dtype=np.float32), axis=0)
    n = s.shape[0]
    if n % 2:
        return s[n // 2]
    return (s[n // 2 - 1] + s[n // 2]) * np.float32(0.5)


def topk_mean(values: list[float] | np.ndarray, k: int) -> float:
    """Mean of the ``min(k, n)`` largest values, as float64 summed in descending order."""
    top = np.sort(np.asarray(values, dtype=np.float32).astype(np.float64))[::-1][
        : min(k, len(values))
    ]
    total = 0.0
    for v in top:
        total += float(v)
    return total / len(top)


def causal_median(scores: np.ndarray, window: int, lookahead: int = 0) -> np.ndarray:
    """``out[u]`` = median of samples ``u - (window - 1 - lookahead) .. u + lookahead``
    clipped to the track, for float32 ``scores [T, C]``."""
    x = np.asarray(scores, dtype=np.float32)
    out = np.empty_like(x)
    back = window - 1 - lookahead
    for u in range(x.shape[0]):
        out[u] = median_of(x[max(0, u - back) : u + lookahead + 1])
    return out


@dataclass
class _Track:
    track_id: int
    rows: list[np.ndarray] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    done: int = 0
    # per class: None, or [first sample index, list of raw values, started]
    segs: dict[int, list] = field(default_factory=dict)


class SlowSegmentBank:
    """The same API and events as ``SegmentBank``, recomputed from scratch per sample."""

    def __init__(
        self,
        num_classes: int,
        *,
        window: int = PostprocessConfig.window,
        lookahead: int = PostprocessConfig.lookahead,
        threshold: float = PostprocessConfig.threshold,
        close_threshold: float | None = None,
        top_k: int = PostprocessConfig.top_k,
        min_length: int = PostprocessConfig.min_length,
        max_gap: int | None = None,
        capacity: int = 64,
    ) -> None:
        self.num_classes = num_classes
        self.window = window
        self.lookahead = lookahead
        self.threshold = np.float32(threshold)
        self.close_threshold = np.float32(threshold if close_threshold is None else close_threshold)
        self.top_k = top_k
        self.min_length = min_length
        self.max_gap = max_gap
        self.slots: dict[int, _Track] = {}

    def open_track(self, track_id: int) -> int:
        if any(t.track_id == track_id for t in self.slots.values()):
            raise ValueError(f"track {track_id} already open")
        slot = 0
        while slot in self.slots:
            slot += 1
        self.slots[slot] = _Track(track_id)
        return slot

    def reset(self) -> None:
        self.slots.clear()

    def _event(self, kind: int, slot: int, t: _Track, c: int) -> tuple:
        first, vals, _ = t.segs[c]
        last = t.frames[first + len(vals) - 1]
        return (
            kind,
            t.track_id,
            slot,
            c,
            t.frames[first],
            last,
            len(vals),
            topk_mean(vals, self.top_k),
        )

    def _process(self, slot: int, t: _Track, u: int, out: list) -> None:
        """Feeds sample u of track t (all samples known so far are in t.rows)."""
        back = self.window - 1 - self.lookahead
        x = np.stack(t.rows)
        m = median_of(x[max(0, u - back) : u + self.lookahead + 1])
        gap = self.max_gap is not None and u > 0 and t.frames[u] - t.frames[u - 1] > self.max_gap
        for c in range(self.num_classes):
            seg = t.segs.get(c)
            if seg is not None and (gap or m[c] < self.close_threshold):
                if seg[2]:
                    out.append(self._event(EVENT_END, slot, t, c))
                t.segs[c] = seg = None
            if seg is not None:
                seg[1].append(x[u, c])
            elif m[c] >= self.threshold:
                t.segs[c] = seg = [u, [x[u, c]], False]
            else:
                continue
            if not seg[2] and len(seg[1]) >= self.min_length:
                seg[2] = True
                out.append(self._event(EVENT_START, slot, t, c))
        t.done = u + 1

    def push(self, frame: int, slots, scores) -> np.ndarray:
        x = np.asarray(scores, dtype=np.float32)
        slots = [int(s) for s in slots]
        if len(set(slots)) != len(slots):
            raise ValueError("duplicate slot")
        for s in slots:
            if s not in self.slots:
                raise ValueError(f"slot {s} not open")
            if self.slots[s].frames and frame <= self.slots[s].frames[-1]:
                raise ValueError("frame order")
        if not np.all(np.isfinite(x)):
            raise ValueError("non-finite score")
        out: list = []
        for i, s in enumerate(slots):
            t = self.slots[s]
            t.rows.append(x[i].copy())
            t.frames.append(int(frame))
            u = len(t.rows) - 1 - self.lookahead
            if u >= 0:
                self._process(s, t, u, out)
        return np.array(out, dtype=EVENT_DTYPE)

    def close_track(self, slot: int) -> np.ndarray:
        t = self.slots.pop(slot)
        out: list = []
        for u in range(t.done, len(t.rows)):
            self._process(slot, t, u, out)
        for c in range(self.num_classes):
            seg = t.segs.get(c)
            if seg is not None and seg[2]:
                out.append(self._event(EVENT_END, slot, t, c))
        return np.array(out, dtype=EVENT_DTYPE)
