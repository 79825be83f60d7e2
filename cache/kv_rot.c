/* kv_rot: randomized Walsh–Hadamard rotation (kv_rot.h). The transform is
 * the in-place butterfly, d·log2(d) additions: for head_dim 64 that is 384
 * per row, against the 2·64 multiply-adds per cached token the attention
 * spends on the same row, so it costs nothing measurable beyond a few
 * dozen tokens of context. */
#include "kv_rot.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "cuda/synth_hash.h"

int kvr_supported(int d) { return d >= 8 && d <= 4096 && (d & (d - 1)) == 0; }

/* SplitMix64 (the project's pvsyn_mix finalizer after a golden-ratio
 * step): a fixed, well-mixed function of (layer, head, channel), so the
 * signs need no state and no storage beyond the caller's table. */
static uint64_t mix(uint64_t x) { return pvsyn_mix(x + 0x9e3779b97f4a7c15ull); }

void kvr_signs(int layer, int head, int d, float *signs) {
    for (int i = 0; i < d; i++) {
        uint64_t h = mix(((uint64_t)(uint32_t)layer << 40) ^ ((uint64_t)(uint32_t)head << 20) ^
                         (uint64_t)(uint32_t)i ^ 0x5049564f54ull /* "PIVOT" */);
        signs[i] = (h >> 63) ? -1.0f : 1.0f;
    }
}

#define AVX512 __attribute__((target("avx512f")))

/* The butterfly 16 channels per register (d a multiple of 16, at most
 * 4096): stages 1, 2, 4, 8 inside a register (lane i meets lane i ^ len:
 * the lower one keeps the sum, the upper one partner - self), the wider
 * stages between registers; the same sums as the scalar loop below. */
AVX512 __attribute__((always_inline)) static inline __m512 stages16(__m512 v) {
    for (int len = 1; len < 16; len <<= 1) {
        const __m512i idx = _mm512_xor_si512(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(len));
        __mmask16 upper = 0;
        for (int l = 0; l < 16; l++) upper |= (__mmask16)((l & len ? 1u : 0u) << l);
        __m512 p = _mm512_permutexvar_ps(idx, v);
        v = _mm512_mask_sub_ps(_mm512_add_ps(v, p), upper, p, v);
    }
    return v;
}

AVX512 static void fwht512(float *x, int d, float scale) {
    for (int i0 = 0; i0 < d; i0 += 16) _mm512_storeu_ps(x + i0, stages16(_mm512_loadu_ps(x + i0)));
    for (int len = 16; len < d; len <<= 1)
        for (int i = 0; i < d; i += len << 1)
            for (int j = i; j < i + len; j += 16) {
                __m512 a = _mm512_loadu_ps(x + j), b = _mm512_loadu_ps(x + j + len);
                _mm512_storeu_ps(x + j, _mm512_add_ps(a, b));
                _mm512_storeu_ps(x + j + len, _mm512_sub_ps(a, b));
            }
    const __m512 s = _mm512_set1_ps(scale);
    for (int i = 0; i < d; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), s));
}

/* head_dim 64 whole in four registers, the signs applied before the
 * butterfly (forward) or after it (inverse): per element the same
 * operations in the same order as kvr_forward / kvr_inverse's loops
 * (signs ±1 are exact), so the same bits (kv_rot_avx512::rot64_matches_loops);
 * a prompt of the mixed cache rotates every query and output row, and the
 * memory round trips of fwht512 were 3% of one (perf, bench_attn 2048). */
AVX512 static void rot64(const float *signs, float *x, int inverse) {
    __m512 v[4];
    for (int i = 0; i < 4; i++) {
        v[i] = _mm512_loadu_ps(x + 16 * i);
        if (!inverse) v[i] = _mm512_mul_ps(v[i], _mm512_loadu_ps(signs + 16 * i));
        v[i] = stages16(v[i]);
    }
    const __m512 a = _mm512_add_ps(v[0], v[1]), b = _mm512_sub_ps(v[0], v[1]);
    const __m512 c = _mm512_add_ps(v[2], v[3]), e = _mm512_sub_ps(v[2], v[3]);
    v[0] = _mm512_add_ps(a, c), v[2] = _mm512_sub_ps(a, c), v[1] = _mm512_add_ps(b, e), v[3] = _mm512_sub_ps(b, e);
    const __m512 s = _mm512_set1_ps(1.0f / sqrtf(64.0f));
    for (int i = 0; i < 4; i++) {
        v[i] = _mm512_mul_ps(v[i], s);
        if (inverse) v[i] = _mm512_mul_ps(v[i], _mm512_loadu_ps(signs + 16 * i));
        _mm512_storeu_ps(x + 16 * i, v[i]);
    }
}

static int rot64_ok(int d) { return d == 64 && __builtin_cpu_supports("avx512f"); }

/* x <- H x / √d (H symmetric: H·H = d·I). */
static void fwht(float *x, int d) {
    if (d % 16 == 0 && __builtin_cpu_supports("avx512f")) {
        fwht512(x, d, 1.0f / sqrtf((float)d));
        return;
    }
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
    if (rot64_ok(d)) {
        rot64(signs, x, 0);
        return;
    }
    for (int i = 0; i < d; i++) x[i] *= signs[i];
    fwht(x, d);
}

void kvr_inverse(const float *signs, int d, float *x) {
    if (rot64_ok(d)) {
        rot64(signs, x, 1);
        return;
    }
    fwht(x, d);
    for (int i = 0; i < d; i++) x[i] *= signs[i];
}
