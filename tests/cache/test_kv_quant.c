/* Low-bit records: round-trip error within the format's bound, SIMD and
 * portable kernels against float64 over the decoded records, and MiKV key
 * balancing (factors, Q·Kᵀ invariance, and what it buys at INT2). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_layout.h"
#include "kv_mixed.h"
#include "kv_policy.h"
#include "kv_quant.h"
#include "kv_mixed_blk.h"
#include "quant.h"
#include "../test_rand.h"

/* The mikv preset before 2026-12-02 (FP16 high tier, INT4 keys + INT2
 * values, fp16 scales, no rotation or clipping): what these tests were
 * written against; the current preset appears by name where a test covers
 * every preset. */
#define MIKV0 "mikv,hi-bits=16,lo-bits=4/2,rotate=0,clip=0,scale-bits=16"

Test(kv_quant, round_trip_within_format_bound) {
    unsigned r = 1;
    int bits[] = {8, 4, 3, 2}, groups[] = {8, 32, 64};
    float x[64], y[64];
    uint8_t rec[256];
    for (int bi = 0; bi < 4; bi++)
        for (int gi = 0; gi < 3; gi++)
            for (int trial = 0; trial < 200; trial++) {
                int b = bits[bi], G = groups[gi], d = 64;
                float off = trial % 3 == 0 ? 30.0f * frand(&r) : 0.0f;
                for (int i = 0; i < d; i++)
                    x[i] = off + frand(&r) * (trial % 5 == 0 && i == 7 ? 50.0f : 2.0f);
                if (trial == 1)
                    for (int i = 0; i < d; i++) x[i] = 0.5f; /* flat group: exact */
                kvq_encode(x, d, b, G, rec);
                kvq_decode(rec, d, b, G, y);
                double worst_ratio = 0;
                for (int g = 0; g < d / G; g++) {
                    double mn = x[g * G], mx = x[g * G];
                    for (int i = 1; i < G; i++) {
                        mn = fmin(mn, x[g * G + i]);
                        mx = fmax(mx, x[g * G + i]);
                    }
                    double s = (mx - mn) / ((1 << b) - 1);
                    /* half a step, plus the fp16 rounding of zero (relative
                     * 2^-11) and of the scale carried over 2^b-1 steps */
                    double bound = s / 2 * (1 + 1e-3) + fabs(mn) * 0x1p-11 +
                                   ((1 << b) - 1) * s * 0x1p-11 + 1e-7;
                    for (int i = 0; i < G; i++) {
                        double e = fabs((double)y[g * G + i] - x[g * G + i]);
                        cr_assert(e <= bound, "bits %d group %d: |%g - %g| = %g > %g", b, G,
                                  y[g * G + i], x[g * G + i], e, bound);
                        if (s > 0) worst_ratio = fmax(worst_ratio, e / s);
                    }
                }
                if (trial == 1)
                    for (int i = 0; i < d; i++) cr_assert_eq(y[i], 0.5f);
                /* round to nearest, not truncation: errors reach ~half a step */
                if (trial == 7) cr_assert(worst_ratio > 0.3 && worst_ratio <= 0.51, "%g", worst_ratio);
            }
    /* FP16 records are exactly fp16 rounding. */
    for (int i = 0; i < 64; i++) x[i] = 100 * frand(&r);
    kvq_encode(x, 64, 16, 32, rec);
    kvq_decode(rec, 64, 16, 32, y);
    for (int i = 0; i < 64; i++) cr_assert_eq(y[i], kq_fp16_to_fp32(kq_fp32_to_fp16(x[i])));
}

/* scale-bits=8 (KVQ_SZ8): the record is two bytes a group shorter, the
 * scale byte the smallest at least the range (0 included) over 2^b - 1 -
 * 2^(b-8) steps, the grid covers the range, so every value is within half
 * a step; and a step is at most 1/16 coarser than that bound. */
Test(kv_quant, two_byte_scales_cover_the_range_within_half_a_step) {
    unsigned r = 9;
    const int bits[] = {8, 4, 3, 2}, groups[] = {8, 32, 64};
    float x[64], y[64];
    uint8_t rec[256];
    for (int bi = 0; bi < 4; bi++)
        for (int gi = 0; gi < 3; gi++) {
            const int b = bits[bi], G = groups[gi], d = 64, L = (1 << b) - 1;
            const size_t nb = (size_t)d * b / 8;
            cr_assert_eq(kvl_rec_bytes(b, d, G | KVQ_SZ8), nb + 2 * (size_t)(d / G));
            cr_assert_eq(kvl_rec_bytes(b, d, G), nb + 4 * (size_t)(d / G));
            double worst_ratio = 0;
            for (int trial = 0; trial < 300; trial++) {
                /* centred, offset (all positive or all negative), an outlier, tiny */
                float off = trial % 3 == 0 ? 30.0f * frand(&r) : 0.0f;
                float mag = trial % 7 == 0 ? 1e-4f : 2.0f;
                for (int i = 0; i < d; i++) x[i] = off + frand(&r) * (trial % 5 == 0 && i == 7 ? 25 * mag : mag);
                kvq_encode(x, d, b, G | KVQ_SZ8, rec);
                kvq_decode(rec, d, b, G | KVQ_SZ8, y);
                for (int g = 0; g < d / G; g++) {
                    double lo = 0, hi = 0;
                    for (int i = 0; i < G; i++) lo = fmin(lo, x[g * G + i]), hi = fmax(hi, x[g * G + i]);
                    const uint8_t *side = rec + nb + 2 * g;
                    const double s = kvq_s8(side[0]), step = kvq_z8_step(b), z = -side[1] * s * step;
                    const double need = (hi - lo) / (L - step);
                    cr_assert(s >= need * (1 - 1e-6), "bits %d G %d: scale %g below %g", b, G, s, need);
                    cr_assert(s <= fmax(need * 17 / 16, kvq_s8(0)) * (1 + 1e-6), "bits %d G %d: scale %g, need %g", b, G, s, need);
                    cr_assert(z <= lo + 1e-6 * s && z + L * s >= hi - 1e-6 * s, "bits %d G %d: [%g, %g] misses [%g, %g]",
                              b, G, z, z + L * s, lo, hi);
                    for (int i = 0; i < G; i++) {
                        const double e = fabs((double)y[g * G + i] - x[g * G + i]);
                        cr_assert(e <= s / 2 * (1 + 1e-5) + 1e-7, "bits %d G %d: |%g - %g| = %g, step %g", b, G,
                                  y[g * G + i], x[g * G + i], e, s);
                        worst_ratio = fmax(worst_ratio, e / s);
                    }
                }
            }
            /* round to nearest, not truncation: errors reach ~half a step */
            cr_assert(worst_ratio > 0.3 && worst_ratio <= 0.5 + 1e-5, "bits %d G %d: %g", b, G, worst_ratio);
        }
    /* Past the largest scale (31) the codes saturate and stay finite. */
    for (int i = 0; i < 64; i++) x[i] = 1e5f * frand(&r);
    kvq_encode(x, 64, 2, 64 | KVQ_SZ8, rec);
    kvq_decode(rec, 64, 2, 64 | KVQ_SZ8, y);
    cr_assert_eq(rec[16], 255);
    for (int i = 0; i < 64; i++) cr_assert(isfinite(y[i]) && fabs(y[i]) <= 2 * 3 * 31.0f + 1);
}

Test(kv_quant, kernels_match_float64_over_decoded_records) {
    unsigned r = 3;
    int bits[] = {16, 8, 4, 3, 2};
    float x[64], dec[64], q[5 * 64], out[5], acc[5 * 64], acc2[5 * 64], a[5];
    uint8_t rec[256];
    for (int bi = 0; bi < 5; bi++)
        for (int G = 8; G <= 64; G *= 2)
            for (int gq = 1; gq <= 5; gq++)
                for (int simd = 0; simd < 4; simd++) { /* portable, AVX2; x2: KVQ_SZ8 */
                    const int F = G | (simd >= 2 && bits[bi] != 16 ? KVQ_SZ8 : 0);
                    kvq_kernels k;
                    kvq_kernels_for(bits[bi], 64, F, simd % 2 == 0, &k);
                    if (simd % 2 && !k.simd) continue; /* CPU without AVX2 */
                    for (int i = 0; i < 64; i++) x[i] = 3 * frand(&r);
                    for (int i = 0; i < gq * 64; i++) q[i] = frand(&r), acc[i] = acc2[i] = frand(&r);
                    for (int g = 0; g < gq; g++) a[g] = frand(&r);
                    kvq_encode(x, 64, bits[bi], F, rec);
                    kvq_decode(rec, 64, bits[bi], F, dec);
                    k.dot(rec, q, gq, 64, F, out);
                    k.axpy(rec, a, gq, 64, F, acc);
                    for (int g = 0; g < gq; g++) {
                        double ref = 0, mag = 0;
                        for (int i = 0; i < 64; i++) {
                            ref += (double)q[g * 64 + i] * dec[i];
                            mag += fabs((double)q[g * 64 + i] * dec[i]);
                        }
                        cr_assert(fabs(out[g] - ref) <= 1e-5 * mag + 1e-6,
                                  "bits %d G %d gq %d simd %d: %g vs %g", bits[bi], G, gq, simd,
                                  out[g], ref);
                        for (int i = 0; i < 64; i++) {
                            double want = acc2[g * 64 + i] + (double)a[g] * dec[i];
                            cr_assert(fabs(acc[g * 64 + i] - want) <= 1e-5 * (1 + fabs(want)));
                        }
                    }
                }
}

/* Run kernels (a page of records at once) against float64. */
/* The 3-bit layout, byte by byte: codes 0..7 (channel c gets c % 8, one
 * group of 64 spanning 0..7, so scale 1 and zero 0) land as kv_quant.h
 * says: low two bits in the 2-bit planes (channel c in byte c % 16 at bit
 * 2·(c / 16)), the third bit in a mask (byte 16 + c / 8, bit c % 8). */
Test(kv_quant, three_bit_layout_and_round_trip) {
    float x[64], y[64];
    uint8_t rec[64] = {0};
    for (int c = 0; c < 64; c++) x[c] = (float)(c % 8);
    cr_assert_eq(kvl_rec_bytes(3, 64, 64), 24 + 4);
    kvq_encode(x, 64, 3, 64, rec);
    for (int j = 0; j < 16; j++) {
        int want = 0;
        for (int pl = 0; pl < 4; pl++) want |= (((j + 16 * pl) % 8) & 3) << (2 * pl);
        cr_assert_eq(rec[j], want, "2-bit plane byte %d: %#x, want %#x", j, rec[j], want);
    }
    for (int b = 0; b < 8; b++) /* channels 8b..8b+7 hold 0..7: bit 2 set for 4..7 */
        cr_assert_eq(rec[16 + b], 0xF0, "high-bit byte %d: %#x", b, rec[16 + b]);
    for (int c = 0; c < 64; c++) cr_assert_eq(kvq_code(rec, 64, 3, c), c % 8, "channel %d", c);
    kvq_decode(rec, 64, 3, 64, y);
    for (int c = 0; c < 64; c++) cr_assert_eq(y[c], x[c], "channel %d: %g", c, y[c]);
}

/* clip = 1 picks, per group, the least-squares range among shrunk ones and
 * the full one: never worse than min-max on any group, and clearly better
 * at 2 and 3 bits on Gaussian-like groups (what rotated keys look like). */
Test(kv_quant, clipped_ranges_lower_the_squared_error) {
    unsigned r = 3;
    float x[64], y[64], z[64];
    uint8_t rec[64];
    int bits[] = {2, 3, 4};
    double gain[3];
    for (int bi = 0; bi < 3; bi++) {
        double e_mm = 0, e_cl = 0;
        for (int trial = 0; trial < 300; trial++) {
            for (int i = 0; i < 64; i++) { /* ~N(0,1): sum of 4 uniforms, scaled */
                float u = 0;
                for (int k = 0; k < 4; k++) u += frand(&r);
                x[i] = u * 0.866f + (trial % 7 == 0 ? 3.0f : 0.0f);
            }
            kvq_encode(x, 64, bits[bi], 32, rec);
            kvq_decode(rec, 64, bits[bi], 32, y);
            kvq_encode_clip(x, 64, bits[bi], 32, KVQ_CLIP_FULL, rec);
            kvq_decode(rec, 64, bits[bi], 32, z);
            for (int g = 0; g < 2; g++) {
                double a = 0, b = 0;
                for (int i = 32 * g; i < 32 * g + 32; i++) {
                    a += (double)(x[i] - y[i]) * (x[i] - y[i]);
                    b += (double)(x[i] - z[i]) * (x[i] - z[i]);
                }
                cr_assert(b <= a * (1 + 1e-6) + 1e-12, "bits %d: clipped %g > min-max %g", bits[bi], b, a);
                e_mm += a;
                e_cl += b;
            }
        }
        gain[bi] = 1 - e_cl / e_mm;
    }
    cr_assert(gain[0] > 0.2, "2-bit: clipping saved only %.0f%%", 100 * gain[0]);
    cr_assert(gain[1] > 0.05, "3-bit: clipping saved only %.0f%%", 100 * gain[1]);
    cr_assert(gain[2] >= 0, "4-bit: %g", gain[2]);
}

/* The floor bounds the search: floor 1 is min-max (kvq_encode, byte for
 * byte); the candidate sets nest, so the squared error can only fall as the
 * floor falls (1 >= 0.8 >= 0.5); and with floor 0.8 no group's decoded
 * range (the codes' span, scale x (2^bits - 1), fp16 scales) is narrower
 * than 0.8 of its min-max range, while the full search does go narrower
 * on these 2-bit groups (else the bound would be tested on nothing). */
Test(kv_quant, clip_floor_bounds_the_range) {
    unsigned r = 5;
    float x[64], y[64];
    uint8_t rec[3][64], mm[64];
    const float fl[3] = {1.0f, 0.8f, KVQ_CLIP_FULL};
    int narrow = 0;
    for (int trial = 0; trial < 200; trial++) {
        for (int i = 0; i < 64; i++) {
            float u = 0;
            for (int k = 0; k < 4; k++) u += frand(&r);
            x[i] = u * 0.866f;
        }
        const int bits = trial % 2 ? 2 : 3, nb = 64 * bits / 8;
        double err[3];
        kvq_encode(x, 64, bits, 32, mm);
        for (int f = 0; f < 3; f++) {
            memset(rec[f], 0, sizeof rec[f]);
            kvq_encode_clip(x, 64, bits, 32, fl[f], rec[f]);
            kvq_decode(rec[f], 64, bits, 32, y);
            err[f] = 0;
            for (int i = 0; i < 64; i++) err[f] += (double)(x[i] - y[i]) * (x[i] - y[i]);
            for (int g = 0; g < 2; g++) {
                float mn = x[32 * g], mx = x[32 * g];
                for (int i = 32 * g; i < 32 * g + 32; i++) mn = x[i] < mn ? x[i] : mn, mx = x[i] > mx ? x[i] : mx;
                uint16_t hs;
                memcpy(&hs, rec[f] + nb + 4 * g, 2); /* fp16 scale, then zero */
                const float span = kq_fp16_to_fp32(hs) * (float)((1 << bits) - 1), want = fl[f] * (mx - mn);
                if (f == 1) cr_assert(span >= want * 0.995f, "trial %d group %d: span %g < 0.8 x %g", trial, g, span, mx - mn);
                if (f == 2) narrow += span < 0.79f * (mx - mn);
            }
        }
        cr_assert_eq(memcmp(rec[0], mm, (size_t)nb + 8), 0, "trial %d: floor 1 is not min-max", trial);
        cr_assert(err[1] <= err[0] && err[2] <= err[1], "trial %d: errors %g %g %g do not fall with the floor",
                  trial, err[0], err[1], err[2]);
    }
    cr_assert_gt(narrow, 20, "the full search went below 0.8 on only %d groups", narrow);
}

/* Every run kernel against float64 sums of the decoded records: bit widths,
 * groups, head_dim 64 and 128 (the AVX-512 kernels have copies for both),
 * and runs that end mid-block (23 tokens: the 16-token blocks' tail). */
Test(kv_quant, run_kernels_match_float64) {
    unsigned r = 11;
    enum { NT = 32, MD = 128, GQ = 3 };
    int bits[] = {16, 8, 4, 3, 2}, groups[] = {16, 32, 64, 128}, dims[] = {64, 128}, runs[] = {NT, 23};
    static uint8_t recs[NT * 512];
    static float dec[NT][MD], q[GQ * MD], sc[GQ * NT], a[GQ * NT], out[GQ * MD], out0[GQ * MD];
    static char qmem[8192] __attribute__((aligned(32)));
    for (int di = 0; di < 2; di++)
        for (int bi = 0; bi < 5; bi++)
            for (int gi = 0; gi < 4; gi++)
                for (int simd = 0; simd < 6; simd++) /* portable, AVX2, AVX-512 run kernels; x2 side formats */
                    for (int ri = 0; ri < 2; ri++) {
                        int b = bits[bi], G = groups[gi], D = dims[di], n = runs[ri];
                        /* F: the format argument, KVQ_SZ8 in the second three */
                        const int F = G | (simd >= 3 ? KVQ_SZ8 : 0);
                        if (G > D || (simd >= 3 && b == 16)) continue;
                        size_t rec = kvl_rec_bytes(b, D, F);
                        kvq_kernels k;
                        kvq_kernels_for(b, D, F, simd % 3 == 0, &k);
                        if (simd % 3 == 2) {
                            kvq_dotn_fn dn = b == 16 ? NULL : kvq_avx512_dotn(b, D, F);
                            kvq_axpyn_fn an = b == 16 ? NULL : kvq_avx512_axpyn(b, D, F);
                            if (!dn && !an) continue; /* this CPU or shape has none */
                            if (dn) k.dotn = dn, k.wants_prep = 1;
                            if (an) k.axpyn = an;
                        }
                        for (int t = 0; t < NT; t++) {
                            float x[MD];
                            for (int i = 0; i < D; i++) x[i] = 2 * frand(&r) + (i == 3 ? 9 : 0);
                            kvq_encode(x, D, b, F, recs + t * rec);
                            kvq_decode(recs + t * rec, D, b, F, dec[t]);
                        }
                        for (int i = 0; i < GQ * D; i++) q[i] = frand(&r), out[i] = out0[i] = frand(&r);
                        for (int i = 0; i < GQ * NT; i++) a[i] = frand(&r) * 0.1f, sc[i] = 12345.0f;
                        kvq_qprep qp;
                        kvq_qprep_init(&qp, qmem, GQ, D, G);
                        kvq_prep(q, GQ, D, G, &qp);
                        k.dotn(recs, rec, n, q, &qp, GQ, D, F, sc, NT);
                        k.axpyn(recs, rec, n, a, NT, GQ, D, F, out);
                        for (int g = 0; g < GQ; g++) {
                            double qmax = 0;
                            for (int i = 0; i < D; i++) qmax = fmax(qmax, fabs(q[g * D + i]));
                            for (int t = 0; t < NT; t++) {
                                if (t >= n) { /* past the run: untouched */
                                    cr_assert_eq(sc[g * NT + t], 12345.0f, "D %d bits %d G %d simd %d: wrote past the run", D, b, G, simd);
                                    continue;
                                }
                                double ref = 0, kabs = 0;
                                for (int i = 0; i < D; i++) {
                                    ref += (double)q[g * D + i] * dec[t][i];
                                    kabs += fabs(dec[t][i]);
                                }
                                /* int16 query: half a step of qmax/32767 per channel */
                                double tol = (k.wants_prep ? 0.5 * qmax / 32767 * kabs : 0) + 1e-5 * kabs * qmax + 1e-6;
                                cr_assert(fabs(sc[g * NT + t] - ref) <= tol, "D %d n %d bits %d G %d simd %d: %g vs %g",
                                          D, n, b, G, simd, sc[g * NT + t], ref);
                            }
                            for (int i = 0; i < D; i++) {
                                double want = out0[g * D + i], wq = 0;
                                for (int t = 0; t < n; t++) {
                                    want += (double)a[g * NT + t] * dec[t][i];
                                    /* the AVX-512 kernel's int16 weights a·s: half a step of
                                     * max |a·s| / 32767 per token and code (s = the group's
                                     * decoded range / levels, codes <= levels) */
                                    double lo = INFINITY, hi = -INFINITY;
                                    for (int c = i / G * G; c < (i / G + 1) * G; c++)
                                        lo = fmin(lo, dec[t][c]), hi = fmax(hi, dec[t][c]);
                                    wq = fmax(wq, fabs(a[g * NT + t]) * (hi - lo));
                                }
                                double tol = 1e-5 * (1 + fabs(want)) + (simd % 3 == 2 ? 0.5 * n * wq / 32767 * 1.01 : 0);
                                cr_assert(fabs(out[g * D + i] - want) <= tol,
                                          "axpyn D %d n %d bits %d G %d simd %d: %g vs %g", D, n, b, G, simd,
                                          out[g * D + i], want);
                            }
                        }
                    }
}

/* Keys with an outlier channel (3) and queries with a large channel (5). */
static void balance_run(int key_balance, double *score_err, float *b_out, double *b_want) {
    enum { N = 48, HD = 64, GQ = 3 };
    kv_shape s = {.n_layers = 1, .n_heads = GQ, .n_kv_heads = 1, .head_dim = HD, .max_seqs = 1,
                  .max_ctx = N, .n_threads = 1};
    kv_policy p;
    char err[200];
    cr_assert_eq(kv_policy_parse(key_balance ? MIKV0 ",budget=8,recent=4,sinks=0,chunk=1"
                                             : MIKV0 ",budget=8,recent=4,sinks=0,chunk=1,key-balance=0",
                                 &p, err, sizeof err), 0, "%s", err);
    kv_cache *c;
    cr_assert_eq(kv_create(&s, &p, &c, err, sizeof err), 0);
    static float K[N * HD], V[N * HD], Q[N * GQ * HD], O[N * GQ * HD];
    unsigned r = 42;
    for (int i = 0; i < N * HD; i++) {
        K[i] = frand(&r) + (i % HD == 3 ? 20.0f : 0.0f);
        V[i] = frand(&r);
    }
    for (int i = 0; i < N * GQ * HD; i++) Q[i] = frand(&r) * (i % HD == 5 ? 6.0f : 1.0f);
    cr_assert_eq(kv_store(c, 0, 0, 0, N, K, V), 0);
    cr_assert_eq(kv_attend_group(c, 0, 0, 0, 0, N, Q, O, 0), 0);
    kv_mixed_head info;
    kv_mixed_head_info(c, 0, 0, 0, &info);
    cr_assert_eq(info.n_low, N - 8); /* budget + 1 - chunk stay high */
    cr_assert_eq(info.balanced, key_balance);
    float b[HD], kd[HD];
    kv_mixed_balance(c, 0, 0, 0, b);
    for (int ch = 0; ch < HD; ch++) {
        double qm = 0, km = 0;
        for (int i = 0; i < N * GQ; i++) qm = fmax(qm, fabs(Q[i * HD + ch]));
        for (int t = 0; t < N; t++) km = fmax(km, fabs(K[t * HD + ch]));
        b_want[ch] = key_balance ? sqrt(qm / km) : 1.0;
        b_out[ch] = b[ch];
    }
    /* Score error of the INT2 keys against the exact q·k, probing with the
     * last query of every head. */
    double err_sum = 0;
    for (int t = 0; t < info.n_low; t++) {
        kv_mixed_tok tk = {.k = kd};
        kv_mixed_token(c, 0, 0, 0, 1, t, &tk);
        for (int g = 0; g < GQ; g++) {
            const float *qv = Q + ((size_t)(N - 1) * GQ + g) * HD;
            double exact = 0, got = 0;
            for (int ch = 0; ch < HD; ch++) {
                exact += (double)qv[ch] * K[tk.pos * HD + ch];
                got += (double)(qv[ch] / b[ch]) * kd[ch];
            }
            err_sum += fabs(got - exact);
        }
    }
    *score_err = err_sum / (info.n_low * GQ);
    kv_destroy(c);
}

Test(kv_quant, key_balancing_factors_invariance_and_benefit) {
    float b[64];
    double want[64], err_bal, err_raw;
    balance_run(1, &err_bal, b, want);
    for (int ch = 0; ch < 64; ch++)
        cr_assert(fabs(b[ch] - want[ch]) <= 1e-6 * want[ch], "b[%d] %g want %g", ch, b[ch], want[ch]);
    cr_assert(b[3] < 0.5f && b[5] > 1.5f); /* the outlier moved into the query */
    /* Q/b · K·b equals Q·K within fp32 rounding. */
    unsigned r = 9;
    for (int trial = 0; trial < 100; trial++) {
        float q[64], k[64];
        double exact = 0, mag = 0;
        float bal = 0;
        for (int ch = 0; ch < 64; ch++) {
            q[ch] = 4 * frand(&r);
            k[ch] = 4 * frand(&r) + (ch == 3 ? 20 : 0);
            exact += (double)q[ch] * k[ch];
            mag += fabs((double)q[ch] * k[ch]);
            bal += (q[ch] / b[ch]) * (k[ch] * b[ch]);
        }
        cr_assert(fabs(bal - exact) <= 64 * 0x1p-23 * 4 * mag, "%g vs %g", bal, exact);
    }
    double dummy[64];
    balance_run(0, &err_raw, b, dummy);
    for (int ch = 0; ch < 64; ch++) cr_assert_eq(b[ch], 1.0f);
    cr_assert(err_bal < 0.7 * err_raw, "balanced INT2 score error %g vs unbalanced %g", err_bal,
              err_raw);
}

/* The AVX-512 decode kernels sum a group's code x int16-query products in
 * int32: 8-bit codes (<= 255) times |q16| <= 32767 overflow past 257
 * channels, so such shapes must fall back to the AVX2 kernels; worst-case
 * inputs at the largest accepted group must still be exact. */
Test(kv_quant, avx512_dotn_refuses_overflowing_groups) {
    if (!__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vl") ||
        !__builtin_cpu_supports("avx512vnni"))
        cr_skip_test("no AVX-512 VNNI here");
    cr_assert_null(kvq_avx512_dotn(8, 512, 512));
    cr_assert_null(kvq_avx512_dotn(8, 320, 320));
    cr_assert_not_null(kvq_avx512_dotn(4, 512, 512), "4-bit codes cannot overflow");
    kvq_dotn_fn dn = kvq_avx512_dotn(8, 256, 256);
    cr_assert_not_null(dn);
    const int d = 256, g = 256;
    size_t rb = kvl_rec_bytes(8, d, g);
    uint8_t *rec = malloc(rb);
    float *x = malloc(sizeof(float) * d), *q = malloc(sizeof(float) * d);
    for (int i = 0; i < d; i++) x[i] = i % 2 ? 1.0f : 0.0f; /* codes 255 and 0 */
    for (int i = 0; i < d; i++) q[i] = 1.0f;               /* q16 = 32767 everywhere */
    kvq_encode(x, d, 8, g, rec);
    float dec[256];
    kvq_decode(rec, d, 8, g, dec);
    double want = 0;
    for (int i = 0; i < d; i++) want += dec[i];
    void *mem = aligned_alloc(32, (kvq_qprep_bytes(1, d, g) + 31) & ~(size_t)31);
    kvq_qprep qp;
    kvq_qprep_init(&qp, mem, 1, d, g);
    kvq_prep(q, 1, d, g, &qp);
    float sc = 0;
    dn(rec, rb, 1, q, &qp, 1, d, g, &sc, 1);
    cr_assert(fabs(sc - want) <= 1e-3 * fabs(want), "got %g want %g", sc, want);
    free(mem), free(rec), free(x), free(q);
}

/* The AVX2 run kernels over every query-head count a pass splits (the
 * 3-bit axpyn takes 3 heads and 32 channels per pass; 4-bit dotn 4 heads),
 * head_dims whose last pass is partial, against float64 over the decoded
 * records. */
Test(kv_quant, avx2_run_kernels_any_group_size) {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return;
    unsigned r = 23;
    enum { NT = 37, MAXD = 128, MAXGQ = 7 };
    static uint8_t recs[NT * 192]; /* kvl_rec_bytes(8, 128, 64) = 136 */
    static float dec[NT][MAXD], q[MAXGQ * MAXD], sc[MAXGQ * NT], a[MAXGQ * NT], out[MAXGQ * MAXD],
        out0[MAXGQ * MAXD];
    static char qmem[8192] __attribute__((aligned(32)));
    const int bits[] = {3, 4, 2, 8}, dims[] = {32, 64, 96, 128}, gqs[] = {1, 2, 3, 4, 5, 7};
    int ran = 0;
    for (int bi = 0; bi < 4; bi++)
        for (int di = 0; di < 4; di++)
            for (int gi = 0; gi < 6; gi++) {
                const int b = bits[bi], D = dims[di], GQ = gqs[gi], G = D == 96 ? 32 : D / 2;
                kvq_axpyn_fn an = kvq_fast_axpyn(b, D, G);
                kvq_dotn_fn dn = kvq_fast_dotn(b, D, G);
                if (!an && !dn) continue;
                size_t rec = kvl_rec_bytes(b, D, G);
                cr_assert_leq(rec * NT, sizeof recs);
                for (int t = 0; t < NT; t++) {
                    float x[MAXD];
                    for (int i = 0; i < D; i++) x[i] = 3 * frand(&r) + (i == 5 ? 7 : 0);
                    kvq_encode(x, D, b, G, recs + t * rec);
                    kvq_decode(recs + t * rec, D, b, G, dec[t]);
                }
                for (int i = 0; i < GQ * D; i++) q[i] = frand(&r), out[i] = out0[i] = frand(&r);
                for (int i = 0; i < GQ * NT; i++) a[i] = frand(&r) * 0.1f;
                if (an) {
                    an(recs, rec, NT, a, NT, GQ, D, G, out);
                    for (int g = 0; g < GQ; g++)
                        for (int i = 0; i < D; i++) {
                            double want = out0[g * D + i];
                            for (int t = 0; t < NT; t++) want += (double)a[g * NT + t] * dec[t][i];
                            cr_assert(fabs(out[g * D + i] - want) <= 1e-5 * (1 + fabs(want)),
                                      "axpyn bits %d d %d gq %d: %g vs %g", b, D, GQ, out[g * D + i], want);
                        }
                    ran++;
                }
                if (dn) {
                    kvq_qprep qp;
                    kvq_qprep_init(&qp, qmem, GQ, D, G);
                    kvq_prep(q, GQ, D, G, &qp);
                    dn(recs, rec, NT, q, &qp, GQ, D, G, sc, NT);
                    for (int g = 0; g < GQ; g++) {
                        double qmax = 0;
                        for (int i = 0; i < D; i++) qmax = fmax(qmax, fabs(q[g * D + i]));
                        for (int t = 0; t < NT; t++) {
                            double ref = 0, kabs = 0;
                            for (int i = 0; i < D; i++) ref += (double)q[g * D + i] * dec[t][i], kabs += fabs(dec[t][i]);
                            double tol = 0.5 * qmax / 32767 * kabs + 1e-5 * kabs * qmax + 1e-6;
                            cr_assert(fabs(sc[g * NT + t] - ref) <= tol, "dotn bits %d d %d gq %d: %g vs %g", b, D,
                                      GQ, sc[g * NT + t], ref);
                        }
                    }
                    ran++;
                }
            }
    cr_assert(ran > 20, "only %d kernel runs", ran);
    /* int32 group sums: 8-bit groups over 256 channels would overflow */
    cr_assert_null(kvq_fast_dotn(8, 512, 512));
    cr_assert_not_null(kvq_fast_dotn(8, 256, 256));
    cr_assert_not_null(kvq_fast_dotn(4, 512, 512));
}

/* The block kernel's record-run decoders (kv_mixed_blk.h: AVX-512 and AVX2
 * ops, the shapes with constant copies and the generic path) against
 * kvq_decode, record for record, on runs of 1 to 37 records. */
Test(kv_quant, block_decode_runs_match_kvq_decode) {
    unsigned r = 5;
    int bits[] = {16, 8, 4, 3, 2}, groups[] = {32, 64, 128}, dims[] = {64, 128}, runs[] = {1, 16, 37};
    static uint8_t recs[37 * 512];
    static float want[37 * 128], got[37 * 128];
    const kvb_ops *ops[2] = {kvb_kind(64) == KVB_AVX512 ? &kvb_avx512_ops : NULL,
                             kvb_kind(64) != KVB_NONE ? &kvb_avx2_ops : NULL};
    int tested = 0;
    for (int oi = 0; oi < 2; oi++)
        for (int di = 0; di < 2; di++)
            for (int bi = 0; bi < 5; bi++)
                for (int gi = 0; gi < 6; gi++) /* x2: KVQ_SZ8 */
                    for (int ri = 0; ri < 3; ri++) {
                        int b = bits[bi], G = groups[gi % 3] | (gi >= 3 && b != 16 ? KVQ_SZ8 : 0), D = dims[di],
                            n = runs[ri];
                        if (!ops[oi] || kvq_group(G) > D) continue;
                        size_t rec = kvl_rec_bytes(b, D, G);
                        for (int t = 0; t < n; t++) {
                            float x[128];
                            for (int i = 0; i < D; i++) x[i] = 3 * frand(&r) + (i == 5 ? 7 : 0);
                            kvq_encode(x, D, b, G, recs + t * rec);
                            kvq_decode(recs + t * rec, D, b, G, want + t * D);
                        }
                        ops[oi]->decode(recs, rec, n, D, b, G, got);
                        for (int i = 0; i < n * D; i++)
                            cr_assert(fabsf(got[i] - want[i]) <= 1e-5f * (1 + fabsf(want[i])),
                                      "ops %d D %d bits %d G %d n %d: [%d] %g vs %g", oi, D, b, G, n, i,
                                      got[i], want[i]);
                        tested++;
                    }
    if (kvb_kind(64) != KVB_NONE) cr_assert_gt(tested, 0);
}
