/* kv_mirror (the GPU mixed cache's host-side counts) against the CPU mixed
 * cache, and C emulations of the GPU kernels' index arithmetic
 * (kernels/cuda/kv_mixed.cu) against cache/kv_quant.c and kvt_pick: these
 * run without a GPU, so the layouts the kernels rely on are checked here. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_layout.h"
#include "kv_mirror.h"
#include "kv_mixed.h"
#include "kv_tier.h"
#include "kv_policy.h"
#include "kv_quant.h"
#include "kv_tracker.h"
#include "pverr.h"
#include "quant.h"

static float frand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return ((*s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

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
    const char *specs[] = {"scissorhands", "mikv", "h2o", "streaming", "quant4", "quant2",
                           "mikv,budget=30,chunk=1", "h2o,lo-bits=4,budget=0.5,chunk=8",
                           "scissorhands,window=6,budget=0.2,sinks=0,recent=3",
                           "streaming,budget=0,recent=5,sinks=2", "mikv,key-balance=0",
                           "mikv,budget=0.9,chunk=0.9"};
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

/* ---- the GPU quantizer (mx_encode_warp's loop order) vs kvq_encode ----
 * The kernel computes per group scale/zero/1/scale first, then each output
 * byte from its 8/bits channels (c = j + m*nb), and writes codes and the
 * (scale | zero << 16) u32s to separate arrays. */
static void emu_encode(const float *x, int hd, int bits, int group, uint8_t *codes, uint32_t *sz) {
    const int ng = hd / group, nb = hd * bits / 8, qmax = (1 << bits) - 1;
    float zf[64], inv[64];
    for (int g = 0; g < ng; g++) {
        const float *xg = x + g * group;
        float mn = xg[0], mx = xg[0];
        for (int i = 1; i < group; i++) {
            if (xg[i] < mn) mn = xg[i];
            if (xg[i] > mx) mx = xg[i];
        }
        float r = (mx - mn) / (float)qmax;
        r = fminf(fmaxf(r, -65504.f), 65504.f);
        float mnc = fminf(fmaxf(mn, -65504.f), 65504.f);
        uint16_t hs = kq_fp32_to_fp16(r), hz = kq_fp32_to_fp16(mnc);
        float sf = kq_fp16_to_fp32(hs);
        zf[g] = kq_fp16_to_fp32(hz);
        inv[g] = sf > 0.f ? 1.0f / sf : 0.f;
        sz[g] = (uint32_t)hs | (uint32_t)hz << 16;
    }
    for (int j = 0; j < nb; j++) {
        unsigned byte = 0;
        for (int m = 0; m < 8 / bits; m++) {
            int ch = j + m * nb, g = ch / group, q = 0;
            if (inv[g] > 0.f) q = (int)rintf((x[ch] - zf[g]) * inv[g]);
            q = q < 0 ? 0 : q > qmax ? qmax : q;
            byte |= (unsigned)q << (bits * m);
        }
        codes[j] = (uint8_t)byte;
    }
}

/* mx_deq8: channels c0..c0+7 from one 8-byte load at c0 % nb under one shift */
static void emu_deq8(const uint8_t *codes, const uint32_t *sz, int hd, int bits, int group, int c0,
                     float *f) {
    const int nb = hd * bits / 8, sh = bits * (c0 / nb);
    uint64_t w;
    memcpy(&w, codes + c0 % nb, 8);
    uint32_t m = sz[c0 / group];
    float s = kq_fp16_to_fp32((uint16_t)(m & 0xffff)), z = kq_fp16_to_fp32((uint16_t)(m >> 16));
    for (int i = 0; i < 8; i++) f[i] = (float)((w >> (8 * i + sh)) & ((1u << bits) - 1)) * s + z;
}

Test(kv_mirror, gpu_quantizer_layout_matches_kv_quant) {
    unsigned seed = 3;
    const int hds[] = {64, 128, 256}, groups[] = {8, 32, 64, 128}, bitss[] = {2, 4};
    float x[256], a[256], b[256];
    uint8_t rec[1024], codes[256];
    uint32_t sz[64];
    for (int hi = 0; hi < 3; hi++)
        for (int gi = 0; gi < 4; gi++)
            for (int bi = 0; bi < 2; bi++) {
                int hd = hds[hi], group = groups[gi], bits = bitss[bi];
                if (group > hd) continue;
                for (int trial = 0; trial < 40; trial++) {
                    float amp = trial % 5 == 0 ? 1e-3f : trial % 5 == 1 ? 300.f : 2.f;
                    for (int i = 0; i < hd; i++) x[i] = amp * frand(&seed);
                    if (trial % 7 == 0) /* a constant group: scale 0 */
                        for (int i = 0; i < group; i++) x[i] = 0.5f;
                    kvq_encode(x, hd, bits, group, rec);
                    emu_encode(x, hd, bits, group, codes, sz);
                    size_t nb = (size_t)hd * bits / 8;
                    cr_assert_eq(kvl_rec_bytes(bits, hd, group), nb + 4 * (size_t)(hd / group));
                    cr_assert(!memcmp(rec, codes, nb), "codes differ hd %d g %d b %d", hd, group, bits);
                    cr_assert(!memcmp(rec + nb, sz, 4 * (size_t)(hd / group)), "scale/zero differ");
                    kvq_decode(rec, hd, bits, group, a);
                    for (int c0 = 0; c0 < hd; c0 += 8) emu_deq8(codes, sz, hd, bits, group, c0, b + c0);
                    cr_assert(!memcmp(a, b, sizeof(float) * hd), "decode differs hd %d g %d b %d",
                              hd, group, bits);
                }
            }
}

/* ---- the GPU demotion choice (rank among candidates, victims to the low
 * tier in slot order, stable compaction) vs kvt_pick + kv_mixed's loop ---- */
Test(kv_mirror, gpu_victim_choice_matches_kvt_pick) {
    unsigned seed = 11;
    int cand[400], vict[400], out[400], pos[400], dst[400];
    float score[400], csc[400];
    int32_t cpos[400];
    static unsigned char scratch[400 * 16];
    for (int trial = 0; trial < 300; trial++) {
        int nhi = 1 + trial % 300, sinks = trial % 4, len = nhi + trial % 50, recent = trial % 9;
        /* sorted distinct positions: sinks first, then a random increasing run */
        int p = 0;
        for (int t = 0; t < nhi; t++) {
            pos[t] = p;
            p += 1 + (frand(&seed) > 0.5f);
        }
        len = p + recent;
        for (int t = 0; t < nhi; t++) /* few distinct scores: many ties */
            score[t] = (float)(int)((frand(&seed) + 1) * (trial % 3 ? 3 : 50));
        int nc = 0;
        for (int t = 0; t < nhi; t++) {
            if (pos[t] < sinks || pos[t] >= len - recent) continue;
            cand[nc] = t, cpos[nc] = pos[t], csc[nc] = score[t], nc++;
        }
        int want = (int)((frand(&seed) + 1) * 0.5f * (nhi + 2));
        int k = kvt_pick(cand, csc, cpos, nc, want, vict, scratch);
        /* the kernel */
        int kk = want < nc ? want : nc, nlo = 5, nv = 0, victim[400];
        for (int t = 0; t < nhi; t++) {
            int isc = !(pos[t] < sinks || pos[t] >= len - recent), rank = 0;
            if (isc)
                for (int u = 0; u < nhi; u++) {
                    int uc = !(pos[u] < sinks || pos[u] >= len - recent);
                    rank += uc && (score[u] > score[t] || (score[u] == score[t] && pos[u] < pos[t]));
                }
            victim[t] = isc && rank < kk;
        }
        for (int t = 0; t < nhi; t++) dst[t] = victim[t] ? -1 - (nlo + nv++) : t - nv;
        cr_assert_eq(nv, k, "trial %d: %d victims vs kvt_pick %d", trial, nv, k);
        for (int i = 0, j = 0; i < nhi; i++)
            if (victim[i]) {
                cr_assert_eq(i, vict[j], "trial %d: victim %d", trial, j);
                cr_assert_eq(dst[i], -1 - (nlo + j)); /* low slots in slot order */
                j++;
            }
        /* compaction keeps the survivors in order */
        int w = 0;
        for (int t = 0; t < nhi; t++)
            if (!victim[t]) out[w++] = t;
        for (int i = 0; i < w; i++) cr_assert_eq(dst[out[i]], i);
    }
}
