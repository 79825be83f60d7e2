/* The block kernel's helpers against scalar references: kvb_low_masks (the
 * tracker's per-token comparisons for a block of queries) must set exactly
 * the bits the scalar loop of kv_mixed_attend.c would, for every query-head
 * group size and row padding. */
#include <criterion/criterion.h>
#include <string.h>

#include "kv_mixed_blk.h"
#include "../test_rand.h"

/* Uniform in [0, 1): the shared draw, shifted (exactly: every step is a
 * power-of-two scaling or an exact sum). */
static float urand(unsigned *s) { return 0.5f * (frand(s) + 1.0f); }

Test(kv_mixed_blk, low_mask_matches_scalar_loop) {
    if (kvb_kind(64) != KVB_AVX512) cr_skip_test("no AVX-512 block kernel here");
    unsigned r = 9;
    int checked = 0;
    for (int gq = 1; gq <= 8; gq++)
        for (int rp = 16; rp <= 32; rp += 16)
            for (int trial = 0; trial < 300; trial++) {
                const int maxq = rp / gq;
                if (maxq < 1) continue;
                const int nq = 1 + trial % maxq, t = trial % 50;
                float row[32], thr[32];
                int nhv[32];
                for (int i = 0; i < 32; i++) row[i] = i < rp ? urand(&r) * (trial % 2 ? 0.02f : 1.0f) : 1e9f;
                for (int qi = 0; qi < nq; qi++) {
                    nhv[qi] = (int)(urand(&r) * 100);
                    /* some thresholds exactly at a mean: the strict < decides */
                    float agg = 0.0f;
                    for (int g = 0; g < gq; g++) agg += row[qi * gq + g];
                    thr[qi] = qi % 4 == 0 ? agg / (float)gq : urand(&r) * 0.02f;
                }
                uint32_t want = 0;
                for (int qi = 0; qi < nq; qi++) {
                    float agg = 0.0f;
                    for (int g = 0; g < gq; g++) agg += row[qi * gq + g];
                    if (t < nhv[qi] && agg / (float)gq < thr[qi]) want |= 1u << qi;
                }
                uint32_t got;
                kvb_low_masks(row, t, 1, rp, nq, gq, thr, nhv, &got);
                cr_assert_eq(got, want, "gq %d rp %d nq %d t %d: %x vs %x", gq, rp, nq, t, got, want);
                checked++;
            }
    cr_assert_gt(checked, 4000);
}

/* A run of tokens in one call (what the tracker passes) gives each token the
 * bits a call for that token alone gives, visibility counted from t0. */
Test(kv_mixed_blk, low_masks_over_a_run_match_one_token_calls) {
    if (kvb_kind(64) != KVB_AVX512) cr_skip_test("no AVX-512 block kernel here");
    enum { N = 40, RP = 32, GQ = 3, NQ = 10 };
    static float pt[N * RP];
    float thr[NQ];
    int nhv[NQ];
    unsigned r = 4;
    for (int i = 0; i < N * RP; i++) pt[i] = urand(&r) * 0.05f;
    for (int qi = 0; qi < NQ; qi++) thr[qi] = 0.01f + 0.002f * qi, nhv[qi] = 5 + 9 * qi;
    uint32_t run[N], one;
    kvb_low_masks(pt, 7, N, RP, NQ, GQ, thr, nhv, run);
    int set = 0;
    for (int t = 0; t < N; t++) {
        kvb_low_masks(pt + t * RP, 7 + t, 1, RP, NQ, GQ, thr, nhv, &one);
        cr_assert_eq(run[t], one, "token %d: %x vs %x", t, run[t], one);
        set += run[t] != 0;
    }
    cr_assert(set > 0 && set < N, "the run has tokens with and without low queries (%d)", set);
}
