/* Inline helpers shared by the AVX2 kq files (quant_avx2.c,
 * quant_avx2_q16.c) and quant_avx512.c. Include only from files compiled
 * with at least -mavx2 -mfma -mf16c (the kq_avx2 and kq_vnni libraries in
 * kernels/meson.build). */
#ifndef PIVOT_KQ_QUANT_AVX2_UTIL_H
#define PIVOT_KQ_QUANT_AVX2_UTIL_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "quant_impl.h"

static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* 16 bytes of nibbles -> 32 bytes 0..15: low nibbles (elements 0..15) in the
 * low lane, high nibbles (elements 16..31) in the high lane. */
static inline __m256i unpack_nibbles(const uint8_t *qs)
{
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

static inline float amax_n(const float *x, int n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8)
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* A weight block unpacked for the integer dot: two vectors whose meaning is
 * the kernel's (the quant_avx2_tmpl.h hooks). */
typedef struct {
    __m256i a, b;
} kq_w2;

/* The four 32-value groups of one half (128 values) of a Q6_K block as
 * unsigned 0..63 codes: the low nibbles of ql (the first 64 bytes for
 * groups 0, 1 low, then high nibbles for 2, 3) with 2 bits each of qh. */
static inline __attribute__((always_inline)) void q6k_groups(const uint8_t *ql, const uint8_t *qh, __m256i q[4])
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
    __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
    __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
    q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4));
}

/* Per Q4_1 block: [d, m] of the weight (adjacent fp16, one conversion) times
 * [dx, sx] of the activation (adjacent f32 at the start of both Q8_1 and
 * Q16_1 blocks) gives [d*dx, m*sx]: lane 0 scales the integer dot, lane 1 is
 * the min term. */
static inline __m128 q4_1_scales(const kq_block_q4_1 *a, const void *b)
{
    uint32_t dm;
    memcpy(&dm, a, 4); /* d and m */
    __m128 w = _mm_cvtph_ps(_mm_cvtsi32_si128((int)dm));
    return _mm_mul_ps(w, _mm_castpd_ps(_mm_load_sd((const double *)b)));
}

/* The one final reduction of the Q4_1 kernels (single row, 4 rows, several
 * tokens): row r's result is ((a0+a1)+(a2+a3)) + ((a4+a5)+(a6+a7)) of acc[r]
 * plus lane 1 of ms[r]. Every kernel ends with this function, with unused
 * slots filled with a copy, so a row's result is bit-identical whichever
 * kernel computed it (quant_impl.h, consistency contract). */
static inline __m128 q4_1_finish4(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m128 m0,
                                  __m128 m1, __m128 m2, __m128 m3)
{
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m128 sums = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    __m128 m01 = _mm_unpacklo_ps(m0, m1), m23 = _mm_unpacklo_ps(m2, m3);
    return _mm_add_ps(sums, _mm_movehl_ps(m23, m01));
}

/* Stores the NX (1..4) results of q4_1_finish4 to out[r * os]. */
static inline __attribute__((always_inline)) void q4_1_store(const __m256 *acc, const __m128 *ms,
                                                             int NX, float *out, int64_t os)
{
    __m256 a[4];
    __m128 m[4];
    for (int r = 0; r < 4; r++) {
        a[r] = acc[r < NX ? r : 0];
        m[r] = ms[r < NX ? r : 0];
    }
    float v[4];
    _mm_storeu_ps(v, q4_1_finish4(a[0], a[1], a[2], a[3], m[0], m[1], m[2], m[3]));
    for (int r = 0; r < NX; r++)
        out[r * os] = v[r];
}

/* Defines `name`, a kq_dot_multi_fn over `multi`: an always_inline kernel
 * taking the token count NX (1..4) as its last argument. Tokens go in groups
 * of 4 and the tail is dispatched on a literal, so every call sees NX as a
 * compile-time constant and its per-token loops unroll. */
#define KQ_DEFINE_DOT_MULTI(name, multi) KQ_DEFINE_DOT_MULTI_BY(name, multi, 0)

/* The same with groups of 8 tokens first when by8 is 1 (kernels holding 8
 * tokens' accumulators: quant_avx512.c); the tail is the same 4s and the
 * literal 3, 2, 1. */
#define KQ_DEFINE_DOT_MULTI_BY(name, multi, by8)                                                   \
    void name(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out, int64_t os) \
    {                                                                                              \
        const char *xp = x;                                                                        \
        if (by8)                                                                                   \
            for (; nx >= 8; nx -= 8, xp += 8 * xs, out += 8 * os)                                  \
                multi(n, w, xp, xs, out, os, (by8) ? 8 : 4);                                       \
        for (; nx >= 4; nx -= 4, xp += 4 * xs, out += 4 * os)                                     \
            multi(n, w, xp, xs, out, os, 4);                                                       \
        switch (nx) {                                                                              \
        case 3: multi(n, w, xp, xs, out, os, 3); break;                                            \
        case 2: multi(n, w, xp, xs, out, os, 2); break;                                            \
        case 1: multi(n, w, xp, xs, out, os, 1); break;                                            \
        default: break;                                                                            \
        }                                                                                          \
    }

#endif
