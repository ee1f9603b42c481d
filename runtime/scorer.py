"""The online scorer: per frame, one batched model step over all live tracks, then the C core.

:class:`OnlineScorer` takes tracks from any tracker, frame after frame::

    with load_backend("onnxruntime", model="model/step.onnx") as runner:
        scorer = OnlineScorer(runner, lookahead=12, max_age=30, video="cam0")
        for frame, ids, feats, boxes in stream:
            result = scorer.update(frame, ids, feats, boxes)
            for event in result.events:          # START / END of action segments
                ...
        last = scorer.flush()

Per call of :meth:`OnlineScorer.update`:

1. every input is checked before anything changes (an error names the problem
   and leaves the scorer exactly as it was);
2. tracks unseen for more than ``max_age`` frames end (their segments are
   closed and reported);
3. one backend step runs over all tracks of the frame (states of new tracks
   start at zero);
4. ``probs[:, :C]`` go into the C post-processing bank
   (:class:`reclnet.runtime.postproc.SegmentBank`: running median with
   lookahead, threshold segments, top-k scores); its START / END events are
   returned, each END with the tube of the segment (the track's boxes over the
   segment's frames, interpolated linearly over frames the track was not seen).

With ``lookahead = (window - 1) // 2`` (odd window) the END events equal the
offline pipeline (sequence forward + :func:`reclnet.runtime.offline.localize.localize_track`)
segment for segment; with ``lookahead = 0`` each sample is smoothed over the
``window`` samples ending at it (causal, no delay).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.config import PostprocessConfig, RecLNetConfig

from .backends import StepRunner
from .backends.base import check_features
from .offline.tubes import Tube
from .snapshot import SnapshotError, bank_state_tracks, read_snapshot, write_snapshot
from .state_pool import StatePool

__all__ = ["Event", "FrameResult", "OnlineScorer"]


@dataclass(frozen=True)
class Event:
    """A segment of one track and class became known.

    Attributes
    ----------
    kind : str
        ``"start"`` (the segment reached ``min_length`` samples) or ``"end"``.
    track_id : int
        The track.
    label : int
        Class column (0-based action label).
    first_frame, last_frame : int
        Frames of its first sample and of its last sample so far (END: the last).
    num_samples : int
        Samples in the segment so far.
    score : float
        Mean of its top-k raw scores so far.
    tube : Tube or None
        END events: the track's boxes over ``first_frame..last_frame``.
    """

    kind: str
    track_id: int
    label: int
    first_frame: int
    last_frame: int
    num_samples: int
    score: float
    tube: Tube | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class FrameResult:
    """What one :meth:`OnlineScorer.update` returns.

    Attributes
    ----------
    frame : int
        The frame.
    track_ids : np.ndarray
        int64 ``[N]``, the tracks of the call in input order.
    probs : np.ndarray
        float32 ``[N, C+1]``, their probabilities at this frame (background last).
    events : list of Event
        Events that became known during this call (tracks that timed out first,
        then the frame's samples, in the C core's order).
    """

    frame: int
    track_ids: np.ndarray
    probs: np.ndarray
    events: list[Event]


def _segment_bank_cls() -> Any:
    from .postproc import SegmentBank

    return SegmentBank


class OnlineScorer:
    """Online action localization over live tracks.

    Parameters
    ----------
    runner : StepRunner
        A backend from :func:`reclnet.runtime.backends.load_backend`.
    postprocess : PostprocessConfig, optional
        Post-processing settings; default: the runner's (the model sidecar's).
    window, lookahead, threshold, top_k, min_length : optional
        Override single fields of ``postprocess``.
    close_threshold : float, optional
        Hysteresis: an open segment closes below this (default: ``threshold``).
    max_gap : int, optional
        A track's frame gap larger than this closes its open segments.
    max_age : int, optional
        A track unseen for more than ``max_age`` frames ends (None: only
        :meth:`end_tracks` / :meth:`flush` end tracks).
    nms : bool
        Spatio-temporal NMS (IoU ``postprocess.nms_iou``) among the segments ending
        in the same call: a lower-scored END overlapping a kept one is dropped.
    video : str
        Video name put in the tubes.
    capacity : int
        Initial slot count (grows as needed).
    """

    def __init__(
        self,
        runner: StepRunner,
        *,
        postprocess: PostprocessConfig | None = None,
        window: int | None = None,
        lookahead: int | None = None,
        threshold: float | None = None,
        top_k: int | None = None,
        min_length: int | None = None,
        close_threshold: float | None = None,
        max_gap: int | None = None,
        max_age: int | None = None,
        nms: bool = False,
        video: str = "stream",
        capacity: int = 16,
    ) -> None:
        if not isinstance(runner, StepRunner):
            # The base class is what checks every step's inputs and outputs.
            raise TypeError(
                f"runner must be a reclnet.runtime.backends.StepRunner, got {type(runner)}"
            )
        self.runner = runner
        self.config: RecLNetConfig = runner.config
        pp = postprocess or runner.postprocess or PostprocessConfig()
        overrides = {
            k: v
            for k, v in dict(
                window=window,
                lookahead=lookahead,
                threshold=threshold,
                top_k=top_k,
                min_length=min_length,
            ).items()
            if v is not None
        }
        self.postprocess = replace(pp, **overrides)
        self.close_threshold = close_threshold
        self.max_gap = max_gap
        if max_age is not None and (isinstance(max_age, bool) or int(max_age) < 0):
            raise ValueError(f"max_age must be None or an integer >= 0, got {max_age!r}")
        self.max_age = None if max_age is None else int(max_age)
        self.nms = bool(nms)
        if not isinstance(video, str) or not video:
            raise ValueError("video must be a non-empty string")
        self.video = video
        self.num_actions = self.config.num_actions
        pp = self.postprocess
        # Samples an unstarted segment may still reach back: lookahead + min_length.
        self._margin = int(pp.lookahead) + int(pp.min_length)
        self.pool = StatePool(self.config.state_size, capacity, history=2 * self._margin + 16)
        self.bank = _segment_bank_cls()(
            self.num_actions,
            window=pp.window,
            lookahead=pp.lookahead,
            threshold=pp.threshold,
            close_threshold=close_threshold,
            top_k=pp.top_k,
            min_length=pp.min_length,
            max_gap=max_gap,
            capacity=capacity,
        )
        self.frame: int | None = None
        # (slots of the last step, its new states: host array or device handle) whose
        # rows in pool.states are stale until synced.
        self._carry: tuple[np.ndarray, Any] | None = None
        #: The last frame's track ids, found distinct then (see ``_check_ids``).
        self._checked_ids: np.ndarray | None = None

    # ---------------------------------------------------------------- checks
    def _check_frame(self, frame: Any) -> int:
        if isinstance(frame, bool) or not isinstance(frame, int | np.integer):
            raise TypeError(f"frame must be an integer, got {type(frame).__name__}")
        frame = int(frame)
        if not _I64_MIN <= frame <= _I64_MAX:
            raise ValueError(f"frame {frame} is outside the int64 range")
        if self.frame is not None and frame <= self.frame:
            raise ValueError(f"frame {frame} does not increase: the last frame was {self.frame}")
        return frame

    @staticmethod
    def _check_ids(
        track_ids: Any, what: str = "track_ids", known: np.ndarray | None = None
    ) -> np.ndarray:
        """int64 ``[N]`` copy of distinct ``track_ids``; ``known``: ids already found distinct."""
        ids = np.asarray(track_ids)
        if ids.ndim != 1:
            raise ValueError(f"{what} must be 1-D [N], got shape {ids.shape}")
        if ids.size and ids.dtype.kind not in "iu":
            raise TypeError(f"{what} must be integers (int64), got dtype {ids.dtype}")
        if ids.dtype == np.uint64 and ids.size and ids.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{what} contains an id beyond the int64 range")
        ids = ids.astype(np.int64)  # a copy: the caller may change its array afterwards
        # The usual frame has the tracks of the last one: equal to ids already checked,
        # so distinct (one comparison instead of a set of N Python ints).
        if known is not None and known.shape == ids.shape and np.array_equal(known, ids):
            return ids
        if len(set(ids.tolist())) != ids.size:
            uniq, counts = np.unique(ids, return_counts=True)
            dup = uniq[counts > 1].tolist()
            raise ValueError(f"duplicate track id(s) {dup[:10]} in {what}")
        return ids

    @staticmethod
    def _check_boxes(boxes: Any, n: int) -> np.ndarray:
        b = np.asarray(boxes)
        if b.shape != (n, 4):
            raise ValueError(f"boxes must be [N={n}, 4], got shape {b.shape}")
        if b.size and b.dtype.kind != "f":
            raise TypeError(f"boxes must be float32 x1 y1 x2 y2, got dtype {b.dtype}")
        b = np.ascontiguousarray(b, dtype=np.float32)
        # Two whole-array tests on the good path; which row is bad is found only on failure.
        if np.isfinite(b).all() and (b[:, 2:] >= b[:, :2]).all():
            return b
        if not np.isfinite(b).all():
            row = int(np.flatnonzero(~np.isfinite(b).all(axis=1))[0])
            raise ValueError(f"boxes has NaN or infinite values (row {row})")
        row = int(np.flatnonzero((b[:, 2:] < b[:, :2]).any(axis=1))[0])
        raise ValueError(f"boxes row {row} has x2 < x1 or y2 < y1: {b[row].tolist()}")

    # ------------------------------------------------------------- internals
    def _sync(self) -> None:
        """Write the carried states of the last step (host or device) into their pool rows."""
        if self._carry is not None:
            slots, handle = self._carry
            self.pool.states[slots] = self.runner.fetch_state(handle)
            self._carry = None

    def _expired(self, frame: int) -> np.ndarray:
        if self.max_age is None:
            return np.zeros(0, np.int64)
        live = self.pool.live_slots()
        return live[frame - self.pool.last_seen[live] > self.max_age]

    def _events(self, raw: np.ndarray) -> list[Event]:
        """Convert C-core events, keep box rings in step, cut tubes for ENDs."""
        out: list[Event] = []
        if raw.shape[0] == 0:
            return out
        pool = self.pool
        for e in raw:
            track_id, label = int(e["track_id"]), int(e["label"])
            slot = pool.id_to_slot[track_id]
            first, last = int(e["first_frame"]), int(e["last_frame"])
            tube = None
            if int(e["kind"]) == 0:
                kind = "start"
                pool.segment_started(slot, label, first)
            else:
                kind = "end"
                pool.segment_ended(slot, label)
                tube = self._tube(slot, label, first, last, float(e["score"]))
            out.append(
                Event(
                    kind,
                    track_id,
                    label,
                    first,
                    last,
                    int(e["num_samples"]),
                    float(e["score"]),
                    tube,
                )
            )
        return out

    def _tube(self, slot: int, label: int, first: int, last: int, score: float) -> Tube:
        frames, boxes = self.pool.history_of(slot, first, last)
        full = np.arange(first, last + 1, dtype=np.int64)
        if frames.shape[0] != full.shape[0]:
            # Frames the tracker missed: boxes interpolated linearly between samples.
            boxes = np.stack([np.interp(full, frames, boxes[:, j]) for j in range(4)], axis=1)
        return Tube(self.video, label, full, boxes.astype(np.float32), score)

    def _close_slot(self, slot: int) -> list[Event]:
        raw = self.bank.close_track(int(self.pool.bank_slot[slot]))
        events = self._events(raw)
        self.pool.free(slot)
        return events

    def _apply_nms(self, events: list[Event]) -> list[Event]:
        ends = [e for e in events if e.kind == "end"]
        if not self.nms or len(ends) < 2:
            return events
        from .offline.tube_geometry import nms_tubes

        kept = {id(t) for t in nms_tubes([e.tube for e in ends], self.postprocess.nms_iou)}
        return [e for e in events if e.kind != "end" or id(e.tube) in kept]

    # -------------------------------------------------------------- public API
    @property
    def live_track_ids(self) -> np.ndarray:
        """int64 ``[n]``: ids of the live tracks, by slot."""
        return self.pool.track_ids[self.pool.live_slots()].copy()

    def update(
        self,
        frame: int,
        track_ids: np.ndarray,
        features: Mapping[str, np.ndarray],
        boxes: np.ndarray,
    ) -> FrameResult:
        """Score one frame.

        Parameters
        ----------
        frame : int
            Frame number, strictly greater than the previous call's.
        track_ids : np.ndarray
            int64 ``[N]`` distinct ids of the tracks seen at this frame (any int64;
            an unknown id starts a new track from the zero state).
        features : dict[str, np.ndarray]
            float32 ``[N, D_modality]`` per stream of the model, finite.
        boxes : np.ndarray
            float32 ``[N, 4]`` ``x1 y1 x2 y2`` of each track at this frame.

        Returns
        -------
        FrameResult

        Raises
        ------
        TypeError, ValueError
            Bad input (named in the message); the scorer is unchanged.
        BackendError
            The backend failed or returned non-finite probabilities; unchanged too.
        """
        frame = self._check_frame(frame)
        ids = self._check_ids(track_ids, known=self._checked_ids)
        n = ids.shape[0]
        if not n:
            # No step runs on an empty frame: check its features here (runner.step checks
            # the others, once).
            check_features(self.config, features, 0)
        feats = features
        boxes = self._check_boxes(boxes, n)
        pool = self.pool

        # Plan without changing anything, so that a failing step leaves no trace.
        expired = self._expired(frame)
        slots = pool.lookup(ids)
        if expired.size:
            slots[np.isin(slots, expired)] = -1  # timed out: comes back as a new track
        new = slots < 0
        any_new = bool(new.any())
        new_state: Any = None
        state: Any = None
        if not n:
            probs = np.zeros((0, self.config.num_classes), np.float32)
        else:
            carry = self._carry
            if (
                carry is not None
                and not any_new
                and carry[0].shape == slots.shape
                and np.array_equal(carry[0], slots)
            ):
                # Same batch as the last step: its states go on as they are (on the
                # device for device-resident runners).
                state = carry[1]
            else:
                # Moves device rows to the host copy; the scorer's logical state is unchanged.
                self._sync()
                state = pool.states[np.where(new, 0, slots)]
                state[new] = 0.0
            probs, new_state = self.runner.step(feats, state)
            # Our own copy: a runner may hand out a buffer it reuses next step.
            # (runner.step checked them: float32 [N, C+1], finite.)
            probs = np.array(probs, dtype=np.float32)
            if state is not None and carry is not None and state is carry[1]:
                # The carried handle was consumed (a runner may reuse its buffer now); the
                # new carry set below covers exactly the same slots.
                self._carry = None

        # Commit.
        events: list[Event] = []
        if expired.size:
            self._sync()
            for s in expired.tolist():
                events += self._close_slot(s)
        if n:
            if any_new:
                for i in np.flatnonzero(new).tolist():
                    bank_slot = self.bank.open_track(int(ids[i]))
                    slots[i] = pool.open(int(ids[i]), bank_slot, frame)
            # The new states stay with the batch (pool.states rows are synced lazily): the
            # next frame usually has the same tracks and passes them on as they are, which
            # saves a gather and a scatter of N x S floats a frame (host runners), or every
            # device round trip (device-resident runners). ``slots`` is this call's own
            # array (lookup returns a new one) and is not changed after this point.
            self._carry = (slots, new_state)
            pool.append(slots, frame, boxes, self._margin)
            raw = self.bank.push(frame, pool.bank_slot[slots], probs[:, : self.num_actions])
            events += self._events(raw)
        self.frame = frame
        # A copy: FrameResult hands ``ids`` to the caller, who may change it.
        self._checked_ids = ids.copy()
        return FrameResult(frame, ids, probs, self._apply_nms(events))

    def end_tracks(self, track_ids: Iterable[int]) -> list[Event]:
        """End tracks now: flush their lookahead and close their segments.

        Parameters
        ----------
        track_ids : array-like of int
            Distinct ids of live tracks.

        Returns
        -------
        list of Event

        Raises
        ------
        KeyError
            An id is not a live track (nothing is ended then).
        """
        ids = self._check_ids(np.asarray(list(track_ids), dtype=np.int64))
        slots = self.pool.lookup(ids)
        if (slots < 0).any():
            unknown = ids[slots < 0].tolist()
            raise KeyError(f"end_tracks: unknown or already ended track id(s) {unknown[:10]}")
        self._sync()
        events: list[Event] = []
        for s in slots.tolist():
            events += self._close_slot(s)
        return self._apply_nms(events)

    def flush(self) -> list[Event]:
        """End every live track (end of stream); returns their last events."""
        self._sync()
        events: list[Event] = []
        for s in self.pool.live_slots().tolist():
            events += self._close_slot(s)
        return self._apply_nms(events)

    # ------------------------------------------------------------ snapshots
    def snapshot(self, path: str | os.PathLike) -> Path:
        """Write the whole live state to ``path`` atomically (format: :mod:`.snapshot`).

        ``meta.json`` holds ``model_config``, ``model_id`` (the weights' identity, ""
        when the backend cannot tell), ``postprocess``, ``close_threshold``,
        ``max_gap``, ``max_age``, ``nms``, ``video``, ``frame``, ``capacity``,
        ``history``, ``state_size``, ``backend``; the arrays are, per live slot
        (ascending): ``slots``, ``track_ids``, ``last_seen``, ``count`` (int64),
        ``bank_slot`` (int32), ``states`` float32 ``[n, S]``, ``hist_frames`` int64
        ``[n, H]``, ``hist_boxes`` float32 ``[n, H, 4]`` (the box rings),
        ``open_starts`` int64 ``[k, 3]`` (slot, label, first sample of a started
        open segment) and ``bank_state`` uint8 (the C core's own snapshot bytes,
        layout in ``csrc/include/reclnet/postproc.h``).
        """
        self._sync()
        pool = self.pool
        live = pool.live_slots()
        starts = [(s, lab, idx) for s, d in pool.open_starts.items() for lab, idx in d.items()]
        meta = {
            "model_config": self.config.to_dict(),
            "model_id": _runner_model_id(self.runner),
            "postprocess": self.postprocess.to_dict(),
            "close_threshold": self.close_threshold,
            "max_gap": self.max_gap,
            "max_age": self.max_age,
            "nms": self.nms,
            "video": self.video,
            "frame": self.frame,
            "capacity": pool.capacity,
            "history": pool.history,
            "state_size": pool.state_size,
            "backend": self.runner.name,
        }
        arrays = {
            "slots": live,
            "track_ids": pool.track_ids[live],
            "last_seen": pool.last_seen[live],
            "count": pool.count[live],
            "bank_slot": pool.bank_slot[live],
            "states": pool.states[live],
            "hist_frames": pool.hist_frames[live],
            "hist_boxes": pool.hist_boxes[live],
            "open_starts": np.asarray(starts, np.int64).reshape(-1, 3),
            "bank_state": np.frombuffer(self.bank.get_state(), np.uint8),
        }
        return write_snapshot(path, meta, arrays)

    @classmethod
    def restore(cls, path: str | os.PathLike, backend: StepRunner) -> OnlineScorer:
        """A scorer continuing from a snapshot exactly as the snapshotted one would.

        Nothing in the file is trusted: its members are size-checked while read
        (:func:`reclnet.runtime.snapshot.read_snapshot`), the C core validates its
        own state, and ``meta.json``, the arrays and the bank must describe the same
        tracks, samples and open segments, so that a restored scorer never fails
        later because of its snapshot.

        Parameters
        ----------
        path : path-like
            File written by :meth:`snapshot`.
        backend : StepRunner
            A runner of the same model (configuration and, when both sides know it,
            ``model_id``; any backend).

        Raises
        ------
        SnapshotError
            Unreadable or inconsistent file, or a backend of another model.
        """
        where = f"snapshot {path}"
        meta, arrays = read_snapshot(path, expected=_SNAPSHOT_DTYPES)
        try:
            saved = RecLNetConfig.from_dict(_meta(meta, "model_config", dict, where))
            if saved != backend.config:
                raise SnapshotError(
                    f"{where}: model {saved} does not match the backend's {backend.config}"
                )
            saved_id = _meta(meta, "model_id", str, where, default="")
            backend_id = _runner_model_id(backend)
            if saved_id and backend_id and saved_id != backend_id:
                raise SnapshotError(
                    f"{where}: made by model {saved_id[:16]}, the backend runs model "
                    f"{backend_id[:16]} (same configuration, other weights)"
                )
            settings = _restore_settings(meta, saved, arrays, where)
            scorer = cls(backend, **settings)
            _check_and_load(scorer, meta, arrays, where, Path(path).stat().st_size)
        except SnapshotError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise SnapshotError(f"{where}: inconsistent contents ({exc})") from exc
        return scorer


# ---------------------------------------------------------------- snapshot checks
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
#: The arrays of a snapshot and their dtypes (as :meth:`OnlineScorer.snapshot` writes them).
_SNAPSHOT_DTYPES = {
    "slots": np.dtype(np.int64),
    "track_ids": np.dtype(np.int64),
    "last_seen": np.dtype(np.int64),
    "count": np.dtype(np.int64),
    "bank_slot": np.dtype(np.int32),
    "states": np.dtype(np.float32),
    "hist_frames": np.dtype(np.int64),
    "hist_boxes": np.dtype(np.float32),
    "open_starts": np.dtype(np.int64),
    "bank_state": np.dtype(np.uint8),
}
# A restored pool may need this much memory, or 16x the file, whichever is more.
_RESTORE_MIN_BYTES_LIMIT = 1 << 30
_MISSING = object()


def _meta(meta: Mapping[str, Any], key: str, kind: Any, where: str, default: Any = _MISSING) -> Any:
    """``meta[key]``, which must be of ``kind`` (ints are never bools)."""
    if key not in meta:
        if default is _MISSING:
            raise SnapshotError(f"{where}: meta.json has no {key!r}")
        return default
    value = meta[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        raise SnapshotError(f"{where}: meta.json {key!r} is {value!r}, not {kind}")
    return value


def _meta_int(
    meta: Mapping[str, Any], key: str, where: str, lo: int, hi: int, optional: bool = False
) -> int | None:
    kinds = (int, type(None)) if optional else int
    value = _meta(meta, key, kinds, where)
    if value is not None and not lo <= value <= hi:
        raise SnapshotError(f"{where}: meta.json {key!r} = {value} is not in [{lo}, {hi}]")
    return value


def _runner_model_id(runner: Any) -> str:
    """The identity of the runner's weights (``weights_id``), or "" when it cannot tell."""
    mid = getattr(runner, "model_id", None)
    if isinstance(mid, str) and mid:
        return mid
    mid = getattr(getattr(runner, "artifact", None), "model_id", None)
    if isinstance(mid, str) and mid:
        return mid
    model = getattr(runner, "model", None)
    if model is not None and callable(getattr(model, "state_dict", None)):
        # The reference backend runs in-memory weights: hash them as the exporter does.
        from reclnet.export.sidecar import weights_id

        return weights_id(model.state_dict())
    return ""


def _restore_settings(
    meta: Mapping[str, Any], saved: RecLNetConfig, arrays: Mapping[str, np.ndarray], where: str
) -> dict[str, Any]:
    """The constructor arguments of the restored scorer, from a checked ``meta.json``."""
    close = _meta(meta, "close_threshold", (int, float, type(None)), where)
    if close is not None and not np.isfinite(close):
        raise SnapshotError(f"{where}: meta.json close_threshold is {close}")
    nms = _meta(meta, "nms", bool, where)
    video = _meta(meta, "video", str, where)
    _meta(meta, "backend", str, where)
    state_size = _meta_int(meta, "state_size", where, 0, _I64_MAX)
    if state_size != saved.state_size:
        raise SnapshotError(
            f"{where}: state_size {state_size} but the model's is {saved.state_size}"
        )
    capacity = _meta_int(meta, "capacity", where, 1, 2**31 - 1)
    slots = arrays["slots"]
    if slots.ndim != 1:
        raise SnapshotError(f"{where}: slots must be 1-D, got shape {slots.shape}")
    if slots.size and (slots.min() < 0 or slots.max() >= capacity):
        raise SnapshotError(f"{where}: a slot is outside 0..capacity-1 = {capacity - 1}")
    # The pool's slot table is only memory: slots are taken lowest-first and the table
    # doubles when full, so any size above the highest live slot hands out the same
    # slots. Size it by what the live rows need (a forged capacity costs nothing).
    need = int(slots.max()) + 1 if slots.size else 1
    capacity = min(capacity, 1 << max(4, (need - 1).bit_length()))
    return dict(
        postprocess=PostprocessConfig.from_dict(_meta(meta, "postprocess", dict, where)),
        close_threshold=close,
        max_gap=_meta_int(meta, "max_gap", where, 0, _I64_MAX, optional=True),
        max_age=_meta_int(meta, "max_age", where, 0, _I64_MAX, optional=True),
        nms=nms,
        video=video,
        capacity=capacity,
    )


def _check_and_load(
    scorer: OnlineScorer,
    meta: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    where: str,
    file_size: int,
) -> None:
    """Check that meta.json, the arrays and the bank agree; then fill ``scorer``."""
    for key, dtype in _SNAPSHOT_DTYPES.items():
        if arrays[key].dtype != dtype:
            raise SnapshotError(f"{where}: {key} has dtype {arrays[key].dtype}, expected {dtype}")
    pool = scorer.pool
    frame = _meta_int(meta, "frame", where, _I64_MIN, _I64_MAX, optional=True)
    history = _meta_int(meta, "history", where, 1, 2**40)
    slots = arrays["slots"]
    n = slots.shape[0]
    if history & (history - 1) or history < pool.history:
        raise SnapshotError(f"{where}: history {history} is not a power of two >= {pool.history}")
    shapes = {
        "track_ids": (n,),
        "last_seen": (n,),
        "count": (n,),
        "bank_slot": (n,),
        "states": (n, pool.state_size),
        "hist_frames": (n, history),
        "hist_boxes": (n, history, 4),
    }
    for key, shape in shapes.items():
        if arrays[key].shape != shape:
            raise SnapshotError(f"{where}: {key} has shape {arrays[key].shape}, expected {shape}")
    starts = arrays["open_starts"]
    if starts.ndim != 2 or starts.shape[1] != 3:
        raise SnapshotError(f"{where}: open_starts must be [k, 3], got shape {starts.shape}")
    if n == 0:
        history = pool.history  # no ring to keep: start from the default length
    row_bytes = 4 * pool.state_size + 24 * history + 64
    limit = max(_RESTORE_MIN_BYTES_LIMIT, 16 * file_size)
    if pool.capacity * row_bytes > limit:
        raise SnapshotError(
            f"{where}: the live slots (up to {pool.capacity}) with rings of {history} "
            f"samples would need {pool.capacity * row_bytes} bytes (limit {limit})"
        )
    track_ids, last_seen = arrays["track_ids"], arrays["last_seen"]
    count, bank_slot = arrays["count"], arrays["bank_slot"]
    hist_frames = arrays["hist_frames"]
    if n:
        if np.any(np.diff(slots) <= 0):
            raise SnapshotError(f"{where}: slots are not strictly increasing")
        if np.unique(track_ids).size != n:
            raise SnapshotError(f"{where}: track ids are not distinct")
        if count.min() < 1 or frame is None or last_seen.max() > frame:
            raise SnapshotError(
                f"{where}: every live track needs a sample at or before frame {frame}"
            )
    if not np.isfinite(arrays["states"]).all() or not np.isfinite(arrays["hist_boxes"]).all():
        raise SnapshotError(f"{where}: states or boxes hold NaN or infinite values")

    # The C core checks its own state; then it must hold exactly the pool's tracks.
    state = arrays["bank_state"].tobytes()
    bank_cls = _segment_bank_cls()
    try:
        bank = bank_cls.from_state(state)
    except ValueError as exc:
        raise SnapshotError(f"{where}: bank_state refused by the C core ({exc})") from exc
    fresh = scorer.bank.config
    got = bank.config
    differ = [k for k in fresh if k != "capacity" and fresh[k] != got[k]]
    if differ:
        raise SnapshotError(
            f"{where}: bank_state settings {[(k, got[k]) for k in differ]} differ from "
            f"meta.json's {[(k, fresh[k]) for k in differ]}"
        )
    _, btracks = bank_state_tracks(state)
    by_slot = {t["slot"]: t for t in btracks}
    if len(btracks) != n:
        raise SnapshotError(f"{where}: bank_state has {len(btracks)} tracks, the pool {n}")
    starts_seen: dict[tuple[int, int], int] = {}
    for s, label, idx in starts.tolist():
        if (s, label) in starts_seen:
            raise SnapshotError(f"{where}: open_starts names slot {s} label {label} twice")
        starts_seen[(s, label)] = idx
    matched = 0
    for i in range(n):
        slot, tid, cnt = int(slots[i]), int(track_ids[i]), int(count[i])
        bt = by_slot.get(int(bank_slot[i]))
        if bt is None or bt["track_id"] != tid or bt["count"] != cnt:
            raise SnapshotError(
                f"{where}: track {tid} (slot {slot}) is not in bank_state as saved "
                f"(bank slot {int(bank_slot[i])}, {cnt} samples)"
            )
        # The retained ring: samples lo..cnt-1, frames strictly increasing, last = last_seen.
        lo = max(0, cnt - history)
        ring = hist_frames[i, np.arange(lo, cnt) % history]
        if np.any(np.diff(ring) <= 0) or ring[-1] != last_seen[i] or bt["last_frame"] != ring[-1]:
            raise SnapshotError(f"{where}: the box ring of track {tid} does not match its frames")
        if bt["done"] < lo:
            raise SnapshotError(f"{where}: track {tid}'s pending samples left its box ring")
        for sample, f in bt["frames"].items():
            if sample >= lo and ring[sample - lo] != f:
                raise SnapshotError(f"{where}: track {tid} sample {sample} frame {f} differs")
        for label, started, _num, first in bt["segments"]:
            hit = np.flatnonzero(ring == first)
            if hit.size == 0:
                raise SnapshotError(
                    f"{where}: the open segment of track {tid} label {label} starts at frame "
                    f"{first}, which its box ring no longer holds"
                )
            if started:
                if starts_seen.get((slot, label)) != lo + int(hit[0]):
                    raise SnapshotError(
                        f"{where}: open_starts lacks or misplaces track {tid} label {label}"
                    )
                matched += 1
    if matched != len(starts_seen):
        raise SnapshotError(f"{where}: open_starts names segments the bank does not have open")

    # Everything agrees: fill the fresh scorer.
    pool.grow_history(history)
    hist_boxes = arrays["hist_boxes"]
    if n == 0:
        hist_frames, hist_boxes = pool.hist_frames[:0], pool.hist_boxes[:0]
    pool.load_rows(
        slots,
        track_ids,
        last_seen,
        count,
        bank_slot,
        arrays["states"],
        hist_frames,
        hist_boxes,
        starts,
    )
    scorer.bank = bank
    scorer.frame = frame
