/* Element-wise kernels against direct double-precision formulas. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "quant.h"
#include "../test_rand.h"

Test(ops, rmsnorm_matches_formula) {
    unsigned s = 7;
    float x[576], w[576], out[576];
    for (int i = 0; i < 576; i++) x[i] = 3 * frand(&s), w[i] = frand(&s);
    ko_rmsnorm(out, x, w, 576, 1e-5f);
    double ss = 0;
    for (int i = 0; i < 576; i++) ss += (double)x[i] * x[i];
    double inv = 1.0 / sqrt(ss / 576 + 1e-5);
    for (int i = 0; i < 576; i++) cr_assert_float_eq(out[i], x[i] * inv * w[i], 1e-5);
}

/* Rotating by position p and then taking dot products must only depend on
 * the position difference (the property RoPE exists for), and each variant
 * must rotate the pairs it claims. */
Test(ops, rope_variants_rotate_their_pairs) {
    const int hd = 8;
    float base = 10000.0f;
    for (int neox = 0; neox <= 1; neox++) {
        float v[8] = {1, 2, 3, 4, 5, 6, 7, 8}, o[8];
        for (int i = 0; i < 8; i++) o[i] = v[i];
        ko_rope(v, 1, hd, hd, 3, base, neox);
        for (int i = 0; i < hd / 2; i++) {
            double th = 3 * pow(base, -2.0 * i / hd);
            int a = neox ? i : 2 * i, b = neox ? i + hd / 2 : 2 * i + 1;
            cr_assert_float_eq(v[a], o[a] * cos(th) - o[b] * sin(th), 1e-5, "neox=%d i=%d", neox, i);
            cr_assert_float_eq(v[b], o[a] * sin(th) + o[b] * cos(th), 1e-5, "neox=%d i=%d", neox, i);
        }
    }
}

Test(ops, rope_partial_dims_and_relative_positions) {
    unsigned s = 3;
    float q[64], k[64];
    for (int i = 0; i < 64; i++) q[i] = frand(&s), k[i] = frand(&s);
    double d[2];
    for (int t = 0; t < 2; t++) {
        float qq[64], kk[64];
        for (int i = 0; i < 64; i++) qq[i] = q[i], kk[i] = k[i];
        ko_rope(qq, 1, 64, 64, 10 + 50 * t, 100000.0f, 0);
        ko_rope(kk, 1, 64, 64, 4 + 50 * t, 100000.0f, 0);
        d[t] = 0;
        for (int i = 0; i < 64; i++) d[t] += qq[i] * kk[i];
    }
    cr_assert_float_eq(d[0], d[1], 1e-4, "q.k must depend on the offset only");
    float v[64], o[64];
    for (int i = 0; i < 64; i++) v[i] = o[i] = frand(&s);
    ko_rope(v, 1, 64, 32, 9, 10000.0f, 1);
    for (int i = 32; i < 64; i++) cr_assert_eq(v[i], o[i], "dims past rope_dim stay");
}

/* Long rotations (more pairs than ko_rope's stack table of 32, an odd
 * number of them, 3 heads) against the double-precision formula, and the
 * two-step form (angles once, then rotations) bit for bit against ko_rope */
Test(ops, rope_two_step_matches_rope) {
    unsigned s = 11;
    static const int dims[] = {128, 96, 70, 8};
    static const int poss[] = {0, 7, 4095, 100000};
    for (int di = 0; di < 4; di++)
        for (int pi = 0; pi < 4; pi++)
            for (int neox = 0; neox <= 1; neox++) {
                const int hd = 128, nh = 3, rd = dims[di], pos = poss[pi];
                float x[3 * 128], a[3 * 128], b[3 * 128], cs[128];
                for (int i = 0; i < nh * hd; i++) x[i] = a[i] = b[i] = frand(&s);
                ko_rope(a, nh, hd, rd, pos, 10000.0f, neox);
                ko_rope_angles(cs, rd, pos, 10000.0f);
                ko_rope_cs(b, nh, hd, rd, cs, neox);
                for (int h = 0; h < nh; h++)
                    for (int i = 0; i < rd / 2; i++) {
                        double th = pos * pow(10000.0, -2.0 * i / rd);
                        int ia = h * hd + (neox ? i : 2 * i), ib = h * hd + (neox ? i + rd / 2 : 2 * i + 1);
                        cr_assert_float_eq(a[ia], x[ia] * cos(th) - x[ib] * sin(th), 2e-6, "rd %d pos %d", rd, pos);
                        cr_assert_float_eq(a[ib], x[ia] * sin(th) + x[ib] * cos(th), 2e-6, "rd %d pos %d", rd, pos);
                    }
                for (int i = 0; i < nh * hd; i++)
                    cr_assert(a[i] == b[i], "rd %d pos %d neox %d elem %d: %.9g vs %.9g", rd, pos, neox, i, a[i], b[i]);
            }
}

/* SwiGLU's own exp (ops.c, exp_vec): against the formula in double over
 * the whole float range that matters and past it (+-1e30), relative error
 * < 3e-7 of the result; where e^-g overflows the result is 0 against a true
 * value below |g u| e^-88.7 (< 2e-36 here), hence the absolute floor. NaN stays NaN. */
Test(ops, swiglu_matches_formula_everywhere) {
    enum { N = 20011 };
    static float g[N], u[N], o[N];
    unsigned s = 5;
    for (int i = 0; i < N; i++) {
        g[i] = -110.0f + 220.0f * (float)i / (N - 1); /* every exponent region, both clamps */
        u[i] = frand(&s) * 4.0f;
    }
    g[17] = 0.0f, g[18] = -0.0f, g[19] = 1e-30f, g[20] = -1e30f, g[21] = 1e30f;
    ko_swiglu(o, g, u, N);
    for (int i = 0; i < N; i++) {
        double want = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        cr_assert_leq(fabs(o[i] - want), 3e-7 * fabs(want) + 2e-36, "g %.9g u %.9g: %.9g vs %.17g", g[i],
                      u[i], o[i], want);
    }
    float gn[1] = {NAN}, un[1] = {1.0f}, on[1];
    ko_swiglu(on, gn, un, 1);
    cr_assert(isnan(on[0]));
}

/* SwiGLU's AVX-512 loop (kq_simd_level >= AVX512VNNI) gives the portable
 * loop's bits: the same inputs as above plus random ones, through both
 * levels. A fused multiply-add in either (fp-contract) would differ in
 * the last bit for many of them. */
Test(ops, swiglu_levels_agree) {
    kq_set_simd_level(-1);
    if (kq_simd_level() < KQ_SIMD_AVX512VNNI) cr_skip_test("no AVX-512 here");
    enum { N = 20011 };
    static float g[N], u[N], a[N], b[N];
    unsigned s = 9;
    for (int i = 0; i < N; i++) {
        g[i] = i % 2 ? -110.0f + 220.0f * (float)i / (N - 1) : frand(&s) * 12.0f;
        u[i] = frand(&s) * 4.0f;
    }
    g[17] = NAN, g[18] = -0.0f, g[19] = 1e-30f, g[20] = -1e30f, g[21] = 1e30f;
    ko_swiglu(a, g, u, N);
    kq_set_simd_level(KQ_SIMD_AVX2);
    ko_swiglu(b, g, u, N);
    kq_set_simd_level(-1);
    for (int i = 0; i < N; i++)
        cr_assert(!memcmp(&a[i], &b[i], sizeof(float)), "g %.9g u %.9g: %.9g vs %.9g", g[i], u[i], a[i], b[i]);
}

Test(ops, swiglu_softmax_add) {
    float g[3] = {-2, 0, 3}, u[3] = {1, 5, -2}, o[3];
    ko_swiglu(o, g, u, 3);
    for (int i = 0; i < 3; i++) cr_assert_float_eq(o[i], g[i] / (1 + exp(-g[i])) * u[i], 1e-6);
    float x[4] = {1000, 1001, 999, -INFINITY};
    float mx = ko_softmax(x, 4);
    cr_assert_eq(mx, 1001);
    double z = exp(-1) + 1 + exp(-2);
    cr_assert_float_eq(x[0], exp(-1) / z, 1e-6);
    cr_assert_float_eq(x[1], 1 / z, 1e-6);
    cr_assert_eq(x[3], 0.0f);
    float y[2] = {1, 2}, a[2] = {0.5f, -3};
    ko_add(y, a, 2);
    cr_assert(y[0] == 1.5f && y[1] == -1.0f);
}
