/* km tests: km_matmul against a float reference built from dequantized
 * rows, for every weight type, several token counts and odd row counts;
 * thread-count independence; km_get_row; argument errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "matmul.h"
#include "pverr.h"
#include "quant.h"

static uint64_t rng_state;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}
static float rnd_unit(void) { return (float)rnd() / 2147483648.0f * 2.0f - 1.0f; }

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t rnd_scale(float lo, float hi)
{
    return kq_fp32_to_fp16(lo + (hi - lo) * (float)(rnd() % 10000) / 10000.0f);
}

/* rows x cols random matrix of type t: random codes, sane fp16 scales */
static uint8_t *random_matrix(uint32_t t, int64_t rows, int64_t cols)
{
    size_t rb = kq_row_bytes(t, cols), bb = kq_block_bytes(t), total = rb * (size_t)rows;
    uint8_t *w = malloc(total);
    cr_assert_not_null(w);
    for (size_t i = 0; i < total; i++)
        w[i] = (uint8_t)rnd();
    if (t == KQ_F32 || t == KQ_F16 || t == KQ_BF16) {
        for (size_t i = 0; i < total; i += bb) {
            float f = rnd_unit();
            uint32_t u;
            memcpy(&u, &f, 4);
            if (t == KQ_F32)
                memcpy(w + i, &f, 4);
            else
                put16(w + i, t == KQ_F16 ? kq_fp32_to_fp16(f) : (uint16_t)(u >> 16));
        }
        return w;
    }
    for (size_t o = 0; o < total; o += bb) {
        uint8_t *b = w + o;
        if (t == KQ_Q6_K) {
            put16(b + 208, rnd_scale(0.0001f, 0.01f));
        } else if (t == KQ_Q4_K) {
            put16(b, rnd_scale(0.0001f, 0.01f));
            put16(b + 2, rnd_scale(0.0001f, 0.01f));
        } else {
            put16(b, rnd_scale(0.001f, 0.1f));
            if (t == KQ_Q4_1 || t == KQ_Q5_1)
                put16(b + 2, rnd_scale(-0.5f, 0.5f));
        }
    }
    return w;
}

static const uint32_t k_types[] = {KQ_F32, KQ_F16, KQ_BF16, KQ_Q4_0, KQ_Q4_1,
                                   KQ_Q5_0, KQ_Q5_1, KQ_Q8_0, KQ_Q4_K, KQ_Q6_K};

/* Runs one configuration with `bits`-bit activations on pools of 1 and 2
 * threads (and NULL), checks against the reference and checks the pools
 * agree exactly: every output element is computed by the same kernel on the
 * same inputs whichever thread runs it. Returns the rms of the error relative
 * to sum|w x| (to compare precisions). */
static double check_case(uint32_t t, int64_t rows, int64_t cols, int64_t n_tok, tp_pool *p1,
                         tp_pool *p2, km_scratch *s, int bits)
{
    cr_assert_eq(km_scratch_set_act_bits(s, bits), PV_OK);
    double err2 = 0, mag2 = 0;
    uint8_t *wd = random_matrix(t, rows, cols);
    km_weight w = {t, cols, rows, wd, NULL};
    float *x = malloc(sizeof(float) * (size_t)(n_tok * cols));
    float *wf = malloc(sizeof(float) * (size_t)(rows * cols));
    float *y1 = malloc(sizeof(float) * (size_t)(n_tok * rows));
    float *y2 = malloc(sizeof(float) * (size_t)(n_tok * rows));
    float *y0 = malloc(sizeof(float) * (size_t)(n_tok * rows));
    double *mags = malloc(sizeof(double) * (size_t)(n_tok * rows));
    cr_assert(x && wf && y1 && y2 && y0 && mags);
    for (int64_t i = 0; i < n_tok * cols; i++)
        x[i] = rnd_unit() * (i % 7 == 0 ? 4.0f : 1.0f);
    for (int64_t r = 0; r < rows; r++)
        cr_assert_eq(km_get_row(&w, r, wf + r * cols), PV_OK);

    cr_assert_eq(km_matmul(p1, s, &w, x, n_tok, y1), PV_OK);
    cr_assert_eq(km_matmul(p2, s, &w, x, n_tok, y2), PV_OK);
    cr_assert_eq(km_matmul(NULL, s, &w, x, n_tok, y0), PV_OK);
    int act_q = kq_vec_dot_type_bits(t, bits) != KQ_F32;
    for (int64_t tk = 0; tk < n_tok; tk++) {
        for (int64_t r = 0; r < rows; r++) {
            double ref = 0, mag = 0;
            for (int64_t c = 0; c < cols; c++) {
                double v = (double)wf[r * cols + c] * x[tk * cols + c];
                ref += v;
                mag += fabs(v);
            }
            mags[tk * rows + r] = mag;
            /* same bounds as test_quant: 8-bit activations are off by at
             * most amax/254 each, so |err| <= ~0.4% of sum|w x| worst case;
             * 16-bit ones by amax/65534 (1e-4 leaves room for f32 sums) */
            double tol = !act_q ? 1e-5 * mag + 1e-6 : bits == 8 ? 1e-2 * mag + 1e-4 : 1e-4 * mag + 1e-6;
            float got = y1[tk * rows + r];
            cr_assert_leq(fabs(got - ref), tol,
                          "%s %d-bit %lldx%lld n_tok %lld: y[%lld][%lld]=%g want %g", kq_type_name(t),
                          bits, (long long)rows, (long long)cols, (long long)n_tok, (long long)tk,
                          (long long)r, got, ref);
            err2 += (got - ref) * (got - ref);
            mag2 += mag * mag;
        }
    }
    cr_assert_eq(memcmp(y1, y2, sizeof(float) * (size_t)(n_tok * rows)), 0,
                 "%s: 1 and 2 threads differ", kq_type_name(t));
    cr_assert_eq(memcmp(y1, y0, sizeof(float) * (size_t)(n_tok * rows)), 0,
                 "%s: NULL pool differs", kq_type_name(t));

    /* batched == one token at a time, bit for bit (tolerance 0): the
     * single-row, 4-row and multi-token kernels share their per-row
     * arithmetic (kernels/quant_impl.h). Anything looser lets float
     * rounding flip activation rounding in the next layer of a model, and
     * a split prompt then diverges from an unsplit one. */
    if (n_tok > 1) {
        for (int64_t tk = 0; tk < n_tok; tk++) {
            cr_assert_eq(km_matmul(p2, s, &w, x + tk * cols, 1, y0), PV_OK);
            for (int64_t r = 0; r < rows; r++)
                cr_assert(y0[r] == y1[tk * rows + r], "%s %d-bit tok %lld row %lld: %.9g vs %.9g",
                          kq_type_name(t), bits, (long long)tk, (long long)r, y0[r],
                          y1[tk * rows + r]);
        }
    }
    free(mags);
    free(wd);
    free(x);
    free(wf);
    free(y0);
    free(y1);
    free(y2);
    return mag2 > 0 ? sqrt(err2 / mag2) : 0;
}

Test(matmul, all_types_token_counts, .timeout = 120)
{
    tp_pool *p1 = NULL, *p2 = NULL;
    cr_assert_eq(tp_create(1, &p1), PV_OK);
    cr_assert_eq(tp_create(2, &p2), PV_OK);
    km_scratch *s = km_scratch_new();
    cr_assert_not_null(s);
    rng_state = 2024;
    static const int64_t toks[] = {1, 3, 17};
    for (size_t k = 0; k < sizeof k_types / sizeof k_types[0]; k++) {
        uint32_t t = k_types[k];
        int64_t cols = kq_block_elems(t) == 256 ? 512 : 96;
        for (int bits = 8; bits <= 16; bits += 8)
            for (size_t i = 0; i < 3; i++)
                check_case(t, 37, cols, toks[i], p1, p2, s, bits);
    }
    km_scratch_free(s);
    tp_destroy(p1);
    tp_destroy(p2);
}

/* The model's shapes: Q4_1 576x1536 and 1536x576, a row count that spans
 * many tasks and a token count with a partial tile. */
Test(matmul, model_shapes_q4_1, .timeout = 120)
{
    tp_pool *p1 = NULL, *p2 = NULL;
    cr_assert_eq(tp_create(1, &p1), PV_OK);
    cr_assert_eq(tp_create(2, &p2), PV_OK);
    km_scratch *s = km_scratch_new();
    for (int bits = 8; bits <= 16; bits += 8) {
        rng_state = 77;
        check_case(KQ_Q4_1, 1536, 576, 9, p1, p2, s, bits); /* 4-row decode kernel vs tiles */
        check_case(KQ_Q4_1, 577, 1536, 11, p1, p2, s, bits);
        check_case(KQ_Q8_0, 301, 576, 9, p1, p2, s, bits);
    }
    km_scratch_free(s);
    tp_destroy(p1);
    tp_destroy(p2);
}

Test(matmul, get_row_and_errors)
{
    rng_state = 5;
    uint8_t *wd = random_matrix(KQ_Q8_0, 3, 64);
    km_weight w = {KQ_Q8_0, 64, 3, wd, NULL};
    float out[64], ref[64], x[64] = {0}, y[3];
    cr_assert_eq(km_get_row(&w, 2, out), PV_OK);
    cr_assert_eq(kq_dequantize_row(KQ_Q8_0, wd + 2 * 68, ref, 64), PV_OK);
    cr_assert_eq(memcmp(out, ref, sizeof out), 0);
    cr_assert_eq(km_get_row(&w, 3, out), PV_EINVAL);
    cr_assert_eq(km_get_row(&w, -1, out), PV_EINVAL);

    km_scratch *s = km_scratch_new();
    cr_assert_eq(km_matmul(NULL, s, &w, x, 0, y), PV_EINVAL);
    cr_assert_eq(km_matmul(NULL, NULL, &w, x, 1, y), PV_EINVAL);
    km_weight bad = w;
    bad.type = KQ_Q8_K; /* activation-only format */
    cr_assert_eq(km_matmul(NULL, s, &bad, x, 1, y), PV_EINVAL);
    bad = w;
    bad.cols = 48; /* not a multiple of the block */
    cr_assert_eq(km_matmul(NULL, s, &bad, x, 1, y), PV_EINVAL);
    bad = w;
    bad.type = KQ_Q4_K; /* 64 columns cannot hold a 256-value super-block */
    cr_assert_eq(km_matmul(NULL, s, &bad, x, 1, y), PV_EINVAL);
    /* zero activations give exactly zero for a symmetric format */
    cr_assert_eq(km_matmul(NULL, s, &w, x, 1, y), PV_OK);
    for (int r = 0; r < 3; r++)
        cr_assert_eq(y[r], 0.0f);
    km_scratch_free(s);
    free(wd);
}

/* The precision is per scratch, defaults to 16 and really changes the
 * arithmetic: the 16-bit error is far below the 8-bit one on the same data
 * (expected ratio ~258; 20 leaves margin). Also the portable path keeps the
 * batched == single-token identity. */
Test(matmul, act_bits_setting, .timeout = 120)
{
    km_scratch *s = km_scratch_new(), *s2 = km_scratch_new();
    cr_assert(s && s2);
    cr_assert_eq(km_scratch_act_bits(s), 16);
    cr_assert_eq(km_scratch_set_act_bits(s, 12), PV_EINVAL);
    cr_assert_eq(km_scratch_set_act_bits(NULL, 8), PV_EINVAL);
    cr_assert_eq(km_scratch_act_bits(s), 16);
    cr_assert_eq(km_scratch_set_act_bits(s2, 8), PV_OK);
    cr_assert_eq(km_scratch_act_bits(s), 16, "scratches do not share the setting");
    tp_pool *p2 = NULL;
    cr_assert_eq(tp_create(2, &p2), PV_OK);
    static const uint32_t types[] = {KQ_Q4_1, KQ_Q4_K};
    for (int scalar = 0; scalar < 2; scalar++) {
        kq_set_force_scalar(scalar);
        for (size_t k = 0; k < 2; k++) {
            int64_t cols = types[k] == KQ_Q4_K ? 512 : 576;
            rng_state = 31;
            double e8 = check_case(types[k], 64, cols, 6, NULL, p2, s, 8);
            rng_state = 31;
            double e16 = check_case(types[k], 64, cols, 6, NULL, p2, s, 16);
            cr_assert_lt(e16 * 20, e8, "%s: 16-bit rms err %g vs 8-bit %g", kq_type_name(types[k]), e16,
                         e8);
        }
    }
    kq_set_force_scalar(0);
    tp_destroy(p2);
    km_scratch_free(s);
    km_scratch_free(s2);
}

/* Software prefetch (decode path) only moves bytes into cache earlier: with
 * it on and off (PIVOT_PREFETCH=0 when the scratch is made) every output is
 * bit-identical, for row counts that end inside a 4-row group and tasks
 * whose prefetch window runs past their rows. */
Test(matmul, prefetch_does_not_change_results, .timeout = 60)
{
    tp_pool *p2 = NULL;
    cr_assert_eq(tp_create(2, &p2), PV_OK);
    const int64_t shapes[][2] = {{576, 1539}, {1536, 577}, {64, 4097}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int64_t cols = shapes[k][0], rows = shapes[k][1];
        rng_state = 1234 + k;
        uint32_t types[2] = {KQ_Q4_1, KQ_Q8_0};
        for (int ti = 0; ti < 2; ti++) {
            uint8_t *w = random_matrix(types[ti], rows, cols);
            km_weight W = {types[ti], cols, rows, w, NULL};
            float *x = malloc(sizeof(float) * (size_t)cols);
            float *y0 = malloc(sizeof(float) * (size_t)rows), *y1 = malloc(sizeof(float) * (size_t)rows);
            for (int64_t i = 0; i < cols; i++)
                x[i] = rnd_unit();
            setenv("PIVOT_PREFETCH", "0", 1);
            km_scratch *off = km_scratch_new();
            unsetenv("PIVOT_PREFETCH");
            km_scratch *on = km_scratch_new();
            cr_assert_eq(km_matmul(p2, off, &W, x, 1, y0), PV_OK);
            cr_assert_eq(km_matmul(p2, on, &W, x, 1, y1), PV_OK);
            cr_assert_eq(memcmp(y0, y1, sizeof(float) * (size_t)rows), 0, "%lld x %lld type %u",
                         (long long)cols, (long long)rows, types[ti]);
            km_scratch_free(off);
            km_scratch_free(on);
            free(w), free(x), free(y0), free(y1);
        }
    }
    tp_destroy(p2);
}

/* km_matmul_n (one pool run for products that share an input) gives the
 * bits of one km_matmul per matrix: decode and batched token counts, 1 and 2
 * threads, rows not a multiple of 4, mixed types with one activation format
 * (Q4_1 + Q8_0 at 16 bits) and with two (F32 + Q4_1: the fallback); bad
 * arguments are refused. */
Test(matmul, matmul_n_matches_separate_calls, .timeout = 120)
{
    tp_pool *p2 = NULL;
    cr_assert_eq(tp_create(2, &p2), PV_OK);
    const int64_t cols = 576, rows[3] = {579, 193, 64};
    const uint32_t sets[][3] = {{KQ_Q4_1, KQ_Q4_1, KQ_Q4_1}, {KQ_Q4_1, KQ_Q8_0, KQ_Q4_1}, {KQ_F32, KQ_Q4_1, KQ_Q8_0}};
    const int64_t toks[] = {1, 3, 9};
    for (int si = 0; si < 3; si++)
        for (int ti = 0; ti < 3; ti++)
            for (int th = 1; th <= 2; th++) {
                rng_state = 77 + si * 10 + ti;
                int64_t nt = toks[ti];
                km_weight W[3];
                const km_weight *wp[3];
                float *y0[3], *y1[3];
                float *x = malloc(sizeof(float) * (size_t)(cols * nt));
                for (int64_t i = 0; i < cols * nt; i++)
                    x[i] = rnd_unit();
                for (int i = 0; i < 3; i++) {
                    W[i] = (km_weight){sets[si][i], cols, rows[i], random_matrix(sets[si][i], rows[i], cols), NULL};
                    wp[i] = &W[i];
                    y0[i] = malloc(sizeof(float) * (size_t)(rows[i] * nt));
                    y1[i] = malloc(sizeof(float) * (size_t)(rows[i] * nt));
                }
                km_scratch *s = km_scratch_new();
                tp_pool *p = th == 2 ? p2 : NULL;
                for (int i = 0; i < 3; i++)
                    cr_assert_eq(km_matmul(p, s, &W[i], x, nt, y0[i]), PV_OK);
                cr_assert_eq(km_matmul_n(p, s, wp, 3, x, nt, y1), PV_OK);
                for (int i = 0; i < 3; i++)
                    cr_assert_eq(memcmp(y0[i], y1[i], sizeof(float) * (size_t)(rows[i] * nt)), 0,
                                 "set %d matrix %d, %lld tokens, %d threads", si, i, (long long)nt, th);
                if (si == 0 && ti == 0) {
                    cr_assert_eq(km_matmul_n(p, s, wp, 0, x, nt, y1), PV_EINVAL);
                    cr_assert_eq(km_matmul_n(p, s, wp, KM_MAX_N + 1, x, nt, y1), PV_EINVAL);
                    km_weight bad = W[1];
                    bad.cols = cols / 2;
                    const km_weight *wb[2] = {&W[0], &bad};
                    cr_assert_eq(km_matmul_n(p, s, wb, 2, x, nt, y1), PV_EINVAL);
                }
                km_scratch_free(s);
                for (int i = 0; i < 3; i++)
                    free((void *)W[i].data), free(y0[i]), free(y1[i]);
                free(x);
            }
    tp_destroy(p2);
}

/* Q4_1 and Q8_0 matrices repacked 16 rows at a time (km_repack16, the
 * 16-row kernels on AVX512-VBMI CPUs, and Q4_1's on AVX2 ones): against a float64 reference within check_case's
 * bound for 16-bit activations, against the row kernels (the same integer
 * block dots) within 2e-6 of sum|w x| (float order only), every token count's
 * result bit-identical to the same token alone (matmul.h's determinism:
 * tiles of 16 on VBMI, 8 on AVX2, and a tail), 1 and 3 threads
 * bit-identical, km_matmul_n with a repacked and a plain matrix (the
 * fallback) equal to separate calls, on
 * a VBMI CPU the AVX2 kernel equal to the VBMI one, and a SIMD cap without
 * a 16-row kernel back on the row kernels' bits. A repack that swaps
 * the two codes of a pair fails the comparison with the row kernels. */
Test(matmul, repack16, .timeout = 120)
{
    kq_set_simd_level(-1);
    tp_pool *p1 = NULL, *p3 = NULL;
    cr_assert_eq(tp_create(1, &p1), PV_OK);
    cr_assert_eq(tp_create(3, &p3), PV_OK);
    km_scratch *s = km_scratch_new();
    const int64_t shapes[][2] = {{576, 1536}, {1536, 576}, {64, 16}, {96, 48}};
    for (size_t k = 0; k < 2 * sizeof shapes / sizeof shapes[0]; k++) {
        const uint32_t type = k % 2 ? KQ_Q8_0 : KQ_Q4_1;
        const int64_t cols = shapes[k / 2][0], rows = shapes[k / 2][1], nt = 21;
        rng_state = 77 + k;
        uint8_t *w = random_matrix(type, rows, cols);
        km_weight W = {type, cols, rows, w, NULL};
        const size_t nb = km_repack16_bytes(&W);
        const int lvl = kq_simd_cpu_level();
        /* a 16-row kernel: VBMI (both types), AVX2 (Q4_1) */
        if (!(lvl >= KQ_SIMD_AVX512VBMI || (lvl == KQ_SIMD_AVX2 && type == KQ_Q4_1))) {
            cr_assert_eq(nb, 0);
            free(w);
            continue;
        }
        cr_assert_eq(nb, (size_t)(rows / 16) * (size_t)(cols / 32) * (type == KQ_Q8_0 ? 544 : 320));
        void *r16 = aligned_alloc(64, (nb + 63) / 64 * 64);
        km_repack16(&W, r16);
        km_weight R = W;
        R.r16 = r16;
        float *x = malloc(sizeof(float) * (size_t)(cols * nt));
        float *y = malloc(sizeof(float) * (size_t)(rows * nt)), *y1 = malloc(sizeof(float) * (size_t)rows);
        float *yr = malloc(sizeof(float) * (size_t)(rows * nt)), *row = malloc(sizeof(float) * (size_t)cols);
        for (int64_t i = 0; i < cols * nt; i++)
            x[i] = rnd_unit();
        cr_assert_eq(km_matmul(p3, s, &R, x, nt, y), PV_OK);
        cr_assert_eq(km_matmul(p3, s, &W, x, nt, yr), PV_OK); /* the row kernels */
        for (int64_t r = 0; r < rows; r++) {
            cr_assert_eq(km_get_row(&W, r, row), PV_OK);
            for (int64_t t = 0; t < nt; t++) {
                double ref = 0, mag = 0;
                for (int64_t c = 0; c < cols; c++) {
                    ref += (double)row[c] * x[t * cols + c];
                    mag += fabs((double)row[c] * x[t * cols + c]);
                }
                const double got = y[t * rows + r];
                cr_assert_leq(fabs(got - ref), 1e-4 * mag + 1e-6, "type %u %lld x %lld row %lld token %lld: %g vs %g",
                              type, (long long)cols, (long long)rows, (long long)r, (long long)t, got, ref);
                cr_assert_leq(fabs(got - yr[t * rows + r]), 2e-6 * mag, "type %u %lld x %lld row %lld token %lld",
                              type, (long long)cols, (long long)rows, (long long)r, (long long)t);
            }
        }
        for (int64_t t = 0; t < nt; t++) { /* each token alone, one thread */
            cr_assert_eq(km_matmul(p1, s, &R, x + t * cols, 1, y1), PV_OK);
            cr_assert_eq(memcmp(y1, y + t * rows, sizeof(float) * (size_t)rows), 0, "token %lld", (long long)t);
        }
        cr_assert_eq(km_matmul(p1, s, &R, x, nt, yr), PV_OK); /* one thread, all tokens */
        cr_assert_eq(memcmp(yr, y, sizeof(float) * (size_t)(rows * nt)), 0);
        const km_weight *pair[2] = {&R, &W}; /* a repacked and a plain matrix: separate calls' bits */
        float *ys[2] = {yr, y1};
        float *yw = malloc(sizeof(float) * (size_t)rows);
        cr_assert_eq(km_matmul_n(p3, s, pair, 2, x, 1, ys), PV_OK);
        cr_assert_eq(km_matmul(p3, s, &W, x, 1, yw), PV_OK);
        cr_assert_eq(memcmp(yr, y, sizeof(float) * (size_t)rows), 0);
        cr_assert_eq(memcmp(y1, yw, sizeof(float) * (size_t)rows), 0);
        if (lvl >= KQ_SIMD_AVX512VBMI && type == KQ_Q4_1) { /* the AVX2 kernel: the VBMI kernel's bits */
            kq_set_simd_level(KQ_SIMD_AVX2);
            cr_assert_eq(km_matmul(p3, s, &R, x, nt, yr), PV_OK);
            cr_assert_eq(memcmp(yr, y, sizeof(float) * (size_t)(rows * nt)), 0);
        }
        /* a level without a 16-row kernel: the row kernels, whatever r16 says */
        kq_set_simd_level(lvl >= KQ_SIMD_AVX512VBMI ? KQ_SIMD_AVX512VNNI : KQ_SIMD_SCALAR);
        cr_assert_eq(km_matmul(p3, s, &R, x, nt, yr), PV_OK);
        cr_assert_eq(km_matmul(p3, s, &W, x, nt, y), PV_OK);
        kq_set_simd_level(-1);
        cr_assert_eq(memcmp(yr, y, sizeof(float) * (size_t)(rows * nt)), 0);
        free(w), free(r16), free(x), free(y), free(y1), free(yr), free(row), free(yw);
    }
    km_scratch_free(s);
    tp_destroy(p1);
    tp_destroy(p3);
}
