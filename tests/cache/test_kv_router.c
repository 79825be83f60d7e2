/* kv_router: slots with different policies give the same results as separate
 * caches; full goes to the plain FP16 cache bit for bit; a busy slot keeps
 * its policy; sub-caches are shared per policy and freed with their last
 * slot; all sub-caches draw on one pool. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_policy.h"
#include "kv_pool.h"
#include "kv_router.h"
#include "pverr.h"
#include "../test_rand.h"

static kv_shape shape(void) {
    return (kv_shape){.n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 32,
                      .max_seqs = 4, .max_ctx = 160, .n_threads = 2};
}

static kv_policy pol(const char *spec) {
    kv_policy p;
    char err[256];
    cr_assert_eq(kv_policy_parse(spec, &p, err, sizeof err), 0, "%s", err);
    return p;
}

/* Feeds n tokens (a prefill chunk of 40, then one at a time) to slot seq
 * and writes every attention output to out[n][n_heads*head_dim] per layer. */
static void run(kv_cache *c, int seq, int n, unsigned seed, float *out) {
    const kv_shape *s = kv_get_shape(c);
    int kvd = s->n_kv_heads * s->head_dim, qd = s->n_heads * s->head_dim;
    float *k = malloc(sizeof(float) * kvd * 40), *v = malloc(sizeof(float) * kvd * 40);
    float *q = malloc(sizeof(float) * qd * 40);
    for (int p = 0; p < n;) {
        int m = p == 0 ? 40 : 1;
        for (int l = 0; l < s->n_layers; l++) {
            for (int i = 0; i < m * kvd; i++) k[i] = frand(&seed), v[i] = frand(&seed);
            for (int i = 0; i < m * qd; i++) q[i] = frand(&seed);
            cr_assert_eq(kv_store(c, seq, l, p, m, k, v), 0);
            for (int h = 0; h < s->n_kv_heads; h++)
                cr_assert_eq(kv_attend_group(c, seq, l, h, p, m, q,
                                             out + ((size_t)l * n + p) * qd, h % 2), 0);
        }
        p += m;
    }
    free(k), free(v), free(q);
}

static kv_cache *plain(const kv_shape *s, const char *spec) {
    kv_policy p = pol(spec);
    kv_cache *c;
    char err[256];
    cr_assert_eq(kv_create(s, &p, &c, err, sizeof err), 0, "%s", err);
    return c;
}

Test(kv_router, slots_match_separate_caches) {
    kv_shape s = shape();
    kv_policy def = pol("full"), mikv = pol("mikv,budget=16,chunk=4"), sc = pol("scissorhands,budget=20");
    kv_cache *r;
    char err[256];
    cr_assert_eq(kv_create_router(&s, &def, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kv_seq_set_policy(r, 1, &mikv, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kv_seq_set_policy(r, 2, &sc, err, sizeof err), 0, "%s", err);
    int n = 70, qd = s.n_heads * s.head_dim;
    size_t sz = sizeof(float) * s.n_layers * n * qd;
    float *a = malloc(sz), *b = malloc(sz);
    const char *specs[] = {"full", "mikv,budget=16,chunk=4", "scissorhands,budget=20"};
    /* slot 0 has no policy: the default (full) */
    for (int slot = 0; slot < 3; slot++) {
        run(r, slot, n, 100 + slot, a);
        kv_cache *sep = plain(&s, specs[slot]);
        run(sep, slot, n, 100 + slot, b);
        cr_assert_eq(memcmp(a, b, sz), 0, "slot %d (%s) differs from a separate cache", slot,
                     specs[slot]);
        kv_usage ua, ub;
        kv_seq_usage(r, slot, &ua);
        kv_seq_usage(sep, slot, &ub);
        cr_assert_eq(ua.bytes_stored, ub.bytes_stored);
        cr_assert_eq(ua.n_high, ub.n_high);
        cr_assert_eq(ua.n_low, ub.n_low);
        cr_assert_eq(ua.n_dropped, ub.n_dropped);
        cr_assert_eq(kv_seq_pos(r, slot), n);
        kv_destroy(sep);
    }
    cr_assert_str_eq(kv_name(kv_router_slot_cache(r, 0)), "fp16", "full is the plain cache");
    cr_assert_eq(kv_router_n_caches(r), 3);
    free(a), free(b);
    kv_destroy(r);
}

Test(kv_router, busy_slot_refused_and_subcaches_shared_and_freed) {
    kv_shape s = shape();
    kv_policy def = pol("full"), m1 = pol("mikv,budget=16"), m2 = pol("mikv,budget=16,lo-bits=4");
    kv_policy m1b = m1;
    strcpy(m1b.preset, "other"); /* same knobs, other name: same cache */
    kv_cache *r;
    char err[256];
    cr_assert_eq(kv_create_router(&s, &def, &r, err, sizeof err), 0);
    cr_assert_eq(kv_router_n_caches(r), 0, "created lazily");
    cr_assert_eq(kv_seq_set_policy(r, 0, &m1, err, sizeof err), 0);
    cr_assert_eq(kv_seq_set_policy(r, 1, &m1b, err, sizeof err), 0);
    cr_assert_eq(kv_router_n_caches(r), 1, "equivalent policies share a cache");
    cr_assert_eq(kv_router_slot_cache(r, 0), kv_router_slot_cache(r, 1));
    cr_assert_eq(kv_seq_set_policy(r, 2, &m2, err, sizeof err), 0);
    cr_assert_eq(kv_router_n_caches(r), 2);
    float *out = malloc(sizeof(float) * s.n_layers * 41 * s.n_heads * s.head_dim);
    run(r, 0, 41, 7, out);
    /* busy slot keeps its policy */
    cr_assert_eq(kv_seq_set_policy(r, 0, &m2, err, sizeof err), PV_EINVAL);
    cr_assert(strstr(err, "holds tokens"), "%s", err);
    /* an idle slot may change its mind; the old cache stays while slot 0 uses it */
    cr_assert_eq(kv_seq_set_policy(r, 1, &m2, err, sizeof err), 0);
    cr_assert_eq(kv_router_n_caches(r), 2);
    /* the last slot of m1 is reset: its cache goes */
    kv_seq_reset(r, 0);
    cr_assert_eq(kv_router_n_caches(r), 1);
    cr_assert_eq(kv_seq_pos(r, 0), 0);
    kv_seq_reset(r, 1);
    kv_seq_reset(r, 2);
    cr_assert_eq(kv_router_n_caches(r), 0);
    /* invalid policies are refused with a reason, nothing created */
    kv_policy bad = pol("mikv");
    bad.group = 24; /* does not divide head_dim 32 */
    cr_assert_neq(kv_seq_set_policy(r, 0, &bad, err, sizeof err), 0);
    cr_assert(strstr(err, "group"), "%s", err);
    cr_assert_eq(kv_router_n_caches(r), 0);
    /* not a router */
    kv_cache *f = plain(&s, "full");
    cr_assert_eq(kv_seq_set_policy(f, 0, &m1, err, sizeof err), PV_EINVAL);
    kv_destroy(f);
    free(out);
    kv_destroy(r);
}

Test(kv_router, bounded_number_of_policies) {
    kv_shape s = shape();
    s.max_seqs = KV_ROUTER_MAX_POLICIES + 1;
    kv_policy def = pol("full");
    kv_cache *r;
    char err[256];
    cr_assert_eq(kv_create_router(&s, &def, &r, err, sizeof err), 0);
    for (int i = 0; i < KV_ROUTER_MAX_POLICIES; i++) {
        kv_policy p = pol("mikv");
        p.budget = 10 + i;
        cr_assert_eq(kv_seq_set_policy(r, i, &p, err, sizeof err), 0, "%s", err);
    }
    kv_policy p = pol("mikv");
    p.budget = 99;
    cr_assert_eq(kv_seq_set_policy(r, KV_ROUTER_MAX_POLICIES, &p, err, sizeof err), PV_ESPACE);
    kv_seq_reset(r, 0);
    cr_assert_eq(kv_seq_set_policy(r, KV_ROUTER_MAX_POLICIES, &p, err, sizeof err), 0, "%s", err);
    kv_destroy(r);
}

Test(kv_router, subcaches_share_the_pool) {
    kv_pool *pool;
    cr_assert_eq(kv_pool_create(0, &pool), 0);
    kv_shape s = shape();
    s.pool = pool;
    kv_policy def = pol("full"), m = pol("mikv,budget=16");
    kv_cache *r;
    char err[256];
    cr_assert_eq(kv_create_router(&s, &def, &r, err, sizeof err), 0);
    cr_assert_eq(kv_seq_set_policy(r, 1, &m, err, sizeof err), 0);
    float *out = malloc(sizeof(float) * s.n_layers * 60 * s.n_heads * s.head_dim);
    run(r, 0, 60, 1, out);
    run(r, 1, 60, 2, out);
    size_t sum = 0;
    for (int i = 0; i < s.max_seqs; i++) {
        kv_usage u;
        kv_seq_usage(r, i, &u);
        sum += u.bytes_stored;
    }
    cr_assert_eq(kv_pool_used(pool), sum);
    kv_seq_reset(r, 0);
    kv_seq_reset(r, 1);
    cr_assert_eq(kv_pool_used(pool), 0);
    free(out);
    kv_destroy(r);
    kv_pool_destroy(pool);
}

/* Idle sub-caches are kept for reuse but never block a new policy: one slot
 * cycling through more policies than the router has entries always gets
 * one, and only the slot's current cache counts as in use. */
Test(kv_router, idle_subcaches_are_reclaimed) {
    kv_shape s = shape();
    kv_policy def = pol("full");
    kv_cache *r;
    char err[256];
    cr_assert_eq(kv_create_router(&s, &def, &r, err, sizeof err), 0);
    for (int i = 0; i < 3 * KV_ROUTER_MAX_POLICIES; i++) {
        char spec[64];
        snprintf(spec, sizeof spec, "mikv,budget=%d", 8 + i);
        kv_policy p = pol(spec);
        cr_assert_eq(kv_seq_set_policy(r, 0, &p, err, sizeof err), 0, "policy %d: %s", i, err);
        cr_assert_eq(kv_router_n_caches(r), 1);
    }
    kv_seq_reset(r, 0);
    cr_assert_eq(kv_router_n_caches(r), 0);
    kv_destroy(r);
}
