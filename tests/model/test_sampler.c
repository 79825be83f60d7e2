/* Tests for smp (sampler.h): RNG, parameters, greedy, determinism and the
 * sampling distributions (penalties: test_sampler_penalties.c).
 *
 * Statistical tests use fixed seeds, so each is deterministic; the bounds are
 * still set from the distributions (chi-square critical values at p = 1e-3
 * or below) so that a correct sampler passes for any seed and a biased one
 * fails. Expected probabilities are computed here in double precision,
 * independently of the sampler's float code. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pverr.h"
#include "sampler.h"

/* Chi-square critical values at p = 0.001 for df = 1..9. */
static const double CHI2_999[10] = {0, 10.83, 13.82, 16.27, 18.47,
                                    20.52, 22.46, 24.32, 26.12, 27.88};

static smp_sampler *make(const smp_params *p, int n_vocab) {
    smp_sampler *s = NULL;
    cr_assert_eq(smp_create(p, n_vocab, &s), PV_OK);
    cr_assert_not_null(s);
    return s;
}

/* softmax(logits / t) over the ids in keep (NULL: all), 0 elsewhere. */
static void ref_probs(const float *logits, int n, double t, const int *keep,
                      double *out) {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++)
        if ((!keep || keep[i]) && logits[i] > mx)
            mx = logits[i];
    for (int i = 0; i < n; i++) {
        out[i] = (!keep || keep[i]) ? exp((logits[i] - mx) / t) : 0.0;
        sum += out[i];
    }
    for (int i = 0; i < n; i++)
        out[i] /= sum;
}

/* Draws `draws` tokens with fresh copies of logits (sampling modifies them
 * in place) and counts them. */
static void histogram(smp_sampler *s, const float *logits, int n, int draws,
                      long *counts) {
    float *buf = malloc((size_t)n * sizeof *buf);
    cr_assert_not_null(buf);
    memset(counts, 0, (size_t)n * sizeof *counts);
    for (int d = 0; d < draws; d++) {
        memcpy(buf, logits, (size_t)n * sizeof *buf);
        int32_t t = smp_sample(s, buf);
        cr_assert(t >= 0 && t < n, "token %d out of range", t);
        counts[t]++;
    }
    free(buf);
}

/* Pearson chi-square of counts against probs; every token with expected 0
 * must have count 0. Returns the statistic and the degrees of freedom. */
static double chi2(const long *counts, const double *probs, int n, int draws,
                   int *df) {
    double x = 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (probs[i] == 0.0) {
            cr_assert_eq(counts[i], 0, "token %d has p=0 but was drawn %ld times",
                         i, counts[i]);
            continue;
        }
        double e = probs[i] * draws;
        x += (counts[i] - e) * (counts[i] - e) / e;
        k++;
    }
    *df = k - 1;
    return x;
}

/* ---- RNG ---- */

Test(sampler, rng_matches_pcg32_reference_vector) {
    /* Published output of the PCG reference demo (pcg32_srandom(42, 54)). */
    const uint32_t want[6] = {0xa15c02b7u, 0x7b47f409u, 0xba1d3330u,
                              0x83d2f293u, 0xbfa4784bu, 0xcbed606eu};
    smp_rng r;
    smp_rng_seed(&r, 42);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(smp_rng_u32(&r), want[i], "output %d", i);
}

Test(sampler, rng_uniform_mean_and_bins) {
    smp_rng r;
    smp_rng_seed(&r, 12345);
    enum { N = 200000, B = 10 };
    long bins[B] = {0};
    double sum = 0;
    for (int i = 0; i < N; i++) {
        double u = smp_rng_uniform(&r);
        cr_assert(u >= 0.0 && u < 1.0, "u=%f outside [0,1)", u);
        sum += u;
        bins[(int)(u * B)]++;
    }
    /* sd of the mean = sqrt(1/12)/sqrt(N) = 6.5e-4; allow 5 sd. */
    cr_assert(fabs(sum / N - 0.5) < 3.3e-3, "mean %f", sum / N);
    double p[B];
    for (int i = 0; i < B; i++)
        p[i] = 1.0 / B;
    int df;
    double x = chi2(bins, p, B, N, &df);
    cr_assert(x < CHI2_999[df], "chi2 %f df %d", x, df);
}

Test(sampler, rng_seeds_differ_and_repeat) {
    smp_rng a, b, c;
    smp_rng_seed(&a, 7);
    smp_rng_seed(&b, 7);
    smp_rng_seed(&c, 8);
    int same_ab = 0, same_ac = 0;
    for (int i = 0; i < 100; i++) {
        uint32_t x = smp_rng_u32(&a), y = smp_rng_u32(&b), z = smp_rng_u32(&c);
        same_ab += x == y;
        same_ac += x == z;
    }
    cr_assert_eq(same_ab, 100);
    cr_assert_lt(same_ac, 3); /* chance match per draw is 2^-32 */
}

/* ---- parameters ---- */

Test(sampler, defaults_match_header) {
    smp_params p = smp_default_params();
    cr_assert_eq(p.temperature, 1.0f);
    cr_assert_eq(p.top_k, 0);
    cr_assert_eq(p.top_p, 1.0f);
    cr_assert_eq(p.min_p, 0.0f);
    cr_assert_eq(p.repetition_penalty, 1.0f);
    cr_assert_eq(p.presence_penalty, 0.0f);
    cr_assert_eq(p.frequency_penalty, 0.0f);
    cr_assert_eq(p.penalty_last_n, 64);
    cr_assert_eq(p.seed, 0);
}

Test(sampler, create_rejects_bad_params) {
    smp_sampler *s = (smp_sampler *)0x1;
    smp_params p = smp_default_params();
    cr_assert_eq(smp_create(&p, 0, &s), PV_EINVAL);
    cr_assert_null(s);
    cr_assert_eq(smp_create(NULL, 10, &s), PV_EINVAL);
    p.temperature = NAN;
    cr_assert_eq(smp_create(&p, 10, &s), PV_EINVAL);
    p = smp_default_params();
    p.repetition_penalty = 0.0f;
    cr_assert_eq(smp_create(&p, 10, &s), PV_EINVAL);
    p = smp_default_params();
    p.top_p = -0.5f;
    cr_assert_eq(smp_create(&p, 10, &s), PV_EINVAL);
    p = smp_default_params();
    p.min_p = 1.5f;
    cr_assert_eq(smp_create(&p, 10, &s), PV_EINVAL);
    p = smp_default_params();
    p.penalty_last_n = -1; /* "all": valid */
    cr_assert_eq(smp_create(&p, 10, &s), PV_OK);
    smp_free(s);
}

/* ---- greedy ---- */

Test(sampler, greedy_picks_argmax_lowest_id_on_ties) {
    smp_params p = smp_default_params();
    p.temperature = 0.0f;
    smp_sampler *s = make(&p, 6);
    float a[6] = {0.1f, -3.0f, 2.5f, 2.4f, -INFINITY, 1.0f};
    cr_assert_eq(smp_sample(s, a), 2);
    float b[6] = {1.0f, 4.0f, 0.0f, 4.0f, 4.0f, 3.9f};
    cr_assert_eq(smp_sample(s, b), 1);
    float c[6] = {-5.0f, -2.0f, -7.0f, -2.0f, -9.0f, -2.5f};
    cr_assert_eq(smp_sample(s, c), 1);
    smp_free(s);
    p.temperature = -1.0f; /* negative is greedy too */
    s = make(&p, 6);
    float d[6] = {0, 0, 0, 0, 0, 0.5f};
    cr_assert_eq(smp_sample(s, d), 5);
    smp_free(s);
}

/* ---- determinism ---- */

Test(sampler, same_seed_same_sequence_different_seed_differs) {
    enum { V = 50, N = 200 };
    float logits[V];
    for (int i = 0; i < V; i++)
        logits[i] = (float)((i * 37) % 11) * 0.3f; /* fairly flat */
    smp_params p = smp_default_params();
    p.seed = 99;
    smp_sampler *a = make(&p, V), *b = make(&p, V);
    p.seed = 100;
    smp_sampler *c = make(&p, V);
    int32_t sa[N], sb[N], sc[N];
    float buf[V];
    for (int i = 0; i < N; i++) {
        memcpy(buf, logits, sizeof buf);
        sa[i] = smp_sample(a, buf);
        memcpy(buf, logits, sizeof buf);
        sb[i] = smp_sample(b, buf);
        memcpy(buf, logits, sizeof buf);
        sc[i] = smp_sample(c, buf);
    }
    cr_assert_arr_eq(sa, sb, sizeof sa);
    int same = 0;
    for (int i = 0; i < N; i++)
        same += sa[i] == sc[i];
    /* Max token prob here is < 0.1, so by chance ~ N*0.05 matches at most. */
    cr_assert_lt(same, N / 4, "seeds 99 and 100 agree on %d of %d", same, N);
    smp_free(a);
    smp_free(b);
    smp_free(c);
}

/* ---- plain sampling frequencies ---- */

Test(sampler, frequencies_match_softmax_with_temperature) {
    enum { V = 6, N = 20000 };
    const float logits[V] = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 0.0f};
    const float temps[3] = {1.0f, 0.7f, 2.0f};
    for (int ti = 0; ti < 3; ti++) {
        smp_params p = smp_default_params();
        p.temperature = temps[ti];
        p.seed = 1000 + (uint64_t)ti;
        smp_sampler *s = make(&p, V);
        long counts[V];
        double probs[V];
        histogram(s, logits, V, N, counts);
        ref_probs(logits, V, temps[ti], NULL, probs);
        int df;
        double x = chi2(counts, probs, V, N, &df);
        cr_assert(x < CHI2_999[df], "T=%.1f chi2 %f df %d", temps[ti], x, df);
        smp_free(s);
    }
}

/* ---- top-k ---- */

Test(sampler, top_k_1_equals_greedy) {
    enum { V = 1000 };
    smp_params g = smp_default_params(), k = smp_default_params();
    g.temperature = 0.0f;
    k.top_k = 1;
    k.temperature = 1.5f;
    smp_sampler *sg = make(&g, V), *sk = make(&k, V);
    smp_rng r;
    smp_rng_seed(&r, 5);
    float a[V], b[V];
    for (int trial = 0; trial < 50; trial++) {
        for (int i = 0; i < V; i++)
            a[i] = (float)(smp_rng_uniform(&r) * 4.0 - 2.0);
        memcpy(b, a, sizeof a);
        cr_assert_eq(smp_sample(sk, b), smp_sample(sg, a));
    }
    smp_free(sg);
    smp_free(sk);
}

Test(sampler, top_k_2_stays_in_top_2_with_right_ratio) {
    enum { V = 8, N = 20000 };
    const float logits[V] = {0.5f, 1.9f, -1.0f, 2.0f, 1.5f, 0.0f, 1.8f, -3.0f};
    smp_params p = smp_default_params();
    p.top_k = 2;
    p.seed = 3;
    smp_sampler *s = make(&p, V);
    long counts[V];
    histogram(s, logits, V, N, counts);
    const int keep[V] = {0, 1, 0, 1, 0, 0, 0, 0};
    double probs[V];
    ref_probs(logits, V, 1.0, keep, probs);
    int df;
    double x = chi2(counts, probs, V, N, &df); /* also asserts 0 outside */
    cr_assert(x < CHI2_999[df], "chi2 %f", x);
    smp_free(s);
}

Test(sampler, top_k_large_vocab_matches_full_sort) {
    /* 49152-token vocabulary as in SmolLM2; the kept set must be exactly the
     * 40 largest, which we get here from a brute-force count of how many
     * logits beat each one. */
    enum { V = 49152, K = 40, N = 400 };
    float *logits = malloc(V * sizeof *logits), *buf = malloc(V * sizeof *buf);
    cr_assert(logits && buf);
    smp_rng r;
    smp_rng_seed(&r, 77);
    for (int i = 0; i < V; i++)
        logits[i] = (float)(smp_rng_uniform(&r) * 10.0);
    /* The K-th largest value, found by a plain selection pass. */
    float *tmp = malloc(V * sizeof *tmp);
    cr_assert_not_null(tmp);
    memcpy(tmp, logits, V * sizeof *tmp);
    float kth = 0;
    for (int j = 0; j < K; j++) {
        int bi = 0;
        for (int i = 1; i < V; i++)
            if (tmp[i] > tmp[bi])
                bi = i;
        kth = tmp[bi];
        tmp[bi] = -INFINITY;
    }
    free(tmp);
    smp_params p = smp_default_params();
    p.top_k = K;
    p.temperature = 5.0f; /* flat, so many of the K get drawn */
    smp_sampler *s = make(&p, V);
    int distinct_seen = 0;
    char seen[V] = {0};
    for (int d = 0; d < N; d++) {
        memcpy(buf, logits, V * sizeof *buf);
        int32_t t = smp_sample(s, buf);
        cr_assert(t >= 0 && t < V);
        cr_assert(logits[t] >= kth, "token %d (logit %f) outside top %d (cut %f)",
                  t, logits[t], K, kth);
        if (!seen[t]++)
            distinct_seen++;
    }
    /* With T=5 over a spread of ~0.2 the 40 are near-uniform: ~all appear. */
    cr_assert_gt(distinct_seen, 30, "only %d distinct tokens", distinct_seen);
    smp_free(s);
    free(logits);
    free(buf);
}

/* ---- top-p ---- */

Test(sampler, top_p_keeps_smallest_nucleus) {
    /* Probabilities 0.05, 0.5, 0.15, 0.3 (ids shuffled so sorting matters):
     * sorted cumulative 0.5, 0.8, 0.95, 1.0. */
    enum { V = 4, N = 20000 };
    const double pr[V] = {0.05, 0.5, 0.15, 0.3};
    float logits[V];
    for (int i = 0; i < V; i++)
        logits[i] = (float)log(pr[i]);
    struct {
        float top_p;
        int keep[V];
    } cases[] = {
        {0.4f, {0, 1, 0, 0}},  /* 0.5 >= 0.4 already */
        {0.75f, {0, 1, 0, 1}}, /* needs 0.8 */
        {0.9f, {0, 1, 1, 1}},  /* needs 0.95 */
        {0.0f, {0, 1, 0, 0}},  /* at least one token */
    };
    for (unsigned c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        smp_params p = smp_default_params();
        p.top_p = cases[c].top_p;
        p.seed = 40 + c;
        smp_sampler *s = make(&p, V);
        long counts[V];
        double probs[V];
        histogram(s, logits, V, N, counts);
        ref_probs(logits, V, 1.0, cases[c].keep, probs);
        int df;
        double x = chi2(counts, probs, V, N, &df);
        if (df > 0)
            cr_assert(x < CHI2_999[df], "top_p %.2f chi2 %f", cases[c].top_p, x);
        else
            cr_assert_eq(counts[1], N);
        smp_free(s);
    }
}

/* ---- min-p ---- */

Test(sampler, min_p_drops_below_fraction_of_max) {
    /* Probabilities 0.1, 0.4, 0.2, 0.3: p_max 0.4. */
    enum { V = 4, N = 20000 };
    const double pr[V] = {0.1, 0.4, 0.2, 0.3};
    float logits[V];
    for (int i = 0; i < V; i++)
        logits[i] = (float)log(pr[i]);
    struct {
        float min_p;
        int keep[V];
    } cases[] = {
        {0.2f, {1, 1, 1, 1}}, /* cut 0.08 */
        {0.3f, {0, 1, 1, 1}}, /* cut 0.12 drops 0.1 */
        {0.6f, {0, 1, 0, 1}}, /* cut 0.24 drops 0.2 */
        {1.0f, {0, 1, 0, 0}}, /* only the max */
    };
    for (unsigned c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        smp_params p = smp_default_params();
        p.min_p = cases[c].min_p;
        p.seed = 60 + c;
        smp_sampler *s = make(&p, V);
        long counts[V];
        double probs[V];
        histogram(s, logits, V, N, counts);
        ref_probs(logits, V, 1.0, cases[c].keep, probs);
        int df;
        double x = chi2(counts, probs, V, N, &df);
        if (df > 0)
            cr_assert(x < CHI2_999[df], "min_p %.2f chi2 %f", cases[c].min_p, x);
        else
            cr_assert_eq(counts[1], N);
        smp_free(s);
    }
}

Test(sampler, top_k_top_p_min_p_chain) {
    /* top_k=4 keeps ids 0..3 of probs .3 .25 .2 .1 (.15 spread over the
     * tail); renormalized .353 .294 .235 .118; top_p 0.6 keeps {0,1};
     * min_p 0.9 then drops id 1 (.294/.353 = .83 < .9). */
    enum { V = 10, N = 2000 };
    float logits[V] = {
        logf(0.3f), logf(0.25f), logf(0.2f), logf(0.1f), logf(0.05f),
        logf(0.04f), logf(0.03f), logf(0.01f), logf(0.01f), logf(0.01f)};
    smp_params p = smp_default_params();
    p.top_k = 4;
    p.top_p = 0.6f;
    smp_sampler *s = make(&p, V);
    long counts[V];
    histogram(s, logits, V, N, counts);
    cr_assert_eq(counts[0] + counts[1], N);
    cr_assert(counts[0] > 0 && counts[1] > 0);
    smp_free(s);
    p.min_p = 0.9f;
    s = make(&p, V);
    histogram(s, logits, V, N, counts);
    cr_assert_eq(counts[0], N);
    smp_free(s);
}

Test(sampler, top_k_ties_keep_lowest_ids) {
    /* Three tokens tie for the top; top_k = 2 must keep the two lowest ids
     * so the result does not depend on the selection algorithm. */
    enum { V = 6, N = 4000 };
    const float logits[V] = {1.0f, 5.0f, 0.0f, 5.0f, 5.0f, 2.0f};
    smp_params p = smp_default_params();
    p.top_k = 2;
    smp_sampler *s = make(&p, V);
    long counts[V];
    histogram(s, logits, V, N, counts);
    cr_assert_eq(counts[1] + counts[3], N, "drew outside ids {1,3}");
    /* Equal logits: each ~N/2; sd = sqrt(N)/2 = 32, allow 5 sd. */
    cr_assert(labs(counts[1] - N / 2) < 160, "count %ld", counts[1]);
    smp_free(s);
}

Test(sampler, top_p_large_vocab_peaked_and_flat) {
    /* V > the sampler's pre-selection size, so both of its top-p paths run:
     * a peaked distribution (nucleus among the best few) and a flat one
     * (nucleus of 500 tokens: the full sort). */
    enum { V = 2000, N = 20000 };
    static float logits[V];
    static long counts[V];
    static double probs[V];
    static int keep[V];
    /* 0.5, 0.3, 0.15 on scattered ids; 0.05 spread over the other 1997. */
    const int hot[3] = {1777, 5, 900};
    const double hp[3] = {0.5, 0.3, 0.15};
    for (int i = 0; i < V; i++)
        logits[i] = (float)log(0.05 / (V - 3));
    for (int j = 0; j < 3; j++)
        logits[hot[j]] = (float)log(hp[j]);
    const float tops[2] = {0.75f, 0.9f};
    for (int c = 0; c < 2; c++) {
        smp_params p = smp_default_params();
        p.top_p = tops[c];
        p.seed = 500 + (uint64_t)c;
        smp_sampler *s = make(&p, V);
        histogram(s, logits, V, N, counts);
        memset(keep, 0, sizeof keep);
        for (int j = 0; j < 2 + c; j++)
            keep[hot[j]] = 1;
        ref_probs(logits, V, 1.0, keep, probs);
        int df;
        double x = chi2(counts, probs, V, N, &df);
        cr_assert(x < CHI2_999[df], "top_p %.2f chi2 %f", tops[c], x);
        smp_free(s);
    }

    for (int i = 0; i < V; i++)
        logits[i] = 0.25f;
    smp_params p = smp_default_params();
    p.top_p = 0.5f;
    p.seed = 9;
    smp_sampler *s = make(&p, V);
    enum { N3 = 4000 }; /* each draw sorts 2000 entries: keep this cheap */
    histogram(s, logits, V, N3, counts);
    long inside = 0;
    int distinct = 0;
    for (int i = 0; i < V; i++) {
        if (i < V / 2) {
            inside += counts[i];
            distinct += counts[i] > 0;
        }
    }
    /* Ties keep the lowest ids: exactly ids 0..999, each ~4 draws, so
     * P(never drawn) = e^-4 and ~982 +- 4 ids are seen. */
    cr_assert_eq(inside, N3, "%ld draws outside ids 0..999", N3 - inside);
    cr_assert_gt(distinct, 950, "only %d of 1000 ids drawn", distinct);
    smp_free(s);

    /* V = 8192 flat with top_p 0.25: a nucleus of 2048, past the first
     * pre-selection guess and within the second. */
    enum { V2 = 8192 };
    static float flat[V2];
    static long c2[V2];
    for (int i = 0; i < V2; i++)
        flat[i] = -1.0f;
    p.top_p = 0.25f;
    s = make(&p, V2);
    enum { N2 = 4000 }; /* each draw pre-selects 4096: keep this cheap */
    histogram(s, flat, V2, N2, c2);
    inside = 0;
    distinct = 0;
    for (int i = 0; i < V2 / 4; i++) {
        inside += c2[i];
        distinct += c2[i] > 0;
    }
    /* ~1.95 draws per id: P(never drawn) = 0.142, so ~1757 +- 16 ids seen;
     * a sampler stuck on fewer ids (e.g. the 256 of the first guess) fails. */
    cr_assert_eq(inside, N2, "%ld draws outside ids 0..2047", N2 - inside);
    cr_assert_gt(distinct, 1650, "only %d of 2048 ids drawn", distinct);
    smp_free(s);
}
