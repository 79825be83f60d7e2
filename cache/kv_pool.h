/* kv_pool: the memory every KV cache of a process (or a server) takes its
 * pages from, with a byte limit.
 *
 * Caches allocate whole pages (kv_pool_alloc) and charge the pool for the
 * smaller buffers they manage themselves (kv_pool_charge: the mixed cache's
 * pending keys/values and balance factors), so `used` is exactly the sum of
 * kv_usage.bytes_stored over the live sequences of every cache on the pool.
 * Freed pages go to a free list per page size and are handed out again
 * before malloc is asked; cached free pages count against the limit too (they
 * are released to make room for other sizes), so the process never holds
 * more than `limit` bytes of KV memory.
 *
 * Thread-safe: the decoder thread stores, but the mixed cache allocates
 * inside attend, which runs on thread-pool workers. A mutex is enough: a
 * page is allocated once per 32-64 tokens per head.
 *
 * A NULL pool means plain malloc/free without accounting (tests, tools). */
#ifndef PIVOT_KV_POOL_H
#define PIVOT_KV_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct kv_pool kv_pool;

typedef struct {
    size_t limit;      /* bytes (0 = unlimited) */
    size_t used;       /* bytes handed out or charged, live */
    size_t peak;       /* largest `used` seen */
    size_t cached;     /* bytes of free pages kept for reuse */
    uint64_t n_malloc; /* pages obtained from malloc */
    uint64_t n_reused; /* pages served from the free list */
    uint64_t n_refused; /* requests refused by the limit */
} kv_pool_stats;

/* limit 0: no limit (accounting only). */
int kv_pool_create(size_t limit, kv_pool **out);
/* Frees the cached pages. Every cache using the pool must be gone. */
void kv_pool_destroy(kv_pool *p);

/* A page of `bytes`; NULL when the limit (or malloc) refuses: callers turn
 * that into PV_ENOMEM. */
void *kv_pool_alloc(kv_pool *p, size_t bytes);
/* Returns a page obtained from kv_pool_alloc with the same size. */
void kv_pool_free(kv_pool *p, void *page, size_t bytes);
/* Accounts for memory the caller allocates itself: PV_ENOMEM past the limit. */
int kv_pool_charge(kv_pool *p, size_t bytes);
void kv_pool_uncharge(kv_pool *p, size_t bytes);

void kv_pool_get_stats(kv_pool *p, kv_pool_stats *st);
size_t kv_pool_used(kv_pool *p);
/* Releases the cached free pages to the system. */
void kv_pool_trim(kv_pool *p);

#endif
