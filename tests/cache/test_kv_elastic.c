/* kv_seq_set_budget (elastic compression) through the router: the sequence
 * is demoted at once to the new budget in every layer and head, its bytes
 * drop and stay within kv_policy_seq_bytes of the policy with that budget
 * (and equal what the pool handed out), later tokens follow the new budget,
 * the other slots are untouched, a reset ends the override, one-token
 * demotions keep to their exact bound as the budget follows the length, a
 * call refused mid-step changes nothing, and caches that never demote refuse. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "kv.h"
#include "kv_policy.h"
#include "kv_pool.h"
#include "kv_router.h"
#include "kv_tier.h"
#include "pverr.h"
#include "../test_rand.h"

static kv_policy pol(const char *spec) {
    kv_policy p;
    char err[256];
    cr_assert_eq(kv_policy_parse(spec, &p, err, sizeof err), 0, "%s", err);
    return p;
}

/* Appends n tokens to seq, one call per token after a first chunk of 32. */
static void feed(kv_cache *c, int seq, int from, int n, unsigned seed) {
    const kv_shape *s = kv_get_shape(c);
    int kvd = s->n_kv_heads * s->head_dim, qd = s->n_heads * s->head_dim;
    float *k = malloc(sizeof(float) * kvd * 32), *v = malloc(sizeof(float) * kvd * 32);
    float *q = malloc(sizeof(float) * qd * 32), *o = malloc(sizeof(float) * qd * 32);
    for (int p = from; p < from + n;) {
        int m = p == 0 ? 32 : 1;
        for (int l = 0; l < s->n_layers; l++) {
            for (int i = 0; i < m * kvd; i++) k[i] = frand(&seed), v[i] = frand(&seed);
            for (int i = 0; i < m * qd; i++) q[i] = frand(&seed);
            cr_assert_eq(kv_store(c, seq, l, p, m, k, v), 0);
            for (int h = 0; h < s->n_kv_heads; h++)
                cr_assert_eq(kv_attend_group(c, seq, l, h, p, m, q, o, 0), 0);
        }
        p += m;
    }
    free(k), free(v), free(q), free(o);
}

/* A routed cache on its own pool, every slot given the policy of spec. */
static kv_cache *routed(const char *spec, int max_seqs, int max_ctx, kv_pool **pool, kv_shape *s,
                        kv_policy *p) {
    cr_assert_eq(kv_pool_create(0, pool), 0);
    *s = (kv_shape){.n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 64, .max_seqs = max_seqs,
                    .max_ctx = max_ctx, .n_threads = 1, .pool = *pool, .routed = 1};
    *p = pol(spec);
    kv_cache *c;
    char err[256];
    cr_assert_eq(kv_create(s, p, &c, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < max_seqs; i++) cr_assert_eq(kv_seq_set_policy(c, i, p, err, sizeof err), 0, "%s", err);
    return c;
}

Test(elastic, demotes_at_once_and_bounds_the_bytes) {
    kv_pool *pool;
    kv_shape s;
    kv_policy p;
    kv_cache *c = routed("mikv,budget=0.5", 2, 256, &pool, &s, &p);
    char err[256];
    feed(c, 0, 0, 160, 7);
    feed(c, 1, 0, 160, 9);
    kv_usage before, after, other;
    kv_seq_usage(c, 0, &before);
    cr_assert_gt(before.n_high, 60, "budget 0.5 of 160 keeps ~80 high, got %d", before.n_high);
    cr_assert_eq(kv_seq_set_budget(c, 0, 24), 0);
    kv_seq_usage(c, 0, &after);
    cr_expect_leq(after.n_high, 24);
    cr_expect_geq(after.n_high, kv_tier_protected(&p, 160), "protected tokens demoted");
    cr_expect_eq(after.n_high + after.n_low, 160, "tokens lost");
    cr_expect_eq(after.n_dropped, 0);
    cr_expect_lt(after.bytes_stored, before.bytes_stored);
    kv_policy q = p;
    q.budget = 24;
    cr_expect_leq(after.bytes_stored, kv_policy_seq_bytes(&q, &s, 160));
    kv_seq_usage(c, 1, &other);
    cr_expect_eq(other.n_high, before.n_high, "another slot was compressed");
    cr_expect_eq(kv_pool_used(pool), after.bytes_stored + other.bytes_stored,
                 "accounting differs from allocation");
    /* later tokens follow the new budget */
    feed(c, 0, 160, 40, 11);
    kv_seq_usage(c, 0, &after);
    cr_expect_leq(after.n_high, 24);
    cr_expect_leq(after.bytes_stored, kv_policy_seq_bytes(&q, &s, 200));
    /* a reset ends the override: the slot's next sequence has the policy's budget */
    kv_seq_reset(c, 0);
    cr_assert_eq(kv_seq_set_policy(c, 0, &p, err, sizeof err), 0, "%s", err);
    feed(c, 0, 0, 160, 7);
    kv_seq_usage(c, 0, &after);
    cr_expect_eq(after.n_high, before.n_high);
    cr_expect_eq(kv_seq_set_budget(c, 0, 2.5), PV_EINVAL, "2.5 tokens is not a budget");
    kv_destroy(c);
    kv_pool_destroy(pool);
}

/* One token of one layer: stored, and attended unless `store_only`. */
static void step_layer(kv_cache *c, int seq, int layer, int pos, int store_only, unsigned seed) {
    const kv_shape *s = kv_get_shape(c);
    int kvd = s->n_kv_heads * s->head_dim, qd = s->n_heads * s->head_dim;
    float k[kvd], v[kvd], q[qd], o[qd];
    for (int i = 0; i < kvd; i++) k[i] = frand(&seed), v[i] = frand(&seed);
    for (int i = 0; i < qd; i++) q[i] = frand(&seed);
    if (store_only != 2) cr_assert_eq(kv_store(c, seq, layer, pos, 1, k, v), 0);
    if (store_only == 1) return;
    for (int h = 0; h < s->n_kv_heads; h++)
        cr_assert_eq(kv_attend_group(c, seq, layer, h, pos, 1, q, o, 0), 0);
}

/* With one-token demotions kv_policy_seq_bytes is exact (the tier rests at
 * the budget), so it has no page of slack: a cut, then the budget raised
 * step by step as the engine's floor follows the length (eng_mem.c), must
 * stay within the bound of the budget in force at every length. */
Test(elastic, one_token_demotions_stay_within_the_exact_bound) {
    kv_pool *pool;
    kv_shape s;
    kv_policy p;
    kv_cache *c = routed("mikv,budget=0.5,chunk=1", 1, 320, &pool, &s, &p);
    feed(c, 0, 0, 100, 3);
    kv_usage u;
    kv_seq_usage(c, 0, &u);
    cr_assert_eq(u.bytes_stored, kv_policy_seq_bytes(&p, &s, 100), "exact before the cut");
    kv_policy q = p;
    for (int len = 100; len < 300; len++) {
        /* the floor: a quarter of the length, rounded up, from the cut on */
        int b = (len + 1 + 3) / 4;
        cr_assert_eq(kv_seq_set_budget(c, 0, b), 0);
        feed(c, 0, len, 1, 100u + (unsigned)len);
        q.budget = b;
        kv_seq_usage(c, 0, &u);
        cr_assert_leq(u.bytes_stored, kv_policy_seq_bytes(&q, &s, len + 1), "at %d tokens, budget %d", len + 1, b);
        cr_assert_eq(u.n_high, b, "at %d tokens", len + 1);
        cr_assert_eq(kv_pool_used(pool), u.bytes_stored, "accounting differs from allocation");
    }
    kv_destroy(c);
    kv_pool_destroy(pool);
}

/* Asked mid-step (layer 0 done, layer 1's keys stored, not yet attended),
 * the cache refuses and changes nothing: no layer demoted, and the budget
 * it had stays, so the rest of the step and the next ones follow it (the
 * engine, told no, keeps counting the old budget). Slot 1 has the same
 * tokens and is never asked: slot 0 must end with its counts. */
Test(elastic, refused_mid_step_changes_nothing) {
    kv_shape s = {.n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 64, .max_seqs = 2,
                  .max_ctx = 256, .n_threads = 1, .routed = 1};
    kv_policy p = pol("mikv,budget=0.5");
    kv_cache *c;
    char err[256];
    cr_assert_eq(kv_create(&s, &p, &c, err, sizeof err), 0, "%s", err);
    for (int q = 0; q < 2; q++) {
        cr_assert_eq(kv_seq_set_policy(c, q, &p, err, sizeof err), 0, "%s", err);
        feed(c, q, 0, 160, 7);
    }
    for (int pos = 160; pos < 170; pos++)
        for (int q = 0; q < 2; q++) {
            step_layer(c, q, 0, pos, 0, 100 + pos);
            step_layer(c, q, 1, pos, q == 0 && pos == 160, 200 + pos);
            if (q == 0 && pos == 160) {
                kv_usage mid;
                kv_seq_usage(c, 0, &mid);
                cr_expect_neq(kv_seq_set_budget(c, 0, 24), 0, "accepted with keys pending");
                kv_usage now;
                kv_seq_usage(c, 0, &now);
                cr_expect_eq(now.n_high, mid.n_high, "a refused call demoted");
                step_layer(c, q, 1, pos, 2, 200 + pos); /* layer 1's attend */
            }
        }
    kv_usage a, b;
    kv_seq_usage(c, 0, &a);
    kv_seq_usage(c, 1, &b);
    cr_expect_gt(b.n_high, 24);
    cr_expect_eq(a.n_high, b.n_high, "the refused budget was kept: %d vs %d high", a.n_high,
                 b.n_high);
    cr_expect_eq(a.bytes_stored, b.bytes_stored);
    kv_destroy(c);
}

Test(elastic, caches_that_never_demote_refuse) {
    kv_shape s = {.n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .head_dim = 32, .max_seqs = 1,
                  .max_ctx = 64, .n_threads = 1, .routed = 1};
    kv_policy p = pol("full");
    kv_cache *c;
    char err[256];
    cr_assert_eq(kv_create(&s, &p, &c, err, sizeof err), 0, "%s", err);
    feed(c, 0, 0, 40, 3);
    cr_expect_eq(kv_seq_set_budget(c, 0, 8), PV_EUNSUPPORTED);
    cr_expect_eq(kv_seq_set_budget(c, 5, 8), PV_EINVAL, "bad slot");
    kv_destroy(c);
}
