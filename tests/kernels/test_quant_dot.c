/* kq tests: the activation quantizers (8- and 16-bit) and randomized dot
 * products of every weight format against a float reference, SIMD and
 * forced-scalar paths (hand-built blocks: test_quant.c). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pverr.h"
#include "quant.h"

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

/* ---- activation quantization ------------------------------------------------------- */

static uint64_t rng_state;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}
static float rnd_unit(void) { return (float)rnd() / 2147483648.0f * 2.0f - 1.0f; } /* [-1,1) */

Test(quant, activation_quantizers)
{
    enum { N = 512 };
    float x[N], y[N];
    rng_state = 7;
    for (int i = 0; i < N; i++)
        x[i] = rnd_unit() * (i < 256 ? 3.0f : 0.01f);
    x[40] = 0; /* a block of zeros must give d = 0 and q = 0 */
    for (int i = 64; i < 96; i++)
        x[i] = 0.0f;
    const uint32_t types[] = {KQ_Q8_0, KQ_Q8_1, KQ_Q8_K};
    for (int k = 0; k < 3; k++) {
        uint8_t qs[2048], qv[2048];
        size_t rb = kq_row_bytes(types[k], N);
        kq_set_force_scalar(1);
        cr_assert_eq(kq_quantize_row(types[k], x, qs, N), PV_OK);
        kq_set_force_scalar(0);
        cr_assert_eq(kq_quantize_row(types[k], x, qv, N), PV_OK);
        /* same recipe on both paths: identical bytes */
        cr_assert_eq(memcmp(qs, qv, rb), 0, "%s: SIMD and scalar bytes differ", kq_type_name(types[k]));
        cr_assert_eq(kq_dequantize_row(types[k], qs, y, N), PV_OK);
        size_t blk = kq_block_elems(types[k]);
        for (int i = 0; i < N; i++) {
            float amax = 0;
            for (size_t j = i - i % blk; j < i - i % blk + blk; j++)
                amax = fmaxf(amax, fabsf(x[j]));
            /* half a step of amax/127, plus the fp16 rounding of d (2^-11
             * relative) times the largest code */
            float tol = amax / 127.0f * 0.5f * 1.001f + amax * 1e-3f;
            cr_assert_leq(fabsf(y[i] - x[i]), tol, "%s x[%d]=%g got %g", kq_type_name(types[k]), i,
                          x[i], y[i]);
        }
        if (types[k] == KQ_Q8_1) { /* s = d * sum(q) */
            for (int bi = 0; bi < N / 32; bi++) {
                const uint8_t *b = qs + 40 * bi;
                float d, s;
                memcpy(&d, b, 4);
                memcpy(&s, b + 4, 4);
                int sum = 0;
                for (int j = 0; j < 32; j++)
                    sum += (int8_t)b[8 + j];
                cr_assert_leq(fabsf(s - d * sum), fabsf(d * sum) * 1e-6f + 1e-12f);
            }
        }
        if (types[k] == KQ_Q8_K) { /* bsums are sums of 16 codes */
            for (int bi = 0; bi < N / 256; bi++) {
                const uint8_t *b = qs + 292 * bi;
                for (int g = 0; g < 16; g++) {
                    int sum = 0;
                    for (int j = 0; j < 16; j++)
                        sum += (int8_t)b[4 + 16 * g + j];
                    int16_t bs;
                    memcpy(&bs, b + 4 + 256 + 2 * g, 2);
                    cr_assert_eq(bs, sum);
                }
            }
        }
    }
}

/* ---- randomized dot products --------------------------------------------------------- */

/* random fp16 scale in [lo, hi) */
static uint16_t rnd_scale(float lo, float hi)
{
    return kq_fp32_to_fp16(lo + (hi - lo) * (float)(rnd() % 10000) / 10000.0f);
}

/* Random weight row of n elements: random code bytes, sane scales. */
static void random_row(uint32_t t, uint8_t *w, int64_t n)
{
    size_t rb = kq_row_bytes(t, n), bb = kq_block_bytes(t);
    for (size_t i = 0; i < rb; i++)
        w[i] = (uint8_t)rnd();
    for (size_t o = 0; o < rb; o += bb) {
        uint8_t *b = w + o;
        switch (t) {
        case KQ_F32:
            for (size_t i = 0; i < rb; i += 4) {
                float f = rnd_unit();
                memcpy(w + i, &f, 4);
            }
            return;
        case KQ_F16:
        case KQ_BF16:
            for (size_t i = 0; i < rb; i += 2) {
                float f = rnd_unit();
                uint32_t u;
                memcpy(&u, &f, 4);
                uint16_t h = t == KQ_F16 ? kq_fp32_to_fp16(f) : (uint16_t)(u >> 16);
                put16(w + i, h);
            }
            return;
        case KQ_Q4_0: case KQ_Q5_0: case KQ_Q8_0:
            put16(b, rnd_scale(0.001f, 0.1f));
            break;
        case KQ_Q4_1: case KQ_Q5_1:
            put16(b, rnd_scale(0.001f, 0.1f));
            put16(b + 2, rnd_scale(-0.5f, 0.5f));
            break;
        case KQ_Q4_K:
            put16(b, rnd_scale(0.0001f, 0.01f));
            put16(b + 2, rnd_scale(0.0001f, 0.01f));
            break;
        case KQ_Q6_K:
            put16(b + 208, rnd_scale(0.0001f, 0.01f));
            break;
        default:
            cr_assert_fail("type %u", t);
        }
    }
}

static const uint32_t k_weight_types[] = {KQ_F32, KQ_F16, KQ_BF16, KQ_Q4_0, KQ_Q4_1,
                                          KQ_Q5_0, KQ_Q5_1, KQ_Q8_0, KQ_Q4_K, KQ_Q6_K};

Test(quant, vec_dot_random)
{
    enum { N = 1024, REPS = 20 };
    static uint8_t w[N * 4], xq[N * 4 + 1024];
    static float x[N], wf[N];
    rng_state = 12345;
    for (size_t k = 0; k < sizeof k_weight_types / sizeof k_weight_types[0]; k++) {
        uint32_t t = k_weight_types[k], vdt = kq_vec_dot_type(t);
        int act_q = vdt != KQ_F32;
        for (int rep = 0; rep < REPS; rep++) {
            random_row(t, w, N);
            float xs = rep % 3 == 0 ? 100.0f : 1.0f; /* also large activations */
            for (int i = 0; i < N; i++)
                x[i] = rnd_unit() * xs;
            cr_assert_eq(kq_dequantize_row(t, w, wf, N), PV_OK);
            double ref = 0, mag = 0;
            for (int i = 0; i < N; i++) {
                ref += (double)wf[i] * x[i];
                mag += fabs((double)wf[i] * x[i]);
            }
            float res[2];
            for (int path = 0; path < 2; path++) {
                kq_set_force_scalar(path);
                cr_assert_eq(kq_quantize_row(vdt, x, xq, N), PV_OK);
                res[path] = kq_vec_dot(t, N, w, xq);
                /* 8-bit activations: each x_i is off by up to amax/254, so
                 * the error is bounded by ~0.4% of sum|w||x| in the worst
                 * case (1e-2 leaves margin for fp16 scale rounding); float
                 * formats only see f32 summation error */
                double tol = act_q ? 1e-2 * mag + 1e-4 : 1e-5 * mag + 1e-6;
                cr_assert_leq(fabs(res[path] - ref), tol, "%s rep %d %s: got %g want %g (mag %g)",
                              kq_type_name(t), rep, path ? "scalar" : kq_simd_name(), res[path], ref,
                              mag);
            }
            kq_set_force_scalar(0);
            /* identical quantized inputs: SIMD and scalar differ only in
             * summation order */
            cr_assert_leq(fabs(res[0] - res[1]), 1e-5 * mag + 1e-6, "%s rep %d: simd %g scalar %g",
                          kq_type_name(t), rep, res[0], res[1]);
        }
    }
}

/* Error of the 8-bit path must be typical quantization noise, far below the
 * worst-case bound above: catches a layout bug that only perturbs a few
 * elements (e.g. one wrong sub-block scale). */
Test(quant, vec_dot_error_is_small_on_average)
{
    enum { N = 2048, REPS = 30 };
    static uint8_t w[N * 4], xq[N * 4 + 2048];
    static float x[N], wf[N];
    rng_state = 99;
    for (size_t k = 3; k < sizeof k_weight_types / sizeof k_weight_types[0]; k++) {
        uint32_t t = k_weight_types[k];
        double err2 = 0, mag2 = 0;
        for (int rep = 0; rep < REPS; rep++) {
            random_row(t, w, N);
            for (int i = 0; i < N; i++)
                x[i] = rnd_unit();
            kq_dequantize_row(t, w, wf, N);
            kq_quantize_row(kq_vec_dot_type(t), x, xq, N);
            double ref = 0, mag = 0;
            for (int i = 0; i < N; i++) {
                ref += (double)wf[i] * x[i];
                mag += fabs((double)wf[i] * x[i]);
            }
            double e = kq_vec_dot(t, N, w, xq) - ref;
            err2 += e * e;
            mag2 += mag * mag;
        }
        /* random rounding errors add in quadrature: rms error ~ sum|w x| *
         * (1/254)/sqrt(3)/sqrt(N) ~ 5e-5 of it; 1e-3 still fails on a
         * misplaced sub-block */
        cr_assert_leq(sqrt(err2 / mag2), 1e-3, "%s rms rel err %g", kq_type_name(t), sqrt(err2 / mag2));
    }
}

/* ---- 16-bit activations ------------------------------------------------------------------ */

Test(quant, activation_quantizers_16)
{
    enum { N = 512 };
    static float x[N], y[N];
    rng_state = 8;
    for (int i = 0; i < N; i++)
        x[i] = rnd_unit() * (i < 256 ? 3.0f : 1e-3f);
    for (int i = 64; i < 96; i++) /* a block of zeros: d = 0, q = 0 */
        x[i] = 0.0f;
    x[300] = -7.5f; /* the block's amax, negative: must map to exactly -32767 */
    const uint32_t types[] = {KQ_Q16_1, KQ_Q16_K};
    for (int k = 0; k < 2; k++) {
        static uint8_t qs[N * 3], qv[N * 3];
        size_t rb = kq_row_bytes(types[k], N), blk = kq_block_elems(types[k]);
        kq_set_force_scalar(1);
        cr_assert_eq(kq_quantize_row(types[k], x, qs, N), PV_OK);
        kq_set_force_scalar(0);
        cr_assert_eq(kq_quantize_row(types[k], x, qv, N), PV_OK);
        cr_assert_eq(memcmp(qs, qv, rb), 0, "%s: SIMD and scalar bytes differ", kq_type_name(types[k]));
        cr_assert_eq(kq_dequantize_row(types[k], qs, y, N), PV_OK);
        for (int i = 0; i < N; i++) {
            float amax = 0;
            for (size_t j = i - i % blk; j < i - i % blk + blk; j++)
                amax = fmaxf(amax, fabsf(x[j]));
            /* half a step (amax/32767/2); 1e-6 relative slack for the f32
             * rounding of d, 1/d and x*(1/d) (each <= 2^-24 relative) */
            float tol = amax / 32767.0f * 0.5f + amax * 1e-6f;
            cr_assert_leq(fabsf(y[i] - x[i]), tol, "%s x[%d]=%g got %g", kq_type_name(types[k]), i,
                          x[i], y[i]);
            if (x[i] == 0.0f)
                cr_assert_eq(y[i], 0.0f);
        }
        /* the amax element uses the full range */
        int16_t q300;
        size_t bb = kq_block_bytes(types[k]), hdr = types[k] == KQ_Q16_1 ? 8 : 36;
        memcpy(&q300, qs + (300 / blk) * bb + hdr + 2 * (300 % blk), 2);
        cr_assert_eq(q300, -32767, "%s", kq_type_name(types[k]));
        for (int bi = 0; bi < N / (int)blk; bi++) {
            const uint8_t *b = qs + bb * (size_t)bi;
            float d;
            memcpy(&d, b, 4);
            int16_t q[256];
            memcpy(q, b + hdr, 2 * blk);
            if (types[k] == KQ_Q16_1) { /* s = d * sum(q) */
                float sv;
                memcpy(&sv, b + 4, 4);
                int32_t sum = 0;
                for (int j = 0; j < 32; j++)
                    sum += q[j];
                cr_assert_leq(fabsf(sv - d * (float)sum), fabsf(d * (float)sum) * 1e-6f + 1e-30f);
            } else { /* bsums: sums of 32 codes */
                for (int g = 0; g < 8; g++) {
                    int32_t sum = 0, bs;
                    for (int j = 0; j < 32; j++)
                        sum += q[32 * g + j];
                    memcpy(&bs, b + 4 + 4 * g, 4);
                    cr_assert_eq(bs, sum, "block %d group %d", bi, g);
                }
            }
        }
    }
}

/* Dots with 16-bit activations against a double reference on the
 * dequantized weights, SIMD and scalar, and SIMD vs scalar. */
Test(quant, vec_dot_random_16)
{
    enum { N = 1024, REPS = 20 };
    static uint8_t w[N * 4], xq[N * 4];
    static float x[N], wf[N];
    rng_state = 4242;
    for (size_t k = 3; k < sizeof k_weight_types / sizeof k_weight_types[0]; k++) {
        uint32_t t = k_weight_types[k], vdt = kq_vec_dot_type_bits(t, 16);
        for (int rep = 0; rep < REPS; rep++) {
            random_row(t, w, N);
            float xs = rep % 3 == 0 ? 100.0f : 1.0f;
            for (int i = 0; i < N; i++)
                x[i] = rnd_unit() * xs;
            if (rep == 1) /* full-range codes everywhere: the int32 bounds */
                for (int i = 0; i < N; i++)
                    x[i] = i % 2 ? xs : -xs;
            cr_assert_eq(kq_dequantize_row(t, w, wf, N), PV_OK);
            double ref = 0, mag = 0;
            for (int i = 0; i < N; i++) {
                ref += (double)wf[i] * x[i];
                mag += fabs((double)wf[i] * x[i]);
            }
            float res[2];
            for (int path = 0; path < 2; path++) {
                kq_set_force_scalar(path);
                cr_assert_eq(kq_quantize_row(vdt, x, xq, N), PV_OK);
                res[path] = kq_vec_dot_bits(t, 16, N, w, xq);
                /* each x_i is off by <= amax/65534, i.e. <= 1.5e-5 of sum|w x|
                 * for these |x| ~ amax/2 on average; 1e-4 leaves room for
                 * the f32 sums */
                cr_assert_leq(fabs(res[path] - ref), 1e-4 * mag + 1e-6,
                              "%s rep %d %s: got %g want %g (mag %g)", kq_type_name(t), rep,
                              path ? "scalar" : kq_simd_name(), res[path], ref, mag);
            }
            kq_set_force_scalar(0);
            cr_assert_leq(fabs(res[0] - res[1]), 2e-6 * mag + 1e-6, "%s rep %d: simd %g scalar %g",
                          kq_type_name(t), rep, res[0], res[1]);
        }
    }
}

/* rms error of the 16-bit path: ~ (1/65534)/sqrt(3)/sqrt(N) ~ 2e-7 of
 * sum|w x|. 2e-6 fails if the activations were really quantized to 8 bits
 * (~5e-5) or a sub-block were misplaced. */
Test(quant, vec_dot_error_16_is_small_on_average)
{
    enum { N = 2048, REPS = 30 };
    static uint8_t w[N * 4], xq[N * 4];
    static float x[N], wf[N];
    rng_state = 98;
    for (int path = 0; path < 2; path++) {
        kq_set_force_scalar(path);
        for (size_t k = 3; k < sizeof k_weight_types / sizeof k_weight_types[0]; k++) {
            uint32_t t = k_weight_types[k];
            double err2 = 0, mag2 = 0;
            for (int rep = 0; rep < REPS; rep++) {
                random_row(t, w, N);
                for (int i = 0; i < N; i++)
                    x[i] = rnd_unit();
                kq_dequantize_row(t, w, wf, N);
                kq_quantize_row(kq_vec_dot_type_bits(t, 16), x, xq, N);
                double ref = 0, mag = 0;
                for (int i = 0; i < N; i++) {
                    ref += (double)wf[i] * x[i];
                    mag += fabs((double)wf[i] * x[i]);
                }
                double e = kq_vec_dot_bits(t, 16, N, w, xq) - ref;
                err2 += e * e;
                mag2 += mag * mag;
            }
            cr_assert_leq(sqrt(err2 / mag2), 2e-6, "%s %s rms rel err %g", kq_type_name(t),
                          path ? "scalar" : kq_simd_name(), sqrt(err2 / mag2));
        }
    }
    kq_set_force_scalar(0);
}
