/* kq Q4_1 with 16 rows in the lanes, on AVX2 (the kq_avx2 library: -mavx2
 * -mfma -mf16c; taken at the KQ_SIMD_AVX2 level only, quant_q41r16.c's
 * kernel above VNNI).
 *
 * Why: on an AVX2 CPU the row kernels (quant_avx2_tmpl.h) pay per row,
 * block and token an int-to-float conversion, a multiply-add and the scale
 * products on 8 lanes of partial sums, more instructions than the block's
 * two integer multiply-adds; a prefill spent 54% of workload c in them on a
 * Zen 3 host (docs/PERFORMANCE.md). Here a lane holds one row's whole block
 * sum, so the float work is once per 8 rows, token and block.
 *
 * Layout: km_repack16's (quant_q41r16.c): per 16 rows and block of 32
 * columns, 16 steps of 16 bytes (step k, byte r: row r's codes 2k | 2k+1
 * << 4), then the 16 rows' fp16 d and their fp16 m. A 256-bit register
 * holds 8 rows, so a group runs as two halves of 8 rows; a step's half
 * becomes the int16 pairs (code 2k, code 2k+1) of 8 dwords by one in-lane
 * shuffle of the step broadcast to both lanes (byte r to bytes 0 and 3 of
 * dword r: b | b << 24), a mask (low int16 = b & 15) and a 16-bit shift by
 * 12 (high int16 = b >> 4, the low one shifted out); a token's int16
 * activations 2k, 2k+1 are one broadcast dword and vpmaddwd adds both
 * products per row exactly (32 x 15 x 32767 < 2^31).
 *
 * Up to 8 tokens share a step's unpack; their float sums live in y (L1)
 * between blocks, so the 16 registers hold the 8 integer accumulators:
 * bench/bench_q41_rows16.c (one thread, matrix in cache, a Zen 3 host) 8
 * tokens 1.14-1.28x the AVX2 multi-token row kernel, 1 token 1.01-1.08x
 * dot4 (tokens 4 at a time with float sums in registers: 1.01-1.16x).
 *
 * Consistency: per lane the same steps as quant_q41r16.c (integer block
 * sums, then f += cvt(Σ)·(d·dx) and f += m·sx per block in column order,
 * fp-contract off), so its results equal the AVX-512 kernel's bit for bit,
 * and a row's result does not depend on the token count of the call (each
 * token's lanes see the same operations). */
#include <immintrin.h>
#include <string.h>

#include "quant_impl.h"

#define PF_BYTES 2048 /* prefetch distance of the one-token walk, as quant_q41r16.c */

/* Rows 8h..8h+7 of one group for NT tokens (the token count a constant):
 * NT integer accumulators and the unpacked step in registers, the float
 * sums in y itself (L1), so up to 8 tokens share one unpack. */
__attribute__((always_inline)) static inline void half8(const uint8_t *wg, int nb, int h, const kq_block_q16_1 *x,
                                                       size_t xb, float *y, int64_t ys, int prefetch, const int NT) {
    const __m256i idx = h ? _mm256_setr_epi8(8, -1, -1, 8, 9, -1, -1, 9, 10, -1, -1, 10, 11, -1, -1, 11, 12, -1, -1,
                                             12, 13, -1, -1, 13, 14, -1, -1, 14, 15, -1, -1, 15)
                          : _mm256_setr_epi8(0, -1, -1, 0, 1, -1, -1, 1, 2, -1, -1, 2, 3, -1, -1, 3, 4, -1, -1, 4, 5,
                                             -1, -1, 5, 6, -1, -1, 6, 7, -1, -1, 7);
    const __m256i lo4 = _mm256_set1_epi32(0x0000000F);
    for (int t = 0; t < NT; t++) _mm256_storeu_ps(y + (size_t)t * ys + 8 * h, _mm256_setzero_ps());
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = wg + (size_t)b * KQ_R16_BLOCK;
        if (prefetch)
            for (int o = 0; o < KQ_R16_BLOCK; o += 64) __builtin_prefetch(blk + PF_BYTES + o, 0, 3);
        __m256i acc[8];
        for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_si256();
        for (int k = 0; k < 16; k++) {
            const __m256i v = _mm256_shuffle_epi8(
                _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(blk + 16 * k))), idx);
            const __m256i c = _mm256_or_si256(_mm256_and_si256(v, lo4), _mm256_srli_epi16(v, 12));
            for (int t = 0; t < NT; t++) {
                int32_t xx;
                memcpy(&xx, ((const kq_block_q16_1 *)(const void *)((const char *)x + (size_t)t * xb))[b].q + 2 * k, 4);
                acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(c, _mm256_set1_epi32(xx)));
            }
        }
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(blk + 256 + 16 * h)));
        const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(blk + 288 + 16 * h)));
        for (int t = 0; t < NT; t++) {
            const kq_block_q16_1 *xq = (const kq_block_q16_1 *)(const void *)((const char *)x + (size_t)t * xb) + b;
            float *yt = y + (size_t)t * ys + 8 * h;
            __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[t]), _mm256_mul_ps(d, _mm256_set1_ps(xq->d)),
                                       _mm256_loadu_ps(yt));
            _mm256_storeu_ps(yt, _mm256_fmadd_ps(m, _mm256_set1_ps(xq->s), f));
        }
    }
}

__attribute__((always_inline)) static inline void group8(const uint8_t *wg, int nb, const kq_block_q16_1 *x,
                                                         size_t xb, float *y, int64_t ys, int prefetch, int nt) {
    for (int h = 0; h < 2; h++) switch (nt) {
        case 1: half8(wg, nb, h, x, xb, y, ys, prefetch && h == 0, 1); break;
        case 2: half8(wg, nb, h, x, xb, y, ys, 0, 2); break;
        case 3: half8(wg, nb, h, x, xb, y, ys, 0, 3); break;
        case 4: half8(wg, nb, h, x, xb, y, ys, 0, 4); break;
        case 5: half8(wg, nb, h, x, xb, y, ys, 0, 5); break;
        case 6: half8(wg, nb, h, x, xb, y, ys, 0, 6); break;
        case 7: half8(wg, nb, h, x, xb, y, ys, 0, 7); break;
        default: half8(wg, nb, h, x, xb, y, ys, 0, 8); break;
        }
}

void kq_avx2_q41r16_rows(int64_t cols, const void *w, int64_t groups, const void *x, size_t xb, int nt,
                         float *y, int64_t ys, int prefetch) {
    const int nb = (int)(cols / 32);
    for (int64_t g = 0; g < groups; g++) {
        const uint8_t *wg = (const uint8_t *)w + (size_t)g * (size_t)nb * KQ_R16_BLOCK;
        for (int t0 = 0; t0 < nt; t0 += 8)
            group8(wg, nb, (const kq_block_q16_1 *)(const void *)((const char *)x + (size_t)t0 * xb), xb,
                   y + (size_t)t0 * ys + 16 * g, ys, prefetch && nt == 1, nt - t0 < 8 ? nt - t0 : 8);
    }
}
