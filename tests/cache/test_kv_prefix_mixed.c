/* Prefix caching for compressed policies (cache/kv_mixed_pfx.c): snapshots
 * taken between calls at block boundaries. A sequence that attaches one
 * continues bit for bit like the sequence that published it (attention
 * outputs, tiers, tracker scores), the snapshot is only taken where it is
 * exact (a block boundary, nothing pending, no elastic budget), lookups
 * compare tokens and never cover the last one, the snapshot outlives its
 * publisher, a refused allocation loses nothing, and every byte goes back
 * to the pool. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_policy.h"
#include "kv_pool.h"
#include "pverr.h"

#define BLK 64 /* KVMX_PFX_BLOCK */
#define NL 2
#define NH 4
#define NKV 2
#define HD 32

static kv_shape shape(kv_pool *pool, int max_seqs) {
    return (kv_shape){.n_layers = NL, .n_heads = NH, .n_kv_heads = NKV, .head_dim = HD,
                      .max_seqs = max_seqs, .max_ctx = 512, .n_threads = 1, .pool = pool};
}

/* Rows of position p (keys, values, queries by offset): the same tokens
 * give the same rows, as a model would; a salt changes them (another
 * prompt). */
static void row(int p, int layer, int n, unsigned salt, float *out) {
    unsigned s = (unsigned)(p * 2654435761u) ^ (unsigned)(layer * 40503u) ^ (salt * 97u);
    for (int i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        out[i] = ((s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
}

/* One call: stores [from, to) in every layer and attends their queries
 * (every KV head), as a prefill chunk or a decode step does; the outputs
 * of the call's last query go to out (NL * NH * HD floats) when not NULL. */
static void call(kv_cache *c, int seq, int from, int to, unsigned salt, float *out) {
    int n = to - from, kvd = NKV * HD, qd = NH * HD;
    float *k = malloc(sizeof(float) * kvd * n), *v = malloc(sizeof(float) * kvd * n);
    float *q = malloc(sizeof(float) * qd * n), *o = malloc(sizeof(float) * qd * n);
    for (int l = 0; l < NL; l++) {
        for (int i = 0; i < n; i++) {
            row(from + i, l, kvd, salt, k + (size_t)i * kvd);
            row(from + i + 100000, l, kvd, salt, v + (size_t)i * kvd);
            row(from + i + 200000, l, qd, salt, q + (size_t)i * qd);
        }
        cr_assert_eq(kv_store(c, seq, l, from, n, k, v), PV_OK, "store %d..%d", from, to);
        for (int h = 0; h < NKV; h++)
            cr_assert_eq(kv_attend_group(c, seq, l, h, from, n, q, o, 0), PV_OK);
        if (out) memcpy(out + (size_t)l * qd, o + (size_t)(n - 1) * qd, sizeof(float) * qd);
    }
    free(k), free(v), free(q), free(o);
}

static void tokens(int32_t *t, int n, int salt) {
    for (int i = 0; i < n; i++) t[i] = (i * 7 + salt) % 997;
}

static kv_cache *mixed(kv_pool **pool, size_t limit, const char *spec, int max_seqs) {
    cr_assert_eq(kv_pool_create(limit, pool), PV_OK);
    kv_shape s = shape(*pool, max_seqs);
    kv_policy p;
    char err[128];
    cr_assert_eq(kv_policy_parse(spec, &p, err, sizeof err), PV_OK, "%s", err);
    kv_cache *c;
    cr_assert_eq(kv_create(&s, &p, &c, err, sizeof err), PV_OK, "%s", err);
    return c;
}

/* Every position's tier and score in every (layer, head) of two slots agree. */
static void expect_same_tiers(kv_cache *c, int a, int b, int n) {
    uint8_t ta[512], tb[512];
    float sa[512], sb[512];
    for (int l = 0; l < NL; l++)
        for (int h = 0; h < NKV; h++) {
            cr_assert_eq(kv_seq_tiers(c, a, l, h, ta, sa, n), n);
            cr_assert_eq(kv_seq_tiers(c, b, l, h, tb, sb, n), n);
            cr_expect_eq(memcmp(ta, tb, (size_t)n), 0, "tiers differ in layer %d head %d", l, h);
            for (int p = 0; p < n; p++)
                cr_expect(memcmp(&sa[p], &sb[p], sizeof(float)) == 0 || (isnan(sa[p]) && isnan(sb[p])),
                          "score of %d differs (layer %d head %d)", p, l, h);
        }
}

/* The policies whose state differs most: importance tracking with a
 * quantized low tier, INT8 balanced keys, accumulated scores, dropping. */
static const char *const SPECS[] = {
    "mikv,budget=0.25,recent=8,sinks=2",
    "mikv,budget=40,recent=8,sinks=2,hi-bits=8",
    "mikv,budget=0.25,recent=8,sinks=2,layer-bits=0:2/4", /* layers of other widths */
    "mikv,budget=0.25,recent=8,sinks=2,layer-bits=1.1:8/4+0.0:2", /* and heads */
    "h2o,budget=48,recent=8,sinks=2",
    "scissorhands,budget=48,recent=8,sinks=2",
};

Test(kv_prefix_mixed, attached_snapshot_continues_bit_for_bit_like_its_publisher) {
    for (size_t si = 0; si < sizeof SPECS / sizeof *SPECS; si++) {
        kv_pool *pool;
        kv_cache *c = mixed(&pool, 0, SPECS[si], 3);
        int P = 2 * BLK, n = P + 50, qd = NL * NH * HD;
        int32_t t[512];
        tokens(t, n + 8, 3);
        float *ref = calloc((size_t)qd * 8, sizeof(float)), *got = calloc((size_t)qd * 8, sizeof(float));
        /* the publisher: a prefill call ending at the block boundary P */
        call(c, 0, 0, 70, 0, NULL);
        cr_expect_eq(kv_seq_prefix_publish(c, 0, t, 70), 0, "%s: published off a block boundary",
                     SPECS[si]);
        call(c, 0, 70, P, 0, NULL);
        cr_expect_eq(kv_seq_prefix_publish(c, 0, t, P), P, "%s", SPECS[si]);
        kv_usage u0;
        kv_seq_usage(c, 0, &u0);
        cr_expect_lt(u0.n_high, P, "%s: nothing was compressed, the test shows nothing", SPECS[si]);
        /* the suffix (one chunk) and a few decode steps */
        call(c, 0, P, n, 0, ref);
        for (int i = 1; i < 8; i++) call(c, 0, n + i - 1, n + i, 0, ref + (size_t)i * qd);
        /* the attacher */
        cr_expect_eq(kv_seq_prefix_attach(c, 1, t, n), P, "%s", SPECS[si]);
        cr_expect_eq(kv_seq_pos(c, 1), P);
        kv_usage u1;
        kv_seq_usage(c, 1, &u1);
        cr_expect_eq(u1.n_high, u0.n_high);
        cr_expect_eq(u1.n_low, u0.n_low);
        cr_expect_eq(u1.n_dropped, u0.n_dropped);
        cr_expect_eq(u1.bytes_stored, u0.bytes_stored, "%s: the copy holds other bytes", SPECS[si]);
        call(c, 1, P, n, 0, got);
        for (int i = 1; i < 8; i++) call(c, 1, n + i - 1, n + i, 0, got + (size_t)i * qd);
        cr_expect_eq(memcmp(ref, got, sizeof(float) * qd * 8), 0,
                     "%s: attention differs with the snapshot", SPECS[si]);
        expect_same_tiers(c, 0, 1, n + 7);
        /* the publisher's later demotions did not touch the snapshot: a
         * third sequence, attached after both moved on, matches too */
        kv_seq_reset(c, 0);
        cr_expect_eq(kv_seq_prefix_attach(c, 0, t, n), P, "%s: the snapshot died with its publisher",
                     SPECS[si]);
        call(c, 0, P, n, 0, got);
        for (int i = 1; i < 8; i++) call(c, 0, n + i - 1, n + i, 0, got + (size_t)i * qd);
        cr_expect_eq(memcmp(ref, got, sizeof(float) * qd * 8), 0, "%s: a later attach differs",
                     SPECS[si]);
        kv_destroy(c); /* with a snapshot still cached: frees it */
        cr_expect_eq(kv_pool_used(pool), 0, "%s: bytes left after destroy", SPECS[si]);
        kv_pool_destroy(pool);
        free(ref), free(got);
    }
}

Test(kv_prefix_mixed, lookups_compare_tokens_take_the_longest_and_never_the_last_token) {
    kv_pool *pool;
    kv_cache *c = mixed(&pool, 0, SPECS[0], 3);
    int32_t t[512], t2[512];
    tokens(t, 400, 5);
    call(c, 0, 0, BLK, 0, NULL);
    cr_expect_eq(kv_seq_prefix_publish(c, 0, t, BLK), BLK);
    call(c, 0, BLK, 3 * BLK, 0, NULL);
    cr_expect_eq(kv_seq_prefix_publish(c, 0, t, 3 * BLK), 3 * BLK);
    cr_expect_eq(kv_seq_prefix_publish(c, 0, t, 3 * BLK), 3 * BLK, "a republish is not idempotent");
    kv_prefix_stats st;
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(st.blocks, 2, "two snapshots (64 and 192 tokens)");
    cr_expect_eq(st.block_tokens, BLK);
    cr_expect_eq(st.bytes, st.bytes_evictable, "a snapshot is referenced by nobody (attach copies)");
    cr_expect_gt(st.bytes, 0);
    cr_expect_eq(kv_seq_prefix_attach(c, 1, t, 400), 3 * BLK, "not the longest");
    cr_expect_eq(kv_seq_prefix_attach(c, 1, t, 400), PV_EINVAL, "attached to a non-empty slot");
    kv_seq_reset(c, 1);
    /* the prompt is exactly the longer snapshot: its last token is computed */
    cr_expect_eq(kv_seq_prefix_attach(c, 1, t, 3 * BLK), BLK);
    kv_seq_reset(c, 1);
    /* a token changed in the third block: the 64-token snapshot only */
    memcpy(t2, t, sizeof t2);
    t2[2 * BLK + 3]++;
    cr_expect_eq(kv_seq_prefix_attach(c, 1, t2, 400), BLK);
    kv_seq_reset(c, 1);
    /* where it leaves the 192-token snapshot's path: 2 whole blocks */
    cr_expect_eq(kv_prefix_match(c, 1, t2, 400), 2 * BLK);
    cr_expect_eq(kv_prefix_match(c, 1, t, 400), 3 * BLK);
    cr_expect_eq(kv_prefix_match(c, 1, t, 2 * BLK + 1), 2 * BLK, "past n - 1");
    /* in the first block: nothing */
    t2[10]++;
    cr_expect_eq(kv_seq_prefix_attach(c, 1, t2, 400), 0);
    cr_expect_eq(kv_seq_pos(c, 1), 0);
    /* an elastic budget is not part of the name: such a sequence does not publish */
    kv_seq_reset(c, 0);
    call(c, 2, 0, 2 * BLK, 0, NULL);
    cr_assert_eq(kv_seq_set_budget(c, 2, 20), PV_OK);
    cr_expect_eq(kv_seq_prefix_publish(c, 2, t2, 2 * BLK), 0);
    kv_seq_reset(c, 2);
    /* flush: everything back */
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(kv_prefix_evict(c, SIZE_MAX), st.bytes);
    cr_expect_eq(kv_pool_used(pool), 0, "bytes left after a flush");
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(st.blocks, 0);
    cr_expect_eq(st.evictions, 2);
    kv_destroy(c);
    kv_pool_destroy(pool);
}

Test(kv_prefix_mixed, accounting_lru_eviction_and_refused_memory_lose_nothing) {
    kv_pool *pool;
    kv_cache *c = mixed(&pool, 0, SPECS[0], 3);
    int32_t a[256], b[256];
    tokens(a, 256, 1);
    tokens(b, 256, 2);
    call(c, 0, 0, BLK, 1, NULL);
    kv_usage u;
    kv_seq_usage(c, 0, &u);
    size_t before = kv_pool_used(pool);
    cr_expect_eq(kv_seq_prefix_publish(c, 0, a, BLK), BLK);
    kv_prefix_stats st;
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(kv_pool_used(pool), before + st.bytes, "the snapshot's bytes are not in the pool");
    cr_expect_eq(st.bytes, u.bytes_stored, "a snapshot holds what the sequence holds");
    size_t snap_a = st.bytes;
    kv_seq_reset(c, 0);
    call(c, 0, 0, BLK, 2, NULL);
    cr_expect_eq(kv_seq_prefix_publish(c, 0, b, BLK), BLK);
    kv_seq_reset(c, 0);
    /* a used since b was made: b is the least recently used */
    cr_expect_eq(kv_seq_prefix_attach(c, 1, a, 100), BLK);
    kv_seq_reset(c, 1);
    cr_expect_gt(kv_prefix_evict(c, 1), 0);
    cr_expect_eq(kv_seq_prefix_attach(c, 1, b, 100), 0, "the least recently used one was not the one evicted");
    cr_expect_eq(kv_seq_prefix_attach(c, 1, a, 100), BLK);
    kv_seq_reset(c, 1);
    cr_expect_eq(kv_prefix_evict(c, SIZE_MAX), snap_a);
    cr_expect_eq(kv_pool_used(pool), 0);
    kv_destroy(c);
    kv_pool_destroy(pool);

    /* a pool that cannot hold the snapshot: publish fails, nothing is lost
     * (the pool's headroom is taken by a charge, as other sequences would) */
    const size_t limit = 1 << 24;
    c = mixed(&pool, limit, SPECS[0], 3);
    call(c, 0, 0, BLK, 1, NULL);
    size_t seq_bytes = kv_pool_used(pool), fill = limit - seq_bytes - seq_bytes / 2;
    cr_assert_eq(kv_pool_charge(pool, fill), PV_OK);
    cr_expect_eq(kv_seq_prefix_publish(c, 0, a, BLK), PV_ENOMEM);
    cr_expect_eq(kv_pool_used(pool), seq_bytes + fill, "a refused snapshot kept pages");
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(st.blocks, 0);
    kv_pool_uncharge(pool, fill);
    cr_expect_eq(kv_seq_prefix_publish(c, 0, a, BLK), BLK, "the sequence could not publish after");
    /* attach refused half-way: the slot stays empty, the snapshot cached */
    size_t used = kv_pool_used(pool);
    fill = limit - used - seq_bytes / 2;
    cr_assert_eq(kv_pool_charge(pool, fill), PV_OK);
    cr_expect_eq(kv_seq_prefix_attach(c, 1, a, 100), PV_ENOMEM);
    cr_expect_eq(kv_seq_pos(c, 1), 0);
    cr_expect_eq(kv_pool_used(pool), used + fill, "a refused attach kept pages");
    kv_pool_uncharge(pool, fill);
    cr_expect_eq(kv_seq_prefix_attach(c, 1, a, 100), BLK, "the snapshot was lost");
    kv_seq_reset(c, 1);
    kv_seq_reset(c, 0);
    kv_destroy(c);
    cr_expect_eq(kv_pool_used(pool), 0);
    kv_pool_destroy(pool);
}

/* A sequence that publishes as it generates (kv_seq_prefix_publish_latest)
 * keeps one snapshot of its answer: each replaces the one before when it
 * extends it, the replaced one's pages are reused (the pool's free list), and
 * nothing else is replaced — a prompt's snapshot, one another sequence
 * attached, one whose tokens it does not extend, or one from before the
 * sequence's reset. */
Test(kv_prefix_mixed, a_generating_sequence_keeps_its_latest_snapshot_only) {
    kv_pool *pool;
    kv_cache *c = mixed(&pool, 0, SPECS[0], 3);
    int32_t t[512], u[512];
    tokens(t, 512, 3);
    kv_prefix_stats st;
    kv_pool_stats ps0, ps1;
    call(c, 0, 0, BLK, 0, NULL);
    cr_expect_eq(kv_seq_prefix_publish(c, 0, t, BLK), BLK, "the prompt's");
    call(c, 0, BLK, 2 * BLK, 0, NULL);
    cr_expect_eq(kv_seq_prefix_publish_latest(c, 0, t, 2 * BLK), 2 * BLK);
    call(c, 0, 2 * BLK, 3 * BLK, 0, NULL);
    kv_pool_get_stats(pool, &ps0);
    cr_expect_eq(kv_seq_prefix_publish_latest(c, 0, t, 3 * BLK), 3 * BLK);
    kv_pool_get_stats(pool, &ps1);
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(st.blocks, 2, "the prompt's and the latest (64 and 192), not the 128 one");
    /* the replaced one held 128 of these 192 tokens: most pages are its */
    cr_expect_gt(ps1.n_reused - ps0.n_reused, ps1.n_malloc - ps0.n_malloc, "pages from the replaced snapshot");
    cr_expect_eq(kv_seq_prefix_attach(c, 1, t, 2 * BLK + 1), BLK, "128 was replaced: the prompt's");
    kv_seq_reset(c, 1);
    cr_expect_eq(kv_seq_prefix_attach(c, 1, t, 400), 3 * BLK);
    /* attached: the publisher's next one must not replace it */
    call(c, 0, 3 * BLK, 4 * BLK, 0, NULL);
    cr_expect_eq(kv_seq_prefix_publish_latest(c, 0, t, 4 * BLK), 4 * BLK);
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(st.blocks, 3, "64, 192 (attached) and 256");
    kv_seq_reset(c, 1);
    /* tokens that do not extend it (same length bound, another path): kept */
    memcpy(u, t, sizeof u);
    u[10]++;
    call(c, 0, 4 * BLK, 5 * BLK, 0, NULL);
    cr_expect_eq(kv_seq_prefix_publish_latest(c, 0, u, 5 * BLK), 5 * BLK);
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(st.blocks, 4, "256 stays: the 320 one is not its extension");
    /* a reset starts over: the next lifetime replaces nothing of the last,
     * not even the latest (320 tokens of u) that its own one extends */
    kv_seq_reset(c, 0);
    call(c, 0, 0, 6 * BLK, 0, NULL);
    cr_expect_eq(kv_seq_prefix_publish_latest(c, 0, u, 6 * BLK), 6 * BLK);
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(st.blocks, 5, "the old lifetime's four, and this one's latest");
    /* published plainly as well: no longer the sequence's to replace */
    cr_expect_eq(kv_seq_prefix_publish(c, 0, u, 6 * BLK), 6 * BLK);
    call(c, 0, 6 * BLK, 7 * BLK, 0, NULL);
    cr_expect_eq(kv_seq_prefix_publish_latest(c, 0, u, 7 * BLK), 7 * BLK);
    kv_prefix_get_stats(c, &st);
    cr_expect_eq(st.blocks, 6, "the 384 one stays beside the 448 one");
    kv_seq_reset(c, 0);
    /* eviction of a sequence's latest: its next publish replaces nothing */
    cr_expect_eq(kv_prefix_evict(c, SIZE_MAX), st.bytes);
    cr_expect_eq(kv_pool_used(pool), 0, "bytes left after a flush");
    call(c, 2, 0, BLK, 0, NULL);
    cr_expect_eq(kv_seq_prefix_publish_latest(c, 2, t, BLK), BLK);
    cr_expect_eq(kv_prefix_evict(c, SIZE_MAX) > 0, 1);
    call(c, 2, BLK, 2 * BLK, 0, NULL);
    cr_expect_eq(kv_seq_prefix_publish_latest(c, 2, t, 2 * BLK), 2 * BLK, "no stale pointer followed");
    kv_seq_reset(c, 2);
    kv_destroy(c);
    kv_pool_destroy(pool);
}
