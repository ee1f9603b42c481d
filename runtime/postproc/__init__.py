"""Online temporal post-processing of track scores: the Python face of the C core.

One responsibility: convert Python/numpy input for the C bank in ``csrc/``
(bound by the Cython module ``reclnet.runtime.postproc._core``) and hand events
back as numpy structured arrays. The C core validates every value and the Cython
layer turns its status codes into :class:`PostprocError`; this facade checks only
what C cannot see (Python types, integer widths, the score columns it reads) and
does not repeat C's range checks. The semantics (running median with
lookahead, threshold segments with hysteresis, top-k scores, gaps, events) are
documented in ``csrc/include/reclnet/postproc.h``; with ``lookahead = (window -
1) // 2`` a closed track's segments equal ``reclnet.runtime.offline.localize.localize_track``.
"""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

import numpy as np

from reclnet.config import PostprocessConfig

from . import _core

__all__ = [
    "EVENT_DTYPE",
    "EVENT_END",
    "EVENT_START",
    "PostprocError",
    "SegmentBank",
    "causal_median",
    "get_include",
]

#: Structured dtype of events: kind u1 (0 START, 1 END), track_id i8, slot i4, label i4,
#: first_frame i8, last_frame i8, num_samples i4, score f8 (48 bytes, the C ``rpp_event``).
EVENT_DTYPE: np.dtype = _core.EVENT_DTYPE
EVENT_START: int = _core.EVENT_START
EVENT_END: int = _core.EVENT_END
PostprocError = _core.PostprocError

_I32_MAX = np.iinfo(np.int32).max
_F32 = np.dtype(np.float32)
# The common "no event" answer: one shared, read-only, empty array.
_NO_EVENTS = np.empty(0, dtype=EVENT_DTYPE)
_NO_EVENTS.flags.writeable = False
# push_track hands long inputs to C in chunks of this many samples.
_CHUNK = 1024
_I64 = np.iinfo(np.int64)
_I64_MIN, _I64_MAX = int(_I64.min), int(_I64.max)


def get_include() -> str:
    """Directory holding ``reclnet/postproc.h``, for compiling against the C core.

    The header is shipped inside the package (``reclnet/runtime/postproc/include``) by normal
    installs; editable installs find it in the source tree's ``csrc/include``.

    Returns
    -------
    str
        Absolute path to pass as an include directory (``-I``).
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "include", here.parents[1] / "csrc" / "include"):
        if (candidate / "reclnet" / "postproc.h").is_file():
            return str(candidate)
    raise FileNotFoundError(f"reclnet/postproc.h is neither in {here / 'include'} nor in csrc/")


def _int(name: str, value: Any, minimum: int = -(2**31), maximum: int = _I32_MAX) -> int:
    """``value`` as a Python int of the C parameter's width (int32 unless told)."""
    if isinstance(value, bool):
        raise PostprocError(f"{name} must be an integer, got {value!r}")
    try:
        out = operator.index(value)
    except TypeError:
        raise PostprocError(f"{name} must be an integer, got {value!r}") from None
    if not minimum <= out <= maximum:
        raise PostprocError(f"{name} must be in [{minimum}, {maximum}], got {out}")
    return out


def _float(name: str, value: Any) -> float:
    """``value`` as a Python float (the C core checks that it is finite)."""
    if isinstance(value, bool):
        raise PostprocError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PostprocError(f"{name} must be a real number, got {value!r}") from None


#: The C core's rules for a bank's settings (``rpp_config_check`` in csrc/), quoted in the
#: error when it refuses them.
_CONFIG_RULES = (
    "num_classes >= 1, window >= 1, 0 <= lookahead <= (window - 1) // 2, finite threshold "
    "and close_threshold (as float32) with close_threshold <= threshold, top_k >= 1, "
    "min_length >= 1, capacity >= 1"
)


def _scores_2d(scores: Any, name: str, num_classes: int | None = None) -> np.ndarray:
    arr = np.asarray(scores)
    if arr.ndim != 2:
        raise PostprocError(f"{name} must be 2-D, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise PostprocError(f"{name} must be real numbers, got dtype {arr.dtype}")
    if num_classes is not None and arr.shape[1] != num_classes:
        raise PostprocError(f"{name} must have {num_classes} columns, got shape {arr.shape}")
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    if arr.shape[0] > 1 and arr.shape[1] > 1 and arr.strides[1] != 4:
        arr = np.ascontiguousarray(arr)
    return arr


def _slots_1d(slots: Any) -> np.ndarray:
    """int32 [n] C-contiguous slots (a conforming int32 array passes through)."""
    if (
        isinstance(slots, np.ndarray)
        and slots.dtype == np.int32
        and slots.ndim == 1
        and slots.flags.c_contiguous
    ):
        return slots
    arr = np.asarray(slots)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise PostprocError(f"slots must be a 1-D integer array, got {arr.dtype} {arr.shape}")
    if arr.size and (arr.min() < -(2**31) or arr.max() > _I32_MAX):
        raise PostprocError("slots out of int32 range")
    return np.ascontiguousarray(arr, dtype=np.int32)


class SegmentBank:
    """Live tracks x classes: streaming median, threshold segments and top-k scores.

    Parameters
    ----------
    num_classes : int
        C, the action columns scored (pass ``probs[:, :C]``, without background).
    window : int
        Median window w in samples (>= 1).
    lookahead : int
        L in ``0 .. (w - 1) // 2``: a sample's smoothed value is known L samples later.
    threshold : float
        A segment opens at a smoothed value >= threshold (compared in float32).
    close_threshold : float, optional
        An open segment closes at a smoothed value < close_threshold (<= threshold;
        default threshold).
    top_k : int
        A segment's score is the mean of its top-k raw scores (>= 1).
    min_length : int
        START is emitted once a segment holds min_length samples; shorter segments emit
        nothing (>= 1).
    max_gap : int, optional
        A frame difference > max_gap between consecutive samples of a track closes its
        open segments; None never does.
    capacity : int
        Initial number of slots; the table doubles when full.

    Notes
    -----
    Events come back as ``np.ndarray`` of :data:`EVENT_DTYPE`, ordered by the slots as
    given, then samples, then class (a fresh writable array; "no event" is one shared
    read-only empty array). Every method validates its input first and leaves
    the bank unchanged when it raises (:class:`PostprocError`, a ``ValueError``). The
    C loops run without the GIL; one bank must not be used by two threads at once.
    """

    __slots__ = ("_bank", "_events", "_raw", "_num_classes")

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
        settings = {
            "num_classes": _int("num_classes", num_classes),
            "window": _int("window", window),
            "lookahead": _int("lookahead", lookahead),
            "threshold": _float("threshold", threshold),
            "close_threshold": _float(
                "close_threshold", threshold if close_threshold is None else close_threshold
            ),
            "top_k": _int("top_k", top_k),
            "min_length": _int("min_length", min_length),
            # None is the facade's "never"; C reads any negative value so.
            "max_gap": -1 if max_gap is None else _int("max_gap", max_gap, 0, _I64.max),
            "capacity": _int("capacity", capacity),
        }
        try:
            self._bank = _core.Bank.create(*settings.values())
        except PostprocError:
            given = ", ".join(f"{k}={v!r}" for k, v in settings.items() if k != "max_gap")
            raise PostprocError(
                f"SegmentBank: invalid configuration {given}; the C core needs {_CONFIG_RULES}"
            ) from None
        self._events = self._raw = _NO_EVENTS
        self._num_classes = settings["num_classes"]

    @classmethod
    def from_config(cls, num_classes: int, config: Any, **overrides: Any) -> SegmentBank:
        """A bank with the settings of a ``reclnet.config.PostprocessConfig``.

        Parameters
        ----------
        num_classes : int
            C action columns.
        config : PostprocessConfig
            Its window, lookahead, threshold, top_k and min_length are used.
        **overrides
            Any keyword of the constructor (e.g. ``max_gap``, ``capacity``).
        """
        kwargs = {
            "window": config.window,
            "lookahead": config.lookahead,
            "threshold": config.threshold,
            "top_k": config.top_k,
            "min_length": config.min_length,
        }
        kwargs.update(overrides)
        return cls(num_classes, **kwargs)

    # ------------------------------------------------------------------ info
    @property
    def config(self) -> dict[str, Any]:
        """The settings (``max_gap`` None when disabled, ``capacity`` = current slots)."""
        cfg = self._bank.config()
        cfg["max_gap"] = None if cfg["max_gap"] < 0 else cfg["max_gap"]
        return cfg

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def num_tracks(self) -> int:
        """Open tracks."""
        return self._bank.counts()[0]

    @property
    def capacity(self) -> int:
        """Current size of the slot table."""
        return self._bank.counts()[1]

    def track_info(self, slot: int) -> tuple[int, int, int | None]:
        """``(track_id, samples pushed, last frame or None)`` of an open slot."""
        track_id, count, last = self._bank.track_info(_int("slot", slot))
        return track_id, count, (last if count else None)

    # ------------------------------------------------------------------ streaming
    def open_track(self, track_id: int) -> int:
        """Open a track; returns its slot (the lowest free one).

        Parameters
        ----------
        track_id : int
            Caller's id (int64), copied into its events; must not be open already.
        """
        return self._bank.open_track(_int("track_id", track_id, _I64_MIN, _I64_MAX))

    def _buffer(self, bound: int) -> np.ndarray:
        if self._events.shape[0] < bound:
            self._events = np.empty(max(bound, 2 * self._events.shape[0]), dtype=EVENT_DTYPE)
            self._raw = self._events.view(np.uint8)
        return self._events

    def _take(self, n: int) -> np.ndarray:
        """A writable copy of the first n buffered events (no copy when n == 0)."""
        if n == 0:
            return _NO_EVENTS
        # via bytes: several times faster than copying a structured array with offsets
        return np.frombuffer(bytearray(self._raw[: n * EVENT_DTYPE.itemsize]), EVENT_DTYPE)

    def push(self, frame: int, slots: Any, scores: Any) -> np.ndarray:
        """One sample for each of several tracks at the same frame.

        Parameters
        ----------
        frame : int
            Frame number; must be after each named track's last frame.
        slots : array_like of int
            [n] distinct open slots.
        scores : array_like of float
            float32 [n, C] finite raw scores (other real dtypes are cast; a column slice
            such as ``probs[:, :C]`` is used without a copy).

        Returns
        -------
        np.ndarray
            Events, :data:`EVENT_DTYPE` [m].
        """
        frame = _int("frame", frame, _I64_MIN, _I64_MAX)
        slots_arr = _slots_1d(slots)
        # the common case (float32 rows with unit inner stride) goes to C untouched
        x = scores
        if not (
            isinstance(x, np.ndarray)
            and x.dtype is _F32
            and x.ndim == 2
            and x.shape[1] == self._num_classes
        ):
            x = _scores_2d(scores, "scores", self._num_classes)
        elif x.shape[0] > 1 and x.shape[1] > 1 and x.strides[1] != 4:
            x = np.ascontiguousarray(x)
        n_rows = slots_arr.shape[0]
        if self._events.shape[0] < n_rows * 2 * self._num_classes:
            self._buffer(self._bank.push_bound(n_rows))
        return self._take(self._bank.push(frame, slots_arr, x, self._events))

    def push_track(self, slot: int, frames: Any, scores: Any) -> np.ndarray:
        """Many consecutive samples of one track in one call (same events as T pushes).

        Parameters
        ----------
        slot : int
            An open slot.
        frames : array_like of int
            int64 [T] strictly increasing, after the track's last frame.
        scores : array_like of float
            float32 [T, C] finite raw scores.

        Returns
        -------
        np.ndarray
            Events, :data:`EVENT_DTYPE` [m].
        """
        slot = _int("slot", slot)
        frames_arr = np.asarray(frames)
        if frames_arr.ndim != 1 or (frames_arr.size and frames_arr.dtype.kind not in "iu"):
            raise PostprocError(
                f"frames must be a 1-D integer array, got {frames_arr.dtype} {frames_arr.shape}"
            )
        if frames_arr.dtype == np.uint64 and frames_arr.size and frames_arr.max() > _I64.max:
            raise PostprocError("frames out of int64 range")
        frames_arr = np.ascontiguousarray(frames_arr, dtype=np.int64)
        x = _scores_2d(scores, "scores", self._num_classes)
        T = frames_arr.shape[0]
        if T <= _CHUNK or x.shape[0] != T:  # C refuses a row count mismatch
            events = self._buffer(self._bank.push_track_bound(T))
            return self._take(self._bank.push_track(slot, frames_arr, x, events))
        # Long inputs go to C in chunks so the worst-case event buffer stays small; they
        # are validated as a whole first, so the chunks cannot fail half-way (atomic).
        _, count, last = self._bank.track_info(slot)
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if bad.size:
            raise PostprocError(
                f"push_track(slot {slot}), sample {bad[0]} (frame {frames_arr[bad[0]]}): "
                "score is NaN or infinite"
            )
        prev = np.concatenate([[last if count else _I64.min], frames_arr[:-1]])
        bad = np.flatnonzero(frames_arr <= prev)
        if bad.size and (count or bad[0] > 0 or frames_arr[0] == _I64.min):
            raise PostprocError(
                f"push_track(slot {slot}), sample {bad[0]} (frame {frames_arr[bad[0]]}): "
                "frame not after the track's last frame"
            )
        events = self._buffer(self._bank.push_track_bound(_CHUNK))
        parts = []
        for i in range(0, T, _CHUNK):
            n = self._bank.push_track(slot, frames_arr[i : i + _CHUNK], x[i : i + _CHUNK], events)
            parts.append(self._take(n))
        return np.concatenate(parts).astype(EVENT_DTYPE, copy=False)

    def close_track(self, slot: int) -> np.ndarray:
        """Flush the lookahead, end the track's open segments and free its slot.

        Returns
        -------
        np.ndarray
            Events, :data:`EVENT_DTYPE` [m].
        """
        slot = _int("slot", slot)
        events = self._buffer(self._bank.close_bound(slot))
        return self._take(self._bank.close_track(slot, events))

    def reset(self) -> None:
        """Drop every track without emitting events (the settings stay)."""
        self._bank.reset()

    # ------------------------------------------------------------------ snapshot
    def get_state(self) -> bytes:
        """The full state as bytes (versioned layout of ``reclnet/postproc.h``)."""
        return self._bank.get_state()

    @classmethod
    def from_state(cls, state: bytes) -> SegmentBank:
        """A bank that continues exactly where the one that produced ``state`` was.

        Raises
        ------
        PostprocError
            When ``state`` is corrupt, truncated or of another layout version.
        """
        if not isinstance(state, bytes | bytearray | memoryview):
            raise PostprocError(f"state must be bytes, got {type(state).__name__}")
        self = cls.__new__(cls)
        self._bank = _core.Bank.from_state(bytes(state))
        self._events = self._raw = _NO_EVENTS
        self._num_classes = self._bank.config()["num_classes"]
        return self

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (SegmentBank.from_state, (self.get_state(),))

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"SegmentBank(num_classes={cfg['num_classes']}, window={cfg['window']}, "
            f"lookahead={cfg['lookahead']}, threshold={cfg['threshold']:g}, "
            f"tracks={self.num_tracks})"
        )


def causal_median(scores: Any, window: int, lookahead: int = 0) -> np.ndarray:
    """The online smoothed scores of one whole (closed) track.

    Runs the bank's streaming median: ``out[u]`` is the median of samples
    ``u - (window - 1 - lookahead) .. u + lookahead`` clipped to the track (even counts:
    the two middle values averaged in float32).

    Parameters
    ----------
    scores : array_like
        float32 [T, C] finite raw scores (other real dtypes are cast).
    window : int
        Window in samples (>= 1).
    lookahead : int
        ``0 .. (window - 1) // 2``; 0 is the trailing filter, ``(window - 1) // 2`` the
        centred one of the offline localization.

    Returns
    -------
    np.ndarray
        float32 [T, C].
    """
    # The C core checks window and lookahead (the error quotes both).
    x = np.ascontiguousarray(_scores_2d(scores, "scores"))
    return _core.causal_median(x, _int("window", window), _int("lookahead", lookahead))
