/* kv_tier (the tier rule) against the CPU mixed cache's actual tier counts
 * over random call sizes for every compressing preset, and the rule's own
 * invariants (resting counts, the admission bound). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_mixed.h"
#include "kv_policy.h"
#include "kv_tier.h"
#include "pverr.h"
#include "../test_rand.h"

/* Every head of every layer of `seq` holds n_high / n_low / n_dropped. */
static void expect_counts(const kv_cache *c, const kv_shape *sh, int seq, int hi, int lo, int dr,
                          const char *spec, int call) {
    for (int l = 0; l < sh->n_layers; l++)
        for (int h = 0; h < sh->n_kv_heads; h++) {
            kv_mixed_head info;
            cr_assert_eq(kv_mixed_head_info(c, seq, l, h, &info), 0);
            cr_assert_eq(info.n_high, hi, "%s call %d: high %d, rule says %d", spec, call,
                         info.n_high, hi);
            cr_assert_eq(info.n_low, lo, "%s call %d: low %d, rule says %d", spec, call,
                         info.n_low, lo);
            cr_assert_eq(info.n_dropped, dr, "%s call %d: dropped %d, rule says %d", spec, call,
                         info.n_dropped, dr);
        }
}

/* Random call sizes (prompt chunks, decode steps, mixed) on one sequence:
 * after each call the cache's counts are what kv_tier_demote predicts from
 * the counts before it. Returns the tokens demoted in all. */
static int run_policy(const char *spec, unsigned seed) {
    kv_shape sh = {.n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 32, .max_seqs = 1,
                   .max_ctx = 700, .n_threads = 1};
    kv_policy p;
    char err[256];
    cr_assert_eq(kv_policy_parse(spec, &p, err, sizeof err), 0, "%s: %s", spec, err);
    kv_cache *c = NULL;
    cr_assert_eq(kv_create(&sh, &p, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kv_get_policy(c, &p), 0); /* group fitted to head_dim */
    const int kvd = sh.n_kv_heads * sh.head_dim, qd = sh.n_heads * sh.head_dim, maxn = 48;
    float *k = malloc(sizeof(float) * maxn * kvd), *v = malloc(sizeof(float) * maxn * kvd);
    float *q = malloc(sizeof(float) * maxn * qd), *o = malloc(sizeof(float) * maxn * qd);
    int hi = 0, lo = 0, dr = 0, demoted = 0;
    for (int call = 0;; call++) {
        int len = kv_seq_pos(c, 0);
        int n = irand(&seed, 3) == 0 ? 1 + irand(&seed, maxn) : 1 + irand(&seed, 3);
        if (len + n > sh.max_ctx) break;
        for (int i = 0; i < n * kvd; i++) k[i] = 2 * frand(&seed), v[i] = frand(&seed);
        for (int i = 0; i < n * qd; i++) q[i] = 2 * frand(&seed);
        for (int l = 0; l < sh.n_layers; l++) {
            cr_assert_eq(kv_store(c, 0, l, len, n, k, v), 0);
            for (int h = 0; h < sh.n_kv_heads; h++)
                cr_assert_eq(kv_attend_group(c, 0, l, h, len, n, q, o, 0), 0);
        }
        int d = kv_tier_demote(&p, len + n, hi + n);
        hi += n - d;
        if (p.lo_bits) lo += d;
        else dr += d;
        demoted += d;
        expect_counts(c, &sh, 0, hi, lo, dr, spec, call);
        /* at rest: the rule demotes nothing more, within its bounds */
        cr_assert_eq(kv_tier_demote(&p, len + n, hi), 0, "%s call %d", spec, call);
        cr_assert(hi <= kv_tier_max_high(&p, len + n), "%s call %d", spec, call);
        cr_assert(hi >= kv_tier_protected(&p, len + n), "%s call %d", spec, call);
        kv_usage u;
        kv_seq_usage(c, 0, &u);
        cr_assert(u.bytes_stored <= kv_policy_seq_bytes(&p, &sh, len + n), "%s call %d", spec,
                  call);
    }
    free(k), free(v), free(q), free(o);
    kv_destroy(c);
    return demoted;
}

static const char *compressing[] = {"scissorhands", "mikv", "h2o", "streaming", "quant4",
                                    "quant2", "mikv,budget=30,chunk=1",
                                    "h2o,lo-bits=4,budget=0.5,chunk=8",
                                    "scissorhands,window=6,budget=0.2,sinks=0,recent=3",
                                    "streaming,budget=0,recent=5,sinks=2"};
#define N_COMPRESSING (sizeof compressing / sizeof compressing[0])

Test(kv_tier, predicts_cpu_cache_counts_for_every_compressing_preset) {
    for (size_t i = 0; i < N_COMPRESSING; i++)
        for (unsigned s = 0; s < 2; s++) {
            int d = run_policy(compressing[i], 11u + 7u * (unsigned)i + s);
            cr_assert(d > 0, "%s: nothing was demoted, the test checks little", compressing[i]);
        }
}

Test(kv_tier, max_high_is_the_largest_resting_count) {
    for (size_t i = 0; i < N_COMPRESSING; i++) {
        kv_policy p;
        cr_assert_eq(kv_policy_parse(compressing[i], &p, NULL, 0), 0);
        for (int len = 0; len <= 2000; len += 1 + len / 16) {
            int m = kv_tier_max_high(&p, len);
            cr_assert(m >= 0 && m <= len);
            cr_assert_eq(kv_tier_demote(&p, len, m), 0, "%s len %d", compressing[i], len);
            if (m < len)
                cr_assert(kv_tier_demote(&p, len, m + 1) > 0, "%s len %d", compressing[i], len);
            /* a demotion never reaches into the protected tokens */
            int prot = kv_tier_protected(&p, len);
            cr_assert(kv_tier_demote(&p, len, len) <= len - prot);
        }
    }
}

Test(kv_tier, plain_policy_never_demotes) {
    kv_policy p;
    cr_assert_eq(kv_policy_preset("full", &p), 0);
    cr_assert_eq(kv_tier_budget(&p, 1000), -1);
    cr_assert_eq(kv_tier_demote(&p, 1000, 1000), 0);
    cr_assert_eq(kv_tier_max_high(&p, 1000), 1000);
}

Test(kv_tier, chunk_and_protection) {
    kv_policy p;
    cr_assert_eq(kv_policy_parse("streaming,budget=10,chunk=4,sinks=2,recent=3", &p, NULL, 0), 0);
    cr_assert_eq(kv_tier_budget(&p, 100), 10);
    cr_assert_eq(kv_tier_demote(&p, 100, 10), 0);
    cr_assert_eq(kv_tier_demote(&p, 100, 11), 4); /* 11 -> b + 1 - chunk = 7 */
    cr_assert_eq(kv_tier_demote(&p, 100, 30), 23);
    cr_assert_eq(kv_tier_protected(&p, 100), 5);
    cr_assert_eq(kv_tier_protected(&p, 4), 4);
    /* only 6 unprotected tokens among 11: clipped */
    cr_assert_eq(kv_policy_parse("streaming,budget=5,chunk=5,sinks=2,recent=3", &p, NULL, 0), 0);
    cr_assert_eq(kv_tier_demote(&p, 11, 11), 6);
}

/* The per-position predicate the demotions apply (CPU and GPU) marks exactly
 * the tokens kv_tier_protected counts, sinks and recent window overlapping or
 * not, and always the first sinks and the last recent positions. */
Test(kv_tier, protected_positions_are_the_counted_ones) {
    kv_policy p;
    cr_assert_eq(kv_policy_preset("streaming", &p), 0);
    const int sinks[] = {0, 1, 4, 9}, recents[] = {0, 1, 16, 40};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            for (int len = 1; len <= 70; len++) {
                p.sinks = sinks[i];
                p.recent = recents[j];
                int n = 0;
                for (int pos = 0; pos < len; pos++) {
                    int prot = kv_tier_pos_protected(p.sinks, p.recent, len, pos);
                    if (pos < p.sinks || pos >= len - p.recent)
                        cr_assert(prot, "sinks %d recent %d len %d pos %d", p.sinks, p.recent, len, pos);
                    n += prot;
                }
                cr_assert_eq(n, kv_tier_protected(&p, len), "sinks %d recent %d len %d", p.sinks,
                             p.recent, len);
            }
}
