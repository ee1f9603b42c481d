/*
 * reclnet/postproc.h -- online temporal post-processing of RecLNet scores (C99, no Python).
 *
 * This header is THE contract of the C core. runtime/postproc/_core.pxd mirrors it
 * declaration for declaration; change both together.
 *
 * A bank (opaque rpp_bank) holds live tracks x C classes. For each track and class it
 *   1. smooths the raw scores with a running median with lookahead L
 *      (0 <= L <= (w-1)/2): the smoothed value of sample u is the median of the
 *      track's samples u-(w-1-L) .. u+L clipped to the track; it is known when sample
 *      u+L arrives, or when the track is closed (the last L samples are then flushed
 *      with windows clipped on the right). An even count takes the mean of the two
 *      middle values. Medians are computed in float32 ((a + b) * 0.5f), like numpy.
 *   2. cuts threshold segments in the smoothed timeline: a segment opens at the first
 *      smoothed value >= threshold and closes at the first smoothed value <
 *      close_threshold (<= threshold; hysteresis). Both thresholds are float32 and
 *      compared with the float32 smoothed values. The segment's score is the mean of
 *      the top-k RAW scores of its samples (k clipped to its length): those values as
 *      double, summed in descending order one after another, divided by k (bit-identical
 *      to reclnet.runtime.offline.localize.segment_score).
 *   3. handles gaps: frames strictly increase per track; the window counts samples,
 *      not frames; when two consecutive samples u-1, u of a track are more than
 *      max_gap frames apart (max_gap >= 0; negative = never), the segments open at
 *      u-1 end there (before u is considered).
 *   4. emits events: RPP_EVENT_START once an open segment holds min_length samples
 *      (segments shorter than min_length emit nothing at all) and RPP_EVENT_END when a
 *      started segment closes (threshold, gap or close_track).
 *
 * Event order: within one call, slots in the order given, then samples in order, then
 * classes ascending; for one class and sample a gap END precedes a START.
 *
 * Event buffers: calls that emit events are ATOMIC. Before touching any state they
 * check every input and compare the caller's event capacity with a worst-case bound
 * (rpp_bank_push_bound / rpp_bank_close_bound). When it is too small they return
 * RPP_NEED_MORE with the required capacity in *n_events and change nothing; the caller
 * grows its array and repeats the call. No event is ever dropped.
 *
 * Every function that can fail returns an rpp_status (RPP_OK == 0; the others are
 * free, status_string, error_row and get_api); on error the bank is unchanged.
 * Every allocation is checked. There is no global mutable state: banks are
 * independent; one bank must not be used by two threads at once.
 *
 * Cost: per pushed sample O(w * C) branch-free SIMD work for the windows (all classes
 * of a track updated together; AVX2 picked at run time, SSE2/scalar otherwise), O(C)
 * for thresholds, O(log k) per sample in an open segment, O(k) per event. Memory per
 * track: about 4 * (2 * w * C + k * C) bytes.
 *
 * Snapshot: rpp_bank_save_state / rpp_bank_load_state serialize the full state of a
 * bank (config, slots, track ids, windows, open segments, top-k heaps, last frames)
 * into a byte buffer; a restored bank continues identically. Layout (version 1), all
 * integers and floats little-endian, no padding:
 *   header : magic "RPPSTATE" (8 bytes), u32 version (=1), u32 reserved (=0)
 *   config : i32 num_classes, i32 window, i32 lookahead, f32 threshold,
 *            f32 close_threshold, i32 top_k, i32 min_length, i64 max_gap,
 *            i32 capacity (current slot table size), i32 num_tracks (open tracks)
 *   then num_tracks track records, ascending by slot:
 *     i32 slot, i64 track_id, i64 count (samples pushed), i64 done (smoothed samples
 *     processed), i64 last_frame (of sample count-1), i64 prev_frame (of sample
 *     done-1), i64 frames[L+1] (ring, index = sample % (L+1)),
 *     then for each class c = 0..C-1:
 *       f32 window[wn] with wn = min(count, w): the raw samples count-wn..count-1 in
 *           order (the sorted window is rebuilt from them),
 *       u8 open, u8 started, i32 num_samples, i64 first_frame, i64 last_frame,
 *       i32 heap_size, f32 heap[heap_size] (min-heap array order)
 *   trailer: u32 checksum (FNV-1a 32 of all preceding bytes).
 *
 * Embedding from Python extensions: the Cython module reclnet.runtime.postproc._core
 * exports a PyCapsule named RPP_CAPSULE_NAME whose pointer is a const rpp_api*
 * (function table below); check api->version == RPP_API_VERSION and
 * api->struct_size >= sizeof(rpp_api) before use. The header directory is
 * reclnet.runtime.get_include().
 */
#ifndef RECLNET_POSTPROC_H
#define RECLNET_POSTPROC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RPP_VERSION_MAJOR 1
#define RPP_VERSION_MINOR 0
#define RPP_API_VERSION 1
#define RPP_STATE_VERSION 1
#define RPP_CAPSULE_NAME "reclnet.runtime.postproc._core.rpp_api_v1"

typedef enum rpp_status {
    RPP_OK = 0,
    RPP_NEED_MORE = 1,          /* event array too small; *n_events = required capacity */
    RPP_ERR_NULL = -1,          /* a required pointer argument is NULL */
    RPP_ERR_NOMEM = -2,         /* an allocation failed */
    RPP_ERR_CONFIG = -3,        /* invalid configuration value */
    RPP_ERR_ARG = -4,           /* invalid argument (negative count, bad size, ...) */
    RPP_ERR_SLOT = -5,          /* slot out of range or not open */
    RPP_ERR_DUPLICATE_SLOT = -6, /* the same slot twice in one push */
    RPP_ERR_DUPLICATE_TRACK = -7, /* track id already open in this bank */
    RPP_ERR_FRAME_ORDER = -8,   /* frame not strictly after the track's last frame */
    RPP_ERR_NONFINITE = -9,     /* a score is NaN or infinite */
    RPP_ERR_STATE = -10         /* snapshot buffer corrupt, truncated or wrong version */
} rpp_status;

typedef enum rpp_event_kind { RPP_EVENT_START = 0, RPP_EVENT_END = 1 } rpp_event_kind;

/* 48 bytes, natural alignment; numpy EVENT_DTYPE in runtime/postproc.py matches it. */
typedef struct rpp_event {
    uint8_t kind;          /* rpp_event_kind */
    uint8_t reserved[3];   /* zero */
    int32_t slot;
    int64_t track_id;
    int32_t label;         /* class index 0..C-1 */
    int32_t num_samples;   /* samples in the segment so far (START: == min_length) */
    int64_t first_frame;
    int64_t last_frame;    /* START: frame of its min_length-th sample */
    double score;          /* mean of the top-k raw scores so far */
} rpp_event;

/* Largest memory of one track (about 4 * (2 * w * C + k * C) bytes, see "Cost"):
 * configurations needing more are refused with RPP_ERR_CONFIG. */
#define RPP_MAX_TRACK_BYTES (UINT64_C(1) << 28)

typedef struct rpp_config {
    int32_t num_classes;     /* C >= 1 */
    int32_t window;          /* w >= 1 */
    int32_t lookahead;       /* 0 <= L <= (w-1)/2 */
    float threshold;         /* finite */
    float close_threshold;   /* finite, <= threshold */
    int32_t top_k;           /* >= 1 */
    int32_t min_length;      /* >= 1 */
    int64_t max_gap;         /* >= 0, or negative for no gap splitting */
    int32_t capacity;        /* initial slot table size >= 1; grows (doubles) when full */
} rpp_config;

typedef struct rpp_bank rpp_bank;

/* Defaults of reclnet.config.PostprocessConfig: w 25, L 0, threshold 0.1, top-k 40. */
rpp_status rpp_config_init(rpp_config *cfg, int32_t num_classes);
rpp_status rpp_config_check(const rpp_config *cfg);
const char *rpp_status_string(int status);

rpp_status rpp_bank_new(const rpp_config *cfg, rpp_bank **out);
void rpp_bank_free(rpp_bank *bank); /* NULL is a no-op */
rpp_status rpp_bank_get_config(const rpp_bank *bank, rpp_config *out);
/* Closes every track without emitting events; keeps the config. */
rpp_status rpp_bank_reset(rpp_bank *bank);

/* Opens a track; *slot = the lowest free slot (the table grows when full). O(1)
 * amortized: a bitmap tree finds the slot, a hash table the duplicate ids. */
rpp_status rpp_bank_open_track(rpp_bank *bank, int64_t track_id, int32_t *slot);
/* num_tracks: open tracks; capacity: current slot table size. */
rpp_status rpp_bank_counts(const rpp_bank *bank, int32_t *num_tracks, int32_t *capacity);
/* Track of an open slot; *num_samples = samples pushed, *last_frame undefined if 0. */
rpp_status rpp_bank_track_info(const rpp_bank *bank, int32_t slot, int64_t *track_id,
                               int64_t *num_samples, int64_t *last_frame);
/* Row index of the input that caused the last push error (-1 if none). */
int32_t rpp_bank_error_row(const rpp_bank *bank);

/* Worst-case number of events of a push of n rows / of closing slot. */
rpp_status rpp_bank_push_bound(const rpp_bank *bank, int32_t n, int64_t *bound);
rpp_status rpp_bank_close_bound(const rpp_bank *bank, int32_t slot, int64_t *bound);

/*
 * One sample for each of n distinct open slots at the same frame.
 * scores: row i (C float32 values) starts at scores + i * row_stride (row_stride >= C,
 * in floats), so probs[:, :C] of an [n, C+1] array needs no copy.
 * events: capacity rpp_event slots; *n_events = events written (or required capacity
 * with RPP_NEED_MORE).
 */
rpp_status rpp_bank_push(rpp_bank *bank, int64_t frame, int32_t n, const int32_t *slots,
                         const float *scores, int64_t row_stride, rpp_event *events,
                         int64_t capacity, int64_t *n_events);

/*
 * T consecutive samples of ONE open track (e.g. a whole recorded track, or a backlog):
 * the same as T single-row pushes, in one call. frames[T] strictly increasing and after
 * the track's last frame; row i of scores at scores + i * row_stride. Bound:
 * rpp_bank_push_track_bound. On error, rpp_bank_error_row names the sample.
 */
rpp_status rpp_bank_push_track_bound(const rpp_bank *bank, int64_t T, int64_t *bound);
rpp_status rpp_bank_push_track(rpp_bank *bank, int32_t slot, int64_t T, const int64_t *frames,
                               const float *scores, int64_t row_stride, rpp_event *events,
                               int64_t capacity, int64_t *n_events);

/* Flushes the lookahead, ends the open segments and frees the slot. */
rpp_status rpp_bank_close_track(rpp_bank *bank, int32_t slot, rpp_event *events,
                                int64_t capacity, int64_t *n_events);

/* Snapshot (layout above). save: *written = bytes written; size must be >= state_size.
 * load trusts nothing (the checksum only catches accidents): every count, index and
 * size is checked against the buffer and the allocations, and only states a real bank
 * can reach are accepted (they save back to the same bytes); otherwise RPP_ERR_STATE,
 * or RPP_ERR_NOMEM, and *out = NULL. */
rpp_status rpp_bank_state_size(const rpp_bank *bank, size_t *size);
rpp_status rpp_bank_save_state(const rpp_bank *bank, void *buf, size_t size, size_t *written);
rpp_status rpp_bank_load_state(const void *buf, size_t size, rpp_bank **out);

/*
 * The streaming median of one whole track: out[u, c] = smoothed value of sample u
 * (definition above) for scores[T, C] row-major float32. Same code as the bank.
 * Returns RPP_ERR_NONFINITE (out unspecified) for NaN/inf input.
 */
rpp_status rpp_causal_median(const float *scores, int64_t T, int32_t C, int32_t window,
                             int32_t lookahead, float *out);

/* Function table exported through the PyCapsule; new members are only appended. */
typedef struct rpp_api {
    uint32_t version;      /* RPP_API_VERSION */
    uint32_t struct_size;  /* sizeof(rpp_api) of the exporter */
    rpp_status (*config_init)(rpp_config *, int32_t);
    const char *(*status_string)(int);
    rpp_status (*bank_new)(const rpp_config *, rpp_bank **);
    void (*bank_free)(rpp_bank *);
    rpp_status (*bank_reset)(rpp_bank *);
    rpp_status (*bank_open_track)(rpp_bank *, int64_t, int32_t *);
    rpp_status (*bank_push_bound)(const rpp_bank *, int32_t, int64_t *);
    rpp_status (*bank_close_bound)(const rpp_bank *, int32_t, int64_t *);
    rpp_status (*bank_push)(rpp_bank *, int64_t, int32_t, const int32_t *, const float *,
                            int64_t, rpp_event *, int64_t, int64_t *);
    rpp_status (*bank_close_track)(rpp_bank *, int32_t, rpp_event *, int64_t, int64_t *);
    rpp_status (*bank_state_size)(const rpp_bank *, size_t *);
    rpp_status (*bank_save_state)(const rpp_bank *, void *, size_t, size_t *);
    rpp_status (*bank_load_state)(const void *, size_t, rpp_bank **);
    rpp_status (*causal_median)(const float *, int64_t, int32_t, int32_t, int32_t, float *);
    rpp_status (*bank_push_track_bound)(const rpp_bank *, int64_t, int64_t *);
    rpp_status (*bank_push_track)(rpp_bank *, int32_t, int64_t, const int64_t *, const float *,
                                  int64_t, rpp_event *, int64_t, int64_t *);
} rpp_api;

/* The table of this build (a const static object; no mutable global state). */
const rpp_api *rpp_get_api(void);

#ifdef __cplusplus
}
#endif

#endif /* RECLNET_POSTPROC_H */
