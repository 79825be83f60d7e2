/* Automatic prefix caching of the FP16 cache under random operations:
 * sequences in three slots attach, compute, grow, publish and reset at
 * random, with random evictions and flushes in between, over prompts that
 * share heads and differ inside blocks and tails. After every operation
 * the pool's bytes are exactly the sequences' own pages plus the cache's
 * blocks and tails; every attach returns what it stored (never the last
 * token); attention after an attach equals, bit for bit, attention over
 * the same tokens computed afresh in a cache that shares nothing; and
 * everything goes back to the pool at the end. KV rows depend on every
 * token up to their position (as a model's do), so a block or tail
 * attached for the wrong tokens would show. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_policy.h"
#include "kv_pool.h"
#include "pverr.h"

#define NL 2
#define NH 4
#define NKV 2
#define HD 32
#define CTX 448
#define SLOTS 3

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int rnd(uint64_t *s, int n) { return (int)(rng_next(s) % (uint64_t)n); }

static kv_cache *fp16(kv_pool **pool) {
    cr_assert_eq(kv_pool_create(0, pool), PV_OK);
    kv_shape s = {.n_layers = NL, .n_heads = NH, .n_kv_heads = NKV, .head_dim = HD,
                  .max_seqs = SLOTS, .max_ctx = CTX, .n_threads = 1, .pool = *pool};
    kv_policy p;
    kv_policy_preset("full", &p);
    kv_cache *c;
    cr_assert_eq(kv_create(&s, &p, &c, NULL, 0), PV_OK);
    return c;
}

/* Rows of position p after tokens tok[0..p]: seeded by a hash of them all. */
static void rows_at(const int32_t *tok, int p, int layer, unsigned salt, int n, float *out) {
    uint64_t h = 1469598103934665603ull ^ salt;
    for (int i = 0; i <= p; i++) h = (h ^ (uint64_t)(uint32_t)tok[i]) * 1099511628211ull;
    unsigned s = (unsigned)(h ^ (h >> 32)) ^ (unsigned)(layer * 40503u);
    for (int i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        out[i] = ((s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
}

static void store(kv_cache *c, int seq, const int32_t *tok, int from, int to) {
    float k[NKV * HD], v[NKV * HD];
    for (int p = from; p < to; p++)
        for (int l = 0; l < NL; l++) {
            rows_at(tok, p, l, 1, NKV * HD, k);
            rows_at(tok, p, l, 2, NKV * HD, v);
            cr_assert_eq(kv_store(c, seq, l, p, 1, k, v), PV_OK, "store %d", p);
        }
}

static void attend(kv_cache *c, int seq, const int32_t *tok, int pos, float *out) {
    float q[NH * HD];
    for (int l = 0; l < NL; l++) {
        rows_at(tok, pos, l, 3, NH * HD, q);
        for (int h = 0; h < NKV; h++)
            cr_assert_eq(kv_attend_group(c, seq, l, h, pos, 1, q, out + (size_t)l * NH * HD, 0),
                         PV_OK);
    }
}

/* The pool holds the sequences' own pages and the cache's blocks and
 * tails, nothing else. */
static void check_books(kv_cache *c, kv_pool *pool, int step) {
    size_t own = 0;
    for (int s = 0; s < SLOTS; s++) {
        kv_usage u;
        kv_seq_usage(c, s, &u);
        own += u.bytes_stored - u.bytes_cached;
    }
    kv_prefix_stats st;
    kv_prefix_get_stats(c, &st);
    cr_assert_eq(kv_pool_used(pool), own + st.bytes, "step %d: pool %zu, sequences %zu + cache %zu",
                 step, kv_pool_used(pool), own, st.bytes);
    cr_assert_leq(st.bytes_referenced + st.bytes_evictable, st.bytes, "step %d", step);
}

/* The end of a run: every slot reset, the cache flushed, the pool empty;
 * the cache destroyed. */
static void drain(kv_cache *c, kv_pool *pool, uint64_t seed) {
    for (int s = 0; s < SLOTS; s++) kv_seq_reset(c, s);
    kv_prefix_evict(c, SIZE_MAX);
    cr_expect_eq(kv_pool_used(pool), 0, "seed %lu: bytes left", (unsigned long)seed);
    kv_destroy(c);
}

/* A prompt: one of three heads (or none), then tokens from a small
 * alphabet, so prompts part inside blocks and inside tails. */
static int make_prompt(uint64_t *r, int32_t *t) {
    static const int head_len[3] = {150, 64, 97};
    int h = rnd(r, 4), n = 0;
    if (h < 3)
        for (; n < head_len[h]; n++) t[n] = 1000 * (h + 1) + n;
    int more = 1 + rnd(r, 160);
    for (int i = 0; i < more; i++, n++) t[n] = rnd(r, 3);
    return n;
}

Test(kv_prefix_random, random_operations_keep_the_books_and_the_bits) {
    for (uint64_t seed = 1; seed <= 3; seed++) {
        uint64_t r = seed;
        kv_pool *pool, *rpool;
        kv_cache *c = fp16(&pool), *ref = fp16(&rpool);
        int32_t tok[SLOTS][CTX];
        int len[SLOTS] = {0};
        float got[NL * NH * HD], want[NL * NH * HD];
        long attached = 0, tails = 0;
        for (int step = 0; step < 600; step++) {
            int s = rnd(&r, SLOTS), op = rnd(&r, 10);
            if (!len[s]) { /* a new request: attach, compute the rest, compare */
                int n = make_prompt(&r, tok[s]);
                int a = kv_seq_prefix_attach(c, s, tok[s], n);
                cr_assert(a >= 0 && a <= n - 1, "seed %lu step %d: attached %d of %d",
                          (unsigned long)seed, step, a, n);
                cr_assert_eq(kv_seq_pos(c, s), a);
                attached += a;
                tails += a % 64 != 0;
                store(c, s, tok[s], a, n);
                len[s] = n;
                attend(c, s, tok[s], n - 1, got);
                store(ref, 0, tok[s], 0, n);
                attend(ref, 0, tok[s], n - 1, want);
                kv_seq_reset(ref, 0);
                cr_assert_eq(memcmp(got, want, sizeof got), 0,
                             "seed %lu step %d: attention after attaching %d of %d differs",
                             (unsigned long)seed, step, a, n);
                if (rnd(&r, 10) < 7) cr_assert_geq(kv_seq_prefix_publish(c, s, tok[s], n), 0);
            } else if (op < 3 && len[s] + 40 < CTX) { /* it grows (decodes) */
                int k = 1 + rnd(&r, 39);
                for (int i = 0; i < k; i++) tok[s][len[s] + i] = rnd(&r, 3);
                store(c, s, tok[s], len[s], len[s] + k);
                len[s] += k;
            } else if (op < 6) { /* it ends: publish (its tail too), free the slot */
                if (op < 5) cr_assert_geq(kv_seq_prefix_publish(c, s, tok[s], len[s]), 0);
                kv_seq_reset(c, s);
                len[s] = 0;
            } else if (op < 9) { /* memory pressure */
                kv_prefix_stats st;
                kv_prefix_get_stats(c, &st);
                size_t ask = st.bytes ? (size_t)rnd(&r, (int)(st.bytes / 1024) + 1) * 1024 : 0;
                size_t freed = kv_prefix_evict(c, ask);
                cr_assert_leq(freed, st.bytes_evictable);
            } else { /* a flush */
                kv_prefix_evict(c, SIZE_MAX);
                kv_prefix_stats st;
                kv_prefix_get_stats(c, &st);
                cr_assert_eq(st.bytes, st.bytes_referenced, "a flush left unused bytes");
            }
            check_books(c, pool, step);
        }
        cr_expect_gt(attached, 0, "seed %lu: nothing was ever attached", (unsigned long)seed);
        cr_expect_gt(tails, 0, "seed %lu: no attach ever took a tail", (unsigned long)seed);
        drain(c, pool, seed);
        kv_destroy(ref);
        kv_pool_destroy(pool);
        kv_pool_destroy(rpool);
    }
}

/* One call of the mixed cache: store [from, to) and attend their queries. */
static void call(kv_cache *c, int seq, const int32_t *tok, int from, int to) {
    int n = to - from;
    float *k = malloc(sizeof(float) * NKV * HD * n), *v = malloc(sizeof(float) * NKV * HD * n);
    float *q = malloc(sizeof(float) * NH * HD * n), *o = malloc(sizeof(float) * NH * HD * n);
    for (int l = 0; l < NL; l++) {
        for (int i = 0; i < n; i++) {
            rows_at(tok, from + i, l, 1, NKV * HD, k + (size_t)i * NKV * HD);
            rows_at(tok, from + i, l, 2, NKV * HD, v + (size_t)i * NKV * HD);
            rows_at(tok, from + i, l, 3, NH * HD, q + (size_t)i * NH * HD);
        }
        cr_assert_eq(kv_store(c, seq, l, from, n, k, v), PV_OK);
        for (int h = 0; h < NKV; h++) cr_assert_eq(kv_attend_group(c, seq, l, h, from, n, q, o, 0), PV_OK);
    }
    free(k), free(v), free(q), free(o);
}

/* The mixed cache's snapshots under the same random life: prefills that
 * end a call at the prompt's last block boundary and publish there, decode
 * steps that publish at block boundaries (mostly each replacing the last:
 * kv_seq_prefix_publish_latest), resets, evictions. The books hold after
 * every step (a snapshot's pages are all the cache's: pool = sequences +
 * snapshots), attaches are whole blocks below n, and everything goes back
 * at the end. */
Test(kv_prefix_random, mixed_snapshots_keep_the_books) {
    for (uint64_t seed = 1; seed <= 2; seed++) {
        uint64_t r = seed;
        kv_pool *pool;
        cr_assert_eq(kv_pool_create(0, &pool), PV_OK);
        kv_shape sh = {.n_layers = NL, .n_heads = NH, .n_kv_heads = NKV, .head_dim = HD,
                       .max_seqs = SLOTS, .max_ctx = CTX, .n_threads = 1, .pool = pool};
        kv_policy p;
        char err[128];
        cr_assert_eq(kv_policy_parse("mikv,budget=0.25,recent=8,sinks=2", &p, err, sizeof err), 0);
        kv_cache *c;
        cr_assert_eq(kv_create(&sh, &p, &c, err, sizeof err), PV_OK, "%s", err);
        int32_t tok[SLOTS][CTX];
        int len[SLOTS] = {0};
        long attached = 0;
        for (int step = 0; step < 300; step++) {
            int s = rnd(&r, SLOTS), op = rnd(&r, 10);
            if (!len[s]) {
                int n = make_prompt(&r, tok[s]);
                int a = kv_seq_prefix_attach(c, s, tok[s], n);
                cr_assert(a >= 0 && a <= n - 1 && a % 64 == 0, "step %d: attached %d of %d", step, a, n);
                attached += a;
                int cut = (n - 1) / 64 * 64;
                if (cut > a) {
                    call(c, s, tok[s], a, cut);
                    cr_assert_geq(kv_seq_prefix_publish(c, s, tok[s], cut), 0);
                    a = cut;
                }
                call(c, s, tok[s], a, n);
                len[s] = n;
            } else if (op < 4 && len[s] + 20 < CTX) {
                /* up to 72 tokens: a sequence crosses several boundaries in a lifetime */
                for (int i = 0, k = 8 + 32 * rnd(&r, 3); i < k && len[s] + 1 < CTX; i++, len[s]++) {
                    tok[s][len[s]] = rnd(&r, 3);
                    call(c, s, tok[s], len[s], len[s] + 1);
                    if ((len[s] + 1) % 64 == 0) /* mostly as the engine does; a plain one at times */
                        cr_assert_geq(rnd(&r, 4) ? kv_seq_prefix_publish_latest(c, s, tok[s], len[s] + 1)
                                                 : kv_seq_prefix_publish(c, s, tok[s], len[s] + 1),
                                      0);
                }
            } else if (op < 7) {
                kv_seq_reset(c, s);
                len[s] = 0;
            } else {
                kv_prefix_stats st;
                kv_prefix_get_stats(c, &st);
                kv_prefix_evict(c, op == 9 ? SIZE_MAX : st.bytes / 2);
            }
            check_books(c, pool, step);
        }
        cr_expect_gt(attached, 0, "seed %lu: nothing was ever attached", (unsigned long)seed);
        drain(c, pool, seed);
        kv_pool_destroy(pool);
    }
}
