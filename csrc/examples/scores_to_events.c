/*
 * scores_to_events: per-frame track scores (CSV) -> segment events (CSV), with the
 * reclnet post-processing core linked in. A small, complete embedding example.
 *
 * Input lines:  track_id,frame,score_0,...,score_{C-1}   (C from the first line; a
 *               first line starting with a letter is a header and is skipped). Each
 *               track's frames must increase; tracks open at their first line and are
 *               closed at end of input (in order of first appearance).
 * Output lines: kind,track_id,label,first_frame,last_frame,num_samples,score
 *               (kind START or END; score printed with 17 significant digits).
 *
 * usage: scores_to_events [--window W] [--lookahead L] [--threshold T]
 *                         [--close-threshold T] [--top-k K] [--min-length N]
 *                         [--max-gap G] [FILE]        (stdin without FILE)
 * exit status: 0 ok, 1 bad usage, 2 bad input (message names the line).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reclnet/postproc.h"

#define MAX_LINE (1 << 20)

typedef struct app {
    rpp_bank *bank;
    rpp_event *events;
    int64_t cap_events;
    int64_t *ids;   /* open track ids in order of first appearance */
    int32_t *slots; /* their slots */
    int32_t n_tracks, cap_tracks;
} app;

static void print_events(const rpp_event *ev, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        printf("%s,%lld,%d,%lld,%lld,%d,%.17g\n", ev[i].kind == RPP_EVENT_START ? "START" : "END",
               (long long)ev[i].track_id, (int)ev[i].label, (long long)ev[i].first_frame,
               (long long)ev[i].last_frame, (int)ev[i].num_samples, ev[i].score);
}

/* Grows the event array to at least need entries. */
static int reserve_events(app *a, int64_t need) {
    rpp_event *p;
    if (need <= a->cap_events) return 1;
    p = (rpp_event *)realloc(a->events, (size_t)need * sizeof(rpp_event));
    if (p == NULL) return 0;
    a->events = p;
    a->cap_events = need;
    return 1;
}

/* Slot of track id, opening it when new; -1 on failure. */
static int32_t slot_of(app *a, int64_t id) {
    int32_t slot;
    for (int32_t i = 0; i < a->n_tracks; i++)
        if (a->ids[i] == id) return a->slots[i];
    if (a->n_tracks == a->cap_tracks) {
        int32_t cap = a->cap_tracks ? 2 * a->cap_tracks : 16;
        int64_t *ids = (int64_t *)realloc(a->ids, (size_t)cap * sizeof(int64_t));
        int32_t *slots;
        if (ids == NULL) return -1;
        a->ids = ids;
        slots = (int32_t *)realloc(a->slots, (size_t)cap * sizeof(int32_t));
        if (slots == NULL) return -1;
        a->slots = slots;
        a->cap_tracks = cap;
    }
    if (rpp_bank_open_track(a->bank, id, &slot) != RPP_OK) return -1;
    a->ids[a->n_tracks] = id;
    a->slots[a->n_tracks++] = slot;
    return slot;
}

/* Parses up to max comma-separated numbers of line into v; returns the count or -1. */
static int parse_line(char *line, double *v, int max) {
    int n = 0;
    char *p = line, *end;
    while (*p != '\0' && *p != '\n' && *p != '\r') {
        if (n == max) return -1;
        errno = 0;
        v[n++] = strtod(p, &end);
        if (end == p || errno == ERANGE) return -1;
        p = end;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == ',') p++;
        else if (*p != '\0' && *p != '\n' && *p != '\r') return -1;
    }
    return n;
}

static int usage(const char *prog) {
    fprintf(stderr,
            "usage: %s [--window W] [--lookahead L] [--threshold T] [--close-threshold T]\n"
            "          [--top-k K] [--min-length N] [--max-gap G] [FILE]\n",
            prog);
    return 1;
}

int main(int argc, char **argv) {
    rpp_config cfg;
    app a;
    FILE *in = stdin;
    char *line = NULL;
    double *vals = NULL;
    float *row = NULL;
    int C = -1, status = 0, have_close = 0;
    long lineno = 0;
    rpp_status st;
    memset(&a, 0, sizeof a);
    rpp_config_init(&cfg, 1);
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strncmp(opt, "--", 2) != 0) {
            if (in != stdin || (in = fopen(opt, "r")) == NULL) {
                fprintf(stderr, "cannot open %s\n", opt);
                return 1;
            }
            continue;
        }
        if (i + 1 >= argc) return usage(argv[0]);
        if (strcmp(opt, "--window") == 0) cfg.window = atoi(argv[++i]);
        else if (strcmp(opt, "--lookahead") == 0) cfg.lookahead = atoi(argv[++i]);
        else if (strcmp(opt, "--threshold") == 0) cfg.threshold = (float)atof(argv[++i]);
        else if (strcmp(opt, "--close-threshold") == 0) {
            cfg.close_threshold = (float)atof(argv[++i]);
            have_close = 1;
        } else if (strcmp(opt, "--top-k") == 0) cfg.top_k = atoi(argv[++i]);
        else if (strcmp(opt, "--min-length") == 0) cfg.min_length = atoi(argv[++i]);
        else if (strcmp(opt, "--max-gap") == 0) cfg.max_gap = atoll(argv[++i]);
        else return usage(argv[0]);
    }
    if (!have_close) cfg.close_threshold = cfg.threshold;
    if ((st = rpp_config_check(&cfg)) != RPP_OK) {
        fprintf(stderr, "configuration: %s\n", rpp_status_string(st));
        if (in != stdin) fclose(in);
        return 1;
    }

    line = (char *)malloc(MAX_LINE);
    vals = (double *)malloc(sizeof(double) * (MAX_LINE / 2));
    if (line == NULL || vals == NULL) {
        fprintf(stderr, "out of memory\n");
        status = 2;
        goto done;
    }
    while (fgets(line, MAX_LINE, in) != NULL) {
        int n;
        int32_t slot;
        int64_t n_ev, need;
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(in)) {
            fprintf(stderr, "line %ld: too long\n", lineno);
            status = 2;
            goto done;
        }
        if (lineno == 1 && isalpha((unsigned char)line[0])) continue; /* header */
        n = parse_line(line, vals, MAX_LINE / 2);
        if (n == 0) continue;
        if (n < 3 || (C >= 0 && n - 2 != C)) {
            fprintf(stderr, "line %ld: expected track_id,frame and %d scores\n", lineno, C);
            status = 2;
            goto done;
        }
        if (C < 0) { /* the first data line fixes C */
            C = n - 2;
            cfg.num_classes = C;
            if ((st = rpp_bank_new(&cfg, &a.bank)) != RPP_OK) {
                fprintf(stderr, "configuration: %s\n", rpp_status_string(st));
                status = 1;
                goto done;
            }
            row = (float *)malloc(sizeof(float) * (size_t)C);
            if (row == NULL) {
                fprintf(stderr, "out of memory\n");
                status = 2;
                goto done;
            }
        }
        for (int c = 0; c < C; c++) row[c] = (float)vals[2 + c];
        if ((slot = slot_of(&a, (int64_t)vals[0])) < 0) {
            fprintf(stderr, "line %ld: cannot open track\n", lineno);
            status = 2;
            goto done;
        }
        rpp_bank_push_bound(a.bank, 1, &need);
        if (!reserve_events(&a, need)) {
            fprintf(stderr, "out of memory\n");
            status = 2;
            goto done;
        }
        st = rpp_bank_push(a.bank, (int64_t)vals[1], 1, &slot, row, C, a.events, a.cap_events,
                           &n_ev);
        if (st != RPP_OK) {
            fprintf(stderr, "line %ld: %s\n", lineno, rpp_status_string(st));
            status = 2;
            goto done;
        }
        print_events(a.events, n_ev);
    }
    for (int32_t i = 0; i < a.n_tracks; i++) {
        int64_t n_ev, need;
        rpp_bank_close_bound(a.bank, a.slots[i], &need);
        if (!reserve_events(&a, need)) {
            fprintf(stderr, "out of memory\n");
            status = 2;
            goto done;
        }
        if ((st = rpp_bank_close_track(a.bank, a.slots[i], a.events, a.cap_events, &n_ev)) !=
            RPP_OK) {
            fprintf(stderr, "close: %s\n", rpp_status_string(st));
            status = 2;
            goto done;
        }
        print_events(a.events, n_ev);
    }
done:
    if (in != stdin) fclose(in);
    rpp_bank_free(a.bank);
    free(a.events);
    free(a.ids);
    free(a.slots);
    free(line);
    free(vals);
    free(row);
    return status;
}
