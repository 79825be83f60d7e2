/* kv_rows (internal): the one-query softmax steps of the mixed cache's
 * decode path, as one table chosen once per cache: AVX-512 (kv_mixed_blk.c's
 * row helpers), AVX2 (kv_rows.c) or portable C (kv_rows.c: expf and a double
 * sum, the reference the others are tested against).
 *
 * exp_row: x[t] = e^(x[t] - max x), returns 1 / sum; masked (-inf) entries
 *   become exactly 0; a row of n >= 1 with at least one visible entry.
 * scale_row: x[t] *= a. */
#ifndef PIVOT_KV_ROWS_H
#define PIVOT_KV_ROWS_H

#include <stdint.h>

typedef struct {
    float (*exp_row)(float *x, int n);
    void (*scale_row)(float *x, int n, float a);
    const char *name; /* "avx512", "avx2", "scalar" */
} kvw_rows;

/* The fastest table this CPU runs (force_scalar: the portable one). */
void kvw_rows_for(int force_scalar, kvw_rows *r);

#endif
