/* The mixed cache's low-tier records per kind: widths per layer and per KV
 * head (layer-bits: each (layer, KV head) gives exactly the outputs of a
 * uniform cache of its widths), and which records take clipped ranges
 * (clip=values). (test_kv_mixed.c has the rest of the cache's tests.) */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_quant.h"
#include "kv_mixed.h"
#include "kv_policy.h"
#include "kv_mixed_util.h"
#include "quant.h"

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

/* x through the FP16 high tier (what demotion re-encodes), then encoded
 * with the clip floor given (1: min-max) and decoded. */
static void through(const float *x, int bits, float floor, float *y) {
    float h[64];
    uint8_t rec[256] = {0};
    for (int i = 0; i < 64; i++) h[i] = kq_fp16_to_fp32(kq_fp32_to_fp16(x[i]));
    kvq_encode_clip(h, 64, bits, 16, floor, rec);
    kvq_decode(rec, 64, bits, 16, y);
}

/* Layer L's low tokens (KV head 0) against their inputs encoded by the
 * rules given: 4-bit keys with floor kf, 2-bit values with floor vf, bit
 * for bit. Counts the tokens where the rules kf2 / vf2 would have given
 * other records (so a test can show its rules are told apart). */
static void check_low(kv_cache *c, const seqdata *d, int L, float kf, float vf, float kf2, float vf2,
                      int *kdiff, int *vdiff) {
    kv_mixed_head hi;
    cr_assert_eq(kv_mixed_head_info(c, 0, L, 0, &hi), 0);
    cr_assert_gt(hi.n_low, 100);
    for (int i = 0; i < hi.n_low; i++) {
        float k[64], v[64], want[64], other[64];
        kv_mixed_tok t = {.k = k, .v = v};
        cr_assert_eq(kv_mixed_token(c, 0, L, 0, 1, i, &t), 0);
        through(Kat(d, L, t.pos), 4, kf, want);
        through(Kat(d, L, t.pos), 4, kf2, other);
        cr_assert_eq(memcmp(k, want, sizeof k), 0, "layer %d token %d: the key is not encoded with floor %g", L,
                     t.pos, kf);
        *kdiff += memcmp(want, other, sizeof want) != 0;
        through(Vat(d, L, t.pos), 2, vf, want);
        through(Vat(d, L, t.pos), 2, vf2, other);
        cr_assert_eq(memcmp(v, want, sizeof v), 0, "layer %d token %d: the value is not encoded with floor %g", L,
                     t.pos, vf);
        *vdiff += memcmp(want, other, sizeof want) != 0;
    }
}

/* A cache of spec over one sequence of N tokens (a prompt chunk, then
 * decode steps), most of them demoted by the time it returns. */
static kv_cache *filled(const kv_shape *s, const seqdata *d, const char *spec, int N) {
    kv_cache *c = make(s, spec);
    float *out = calloc((size_t)N * s->n_layers * s->n_heads * s->head_dim, sizeof(float));
    step(c, d, 0, 0, 100, out);
    for (int p = 100; p < N; p++) step(c, d, 0, p, 1, out);
    free(out);
    return c;
}

/* clip=values: every low value record takes the least-squares range and
 * every low key record the min-max one. Unrotated and unbalanced under an
 * FP16 high tier, a low record is the encoding of the fp16-rounded input,
 * so each decoded low token must equal, bit for bit, that input encoded by
 * the rule of its kind; and on these inputs the two rules differ for some
 * keys and some values (else swapped rules could pass). */
Test(kv_mixed, clip_values_clips_values_only) {
    kv_shape s = {.n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .head_dim = 64, .max_seqs = 1,
                  .max_ctx = 200, .n_threads = 2};
    const int N = 160;
    seqdata d = make_seq(N, 1, 2, 64, 1, 5);
    kv_cache *c = filled(&s, &d, "quant4,lo-bits=4/2,group=16,key-balance=0,clip=values", N);
    int kdiff = 0, vdiff = 0;
    check_low(c, &d, 0, 1.0f, KVQ_CLIP_FULL, KVQ_CLIP_FULL, 1.0f, &kdiff, &vdiff);
    cr_assert(kdiff > 0 && vdiff > 0, "the rules differ on %d keys, %d values", kdiff, vdiff);
    kv_destroy(c);
    free_seq(&d);
}

/* clip-floor per layer: layer 0 min-max (floor 1), layer 1 floor 0.8, layer
 * 2 no entry (the full search, 0.5); each layer's values must be encoded
 * by its own floor, and on these inputs the neighbouring floors give other
 * records for some values (else a floor applied to the wrong layer, or not
 * at all, could pass). With clip=1 the keys take the same floors. */
Test(kv_mixed, clip_floor_per_layer) {
    kv_shape s = {.n_layers = 3, .n_heads = 2, .n_kv_heads = 1, .head_dim = 64, .max_seqs = 1,
                  .max_ctx = 200, .n_threads = 2};
    const int N = 160;
    /* the floor each layer's records must show, and one that would give
     * other records for some of them (4-bit keys rarely shrink below 0.8,
     * so theirs is compared with min-max) */
    const float fl[3] = {1.0f, 0.8f, KVQ_CLIP_FULL}, other[3] = {0.8f, KVQ_CLIP_FULL, 0.8f},
                kother[3] = {0.8f, 1.0f, 1.0f};
    seqdata d = make_seq(N, 1, 2, 64, 3, 6);
    for (int all = 0; all < 2; all++) {
        kv_cache *c = filled(&s, &d, all ? "quant4,lo-bits=4/2,group=16,key-balance=0,clip=1,clip-floor=0:1+1:0.8"
                                         : "quant4,lo-bits=4/2,group=16,key-balance=0,clip=values,clip-floor=0:1+1-1:0.8",
                             N);
        for (int L = 0; L < 3; L++) {
            int kdiff = 0, vdiff = 0;
            check_low(c, &d, L, all ? fl[L] : 1.0f, fl[L], all ? kother[L] : 1.0f, other[L], &kdiff, &vdiff);
            cr_assert(vdiff > 0, "layer %d: floors %g and %g agree on every value", L, fl[L], other[L]);
            if (all) cr_assert(kdiff > 0, "layer %d: floors %g and %g agree on every key", L, fl[L], kother[L]);
        }
        kv_destroy(c);
    }
    free_seq(&d);
}
