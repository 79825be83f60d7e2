/* kv_simd (internal): vector helpers shared by the attention kernels
 * (kv_attn.c, kv_mixed_blk.c, kv_rows.c). Callers are compiled for the
 * helper's target (AVX-512F, or AVX2 + FMA for kvs_exp256). */
#ifndef PIVOT_KV_SIMD_H
#define PIVOT_KV_SIMD_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kv_side.h"

/* e^x for x <= 0 (softmax arguments): 2^n * e^r with n = round(x/ln2),
 * r = x - n*ln2 (ln2 split in two so r is exact enough), e^r by its Taylor
 * series to r^7 (|r| <= ln2/2: truncation < 6e-9 relative). Below -104 the
 * float result is 0 anyway, so x is clamped there (keeps -inf out of r);
 * callers that need an exact 0 for masked entries mask the result. */
__attribute__((target("avx512f"), always_inline)) static inline __m512 kvs_exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* The same e^x on 8 lanes for AVX2 CPUs, 2^n built in the exponent field:
 * x is clamped at -87 so that n >= -126 stays a normal float (e^-87 ~
 * 1.6e-38; callers zero masked entries themselves). */
__attribute__((target("avx2,fma"), always_inline)) static inline __m256 kvs_exp256(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860682030941723e-6f), r);
    __m256 q = _mm256_set1_ps(1.0f / 5040.0f);
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 720.0f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 120.0f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 24.0f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 6.0f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(0.5f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(q, _mm256_castsi256_ps(e));
}

/* The fp16 at p (a record's scale or zero: unaligned bytes) as a float;
 * inlined into AVX2 and AVX-512 callers (both include F16C). */
__attribute__((target("f16c"), always_inline)) static inline float kvs_h2f(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return _cvtsh_ss(v);
}

/* Group gi's scale and zero of a record whose codes take nb bytes, in
 * either side format (group: the format argument, kv_side.h's KVQ_SZ8);
 * the same floats as kv_quant.c's rec_sz. */
__attribute__((target("f16c"), always_inline)) static inline void
kvs_sz(const uint8_t *rec, int nb, int bits, int group, int gi, float *s, float *z) {
    if (group & KVQ_SZ8) {
        kvq_sz8_get(rec + nb + 2 * gi, bits, s, z);
        return;
    }
    *s = kvs_h2f(rec + nb + 4 * gi);
    *z = kvs_h2f(rec + nb + 4 * gi + 2);
}

/* The sum of 8 lanes, in one fixed order (halves, then pairs, then the
 * last two): kv_quant.c's dot kernels and kv_fp16.c's dot_f16c reduce in
 * this order, so their sums are bit-identical. */
__attribute__((target("avx2"), always_inline)) static inline float kvs_hsum256(__m256 v) {
    __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_add_ss(m, _mm_shuffle_ps(m, m, 1)));
}

/* The codes of channels c..c+15 of a quantized record (kv_quant.h's
 * layout; bits 8/4/2 need 16 | nb, bits 3 needs 16 | head_dim/4 and 16 | c)
 * as 16 int32 lanes: the one unpacking rule of the AVX-512 kernels. */
__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline)) static inline __m512i
kvs_codes16(const uint8_t *rec, int bits, int d, int c) {
    if (bits == 3) { /* low two bits from the 2-bit planes, the third from its mask */
        const int nb2 = d / 4;
        __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(rec + c % nb2)));
        w = _mm512_and_si512(_mm512_srl_epi32(w, _mm_cvtsi32_si128(2 * (c / nb2))), _mm512_set1_epi32(3));
        uint16_t hb;
        memcpy(&hb, rec + nb2 + c / 8, 2);
        return _mm512_or_si512(w, _mm512_maskz_mov_epi32((__mmask16)hb, _mm512_set1_epi32(4)));
    }
    const int nb = d * bits / 8;
    __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(rec + c % nb)));
    return _mm512_and_si512(_mm512_srl_epi32(w, _mm_cvtsi32_si128(bits * (c / nb))),
                            _mm512_set1_epi32((1 << bits) - 1));
}

/* 1 when kvs_codes16 can read a record of this shape 16 channels at a time. */
static inline int kvs_codes16_ok(int bits, int d) {
    return bits == 3 ? d % 64 == 0 : (d * bits / 8) % 16 == 0;
}

/* One record to head_dim floats, 16 channels at a time: FP16 (bits 16)
 * converted, or a shape kvs_codes16_ok takes with groups of a multiple of
 * 16 as code·scale + zero in one FMA — code·scale is exact in float (at
 * most 8 + 11 significant bits), so the same values as kvq_decode's loop.
 * group is the format argument (KVQ_SZ8 read too).
 * The one decoder of the AVX-512 block kernel and kvq_avx512_decode_row. */
__attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma"), always_inline)) static inline void
kvs_decode16(const uint8_t *rec, int d, int bits, int group, float *x) {
    if (bits == 16) {
        for (int c = 0; c < d; c += 16)
            _mm512_storeu_ps(x + c, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(rec + 2 * c))));
        return;
    }
    const int gs = kvq_group(group);
    for (int c = 0; c < d; c += 16) {
        float s, z;
        kvs_sz(rec, d * bits / 8, bits, group, c / gs, &s, &z);
        _mm512_storeu_ps(x + c, _mm512_fmadd_ps(_mm512_cvtepi32_ps(kvs_codes16(rec, bits, d, c)),
                                                _mm512_set1_ps(s), _mm512_set1_ps(z)));
    }
}

/* Calls CALL(D, G) with head_dim D and group G as compile-time constants
 * for the shapes models use (64/64, 64/32, 128/64, 128/128), else
 * CALL(d, group): the one list of shapes the run kernels and decoders have
 * unrolled copies for (with run-time values their channel loops stay loops,
 * docs/PERFORMANCE.md). */
#define KVS_SHAPES(d, group, CALL)                                                             \
    do {                                                                                       \
        if ((d) == 64 && (group) == 64) CALL(64, 64);                                          \
        else if ((d) == 64 && (group) == 32) CALL(64, 32);                                     \
        else if ((d) == 128 && (group) == 64) CALL(128, 64);                                   \
        else if ((d) == 128 && (group) == 128) CALL(128, 128);                                 \
        else CALL(d, group);                                                                   \
    } while (0)

/* Calls CALL(k) with k = n as a compile-time constant in 1..6 (n >= 6 takes
 * 6): the register-tiled kernels are always_inline functions of their row
 * count, and this is the one dispatch from a run-time count to them. */
#define KVS_SWITCH6(n, CALL)                                                                    \
    switch (n) {                                                                                \
    case 1: CALL(1); break;                                                                     \
    case 2: CALL(2); break;                                                                     \
    case 3: CALL(3); break;                                                                     \
    case 4: CALL(4); break;                                                                     \
    case 5: CALL(5); break;                                                                     \
    default: CALL(6); break;                                                                    \
    }

#endif
