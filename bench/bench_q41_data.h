/* The Q4_1 microbenchmarks' inputs (bench_kq_q4_1.c, bench_q41_rows16.c):
 * the same pseudo-random matrix bytes with finite fp16 d and m, and the
 * same activations, so their figures are over the same data. */
#ifndef PIVOT_BENCH_Q41_DATA_H
#define PIVOT_BENCH_Q41_DATA_H

#include <stddef.h>
#include <stdint.h>

/* w: `bytes` of GGUF Q4_1 rows (20-byte blocks); x: n activations. */
static inline void q41_bench_data(uint8_t *w, size_t bytes, float *x, int n) {
    uint64_t s = 1;
    for (size_t i = 0; i < bytes; i++) {
        s = s * 6364136223846793005ULL + 1;
        w[i] = (uint8_t)(s >> 56);
    }
    for (size_t o = 0; o < bytes; o += 20) { /* finite fp16 d and m */
        w[o + 1] &= 0x3B;
        w[o + 3] &= 0x3B;
    }
    for (int i = 0; i < n; i++) x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
}

#endif
