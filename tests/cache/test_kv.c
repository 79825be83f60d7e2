/* The FP16 cache against a direct float attention computed here. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "kv.h"
#include "kv_internal.h"
#include "pverr.h"
#include "quant.h"
#include "../test_rand.h"

static float h(float x) { return kq_fp16_to_fp32(kq_fp32_to_fp16(x)); }

/* Reference: query (position p) over keys 0..p, keys/values rounded to fp16
 * as the cache stores them. */
static void ref_attend(const float *K, const float *V, int nkv, int hd, int kvh, const float *q,
                       int p, float *out) {
    double sc[512], mx = -1e30, sum = 0;
    for (int t = 0; t <= p; t++) {
        double d = 0;
        for (int i = 0; i < hd; i++) d += q[i] * h(K[((size_t)t * nkv + kvh) * hd + i]);
        sc[t] = d / sqrt(hd);
        if (sc[t] > mx) mx = sc[t];
    }
    for (int t = 0; t <= p; t++) sum += (sc[t] = exp(sc[t] - mx));
    for (int i = 0; i < hd; i++) {
        double o = 0;
        for (int t = 0; t <= p; t++) o += sc[t] / sum * h(V[((size_t)t * nkv + kvh) * hd + i]);
        out[i] = (float)o;
    }
}

Test(kv, fp16_attention_matches_reference_across_pages) {
    kv_shape s = {.n_layers = 2, .n_heads = 6, .n_kv_heads = 2, .head_dim = 16, .max_seqs = 3,
                  .max_ctx = 200, .n_threads = 2};
    kv_cache *c;
    cr_assert_eq(kv_create_fp16(&s, &c), 0);
    const int N = 150, nkv = 2, hd = 16, nh = 6;
    unsigned r = 11;
    float *K = malloc(sizeof(float) * N * nkv * hd), *V = malloc(sizeof(float) * N * nkv * hd);
    float *Q = malloc(sizeof(float) * N * nh * hd), *O = malloc(sizeof(float) * N * nh * hd);
    for (int i = 0; i < N * nkv * hd; i++) K[i] = 2 * frand(&r), V[i] = frand(&r);
    for (int i = 0; i < N * nh * hd; i++) Q[i] = 2 * frand(&r);
    /* Store in uneven chunks (crossing the 64-token pages) in seq 2; layer 0
     * gets zeros (its length defines the sequence position), layer 1 the data. */
    float *Z = calloc((size_t)N * nkv * hd, sizeof(float));
    int chunks[] = {1, 63, 2, 70, 14}, p = 0;
    for (int ci = 0; ci < 5; ci++) {
        int n = chunks[ci];
        cr_assert_eq(kv_seq_pos(c, 2), p);
        cr_assert_eq(kv_store(c, 2, 0, p, n, Z, Z), 0);
        cr_assert_eq(kv_store(c, 2, 1, p, n, K + (size_t)p * nkv * hd, V + (size_t)p * nkv * hd), 0);
        for (int g = 0; g < nkv; g++)
            cr_assert_eq(kv_attend_group(c, 2, 1, g, p, n, Q + (size_t)p * nh * hd,
                                         O + (size_t)p * nh * hd, 1), 0);
        p += n;
    }
    cr_assert_eq(kv_seq_pos(c, 2), N);
    cr_assert_eq(kv_seq_pos(c, 0), 0, "other slots untouched");
    double maxerr = 0;
    for (int t = 0; t < N; t++)
        for (int qh = 0; qh < nh; qh++) {
            float ref[16];
            ref_attend(K, V, nkv, hd, qh / (nh / nkv), Q + ((size_t)t * nh + qh) * hd, t, ref);
            for (int i = 0; i < hd; i++) {
                double e = fabs(ref[i] - O[((size_t)t * nh + qh) * hd + i]);
                if (e > maxerr) maxerr = e;
            }
        }
    cr_assert_lt(maxerr, 1e-4, "max abs error %g", maxerr);

    kv_usage u;
    kv_seq_usage(c, 2, &u);
    cr_assert_eq(u.n_tokens, N);
    cr_assert_eq(u.bytes_fp16, (size_t)N * 2 * 2 * nkv * hd * 2);
    cr_assert_geq(u.bytes_stored, u.bytes_fp16, "pages hold at least the fp16 bytes");
    cr_assert_lt(u.bytes_stored, u.bytes_fp16 * 2, "page rounding wastes less than 2x at 150 tokens");
    kv_seq_reset(c, 2);
    cr_assert_eq(kv_seq_pos(c, 2), 0);
    free(K), free(V), free(Q), free(O), free(Z);
    kv_destroy(c);
}

Test(kv, rejects_gaps_overflow_and_bad_args) {
    kv_shape s = {.n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .head_dim = 8, .max_seqs = 1,
                  .max_ctx = 4, .n_threads = 1};
    kv_cache *c;
    cr_assert_eq(kv_create_fp16(&s, &c), 0);
    float k[5 * 8] = {0}, v[5 * 8] = {0}, q[16] = {0}, o[16];
    cr_assert_eq(kv_store(c, 0, 0, 1, 1, k, v), PV_EINVAL, "gap in positions");
    cr_assert_eq(kv_store(c, 0, 0, 0, 5, k, v), PV_ECTXFULL);
    cr_assert_eq(kv_store(c, 1, 0, 0, 1, k, v), PV_EINVAL, "slot out of range");
    cr_assert_eq(kv_store(c, 0, 1, 0, 1, k, v), PV_EINVAL, "layer out of range");
    cr_assert_eq(kv_attend_group(c, 0, 0, 0, 0, 1, q, o, 0), PV_EINVAL, "query before its key");
    cr_assert_eq(kv_store(c, 0, 0, 0, 4, k, v), 0);
    cr_assert_eq(kv_attend_group(c, 0, 0, 0, 3, 1, q, o, 1), PV_EINVAL, "thread index out of range");
    cr_assert_eq(kv_attend_group(c, 0, 0, 0, 3, 1, q, o, 0), 0);
    /* All-zero keys: uniform attention over zero values. */
    for (int i = 0; i < 16; i++) cr_assert_eq(o[i], 0.0f);
    kv_destroy(c);
    kv_shape bad = s;
    bad.n_heads = 3;
    bad.n_kv_heads = 2;
    cr_assert_eq(kv_create_fp16(&bad, &c), PV_EINVAL);
}
