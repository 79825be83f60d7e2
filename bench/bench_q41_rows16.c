/* A candidate layout for Q4_1 matrices, measured against the shipped
 * kernels (not part of the test suite, and not used by the engine yet):
 * 16 rows interleaved so that each 32-bit lane of a 512-bit register is a
 * row. The shipped VBMI kernels (kernels/quant_avx512.c) put one row's 64
 * weights of a block pair across the 16 lanes, so every (row, token, block
 * pair) pays an int-to-float conversion, a multiply-add and the scale
 * products on 16 lanes of partial sums, about as many instructions as its
 * two vpdpbusd; with rows in lanes a lane holds a whole block's integer sum
 * and the float work is one conversion and two multiply-adds per 16 rows.
 *
 * Layout of a 16-row group, per block of 32 columns: 16 steps of 16 bytes
 * (step k, byte r: row r's codes 2k | 2k+1 << 4), then the 16 rows' fp16 d
 * and their fp16 m (320 bytes, the same 20 bytes per row and block as
 * GGUF's Q4_1). A step's bytes widen to dwords and become the int16 pair
 * (code 2k, code 2k+1) per lane in two more instructions; a token's two
 * int16 activations 2k, 2k+1 (kq_block_q16_1) are one broadcast dword, so
 * one vpdpwssd adds 2 products to each of 16 rows. The same code runs for
 * 1..8 tokens, so a row's result does not depend on how many tokens share
 * the call (matmul.h's determinism contract), and the float order per row
 * is fixed: blocks in column order, d·dx·Σ then m·sx.
 *
 *   ninja -C build bench/bench_q41_rows16
 *   build/bench/bench_q41_rows16 [cols rows]     (default 576 1536; rows % 16 == 0)
 *
 * One thread, matrix cache-resident (instructions, not memory): the
 * shipped multi-token kernel over 8 tokens against the candidate with 8,
 * the shipped dot4 over 1 token against the candidate with 1; medians of
 * 11 alternated rounds. Exits 1 if the two disagree by more than float
 * rounding allows (2e-6 of sum |w x| per output). */
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant.h"
#include "quant_impl.h"

#define AV __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")))
#define GB 320 /* bytes per 16 rows and block */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int code_at(const kq_block_q4_1 *b, int j) { return j < 16 ? b->qs[j] & 15 : b->qs[j - 16] >> 4; }

/* GGUF rows (wrb bytes each) into 16-row groups. */
static void repack16(const uint8_t *w, size_t wrb, int rows, int nb, uint8_t *out) {
    for (int g = 0; g < rows / 16; g++)
        for (int b = 0; b < nb; b++) {
            uint8_t *o = out + ((size_t)g * nb + b) * GB;
            for (int r = 0; r < 16; r++) {
                const kq_block_q4_1 *blk = (const kq_block_q4_1 *)(const void *)(w + (size_t)(16 * g + r) * wrb) + b;
                for (int k = 0; k < 16; k++)
                    o[16 * k + r] = (uint8_t)(code_at(blk, 2 * k) | code_at(blk, 2 * k + 1) << 4);
                memcpy(o + 256 + 2 * r, &blk->d, 2);
                memcpy(o + 288 + 2 * r, &blk->m, 2);
            }
        }
}

/* y[t * ys + row] for NT tokens (x: NT rows of kq_block_q16_1). */
AV __attribute__((always_inline)) static inline void rows16(const uint8_t *W, int groups, int nb,
                                                            const kq_block_q16_1 *x, float *y, int ys,
                                                            const int NT) {
    const __m512i mask = _mm512_set1_epi32(0x000F000F);
    for (int g = 0; g < groups; g++) {
        __m512 f[8];
        for (int t = 0; t < NT; t++) f[t] = _mm512_setzero_ps();
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = W + ((size_t)g * nb + b) * GB;
            __m512i acc[8];
            for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_si512();
            for (int k = 0; k < 16; k++) {
                const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(blk + 16 * k)));
                /* (v | v << 12) & 0x000F000F: code 2k in the low int16, 2k+1 in the high */
                const __m512i c = _mm512_ternarylogic_epi32(v, _mm512_slli_epi32(v, 12), mask, 0xA8);
                for (int t = 0; t < NT; t++) {
                    int32_t xx;
                    memcpy(&xx, x[(size_t)t * nb + b].q + 2 * k, 4);
                    acc[t] = _mm512_dpwssd_epi32(acc[t], c, _mm512_set1_epi32(xx));
                }
            }
            const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 256)));
            const __m512 m = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 288)));
            for (int t = 0; t < NT; t++) {
                const kq_block_q16_1 *xb = &x[(size_t)t * nb + b];
                f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[t]), _mm512_mul_ps(d, _mm512_set1_ps(xb->d)), f[t]);
                f[t] = _mm512_fmadd_ps(m, _mm512_set1_ps(xb->s), f[t]);
            }
        }
        for (int t = 0; t < NT; t++) _mm512_storeu_ps(y + (size_t)t * ys + 16 * g, f[t]);
    }
}

AV static void rows16_x8(const uint8_t *W, int groups, int nb, const kq_block_q16_1 *x, float *y, int ys) {
    rows16(W, groups, nb, x, y, ys, 8);
}
AV static void rows16_x1(const uint8_t *W, int groups, int nb, const kq_block_q16_1 *x, float *y, int ys) {
    rows16(W, groups, nb, x, y, ys, 1);
}

enum { NT = 8, ROUNDS = 11 };

int main(int argc, char **argv) {
    const int cols = argc > 2 ? atoi(argv[1]) : 576, rows = argc > 2 ? atoi(argv[2]) : 1536;
    if (kq_simd_cpu_level() < KQ_SIMD_AVX512VBMI || cols <= 0 || cols % 32 || rows <= 0 || rows % 16) {
        fprintf(stderr, "bench_q41_rows16: needs an AVX512-VBMI CPU, cols %% 32 == 0, rows %% 16 == 0\n");
        return 2;
    }
    const int nb = cols / 32;
    const size_t wrb = kq_row_bytes(KQ_Q4_1, cols), xrb = kq_row_bytes(KQ_Q16_1, cols);
    const kq_dot_family vbmi = {.prep = kq_vbmi_q16_prep_pairs, .prep_pair_bytes = KQ_VBMI_PAIR_BYTES};
    const size_t prb = kq_prep_row_bytes(&vbmi, KQ_Q16_1, cols);
    uint8_t *w = malloc(wrb * rows), *wr = malloc((size_t)rows / 16 * nb * GB), *xq = malloc(xrb * NT),
            *xp = malloc(prb * NT);
    float *x = malloc(sizeof(float) * cols * NT), *y0 = malloc(sizeof(float) * rows * NT),
          *y1 = malloc(sizeof(float) * rows * NT);
    if (!w || !wr || !xq || !xp || !x || !y0 || !y1) return 1;
    uint64_t s = 1;
    for (size_t i = 0; i < wrb * rows; i++) {
        s = s * 6364136223846793005ULL + 1;
        w[i] = (uint8_t)(s >> 56);
    }
    for (size_t o = 0; o < wrb * rows; o += 20) { /* finite fp16 d and m */
        w[o + 1] &= 0x3B;
        w[o + 3] &= 0x3B;
    }
    for (int i = 0; i < cols * NT; i++) x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    for (int t = 0; t < NT; t++) {
        kq_q16_quantize_1(x + t * cols, xq + t * xrb, cols);
        kq_vbmi_q16_prep_pairs(cols, xq + t * xrb, xp + t * prb);
    }
    repack16(w, wrb, rows, nb, wr);
    const kq_block_q16_1 *xb = (const kq_block_q16_1 *)(const void *)xq;

    /* agreement: 8 tokens and 1, against the shipped multi-token kernel */
    for (int i = 0; i < rows; i++) kq_vbmi_q16_dot_multi_q4_1(cols, w + i * wrb, xp, prb, NT, y0 + i, rows);
    rows16_x8(wr, rows / 16, nb, xb, y1, rows);
    float y1one[16];
    double worst = 0;
    for (int t = 0; t < NT; t++)
        for (int i = 0; i < rows; i++) {
            double mag = 0;
            for (int c = 0; c < cols; c++) {
                const kq_block_q4_1 *blk = (const kq_block_q4_1 *)(const void *)(w + (size_t)i * wrb) + c / 32;
                const double wv = kq_fp16_to_fp32(blk->d) * code_at(blk, c % 32) + kq_fp16_to_fp32(blk->m);
                mag += fabs(wv * x[t * cols + c]);
            }
            const double e = fabs((double)y0[t * rows + i] - y1[t * rows + i]) / (mag + 1e-30);
            if (e > worst) worst = e;
        }
    rows16_x1(wr, 1, nb, xb + (size_t)(NT - 1) * nb, y1one, 16); /* token 7 alone, first 16 rows */
    int same = !memcmp(y1one, y1 + (size_t)(NT - 1) * rows, sizeof y1one);
    printf("Q4_1, cols %d rows %d: candidate vs shipped within %.2g of sum|w x|; 1 token alone %s 8 tokens\n",
           cols, rows, worst, same ? "bit-identical to" : "DIFFERS from");
    if (worst > 2e-6 || !same) return 1;

    static double tm[4][ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now();
        for (int it = 0; it < 20; it++)
            for (int i = 0; i < rows; i++) kq_vbmi_q16_dot_multi_q4_1(cols, w + i * wrb, xp, prb, NT, y0 + i, rows);
        double t1 = now();
        for (int it = 0; it < 20; it++) rows16_x8(wr, rows / 16, nb, xb, y1, rows);
        double t2 = now();
        for (int it = 0; it < 200; it++)
            for (int i = 0; i < rows; i += 4) kq_vbmi_q16_dot4_q4_1(cols, w + i * wrb, wrb, xp, y0 + i);
        double t3 = now();
        for (int it = 0; it < 200; it++) rows16_x1(wr, rows / 16, nb, xb, y1, rows);
        double t4 = now();
        tm[0][r] = (t1 - t0) / 20, tm[1][r] = (t2 - t1) / 20, tm[2][r] = (t3 - t2) / 200, tm[3][r] = (t4 - t3) / 200;
    }
    for (int k = 0; k < 4; k++) qsort(tm[k], ROUNDS, sizeof(double), cmp);
    const double flop8 = 2.0 * cols * rows * NT, flop1 = 2.0 * cols * rows;
    printf("8 tokens: shipped multi %.1f us (%.0f GFLOP/s), rows-in-lanes %.1f us (%.0f GFLOP/s): %.2fx\n",
           tm[0][ROUNDS / 2] * 1e6, flop8 / tm[0][ROUNDS / 2] * 1e-9, tm[1][ROUNDS / 2] * 1e6,
           flop8 / tm[1][ROUNDS / 2] * 1e-9, tm[0][ROUNDS / 2] / tm[1][ROUNDS / 2]);
    printf("1 token:  shipped dot4  %.1f us (%.0f GFLOP/s), rows-in-lanes %.1f us (%.0f GFLOP/s): %.2fx\n",
           tm[2][ROUNDS / 2] * 1e6, flop1 / tm[2][ROUNDS / 2] * 1e-9, tm[3][ROUNDS / 2] * 1e6,
           flop1 / tm[3][ROUNDS / 2] * 1e-9, tm[2][ROUNDS / 2] / tm[3][ROUNDS / 2]);
    free(w), free(wr), free(xq), free(xp), free(x), free(y0), free(y1);
    return 0;
}
