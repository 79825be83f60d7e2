/* kq dequantizers: one per format, f32 out (the `dequantize` entries of the
 * type traits table in quant.c). n is a multiple of the format's block size;
 * kq_dequantize_row checks it. Portable C only: these serve model loading,
 * km_get_row and tests, not the hot loops. */
#include <string.h>

#include "quant_impl.h"

#define H2F(h) kq_fp16_to_fp32(h)

static uint32_t load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void kq_dequant_f32(const void *src, float *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void kq_dequant_f16(const void *src, float *dst, int64_t n)
{
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = H2F(h[i]);
}

void kq_dequant_bf16(const void *src, float *dst, int64_t n)
{
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = kq_bf16_to_fp32(h[i]);
}

void kq_dequant_q4_0(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        const kq_block_q4_0 *b = (const kq_block_q4_0 *)src + i;
        float d = H2F(b->d), *y = dst + i * KQ_QK;
        for (int j = 0; j < 16; j++) {
            y[j] = ((b->qs[j] & 0xF) - 8) * d;
            y[j + 16] = ((b->qs[j] >> 4) - 8) * d;
        }
    }
}

void kq_dequant_q4_1(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        const kq_block_q4_1 *b = (const kq_block_q4_1 *)src + i;
        float d = H2F(b->d), m = H2F(b->m), *y = dst + i * KQ_QK;
        for (int j = 0; j < 16; j++) {
            y[j] = (b->qs[j] & 0xF) * d + m;
            y[j + 16] = (b->qs[j] >> 4) * d + m;
        }
    }
}

/* The 32 5-bit codes of a Q5 block: nibble | (bit j of qh) << 4. */
static void q5_codes(const uint8_t *qs, const uint8_t *qhp, int *q)
{
    uint32_t qh = load_u32le(qhp);
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
        q[j + 16] = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
    }
}

void kq_dequant_q5_0(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        const kq_block_q5_0 *b = (const kq_block_q5_0 *)src + i;
        float d = H2F(b->d), *y = dst + i * KQ_QK;
        int q[KQ_QK];
        q5_codes(b->qs, b->qh, q);
        for (int j = 0; j < KQ_QK; j++)
            y[j] = (q[j] - 16) * d;
    }
}

void kq_dequant_q5_1(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        const kq_block_q5_1 *b = (const kq_block_q5_1 *)src + i;
        float d = H2F(b->d), m = H2F(b->m), *y = dst + i * KQ_QK;
        int q[KQ_QK];
        q5_codes(b->qs, b->qh, q);
        for (int j = 0; j < KQ_QK; j++)
            y[j] = q[j] * d + m;
    }
}

void kq_dequant_q8_0(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        const kq_block_q8_0 *b = (const kq_block_q8_0 *)src + i;
        float d = H2F(b->d);
        for (int j = 0; j < KQ_QK; j++)
            dst[i * KQ_QK + j] = b->qs[j] * d;
    }
}

void kq_dequant_q8_1(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        const kq_block_q8_1 *b = (const kq_block_q8_1 *)src + i;
        for (int j = 0; j < KQ_QK; j++)
            dst[i * KQ_QK + j] = b->qs[j] * b->d;
    }
}

void kq_dequant_q8_K(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / KQ_QKK; i++) {
        const kq_block_q8_K *b = (const kq_block_q8_K *)src + i;
        for (int j = 0; j < KQ_QKK; j++)
            dst[i * KQ_QKK + j] = b->qs[j] * b->d;
    }
}

void kq_dequant_q16_1(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        const kq_block_q16_1 *b = (const kq_block_q16_1 *)src + i;
        for (int j = 0; j < KQ_QK; j++)
            dst[i * KQ_QK + j] = b->q[j] * b->d;
    }
}

void kq_dequant_q16_K(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / KQ_QKK; i++) {
        const kq_block_q16_K *b = (const kq_block_q16_K *)src + i;
        for (int j = 0; j < KQ_QKK; j++)
            dst[i * KQ_QKK + j] = b->q[j] * b->d;
    }
}

void kq_dequant_q4_K(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / KQ_QKK; i++) {
        const kq_block_q4_K *b = (const kq_block_q4_K *)src + i;
        float d = H2F(b->d), dmin = H2F(b->dmin), *y = dst + i * KQ_QKK;
        for (int c = 0; c < 4; c++) { /* chunk of 64: sub-blocks 2c, 2c+1 */
            uint8_t sc0, m0, sc1, m1;
            kq_q4k_scale_min(b->scales, 2 * c, &sc0, &m0);
            kq_q4k_scale_min(b->scales, 2 * c + 1, &sc1, &m1);
            const uint8_t *q = b->qs + 32 * c;
            for (int l = 0; l < 32; l++) {
                y[64 * c + l] = d * sc0 * (q[l] & 0xF) - dmin * m0;
                y[64 * c + 32 + l] = d * sc1 * (q[l] >> 4) - dmin * m1;
            }
        }
    }
}

void kq_dequant_q6_K(const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n / KQ_QKK; i++) {
        const kq_block_q6_K *b = (const kq_block_q6_K *)src + i;
        float d = H2F(b->d);
        for (int h = 0; h < 2; h++) { /* halves of 128 values */
            const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
            const int8_t *sc = b->scales + 8 * h;
            float *y = dst + i * KQ_QKK + 128 * h;
            for (int l = 0; l < 32; l++) {
                int s = l / 16;
                int q1 = ((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32;
                int q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32;
                int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                y[l] = d * sc[s] * q1;
                y[l + 32] = d * sc[s + 2] * q2;
                y[l + 64] = d * sc[s + 4] * q3;
                y[l + 96] = d * sc[s + 6] * q4;
            }
        }
    }
}
