/* kq SIMD levels: the AVX512-VNNI and AVX512-VBMI kernels against the AVX2
 * and scalar ones on fresh random inputs (the seed comes from the clock and
 * is printed with every failure), and the consistency contract of
 * kernels/quant_impl.h (dot, dot4 and dot_multi bit-identical) at every
 * level the CPU has. Tests that need VNNI or VBMI skip visibly
 * (cr_skip_test) on CPUs without them. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant.h"
#include "quant_impl.h"

static uint64_t rng_state, seed;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}
static float rnd_unit(void) { return (float)rnd() / 2147483648.0f * 2.0f - 1.0f; }

static void fresh_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = (uint64_t)ts.tv_sec * 1000000007ULL + (uint64_t)ts.tv_nsec;
    rng_state = seed;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t rnd_scale(float lo, float hi)
{
    return kq_fp32_to_fp16(lo + (hi - lo) * (float)(rnd() % 10000) / 10000.0f);
}

/* random codes, sane fp16 scales (as test_quant.c) */
static void random_rows(uint32_t t, uint8_t *w, int64_t n, int rows)
{
    size_t rb = kq_row_bytes(t, n) * (size_t)rows, bb = kq_block_bytes(t);
    for (size_t i = 0; i < rb; i++)
        w[i] = (uint8_t)rnd();
    for (size_t o = 0; o < rb; o += bb) {
        uint8_t *b = w + o;
        if (t == KQ_Q6_K) {
            put16(b + 208, rnd_scale(0.0001f, 0.01f));
        } else if (t == KQ_Q4_K) {
            put16(b, rnd_scale(0.0001f, 0.01f));
            put16(b + 2, rnd_scale(0.0001f, 0.01f));
        } else {
            put16(b, rnd_scale(0.001f, 0.1f));
            if (t == KQ_Q4_1 || t == KQ_Q5_1)
                put16(b + 2, rnd_scale(-0.5f, 0.5f));
        }
    }
}

static int have_vnni(void) { return kq_simd_cpu_level() >= KQ_SIMD_AVX512VNNI; }
static int have_vbmi(void) { return kq_simd_cpu_level() >= KQ_SIMD_AVX512VBMI; }

static const uint32_t k_qtypes[] = {KQ_Q4_0, KQ_Q4_1, KQ_Q5_0, KQ_Q5_1, KQ_Q8_0, KQ_Q4_K, KQ_Q6_K};

Test(quant_avx512, levels_cap_and_names)
{
    int cpu = kq_simd_cpu_level();
    cr_assert(cpu >= KQ_SIMD_SCALAR && cpu <= KQ_SIMD_AVX512VBMI);
    static const char *names[] = {"scalar", "avx2", "avx512vnni", "avx512vbmi"};
    for (int l = KQ_SIMD_SCALAR; l <= KQ_SIMD_AVX512VBMI; l++) {
        kq_set_simd_level(l);
        int used = l < cpu ? l : cpu;
        cr_assert_eq(kq_simd_level(), used, "cap %d on a level-%d CPU", l, cpu);
        cr_assert_str_eq(kq_simd_name(), names[used]);
    }
    kq_set_force_scalar(1);
    cr_assert_eq(kq_simd_level(), KQ_SIMD_SCALAR);
    kq_set_force_scalar(0); /* back to auto: the CPU's best unless PIVOT_SIMD caps it */
    cr_assert_leq(kq_simd_level(), cpu);
    if (!getenv("PIVOT_SIMD"))
        cr_assert_eq(kq_simd_level(), cpu);
    kq_set_simd_level(-1);
}

/* PIVOT_SIMD is read once, at the first lookup: Criterion runs each test in
 * a fresh process, so setting it first here reaches that first read. */
Test(quant_avx512, pivot_simd_env_caps_level)
{
    cr_assert_eq(setenv("PIVOT_SIMD", "avx2", 1), 0);
    int cpu = kq_simd_cpu_level();
    cr_assert_eq(kq_simd_level(), cpu < KQ_SIMD_AVX2 ? cpu : KQ_SIMD_AVX2);
    if (cpu >= KQ_SIMD_AVX2) {
        cr_assert_str_eq(kq_simd_name(), "avx2");
        cr_assert(kq_get_dot(KQ_Q4_1, 16) == kq_avx2_q16_dot_q4_1);
    }
    kq_set_simd_level(KQ_SIMD_SCALAR); /* an explicit cap overrides the variable */
    cr_assert_str_eq(kq_simd_name(), "scalar");
    kq_set_simd_level(-1);
    cr_assert_eq(kq_simd_level(), cpu < KQ_SIMD_AVX2 ? cpu : KQ_SIMD_AVX2);
}

/* One weight row against one activation row at each level; VNNI must equal
 * AVX2 bit for bit (same lane integers, same float steps, by construction,
 * kernels/meson.build), VBMI must equal VNNI bit for bit where it has no
 * kernels of its own (everything but Q4_1 and Q8_0 x 16-bit), and all the scalar
 * path within float rounding: 2e-6 * sum|w x| at 16 bits (the bound
 * test_quant.c uses for AVX2 vs scalar), 1e-5 at 8 bits. */
static void compare_levels(int bits, int64_t n, int reps)
{
    static uint8_t w[8192], xq[8192];
    static float x[2048];
    static float wf[2048];
    for (size_t k = 0; k < sizeof k_qtypes / sizeof k_qtypes[0]; k++) {
        uint32_t t = k_qtypes[k], vdt = kq_vec_dot_type_bits(t, bits);
        if (n % (int64_t)kq_block_elems(t))
            continue;
        for (int rep = 0; rep < reps; rep++) {
            random_rows(t, w, n, 1);
            float xs = rep % 3 == 0 ? 100.0f : 1.0f;
            for (int64_t i = 0; i < n; i++)
                x[i] = rnd_unit() * xs;
            if (rep == 1) /* full-range codes everywhere: the int32 bounds */
                for (int64_t i = 0; i < n; i++)
                    x[i] = i % 2 ? xs : -xs;
            cr_assert_eq(kq_dequantize_row(t, w, wf, n), 0);
            double mag = 0;
            for (int64_t i = 0; i < n; i++)
                mag += fabs((double)wf[i] * x[i]);
            float res[4];
            for (int l = KQ_SIMD_SCALAR; l <= KQ_SIMD_AVX512VBMI; l++) {
                kq_set_simd_level(l);
                cr_assert_eq(kq_quantize_row(vdt, x, xq, n), 0);
                res[l] = kq_vec_dot_bits(t, bits, n, w, xq);
            }
            kq_set_simd_level(-1);
            double tol = (bits == 16 ? 2e-6 : 1e-5) * mag + 1e-6;
            cr_assert(res[2] == res[1], "%s %d-bit n %lld rep %d seed %llu: vnni %.9g avx2 %.9g",
                      kq_type_name(t), bits, (long long)n, rep, (unsigned long long)seed, res[2],
                      res[1]);
            if (!((t == KQ_Q4_1 || t == KQ_Q8_0) && bits == 16)) /* VBMI's own kernels: another float order */
                cr_assert(res[3] == res[2], "%s %d-bit n %lld rep %d seed %llu: vbmi %.9g vnni %.9g",
                          kq_type_name(t), bits, (long long)n, rep, (unsigned long long)seed, res[3],
                          res[2]);
            cr_assert_leq(fabs(res[3] - res[0]), tol,
                          "%s %d-bit n %lld rep %d seed %llu: vbmi %.9g scalar %.9g (mag %g)",
                          kq_type_name(t), bits, (long long)n, rep, (unsigned long long)seed, res[3],
                          res[0], mag);
            cr_assert_leq(fabs(res[2] - res[1]), tol,
                          "%s %d-bit n %lld rep %d seed %llu: vnni %.9g avx2 %.9g (mag %g)",
                          kq_type_name(t), bits, (long long)n, rep, (unsigned long long)seed, res[2],
                          res[1], mag);
            cr_assert_leq(fabs(res[2] - res[0]), tol,
                          "%s %d-bit n %lld rep %d seed %llu: vnni %.9g scalar %.9g (mag %g)",
                          kq_type_name(t), bits, (long long)n, rep, (unsigned long long)seed, res[2],
                          res[0], mag);
        }
    }
}

Test(quant_avx512, vnni_vs_avx2_vs_scalar)
{
    if (!have_vnni())
        cr_skip_test("CPU lacks AVX512-VNNI/BW/VL: nothing to compare");
    fresh_seed();
    /* SmolLM2's widths (576 = 18 blocks, 1536), one K-quant-only width and
     * a single block */
    static const int64_t ns[] = {32, 576, 768, 1536};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        compare_levels(16, ns[i], 12);
        compare_levels(8, ns[i], 12);
    }
}

/* The consistency contract: for one family of kernels, dot, dot4 (where
 * there is one) and dot_multi give the same bits for the same (row, token).
 * The family is the one kq_get_* pick at `level`, or the one given. */
typedef struct {
    kq_dot_fn dot;
    kq_dot4_fn dot4;
    kq_dot_multi_fn multi;
    kq_prep_fn prep; /* NULL: the kernels read the vec-dot rows */
    uint32_t prep_pair_bytes;
    const char *name;
} family;

static void check_family(uint32_t t, int bits, int64_t n, family f)
{
    enum { ROWS = 8, TOK = 17 };
    static uint8_t w[ROWS * 2048], xq[TOK * 8192], xv[8192];
    static float x[2048];
    uint32_t vdt = kq_vec_dot_type_bits(t, bits);
    const kq_dot_family kf = {.prep = f.prep, .prep_pair_bytes = f.prep_pair_bytes};
    size_t wrb = kq_row_bytes(t, n), xrb = kq_prep_row_bytes(&kf, vdt, n);
    cr_assert(wrb * ROWS <= sizeof w && xrb * TOK <= sizeof xq && xrb <= sizeof xv);
    random_rows(t, w, n, ROWS);
    for (int tk = 0; tk < TOK; tk++) {
        for (int64_t i = 0; i < n; i++)
            x[i] = rnd_unit() * (tk % 3 ? 1.0f : 30.0f);
        cr_assert_eq(kq_quantize_row(vdt, x, f.prep ? xv : xq + (size_t)tk * xrb, n), 0);
        if (f.prep)
            f.prep(n, xv, xq + (size_t)tk * xrb);
    }
    kq_dot_fn dot = f.dot;
    kq_dot4_fn dot4 = f.dot4;
    kq_dot_multi_fn multi = f.multi;
    cr_assert(dot && multi);
    float ref[ROWS][TOK];
    for (int r = 0; r < ROWS; r++)
        for (int tk = 0; tk < TOK; tk++)
            ref[r][tk] = dot(n, w + (size_t)r * wrb, xq + (size_t)tk * xrb);
    /* every token count 1..TOK: the multi kernels split it into 8s or 4s and a tail */
    for (int nx = 1; nx <= TOK; nx++)
        for (int r = 0; r < ROWS; r++) {
            float out[TOK * 2];
            multi(n, w + (size_t)r * wrb, xq, xrb, nx, out, 2);
            for (int tk = 0; tk < nx; tk++)
                cr_assert(out[2 * tk] == ref[r][tk],
                          "%s %d-bit %s n %lld nx %d row %d tok %d seed %llu: multi %.9g dot %.9g",
                          kq_type_name(t), bits, f.name, (long long)n, nx, r, tk,
                          (unsigned long long)seed, out[2 * tk], ref[r][tk]);
        }
    if (dot4)
        for (int r = 0; r + 4 <= ROWS; r += 4)
            for (int tk = 0; tk < TOK; tk++) {
                float out[4];
                dot4(n, w + (size_t)r * wrb, wrb, xq + (size_t)tk * xrb, out);
                for (int j = 0; j < 4; j++)
                    cr_assert(out[j] == ref[r + j][tk],
                              "%s %d-bit %s n %lld row %d tok %d seed %llu: dot4 %.9g dot %.9g",
                              kq_type_name(t), bits, f.name, (long long)n, r + j, tk,
                              (unsigned long long)seed, out[j], ref[r + j][tk]);
            }
}

static void check_contract(uint32_t t, int bits, int level, int64_t n)
{
    kq_set_simd_level(level);
    const kq_dot_family *k = kq_get_dot_family(t, bits);
    family f = {k->dot, k->dot4, k->multi, k->prep, k->prep_pair_bytes, kq_simd_name()};
    check_family(t, bits, n, f);
    kq_set_simd_level(-1);
}

Test(quant_avx512, dot_dot4_multi_bit_identical)
{
    fresh_seed();
    int cpu = kq_simd_cpu_level();
    for (int level = KQ_SIMD_SCALAR; level <= cpu; level++)
        for (size_t k = 0; k < sizeof k_qtypes / sizeof k_qtypes[0]; k++) {
            uint32_t t = k_qtypes[k];
            int64_t n = kq_block_elems(t) == 256 ? 768 : 576;
            check_contract(t, 16, level, n);
            check_contract(t, 8, level, n);
            if (t == KQ_Q4_1) /* the default model's type: also the long rows */
                check_contract(t, 16, level, 1536);
        }
    if (cpu < KQ_SIMD_AVX512VNNI)
        cr_skip_test("CPU lacks AVX512-VNNI: checked scalar%s only", cpu ? " and AVX2" : "");
}

/* quant_avx512.c's VBMI kernels by name (what the VBMI level picks for Q4_1
 * and Q8_0 with 16-bit activations): their own contract on odd block counts
 * (a lone last block pairs with zeros), the prepped layout's size, and the
 * scalar path within the bound above, with full-range codes and
 * activations (the int32 and float-exactness bounds of the byte split). */
Test(quant_avx512, vbmi_kernels)
{
    if (!have_vbmi())
        cr_skip_test("CPU lacks AVX512-VBMI: the kernels cannot run");
    fresh_seed();
    const family fams[2] = {
        {kq_vbmi_q16_dot_q4_1, kq_vbmi_q16_dot4_q4_1, kq_vbmi_q16_dot_multi_q4_1, kq_vbmi_q16_prep_pairs,
         KQ_VBMI_PAIR_BYTES, "vbmi512 q4_1"},
        {kq_vbmi_q16_dot_q8_0, NULL, kq_vbmi_q16_dot_multi_q8_0, kq_vbmi_q16_prep_pairs8,
         KQ_VBMI_PAIR8_BYTES, "vbmi512 q8_0"}};
    const uint32_t types[2] = {KQ_Q4_1, KQ_Q8_0};
    static const int64_t ns[] = {32, 96, 576, 1536};
    for (int fi = 0; fi < 2; fi++) {
        const family f = fams[fi];
        const uint32_t t = types[fi];
        kq_set_simd_level(KQ_SIMD_AVX512VBMI);
        const kq_dot_family *k = kq_get_dot_family(t, 16);
        cr_assert(k->dot == f.dot && k->prep == f.prep && k->prep_pair_bytes == f.prep_pair_bytes, "%s",
                  f.name);
        kq_set_simd_level(-1);
        cr_assert_eq(kq_prep_row_bytes(k, KQ_Q16_1, 576), 9 * (size_t)f.prep_pair_bytes);
        cr_assert_eq(kq_prep_row_bytes(k, KQ_Q16_1, 96), 2 * (size_t)f.prep_pair_bytes);
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
            check_family(t, 16, ns[i], f);
        static uint8_t w[2048], xq[4096], xp[8192];
        static float x[1536], wf[1536];
        for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++)
            for (int rep = 0; rep < 12; rep++) {
                int64_t n = ns[j];
                random_rows(t, w, n, 1);
                if (rep == 2) /* extreme codes: -128/127 (Q8_0), 0/15 (Q4_1) */
                    for (size_t o = 0; o < kq_row_bytes(t, n); o += kq_block_bytes(t))
                        for (size_t b = t == KQ_Q8_0 ? 2 : 4; b < kq_block_bytes(t); b++)
                            w[o + b] = (uint8_t)(b % 2 ? 0x80 : 0x7F) | (t == KQ_Q4_1 ? 0xFF : 0);
                for (int64_t i = 0; i < n; i++)
                    x[i] = rnd_unit() * (rep % 3 ? 1.0f : 100.0f);
                if (rep == 1 || rep == 2) /* full-range activations everywhere */
                    for (int64_t i = 0; i < n; i++)
                        x[i] = i % 2 ? 100.0f : -100.0f;
                kq_dequantize_row(t, w, wf, n);
                double mag = 0;
                for (int64_t i = 0; i < n; i++)
                    mag += fabs((double)wf[i] * x[i]);
                kq_set_simd_level(KQ_SIMD_SCALAR);
                kq_quantize_row(KQ_Q16_1, x, xq, n);
                float ref = kq_vec_dot_bits(t, 16, n, w, xq);
                kq_set_simd_level(-1);
                f.prep(n, xq, xp);
                float got = f.dot(n, w, xp);
                cr_assert_leq(fabs(got - ref), 2e-6 * mag + 1e-6, "%s n %lld rep %d seed %llu: vbmi %.9g scalar %.9g",
                              f.name, (long long)n, rep, (unsigned long long)seed, got, ref);
            }
    }
}
