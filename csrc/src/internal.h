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
 * by decreasing alignment. With Cp = C rounded up to RPP_LANES (padding lanes hold 0):
 *   ring[w][Cp]        raw samples in insertion order, sample s in row s % w;
 *   sorted[w][Cp]      column c = class c's window sorted ascending (first wn rows used);
 *   heap[c*k .. +k)    min-heap of the top-k raw scores of class c's open segment.
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
    float *ring;        /* [w*Cp] */
    float *sorted;      /* [w*Cp] */
    float *heap;        /* [C*k] */
    int32_t *seg_num;   /* [C] samples in the open segment, 0 when closed */
    int32_t *heap_n;    /* [C] */
    uint8_t *seg_open;  /* [C] */
    uint8_t *seg_started; /* [C] START emitted */
} rpp_track;

/* s[w][Cp]: every column replaces one value equal to old[c] by x[c] (full windows). */
typedef void (*rpp_replace_fn)(float *restrict s, int32_t w, int32_t Cp,
                               const float *restrict old, const float *restrict x);

struct rpp_bank {
    rpp_config cfg;
    int32_t capacity;
    int32_t num_tracks;
    int32_t err_row;
    uint64_t stamp;
    int32_t Cp;        /* C rounded up to RPP_LANES */
    rpp_replace_fn replace; /* window kernel picked for this CPU */
    float *xpad;       /* [Cp] scratch: the pushed row, padding lanes 0 */
    float *med;        /* [Cp] scratch: medians */
    rpp_track **slots; /* [capacity], NULL = free */
};

/* Classes updated together as SIMD lanes by the window kernel. */
#define RPP_LANES 8
int32_t rpp_padded_classes(int32_t C);

/* The portable kernel (SSE2 on x86-64, scalar elsewhere) and the best one for this CPU
 * (AVX2 when available); *name (optional) names it. Exposed for the C tests. */
void rpp_window_replace_base(float *restrict s, int32_t w, int32_t Cp,
                             const float *restrict old, const float *restrict x);
rpp_replace_fn rpp_window_replace_best(const char **name);

/* Allocates a zeroed track for cfg (NULL when out of memory). */
rpp_track *rpp_track_alloc(const rpp_config *cfg, int64_t track_id);
/* Inserts x into column c (n sorted rows, n < w) of a [w][Cp] window matrix. */
void rpp_window_insert(float *s, int32_t Cp, int32_t n, int32_t c, float x);

#endif
