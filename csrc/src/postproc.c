/*
 * Streaming core: running median with lookahead, threshold segments, top-k scores.
 * Semantics and API: include/reclnet/postproc.h.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "reclnet/postproc_defaults.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ---------------------------------------------------------------- status, config */

const char *rpp_status_string(int status) {
    switch (status) {
    case RPP_OK: return "ok";
    case RPP_NEED_MORE: return "event array too small";
    case RPP_ERR_NULL: return "NULL pointer argument";
    case RPP_ERR_NOMEM: return "out of memory";
    case RPP_ERR_CONFIG: return "invalid configuration";
    case RPP_ERR_ARG: return "invalid argument";
    case RPP_ERR_SLOT: return "slot out of range or not open";
    case RPP_ERR_DUPLICATE_SLOT: return "slot given twice in one push";
    case RPP_ERR_DUPLICATE_TRACK: return "track id already open";
    case RPP_ERR_FRAME_ORDER: return "frame not after the track's last frame";
    case RPP_ERR_NONFINITE: return "score is NaN or infinite";
    case RPP_ERR_STATE: return "state buffer corrupt, truncated or of another version";
    default: return "unknown status";
    }
}

rpp_status rpp_config_init(rpp_config *cfg, int32_t num_classes) {
    if (cfg == NULL) return RPP_ERR_NULL;
    cfg->num_classes = num_classes;
    /* The defaults are PostprocessConfig's (reclnet/config.py), generated into this header. */
    cfg->window = RPP_DEFAULT_WINDOW;
    cfg->lookahead = RPP_DEFAULT_LOOKAHEAD;
    cfg->threshold = RPP_DEFAULT_THRESHOLD;
    cfg->close_threshold = RPP_DEFAULT_THRESHOLD;
    cfg->top_k = RPP_DEFAULT_TOP_K;
    cfg->min_length = RPP_DEFAULT_MIN_LENGTH;
    cfg->max_gap = -1;
    cfg->capacity = 64;
    return rpp_config_check(cfg);
}

rpp_status rpp_config_check(const rpp_config *cfg) {
    if (cfg == NULL) return RPP_ERR_NULL;
    /* num_classes rounded up to RPP_LANES must fit in int32. */
    if (cfg->num_classes < 1 || cfg->num_classes > INT32_MAX - RPP_LANES || cfg->window < 1 || cfg->lookahead < 0 ||
        cfg->lookahead > (cfg->window - 1) / 2 || cfg->top_k < 1 || cfg->min_length < 1 ||
        cfg->capacity < 1)
        return RPP_ERR_CONFIG;
    if (!isfinite(cfg->threshold) || !isfinite(cfg->close_threshold) ||
        cfg->close_threshold > cfg->threshold)
        return RPP_ERR_CONFIG;
    /* Per-track arrays are indexed with int64 products; keep C*w and C*k far from overflow. */
    if ((int64_t)cfg->num_classes * cfg->window > (INT64_C(1) << 40) ||
        (int64_t)cfg->num_classes * cfg->top_k > (INT64_C(1) << 40))
        return RPP_ERR_CONFIG;
    /* A bound on one track's memory: a (forged) configuration cannot make every track,
     * or the bank's scratch rows, ask for gigabytes. */
    if (rpp_track_bytes(cfg) > RPP_MAX_TRACK_BYTES) return RPP_ERR_CONFIG;
    return RPP_OK;
}

/* ---------------------------------------------------------------- sorted windows
 *
 * A track keeps, for all its classes at once, a w x Cp matrix `sorted` (row-major,
 * Cp = C rounded up to RPP_LANES): column c holds class c's window sorted ascending
 * down the rows. The steady-state update (one value out, one in, every class) is a
 * branch-free pass over the rows in which the classes are SIMD lanes, so its cost does
 * not depend on the data: no searches, no mispredicted shifts, no memmove calls.
 */

int32_t rpp_padded_classes(int32_t C) { return (C + RPP_LANES - 1) / RPP_LANES * RPP_LANES; }

/* Column c of s (rows 0..n-1 sorted) gets x inserted; rows 0..n sorted afterwards. */
void rpp_window_insert(float *s, int32_t Cp, int32_t n, int32_t c, float x) {
    int32_t j = n;
    while (j > 0 && s[(size_t)(j - 1) * Cp + c] > x) {
        s[(size_t)j * Cp + c] = s[(size_t)(j - 1) * Cp + c];
        j--;
    }
    s[(size_t)j * Cp + c] = x;
}

/* Column c of s (rows 0..n-1 sorted) loses one value equal to old. */
static void window_remove(float *s, int32_t Cp, int32_t n, int32_t c, float old) {
    int32_t i = 0;
    while (s[(size_t)i * Cp + c] < old) i++; /* s[i] == old: old is in the column */
    for (; i + 1 < n; i++) s[(size_t)i * Cp + c] = s[(size_t)(i + 1) * Cp + c];
}

/*
 * Every column of the full window s (w rows) replaces one value equal to old[c] by x[c].
 * With i = first row holding old, r = the column without it (r_j = s_j if s_j < old,
 * else s_{j+1}) and p = #(r < x), the new column is
 *   out_j = r_j           if r_j < x        (j < p)
 *         = x             if r_{j-1} < x    (j == p; r_{-1} = -inf)
 *         = r_{j-1}       otherwise         (j > p),
 * and r_{w-1} = +inf. Each row needs only rows j and j+1, so it is updated in place.
 */
#if defined(__SSE2__)
#define RPP_BASE_KERNEL "sse2"
/* SSE2 (every x86-64): two 4-lane vectors per block of RPP_LANES = 8 classes. */
static inline __m128 select_ps(__m128 mask, __m128 a, __m128 b) {
    return _mm_or_ps(_mm_and_ps(mask, a), _mm_andnot_ps(mask, b));
}

void rpp_window_replace_base(float *restrict s, int32_t w, int32_t Cp,
                             const float *restrict old, const float *restrict x) {
    const __m128 all = _mm_castsi128_ps(_mm_set1_epi32(-1));
    for (int32_t c0 = 0; c0 < Cp; c0 += RPP_LANES) {
        __m128 o0 = _mm_loadu_ps(old + c0), o1 = _mm_loadu_ps(old + c0 + 4);
        __m128 x0 = _mm_loadu_ps(x + c0), x1 = _mm_loadu_ps(x + c0 + 4);
        __m128 pr0 = _mm_setzero_ps(), pr1 = _mm_setzero_ps(), plt0 = all, plt1 = all;
        float *sj = s + c0;
        for (int32_t j = 0; j + 1 < w; j++, sj += Cp) {
            __m128 a0 = _mm_loadu_ps(sj), a1 = _mm_loadu_ps(sj + 4);
            __m128 b0 = _mm_loadu_ps(sj + Cp), b1 = _mm_loadu_ps(sj + Cp + 4);
            __m128 r0 = select_ps(_mm_cmplt_ps(a0, o0), a0, b0);
            __m128 r1 = select_ps(_mm_cmplt_ps(a1, o1), a1, b1);
            __m128 lt0 = _mm_cmplt_ps(r0, x0), lt1 = _mm_cmplt_ps(r1, x1);
            _mm_storeu_ps(sj, select_ps(lt0, r0, select_ps(plt0, x0, pr0)));
            _mm_storeu_ps(sj + 4, select_ps(lt1, r1, select_ps(plt1, x1, pr1)));
            pr0 = r0;
            pr1 = r1;
            plt0 = lt0;
            plt1 = lt1;
        }
        _mm_storeu_ps(sj, select_ps(plt0, x0, pr0));
        _mm_storeu_ps(sj + 4, select_ps(plt1, x1, pr1));
    }
}
#else
#define RPP_BASE_KERNEL "scalar"
void rpp_window_replace_base(float *restrict s, int32_t w, int32_t Cp,
                             const float *restrict old, const float *restrict x) {
    for (int32_t c0 = 0; c0 < Cp; c0 += RPP_LANES) {
        float o[RPP_LANES], xv[RPP_LANES], pr[RPP_LANES];
        int32_t plt[RPP_LANES];
        float *sj = s + c0;
        for (int32_t l = 0; l < RPP_LANES; l++) {
            o[l] = old[c0 + l];
            xv[l] = x[c0 + l];
            pr[l] = 0.0f;
            plt[l] = 1;
        }
        for (int32_t j = 0; j + 1 < w; j++, sj += Cp) {
            const float *sj1 = sj + Cp;
            for (int32_t l = 0; l < RPP_LANES; l++) {
                float a = sj[l], b = sj1[l];
                float r = a < o[l] ? a : b;
                int32_t lt = r < xv[l];
                float up = plt[l] ? xv[l] : pr[l];
                sj[l] = lt ? r : up;
                pr[l] = r;
                plt[l] = lt;
            }
        }
        for (int32_t l = 0; l < RPP_LANES; l++) sj[l] = plt[l] ? xv[l] : pr[l];
    }
}
#endif

#if defined(__GNUC__) && defined(__x86_64__) && !defined(RPP_NO_AVX2)
#include <immintrin.h>
#define RPP_HAVE_AVX2 1
/* AVX2 (chosen at run time): one 8-lane vector per block, blends for the selects. */
__attribute__((target("avx2"))) static void window_replace_avx2(float *restrict s, int32_t w,
                                                               int32_t Cp,
                                                               const float *restrict old,
                                                               const float *restrict x) {
    for (int32_t c0 = 0; c0 < Cp; c0 += RPP_LANES) {
        __m256 o = _mm256_loadu_ps(old + c0), xv = _mm256_loadu_ps(x + c0);
        __m256 pr = _mm256_setzero_ps();
        __m256 plt = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
        float *sj = s + c0;
        for (int32_t j = 0; j + 1 < w; j++, sj += Cp) {
            __m256 a = _mm256_loadu_ps(sj), b = _mm256_loadu_ps(sj + Cp);
            __m256 r = _mm256_blendv_ps(b, a, _mm256_cmp_ps(a, o, _CMP_LT_OQ));
            __m256 lt = _mm256_cmp_ps(r, xv, _CMP_LT_OQ);
            __m256 up = _mm256_blendv_ps(pr, xv, plt);
            _mm256_storeu_ps(sj, _mm256_blendv_ps(up, r, lt));
            pr = r;
            plt = lt;
        }
        _mm256_storeu_ps(sj, _mm256_blendv_ps(pr, xv, plt));
    }
}
#endif

rpp_replace_fn rpp_window_replace_best(const char **name) {
#ifdef RPP_HAVE_AVX2
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
        if (name != NULL) *name = "avx2";
        return window_replace_avx2;
    }
#endif
    if (name != NULL) *name = RPP_BASE_KERNEL;
    return rpp_window_replace_base;
}

/* m[c] = median of rows 0..n-1 of column c: middle value, or (a + b) * 0.5f. */
static inline void window_medians(const float *s, int32_t Cp, int32_t n, float *m) {
    const float *hi = s + (size_t)(n >> 1) * Cp;
    if (n & 1) {
        memcpy(m, hi, sizeof(float) * (size_t)Cp);
    } else {
        const float *lo = hi - Cp;
        for (int32_t c = 0; c < Cp; c++) m[c] = (lo[c] + hi[c]) * 0.5f;
    }
}

/* Adds sample number s (the track's count before it) with padded row xp[Cp] to the
 * windows: a full window drops sample s - w at the same time. */
static inline void window_push(rpp_replace_fn replace, float *sorted, float *ring, int32_t w,
                               int32_t Cp, int32_t C, int64_t s, const float *xp) {
    float *row = ring + (size_t)(s % w) * Cp;
    if (s >= w) {
        replace(sorted, w, Cp, row, xp);
    } else {
        for (int32_t c = 0; c < C; c++) rpp_window_insert(sorted, Cp, (int32_t)s, c, xp[c]);
    }
    memcpy(row, xp, sizeof(float) * (size_t)Cp);
}

/* Removes the oldest sample s from windows holding samples s..count-1. */
static inline void window_pop(float *sorted, const float *ring, int32_t w, int32_t Cp, int32_t C,
                              int64_t s, int64_t count) {
    const float *row = ring + (size_t)(s % w) * Cp;
    for (int32_t c = 0; c < C; c++) window_remove(sorted, Cp, (int32_t)(count - s), c, row[c]);
}

/* ---------------------------------------------------------------- top-k heap */

static inline void heap_add(float *h, int32_t *n, int32_t k, float x) {
    int32_t i;
    if (*n < k) {
        i = (*n)++;
        while (i > 0) {
            int32_t p = (i - 1) >> 1;
            if (h[p] <= x) break;
            h[i] = h[p];
            i = p;
        }
        h[i] = x;
        return;
    }
    if (x <= h[0]) return;
    i = 0;
    for (;;) {
        int32_t l = 2 * i + 1, m;
        if (l >= k) break;
        m = (l + 1 < k && h[l + 1] < h[l]) ? l + 1 : l;
        if (h[m] >= x) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = x;
}

static int cmp_float_asc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/*
 * Mean of the heap's values as float64 summed in DESCENDING order one after another,
 * exactly like reclnet.runtime.offline.localize.segment_score. When every value is a multiple
 * of ulp(smallest nonzero |value|) >= min/2^24 and n * max|value| < 2^29 * min, every
 * partial sum fits in 53 bits, so any order gives the exact sum: one pass, no sort.
 * Otherwise (values spanning > ~9 decades) the heap array is sorted ascending in place
 * (a sorted array is still a valid min-heap) and summed from its end.
 */
static double heap_mean(float *h, int32_t n) {
    double s = 0.0, hi = 0.0, lo = HUGE_VAL;
    if (n <= 0) return 0.0;
    for (int32_t i = 0; i < n; i++) {
        double v = (double)h[i], a = fabs(v);
        s += v;
        if (a > hi) hi = a;
        if (a > 0.0 && a < lo) lo = a;
    }
    if (hi == 0.0 || (double)n * hi < 536870912.0 * lo) return s / (double)n;
    qsort(h, (size_t)n, sizeof(float), cmp_float_asc);
    s = 0.0;
    for (int32_t i = n - 1; i >= 0; i--) s += (double)h[i];
    return s / (double)n;
}

/* ---------------------------------------------------------------- tracks */

size_t rpp_track_bytes(const rpp_config *cfg) {
    size_t C = (size_t)cfg->num_classes, w = (size_t)cfg->window, k = (size_t)cfg->top_k;
    size_t L1 = (size_t)cfg->lookahead + 1, Cp = (size_t)rpp_padded_classes(cfg->num_classes);
    return sizeof(rpp_track) + sizeof(int64_t) * (L1 + 2 * C) + sizeof(float) * (2 * Cp * w + C * k) +
           sizeof(int32_t) * 2 * C + 2 * C;
}

rpp_track *rpp_track_alloc(const rpp_config *cfg, int64_t track_id) {
    size_t C = (size_t)cfg->num_classes, w = (size_t)cfg->window, k = (size_t)cfg->top_k;
    size_t L1 = (size_t)cfg->lookahead + 1, Cp = (size_t)rpp_padded_classes(cfg->num_classes);
    char *p = (char *)calloc(1, rpp_track_bytes(cfg));
    rpp_track *t = (rpp_track *)p;
    if (p == NULL) return NULL;
    p += sizeof(rpp_track);
    t->frames = (int64_t *)p; p += sizeof(int64_t) * L1;
    t->seg_first = (int64_t *)p; p += sizeof(int64_t) * C;
    t->seg_last = (int64_t *)p; p += sizeof(int64_t) * C;
    t->ring = (float *)p; p += sizeof(float) * Cp * w;
    t->sorted = (float *)p; p += sizeof(float) * Cp * w;
    t->heap = (float *)p; p += sizeof(float) * C * k;
    t->seg_num = (int32_t *)p; p += sizeof(int32_t) * C;
    t->heap_n = (int32_t *)p; p += sizeof(int32_t) * C;
    t->seg_open = (uint8_t *)p; p += C;
    t->seg_started = (uint8_t *)p;
    t->track_id = track_id;
    return t;
}

/* ---------------------------------------------------------------- slot bitmap */

static inline int32_t ctz64(uint64_t x) { /* x != 0 */
#if defined(__GNUC__)
    return (int32_t)__builtin_ctzll(x);
#else
    int32_t n = 0;
    while (!(x & 1u)) {
        x >>= 1;
        n++;
    }
    return n;
#endif
}

/* A map of n slots, all free (zeroed: nothing is touched until slots are used). */
static int freemap_init(rpp_freemap *m, int32_t n) {
    size_t total = 0, words = ((size_t)n + 63) / 64;
    memset(m, 0, sizeof(*m));
    for (;;) {
        m->off[m->levels] = total;
        m->nwords[m->levels] = words;
        total += words;
        m->levels++;
        if (words == 1) break;
        words = (words + 63) / 64;
    }
    m->words = (uint64_t *)calloc(total, sizeof(uint64_t));
    return m->words != NULL;
}

static void freemap_set_used(rpp_freemap *m, int32_t slot) {
    size_t i = (size_t)slot;
    for (int32_t l = 0; l < m->levels; l++) {
        uint64_t *w = m->words + m->off[l] + (i >> 6);
        *w |= UINT64_C(1) << (i & 63);
        if (*w != ~UINT64_C(0)) return; /* the word is not full: upper levels unchanged */
        i >>= 6;
    }
}

static void freemap_set_free(rpp_freemap *m, int32_t slot) {
    size_t i = (size_t)slot;
    for (int32_t l = 0; l < m->levels; l++) {
        uint64_t *w = m->words + m->off[l] + (i >> 6);
        int was_full = *w == ~UINT64_C(0);
        *w &= ~(UINT64_C(1) << (i & 63));
        if (!was_full) return;
        i >>= 6;
    }
}

/* Lowest free slot below n (the map's size), or n when every one is used. Bits past
 * the end read as free, so an index past a level's last word means "none". */
static int32_t freemap_first_free(const rpp_freemap *m, int32_t n) {
    size_t i = 0;
    for (int32_t l = m->levels - 1; l >= 0; l--) {
        uint64_t w;
        if (i >= m->nwords[l]) return n;
        w = m->words[m->off[l] + i];
        if (w == ~UINT64_C(0)) return n;
        i = i * 64 + (size_t)ctz64(~w);
    }
    return i < (size_t)n ? (int32_t)i : n;
}

/* ---------------------------------------------------------------- id table */

static inline size_t hash_home(const rpp_bank *b, int64_t id) {
    uint64_t x = (uint64_t)id ^ b->hash_seed; /* splitmix64 finalizer */
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return (size_t)x & b->hash_mask;
}

int32_t rpp_bank_find(const rpp_bank *b, int64_t id) {
    for (size_t i = hash_home(b, id);; i = (i + 1) & b->hash_mask) {
        int32_t s = b->hash[i];
        if (s < 0 || b->slots[s]->track_id == id) return s;
    }
}

static void hash_put(rpp_bank *b, int32_t slot) {
    size_t i = hash_home(b, b->slots[slot]->track_id);
    while (b->hash[i] >= 0) i = (i + 1) & b->hash_mask;
    b->hash[i] = slot;
}

/* Removes the entry of slot (whose track is still in b->slots[slot]). */
static void hash_del(rpp_bank *b, int32_t slot) {
    size_t mask = b->hash_mask, p = hash_home(b, b->slots[slot]->track_id), j;
    while (b->hash[p] != slot) p = (p + 1) & mask;
    /* Backward shift: move later entries of the probe run into the hole when their home
     * position does not lie cyclically in (p, j]. */
    for (j = (p + 1) & mask; b->hash[j] >= 0; j = (j + 1) & mask) {
        size_t home = hash_home(b, b->slots[b->hash[j]]->track_id);
        if (((j - home) & mask) >= ((j - p) & mask)) {
            b->hash[p] = b->hash[j];
            p = j;
        }
    }
    b->hash[p] = -1;
}

/* Makes room for n tracks (load <= 1/2). */
static int hash_reserve(rpp_bank *b, int64_t n) {
    size_t cap = b->hash == NULL ? 16 : b->hash_mask + 1, want = cap;
    int32_t *h;
    while ((int64_t)(want / 2) < n) want *= 2;
    if (b->hash != NULL && want == cap) return 1;
    h = (int32_t *)malloc(want * sizeof(int32_t));
    if (h == NULL) return 0;
    memset(h, 0xff, want * sizeof(int32_t)); /* -1 everywhere */
    free(b->hash);
    b->hash = h;
    b->hash_mask = want - 1;
    for (int32_t s = 0; s < b->alloc; s++)
        if (b->slots[s] != NULL) hash_put(b, s);
    return 1;
}

/* ---------------------------------------------------------------- bank */

rpp_status rpp_bank_create(const rpp_config *cfg, int32_t alloc, int32_t expected_tracks,
                           rpp_bank **out) {
    rpp_status st;
    rpp_bank *b;
    if (out == NULL) return RPP_ERR_NULL;
    *out = NULL;
    if ((st = rpp_config_check(cfg)) != RPP_OK) return st;
    if (alloc < 1 || alloc > cfg->capacity || expected_tracks < 0 || expected_tracks > alloc)
        return RPP_ERR_ARG;
    b = (rpp_bank *)calloc(1, sizeof(rpp_bank));
    if (b == NULL) return RPP_ERR_NOMEM;
    b->cfg = *cfg;
    b->capacity = cfg->capacity;
    b->alloc = alloc;
    b->err_row = -1;
    b->Cp = rpp_padded_classes(cfg->num_classes);
    b->replace = rpp_window_replace_best(NULL);
    /* Per-bank seed: track ids chosen to collide in one bank do not collide in another. */
    b->hash_seed = (uint64_t)(uintptr_t)b * UINT64_C(0x9e3779b97f4a7c15);
    b->slots = (rpp_track **)calloc((size_t)alloc, sizeof(rpp_track *));
    b->xpad = (float *)calloc((size_t)b->Cp, sizeof(float));
    b->med = (float *)calloc((size_t)b->Cp, sizeof(float));
    if (b->slots == NULL || b->xpad == NULL || b->med == NULL || !freemap_init(&b->map, alloc) ||
        !hash_reserve(b, expected_tracks)) {
        rpp_bank_free(b);
        return RPP_ERR_NOMEM;
    }
    *out = b;
    return RPP_OK;
}

rpp_status rpp_bank_new(const rpp_config *cfg, rpp_bank **out) {
    if (out == NULL) return RPP_ERR_NULL;
    *out = NULL;
    if (cfg == NULL) return RPP_ERR_NULL;
    /* The table is allocated as tracks come (a large capacity costs nothing upfront). */
    return rpp_bank_create(cfg, cfg->capacity < 64 ? cfg->capacity : 64, 0, out);
}

void rpp_bank_free(rpp_bank *b) {
    if (b == NULL) return;
    for (int32_t i = 0; b->slots != NULL && i < b->alloc; i++) free(b->slots[i]);
    free(b->slots);
    free(b->xpad);
    free(b->med);
    free(b->map.words);
    free(b->hash);
    free(b);
}

rpp_status rpp_bank_get_config(const rpp_bank *b, rpp_config *out) {
    if (b == NULL || out == NULL) return RPP_ERR_NULL;
    *out = b->cfg;
    out->capacity = b->capacity;
    return RPP_OK;
}

rpp_status rpp_bank_reset(rpp_bank *b) {
    if (b == NULL) return RPP_ERR_NULL;
    for (int32_t i = 0; i < b->alloc; i++) {
        if (b->slots[i] == NULL) continue;
        freemap_set_free(&b->map, i);
        free(b->slots[i]);
        b->slots[i] = NULL;
    }
    memset(b->hash, 0xff, (b->hash_mask + 1) * sizeof(int32_t));
    b->num_tracks = 0;
    b->err_row = -1;
    return RPP_OK;
}

rpp_status rpp_bank_counts(const rpp_bank *b, int32_t *num_tracks, int32_t *capacity) {
    if (b == NULL) return RPP_ERR_NULL;
    if (num_tracks != NULL) *num_tracks = b->num_tracks;
    if (capacity != NULL) *capacity = b->capacity;
    return RPP_OK;
}

int32_t rpp_bank_error_row(const rpp_bank *b) { return b == NULL ? -1 : b->err_row; }

static inline rpp_track *slot_track(const rpp_bank *b, int32_t slot) {
    if (slot < 0 || slot >= b->alloc) return NULL; /* slots past alloc are free */
    return b->slots[slot];
}

rpp_status rpp_bank_track_info(const rpp_bank *b, int32_t slot, int64_t *track_id,
                               int64_t *num_samples, int64_t *last_frame) {
    rpp_track *t;
    if (b == NULL) return RPP_ERR_NULL;
    if ((t = slot_track(b, slot)) == NULL) return RPP_ERR_SLOT;
    if (track_id != NULL) *track_id = t->track_id;
    if (num_samples != NULL) *num_samples = t->count;
    if (last_frame != NULL) *last_frame = t->last_frame;
    return RPP_OK;
}

rpp_status rpp_bank_insert(rpp_bank *b, int32_t slot, rpp_track *t) {
    if (rpp_bank_find(b, t->track_id) >= 0) return RPP_ERR_DUPLICATE_TRACK;
    if (!hash_reserve(b, (int64_t)b->num_tracks + 1)) return RPP_ERR_NOMEM;
    b->slots[slot] = t;
    hash_put(b, slot);
    freemap_set_used(&b->map, slot);
    b->num_tracks++;
    return RPP_OK;
}

/* Grows the allocated table (and, when it is the whole capacity, the capacity, by
 * doubling) so that slot `alloc` exists. Called only when slots 0..alloc-1 are all
 * used, so the O(alloc) rebuild is paid for by the alloc opens before it. */
static rpp_status bank_grow(rpp_bank *b) {
    int32_t cap = b->capacity, alloc = b->alloc, new_alloc, new_cap = cap;
    rpp_track **s;
    rpp_freemap m;
    if (alloc == cap) {
        new_cap = cap > INT32_MAX / 2 ? INT32_MAX : cap * 2;
        if (new_cap <= cap) return RPP_ERR_NOMEM;
    }
    new_alloc = alloc > INT32_MAX / 2 ? INT32_MAX : alloc * 2;
    if (new_alloc > new_cap) new_alloc = new_cap;
    if (!freemap_init(&m, new_alloc)) return RPP_ERR_NOMEM;
    s = (rpp_track **)realloc(b->slots, (size_t)new_alloc * sizeof(rpp_track *));
    if (s == NULL) {
        free(m.words);
        return RPP_ERR_NOMEM;
    }
    memset(s + alloc, 0, (size_t)(new_alloc - alloc) * sizeof(rpp_track *));
    for (int32_t i = 0; i < alloc; i++)
        if (s[i] != NULL) freemap_set_used(&m, i);
    free(b->map.words);
    b->map = m;
    b->slots = s;
    b->alloc = new_alloc;
    b->capacity = new_cap;
    return RPP_OK;
}

rpp_status rpp_bank_open_track(rpp_bank *b, int64_t track_id, int32_t *slot) {
    int32_t free_slot;
    rpp_track *t;
    rpp_status st;
    if (b == NULL || slot == NULL) return RPP_ERR_NULL;
    if (rpp_bank_find(b, track_id) >= 0) return RPP_ERR_DUPLICATE_TRACK;
    /* Reserve everything that can fail first: an error changes nothing. */
    if (!hash_reserve(b, (int64_t)b->num_tracks + 1)) return RPP_ERR_NOMEM;
    t = rpp_track_alloc(&b->cfg, track_id);
    if (t == NULL) return RPP_ERR_NOMEM;
    free_slot = freemap_first_free(&b->map, b->alloc);
    if (free_slot == b->alloc && (st = bank_grow(b)) != RPP_OK) {
        free(t);
        return st;
    }
    b->slots[free_slot] = t;
    hash_put(b, free_slot);
    freemap_set_used(&b->map, free_slot);
    b->num_tracks++;
    *slot = free_slot;
    return RPP_OK;
}

rpp_status rpp_bank_push_bound(const rpp_bank *b, int32_t n, int64_t *bound) {
    if (b == NULL || bound == NULL) return RPP_ERR_NULL;
    if (n < 0) return RPP_ERR_ARG;
    /* One smoothed sample per row and class: END or START, or gap END + START. */
    *bound = (int64_t)n * b->cfg.num_classes * (b->cfg.max_gap >= 0 ? 2 : 1);
    return RPP_OK;
}

rpp_status rpp_bank_close_bound(const rpp_bank *b, int32_t slot, int64_t *bound) {
    rpp_track *t;
    if (b == NULL || bound == NULL) return RPP_ERR_NULL;
    if ((t = slot_track(b, slot)) == NULL) return RPP_ERR_SLOT;
    *bound = (int64_t)b->cfg.num_classes *
             ((t->count - t->done) * (b->cfg.max_gap >= 0 ? 2 : 1) + 1);
    return RPP_OK;
}

/* ---------------------------------------------------------------- segments */

static inline void emit_event(rpp_event *e, uint8_t kind, int32_t slot, rpp_track *t,
                              int32_t c, int32_t k) {
    e->kind = kind;
    e->reserved[0] = e->reserved[1] = e->reserved[2] = 0;
    e->slot = slot;
    e->track_id = t->track_id;
    e->label = c;
    e->num_samples = t->seg_num[c];
    e->first_frame = t->seg_first[c];
    e->last_frame = t->seg_last[c];
    e->score = heap_mean(t->heap + (size_t)c * (size_t)k, t->heap_n[c]);
}

/* Closes class c's segment (END when it was started) and clears it. */
static inline int64_t segment_close(rpp_track *t, int32_t slot, int32_t c, int32_t k,
                                    rpp_event *ev, int64_t ne) {
    if (t->seg_started[c]) emit_event(ev + ne++, RPP_EVENT_END, slot, t, c, k);
    t->seg_open[c] = 0;
    t->seg_started[c] = 0;
    t->seg_num[c] = 0;
    t->heap_n[c] = 0;
    t->seg_first[c] = 0;
    t->seg_last[c] = 0;
    return ne;
}

/* Feeds smoothed value m of a sample (raw r, frame f) of class c to its segment. */
/* later - earlier (later > earlier) without signed overflow: the difference of two
 * int64 frames can exceed INT64_MAX, it always fits in uint64. */
static inline uint64_t frame_gap(int64_t later, int64_t earlier) {
    return (uint64_t)later - (uint64_t)earlier;
}

static inline int64_t segment_step(const rpp_config *cfg, rpp_track *t, int32_t slot,
                                   int32_t c, float m, float r, int64_t f, int gap,
                                   rpp_event *ev, int64_t ne) {
    int32_t k = cfg->top_k;
    if (t->seg_open[c]) {
        if (gap || m < cfg->close_threshold) ne = segment_close(t, slot, c, k, ev, ne);
    }
    if (t->seg_open[c]) {
        if (t->seg_num[c] < INT32_MAX) t->seg_num[c]++; /* saturates after 2^31 samples */
        t->seg_last[c] = f;
        heap_add(t->heap + (size_t)c * k, &t->heap_n[c], k, r);
    } else if (m >= cfg->threshold) {
        t->seg_open[c] = 1;
        t->seg_num[c] = 1;
        t->seg_first[c] = f;
        t->seg_last[c] = f;
        t->heap_n[c] = 0;
        heap_add(t->heap + (size_t)c * k, &t->heap_n[c], k, r);
    } else {
        return ne;
    }
    if (!t->seg_started[c] && t->seg_num[c] >= cfg->min_length) {
        t->seg_started[c] = 1;
        emit_event(ev + ne++, RPP_EVENT_START, slot, t, c, k);
    }
    return ne;
}

/* ---------------------------------------------------------------- push / close */

static int rows_finite(const float *x, int32_t C) {
    /* x - x is 0 for finite x and NaN otherwise; no early exit so it vectorizes. */
    int ok = 1;
    for (int32_t c = 0; c < C; c++) ok &= (x[c] - x[c] == 0.0f);
    return ok;
}

/* One validated sample x[C] of track t at frame: windows, then the smoothed sample
 * that just got its lookahead. Returns the new event count. */
static inline int64_t track_step(rpp_bank *b, int32_t slot, rpp_track *t, int64_t frame,
                                 const float *x, rpp_event *events, int64_t ne) {
    const rpp_config *cfg = &b->cfg;
    int32_t C = cfg->num_classes, Cp = b->Cp, w = cfg->window, L1 = cfg->lookahead + 1;
    int64_t s = t->count, u = s - cfg->lookahead;
    memcpy(b->xpad, x, sizeof(float) * (size_t)C);
    window_push(b->replace, t->sorted, t->ring, w, Cp, C, s, b->xpad);
    t->frames[s % L1] = frame;
    t->last_frame = frame;
    t->count = s + 1;
    if (u >= 0) { /* sample u now has its lookahead: smooth it and cut segments */
        int64_t fu = t->frames[u % L1];
        int gap = cfg->max_gap >= 0 && t->done > 0 && frame_gap(fu, t->prev_frame) > (uint64_t)cfg->max_gap;
        const float *raw = t->ring + (size_t)(u % w) * Cp;
        window_medians(t->sorted, Cp, s >= w ? w : (int32_t)s + 1, b->med);
        for (int32_t c = 0; c < C; c++) {
            if (!t->seg_open[c] && b->med[c] < cfg->threshold) continue; /* the common case */
            ne = segment_step(cfg, t, slot, c, b->med[c], raw[c], fu, gap, events, ne);
        }
        t->prev_frame = fu;
        t->done = u + 1;
    }
    return ne;
}

rpp_status rpp_bank_push(rpp_bank *b, int64_t frame, int32_t n, const int32_t *slots,
                         const float *scores, int64_t row_stride, rpp_event *events,
                         int64_t capacity, int64_t *n_events) {
    int32_t C;
    int64_t bound, ne = 0;
    uint64_t stamp;
    if (b == NULL || n_events == NULL) return RPP_ERR_NULL;
    *n_events = 0;
    b->err_row = -1;
    C = b->cfg.num_classes;
    if (n < 0 || capacity < 0 || (n > 0 && row_stride < C)) return RPP_ERR_ARG;
    if (n == 0) return RPP_OK;
    if (slots == NULL || scores == NULL) return RPP_ERR_NULL;
    /* Validate everything before the first state change: the push is atomic. */
    stamp = ++b->stamp;
    for (int32_t i = 0; i < n; i++) {
        rpp_track *t = slot_track(b, slots[i]);
        b->err_row = i;
        if (t == NULL) return RPP_ERR_SLOT;
        if (t->stamp == stamp) return RPP_ERR_DUPLICATE_SLOT;
        t->stamp = stamp;
        if (t->count > 0 && frame <= t->last_frame) return RPP_ERR_FRAME_ORDER;
        if (!rows_finite(scores + (size_t)i * (size_t)row_stride, C)) return RPP_ERR_NONFINITE;
    }
    b->err_row = -1;
    rpp_bank_push_bound(b, n, &bound);
    if (capacity < bound) {
        *n_events = bound;
        return RPP_NEED_MORE;
    }
    if (events == NULL) return RPP_ERR_NULL;

    for (int32_t i = 0; i < n; i++)
        ne = track_step(b, slots[i], b->slots[slots[i]], frame,
                        scores + (size_t)i * (size_t)row_stride, events, ne);
    *n_events = ne;
    return RPP_OK;
}

rpp_status rpp_bank_push_track_bound(const rpp_bank *b, int64_t T, int64_t *bound) {
    if (b == NULL || bound == NULL) return RPP_ERR_NULL;
    if (T < 0 || T > (INT64_C(1) << 40)) return RPP_ERR_ARG;
    *bound = T * b->cfg.num_classes * (b->cfg.max_gap >= 0 ? 2 : 1);
    return RPP_OK;
}

rpp_status rpp_bank_push_track(rpp_bank *b, int32_t slot, int64_t T, const int64_t *frames,
                               const float *scores, int64_t row_stride, rpp_event *events,
                               int64_t capacity, int64_t *n_events) {
    rpp_track *t;
    int64_t bound, ne = 0;
    rpp_status st;
    if (b == NULL || n_events == NULL) return RPP_ERR_NULL;
    *n_events = 0;
    b->err_row = -1;
    if ((t = slot_track(b, slot)) == NULL) return RPP_ERR_SLOT;
    if ((st = rpp_bank_push_track_bound(b, T, &bound)) != RPP_OK) return st;
    if (capacity < 0 || (T > 0 && row_stride < b->cfg.num_classes)) return RPP_ERR_ARG;
    if (T == 0) return RPP_OK;
    if (frames == NULL || scores == NULL) return RPP_ERR_NULL;
    for (int64_t i = 0; i < T; i++) {
        int64_t prev = i > 0 ? frames[i - 1] : t->last_frame;
        b->err_row = (int32_t)(i < INT32_MAX ? i : INT32_MAX);
        if ((i > 0 || t->count > 0) && frames[i] <= prev) return RPP_ERR_FRAME_ORDER;
        if (!rows_finite(scores + (size_t)i * (size_t)row_stride, b->cfg.num_classes))
            return RPP_ERR_NONFINITE;
    }
    b->err_row = -1;
    if (capacity < bound) {
        *n_events = bound;
        return RPP_NEED_MORE;
    }
    if (events == NULL) return RPP_ERR_NULL;
    for (int64_t i = 0; i < T; i++)
        ne = track_step(b, slot, t, frames[i], scores + (size_t)i * (size_t)row_stride, events, ne);
    *n_events = ne;
    return RPP_OK;
}

rpp_status rpp_bank_close_track(rpp_bank *b, int32_t slot, rpp_event *events, int64_t capacity,
                                int64_t *n_events) {
    const rpp_config *cfg;
    rpp_track *t;
    int64_t bound, ne = 0, wstart;
    int32_t C, w, L, L1;
    if (b == NULL || n_events == NULL) return RPP_ERR_NULL;
    *n_events = 0;
    if (capacity < 0) return RPP_ERR_ARG;
    if ((t = slot_track(b, slot)) == NULL) return RPP_ERR_SLOT;
    rpp_bank_close_bound(b, slot, &bound);
    if (capacity < bound) {
        *n_events = bound;
        return RPP_NEED_MORE;
    }
    if (events == NULL) return RPP_ERR_NULL;
    cfg = &b->cfg;
    C = cfg->num_classes;
    w = cfg->window;
    L = cfg->lookahead;
    L1 = L + 1;
    /* Flush the pending samples done..count-1: sample u's window starts at
     * max(0, u - (w-1-L)), so the oldest samples leave one by one. */
    wstart = t->count > w ? t->count - w : 0;
    for (int64_t u = t->done; u < t->count; u++) {
        int64_t want = u - (w - 1 - L) > 0 ? u - (w - 1 - L) : 0;
        int64_t fu = t->frames[u % L1];
        int gap = cfg->max_gap >= 0 && t->done > 0 && frame_gap(fu, t->prev_frame) > (uint64_t)cfg->max_gap;
        const float *raw = t->ring + (size_t)(u % w) * b->Cp;
        for (; wstart < want; wstart++)
            window_pop(t->sorted, t->ring, w, b->Cp, C, wstart, t->count);
        window_medians(t->sorted, b->Cp, (int32_t)(t->count - wstart), b->med);
        for (int32_t c = 0; c < C; c++)
            ne = segment_step(cfg, t, slot, c, b->med[c], raw[c], fu, gap, events, ne);
        t->prev_frame = fu;
        t->done = u + 1;
    }
    for (int32_t c = 0; c < C; c++)
        if (t->seg_open[c]) ne = segment_close(t, slot, c, cfg->top_k, events, ne);
    hash_del(b, slot);
    freemap_set_free(&b->map, slot);
    free(t);
    b->slots[slot] = NULL;
    b->num_tracks--;
    *n_events = ne;
    return RPP_OK;
}

/* ---------------------------------------------------------------- whole track */

rpp_status rpp_causal_median(const float *scores, int64_t T, int32_t C, int32_t window,
                             int32_t lookahead, float *out) {
    float *ring, *sorted, *xp, *m;
    int32_t w = window, L = lookahead, Cp;
    rpp_replace_fn replace = rpp_window_replace_best(NULL);
    int64_t wstart;
    if (scores == NULL || out == NULL) return T == 0 ? RPP_OK : RPP_ERR_NULL;
    if (C < 1 || w < 1 || L < 0 || L > (w - 1) / 2 || (int64_t)C * w > (INT64_C(1) << 40))
        return RPP_ERR_CONFIG;
    if (T < 0) return RPP_ERR_ARG;
    for (int64_t s = 0; s < T; s++)
        if (!rows_finite(scores + (size_t)s * (size_t)C, C)) return RPP_ERR_NONFINITE;
    Cp = rpp_padded_classes(C);
    ring = (float *)calloc((size_t)w * Cp, sizeof(float));
    sorted = (float *)calloc((size_t)w * Cp, sizeof(float));
    xp = (float *)calloc((size_t)Cp, sizeof(float));
    m = (float *)calloc((size_t)Cp, sizeof(float));
    if (ring == NULL || sorted == NULL || xp == NULL || m == NULL) {
        free(ring);
        free(sorted);
        free(xp);
        free(m);
        return RPP_ERR_NOMEM;
    }
    /* The bank's window code over one track: push every sample, then flush. */
    for (int64_t s = 0; s < T; s++) {
        memcpy(xp, scores + (size_t)s * C, sizeof(float) * (size_t)C);
        window_push(replace, sorted, ring, w, Cp, C, s, xp);
        if (s >= L) {
            window_medians(sorted, Cp, s >= w ? w : (int32_t)s + 1, m);
            memcpy(out + (size_t)(s - L) * C, m, sizeof(float) * (size_t)C);
        }
    }
    wstart = T > w ? T - w : 0;
    for (int64_t u = T - L > 0 ? T - L : 0; u < T; u++) {
        int64_t want = u - (w - 1 - L) > 0 ? u - (w - 1 - L) : 0;
        for (; wstart < want; wstart++) window_pop(sorted, ring, w, Cp, C, wstart, T);
        window_medians(sorted, Cp, (int32_t)(T - wstart), m);
        memcpy(out + (size_t)u * C, m, sizeof(float) * (size_t)C);
    }
    free(ring);
    free(sorted);
    free(xp);
    free(m);
    return RPP_OK;
}

/* ---------------------------------------------------------------- function table */

static const rpp_api API = {
    RPP_API_VERSION,
    (uint32_t)sizeof(rpp_api),
    rpp_config_init,
    rpp_status_string,
    rpp_bank_new,
    rpp_bank_free,
    rpp_bank_reset,
    rpp_bank_open_track,
    rpp_bank_push_bound,
    rpp_bank_close_bound,
    rpp_bank_push,
    rpp_bank_close_track,
    rpp_bank_state_size,
    rpp_bank_save_state,
    rpp_bank_load_state,
    rpp_causal_median,
    rpp_bank_push_track_bound,
    rpp_bank_push_track,
};

const rpp_api *rpp_get_api(void) { return &API; }
