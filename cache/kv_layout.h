/* kv_layout (internal to cache/): byte sizes of the mixed cache's storage, shared by
 * the cache (which allocates by them) and kv_policy_seq_bytes (which predicts
 * them), so the admission number and the allocation cannot drift apart.
 *
 * Per (sequence, layer, KV head) the mixed cache keeps two tiers, each a list
 * of pages of KVL_PAGE tokens. A page holds, for each of its tokens:
 *   K record, V record  bits 16: head_dim fp16 values (low tier: keys
 *                       and values may differ in bits, lo_bits/lo_v_bits)
 *                       bits 8/4/2: head_dim codes packed in bit planes
 *                       (head_dim*bits/8 bytes) + per group of `group`
 *                       channels an fp16 scale and an fp16 zero (low
 *                       tier with scale-bits=8: one byte each, KVQ_SZ8)
 *   position            high tier only: int32, the token's original
 *                       position. The low tier is kept sorted by position
 *                       and, when it exists, nothing is dropped, so its
 *                       positions are the ones below the length that the
 *                       high tier does not hold: they cost no bytes
 *                       (kvmx_lo_positions in kv_mixed_demote.c recovers them)
 *   tracker state       high tier only: 4 bytes (persistence: two u16
 *                       bucket counters) or 8 (accumulated: f32 sum +
 *                       i32 first step); none for recent/none
 * Per head there is also, when a quantized tier exists and key balancing is
 * on, the balance state (kvl_balance_bytes). */
#ifndef PIVOT_KV_LAYOUT_H
#define PIVOT_KV_LAYOUT_H

#include <stddef.h>

#include "kv_policy.h"
#include "kv_side.h"

/* Tokens per page. Small enough that page rounding costs little on short
 * sequences, large enough that page bookkeeping is negligible. */
#define KVL_PAGE 32

/* The plain FP16 cache's page (kv_fp16.c); `full` is that cache. 64 was
 * measured against 16 and 32 (docs/KV_CACHE.md, "Page size"); a build may
 * override it (-DKVL_FP16_PAGE=16 -DKVA_PAGE=16) to measure again. */
#ifndef KVL_FP16_PAGE
#define KVL_FP16_PAGE 64
#endif

/* group: the record format's argument (kv_side.h), KVQ_SZ8 included. */
static inline size_t kvl_rec_bytes(int bits, int head_dim, int group) {
    if (bits == 16) return (size_t)head_dim * 2;
    return (size_t)head_dim * bits / 8 + (size_t)(head_dim / kvq_group(group)) * kvq_sz_bytes(group);
}

/* The low tier's record format argument: the policy's group, with KVQ_SZ8
 * when scale-bits=8 (the high tier keeps fp16 scales). */
static inline int kvl_lo_group(const kv_policy *p) {
    return p->group | (p->scale_bits == 8 ? KVQ_SZ8 : 0);
}

static inline size_t kvl_state_bytes(kv_select sel) {
    return sel == KV_SELECT_PERSISTENCE ? 4 : sel == KV_SELECT_ACCUMULATED ? 8 : 0;
}

/* Bytes per token in a page of the given tier. */
static inline size_t kvl_hi_token_bytes(const kv_policy *p, int head_dim) {
    return 2 * kvl_rec_bytes(p->hi_bits, head_dim, p->group) + 4 + kvl_state_bytes(p->select);
}
/* A low token of one (layer, KV head) (its widths: kv_policy_head_widths). */
static inline size_t kvl_lo_token_bytes(const kv_policy *p, int head_dim, int layer, int head) {
    int kb, vb;
    kv_policy_head_widths(p, layer, head, &kb, &vb);
    return kb ? kvl_rec_bytes(kb, head_dim, kvl_lo_group(p)) + kvl_rec_bytes(vb, head_dim, kvl_lo_group(p)) : 0;
}

/* The low tier's bytes per token summed over every (layer, KV head): what a
 * token demoted everywhere costs (layers and heads may differ in widths). */
static inline size_t kvl_lo_token_bytes_all(const kv_policy *p, int head_dim, int n_layers,
                                            int n_kv_heads) {
    size_t b = 0;
    for (int L = 0; L < n_layers; L++)
        for (int h = 0; h < n_kv_heads; h++) b += kvl_lo_token_bytes(p, head_dim, L, h);
    return b;
}

/* A quantized tier exists, so keys are balanced (when asked). */
static inline int kvl_needs_balance(const kv_policy *p) {
    return p->key_balance && (p->hi_bits == 8 || p->lo_bits > 0);
}
/* A head's balance state: the factors, and until they freeze the running
 * max|q| and max|k| they come from. INT8 high keys need the factors at the
 * first call, which freezes them there: its maxima live in scratch and
 * only the factors are kept (512 B less a head at head_dim 64: 0.4% of
 * FP16 at 512 tokens). An FP16 high tier folds maxima until the first
 * demotion and keeps all three. */
static inline size_t kvl_balance_bytes(const kv_policy *p, int head_dim) {
    if (!kvl_needs_balance(p)) return 0;
    return (size_t)(p->hi_bits == 8 ? 1 : 3) * head_dim * sizeof(float);
}

/* A group never spans more than one head's vector: a policy's group larger
 * than head_dim (the mikv preset's 64 on a 32-wide test shape) means one
 * group per record. kv_create and kv_policy_seq_bytes both apply this. */
static inline kv_policy kvl_fit_group(const kv_policy *p, const kv_shape *s) {
    kv_policy q = *p;
    if (s->head_dim > 0 && q.group > s->head_dim) q.group = s->head_dim;
    return q;
}

#endif
