/*
 * The C tests' assertions: CHECK(cond) and CHECK_ST(call, status) count failures in the
 * test file's own `failures` counter and go on, so one run reports every broken case.
 */
#ifndef RECLNET_TESTS_CHECK_H
#define RECLNET_TESTS_CHECK_H

#include <stdio.h>

#include "reclnet/postproc.h"

static int failures = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                              \
        }                                                                            \
    } while (0)

#define CHECK_ST(expr, want)                                                              \
    do {                                                                                  \
        int st_ = (int)(expr);                                                            \
        if (st_ != (int)(want)) {                                                         \
            fprintf(stderr, "%s:%d: %s returned %d (%s), want %d\n", __FILE__, __LINE__, \
                    #expr, st_, rpp_status_string(st_), (int)(want));                     \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)

#endif
