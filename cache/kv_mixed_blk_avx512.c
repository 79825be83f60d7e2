/* kv_mixed_blk_avx512: the block attention's steps on AVX-512 (the driver
 * and the design: kv_mixed_blk.c / kv_mixed_blk.h). */
#include "kv_mixed_blk.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kv_quant.h"
#include "quant.h"
#include "kv_simd.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma")))
#define TILE 6 /* output rows per register tile: 6 x 4 zmm */

/* One record to head_dim floats (kvs_decode16, or kvq_decode for shapes
 * whose 16 channels straddle a plane or a group). */
AVX512 __attribute__((always_inline)) static inline void decode_one(const uint8_t *rec, int d, int bits,
                                                                    int group, float *x) {
    if (bits != 16 && (!kvs_codes16_ok(bits, d) || kvq_group(group) % 16)) {
        kvq_decode(rec, d, bits, group, x);
        return;
    }
    kvs_decode16(rec, d, bits, group, x);
}

/* n records stride bytes apart; 8-, 4- and 3-bit records decode with bits
 * constant and, for the shapes of KVS_SHAPES, head_dim and group too
 * (unrolled, a group's scale and zero read once, shared code loads). */
AVX512 static void decode(const uint8_t *rec0, size_t stride, int n, int d, int bits, int group, float *x) {
    const int sz8 = kvq_take_sz8(&group); /* KVS_SHAPES matches the bare group */
#define DEC(D, G, B) for (int u = 0; u < n; u++) decode_one(rec0 + (size_t)u * stride, D, B, (G) | sz8, x + (size_t)u * (D))
#define DEC_BITS(D, G)                                                                          \
    do {                                                                                        \
        if (bits == 8) DEC(D, G, 8);                                                            \
        else if (bits == 4) DEC(D, G, 4);                                                       \
        else if (bits == 3) DEC(D, G, 3);                                                       \
        else DEC(D, G, bits);                                                                   \
    } while (0)
    KVS_SHAPES(d, group, DEC_BITS);
#undef DEC_BITS
#undef DEC
}

/* Scores of nt decoded keys (kf rows) for every row: 8 keys at a time, NZ
 * vectors of 16 rows each, so a key's value per dimension is broadcast once
 * and meets all rows. Keys a row may not see get -inf. */
AVX512 __attribute__((always_inline)) static inline void
score_keys(const kvb_job *j, const float *qt, const float *kf, const int32_t *pos, int nt,
           float *pt, const int NZ) {
    const int hd = j->head_dim, rp = j->rpad;
    const __m512 sc = _mm512_set1_ps(j->scale), ninf = _mm512_set1_ps(-INFINITY);
    __m512i limv[2];
    for (int z = 0; z < NZ; z++) limv[z] = _mm512_loadu_si512(j->lim + 16 * z);
    for (int u0 = 0; u0 < nt; u0 += 8) {
        __m512 acc[8][2];
        for (int u = 0; u < 8; u++)
            for (int z = 0; z < NZ; z++) acc[u][z] = _mm512_setzero_ps();
        const float *k = kf + (size_t)u0 * hd;
        for (int d = 0; d < hd; d++) {
            __m512 qv[2];
            for (int z = 0; z < NZ; z++) qv[z] = _mm512_loadu_ps(qt + (size_t)d * rp + 16 * z);
            for (int u = 0; u < 8; u++) {
                __m512 b = _mm512_set1_ps(k[(size_t)u * hd + d]);
                for (int z = 0; z < NZ; z++) acc[u][z] = _mm512_fmadd_ps(b, qv[z], acc[u][z]);
            }
        }
        int cnt = nt - u0 < 8 ? nt - u0 : 8;
        for (int u = 0; u < cnt; u++) {
            __m512i pv = _mm512_set1_epi32(pos ? pos[u0 + u] : INT32_MIN);
            for (int z = 0; z < NZ; z++) {
                __mmask16 m = _mm512_cmp_epi32_mask(pv, limv[z], _MM_CMPINT_LE);
                _mm512_storeu_ps(pt + (size_t)(u0 + u) * rp + 16 * z,
                                 _mm512_mask_mov_ps(ninf, m, _mm512_mul_ps(acc[u][z], sc)));
            }
        }
    }
}

AVX512 static void score_keys16(const kvb_job *j, const float *qt, const float *kf,
                                const int32_t *pos, int nt, float *pt) {
    score_keys(j, qt, kf, pos, nt, pt, 1);
}
AVX512 static void score_keys32(const kvb_job *j, const float *qt, const float *kf,
                                const int32_t *pos, int nt, float *pt) {
    score_keys(j, qt, kf, pos, nt, pt, 2);
}

/* Rows of probabilities, 16 rows per vector: max, exp and sum, scale.
 * Masked entries (-inf) become exactly 0. */
AVX512 static void softmax_cols(float *pt, int ncol, int rp) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int z = 0; z < rp; z += 16) {
        __m512 mx = ninf, sum = _mm512_setzero_ps();
        for (int t = 0; t < ncol; t++) mx = _mm512_max_ps(mx, _mm512_loadu_ps(pt + (size_t)t * rp + z));
        for (int t = 0; t < ncol; t++) {
            float *p = pt + (size_t)t * rp + z;
            __m512 s = _mm512_loadu_ps(p);
            __m512 e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(s, ninf, _CMP_NEQ_OQ),
                                           kvs_exp512(_mm512_sub_ps(s, mx)));
            sum = _mm512_add_ps(sum, e);
            _mm512_storeu_ps(p, e);
        }
        __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), sum);
        for (int t = 0; t < ncol; t++) {
            float *p = pt + (size_t)t * rp + z;
            _mm512_storeu_ps(p, _mm512_mul_ps(_mm512_loadu_ps(p), inv));
        }
    }
}

/* out rows r0.. (NR of them) += sum_t p[t][r] * v_t over nt decoded values. */
AVX512 __attribute__((always_inline)) static inline void
accum_values(const kvb_job *j, const float *vf, const float *pt, int nt, int r0, const int NR) {
    const int hd = j->head_dim, rp = j->rpad;
    for (int dc = 0; dc < hd; dc += 64) {
        __m512 acc[TILE][4];
        for (int r = 0; r < NR; r++)
            for (int q = 0; q < 4; q++) acc[r][q] = _mm512_loadu_ps(j->out[r0 + r] + dc + 16 * q);
        for (int t = 0; t < nt; t++) {
            const float *v = vf + (size_t)t * hd + dc;
            __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16);
            __m512 v2 = _mm512_loadu_ps(v + 32), v3 = _mm512_loadu_ps(v + 48);
            for (int r = 0; r < NR; r++) {
                __m512 b = _mm512_set1_ps(pt[(size_t)t * rp + r0 + r]);
                acc[r][0] = _mm512_fmadd_ps(b, v0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(b, v1, acc[r][1]);
                acc[r][2] = _mm512_fmadd_ps(b, v2, acc[r][2]);
                acc[r][3] = _mm512_fmadd_ps(b, v3, acc[r][3]);
            }
        }
        for (int r = 0; r < NR; r++)
            for (int q = 0; q < 4; q++) _mm512_storeu_ps(j->out[r0 + r] + dc + 16 * q, acc[r][q]);
    }
}

AVX512 static void accum(const kvb_job *j, const float *vf, const float *pt, int nt) {
    for (int r0 = 0; r0 < j->rows; r0 += TILE) {
        const int nr = j->rows - r0 < TILE ? j->rows - r0 : TILE;
#define ACC(k) accum_values(j, vf, pt, nt, r0, k)
        KVS_SWITCH6(nr, ACC)
#undef ACC
    }
}

AVX512 static void score(const kvb_job *j, const float *qt, const float *kf, const int32_t *pos,
                         int nt, float *pt) {
    if (j->rpad == 16) score_keys16(j, qt, kf, pos, nt, pt);
    else score_keys32(j, qt, kf, pos, nt, pt);
}

const kvb_ops kvb_avx512_ops = {decode, score, softmax_cols, accum};

/* ---- row helpers (one query) ----------------------------------------------- */

static inline __mmask16 first(int n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }

AVX512 float kvb_max_row(const float *x, int n) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 mv = ninf;
    for (int t = 0; t < n; t += 16) mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(ninf, first(n - t), x + t));
    return _mm512_reduce_max_ps(mv);
}

AVX512 float kvb_exp_sum(float *x, int n, float m) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY), mx = _mm512_set1_ps(m);
    __m512 sum = _mm512_setzero_ps();
    for (int t = 0; t < n; t += 16) {
        __mmask16 live = first(n - t);
        __m512 s = _mm512_mask_loadu_ps(ninf, live, x + t);
        __m512 e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(s, ninf, _CMP_NEQ_OQ),
                                       kvs_exp512(_mm512_sub_ps(s, mx)));
        sum = _mm512_add_ps(sum, e);
        _mm512_mask_storeu_ps(x + t, live, e);
    }
    return _mm512_reduce_add_ps(sum);
}

AVX512 void kvb_scale_row(float *x, int n, float a) {
    const __m512 av = _mm512_set1_ps(a);
    for (int t = 0; t < n; t += 16) {
        __mmask16 live = first(n - t);
        _mm512_mask_storeu_ps(x + t, live, _mm512_mul_ps(_mm512_maskz_loadu_ps(live, x + t), av));
    }
}

/* 16 queries at a time: their rows' sums gathered across a token's one or
 * two vectors of rows (vpermt2ps per row of a query), in row order; the
 * indices, thresholds and visibilities set up once per run of tokens. */
AVX512 void kvb_low_masks(const float *pt, int t0, int n, int rp, int nq, int gq, const float *thr,
                          const int *nhv, uint32_t *mask) {
    const __m512 div = _mm512_set1_ps((float)gq);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int t = 0; t < n; t++) mask[t] = 0;
    for (int q0 = 0; q0 < nq; q0 += 16) {
        const int k = nq - q0 < 16 ? nq - q0 : 16;
        const __mmask16 live = (__mmask16)((1u << k) - 1);
        /* lane i: row (q0 + i) * gq of the 32 (0 past the live lanes) */
        const __m512i base =
            _mm512_maskz_mullo_epi32(live, _mm512_add_epi32(_mm512_set1_epi32(q0), lane), _mm512_set1_epi32(gq));
        const __m512 th = _mm512_maskz_loadu_ps(live, thr + q0);
        const __m512i seen = _mm512_maskz_loadu_epi32(live, nhv + q0);
        for (int t = 0; t < n; t++) {
            const float *row = pt + (size_t)t * rp;
            const __m512 lo = _mm512_loadu_ps(row), hi = rp > 16 ? _mm512_loadu_ps(row + 16) : _mm512_setzero_ps();
            __m512 agg = _mm512_permutex2var_ps(lo, base, hi);
            for (int g = 1; g < gq; g++) {
                const __m512i idx = _mm512_maskz_add_epi32(live, base, _mm512_set1_epi32(g));
                agg = _mm512_add_ps(agg, _mm512_permutex2var_ps(lo, idx, hi));
            }
            const __mmask16 low = _mm512_mask_cmp_ps_mask(live, _mm512_div_ps(agg, div), th, _CMP_LT_OQ);
            const __mmask16 vis = _mm512_mask_cmpgt_epi32_mask(live, seen, _mm512_set1_epi32(t0 + t));
            mask[t] |= (uint32_t)(low & vis) << q0;
        }
    }
}
