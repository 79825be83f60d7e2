/* kv_quant_rec512: the AVX-512 record encode/decode against the portable
 * loops of kv_quant.c (taken below the AVX512VNNI level), byte for byte
 * and bit for bit, in both side formats (fp16 pairs, KVQ_SZ8's bytes), on
 * random rows and the edges of the range rule: a
 * constant group (scale 0), values past fp16 (clamped zero point), tiny
 * ranges (subnormal scales), exact half steps. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "kv_quant.h"
#include "quant.h"
#include "../test_rand.h"

static int avx512(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

/* Row kind k of d channels into x. */
static void fill(float *x, int d, int k, unsigned *seed) {
    for (int c = 0; c < d; c++) {
        float r = frand(seed);
        switch (k % 6) {
        case 0: x[c] = r * 3.0f; break;                         /* plain */
        case 1: x[c] = 0.75f; break;                            /* constant: scale 0 */
        case 2: x[c] = 70000.0f + 5000.0f * r; break;           /* past fp16: clamped zero */
        case 3: x[c] = 1e-6f * r; break;                        /* subnormal fp16 scale */
        case 4: x[c] = (float)(c % 16) * 0.25f - 1.0f; break;   /* exact steps and ties */
        default: x[c] = r * (c % 9 ? 0.5f : 40.0f); break;      /* outlier channels */
        }
    }
}

Test(kv_quant_rec512, encode_decode_match_portable) {
    if (!avx512()) cr_skip_test("no AVX-512 here");
    const int shapes[][2] = {{64, 64}, {64, 32}, {128, 64}, {128, 128}, {128, 32}, {256, 64}};
    const int widths[] = {2, 3, 4, 8};
    enum { MAXD = 256, MAXREC = MAXD + 4 * MAXD / 16 };
    float x[MAXD], xa[MAXD], xb[MAXD];
    uint8_t ra[MAXREC], rb[MAXREC];
    unsigned seed = 11;
    int taken = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int wi = 0; wi < 8; wi++) /* both side formats: fp16 pairs, then KVQ_SZ8 */
            for (int k = 0; k < 60; k++) {
                const int d = shapes[si][0], sz8 = wi >= 4 ? KVQ_SZ8 : 0, bits = widths[wi % 4];
                const int group = shapes[si][1] | sz8;
                const size_t rec = (size_t)d * bits / 8 + (sz8 ? 2 : 4) * (size_t)(d / shapes[si][1]);
                fill(x, d, k, &seed);
                memset(ra, 0xA5, sizeof ra), memset(rb, 0x5A, sizeof rb);
                kq_set_simd_level(KQ_SIMD_SCALAR); /* the portable loops */
                kvq_encode_clip(x, d, bits, group, 1.0f, ra);
                kvq_decode(ra, d, bits, group, xa);
                kq_set_simd_level(-1);
                if (!kvq_avx512_encode_row(x, d, bits, group, rb)) continue;
                taken++;
                cr_assert(memcmp(ra, rb, rec) == 0, "d %d group %d bits %d kind %d: records differ", d, group, bits, k);
                cr_assert(kvq_avx512_decode_row(rb, d, bits, group, xb));
                cr_assert(memcmp(xa, xb, sizeof(float) * d) == 0, "d %d group %d bits %d kind %d: decoded", d, group,
                          bits, k);
                /* the dispatching entry points take the same path at this level */
                uint8_t rc[MAXREC];
                kvq_encode(x, d, bits, group, rc);
                cr_assert(memcmp(rc, rb, rec) == 0);
            }
    cr_assert_eq(taken, 6 * 8 * 60, "every shape and width here is one the AVX-512 path takes (%d)", taken);
    /* FP16 records decode the same way */
    uint16_t h[64];
    for (int c = 0; c < 64; c++) h[c] = kq_fp32_to_fp16(frand(&seed) * 100.0f);
    cr_assert(kvq_avx512_decode_row((const uint8_t *)h, 64, 16, 64, xb));
    for (int c = 0; c < 64; c++) cr_assert_eq(xb[c], kq_fp16_to_fp32(h[c]));
}

Test(kv_quant_rec512, refuses_what_it_cannot_do) {
    float x[96] = {0};
    uint8_t r[128];
    cr_assert_eq(kvq_avx512_encode_row(x, 64, 5, 64, r), 0, "5-bit codes");
    cr_assert_eq(kvq_avx512_encode_row(x, 64, 4, 8, r), 0, "groups of 8");
    cr_assert_eq(kvq_avx512_encode_row(x, 96, 3, 32, r), 0, "3 bits need head_dim % 64");
    cr_assert_eq(kvq_avx512_encode_row(x, 96, 2, 32, r), 0, "2-bit planes of 24 bytes");
    cr_assert_eq(kvq_avx512_encode_row(x, 64, 16, 64, r), 0, "FP16 is not encoded here");
}
