/* kq portable kernels for 8-bit activations (Q8_0 / Q8_1 / Q8_K) and for
 * the float weights: the activation quantizers and the dot products, listed
 * in quant.c's type traits table. The 16-bit counterparts are quant_q16.c;
 * the 32-wide dots of both come from one template, quant_scalar_dots.h. */
#include <math.h>
#include <string.h>

#include "quant_impl.h"

#define H2F(h) kq_fp16_to_fp32(h)

/* ---- activation quantization -----------------------------------------------
 * Symmetric: d = amax/127, q = round-half-even(x / d) computed as x * (1/d)
 * so the SIMD versions can reproduce it bit for bit. */

void kq_scalar_quantize_q8_0(const float *src, void *dst, int64_t n)
{
    kq_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++, src += KQ_QK) {
        float id, d = kq_block_scale(src, KQ_QK, 127.0f, &id);
        b[i].d = kq_fp32_to_fp16(d);
        for (int j = 0; j < KQ_QK; j++)
            b[i].qs[j] = (int8_t)lrintf(src[j] * id);
    }
}

void kq_scalar_quantize_q8_K(const float *src, void *dst, int64_t n)
{
    kq_block_q8_K *b = dst;
    for (int64_t i = 0; i < n / KQ_QKK; i++, src += KQ_QKK) {
        float id;
        b[i].d = kq_block_scale(src, KQ_QKK, 127.0f, &id);
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int j = 16 * g; j < 16 * g + 16; j++) {
                b[i].qs[j] = (int8_t)lrintf(src[j] * id);
                sum += b[i].qs[j];
            }
            b[i].bsums[g] = (int16_t)sum;
        }
    }
}

/* F32 "quantization": the float weights' dots take the activations as they are */
void kq_scalar_quantize_f32(const float *src, void *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

/* ---- dots of the 32-wide formats and the Q8_1 quantizer (the template) ------ */

#define KQS_FN(name) kq_scalar_##name
#define KQS_X0 kq_block_q8_0
#define KQS_X0_D(b) H2F((b).d)
#define KQS_X1 kq_block_q8_1
#define KQS_Q qs
#define KQS_ELEM int8_t
#define KQS_QMAX 127.0f
#define KQS_QUANT_X1 kq_scalar_quantize_q8_1
#include "quant_scalar_dots.h"

/* ---- K-quant dots ------------------------------------------------------------- */

float kq_scalar_dot_q4_K(int64_t n, const void *w, const void *x)
{
    const kq_block_q4_K *a = w;
    const kq_block_q8_K *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QKK; i++) {
        int32_t sumi = 0, summ = 0;
        for (int c = 0; c < 4; c++) {
            uint8_t sc0, m0, sc1, m1;
            kq_q4k_scale_min(a[i].scales, 2 * c, &sc0, &m0);
            kq_q4k_scale_min(a[i].scales, 2 * c + 1, &sc1, &m1);
            const uint8_t *q = a[i].qs + 32 * c;
            const int8_t *y = b[i].qs + 64 * c;
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; l++) {
                s0 += (q[l] & 0xF) * y[l];
                s1 += (q[l] >> 4) * y[l + 32];
            }
            sumi += sc0 * s0 + sc1 * s1;
            /* the min terms only need the activation sums per sub-block */
            summ += m0 * (b[i].bsums[4 * c] + b[i].bsums[4 * c + 1]) +
                    m1 * (b[i].bsums[4 * c + 2] + b[i].bsums[4 * c + 3]);
        }
        sum += b[i].d * (H2F(a[i].d) * (float)sumi - H2F(a[i].dmin) * (float)summ);
    }
    return sum;
}

float kq_scalar_dot_q6_K(int64_t n, const void *w, const void *x)
{
    const kq_block_q6_K *a = w;
    const kq_block_q8_K *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QKK; i++) {
        int32_t sumi = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = a[i].ql + 64 * h, *qh = a[i].qh + 32 * h;
            const int8_t *sc = a[i].scales + 8 * h, *y = b[i].qs + 128 * h;
            int s[8] = {0}; /* per 16-value group, unsigned q (offset folded below) */
            for (int l = 0; l < 32; l++) {
                int g = l / 16;
                s[g] += ((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) * y[l];
                s[g + 2] += ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) * y[l + 32];
                s[g + 4] += ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) * y[l + 64];
                s[g + 6] += ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) * y[l + 96];
            }
            for (int g = 0; g < 8; g++)
                sumi += sc[g] * (s[g] - 32 * b[i].bsums[8 * h + g]);
        }
        sum += H2F(a[i].d) * b[i].d * (float)sumi;
    }
    return sum;
}

/* ---- float weights (f32 activations at either precision) ------------------- */

float kq_scalar_dot_f32(int64_t n, const void *w, const void *x)
{
    const float *a = w, *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}

float kq_scalar_dot_f16(int64_t n, const void *w, const void *x)
{
    const uint16_t *a = w;
    const float *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        sum += H2F(a[i]) * b[i];
    return sum;
}

float kq_scalar_dot_bf16(int64_t n, const void *w, const void *x)
{
    const uint16_t *a = w;
    const float *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        sum += kq_bf16_to_fp32(a[i]) * b[i];
    return sum;
}
