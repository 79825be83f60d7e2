/* Speed of the plain cache's attention kernel (cache/kv_attn.c), one thread,
 * SmolLM2-135M's shape (9 query heads over 3 KV heads, head_dim 64); not part
 * of the test suite.
 *
 *   ninja -C build bench/bench_attn && build/bench/bench_attn   (or by hand:)
 *   cc -O2 -std=gnu11 -Icache -Ikernels bench/bench_attn.c build/libpivotcore.a \
 *      build/kernels/libkq_avx2.a build/kernels/libkq_vnni.a -lpthread -lm -o /tmp/bench_attn
 *   [BENCH_CLOCK=thread] /tmp/bench_attn [context (2048)] [policy ...]
 *
 * Prints, for each kernel of the plain cache this CPU has: decode (one query
 * over `context` keys) in microseconds per KV head, and a prefill block (64
 * queries at the end of `context`) in microseconds and GFLOP/s (2 x 2 x
 * head_dim flops per query head and visible key: q.k and p.v).
 * Then, per policy (default: full mikv; naming policies skips the kernel
 * table), the cache as the model drives it:
 * a prompt of `context` tokens stored and attended in chunks of 256 (what a
 * compressing cache encodes and demotes included), then 128 decode steps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv.h"
#include "kv_internal.h"
#include "kv_attn.h"
#include "kv_policy.h"
#include "quant.h"

/* BENCH_CLOCK=thread: this thread's CPU time instead of wall time, which a
 * shared machine's load inflates less (time spent waiting for a core is
 * not counted; cache and memory contention still are). */
static double now(void) {
    static int thread_clock = -1;
    if (thread_clock < 0) {
        const char *e = getenv("BENCH_CLOCK");
        thread_clock = e && !strcmp(e, "thread");
    }
    struct timespec ts;
    clock_gettime(thread_clock ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* BENCH_STEPS: decode steps per policy (128), more for a decode profile. */
static int decode_steps(void) {
    const char *e = getenv("BENCH_STEPS");
    return e && atoi(e) > 0 ? atoi(e) : 128;
}

/* BENCH_LAYERS=L: the policies' cache holds L layers of the same keys and
 * values and each step attends over all of them, so the bytes read per step
 * exceed the CPU's caches as in a served model (30 layers x 2,048 tokens of
 * SmolLM2's three KV heads is 47 MB of FP16); default 1 (cache-resident). */
static int bench_layers(void) {
    const char *e = getenv("BENCH_LAYERS");
    return e && atoi(e) > 0 ? atoi(e) : 1;
}

/* One policy's cache through the prompt (chunks) and the decode steps:
 * *tp, *td the microseconds per token and layer, per step, KV head and
 * layer; 1 on a cache error (the caller destroys c either way). */
static int time_policy(kv_cache *c, int N, int steps, int L, int chunk, const float *k2, const float *v2,
                       const float *qa, float *oa, double *tp, double *td) {
    const int nkv = 3;
    const size_t kvd = (size_t)nkv * 64;
    double t0 = now();
    for (int p = 0; p < N; p += chunk) {
        int n = N - p < chunk ? N - p : chunk;
        for (int l = 0; l < L; l++) {
            if (kv_store(c, 0, l, p, n, k2 + p * kvd, v2 + p * kvd)) return 1;
            for (int h = 0; h < nkv; h++)
                if (kv_attend_group(c, 0, l, h, p, n, qa, oa, 0)) return 1;
        }
    }
    *tp = (now() - t0) / N / L * 1e6;
    t0 = now();
    for (int i = 0; i < steps; i++) {
        int p = N + i;
        for (int l = 0; l < L; l++) {
            if (kv_store(c, 0, l, p, 1, k2 + p * kvd, v2 + p * kvd)) return 1;
            for (int h = 0; h < nkv; h++)
                if (kv_attend_group(c, 0, l, h, p, 1, qa, oa, 0)) return 1;
        }
    }
    *td = (now() - t0) / steps / nkv / L * 1e6;
    return 0;
}

/* Policies through prefill chunks and decode steps, one line each. */
static int run_policies(int N, const float *k, const float *v, const char **pols, int npol) {
    const int nh = 9, nkv = 3, hd = 64;
    const size_t kvd = (size_t)nkv * hd, qd = (size_t)nh * hd;
    int steps = decode_steps(), chunk = 256, L = bench_layers(), rc = 1;
    float *qa = malloc(sizeof(float) * chunk * qd), *oa = malloc(sizeof(float) * chunk * qd);
    float *k2 = malloc(sizeof(float) * (N + steps) * kvd), *v2 = malloc(sizeof(float) * (N + steps) * kvd);
    if (!qa || !oa || !k2 || !v2) {
        fprintf(stderr, "bench_attn: out of memory\n");
        goto done;
    }
    for (size_t i = 0; i < (size_t)(N + steps) * kvd; i++) k2[i] = k[i % (N * kvd)], v2[i] = v[i % (N * kvd)];
    for (size_t i = 0; i < chunk * qd; i++) qa[i] = k[(i * 7) % (N * kvd)];
    /* last column: decode time over the bytes held (as a share of FP16's):
     * time per byte read, the figure a lower-bit format must not worsen */
    if (L > 1) printf("\n%d layers: prompt and decode figures per layer\n", L);
    printf("\n%-34s %16s %21s %10s %14s\n", "policy (one thread)", "prompt us/token",
           "decode us/step/head", "kv/fp16", "decode/kv");
    for (int pi = 0; pi < npol; pi++) {
        kv_policy pol;
        char err[256];
        kv_cache *c;
        kv_shape sh = {.n_layers = L, .n_heads = nh, .n_kv_heads = nkv, .head_dim = hd,
                       .max_seqs = 1, .max_ctx = N + steps, .n_threads = 1};
        if (kv_policy_parse(pols[pi], &pol, err, sizeof err) || kv_create(&sh, &pol, &c, err, sizeof err)) {
            fprintf(stderr, "bench_attn: %s: %s\n", pols[pi], err);
            goto done;
        }
        double tp, td;
        if (time_policy(c, N, steps, L, chunk, k2, v2, qa, oa, &tp, &td)) {
            fprintf(stderr, "bench_attn: %s: the cache refused a store or an attend\n", pols[pi]);
            kv_destroy(c);
            goto done;
        }
        /* the bytes the decode steps read, so kernels compare per byte */
        kv_usage u = {0};
        kv_seq_usage(c, 0, &u);
        double ratio = u.bytes_fp16 ? (double)u.bytes_stored / (double)u.bytes_fp16 : 0;
        printf("%-34s %16.1f %21.1f %10.3f %14.1f\n", pols[pi], tp, td, ratio, ratio > 0 ? td / ratio : 0.0);
        kv_destroy(c);
    }
    rc = 0;
done:
    free(qa), free(oa), free(k2), free(v2);
    return rc;
}

int main(int argc, char **argv) {
    const int N = argc > 1 ? atoi(argv[1]) : 2048, nh = 9, nkv = 3, hd = 64, B = 64;
    if (N < B + 1 || N > 1 << 20) {
        fprintf(stderr, "bench_attn: context must be in [%d, %d]\n", B + 1, 1 << 20);
        return 1;
    }
    size_t kvd = (size_t)nkv * hd, qd = (size_t)nh * hd;
    float *k = malloc(sizeof(float) * N * kvd), *v = malloc(sizeof(float) * N * kvd);
    float *q = malloc(sizeof(float) * B * qd), *o = malloc(sizeof(float) * B * qd);
    unsigned s = 1;
    for (size_t i = 0; i < N * kvd; i++) {
        s = s * 1103515245u + 12345u;
        k[i] = ((s >> 9) & 1023) / 512.0f - 1.0f;
        v[i] = ((s >> 19) & 1023) / 512.0f - 1.0f;
    }
    for (size_t i = 0; i < B * qd; i++) q[i] = k[i % (N * kvd)];
    const int levels[] = {KQ_SIMD_SCALAR, KQ_SIMD_AVX2, KQ_SIMD_AVX512VNNI};
    const char *names[] = {"scalar", "f16c", "avx512"};
    printf("context %d, head_dim %d, group 3, one thread\n", N, hd);
    if (argc <= 2) printf("%-8s %14s %16s %14s\n", "kernel", "decode us/head", "prefill-64 us", "GFLOP/s");
    for (int li = 0; li < 3 && argc <= 2; li++) {
        if (levels[li] > kq_simd_cpu_level()) continue;
        kq_set_simd_level(levels[li]);
        kv_shape sh = {.n_layers = 1, .n_heads = nh, .n_kv_heads = nkv, .head_dim = hd,
                       .max_seqs = 1, .max_ctx = N, .n_threads = 1};
        kv_cache *c;
        if (kv_create_fp16(&sh, &c) || kv_store(c, 0, 0, 0, N, k, v)) return 1;
        int kind = kva_pick(hd);
        double best_d = 1e9, best_p = 1e9;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = now();
            int it = 0;
            for (; it < 200 || now() - t0 < 0.2; it++) kv_attend_group(c, 0, 0, it % nkv, N - 1, 1, q, o, 0);
            double d = (now() - t0) / it;
            if (d < best_d) best_d = d;
            t0 = now();
            for (it = 0; it < 3 || now() - t0 < 0.3; it++)
                kv_attend_group(c, 0, 0, it % nkv, N - B, B, q, o, 0);
            d = (now() - t0) / it;
            if (d < best_p) best_p = d;
        }
        double flops = 0; /* prefill block: query i sees N - B + i + 1 keys, 3 query heads */
        for (int i = 0; i < B; i++) flops += 3.0 * 4.0 * hd * (N - B + i + 1);
        printf("%-8s %14.1f %16.1f %14.1f\n", names[kind], best_d * 1e6, best_p * 1e6,
               flops / best_p * 1e-9);
        kv_destroy(c);
    }
    kq_set_simd_level(-1);

    const char *defaults[] = {"full", "mikv"};
    int rc = run_policies(N, k, v, argc > 2 ? (const char **)argv + 2 : defaults, argc > 2 ? argc - 2 : 2);
    free(k), free(v), free(q), free(o);
    return rc;
}
