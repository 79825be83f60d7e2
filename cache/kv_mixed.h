/* kv_mixed (internal): the importance-aware cache behind kv_create for every
 * policy other than plain FP16. */
#ifndef PIVOT_KV_MIXED_H
#define PIVOT_KV_MIXED_H

#include "kv.h"
#include "kv_policy.h"

/* The policy must have passed kv_policy_validate and its group must divide
 * head_dim (kv_create checks both). */
int kv_create_mixed(const kv_shape *s, const kv_policy *p, kv_cache **out);

#endif
