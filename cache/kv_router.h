/* kv_router: one kv_cache whose sequences may each have their own policy.
 *
 * The server creates one cache for all its slots; requests may ask for
 * different KV policies. The router is that cache: every slot is routed to a
 * sub-cache created by kv_create for the slot's policy, and every vtable
 * hook forwards by slot, so the forward pass does not know. Sub-caches are
 * created when a policy is first used, shared by every slot with an
 * equivalent policy (same knobs; every plain FP16 policy is one cache), and
 * destroyed when their last slot is reset. They keep the router's shape (and
 * its pool), so slot numbers need no mapping and one byte limit covers all.
 *
 * A slot that was never given a policy uses the default one. `full` goes to
 * the plain FP16 cache, so it stays bit-identical to a plain cache. */
#ifndef PIVOT_KV_ROUTER_H
#define PIVOT_KV_ROUTER_H

#include <stddef.h>

#include "kv.h"
#include "kv_policy.h"

/* Distinct policies live at once; a further one is refused (PV_ESPACE) until
 * a sub-cache is freed. */
#define KV_ROUTER_MAX_POLICIES 8

/* kv_create with s->routed builds one (call that); def: the policy of slots
 * that get none (validated like kv_create). */
int kv_create_router(const kv_shape *s, const kv_policy *def, kv_cache **out, char *err,
                     size_t errlen);

/* Gives slot `seq` its policy; call before its first store. PV_EINVAL: not a
 * router, bad slot, or the slot holds tokens (a busy slot keeps its policy);
 * PV_ESPACE: KV_ROUTER_MAX_POLICIES other policies are in use; policy errors
 * from kv_create (message in err). NULL p: the default policy. */
int kv_seq_set_policy(kv_cache *c, int seq, const kv_policy *p, char *err, size_t errlen);

/* Bytes the caches may hold, during one step of at most max_batch_tokens new
 * tokens, above the sum of kv_policy_seq_bytes of their sequences: the mixed
 * cache keeps a step's new keys/values as floats until attend encodes them
 * (one layer at a time), and a head's high tier holds a prefill chunk (plus
 * page rounding) before demotion brings it back to budget; attend runs for
 * up to n_threads heads at once. A pool limited to the admitted bytes plus
 * this never refuses a step the admission let in. */
size_t kv_router_headroom(const kv_shape *s, int max_batch_tokens);

/* Diagnostics and tests: sub-caches in use by at least one slot (one whose
 * last slot left is kept idle, pages returned to the pool, and reused by the
 * next slot with that policy or reclaimed for another policy), and the
 * sub-cache serving a slot (NULL before its first store when it has no
 * policy yet). */
int kv_router_n_caches(const kv_cache *c);
const kv_cache *kv_router_slot_cache(const kv_cache *c, int seq);

#endif
