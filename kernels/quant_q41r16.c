/* kq Q4_1 with 16 rows in the lanes of a register (the kq_vbmi library:
 * compiled for AVX512F/BW/VL/VNNI, taken only at KQ_SIMD_AVX512VBMI).
 *
 * Why: the VBMI kernels of quant_avx512.c spread one row's block pair over
 * the 16 lanes, so every (row, token, block pair) pays an int-to-float
 * conversion, a multiply-add and the scale products on 16 lanes of partial
 * sums, about as many instructions as its two vpdpbusd. With 16 rows in the
 * 16 lanes a lane holds a whole block's integer sum, and the float work is
 * one conversion and two multiply-adds per 16 rows, token and block:
 * bench/bench_q41_rows16.c measured 1.93x the multi-token kernel over 8
 * tokens and 1.5-1.7x dot4 over one, one thread, matrix in cache.
 *
 * Layout (km_repack16): per group of 16 rows and block of 32 columns, 16
 * steps of 16 bytes (step k, byte r: row r's codes 2k | 2k+1 << 4), then
 * the 16 rows' fp16 d and their fp16 m: 320 bytes, the 20 bytes per row
 * and block of GGUF's Q4_1. A step's bytes widen to dwords and become the
 * int16 pair (code 2k, code 2k+1) per lane; a token's int16 activations
 * 2k, 2k+1 (kq_block_q16_1) are one broadcast dword, so one vpdpwssd adds
 * two products to each of 16 rows (exact: 32 x 15 x 32767 < 2^31).
 *
 * Q8_0 the same way (kq_vbmi_q80r16_rows; the default model's output
 * projection): per group and block 16 steps of 32 bytes (row r's signed
 * codes 2k, 2k+1 at bytes 2r, 2r+1), then the 16 rows' fp16 d: 544 bytes,
 * GGUF's 34 per row and block. A step sign-extends to the int16 pairs in
 * one instruction; |Σ| <= 32 x 128 x 32767 < 2^31. No min term.
 *
 * Up to 16 tokens share a step's unpack (16 accumulators; their float
 * sums may spill, touched once per block): on a Xeon (Emerald Rapids),
 * whose two 512-bit ports issue vpdpwssd, one call of 16 was 1.11x two of
 * 8 (bench_q41_rows16), and unrolling the 16 steps (GCC kept the
 * accumulators in place instead of copying them every step) 1.10x.
 *
 * Consistency: every token count runs the same steps per lane (blocks in
 * column order; f += d·dx·Σ then f += m·sx per block; summing the min
 * terms apart, as the row kernels do, moved test_reference's error from
 * mean 4.85e-4 / max 3.2e-3 to 5.3e-4 / 4.0e-3), so a row's result does
 * not depend on how many tokens share the call (matmul.h's contract). */
#include <immintrin.h>
#include <string.h>

#include "quant_impl.h"

#define PF_BYTES 2048 /* prefetch distance of the one-token (decode) walk, as matmul.c's */

/* One copy per (token count, format): Q8 selects Q8_0's steps. */
__attribute__((always_inline)) static inline void rows16(const uint8_t *w, int64_t groups, int nb,
                                                         const kq_block_q16_1 *x, size_t xb, float *y,
                                                         int64_t ys, int prefetch, const int NT, const int Q8) {
    const int bb = Q8 ? KQ_R16_BLOCK_Q8 : KQ_R16_BLOCK;
    const __m512i mask = _mm512_set1_epi32(0x000F000F);
    for (int64_t g = 0; g < groups; g++) {
        __m512 f[16];
        for (int t = 0; t < NT; t++) f[t] = _mm512_setzero_ps();
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = w + ((size_t)g * nb + b) * bb;
            if (prefetch)
                for (int o = 0; o < bb; o += 64) __builtin_prefetch(blk + PF_BYTES + o, 0, 3);
            __m512i acc[16];
            for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_si512();
#pragma GCC unroll 16
            for (int k = 0; k < 16; k++) {
                __m512i c;
                if (Q8) { /* 16 rows x (code 2k, 2k+1) sign-extended */
                    c = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 32 * k)));
                } else { /* (v | v << 12) & 0x000F000F: code 2k in the low int16, 2k+1 in the high */
                    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(blk + 16 * k)));
                    c = _mm512_ternarylogic_epi32(v, _mm512_slli_epi32(v, 12), mask, 0xA8);
                }
                for (int t = 0; t < NT; t++) {
                    int32_t xx;
                    memcpy(&xx, ((const kq_block_q16_1 *)(const void *)((const char *)x + (size_t)t * xb))[b].q + 2 * k, 4);
                    acc[t] = _mm512_dpwssd_epi32(acc[t], c, _mm512_set1_epi32(xx));
                }
            }
            const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(blk + (Q8 ? 512 : 256))));
            const __m512 m = Q8 ? d : _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 288)));
            for (int t = 0; t < NT; t++) {
                const kq_block_q16_1 *xq = (const kq_block_q16_1 *)(const void *)((const char *)x + (size_t)t * xb) + b;
                f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[t]), _mm512_mul_ps(d, _mm512_set1_ps(xq->d)), f[t]);
                if (!Q8) f[t] = _mm512_fmadd_ps(m, _mm512_set1_ps(xq->s), f[t]);
            }
        }
        for (int t = 0; t < NT; t++) _mm512_storeu_ps(y + (size_t)t * ys + 16 * g, f[t]);
    }
}

/* The token count a constant: the accumulators stay in registers. */
__attribute__((always_inline)) static inline void run(int64_t cols, const void *w, int64_t groups, const void *x,
                                                      size_t xb, int nt, float *y, int64_t ys, int prefetch,
                                                      const int Q8) {
    const int nb = (int)(cols / 32);
    const kq_block_q16_1 *xq = x;
    switch (nt) {
#define NT_CASE(n) case n: rows16(w, groups, nb, xq, xb, y, ys, prefetch, n, Q8); break;
    NT_CASE(1) NT_CASE(2) NT_CASE(3) NT_CASE(4) NT_CASE(5) NT_CASE(6) NT_CASE(7) NT_CASE(8)
    NT_CASE(9) NT_CASE(10) NT_CASE(11) NT_CASE(12) NT_CASE(13) NT_CASE(14) NT_CASE(15)
#undef NT_CASE
    default: rows16(w, groups, nb, xq, xb, y, ys, prefetch, 16, Q8); break;
    }
}

void kq_vbmi_q41r16_rows(int64_t cols, const void *w, int64_t groups, const void *x, size_t xb, int nt,
                         float *y, int64_t ys, int prefetch) {
    run(cols, w, groups, x, xb, nt, y, ys, prefetch, 0);
}

void kq_vbmi_q80r16_rows(int64_t cols, const void *w, int64_t groups, const void *x, size_t xb, int nt,
                         float *y, int64_t ys, int prefetch) {
    run(cols, w, groups, x, xb, nt, y, ys, prefetch, 1);
}
