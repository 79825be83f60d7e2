/* kv_mixed_blk_avx2: the block attention's steps for CPUs with AVX2 + FMA +
 * F16C but not AVX-512 (the driver and the design: kv_mixed_blk.c /
 * kv_mixed_blk.h). The same passes as the AVX-512 steps on 8-lane vectors,
 * sized for 16 registers instead of 32:
 *   scores: 8 rows per vector; 4 keys x 2 vectors (16 rows) or 2 keys x 4
 *           vectors (32 rows) of accumulators per sweep over head_dim;
 *   output: 2 rows x 32 output dimensions of accumulators per sweep over a
 *           page's values (each value row is loaded once per 2 rows). */
#include "kv_mixed_blk.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kv_quant.h"
#include "kv_simd.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* Scores of nt decoded keys for every row: U keys at a time, NZ vectors of 8
 * rows each (U x NZ accumulators), a key's value per dimension broadcast
 * once for all rows. kf holds whole groups of 8 keys, so U | 8 never reads
 * past it. With pos, a key past a row's lim gets -inf. */
AVX2 __attribute__((always_inline)) static inline void
score_keys(const kvb_job *j, const float *qt, const float *kf, const int32_t *pos, int nt,
           float *pt, const int NZ, const int U) {
    const int hd = j->head_dim, rp = j->rpad;
    const __m256 sc = _mm256_set1_ps(j->scale), ninf = _mm256_set1_ps(-INFINITY);
    for (int u0 = 0; u0 < nt; u0 += U) {
        __m256 acc[4][4];
        for (int u = 0; u < U; u++)
            for (int z = 0; z < NZ; z++) acc[u][z] = _mm256_setzero_ps();
        const float *k = kf + (size_t)u0 * hd;
        for (int d = 0; d < hd; d++) {
            __m256 qv[4];
            for (int z = 0; z < NZ; z++) qv[z] = _mm256_loadu_ps(qt + (size_t)d * rp + 8 * z);
            for (int u = 0; u < U; u++) {
                const __m256 b = _mm256_set1_ps(k[(size_t)u * hd + d]);
                for (int z = 0; z < NZ; z++) acc[u][z] = _mm256_fmadd_ps(b, qv[z], acc[u][z]);
            }
        }
        const int cnt = nt - u0 < U ? nt - u0 : U;
        for (int u = 0; u < cnt; u++)
            for (int z = 0; z < NZ; z++) {
                __m256 v = _mm256_mul_ps(acc[u][z], sc);
                if (pos) {
                    __m256i lim = _mm256_loadu_si256((const __m256i *)(const void *)(j->lim + 8 * z));
                    __m256i past = _mm256_cmpgt_epi32(_mm256_set1_epi32(pos[u0 + u]), lim);
                    v = _mm256_blendv_ps(v, ninf, _mm256_castsi256_ps(past));
                }
                _mm256_storeu_ps(pt + (size_t)(u0 + u) * rp + 8 * z, v);
            }
    }
}

AVX2 static void score(const kvb_job *j, const float *qt, const float *kf, const int32_t *pos,
                       int nt, float *pt) {
    if (j->rpad == 16) score_keys(j, qt, kf, pos, nt, pt, 2, 4);
    else score_keys(j, qt, kf, pos, nt, pt, 4, 2);
}

/* Rows of probabilities, 8 rows per vector: max, exp and sum, scale.
 * Masked entries (-inf) become exactly 0. */
AVX2 static void softmax_cols(float *pt, int ncol, int rp) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int z = 0; z < rp; z += 8) {
        __m256 mx = ninf, sum = _mm256_setzero_ps();
        for (int t = 0; t < ncol; t++) mx = _mm256_max_ps(mx, _mm256_loadu_ps(pt + (size_t)t * rp + z));
        for (int t = 0; t < ncol; t++) {
            float *p = pt + (size_t)t * rp + z;
            __m256 s = _mm256_loadu_ps(p);
            __m256 e = _mm256_and_ps(kvs_exp256(_mm256_sub_ps(s, mx)), _mm256_cmp_ps(s, ninf, _CMP_NEQ_OQ));
            sum = _mm256_add_ps(sum, e);
            _mm256_storeu_ps(p, e);
        }
        const __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), sum);
        for (int t = 0; t < ncol; t++) {
            float *p = pt + (size_t)t * rp + z;
            _mm256_storeu_ps(p, _mm256_mul_ps(_mm256_loadu_ps(p), inv));
        }
    }
}

/* out rows r0.. (NR of them) += sum_t p[t][r] * v_t, 32 dimensions at a time. */
AVX2 __attribute__((always_inline)) static inline void
accum_values(const kvb_job *j, const float *vf, const float *pt, int nt, int r0, const int NR) {
    const int hd = j->head_dim, rp = j->rpad;
    for (int dc = 0; dc < hd; dc += 32) {
        __m256 acc[2][4];
        for (int r = 0; r < NR; r++)
            for (int q = 0; q < 4; q++) acc[r][q] = _mm256_loadu_ps(j->out[r0 + r] + dc + 8 * q);
        for (int t = 0; t < nt; t++) {
            const float *v = vf + (size_t)t * hd + dc;
            const __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8);
            const __m256 v2 = _mm256_loadu_ps(v + 16), v3 = _mm256_loadu_ps(v + 24);
            for (int r = 0; r < NR; r++) {
                const __m256 b = _mm256_set1_ps(pt[(size_t)t * rp + r0 + r]);
                acc[r][0] = _mm256_fmadd_ps(b, v0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(b, v1, acc[r][1]);
                acc[r][2] = _mm256_fmadd_ps(b, v2, acc[r][2]);
                acc[r][3] = _mm256_fmadd_ps(b, v3, acc[r][3]);
            }
        }
        for (int r = 0; r < NR; r++)
            for (int q = 0; q < 4; q++) _mm256_storeu_ps(j->out[r0 + r] + dc + 8 * q, acc[r][q]);
    }
}

AVX2 static void accum(const kvb_job *j, const float *vf, const float *pt, int nt) {
    int r0 = 0;
    for (; r0 + 2 <= j->rows; r0 += 2) accum_values(j, vf, pt, nt, r0, 2);
    if (r0 < j->rows) accum_values(j, vf, pt, nt, r0, 1);
}

const kvb_ops kvb_avx2_ops = {kvq_decode_run_avx2, score, softmax_cols, accum};
