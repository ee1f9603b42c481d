/*
 * Streaming core: running median with lookahead, threshold segments, top-k scores.
 * Semantics and API: include/reclnet/postproc.h.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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
    cfg->window = 25;
    cfg->lookahead = 0;
    cfg->threshold = 0.1f;
    cfg->close_threshold = 0.1f;
    cfg->top_k = 40;
    cfg->min_length = 1;
    cfg->max_gap = -1;
    cfg->capacity = 64;
    return rpp_config_check(cfg);
}

rpp_status rpp_config_check(const rpp_config *cfg) {
    if (cfg == NULL) return RPP_ERR_NULL;
    if (cfg->num_classes < 1 || cfg->window < 1 || cfg->lookahead < 0 ||
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
    return RPP_OK;
}

/* ---------------------------------------------------------------- sorted window */

/* Values of s[0..n) below x; with a sorted s this is the lower bound of x. The
 * branch-free count vectorizes, which beats a binary search at w <= 64. */
static inline int32_t count_less(const float *s, int32_t n, float x) {
    int32_t k = 0;
    for (int32_t j = 0; j < n; j++) k += s[j] < x;
    return k;
}

static inline int32_t count_less_equal(const float *s, int32_t n, float x) {
    int32_t k = 0;
    for (int32_t j = 0; j < n; j++) k += s[j] <= x;
    return k;
}

void rpp_window_insert(float *s, int32_t n, float x) {
    int32_t j = count_less_equal(s, n, x);
    memmove(s + j + 1, s + j, (size_t)(n - j) * sizeof(float));
    s[j] = x;
}

static inline void window_remove(float *s, int32_t n, float old) {
    int32_t i = count_less(s, n, old); /* s[i] == old */
    memmove(s + i, s + i + 1, (size_t)(n - 1 - i) * sizeof(float));
}

/* Replaces one value equal to old by x in the full sorted window s[0..n). */
static inline void window_replace(float *s, int32_t n, float old, float x) {
    int32_t i = count_less(s, n, old);
    if (x > old) {
        int32_t j = count_less(s, n, x) - 1; /* s[i+1..j] < x move down one */
        memmove(s + i, s + i + 1, (size_t)(j - i) * sizeof(float));
        s[j] = x;
    } else if (x < old) {
        int32_t j = count_less_equal(s, i, x); /* s[j..i-1] > x move up one */
        memmove(s + j + 1, s + j, (size_t)(i - j) * sizeof(float));
        s[j] = x;
    }
}

static inline float window_median(const float *s, int32_t n) {
    if (n & 1) return s[n >> 1];
    return (s[(n >> 1) - 1] + s[n >> 1]) * 0.5f;
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

/* Mean of the heap's values as float64 summed in DESCENDING order one after another,
 * exactly like reclnet.runtime.localize.segment_score. Sorting the heap array
 * ascending in place keeps it a valid min-heap (parents precede children). Runs only
 * when an event is emitted. */
static double heap_mean(float *h, int32_t n) {
    double s = 0.0;
    if (n <= 0) return 0.0;
    if (n <= 32) {
        for (int32_t i = 1; i < n; i++) {
            float x = h[i];
            int32_t j = i;
            while (j > 0 && h[j - 1] > x) {
                h[j] = h[j - 1];
                j--;
            }
            h[j] = x;
        }
    } else {
        qsort(h, (size_t)n, sizeof(float), cmp_float_asc);
    }
    for (int32_t i = n - 1; i >= 0; i--) s += (double)h[i];
    return s / (double)n;
}

/* ---------------------------------------------------------------- tracks */

static size_t track_bytes(const rpp_config *cfg) {
    size_t C = (size_t)cfg->num_classes, w = (size_t)cfg->window, k = (size_t)cfg->top_k;
    size_t L1 = (size_t)cfg->lookahead + 1;
    return sizeof(rpp_track) + sizeof(int64_t) * (L1 + 2 * C) + sizeof(float) * (2 * C * w + C * k) +
           sizeof(int32_t) * 2 * C + 2 * C;
}

rpp_track *rpp_track_alloc(const rpp_config *cfg, int64_t track_id) {
    size_t C = (size_t)cfg->num_classes, w = (size_t)cfg->window, k = (size_t)cfg->top_k;
    size_t L1 = (size_t)cfg->lookahead + 1;
    char *p = (char *)calloc(1, track_bytes(cfg));
    rpp_track *t = (rpp_track *)p;
    if (p == NULL) return NULL;
    p += sizeof(rpp_track);
    t->frames = (int64_t *)p; p += sizeof(int64_t) * L1;
    t->seg_first = (int64_t *)p; p += sizeof(int64_t) * C;
    t->seg_last = (int64_t *)p; p += sizeof(int64_t) * C;
    t->ring = (float *)p; p += sizeof(float) * C * w;
    t->sorted = (float *)p; p += sizeof(float) * C * w;
    t->heap = (float *)p; p += sizeof(float) * C * k;
    t->seg_num = (int32_t *)p; p += sizeof(int32_t) * C;
    t->heap_n = (int32_t *)p; p += sizeof(int32_t) * C;
    t->seg_open = (uint8_t *)p; p += C;
    t->seg_started = (uint8_t *)p;
    t->track_id = track_id;
    return t;
}

/* ---------------------------------------------------------------- bank */

rpp_status rpp_bank_new(const rpp_config *cfg, rpp_bank **out) {
    rpp_status st;
    rpp_bank *b;
    if (out == NULL) return RPP_ERR_NULL;
    *out = NULL;
    if ((st = rpp_config_check(cfg)) != RPP_OK) return st;
    b = (rpp_bank *)calloc(1, sizeof(rpp_bank));
    if (b == NULL) return RPP_ERR_NOMEM;
    b->slots = (rpp_track **)calloc((size_t)cfg->capacity, sizeof(rpp_track *));
    if (b->slots == NULL) {
        free(b);
        return RPP_ERR_NOMEM;
    }
    b->cfg = *cfg;
    b->capacity = cfg->capacity;
    b->err_row = -1;
    *out = b;
    return RPP_OK;
}

void rpp_bank_free(rpp_bank *b) {
    if (b == NULL) return;
    for (int32_t i = 0; i < b->capacity; i++) free(b->slots[i]);
    free(b->slots);
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
    for (int32_t i = 0; i < b->capacity; i++) {
        free(b->slots[i]);
        b->slots[i] = NULL;
    }
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
    if (slot < 0 || slot >= b->capacity) return NULL;
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

rpp_status rpp_bank_open_track(rpp_bank *b, int64_t track_id, int32_t *slot) {
    int32_t free_slot = -1;
    rpp_track *t;
    if (b == NULL || slot == NULL) return RPP_ERR_NULL;
    for (int32_t i = 0; i < b->capacity; i++) {
        if (b->slots[i] == NULL) {
            if (free_slot < 0) free_slot = i;
        } else if (b->slots[i]->track_id == track_id) {
            return RPP_ERR_DUPLICATE_TRACK;
        }
    }
    t = rpp_track_alloc(&b->cfg, track_id);
    if (t == NULL) return RPP_ERR_NOMEM;
    if (free_slot < 0) {
        int32_t cap = b->capacity;
        int32_t new_cap = cap > INT32_MAX / 2 ? INT32_MAX : cap * 2;
        rpp_track **s;
        if (new_cap <= cap) {
            free(t);
            return RPP_ERR_NOMEM;
        }
        s = (rpp_track **)realloc(b->slots, (size_t)new_cap * sizeof(rpp_track *));
        if (s == NULL) {
            free(t);
            return RPP_ERR_NOMEM;
        }
        memset(s + cap, 0, (size_t)(new_cap - cap) * sizeof(rpp_track *));
        b->slots = s;
        b->capacity = new_cap;
        free_slot = cap;
    }
    b->slots[free_slot] = t;
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
static inline int64_t segment_step(const rpp_config *cfg, rpp_track *t, int32_t slot,
                                   int32_t c, float m, float r, int64_t f, int gap,
                                   rpp_event *ev, int64_t ne) {
    int32_t k = cfg->top_k;
    if (t->seg_open[c]) {
        if (gap || m < cfg->close_threshold) ne = segment_close(t, slot, c, k, ev, ne);
    }
    if (t->seg_open[c]) {
        t->seg_num[c]++;
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

rpp_status rpp_bank_push(rpp_bank *b, int64_t frame, int32_t n, const int32_t *slots,
                         const float *scores, int64_t row_stride, rpp_event *events,
                         int64_t capacity, int64_t *n_events) {
    const rpp_config *cfg;
    int32_t C, w, L, L1;
    int64_t bound, ne = 0;
    uint64_t stamp;
    if (b == NULL || n_events == NULL) return RPP_ERR_NULL;
    *n_events = 0;
    b->err_row = -1;
    cfg = &b->cfg;
    C = cfg->num_classes;
    w = cfg->window;
    L = cfg->lookahead;
    L1 = L + 1;
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

    for (int32_t i = 0; i < n; i++) {
        int32_t slot = slots[i];
        rpp_track *t = b->slots[slot];
        const float *x = scores + (size_t)i * (size_t)row_stride;
        int64_t s = t->count, u = s - L;
        int32_t pos = (int32_t)(s % w), full = s >= w;
        int32_t wn = full ? w : (int32_t)s + 1; /* window size after this sample */
        t->frames[s % L1] = frame;
        t->last_frame = frame;
        t->count = s + 1;
        if (u < 0) {
            /* Not enough lookahead yet: only fill the windows. */
            for (int32_t c = 0; c < C; c++) {
                float *ring = t->ring + (size_t)c * w;
                rpp_window_insert(t->sorted + (size_t)c * w, (int32_t)s, x[c]);
                ring[pos] = x[c];
            }
            continue;
        }
        {
            int64_t fu = t->frames[u % L1];
            int gap = cfg->max_gap >= 0 && t->done > 0 && fu - t->prev_frame > cfg->max_gap;
            int32_t upos = (int32_t)(u % w);
            for (int32_t c = 0; c < C; c++) {
                float *ring = t->ring + (size_t)c * w;
                float *sorted = t->sorted + (size_t)c * w;
                float xv = x[c], m;
                if (full)
                    window_replace(sorted, w, ring[pos], xv);
                else
                    rpp_window_insert(sorted, (int32_t)s, xv);
                ring[pos] = xv;
                m = window_median(sorted, wn);
                ne = segment_step(cfg, t, slot, c, m, ring[upos], fu, gap, events, ne);
            }
            t->prev_frame = fu;
            t->done = u + 1;
        }
    }
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
        int gap = cfg->max_gap >= 0 && t->done > 0 && fu - t->prev_frame > cfg->max_gap;
        int32_t upos = (int32_t)(u % w);
        for (int32_t c = 0; c < C; c++) {
            float *ring = t->ring + (size_t)c * w;
            float *sorted = t->sorted + (size_t)c * w;
            for (int64_t s = wstart; s < want; s++)
                window_remove(sorted, (int32_t)(t->count - s), ring[s % w]);
            ne = segment_step(cfg, t, slot, c, window_median(sorted, (int32_t)(t->count - want)),
                              ring[upos], fu, gap, events, ne);
        }
        if (want > wstart) wstart = want;
        t->prev_frame = fu;
        t->done = u + 1;
    }
    for (int32_t c = 0; c < C; c++)
        if (t->seg_open[c]) ne = segment_close(t, slot, c, cfg->top_k, events, ne);
    free(t);
    b->slots[slot] = NULL;
    b->num_tracks--;
    *n_events = ne;
    return RPP_OK;
}

/* ---------------------------------------------------------------- whole track */

rpp_status rpp_causal_median(const float *scores, int64_t T, int32_t C, int32_t window,
                             int32_t lookahead, float *out) {
    float *ring, *sorted;
    int32_t w = window, L = lookahead;
    if (scores == NULL || out == NULL) return T == 0 ? RPP_OK : RPP_ERR_NULL;
    if (C < 1 || w < 1 || L < 0 || L > (w - 1) / 2) return RPP_ERR_CONFIG;
    if (T < 0) return RPP_ERR_ARG;
    for (int64_t s = 0; s < T; s++)
        if (!rows_finite(scores + (size_t)s * (size_t)C, C)) return RPP_ERR_NONFINITE;
    ring = (float *)malloc(sizeof(float) * (size_t)w);
    sorted = (float *)malloc(sizeof(float) * (size_t)w);
    if (ring == NULL || sorted == NULL) {
        free(ring);
        free(sorted);
        return RPP_ERR_NOMEM;
    }
    /* One class at a time through the same window code as the bank. */
    for (int32_t c = 0; c < C; c++) {
        int64_t wstart;
        for (int64_t s = 0; s < T; s++) {
            float x = scores[(size_t)s * C + c];
            int32_t pos = (int32_t)(s % w);
            if (s >= w)
                window_replace(sorted, w, ring[pos], x);
            else
                rpp_window_insert(sorted, (int32_t)s, x);
            ring[pos] = x;
            if (s >= L) out[(size_t)(s - L) * C + c] = window_median(sorted, s >= w ? w : (int32_t)s + 1);
        }
        wstart = T > w ? T - w : 0;
        for (int64_t u = T - L > 0 ? T - L : 0; u < T; u++) {
            int64_t want = u - (w - 1 - L) > 0 ? u - (w - 1 - L) : 0;
            for (; wstart < want; wstart++)
                window_remove(sorted, (int32_t)(T - wstart), ring[wstart % w]);
            out[(size_t)u * C + c] = window_median(sorted, (int32_t)(T - wstart));
        }
    }
    free(ring);
    free(sorted);
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
};

const rpp_api *rpp_get_api(void) { return &API; }
