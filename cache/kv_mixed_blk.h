/* kv_mixed_blk (internal): the mixed cache's attention for a block of query
 * rows at once (prompt chunks), AVX-512.
 *
 * Per query the mixed cache needs every probability (the tracker observes
 * them), so this is a two-pass softmax rather than an online one. What makes
 * it fast is the layout: probabilities are kept token-major, pt[t][row], for
 * up to 32 rows (a block of queries x the query heads of one KV head). Each
 * record is decoded once per block into fp32 (not once per query as in the
 * per-query loop) and then
 *   scores: pt[t][.] = sum_d k_t[d] * qt[d][.]  (qt: the block's queries
 *           transposed), 16 or 32 rows per vector op;
 *   softmax: per row, vertically across 16 rows at a time;
 *   output: rows of 6 x head_dim accumulate p[t][row] * v_t in registers.
 * Decoding is value = code * scale + zero (kv_quant.h) with one fused
 * multiply-add, so results match the per-query kernels within float
 * rounding, not bit for bit. */
#ifndef PIVOT_KV_MIXED_BLK_H
#define PIVOT_KV_MIXED_BLK_H

#include <stddef.h>
#include <stdint.h>

#define KVB_MAX_ROWS 32

/* One tier as the kernel reads it: pages of `page` tokens laid out as
 * [page x K record][page x V record][page x int32 position][...]. */
typedef struct {
    uint8_t *const *pages;
    int n;            /* tokens */
    int kbits, vbits; /* 16, 8, 4 or 2 */
    size_t krec, vrec;
    const float *qt;  /* [head_dim][rpad] queries this tier's keys meet, transposed */
    int n_vis;        /* tokens [n_vis, n) are visible to no row (a tier sorted by
                       * position knows): not scored, probability 0 */
} kvb_tier;

typedef struct {
    kvb_tier tier[2]; /* high then low; a tier with n = 0 is skipped */
    int page;         /* tokens per page */
    int head_dim, group;
    int rows, rpad;   /* rows used, rows stored per token (16 or 32) */
    const int32_t *lim; /* [rpad] last position each row may see */
    float scale;
    float *pt;        /* [tier0.n + tier1.n][rpad] out: probabilities */
    float *kf;        /* [page][head_dim] scratch */
    float *const *out; /* [rows] output rows (written, head_dim floats each) */
} kvb_job;

/* Nonzero when the CPU and the shape allow the kernel (AVX-512, head_dim a
 * multiple of 64). */
int kvb_available(int head_dim);
/* rows (<= KVB_MAX_ROWS) rounded up to what pt stores per token. */
int kvb_rpad(int rows);
void kvb_attend(const kvb_job *j);

/* Row helpers for the one-query path (same availability as the kernel).
 * kvb_exp_row: x[t] = e^(x[t] - max x),
 * returns 1 / sum (masked entries become exactly 0). kvb_scale_row: x *= a. */
float kvb_exp_row(float *x, int n);
void kvb_scale_row(float *x, int n, float a);

#endif
