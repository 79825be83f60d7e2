/* kv_tier: the tier rule of the mixed cache — how many high-tier tokens a
 * sequence may keep, and how many are demoted at once when it holds more.
 *
 * The rule depends only on the policy, the sequence length and the current
 * high-tier count, never on the tokens: every head of every layer of a
 * sequence holds the same counts. Three places need it and call these
 * functions rather than restating them: the CPU mixed cache (kv_mixed.c,
 * which then picks *which* tokens), the GPU cache's host-side counts
 * (kv_mirror.c, whose kernels pick which tokens on the device) and
 * admission (kv_policy_seq_bytes, the bytes a sequence can ever need). */
#ifndef PIVOT_KV_TIER_H
#define PIVOT_KV_TIER_H

#include "kv_policy.h"

/* High-tier tokens allowed per head once a sequence has `len` tokens:
 * the budget (absolute, or a fraction of len rounded up), never below the
 * protected sinks + recent tokens; -1 = unlimited. select=recent with
 * budget 0 keeps exactly sinks + recent. */
int kv_tier_budget(const kv_policy *p, int len);
/* Protected tokens (the first `sinks`, the last `recent`) among positions
 * 0..len-1: they never leave the high tier. */
int kv_tier_protected(const kv_policy *p, int len);
/* Whether position pos of a sequence of len tokens is one of them: the one
 * predicate the CPU demotion (kv_mixed_demote.c) and the GPU's
 * (cuda/kv_mixed_demote.cu) apply, so both skip exactly the tokens
 * kv_tier_protected counts. Plain ints so device code can call it. */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline int kv_tier_pos_protected(long sinks, long recent, long len, long pos) {
    return pos < sinks || pos >= len - recent;
}
/* Tokens demoted at the end of a call that leaves the sequence at `len`
 * tokens with `n_hi` of them high: 0 while n_hi is within the budget;
 * otherwise a chunk (from b+1 tokens a chunk of m leaves b+1-m; chunk 1
 * slides the tier one token per step, larger chunks amortize the scoring),
 * clipped to the unprotected tokens. */
int kv_tier_demote(const kv_policy *p, int len, int n_hi);
/* The most high-tier tokens a sequence of `len` tokens holds between calls:
 * the largest n_hi <= len for which kv_tier_demote returns 0. */
int kv_tier_max_high(const kv_policy *p, int len);

/* Exact bytes the cache will hold for one sequence of n_tokens under a
 * policy and shape (codes, scales, zero points, positions, importance state,
 * page rounding included): the number the server admits requests by. The
 * cache's kv_seq_usage().bytes_stored never exceeds it. */
size_t kv_policy_seq_bytes(const kv_policy *p, const kv_shape *s, int n_tokens);

#endif
