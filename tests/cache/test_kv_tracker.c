/* Tracker behaviour on hand-made attention patterns, and GQA aggregation
 * against a float64 hand computation. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_mixed.h"
#include "kv_policy.h"
#include "kv_tracker.h"
#include "quant.h"
#include "../test_rand.h"

enum { HD = 8 };

static kv_cache *make(const kv_shape *s, const char *spec) {
    kv_policy p;
    char err[256];
    kv_cache *c = NULL;
    cr_assert_eq(kv_policy_parse(spec, &p, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kv_create(s, &p, &c, err, sizeof err), 0, "%s", err);
    return c;
}

static int in_high(kv_cache *c, int pos) {
    kv_mixed_head h;
    kv_mixed_head_info(c, 0, 0, 0, &h);
    for (int t = 0; t < h.n_high; t++) {
        kv_mixed_tok tk = {0};
        kv_mixed_token(c, 0, 0, 0, 0, t, &tk);
        if (tk.pos == pos) return 1;
    }
    return 0;
}

/* Token IGN's key points away from every query (attention ~0); the other
 * keys are small noise (attention ~uniform). Tokens are fed `chunk` at a
 * time; budget 12, sinks 2, recent 3, one token demoted per event. */
#define IGN 6
static void pattern_run(const char *spec, int chunk, int *first_demoted) {
    enum { N = 30 };
    kv_shape s = {.n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .head_dim = HD, .max_seqs = 1,
                  .max_ctx = N, .n_threads = 1};
    kv_cache *c = make(&s, spec);
    float K[N * HD], V[N * HD], Q[N * 2 * HD], O[N * 2 * HD];
    unsigned r = 5;
    for (int i = 0; i < N * HD; i++) K[i] = 0.05f * frand(&r), V[i] = frand(&r);
    for (int i = 0; i < N * 2 * HD; i++) Q[i] = i % HD == 0 ? 4.0f : 0.0f;
    K[IGN * HD] = -8.0f;
    *first_demoted = -1;
    for (int p = 0; p < N; p += chunk) {
        int n = p + chunk > N ? N - p : chunk;
        cr_assert_eq(kv_store(c, 0, 0, p, n, K + p * HD, V + p * HD), 0);
        cr_assert_eq(kv_attend_group(c, 0, 0, 0, p, n, Q + p * 2 * HD, O + p * 2 * HD, 0), 0);
        kv_mixed_head h;
        kv_mixed_head_info(c, 0, 0, 0, &h);
        int len = p + n;
        cr_assert(h.n_high <= 12, "%s: high tier %d over budget 12", spec, h.n_high);
        for (int q = 0; q < len; q++)
            if (q < 2 || q >= len - 3) cr_assert(in_high(c, q), "%s: protected %d demoted", spec, q);
        /* The first demotion event: one token when fed one at a time (chunk
         * 1 slides the tier), more when a prefill chunk overshoots; report
         * IGN if it is among them, else the first demoted. */
        if (*first_demoted < 0 && h.n_low + h.n_dropped > 0) {
            if (chunk == 1) cr_assert_eq(h.n_low + h.n_dropped, 1, "%s", spec);
            for (int q = len - 1; q >= 0; q--)
                if (!in_high(c, q) && *first_demoted != IGN) *first_demoted = q;
        }
    }
    kv_destroy(c);
}

Test(kv_tracker, never_attended_token_goes_first) {
    const char *specs[] = {"scissorhands,budget=12,sinks=2,recent=3,chunk=1,group=8",
                           "mikv,budget=12,sinks=2,recent=3,chunk=1,group=8",
                           "h2o,budget=12,sinks=2,recent=3,chunk=1,group=8"};
    int chunks[] = {1, 5, 13};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            int first;
            pattern_run(specs[i], chunks[j], &first);
            /* with a 13-token prefill chunk the first event demotes 1 too */
            cr_assert_eq(first, IGN, "%s chunk %d: first demoted %d", specs[i], chunks[j], first);
        }
    /* The recent policy has no scores: the oldest unprotected token goes. */
    int first;
    pattern_run("streaming,budget=12,sinks=2,recent=3,chunk=1,group=8", 1, &first);
    cr_assert_eq(first, 2);
}

Test(kv_tracker, pick_orders_by_score_then_age) {
    int cand[] = {4, 7, 9, 11, 12};
    float score[] = {1, 3, 3, 0, 2};
    int32_t pos[] = {40, 90, 70, 110, 120};
    int out[5];
    char scratch[5 * 16];
    cr_assert_eq(kvt_pick(cand, score, pos, 5, 3, out, scratch), 3);
    /* 9 (score 3, older) and 7 (score 3) then 12 (score 2); slot order */
    cr_assert_eq(out[0], 7);
    cr_assert_eq(out[1], 9);
    cr_assert_eq(out[2], 12);
    cr_assert_eq(kvt_pick(cand, score, pos, 5, 9, out, scratch), 5);
}

/* kvt_pick selects (heapify, k pops) instead of sorting the whole tier: for
 * every k it must choose exactly the first k of the full order (score
 * descending, then position ascending), ties included. The reference here
 * is a selection by counting: candidate i is chosen iff fewer than k others
 * come before it. */
Test(kv_tracker, pick_equals_the_full_order_for_every_k) {
    enum { N = 61 };
    int cand[N], out[N];
    float score[N];
    int32_t pos[N];
    static char scratch[N * 16];
    srand(7);
    for (int i = 0; i < N; i++) {
        cand[i] = 3 * i + 1;                      /* slots ascending, as kvmx_demote lists them */
        score[i] = (float)(rand() % 9) * 0.25f; /* many ties */
        pos[i] = (int32_t)((i * 37) % N) + 5;   /* unique, not in slot order */
    }
    for (int k = 1; k <= N; k++) {
        cr_assert_eq(kvt_pick(cand, score, pos, N, k, out, scratch), k);
        int want[N], nw = 0;
        for (int i = 0; i < N; i++) {
            int ahead = 0;
            for (int j = 0; j < N; j++)
                ahead += score[j] > score[i] || (score[j] == score[i] && pos[j] < pos[i]);
            if (ahead < k) want[nw++] = cand[i];
        }
        cr_assert_eq(nw, k);
        for (int i = 0; i < k; i++) cr_assert_eq(out[i], want[i], "k=%d: slot %d is %d, want %d", k, i, out[i], want[i]);
    }
}

static float h16(float x) { return kq_fp16_to_fp32(kq_fp32_to_fp16(x)); }

/* Three query heads share one KV head. The cache must count, per token, the
 * steps where the *mean* over the heads of its probability was below
 * 1/n_visible (persistence), and the mean probability per query that saw it
 * (accumulated). The data is chosen so that max-aggregation or per-head
 * counting would give different numbers. */
Test(kv_tracker, gqa_aggregation_matches_hand_computation) {
    enum { N = 40, GQ = 3, PRE = 15 };
    kv_shape s = {.n_layers = 1, .n_heads = GQ, .n_kv_heads = 1, .head_dim = HD, .max_seqs = 1,
                  .max_ctx = N, .n_threads = 1};
    float K[N * HD], V[N * HD], Q[N * GQ * HD], O[N * GQ * HD];
    unsigned r = 77;
    for (int i = 0; i < N * HD; i++) K[i] = 1.5f * frand(&r), V[i] = frand(&r);
    for (int i = 0; i < N * GQ * HD; i++) Q[i] = 1.5f * frand(&r);
    /* float64 reference over fp16-rounded keys, as the FP16 tier holds them */
    static double pm[N][N]; /* [query][token] mean probability */
    int cnt_mean[N] = {0}, cnt_max[N] = {0}, cnt_heads[N] = {0};
    double acc[N] = {0};
    int ambiguous = 0;
    for (int i = 0; i < N; i++) {
        double pmax[N] = {0};
        memset(pm[i], 0, sizeof pm[i]);
        for (int g = 0; g < GQ; g++) {
            double sc[N], mx = -1e300, sum = 0;
            for (int t = 0; t <= i; t++) {
                sc[t] = 0;
                for (int d = 0; d < HD; d++) sc[t] += (double)Q[(i * GQ + g) * HD + d] * h16(K[t * HD + d]);
                sc[t] /= sqrt(HD);
                mx = fmax(mx, sc[t]);
            }
            for (int t = 0; t <= i; t++) sum += (sc[t] = exp(sc[t] - mx));
            for (int t = 0; t <= i; t++) {
                double p = sc[t] / sum;
                pm[i][t] += p / GQ;
                pmax[t] = fmax(pmax[t], p);
                cnt_heads[t] += p < 1.0 / (i + 1);
            }
        }
        for (int t = 0; t <= i; t++) {
            double thr = 1.0 / (i + 1);
            if (i > 0 && fabs(pm[i][t] - thr) < 1e-5 * thr) ambiguous++; /* i = 0: p = 1 exactly */
            cnt_mean[t] += pm[i][t] < thr;
            cnt_max[t] += pmax[t] < thr;
            acc[t] += pm[i][t];
        }
    }
    cr_assert_eq(ambiguous, 0, "test data too close to the threshold");
    int differ_max = 0, differ_heads = 0;
    for (int t = 0; t < N; t++) {
        differ_max += cnt_max[t] != cnt_mean[t];
        differ_heads += cnt_heads[t] != cnt_mean[t];
    }
    cr_assert(differ_max > 0 && differ_heads > 0, "data does not tell aggregations apart");

    const char *specs[] = {"scissorhands,budget=1000,window=1000,group=8", "h2o,budget=1000,group=8"};
    for (int k = 0; k < 2; k++) {
        kv_cache *c = make(&s, specs[k]);
        for (int p = 0; p < N; p = p ? p + 1 : PRE) { /* prefill 15, then decode */
            int n = p ? 1 : PRE;
            cr_assert_eq(kv_store(c, 0, 0, p, n, K + p * HD, V + p * HD), 0);
            cr_assert_eq(kv_attend_group(c, 0, 0, 0, p, n, Q + p * GQ * HD, O + p * GQ * HD, 0), 0);
        }
        for (int t = 0; t < N; t++) {
            kv_mixed_tok tk = {0};
            cr_assert_eq(kv_mixed_token(c, 0, 0, 0, 0, t, &tk), 0);
            cr_assert_eq(tk.pos, t);
            if (k == 0) {
                cr_assert_eq((int)tk.score, cnt_mean[t], "token %d: %g low steps, want %d", t,
                             tk.score, cnt_mean[t]);
            } else {
                double want = -acc[t] / (N - t);
                cr_assert(fabs(tk.score - want) <= 1e-5 * fabs(want) + 1e-7,
                          "token %d: %g want %g", t, tk.score, want);
            }
        }
        kv_destroy(c);
    }
}

/* kvt_persist_block (a block of queries' persistence counts at once) against
 * kvt_observe / kvt_rotate called query by query: random masks, rotations
 * inside the block, and counters near their ceiling. */
Test(kv_tracker, persistence_block_equals_query_by_query) {
    unsigned r = 3;
    for (int trial = 0; trial < 5000; trial++) {
        r = r * 1103515245u + 12345u;
        const int nq = 1 + (int)(r >> 16) % 32;
        r = r * 1103515245u + 12345u;
        uint32_t low = r, rot = 0;
        r = r * 1103515245u + 12345u;
        if (trial % 3 == 0) rot = r & (r >> 7) & (r << 5); /* sparse */
        if (nq < 32) low &= (1u << nq) - 1, rot &= (1u << nq) - 1;
        kvt_persist s0 = {.cur = (uint16_t)(trial % 4 == 0 ? UINT16_MAX - (trial % 40) : (r >> 20) % 1000),
                          .prev = (uint16_t)(trial % 977)};
        uint8_t a[sizeof s0], b[sizeof s0];
        memcpy(a, &s0, sizeof s0);
        memcpy(b, &s0, sizeof s0);
        for (int qi = 0; qi < nq; qi++) {
            kvt_observe(KV_SELECT_PERSISTENCE, a, (low >> qi & 1u) ? 0.0f : 1.0f, 0.5f);
            if (rot >> qi & 1u) kvt_rotate(KV_SELECT_PERSISTENCE, a);
        }
        kvt_persist_block(b, low, rot, nq);
        cr_assert(memcmp(a, b, sizeof a) == 0, "trial %d nq %d low %x rot %x", trial, nq, low, rot);
    }
}
