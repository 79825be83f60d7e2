/* kv_prefix (internal to cache/): the index of cached prefix blocks behind
 * automatic prefix caching.
 *
 * A block is one page-sized run of tokens of one sequence's cache: for
 * every layer, the page that holds those tokens' keys and values. It is
 * named by a hash chain: the hash of its tokens chained with the hash of
 * the block before it, and the chain starts from a seed that names the
 * policy (a page is only valid for the cache and policy that made it). So
 * equal hashes mean equal token prefixes from position 0 (the tokens are
 * also kept and compared, so a hash collision cannot share a wrong page).
 *
 * Ownership: a block owns its pages (taken from the pool, given back when
 * it is evicted or the index destroyed). Sequences that use a block hold a
 * reference; a block with no reference sits in an LRU and may be evicted
 * (least recently released first). A referenced block is never evicted, so
 * a page is freed once, and never while a sequence reads it.
 *
 * Threads: one thread (the cache's decoder thread) calls everything; the
 * pages themselves are read concurrently by attention, which only reads
 * referenced blocks. */
#ifndef PIVOT_KV_PREFIX_H
#define PIVOT_KV_PREFIX_H

#include <stddef.h>
#include <stdint.h>

#include "kv.h"
#include "kv_pool.h"

typedef struct kv_pfx kv_pfx;
typedef struct kv_pfx_blk kv_pfx_blk;

/* An index whose blocks hold n_pages pages of page_bytes each (taken from
 * pool, which may be NULL) covering block_tokens tokens; seed names the
 * policy (kv_pfx_seed). */
int kv_pfx_create(kv_pool *pool, int n_pages, size_t page_bytes, int block_tokens, uint64_t seed,
                  kv_pfx **out);
/* Frees every block and its pages. No sequence may hold a reference. */
void kv_pfx_destroy(kv_pfx *x);

/* The chain: the hash of n tokens after a block whose hash is prev (the
 * seed for the first block). */
uint64_t kv_pfx_hash(uint64_t prev, const int32_t *tok, int n);
/* The chain's root for a policy description (kv_policy_describe, or
 * "plain" for the FP16 cache). */
uint64_t kv_pfx_seed(const char *policy_key);
uint64_t kv_pfx_root(const kv_pfx *x);

/* The block that follows `prev` (NULL: the first block) with these
 * block_tokens tokens, with a reference taken; NULL when none is cached. */
kv_pfx_blk *kv_pfx_get(kv_pfx *x, const kv_pfx_blk *prev, const int32_t *tok);
/* Makes a block of these pages (ownership moves to the index on success)
 * following prev, with one reference (the caller's). When an equal block
 * is already cached, that one is returned with a reference taken and
 * *dup = 1: the caller keeps its pages (and frees them). NULL: out of
 * memory (the caller keeps its pages). */
kv_pfx_blk *kv_pfx_put(kv_pfx *x, const kv_pfx_blk *prev, const int32_t *tok, void *const *pages,
                       int *dup);
/* Tails: the tokens a sequence stored after block b without filling the
 * next block (a prompt's end, a chat turn's answer), so that a prompt that
 * continues them need not recompute up to 63 tokens. A block keeps one
 * tail, the latest offered: n tokens (0 < n < block_tokens) and a copy of
 * the n_pages pages that hold them (the sequence keeps writing its own).
 * Its pages count as one more block in the stats, never referenced (an
 * attacher copies them), so always evictable: kv_pfx_evict takes the
 * unreferenced blocks first, then tails of blocks in use. PV_ENOMEM
 * leaves the block as it was. */
int kv_pfx_set_tail(kv_pfx *x, kv_pfx_blk *b, const int32_t *tok, int n, void *const *pages);
/* How many of tok[0..n) b's tail holds (its leading tokens that match). */
int kv_pfx_tail_match(const kv_pfx_blk *b, const int32_t *tok, int n);
/* Page i of b's tail: copied by the attacher (it will write into it). */
const void *kv_pfx_tail_page(const kv_pfx_blk *b, int i);
/* Drops one reference; at zero the block joins the LRU as its newest. */
void kv_pfx_unref(kv_pfx *x, kv_pfx_blk *b);
void *kv_pfx_page(const kv_pfx_blk *b, int i);
int kv_pfx_refs(const kv_pfx_blk *b);

/* Evicts unreferenced blocks, least recently released first, until at
 * least `bytes` were freed or none is left; returns the bytes freed
 * (SIZE_MAX asks for all: a flush). */
size_t kv_pfx_evict(kv_pfx *x, size_t bytes);

/* Adds this index's numbers to *st (kv.h). */
void kv_pfx_add_stats(const kv_pfx *x, kv_prefix_stats *st);

#endif
