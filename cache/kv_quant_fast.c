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
#include "kv_simd.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}

#define MAXG 64 /* groups per record the kernels take (d/group) */

/* dotn, 4 tokens x up to 3 query heads at a time: 12 int32 accumulators
 * stay in registers over a group's 16-channel chunks (a chunk is widened
 * once per token and multiplied with each head's int16 query), then one
 * hadd tree gives the 4 tokens' group sums of a head at once (instead of a
 * horizontal sum per token and head), scaled by the 4 tokens' group scales
 * in one multiply-add. Channels c..c+15 of a chunk are bytes c % nb of
 * plane c / nb (16 | nb: a chunk never straddles a plane). */
#define DN_T 4 /* tokens per block */
#define DN_G 3 /* query heads per pass */

AVX2 static inline __m128 h2f4(const uint8_t *const *rec, int off) {
    uint16_t v[DN_T];
    for (int u = 0; u < DN_T; u++) memcpy(&v[u], rec[u] + off, 2);
    return _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(const void *)v));
}

/* Group gi's scales and zeros of the DN_T records (either side format:
 * sz8 is KVQ_SZ8 or 0). */
AVX2 static inline void sz4(const uint8_t *const *rec, int nb, int bits, int sz8, int gi, __m128 *s, __m128 *z) {
    if (!sz8) {
        *s = h2f4(rec, nb + 4 * gi);
        *z = h2f4(rec, nb + 4 * gi + 2);
        return;
    }
    float sv[DN_T], zv[DN_T];
    for (int u = 0; u < DN_T; u++) kvs_sz(rec[u], nb, bits, KVQ_SZ8, gi, &sv[u], &zv[u]);
    *s = _mm_loadu_ps(sv);
    *z = _mm_loadu_ps(zv);
}

/* lane u = the sum of the 8 lanes of v[u] */
AVX2 static inline __m128i sum4(const __m256i *v) {
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

AVX2 __attribute__((always_inline)) static inline void
dotn_blk(const uint8_t *rec0, size_t stride, int n, const kvq_qprep *qp, int gq, int d, int group,
         float *sc, size_t scs, const int BITS, int sz8) {
    const int nb = d * BITS / 8, ng = d / group;
    const __m256i mask = _mm256_set1_epi16((1 << BITS) - 1);
    for (int t0 = 0; t0 < n; t0 += DN_T) {
        const int cnt = n - t0 < DN_T ? n - t0 : DN_T;
        const uint8_t *rec[DN_T];
        for (int u = 0; u < DN_T; u++) /* past the run: re-read the last token, discarded */
            rec[u] = rec0 + (size_t)(t0 + (u < cnt ? u : cnt - 1)) * stride;
        for (int g0 = 0; g0 < gq; g0 += DN_G) {
            const int G = gq - g0 < DN_G ? gq - g0 : DN_G;
            const int16_t *qr[DN_G]; /* rows past the last head re-read head g0 */
            for (int g = 0; g < DN_G; g++) qr[g] = qp->q16 + (size_t)(g0 + (g < G ? g : 0)) * d;
            __m128 f[DN_G], zt[DN_G];
            for (int g = 0; g < DN_G; g++) f[g] = zt[g] = _mm_setzero_ps();
            for (int gi = 0; gi < ng; gi++) {
                __m256i acc[DN_G][DN_T];
                for (int g = 0; g < DN_G; g++)
                    for (int u = 0; u < DN_T; u++) acc[g][u] = _mm256_setzero_si256();
                for (int c = gi * group; c < (gi + 1) * group; c += 16) {
                    const int j = c % nb;
                    const __m128i sh = _mm_cvtsi32_si128(c / nb * BITS);
                    for (int u = 0; u < DN_T; u++) {
                        __m256i w = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(rec[u] + j)));
                        w = _mm256_and_si256(_mm256_srl_epi16(w, sh), mask);
                        for (int g = 0; g < DN_G; g++)
                            acc[g][u] = _mm256_add_epi32(
                                acc[g][u], _mm256_madd_epi16(w, _mm256_loadu_si256((const __m256i *)(const void *)(qr[g] + c))));
                    }
                }
                __m128 s4, z4;
                sz4(rec, nb, BITS, sz8, gi, &s4, &z4);
                for (int g = 0; g < DN_G; g++) {
                    f[g] = _mm_fmadd_ps(_mm_cvtepi32_ps(sum4(acc[g])), s4, f[g]);
                    zt[g] = _mm_fmadd_ps(z4, _mm_set1_ps(qp->qsum[(size_t)(g0 + (g < G ? g : 0)) * ng + gi]), zt[g]);
                }
            }
            for (int g = 0; g < G; g++) {
                float o[DN_T];
                _mm_storeu_ps(o, _mm_fmadd_ps(f[g], _mm_set1_ps(qp->qs[g0 + g]), zt[g]));
                for (int u = 0; u < cnt; u++) sc[(size_t)(g0 + g) * scs + t0 + u] = o[u];
            }
        }
    }
}

/* Copies per shape (KVS_SHAPES: the channel loops unroll; a run-time group
 * left a loop per token). */
#define DOTN(BITS)                                                                              \
    AVX2 static void dotn_q##BITS(const uint8_t *rec0, size_t stride, int n, const float *q,    \
                                  const kvq_qprep *qp, int gq, int d, int group, float *sc,     \
                                  size_t scs) {                                                 \
        (void)q;                                                                                \
        if (n <= 0) return;                                                                     \
        const int sz8 = kvq_take_sz8(&group); /* KVS_SHAPES matches the bare group */           \
        KVS_SHAPES(d, group, DOTN_SHAPE##BITS);                                                 \
    }
#define DOTN_SHAPE8(D, G) dotn_blk(rec0, stride, n, qp, gq, D, G, sc, scs, 8, sz8)
#define DOTN_SHAPE4(D, G) dotn_blk(rec0, stride, n, qp, gq, D, G, sc, scs, 4, sz8)
#define DOTN_SHAPE2(D, G) dotn_blk(rec0, stride, n, qp, gq, D, G, sc, scs, 2, sz8)
DOTN(8)
DOTN(4)
DOTN(2)

/* Zero points of a run: out[g][group k] += Σ_t a[g][t]·zero_t,k for the G
 * heads from g0 (G <= 4), one group at a time with the sums in registers
 * (a [head][group] array in memory made every token a store-to-load chain). */
AVX2 static void zero_add(const uint8_t *rec0, size_t stride, int n, const float *a, size_t as,
                          int g0, int G, int d, int group, int nb, int bits, int sz8, float *out) {
    for (int k = 0; k < d / group; k++) {
        float z0 = 0.0f, z1 = 0.0f, z2 = 0.0f, z3 = 0.0f;
        const float *a0 = a + (size_t)g0 * as, *a1 = G > 1 ? a0 + as : a0, *a2 = G > 2 ? a0 + 2 * as : a0,
                    *a3 = G > 3 ? a0 + 3 * as : a0;
        for (int t = 0; t < n; t++) {
            float sv, zv;
            kvs_sz(rec0 + (size_t)t * stride, nb, bits, group | sz8, k, &sv, &zv);
            z0 += a0[t] * zv, z1 += a1[t] * zv, z2 += a2[t] * zv, z3 += a3[t] * zv;
        }
        const float zs[4] = {z0, z1, z2, z3};
        for (int g = 0; g < G; g++) {
            __m256 zv = _mm256_set1_ps(zs[g]);
            float *o = out + (size_t)(g0 + g) * d + (size_t)k * group;
            for (int c = 0; c < group; c += 8)
                _mm256_storeu_ps(o + c, _mm256_add_ps(_mm256_loadu_ps(o + c), zv));
        }
    }
}

/* Heads per pass so that planes x heads accumulators fit in 12 registers. */
#define AXPYN(BITS, GP)                                                                        \
    AVX2 static void axpyn_q##BITS(const uint8_t *rec0, size_t stride, int n, const float *a,  \
                                   size_t as, int gq, int d, int group, float *out) {          \
        enum { PL = 8 / BITS };                                                                \
        const int sz8 = kvq_take_sz8(&group); /* the channel loops take the bare group */     \
        const int nb = d * BITS / 8;                                                           \
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
                        float s, z;                                                            \
                        kvs_sz(rec, nb, BITS, group | sz8, gidx[pl], &s, &z);                  \
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
            zero_add(rec0, stride, n, a, as, g0, G, d, group, nb, BITS, sz8, out);             \
        }                                                                                      \
    }
AXPYN(8, 4)
AXPYN(4, 4)
AXPYN(2, 3)

/* 3-bit records (kv_quant.h: the 2-bit planes, then a bitmask of the third
 * bits): the same scheme as AXPYN, 8-channel chunks of Q3_CH at a time. A
 * chunk's codes are built as bytes: its 8 plane bytes shifted and masked,
 * OR'd with its mask byte spread to 8 bytes of 0 or 4 (Q3_HI, a table), then
 * widened to floats. Chunk k of a pass is channels c0 + 8k: plane
 * (c0 + 8k) / nb2, bytes (c0 + 8k) % nb2, so any chunk-aligned shape works.
 * When a pass lies in one group (mikv: groups of 64) a token's scale and
 * weights are read once for the pass instead of once per chunk. */
#define Q3_GP 3 /* heads per pass: Q3_CH x Q3_GP accumulators in registers */
#define Q3_CH 4

#define Q3B(b, i) ((uint64_t)(((b) >> (i)) & 1) << (8 * (i) + 2))
#define Q3E(b) (Q3B(b, 0) | Q3B(b, 1) | Q3B(b, 2) | Q3B(b, 3) | Q3B(b, 4) | Q3B(b, 5) | Q3B(b, 6) | Q3B(b, 7))
#define Q3E4(b) Q3E(b), Q3E((b) + 1), Q3E((b) + 2), Q3E((b) + 3)
#define Q3E16(b) Q3E4(b), Q3E4((b) + 4), Q3E4((b) + 8), Q3E4((b) + 12)
#define Q3E64(b) Q3E16(b), Q3E16((b) + 16), Q3E16((b) + 32), Q3E16((b) + 48)
static const uint64_t Q3_HI[256] = {Q3E64(0), Q3E64(64), Q3E64(128), Q3E64(192)};

AVX2 __attribute__((always_inline)) static inline void
q3_pass(const uint8_t *rec0, size_t stride, int n, const float *a, size_t as, int g0, int G,
        const int *boff, const int *shift, const int *moff, const int *sgi, int nb, int sz8, int uni,
        __m256 acc[Q3_CH][Q3_GP]) {
    const __m128i three = _mm_set1_epi8(3);
    for (int t = 0; t < n; t++) {
        const uint8_t *rec = rec0 + (size_t)t * stride;
        float wt[Q3_GP];
        for (int g = 0; g < Q3_GP; g++) wt[g] = g < G ? a[(size_t)(g0 + g) * as + t] : 0.0f;
        __m256 ws[Q3_GP];
        if (uni) {
            float sc, zz;
            kvs_sz(rec, nb, 3, sz8, sgi[0], &sc, &zz);
            for (int g = 0; g < Q3_GP; g++) ws[g] = _mm256_set1_ps(wt[g] * sc);
        }
        for (int k = 0; k < Q3_CH; k++) {
            __m128i lo = _mm_loadl_epi64((const __m128i *)(const void *)(rec + boff[k]));
            lo = _mm_and_si128(_mm_srl_epi16(lo, _mm_cvtsi32_si128(shift[k])), three);
            __m128i hi = _mm_loadl_epi64((const __m128i *)(const void *)(Q3_HI + rec[moff[k]]));
            __m256 x = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_or_si128(lo, hi)));
            if (!uni) {
                float sc, zz;
                kvs_sz(rec, nb, 3, sz8, sgi[k], &sc, &zz);
                for (int g = 0; g < Q3_GP; g++) ws[g] = _mm256_set1_ps(wt[g] * sc);
            }
            for (int g = 0; g < Q3_GP; g++) acc[k][g] = _mm256_fmadd_ps(ws[g], x, acc[k][g]);
        }
    }
}

AVX2 __attribute__((always_inline)) static inline void
axpyn_q3_shape(const uint8_t *rec0, size_t stride, int n, const float *a, size_t as, int gq, int d,
               int group, int sz8, float *out) {
    const int nb2 = d / 4, nb = d * 3 / 8;
    for (int g0 = 0; g0 < gq; g0 += Q3_GP) {
        const int G = gq - g0 < Q3_GP ? gq - g0 : Q3_GP;
        for (int c0 = 0; c0 < d; c0 += 8 * Q3_CH) {
            const int nch = (d - c0) / 8 < Q3_CH ? (d - c0) / 8 : Q3_CH;
            int boff[Q3_CH], shift[Q3_CH], moff[Q3_CH], sgi[Q3_CH]; /* sgi: the chunk's group */
            for (int k = 0; k < Q3_CH; k++) { /* chunks past d re-read chunk 0, discarded */
                int c = c0 + 8 * (k < nch ? k : 0);
                boff[k] = c % nb2, shift[k] = 2 * (c / nb2), moff[k] = nb2 + c / 8;
                sgi[k] = c / group;
            }
            __m256 acc[Q3_CH][Q3_GP];
            for (int k = 0; k < Q3_CH; k++)
                for (int g = 0; g < Q3_GP; g++) acc[k][g] = _mm256_setzero_ps();
            if (sgi[0] == sgi[Q3_CH - 1] && sgi[0] == sgi[nch - 1])
                q3_pass(rec0, stride, n, a, as, g0, G, boff, shift, moff, sgi, nb, sz8, 1, acc);
            else
                q3_pass(rec0, stride, n, a, as, g0, G, boff, shift, moff, sgi, nb, sz8, 0, acc);
            for (int k = 0; k < nch; k++)
                for (int g = 0; g < G; g++) {
                    float *o = out + (size_t)(g0 + g) * d + c0 + 8 * k;
                    _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), acc[k][g]));
                }
        }
        zero_add(rec0, stride, n, a, as, g0, G, d, group, nb, 3, sz8, out);
    }
}

AVX2 static void axpyn_q3(const uint8_t *rec0, size_t stride, int n, const float *a, size_t as,
                          int gq, int d, int group, float *out) {
    const int sz8 = kvq_take_sz8(&group); /* KVS_SHAPES matches the bare group */
#define Q3_SHAPE(D, G) axpyn_q3_shape(rec0, stride, n, a, as, gq, D, G, sz8, out)
    KVS_SHAPES(d, group, Q3_SHAPE);
#undef Q3_SHAPE
}

kvq_dotn_fn kvq_fast_dotn(int bits, int d, int group) {
    group = kvq_group(group); /* either side format (kv_side.h) */
    /* 16-channel blocks inside one plane and one group; a group's whole dot
     * is summed in int32 (sum4): codes <= 2^bits - 1 times |q16| <= 32767
     * overflow past 257 channels at 8 bits (4- and 2-bit codes: past 4,369) */
    if (d * bits / 8 % 16 || group % 16 || group > 1024 || d / group > MAXG) return NULL;
    if (bits == 8 && group > 256) return NULL;
    return bits == 8 ? dotn_q8 : bits == 4 ? dotn_q4 : bits == 2 ? dotn_q2 : NULL; /* no 3 */
}

kvq_axpyn_fn kvq_fast_axpyn(int bits, int d, int group) {
    group = kvq_group(group);
    if (bits == 3) /* 8-channel chunks inside one 2-bit plane and one group */
        return (d / 4) % 8 || group % 8 || d / group > MAXG ? NULL : axpyn_q3;
    if (d * bits / 8 % 8 || group % 8 || d / group > MAXG) return NULL;
    return bits == 8 ? axpyn_q8 : bits == 4 ? axpyn_q4 : bits == 2 ? axpyn_q2 : NULL;
}
