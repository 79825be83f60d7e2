/* kv_rows (internal): the one-query softmax steps of the mixed cache's
 * decode path, as one table chosen once per cache: AVX-512 (kv_mixed_blk.c's
 * row helpers), AVX2 (kv_rows.c) or portable C (kv_rows.c: expf and a double
 * sum, the reference the others are tested against).
 *
 * max_row: the largest x[t]; -inf when n == 0 or every entry is masked.
 * exp_sum: x[t] = e^(x[t] - m) for an m no smaller than any x[t], returns
 *   the sum (0 when n == 0); masked (-inf) entries become exactly 0. Apart,
 *   so the decode walk can take a row a page at a time with a running
 *   maximum (kv_mixed_attend.c); kvw_exp_row is the two in one.
 * scale_row: x[t] *= a. */
#ifndef PIVOT_KV_ROWS_H
#define PIVOT_KV_ROWS_H

#include <stdint.h>

typedef struct {
    float (*max_row)(const float *x, int n);
    float (*exp_sum)(float *x, int n, float m);
    void (*scale_row)(float *x, int n, float a);
    const char *name; /* "avx512", "avx2", "scalar" */
} kvw_rows;

/* x[t] = e^(x[t] - max x), returns 1 / sum: a row of n >= 1 with at least
 * one visible entry. */
static inline float kvw_exp_row(const kvw_rows *r, float *x, int n) {
    return 1.0f / r->exp_sum(x, n, r->max_row(x, n));
}

/* The fastest table this CPU runs (force_scalar: the portable one). */
void kvw_rows_for(int force_scalar, kvw_rows *r);

#endif
