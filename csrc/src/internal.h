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

/*
 * Opening a track is O(1) amortized (it used to scan the whole slot table):
 *   - the lowest free slot comes from a bitmap tree over the allocated slots: level 0
 *     has one bit per slot (1 = used), bit j of level l+1 is 1 when word j of level l
 *     is full; the top level is one word, so a search is <= RPP_MAP_LEVELS word reads;
 *   - duplicate track ids are found in an open-addressing hash table (linear probing,
 *     load <= 1/2, backward-shift deletion) from track id to slot.
 * The slot table is allocated lazily: `alloc` (<= capacity) entries exist; slots in
 * alloc..capacity-1 are free and implicit, so a large configured (or restored)
 * capacity costs no memory until tracks use it.
 */
#define RPP_MAP_LEVELS 7 /* 64^6 > 2^31 slots */

typedef struct rpp_freemap {
    uint64_t *words;                 /* all levels, one allocation */
    int32_t levels;
    size_t off[RPP_MAP_LEVELS];      /* first word of each level */
    size_t nwords[RPP_MAP_LEVELS];   /* words of each level */
} rpp_freemap;

struct rpp_bank {
    rpp_config cfg;
    int32_t capacity;  /* logical slot table size (reported, saved) */
    int32_t alloc;     /* allocated entries of slots, <= capacity */
    int32_t num_tracks;
    int32_t err_row;
    uint64_t stamp;
    int32_t Cp;        /* C rounded up to RPP_LANES */
    rpp_replace_fn replace; /* window kernel picked for this CPU */
    float *xpad;       /* [Cp] scratch: the pushed row, padding lanes 0 */
    float *med;        /* [Cp] scratch: medians */
    rpp_track **slots; /* [alloc], NULL = free */
    rpp_freemap map;   /* used slots among the allocated ones */
    int32_t *hash;     /* [hash_mask + 1] slot or -1 (empty) */
    size_t hash_mask;
    uint64_t hash_seed;
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
/* Bytes of one track of cfg (what rpp_track_alloc asks for). */
size_t rpp_track_bytes(const rpp_config *cfg);

/* A bank of cfg (cfg->capacity = logical capacity) whose slot table has `alloc`
 * entries allocated (1 <= alloc <= capacity) and room in the id table for
 * `expected_tracks` tracks without rehashing. */
rpp_status rpp_bank_create(const rpp_config *cfg, int32_t alloc, int32_t expected_tracks,
                           rpp_bank **out);
/* Puts track t into free allocated slot `slot` (slot < alloc); RPP_ERR_DUPLICATE_TRACK
 * (nothing changed) when its id is already open. The bank owns t on RPP_OK only. */
rpp_status rpp_bank_insert(rpp_bank *b, int32_t slot, rpp_track *t);
/* Slot of an open track id, or -1. */
int32_t rpp_bank_find(const rpp_bank *b, int64_t track_id);
/* Inserts x into column c (n sorted rows, n < w) of a [w][Cp] window matrix. */
void rpp_window_insert(float *s, int32_t Cp, int32_t n, int32_t c, float x);

#endif
