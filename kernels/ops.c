#include "ops.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "quant.h"

/* No multiply-add fuses in this file: the baseline x86-64 build has no FMA
 * anyway, and so the AVX-512 copy of SwiGLU below computes the same bits as
 * the portable loop. */
#pragma GCC optimize("fp-contract=off")

void ko_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    /* Accumulate in double: n is small (hidden size) and this keeps the
     * normalization from drifting against the reference at long sums. */
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* Pairs i0..i1-1 of the angles, into cs[2(i - i0)], cs[2(i - i0) + 1] */
static void rope_angles(float *cs, int i0, int i1, int rope_dim, int pos, float base) {
    for (int i = i0; i < i1; i++) {
        /* theta_i = pos * base^(-2i/rope_dim); computed in double because
         * pos * freq loses precision in float at long positions. */
        double freq = pow((double)base, -2.0 * i / rope_dim);
        double ang = pos * freq;
        cs[2 * (i - i0)] = (float)cos(ang);
        cs[2 * (i - i0) + 1] = (float)sin(ang);
    }
}

/* Pairs i0..i1-1 of every head rotated by those angles */
static void rope_rotate(float *x, int n_heads, int head_dim, int rope_dim, int i0, int i1,
                        const float *cs, int neox) {
    int half = rope_dim / 2;
    for (int i = i0; i < i1; i++) {
        float c = cs[2 * (i - i0)], s = cs[2 * (i - i0) + 1];
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)h * head_dim;
            int a = neox ? i : 2 * i;
            int b = neox ? i + half : 2 * i + 1;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

void ko_rope(float *x, int n_heads, int head_dim, int rope_dim, int pos, float base, int neox) {
    enum { CHUNK = 32 }; /* pairs per stack table */
    float cs[2 * CHUNK];
    for (int i0 = 0, half = rope_dim / 2; i0 < half; i0 += CHUNK) {
        int i1 = half - i0 < CHUNK ? half : i0 + CHUNK;
        rope_angles(cs, i0, i1, rope_dim, pos, base);
        rope_rotate(x, n_heads, head_dim, rope_dim, i0, i1, cs, neox);
    }
}

void ko_rope_angles(float *cs, int rope_dim, int pos, float base) {
    rope_angles(cs, 0, rope_dim / 2, rope_dim, pos, base);
}

void ko_rope_cs(float *x, int n_heads, int head_dim, int rope_dim, const float *cs, int neox) {
    rope_rotate(x, n_heads, head_dim, rope_dim, 0, rope_dim / 2, cs, neox);
}

/* e^x without a libm call, so the loops below vectorize (libm's expf was
 * 1,536 calls per layer in SwiGLU, ~0.8% of a 2-thread decode step):
 * x = n ln2 + r with ln2 in two parts (Cody-Waite) and |r| <= ln2/2, e^r by
 * Cephes' expf polynomial, 2^n built in the exponent field. The exponent
 * field is clamped to [0, 255], so past the float range the result is 0 or
 * inf (from x > 88.38, where expf reaches inf at 88.72; subnormal results
 * come out as 0); x itself is clamped to +-100 first, NaN included, so the
 * conversion of n to an int is defined (a NaN gate still makes SwiGLU NaN).
 * Relative error below 3e-7 against exp() in double (tests/kernels/test_ops.c). */
static inline float exp_vec(float x) {
    /* one select (two made GCC give up vectorizing the loop) */
    x = !(fabsf(x) <= 100.0f) ? copysignf(100.0f, x) : x;
    /* n = round(x / ln2): adding 1.5 * 2^23 drops the fraction bits */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = (int32_t)n + 127;
    e = e < 0 ? 0 : e > 255 ? 255 : e; /* 0: 2^n = 0; 255: inf */
    int32_t bits = e << 23;
    float two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    return p * two_n;
}

static inline float swiglu1(float g, float u) { return g / (1.0f + exp_vec(-g)) * u; }

static void swiglu(float *out, const float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) out[i] = swiglu1(gate[i], up[i]);
}

/* The same loop vectorized 16 lanes wide instead of SSE2's 4 (it was ~3% of
 * a prefill on the calling thread while the other waited; `perf`): the
 * same operations in the same order, so the same bits (ops::swiglu_levels_agree). */
__attribute__((target("avx512f"))) static void swiglu_avx512(float *out, const float *gate, const float *up,
                                                               int n) {
    for (int i = 0; i < n; i++) out[i] = swiglu1(gate[i], up[i]);
}

void ko_swiglu(float *out, const float *gate, const float *up, int n) {
    if (kq_simd_level() >= KQ_SIMD_AVX512VNNI) swiglu_avx512(out, gate, up, n);
    else swiglu(out, gate, up, n);
}

void ko_add(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += x[i];
}

float ko_softmax(float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
    return mx;
}
