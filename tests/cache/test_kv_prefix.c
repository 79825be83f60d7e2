/* Automatic prefix caching: the hash chain (cache/kv_prefix.c), reference
 * counts and the LRU, and the FP16 cache's blocks through kv.h — a sequence
 * that attaches a cached prefix attends exactly (bit for bit) as the one
 * that computed it, shared blocks survive eviction under pressure while
 * referenced, a page is freed once, and the pool's bytes go back to 0. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_policy.h"
#include "kv_pool.h"
#include "kv_prefix.h"
#include "kv_router.h"
#include "pverr.h"

/* ---- the index alone ---- */

Test(kv_prefix_hash, chain_depends_on_every_token_its_place_and_the_predecessor) {
    int32_t a[8] = {1, 2, 3, 4, 5, 6, 7, 8}, b[8];
    uint64_t root = kv_pfx_seed("plain");
    uint64_t h = kv_pfx_hash(root, a, 8);
    cr_expect_eq(h, kv_pfx_hash(root, a, 8), "not deterministic");
    cr_expect_neq(h, kv_pfx_hash(root + 1, a, 8), "the predecessor is not in the hash");
    cr_expect_neq(h, kv_pfx_hash(kv_pfx_seed("mikv"), a, 8), "the policy is not in the hash");
    for (int i = 0; i < 8; i++) {
        memcpy(b, a, sizeof a);
        b[i] ^= 1 << (i % 7);
        cr_expect_neq(h, kv_pfx_hash(root, b, 8), "token %d changed, same hash", i);
    }
    memcpy(b, a, sizeof a);
    b[0] = a[1], b[1] = a[0];
    cr_expect_neq(h, kv_pfx_hash(root, b, 8), "order is not in the hash");
    cr_expect_neq(h, kv_pfx_hash(root, a, 7), "length is not in the hash");
}

static void **pages_of(kv_pool *pool, int n, size_t bytes) {
    void **p = malloc(sizeof *p * (size_t)n);
    for (int i = 0; i < n; i++) cr_assert_not_null(p[i] = kv_pool_alloc(pool, bytes));
    return p;
}

Test(kv_prefix_index, refcounts_lru_order_and_eviction_spare_referenced_blocks) {
    kv_pool *pool;
    cr_assert_eq(kv_pool_create(0, &pool), PV_OK);
    kv_pfx *x;
    const size_t pb = 512;
    cr_assert_eq(kv_pfx_create(pool, 2, pb, 4, kv_pfx_seed("plain"), &x), PV_OK);
    int32_t t[3][4] = {{1, 2, 3, 4}, {5, 6, 7, 8}, {9, 9, 9, 9}};
    int dup;
    void **pa = pages_of(pool, 2, pb), **pbb = pages_of(pool, 2, pb), **pc = pages_of(pool, 2, pb);
    kv_pfx_blk *a = kv_pfx_put(x, NULL, t[0], pa, &dup);
    cr_assert(a && !dup);
    kv_pfx_blk *b = kv_pfx_put(x, a, t[1], pbb, &dup);
    cr_assert(b && !dup);
    kv_pfx_blk *c = kv_pfx_put(x, NULL, t[2], pc, &dup);
    cr_assert(c && !dup);
    cr_expect_eq(kv_pfx_page(b, 1), pbb[1], "the block does not hold the pages it was given");
    /* lookups walk the chain from its start, and compare tokens */
    cr_expect_null(kv_pfx_get(x, NULL, t[1]), "a second block found without its first");
    cr_expect_eq(kv_pfx_get(x, NULL, t[0]), a);
    cr_expect_eq(kv_pfx_refs(a), 2);
    cr_expect_eq(kv_pfx_get(x, a, t[1]), b);
    /* an equal block offered again: the cached one, caller keeps its pages */
    void **pd = pages_of(pool, 2, pb);
    cr_expect_eq(kv_pfx_put(x, NULL, t[0], pd, &dup), a);
    cr_expect(dup);
    for (int i = 0; i < 2; i++) kv_pool_free(pool, pd[i], pb);
    kv_pfx_unref(x, a); /* the dup's reference */
    kv_prefix_stats st = {0};
    kv_pfx_add_stats(x, &st);
    cr_expect_eq(st.blocks, 3);
    cr_expect_eq(st.blocks_referenced, 3);
    cr_expect_eq(st.bytes, 3 * 2 * pb);
    cr_expect_eq(kv_pfx_evict(x, SIZE_MAX), 0, "a referenced block was evicted");
    /* release c, then b, then a's two references: LRU order c, b, a */
    kv_pfx_unref(x, c);
    kv_pfx_unref(x, b);
    kv_pfx_unref(x, b);
    kv_pfx_unref(x, a);
    cr_expect_eq(kv_pfx_refs(a), 1);
    cr_expect_eq(kv_pfx_evict(x, 1), 2 * pb, "eviction frees whole blocks");
    cr_expect_null(kv_pfx_get(x, NULL, t[2]), "the oldest release was not evicted first");
    cr_expect_eq(kv_pfx_evict(x, SIZE_MAX), 2 * pb, "only b was evictable");
    cr_expect_eq(kv_pfx_get(x, NULL, t[0]), a, "the referenced block went away");
    kv_pfx_unref(x, a);
    kv_pfx_unref(x, a);
    memset(&st, 0, sizeof st);
    kv_pfx_add_stats(x, &st);
    cr_expect_eq(st.bytes_evictable, 2 * pb);
    cr_expect_eq(st.evictions, 2);
    cr_expect_eq(kv_pool_used(pool), 2 * pb, "pool and index disagree");
    kv_pfx_evict(x, SIZE_MAX);
    cr_expect_eq(kv_pool_used(pool), 0, "a page was not given back");
    kv_pfx_destroy(x);
    kv_pool_destroy(pool);
    free(pa), free(pbb), free(pc), free(pd);
}

/* ---- the FP16 cache's blocks through kv.h ---- */

#define PAGE 64 /* the FP16 cache's page (KVL_FP16_PAGE) */

static kv_shape shape(kv_pool *pool) {
    return (kv_shape){.n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 32,
                      .max_seqs = 3, .max_ctx = 512, .n_threads = 1, .pool = pool};
}

/* Deterministic keys/values/queries of position p: the same tokens always
 * give the same rows, as a model would. */
static void row(int p, int layer, int n, float *out) {
    unsigned s = (unsigned)(p * 2654435761u) ^ (unsigned)(layer * 40503u);
    for (int i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        out[i] = ((s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
}

/* Stores positions [from, to) of slot seq in every layer. */
static void store(kv_cache *c, int seq, int from, int to) {
    const kv_shape *s = kv_get_shape(c);
    int kvd = s->n_kv_heads * s->head_dim;
    float *k = malloc(sizeof(float) * kvd), *v = malloc(sizeof(float) * kvd);
    for (int p = from; p < to; p++)
        for (int l = 0; l < s->n_layers; l++) {
            row(p, l, kvd, k);
            row(p + 100000, l, kvd, v);
            cr_assert_eq(kv_store(c, seq, l, p, 1, k, v), PV_OK, "store %d", p);
        }
    free(k), free(v);
}

/* The attention output of a query at position pos (every layer and head). */
static void attend(kv_cache *c, int seq, int pos, float *out) {
    const kv_shape *s = kv_get_shape(c);
    int qd = s->n_heads * s->head_dim;
    float *q = malloc(sizeof(float) * qd);
    for (int l = 0; l < s->n_layers; l++) {
        row(pos + 200000, l, qd, q);
        for (int h = 0; h < s->n_kv_heads; h++)
            cr_assert_eq(kv_attend_group(c, seq, l, h, pos, 1, q, out + (size_t)l * qd, 0), PV_OK);
    }
    free(q);
}

static void tokens(int32_t *t, int n, int salt) {
    for (int i = 0; i < n; i++) t[i] = (i * 7 + salt) % 997;
}

static kv_cache *fp16(kv_pool **pool, size_t limit) {
    cr_assert_eq(kv_pool_create(limit, pool), PV_OK);
    kv_shape s = shape(*pool);
    kv_policy p;
    kv_policy_preset("full", &p);
    kv_cache *c;
    cr_assert_eq(kv_create(&s, &p, &c, NULL, 0), PV_OK);
    return c;
}

Test(kv_prefix_fp16, attached_prefix_attends_bit_for_bit_like_the_computed_one) {
    kv_pool *pool;
    kv_cache *c = fp16(&pool, 0);
    int n = 2 * PAGE + 40, qd = 4 * 32;
    int32_t t[512];
    tokens(t, n, 3);
    float *ref = calloc((size_t)2 * qd, sizeof(float)), *got = calloc((size_t)2 * qd, sizeof(float));
    store(c, 0, 0, n);
    attend(c, 0, n - 1, ref);
    kv_usage u;
    kv_seq_usage(c, 0, &u);
    size_t seq_bytes = u.bytes_stored, page_bytes = seq_bytes / 3;
    /* whole pages only here (the tail after them: kv_prefix_tail below) */
    cr_expect_eq(kv_seq_prefix_publish(c, 0, t, 2 * PAGE), 2 * PAGE, "two whole pages are shareable");
    kv_seq_usage(c, 0, &u);
    cr_expect_eq(u.bytes_cached, 2 * page_bytes);
    kv_seq_reset(c, 0);
    kv_prefix_stats st;
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(st.blocks, 2);
    cr_expect_eq(st.bytes_evictable, 2 * page_bytes);
    cr_expect_eq(kv_pool_used(pool), st.bytes, "the sequence's own page was not freed");
    /* another slot, the same tokens: two pages attached, the rest computed */
    cr_expect_eq(kv_seq_prefix_attach(c, 1, t, n), 2 * PAGE);
    cr_expect_eq(kv_seq_pos(c, 1), 2 * PAGE);
    store(c, 1, 2 * PAGE, n);
    attend(c, 1, n - 1, got);
    cr_expect_eq(memcmp(ref, got, sizeof(float) * 2 * qd), 0, "attention differs with the cache");
    kv_seq_usage(c, 1, &u);
    cr_expect_eq(u.bytes_stored, seq_bytes);
    cr_expect_eq(kv_pool_used(pool), seq_bytes, "a shared page was counted twice");
    /* a different token in the second page: only the first is reused */
    int32_t t2[512];
    memcpy(t2, t, sizeof t2);
    t2[PAGE + 5]++;
    cr_expect_eq(kv_seq_prefix_attach(c, 2, t2, n), PAGE);
    cr_expect_eq(kv_seq_prefix_attach(c, 2, t2, n), PV_EINVAL, "attached to a non-empty slot");
    cr_expect_eq(kv_prefix_match(c, 2, t2, n), 0, "the plain cache shares every block anyway");
    kv_seq_reset(c, 2);
    /* never the last token: a prompt of exactly two pages reuses one */
    cr_expect_eq(kv_seq_prefix_attach(c, 2, t, 2 * PAGE), PAGE);
    kv_seq_reset(c, 2);
    kv_seq_reset(c, 1);
    cr_expect_eq(kv_prefix_evict(c, SIZE_MAX), 2 * page_bytes);
    cr_expect_eq(kv_pool_used(pool), 0, "bytes left after a flush");
    kv_destroy(c);
    kv_pool_destroy(pool);
    free(ref), free(got);
}

Test(kv_prefix_fp16, eviction_under_pressure_spares_shared_blocks_and_frees_each_page_once) {
    kv_pool *pool;
    kv_cache *c = fp16(&pool, 0);
    int n = 3 * PAGE + 1, qd = 4 * 32;
    int32_t ta[512], tb[512];
    tokens(ta, n, 1);
    tokens(tb, n, 2);
    float *ref = calloc((size_t)2 * qd, sizeof(float)), *got = calloc((size_t)2 * qd, sizeof(float));
    /* slot 0 computes prefix A and publishes it; slots 1 and 2 share it */
    store(c, 0, 0, n);
    attend(c, 0, n - 1, ref);
    kv_seq_prefix_publish(c, 0, ta, 3 * PAGE); /* whole pages only: no tail */
    cr_expect_eq(kv_seq_prefix_attach(c, 1, ta, n), 3 * PAGE);
    store(c, 1, 3 * PAGE, n);
    kv_seq_reset(c, 0); /* A's blocks stay referenced by slot 1 */
    /* an unrelated prefix B, computed and left unreferenced */
    store(c, 2, 0, n);
    kv_seq_prefix_publish(c, 2, tb, 3 * PAGE);
    kv_seq_reset(c, 2);
    kv_prefix_stats st;
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(st.blocks, 6);
    cr_expect_eq(st.blocks_referenced, 3);
    size_t block = st.bytes / 6;
    /* pressure: evict everything evictable; A survives, slot 1 reads it */
    cr_expect_eq(kv_prefix_evict(c, SIZE_MAX), 3 * block);
    attend(c, 1, n - 1, got);
    cr_expect_eq(memcmp(ref, got, sizeof(float) * 2 * qd), 0, "a referenced block changed");
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(st.blocks, 3);
    cr_expect_eq(st.evictions, 3);
    /* a slot attaching A while slot 1 holds it: refs 2, evict still spares */
    cr_expect_eq(kv_seq_prefix_attach(c, 0, ta, n), 3 * PAGE);
    cr_expect_eq(kv_prefix_evict(c, SIZE_MAX), 0);
    kv_seq_reset(c, 1);
    cr_expect_eq(kv_prefix_evict(c, SIZE_MAX), 0, "evicted while slot 0 holds it");
    /* a second publish of equal pages by another slot stays private */
    store(c, 2, 0, n);
    cr_expect_eq(kv_seq_prefix_publish(c, 2, ta, 3 * PAGE), 0);
    kv_seq_reset(c, 0);
    kv_seq_reset(c, 2);
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(st.blocks, 3, "a duplicate block was cached");
    cr_expect_eq(kv_pool_used(pool), 3 * block);
    kv_prefix_evict(c, SIZE_MAX);
    cr_expect_eq(kv_pool_used(pool), 0);
    kv_destroy(c); /* ASan/the pool would catch a page freed twice */
    kv_pool_destroy(pool);
    free(ref), free(got);
}

Test(kv_prefix_fp16, router_forwards_and_destroy_frees_cached_blocks) {
    kv_pool *pool;
    cr_assert_eq(kv_pool_create(0, &pool), PV_OK);
    kv_shape s = shape(pool);
    s.routed = 1;
    kv_policy p;
    kv_policy_preset("full", &p);
    kv_cache *c;
    cr_assert_eq(kv_create(&s, &p, &c, NULL, 0), PV_OK);
    int32_t t[512];
    tokens(t, PAGE + 2, 5);
    store(c, 0, 0, PAGE + 2);
    cr_expect_eq(kv_seq_prefix_publish(c, 0, t, PAGE), PAGE);
    kv_seq_reset(c, 0);
    kv_prefix_stats st;
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(st.blocks, 1);
    cr_expect_eq(st.block_tokens, PAGE);
    cr_expect_eq(kv_seq_prefix_attach(c, 1, t, PAGE + 2), 0, "a slot without a policy attached");
    cr_assert_eq(kv_seq_set_policy(c, 1, &p, NULL, 0), PV_OK);
    cr_expect_eq(kv_seq_prefix_attach(c, 1, t, PAGE + 2), PAGE);
    kv_seq_reset(c, 1);
    kv_destroy(c); /* cached blocks go back to the pool with their cache */
    cr_expect_eq(kv_pool_used(pool), 0);
    kv_pool_destroy(pool);
}

/* The tail: what a sequence stored after its last whole block (a prompt's
 * end, an answer) is kept as a copy with that block, so a prompt that
 * continues it takes those tokens too (never its own last one), attends
 * bit for bit as if it had computed them, and follows the newest tail. */
Test(kv_prefix_fp16, tail_after_the_last_block_is_copied_and_continued) {
    kv_pool *pool;
    kv_cache *c = fp16(&pool, 0);
    int n = 2 * PAGE + 40, qd = 4 * 32;
    int32_t t[512], t2[512];
    tokens(t, n + 20, 3);
    float *ref = calloc((size_t)2 * qd, sizeof(float)), *got = calloc((size_t)2 * qd, sizeof(float));
    store(c, 0, 0, n);
    attend(c, 0, n - 1, ref);
    cr_expect_eq(kv_seq_prefix_publish(c, 0, t, n), 2 * PAGE);
    kv_prefix_stats st;
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(st.blocks, 3, "two blocks and a tail");
    size_t block = st.bytes / 3;
    cr_expect_eq(st.bytes_referenced, 2 * block, "the tail is never in use (attach copies it)");
    cr_expect_eq(st.bytes_evictable, block);
    kv_seq_reset(c, 0);
    cr_expect_eq(kv_pool_used(pool), 3 * block, "the sequence's own page was not freed");
    /* the same prompt: everything but its last token */
    cr_expect_eq(kv_seq_prefix_attach(c, 1, t, n), n - 1);
    cr_expect_eq(kv_seq_pos(c, 1), n - 1);
    store(c, 1, n - 1, n);
    attend(c, 1, n - 1, got);
    cr_expect_eq(memcmp(ref, got, sizeof(float) * 2 * qd), 0, "attention differs with the tail");
    kv_usage u;
    kv_seq_usage(c, 1, &u);
    cr_expect_eq(u.bytes_cached, 2 * block, "the tail's copy is the sequence's own");
    /* it goes on past the tail (the next turn): the tail's 40 tokens */
    kv_seq_reset(c, 1);
    cr_expect_eq(kv_seq_prefix_attach(c, 1, t, n + 20), n);
    kv_seq_reset(c, 1);
    /* it leaves the tail after 10 tokens: those 10 */
    memcpy(t2, t, sizeof t2);
    t2[2 * PAGE + 10]++;
    cr_expect_eq(kv_seq_prefix_attach(c, 1, t2, n), 2 * PAGE + 10);
    kv_seq_reset(c, 1);
    /* a newer tail after the same blocks replaces it, in its pages */
    int32_t t3[512];
    memcpy(t3, t, sizeof t3);
    t3[2 * PAGE + 5]++;
    cr_expect_eq(kv_seq_prefix_attach(c, 2, t3, 2 * PAGE + 1), 2 * PAGE);
    store(c, 2, 2 * PAGE, 2 * PAGE + 30);
    cr_expect_eq(kv_seq_prefix_publish(c, 2, t3, 2 * PAGE + 30), 2 * PAGE);
    kv_seq_reset(c, 2);
    cr_expect_eq(kv_seq_prefix_attach(c, 1, t3, n), 2 * PAGE + 30);
    kv_seq_reset(c, 1);
    cr_expect_eq(kv_seq_prefix_attach(c, 1, t, n), 2 * PAGE + 5, "not the newest tail");
    /* pressure while the blocks are in use: the tail goes, the blocks stay */
    cr_expect_eq(kv_prefix_evict(c, 1), block);
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(st.blocks, 2);
    cr_expect_eq(st.bytes_evictable, 0);
    kv_seq_reset(c, 1);
    cr_expect_eq(kv_seq_prefix_attach(c, 1, t, n), 2 * PAGE, "a tail after its eviction");
    store(c, 1, 2 * PAGE, n);
    cr_expect_eq(kv_seq_prefix_publish(c, 1, t, n), 2 * PAGE);
    kv_seq_reset(c, 1);
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(st.blocks, 3, "a second tail for one block");
    cr_expect_eq(kv_prefix_evict(c, SIZE_MAX), 3 * block);
    cr_expect_eq(kv_pool_used(pool), 0, "bytes left after a flush");
    kv_destroy(c);
    kv_pool_destroy(pool);
    free(ref), free(got);
}
