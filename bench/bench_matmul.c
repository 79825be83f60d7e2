/* Micro-benchmark for km_matmul (not part of the test suite).
 *
 * Build (after ninja -C build-vnni):
 *   cc -O2 -std=gnu11 -Ikernels bench/bench_matmul.c build-vnni/libpivotcore.a \
 *      build-vnni/kernels/libkq_avx2.a build-vnni/kernels/libkq_vnni.a -lpthread -lm \
 *      -o /tmp/bench_matmul
 *   /tmp/bench_matmul [threads] [--scalar] [--bits 8|16] [--simd avx2,avx512vnni,avx512vbmi]
 *                     [--reps N] [--smollm2]
 *
 * --bits picks the activation precision (km_scratch_set_act_bits; default
 * 16, as in the library). --simd runs every shape at each listed SIMD level
 * (kq_set_simd_level), alternating, --reps times, so levels are compared
 * in the same run on a shared machine; the last lines give the median of
 * each figure and the ratio of each level to the first. --smollm2 takes the
 * SmolLM2-135M shapes (Q4_1 576x1536 and 1536x576, the Q8_0 576x49152
 * output projection) instead of the default set.
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

typedef struct {
    double hot, cold, pre, cold8; /* GB/s, GB/s, GFLOP/s, GB/s */
} result;

typedef struct {
    uint32_t type;
    int64_t rows, cols;
} shape;

/* Enough copies of the matrix to exceed the 32 MiB LLC for the cold pass,
 * and iteration counts scaled so that every figure takes ~0.3-1 s. */
static result bench(tp_pool *pool, km_scratch *s, shape sh, int quiet)
{
    uint32_t type = sh.type;
    int64_t rows = sh.rows, cols = sh.cols;
    size_t mb = kq_row_bytes(type, cols) * (size_t)rows;
    int copies = (int)((96u << 20) / mb) + 2;
    if (copies > 96)
        copies = 96;
    uint8_t *w = make_matrix(type, rows, cols, copies);
    float *x = malloc(sizeof(float) * (size_t)(cols * 128));
    float *y = malloc(sizeof(float) * (size_t)(rows * 128));
    for (int64_t i = 0; i < cols * 128; i++)
        x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;

    km_weight kw = {type, cols, rows, w, NULL};
    int iters = (int)(1.2e9 / (double)mb);
    iters = iters < 10 ? 10 : iters > 2000 ? 2000 : iters;
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

    /* 8 tokens (a batch of 8 decoding sequences), weights from DRAM */
    t0 = now();
    for (int i = 0; i < iters; i++) {
        kw.data = w + (size_t)(i % copies) * mb;
        km_matmul(pool, s, &kw, x, 8, y);
    }
    double cold8 = now() - t0;

    kw.data = w;
    double flop = 2.0 * rows * cols * 128;
    int piters = (int)(1.5e10 / flop);
    piters = piters < 2 ? 2 : piters > 20 ? 20 : piters;
    km_matmul(pool, s, &kw, x, 128, y);
    t0 = now();
    for (int i = 0; i < piters; i++)
        km_matmul(pool, s, &kw, x, 128, y);
    double pre = now() - t0;

    result r = {mb * (double)iters / hot / 1e9, mb * (double)iters / cold / 1e9, flop * piters / pre / 1e9,
                mb * (double)iters / cold8 / 1e9};
    if (!quiet)
        printf("%-5s cols %5lld rows %5lld (%7.1f KB) %-10s matvec hot %6.2f GB/s (%7.1f us)  cold %6.2f "
               "GB/s  8 tokens cold %6.2f GB/s  prefill128 %6.1f GFLOP/s\n",
               kq_type_name(type), (long long)cols, (long long)rows, mb / 1024.0, kq_simd_name(), r.hot,
               hot / iters * 1e6, r.cold, r.cold8, r.pre);
    fflush(stdout);
    free(w);
    free(x);
    free(y);
    return r;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int parse_level(const char *t)
{
    if (!strcmp(t, "scalar"))
        return KQ_SIMD_SCALAR;
    if (!strcmp(t, "avx2"))
        return KQ_SIMD_AVX2;
    if (!strcmp(t, "avx512vnni"))
        return KQ_SIMD_AVX512VNNI;
    if (!strcmp(t, "avx512vbmi") || !strcmp(t, "avx512"))
        return KQ_SIMD_AVX512VBMI;
    return -1;
}

enum { MAX_LEVELS = 4, MAX_REPS = 15, MAX_SHAPES = 4 };

int main(int argc, char **argv)
{
    int nth = argc > 1 ? atoi(argv[1]) : 1, bits = KQ_ACT_BITS_DEFAULT, reps = 1, smol = 0;
    int levels[MAX_LEVELS], nlev = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--scalar"))
            kq_set_force_scalar(1);
        else if (!strcmp(argv[i], "--bits") && i + 1 < argc)
            bits = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--smollm2"))
            smol = 1;
        else if (!strcmp(argv[i], "--simd") && i + 1 < argc) {
            char buf[128];
            snprintf(buf, sizeof buf, "%s", argv[++i]);
            for (char *t = strtok(buf, ","); t && nlev < MAX_LEVELS; t = strtok(NULL, ",")) {
                levels[nlev] = parse_level(t);
                if (levels[nlev] < 0 || levels[nlev] > kq_simd_cpu_level()) {
                    fprintf(stderr, "bench_matmul: SIMD level %s unknown or not on this CPU\n", t);
                    return 2;
                }
                nlev++;
            }
        }
    }
    if (reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "bench_matmul: --reps 1..%d\n", MAX_REPS);
        return 2;
    }
    tp_pool *pool = NULL;
    if (tp_create(nth, &pool))
        return 1;
    km_scratch *s = km_scratch_new();
    if (!s || km_scratch_set_act_bits(s, bits)) {
        fprintf(stderr, "bench_matmul: bits must be 8 or 16\n");
        return 2;
    }
    static const shape k_default[] = {
        {KQ_Q4_1, 1536, 576}, /* ffn_gate/up: ne = [576, 1536] */
        {KQ_Q4_1, 576, 1536}, /* ffn_down:    ne = [1536, 576] */
        {KQ_Q8_0, 1536, 576},
        {KQ_Q4_K, 1536, 768},
    };
    static const shape k_smol[] = {
        {KQ_Q4_1, 1536, 576},
        {KQ_Q4_1, 576, 1536},
        {KQ_Q8_0, 49152, 576}, /* tied embedding as the output projection */
    };
    const shape *shapes = smol ? k_smol : k_default;
    int nshape = smol ? 3 : 4;
    if (nlev == 0) { /* the level the library picks, as before */
        printf("threads %d, kernels %s, activations %d-bit\n", tp_size(pool), kq_simd_name(), bits);
        for (int k = 0; k < nshape; k++)
            for (int r = 0; r < reps; r++)
                bench(pool, s, shapes[k], 0);
    } else {
        printf("threads %d, activations %d-bit, levels alternating, %d reps\n", tp_size(pool), bits, reps);
        static double v[MAX_SHAPES][MAX_LEVELS][3][MAX_REPS];
        for (int k = 0; k < nshape; k++)
            for (int r = 0; r < reps; r++)
                for (int l = 0; l < nlev; l++) {
                    /* alternate the order too, so neither level always runs
                     * right after the other's cache/clock state */
                    int ll = r % 2 ? nlev - 1 - l : l;
                    kq_set_simd_level(levels[ll]);
                    result res = bench(pool, s, shapes[k], 0);
                    v[k][ll][0][r] = res.hot;
                    v[k][ll][1][r] = res.cold;
                    v[k][ll][2][r] = res.pre;
                }
        static const char *lname[] = {"scalar", "avx2", "avx512vnni", "avx512vbmi"};
        printf("\nmedians (ratio to %s):\n", lname[levels[0]]);
        for (int k = 0; k < nshape; k++) {
            double m0[3];
            for (int l = 0; l < nlev; l++) {
                double m[3];
                for (int f = 0; f < 3; f++)
                    m[f] = median(v[k][l][f], reps);
                if (l == 0)
                    memcpy(m0, m, sizeof m);
                kq_set_simd_level(levels[l]);
                printf("%-5s %5lldx%-5lld %2d thr %-10s hot %6.2f GB/s (%.3f)  cold %6.2f GB/s (%.3f)  "
                       "prefill %6.1f GFLOP/s (%.3f)\n",
                       kq_type_name(shapes[k].type), (long long)shapes[k].cols, (long long)shapes[k].rows,
                       tp_size(pool), kq_simd_name(), m[0], m[0] / m0[0], m[1], m[1] / m0[1], m[2],
                       m[2] / m0[2]);
            }
        }
    }
    km_scratch_free(s);
    tp_destroy(pool);
    return 0;
}
