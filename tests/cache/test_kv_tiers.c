/* kv_seq_tiers, the cache's introspection for the server's KV map: for the
 * plain FP16 cache, the mixed cache and the router, the tiers it reports per
 * (layer, KV head) add up to kv_seq_usage's own counts, positions are never
 * reported twice, and bad calls are errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "kv.h"
#include "kv_policy.h"
#include "kv_router.h"
#include "pverr.h"
#include "../test_rand.h"

static const kv_shape shape = {.n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 64,
                               .max_seqs = 2, .max_ctx = 256, .n_threads = 1};

static kv_cache *make(const char *spec, int routed) {
    kv_policy p;
    char err[256] = "";
    kv_cache *c = NULL;
    kv_shape s = shape;
    s.routed = routed;
    cr_assert_eq(kv_policy_parse(spec, &p, err, sizeof err), 0, "%s: %s", spec, err);
    cr_assert_eq(kv_create(&s, &p, &c, err, sizeof err), 0, "%s: %s", spec, err);
    return c;
}

/* A prompt of n0 tokens in one chunk, then `gen` decode steps, random data. */
static void run(kv_cache *c, int seq, int n0, int gen, unsigned seed) {
    int hd = shape.head_dim, nkv = shape.n_kv_heads, nh = shape.n_heads, total = n0 + gen;
    float *k = malloc(sizeof(float) * total * nkv * hd), *v = malloc(sizeof(float) * total * nkv * hd);
    float *q = malloc(sizeof(float) * total * nh * hd), *o = malloc(sizeof(float) * total * nh * hd);
    for (int i = 0; i < total * nkv * hd; i++) k[i] = 2 * frand(&seed), v[i] = frand(&seed);
    for (int i = 0; i < total * nh * hd; i++) q[i] = 2 * frand(&seed);
    for (int p = 0; p < total;) {
        int n = p == 0 ? n0 : 1;
        for (int l = 0; l < shape.n_layers; l++) {
            cr_assert_eq(kv_store(c, seq, l, p, n, k + (size_t)p * nkv * hd, v + (size_t)p * nkv * hd), 0);
            for (int h = 0; h < nkv; h++)
                cr_assert_eq(kv_attend_group(c, seq, l, h, p, n, q + (size_t)p * nh * hd,
                                             o + (size_t)p * nh * hd, 0), 0);
        }
        p += n;
    }
    free(k), free(v), free(q), free(o);
}

/* Every (layer, head) reports the usage's counts, and scores only where the
 * token is high. */
static void check_counts(kv_cache *c, int seq, int want_scores) {
    kv_usage u;
    kv_seq_usage(c, seq, &u);
    int n = u.n_tokens + 3; /* a few positions past the end: NONE */
    uint8_t *t = malloc(n);
    float *sc = malloc(sizeof(float) * n);
    for (int l = 0; l < shape.n_layers; l++)
        for (int h = 0; h < shape.n_kv_heads; h++) {
            int cnt[4] = {0}, scored = 0;
            cr_assert_eq(kv_seq_tiers(c, seq, l, h, t, sc, n), u.n_tokens);
            for (int p = 0; p < n; p++) {
                cr_assert(t[p] <= KV_TIER_DROPPED);
                cnt[t[p]]++;
                if (!isnan(sc[p])) {
                    cr_assert_eq(t[p], KV_TIER_HIGH, "a score on a token that is not high");
                    scored++;
                }
            }
            cr_assert_eq(cnt[KV_TIER_NONE], 3);
            cr_assert_eq(cnt[KV_TIER_HIGH], u.n_high, "layer %d head %d: %d high, usage %d", l, h,
                         cnt[KV_TIER_HIGH], u.n_high);
            cr_assert_eq(cnt[KV_TIER_LOW], u.n_low);
            cr_assert_eq(cnt[KV_TIER_DROPPED], u.n_dropped);
            if (want_scores) cr_assert_gt(scored, 0);
            else cr_assert_eq(scored, 0);
        }
    /* a shorter buffer: only n positions written, the length still returned */
    cr_assert_eq(kv_seq_tiers(c, seq, 0, 0, t, NULL, 2), u.n_tokens);
    free(t);
    free(sc);
}

Test(kv_tiers, fp16_has_every_token_high) {
    kv_cache *c = make("full", 0);
    run(c, 1, 40, 10, 3);
    kv_usage u;
    kv_seq_usage(c, 1, &u);
    cr_assert_eq(u.n_high, 50);
    check_counts(c, 1, 0);
    kv_destroy(c);
}

Test(kv_tiers, mixed_counts_match_usage_for_each_preset) {
    const char *specs[] = {"mikv,budget=0.25", "scissorhands,budget=0.3", "h2o,budget=0.3",
                           "streaming,window=32,sinks=4", "quant4"};
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        kv_cache *c = make(specs[i], 0);
        run(c, 0, 150, 30, 11 + (unsigned)i);
        kv_usage u;
        kv_seq_usage(c, 0, &u);
        cr_assert_eq(u.n_high + u.n_low + u.n_dropped, u.n_tokens, "%s", specs[i]);
        int demoting = u.n_low + u.n_dropped > 0;
        if (i < 2) cr_assert(demoting, "%s demoted nothing", specs[i]);
        /* the trackers score high tokens; the recent rule (streaming) and
         * a cache that never demotes keep no state */
        int tracked = i < 3;
        check_counts(c, 0, tracked);
        kv_destroy(c);
    }
}

Test(kv_tiers, mikv_has_both_tiers_and_the_router_forwards) {
    kv_cache *c = make("full", 1);
    kv_policy p;
    char err[256];
    cr_assert_eq(kv_policy_parse("mikv,budget=0.25", &p, err, sizeof err), 0);
    cr_assert_eq(kv_seq_set_policy(c, 1, &p, err, sizeof err), 0, "%s", err);
    uint8_t t[8];
    cr_assert_eq(kv_seq_tiers(c, 1, 0, 0, t, NULL, 8), 0); /* nothing stored yet */
    cr_assert_eq(t[0], KV_TIER_NONE);
    run(c, 1, 120, 20, 5);
    run(c, 0, 30, 5, 6); /* slot 0 on the default (full) policy */
    kv_usage u;
    kv_seq_usage(c, 1, &u);
    cr_assert_gt(u.n_high, 0);
    cr_assert_gt(u.n_low, 0);
    cr_assert_eq(u.n_dropped, 0); /* mikv keeps the evicted, small */
    check_counts(c, 1, 1);
    check_counts(c, 0, 0);
    kv_destroy(c);
}

Test(kv_tiers, bad_calls_are_errors) {
    kv_cache *c = make("mikv", 0);
    uint8_t t[4];
    cr_assert_eq(kv_seq_tiers(c, 2, 0, 0, t, NULL, 4), PV_EINVAL);
    cr_assert_eq(kv_seq_tiers(c, 0, 2, 0, t, NULL, 4), PV_EINVAL);
    cr_assert_eq(kv_seq_tiers(c, 0, 0, 2, t, NULL, 4), PV_EINVAL);
    cr_assert_eq(kv_seq_tiers(c, 0, 0, 0, NULL, NULL, 4), PV_EINVAL);
    cr_assert_eq(kv_seq_tiers(c, 0, 0, 0, t, NULL, -1), PV_EINVAL);
    cr_assert_eq(kv_seq_tiers(NULL, 0, 0, 0, t, NULL, 4), PV_EINVAL);
    cr_assert_eq(kv_seq_tiers(c, 0, 0, 0, NULL, NULL, 0), 0);
    kv_destroy(c);
}
