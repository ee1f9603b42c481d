"""Per-track storage of the online scorer: state rows, id -> slot map, box histories.

One *slot* per live track. A slot holds the track's packed recurrent state row
(float32 ``[S]``, layout of :mod:`reclnet.config`), its id, the frame it was last
seen, its slot in the post-processing bank, and a ring buffer of its recent
(frame, box) samples from which the tubes of ending segments are cut.

Memory is bounded: freed slots are reused lowest-first, the slot table grows
(doubling) only when more tracks are live at once than ever before, and a
track's box ring keeps only the samples that can still belong to a segment
(the open, started segments plus the lookahead and min-length margin), so an
endless stream of short tracks runs in constant memory. The ring grows
(doubling, for all slots) only when one segment stays open longer than the
ring; that is the price of returning its whole tube.
"""

from __future__ import annotations

import heapq

import numpy as np

__all__ = ["StatePool"]

# keep_from value of a slot with no started segment open.
_NO_SEGMENT = np.iinfo(np.int64).max


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


class StatePool:
    """Slots for live tracks.

    Parameters
    ----------
    state_size : int
        S, values per state row (0 for the stateless ``fc`` model).
    capacity : int
        Initial number of slots (grows by doubling).
    history : int
        Initial box-ring length per slot, in samples (rounded up to a power of two).

    Attributes
    ----------
    states : np.ndarray
        float32 ``[capacity, S]``; rows of free slots are zero.
    track_ids, last_seen, count : np.ndarray
        int64 ``[capacity]``: id, last frame seen, samples seen so far.
    bank_slot : np.ndarray
        int32 ``[capacity]``: the track's slot in the post-processing bank (-1 if free).
    hist_frames : np.ndarray
        int64 ``[capacity, H]``: frame of sample ``i`` at ``[slot, i % H]``.
    hist_boxes : np.ndarray
        float32 ``[capacity, H, 4]``: box of sample ``i`` at ``[slot, i % H]``.
    live : np.ndarray
        bool ``[capacity]``.
    """

    def __init__(self, state_size: int, capacity: int = 16, history: int = 64) -> None:
        if state_size < 0 or capacity < 1 or history < 1:
            raise ValueError("StatePool needs state_size >= 0, capacity >= 1, history >= 1")
        self.state_size = int(state_size)
        self.capacity = 0
        self.history = _pow2_at_least(history)
        self.states = np.zeros((0, self.state_size), np.float32)
        self.track_ids = np.zeros(0, np.int64)
        self.last_seen = np.zeros(0, np.int64)
        self.count = np.zeros(0, np.int64)
        self.bank_slot = np.zeros(0, np.int32)
        self.live = np.zeros(0, bool)
        self.keep_started = np.zeros(0, np.int64)
        self.hist_frames = np.zeros((0, self.history), np.int64)
        self.hist_boxes = np.zeros((0, self.history, 4), np.float32)
        # slot -> {label: sample index of the first sample of its open, started segment}
        self.open_starts: dict[int, dict[int, int]] = {}
        self.id_to_slot: dict[int, int] = {}
        self._free: list[int] = []
        # Bumped whenever a track opens or ends: invalidates cached id -> slot lookups.
        self.version = 0
        self._last_lookup: tuple[np.ndarray, np.ndarray, int] | None = None
        self._grow(int(capacity))

    # ------------------------------------------------------------------ sizes
    def _grow(self, capacity: int) -> None:
        old = self.capacity
        if capacity <= old:
            return

        def extend(a: np.ndarray, fill: int | float | bool) -> np.ndarray:
            out = np.full((capacity, *a.shape[1:]), fill, a.dtype)
            out[:old] = a
            return out

        self.states = extend(self.states, 0.0)
        self.track_ids = extend(self.track_ids, 0)
        self.last_seen = extend(self.last_seen, 0)
        self.count = extend(self.count, 0)
        self.bank_slot = extend(self.bank_slot, -1)
        self.live = extend(self.live, False)
        self.keep_started = extend(self.keep_started, _NO_SEGMENT)
        self.hist_frames = extend(self.hist_frames, 0)
        self.hist_boxes = extend(self.hist_boxes, 0.0)
        for s in range(old, capacity):
            heapq.heappush(self._free, s)
        self.capacity = capacity

    def grow_history(self, needed: int) -> None:
        """Make every ring hold at least ``needed`` samples, keeping the retained ones."""
        if needed <= self.history:
            return
        new_h = _pow2_at_least(needed)
        frames = np.zeros((self.capacity, new_h), np.int64)
        boxes = np.zeros((self.capacity, new_h, 4), np.float32)
        old_h = self.history
        for s in np.flatnonzero(self.live).tolist():
            n = int(self.count[s])
            idx = np.arange(max(0, n - old_h), n)
            frames[s, idx % new_h] = self.hist_frames[s, idx % old_h]
            boxes[s, idx % new_h] = self.hist_boxes[s, idx % old_h]
        self.hist_frames, self.hist_boxes, self.history = frames, boxes, new_h

    @property
    def num_live(self) -> int:
        """Number of live tracks."""
        return len(self.id_to_slot)

    def nbytes(self) -> int:
        """Bytes held by the pool's arrays (what grows if memory is not bounded)."""
        arrays = (
            self.states,
            self.track_ids,
            self.last_seen,
            self.count,
            self.bank_slot,
            self.live,
            self.keep_started,
            self.hist_frames,
            self.hist_boxes,
        )
        return int(sum(a.nbytes for a in arrays))

    # ---------------------------------------------------------------- lookups
    def lookup(self, track_ids: np.ndarray) -> np.ndarray:
        """Slots (int64 ``[N]``, a new array) of ``track_ids`` int64 ``[N]``; -1 if not live."""
        last = self._last_lookup
        # Steady state: the same tracks as the previous frame, nothing opened or ended.
        if (
            last is not None
            and last[2] == self.version
            and last[0].shape == track_ids.shape
            and np.array_equal(last[0], track_ids)
        ):
            return last[1].copy()
        get = self.id_to_slot.get
        slots = np.fromiter((get(t, -1) for t in track_ids.tolist()), np.int64, track_ids.size)
        self._last_lookup = (track_ids.copy(), slots.copy(), self.version)
        return slots

    def live_slots(self) -> np.ndarray:
        """Slots of the live tracks, ascending (int64)."""
        return np.flatnonzero(self.live).astype(np.int64)

    # -------------------------------------------------------------- mutation
    def open(self, track_id: int, bank_slot: int, frame: int) -> int:
        """Give a new track the lowest free slot, with a zero state; returns the slot."""
        if track_id in self.id_to_slot:
            raise KeyError(f"track {track_id} is already live")
        if not self._free:
            self._grow(2 * self.capacity)
        slot = heapq.heappop(self._free)
        self.version += 1
        self.id_to_slot[int(track_id)] = slot
        self.states[slot] = 0.0
        self.track_ids[slot] = track_id
        self.last_seen[slot] = frame
        self.count[slot] = 0
        self.bank_slot[slot] = bank_slot
        self.live[slot] = True
        self.keep_started[slot] = _NO_SEGMENT
        return slot

    def free(self, slot: int) -> None:
        """End the track of ``slot``; the slot becomes reusable."""
        if not self.live[slot]:
            raise KeyError(f"slot {slot} is not live")
        del self.id_to_slot[int(self.track_ids[slot])]
        self.version += 1
        self.live[slot] = False
        self.bank_slot[slot] = -1
        self.states[slot] = 0.0
        self.keep_started[slot] = _NO_SEGMENT
        self.open_starts.pop(slot, None)
        heapq.heappush(self._free, slot)

    def append(self, slots: np.ndarray, frame: int, boxes: np.ndarray, margin: int) -> None:
        """Record one sample (``frame``, box) for each of ``slots``.

        Parameters
        ----------
        slots : np.ndarray
            int64 ``[N]`` distinct live slots.
        frame : int
            The frame of the samples.
        boxes : np.ndarray
            float32 ``[N, 4]``.
        margin : int
            Samples behind the newest that an unstarted segment may still need
            (lookahead + min_length); the ring grows if an open segment needs more.
        """
        count = self.count[slots]
        after = count + 1
        # Samples to retain: back to the oldest started segment's first sample, and at
        # least ``margin`` (count + 1 - min(keep_started, count + 1 - margin), expanded).
        need = max(int((after - self.keep_started[slots]).max(initial=0)), margin)
        if need > self.history:
            self.grow_history(need)
        # One flat index into the [capacity, history] rings (one fancy index, not two);
        # the rings are always C-contiguous arrays of this pool's own (np.zeros / np.full
        # in _grow and grow_history), so reshape(-1) is a view and the writes land.
        flat = slots * self.history + count % self.history
        self.hist_frames.reshape(-1)[flat] = frame
        self.hist_boxes.reshape(-1, 4)[flat] = boxes
        self.count[slots] = after
        self.last_seen[slots] = frame

    def sample_index(self, slot: int, frame: int) -> int:
        """Sample index of ``frame`` in the retained history of ``slot``."""
        n = int(self.count[slot])
        idx = np.arange(max(0, n - self.history), n)
        hit = np.flatnonzero(self.hist_frames[slot, idx % self.history] == frame)
        if hit.size == 0:
            raise KeyError(f"frame {frame} is not in the history of slot {slot}")
        return int(idx[hit[0]])

    def segment_started(self, slot: int, label: int, first_frame: int) -> None:
        """Keep the samples of a started segment until it ends."""
        starts = self.open_starts.setdefault(slot, {})
        starts[label] = self.sample_index(slot, first_frame)
        self.keep_started[slot] = min(starts.values())

    def segment_ended(self, slot: int, label: int) -> None:
        """Release the samples held for a segment."""
        starts = self.open_starts.get(slot, {})
        starts.pop(label, None)
        self.keep_started[slot] = min(starts.values()) if starts else _NO_SEGMENT

    def history_of(
        self, slot: int, first_frame: int, last_frame: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The retained samples of ``slot`` with frames in ``first_frame..last_frame``.

        Returns
        -------
        frames : np.ndarray
            int64 ``[n]`` increasing.
        boxes : np.ndarray
            float32 ``[n, 4]``.
        """
        n = int(self.count[slot])
        idx = np.arange(max(0, n - self.history), n) % self.history
        frames = self.hist_frames[slot, idx]
        sel = (frames >= first_frame) & (frames <= last_frame)
        return frames[sel], self.hist_boxes[slot, idx[sel]]

    def load_rows(
        self,
        slots: np.ndarray,
        track_ids: np.ndarray,
        last_seen: np.ndarray,
        count: np.ndarray,
        bank_slot: np.ndarray,
        states: np.ndarray,
        hist_frames: np.ndarray,
        hist_boxes: np.ndarray,
        open_starts: np.ndarray,
    ) -> None:
        """Fill an empty pool with saved live rows (snapshot restore).

        ``slots`` int64 ``[n]`` distinct slots below ``capacity``; the other arrays hold
        one row per slot (shapes as the attributes); ``open_starts`` int64 ``[k, 3]``
        rows of (slot, label, first sample index).
        """
        if self.id_to_slot:
            raise ValueError("load_rows needs an empty pool")
        slots = np.asarray(slots, np.int64)
        if np.unique(slots).size != slots.size or (
            slots.size and (slots.min() < 0 or slots.max() >= self.capacity)
        ):
            raise ValueError("slots must be distinct and below the capacity")
        if np.unique(track_ids).size != slots.size:
            raise ValueError("track ids must be distinct")
        self.live[slots] = True
        self.track_ids[slots] = track_ids
        self.last_seen[slots] = last_seen
        self.count[slots] = count
        self.bank_slot[slots] = bank_slot
        self.states[slots] = states
        self.hist_frames[slots] = hist_frames
        self.hist_boxes[slots] = hist_boxes
        self.id_to_slot = dict(zip(np.asarray(track_ids).tolist(), slots.tolist(), strict=True))
        self.version += 1
        taken = set(slots.tolist())
        self._free = [s for s in range(self.capacity) if s not in taken]  # sorted: a heap
        for s, label, idx in np.asarray(open_starts, np.int64).tolist():
            if s not in taken:
                raise ValueError(f"open segment on slot {s}, which is not live")
            self.open_starts.setdefault(s, {})[label] = idx
            self.keep_started[s] = min(self.open_starts[s].values())
