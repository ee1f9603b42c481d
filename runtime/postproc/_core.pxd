# cython: language_level=3
# Mirror of csrc/include/reclnet/postproc.h (the contract of the C core): every
# declaration there has its twin here. Change both together.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t


cdef extern from "reclnet/postproc.h" nogil:
    int RPP_VERSION_MAJOR
    int RPP_VERSION_MINOR
    int RPP_API_VERSION
    int RPP_STATE_VERSION
    const char *RPP_CAPSULE_NAME

    ctypedef enum rpp_status:
        RPP_OK
        RPP_NEED_MORE
        RPP_ERR_NULL
        RPP_ERR_NOMEM
        RPP_ERR_CONFIG
        RPP_ERR_ARG
        RPP_ERR_SLOT
        RPP_ERR_DUPLICATE_SLOT
        RPP_ERR_DUPLICATE_TRACK
        RPP_ERR_FRAME_ORDER
        RPP_ERR_NONFINITE
        RPP_ERR_STATE

    ctypedef enum rpp_event_kind:
        RPP_EVENT_START
        RPP_EVENT_END

    ctypedef struct rpp_event:
        uint8_t kind
        uint8_t reserved[3]
        int32_t slot
        int64_t track_id
        int32_t label
        int32_t num_samples
        int64_t first_frame
        int64_t last_frame
        double score

    ctypedef struct rpp_config:
        int32_t num_classes
        int32_t window
        int32_t lookahead
        float threshold
        float close_threshold
        int32_t top_k
        int32_t min_length
        int64_t max_gap
        int32_t capacity

    ctypedef struct rpp_bank:
        pass

    rpp_status rpp_config_init(rpp_config *cfg, int32_t num_classes)
    rpp_status rpp_config_check(const rpp_config *cfg)
    const char *rpp_status_string(int status)

    rpp_status rpp_bank_new(const rpp_config *cfg, rpp_bank **out)
    void rpp_bank_free(rpp_bank *bank)
    rpp_status rpp_bank_get_config(const rpp_bank *bank, rpp_config *out)
    rpp_status rpp_bank_reset(rpp_bank *bank)

    rpp_status rpp_bank_open_track(rpp_bank *bank, int64_t track_id, int32_t *slot)
    rpp_status rpp_bank_counts(const rpp_bank *bank, int32_t *num_tracks, int32_t *capacity)
    rpp_status rpp_bank_track_info(const rpp_bank *bank, int32_t slot, int64_t *track_id,
                                   int64_t *num_samples, int64_t *last_frame)
    int32_t rpp_bank_error_row(const rpp_bank *bank)

    rpp_status rpp_bank_push_bound(const rpp_bank *bank, int32_t n, int64_t *bound)
    rpp_status rpp_bank_close_bound(const rpp_bank *bank, int32_t slot, int64_t *bound)

    rpp_status rpp_bank_push(rpp_bank *bank, int64_t frame, int32_t n, const int32_t *slots,
                             const float *scores, int64_t row_stride, rpp_event *events,
                             int64_t capacity, int64_t *n_events)
    rpp_status rpp_bank_push_track_bound(const rpp_bank *bank, int64_t T, int64_t *bound)
    rpp_status rpp_bank_push_track(rpp_bank *bank, int32_t slot, int64_t T, const int64_t *frames,
                                   const float *scores, int64_t row_stride, rpp_event *events,
                                   int64_t capacity, int64_t *n_events)
    rpp_status rpp_bank_close_track(rpp_bank *bank, int32_t slot, rpp_event *events,
                                    int64_t capacity, int64_t *n_events)

    rpp_status rpp_bank_state_size(const rpp_bank *bank, size_t *size)
    rpp_status rpp_bank_save_state(const rpp_bank *bank, void *buf, size_t size,
                                   size_t *written)
    rpp_status rpp_bank_load_state(const void *buf, size_t size, rpp_bank **out)

    rpp_status rpp_causal_median(const float *scores, int64_t T, int32_t C, int32_t window,
                                 int32_t lookahead, float *out)

    ctypedef struct rpp_api:
        uint32_t version
        uint32_t struct_size
        rpp_status (*config_init)(rpp_config *, int32_t)
        const char *(*status_string)(int)
        rpp_status (*bank_new)(const rpp_config *, rpp_bank **)
        void (*bank_free)(rpp_bank *)
        rpp_status (*bank_reset)(rpp_bank *)
        rpp_status (*bank_open_track)(rpp_bank *, int64_t, int32_t *)
        rpp_status (*bank_push_bound)(const rpp_bank *, int32_t, int64_t *)
        rpp_status (*bank_close_bound)(const rpp_bank *, int32_t, int64_t *)
        rpp_status (*bank_push)(rpp_bank *, int64_t, int32_t, const int32_t *, const float *,
                                int64_t, rpp_event *, int64_t, int64_t *)
        rpp_status (*bank_close_track)(rpp_bank *, int32_t, rpp_event *, int64_t, int64_t *)
        rpp_status (*bank_state_size)(const rpp_bank *, size_t *)
        rpp_status (*bank_save_state)(const rpp_bank *, void *, size_t, size_t *)
        rpp_status (*bank_load_state)(const void *, size_t, rpp_bank **)
        rpp_status (*causal_median)(const float *, int64_t, int32_t, int32_t, int32_t, float *)
        rpp_status (*bank_push_track_bound)(const rpp_bank *, int64_t, int64_t *)
        rpp_status (*bank_push_track)(rpp_bank *, int32_t, int64_t, const int64_t *,
                                      const float *, int64_t, rpp_event *, int64_t, int64_t *)

    const rpp_api *rpp_get_api()
