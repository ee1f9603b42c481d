/*
 * Hostile inputs to the C core, run under ASan + UBSan by `make check`:
 *   1. the snapshot loader against forged buffers: thousands of random edits of valid
 *      snapshots (byte flips, fields set to extremes or off by one, truncations,
 *      swapped or repeated records), the FNV checksum recomputed so that only the
 *      loader's own checks stand between the edit and the streaming code. Each load
 *      must either fail with RPP_ERR_STATE / RPP_ERR_NOMEM or give a bank that saves
 *      back to the same bytes (the loader accepts only states a real bank reaches)
 *      and survives pushes, opens and closes;
 *   2. slot allocation (O(1) amortized open_track) against an obviously correct twin
 *      that scans a plain table, over random opens / closes / resets / reloads, and
 *      100,000 tracks opened at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reclnet/postproc.h"

/* Huge (forged) sizes must come back as RPP_ERR_NOMEM, not abort the sanitizer. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

#include "check.h"

static uint64_t next_u64(uint64_t *s) { /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

static uint64_t below(uint64_t *s, uint64_t n) { return next_u64(s) % n; }

static double unit(uint64_t *s) { return (double)(next_u64(s) >> 11) / 9007199254740992.0; }

/* ------------------------------------------------------------------ snapshot layout */

static uint32_t fnv1a(const unsigned char *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

static void put_le(unsigned char *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void reseal(unsigned char *buf, size_t size) {
    if (size >= 4) put_le(buf + size - 4, fnv1a(buf, size - 4), 4);
}

/* Offsets and widths of every field of a VALID snapshot (walks the documented layout). */
enum { MAX_FIELDS = 8192, MAX_RECORDS = 64 };
typedef struct layout {
    size_t off[MAX_FIELDS];
    int width[MAX_FIELDS];
    int n;
    size_t rec_start[MAX_RECORDS + 1]; /* record i spans rec_start[i] .. rec_start[i+1] */
    int n_rec;
} layout;

static size_t field(layout *l, size_t off, int width) {
    if (l->n < MAX_FIELDS) {
        l->off[l->n] = off;
        l->width[l->n] = width;
        l->n++;
    }
    return off + (size_t)width;
}

static void parse_layout(const unsigned char *buf, size_t size, layout *l) {
    size_t p = 8;
    int32_t C, w, L, k, nt;
    memset(l, 0, sizeof(*l));
    p = field(l, p, 4); /* version */
    p = field(l, p, 4); /* reserved */
    C = (int32_t)get_le(buf + p, 4);
    p = field(l, p, 4);
    w = (int32_t)get_le(buf + p, 4);
    p = field(l, p, 4);
    L = (int32_t)get_le(buf + p, 4);
    p = field(l, p, 4);
    p = field(l, p, 4); /* threshold */
    p = field(l, p, 4); /* close_threshold */
    k = (int32_t)get_le(buf + p, 4);
    p = field(l, p, 4);
    p = field(l, p, 4); /* min_length */
    p = field(l, p, 8); /* max_gap */
    p = field(l, p, 4); /* capacity */
    nt = (int32_t)get_le(buf + p, 4);
    p = field(l, p, 4);
    (void)k;
    for (int32_t i = 0; i < nt && i < MAX_RECORDS; i++) {
        int64_t count, wn;
        l->rec_start[l->n_rec++] = p;
        p = field(l, p, 4); /* slot */
        p = field(l, p, 8); /* track_id */
        count = (int64_t)get_le(buf + p, 8);
        p = field(l, p, 8);
        p = field(l, p, 8); /* done */
        p = field(l, p, 8); /* last_frame */
        p = field(l, p, 8); /* prev_frame */
        for (int32_t j = 0; j <= L; j++) p = field(l, p, 8);
        wn = count < w ? count : w;
        for (int32_t c = 0; c < C; c++) {
            int32_t hn;
            for (int64_t s = 0; s < wn; s++) p = field(l, p, 4);
            p = field(l, p, 1);
            p = field(l, p, 1);
            p = field(l, p, 4); /* num */
            p = field(l, p, 8);
            p = field(l, p, 8);
            hn = (int32_t)get_le(buf + p, 4);
            p = field(l, p, 4);
            for (int32_t j = 0; j < hn; j++) p = field(l, p, 4);
        }
    }
    l->rec_start[l->n_rec] = p;
    CHECK(p + 4 == size);
}

/* ------------------------------------------------------------------ valid snapshots */

/* A bank with tracks in every phase: no samples, filling, full windows, open and
 * started segments, gaps, a closed slot in the middle. */
static unsigned char *make_snapshot(uint64_t *seed, size_t *size) {
    rpp_config cfg;
    rpp_bank *b = NULL;
    int32_t slots[6], C = 1 + (int32_t)below(seed, 3);
    rpp_event ev[4096];
    float x[6 * 3];
    int64_t n;
    unsigned char *buf;
    size_t wr;
    CHECK_ST(rpp_config_init(&cfg, C), RPP_OK);
    cfg.window = 1 + (int32_t)below(seed, 7);
    cfg.lookahead = (int32_t)below(seed, (uint64_t)(cfg.window - 1) / 2 + 1);
    cfg.threshold = 0.5f;
    cfg.close_threshold = below(seed, 2) ? 0.5f : 0.3f;
    cfg.top_k = 1 + (int32_t)below(seed, 4);
    cfg.min_length = 1 + (int32_t)below(seed, 3);
    cfg.max_gap = below(seed, 2) ? -1 : (int64_t)below(seed, 3);
    cfg.capacity = 1 + (int32_t)below(seed, 4);
    CHECK_ST(rpp_bank_new(&cfg, &b), RPP_OK);
    if (b == NULL) return NULL;
    for (int i = 0; i < 6; i++)
        CHECK_ST(rpp_bank_open_track(b, (int64_t)below(seed, 1000) * 7 + i, &slots[i]), RPP_OK);
    for (int64_t f = 0; f < 3 + (int64_t)below(seed, 20); f++) {
        int32_t live[6];
        int m = 0;
        /* track 0 never gets a sample; the others skip frames now and then */
        for (int i = 1; i < 6; i++)
            if (slots[i] >= 0 && (i < 3 || below(seed, 3))) live[m++] = slots[i];
        for (int i = 0; i < m * C; i++) x[i] = (float)unit(seed);
        CHECK_ST(rpp_bank_push(b, 3 * f + (int64_t)below(seed, 3), m, live, x, C, ev, 4096, &n),
                 RPP_OK);
    }
    CHECK_ST(rpp_bank_close_track(b, slots[2], ev, 4096, &n), RPP_OK);
    slots[2] = -1;
    CHECK_ST(rpp_bank_state_size(b, size), RPP_OK);
    buf = (unsigned char *)malloc(*size);
    if (buf != NULL) CHECK_ST(rpp_bank_save_state(b, buf, *size, &wr), RPP_OK);
    rpp_bank_free(b);
    return buf;
}

/* ------------------------------------------------------------------ mutations */

static uint64_t extreme(uint64_t *seed, uint64_t old, int width) {
    static const uint64_t vals[] = {0,
                                    1,
                                    2,
                                    3,
                                    7,
                                    8,
                                    64,
                                    0x7f,
                                    0x80,
                                    0xff,
                                    0x7fffffff,
                                    0x80000000,
                                    0xffffffff,
                                    UINT64_C(0x7fffffffffffffff),
                                    UINT64_C(0x8000000000000000),
                                    UINT64_C(0xffffffffffffffff),
                                    UINT64_C(0x4000000000000000),
                                    0x40000000,
                                    0x10000,
                                    0x7f800000 /* +inf as f32 */,
                                    0x7fc00000 /* NaN as f32 */};
    switch (below(seed, 4)) {
    case 0: return old + 1;
    case 1: return old - 1;
    case 2: return next_u64(seed);
    default: {
        uint64_t v = vals[below(seed, sizeof vals / sizeof vals[0])];
        /* 32-bit extremes sign-extended into 64-bit fields too */
        if (width == 8 && v == 0xffffffff && below(seed, 2)) v = UINT64_C(0xffffffffffffffff);
        return v;
    }
    }
}

/* Applies 1-3 random edits; returns the new size (buf has room for `room` bytes). */
static size_t mutate(uint64_t *seed, unsigned char *buf, size_t size, size_t room,
                     const layout *l, int *resealed) {
    int edits = 1 + (int)below(seed, 3);
    *resealed = 1;
    for (int e = 0; e < edits; e++) {
        uint64_t kind = below(seed, 10);
        if (kind < 5 && l->n > 0) { /* a field set to an extreme / neighbour value */
            int i = (int)below(seed, (uint64_t)l->n);
            size_t off = l->off[i];
            int width = l->width[i];
            if (off + (size_t)width + 4 <= size)
                put_le(buf + off, extreme(seed, get_le(buf + off, width), width), width);
        } else if (kind < 7) { /* byte flips */
            int flips = 1 + (int)below(seed, 4);
            for (int j = 0; j < flips && size > 4; j++)
                buf[below(seed, size - 4)] ^= (unsigned char)(1u << below(seed, 8));
        } else if (kind == 7) { /* truncation (or a longer buffer of junk) */
            size_t n = (size_t)below(seed, size + 1);
            if (below(seed, 4) == 0 && size + 16 <= room) {
                for (size_t j = size; j < size + 16; j++) buf[j] = (unsigned char)next_u64(seed);
                size += 16;
            } else {
                size = n;
            }
            if (below(seed, 2)) *resealed = 0; /* a plain torn write */
        } else if (kind == 8 && l->n_rec >= 2) { /* two records swapped (same length) */
            int a = (int)below(seed, (uint64_t)l->n_rec), b = (int)below(seed, (uint64_t)l->n_rec);
            size_t la = l->rec_start[a + 1] - l->rec_start[a];
            size_t lb = l->rec_start[b + 1] - l->rec_start[b];
            if (a != b && la == lb && l->rec_start[(a > b ? a : b) + 1] + 4 <= size) {
                unsigned char tmp[65536];
                if (la <= sizeof tmp) {
                    memcpy(tmp, buf + l->rec_start[a], la);
                    memcpy(buf + l->rec_start[a], buf + l->rec_start[b], la);
                    memcpy(buf + l->rec_start[b], tmp, la);
                }
            }
        } else if (l->n_rec >= 1) { /* one record repeated in place of the trailer */
            int a = (int)below(seed, (uint64_t)l->n_rec);
            size_t la = l->rec_start[a + 1] - l->rec_start[a];
            if (size >= 4 && size - 4 + la + 4 <= room && l->rec_start[a + 1] <= size - 4) {
                memmove(buf + size - 4, buf + l->rec_start[a], la);
                size += la;
            }
        }
    }
    if (*resealed) reseal(buf, size);
    return size;
}

/* ------------------------------------------------------------------ using a loaded bank */

/* A bank that loaded must save back to exactly `buf` and stay usable. */
static void exercise(rpp_bank *b, const unsigned char *buf, size_t size, uint64_t *seed) {
    rpp_config cfg;
    int32_t nt, cap, slot;
    size_t size2 = 0, wr;
    unsigned char *again;
    rpp_event *ev;
    float *x;
    int64_t n, bound, frames[4];
    enum { MAX_EVENTS = 1 << 16 };
    CHECK_ST(rpp_bank_get_config(b, &cfg), RPP_OK);
    CHECK_ST(rpp_bank_counts(b, &nt, &cap), RPP_OK);
    CHECK(nt >= 0 && nt <= cap);
    CHECK_ST(rpp_bank_state_size(b, &size2), RPP_OK);
    CHECK(size2 == size);
    again = (unsigned char *)malloc(size2);
    if (again != NULL) {
        CHECK_ST(rpp_bank_save_state(b, again, size2, &wr), RPP_OK);
        CHECK(wr == size && memcmp(again, buf, size) == 0);
        free(again);
    }
    if (cfg.num_classes > 64) return; /* a valid but huge config: nothing cheap to push */
    ev = (rpp_event *)malloc(MAX_EVENTS * sizeof(rpp_event));
    x = (float *)malloc(4 * (size_t)cfg.num_classes * sizeof(float));
    if (ev == NULL || x == NULL) {
        free(ev);
        free(x);
        return;
    }
    for (int i = 0; i < 4 * cfg.num_classes; i++) x[i] = (float)unit(seed);
    /* a few samples for every open track, each after its own last frame */
    for (int32_t s = 0; s < cap && s < 4096; s++) {
        int64_t id, count, last;
        if (rpp_bank_track_info(b, s, &id, &count, &last) != RPP_OK) continue;
        if (count > 0 && last > INT64_MAX - 64) continue;
        for (int j = 0; j < 4; j++) frames[j] = (count > 0 ? last : -1) + 1 + 3 * j;
        CHECK_ST(rpp_bank_push_track_bound(b, 4, &bound), RPP_OK);
        if (bound <= MAX_EVENTS)
            CHECK_ST(rpp_bank_push_track(b, s, 4, frames, x, cfg.num_classes, ev, MAX_EVENTS, &n),
                     RPP_OK);
    }
    /* a new track gets a free slot and a sample */
    for (int64_t id = INT64_MIN;; id++) {
        rpp_status st = rpp_bank_open_track(b, id, &slot);
        if (st == RPP_ERR_NOMEM) break; /* a forged capacity may need a huge table */
        if (st == RPP_ERR_DUPLICATE_TRACK) continue;
        CHECK_ST(st, RPP_OK);
        CHECK_ST(rpp_bank_track_info(b, slot, NULL, &n, NULL), RPP_OK);
        CHECK(n == 0);
        CHECK_ST(rpp_bank_push(b, 0, 1, &slot, x, cfg.num_classes, ev, MAX_EVENTS, &n), RPP_OK);
        break;
    }
    /* everything closes; the table is empty afterwards */
    CHECK_ST(rpp_bank_counts(b, &nt, &cap), RPP_OK);
    for (int32_t s = 0; s < cap && nt > 0; s++) {
        if (rpp_bank_close_bound(b, s, &bound) != RPP_OK) continue;
        if (bound > MAX_EVENTS) break;
        CHECK_ST(rpp_bank_close_track(b, s, ev, MAX_EVENTS, &n), RPP_OK);
        CHECK(n <= bound);
        nt--;
    }
    CHECK(nt == 0);
    free(ev);
    free(x);
}

static void test_forged_snapshots(void) {
    enum { CASES = 20000, ROOM = 1 << 16 };
    uint64_t seed = 12345;
    unsigned char *work = (unsigned char *)malloc(ROOM);
    static layout lay;
    int loaded = 0, refused = 0;
    if (work == NULL) return;
    for (int base = 0; base < 40; base++) {
        size_t size;
        unsigned char *valid = make_snapshot(&seed, &size);
        if (valid == NULL || size + 4096 > ROOM) {
            free(valid);
            continue;
        }
        parse_layout(valid, size, &lay);
        /* the untouched snapshot loads */
        {
            rpp_bank *b = NULL;
            CHECK_ST(rpp_bank_load_state(valid, size, &b), RPP_OK);
            if (b != NULL) exercise(b, valid, size, &seed);
            rpp_bank_free(b);
        }
        for (int c = 0; c < CASES / 40; c++) {
            rpp_bank *b = NULL;
            int resealed;
            size_t n;
            rpp_status st;
            memcpy(work, valid, size);
            n = mutate(&seed, work, size, ROOM, &lay, &resealed);
            st = rpp_bank_load_state(work, n, &b);
            if (st == RPP_OK) {
                CHECK(b != NULL);
                if (b != NULL) exercise(b, work, n, &seed);
                rpp_bank_free(b);
                loaded++;
            } else {
                CHECK(b == NULL && (st == RPP_ERR_STATE || st == RPP_ERR_NOMEM));
                refused++;
            }
        }
        free(valid);
    }
    free(work);
    CHECK(loaded + refused >= CASES / 2);
    /* the edits hit both sides: some keep a consistent state, most are refused */
    CHECK(loaded > 0 && refused > loaded);
    printf("forged snapshots: %d cases, %d refused, %d loaded and used\n", loaded + refused,
           refused, loaded);
}

/* ------------------------------------------------------------------ slot allocation */

/* Twin: a plain table scanned in full, capacity doubling when full. */
typedef struct twin {
    int64_t *ids; /* [cap] */
    unsigned char *used;
    int32_t cap, n;
} twin;

static int32_t twin_open(twin *t, int64_t id, int *dup) {
    int32_t free_slot = -1;
    *dup = 0;
    for (int32_t i = 0; i < t->cap; i++) {
        if (!t->used[i]) {
            if (free_slot < 0) free_slot = i;
        } else if (t->ids[i] == id) {
            *dup = 1;
            return -1;
        }
    }
    if (free_slot < 0) {
        int32_t cap = t->cap;
        t->cap *= 2;
        t->ids = (int64_t *)realloc(t->ids, (size_t)t->cap * sizeof(int64_t));
        t->used = (unsigned char *)realloc(t->used, (size_t)t->cap);
        if (t->ids == NULL || t->used == NULL) exit(2);
        memset(t->used + cap, 0, (size_t)(t->cap - cap));
        free_slot = cap;
    }
    t->used[free_slot] = 1;
    t->ids[free_slot] = id;
    t->n++;
    return free_slot;
}

static void test_slots_against_twin(void) {
    rpp_config cfg;
    rpp_bank *b = NULL;
    uint64_t seed = 4242;
    twin t = {NULL, NULL, 0, 0};
    rpp_event ev[64];
    CHECK_ST(rpp_config_init(&cfg, 1), RPP_OK);
    cfg.window = 3;
    cfg.top_k = 2;
    cfg.capacity = 3;
    CHECK_ST(rpp_bank_new(&cfg, &b), RPP_OK);
    t.cap = 3;
    t.ids = (int64_t *)calloc(3, sizeof(int64_t));
    t.used = (unsigned char *)calloc(3, 1);
    if (b == NULL || t.ids == NULL || t.used == NULL) return;
    for (int op = 0; op < 60000; op++) {
        uint64_t r = below(&seed, 100);
        int32_t nt, cap;
        if (r < 55) { /* open: small id range, so duplicates happen */
            int dup;
            int64_t id = (int64_t)below(&seed, 600) - 300;
            int32_t want = twin_open(&t, id, &dup), got = -1;
            CHECK_ST(rpp_bank_open_track(b, id, &got),
                     dup ? RPP_ERR_DUPLICATE_TRACK : RPP_OK);
            if (!dup) CHECK(got == want);
        } else if (r < 98) { /* close a random slot (often a free one) */
            int32_t s = (int32_t)below(&seed, (uint64_t)t.cap + 2) - 1;
            int64_t n;
            int open = s >= 0 && s < t.cap && t.used[s];
            CHECK_ST(rpp_bank_close_track(b, s, ev, 64, &n), open ? RPP_OK : RPP_ERR_SLOT);
            if (open) {
                t.used[s] = 0;
                t.n--;
            }
        } else if (r < 99) { /* snapshot round trip: the reloaded bank carries on */
            size_t size, wr;
            unsigned char *buf;
            rpp_bank *c = NULL;
            CHECK_ST(rpp_bank_state_size(b, &size), RPP_OK);
            buf = (unsigned char *)malloc(size);
            if (buf == NULL) break;
            CHECK_ST(rpp_bank_save_state(b, buf, size, &wr), RPP_OK);
            CHECK_ST(rpp_bank_load_state(buf, size, &c), RPP_OK);
            free(buf);
            if (c == NULL) break;
            rpp_bank_free(b);
            b = c;
        } else if (below(&seed, 20) == 0) {
            CHECK_ST(rpp_bank_reset(b), RPP_OK);
            memset(t.used, 0, (size_t)t.cap);
            t.n = 0;
        }
        CHECK_ST(rpp_bank_counts(b, &nt, &cap), RPP_OK);
        CHECK(nt == t.n && cap == t.cap);
    }
    for (int32_t s = 0; s < t.cap; s++) {
        int64_t id;
        CHECK_ST(rpp_bank_track_info(b, s, &id, NULL, NULL), t.used[s] ? RPP_OK : RPP_ERR_SLOT);
        if (t.used[s]) CHECK(id == t.ids[s]);
    }
    free(t.ids);
    free(t.used);
    rpp_bank_free(b);
}

/* 100,000 tracks opened back to back (quadratic opens would take minutes here), then
 * every other one closed and reopened: lowest slots first, ids still unique. */
static void test_many_tracks(void) {
    enum { N = 100000 };
    rpp_config cfg;
    rpp_bank *b = NULL;
    rpp_event ev[8];
    int32_t slot, nt, cap;
    int64_t n, id;
    CHECK_ST(rpp_config_init(&cfg, 1), RPP_OK);
    cfg.window = 1;
    cfg.top_k = 1;
    cfg.capacity = 1;
    CHECK_ST(rpp_bank_new(&cfg, &b), RPP_OK);
    if (b == NULL) return;
    for (int32_t i = 0; i < N; i++) {
        CHECK_ST(rpp_bank_open_track(b, (int64_t)i * 1000003, &slot), RPP_OK);
        if (slot != i) {
            CHECK(slot == i);
            break;
        }
    }
    CHECK_ST(rpp_bank_counts(b, &nt, &cap), RPP_OK);
    CHECK(nt == N && cap == 131072);
    CHECK_ST(rpp_bank_open_track(b, (int64_t)777 * 1000003, &slot), RPP_ERR_DUPLICATE_TRACK);
    for (int32_t i = 0; i < N; i += 2) CHECK_ST(rpp_bank_close_track(b, i, ev, 8, &n), RPP_OK);
    for (int32_t i = 0; i < N; i += 2) {
        CHECK_ST(rpp_bank_open_track(b, -1 - (int64_t)i, &slot), RPP_OK);
        CHECK(slot == i);
    }
    CHECK_ST(rpp_bank_track_info(b, 4, &id, NULL, NULL), RPP_OK);
    CHECK(id == -5);
    CHECK_ST(rpp_bank_track_info(b, 5, &id, NULL, NULL), RPP_OK);
    CHECK(id == 5 * 1000003);
    CHECK_ST(rpp_bank_open_track(b, 99, &slot), RPP_OK);
    CHECK(slot == N);
    rpp_bank_free(b);
}

int main(int argc, char **argv) {
    const char *only = argc > 1 ? argv[1] : "";
    if (!*only || !strcmp(only, "twin")) test_slots_against_twin();
    if (!*only || !strcmp(only, "many")) test_many_tracks();
    if (!*only || !strcmp(only, "fuzz")) test_forged_snapshots();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("all hostile-input C tests passed\n");
    return 0;
}
