/* kv_internal: what cache implementations (and their tests) may see of a
 * kv_cache beyond the public interface. */
#ifndef PIVOT_KV_INTERNAL_H
#define PIVOT_KV_INTERNAL_H

#include "kv.h"

/* The implementation object and its hooks (borrowed; the cache owns them). */
void *kv_impl(const kv_cache *c);
const kv_vtable *kv_vt(const kv_cache *c);

/* The plain FP16 cache itself (kv_fp16.c), without a policy: what kv_create
 * builds when kv_policy_is_plain. Tests and kv_create call it. */
int kv_create_fp16(const kv_shape *shape, kv_cache **out);

#endif
