/* kv_mixed_blk: block attention for the mixed cache (see kv_mixed_blk.h). */
#include "kv_mixed_blk.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kv_quant.h"
#include "quant.h"
#include "kv_simd.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma")))
#define TILE 6 /* output rows per register tile: 6 x 4 zmm */

int kvb_available(int head_dim) {
    return head_dim % 64 == 0 && kq_simd_level() >= KQ_SIMD_AVX512VNNI &&
           __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}

int kvb_rpad(int rows) { return rows <= 16 ? 16 : 32; }

AVX512 static inline float h2f(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return _cvtsh_ss(v);
}

/* One record to head_dim floats (the same values as kvq_decode, with the
 * scale and zero applied in one fused multiply-add). */
AVX512 static void decode(const uint8_t *rec, int bits, int d, int group, float *x) {
    if (bits == 16) {
        for (int i = 0; i < d; i += 16)
            _mm512_storeu_ps(x + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(rec + 2 * i))));
        return;
    }
    const int nb = d * bits / 8;
    if (!kvs_codes16_ok(bits, d) || group % 16) { /* 16 channels need one plane and one group */
        kvq_decode(rec, d, bits, group, x);
        return;
    }
    const uint8_t *sz = rec + nb;
    for (int c0 = 0; c0 < d; c0 += 16) {
        int g = c0 / group;
        __m512i w = kvs_codes16(rec, bits, d, c0);
        _mm512_storeu_ps(x + c0, _mm512_fmadd_ps(_mm512_cvtepi32_ps(w), _mm512_set1_ps(h2f(sz + 4 * g)),
                                                 _mm512_set1_ps(h2f(sz + 4 * g + 2))));
    }
}

static const int32_t *page_pos(const kvb_tier *T, int page, int p) {
    return (const int32_t *)(const void *)(T->pages[p] + (size_t)page * (T->krec + T->vrec));
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
            __m512i pv = _mm512_set1_epi32(pos[u0 + u]);
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

AVX512 static void accum_tile(const kvb_job *j, const float *vf, const float *pt, int nt, int r0,
                              int nr) {
#define ACC(k) accum_values(j, vf, pt, nt, r0, k)
    KVS_SWITCH6(nr, ACC)
#undef ACC
}

void kvb_attend(const kvb_job *j) {
    const int hd = j->head_dim, rp = j->rpad, P = j->page;
    float *kf = j->kf;
    /* Pass 1: scores, tier by tier, page by page (columns: high then low). */
    int col = 0;
    for (int ti = 0; ti < 2; ti++) {
        const kvb_tier *T = &j->tier[ti];
        for (int t0 = 0; t0 < T->n_vis; t0 += P) {
            int nt = T->n_vis - t0 < P ? T->n_vis - t0 : P, pg = t0 / P;
            for (int u = 0; u < nt; u++)
                decode(T->pages[pg] + (size_t)u * T->krec, T->kbits, hd, j->group, kf + (size_t)u * hd);
            /* the last group of 8 keys may run past nt: keep those rows defined */
            int pad = (nt + 7) / 8 * 8;
            if (pad > nt) memset(kf + (size_t)nt * hd, 0, sizeof(float) * hd * (size_t)(pad - nt));
            const int32_t *pos = page_pos(T, P, pg);
            float *pt = j->pt + (size_t)(col + t0) * rp;
            if (rp == 16) score_keys16(j, T->qt, kf, pos, nt, pt);
            else score_keys32(j, T->qt, kf, pos, nt, pt);
        }
        for (int t = T->n_vis; t < T->n; t++)
            for (int r = 0; r < rp; r++) j->pt[(size_t)(col + t) * rp + r] = -INFINITY;
        col += T->n;
    }
    /* Pass 2: probabilities. */
    softmax_cols(j->pt, col, rp);
    /* Pass 3: outputs. */
    for (int r = 0; r < j->rows; r++) memset(j->out[r], 0, sizeof(float) * hd);
    col = 0;
    for (int ti = 0; ti < 2; ti++) {
        const kvb_tier *T = &j->tier[ti];
        for (int t0 = 0; t0 < T->n_vis; t0 += P) {
            int nt = T->n_vis - t0 < P ? T->n_vis - t0 : P, pg = t0 / P;
            const uint8_t *vrec = T->pages[pg] + (size_t)P * T->krec;
            for (int u = 0; u < nt; u++)
                decode(vrec + (size_t)u * T->vrec, T->vbits, hd, j->group, kf + (size_t)u * hd);
            const float *pt = j->pt + (size_t)(col + t0) * rp;
            for (int r0 = 0; r0 < j->rows; r0 += TILE)
                accum_tile(j, kf, pt, nt, r0, j->rows - r0 < TILE ? j->rows - r0 : TILE);
        }
        col += T->n;
    }
}

/* ---- row helpers (one query) ----------------------------------------------- */

static inline __mmask16 first(int n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }

AVX512 float kvb_exp_row(float *x, int n) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 mv = ninf, sum = _mm512_setzero_ps();
    for (int t = 0; t < n; t += 16)
        mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(ninf, first(n - t), x + t));
    const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
    for (int t = 0; t < n; t += 16) {
        __mmask16 live = first(n - t);
        __m512 s = _mm512_mask_loadu_ps(ninf, live, x + t);
        __m512 e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(s, ninf, _CMP_NEQ_OQ),
                                       kvs_exp512(_mm512_sub_ps(s, mx)));
        sum = _mm512_add_ps(sum, e);
        _mm512_mask_storeu_ps(x + t, live, e);
    }
    return 1.0f / _mm512_reduce_add_ps(sum);
}

AVX512 void kvb_scale_row(float *x, int n, float a) {
    const __m512 av = _mm512_set1_ps(a);
    for (int t = 0; t < n; t += 16) {
        __mmask16 live = first(n - t);
        _mm512_mask_storeu_ps(x + t, live, _mm512_mul_ps(_mm512_maskz_loadu_ps(live, x + t), av));
    }
}
