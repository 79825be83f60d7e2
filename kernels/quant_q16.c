/* kq, 16-bit activations: the scalar quantizers and dot products for
 * KQ_Q16_1 / KQ_Q16_K activations, and the choice between them and the AVX2
 * and AVX512-VNNI builds of quant_avx2_q16.c.
 *
 * Why 16 bits: with 8-bit activations every matmul input carries an error of
 * up to amax/254, and over a 30-layer model that compounds to several % of
 * the logits. At 16 bits the step is amax/65534, 258x finer, for the same
 * integer-dot structure (int16 x int16 -> int32 instead of int8 x int8).
 *
 * int32 bounds used below (|q_x| <= 32767 since d = amax/32767 and the
 * rounding of amax * (1/d) stays below 32767.5):
 *   Q4_0 |q-8| <= 8:        8 * 32767 * 32   =   8.4e6 per block
 *   Q4_1 q <= 15:          15 * 32767 * 32   =  15.7e6
 *   Q5_0 |q-16| <= 16:     16 * 32767 * 32   =  16.8e6
 *   Q5_1 q <= 31:          31 * 32767 * 32   =  32.5e6
 *   Q8_0 |q| <= 128:      128 * 32767 * 32   = 134.2e6
 * all < 2^31 = 2147e6. The K-quants multiply by 6/8-bit sub-block scales
 * and overflow int32 over a super-block (Q4_K: 63 * 15.7e6 * 8 = 7.9e9;
 * Q6_K: 128 * 32 * 32767 * 16 = 2.1e9 per group), so the scalar versions sum
 * them in int64. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "quant_impl.h"

#define H2F(h) kq_fp16_to_fp32(h)

/* ---- quantizers ------------------------------------------------------------
 * d = amax/32767, q = nearest-even(x * (1/d)): the same recipe (and so the
 * same bytes) as the AVX2 versions, whose float->int conversion rounds to
 * nearest even. */

static float scale16(const float *x, int n, float *id)
{
    float amax = 0.0f;
    for (int j = 0; j < n; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 32767.0f;
    *id = d != 0.0f ? 1.0f / d : 0.0f;
    return d;
}

void kq_q16_quantize_1(const float *src, void *dst, int64_t n)
{
    kq_block_q16_1 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++, src += KQ_QK) {
        float id, d = scale16(src, KQ_QK, &id);
        int32_t sum = 0;
        for (int j = 0; j < KQ_QK; j++) {
            b[i].q[j] = (int16_t)lrintf(src[j] * id);
            sum += b[i].q[j];
        }
        b[i].d = d;
        b[i].s = d * (float)sum;
    }
}

void kq_q16_quantize_K(const float *src, void *dst, int64_t n)
{
    kq_block_q16_K *b = dst;
    for (int64_t i = 0; i < n / KQ_QKK; i++, src += KQ_QKK) {
        float id;
        b[i].d = scale16(src, KQ_QKK, &id);
        for (int g = 0; g < 8; g++) {
            int32_t sum = 0;
            for (int j = 32 * g; j < 32 * g + 32; j++) {
                b[i].q[j] = (int16_t)lrintf(src[j] * id);
                sum += b[i].q[j];
            }
            b[i].bsums[g] = sum;
        }
    }
}

/* ---- scalar dots -------------------------------------------------------------
 * Integer sum per block, one float multiply-add per block (as the AVX2
 * kernels, which differ only in the float summation order). */

static float dot_q4_0(int64_t n, const void *w, const void *x)
{
    const kq_block_q4_0 *a = w;
    const kq_block_q16_1 *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        int32_t s = 0;
        for (int j = 0; j < 16; j++)
            s += ((a[i].qs[j] & 0xF) - 8) * b[i].q[j] + ((a[i].qs[j] >> 4) - 8) * b[i].q[j + 16];
        sum += H2F(a[i].d) * b[i].d * (float)s;
    }
    return sum;
}

static float dot_q4_1(int64_t n, const void *w, const void *x)
{
    const kq_block_q4_1 *a = w;
    const kq_block_q16_1 *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        int32_t s = 0;
        for (int j = 0; j < 16; j++)
            s += (a[i].qs[j] & 0xF) * b[i].q[j] + (a[i].qs[j] >> 4) * b[i].q[j + 16];
        /* sum((q*dw + m) * qx*dx) = dw*dx*sum(q*qx) + m * (dx*sum(qx)) */
        sum += H2F(a[i].d) * b[i].d * (float)s + H2F(a[i].m) * b[i].s;
    }
    return sum;
}

static int32_t q5_isum(const uint8_t *qs, const uint8_t *qhp, const int16_t *x, int offset)
{
    uint32_t qh = (uint32_t)qhp[0] | (uint32_t)qhp[1] << 8 | (uint32_t)qhp[2] << 16 |
                  (uint32_t)qhp[3] << 24;
    int32_t s = 0;
    for (int j = 0; j < 16; j++) {
        int q0 = ((qs[j] & 0xF) | (int)((qh >> j) & 1) << 4) - offset;
        int q1 = ((qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - offset;
        s += q0 * x[j] + q1 * x[j + 16];
    }
    return s;
}

static float dot_q5_0(int64_t n, const void *w, const void *x)
{
    const kq_block_q5_0 *a = w;
    const kq_block_q16_1 *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++)
        sum += H2F(a[i].d) * b[i].d * (float)q5_isum(a[i].qs, a[i].qh, b[i].q, 16);
    return sum;
}

static float dot_q5_1(int64_t n, const void *w, const void *x)
{
    const kq_block_q5_1 *a = w;
    const kq_block_q16_1 *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++)
        sum += H2F(a[i].d) * b[i].d * (float)q5_isum(a[i].qs, a[i].qh, b[i].q, 0) +
               H2F(a[i].m) * b[i].s;
    return sum;
}

static float dot_q8_0(int64_t n, const void *w, const void *x)
{
    const kq_block_q8_0 *a = w;
    const kq_block_q16_1 *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        int32_t s = 0;
        for (int j = 0; j < KQ_QK; j++)
            s += a[i].qs[j] * b[i].q[j];
        sum += H2F(a[i].d) * b[i].d * (float)s;
    }
    return sum;
}

static float dot_q4_K(int64_t n, const void *w, const void *x)
{
    const kq_block_q4_K *a = w;
    const kq_block_q16_K *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QKK; i++) {
        int64_t sumi = 0, summ = 0;
        for (int c = 0; c < 4; c++) {
            uint8_t sc0, m0, sc1, m1;
            kq_q4k_scale_min(a[i].scales, 2 * c, &sc0, &m0);
            kq_q4k_scale_min(a[i].scales, 2 * c + 1, &sc1, &m1);
            const uint8_t *q = a[i].qs + 32 * c;
            const int16_t *y = b[i].q + 64 * c;
            int32_t s0 = 0, s1 = 0;
            for (int l = 0; l < 32; l++) {
                s0 += (q[l] & 0xF) * y[l];
                s1 += (q[l] >> 4) * y[l + 32];
            }
            sumi += (int64_t)sc0 * s0 + (int64_t)sc1 * s1;
            /* the min terms only need the activation sums per sub-block */
            summ += (int64_t)m0 * b[i].bsums[2 * c] + (int64_t)m1 * b[i].bsums[2 * c + 1];
        }
        sum += b[i].d * (H2F(a[i].d) * (float)sumi - H2F(a[i].dmin) * (float)summ);
    }
    return sum;
}

static float dot_q6_K(int64_t n, const void *w, const void *x)
{
    const kq_block_q6_K *a = w;
    const kq_block_q16_K *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QKK; i++) {
        int64_t sumi = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = a[i].ql + 64 * h, *qh = a[i].qh + 32 * h;
            const int8_t *sc = a[i].scales + 8 * h;
            const int16_t *y = b[i].q + 128 * h;
            /* per 16-value group; signed codes (q - 32) directly, since int16
             * activations need no unsigned trick and so no group sums */
            int32_t s[8] = {0};
            for (int l = 0; l < 32; l++) {
                int g = l / 16;
                s[g] += (((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32) * y[l];
                s[g + 2] += (((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32) * y[l + 32];
                s[g + 4] += (((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32) * y[l + 64];
                s[g + 6] += (((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32) * y[l + 96];
            }
            for (int g = 0; g < 8; g++)
                sumi += (int64_t)sc[g] * s[g];
        }
        sum += H2F(a[i].d) * b[i].d * (float)sumi;
    }
    return sum;
}

/* Multi-row dot = one row dot per activation row: trivially bit-identical to
 * the single dot (the consistency contract in quant_impl.h). */
#define DEFINE_MULTI(name, dotfn)                                                             \
    static void name(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,  \
                     int64_t os)                                                              \
    {                                                                                         \
        for (int i = 0; i < nx; i++)                                                          \
            out[i * os] = dotfn(n, w, (const char *)x + (size_t)i * xs);                      \
    }
DEFINE_MULTI(multi_q4_0, dot_q4_0)
DEFINE_MULTI(multi_q4_1, dot_q4_1)
DEFINE_MULTI(multi_q5_0, dot_q5_0)
DEFINE_MULTI(multi_q5_1, dot_q5_1)
DEFINE_MULTI(multi_q8_0, dot_q8_0)
DEFINE_MULTI(multi_q4_K, dot_q4_K)
DEFINE_MULTI(multi_q6_K, dot_q6_K)
DEFINE_MULTI(multi_avx2_q4_0, kq_avx2_q16_dot_q4_0)
DEFINE_MULTI(multi_avx2_q5_0, kq_avx2_q16_dot_q5_0)
DEFINE_MULTI(multi_avx2_q5_1, kq_avx2_q16_dot_q5_1)
DEFINE_MULTI(multi_avx2_q4_K, kq_avx2_q16_dot_q4_K)
DEFINE_MULTI(multi_avx2_q6_K, kq_avx2_q16_dot_q6_K)
DEFINE_MULTI(multi_vnni_q4_0, kq_vnni_q16_dot_q4_0)
DEFINE_MULTI(multi_vnni_q5_0, kq_vnni_q16_dot_q5_0)
DEFINE_MULTI(multi_vnni_q5_1, kq_vnni_q16_dot_q5_1)
DEFINE_MULTI(multi_vnni_q4_K, kq_vnni_q16_dot_q4_K)
DEFINE_MULTI(multi_vnni_q6_K, kq_vnni_q16_dot_q6_K)

/* Q4_1 at the VNNI level: the VNNI build of the AVX2 kernels, or with
 * -DKQ_Q41_PAIRS=1 the 512-bit pair kernels of quant_avx512.c; all three
 * (dot, dot4, multi) from one family, since the consistency contract holds
 * within a family. The pairs are not the default: on the Zen 4 EPYC they
 * were measured no faster than AVX2 (512-bit ops run as two 256-bit halves
 * there) while the VNNI build is ~9% faster (docs/PERFORMANCE.md). */
#ifndef KQ_Q41_PAIRS
#define KQ_Q41_PAIRS 0
#endif
#if KQ_Q41_PAIRS
#define Q41(f) kq_avx512_q16_##f##_q4_1
#else
#define Q41(f) kq_vnni_q16_##f##_q4_1
#endif

/* pick the kernel for level l among scalar / AVX2 / VNNI versions */
#define PICK(l, sc, avx2, vnni) ((l) >= KQ_SIMD_AVX512VNNI ? (vnni) : (l) == KQ_SIMD_AVX2 ? (avx2) : (sc))

kq_dot_fn kq_q16_get_dot(uint32_t type, int simd)
{
    switch (type) {
    case KQ_Q4_0: return PICK(simd, dot_q4_0, kq_avx2_q16_dot_q4_0, kq_vnni_q16_dot_q4_0);
    case KQ_Q4_1: return PICK(simd, dot_q4_1, kq_avx2_q16_dot_q4_1, Q41(dot));
    case KQ_Q5_0: return PICK(simd, dot_q5_0, kq_avx2_q16_dot_q5_0, kq_vnni_q16_dot_q5_0);
    case KQ_Q5_1: return PICK(simd, dot_q5_1, kq_avx2_q16_dot_q5_1, kq_vnni_q16_dot_q5_1);
    case KQ_Q8_0: return PICK(simd, dot_q8_0, kq_avx2_q16_dot_q8_0, kq_vnni_q16_dot_q8_0);
    case KQ_Q4_K: return PICK(simd, dot_q4_K, kq_avx2_q16_dot_q4_K, kq_vnni_q16_dot_q4_K);
    case KQ_Q6_K: return PICK(simd, dot_q6_K, kq_avx2_q16_dot_q6_K, kq_vnni_q16_dot_q6_K);
    default: return NULL;
    }
}

kq_dot_multi_fn kq_q16_get_dot_multi(uint32_t type, int simd)
{
    switch (type) {
    case KQ_Q4_0: return PICK(simd, multi_q4_0, multi_avx2_q4_0, multi_vnni_q4_0);
    case KQ_Q4_1: return PICK(simd, multi_q4_1, kq_avx2_q16_dot_multi_q4_1, Q41(dot_multi));
    case KQ_Q5_0: return PICK(simd, multi_q5_0, multi_avx2_q5_0, multi_vnni_q5_0);
    case KQ_Q5_1: return PICK(simd, multi_q5_1, multi_avx2_q5_1, multi_vnni_q5_1);
    case KQ_Q8_0: return PICK(simd, multi_q8_0, kq_avx2_q16_dot_multi_q8_0, kq_vnni_q16_dot_multi_q8_0);
    case KQ_Q4_K: return PICK(simd, multi_q4_K, multi_avx2_q4_K, multi_vnni_q4_K);
    case KQ_Q6_K: return PICK(simd, multi_q6_K, multi_avx2_q6_K, multi_vnni_q6_K);
    default: return NULL;
    }
}

kq_dot4_fn kq_q16_get_dot4(uint32_t type, int simd)
{
    if (type != KQ_Q4_1)
        return NULL;
    return PICK(simd, NULL, kq_avx2_q16_dot4_q4_1, Q41(dot4));
}
