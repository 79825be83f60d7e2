/* kv_quant: record encode/decode and the attention kernels over records. */
#include "kv_quant.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "quant.h"

#define FP16_MAX 65504.0f

static float clamp_h(float x) { return x > FP16_MAX ? FP16_MAX : x < -FP16_MAX ? -FP16_MAX : x; }

static size_t code_bytes(int d, int bits) { return (size_t)d * bits / 8; }

static uint16_t rd16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

void kvq_encode(const float *x, int d, int bits, int group, uint8_t *rec) {
    if (bits == 16) {
        for (int i = 0; i < d; i++) wr16(rec + 2 * i, kq_fp32_to_fp16(x[i]));
        return;
    }
    size_t nb = code_bytes(d, bits);
    uint8_t *sz = rec + nb;
    const int qmax = (1 << bits) - 1;
    memset(rec, 0, nb);
    for (int g = 0; g < d / group; g++) {
        const float *xg = x + g * group;
        float mn = xg[0], mx = xg[0];
        for (int i = 1; i < group; i++) {
            if (xg[i] < mn) mn = xg[i];
            if (xg[i] > mx) mx = xg[i];
        }
        /* Codes are chosen against the fp16-rounded scale and zero, i.e.
         * against what decoding will use, so rounding of the metadata does
         * not add to the error twice. */
        uint16_t hs = kq_fp32_to_fp16(clamp_h((mx - mn) / (float)qmax));
        uint16_t hz = kq_fp32_to_fp16(clamp_h(mn));
        float s = kq_fp16_to_fp32(hs), z = kq_fp16_to_fp32(hz);
        float inv = s > 0 ? 1.0f / s : 0.0f;
        wr16(sz + 4 * g, hs);
        wr16(sz + 4 * g + 2, hz);
        for (int i = 0; i < group; i++) {
            int c = g * group + i;
            long q = s > 0 ? lrintf((xg[i] - z) * inv) : 0;
            if (q < 0) q = 0;
            if (q > qmax) q = qmax;
            rec[c % nb] |= (uint8_t)(q << (bits * (c / (int)nb)));
        }
    }
}

void kvq_decode(const uint8_t *rec, int d, int bits, int group, float *x) {
    if (bits == 16) {
        for (int i = 0; i < d; i++) x[i] = kq_fp16_to_fp32(rd16(rec + 2 * i));
        return;
    }
    size_t nb = code_bytes(d, bits);
    const uint8_t *sz = rec + nb;
    const int mask = (1 << bits) - 1;
    for (int c = 0; c < d; c++) {
        int g = c / group;
        float s = kq_fp16_to_fp32(rd16(sz + 4 * g)), z = kq_fp16_to_fp32(rd16(sz + 4 * g + 2));
        int q = (rec[c % nb] >> (bits * (c / (int)nb))) & mask;
        x[c] = (float)q * s + z;
    }
}

/* ---- portable kernels ---------------------------------------------------- */

/* Mirrors kv_fp16.c's dot_scalar/axpy_scalar per head. */
static void dot16_scalar(const uint8_t *rec, const float *q, int gq, int d, int group, float *out) {
    (void)group;
    for (int g = 0; g < gq; g++) {
        const float *qg = q + (size_t)g * d;
        float s = 0.0f;
        for (int i = 0; i < d; i++) s += kq_fp16_to_fp32(rd16(rec + 2 * i)) * qg[i];
        out[g] = s;
    }
}

static void axpy16_scalar(const uint8_t *rec, const float *a, int gq, int d, int group,
                          float *out) {
    (void)group;
    for (int g = 0; g < gq; g++) {
        float *o = out + (size_t)g * d;
        for (int i = 0; i < d; i++) o[i] += a[g] * kq_fp16_to_fp32(rd16(rec + 2 * i));
    }
}

/* Quantized records: each channel is dequantized as it is consumed; no
 * decoded copy of the record is made. */
#define QUANT_SCALAR(BITS)                                                                       \
    static void dotq##BITS##_scalar(const uint8_t *rec, const float *q, int gq, int d,           \
                                    int group, float *out) {                                     \
        size_t nb = code_bytes(d, BITS);                                                         \
        for (int g = 0; g < gq; g++) out[g] = 0.0f;                                              \
        for (int c0 = 0; c0 < d; c0 += group) {                                                  \
            float s = kq_fp16_to_fp32(rd16(rec + nb + 4 * (c0 / group)));                        \
            float z = kq_fp16_to_fp32(rd16(rec + nb + 4 * (c0 / group) + 2));                    \
            for (int c = c0; c < c0 + group; c++) {                                              \
                float x = (float)((rec[c % nb] >> (BITS * (c / (int)nb))) & ((1 << BITS) - 1)) * \
                              s +                                                                \
                          z;                                                                     \
                for (int g = 0; g < gq; g++) out[g] += x * q[(size_t)g * d + c];                 \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
    static void axpyq##BITS##_scalar(const uint8_t *rec, const float *a, int gq, int d,          \
                                     int group, float *out) {                                    \
        size_t nb = code_bytes(d, BITS);                                                         \
        for (int c0 = 0; c0 < d; c0 += group) {                                                  \
            float s = kq_fp16_to_fp32(rd16(rec + nb + 4 * (c0 / group)));                        \
            float z = kq_fp16_to_fp32(rd16(rec + nb + 4 * (c0 / group) + 2));                    \
            for (int c = c0; c < c0 + group; c++) {                                              \
                float x = (float)((rec[c % nb] >> (BITS * (c / (int)nb))) & ((1 << BITS) - 1)) * \
                              s +                                                                \
                          z;                                                                     \
                for (int g = 0; g < gq; g++) out[(size_t)g * d + c] += a[g] * x;                 \
            }                                                                                    \
        }                                                                                        \
    }
QUANT_SCALAR(8)
QUANT_SCALAR(4)
QUANT_SCALAR(2)

/* ---- AVX2 kernels -------------------------------------------------------- */

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum8(__m256 acc) {
    /* Same reduction order as kv_fp16.c's dot_f16c: bit-identical sums. */
    __m128 lo = _mm256_castps256_ps128(acc), hi = _mm256_extractf128_ps(acc, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}

/* Up to 4 heads per pass keeps the accumulators in registers; a record is
 * converted once per pass. For bits 16 each head's accumulator sees exactly
 * the FMAs of dot_f16c, so results equal the plain cache's. */
#define HEADS_PER_PASS 4

AVX2 static void dot16_avx2(const uint8_t *rec, const float *q, int gq, int d, int group,
                            float *out) {
    (void)group;
    const uint16_t *k = (const uint16_t *)(const void *)rec;
    for (int g0 = 0; g0 < gq; g0 += HEADS_PER_PASS) {
        int G = gq - g0 < HEADS_PER_PASS ? gq - g0 : HEADS_PER_PASS;
        const float *qb = q + (size_t)g0 * d;
        __m256 acc[HEADS_PER_PASS] = {_mm256_setzero_ps(), _mm256_setzero_ps(),
                                      _mm256_setzero_ps(), _mm256_setzero_ps()};
        int i = 0;
        for (; i + 8 <= d; i += 8) {
            __m256 kk = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i)));
            for (int g = 0; g < G; g++)
                acc[g] = _mm256_fmadd_ps(kk, _mm256_loadu_ps(qb + (size_t)g * d + i), acc[g]);
        }
        for (int g = 0; g < G; g++) {
            float s = hsum8(acc[g]);
            for (int j = i; j < d; j++) s += kq_fp16_to_fp32(k[j]) * qb[(size_t)g * d + j];
            out[g0 + g] = s;
        }
    }
}

AVX2 static void axpy16_avx2(const uint8_t *rec, const float *a, int gq, int d, int group,
                             float *out) {
    (void)group;
    const uint16_t *v = (const uint16_t *)(const void *)rec;
    int i = 0;
    for (; i + 8 <= d; i += 8) {
        __m256 vv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i)));
        for (int g = 0; g < gq; g++) {
            float *o = out + (size_t)g * d + i;
            _mm256_storeu_ps(o, _mm256_fmadd_ps(_mm256_set1_ps(a[g]), vv, _mm256_loadu_ps(o)));
        }
    }
    for (; i < d; i++)
        for (int g = 0; g < gq; g++) out[(size_t)g * d + i] += a[g] * kq_fp16_to_fp32(v[i]);
}

/* Eight channels c..c+7 of a quantized record, dequantized in registers. */
AVX2 static inline __m256 deq8(const uint8_t *rec, size_t nb, int bits, int c, __m256 s,
                               __m256 z) {
    __m128i raw = _mm_loadl_epi64((const __m128i *)(rec + (size_t)c % nb));
    __m256i w = _mm256_cvtepu8_epi32(raw);
    w = _mm256_srli_epi32(w, bits * (c / (int)nb));
    w = _mm256_and_si256(w, _mm256_set1_epi32((1 << bits) - 1));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(w), s, z);
}

AVX2 static inline void gsz(const uint8_t *rec, size_t nb, int gi, __m256 *s, __m256 *z) {
    *s = _mm256_set1_ps(_cvtsh_ss(rd16(rec + nb + 4 * gi)));
    *z = _mm256_set1_ps(_cvtsh_ss(rd16(rec + nb + 4 * gi + 2)));
}

#define QUANT_AVX2(BITS)                                                                      \
    AVX2 static void dotq##BITS##_avx2(const uint8_t *rec, const float *q, int gq, int d,     \
                                       int group, float *out) {                               \
        size_t nb = code_bytes(d, BITS);                                                      \
        for (int g0 = 0; g0 < gq; g0 += HEADS_PER_PASS) {                                     \
            int G = gq - g0 < HEADS_PER_PASS ? gq - g0 : HEADS_PER_PASS;                      \
            const float *qb = q + (size_t)g0 * d;                                             \
            __m256 acc[HEADS_PER_PASS] = {_mm256_setzero_ps(), _mm256_setzero_ps(),           \
                                          _mm256_setzero_ps(), _mm256_setzero_ps()};          \
            __m256 s = _mm256_setzero_ps(), z = s;                                            \
            for (int c = 0; c < d; c += 8) {                                                  \
                if (c % group == 0) gsz(rec, nb, c / group, &s, &z);                          \
                __m256 x = deq8(rec, nb, BITS, c, s, z);                                      \
                for (int g = 0; g < G; g++)                                                   \
                    acc[g] = _mm256_fmadd_ps(x, _mm256_loadu_ps(qb + (size_t)g * d + c), acc[g]); \
            }                                                                                 \
            for (int g = 0; g < G; g++) out[g0 + g] = hsum8(acc[g]);                          \
        }                                                                                     \
    }                                                                                         \
    AVX2 static void axpyq##BITS##_avx2(const uint8_t *rec, const float *a, int gq, int d,    \
                                        int group, float *out) {                              \
        size_t nb = code_bytes(d, BITS);                                                      \
        __m256 s = _mm256_setzero_ps(), z = s;                                                \
        for (int c = 0; c < d; c += 8) {                                                      \
            if (c % group == 0) gsz(rec, nb, c / group, &s, &z);                              \
            __m256 x = deq8(rec, nb, BITS, c, s, z);                                          \
            for (int g = 0; g < gq; g++) {                                                    \
                float *o = out + (size_t)g * d + c;                                           \
                _mm256_storeu_ps(o, _mm256_fmadd_ps(_mm256_set1_ps(a[g]), x, _mm256_loadu_ps(o))); \
            }                                                                                 \
        }                                                                                     \
    }
QUANT_AVX2(8)
QUANT_AVX2(4)
QUANT_AVX2(2)

void kvq_kernels_for(int bits, int d, int group, int force_scalar, kvq_kernels *k) {
    int cpu = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
              __builtin_cpu_supports("f16c");
    /* 8-channel chunks must not straddle a bit plane or a group. */
    int shape_ok = bits == 16 || (group % 8 == 0 && code_bytes(d, bits) % 8 == 0);
    int simd = cpu && shape_ok && !force_scalar;
    k->simd = simd;
    switch (bits) {
    case 16:
        k->dot = simd ? dot16_avx2 : dot16_scalar;
        k->axpy = simd ? axpy16_avx2 : axpy16_scalar;
        break;
    case 8:
        k->dot = simd ? dotq8_avx2 : dotq8_scalar;
        k->axpy = simd ? axpyq8_avx2 : axpyq8_scalar;
        break;
    case 4:
        k->dot = simd ? dotq4_avx2 : dotq4_scalar;
        k->axpy = simd ? axpyq4_avx2 : axpyq4_scalar;
        break;
    default:
        k->dot = simd ? dotq2_avx2 : dotq2_scalar;
        k->axpy = simd ? axpyq2_avx2 : axpyq2_scalar;
        break;
    }
}
