/*
 * C tests of the post-processing core (no Python): the bank against a brute-force
 * reference (sort every window, sort every segment), error statuses leaving state
 * unchanged, atomic NEED_MORE, slot reuse and growth, and snapshot round trips.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reclnet/postproc.h"
#include "../src/internal.h" /* the window kernels, to test each one */

#include "check.h"

/* xorshift64*: deterministic, no global state */
static double rnd(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * UINT64_C(2685821657736338717)) >> 11) / 9007199254740992.0;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------------------ reference */

typedef struct ref_event {
    rpp_event e;
    int64_t at; /* push index that emits it (T = close) */
} ref_event;

static float ref_median(const float *x, int64_t T, int32_t C, int32_t c, int64_t lo, int64_t hi) {
    float buf[512];
    int64_t n = 0;
    for (int64_t s = lo; s <= hi; s++) buf[n++] = x[s * C + c];
    qsort(buf, (size_t)n, sizeof(float), cmp_float);
    (void)T;
    return (n & 1) ? buf[n / 2] : (buf[n / 2 - 1] + buf[n / 2]) * 0.5f;
}

static double ref_topk(const float *x, int32_t C, int32_t c, int64_t first, int64_t last,
                       int32_t k) {
    float buf[4096];
    int64_t n = 0;
    double s = 0;
    for (int64_t u = first; u <= last; u++) buf[n++] = x[u * C + c];
    qsort(buf, (size_t)n, sizeof(float), cmp_float);
    if (k > n) k = (int32_t)n;
    for (int64_t i = n - 1; i >= n - k; i--) s += buf[i]; /* descending, like the core */
    return s / k;
}

/* Events of one whole track in emission order (at, then sample, then class). */
static int64_t ref_events(const rpp_config *cfg, const float *x, const int64_t *frames, int64_t T,
                          ref_event *out) {
    int32_t C = cfg->num_classes, w = cfg->window, L = cfg->lookahead;
    int64_t ne = 0;
    int64_t first[64];
    int open[64];
    for (int32_t c = 0; c < C; c++) open[c] = 0;
    for (int64_t u = 0; u <= T; u++) {
        int64_t at = u + L < T ? u + L : T;
        int gap = u > 0 && u < T && cfg->max_gap >= 0 && frames[u] - frames[u - 1] > cfg->max_gap;
        for (int32_t c = 0; c < C; c++) {
            float m = 0;
            int close = 0;
            if (u < T) {
                int64_t lo = u - (w - 1 - L) > 0 ? u - (w - 1 - L) : 0;
                int64_t hi = u + L < T - 1 ? u + L : T - 1;
                m = ref_median(x, T, C, c, lo, hi);
            }
            if (open[c]) close = u == T || gap || m < cfg->close_threshold;
            if (close) {
                int64_t n = u - first[c];
                if (n >= cfg->min_length) {
                    ref_event *r = &out[ne++];
                    memset(r, 0, sizeof *r);
                    r->at = at;
                    r->e.kind = RPP_EVENT_END;
                    r->e.label = c;
                    r->e.num_samples = (int32_t)n;
                    r->e.first_frame = frames[first[c]];
                    r->e.last_frame = frames[u - 1];
                    r->e.score = ref_topk(x, C, c, first[c], u - 1, cfg->top_k);
                }
                open[c] = 0;
            }
            if (u == T) continue;
            if (!open[c] && m >= cfg->threshold) {
                open[c] = 1;
                first[c] = u;
            }
            if (open[c] && u - first[c] + 1 == cfg->min_length) {
                ref_event *r = &out[ne++];
                memset(r, 0, sizeof *r);
                r->at = at;
                r->e.kind = RPP_EVENT_START;
                r->e.label = c;
                r->e.num_samples = cfg->min_length;
                r->e.first_frame = frames[first[c]];
                r->e.last_frame = frames[u];
                r->e.score = ref_topk(x, C, c, first[c], u, cfg->top_k);
            }
        }
    }
    return ne;
}

static int same_event(const rpp_event *a, const rpp_event *b) {
    return a->kind == b->kind && a->label == b->label && a->num_samples == b->num_samples &&
           a->first_frame == b->first_frame && a->last_frame == b->last_frame &&
           a->score == b->score;
}

/* ------------------------------------------------------------------ tests */

#define MAXT 300
#define MAXC 5
#define MAXEV 20000

static void test_against_reference(void) {
    static const int32_t windows[] = {1, 2, 3, 5, 24, 25, 64};
    static float x[MAXT * MAXC];
    static int64_t frames[MAXT];
    static ref_event ref[MAXEV];
    static rpp_event got[MAXEV];
    static int64_t got_at[MAXEV];
    static rpp_event buf[4 * MAXC * 64];
    static float med[MAXT * MAXC];
    uint64_t seed = 12345;
    int cases = 0;
    for (size_t wi = 0; wi < sizeof windows / sizeof windows[0]; wi++) {
        int32_t w = windows[wi];
        int32_t looks[3] = {0, 1, (w - 1) / 2};
        for (int li = 0; li < 3; li++) {
            int32_t L = looks[li];
            if (L > (w - 1) / 2) continue;
            for (int rep = 0; rep < 4; rep++) {
                rpp_config cfg;
                rpp_bank *b = NULL;
                int32_t slot = -1, C = 1 + (int32_t)(rnd(&seed) * MAXC);
                int64_t T = (int64_t)(rnd(&seed) * MAXT), ne = 0, nr, n;
                if (T > MAXT) T = MAXT;
                CHECK_ST(rpp_config_init(&cfg, C), RPP_OK);
                cfg.window = w;
                cfg.lookahead = L;
                cfg.threshold = 0.5f;
                cfg.close_threshold = rep % 2 ? 0.4f : 0.5f;
                cfg.top_k = 1 + (int32_t)(rnd(&seed) * 6);
                cfg.min_length = 1 + rep;
                cfg.max_gap = rep >= 2 ? 3 : -1;
                cfg.capacity = 1;
                for (int64_t s = 0; s < T; s++) {
                    frames[s] = (s ? frames[s - 1] : -7) + 1 + (rnd(&seed) < 0.1 ? 4 : 0);
                    for (int32_t c = 0; c < C; c++) {
                        /* coarse values make ties frequent */
                        double v = rnd(&seed);
                        x[s * C + c] = (float)(rep == 3 ? floor(v * 4) / 4 : v);
                    }
                }
                CHECK_ST(rpp_bank_new(&cfg, &b), RPP_OK);
                if (b == NULL) return;
                CHECK_ST(rpp_bank_open_track(b, 99, &slot), RPP_OK);
                for (int64_t s = 0; s < T; s++) {
                    CHECK_ST(rpp_bank_push(b, frames[s], 1, &slot, x + s * C, C, buf,
                                           (int64_t)(sizeof buf / sizeof buf[0]), &n),
                             RPP_OK);
                    for (int64_t i = 0; i < n && ne < MAXEV; i++) {
                        got_at[ne] = s;
                        got[ne++] = buf[i];
                    }
                }
                CHECK_ST(rpp_bank_close_track(b, slot, buf, (int64_t)(sizeof buf / sizeof buf[0]),
                                              &n),
                         RPP_OK);
                for (int64_t i = 0; i < n && ne < MAXEV; i++) {
                    got_at[ne] = T;
                    got[ne++] = buf[i];
                }
                nr = ref_events(&cfg, x, frames, T, ref);
                CHECK(nr == ne);
                for (int64_t i = 0; i < ne && i < nr; i++) {
                    if (!same_event(&got[i], &ref[i].e) || got_at[i] != ref[i].at ||
                        got[i].track_id != 99 || got[i].slot != slot) {
                        fprintf(stderr, "w=%d L=%d rep=%d event %ld differs\n", w, L, rep,
                                (long)i);
                        failures++;
                        break;
                    }
                }
                /* whole-track median == reference windows */
                CHECK_ST(rpp_causal_median(x, T, C, w, L, med), RPP_OK);
                for (int64_t u = 0; u < T; u++)
                    for (int32_t c = 0; c < C; c++) {
                        int64_t lo = u - (w - 1 - L) > 0 ? u - (w - 1 - L) : 0;
                        int64_t hi = u + L < T - 1 ? u + L : T - 1;
                        if (med[u * C + c] != ref_median(x, T, C, c, lo, hi)) {
                            fprintf(stderr, "median w=%d L=%d u=%ld c=%d\n", w, L, (long)u, c);
                            failures++;
                            u = T;
                            break;
                        }
                    }
                rpp_bank_free(b);
                cases++;
            }
        }
    }
    printf("reference: %d random tracks compared\n", cases);
}

static void test_errors_leave_state_unchanged(void) {
    rpp_config cfg;
    rpp_bank *b = NULL;
    rpp_event ev[64];
    int64_t n, bound;
    int32_t s0, s1, slots[2];
    float x[6] = {0.9f, 0.1f, 0.2f, 0.8f, 0.3f, 0.3f};
    size_t size1, size2, wr;
    unsigned char *st1, *st2;
    CHECK_ST(rpp_config_init(&cfg, 3), RPP_OK);
    cfg.window = 3;
    cfg.lookahead = 1;
    cfg.threshold = cfg.close_threshold = 0.5f;
    CHECK_ST(rpp_bank_new(&cfg, &b), RPP_OK);
    CHECK_ST(rpp_bank_open_track(b, 10, &s0), RPP_OK);
    CHECK_ST(rpp_bank_open_track(b, 11, &s1), RPP_OK);
    CHECK_ST(rpp_bank_open_track(b, 10, &s1), RPP_ERR_DUPLICATE_TRACK);
    slots[0] = s0;
    slots[1] = s1;
    CHECK_ST(rpp_bank_push(b, 5, 2, slots, x, 3, ev, 64, &n), RPP_OK);
    CHECK_ST(rpp_bank_state_size(b, &size1), RPP_OK);
    st1 = (unsigned char *)malloc(size1);
    st2 = (unsigned char *)malloc(size1 + 16);
    CHECK(st1 != NULL && st2 != NULL);
    if (st1 == NULL || st2 == NULL) return;
    CHECK_ST(rpp_bank_save_state(b, st1, size1, &wr), RPP_OK);
    CHECK(wr == size1);

    /* each failing push must leave the state byte-identical */
    x[4] = NAN;
    CHECK_ST(rpp_bank_push(b, 6, 2, slots, x, 3, ev, 64, &n), RPP_ERR_NONFINITE);
    CHECK(rpp_bank_error_row(b) == 1);
    x[4] = INFINITY;
    CHECK_ST(rpp_bank_push(b, 6, 2, slots, x, 3, ev, 64, &n), RPP_ERR_NONFINITE);
    x[4] = 0.3f;
    CHECK_ST(rpp_bank_push(b, 5, 2, slots, x, 3, ev, 64, &n), RPP_ERR_FRAME_ORDER);
    CHECK_ST(rpp_bank_push(b, 4, 1, slots, x, 3, ev, 64, &n), RPP_ERR_FRAME_ORDER);
    slots[1] = s0;
    CHECK_ST(rpp_bank_push(b, 6, 2, slots, x, 3, ev, 64, &n), RPP_ERR_DUPLICATE_SLOT);
    slots[1] = 7;
    CHECK_ST(rpp_bank_push(b, 6, 2, slots, x, 3, ev, 64, &n), RPP_ERR_SLOT);
    slots[1] = -1;
    CHECK_ST(rpp_bank_push(b, 6, 2, slots, x, 3, ev, 64, &n), RPP_ERR_SLOT);
    slots[1] = s1;
    CHECK_ST(rpp_bank_push(b, 6, 2, slots, x, 2, ev, 64, &n), RPP_ERR_ARG);
    CHECK_ST(rpp_bank_push_bound(b, 2, &bound), RPP_OK);
    CHECK(bound == 6);
    CHECK_ST(rpp_bank_push(b, 6, 2, slots, x, 3, ev, bound - 1, &n), RPP_NEED_MORE);
    CHECK(n == bound);
    CHECK_ST(rpp_bank_close_track(b, 63, ev, 64, &n), RPP_ERR_SLOT);
    CHECK_ST(rpp_bank_close_track(b, s0, ev, 0, &n), RPP_NEED_MORE);
    CHECK(n == 3 * 2);
    CHECK_ST(rpp_bank_state_size(b, &size2), RPP_OK);
    CHECK(size2 == size1);
    CHECK_ST(rpp_bank_save_state(b, st2, size1 + 16, &wr), RPP_OK);
    CHECK(wr == size1 && memcmp(st1, st2, size1) == 0);

    /* the valid push then goes through; the first row opens class 0 */
    CHECK_ST(rpp_bank_push(b, 6, 2, slots, x, 3, ev, bound, &n), RPP_OK);
    CHECK(n == 2 && ev[0].kind == RPP_EVENT_START && ev[0].label == 0 && ev[0].first_frame == 5 &&
          ev[0].track_id == 10 && ev[1].track_id == 11 && ev[1].slot == s1);
    /* a closed slot is reused (lowest free) and unknown afterwards */
    CHECK_ST(rpp_bank_close_track(b, s0, ev, 64, &n), RPP_OK);
    CHECK(n == 1 && ev[0].kind == RPP_EVENT_END && ev[0].last_frame == 6);
    CHECK_ST(rpp_bank_push(b, 7, 1, &s0, x, 3, ev, 64, &n), RPP_ERR_SLOT);
    CHECK_ST(rpp_bank_close_track(b, s0, ev, 64, &n), RPP_ERR_SLOT);
    CHECK_ST(rpp_bank_open_track(b, 10, &s1), RPP_OK);
    CHECK(s1 == s0);
    free(st1);
    free(st2);
    rpp_bank_free(b);
}

static void test_config_and_growth(void) {
    rpp_config cfg;
    rpp_bank *b = NULL;
    int32_t slot, nt, cap;
    CHECK_ST(rpp_config_init(&cfg, 0), RPP_ERR_CONFIG);
    CHECK_ST(rpp_config_init(&cfg, 2), RPP_OK);
    cfg.lookahead = 13;
    CHECK_ST(rpp_bank_new(&cfg, &b), RPP_ERR_CONFIG);
    CHECK(b == NULL);
    cfg.lookahead = 12;
    cfg.close_threshold = 0.2f;
    CHECK_ST(rpp_bank_new(&cfg, &b), RPP_ERR_CONFIG);
    cfg.close_threshold = 0.05f;
    cfg.threshold = NAN;
    CHECK_ST(rpp_bank_new(&cfg, &b), RPP_ERR_CONFIG);
    cfg.threshold = 0.1f;
    cfg.capacity = 2;
    CHECK_ST(rpp_bank_new(&cfg, &b), RPP_OK);
    for (int64_t id = 0; id < 9; id++) {
        CHECK_ST(rpp_bank_open_track(b, id * 3, &slot), RPP_OK);
        CHECK(slot == id);
    }
    CHECK_ST(rpp_bank_counts(b, &nt, &cap), RPP_OK);
    CHECK(nt == 9 && cap == 16);
    CHECK_ST(rpp_bank_reset(b), RPP_OK);
    CHECK_ST(rpp_bank_counts(b, &nt, &cap), RPP_OK);
    CHECK(nt == 0 && cap == 16);
    rpp_bank_free(b);
    CHECK_ST(rpp_bank_new(NULL, &b), RPP_ERR_NULL);
    CHECK(b == NULL);
    rpp_bank_free(NULL);
    CHECK(rpp_get_api()->version == RPP_API_VERSION);
    CHECK(rpp_get_api()->bank_push == rpp_bank_push);
}

/* Snapshot at every push of a multi-track run; the restored bank must continue with
 * exactly the events and states of the original. */
static void test_snapshot_continues_identically(void) {
    rpp_config cfg;
    rpp_bank *a = NULL;
    rpp_event ea[512], eb[512];
    uint64_t seed = 777;
    int32_t slots[4];
    float x[4 * 6];
    CHECK_ST(rpp_config_init(&cfg, 6), RPP_OK);
    cfg.window = 7;
    cfg.lookahead = 2;
    cfg.threshold = 0.55f;
    cfg.close_threshold = 0.45f;
    cfg.top_k = 3;
    cfg.min_length = 2;
    cfg.max_gap = 1;
    cfg.capacity = 2;
    CHECK_ST(rpp_bank_new(&cfg, &a), RPP_OK);
    for (int i = 0; i < 4; i++) CHECK_ST(rpp_bank_open_track(a, 100 + i, &slots[i]), RPP_OK);
    for (int64_t f = 0; f < 60; f++) {
        rpp_bank *b = NULL;
        size_t size, wr;
        unsigned char *buf;
        int64_t na, nb;
        int n = f % 9 == 4 ? 2 : 4; /* some frames miss tracks: gaps */
        for (int i = 0; i < n * 6; i++) x[i] = (float)rnd(&seed);
        CHECK_ST(rpp_bank_state_size(a, &size), RPP_OK);
        buf = (unsigned char *)malloc(size);
        if (buf == NULL) return;
        CHECK_ST(rpp_bank_save_state(a, buf, size, &wr), RPP_OK);
        CHECK_ST(rpp_bank_load_state(buf, size, &b), RPP_OK);
        /* corruption anywhere is detected */
        buf[size / 2] ^= 0x40;
        {
            rpp_bank *c = NULL;
            CHECK_ST(rpp_bank_load_state(buf, size, &c), RPP_ERR_STATE);
            CHECK(c == NULL);
            CHECK_ST(rpp_bank_load_state(buf, size - 1, &c), RPP_ERR_STATE);
        }
        free(buf);
        if (b == NULL) break;
        CHECK_ST(rpp_bank_push(a, f, n, slots, x, 6, ea, 512, &na), RPP_OK);
        CHECK_ST(rpp_bank_push(b, f, n, slots, x, 6, eb, 512, &nb), RPP_OK);
        CHECK(na == nb && memcmp(ea, eb, (size_t)na * sizeof(rpp_event)) == 0);
        if (f == 59) {
            for (int i = 0; i < 4; i++) {
                CHECK_ST(rpp_bank_close_track(a, slots[i], ea, 512, &na), RPP_OK);
                CHECK_ST(rpp_bank_close_track(b, slots[i], eb, 512, &nb), RPP_OK);
                CHECK(na == nb && memcmp(ea, eb, (size_t)na * sizeof(rpp_event)) == 0);
            }
        }
        rpp_bank_free(b);
    }
    rpp_bank_free(a);
}

/* Both window kernels (portable and CPU-specific) against a sort of every column. */
static void test_window_kernels(void) {
    enum { W = 25, CP = 24 };
    static float s1[W * CP], s2[W * CP], ref[W], old[CP], x[CP];
    uint64_t seed = 99;
    const char *name = NULL;
    rpp_replace_fn best = rpp_window_replace_best(&name);
    for (int i = 0; i < W * CP; i++) s1[i] = (float)floor(rnd(&seed) * 8) / 8;
    for (int c = 0; c < CP; c++) { /* sort columns */
        for (int j = 0; j < W; j++) ref[j] = s1[j * CP + c];
        qsort(ref, W, sizeof(float), cmp_float);
        for (int j = 0; j < W; j++) s1[j * CP + c] = s2[j * CP + c] = ref[j];
    }
    for (int it = 0; it < 2000; it++) {
        for (int c = 0; c < CP; c++) {
            old[c] = s1[(int)(rnd(&seed) * W) * CP + c];
            x[c] = (float)(it % 3 ? floor(rnd(&seed) * 8) / 8 : rnd(&seed));
        }
        rpp_window_replace_base(s1, W, CP, old, x);
        best(s2, W, CP, old, x);
        CHECK(memcmp(s1, s2, sizeof s1) == 0);
        for (int c = 0; c < CP && it % 100 == 0; c++) {
            for (int j = 0; j + 1 < W; j++) CHECK(s1[j * CP + c] <= s1[(j + 1) * CP + c]);
        }
    }
    printf("window kernels: base and %s agree\n", name);
}

int main(void) {
    CHECK(sizeof(rpp_event) == 48);
    test_window_kernels();
    test_against_reference();
    test_errors_leave_state_unchanged();
    test_config_and_growth();
    test_snapshot_continues_identically();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("all C tests passed\n");
    return 0;
}
