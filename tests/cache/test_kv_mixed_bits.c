/* The mixed cache's low-tier widths per layer and per KV head (layer-bits):
 * each (layer, KV head) gives exactly the outputs of a uniform cache of its
 * widths. (test_kv_mixed.c has the rest of the cache's tests.) */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_mixed.h"
#include "kv_policy.h"
#include "kv_mixed_util.h"

/* Runs one sequence through a cache of each spec (prompt chunks, then
 * decode steps and more chunks): out[k] gets spec k's outputs, [layer][token]
 * [query head][dim]. Most tokens must end demoted (low; dropped for spec
 * `drops`, -1 for none) and the usage must equal what was allocated. */
static void run_specs(const kv_shape *s, const seqdata *d, const char *const *specs, int n,
                      int drops, float **out) {
    static const int chunks[] = {64, 64, 1, 1, 30, 1, 29};
    for (int k = 0; k < n; k++) {
        out[k] = calloc((size_t)d->L * d->N * d->nh * d->hd, sizeof(float));
        kv_cache *c = make(s, specs[k]);
        for (int i = 0, p = 0; i < 7; p += chunks[i++]) step(c, d, 0, p, chunks[i], out[k]);
        kv_usage u;
        kv_seq_usage(c, 0, &u);
        cr_assert_gt(k == drops ? u.n_dropped : u.n_low, 100, "%s: most tokens demoted", specs[k]);
        cr_assert_eq(u.bytes_stored, kv_mixed_allocated(c, 0), "%s: reported != allocated", specs[k]);
        kv_destroy(c);
    }
}

/* layer-bits: each layer computes exactly what a cache with that layer's
 * widths everywhere computes (same records, same kernels), through prompt
 * chunks (block kernel) and decode (run kernels); and the layers really
 * differ (a missing override would make layer 1 equal the uniform cache). */
Test(kv_mixed, layer_bits_give_each_layer_its_own_widths) {
    kv_shape s = {.n_layers = 4, .n_heads = 6, .n_kv_heads = 2, .head_dim = 64, .max_seqs = 1,
                  .max_ctx = 200, .n_threads = 2};
    const int N = 190, NL = 4;
    seqdata d = make_seq(N, 2, 6, 64, NL, 11);
    size_t per_layer = (size_t)N * 6 * 64;
    const char *specs[] = {"mikv,budget=24,layer-bits=1:2/4+2:4/4+3:8/4", "mikv,budget=24",
                           "mikv,budget=24,lo-bits=2/4", "mikv,budget=24,lo-bits=4",
                           "mikv,budget=24,lo-bits=8/4"};
    float *out[5];
    run_specs(&s, &d, specs, 5, -1, out);
    for (int l = 0; l < NL; l++) {
        const float *got = out[0] + l * per_layer, *want = out[1 + l] + l * per_layer;
        cr_assert_eq(memcmp(got, want, per_layer * sizeof(float)), 0, "layer %d", l);
        if (l) /* the default widths would give other outputs */
            cr_assert_neq(memcmp(got, out[1] + l * per_layer, per_layer * sizeof(float)), 0,
                          "layer %d ran the default widths", l);
    }
    for (int k = 0; k < 5; k++) free(out[k]);
    free_seq(&d);
}

/* Widths per KV head (layer-bits "L.H:K/V"): each (layer, KV head)'s query
 * heads see exactly what a uniform cache of that head's widths gives them
 * (the tier rules and kernels of a head read nothing of its neighbours). */
Test(kv_mixed, head_bits_give_each_head_its_own_widths) {
    kv_shape s = {.n_layers = 4, .n_heads = 6, .n_kv_heads = 2, .head_dim = 64, .max_seqs = 1,
                  .max_ctx = 200, .n_threads = 2};
    const int N = 190, NL = 4, NH = 6, G = 3, HD = 64;
    seqdata d = make_seq(N, 2, NH, HD, NL, 12);
    /* widths of (layer, KV head) in the first spec, as indices of specs[] */
    /* (layer 0's KV head 1 drops what it demotes: width 0, like lo-bits=0) */
    const char *specs[] = {"mikv,budget=24,layer-bits=1.1:2/4+2.0:8/4+3:4/4+3.1:2+0.1:0",
                           "mikv,budget=24", "mikv,budget=24,lo-bits=2/4",
                           "mikv,budget=24,lo-bits=8/4", "mikv,budget=24,lo-bits=4",
                           "mikv,budget=24,lo-bits=2", "mikv,budget=24,lo-bits=0"};
    const int want_of[4][2] = {{1, 6}, {1, 2}, {3, 1}, {4, 5}};
    float *out[7];
    run_specs(&s, &d, specs, 7, 6, out);
    for (int l = 0; l < NL; l++)
        for (int h = 0; h < 2; h++) {
            int w = want_of[l][h], same = 1, dflt = 1;
            for (int t = 0; t < N; t++) {
                size_t o = (((size_t)l * N + t) * NH + (size_t)h * G) * HD, n = (size_t)G * HD;
                same &= !memcmp(out[0] + o, out[w] + o, n * sizeof(float));
                dflt &= !memcmp(out[0] + o, out[1] + o, n * sizeof(float));
            }
            cr_assert(same, "layer %d KV head %d: not the outputs of %s", l, h, specs[w]);
            if (w != 1) cr_assert(!dflt, "layer %d KV head %d ran the default widths", l, h);
        }
    for (int k = 0; k < 7; k++) free(out[k]);
    free_seq(&d);
}
