/* The 16-row Q4_1 kernel (kernels/quant_q41r16.c, on matrices km_repack16
 * wrote) against the row kernels it replaced for repacked matrices
 * (kernels/quant_avx512.c), in one run (not part of the test suite); on a
 * CPU without AVX512-VBMI the AVX2 16-row kernel (quant_q41r16_avx2.c)
 * against the AVX2 row kernels (quant_avx2_tmpl.h) the same way. The
 * row kernels put one row's 64 weights of a block pair across the 16 lanes,
 * so every (row, token, block pair) pays an int-to-float conversion, a
 * multiply-add and the scale products on 16 lanes of partial sums, about
 * as many instructions as its two vpdpbusd; with rows in lanes a lane holds
 * a whole block's integer sum and the float work is one conversion and two
 * multiply-adds per 16 rows, token and block. (This program first held the
 * kernel as a candidate; its figures are why the engine took it.)
 *
 *   ninja -C build bench/bench_q41_rows16
 *   build/bench/bench_q41_rows16 [cols rows]     (default 576 1536; rows % 16 == 0)
 *   BENCH_AVX2=1 build/bench/bench_q41_rows16    (the AVX2 kernels on a VBMI CPU)
 *
 * One thread, matrix cache-resident (instructions, not memory): the row
 * kernels' multi-token kernel over 8 tokens against the 16-row kernel with
 * 8, dot4 over 1 token against the 16-row kernel with 1; medians of 11
 * alternated rounds. Exits 1 if the two disagree by more than float
 * rounding allows (2e-6 of sum |w x| per output) or one token alone gives
 * other bits than the same token among 8. On VBMI also 16 tokens in one
 * call against two calls of 8 (the same bits, or exit 1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "matmul.h"
#include "quant.h"
#include "quant_impl.h"
#include "bench_q41_data.h"

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

/* The kernels of the CPU's level: VBMI (the row kernels on prepared pairs)
 * or AVX2 (on the plain 16-bit blocks). */
static kq_r16_kernel *k16;
static kq_dot_multi_kernel *kmulti;
static kq_dot4_kernel *kdot4;

enum { NT = 8, NT16 = 16, ROUNDS = 11 };

static void rows16_x8(const uint8_t *W, int groups, int cols, const void *x, size_t xb, float *y, int ys) {
    k16(cols, W, groups, x, xb, 8, y, ys, 0);
}
static void rows16_x1(const uint8_t *W, int groups, int cols, const void *x, size_t xb, float *y, int ys) {
    k16(cols, W, groups, x, xb, 1, y, ys, 0);
}

/* 16 tokens as two calls of 8, and as one call of 16 (VBMI: one unpack per
 * step for all 16); y: rows * 16 floats. */
static void rows16_2x8(const uint8_t *W, int rows, int cols, const uint8_t *x, size_t xb, float *y) {
    rows16_x8(W, rows / 16, cols, x, xb, y, rows);
    rows16_x8(W, rows / 16, cols, x + (size_t)NT * xb, xb, y + (size_t)NT * rows, rows);
}
static void rows16_x16(const uint8_t *W, int rows, int cols, const uint8_t *x, size_t xb, float *y) {
    k16(cols, W, rows / 16, x, xb, NT16, y, rows, 0);
}

/* 1 when one call of 16 gives the bits of two calls of 8 (ya, yb: rows * 16 floats). */
static int same16(const uint8_t *wr, int rows, int cols, const uint8_t *xq, size_t xrb, float *ya, float *yb) {
    rows16_x16(wr, rows, cols, xq, xrb, ya);
    rows16_2x8(wr, rows, cols, xq, xrb, yb);
    return !memcmp(ya, yb, sizeof(float) * rows * NT16);
}

int main(int argc, char **argv) {
    const int cols = argc > 2 ? atoi(argv[1]) : 576, rows = argc > 2 ? atoi(argv[2]) : 1536;
    /* BENCH_AVX2=1: the AVX2 kernels on a VBMI CPU */
    const int vb = kq_simd_cpu_level() >= KQ_SIMD_AVX512VBMI && !getenv("BENCH_AVX2");
    if (kq_simd_cpu_level() < KQ_SIMD_AVX2 || cols <= 0 || cols % 32 || rows <= 0 || rows % 16) {
        fprintf(stderr, "bench_q41_rows16: needs an AVX2 CPU, cols %% 32 == 0, rows %% 16 == 0\n");
        return 2;
    }
    k16 = vb ? kq_vbmi_q41r16_rows : kq_avx2_q41r16_rows;
    kmulti = vb ? kq_vbmi_q16_dot_multi_q4_1 : kq_avx2_q16_dot_multi_q4_1;
    kdot4 = vb ? kq_vbmi_q16_dot4_q4_1 : kq_avx2_q16_dot4_q4_1;
    printf("%s kernels\n", vb ? "AVX512-VBMI" : "AVX2");
    const int nb = cols / 32;
    const size_t wrb = kq_row_bytes(KQ_Q4_1, cols), xrb = kq_row_bytes(KQ_Q16_1, cols);
    const kq_dot_family vbmi = {.prep = kq_vbmi_q16_prep_pairs, .prep_pair_bytes = KQ_VBMI_PAIR_BYTES};
    const size_t prb = vb ? kq_prep_row_bytes(&vbmi, KQ_Q16_1, cols) : xrb;
    uint8_t *w = malloc(wrb * rows), *wr = aligned_alloc(64, (size_t)rows / 16 * nb * KQ_R16_BLOCK), *xq = malloc(xrb * NT16),
            *xp = malloc(prb * NT);
    float *x = malloc(sizeof(float) * cols * NT16), *y0 = malloc(sizeof(float) * rows * NT16),
          *y1 = malloc(sizeof(float) * rows * NT16);
    if (!w || !wr || !xq || !xp || !x || !y0 || !y1) return 1;
    q41_bench_data(w, wrb * rows, x, cols * NT16);
    for (int t = NT; t < NT16; t++) kq_q16_quantize_1(x + t * cols, xq + t * xrb, cols);
    for (int t = 0; t < NT; t++) {
        kq_q16_quantize_1(x + t * cols, xq + t * xrb, cols);
        if (vb) kq_vbmi_q16_prep_pairs(cols, xq + t * xrb, xp + t * prb);
        else memcpy(xp + t * prb, xq + t * xrb, xrb); /* the AVX2 row kernels take the plain blocks */
    }
    const km_weight kw = {KQ_Q4_1, cols, rows, w, NULL};
    km_repack16(&kw, wr);

    /* agreement: 8 tokens and 1, against the shipped multi-token kernel */
    for (int i = 0; i < rows; i++) kmulti(cols, w + i * wrb, xp, prb, NT, y0 + i, rows);
    rows16_x8(wr, rows / 16, cols, xq, xrb, y1, rows);
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
    rows16_x1(wr, 1, cols, xq + (size_t)(NT - 1) * xrb, xrb, y1one, 16); /* token 7 alone, first 16 rows */
    int same = !memcmp(y1one, y1 + (size_t)(NT - 1) * rows, sizeof y1one);
    printf("Q4_1, cols %d rows %d: 16-row vs row kernels within %.2g of sum|w x|; 1 token alone %s 8 tokens\n",
           cols, rows, worst, same ? "bit-identical to" : "DIFFERS from");
    if (worst > 2e-6 || !same) return 1;
    if (vb && !same16(wr, rows, cols, xq, xrb, y0, y1)) {
        printf("16 tokens in one call DIFFER from two calls of 8\n");
        return 1;
    }

    static double tm[6][ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now();
        for (int it = 0; it < 20; it++)
            for (int i = 0; i < rows; i++) kmulti(cols, w + i * wrb, xp, prb, NT, y0 + i, rows);
        double t1 = now();
        for (int it = 0; it < 20; it++) rows16_x8(wr, rows / 16, cols, xq, xrb, y1, rows);
        double t2 = now();
        for (int it = 0; it < 200; it++)
            for (int i = 0; i < rows; i += 4) kdot4(cols, w + i * wrb, wrb, xp, y0 + i);
        double t3 = now();
        for (int it = 0; it < 200; it++) rows16_x1(wr, rows / 16, cols, xq, xrb, y1, rows);
        double t4 = now();
        tm[0][r] = (t1 - t0) / 20, tm[1][r] = (t2 - t1) / 20, tm[2][r] = (t3 - t2) / 200, tm[3][r] = (t4 - t3) / 200;
        if (vb) {
            for (int it = 0; it < 20; it++) rows16_2x8(wr, rows, cols, xq, xrb, y1);
            double t5 = now();
            for (int it = 0; it < 20; it++) rows16_x16(wr, rows, cols, xq, xrb, y1);
            double t6 = now();
            tm[4][r] = (t5 - t4) / 20, tm[5][r] = (t6 - t5) / 20;
        }
    }
    for (int k = 0; k < 6; k++) qsort(tm[k], ROUNDS, sizeof(double), cmp);
    const double flop8 = 2.0 * cols * rows * NT, flop1 = 2.0 * cols * rows;
    printf("8 tokens: row multi %.1f us (%.0f GFLOP/s), 16-row %.1f us (%.0f GFLOP/s): %.2fx\n",
           tm[0][ROUNDS / 2] * 1e6, flop8 / tm[0][ROUNDS / 2] * 1e-9, tm[1][ROUNDS / 2] * 1e6,
           flop8 / tm[1][ROUNDS / 2] * 1e-9, tm[0][ROUNDS / 2] / tm[1][ROUNDS / 2]);
    printf("1 token:  row dot4  %.1f us (%.0f GFLOP/s), 16-row %.1f us (%.0f GFLOP/s): %.2fx\n",
           tm[2][ROUNDS / 2] * 1e6, flop1 / tm[2][ROUNDS / 2] * 1e-9, tm[3][ROUNDS / 2] * 1e6,
           flop1 / tm[3][ROUNDS / 2] * 1e-9, tm[2][ROUNDS / 2] / tm[3][ROUNDS / 2]);
    if (vb)
        printf("16 tokens: 16-row 2 x 8 %.1f us (%.0f GFLOP/s), 1 x 16 %.1f us (%.0f GFLOP/s): %.2fx\n",
               tm[4][ROUNDS / 2] * 1e6, 2 * flop8 / tm[4][ROUNDS / 2] * 1e-9, tm[5][ROUNDS / 2] * 1e6,
               2 * flop8 / tm[5][ROUNDS / 2] * 1e-9, tm[4][ROUNDS / 2] / tm[5][ROUNDS / 2]);
    free(w), free(wr), free(xq), free(xp), free(x), free(y0), free(y1);
    return 0;
}
