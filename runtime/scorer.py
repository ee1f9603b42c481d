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

from .backends import BackendError, StepRunner
from .offline.tubes import Tube
from .snapshot import SnapshotError, read_snapshot, write_snapshot
from .state_pool import StatePool

__all__ = ["Event", "FrameResult", "OnlineScorer"]


_ONES: dict[int, np.ndarray] = {}


def _all_finite(x: np.ndarray) -> bool:
    """Whether float32 ``[N, D]`` ``x`` holds only finite values (the per-frame check).

    ``x @ ones`` is non-finite in every row holding a NaN or an infinity (they
    propagate through the products and the sum), and BLAS computes it at memory
    speed, about twice as fast as ``np.isfinite(x).all()``. A finite result
    proves the rows finite; a non-finite one may also come from finite values
    overflowing the sum, so only then is the exact check run.
    """
    ones = _ONES.get(x.shape[1])
    if ones is None:
        ones = _ONES[x.shape[1]] = np.ones(x.shape[1], np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(x @ ones).all():
            return True
    return bool(np.isfinite(x).all())


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
        # Device-resident backends: (slots of the last step, its state handle) whose
        # rows in pool.states are stale until synced.
        self._carry: tuple[np.ndarray, Any] | None = None

    # ---------------------------------------------------------------- checks
    def _check_frame(self, frame: Any) -> int:
        if isinstance(frame, bool) or not isinstance(frame, int | np.integer):
            raise TypeError(f"frame must be an integer, got {type(frame).__name__}")
        frame = int(frame)
        if self.frame is not None and frame <= self.frame:
            raise ValueError(f"frame {frame} does not increase: the last frame was {self.frame}")
        return frame

    @staticmethod
    def _check_ids(track_ids: Any, what: str = "track_ids") -> np.ndarray:
        ids = np.asarray(track_ids)
        if ids.ndim != 1:
            raise ValueError(f"{what} must be 1-D [N], got shape {ids.shape}")
        if ids.size and ids.dtype.kind not in "iu":
            raise TypeError(f"{what} must be integers (int64), got dtype {ids.dtype}")
        if ids.dtype == np.uint64 and ids.size and ids.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{what} contains an id beyond the int64 range")
        ids = ids.astype(np.int64)
        if len(set(ids.tolist())) != ids.size:
            uniq, counts = np.unique(ids, return_counts=True)
            dup = uniq[counts > 1].tolist()
            raise ValueError(f"duplicate track id(s) {dup[:10]} in {what}")
        return ids

    def _check_features(self, features: Any, n: int) -> dict[str, np.ndarray]:
        if not isinstance(features, Mapping):
            raise TypeError(f"features must be a dict stream -> array, got {type(features)}")
        modalities = self.config.modalities
        missing = [s for s in modalities if s not in features]
        extra = [s for s in features if s not in modalities]
        if missing or extra:
            raise ValueError(
                f"features modalities {sorted(features)} do not match the model's "
                f"{list(modalities)} (missing {missing}, unknown {extra})"
            )
        out = {}
        for name, size in modalities.items():
            x = features[name]
            if not isinstance(x, np.ndarray):
                raise TypeError(f"features[{name!r}] must be a numpy array, got {type(x)}")
            if x.dtype != np.float32:
                raise TypeError(f"features[{name!r}] must be float32, got {x.dtype}")
            if x.ndim != 2 or x.shape[0] != n:
                raise ValueError(f"features[{name!r}] must be [N={n}, {size}], got {x.shape}")
            if x.shape[1] != size:
                raise ValueError(
                    f"features[{name!r}] has feature size {x.shape[1]}, the model expects {size}"
                )
            if not _all_finite(x):
                row = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
                raise ValueError(f"features[{name!r}] has NaN or infinite values (row {row})")
            out[name] = x
        return out

    @staticmethod
    def _check_boxes(boxes: Any, n: int) -> np.ndarray:
        b = np.asarray(boxes)
        if b.shape != (n, 4):
            raise ValueError(f"boxes must be [N={n}, 4], got shape {b.shape}")
        if b.size and b.dtype.kind != "f":
            raise TypeError(f"boxes must be float32 x1 y1 x2 y2, got dtype {b.dtype}")
        b = np.ascontiguousarray(b, dtype=np.float32)
        if not np.isfinite(b).all():
            row = int(np.flatnonzero(~np.isfinite(b).all(axis=1))[0])
            raise ValueError(f"boxes has NaN or infinite values (row {row})")
        bad = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"boxes row {row} has x2 < x1 or y2 < y1: {b[row].tolist()}")
        return b

    # ------------------------------------------------------------- internals
    def _sync(self) -> None:
        """Bring device-resident states of the last step back into the host rows."""
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
        ids = self._check_ids(track_ids)
        n = ids.shape[0]
        feats = self._check_features(features, n)
        boxes = self._check_boxes(boxes, n)
        pool = self.pool

        # Plan without changing anything, so that a failing step leaves no trace.
        expired = self._expired(frame)
        slots = pool.lookup(ids)
        if expired.size:
            slots[np.isin(slots, expired)] = -1  # timed out: comes back as a new track
        new = slots < 0
        probs = np.zeros((0, self.config.num_classes), np.float32)
        new_state: Any = None
        state: Any = None
        if n:
            carry = self._carry
            if (
                carry is not None
                and not new.any()
                and carry[0].shape == slots.shape
                and np.array_equal(carry[0], slots)
            ):
                # Same batch as the last step: its states never leave the device.
                state = carry[1]
            else:
                # Moves device rows to the host copy; the scorer's logical state is unchanged.
                self._sync()
                state = pool.states[np.where(new, 0, slots)]
                state[new] = 0.0
            probs, new_state = self.runner.step(feats, state)
            # Our own copy: a runner may hand out a buffer it reuses next step.
            probs = np.array(probs, dtype=np.float32)
            if not np.isfinite(probs).all():
                raise BackendError(
                    f"backend {self.runner.name} returned non-finite probabilities; "
                    "nothing was changed"
                )
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
            for i in np.flatnonzero(new).tolist():
                bank_slot = self.bank.open_track(int(ids[i]))
                slots[i] = pool.open(int(ids[i]), bank_slot, frame)
            if self.runner.device_resident:
                self._carry = (slots.copy(), new_state)
            else:
                pool.states[slots] = new_state
            pool.append(slots, frame, boxes, self._margin)
            raw = self.bank.push(frame, pool.bank_slot[slots], probs[:, : self.num_actions])
            events += self._events(raw)
        self.frame = frame
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

        ``meta.json`` holds ``model_config``, ``postprocess``, ``close_threshold``,
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

        Parameters
        ----------
        path : path-like
            File written by :meth:`snapshot`.
        backend : StepRunner
            A runner of the same model configuration (any backend).

        Raises
        ------
        SnapshotError
            Unreadable or inconsistent file, or a backend of another model.
        """
        meta, arrays = read_snapshot(path)
        try:
            saved = RecLNetConfig.from_dict(meta["model_config"])
            if saved != backend.config:
                raise SnapshotError(
                    f"snapshot {path}: model {saved} does not match the backend's {backend.config}"
                )
            scorer = cls(
                backend,
                postprocess=PostprocessConfig.from_dict(meta["postprocess"]),
                close_threshold=meta["close_threshold"],
                max_gap=meta["max_gap"],
                max_age=meta["max_age"],
                nms=meta["nms"],
                video=meta["video"],
                capacity=int(meta["capacity"]),
            )
            pool = scorer.pool
            pool.grow_history(int(meta["history"]))
            live = arrays["slots"].astype(np.int64)
            n = live.shape[0]
            shapes = {
                "track_ids": (n,),
                "last_seen": (n,),
                "count": (n,),
                "bank_slot": (n,),
                "states": (n, saved.state_size),
                "hist_frames": (n, pool.history),
                "hist_boxes": (n, pool.history, 4),
            }
            for key, shape in shapes.items():
                if arrays[key].shape != shape:
                    raise SnapshotError(
                        f"snapshot {path}: {key} has shape {arrays[key].shape}, expected {shape}"
                    )
            if n and (live.min() < 0 or live.max() >= pool.capacity):
                raise SnapshotError(f"snapshot {path}: slot out of range")
            starts = arrays["open_starts"]
            if starts.ndim != 2 or starts.shape[1] != 3:
                raise SnapshotError(f"snapshot {path}: open_starts must be [k, 3]")
            pool.load_rows(
                live,
                arrays["track_ids"],
                arrays["last_seen"],
                arrays["count"],
                arrays["bank_slot"],
                arrays["states"],
                arrays["hist_frames"],
                arrays["hist_boxes"],
                starts,
            )
            scorer.bank = _segment_bank_cls().from_state(arrays["bank_state"].tobytes())
            scorer.frame = meta["frame"]
        except SnapshotError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"snapshot {path}: inconsistent contents ({exc})") from exc
        return scorer
