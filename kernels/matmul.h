/* km: matrix products with weights kept in their GGUF format.
 *
 *   y[t][r] = sum_c W[r][c] * x[t][c]     t < n_tok, r < rows, c < cols
 *
 * W is a GGUF tensor with ne = [cols, rows] (ne[0] contiguous). x and y are
 * row-major f32 ([n_tok][cols] and [n_tok][rows]). Activations are quantized
 * once per call into the weight's vec_dot type (kernels/quant.h); the work is
 * split over the thread pool by blocks of rows, and for n_tok > 1 tiled so
 * that each weight block is read once per tile of tokens (prefill and batched
 * decode). */
#ifndef PIVOT_KM_MATMUL_H
#define PIVOT_KM_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "threadpool.h"

typedef struct {
    uint32_t type; /* KQ_* */
    int64_t cols;  /* ne[0] */
    int64_t rows;  /* ne[1] */
    const void *data;
    /* Optional: the same matrix with 16 rows in the lanes of a register
     * (km_repack16), not owned; NULL when none. km_matmul reads it instead
     * of data where the kernels allow (Q4_1 or Q8_0, 16-bit activations,
     * an AVX512-VBMI CPU); data stays the matrix for everything else. */
    const void *r16;
} km_weight;

/* Scratch for quantized activations; grows on demand and is reused, so a
 * steady-state decode loop does not allocate. One per caller thread.
 *
 * Decode (n_tok = 1, and batches that fit one call of a 16-row kernel,
 * where the weights stream once) issues software prefetches ~2 KB ahead of
 * the weight rows being read (measured +5-35% single-thread streaming
 * throughput on the SmolLM2 shapes; 8 decodes a step +9% on a Xeon);
 * PIVOT_PREFETCH=0 in the environment when the scratch is created turns
 * that off, for A/B measurements.
 *
 * It also carries the activation precision of the matmuls run with it:
 * 16 bits by default (KQ_ACT_BITS_DEFAULT), or 8 (GGML-style Q8 activations,
 * faster, but a few % of logit error on a 30-layer model). */
typedef struct km_scratch km_scratch;
km_scratch *km_scratch_new(void);
void km_scratch_free(km_scratch *s);
/* bits = 8 or 16; PV_EINVAL otherwise (the setting is then unchanged). */
int km_scratch_set_act_bits(km_scratch *s, int bits);
int km_scratch_act_bits(const km_scratch *s);

/* Returns 0, PV_EINVAL (bad shapes/type) or PV_ENOMEM. pool may be NULL
 * (single-threaded).
 *
 * Determinism: y[t] depends only on W and x[t] — not on n_tok, on which
 * other tokens share the call, or on the thread count — bit for bit (for one
 * activation precision and one SIMD choice). Batched prefill, token-by-token
 * decode and any split of a prompt therefore compute the same numbers. */
int km_matmul(tp_pool *pool, km_scratch *s, const km_weight *w, const float *x, int64_t n_tok,
              float *y);

/* y[i] = W[i]·x for nw <= KM_MAX_N matrices with the same column count (the
 * products that share an input: Wq|Wk|Wv, gate|up): x is quantized once and
 * all rows run in one pool run, so the threads stream one long job instead
 * of nw short ones. Bit-identical to nw km_matmul calls (same row tasks);
 * matrices whose activation formats differ fall back to those calls. */
#define KM_MAX_N 4
int km_matmul_n(tp_pool *pool, km_scratch *s, const km_weight *const *w, int nw, const float *x,
                int64_t n_tok, float *const *y);

/* Bytes km_repack16 writes for w, or 0 when no kernel on this CPU would
 * read them (rows not a multiple of 16, or no 16-row kernel for w's type
 * at the CPU's level: Q4_1 and Q8_0 at AVX512-VBMI, Q4_1 at AVX2). */
size_t km_repack16_bytes(const km_weight *w);
/* Writes w's rows 16 at a time into dst (km_repack16_bytes(w) bytes, 64-byte
 * aligned; kernels/quant_q41r16.c has the layout); the caller owns dst and
 * sets w->r16 = dst. The products are then ~1.9x faster over 8 tokens and
 * ~1.6x over one with the matrix in cache on AVX512-VBMI, 1.14-1.28x and
 * 1.0-1.08x on AVX2 (bench/bench_q41_rows16.c), with results that differ
 * from the row kernels' in float rounding only (and are the same on both
 * levels). */
void km_repack16(const km_weight *w, void *dst);

/* Gather row `r` of W dequantized to f32 (embedding lookup). */
int km_get_row(const km_weight *w, int64_t r, float *out);

#endif
