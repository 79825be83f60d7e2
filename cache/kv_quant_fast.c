/* kv_quant_fast: AVX2 kernels over runs of quantized records (the low tier,
 * a page at a time). They exist because one-record kernels cost more per
 * token on INT2/INT4 than FP16 does (unpacking, a horizontal sum per head,
 * loads and stores of the output per token), so a compressed cache would be
 * no faster to attend over than a plain one.
 *
 * dotn: the query is prepared once as int16 (kvq_prep); codes widen to int16
 *   and multiply-add with _mm256_madd_epi16, 16 channels per instruction,
 *   exactly in integers; each group's integer sum is scaled once.
 * axpyn: output accumulators stay in registers across the run: for each
 *   8-byte column of codes, all bit planes x the heads of a pass; the zero
 *   points' contribution is summed per group separately and added once. */
#include <immintrin.h>
#include <string.h>

#include "kv_quant.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float h2f_sz(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return _cvtsh_ss(v);
}

AVX2 static inline float hsum(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}

#define MAXG 64 /* groups per record the kernels take (d/group) */

#define DOTN(BITS)                                                                            \
    AVX2 static void dotn_q##BITS(const uint8_t *rec0, size_t stride, int n, const float *q,  \
                                  const kvq_qprep *qp, int gq, int d, int group, float *sc,   \
                                  size_t scs) {                                               \
        (void)q;                                                                              \
        const int nb = d * BITS / 8, ng = d / group, bpg = group / 16;                        \
        const __m256i mask = _mm256_set1_epi16((1 << BITS) - 1);                              \
        float s[MAXG], z[MAXG];                                                               \
        for (int t = 0; t < n; t++) {                                                         \
            const uint8_t *rec = rec0 + (size_t)t * stride, *sz = rec + nb;                   \
            for (int gi = 0; gi < ng; gi++) {                                                 \
                s[gi] = h2f_sz(sz + 4 * gi);                                                  \
                z[gi] = h2f_sz(sz + 4 * gi + 2);                                              \
            }                                                                                 \
            for (int g0 = 0; g0 < gq; g0 += 4) {                                              \
                int G = gq - g0 < 4 ? gq - g0 : 4;                                            \
                /* Always 4 accumulators (registers, not stack); rows past the                \
                 * last head re-read head g0 and are discarded. */                            \
                size_t roff[4];                                                               \
                for (int g = 0; g < 4; g++) roff[g] = (size_t)(g < G ? g : 0) * d;            \
                __m256 f[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), \
                               _mm256_setzero_ps()};                                          \
                __m256i is[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(),              \
                                 _mm256_setzero_si256(), _mm256_setzero_si256()};             \
                int gi = 0, left = bpg;                                                       \
                for (int pl = 0; pl < 8 / BITS; pl++) {                                       \
                    const __m128i sh = _mm_cvtsi32_si128(pl * BITS);                          \
                    for (int j = 0; j < nb; j += 16) {                                        \
                        __m256i w = _mm256_cvtepu8_epi16(                                     \
                            _mm_loadu_si128((const __m128i *)(const void *)(rec + j)));       \
                        w = _mm256_and_si256(_mm256_srl_epi16(w, sh), mask);                  \
                        const int16_t *qc = qp->q16 + (size_t)g0 * d + pl * nb + j;           \
                        for (int g = 0; g < 4; g++)                                           \
                            is[g] = _mm256_add_epi32(                                         \
                                is[g], _mm256_madd_epi16(w, _mm256_loadu_si256(               \
                                           (const __m256i *)(const void *)(qc + roff[g]))));  \
                        if (--left == 0) {                                                    \
                            __m256 sv = _mm256_set1_ps(s[gi++]);                              \
                            for (int g = 0; g < 4; g++) {                                     \
                                f[g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[g]), sv, f[g]);  \
                                is[g] = _mm256_setzero_si256();                               \
                            }                                                                 \
                            left = bpg;                                                       \
                        }                                                                     \
                    }                                                                         \
                }                                                                             \
                for (int g = 0; g < G; g++) {                                                 \
                    const float *qs = qp->qsum + (size_t)(g0 + g) * ng;                       \
                    float zt = 0.0f;                                                          \
                    for (int k = 0; k < ng; k++) zt += z[k] * qs[k];                          \
                    sc[(size_t)(g0 + g) * scs + t] = hsum(f[g]) * qp->qs[g0 + g] + zt;        \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }
DOTN(8)
DOTN(4)
DOTN(2)

/* Heads per pass so that planes x heads accumulators fit in 12 registers. */
#define AXPYN(BITS, GP)                                                                        \
    AVX2 static void axpyn_q##BITS(const uint8_t *rec0, size_t stride, int n, const float *a,  \
                                   size_t as, int gq, int d, int group, float *out) {          \
        enum { PL = 8 / BITS };                                                                \
        const int nb = d * BITS / 8, ng = d / group;                                           \
        const __m256i mask = _mm256_set1_epi32((1 << BITS) - 1);                               \
        for (int g0 = 0; g0 < gq; g0 += GP) {                                                  \
            int G = gq - g0 < GP ? gq - g0 : GP;                                               \
            for (int j = 0; j < nb; j += 8) {                                                  \
                int gidx[PL];                                                                  \
                for (int pl = 0; pl < PL; pl++) gidx[pl] = (pl * nb + j) / group;              \
                __m256 acc[PL][GP];                                                            \
                for (int pl = 0; pl < PL; pl++)                                                \
                    for (int g = 0; g < GP; g++) acc[pl][g] = _mm256_setzero_ps();             \
                for (int t = 0; t < n; t++) {                                                  \
                    const uint8_t *rec = rec0 + (size_t)t * stride;                            \
                    /* GP weights, zero past the last head: constant loop bounds keep     \
                     * the accumulators in registers */                                     \
                    float wt[GP];                                                              \
                    for (int g = 0; g < GP; g++) wt[g] = g < G ? a[(size_t)(g0 + g) * as + t] : 0.0f; \
                    __m256i w = _mm256_cvtepu8_epi32(                                          \
                        _mm_loadl_epi64((const __m128i *)(const void *)(rec + j)));            \
                    for (int pl = 0; pl < PL; pl++) {                                          \
                        __m256 x = _mm256_cvtepi32_ps(                                         \
                            _mm256_and_si256(_mm256_srli_epi32(w, pl * BITS), mask));          \
                        float s = h2f_sz(rec + nb + 4 * gidx[pl]);                             \
                        for (int g = 0; g < GP; g++)                                           \
                            acc[pl][g] = _mm256_fmadd_ps(_mm256_set1_ps(wt[g] * s), x, acc[pl][g]); \
                    }                                                                          \
                }                                                                              \
                for (int pl = 0; pl < PL; pl++)                                                \
                    for (int g = 0; g < G; g++) {                                              \
                        float *o = out + (size_t)(g0 + g) * d + pl * nb + j;                   \
                        _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), acc[pl][g]));    \
                    }                                                                          \
            }                                                                                  \
            /* zero points: Σ_t a_t·zero_t per group, added to its channels */                 \
            float zs[GP][MAXG];                                                                \
            for (int g = 0; g < G; g++)                                                        \
                for (int k = 0; k < ng; k++) zs[g][k] = 0.0f;                                  \
            for (int t = 0; t < n; t++) {                                                      \
                const uint8_t *sz = rec0 + (size_t)t * stride + nb;                            \
                for (int k = 0; k < ng; k++) {                                                 \
                    float zv = h2f_sz(sz + 4 * k + 2);                                         \
                    for (int g = 0; g < G; g++) zs[g][k] += a[(size_t)(g0 + g) * as + t] * zv; \
                }                                                                              \
            }                                                                                  \
            for (int g = 0; g < G; g++)                                                        \
                for (int k = 0; k < ng; k++) {                                                 \
                    __m256 zv = _mm256_set1_ps(zs[g][k]);                                      \
                    float *o = out + (size_t)(g0 + g) * d + (size_t)k * group;                 \
                    for (int c = 0; c < group; c += 8)                                         \
                        _mm256_storeu_ps(o + c, _mm256_add_ps(_mm256_loadu_ps(o + c), zv));    \
                }                                                                              \
        }                                                                                      \
    }
AXPYN(8, 4)
AXPYN(4, 4)
AXPYN(2, 3)

/* 3-bit records (kv_quant.h: the 2-bit planes, then a bitmask of the third
 * bits): the same scheme as AXPYN, 8-channel chunks of CH at a time, the
 * third bit of a chunk from one mask byte (compare against 1, 2 ... 128).
 * Chunk k of a pass is channels c0 + 8k: plane (c0 + 8k) / nb2, bytes
 * (c0 + 8k) % nb2, so any chunk-aligned shape works. */
#define Q3_GP 3 /* heads per pass: CH x GP accumulators in registers */
#define Q3_CH 4

AVX2 static void axpyn_q3(const uint8_t *rec0, size_t stride, int n, const float *a, size_t as,
                          int gq, int d, int group, float *out) {
    const int nb2 = d / 4, nb = d * 3 / 8, ng = d / group;
    const __m256i three = _mm256_set1_epi32(3), four = _mm256_set1_epi32(4);
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    for (int g0 = 0; g0 < gq; g0 += Q3_GP) {
        const int G = gq - g0 < Q3_GP ? gq - g0 : Q3_GP;
        for (int c0 = 0; c0 < d; c0 += 8 * Q3_CH) {
            const int nch = (d - c0) / 8 < Q3_CH ? (d - c0) / 8 : Q3_CH;
            int boff[Q3_CH], shift[Q3_CH], moff[Q3_CH], soff[Q3_CH];
            for (int k = 0; k < Q3_CH; k++) { /* chunks past d re-read chunk 0, discarded */
                int c = c0 + 8 * (k < nch ? k : 0);
                boff[k] = c % nb2, shift[k] = 2 * (c / nb2), moff[k] = nb2 + c / 8;
                soff[k] = nb + 4 * (c / group);
            }
            __m256 acc[Q3_CH][Q3_GP];
            for (int k = 0; k < Q3_CH; k++)
                for (int g = 0; g < Q3_GP; g++) acc[k][g] = _mm256_setzero_ps();
            for (int t = 0; t < n; t++) {
                const uint8_t *rec = rec0 + (size_t)t * stride;
                float wt[Q3_GP];
                for (int g = 0; g < Q3_GP; g++) wt[g] = g < G ? a[(size_t)(g0 + g) * as + t] : 0.0f;
                for (int k = 0; k < Q3_CH; k++) {
                    __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(rec + boff[k])));
                    w = _mm256_and_si256(_mm256_srlv_epi32(w, _mm256_set1_epi32(shift[k])), three);
                    __m256i hb = _mm256_and_si256(_mm256_set1_epi32(rec[moff[k]]), sel);
                    w = _mm256_or_si256(w, _mm256_and_si256(_mm256_cmpeq_epi32(hb, sel), four));
                    __m256 x = _mm256_cvtepi32_ps(w);
                    float s = h2f_sz(rec + soff[k]);
                    for (int g = 0; g < Q3_GP; g++)
                        acc[k][g] = _mm256_fmadd_ps(_mm256_set1_ps(wt[g] * s), x, acc[k][g]);
                }
            }
            for (int k = 0; k < nch; k++)
                for (int g = 0; g < G; g++) {
                    float *o = out + (size_t)(g0 + g) * d + c0 + 8 * k;
                    _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), acc[k][g]));
                }
        }
        /* zero points: Σ_t a_t·zero_t per group, added to its channels */
        float zs[Q3_GP][MAXG];
        for (int g = 0; g < G; g++)
            for (int k = 0; k < ng; k++) zs[g][k] = 0.0f;
        for (int t = 0; t < n; t++) {
            const uint8_t *sz = rec0 + (size_t)t * stride + nb;
            for (int k = 0; k < ng; k++) {
                float zv = h2f_sz(sz + 4 * k + 2);
                for (int g = 0; g < G; g++) zs[g][k] += a[(size_t)(g0 + g) * as + t] * zv;
            }
        }
        for (int g = 0; g < G; g++)
            for (int k = 0; k < ng; k++) {
                __m256 zv = _mm256_set1_ps(zs[g][k]);
                float *o = out + (size_t)(g0 + g) * d + (size_t)k * group;
                for (int c = 0; c < group; c += 8)
                    _mm256_storeu_ps(o + c, _mm256_add_ps(_mm256_loadu_ps(o + c), zv));
            }
    }
}

kvq_dotn_fn kvq_fast_dotn(int bits, int d, int group) {
    /* 16-channel blocks inside one plane and one group; int32 lanes sum at
     * most group/16 products of <= 255 x 32767 each. */
    if (d * bits / 8 % 16 || group % 16 || group > 1024 || d / group > MAXG) return NULL;
    return bits == 8 ? dotn_q8 : bits == 4 ? dotn_q4 : bits == 2 ? dotn_q2 : NULL; /* no 3 */
}

kvq_axpyn_fn kvq_fast_axpyn(int bits, int d, int group) {
    if (bits == 3) /* 8-channel chunks inside one 2-bit plane and one group */
        return (d / 4) % 8 || group % 8 || d / group > MAXG ? NULL : axpyn_q3;
    if (d * bits / 8 % 8 || group % 8 || d / group > MAXG) return NULL;
    return bits == 8 ? axpyn_q8 : bits == 4 ? axpyn_q4 : bits == 2 ? axpyn_q2 : NULL;
}
