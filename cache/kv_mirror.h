/* kv_mirror (internal to cache/): the tier counts of cache/kv_mixed.c for one sequence,
 * computed without the cache's data.
 *
 * The mixed cache's demotion *counts* depend only on sequence lengths and the
 * policy (kv_mixed.c: every head of every layer holds the same number of high
 * and low tokens; only which positions sit where differs per head). A cache
 * whose per-token state lives elsewhere — the GPU's (cache/cuda/kv_mixed.cu)
 * — keeps these counts on the host to size its kernels' work and to report
 * kv_usage by the CPU cache's rules, and asks the device only which tokens to
 * move. tests/cache/test_kv_mirror.c checks every count against kv_mixed.c. */
#ifndef PIVOT_KV_MIRROR_H
#define PIVOT_KV_MIRROR_H

#include <stdint.h>

#include "kv.h"
#include "kv_policy.h"

typedef struct {
    int len;          /* tokens stored */
    int n_hi, n_lo, n_drop;
    int64_t steps;    /* queries served (the tracker clock) */
    int bal_alloc;    /* the balance statistics exist (counted in bytes) */
    int frozen;       /* balance factors frozen */
} kvm_seq;

/* One call that stores n tokens and attends their n queries (per head:
 * kv_store then kv_attend_group with the same positions). */
typedef struct {
    int hi0, lo;      /* tier counts when the call starts */
    int64_t step0;    /* tracker clock when the call starts */
    int observe;      /* the call folds |q|, |k| into the balance maxima */
    int k;            /* tokens demoted at its end (0: none) */
    int len, hi;      /* length and high count just before the demotion */
    int64_t steps;    /* tracker clock after the call */
    int freeze;       /* the balance factors freeze just before demoting */
} kvm_call;

/* The policy must be one kv_create accepts, with the group already fitted
 * to head_dim (as kv_mixed's copy is). Updates s and describes the call. */
void kvm_plan(const kv_policy *p, kvm_seq *s, int n, kvm_call *out);
/* kv_seq_usage as kv_mixed.c reports it (pages, balance bytes, counts). */
void kvm_usage(const kv_policy *p, const kv_shape *sh, const kvm_seq *s, kv_usage *u);

#endif
