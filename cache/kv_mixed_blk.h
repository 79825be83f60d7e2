/* kv_mixed_blk (internal): the mixed cache's attention for a block of query
 * rows at once (prompt chunks), AVX-512 or AVX2 (the driver here, one
 * instruction set's steps in kv_mixed_blk_avx512.c / kv_mixed_blk_avx2.c).
 *
 * Per query the mixed cache needs every probability (the tracker observes
 * them), so this is a two-pass softmax rather than an online one. What makes
 * it fast is the layout: probabilities are kept token-major, pt[t][row], for
 * up to 32 rows (a block of queries x the query heads of one KV head). Each
 * record is decoded once per block into fp32 (not once per query as in the
 * per-query loop) and then
 *   scores: pt[t][.] = sum_d k_t[d] * qt[d][.]  (qt: the block's queries
 *           transposed), 16 or 32 rows (8 per AVX2 vector, 16 per AVX-512);
 *   softmax: per row, vertically across a vector of rows at a time;
 *   output: tiles of rows (6 x 64 dims on AVX-512, 2 x 32 on AVX2)
 *           accumulate p[t][row] * v_t in registers.
 * Decoding is value = code * scale + zero (kv_quant.h) with one fused
 * multiply-add, so results match the per-query kernels within float
 * rounding, not bit for bit. */
#ifndef PIVOT_KV_MIXED_BLK_H
#define PIVOT_KV_MIXED_BLK_H

#include <stddef.h>
#include <stdint.h>

#define KVB_MAX_ROWS 32

/* One tier as the kernel reads it: pages of `page` tokens laid out as
 * [page x K record][page x V record][page x int32 position (has_pos)][...]. */
typedef struct {
    uint8_t *const *pages;
    int n;            /* tokens */
    int kbits, vbits; /* 16, 8, 4, 3 or 2 */
    size_t krec, vrec;
    int group;        /* the records' format argument (kv_side.h: KVQ_SZ8 too) */
    const float *qt;  /* [head_dim][rpad] queries this tier's keys meet, transposed */
    int n_vis;        /* tokens [n_vis, n) are visible to no row (a tier sorted by
                       * position knows): not scored, probability 0 */
    int has_pos;      /* 1: pages hold positions and a row sees a token only when
                       * its position <= the row's lim; 0 (the low tier, which
                       * stores none): every row sees tokens [0, n_vis) */
} kvb_tier;

/* The instruction sets the kernel comes in. */
enum { KVB_NONE, KVB_AVX2, KVB_AVX512 };

typedef struct {
    kvb_tier tier[2]; /* high then low; a tier with n = 0 is skipped */
    int kind;         /* KVB_AVX2 or KVB_AVX512 (kvb_kind) */
    int page;         /* tokens per page */
    int head_dim;
    int rows, rpad;   /* rows used, rows stored per token (16 or 32) */
    const int32_t *lim; /* [rpad] last position each row may see */
    float scale;
    float *pt;        /* [tier0.n + tier1.n][rpad] out: probabilities */
    float *kf;        /* [page][head_dim] scratch */
    float *const *out; /* [rows] output rows (written, head_dim floats each) */
} kvb_job;

/* The best kind the CPU and the shape allow (head_dim a multiple of 64;
 * AVX-512F/BW/VL, else AVX2 + FMA + F16C), or KVB_NONE. */
int kvb_kind(int head_dim);
/* rows (<= KVB_MAX_ROWS) rounded up to what pt stores per token. */
int kvb_rpad(int rows);
void kvb_attend(const kvb_job *j);

/* The tracker's view of tokens t0..t0+n-1's probabilities (pt: their rows,
 * rp floats each, 16 or 32; AVX-512: kvb_kind(64) == KVB_AVX512): bit qi of
 * mask[t] is set when query qi (rows qi*gq .. qi*gq+gq-1) sees token t0+t
 * (t0+t < nhv[qi]) and its mean probability over its gq rows, summed in
 * row order and divided by gq as kv_mixed_attend.c's scalar loop does, is
 * below thr[qi]. nq * gq <= rp. */
void kvb_low_masks(const float *pt, int t0, int n, int rp, int nq, int gq, const float *thr, const int *nhv,
                   uint32_t *mask);

/* Row helpers for the one-query path (AVX-512: kvb_kind(64) == KVB_AVX512),
 * kv_rows.h's max_row, exp_sum and scale_row. */
float kvb_max_row(const float *x, int n);
float kvb_exp_sum(float *x, int n, float m);
void kvb_scale_row(float *x, int n, float a);

/* ---- internal to kv_mixed_blk*.c: one instruction set's steps ------------ */
typedef struct {
    /* n records stride bytes apart to x[n][head_dim] (kvq_decode's values,
     * the scale and zero applied in one fused multiply-add; AVX2:
     * kvq_decode_run_avx2). */
    void (*decode)(const uint8_t *rec0, size_t stride, int n, int d, int bits, int group, float *x);
    /* pt[t][row] = scale * q_row . k_t for nt decoded keys (kf, rows padded
     * with zeros to a multiple of 8); with pos, -inf where pos[t] > lim[row]. */
    void (*score)(const kvb_job *j, const float *qt, const float *kf, const int32_t *pos, int nt,
                  float *pt);
    /* Each row's softmax down ncol tokens of pt (-inf becomes exactly 0). */
    void (*softmax)(float *pt, int ncol, int rp);
    /* out[row] += sum_t pt[t][row] * v_t over nt decoded values, every row. */
    void (*accum)(const kvb_job *j, const float *vf, const float *pt, int nt);
} kvb_ops;

extern const kvb_ops kvb_avx512_ops, kvb_avx2_ops;

#endif
