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
    for (int32_t slot = 0; slot < b->alloc; slot++) {
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

/*
 * The loader trusts nothing: the checksum only catches accidents, a forged buffer can
 * carry a valid one. Every count, index and size is checked against the buffer and
 * against what was allocated before it is used, and the restored bank must satisfy
 * every invariant the streaming code relies on (the same state a real bank reaches),
 * so that pushes and closes after a load are as safe as on a fresh bank.
 */

/* Samples of one track: far beyond any stream, far from int64 overflow. */
#define RPP_MAX_COUNT (INT64_C(1) << 62)

static size_t remaining(const reader *r) { return r->bad ? 0 : r->n - r->pos; }

/* Reads one track record into a new track (*out); RPP_ERR_STATE on any inconsistency,
 * RPP_ERR_NOMEM when the track cannot be allocated. */
static rpp_status read_track(reader *r, const rpp_config *cfg, int32_t capacity, int32_t prev_slot,
                             rpp_track **out, int32_t *slot) {
    int32_t C = cfg->num_classes, win = cfg->window, k = cfg->top_k, L = cfg->lookahead;
    int32_t L1 = L + 1, Cp = rpp_padded_classes(C);
    int64_t track_id, count, done, wn, first_sample;
    size_t fixed, per_class, rest;
    rpp_track *t;
    *out = NULL;
    *slot = get_i32(r);
    track_id = get_i64(r);
    count = get_i64(r);
    done = get_i64(r);
    if (r->bad || *slot <= prev_slot || *slot >= capacity || count < 0 || count > RPP_MAX_COUNT ||
        done != (count > L ? count - L : 0))
        return RPP_ERR_STATE;
    wn = count < win ? count : win;
    /* The rest of the record has a size known from the header: check that the buffer
     * holds it before allocating anything (heaps add 4 * heap_size bytes more). */
    fixed = 16 + 8 * (size_t)L1;
    per_class = 26 + 4 * (size_t)wn;
    rest = remaining(r);
    if (rest < fixed || (rest - fixed) / per_class < (size_t)C) return RPP_ERR_STATE;
    t = rpp_track_alloc(cfg, track_id);
    if (t == NULL) return RPP_ERR_NOMEM;
    *out = t;
    t->count = count;
    t->done = done;
    t->last_frame = get_i64(r);
    t->prev_frame = get_i64(r);
    for (int32_t j = 0; j < L1; j++) t->frames[j] = get_i64(r);
    /* Frames of the samples still in the ring strictly increase; never-written ring
     * entries, and the frames of a track without samples, are 0 as in a real bank. */
    first_sample = count > L1 ? count - L1 : 0;
    for (int64_t s = 0; s < L1; s++) {
        int64_t f = t->frames[s];
        if (s >= count && f != 0) return RPP_ERR_STATE;
    }
    for (int64_t s = first_sample + 1; s < count; s++)
        if (t->frames[s % L1] <= t->frames[(s - 1) % L1]) return RPP_ERR_STATE;
    if (count > 0 ? t->last_frame != t->frames[(count - 1) % L1] : t->last_frame != 0)
        return RPP_ERR_STATE;
    /* done - 1 >= count - L1: the frame of sample done-1 is still in the ring. */
    if (done > 0 ? t->prev_frame != t->frames[(done - 1) % L1] : t->prev_frame != 0)
        return RPP_ERR_STATE;
    for (int32_t c = 0; c < C; c++) {
        int32_t num, hn;
        uint8_t open, started;
        int64_t first, last;
        for (int64_t s = count - wn; s < count; s++) {
            float x = get_f32(r);
            if (r->bad || !isfinite(x)) return RPP_ERR_STATE;
            t->ring[(size_t)(s % win) * (size_t)Cp + (size_t)c] = x;
            rpp_window_insert(t->sorted, Cp, (int32_t)(s - (count - wn)), c, x);
        }
        open = get_u8(r);
        started = get_u8(r);
        num = get_i32(r);
        first = get_i64(r);
        last = get_i64(r);
        hn = get_i32(r);
        if (r->bad || open > 1 || started > open) return RPP_ERR_STATE;
        if (open) {
            /* An open segment holds samples processed so far; its last one is done-1. */
            if (num < 1 || num > done || last != t->prev_frame || first > last ||
                (num == 1) != (first == last))
                return RPP_ERR_STATE;
        } else if (num != 0 || first != 0 || last != 0) {
            return RPP_ERR_STATE;
        }
        if (hn != (num < k ? num : k) || started != (num > 0 && num >= cfg->min_length))
            return RPP_ERR_STATE;
        if (remaining(r) / 4 < (size_t)hn) return RPP_ERR_STATE;
        t->seg_open[c] = open;
        t->seg_started[c] = started;
        t->seg_num[c] = num;
        t->seg_first[c] = first;
        t->seg_last[c] = last;
        t->heap_n[c] = hn;
        for (int32_t j = 0; j < hn; j++) {
            float x = get_f32(r);
            /* Min-heap order: every child >= its parent. */
            if (!isfinite(x) || (j > 0 && x < t->heap[(size_t)c * (size_t)k + (size_t)(j - 1) / 2]))
                return RPP_ERR_STATE;
            t->heap[(size_t)c * (size_t)k + (size_t)j] = x;
        }
    }
    return r->bad ? RPP_ERR_STATE : RPP_OK;
}

/* Smallest power of two >= n (n >= 1), at most cap. */
static int32_t table_size(int32_t n, int32_t cap) {
    int64_t a = 64;
    while (a < n) a *= 2;
    return a < cap ? (int32_t)a : cap;
}

rpp_status rpp_bank_load_state(const void *buf, size_t size, rpp_bank **out) {
    reader r;
    rpp_config cfg;
    rpp_bank *b = NULL;
    rpp_status st = RPP_OK;
    int32_t num_tracks, n_read = 0, prev_slot = -1;
    size_t min_record;
    rpp_track **tracks = NULL;
    int32_t *slots = NULL;
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
    /* Every record holds at least its fixed fields and 26 bytes per class: the buffer
     * bounds the number of tracks before anything is allocated for them. */
    min_record = 44 + 8 * ((size_t)cfg.lookahead + 1);
    if (num_tracks > 0 &&
        remaining(&r) / (min_record + 26 * (size_t)cfg.num_classes) < (size_t)num_tracks)
        return RPP_ERR_STATE;
    /* Pass 1: parse and check the records; the slot table is sized afterwards from the
     * slots actually used (its size is proportional to them, not to the header). */
    if (num_tracks > 0) {
        tracks = (rpp_track **)calloc((size_t)num_tracks, sizeof(rpp_track *));
        slots = (int32_t *)calloc((size_t)num_tracks, sizeof(int32_t));
        if (tracks == NULL || slots == NULL) st = RPP_ERR_NOMEM;
    }
    while (st == RPP_OK && n_read < num_tracks) {
        st = read_track(&r, &cfg, cfg.capacity, prev_slot, &tracks[n_read], &slots[n_read]);
        prev_slot = slots[n_read];
        n_read++; /* tracks[n_read - 1] may be a partly read track: freed below */
    }
    if (st == RPP_OK && r.pos != r.n) st = RPP_ERR_STATE;
    /* Pass 2: build the bank; ids must be distinct. */
    if (st == RPP_OK)
        st = rpp_bank_create(&cfg, table_size(num_tracks > 0 ? slots[num_tracks - 1] + 1 : 1,
                                              cfg.capacity),
                             num_tracks, &b);
    for (int32_t i = 0; st == RPP_OK && i < num_tracks; i++) {
        if ((st = rpp_bank_insert(b, slots[i], tracks[i])) == RPP_ERR_DUPLICATE_TRACK)
            st = RPP_ERR_STATE;
        if (st == RPP_OK) tracks[i] = NULL; /* owned by the bank now */
    }
    for (int32_t i = 0; i < n_read; i++) free(tracks[i]);
    free(tracks);
    free(slots);
    if (st != RPP_OK) {
        rpp_bank_free(b);
        return st;
    }
    *out = b;
    return RPP_OK;
}
