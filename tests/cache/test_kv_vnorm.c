/* value-norm (kv_policy.h): accumulated attention weighted by the value's
 * L2 norm. The scores the mixed cache reports against the same data without
 * the knob times each value's norm from the float input (a float64
 * reference), and the tokens kept against a float64 ranking, with eviction
 * and with a low tier, rotated or not. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_policy.h"
#include "kv_mixed_util.h" /* make() */

enum { HD = 64, NH = 2, N = 96 };
static const kv_shape shape = {.n_layers = 1, .n_heads = NH, .n_kv_heads = 1, .head_dim = HD,
                               .max_seqs = 1, .max_ctx = 256, .n_threads = 1};

/* The prompt in one call: store k, v and attend q (NH query heads). */
static void prompt(kv_cache *c, const float *k, const float *v, const float *q) {
    float *o = malloc(sizeof(float) * N * NH * HD);
    cr_assert_eq(kv_store(c, 0, 0, 0, N, k, v), 0);
    cr_assert_eq(kv_attend_group(c, 0, 0, 0, 0, N, q, o, 0), 0);
    free(o);
}

static double norm(const float *v) {
    double s = 0;
    for (int d = 0; d < HD; d++) s += (double)v[d] * v[d];
    return sqrt(s);
}

/* Nothing demoted (budget above the length), random queries: every score
 * with value-norm is the plain accumulated score times ||v||. */
Test(kv_vnorm, scores_are_accumulated_attention_times_the_value_norm) {
    unsigned seed = 20261207;
    float *k = malloc(sizeof(float) * N * HD), *v = malloc(sizeof(float) * N * HD);
    float *q = malloc(sizeof(float) * N * NH * HD);
    for (int i = 0; i < N * HD; i++) k[i] = 2 * frand(&seed), v[i] = frand(&seed) * (1 + i / HD % 7);
    for (int i = 0; i < N * NH * HD; i++) q[i] = frand(&seed);
    const char *spec[2] = {"h2o,budget=200", "h2o,budget=200,value-norm=1"};
    float sc[2][N];
    uint8_t t[N];
    for (int w = 0; w < 2; w++) {
        kv_cache *c = make(&shape, spec[w]);
        prompt(c, k, v, q);
        cr_assert_eq(kv_seq_tiers(c, 0, 0, 0, t, sc[w], N), N);
        kv_destroy(c);
    }
    for (int p = 0; p < N; p++) {
        cr_assert_eq(t[p], KV_TIER_HIGH);
        double want = sc[0][p] * norm(v + (size_t)p * HD); /* fp16 storage: 1e-3 */
        cr_assert(sc[0][p] < 0 && fabs(sc[1][p] - want) <= 1e-3 * fabs(want), "pos %d: %g vs %g",
                  p, sc[1][p], want);
    }
    free(k), free(v), free(q);
}

/* Zero queries attend uniformly, so accumulated attention alone keeps the
 * oldest tokens; 32 tokens with values 50x larger than the rest outrank
 * them under value-norm. The kept set is the float64 reference's top 32 of
 * mean attention x norm (sinks and recent tokens 0: every token competes). */
static void kept_set(const char *base, int vnorm) {
    unsigned seed = 7;
    float *k = malloc(sizeof(float) * N * HD), *v = malloc(sizeof(float) * N * HD);
    float *q = calloc((size_t)N * NH * HD, sizeof(float));
    int big[N] = {0};
    for (int n = 0; n < 32;) { /* 32 distinct positions, none among the oldest 32 */
        int p = 32 + irand(&seed, N - 32);
        if (!big[p]) big[p] = 1, n++;
    }
    for (int p = 0; p < N; p++)
        for (int d = 0; d < HD; d++) {
            k[p * HD + d] = 2 * frand(&seed);
            v[p * HD + d] = (1.5f + frand(&seed)) * (big[p] ? 50.0f : 1.0f);
        }
    double imp[N]; /* the reference: mean of 1/(i+1) over the queries i >= p that saw p */
    for (int p = 0; p < N; p++) {
        double s = 0;
        for (int i = p; i < N; i++) s += 1.0 / (i + 1);
        imp[p] = s / (N - p) * (vnorm ? norm(v + (size_t)p * HD) : 1.0);
    }
    char spec[160];
    snprintf(spec, sizeof spec, "%s,budget=32,recent=0,sinks=0,chunk=1,value-norm=%d", base, vnorm);
    kv_cache *c = make(&shape, spec);
    prompt(c, k, v, q);
    uint8_t t[N];
    cr_assert_eq(kv_seq_tiers(c, 0, 0, 0, t, NULL, N), N);
    int nhigh = 0;
    for (int p = 0; p < N; p++) {
        int above = 0; /* tokens the reference ranks higher */
        for (int j = 0; j < N; j++) above += imp[j] > imp[p];
        cr_assert_eq(t[p] == KV_TIER_HIGH, above < 32, "%s: pos %d (%s) is %s", spec, p,
                     big[p] ? "large value" : "small value", t[p] == KV_TIER_HIGH ? "high" : "not high");
        if (t[p] != KV_TIER_HIGH) /* eviction drops, MiKV keeps it low */
            cr_assert_eq(t[p], strstr(base, "h2o") ? KV_TIER_DROPPED : KV_TIER_LOW);
        nhigh += t[p] == KV_TIER_HIGH;
        if (vnorm) cr_assert_eq(t[p] == KV_TIER_HIGH, big[p]); /* the knob changed the choice */
        else cr_assert_eq(t[p] == KV_TIER_HIGH, p < 32);
    }
    cr_assert_eq(nhigh, 32);
    kv_destroy(c);
    free(k), free(v), free(q);
}

Test(kv_vnorm, the_large_values_stay_with_eviction) {
    kept_set("h2o", 0);
    kept_set("h2o", 1);
}

Test(kv_vnorm, the_large_values_stay_high_over_a_low_tier) {
    kept_set("mikv,hi-bits=16,heads=0,select=accumulated", 0);
    kept_set("mikv,hi-bits=16,heads=0,select=accumulated", 1);
    kept_set("mikv,heads=0", 1); /* INT8 high tier, rotated: the L2 norm is unchanged */
}

/* Only accumulated attention is weighted: with another selection the knob
 * changes nothing (so the mikv preset's survives select=persistence) and
 * the description leaves it out. */
Test(kv_vnorm, only_accumulated_selection_is_weighted) {
    kv_policy p;
    char err[256] = "", d[KV_POLICY_DESC_MAX];
    cr_assert_eq(kv_policy_parse("h2o,value-norm=1", &p, err, sizeof err), 0, "%s", err);
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(strstr(d, ",value-norm=1)"), "%s", d);
    cr_assert_eq(kv_policy_parse("mikv,select=persistence", &p, err, sizeof err), 0, "%s", err);
    cr_assert(p.value_norm && !kv_policy_value_norm(&p));
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(!strstr(d, "value-norm"), "%s", d);
    cr_assert_neq(kv_policy_parse("mikv,value-norm=2", &p, err, sizeof err), 0);
    cr_assert(strstr(err, "value-norm must be 1 or 0"), "%s", err);
    unsigned seed = 99;
    float *k = malloc(sizeof(float) * N * HD), *v = malloc(sizeof(float) * N * HD);
    float *q = malloc(sizeof(float) * N * NH * HD);
    for (int i = 0; i < N * HD; i++) k[i] = 2 * frand(&seed), v[i] = 3 * frand(&seed);
    for (int i = 0; i < N * NH * HD; i++) q[i] = frand(&seed);
    const char *spec[2] = {"scissorhands,budget=40,value-norm=0", "scissorhands,budget=40,value-norm=1"};
    float sc[2][N];
    uint8_t t[2][N];
    for (int w = 0; w < 2; w++) {
        kv_cache *c = make(&shape, spec[w]);
        prompt(c, k, v, q);
        cr_assert_eq(kv_seq_tiers(c, 0, 0, 0, t[w], sc[w], N), N);
        kv_destroy(c);
    }
    cr_assert_eq(memcmp(t[0], t[1], N), 0);
    for (int i = 0; i < N; i++) cr_assert(t[0][i] != KV_TIER_HIGH || sc[0][i] == sc[1][i], "pos %d", i);
    free(k), free(v), free(q);
}
