/* The mixed cache: equality with the plain FP16 cache when nothing is
 * demoted, attention against a float64 reference over the dequantized cache,
 * budgets, protection, positions and accounting through demotion. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv_tier.h"
#include "kv.h"
#include "kv_internal.h"
#include "kv_mixed.h"
#include "kv_policy.h"
#include "pverr.h"

#include "kv_mixed_util.h"

Test(kv_mixed, nothing_demoted_matches_fp16) {
    kv_shape s = {.n_layers = 2, .n_heads = 6, .n_kv_heads = 2, .head_dim = 64, .max_seqs = 2,
                  .max_ctx = 160, .n_threads = 2};
    const int N = 150;
    seqdata d = make_seq(N, 2, 6, 64, 2, 7);
    size_t on = (size_t)2 * N * 6 * 64;
    float *ref = calloc(on, sizeof(float)), *got = calloc(on, sizeof(float));
    kv_cache *plain;
    cr_assert_eq(kv_create_fp16(&s, &plain), 0);
    int chunks[] = {37, 1, 1, 64, 5, 42};
    for (int i = 0, p = 0; i < 6; p += chunks[i++]) step(plain, &d, 1, p, chunks[i], ref);
    /* Budgets that the sequence never reaches: these caches hold every
     * token at FP16 and must compute what the plain cache does. Not bit for
     * bit: the plain cache runs a blocked online-softmax kernel (kv_attn.c,
     * float sums, polynomial exp), the mixed one a per-token loop (double
     * sum, expf); both are within ~1e-6 of a float64 reference. */
    const char *specs[] = {MIKV0 ",budget=100000", "h2o,budget=1000", "scissorhands,budget=151",
                           "quant2,recent=1000", "streaming,budget=200",
                           MIKV0 ",budget=100000,rotate=1", "quant4,recent=1000,rotate=1"};
    for (int k = 0; k < 7; k++) {
        kv_cache *c = make(&s, specs[k]);
        cr_assert_str_eq(kv_name(c), "mixed");
        memset(got, 0, on * sizeof(float));
        for (int i = 0, p = 0; i < 6; p += chunks[i++]) step(c, &d, 1, p, chunks[i], got);
        double maxd = 0;
        for (size_t i = 0; i < on; i++)
            if (fabs((double)ref[i] - got[i]) > maxd) maxd = fabs((double)ref[i] - got[i]);
        /* Rotated, the FP16 records round R·k and R·v instead of k and v:
         * the same relative precision (2^-11) in another basis, so the
         * outputs differ from the plain cache's by fp16 rounding, not by a
         * float sum order (a missing inverse rotation differs by ~1). */
        const double tol = strstr(specs[k], "rotate=1") ? 2e-3 : 1e-5;
        cr_assert_lt(maxd, tol, "%s differs from fp16 by %g", specs[k], maxd);
        kv_usage u;
        kv_seq_usage(c, 1, &u);
        cr_assert_eq(u.n_high, N);
        cr_assert_eq(u.n_low + u.n_dropped, 0);
        kv_destroy(c);
    }
    kv_cache *full = make(&s, "full");
    cr_assert_str_eq(kv_name(full), "fp16"); /* full *is* the plain cache */
    kv_destroy(full);
    kv_destroy(plain);
    free(ref);
    free(got);
    free_seq(&d);
}

/* float64 attention for the gq query heads of KV head h at the cache's
 * current state, from the dequantized records the inspection API returns,
 * mapped back to the model's basis (balanced keys divided by b, rotated
 * records rotated back) and met by the raw query. */
static void ref_attention(kv_cache *c, int seq, int l, int h, const float *q, int gq, int hd,
                          double *out, const kv_policy *pol, double *wbound) {
    kv_mixed_head info;
    cr_assert_eq(kv_mixed_head_info(c, seq, l, h, &info), 0);
    int n = info.n_high + info.n_low;
    float *b = malloc(sizeof(float) * hd), *K = malloc(sizeof(float) * n * hd),
          *V = malloc(sizeof(float) * n * hd);
    /* range[t]: the stored value's largest group range (s·levels), for the
     * bound on the AVX-512 value kernel's int16 weights (quantized records
     * only: the low tier, an INT8 high tier); 0 for FP16 records */
    double *range = calloc((size_t)n, sizeof(double));
    int rot = 0;
    cr_assert_eq(kv_mixed_balance(c, seq, l, h, b), 0);
    for (int t = 0; t < n; t++) {
        int low = t >= info.n_high;
        float *kt = K + (size_t)t * hd, *vt = V + (size_t)t * hd;
        kv_mixed_tok tk = {.k = kt, .v = vt};
        cr_assert_eq(kv_mixed_token(c, seq, l, h, low, low ? t - info.n_high : t, &tk), 0);
        if (tk.k_balanced)
            for (int i = 0; i < hd; i++) kt[i] /= b[i];
        if (low || pol->hi_bits == 8)
            for (int g0 = 0; g0 < hd; g0 += pol->group) {
                double lo = INFINITY, hi = -INFINITY;
                for (int i = g0; i < g0 + pol->group && i < hd; i++) lo = fmin(lo, vt[i]), hi = fmax(hi, vt[i]);
                range[t] = fmax(range[t], hi - lo);
            }
        rot |= tk.rotated;
        if (tk.rotated) {
            cr_assert_eq(kv_mixed_unrotate(c, l, h, kt), 0);
            cr_assert_eq(kv_mixed_unrotate(c, l, h, vt), 0);
        }
    }
    double *sc = malloc(sizeof(double) * n);
    for (int g = 0; g < gq; g++) {
        const float *qg = q + (size_t)g * hd;
        double mx = -1e300, sum = 0;
        for (int t = 0; t < n; t++) {
            double dot = 0;
            for (int i = 0; i < hd; i++) dot += (double)qg[i] * K[(size_t)t * hd + i];
            sc[t] = dot / sqrt(hd);
            if (sc[t] > mx) mx = sc[t];
        }
        for (int t = 0; t < n; t++) sum += (sc[t] = exp(sc[t] - mx));
        /* int16 weights p·s on a step of their page's largest / 32767: half
         * a step per token and code (codes <= levels, s·levels = range);
         * rotated back, a channel's error is at most the vector's L2 norm */
        double e = 0;
        for (int t0 = 0; t0 < n;) {
            int t1 = t0 < info.n_high ? (t0 / 32 + 1) * 32 : info.n_high + ((t0 - info.n_high) / 32 + 1) * 32;
            if (t0 < info.n_high && t1 > info.n_high) t1 = info.n_high;
            if (t1 > n) t1 = n;
            double wm = 0;
            for (int t = t0; t < t1; t++) wm = fmax(wm, sc[t] / sum * range[t]);
            e += 0.5 * (t1 - t0) * wm / 32767;
            t0 = t1;
        }
        wbound[g] = rot ? e * sqrt(hd) : e;
        for (int i = 0; i < hd; i++) {
            double o = 0;
            for (int t = 0; t < n; t++) o += sc[t] / sum * V[(size_t)t * hd + i];
            out[(size_t)g * hd + i] = o;
        }
    }
    free(sc);
    free(range);
    free(b);
    free(K);
    free(V);
}

/* Decode steps after a compressing prefill; at each step whose demotion
 * left the tiers unchanged, the output must equal float64 attention over
 * what the cache holds. */
static void check_vs_reference(const char *spec, int force_scalar) {
    kv_shape s = {.n_layers = 1, .n_heads = 6, .n_kv_heads = 2, .head_dim = 64, .max_seqs = 1,
                  .max_ctx = 200, .n_threads = 2};
    const int N = 160, P = 120, hd = 64, nh = 6;
    seqdata d = make_seq(N, 2, nh, hd, 1, 99);
    kv_policy pol;
    char err[256];
    cr_assert_eq(kv_policy_parse(spec, &pol, err, sizeof err), 0, "%s", err);
    kv_cache *c;
    cr_assert_eq(kv_create_mixed_opt(&s, &pol, force_scalar, &c), 0);
    float *out = calloc((size_t)N * nh * hd, sizeof(float));
    double ref[3 * 64];
    /* The AVX2 low-tier dot rounds the query to int16 (relative 2^-16 of
     * its largest channel), which moves scores by ~1e-4 here; the portable
     * kernels compute in float. A wrong scale or zero point moves them by
     * ~1e-1. */
    const double tol = force_scalar ? 2e-5 : 2e-4;
    step(c, &d, 0, 0, P, out);
    int checked = 0;
    for (int p = P; p < N; p++) {
        kv_mixed_head before[2], after;
        for (int h = 0; h < 2; h++) kv_mixed_head_info(c, 0, 0, h, &before[h]);
        step(c, &d, 0, p, 1, out);
        for (int h = 0; h < 2; h++) {
            kv_mixed_head_info(c, 0, 0, h, &after);
            if (after.n_high != before[h].n_high + 1) continue; /* demoted at the end */
            double wb[3];
            ref_attention(c, 0, 0, h, Qat(&d, 0, p) + (size_t)h * 3 * hd, 3, hd, ref, &pol, wb);
            const float *o = out + ((size_t)p * nh + h * 3) * hd;
            for (int i = 0; i < 3 * hd; i++)
                cr_assert(fabs(o[i] - ref[i]) <= tol + tol * fabs(ref[i]) + (force_scalar ? 0 : wb[i / hd]),
                          "%s p=%d h=%d i=%d got %g want %g", spec, p, h, i, o[i], ref[i]);
            checked++;
        }
    }
    kv_usage u;
    kv_seq_usage(c, 0, &u);
    cr_assert(u.n_low + u.n_dropped > 0, "%s: nothing was demoted", spec);
    cr_assert(checked > 20, "%s: only %d steps checked", spec, checked);
    kv_destroy(c);
    free(out);
    free_seq(&d);
}

Test(kv_mixed, attention_matches_float64_over_dequantized_cache) {
    /* Mixed K/V widths (4/2, 2/4) read keys and values with different
     * kernels and record sizes: a swapped kernel or stride shows here. */
    const char *specs[] = {MIKV0 ",budget=40", MIKV0 ",budget=40,lo-bits=4,group=64",
                           MIKV0 ",budget=40,hi-bits=8", "quant2,group=8,budget=40,chunk=8", "scissorhands,budget=30",
                           "h2o,budget=60", MIKV0 ",budget=0.25,key-balance=0",
                           MIKV0 ",budget=40,lo-bits=4/2", MIKV0 ",budget=40,lo-bits=2/4,group=64",
                           "quant2,lo-k-bits=4,group=16,budget=40,chunk=8", MIKV0 ",budget=40,lo-bits=4/2,hi-bits=8",
                           /* rotated: the reference rotates the records back and uses the raw
                            * query, so a missing or wrong rotation of q, k, v or the output shows */
                           MIKV0 ",budget=40,rotate=1", MIKV0 ",budget=40,hi-bits=8,rotate=1",
                           "quant2,group=8,budget=40,chunk=8,rotate=1",
                           MIKV0 ",budget=40,key-balance=0,rotate=1",
                           /* 3-bit codes: the portable and the AVX-512 kernels */
                           MIKV0 ",budget=40,lo-bits=4/3,rotate=1", "quant4,lo-bits=3,group=16,budget=40,chunk=8",
                           MIKV0 ",budget=40,lo-bits=3/2", MIKV0 ",budget=40,lo-bits=4/3,rotate=1,clip=1",
                           MIKV0 ",budget=40,lo-bits=4/3,rotate=1,clip=values",
                           "mikv,budget=40", /* the preset: INT8 high, rotated 4/3, clipped */
                           /* two-byte scales (KVQ_SZ8): the low tier's records, both kernel sets */
                           "mikv,budget=40,scale-bits=8", "quant4,lo-bits=3,group=16,budget=40,chunk=8,scale-bits=8"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        check_vs_reference(specs[i], 0);
        check_vs_reference(specs[i], 1);
    }
}

/* Budget, protection, positions and accounting through prefill in chunks
 * and decode, for every preset and some variants. */
Test(kv_mixed, invariants_and_accounting_for_every_preset) {
    kv_shape s = {.n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 32, .max_seqs = 2,
                  .max_ctx = 260, .n_threads = 2};
    const int N = 250, hd = 32;
    seqdata d = make_seq(N, 2, 4, hd, 2, 5);
    float *out = calloc((size_t)2 * N * 4 * hd, sizeof(float));
    const char *specs[] = {"full", "scissorhands", MIKV0, "h2o", "streaming", "quant4", "quant2",
                           MIKV0 ",hi-bits=8,budget=50", "h2o,lo-bits=4,budget=17,chunk=5",
                           "scissorhands,budget=0.5,window=10", "streaming,budget=40,chunk=0",
                           MIKV0 ",lo-bits=4/2", MIKV0 ",lo-bits=2/4,group=8,budget=30",
                           "quant4,lo-v-bits=2", "h2o,lo-k-bits=4,lo-v-bits=2,budget=0.2,chunk=1",
                           MIKV0 ",rotate=1", "quant2,rotate=1", MIKV0 ",lo-bits=4/3,rotate=1",
                           "quant4,lo-bits=3", MIKV0 ",lo-bits=4/3,rotate=1,clip=1", "mikv",
                           "mikv,layer-bits=1:2/4", "quant4,lo-bits=3,layer-bits=0-1:4/2+0:2",
                           "quant4,lo-bits=8/3", "quant4,lo-bits=3,layer-bits=1.1:8/4+0.0:2",
                           "mikv,layer-bits=0-1:0+1.0:8", /* heads that drop */
                           "quant4,lo-bits=3,layer-bits=0.1:0+1.1:3", /* ... behind FP16 */
                           "mikv,scale-bits=8", "quant4,lo-bits=3,group=8,scale-bits=8", /* two-byte scales */
                           "mikv,budget=0.0625,chunk=1", "mikv,budget=37,chunk=1,sinks=2,recent=5"};
    for (int k = 0; k < 31; k++) {
        kv_policy pol;
        char err[256];
        cr_assert_eq(kv_policy_parse(specs[k], &pol, err, sizeof err), 0);
        if (pol.group > hd) pol.group = hd; /* mikv's 64 on this 32-wide shape: one group */
        kv_cache *c = make(&s, specs[k]);
        int p = 0, sizes[] = {64, 64, 1, 7};
        for (int it = 0; p < N; it++) {
            int n = it < 2 ? sizes[it] : sizes[2 + it % 2];
            if (p + n > N) n = N - p;
            step(c, &d, 1, p, n, out);
            p += n;
            kv_usage u;
            kv_seq_usage(c, 1, &u);
            cr_assert_eq(u.n_tokens, p);
            cr_assert_eq(u.bytes_fp16, (size_t)p * 2 * 2 * hd * 2 * 2);
            cr_assert(u.bytes_stored <= kv_policy_seq_bytes(&pol, &s, p),
                      "%s at %d: stored %zu > predicted %zu", specs[k], p, u.bytes_stored,
                      kv_policy_seq_bytes(&pol, &s, p));
            if (!strcmp(specs[k], "full")) {
                cr_assert_eq(u.bytes_stored, kv_policy_seq_bytes(&pol, &s, p));
                continue;
            }
            /* one-token demotions rest at exactly the budget: the bound is
             * exact (the balance state is charged from the first call) */
            if (pol.chunk == 1)
                cr_assert_eq(u.bytes_stored, kv_policy_seq_bytes(&pol, &s, p), "%s at %d", specs[k], p);
            cr_assert_eq(u.bytes_stored, kv_mixed_allocated(c, 1), "%s: reported != allocated",
                         specs[k]);
            /* Bytes from the format's definition, written out here. */
            size_t hrec = pol.hi_bits == 16 ? hd * 2 : hd + hd / pol.group * 4;
            size_t st = pol.select == KV_SELECT_PERSISTENCE ? 4 : pol.select == KV_SELECT_ACCUMULATED ? 8 : 0;
            size_t want = 0;
            long budget = pol.budget >= 1 ? (long)pol.budget : pol.budget > 0 ? (long)ceil(pol.budget * p) : pol.sinks + pol.recent;
            if (budget < pol.sinks + pol.recent) budget = pol.sinks + pol.recent;
            for (int l = 0; l < 2; l++)
                for (int h = 0; h < 2; h++) {
                    /* the layer's widths: lo-bits, unless a layer-bits
                     * range (the last that names it) says otherwise */
                    int lkb = pol.lo_bits, lvb = pol.lo_v_bits ? pol.lo_v_bits : pol.lo_bits;
                    if (strstr(specs[k], "layer-bits=1:2/4") && l == 1) lkb = 2, lvb = 4;
                    if (strstr(specs[k], "layer-bits=0-1:4/2+0:2")) lkb = l ? 4 : 2, lvb = 2;
                    if (strstr(specs[k], "layer-bits=1.1:8/4+0.0:2")) { /* per KV head */
                        if (l == 1 && h == 1) lkb = 8, lvb = 4;
                        if (l == 0 && h == 0) lkb = lvb = 2;
                    }
                    int drops = 0, keep = 4; /* a head of width 0 drops what it demotes */
                    if (strstr(specs[k], "layer-bits=0-1:0+1.0:8")) {
                        drops = !(l == 1 && h == 0), keep = 1;
                        lkb = lvb = drops ? 0 : 8;
                    }
                    if (strstr(specs[k], "layer-bits=0.1:0+1.1:3")) {
                        drops = l == 0 && h == 1, keep = 3;
                        lkb = lvb = drops ? 0 : 3;
                    }
                    const size_t side = pol.scale_bits == 8 ? 2 : 4; /* a low group's scale + zero */
                    size_t lrec = pol.lo_bits && lkb ? hd * lkb / 8 + hd / pol.group * side : 0;
                    size_t lvrec = pol.lo_bits && lkb ? hd * lvb / 8 + hd / pol.group * side : 0;
                    kv_mixed_head hi;
                    cr_assert_eq(kv_mixed_head_info(c, 1, l, h, &hi), 0);
                    /* every head holds the same high count; low and dropped
                     * too unless some heads drop (then usage has the means) */
                    cr_assert_eq(hi.n_high, u.n_high);
                    if (strstr(specs[k], ":0+")) {
                        cr_assert_eq(drops ? hi.n_low : hi.n_dropped, 0, "%s", specs[k]);
                        cr_assert_eq(u.n_low, keep * (p - hi.n_high) / 4, "%d of 4 heads keep a low tier", keep);
                    } else {
                        cr_assert_eq(hi.n_low, u.n_low);
                        cr_assert_eq(hi.n_dropped, u.n_dropped);
                    }
                    cr_assert_eq(hi.n_high + hi.n_low + hi.n_dropped, p);
                    cr_assert_eq(u.n_high + u.n_low + u.n_dropped, p);
                    cr_assert(hi.n_high <= budget, "%s: %d high > budget %ld", specs[k],
                              hi.n_high, budget);
                    want += (size_t)(hi.n_high + 31) / 32 * 32 * (2 * hrec + 4 + st);
                    want += (size_t)(hi.n_low + 31) / 32 * 32 * (lrec ? lrec + lvrec : 0);
                    /* factors, and the maxima while an FP16 high tier folds them */
                    if (hi.balanced) want += (pol.hi_bits == 8 ? 1 : 3) * hd * sizeof(float);
                    /* sinks and the recent window are high; positions are
                     * unique and, in each tier, sorted */
                    char *seen = calloc(p, 1);
                    int32_t prev = -1;
                    for (int t = 0; t < hi.n_high; t++) {
                        kv_mixed_tok tk = {0};
                        kv_mixed_token(c, 1, l, h, 0, t, &tk);
                        cr_assert(tk.pos > prev && tk.pos < p);
                        prev = tk.pos;
                        seen[tk.pos]++;
                    }
                    prev = -1;
                    for (int t = 0; t < hi.n_low; t++) {
                        kv_mixed_tok tk = {0};
                        kv_mixed_token(c, 1, l, h, 1, t, &tk);
                        cr_assert(tk.pos > prev && tk.pos < p && !seen[tk.pos]);
                        prev = tk.pos;
                        seen[tk.pos]++;
                    }
                    for (int q = 0; q < p; q++)
                        if (q < pol.sinks || q >= p - pol.recent)
                            cr_assert(seen[q], "%s: protected %d demoted", specs[k], q);
                    free(seen);
                }
            cr_assert_eq(u.bytes_stored, want, "%s at %d", specs[k], p);
        }
        kv_seq_reset(c, 1);
        kv_usage u;
        kv_seq_usage(c, 1, &u);
        cr_assert_eq(u.bytes_stored, 0);
        if (strcmp(specs[k], "full")) cr_assert_eq(kv_mixed_allocated(c, 1), 0);
        kv_destroy(c);
    }
    free(out);
    free_seq(&d);
}

Test(kv_mixed, demoted_values_keep_their_positions) {
    kv_shape s = {.n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .head_dim = 32, .max_seqs = 1,
                  .max_ctx = 100, .n_threads = 2};
    const int N = 100, hd = 32;
    seqdata d = make_seq(N, 1, 2, hd, 1, 3);
    float *out = calloc((size_t)N * 2 * hd, sizeof(float));
    kv_cache *c = make(&s, MIKV0 ",lo-bits=4,budget=20");
    for (int p = 0; p < N; p += 10) step(c, &d, 0, p, 10, out);
    kv_mixed_head hi;
    kv_mixed_head_info(c, 0, 0, 0, &hi);
    cr_assert(hi.n_low > 50);
    float v[32];
    for (int t = 0; t < hi.n_low; t++) {
        kv_mixed_tok tk = {.v = v};
        kv_mixed_token(c, 0, 0, 0, 1, t, &tk);
        /* INT4 of values in [-1,1] with groups of 32: error <= 1/15 */
        for (int i = 0; i < hd; i++)
            cr_assert(fabsf(v[i] - Vat(&d, 0, tk.pos)[i]) < 0.07f, "pos %d", tk.pos);
    }
    kv_destroy(c);
    free(out);
    free_seq(&d);
}

/* The low tier stores no positions: it is kept sorted by position and they
 * are the ones the high tier does not hold. A token the tracker keeps high
 * for long and demotes late must then land between older low records, not
 * after them. Decoding one token at a time under both trackers, such late
 * demotions must happen (counted), and every low record must still decode
 * to the original value at the position the cache reports for it, with
 * chunks of victims and with one at a time. */
Test(kv_mixed, late_demotions_keep_the_low_tier_in_position_order) {
    kv_shape s = {.n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .head_dim = 32, .max_seqs = 1,
                  .max_ctx = 300, .n_threads = 1};
    const int N = 300, hd = 32;
    /* chunk=1: one victim a step, merged by demote_merge's backward walk
     * (prev_low) instead of chunks of 16 */
    const char *specs[] = {MIKV0 ",lo-bits=4,budget=40,select=persistence",
                           MIKV0 ",lo-bits=4,budget=40,select=accumulated",
                           MIKV0 ",lo-bits=4,budget=40,select=persistence,chunk=1",
                           MIKV0 ",lo-bits=4,budget=40,select=accumulated,chunk=1"};
    seqdata d = make_seq(N, 1, 2, hd, 1, 11);
    float *out = calloc((size_t)N * 2 * hd, sizeof(float)), v[32];
    char *was_low = calloc(N, 1);
    for (int k = 0; k < 4; k++) {
        kv_cache *c = make(&s, specs[k]);
        memset(was_low, 0, N);
        int newest_low = -1, late = 0;
        step(c, &d, 0, 0, 20, out);
        for (int p = 20; p < N; p++) {
            step(c, &d, 0, p, 1, out);
            kv_mixed_head hi;
            kv_mixed_head_info(c, 0, 0, 0, &hi);
            int prev = -1, top = newest_low;
            for (int t = 0; t < hi.n_low; t++) {
                kv_mixed_tok tk = {.v = v};
                cr_assert_eq(kv_mixed_token(c, 0, 0, 0, 1, t, &tk), 0);
                cr_assert(tk.pos > prev, "%s: low tier out of order at %d", specs[k], t);
                prev = tk.pos;
                if (!was_low[tk.pos]) { /* demoted in this step */
                    was_low[tk.pos] = 1;
                    late += tk.pos < newest_low;
                    if (tk.pos > top) top = tk.pos;
                }
                /* INT4 of values in [-1,1] with groups of 32: error <= 1/15 */
                for (int i = 0; i < hd; i++)
                    cr_assert(fabsf(v[i] - Vat(&d, 0, tk.pos)[i]) < 0.07f, "%s: pos %d at step %d",
                              specs[k], tk.pos, p);
            }
            newest_low = top;
        }
        cr_assert_gt(late, 0, "%s: no token demoted behind newer low ones", specs[k]);
        kv_destroy(c);
    }
    free(was_low);
    free(out);
    free_seq(&d);
}

/* Keys at INT4 and values at INT2 in the low tier: each side is decoded
 * with its own width, so each stays within its own bound: values in
 * [-1,1] by (max-min)/3/2 <= 1/3 at INT2, balanced keys to 1/15 of their
 * group's range at INT4 (2/4 swaps them). */
Test(kv_mixed, low_tier_keys_and_values_keep_their_own_widths) {
    kv_shape s = {.n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .head_dim = 32, .max_seqs = 1,
                  .max_ctx = 100, .n_threads = 2};
    const int N = 100, hd = 32;
    seqdata d = make_seq(N, 1, 2, hd, 1, 3);
    const char *specs[] = {MIKV0 ",lo-bits=4/2,budget=20,key-balance=0",
                           MIKV0 ",lo-bits=2/4,budget=20,key-balance=0"};
    for (int k = 0; k < 2; k++) {
        float *out = calloc((size_t)N * 2 * hd, sizeof(float));
        kv_cache *c = make(&s, specs[k]);
        for (int p = 0; p < N; p += 10) step(c, &d, 0, p, 10, out);
        kv_mixed_head hi;
        kv_mixed_head_info(c, 0, 0, 0, &hi);
        cr_assert(hi.n_low > 50);
        int kb = k == 0 ? 4 : 2, vb = k == 0 ? 2 : 4;
        double kerr = 0, verr = 0;
        float kk[32], v[32];
        for (int t = 0; t < hi.n_low; t++) {
            kv_mixed_tok tk = {.k = kk, .v = v};
            kv_mixed_token(c, 0, 0, 0, 1, t, &tk);
            const float *K = Kat(&d, 0, tk.pos), *V = Vat(&d, 0, tk.pos);
            float lo = K[0], hi_ = K[0];
            for (int i = 0; i < hd; i++) {
                lo = fminf(lo, K[i]);
                hi_ = fmaxf(hi_, K[i]);
            }
            for (int i = 0; i < hd; i++) {
                double ek = fabs(kk[i] - K[i]) / (hi_ - lo), ev = fabs(v[i] - V[i]);
                cr_assert(ek <= 0.5 / ((1 << kb) - 1) + 1e-3, "%s key pos %d", specs[k], tk.pos);
                cr_assert(ev <= 1.0 / ((1 << vb) - 1) + 1e-3, "%s value pos %d", specs[k], tk.pos);
                kerr = fmax(kerr, ek);
                verr = fmax(verr, ev);
            }
        }
        /* and the coarse side really is coarse (the widths are not swapped) */
        if (k == 0) cr_assert(verr > 0.1 && kerr < 0.05, "k %g v %g", kerr, verr);
        else cr_assert(kerr > 0.1 && verr < 0.07, "k %g v %g", kerr, verr);
        kv_destroy(c);
        free(out);
    }
    free_seq(&d);
}

Test(kv_mixed, bad_calls_are_errors) {
    kv_shape s = {.n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .head_dim = 32, .max_seqs = 1,
                  .max_ctx = 8, .n_threads = 1};
    kv_cache *c = make(&s, MIKV0);
    float k[10 * 32] = {0}, q[10 * 64] = {0}, o[10 * 64];
    cr_assert_eq(kv_store(c, 0, 0, 1, 1, k, k), PV_EINVAL); /* gap */
    cr_assert_eq(kv_store(c, 0, 0, 0, 9, k, k), PV_ECTXFULL);
    cr_assert_eq(kv_store(c, 0, 0, 0, 2, k, k), 0);
    cr_assert_eq(kv_attend_group(c, 0, 0, 0, 1, 2, q, o, 0), PV_EINVAL); /* past the keys */
    cr_assert_eq(kv_attend_group(c, 0, 0, 0, 0, 2, q, o, 0), 0);
    cr_assert_eq(kv_seq_pos(c, 0), 2);
    kv_destroy(c);
}

/* Prompt chunks take the block kernel (kv_mixed_blk.c: records decoded to
 * float once per block of queries, token-major probabilities) where the CPU
 * has AVX-512, or with an INT8 high tier the run kernels a block of rows at
 * a time (kv_mixed_attend.c, attend_blocks_run); force_scalar caches run the
 * per-query portable kernels, which are within 2e-5 of float64 (above).
 * Same data, same chunks, both through compressing prefills: every tier
 * count must agree and every output within float rounding: scores of these
 * outlier keys (|k| up to 16) carry ~1e-5 of summation-order noise, seen as
 * up to 6e-5 in the outputs (measured); the run kernels' int16 queries and
 * weights (kv_quant.h) add up to 8.7e-4 (the mikv preset, measured), so an
 * INT8 high tier gets 1.5e-3; a wrong scale, zero point, stride or mask
 * moves them by ~1e-1. */
Test(kv_mixed, prompt_blocks_match_per_query_kernels) {
    const char *specs[] = {MIKV0 ",budget=40", MIKV0 ",budget=40,hi-bits=8", MIKV0 ",budget=40,lo-bits=2/4,group=64",
                           "quant2,group=8,budget=40,chunk=8", "h2o,budget=60", "scissorhands,budget=30",
                           MIKV0 ",budget=0.25,key-balance=0", MIKV0 ",budget=40,rotate=1",
                           MIKV0 ",budget=40,lo-bits=4/3,rotate=1", "mikv,budget=40"};
    int shapes[][2] = {{6, 2}, {2, 2}, {8, 1}}; /* groups of 3 (blocks of 10 queries), 1 (32), 8 (4) */
    int chunks[] = {50, 37, 1, 40, 33, 2}, N = 163, hd = 64;
    double worst = 0;
    for (int si = 0; si < 3; si++)
        for (size_t k = 0; k < sizeof specs / sizeof *specs; k++) {
            int nh = shapes[si][0], nkv = shapes[si][1];
            kv_shape s = {.n_layers = 1, .n_heads = nh, .n_kv_heads = nkv, .head_dim = hd,
                          .max_seqs = 1, .max_ctx = N, .n_threads = 2};
            seqdata d = make_seq(N, nkv, nh, hd, 1, 31 + (unsigned)k);
            kv_policy pol;
            char err[256];
            cr_assert_eq(kv_policy_parse(specs[k], &pol, err, sizeof err), 0, "%s", err);
            kv_cache *a, *b;
            cr_assert_eq(kv_create_mixed_opt(&s, &pol, 0, &a), 0);
            cr_assert_eq(kv_create_mixed_opt(&s, &pol, 1, &b), 0);
            size_t on = (size_t)N * nh * hd;
            float *oa = calloc(on, sizeof(float)), *ob = calloc(on, sizeof(float));
            for (int i = 0, p = 0; i < 6; p += chunks[i++]) {
                step(a, &d, 0, p, chunks[i], oa);
                step(b, &d, 0, p, chunks[i], ob);
                kv_usage ua, ub;
                kv_seq_usage(a, 0, &ua);
                kv_seq_usage(b, 0, &ub);
                cr_assert(ua.n_high == ub.n_high && ua.n_low == ub.n_low && ua.n_dropped == ub.n_dropped,
                          "%s nh %d: tiers differ after %d tokens", specs[k], nh, p + chunks[i]);
            }
            kv_usage u;
            kv_seq_usage(a, 0, &u);
            cr_assert(u.n_low + u.n_dropped > 0, "%s: nothing was demoted", specs[k]);
            const double tol = pol.hi_bits == 8 ? 1.5e-3 : 3e-4;
            for (size_t i = 0; i < on; i++) {
                double e = fabs((double)oa[i] - ob[i]);
                cr_assert(e <= tol + 3e-4 * fabs(ob[i]), "%s nh %d: output %zu got %g want %g",
                          specs[k], nh, i, oa[i], ob[i]);
                if (e > worst) worst = e;
            }
            free(oa), free(ob);
            kv_destroy(a), kv_destroy(b);
            free_seq(&d);
        }
    cr_log_info("block vs per-query kernels: max abs difference %g", worst);
}
