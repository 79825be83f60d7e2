/* The decode path's softmax steps (cache/kv_rows.h): every table this CPU
 * runs (AVX-512, AVX2, portable) against a float64 reference, on lengths
 * that leave every tail size, rows with masked entries, and peaked rows. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "kv_rows.h"
#include "quant.h"
#include "../test_rand.h"

/* The tables to test: the portable one always, then what the SIMD caps give. */
static int tables(kvw_rows *out) {
    int n = 0;
    kvw_rows_for(1, &out[n++]);
    const int caps[] = {KQ_SIMD_AVX2, KQ_SIMD_AVX512VNNI};
    for (int i = 0; i < 2; i++) {
        if (caps[i] > kq_simd_cpu_level()) continue;
        kq_set_simd_level(caps[i]);
        kvw_rows_for(0, &out[n]);
        int dup = 0;
        for (int j = 0; j < n; j++) dup |= out[j].name == out[n].name;
        n += !dup;
    }
    kq_set_simd_level(-1);
    return n;
}

Test(kv_rows, softmax_steps_match_float64) {
    kvw_rows tb[3];
    int nt = tables(tb);
    unsigned r = 5;
    static float x[300], x0[300];
    static int32_t pos[300];
    double ref[300];
    for (int ti = 0; ti < nt; ti++)
        for (int n = 1; n <= 300; n += (n < 40 ? 1 : 37))
            for (int peak = 0; peak < 2; peak++) {
                const int32_t p = 1000;
                const float scale = 0.125f;
                for (int t = 0; t < n; t++) {
                    x0[t] = x[t] = (peak ? 400.0f : 8.0f) * frand(&r);
                    /* about a quarter of the keys are past the query, never the first */
                    pos[t] = t > 0 && frand(&r) > 0.5f ? p + 1 + t : p - t;
                }
                /* masked entries are -inf (exp_sum's contract), the rest scaled */
                for (int t = 0; t < n; t++) x[t] = pos[t] <= p ? x0[t] : -INFINITY;
                tb[ti].scale_row(x, n, scale);
                double mx = -INFINITY, sum = 0;
                for (int t = 0; t < n; t++)
                    if (pos[t] <= p) mx = fmax(mx, (double)x0[t] * scale);
                for (int t = 0; t < n; t++) {
                    ref[t] = pos[t] <= p ? exp((double)x0[t] * scale - mx) : 0.0;
                    sum += ref[t];
                }
                float inv = kvw_exp_row(&tb[ti], x, n);
                tb[ti].scale_row(x, n, inv);
                for (int t = 0; t < n; t++) {
                    double want = ref[t] / sum;
                    if (pos[t] > p) cr_assert_eq(x[t], 0.0f, "%s: masked entry %d is %g", tb[ti].name, t, x[t]);
                    /* float32 exp and sum: a few ulp relative, plus an absolute floor
                     * for the entries the clamp at e^-87 leaves tiny */
                    cr_assert(fabs(x[t] - want) <= 2e-6 * want + 1e-30, "%s n %d peak %d t %d: %.9g vs %.9g",
                              tb[ti].name, n, peak, t, x[t], want);
                }
            }
}

/* The decode walk's use (kv_mixed_attend.c, lo_walk): a row taken a page of
 * 32 at a time against a running maximum, the sum so far rescaled by
 * e^(old - new) whenever a page raises it, gives the row's sum against its
 * own maximum; each page's weights times the rescales that followed it give
 * the row's weights. Rows that rise (every page a new maximum), fall and
 * are random; n == 0 gives -inf and 0. */
Test(kv_rows, a_row_in_pages_with_a_running_maximum) {
    kvw_rows tb[3];
    int nt = tables(tb);
    unsigned r = 11;
    static float x[400], x0[400], w[400];
    for (int ti = 0; ti < nt; ti++) {
        cr_assert(isinf(tb[ti].max_row(x, 0)) && tb[ti].max_row(x, 0) < 0, "%s: empty max", tb[ti].name);
        cr_assert_eq(tb[ti].exp_sum(x, 0, 1.0f), 0.0f, "%s: empty sum", tb[ti].name);
        for (int shape = 0; shape < 3; shape++)
            for (int n = 1; n <= 400; n += 41) {
                for (int t = 0; t < n; t++)
                    x0[t] = x[t] = shape == 0 ? 20.0f * frand(&r) : (shape == 1 ? 0.05f : -0.05f) * (float)t;
                double mx = -INFINITY, sum = 0;
                for (int t = 0; t < n; t++) mx = fmax(mx, (double)x0[t]);
                for (int t = 0; t < n; t++) sum += exp((double)x0[t] - mx);
                float m = -INFINITY, sm = 0.0f;
                for (int t0 = 0; t0 < n; t0 += 32) {
                    const int cnt = n - t0 < 32 ? n - t0 : 32;
                    const float pm = tb[ti].max_row(x + t0, cnt);
                    if (pm > m) {
                        const float f = expf(m - pm);
                        sm *= f;
                        for (int t = 0; t < t0; t++) w[t] *= f;
                        m = pm;
                    }
                    sm += tb[ti].exp_sum(x + t0, cnt, m);
                    for (int t = t0; t < t0 + cnt; t++) w[t] = x[t];
                }
                cr_assert_float_eq(m, (float)mx, 0.0f, "%s: running max", tb[ti].name);
                cr_assert(fabs(sm - sum) <= 1e-5 * sum, "%s shape %d n %d: sum %.9g vs %.9g", tb[ti].name,
                          shape, n, sm, sum);
                for (int t = 0; t < n; t++) {
                    double want = exp((double)x0[t] - mx);
                    cr_assert(fabs(w[t] - want) <= 1e-5 * want + 1e-30, "%s shape %d n %d t %d: %.9g vs %.9g",
                              tb[ti].name, shape, n, t, w[t], want);
                }
            }
    }
}
