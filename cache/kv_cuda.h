/* kv_cuda: the KV cache on a CUDA GPU, for the GPU forward pass.
 *
 * kv_create builds it when the shape names a CUDA context (kv_shape.gpu):
 * the plain FP16 cache (kernels/cuda attention.cu's layout, max_seqs x
 * max_ctx allocated up front) for a plain policy, the mixed cache
 * (cache/cuda/kv_mixed.cu) for a compressing one (FP16 high tier only).
 * Its kv_cache face gives positions, reset and usage by the CPU caches'
 * rules (the mixed cache's tier counts live on the host in kv_mirror.h);
 * kv_store / kv_attend_group answer PV_EUNSUPPORTED, since the forward pass
 * (model/llama_cuda.c) fills and reads it through the calls below.
 *
 * A pass over the GPU cache, for calls (seq, pos, n_tokens) whose rows are
 * consecutive in the batch:
 *   kv_cuda_begin    plan the tier counts (not committed yet), upload them
 *   kv_cuda_layer    per layer: rope + store the new keys/values, attention
 *   kv_cuda_end      after the layers: the demotions
 *   (the caller syncs the stream)
 *   kv_cuda_commit   the pass ran: lengths and counts take effect
 * Device memory is freed by kv_destroy, which must come before the CUDA
 * context's pvc_destroy. */
#ifndef PIVOT_KV_CUDA_H
#define PIVOT_KV_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "kv.h"

/* kv_create's GPU branch (policy validated, group fitted). PV_ENODEV in a
 * build without CUDA; PV_EUNSUPPORTED for policies the GPU lacks (INT8 high
 * tier). */
int kv_cuda_create(const kv_shape *s, const kv_policy *p, kv_cache **out);

/* One sequence's part of a pass. */
typedef struct {
    int seq, pos, n_tokens;
} kv_cuda_call;

/* Most tokens one sequence may add per pass; longer calls must be split
 * (0: no limit). */
int kv_cuda_rows_per_pass(const kv_cache *c);

#ifdef PIVOT_HAVE_CUDA
#include "cuda/pvcuda.h"

/* max_keys receives the most keys a row of the pass attends to. PV_EINVAL
 * when c is not a GPU cache. */
int kv_cuda_begin(kv_cache *c, const kv_cuda_call *calls, int n, int *max_keys);
/* Layer `layer` of the pass: rotates q/k of qkv ([T][ld], rows of the calls
 * in order; d_pos/d_seq their positions and slots on the device), stores
 * k/v, and writes attention (half) to att and the log-sum-exp to lse. */
int kv_cuda_layer(kv_cache *c, float *qkv, int ld, int T, const pvc_attn_shape *as,
                  const int32_t *d_pos, const int32_t *d_seq, int layer, int max_keys,
                  float *part, size_t part_floats, uint16_t *att, float *lse);
int kv_cuda_end(kv_cache *c);
void kv_cuda_commit(kv_cache *c, const kv_cuda_call *calls, int n);
/* Benchmarks: slot `seq` as if n_tokens random tokens had been seen (the
 * mixed cache: the state a decode reaches, budget high and the rest low). */
int kv_cuda_fill_random(kv_cache *c, int seq, int n_tokens, uint64_t seed);
#endif

#endif
