/* Tests for smp (sampler.h): repetition, presence and frequency penalties,
 * checked on the logits the sampler modifies in place, and their effect on
 * the choice (distributions: test_sampler.c). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pverr.h"
#include "sampler.h"

static smp_sampler *make(const smp_params *p, int n_vocab) {
    smp_sampler *s = NULL;
    cr_assert_eq(smp_create(p, n_vocab, &s), PV_OK);
    cr_assert_not_null(s);
    return s;
}

/* ---- penalties (checked on the logits, modified in place) ---- */

static void penalized(const smp_params *p, const int32_t *hist, int nh,
                      const float *in, float *out, int V) {
    smp_params q = *p;
    q.temperature = 0.0f; /* greedy: the call only applies penalties */
    smp_sampler *s = make(&q, V);
    for (int i = 0; i < nh; i++)
        smp_accept(s, hist[i]);
    memcpy(out, in, (size_t)V * sizeof *out);
    smp_sample(s, out);
    smp_free(s);
}

#define EXPECT_LOGITS(got, want, V)                                        \
    for (int i_ = 0; i_ < (V); i_++)                                       \
        cr_assert_float_eq((got)[i_], (want)[i_], 1e-6, "logit %d: %f vs %f", \
                           i_, (double)(got)[i_], (double)(want)[i_])

Test(sampler, repetition_penalty_once_per_distinct_token) {
    enum { V = 5 };
    const float in[V] = {2.0f, -2.0f, 1.0f, 0.5f, 0.0f};
    const int32_t hist[] = {0, 1, 0, 0, 4};
    smp_params p = smp_default_params();
    p.repetition_penalty = 2.0f;
    float out[V];
    penalized(&p, hist, 5, in, out, V);
    /* token 0 seen 3x but divided once; negative multiplied; 0 stays 0. */
    const float want[V] = {1.0f, -4.0f, 1.0f, 0.5f, 0.0f};
    EXPECT_LOGITS(out, want, V);
}

Test(sampler, presence_and_frequency_penalties) {
    enum { V = 4 };
    const float in[V] = {2.0f, -2.0f, 1.0f, 0.5f};
    const int32_t hist[] = {0, 1, 0, 2, 0};
    smp_params p = smp_default_params();
    p.presence_penalty = 0.5f;
    float out[V];
    penalized(&p, hist, 5, in, out, V);
    const float want_pres[V] = {1.5f, -2.5f, 0.5f, 0.5f};
    EXPECT_LOGITS(out, want_pres, V);

    p = smp_default_params();
    p.frequency_penalty = 0.25f;
    penalized(&p, hist, 5, in, out, V);
    const float want_freq[V] = {2.0f - 0.75f, -2.25f, 0.75f, 0.5f};
    EXPECT_LOGITS(out, want_freq, V);

    /* All three: repetition first, then presence, then frequency. */
    p.repetition_penalty = 1.25f;
    p.presence_penalty = 0.5f;
    penalized(&p, hist, 5, in, out, V);
    const float want_all[V] = {2.0f / 1.25f - 0.5f - 0.75f,
                               -2.0f * 1.25f - 0.5f - 0.25f,
                               1.0f / 1.25f - 0.5f - 0.25f, 0.5f};
    EXPECT_LOGITS(out, want_all, V);
}

Test(sampler, penalty_window_and_reset) {
    enum { V = 4 };
    const float in[V] = {1.0f, 1.0f, 1.0f, 1.0f};
    smp_params p = smp_default_params();
    p.frequency_penalty = 1.0f;
    p.penalty_last_n = 3;
    /* Window keeps the last 3 of {0,0,1,2,2}: {1,2,2}. */
    const int32_t hist[] = {0, 0, 1, 2, 2};
    float out[V];
    penalized(&p, hist, 5, in, out, V);
    const float want[V] = {1.0f, 0.0f, -1.0f, 1.0f};
    EXPECT_LOGITS(out, want, V);

    p.penalty_last_n = 0; /* all */
    penalized(&p, hist, 5, in, out, V);
    const float want_all[V] = {-1.0f, 0.0f, -1.0f, 1.0f};
    EXPECT_LOGITS(out, want_all, V);

    /* Reset forgets the history; invalid ids are ignored. */
    smp_sampler *s = make(&p, V);
    for (int i = 0; i < 5; i++)
        smp_accept(s, hist[i]);
    smp_accept(s, -1);
    smp_accept(s, V);
    smp_reset(s);
    smp_accept(s, 3);
    float buf[V];
    memcpy(buf, in, sizeof buf);
    (void)smp_sample(s, buf); /* temperature 1 still applies penalties */
    const float want_reset[V] = {1.0f, 1.0f, 1.0f, 0.0f};
    EXPECT_LOGITS(buf, want_reset, V);
    smp_free(s);
}

Test(sampler, penalty_changes_greedy_choice) {
    enum { V = 3 };
    smp_params p = smp_default_params();
    p.temperature = 0.0f;
    p.repetition_penalty = 1.5f;
    smp_sampler *s = make(&p, V);
    float a[V] = {3.0f, 2.5f, 0.0f};
    cr_assert_eq(smp_sample(s, a), 0);
    smp_accept(s, 0);
    float b[V] = {3.0f, 2.5f, 0.0f}; /* 3/1.5 = 2 < 2.5 */
    cr_assert_eq(smp_sample(s, b), 1);
    smp_free(s);
}

/* logit_bias: added before the penalties, copied at creation, checked. */
Test(sampler, logit_bias_adds_bans_and_forces) {
    enum { V = 4 };
    smp_params p = smp_default_params();
    p.temperature = 0.0f;
    int32_t ids[2] = {0, 2};
    float bias[2] = {-100.0f, 1.0f};
    p.bias_ids = ids;
    p.bias = bias;
    p.n_bias = 2;
    smp_sampler *s = make(&p, V);
    ids[0] = 3; /* the sampler holds its own copy */
    float a[V] = {3.0f, 2.5f, 2.0f, -INFINITY};
    cr_assert_eq(smp_sample(s, a), 2, "0 banned, 2 lifted to 3.0 > 2.5");
    cr_expect_float_eq(a[0], -97.0f, 1e-4);
    cr_expect(isinf(a[3]) && a[3] < 0, "-INFINITY (a grammar's mask) stays");
    smp_free(s);
    ids[0] = 1;
    bias[0] = 100.0f;
    s = make(&p, V);
    float b[V] = {3.0f, -5.0f, 2.0f, 0.0f};
    cr_assert_eq(smp_sample(s, b), 1, "forced");
    smp_free(s);
    ids[0] = V; /* outside the vocabulary */
    cr_expect_eq(smp_create(&p, V, &s), PV_EINVAL);
    ids[0] = 1;
    bias[0] = NAN;
    cr_expect_eq(smp_create(&p, V, &s), PV_EINVAL);
}
