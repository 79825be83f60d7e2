/* kv_rot: randomized Walsh–Hadamard rotation (kv_rot.h). The transform is
 * the in-place butterfly, d·log2(d) additions: for head_dim 64 that is 384
 * per row, against the 2·64 multiply-adds per cached token the attention
 * spends on the same row, so it costs nothing measurable beyond a few
 * dozen tokens of context. */
#include "kv_rot.h"

#include <math.h>
#include <stdint.h>

int kvr_supported(int d) { return d >= 8 && d <= 4096 && (d & (d - 1)) == 0; }

/* splitmix64: a fixed, well-mixed function of (layer, head, channel), so
 * the signs need no state and no storage beyond the caller's table. */
static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void kvr_signs(int layer, int head, int d, float *signs) {
    for (int i = 0; i < d; i++) {
        uint64_t h = mix(((uint64_t)(uint32_t)layer << 40) ^ ((uint64_t)(uint32_t)head << 20) ^
                         (uint64_t)(uint32_t)i ^ 0x5049564f54ull /* "PIVOT" */);
        signs[i] = (h >> 63) ? -1.0f : 1.0f;
    }
}

/* x <- H x / √d (H symmetric: H·H = d·I). */
static void fwht(float *x, int d) {
    for (int len = 1; len < d; len <<= 1)
        for (int i = 0; i < d; i += len << 1)
            for (int j = i; j < i + len; j++) {
                float a = x[j], b = x[j + len];
                x[j] = a + b;
                x[j + len] = a - b;
            }
    const float s = 1.0f / sqrtf((float)d);
    for (int i = 0; i < d; i++) x[i] *= s;
}

void kvr_forward(const float *signs, int d, float *x) {
    for (int i = 0; i < d; i++) x[i] *= signs[i];
    fwht(x, d);
}

void kvr_inverse(const float *signs, int d, float *x) {
    fwht(x, d);
    for (int i = 0; i < d; i++) x[i] *= signs[i];
}
