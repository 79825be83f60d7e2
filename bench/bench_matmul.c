/* Micro-benchmark for km_matmul (not part of the test suite).
 *
 * Build (after ninja -C build-k16):
 *   cc -O2 -std=gnu11 -Ikernels bench/bench_matmul.c build-k16/libpivotcore.a \
 *      build-k16/kernels/libkq_avx2.a -lpthread -lm -o /tmp/bench_matmul
 *   /tmp/bench_matmul [threads] [--scalar] [--bits 8|16]
 *
 * --bits picks the activation precision (km_scratch_set_act_bits; default
 * 16, as in the library).
 *
 * Matvec (n_tok = 1) is reported as GB/s of weights read, both "hot" (one
 * matrix, cache-resident after the first pass) and "cold" (cycling through
 * enough copies to exceed the last-level cache, i.e. DRAM-bound like decode).
 * Prefill (n_tok = 128) is reported as GFLOP/s (2*rows*cols*n_tok). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "matmul.h"
#include "quant.h"
#include "threadpool.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint8_t *make_matrix(uint32_t type, int64_t rows, int64_t cols, int copies)
{
    size_t bytes = kq_row_bytes(type, cols) * (size_t)rows * (size_t)copies;
    uint8_t *w = malloc(bytes);
    uint64_t s = 1;
    for (size_t i = 0; i < bytes; i++) {
        s = s * 6364136223846793005ULL + 1;
        w[i] = (uint8_t)(s >> 56);
    }
    /* keep the fp16 scales finite: zap the exponent's top bit everywhere it
     * could be a scale (harmless for the nibbles: this is a throughput test) */
    size_t bb = kq_block_bytes(type);
    for (size_t o = 0; o < bytes; o += bb) {
        w[o + 1] &= 0x3B;
        w[o + 3] &= 0x3B;
    }
    return w;
}

static void bench(tp_pool *pool, km_scratch *s, uint32_t type, int64_t rows, int64_t cols)
{
    const int copies = 96; /* 96 x 553 KB ~ 53 MB: beyond the LLC */
    size_t mb = kq_row_bytes(type, cols) * (size_t)rows;
    uint8_t *w = make_matrix(type, rows, cols, copies);
    float *x = malloc(sizeof(float) * (size_t)(cols * 128));
    float *y = malloc(sizeof(float) * (size_t)(rows * 128));
    for (int64_t i = 0; i < cols * 128; i++)
        x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;

    km_weight kw = {type, cols, rows, w};
    int iters = 2000;
    km_matmul(pool, s, &kw, x, 1, y);
    double t0 = now();
    for (int i = 0; i < iters; i++)
        km_matmul(pool, s, &kw, x, 1, y);
    double hot = now() - t0;

    t0 = now();
    for (int i = 0; i < iters; i++) {
        kw.data = w + (size_t)(i % copies) * mb;
        km_matmul(pool, s, &kw, x, 1, y);
    }
    double cold = now() - t0;

    kw.data = w;
    int piters = 20;
    km_matmul(pool, s, &kw, x, 128, y);
    t0 = now();
    for (int i = 0; i < piters; i++)
        km_matmul(pool, s, &kw, x, 128, y);
    double pre = now() - t0;

    printf("%-5s cols %5lld rows %5lld (%6.1f KB)  matvec hot %6.2f GB/s (%6.1f us)  cold %6.2f GB/s"
           "  prefill128 %6.1f GFLOP/s\n",
           kq_type_name(type), (long long)cols, (long long)rows, mb / 1024.0,
           mb * (double)iters / hot / 1e9, hot / iters * 1e6, mb * (double)iters / cold / 1e9,
           2.0 * rows * cols * 128 * piters / pre / 1e9);
    free(w);
    free(x);
    free(y);
}

int main(int argc, char **argv)
{
    int nth = argc > 1 ? atoi(argv[1]) : 1, bits = KQ_ACT_BITS_DEFAULT;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--scalar"))
            kq_set_force_scalar(1);
        else if (!strcmp(argv[i], "--bits") && i + 1 < argc)
            bits = atoi(argv[++i]);
    }
    tp_pool *pool = NULL;
    if (tp_create(nth, &pool))
        return 1;
    km_scratch *s = km_scratch_new();
    if (!s || km_scratch_set_act_bits(s, bits)) {
        fprintf(stderr, "bench_matmul: bits must be 8 or 16\n");
        return 2;
    }
    printf("threads %d, kernels %s, activations %d-bit\n", tp_size(pool), kq_simd_name(), bits);
    bench(pool, s, KQ_Q4_1, 1536, 576); /* ffn_gate/up: ne = [576, 1536] */
    bench(pool, s, KQ_Q4_1, 576, 1536); /* ffn_down:    ne = [1536, 576] */
    bench(pool, s, KQ_Q8_0, 1536, 576);
    bench(pool, s, KQ_Q4_K, 1536, 768);
    km_scratch_free(s);
    tp_destroy(pool);
    return 0;
}
