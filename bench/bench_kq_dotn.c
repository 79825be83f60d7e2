/* The mixed cache's AVX-512 key kernels side by side (not part of the
 * test suite): dotn512 (16 tokens' channel sums reduced by a tree, per
 * head and group), dotn512t (16 records transposed once, tokens in
 * lanes) and, for 4-bit keys, the blocked kernel (kv_kblk.h: the same
 * records stored transposed, kvq_avx512_dotb), over the same random
 * records, one thread; checks that their scores are bit-identical and
 * prints the best of 201 runs of each.
 * kvq_avx512_dotn picks between them by shape (dotn_t_ok); this program
 * is where that rule's figures come from. It includes the kernel file to
 * reach both static kernels.
 *
 *   ninja -C build bench/bench_kq_dotn   (needs an AVX512-VNNI CPU)
 *   build/bench/bench_kq_dotn [head_dim group bits query-heads records [per-call]]
 *   (default 64 32 4 3 1000: SmolLM2's shape and the mikv low tier's keys;
 *   per-call: records per kernel call, as the decode walk's 16, default all) */
#include "../cache/kv_quant_avx512.c"
#include "kv_kblk.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "quant.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double frand(void) { return rand() / (double)RAND_MAX; }

/* Through KVS_SHAPES, as the cache calls them: head_dim and group are
 * constants for the common shapes. */
AVX512 static void run(int old, const uint8_t *rec, size_t stride, int n, const kvq_qprep *qp, int gq,
                       int d, int group, int bits, float *sc, size_t scs) {
#define OLD(D, G) dotn512(rec, stride, n, qp, gq, D, G, sc, scs, B, 0)
#define NEW(D, G) dotn512t(rec, stride, n, qp, gq, D, G, sc, scs, B, 0)
#define K(b)                                                                                      \
    do {                                                                                          \
        enum { B = b };                                                                           \
        if (old) KVS_SHAPES(d, group, OLD);                                                       \
        else KVS_SHAPES(d, group, NEW);                                                           \
    } while (0)
    if (bits == 4) K(4);
    else if (bits == 3) K(3);
    else K(2);
#undef K
#undef NEW
#undef OLD
}

int main(int argc, char **argv) {
    const int d = argc > 1 ? atoi(argv[1]) : 64, group = argc > 2 ? atoi(argv[2]) : 32;
    const int bits = argc > 3 ? atoi(argv[3]) : 4, gq = argc > 4 ? atoi(argv[4]) : 3;
    const int n = argc > 5 ? atoi(argv[5]) : 1000;
    const int per = argc > 6 && atoi(argv[6]) > 0 ? atoi(argv[6]) : n;
    if (per < n && per % 16) { /* the blocked kernel starts at a block, as the cache's calls do */
        fprintf(stderr, "bench_kq_dotn: records per call must be a multiple of 16\n");
        return 2;
    }
    if (!cpu_ok()) {
        fprintf(stderr, "bench_kq_dotn: needs AVX512-VNNI\n");
        return 1;
    }
    if (bits < 2 || bits > 4 || gq < 1 || gq > TMAXQ || n < 1 || !axpy_int_ok(bits, d, group)) {
        fprintf(stderr, "bench_kq_dotn: shape the transposed kernel does not take\n");
        return 2;
    }
    const int nb = d * bits / 8, ng = d / group;
    const size_t stride = (size_t)nb + 4 * (size_t)ng + 4; /* as a page's records: not a power of 2 */
    uint8_t *rec = malloc(stride * (size_t)n);
    float *q = malloc(sizeof(float) * (size_t)gq * d), *s0 = malloc(sizeof(float) * (size_t)gq * n),
          *s1 = malloc(sizeof(float) * (size_t)gq * n);
    void *mem = aligned_alloc(64, (kvq_qprep_bytes(gq, d, group) + 63) / 64 * 64);
    if (!rec || !q || !s0 || !s1 || !mem) return 1;
    srand(7);
    for (size_t i = 0; i < stride * (size_t)n; i++) rec[i] = (uint8_t)(rand() & 255);
    for (int t = 0; t < n; t++) /* fp16 scale in [0.01, 0.51), zero in [-2, 2) */
        for (int g = 0; g < ng; g++) {
            uint16_t h[2] = {kq_fp32_to_fp16((float)(frand() * 0.5 + 0.01)), kq_fp32_to_fp16((float)(frand() * 4 - 2))};
            memcpy(rec + (size_t)t * stride + nb + 4 * g, h, 4);
        }
    for (int i = 0; i < gq * d; i++) q[i] = (float)(frand() * 2 - 1);
    q[5] = 9.0f; /* an outlier channel, as real queries have */
    kvq_qprep qp;
    kvq_qprep_init(&qp, mem, gq, d, group);
    kvq_prep(q, gq, d, group, &qp);
    /* the same records as blocks (kv_kblk.h), for 4-bit keys */
    kvq_dotn_fn dotb = kvq_avx512_dotb(bits, d, group, gq);
    uint8_t *blk = malloc(stride * (size_t)((n + 15) / 16 * 16));
    float *s2 = malloc(sizeof(float) * (size_t)gq * n);
    if (!blk || !s2) return 1;
    if (dotb)
        for (int t = 0; t < n; t++) kvkb_put(blk + (size_t)(t / 16 * 16) * stride, t % 16, rec + (size_t)t * stride, d, group);
    double b0 = 1e9, b1 = 1e9, b2 = 1e9;
    for (int rep = 0; rep < 201; rep++) { /* alternated, best of each */
        double t0 = now();
        for (int t = 0; t < n; t += per)
            run(1, rec + (size_t)t * stride, stride, n - t < per ? n - t : per, &qp, gq, d, group, bits, s0 + t, n);
        double t1 = now();
        for (int t = 0; t < n; t += per)
            run(0, rec + (size_t)t * stride, stride, n - t < per ? n - t : per, &qp, gq, d, group, bits, s1 + t, n);
        double t2 = now();
        if (dotb) {
            for (int t = 0; t < n; t += per)
                dotb(blk + (size_t)t * stride, stride, n - t < per ? n - t : per, NULL, &qp, gq, d, group, s2 + t, n);
            const double t3 = now();
            if (t3 - t2 < b2) b2 = t3 - t2;
        }
        if (t1 - t0 < b0) b0 = t1 - t0;
        if (t2 - t1 < b1) b1 = t2 - t1;
    }
    int diff = 0;
    for (int i = 0; i < gq * n; i++) diff += memcmp(&s0[i], &s1[i], sizeof(float)) != 0;
    for (int i = 0; i < gq * n && dotb; i++) diff += memcmp(&s2[i], &s1[i], sizeof(float)) != 0;
    printf("head_dim %d group %d bits %d heads %d records %d (%d a call): dotn512 %.2f us, dotn512t %.2f us (%.2fx)",
           d, group, bits, gq, n, per, b0 * 1e6, b1 * 1e6, b0 / b1);
    if (dotb) printf(", blocked %.2f us (%.2fx)", b2 * 1e6, b1 / b2);
    printf("; scores differing in bits: %d of %d\n", diff, gq * n * (dotb ? 2 : 1));
    free(rec), free(q), free(s0), free(s1), free(mem), free(blk), free(s2);
    return diff != 0;
}
