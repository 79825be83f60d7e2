/* kv_probe: attention against a float64 reference on random inputs, the
 * induction score against the same reference (a head built to copy scores
 * near 1, a random one near chance), sums across probes, refusals. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_internal.h"
#include "kv_probe.h"
#include "pverr.h"
#include "../test_rand.h"

enum { NL = 2, NKV = 2, NH = 4, HD = 16, FIRST = 1, LEN = 20, N = FIRST + 2 * LEN };

/* Keys, values, queries of one layer; in KV head 0 the query at t is a
 * large multiple of the key at t - LEN + 1 (a copying head) for the second
 * copy, everything else random. */
typedef struct {
    float k[N][NKV * HD], v[N][NKV * HD], q[N][NH * HD];
} layer_data;

static void make(layer_data *d, unsigned seed, int copying) {
    for (int t = 0; t < N; t++) {
        for (int i = 0; i < NKV * HD; i++) d->k[t][i] = frand(&seed), d->v[t][i] = frand(&seed);
        for (int i = 0; i < NH * HD; i++) d->q[t][i] = frand(&seed);
    }
    for (int t = FIRST + LEN; copying && t < N - 1; t++)
        for (int g = 0; g < NH / NKV; g++) /* query heads 0, 1 read KV head 0 */
            for (int x = 0; x < HD; x++) d->q[t][g * HD + x] = 12.0f * d->k[t - LEN + 1][x];
}

/* float64 attention of query head h at t; *pt: probability at target */
static void ref_row(const layer_data *d, int h, int t, int target, double *o, double *pt) {
    int kv = h / (NH / NKV);
    double s[N], mx = -INFINITY, z = 0;
    for (int j = 0; j <= t; j++) {
        s[j] = 0;
        for (int x = 0; x < HD; x++) s[j] += (double)d->q[t][h * HD + x] * d->k[j][kv * HD + x];
        s[j] /= sqrt((double)HD);
        if (s[j] > mx) mx = s[j];
    }
    for (int j = 0; j <= t; j++) z += (s[j] = exp(s[j] - mx));
    for (int x = 0; x < HD; x++) {
        o[x] = 0;
        for (int j = 0; j <= t; j++) o[x] += s[j] / z * d->v[j][kv * HD + x];
    }
    *pt = target >= 0 ? s[target] / z : 0;
}

Test(kv_probe, attention_and_induction_scores_match_float64) {
    kv_shape s = {.n_layers = NL, .n_heads = NH, .n_kv_heads = NKV, .head_dim = HD, .max_seqs = 1,
                  .max_ctx = N, .n_threads = 2};
    kv_cache *c = NULL;
    cr_assert_eq(kv_create_probe(&s, FIRST, LEN, &c), 0);
    static layer_data d[2][NL];
    double want[NL * NKV] = {0};
    long per = 0;
    for (int probe = 0; probe < 2; probe++) { /* two probes: the scores average both */
        kv_seq_reset(c, 0);
        for (int l = 0; l < NL; l++) make(&d[probe][l], 100u * probe + 7u * l + 1u, l == 1);
        int chunks[] = {FIRST + LEN + 3, 1, N - FIRST - LEN - 4}; /* a prompt, then decode */
        for (int ci = 0, p = 0; ci < 3; p += chunks[ci++])
            for (int l = 0; l < NL; l++) {
                const layer_data *D = &d[probe][l];
                cr_assert_eq(kv_store(c, 0, l, p, chunks[ci], D->k[p], D->v[p]), 0);
                static float out[N][NH * HD];
                for (int h = 0; h < NKV; h++)
                    cr_assert_eq(kv_attend_group(c, 0, l, h, p, chunks[ci], D->q[p], out[0], h), 0);
                for (int i = 0; i < chunks[ci]; i++)
                    for (int qh = 0; qh < NH; qh++) {
                        int t = p + i, probed = t >= FIRST + LEN && t < N - 1;
                        double o[HD], pt;
                        ref_row(D, qh, t, probed ? t - LEN + 1 : -1, o, &pt);
                        for (int x = 0; x < HD; x++)
                            cr_assert(fabs(out[i][qh * HD + x] - o[x]) < 1e-5, "attention off at t %d", t);
                        want[l * NKV + qh / (NH / NKV)] += pt;
                        if (probed && l == 0 && qh == 0) per++;
                    }
            }
    }
    double got[NL * NKV];
    cr_assert_eq(kv_probe_scores(c, got), per);
    cr_assert_eq(per, 2 * (LEN - 1));
    for (int i = 0; i < NL * NKV; i++) {
        double w = want[i] / (2.0 * per); /* two query heads per KV head */
        cr_assert(fabs(got[i] - w) < 1e-9, "head %d: %g, want %g", i, got[i], w);
    }
    cr_assert_gt(got[1 * NKV + 0], 0.9, "the copying head scores %g", got[NKV]);
    cr_assert_lt(got[0], 0.3, "a random head scores %g", got[0]);
    kv_destroy(c);
}

Test(kv_probe, refuses_what_it_cannot_probe) {
    kv_shape s = {.n_layers = NL, .n_heads = NH, .n_kv_heads = NKV, .head_dim = HD, .max_seqs = 1,
                  .max_ctx = N, .n_threads = 1};
    kv_cache *c = NULL;
    cr_assert_eq(kv_create_probe(&s, FIRST, LEN + 1, &c), PV_EINVAL); /* two copies do not fit */
    cr_assert_eq(kv_create_probe(&s, FIRST, 1, &c), PV_EINVAL);
    s.max_seqs = 2;
    cr_assert_eq(kv_create_probe(&s, FIRST, LEN, &c), PV_EINVAL); /* one slot only */
    cr_assert_null(c);
    s.max_seqs = 1;
    cr_assert_eq(kv_create_probe(&s, FIRST, LEN, &c), 0);
    float k[NKV * HD] = {0}, v[NKV * HD] = {0};
    cr_assert_eq(kv_store(c, 0, 0, 1, 1, k, v), PV_EINVAL); /* not contiguous */
    double sc[NL * NKV];
    cr_assert_eq(kv_probe_scores(c, sc), 0); /* nothing probed yet */
    kv_destroy(c);
    kv_cache *plain = NULL;
    cr_assert_eq(kv_create_fp16(&s, &plain), 0);
    cr_assert_eq(kv_probe_scores(plain, sc), PV_EINVAL);
    kv_destroy(plain);
}
