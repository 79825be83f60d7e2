/* kv_mirror (the GPU mixed cache's host-side counts) against the CPU mixed
 * cache. The kernels' own layouts (kernels/cuda/kv_mixed.cu's quantizer vs
 * cache/kv_quant.c, its victim choice vs kvt_pick) are checked by running
 * them: tests/gpu/gpu_mixed_layout.c, on the CPU through tests/gpu/emu. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_mirror.h"
#include "kv_mixed.h"
#include "kv_tier.h"
#include "kv_policy.h"
#include "../test_rand.h"

/* The mikv preset before 2026-12-02 (FP16 high tier, INT4 keys + INT2
 * values, fp16 scales, no rotation or clipping): what these tests were
 * written against; the current preset appears by name where a test covers
 * every preset. */
#define MIKV0 "mikv,hi-bits=16,lo-bits=4/2,rotate=0,clip=0,scale-bits=16"

/* ---- counts: kvm_plan vs kv_mixed over random call sizes ---- */

static void run_policy(const char *spec, unsigned seed) {
    kv_shape sh = {.n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 32, .max_seqs = 2,
                   .max_ctx = 600, .n_threads = 1};
    kv_policy p;
    char err[256];
    cr_assert_eq(kv_policy_parse(spec, &p, err, sizeof err), 0, "%s: %s", spec, err);
    kv_cache *c = NULL;
    cr_assert_eq(kv_create(&sh, &p, &c, err, sizeof err), 0, "%s", err);
    kv_policy cp;
    cr_assert_eq(kv_get_policy(c, &cp), 0);
    const int hd = sh.head_dim, kvd = sh.n_kv_heads * hd, qd = sh.n_heads * hd, maxn = 40;
    float *k = malloc(sizeof(float) * maxn * kvd), *v = malloc(sizeof(float) * maxn * kvd);
    float *q = malloc(sizeof(float) * maxn * qd), *o = malloc(sizeof(float) * maxn * qd);
    kvm_seq ms[2];
    memset(ms, 0, sizeof ms);
    int demoted = 0;
    for (int round = 0; round < 2; round++) {
        for (int s = 0; s < 2; s++) {
            kv_seq_reset(c, s);
            memset(&ms[s], 0, sizeof ms[s]);
        }
        for (int call = 0; call < 120; call++) {
            int s = call % 2, len = kv_seq_pos(c, s);
            /* prompt chunks first, then mostly single-token decode steps */
            int n = call < 8 ? 1 + (int)((frand(&seed) + 1) * 0.5f * (maxn - 1)) : 1 + (call % 7 == 0) * 3;
            if (len + n > sh.max_ctx) break;
            for (int i = 0; i < n * kvd; i++) k[i] = 2 * frand(&seed), v[i] = frand(&seed);
            for (int i = 0; i < n * qd; i++) q[i] = 2 * frand(&seed);
            for (int l = 0; l < sh.n_layers; l++) {
                cr_assert_eq(kv_store(c, s, l, len, n, k, v), 0);
                for (int h = 0; h < sh.n_kv_heads; h++)
                    cr_assert_eq(kv_attend_group(c, s, l, h, len, n, q, o, 0), 0);
            }
            kvm_call pl;
            kvm_plan(&cp, &ms[s], n, &pl);
            demoted += pl.k;
            cr_assert_eq(pl.hi0 + n, pl.hi);
            for (int l = 0; l < sh.n_layers; l++)
                for (int h = 0; h < sh.n_kv_heads; h++) {
                    kv_mixed_head hi;
                    cr_assert_eq(kv_mixed_head_info(c, s, l, h, &hi), 0);
                    cr_assert_eq(hi.n_high, ms[s].n_hi, "%s call %d: high %d vs mirror %d", spec,
                                 call, hi.n_high, ms[s].n_hi);
                    cr_assert_eq(hi.n_low, ms[s].n_lo, "%s call %d: low", spec, call);
                    cr_assert_eq(hi.n_dropped, ms[s].n_drop, "%s call %d: dropped", spec, call);
                    cr_assert_eq(hi.steps, ms[s].steps, "%s call %d: steps", spec, call);
                    cr_assert_eq(hi.balanced, ms[s].frozen, "%s call %d: frozen", spec, call);
                }
            kv_usage a, b;
            kv_seq_usage(c, s, &a);
            kvm_usage(&cp, &sh, &ms[s], &b);
            cr_assert_eq(a.bytes_stored, b.bytes_stored, "%s call %d: bytes %zu vs %zu", spec, call,
                         a.bytes_stored, b.bytes_stored);
            cr_assert_eq(a.bytes_fp16, b.bytes_fp16);
            cr_assert_eq(a.n_tokens, b.n_tokens);
            cr_assert_eq(a.n_high, b.n_high);
            cr_assert_eq(a.n_low, b.n_low);
            cr_assert_eq(a.n_dropped, b.n_dropped);
            cr_assert(b.bytes_stored <= kv_policy_seq_bytes(&cp, &sh, b.n_tokens));
        }
    }
    cr_assert(demoted > 0, "%s: nothing was demoted, the test checks little", spec);
    free(k), free(v), free(q), free(o);
    kv_destroy(c);
}

Test(kv_mirror, counts_match_cpu_cache_for_every_preset) {
    const char *specs[] = {"scissorhands", MIKV0, "h2o", "streaming", "quant4", "quant2",
                           MIKV0 ",budget=30,chunk=1", "h2o,lo-bits=4,budget=0.5,chunk=8",
                           "scissorhands,window=6,budget=0.2,sinks=0,recent=3",
                           "streaming,budget=0,recent=5,sinks=2", MIKV0 ",key-balance=0",
                           MIKV0 ",budget=0.9,chunk=0.9"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) run_policy(specs[i], 7u + (unsigned)i);
}

Test(kv_mirror, protected_counts) {
    kv_policy p;
    cr_assert_eq(kv_policy_preset("mikv", &p), 0); /* sinks 4, recent 16 */
    cr_assert_eq(kv_tier_protected(&p, 0), 0);
    cr_assert_eq(kv_tier_protected(&p, 3), 3);
    cr_assert_eq(kv_tier_protected(&p, 20), 20);
    cr_assert_eq(kv_tier_protected(&p, 21), 20);
    cr_assert_eq(kv_tier_protected(&p, 1000), 20);
}
