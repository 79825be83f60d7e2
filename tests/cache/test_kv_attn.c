/* kv_attn (the plain cache's blocked attention) against a float64 reference,
 * for every kernel this CPU has, through the cache's public API so that the
 * page layout written by kv_store is covered too. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_internal.h"
#include "kv_attn.h"
#include "pverr.h"
#include "quant.h"

static float frand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return ((*s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

static double h(float x) { return kq_fp16_to_fp32(kq_fp32_to_fp16(x)); }

typedef struct {
    int nh, nkv, hd, N;
    float *K, *V, *Q; /* [N][nkv*hd], [N][nkv*hd], [N][nh*hd] */
} data_t;

static data_t make(int nh, int nkv, int hd, int N, float qscale, unsigned seed) {
    data_t d = {nh, nkv, hd, N, NULL, NULL, NULL};
    d.K = malloc(sizeof(float) * N * nkv * hd);
    d.V = malloc(sizeof(float) * N * nkv * hd);
    d.Q = malloc(sizeof(float) * N * nh * hd);
    for (int i = 0; i < N * nkv * hd; i++) d.K[i] = frand(&seed), d.V[i] = frand(&seed);
    for (int i = 0; i < N * nh * hd; i++) d.Q[i] = qscale * frand(&seed);
    return d;
}

static void drop(data_t *d) { free(d->K), free(d->V), free(d->Q); }

/* Query t, query head qh over keys 0..t, in float64 from the fp16-rounded
 * keys and values the cache holds. */
static void ref_row(const data_t *d, int t, int qh, double *out) {
    int kvh = qh / (d->nh / d->nkv), hd = d->hd;
    double *sc = malloc(sizeof(double) * (t + 1)), mx = -INFINITY, sum = 0;
    const float *q = d->Q + ((size_t)t * d->nh + qh) * hd;
    for (int j = 0; j <= t; j++) {
        double s = 0;
        for (int i = 0; i < hd; i++) s += q[i] * h(d->K[((size_t)j * d->nkv + kvh) * hd + i]);
        sc[j] = s / sqrt(hd);
        if (sc[j] > mx) mx = sc[j];
    }
    for (int j = 0; j <= t; j++) sum += (sc[j] = exp(sc[j] - mx));
    for (int i = 0; i < hd; i++) {
        double o = 0;
        for (int j = 0; j <= t; j++) o += sc[j] / sum * h(d->V[((size_t)j * d->nkv + kvh) * hd + i]);
        out[i] = o;
    }
    free(sc);
}

/* Stores the data in the given chunks, attending after each chunk (as the
 * model does), and returns the largest abs error against the reference. */
static double run(const data_t *d, int simd, const int *chunks, int nchunks, float *O) {
    kq_set_simd_level(simd);
    kv_shape s = {.n_layers = 1, .n_heads = d->nh, .n_kv_heads = d->nkv, .head_dim = d->hd,
                  .max_seqs = 2, .max_ctx = d->N, .n_threads = 2};
    kv_cache *c;
    cr_assert_eq(kv_create_fp16(&s, &c), 0);
    kq_set_simd_level(-1);
    size_t kvd = (size_t)d->nkv * d->hd, qd = (size_t)d->nh * d->hd;
    for (int ci = 0, p = 0; ci < nchunks; p += chunks[ci++]) {
        int n = chunks[ci];
        cr_assert_eq(kv_store(c, 1, 0, p, n, d->K + p * kvd, d->V + p * kvd), 0);
        for (int g = 0; g < d->nkv; g++)
            cr_assert_eq(kv_attend_group(c, 1, 0, g, p, n, d->Q + p * qd, O + p * qd, ci & 1), 0);
    }
    kv_destroy(c);
    double maxerr = 0, *ref = malloc(sizeof(double) * d->hd);
    for (int t = 0; t < d->N; t++)
        for (int qh = 0; qh < d->nh; qh++) {
            ref_row(d, t, qh, ref);
            for (int i = 0; i < d->hd; i++) {
                double e = fabs(ref[i] - O[((size_t)t * d->nh + qh) * d->hd + i]);
                if (!(e <= maxerr)) maxerr = e; /* NaN sticks */
            }
        }
    free(ref);
    return maxerr;
}

static const int levels[] = {KQ_SIMD_SCALAR, KQ_SIMD_AVX2, KQ_SIMD_AVX512VNNI};

/* Shapes: SmolLM2's (9 heads over 3, head_dim 64), head_dim 128 with
 * groups of 4, head_dim 16 and 80 (plain kernel only), multi-head attention. */
Test(kv_attn, every_kernel_matches_float64_reference) {
    int shapes[][3] = {{9, 3, 64}, {8, 2, 128}, {6, 2, 16}, {4, 4, 80}, {2, 2, 64}};
    int chunks[] = {1, 63, 2, 70, 14, 1, 1, 77}, N = 229; /* crosses pages, long and short */
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
        for (int li = 0; li < 3; li++) {
            if (levels[li] > kq_simd_cpu_level()) continue;
            data_t d = make(shapes[si][0], shapes[si][1], shapes[si][2], N, 2.0f, 7 + (unsigned)si);
            float *O = calloc((size_t)N * d.nh * d.hd, sizeof(float));
            double e = run(&d, levels[li], chunks, 8, O);
            cr_assert_lt(e, 2e-5, "nh %d nkv %d hd %d level %d: max abs error %g", d.nh, d.nkv, d.hd,
                         levels[li], e);
            free(O);
            drop(&d);
        }
}

/* Large scores (q x 40: logits spread over hundreds) exercise the running
 * max, the rescaling of earlier pages and the exp polynomial's range. */
Test(kv_attn, peaked_softmax_matches_reference) {
    int chunks[] = {300, 1, 5}, N = 306;
    for (int li = 0; li < 3; li++) {
        if (levels[li] > kq_simd_cpu_level()) continue;
        data_t d = make(9, 3, 64, N, 40.0f, 99);
        float *O = calloc((size_t)N * d.nh * d.hd, sizeof(float));
        double e = run(&d, levels[li], chunks, 3, O);
        cr_assert_lt(e, 5e-5, "level %d: max abs error %g", levels[li], e);
        free(O);
        drop(&d);
    }
}

/* The model splits one prompt's queries across threads (kv_attend_splits):
 * any split must give exactly the whole call's result, since a row's
 * arithmetic does not depend on which tile or chunk it lands in. */
Test(kv_attn, split_query_ranges_are_bit_identical) {
    const int nh = 9, nkv = 3, hd = 64, N = 400;
    data_t d = make(nh, nkv, hd, N, 2.0f, 5);
    for (int li = 0; li < 3; li++) {
        if (levels[li] > kq_simd_cpu_level()) continue;
        kq_set_simd_level(levels[li]);
        kv_shape s = {.n_layers = 1, .n_heads = nh, .n_kv_heads = nkv, .head_dim = hd,
                      .max_seqs = 1, .max_ctx = N, .n_threads = 2};
        kv_cache *c;
        cr_assert_eq(kv_create_fp16(&s, &c), 0);
        kq_set_simd_level(-1);
        cr_assert(kv_attend_splits(c, 0));
        size_t qd = (size_t)nh * hd, on = (size_t)N * qd;
        float *whole = calloc(on, sizeof(float)), *parts = calloc(on, sizeof(float));
        cr_assert_eq(kv_store(c, 0, 0, 0, 17, d.K, d.V), 0);
        int kvd = nkv * hd;
        cr_assert_eq(kv_store(c, 0, 0, 17, N - 17, d.K + 17 * kvd, d.V + 17 * kvd), 0);
        int cuts[] = {17, 64, 65, 128, 191, 200, 333, 399, N}, a = 17;
        for (int g = 0; g < nkv; g++) {
            cr_assert_eq(kv_attend_group(c, 0, 0, g, 17, N - 17, d.Q + 17 * qd, whole + 17 * qd, 0), 0);
            a = 17;
            for (int k = 1; k < 9; a = cuts[k++])
                cr_assert_eq(kv_attend_group(c, 0, 0, g, a, cuts[k] - a, d.Q + a * qd,
                                             parts + a * qd, k & 1), 0);
        }
        cr_assert(memcmp(whole, parts, on * sizeof(float)) == 0, "level %d: split differs", levels[li]);
        free(whole), free(parts);
        kv_destroy(c);
    }
    drop(&d);
}

Test(kv_attn, picks_avx512_tiles_only_where_they_apply) {
    kq_set_simd_level(KQ_SIMD_SCALAR);
    cr_assert_eq(kva_pick(64), KVA_SCALAR);
    kq_set_simd_level(KQ_SIMD_AVX2);
    if (kq_simd_level() >= KQ_SIMD_AVX2) cr_assert_neq(kva_pick(64), KVA_AVX512);
    kq_set_simd_level(-1);
    if (kq_simd_cpu_level() >= KQ_SIMD_AVX512VNNI) {
        cr_assert_eq(kva_pick(64), KVA_AVX512);
        cr_assert_eq(kva_pick(128), KVA_AVX512);
        cr_assert_neq(kva_pick(80), KVA_AVX512, "head_dim 80 is not a multiple of 64");
    }
}
