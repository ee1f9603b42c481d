"""StatePool: slots, id map, box rings against a plain-dict twin over random operations."""

from __future__ import annotations

import numpy as np
import pytest

from reclnet.runtime.state_pool import StatePool


def test_slots_are_reused_lowest_first_and_rows_start_at_zero() -> None:
    pool = StatePool(state_size=3, capacity=2)
    a = pool.open(10, bank_slot=0, frame=0)
    b = pool.open(-5, bank_slot=1, frame=0)
    c = pool.open(2**63 - 1, bank_slot=2, frame=0)  # grows the table
    assert (a, b, c) == (0, 1, 2) and pool.capacity == 4
    pool.states[b] = 7.0
    pool.free(b)
    assert pool.lookup(np.array([-5, 10], np.int64)).tolist() == [-1, 0]
    d = pool.open(99, bank_slot=1, frame=3)
    assert d == b and not pool.states[d].any()
    with pytest.raises(KeyError, match="already live"):
        pool.open(99, bank_slot=4, frame=3)
    with pytest.raises(KeyError, match="not live"):
        pool.free(3)


def test_lookup_cache_follows_opens_and_frees() -> None:
    pool = StatePool(state_size=1)
    ids = np.array([1, 2], np.int64)
    assert pool.lookup(ids).tolist() == [-1, -1]
    pool.open(1, 0, 0)
    assert pool.lookup(ids).tolist() == [0, -1]
    out = pool.lookup(ids)
    out[:] = 42  # callers may write into the result
    assert pool.lookup(ids).tolist() == [0, -1]
    pool.free(0)
    assert pool.lookup(ids).tolist() == [-1, -1]


def test_random_operations_match_a_dict_twin() -> None:
    rng = np.random.default_rng(0)
    pool = StatePool(state_size=2, capacity=1, history=4)
    twin: dict[int, list[tuple[int, list[float]]]] = {}  # id -> samples (frame, box)
    for frame in range(600):
        # Close some tracks, open some, append a sample for a random subset.
        for tid in list(twin):
            if rng.random() < 0.05:
                pool.free(pool.id_to_slot[tid])
                del twin[tid]
        for _ in range(int(rng.integers(0, 3))):
            tid = int(rng.integers(-50, 50))
            if tid not in twin:
                pool.open(tid, bank_slot=0, frame=frame)
                twin[tid] = []
        ids = np.array([t for t in twin if rng.random() < 0.7], np.int64)
        if ids.size == 0:
            continue
        slots = pool.lookup(ids)
        boxes = rng.uniform(0, 100, (ids.size, 4)).astype(np.float32)
        # Some tracks hold a long open segment: their ring must keep it whole.
        for s in slots.tolist():
            if s % 3 == 0 and pool.count[s] == 0:
                pool.open_starts.setdefault(s, {})[0] = 0
                pool.keep_started[s] = 0
        pool.append(slots, frame, boxes, margin=3)
        for tid, box in zip(ids.tolist(), boxes.tolist(), strict=True):
            twin[tid].append((frame, box))
    assert pool.num_live == len(twin)
    assert sorted(pool.id_to_slot) == sorted(twin)
    for tid, samples in twin.items():
        slot = pool.id_to_slot[tid]
        assert pool.count[slot] == len(samples)
        if not samples:
            continue
        keep = len(samples) if 0 in pool.open_starts.get(slot, {}) else 3
        want = samples[-keep:]
        frames, boxes = pool.history_of(slot, want[0][0], want[-1][0])
        assert frames.tolist() == [f for f, _ in want]
        np.testing.assert_array_equal(boxes, np.array([b for _, b in want], np.float32))
    assert pool.history >= max(len(s) for s in twin.values() if s) or not any(pool.open_starts)
