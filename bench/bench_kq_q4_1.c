/* Micro-benchmark of the three Q4_1 x 16-bit kernel families side by side
 * (not part of the test suite): AVX2 (quant_avx2_q16.c), its AVX512-VNNI
 * build (vpdpwssd on 256-bit vectors) and the AVX512-VBMI kernels of
 * quant_avx512.c (vpdpbusd on 512-bit vectors over prepped activations;
 * what quant.c picks on a VBMI CPU). One thread, the matrix cache-resident,
 * so it measures instructions, not memory.
 *
 * Build and run (needs an AVX512-VBMI CPU):
 *   ninja -C build bench/bench_kq_q4_1
 *   build/bench/bench_kq_q4_1 [cols rows]     (default 576 1536)
 *
 * Per family: dot_multi over all rows with an 8-token tile (prefill), dot4
 * and dot over all rows with one token (decode); the families alternate
 * (order reversed every round), 11 rounds, medians and speed-up vs AVX2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant.h"
#include "quant_impl.h"
#include "bench_q41_data.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum { NT = 8, ROUNDS = 11, NF = 3 };

int main(int argc, char **argv)
{
    int cols = argc > 2 ? atoi(argv[1]) : 576, rows = argc > 2 ? atoi(argv[2]) : 1536;
    if (kq_simd_cpu_level() < KQ_SIMD_AVX512VBMI || cols <= 0 || cols % 32 || rows <= 0 || rows % 4) {
        fprintf(stderr, "bench_kq_q4_1: needs an AVX512-VBMI CPU, cols %% 32 == 0, rows %% 4 == 0\n");
        return 2;
    }
    size_t wrb = kq_row_bytes(KQ_Q4_1, cols), xrb = kq_row_bytes(KQ_Q16_1, cols);
    const kq_dot_family vbmi = {.prep = kq_vbmi_q16_prep_pairs, .prep_pair_bytes = KQ_VBMI_PAIR_BYTES};
    size_t prb = kq_prep_row_bytes(&vbmi, KQ_Q16_1, cols);
    uint8_t *w = malloc(wrb * rows), *xq = malloc(xrb * NT), *xp = malloc(prb * NT);
    float *x = malloc(sizeof(float) * cols * NT), *y = malloc(sizeof(float) * rows * NT);
    if (!w || !xq || !xp || !x || !y)
        return 1;
    q41_bench_data(w, wrb * rows, x, cols * NT);
    for (int t = 0; t < NT; t++) {
        kq_q16_quantize_1(x + t * cols, xq + t * xrb, cols);
        kq_vbmi_q16_prep_pairs(cols, xq + t * xrb, xp + t * prb);
    }

    const kq_dot_multi_fn mf[NF] = {kq_avx2_q16_dot_multi_q4_1, kq_vnni_q16_dot_multi_q4_1,
                                    kq_vbmi_q16_dot_multi_q4_1};
    const kq_dot4_fn d4[NF] = {kq_avx2_q16_dot4_q4_1, kq_vnni_q16_dot4_q4_1, kq_vbmi_q16_dot4_q4_1};
    const kq_dot_fn d1[NF] = {kq_avx2_q16_dot_q4_1, kq_vnni_q16_dot_q4_1, kq_vbmi_q16_dot_q4_1};
    static const char *names[NF] = {"avx2", "vnni256", "vbmi512"};
    /* the VBMI family reads the prepped rows (matmul.c preps once per call) */
    const uint8_t *xs[NF] = {xq, xq, xp};
    const size_t xsb[NF] = {xrb, xrb, prb};
    static double tm[3][NF][ROUNDS];
    for (int r = 0; r < ROUNDS; r++)
        for (int kk = 0; kk < NF; kk++) {
            int k = r % 2 ? NF - 1 - kk : kk;
            double t0 = now();
            for (int it = 0; it < 20; it++)
                for (int i = 0; i < rows; i++)
                    mf[k](cols, w + i * wrb, xs[k], xsb[k], NT, y + i, rows);
            tm[0][k][r] = (now() - t0) / 20;
            t0 = now();
            for (int it = 0; it < 200; it++)
                for (int i = 0; i < rows; i += 4)
                    d4[k](cols, w + i * wrb, wrb, xs[k], y + i);
            tm[1][k][r] = (now() - t0) / 200;
            t0 = now();
            for (int it = 0; it < 200; it++)
                for (int i = 0; i < rows; i++)
                    y[i] = d1[k](cols, w + i * wrb, xs[k]);
            tm[2][k][r] = (now() - t0) / 200;
        }
    static const char *fn[3] = {"multi x8", "dot4", "dot"};
    printf("Q4_1 x Q16_1, cols %d rows %d, 1 thread, median of %d rounds\n", cols, rows, ROUNDS);
    for (int f = 0; f < 3; f++) {
        double m0 = 0;
        for (int k = 0; k < NF; k++) {
            qsort(tm[f][k], ROUNDS, sizeof(double), cmp);
            double m = tm[f][k][ROUNDS / 2];
            if (k == 0)
                m0 = m;
            printf("%-8s %-9s %8.1f us  speed-up vs avx2 %.3f\n", fn[f], names[k], m * 1e6, m0 / m);
        }
    }
    free(w);
    free(xq);
    free(xp);
    free(x);
    free(y);
    return 0;
}
