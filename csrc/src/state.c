/*
 * Snapshot of a bank: serialization to and from the versioned little-endian byte layout
 * documented in include/reclnet/postproc.h.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const unsigned char MAGIC[8] = {'R', 'P', 'P', 'S', 'T', 'A', 'T', 'E'};

/* ---------------------------------------------------------------- writer */

typedef struct writer {
    unsigned char *p; /* NULL: only count */
    size_t n;
} writer;

static void put_bytes(writer *w, const void *src, size_t n) {
    if (w->p != NULL) memcpy(w->p + w->n, src, n);
    w->n += n;
}

static void put_u64(writer *w, uint64_t v, int nbytes) {
    unsigned char b[8];
    for (int i = 0; i < nbytes; i++) b[i] = (unsigned char)(v >> (8 * i));
    put_bytes(w, b, (size_t)nbytes);
}

static void put_u8(writer *w, uint8_t v) { put_u64(w, v, 1); }
static void put_i32(writer *w, int32_t v) { put_u64(w, (uint32_t)v, 4); }
static void put_i64(writer *w, int64_t v) { put_u64(w, (uint64_t)v, 8); }
static void put_f32(writer *w, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    put_u64(w, u, 4);
}

static uint32_t fnv1a(const unsigned char *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

static void write_state(const rpp_bank *b, writer *w) {
    const rpp_config *cfg = &b->cfg;
    int32_t C = cfg->num_classes, win = cfg->window, k = cfg->top_k, L1 = cfg->lookahead + 1;
    put_bytes(w, MAGIC, 8);
    put_i32(w, RPP_STATE_VERSION);
    put_i32(w, 0);
    put_i32(w, C);
    put_i32(w, win);
    put_i32(w, cfg->lookahead);
    put_f32(w, cfg->threshold);
    put_f32(w, cfg->close_threshold);
    put_i32(w, k);
    put_i32(w, cfg->min_length);
    put_i64(w, cfg->max_gap);
    put_i32(w, b->capacity);
    put_i32(w, b->num_tracks);
    for (int32_t slot = 0; slot < b->capacity; slot++) {
        const rpp_track *t = b->slots[slot];
        int64_t wn;
        if (t == NULL) continue;
        wn = t->count < win ? t->count : win;
        put_i32(w, slot);
        put_i64(w, t->track_id);
        put_i64(w, t->count);
        put_i64(w, t->done);
        put_i64(w, t->last_frame);
        put_i64(w, t->prev_frame);
        for (int32_t j = 0; j < L1; j++) put_i64(w, t->frames[j]);
        for (int32_t c = 0; c < C; c++) {
            for (int64_t s = t->count - wn; s < t->count; s++)
                put_f32(w, t->ring[(size_t)(s % win) * b->Cp + c]);
            put_u8(w, t->seg_open[c]);
            put_u8(w, t->seg_started[c]);
            put_i32(w, t->seg_num[c]);
            put_i64(w, t->seg_first[c]);
            put_i64(w, t->seg_last[c]);
            put_i32(w, t->heap_n[c]);
            for (int32_t j = 0; j < t->heap_n[c]; j++) put_f32(w, t->heap[(size_t)c * k + j]);
        }
    }
}

rpp_status rpp_bank_state_size(const rpp_bank *b, size_t *size) {
    writer w = {NULL, 0};
    if (b == NULL || size == NULL) return RPP_ERR_NULL;
    write_state(b, &w);
    *size = w.n + 4;
    return RPP_OK;
}

rpp_status rpp_bank_save_state(const rpp_bank *b, void *buf, size_t size, size_t *written) {
    size_t need;
    writer w;
    rpp_status st;
    if (b == NULL || buf == NULL || written == NULL) return RPP_ERR_NULL;
    *written = 0;
    if ((st = rpp_bank_state_size(b, &need)) != RPP_OK) return st;
    if (size < need) return RPP_ERR_ARG;
    w.p = (unsigned char *)buf;
    w.n = 0;
    write_state(b, &w);
    put_u64(&w, fnv1a(w.p, w.n), 4);
    *written = w.n;
    return RPP_OK;
}

/* ---------------------------------------------------------------- reader */

typedef struct reader {
    const unsigned char *p;
    size_t n, pos;
    int bad;
} reader;

static uint64_t get_u64(reader *r, int nbytes) {
    uint64_t v = 0;
    if (r->bad || r->n - r->pos < (size_t)nbytes) {
        r->bad = 1;
        return 0;
    }
    for (int i = 0; i < nbytes; i++) v |= (uint64_t)r->p[r->pos + i] << (8 * i);
    r->pos += (size_t)nbytes;
    return v;
}

static uint8_t get_u8(reader *r) { return (uint8_t)get_u64(r, 1); }
static int32_t get_i32(reader *r) { return (int32_t)(uint32_t)get_u64(r, 4); }
static int64_t get_i64(reader *r) { return (int64_t)get_u64(r, 8); }
static float get_f32(reader *r) {
    uint32_t u = (uint32_t)get_u64(r, 4);
    float v;
    memcpy(&v, &u, 4);
    return v;
}

/* Reads one track record into a new track; 0 on any inconsistency. */
static int read_track(reader *r, const rpp_config *cfg, rpp_track **out, int32_t *slot) {
    int32_t C = cfg->num_classes, win = cfg->window, k = cfg->top_k, L = cfg->lookahead;
    int32_t L1 = L + 1;
    int64_t track_id, count, done, wn;
    rpp_track *t;
    *out = NULL;
    *slot = get_i32(r);
    track_id = get_i64(r);
    count = get_i64(r);
    done = get_i64(r);
    if (r->bad || count < 0 || done != (count > L ? count - L : 0)) return 0;
    t = rpp_track_alloc(cfg, track_id);
    if (t == NULL) return -1;
    *out = t;
    t->count = count;
    t->done = done;
    t->last_frame = get_i64(r);
    t->prev_frame = get_i64(r);
    for (int32_t j = 0; j < L1; j++) t->frames[j] = get_i64(r);
    wn = count < win ? count : win;
    for (int32_t c = 0; c < C; c++) {
        int32_t num, hn, Cp = rpp_padded_classes(C);
        for (int64_t s = count - wn; s < count; s++) {
            float x = get_f32(r);
            if (!isfinite(x)) return 0;
            t->ring[(size_t)(s % win) * Cp + c] = x;
            rpp_window_insert(t->sorted, Cp, (int32_t)(s - (count - wn)), c, x);
        }
        t->seg_open[c] = get_u8(r);
        t->seg_started[c] = get_u8(r);
        t->seg_num[c] = num = get_i32(r);
        t->seg_first[c] = get_i64(r);
        t->seg_last[c] = get_i64(r);
        t->heap_n[c] = hn = get_i32(r);
        if (r->bad || t->seg_open[c] > 1 || t->seg_started[c] > t->seg_open[c] || num < 0 ||
            (num > 0) != (t->seg_open[c] == 1) || hn < 0 || hn > k || hn > num ||
            (hn < num && hn < k) || (t->seg_started[c] != (num >= cfg->min_length && num > 0)))
            return 0;
        for (int32_t j = 0; j < hn; j++) {
            float x = get_f32(r);
            /* Min-heap order: every child >= its parent. */
            if (!isfinite(x) || (j > 0 && x < t->heap[(size_t)c * k + (j - 1) / 2])) return 0;
            t->heap[(size_t)c * k + j] = x;
        }
    }
    return !r->bad;
}

rpp_status rpp_bank_load_state(const void *buf, size_t size, rpp_bank **out) {
    reader r;
    rpp_config cfg;
    rpp_bank *b = NULL;
    rpp_status st;
    int32_t num_tracks, prev_slot = -1;
    if (buf == NULL || out == NULL) return RPP_ERR_NULL;
    *out = NULL;
    r.p = (const unsigned char *)buf;
    r.n = size;
    r.pos = 0;
    r.bad = 0;
    if (size < 12 || memcmp(r.p, MAGIC, 8) != 0) return RPP_ERR_STATE;
    {
        reader t = {r.p + size - 4, 4, 0, 0};
        if ((uint32_t)get_u64(&t, 4) != fnv1a(r.p, size - 4)) return RPP_ERR_STATE;
    }
    r.n = size - 4;
    r.pos = 8;
    if (get_i32(&r) != RPP_STATE_VERSION || get_i32(&r) != 0) return RPP_ERR_STATE;
    cfg.num_classes = get_i32(&r);
    cfg.window = get_i32(&r);
    cfg.lookahead = get_i32(&r);
    cfg.threshold = get_f32(&r);
    cfg.close_threshold = get_f32(&r);
    cfg.top_k = get_i32(&r);
    cfg.min_length = get_i32(&r);
    cfg.max_gap = get_i64(&r);
    cfg.capacity = get_i32(&r);
    num_tracks = get_i32(&r);
    if (r.bad || rpp_config_check(&cfg) != RPP_OK || num_tracks < 0 ||
        num_tracks > cfg.capacity)
        return RPP_ERR_STATE;
    if ((st = rpp_bank_new(&cfg, &b)) != RPP_OK) return st;
    for (int32_t i = 0; i < num_tracks; i++) {
        rpp_track *t;
        int32_t slot;
        int ok = read_track(&r, &cfg, &t, &slot);
        if (ok > 0 && (slot <= prev_slot || slot >= b->capacity)) ok = 0;
        for (int32_t j = 0; ok > 0 && j < slot; j++)
            if (b->slots[j] != NULL && b->slots[j]->track_id == t->track_id) ok = 0;
        if (ok <= 0) {
            free(t);
            rpp_bank_free(b);
            return ok < 0 ? RPP_ERR_NOMEM : RPP_ERR_STATE;
        }
        b->slots[slot] = t;
        b->num_tracks++;
        prev_slot = slot;
    }
    if (r.pos != r.n) {
        rpp_bank_free(b);
        return RPP_ERR_STATE;
    }
    *out = b;
    return RPP_OK;
}
