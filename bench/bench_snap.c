/* Cost of one KV map snapshot on the decoder thread (engine/eng_snap.c):
 * kv_seq_tiers over every (layer, KV head) of one sequence into fresh
 * buffers (tiers, scores, demotion steps), SmolLM2-135M's shape (30 layers,
 * 9 query heads over 3 KV heads, head_dim 64); not part of the test suite.
 *
 *   ninja -C build bench/bench_snap && build/bench/bench_snap [context (1000)] [policy (mikv)]
 *
 * Prints the snapshot's time in microseconds (median of 200) next to the
 * cache's own share of one decode step at that length (store + attention of
 * every layer and head, one thread): the snapshot's cost relative to a whole
 * step is smaller still (the matrix products dominate a step). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv.h"
#include "kv_policy.h"

enum { L = 30, NH = 9, NKV = 3, HD = 64 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp);
    return v[n / 2];
}

/* One step of n tokens at pos through every layer: store, then attention. */
static void step(kv_cache *c, int pos, int n, const float *k, const float *q, float *o) {
    for (int l = 0; l < L; l++) {
        kv_store(c, 0, l, pos, n, k, k);
        for (int h = 0; h < NKV; h++) kv_attend_group(c, 0, l, h, pos, n, q, o, 0);
    }
}

/* What snap_take does: fresh buffers, every (layer, head) walked once. */
static void snapshot(kv_cache *c, int n) {
    size_t cells = (size_t)L * NKV * n;
    uint8_t *t = malloc(cells);
    float *sc = malloc(sizeof *sc * cells);
    int32_t *d = malloc(sizeof *d * cells);
    for (int r = 0; r < L * NKV; r++) {
        kv_seq_tiers(c, 0, r / NKV, r % NKV, t + (size_t)r * n, sc + (size_t)r * n, n);
        for (int p = 0; p < n; p++) d[(size_t)r * n + p] = t[(size_t)r * n + p] == KV_TIER_HIGH ? -2 : -1;
    }
    free(t);
    free(sc);
    free(d);
}

int main(int argc, char **argv) {
    int ctx = argc > 1 ? atoi(argv[1]) : 1000;
    const char *spec = argc > 2 ? argv[2] : "mikv";
    kv_shape s = {.n_layers = L, .n_heads = NH, .n_kv_heads = NKV, .head_dim = HD, .max_seqs = 1,
                  .max_ctx = ctx + 400, .n_threads = 1};
    kv_policy p;
    char err[256];
    kv_cache *c;
    if (kv_policy_parse(spec, &p, err, sizeof err) || kv_create(&s, &p, &c, err, sizeof err)) {
        fprintf(stderr, "bench_snap: %s\n", err);
        return 1;
    }
    float *k = malloc(sizeof(float) * 256 * NKV * HD), *q = malloc(sizeof(float) * 256 * NH * HD);
    float *o = malloc(sizeof(float) * 256 * NH * HD);
    unsigned seed = 1;
    for (int i = 0; i < 256 * NKV * HD; i++) k[i] = ((seed = seed * 1103515245u + 12345u) >> 16) / 32768.0f - 1;
    for (int i = 0; i < 256 * NH * HD; i++) q[i] = ((seed = seed * 1103515245u + 12345u) >> 16) / 32768.0f - 1;
    int pos = 0;
    while (pos < ctx) {
        int n = ctx - pos < 256 ? ctx - pos : 256;
        step(c, pos, n, k, q, o);
        pos += n;
    }
    enum { R = 200 };
    double ts[R], td[R];
    for (int i = 0; i < R; i++) {
        double t0 = now();
        step(c, pos++, 1, k, q, o);
        td[i] = now() - t0;
        t0 = now();
        snapshot(c, pos);
        ts[i] = now() - t0;
    }
    printf("policy %s, context %d..%d, 30 layers x 3 KV heads\n", spec, ctx, pos);
    printf("snapshot (kv_seq_tiers of every head, fresh buffers): %8.1f us (median of %d)\n",
           median(ts, R) * 1e6, R);
    printf("cache share of one decode step (store + attention):  %8.1f us\n", median(td, R) * 1e6);
    kv_destroy(c);
    free(k);
    free(q);
    free(o);
    return 0;
}
