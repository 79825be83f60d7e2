/* kv_quant_rec512: kvq_encode (min-max ranges) and kvq_decode of one
 * record on AVX-512, 16 channels per step, bit-identical to the portable
 * loops of kv_quant.c (see kv_quant.h).
 *
 * Why: a compressing cache re-encodes every token it demotes, and the
 * portable encode (a libm lrintf and a read-modify-write of the record per
 * channel) with its decode (two fp16 conversions per channel) was 10% of a
 * 2,048-token `mikv` prompt in bench_attn (perf: kvq_encode_clip 6.5%,
 * kvq_decode 3.6%). Same values: the codes are round((x - z)·inv) in float
 * with vcvtps2dq's nearest-even, lrintf's default mode, clamped to
 * [0, qmax] (clamped in float to [-1, qmax + 1] first, so a value past
 * int32 still lands where the long of lrintf does); decoding is kv_simd.h's
 * kvs_decode16 (the block kernel's decoder). The one difference: the range's
 * minimum through vminps may be +0 where the loop kept a -0 it met first
 * (or the reverse), which changes the stored zero point's sign and no
 * decoded value. */
#include <immintrin.h>
#include <string.h>

#include "kv_quant.h"
#include "kv_simd.h"
#include "quant.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma")))

/* The CPU (the AVX512VNNI level, which a SIMD cap may lower: it implies
 * every feature of AVX512 above) and the shape. The level is a cached load,
 * cheap per record. */
static int shape_ok(int d, int bits, int group) {
    group = kvq_group(group); /* either side format (kv_side.h) */
    return (bits == 2 || bits == 3 || bits == 4 || bits == 8) && d % 16 == 0 && group % 16 == 0 &&
           group > 0 && d % group == 0 && kvs_codes16_ok(bits, d) && kq_simd_level() >= KQ_SIMD_AVX512VNNI;
}

/* ORs 16 bytes (the low byte of each lane of v) into dst. */
AVX512 static inline void or16(uint8_t *dst, __m512i v) {
    const __m128i b = _mm512_cvtepi32_epi8(v);
    _mm_storeu_si128((__m128i *)(void *)dst, _mm_or_si128(_mm_loadu_si128((const __m128i *)(const void *)dst), b));
}

AVX512 static void encode_row(const float *x, int d, int bits, int group, uint8_t *rec) {
    const int nb = d * bits / 8, qmax = (1 << bits) - 1, pb = bits == 3 ? 2 : bits, np = d * pb / 8;
    const int fmt = group; /* the format argument; group: its channels */
    uint8_t *sz = rec + nb;
    group = kvq_group(group);
    memset(rec, 0, (size_t)nb);
    for (int g = 0; g < d / group; g++) {
        const float *xg = x + (size_t)g * group;
        __m512 vmn = _mm512_loadu_ps(xg), vmx = vmn;
        for (int i = 16; i < group; i += 16) {
            vmn = _mm512_min_ps(vmn, _mm512_loadu_ps(xg + i));
            vmx = _mm512_max_ps(vmx, _mm512_loadu_ps(xg + i));
        }
        float s, z;
        kvq_range_side(_mm512_reduce_min_ps(vmn), _mm512_reduce_max_ps(vmx), bits, fmt,
                       sz + (size_t)kvq_sz_bytes(fmt) * g, &s, &z);
        if (!(s > 0)) continue; /* the portable code_of: inv 0, every code 0 */
        const __m512 inv = _mm512_set1_ps(1.0f / s), zv = _mm512_set1_ps(z);
        const __m512 lo = _mm512_set1_ps(-1.0f), hi = _mm512_set1_ps((float)qmax + 1.0f);
        for (int c0 = g * group; c0 < (g + 1) * group; c0 += 16) {
            __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + c0), zv), inv);
            __m512i q = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(t, lo), hi));
            q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_setzero_si512()), _mm512_set1_epi32(qmax));
            /* channel c: byte c % np of the planes, bit pb·(c / np) (kvq_code's layout) */
            or16(rec + c0 % np, _mm512_sll_epi32(_mm512_and_si512(q, _mm512_set1_epi32((1 << pb) - 1)),
                                                 _mm_cvtsi32_si128(pb * (c0 / np))));
            if (bits == 3) { /* the third bit: byte np + c / 8, bit c % 8 */
                uint16_t m = (uint16_t)_mm512_test_epi32_mask(q, _mm512_set1_epi32(4)), old;
                memcpy(&old, rec + np + c0 / 8, 2);
                old |= m;
                memcpy(rec + np + c0 / 8, &old, 2);
            }
        }
    }
}

AVX512 static void decode_row(const uint8_t *rec, int d, int bits, int group, float *x) {
    kvs_decode16(rec, d, bits, group, x);
}

int kvq_avx512_encode_row(const float *x, int d, int bits, int group, uint8_t *rec) {
    if (!shape_ok(d, bits, group)) return 0;
    encode_row(x, d, bits, group, rec);
    return 1;
}

int kvq_avx512_decode_row(const uint8_t *rec, int d, int bits, int group, float *x) {
    if (bits == 16 ? d % 16 || kq_simd_level() < KQ_SIMD_AVX512VNNI : !shape_ok(d, bits, group)) return 0;
    decode_row(rec, d, bits, group, x);
    return 1;
}
