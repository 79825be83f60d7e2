/* kv_internal: what cache implementations (and their tests) may see of a
 * kv_cache beyond the public interface. */
#ifndef PIVOT_KV_INTERNAL_H
#define PIVOT_KV_INTERNAL_H

#include "kv.h"

/* The implementation object and its hooks (borrowed; the cache owns them). */
void *kv_impl(const kv_cache *c);
const kv_vtable *kv_vt(const kv_cache *c);

#endif
