/* kv_quant: record encode/decode and the attention kernels over records. */
#include "kv_quant.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kv_simd.h"
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

/* Sets channel c's code in a zeroed record (the layout of kvq_code). */
static void put_code(uint8_t *rec, int d, int bits, int c, int q) {
    if (bits == 3) {
        int nb2 = d / 4;
        rec[c % nb2] |= (uint8_t)((q & 3) << (2 * (c / nb2)));
        rec[nb2 + c / 8] |= (uint8_t)(((q >> 2) & 1) << (c % 8));
        return;
    }
    int nb = d * bits / 8;
    rec[c % nb] |= (uint8_t)(q << (bits * (c / nb)));
}

/* fp16 (scale, zero) for [lo, hi] at qmax steps, rounded as stored, and
 * their float values as decoding reads them. */
static void range_sz16(float lo, float hi, int qmax, uint16_t *hs, uint16_t *hz, float *s, float *z) {
    *hs = kq_fp32_to_fp16(clamp_h((hi - lo) / (float)qmax));
    *hz = kq_fp32_to_fp16(clamp_h(lo));
    *s = kq_fp16_to_fp32(*hs);
    *z = kq_fp16_to_fp32(*hz);
}

/* KVQ_SZ8's two bytes for [lo, hi] at `bits`, widened to include 0: the
 * scale is the smallest code at least (hi - lo) / (2^bits - 1 - 2^(bits-8)),
 * the zero the smallest step count at or below lo, so the grid covers the
 * range (the 2^(bits-8) absorbs the zero's rounding). */
static void range_sz8(float lo, float hi, int bits, uint8_t *sc, uint8_t *zc, float *s, float *z) {
    lo = lo < 0 ? lo : 0.0f; /* NaN reads as 0 too */
    hi = hi > 0 ? hi : 0.0f;
    const float step = kvq_z8_step(bits);
    const union {
        float f;
        uint32_t u;
    } need = {.f = (hi - lo) / ((float)((1 << bits) - 1) - step)};
    /* the smallest code whose value is >= need: round the bits up */
    uint32_t c = need.u <= KVQ_S8_BASE ? 0 : (need.u - KVQ_S8_BASE + (1u << 19) - 1) >> 19;
    *sc = (uint8_t)(c > 255 ? 255 : c);
    *s = kvq_s8(*sc);
    const float zf = ceilf(-lo / (*s * step));
    *zc = (uint8_t)(zf >= 255.0f ? 255 : zf > 0 ? (int)zf : 0);
    *z = -(float)*zc * *s * step;
}

void kvq_range_side(float lo, float hi, int bits, int group, uint8_t *side, float *s, float *z) {
    if (group & KVQ_SZ8) {
        range_sz8(lo, hi, bits, side, side + 1, s, z);
        return;
    }
    uint16_t hs, hz;
    range_sz16(lo, hi, (1 << bits) - 1, &hs, &hz, s, z);
    wr16(side, hs);
    wr16(side + 2, hz);
}

/* Group gi's scale and zero of a record of either format. */
static void rec_sz(const uint8_t *rec, int d, int bits, int group, int gi, float *s, float *z) {
    const uint8_t *p = rec + code_bytes(d, bits) + (size_t)kvq_sz_bytes(group) * gi;
    if (group & KVQ_SZ8) {
        kvq_sz8_get(p, bits, s, z);
    } else {
        *s = kq_fp16_to_fp32(rd16(p));
        *z = kq_fp16_to_fp32(rd16(p + 2));
    }
}

static int code_of(float x, float z, float inv, int qmax) {
    long q = inv > 0 ? lrintf((x - z) * inv) : 0;
    return q < 0 ? 0 : q > qmax ? qmax : (int)q;
}

/* Shrink factors tried by clip: the full range first, so a tie keeps it;
 * the last is KVQ_CLIP_FULL, the narrowest any floor allows. */
static const float clip_alpha[] = {1.0f, 0.95f, 0.9f, 0.85f, 0.8f, 0.75f, 0.7f, 0.65f, 0.6f, 0.55f, 0.5f};
#define N_ALPHA ((int)(sizeof clip_alpha / sizeof clip_alpha[0]))

void kvq_encode_clip(const float *x, int d, int bits, int group, float floor, uint8_t *rec) {
    const int clip = floor < 1.0f;
    if (!clip && bits != 16 && kvq_avx512_encode_row(x, d, bits, group, rec))
        return;
    if (bits == 16) {
        for (int i = 0; i < d; i++) wr16(rec + 2 * i, kq_fp32_to_fp16(x[i]));
        return;
    }
    const int gs = kvq_group(group), szb = kvq_sz_bytes(group);
    size_t nb = code_bytes(d, bits);
    uint8_t *sz = rec + nb;
    const int qmax = (1 << bits) - 1;
    memset(rec, 0, nb);
    for (int g = 0; g < d / gs; g++) {
        const float *xg = x + g * gs;
        float mn = xg[0], mx = xg[0];
        for (int i = 1; i < gs; i++) {
            if (xg[i] < mn) mn = xg[i];
            if (xg[i] > mx) mx = xg[i];
        }
        /* Codes are chosen against the rounded scale and zero, i.e.
         * against what decoding will use, so rounding of the metadata does
         * not add to the error twice. */
        uint8_t side[4];
        float s, z;
        kvq_range_side(mn, mx, bits, group, side, &s, &z);
        if (clip) {
            const float mid = 0.5f * (mn + mx), half = 0.5f * (mx - mn);
            double best = -1;
            /* the factors are exact multiples of 0.05 as floats; the slack
             * keeps a floor spelled 0.8 from dropping the 0.8f range */
            for (int a = 0; a < N_ALPHA && clip_alpha[a] >= floor - 1e-4f; a++) {
                uint8_t side2[4];
                float s2, z2;
                kvq_range_side(mid - clip_alpha[a] * half, mid + clip_alpha[a] * half, bits, group,
                               side2, &s2, &z2);
                float inv2 = s2 > 0 ? 1.0f / s2 : 0.0f;
                double err = 0;
                for (int i = 0; i < gs; i++) {
                    double e = xg[i] - ((float)code_of(xg[i], z2, inv2, qmax) * s2 + z2);
                    err += e * e;
                }
                if (best < 0 || err < best) {
                    best = err;
                    memcpy(side, side2, sizeof side);
                    s = s2, z = z2;
                }
            }
        }
        float inv = s > 0 ? 1.0f / s : 0.0f;
        memcpy(sz + (size_t)szb * g, side, (size_t)szb);
        for (int i = 0; i < gs; i++) put_code(rec, d, bits, g * gs + i, code_of(xg[i], z, inv, qmax));
    }
}

void kvq_encode(const float *x, int d, int bits, int group, uint8_t *rec) {
    kvq_encode_clip(x, d, bits, group, 1.0f, rec);
}

void kvq_decode(const uint8_t *rec, int d, int bits, int group, float *x) {
    if (kvq_avx512_decode_row(rec, d, bits, group, x)) return;
    if (bits == 16) {
        for (int i = 0; i < d; i++) x[i] = kq_fp16_to_fp32(rd16(rec + 2 * i));
        return;
    }
    const int gs = kvq_group(group);
    for (int c = 0; c < d; c++) {
        float s, z;
        rec_sz(rec, d, bits, group, c / gs, &s, &z);
        x[c] = (float)kvq_code(rec, d, bits, c) * s + z;
    }
}

/* ---- portable kernels ---------------------------------------------------- */

/* Plain float loops per head (the portable kernels). */
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
        const int gs = kvq_group(group);                                                         \
        for (int g = 0; g < gq; g++) out[g] = 0.0f;                                              \
        for (int c0 = 0; c0 < d; c0 += gs) {                                                     \
            float s, z;                                                                          \
            rec_sz(rec, d, BITS, group, c0 / gs, &s, &z);                                        \
            for (int c = c0; c < c0 + gs; c++) {                                                 \
                float x = (float)kvq_code(rec, d, BITS, c) * s + z;                              \
                for (int g = 0; g < gq; g++) out[g] += x * q[(size_t)g * d + c];                 \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
    static void axpyq##BITS##_scalar(const uint8_t *rec, const float *a, int gq, int d,          \
                                     int group, float *out) {                                    \
        const int gs = kvq_group(group);                                                         \
        for (int c0 = 0; c0 < d; c0 += gs) {                                                     \
            float s, z;                                                                          \
            rec_sz(rec, d, BITS, group, c0 / gs, &s, &z);                                        \
            for (int c = c0; c < c0 + gs; c++) {                                                 \
                float x = (float)kvq_code(rec, d, BITS, c) * s + z;                              \
                for (int g = 0; g < gq; g++) out[(size_t)g * d + c] += a[g] * x;                 \
            }                                                                                    \
        }                                                                                        \
    }
QUANT_SCALAR(8)
QUANT_SCALAR(4)
QUANT_SCALAR(3)
QUANT_SCALAR(2)

/* ---- AVX2 kernels -------------------------------------------------------- */

#define AVX2 __attribute__((target("avx2,fma,f16c")))

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
            float s = kvs_hsum256(acc[g]);
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

AVX2 static inline void gsz(const uint8_t *rec, int nb, int bits, int group, int gi, __m256 *s, __m256 *z) {
    float sf, zf;
    kvs_sz(rec, nb, bits, group, gi, &sf, &zf);
    *s = _mm256_set1_ps(sf);
    *z = _mm256_set1_ps(zf);
}

/* Channels are visited plane by plane (c = plane*nb + byte), so each
 * 8-channel chunk is 8 consecutive bytes under one shift; the group's scale
 * and zero are reloaded every `group` channels by a countdown (no division
 * in the loop). */
#define QUANT_AVX2(BITS)                                                                      \
    AVX2 static void dotq##BITS##_avx2(const uint8_t *rec, const float *q, int gq, int d,     \
                                       int group, float *out) {                               \
        const int nb = (int)code_bytes(d, BITS);                                              \
        const __m256i mask = _mm256_set1_epi32((1 << BITS) - 1);                              \
        for (int g0 = 0; g0 < gq; g0 += HEADS_PER_PASS) {                                     \
            int G = gq - g0 < HEADS_PER_PASS ? gq - g0 : HEADS_PER_PASS;                      \
            const float *qb = q + (size_t)g0 * d;                                             \
            __m256 acc[HEADS_PER_PASS] = {_mm256_setzero_ps(), _mm256_setzero_ps(),           \
                                          _mm256_setzero_ps(), _mm256_setzero_ps()};          \
            __m256 s = _mm256_setzero_ps(), z = s;                                            \
            int gi = 0, left = 0, c = 0;                                                      \
            for (int pl = 0; pl < 8 / BITS; pl++) {                                           \
                const __m128i sh = _mm_cvtsi32_si128(pl * BITS);                              \
                for (int j = 0; j < nb; j += 8, c += 8, left -= 8) {                          \
                    if (left == 0) {                                                          \
                        gsz(rec, nb, BITS, group, gi++, &s, &z);                              \
                        left = kvq_group(group);                                              \
                    }                                                                         \
                    __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(rec + j))); \
                    w = _mm256_and_si256(_mm256_srl_epi32(w, sh), mask);                      \
                    __m256 x = _mm256_fmadd_ps(_mm256_cvtepi32_ps(w), s, z);                  \
                    for (int g = 0; g < G; g++)                                               \
                        acc[g] = _mm256_fmadd_ps(x, _mm256_loadu_ps(qb + (size_t)g * d + c), acc[g]); \
                }                                                                             \
            }                                                                                 \
            for (int g = 0; g < G; g++) out[g0 + g] = kvs_hsum256(acc[g]);                          \
        }                                                                                     \
    }                                                                                         \
    AVX2 static void axpyq##BITS##_avx2(const uint8_t *rec, const float *a, int gq, int d,    \
                                        int group, float *out) {                              \
        const int nb = (int)code_bytes(d, BITS);                                              \
        const __m256i mask = _mm256_set1_epi32((1 << BITS) - 1);                              \
        __m256 s = _mm256_setzero_ps(), z = s;                                                \
        int gi = 0, left = 0, c = 0;                                                          \
        for (int pl = 0; pl < 8 / BITS; pl++) {                                               \
            const __m128i sh = _mm_cvtsi32_si128(pl * BITS);                                  \
            for (int j = 0; j < nb; j += 8, c += 8, left -= 8) {                              \
                if (left == 0) {                                                              \
                    gsz(rec, nb, BITS, group, gi++, &s, &z);                                  \
                    left = kvq_group(group);                                                  \
                }                                                                             \
                __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(rec + j))); \
                w = _mm256_and_si256(_mm256_srl_epi32(w, sh), mask);                          \
                __m256 x = _mm256_fmadd_ps(_mm256_cvtepi32_ps(w), s, z);                      \
                for (int g = 0; g < gq; g++) {                                                \
                    float *o = out + (size_t)g * d + c;                                       \
                    _mm256_storeu_ps(o, _mm256_fmadd_ps(_mm256_set1_ps(a[g]), x, _mm256_loadu_ps(o))); \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }
QUANT_AVX2(8)
QUANT_AVX2(4)
QUANT_AVX2(2)

/* The codes of channels c..c+7 as 8 int32 lanes (8 | c, codes8_ok): 8
 * consecutive bytes under one shift; 3 bits add each chunk's third bits
 * from one byte of the mask (kv_quant.h). */
AVX2 static inline __m256i codes8(const uint8_t *rec, int bits, int d, int c) {
    if (bits == 3) {
        const int nb2 = d / 4;
        __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(rec + c % nb2)));
        w = _mm256_and_si256(_mm256_srl_epi32(w, _mm_cvtsi32_si128(2 * (c / nb2))), _mm256_set1_epi32(3));
        const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        __m256i hb = _mm256_and_si256(_mm256_set1_epi32(rec[nb2 + c / 8]), bit);
        return _mm256_or_si256(w, _mm256_and_si256(_mm256_cmpeq_epi32(hb, bit), _mm256_set1_epi32(4)));
    }
    const int nb = d * bits / 8;
    __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(rec + c % nb)));
    return _mm256_and_si256(_mm256_srl_epi32(w, _mm_cvtsi32_si128(bits * (c / nb))),
                            _mm256_set1_epi32((1 << bits) - 1));
}

/* 1 when codes8 can read a record of this shape 8 channels at a time. */
static int codes8_ok(int bits, int d) { return bits == 3 ? d % 32 == 0 : (d * bits / 8) % 8 == 0; }

/* A group's scale and zero are broadcast once for its chunks, and BITS is a
 * constant after inlining (8-bit codes need no shift and mask). */
AVX2 __attribute__((always_inline)) static inline void
decode_avx2_bits(const uint8_t *rec, const int BITS, int d, int group, float *x) {
    const int gs = kvq_group(group);
    for (int g0 = 0; g0 < d; g0 += gs) {
        __m256 s, z;
        gsz(rec, (int)code_bytes(d, BITS), BITS, group, g0 / gs, &s, &z);
        for (int c0 = g0; c0 < g0 + gs; c0 += 8) {
            __m256i w = BITS == 8 ? _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(rec + c0)))
                                  : codes8(rec, BITS, d, c0);
            _mm256_storeu_ps(x + c0, _mm256_fmadd_ps(_mm256_cvtepi32_ps(w), s, z));
        }
    }
}

AVX2 void kvq_decode_avx2(const uint8_t *rec, int d, int bits, int group, float *x) {
    if (bits == 16) {
        int i = 0;
        for (; i + 8 <= d; i += 8)
            _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(rec + 2 * i))));
        for (; i < d; i++) x[i] = kq_fp16_to_fp32(rd16(rec + 2 * i));
        return;
    }
    if (!codes8_ok(bits, d) || kvq_group(group) % 8) { /* 8 channels need one plane run and one group */
        kvq_decode(rec, d, bits, group, x);
        return;
    }
    switch (bits) {
    case 8: decode_avx2_bits(rec, 8, d, group, x); break;
    case 4: decode_avx2_bits(rec, 4, d, group, x); break;
    case 3: decode_avx2_bits(rec, 3, d, group, x); break;
    default: decode_avx2_bits(rec, 2, d, group, x); break;
    }
}

/* n records (stride bytes apart) into n rows of d floats. 8-, 4- and 3-bit
 * records that decode_avx2_bits takes run with bits constant and, for the
 * shapes of KVS_SHAPES, head_dim and group too (unrolled, the group's scale
 * read once); others record by record through kvq_decode_avx2. */
AVX2 void kvq_decode_run_avx2(const uint8_t *rec0, size_t stride, int n, int d, int bits, int group,
                              float *x) {
    if ((bits != 8 && bits != 4 && bits != 3) || !codes8_ok(bits, d) || kvq_group(group) % 8) {
        for (int u = 0; u < n; u++) kvq_decode_avx2(rec0 + (size_t)u * stride, d, bits, group, x + (size_t)u * d);
        return;
    }
    const int sz8 = kvq_take_sz8(&group); /* KVS_SHAPES matches the bare group */
#define DEC(D, G, B) for (int u = 0; u < n; u++) decode_avx2_bits(rec0 + (size_t)u * stride, B, D, (G) | sz8, x + (size_t)u * (D))
#define DEC_BITS(D, G)                                                                          \
    do {                                                                                        \
        if (bits == 8) DEC(D, G, 8);                                                            \
        else if (bits == 4) DEC(D, G, 4);                                                       \
        else DEC(D, G, 3);                                                                      \
    } while (0)
    KVS_SHAPES(d, group, DEC_BITS);
#undef DEC_BITS
#undef DEC
}

/* 3-bit one-record kernels (d <= Q3_MAXD): the record decoded into floats
 * once (kvq_decode_avx2), then a plain float dot or axpy. */
#define Q3_MAXD 512

AVX2 static void dotq3_avx2(const uint8_t *rec, const float *q, int gq, int d, int group, float *out) {
    float x[Q3_MAXD];
    kvq_decode_avx2(rec, d, 3, group, x);
    for (int g = 0; g < gq; g++) {
        __m256 acc = _mm256_setzero_ps();
        for (int c = 0; c < d; c += 8)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + c), _mm256_loadu_ps(q + (size_t)g * d + c), acc);
        out[g] = kvs_hsum256(acc);
    }
}

AVX2 static void axpyq3_avx2(const uint8_t *rec, const float *a, int gq, int d, int group, float *out) {
    float x[Q3_MAXD];
    kvq_decode_avx2(rec, d, 3, group, x);
    for (int g = 0; g < gq; g++)
        for (int c = 0; c < d; c += 8) {
            float *o = out + (size_t)g * d + c;
            _mm256_storeu_ps(o, _mm256_fmadd_ps(_mm256_set1_ps(a[g]), _mm256_loadu_ps(x + c), _mm256_loadu_ps(o)));
        }
}

/* Runs of records through the one-record kernels (portable path, FP16,
 * and shapes the fast run kernels do not take). The one-record kernel is
 * looked up again by format because the run signature carries no pointer. */
static void one_dotn(kvq_dot_fn dot, const uint8_t *rec0, size_t stride, int n, const float *q,
                     int gq, int d, int group, float *sc, size_t scs) {
    float o[16];
    for (int t = 0; t < n; t++)
        for (int g0 = 0; g0 < gq; g0 += 16) {
            int G = gq - g0 < 16 ? gq - g0 : 16;
            dot(rec0 + (size_t)t * stride, q + (size_t)g0 * d, G, d, group, o);
            for (int g = 0; g < G; g++) sc[(size_t)(g0 + g) * scs + t] = o[g];
        }
}

static void one_axpyn(kvq_axpy_fn axpy, const uint8_t *rec0, size_t stride, int n,
                      const float *a, size_t as, int gq, int d, int group, float *out) {
    for (int t = 0; t < n; t++)
        for (int g = 0; g < gq; g++)
            axpy(rec0 + (size_t)t * stride, a + (size_t)g * as + t, 1, d, group,
                 out + (size_t)g * d);
}

#define RUN_WRAP(K)                                                                            \
    static void run##K##_n(const uint8_t *r, size_t st, int n, const float *q, const kvq_qprep *qp,  \
                      int gq, int d, int group, float *sc, size_t scs) {                        \
        (void)qp;                                                                               \
        one_dotn(dot##K, r, st, n, q, gq, d, group, sc, scs);                                   \
    }                                                                                           \
    static void run##K##_an(const uint8_t *r, size_t st, int n, const float *a, size_t as, int gq,   \
                       int d, int group, float *out) {                                          \
        one_axpyn(axpy##K, r, st, n, a, as, gq, d, group, out);                                 \
    }
RUN_WRAP(16_scalar)
RUN_WRAP(q8_scalar)
RUN_WRAP(q4_scalar)
RUN_WRAP(q3_scalar)
RUN_WRAP(q2_scalar)
RUN_WRAP(16_avx2)
RUN_WRAP(q8_avx2)
RUN_WRAP(q4_avx2)
RUN_WRAP(q3_avx2)
RUN_WRAP(q2_avx2)

/* The buffers of a kvq_qprep, each 32-byte aligned: q16, qhi, qlo, qs, qsum. */
static size_t qprep_sizes(int gq, int d, int group, size_t sz[5]) {
    group = kvq_group(group);
    sz[0] = (size_t)gq * d * 2, sz[1] = sz[2] = (size_t)gq * d, sz[3] = (size_t)gq * 4;
    sz[4] = (size_t)gq * (d / group) * 4;
    size_t b = 0;
    for (int i = 0; i < 5; i++) b += (sz[i] + 31) & ~(size_t)31;
    return b;
}

size_t kvq_qprep_bytes(int gq, int d, int group) {
    size_t sz[5];
    return qprep_sizes(gq, d, group, sz);
}

void kvq_qprep_init(kvq_qprep *p, void *mem, int gq, int d, int group) {
    size_t sz[5];
    qprep_sizes(gq, d, group, sz);
    void *at[5];
    uint8_t *m = mem;
    for (int i = 0; i < 5; i++) at[i] = m, m += (sz[i] + 31) & ~(size_t)31;
    p->q16 = at[0], p->qhi = at[1], p->qlo = at[2], p->qs = at[3], p->qsum = at[4];
}

void kvq_prep(const float *q, int gq, int d, int group, kvq_qprep *p) {
    group = kvq_group(group);
    int ng = d / group;
    for (int g = 0; g < gq; g++) {
        const float *qg = q + (size_t)g * d;
        float mx = 0.0f;
        for (int c = 0; c < d; c++) mx = fabsf(qg[c]) > mx ? fabsf(qg[c]) : mx;
        float s = mx > 0 ? mx / 32767.0f : 1.0f, inv = 1.0f / s;
        p->qs[g] = s;
        if (!kvq_avx512_prep_row(qg, d, inv, p->q16 + (size_t)g * d, p->qhi + (size_t)g * d, p->qlo + (size_t)g * d))
            for (int c = 0; c < d; c++) {
                const int v = (int)lrintf(qg[c] * inv), lo = ((v % 256) + 256) % 256;
                p->q16[(size_t)g * d + c] = (int16_t)v;
                p->qlo[(size_t)g * d + c] = (uint8_t)lo;
                p->qhi[(size_t)g * d + c] = (int8_t)((v - lo) / 256);
            }
        for (int gi = 0; gi < ng; gi++) {
            float sum = 0.0f;
            for (int c = gi * group; c < (gi + 1) * group; c++) sum += qg[c];
            p->qsum[(size_t)g * ng + gi] = sum;
        }
    }
}

void kvq_kernels_for(int bits, int d, int group, int force_scalar, kvq_kernels *k) {
    int cpu = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
              __builtin_cpu_supports("f16c");
    /* 8-channel chunks must not straddle a bit plane or a group (3 bits:
     * the 2-bit planes, d/4 bytes each). */
    int shape_ok = bits == 16 || (kvq_group(group) % 8 == 0 && (bits == 3 ? (d / 4) % 8 == 0 && d <= Q3_MAXD
                                                                : code_bytes(d, bits) % 8 == 0));
    int simd = cpu && shape_ok && !force_scalar;
    k->simd = simd;
#define PICK(K, S)                                                                             \
    do {                                                                                       \
        k->dot = simd ? dot##K##_avx2 : dot##K##_scalar;                                       \
        k->axpy = simd ? axpy##K##_avx2 : axpy##K##_scalar;                                    \
        k->dotn = simd ? run##K##_avx2_n : run##K##_scalar_n;                                  \
        k->axpyn = simd ? run##K##_avx2_an : run##K##_scalar_an;                               \
    } while (0)
    switch (bits) {
    case 16: PICK(16, 0); break;
    case 8: PICK(q8, 0); break;
    case 4: PICK(q4, 0); break;
    case 3: PICK(q3, 0); break;
    default: PICK(q2, 0); break;
    }
#undef PICK
    k->wants_prep = k->dotn512 = k->axpyn512 = 0;
    if (simd && bits != 16) {
        kvq_dotn_fn dn = kvq_fast_dotn(bits, d, group);
        kvq_axpyn_fn an = kvq_fast_axpyn(bits, d, group);
        if (dn) {
            k->dotn = dn;
            k->wants_prep = 1;
        }
        if (an) k->axpyn = an;
    }
}
