/* pvc: the CUDA backend's C interface (the .cu files in kernels/cuda implement it).
 *
 * Every entry point returns 0 (PV_OK) or a negative PV_* code and never
 * aborts; the text of the last CUDA/cuBLAS failure on this thread is kept
 * for messages (pvc_last_error). Work is queued on the pvc_ctx's stream and
 * runs asynchronously unless the function says it waits.
 *
 * Conventions, matching the CPU side (kernels/matmul.h, cache/kv.h):
 *   - matrices are row-major; a weight W of GGUF shape ne = [cols, rows] is
 *     FP16 [rows][cols] on the device, y[t][r] = sum_c W[r][c] x[t][c];
 *   - "half" buffers hold IEEE binary16 bit patterns (uint16_t here);
 *   - activations that feed matrix products are half, the residual stream,
 *     projection outputs and attention queries are f32.
 *
 * This header is plain C so model/llama_cuda.c and tests can include it; it
 * is only linked when the build has CUDA (PIVOT_HAVE_CUDA). */
#ifndef PIVOT_PVCUDA_H
#define PIVOT_PVCUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pvc_ctx pvc_ctx;

/* ---- device.cu: devices, memory, streams ---- */
int pvcuda_device_count(char *why, size_t whylen);
int pvcuda_device_name(int i, char *name, size_t len);

/* Binds GPU `device`, creates a stream and a cuBLAS handle. PV_ENODEV when
 * the device or driver is unusable (err says why). */
int pvc_create(int device, pvc_ctx **out, char *err, size_t errlen);
void pvc_destroy(pvc_ctx *c);
/* Text of the last CUDA or cuBLAS error seen on this thread ("" if none). */
const char *pvc_last_error(void);
int pvc_sm_count(const pvc_ctx *c);
int pvc_mem_info(pvc_ctx *c, size_t *free_b, size_t *total_b);

int pvc_alloc(pvc_ctx *c, size_t bytes, void **p); /* PV_ENOMEM when it does not fit */
void pvc_free(pvc_ctx *c, void *p);
int pvc_host_alloc(size_t bytes, void **p); /* pinned host memory */
void pvc_host_free(void *p);
int pvc_memset(pvc_ctx *c, void *p, int byte, size_t bytes);
/* Host -> device, async: src must stay valid until the next pvc_sync (use
 * pinned memory for overlap; pageable memory is copied before returning). */
int pvc_h2d(pvc_ctx *c, void *dst, const void *src, size_t bytes);
/* Device -> host; waits for the stream (so all queued work is done). */
int pvc_d2h(pvc_ctx *c, void *dst, const void *src, size_t bytes);
int pvc_d2d(pvc_ctx *c, void *dst, const void *src, size_t bytes);
int pvc_sync(pvc_ctx *c);
/* Device-to-device cudaMemcpy bandwidth over `bytes`-sized buffers (read +
 * write counted, GB/s = 1e9 B/s): the practical ceiling for memory-bound
 * kernels. Allocates 2 x bytes temporarily; waits. */
int pvc_copy_bandwidth(pvc_ctx *c, size_t bytes, int iters, double *gbps);
/* Events for timing: elapsed milliseconds between two points of the stream. */
typedef struct pvc_timer pvc_timer;
int pvc_timer_start(pvc_ctx *c, pvc_timer **t);
int pvc_timer_stop(pvc_ctx *c, pvc_timer *t, double *ms); /* waits; frees t */

/* ---- elementwise.cu: small ops of the forward pass ---- */
/* x[t] = f32(table[ids[t]]), table half [n_vocab][D]. */
int pvc_embed(pvc_ctx *c, const uint16_t *table, const int32_t *ids, int T, int D, float *x);
/* out[t] = half(x[r] / sqrt(mean(x[r]^2) + eps) * w) with r = rows ? rows[t] : t. */
int pvc_rmsnorm(pvc_ctx *c, const float *x, const int32_t *rows, const float *w, int T, int D,
                float eps, uint16_t *out);
/* y[t][i] += b[i], y rows of `ld` floats, first `dim` of each. */
int pvc_add_bias(pvc_ctx *c, float *y, int ld, const float *b, int T, int dim);
/* out[t][i] = half(silu(gu[t][i]) * gu[t][ff + i]), gu rows of 2*ff floats
 * (gate then up: the fused gate|up projection). */
int pvc_swiglu(pvc_ctx *c, const float *gu, int T, int ff, uint16_t *out);
/* Fills n halves with the synthetic-model values of tensor `tensor`
 * (pvsyn_value in synth_hash.h, bit-identical to the host generator). */
int pvc_fill_synth(pvc_ctx *c, uint16_t *dst, size_t n, uint64_t seed, uint32_t tensor,
                   float scale);
int pvc_f32_to_f16(pvc_ctx *c, const float *src, uint16_t *dst, size_t n);

/* ---- matmul.cu ---- */
typedef enum { PVC_MM_AUTO = 0, PVC_MM_MATVEC = 1, PVC_MM_CUBLAS = 2 } pvc_mm_impl;
/* y[t][r] (+)= sum_c W[r][c] x[t][c]: W half [rows][cols], x half [T][cols],
 * y f32 [T][rows]; accumulate adds into y (the residual stream). AUTO takes
 * the bandwidth-bound matrix-vector kernel for T <= PVC_MATVEC_MAX_T (when
 * cols % 8 == 0) and cuBLAS (FP16 in, FP32 accumulation) otherwise. */
#define PVC_MATVEC_MAX_T 8
int pvc_matmul(pvc_ctx *c, const uint16_t *W, int rows, int cols, const uint16_t *x, int T,
               float *y, int accumulate, pvc_mm_impl impl);

/* ---- attention.cu: the FP16 KV cache and attention ---- */
typedef struct {
    int n_heads, n_kv_heads, head_dim;
    int rope_dim, rope_neox;
    float rope_base;
} pvc_attn_shape;

/* The plain FP16 cache: per sequence slot and layer, each KV head's keys
 * (and values) contiguous, [max_seqs][n_layers][n_kv_heads][max_ctx][head_dim],
 * so decode attention streams one head's tokens with coalesced loads. */
typedef struct {
    uint16_t *k, *v;
    int max_seqs, n_layers, n_kv_heads, head_dim, max_ctx;
} pvc_kv_fp16;

/* For each row t of the fused projection output qkv ([T][ld] f32: q at 0,
 * k at n_heads*hd, v at (n_heads+n_kv_heads)*hd): rotates q in place and
 * stores rotated k and v (as half) into slot seq[t] at position pos[t] of
 * `layer`. Angles are computed in double as in ko_rope. */
int pvc_rope_store(pvc_ctx *c, float *qkv, int ld, int T, const pvc_attn_shape *s,
                   const int32_t *pos, const int32_t *seq, const pvc_kv_fp16 *kv, int layer);
/* Causal attention of each row t (query = q part of qkv row t, position
 * pos[t], slot seq[t]) over the cached tokens 0..pos[t] of its slot:
 * out[t][h*hd..] = half(softmax(q.k / sqrt(hd)) v). Keys are split over
 * blocks (flash-decoding) and merged; lse[t][h] (may be NULL) receives the
 * natural log-sum-exp of the scaled scores, so p(token i) = exp(score_i -
 * lse) can be recomputed by a cache that tracks importance.
 * part: scratch of part_floats floats (pvc_attention_part_floats gives a
 * good size); max_keys = max over rows of pos[t] + 1. head_dim must be 64,
 * 128 or 256 and n_heads / n_kv_heads <= 8 (PV_EUNSUPPORTED otherwise). */
int pvc_attention(pvc_ctx *c, const float *qkv, int ld, int T, const pvc_attn_shape *s,
                  const int32_t *pos, const int32_t *seq, const pvc_kv_fp16 *kv, int layer,
                  int max_keys, float *part, size_t part_floats, uint16_t *out, float *lse);
size_t pvc_attention_part_floats(const pvc_attn_shape *s, int max_rows);
/* Writes random half values (pvsyn) into slot `seq` positions [0, n) of every
 * layer: lets benchmarks measure decode at a long context without a prefill. */
int pvc_kv_fill_synth(pvc_ctx *c, const pvc_kv_fp16 *kv, int seq, int n, uint64_t seed);

/* Same as pvc_rope_store, but row t's k and v go to cache index slot[t]
 * (instead of pos[t]) of its slot's head: the mixed cache's high tier, whose
 * entries are packed slots, not positions. */
int pvc_rope_store_slots(pvc_ctx *c, float *qkv, int ld, int T, const pvc_attn_shape *s,
                         const int32_t *pos, const int32_t *seq, const int32_t *slot,
                         const pvc_kv_fp16 *kv, int layer);

/* ---- sampling.cu ---- */
/* out[r] = argmax_i logits[r][i] (lowest index on ties), rows x n f32. */
int pvc_argmax(pvc_ctx *c, const float *logits, int rows, int n, int32_t *out);

#ifdef __cplusplus
}
#endif

#endif
