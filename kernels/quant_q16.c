/* kq, 16-bit activations: the portable quantizers and dot products for
 * KQ_Q16_1 / KQ_Q16_K activations (listed, with the AVX2 and AVX512-VNNI
 * builds of quant_avx2_q16.c, in quant.c's type traits table). The 32-wide
 * dots are quant_scalar_dots.h's, shared with the 8-bit ones.
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

#include "quant_impl.h"

#define H2F(h) kq_fp16_to_fp32(h)

/* ---- quantizers ------------------------------------------------------------
 * d = amax/32767, q = nearest-even(x * (1/d)): the same recipe (and so the
 * same bytes) as the AVX2 versions, whose float->int conversion rounds to
 * nearest even. */

void kq_q16_quantize_K(const float *src, void *dst, int64_t n)
{
    kq_block_q16_K *b = dst;
    for (int64_t i = 0; i < n / KQ_QKK; i++, src += KQ_QKK) {
        float id;
        b[i].d = kq_block_scale(src, KQ_QKK, 32767.0f, &id);
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

/* ---- dots of the 32-wide formats and the Q16_1 quantizer (the template) ----- */

#define KQS_FN(name) kq_scalar_q16_##name
#define KQS_X0 kq_block_q16_1
#define KQS_X0_D(b) (b).d
#define KQS_X1 kq_block_q16_1
#define KQS_Q q
#define KQS_ELEM int16_t
#define KQS_QMAX 32767.0f
#define KQS_QUANT_X1 kq_q16_quantize_1
#include "quant_scalar_dots.h"

/* ---- K-quant dots ------------------------------------------------------------- */

float kq_scalar_q16_dot_q4_K(int64_t n, const void *w, const void *x)
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

float kq_scalar_q16_dot_q6_K(int64_t n, const void *w, const void *x)
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
