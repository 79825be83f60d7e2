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
                /* masked entries are -inf (exp_row's contract), the rest scaled */
                for (int t = 0; t < n; t++) x[t] = pos[t] <= p ? x0[t] : -INFINITY;
                tb[ti].scale_row(x, n, scale);
                double mx = -INFINITY, sum = 0;
                for (int t = 0; t < n; t++)
                    if (pos[t] <= p) mx = fmax(mx, (double)x0[t] * scale);
                for (int t = 0; t < n; t++) {
                    ref[t] = pos[t] <= p ? exp((double)x0[t] * scale - mx) : 0.0;
                    sum += ref[t];
                }
                float inv = tb[ti].exp_row(x, n);
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
