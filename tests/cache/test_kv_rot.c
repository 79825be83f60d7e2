/* The randomized Hadamard rotation (kv_rot): against an explicit float64
 * matrix built independently (Sylvester's construction, H[i][j] =
 * (-1)^popcount(i & j)), orthogonal (round trip, dot products kept),
 * deterministic signs, and what it is for: a key with an outlier channel
 * loses less at INT2/INT4 when rotated first. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "kv.h"
#include "kv_mixed.h"
#include "kv_policy.h"
#include "kv_quant.h"
#include "kv_rot.h"

static double grand(unsigned *s) { /* roughly normal: sum of 4 uniforms */
    double x = 0;
    for (int i = 0; i < 4; i++) {
        *s = *s * 1103515245u + 12345u;
        x += ((*s >> 8) & 0xFFFF) / 65536.0 - 0.5;
    }
    return x * sqrt(3.0);
}

Test(kv_rot, supported_sizes) {
    cr_assert(kvr_supported(64) && kvr_supported(128) && kvr_supported(8) && kvr_supported(4096));
    cr_assert(!kvr_supported(0) && !kvr_supported(4) && !kvr_supported(96) && !kvr_supported(80) &&
              !kvr_supported(8192));
}

Test(kv_rot, matches_explicit_matrix_and_is_orthogonal) {
    unsigned r = 11;
    int dims[] = {8, 64, 128}; /* 8: the scalar butterfly; 64, 128: AVX-512 where the CPU has it */
    for (int di = 0; di < 3; di++) {
        int d = dims[di];
        float *sg = malloc(sizeof(float) * d), *x = malloc(sizeof(float) * d),
              *y = malloc(sizeof(float) * d);
        kvr_signs(3, 1, d, sg);
        int neg = 0;
        for (int i = 0; i < d; i++) {
            cr_assert(sg[i] == 1.0f || sg[i] == -1.0f);
            neg += sg[i] < 0;
        }
        cr_assert(neg > d / 8 && neg < d - d / 8, "d=%d: %d of %d signs negative", d, neg, d);
        for (int trial = 0; trial < 20; trial++) {
            double nx = 0, ny = 0, dxy = 0, drot = 0;
            for (int i = 0; i < d; i++) x[i] = (float)grand(&r) * (i == 5 ? 20.0f : 1.0f);
            for (int i = 0; i < d; i++) y[i] = (float)grand(&r);
            for (int i = 0; i < d; i++) dxy += (double)x[i] * y[i];
            float *rx = malloc(sizeof(float) * d), *ry = malloc(sizeof(float) * d);
            for (int i = 0; i < d; i++) rx[i] = x[i], ry[i] = y[i];
            kvr_forward(sg, d, rx);
            kvr_forward(sg, d, ry);
            /* R = H·D/√d, explicitly */
            for (int i = 0; i < d; i++) {
                double want = 0;
                for (int j = 0; j < d; j++)
                    want += (__builtin_popcount((unsigned)(i & j)) & 1 ? -1.0 : 1.0) * sg[j] * x[j];
                want /= sqrt(d);
                cr_assert(fabs(rx[i] - want) < 1e-5 * (1 + fabs(want)), "d=%d i=%d %g vs %g", d, i,
                          rx[i], want);
            }
            for (int i = 0; i < d; i++) {
                nx += (double)x[i] * x[i];
                ny += (double)rx[i] * rx[i];
                drot += (double)rx[i] * ry[i];
            }
            cr_assert(fabs(nx - ny) < 1e-5 * nx, "norm changed: %g vs %g", nx, ny);
            cr_assert(fabs(dxy - drot) < 1e-4 * (1 + sqrt(nx) * 4), "dot changed: %g vs %g", dxy,
                      drot);
            kvr_inverse(sg, d, rx);
            for (int i = 0; i < d; i++)
                cr_assert(fabs(rx[i] - x[i]) < 1e-5 * (1 + fabs(x[i])), "round trip %g vs %g",
                          rx[i], x[i]);
            free(rx);
            free(ry);
        }
        free(sg);
        free(x);
        free(y);
    }
}

Test(kv_rot, signs_are_fixed_per_layer_and_head) {
    float a[64], b[64], c[64];
    kvr_signs(2, 1, 64, a);
    kvr_signs(2, 1, 64, b);
    kvr_signs(2, 2, 64, c);
    int same = 1, diff = 0;
    for (int i = 0; i < 64; i++) {
        same &= a[i] == b[i];
        diff += a[i] != c[i];
    }
    cr_assert(same, "the same (layer, head) must give the same signs");
    cr_assert(diff > 8, "another head should draw other signs (%d of 64 differ)", diff);
}

/* Keys with one outlier channel (as real models have): the squared error
 * of INT2 and INT4 per-token groups of 64, rotated (measured back in the
 * model's basis) against not rotated. The outlier stretches every group's
 * range; rotated, its energy is spread and the range shrinks. */
Test(kv_rot, rotation_lowers_quantization_error_with_outliers) {
    unsigned r = 5;
    const int d = 64;
    float sg[64], x[64], y[64], z[64];
    uint8_t rec[64];
    kvr_signs(0, 0, d, sg);
    int bits[] = {2, 4};
    for (int bi = 0; bi < 2; bi++) {
        double e_plain = 0, e_rot = 0;
        for (int trial = 0; trial < 200; trial++) {
            for (int i = 0; i < d; i++) x[i] = (float)grand(&r) * (i == 3 || i == 40 ? 15.0f : 1.0f);
            kvq_encode(x, d, bits[bi], 64, rec);
            kvq_decode(rec, d, bits[bi], 64, y);
            for (int i = 0; i < d; i++) z[i] = x[i];
            kvr_forward(sg, d, z);
            kvq_encode(z, d, bits[bi], 64, rec);
            kvq_decode(rec, d, bits[bi], 64, z);
            kvr_inverse(sg, d, z);
            for (int i = 0; i < d; i++) {
                e_plain += (double)(x[i] - y[i]) * (x[i] - y[i]);
                e_rot += (double)(x[i] - z[i]) * (x[i] - z[i]);
            }
        }
        cr_assert(e_rot < 0.5 * e_plain, "INT%d: rotated error %g not below half of %g", bits[bi],
                  e_rot, e_plain);
    }
}

/* rotate=1 acts only where something is quantized: a dropping policy with
 * an FP16 high tier keeps its tokens unrotated (and a preset's rotate=1
 * survives lo-bits=0 without an error), a quantizing one rotates. */
Test(kv_rot, only_quantizing_caches_rotate) {
    kv_shape s = {.n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .head_dim = 64, .max_seqs = 1,
                  .max_ctx = 16, .n_threads = 1};
    const char *specs[] = {"scissorhands,rotate=1", "mikv,lo-bits=0,hi-bits=16", "mikv,hi-bits=8,lo-bits=0",
                           "quant4,rotate=1"};
    const int want[] = {0, 0, 1, 1};
    float k[64], v[64], q[128], o[128], kd[64];
    for (int i = 0; i < 64; i++) k[i] = (float)i / 64, v[i] = 1.0f - (float)i / 64;
    for (int i = 0; i < 128; i++) q[i] = 0.01f * (float)i;
    for (int t = 0; t < 4; t++) {
        kv_policy p;
        char err[256] = "";
        kv_cache *c = NULL;
        cr_assert_eq(kv_policy_parse(specs[t], &p, err, sizeof err), 0, "%s: %s", specs[t], err);
        cr_assert_eq(kv_create(&s, &p, &c, err, sizeof err), 0, "%s: %s", specs[t], err);
        cr_assert_eq(kv_store(c, 0, 0, 0, 1, k, v), 0);
        cr_assert_eq(kv_attend_group(c, 0, 0, 0, 0, 1, q, o, 0), 0);
        kv_mixed_tok tk = {.k = kd};
        cr_assert_eq(kv_mixed_token(c, 0, 0, 0, 0, 0, &tk), 0);
        cr_assert_eq(tk.rotated, want[t], "%s", specs[t]);
        kv_destroy(c);
    }
}
