# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython binding of the C post-processing core (csrc/, header reclnet/postproc.h).

One responsibility: move numpy buffers in and out of the C bank with the GIL
released, and turn C status codes into Python exceptions (in ``_check`` only).
Use it through the facade ``reclnet.runtime.postproc``; the declarations are in
``_core.pxd``, the mirror of the header.
"""

# The .pxd beside this file mirrors the header. The extension is named
# reclnet.runtime.postproc._core while the folder is runtime/postproc/, so Cython does not pair
# them automatically: cimport it by its folder path.
from runtime.postproc._core cimport *

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.pycapsule cimport PyCapsule_New
from libc.stdint cimport int32_t, int64_t

cimport numpy as cnp
import numpy as np

cnp.import_array()

#: numpy twin of ``rpp_event`` (48 bytes, natural alignment; fields in contract order).
EVENT_DTYPE = np.dtype(
    {
        "names": ["kind", "track_id", "slot", "label", "first_frame", "last_frame",
                  "num_samples", "score"],
        "formats": ["u1", "<i8", "<i4", "<i4", "<i8", "<i8", "<i4", "<f8"],
        "offsets": [0, 8, 4, 16, 24, 32, 20, 40],
        "itemsize": 48,
    }
)
assert sizeof(rpp_event) == EVENT_DTYPE.itemsize

EVENT_START = RPP_EVENT_START
EVENT_END = RPP_EVENT_END
API_VERSION = RPP_API_VERSION
STATE_VERSION = RPP_STATE_VERSION
CAPSULE_NAME = RPP_CAPSULE_NAME.decode("ascii")

#: The C function table (``const rpp_api*``) for other extensions; see the header.
rpp_api_v1 = PyCapsule_New(<void *> rpp_get_api(), RPP_CAPSULE_NAME, NULL)


class PostprocError(ValueError):
    """Bad input to the post-processing core (the bank is left unchanged)."""


cdef int _check(rpp_status status, str context) except -1:
    """The one place where C statuses become exceptions."""
    if status == RPP_OK:
        return 0
    message = rpp_status_string(status).decode("ascii")
    if context:
        message = f"{context}: {message}"
    if status == RPP_ERR_NOMEM:
        raise MemoryError(message)
    if status == RPP_NEED_MORE:
        raise BufferError(message)
    raise PostprocError(message)


cdef int _check_array(cnp.ndarray a, int typenum, int ndim, str name) except -1:
    if cnp.PyArray_TYPE(a) != typenum or cnp.PyArray_NDIM(a) != ndim:
        raise PostprocError(f"{name}: wrong dtype {a.dtype} or shape {(<object> a).shape}")
    if ndim == 1 and not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise PostprocError(f"{name} must be contiguous")
    if not cnp.PyArray_ISALIGNED(a):
        raise PostprocError(f"{name} must be aligned")
    return 0


cdef int _check_events(cnp.ndarray events) except -1:
    if not cnp.PyArray_IS_C_CONTIGUOUS(events) or cnp.PyArray_NDIM(events) != 1 or not (
        events.dtype is EVENT_DTYPE or events.dtype == EVENT_DTYPE
    ):
        raise PostprocError("events must be a contiguous 1-D EVENT_DTYPE array")
    return 0


cdef int64_t _row_stride(cnp.ndarray scores) except -1:
    """Row stride in floats of a float32 [n, C] array whose rows are contiguous."""
    cdef Py_ssize_t n = cnp.PyArray_DIM(scores, 0), C = cnp.PyArray_DIM(scores, 1)
    cdef Py_ssize_t s0 = cnp.PyArray_STRIDE(scores, 0), s1 = cnp.PyArray_STRIDE(scores, 1)
    if n > 0 and C > 1 and s1 != sizeof(float):
        raise PostprocError("score rows must be contiguous")
    if n <= 1:
        return C
    if s0 < 0 or s0 % sizeof(float) != 0:
        raise PostprocError("score row stride must be a positive multiple of 4 bytes")
    return s0 // sizeof(float)


cdef class Bank:
    """A bank of live tracks x classes (owns one ``rpp_bank``).

    Low level: the caller provides correctly typed arrays; the facade
    ``reclnet.runtime.postproc.SegmentBank`` validates and converts.
    """

    cdef rpp_bank *bank

    def __cinit__(self):
        self.bank = NULL

    def __dealloc__(self):
        rpp_bank_free(self.bank)

    @staticmethod
    def create(int32_t num_classes, int32_t window, int32_t lookahead, float threshold,
               float close_threshold, int32_t top_k, int32_t min_length, int64_t max_gap,
               int32_t capacity):
        cdef rpp_config cfg
        cdef Bank self = Bank.__new__(Bank)
        cfg.num_classes = num_classes
        cfg.window = window
        cfg.lookahead = lookahead
        cfg.threshold = threshold
        cfg.close_threshold = close_threshold
        cfg.top_k = top_k
        cfg.min_length = min_length
        cfg.max_gap = max_gap
        cfg.capacity = capacity
        _check(rpp_bank_new(&cfg, &self.bank), "configuration")
        return self

    @staticmethod
    def from_state(bytes state):
        cdef Bank self = Bank.__new__(Bank)
        cdef const char *buf = PyBytes_AS_STRING(state)
        cdef size_t size = len(state)
        cdef rpp_status st
        with nogil:
            st = rpp_bank_load_state(buf, size, &self.bank)
        _check(st, "SegmentBank.from_state")
        return self

    def config(self):
        cdef rpp_config cfg
        _check(rpp_bank_get_config(self.bank, &cfg), "")
        return {
            "num_classes": cfg.num_classes,
            "window": cfg.window,
            "lookahead": cfg.lookahead,
            "threshold": cfg.threshold,
            "close_threshold": cfg.close_threshold,
            "top_k": cfg.top_k,
            "min_length": cfg.min_length,
            "max_gap": cfg.max_gap,
            "capacity": cfg.capacity,
        }

    def counts(self):
        cdef int32_t num_tracks, capacity
        _check(rpp_bank_counts(self.bank, &num_tracks, &capacity), "")
        return num_tracks, capacity

    def track_info(self, int32_t slot):
        cdef int64_t track_id, num_samples, last_frame
        _check(rpp_bank_track_info(self.bank, slot, &track_id, &num_samples, &last_frame),
               f"slot {slot}")
        return track_id, num_samples, last_frame

    def open_track(self, int64_t track_id):
        cdef int32_t slot = -1
        cdef rpp_status st
        with nogil:
            st = rpp_bank_open_track(self.bank, track_id, &slot)
        _check(st, f"open_track({track_id})")
        return slot

    def push_bound(self, int32_t n):
        cdef int64_t bound
        _check(rpp_bank_push_bound(self.bank, n, &bound), "push")
        return bound

    def close_bound(self, int32_t slot):
        cdef int64_t bound
        _check(rpp_bank_close_bound(self.bank, slot, &bound), f"close_track({slot})")
        return bound

    def push(self, int64_t frame, cnp.ndarray slots, cnp.ndarray scores, cnp.ndarray events):
        """Push rows of ``scores`` for ``slots`` into ``events``; returns the event count.

        ``slots``: int32 [n] C-contiguous; ``scores``: float32 [n, C] with unit inner
        stride (a column slice is fine); ``events``: EVENT_DTYPE C-contiguous.
        """
        cdef int32_t n
        cdef int64_t row_stride, capacity, n_events = 0
        cdef rpp_status st
        _check_array(slots, cnp.NPY_INT32, 1, "slots")
        _check_array(scores, cnp.NPY_FLOAT32, 2, "scores")
        _check_events(events)
        n = <int32_t> cnp.PyArray_DIM(slots, 0)
        if cnp.PyArray_DIM(scores, 0) != n:
            raise PostprocError(f"push: {n} slots but {scores.shape[0]} score rows")
        row_stride = _row_stride(scores)
        capacity = cnp.PyArray_DIM(events, 0)
        cdef const int32_t *sl = <const int32_t *> cnp.PyArray_DATA(slots)
        cdef const float *x = <const float *> cnp.PyArray_DATA(scores)
        cdef rpp_event *ev = <rpp_event *> cnp.PyArray_DATA(events)
        with nogil:
            st = rpp_bank_push(self.bank, frame, n, sl, x, row_stride, ev, capacity, &n_events)
        if st != RPP_OK:
            row = rpp_bank_error_row(self.bank)
            if row >= 0:
                context = f"push at frame {frame}, row {row} (slot {sl[row]})"
                if st == RPP_ERR_FRAME_ORDER:
                    _, _, last = self.track_info(sl[row])
                    context += f", track's last frame {last}"
            else:
                context = f"push at frame {frame}"
            _check(st, context)
        return n_events

    def push_track(self, int32_t slot, cnp.ndarray frames, cnp.ndarray scores,
                   cnp.ndarray events):
        """Push T consecutive samples of one track; returns the event count."""
        cdef int64_t T, row_stride, capacity, n_events = 0
        cdef rpp_status st
        _check_array(frames, cnp.NPY_INT64, 1, "frames")
        _check_array(scores, cnp.NPY_FLOAT32, 2, "scores")
        _check_events(events)
        T = cnp.PyArray_DIM(frames, 0)
        if cnp.PyArray_DIM(scores, 0) != T:
            raise PostprocError(f"push_track: {T} frames but {scores.shape[0]} score rows")
        row_stride = _row_stride(scores)
        capacity = cnp.PyArray_DIM(events, 0)
        cdef const int64_t *fr = <const int64_t *> cnp.PyArray_DATA(frames)
        cdef const float *x = <const float *> cnp.PyArray_DATA(scores)
        cdef rpp_event *ev = <rpp_event *> cnp.PyArray_DATA(events)
        with nogil:
            st = rpp_bank_push_track(self.bank, slot, T, fr, x, row_stride, ev, capacity,
                                     &n_events)
        if st != RPP_OK:
            row = rpp_bank_error_row(self.bank)
            context = f"push_track(slot {slot})"
            if row >= 0:
                context += f", sample {row} (frame {fr[row]})"
            _check(st, context)
        return n_events

    def push_track_bound(self, int64_t T):
        cdef int64_t bound
        _check(rpp_bank_push_track_bound(self.bank, T, &bound), "push_track")
        return bound

    def close_track(self, int32_t slot, cnp.ndarray events):
        _check_events(events)
        cdef int64_t n_events = 0, capacity = cnp.PyArray_DIM(events, 0)
        cdef rpp_event *ev = <rpp_event *> cnp.PyArray_DATA(events)
        cdef rpp_status st
        with nogil:
            st = rpp_bank_close_track(self.bank, slot, ev, capacity, &n_events)
        _check(st, f"close_track({slot})")
        return n_events

    def reset(self):
        _check(rpp_bank_reset(self.bank), "reset")

    def get_state(self):
        cdef size_t size = 0, written = 0
        cdef rpp_status st
        cdef char *buf
        _check(rpp_bank_state_size(self.bank, &size), "get_state")
        state = PyBytes_FromStringAndSize(NULL, <Py_ssize_t> size)
        buf = PyBytes_AS_STRING(state)
        with nogil:
            st = rpp_bank_save_state(self.bank, buf, size, &written)
        _check(st, "get_state")
        return state


def causal_median(const float[:, ::1] scores, int32_t window, int32_t lookahead):
    """The streaming median of one whole track (float32 ``[T, C]`` C-contiguous)."""
    cdef int64_t T = scores.shape[0]
    cdef int32_t C = <int32_t> scores.shape[1]
    out = np.empty((T, C), dtype=np.float32)
    cdef float[:, ::1] o = out
    cdef rpp_status st
    if C == 0:
        raise PostprocError("causal_median: scores need at least one class column")
    if T == 0:
        return out
    with nogil:
        st = rpp_causal_median(&scores[0, 0], T, C, window, lookahead, &o[0, 0])
    _check(st, f"causal_median(window={window}, lookahead={lookahead})")
    return out
