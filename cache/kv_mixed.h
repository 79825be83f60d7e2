/* kv_mixed (internal to cache/ and its tests): the importance-aware cache
 * behind kv_create for every policy other than plain FP16, and a read-only
 * view of its state for tests and diagnostics. */
#ifndef PIVOT_KV_MIXED_H
#define PIVOT_KV_MIXED_H

#include <stdint.h>

#include "kv.h"
#include "kv_policy.h"

/* The policy must have passed kv_policy_validate and its group must divide
 * head_dim (kv_create checks both). */
int kv_create_mixed(const kv_shape *s, const kv_policy *p, kv_cache **out);
/* force_scalar = 1 uses the portable kernels (tests compare them with AVX2). */
int kv_create_mixed_opt(const kv_shape *s, const kv_policy *p, int force_scalar, kv_cache **out);

typedef struct {
    int n_high, n_low, n_dropped;
    int64_t steps; /* queries this head has served */
    int balanced;  /* balance factors frozen */
} kv_mixed_head;

typedef struct {
    float *k, *v;   /* in: head_dim floats each, or NULL; out: the decoded record */
    int32_t pos;    /* original position */
    float score;    /* high tier: demotion score (higher = demoted sooner) */
    int k_balanced; /* k is K·b (divide by kv_mixed_balance's b for the raw key) */
    int rotated;    /* k and v are in the rotated basis (rotate=1): b applies
                     * there, and kv_mixed_unrotate maps back */
} kv_mixed_tok;

/* PV_EINVAL when kc is not a mixed cache or the indices are out of range. */
int kv_mixed_head_info(const kv_cache *kc, int seq, int layer, int h, kv_mixed_head *out);
/* Token i of the high (low = 0, sorted by position) or low tier. */
int kv_mixed_token(const kv_cache *kc, int seq, int layer, int h, int low, int i,
                   kv_mixed_tok *out);
/* Bytes the sequence's heads obtained from malloc and still hold, counted
 * at allocation (kv_seq_usage computes its figure from tier counts). */
size_t kv_mixed_allocated(const kv_cache *kc, int seq);
/* x[head_dim] <- Rᵀ x with the rotation of (layer, h): a record read by
 * kv_mixed_token back in the model's basis (nothing when not rotating). */
int kv_mixed_unrotate(const kv_cache *kc, int layer, int h, float *x);
/* The head's balance factors b[head_dim] (all 1 until frozen). */
int kv_mixed_balance(const kv_cache *kc, int seq, int layer, int h, float *b);

#endif
