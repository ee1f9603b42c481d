/*
 * Internal layout of a bank, shared by postproc.c (streaming) and state.c (snapshot).
 * Not installed; embedders see only the opaque rpp_bank of reclnet/postproc.h.
 */
#ifndef RECLNET_POSTPROC_INTERNAL_H
#define RECLNET_POSTPROC_INTERNAL_H

#include <string.h>

#include "reclnet/postproc.h"

/*
 * One live track. All arrays live in the same allocation (rpp_track_alloc), laid out
 * by decreasing alignment. Per class c:
 *   ring[c*w .. c*w+w)    raw samples in insertion order, sample s at index s % w;
 *   sorted[c*w .. )       the same window values sorted ascending (first wn used);
 *   heap[c*k .. c*k+k)    min-heap of the top-k raw scores of the open segment.
 */
typedef struct rpp_track {
    int64_t track_id;
    int64_t count;      /* samples pushed */
    int64_t done;       /* smoothed samples processed (== max(0, count - L) while open) */
    int64_t last_frame; /* frame of sample count-1 */
    int64_t prev_frame; /* frame of sample done-1 (gap test in the smoothed timeline) */
    uint64_t stamp;     /* last push that named this slot (duplicate detection) */
    int64_t *frames;    /* [L+1] frame of sample s at s % (L+1) */
    int64_t *seg_first; /* [C] */
    int64_t *seg_last;  /* [C] */
    float *ring;        /* [C*w] */
    float *sorted;      /* [C*w] */
    float *heap;        /* [C*k] */
    int32_t *seg_num;   /* [C] samples in the open segment, 0 when closed */
    int32_t *heap_n;    /* [C] */
    uint8_t *seg_open;  /* [C] */
    uint8_t *seg_started; /* [C] START emitted */
} rpp_track;

struct rpp_bank {
    rpp_config cfg;
    int32_t capacity;
    int32_t num_tracks;
    int32_t err_row;
    uint64_t stamp;
    rpp_track **slots; /* [capacity], NULL = free */
};

/* Allocates a zeroed track for cfg (NULL when out of memory). */
rpp_track *rpp_track_alloc(const rpp_config *cfg, int64_t track_id);
/* Inserts x into the sorted window s of n values (n < w). */
void rpp_window_insert(float *s, int32_t n, float x);

#endif
