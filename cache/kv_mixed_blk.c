/* kv_mixed_blk: block attention for the mixed cache (see kv_mixed_blk.h):
 * the three passes over the pages, whatever the instruction set; the steps
 * of each pass come from kv_mixed_blk_avx512.c or kv_mixed_blk_avx2.c. */
#include "kv_mixed_blk.h"

#include <math.h>
#include <string.h>

#include "quant.h"

int kvb_kind(int head_dim) {
    if (head_dim % 64) return KVB_NONE;
    if (kq_simd_level() >= KQ_SIMD_AVX512VNNI && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        return KVB_AVX512;
    if (kq_simd_level() >= KQ_SIMD_AVX2 && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        return KVB_AVX2;
    return KVB_NONE;
}

int kvb_rpad(int rows) { return rows <= 16 ? 16 : 32; }

/* the tier's positions of page pg (has_pos tiers only) */
static const int32_t *page_pos(const kvb_tier *T, int page, int pg) {
    return (const int32_t *)(const void *)(T->pages[pg] + (size_t)page * (T->krec + T->vrec));
}

void kvb_attend(const kvb_job *j) {
    const kvb_ops *o = j->kind == KVB_AVX512 ? &kvb_avx512_ops : &kvb_avx2_ops;
    const int hd = j->head_dim, rp = j->rpad, P = j->page;
    float *kf = j->kf;
    /* Pass 1: scores, tier by tier, page by page (columns: high then low). */
    int col = 0;
    for (int ti = 0; ti < 2; ti++) {
        const kvb_tier *T = &j->tier[ti];
        for (int t0 = 0; t0 < T->n_vis; t0 += P) {
            int nt = T->n_vis - t0 < P ? T->n_vis - t0 : P, pg = t0 / P;
            o->decode(T->pages[pg], T->krec, nt, hd, T->kbits, T->group, kf);
            /* the last group of 8 keys may run past nt: keep those rows defined */
            int pad = (nt + 7) / 8 * 8;
            if (pad > nt) memset(kf + (size_t)nt * hd, 0, sizeof(float) * hd * (size_t)(pad - nt));
            o->score(j, T->qt, kf, T->has_pos ? page_pos(T, P, pg) : NULL, nt, j->pt + (size_t)(col + t0) * rp);
        }
        for (int t = T->n_vis; t < T->n; t++)
            for (int r = 0; r < rp; r++) j->pt[(size_t)(col + t) * rp + r] = -INFINITY;
        col += T->n;
    }
    /* Pass 2: probabilities. */
    o->softmax(j->pt, col, rp);
    /* Pass 3: outputs. */
    for (int r = 0; r < j->rows; r++) memset(j->out[r], 0, sizeof(float) * hd);
    col = 0;
    for (int ti = 0; ti < 2; ti++) {
        const kvb_tier *T = &j->tier[ti];
        for (int t0 = 0; t0 < T->n_vis; t0 += P) {
            int nt = T->n_vis - t0 < P ? T->n_vis - t0 : P, pg = t0 / P;
            const uint8_t *vrec = T->pages[pg] + (size_t)P * T->krec;
            o->decode(vrec, T->vrec, nt, hd, T->vbits, T->group, kf);
            o->accum(j, kf, j->pt + (size_t)(col + t0) * rp, nt);
        }
        col += T->n;
    }
}
