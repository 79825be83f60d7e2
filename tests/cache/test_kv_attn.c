/* kv_attn (the plain cache's blocked attention) against a float64 reference,
 * for every kernel this CPU has, through the cache's public API so that the
 * page layout written by kv_store is covered too. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv.h"
#include "kv_internal.h"
#include "kv_attn.h"
#include "kv_policy.h"
#include "pverr.h"
#include "quant.h"
#include "../test_rand.h"

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

/* ---- split-K (kv_attend_part + kv_attend_merge) --------------------------- */

/* Queries pos0..pos0+n-1 of every KV head over the keys cut at `cut`
 * (np parts: [cut[p], cut[p+1])), each part through kv_attend_part on
 * alternating threads, merged into O ([n][nh*hd]). */
static void split_attend(kv_cache *c, const data_t *d, int pos0, int n, const int *cut, int np,
                         float *O) {
    size_t qd = (size_t)d->nh * d->hd, rows = (size_t)n * d->nh;
    float *po = malloc(sizeof(float) * np * n * qd), *pm = malloc(sizeof(float) * np * rows);
    float *pl = malloc(sizeof(float) * np * rows);
    for (int g = 0; g < d->nkv; g++)
        for (int p = 0; p < np; p++)
            cr_assert_eq(kv_attend_part(c, 0, 0, g, pos0, n, cut[p], cut[p + 1], d->Q + pos0 * qd,
                                        po + p * n * qd, pm + p * rows, pl + p * rows, p & 1), 0,
                         "part [%d, %d)", cut[p], cut[p + 1]);
    kv_attend_merge(np, (int)rows, d->hd, po, (size_t)n * qd, pm, pl, rows, O);
    free(po), free(pm), free(pl);
}

/* Largest abs error of O (queries pos0..pos0+n-1) against the reference. */
static double split_err(const data_t *d, int pos0, int n, const float *O) {
    double maxerr = 0, *ref = malloc(sizeof(double) * d->hd);
    for (int i = 0; i < n; i++)
        for (int qh = 0; qh < d->nh; qh++) {
            ref_row(d, pos0 + i, qh, ref);
            for (int x = 0; x < d->hd; x++) {
                double e = fabs(ref[x] - O[((size_t)i * d->nh + qh) * d->hd + x]);
                if (!(e <= maxerr)) maxerr = e; /* NaN sticks */
            }
        }
    free(ref);
    return maxerr;
}

/* Random page-aligned cuts of [0, N): 1..6 parts; the last end sometimes
 * past the stored keys (capped). Returns the parts. */
static int random_cuts(unsigned *s, int N, int *cut) {
    *s = *s * 1103515245u + 12345u;
    int pages = (N + 63) / 64, np = 1 + (int)((*s >> 8) % 6u % (unsigned)pages);
    cut[0] = 0;
    for (int p = 1; p < np; p++) { /* increasing page starts inside (0, N) */
        int lo = cut[p - 1] / 64 + 1, hi = pages - (np - p); /* leave a page per later part */
        *s = *s * 1103515245u + 12345u;
        cut[p] = 64 * (lo + (int)((*s >> 8) % (unsigned)(hi - lo + 1)));
    }
    *s = *s * 1103515245u + 12345u;
    cut[np] = N + ((*s >> 12) & 1 ? 5 : 0);
    return np;
}

/* Fresh random data each run (the seed is in the message): decode (one
 * query at the last position) and a 70-query block whose early rows see
 * nothing of the later parts (m = -inf there), every kernel, GQA shapes,
 * lengths on and off page boundaries. Tolerance as the unsplit kernel's. */
Test(kv_attn, split_k_merge_matches_float64_reference) {
    int shapes[][3] = {{9, 3, 64}, {8, 2, 128}, {6, 2, 16}, {4, 4, 80}};
    int lens[] = {1, 63, 64, 65, 200, 229, 700};
    unsigned seed0 = (unsigned)time(NULL), s = seed0;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
        for (size_t ni = 0; ni < sizeof lens / sizeof *lens; ni++)
            for (int li = 0; li < 3; li++) {
                if (levels[li] > kq_simd_cpu_level()) continue;
                int N = lens[ni], cut[8];
                data_t d = make(shapes[si][0], shapes[si][1], shapes[si][2], N, 2.0f, s += 7919);
                kq_set_simd_level(levels[li]);
                kv_shape sh = {.n_layers = 1, .n_heads = d.nh, .n_kv_heads = d.nkv,
                               .head_dim = d.hd, .max_seqs = 1, .max_ctx = N, .n_threads = 2};
                kv_cache *c;
                cr_assert_eq(kv_create_fp16(&sh, &c), 0);
                kq_set_simd_level(-1);
                cr_assert_eq(kv_attend_parts(c, 0), KVA_PAGE);
                size_t kvd = (size_t)d.nkv * d.hd, qd = (size_t)d.nh * d.hd;
                int a = N / 3;
                cr_assert_eq(kv_store(c, 0, 0, 0, a, d.K, d.V), 0);
                cr_assert_eq(kv_store(c, 0, 0, a, N - a, d.K + a * kvd, d.V + a * kvd), 0);
                float *O = calloc((size_t)70 * qd, sizeof(float));
                for (int rep = 0; rep < 2; rep++) {
                    int n = rep == 0 || N < 70 ? 1 : 70, np = random_cuts(&s, N, cut);
                    split_attend(c, &d, N - n, n, cut, np, O);
                    double e = split_err(&d, N - n, n, O);
                    cr_assert_lt(e, 2e-5,
                                 "seed %u: nh %d nkv %d hd %d N %d n %d parts %d level %d: "
                                 "max abs error %g",
                                 seed0, d.nh, d.nkv, d.hd, N, n, np, levels[li], e);
                }
                free(O);
                kv_destroy(c);
                drop(&d);
            }
}

/* Large scores: the merge's rescaling e^(m_p - M) carries whole-number
 * exponents between parts (one part's max far above another's). */
Test(kv_attn, split_k_peaked_softmax_matches_reference) {
    const int N = 517;
    unsigned seed0 = (unsigned)time(NULL) ^ 0x5bd1e995u, s = seed0;
    for (int li = 0; li < 3; li++) {
        if (levels[li] > kq_simd_cpu_level()) continue;
        data_t d = make(9, 3, 64, N, 40.0f, s += 31);
        kq_set_simd_level(levels[li]);
        kv_shape sh = {.n_layers = 1, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64,
                       .max_seqs = 1, .max_ctx = N, .n_threads = 2};
        kv_cache *c;
        cr_assert_eq(kv_create_fp16(&sh, &c), 0);
        kq_set_simd_level(-1);
        cr_assert_eq(kv_store(c, 0, 0, 0, N, d.K, d.V), 0);
        float *O = calloc((size_t)9 * 64, sizeof(float));
        int cut[] = {0, 64, 192, 256, 448, N};
        split_attend(c, &d, N - 1, 1, cut, 5, O);
        double e = split_err(&d, N - 1, 1, O);
        cr_assert_lt(e, 5e-5, "seed %u level %d: max abs error %g", seed0, levels[li], e);
        free(O);
        kv_destroy(c);
        drop(&d);
    }
}

/* One part over every key, merged, is the unsplit call bit for bit (the
 * same per-key arithmetic, and the merge's single weight is exactly 1). */
Test(kv_attn, split_k_one_part_is_attend_group) {
    const int N = 300, n = 40;
    data_t d = make(9, 3, 64, N, 2.0f, 3);
    kv_shape sh = {.n_layers = 1, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64,
                   .max_seqs = 1, .max_ctx = N, .n_threads = 2};
    kv_cache *c;
    cr_assert_eq(kv_create_fp16(&sh, &c), 0);
    cr_assert_eq(kv_store(c, 0, 0, 0, N, d.K, d.V), 0);
    size_t qd = 9 * 64;
    float *whole = calloc((size_t)n * qd, sizeof(float));
    float *merged = calloc((size_t)n * qd, sizeof(float));
    for (int g = 0; g < 3; g++)
        cr_assert_eq(kv_attend_group(c, 0, 0, g, N - n, n, d.Q + (N - n) * qd, whole, 0), 0);
    int cut[] = {0, N};
    split_attend(c, &d, N - n, n, cut, 1, merged);
    cr_assert(memcmp(whole, merged, sizeof(float) * n * qd) == 0, "one part differs from attend");
    free(whole), free(merged);
    kv_destroy(c);
    drop(&d);
}

/* Refusals: a range start off the page grid, an empty or negative range, a
 * range past the stored keys, queries past them; the mixed cache (its
 * tracker needs whole softmax rows) says it cannot split. */
Test(kv_attn, split_k_refuses_bad_ranges_and_mixed_cache) {
    data_t d = make(9, 3, 64, 130, 1.0f, 11);
    kv_shape sh = {.n_layers = 1, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64,
                   .max_seqs = 1, .max_ctx = 256, .n_threads = 2};
    kv_cache *c;
    cr_assert_eq(kv_create_fp16(&sh, &c), 0);
    cr_assert_eq(kv_store(c, 0, 0, 0, 130, d.K, d.V), 0);
    float o[9 * 64], m[9], l[9];
    cr_assert_eq(kv_attend_part(c, 0, 0, 0, 129, 1, 0, 130, d.Q, o, m, l, 0), PV_OK);
    cr_assert_eq(kv_attend_part(c, 0, 0, 0, 129, 1, 32, 130, d.Q, o, m, l, 0), PV_EINVAL);
    cr_assert_eq(kv_attend_part(c, 0, 0, 0, 129, 1, 64, 64, d.Q, o, m, l, 0), PV_EINVAL);
    cr_assert_eq(kv_attend_part(c, 0, 0, 0, 129, 1, -64, 64, d.Q, o, m, l, 0), PV_EINVAL);
    cr_assert_eq(kv_attend_part(c, 0, 0, 0, 129, 1, 192, 256, d.Q, o, m, l, 0), PV_EINVAL);
    cr_assert_eq(kv_attend_part(c, 0, 0, 0, 130, 1, 0, 130, d.Q, o, m, l, 0), PV_EINVAL);
    cr_assert_eq(kv_attend_part(c, 0, 0, 3, 129, 1, 0, 130, d.Q, o, m, l, 0), PV_EINVAL);
    cr_assert_eq(kv_attend_part(c, 0, 0, 0, 129, 1, 0, 130, d.Q, o, m, l, 2), PV_EINVAL);
    kv_destroy(c);
    kv_policy pol;
    char err[128];
    cr_assert_eq(kv_policy_parse("mikv", &pol, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kv_create(&sh, &pol, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kv_store(c, 0, 0, 0, 130, d.K, d.V), 0);
    cr_assert_eq(kv_attend_parts(c, 0), 0);
    cr_assert_eq(kv_attend_part(c, 0, 0, 0, 129, 1, 0, 130, d.Q, o, m, l, 0), PV_EUNSUPPORTED);
    kv_destroy(c);
    drop(&d);
}
