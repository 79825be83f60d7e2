/* The type traits table (kernels/quant_impl.h, kq_type_traits_of): every
 * weight format Pivot reads has a complete entry whose block facts are
 * GGML's, the lookups honour the level fallback rule, and every SIMD kernel
 * the table lists (at the levels this CPU has) agrees with the scalar one:
 * quantizers byte for byte, dots within float rounding, and each family's
 * multi and dot4 bit for bit with its dot (the consistency contract). */
#include <criterion/criterion.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "quant.h"
#include "quant_impl.h"

/* GGML's block facts (ggml.c type_traits / gguf-py GGML_QUANT_SIZES): the
 * sizes a GGUF file's tensor data is laid out in. */
static const struct {
    uint32_t type;
    const char *name;
    uint32_t blk, bytes;
    int weight;
} k_ggml[] = {
    {KQ_F32, "F32", 1, 4, 1},       {KQ_F16, "F16", 1, 2, 1},       {KQ_BF16, "BF16", 1, 2, 1},
    {KQ_Q4_0, "Q4_0", 32, 18, 1},   {KQ_Q4_1, "Q4_1", 32, 20, 1},   {KQ_Q5_0, "Q5_0", 32, 22, 1},
    {KQ_Q5_1, "Q5_1", 32, 24, 1},   {KQ_Q8_0, "Q8_0", 32, 34, 1},   {KQ_Q4_K, "Q4_K", 256, 144, 1},
    {KQ_Q6_K, "Q6_K", 256, 210, 1}, {KQ_Q8_K, "Q8_K", 256, 292, 0},
};
#define N_GGML (sizeof k_ggml / sizeof k_ggml[0])

static int is_listed_weight(uint32_t t)
{
    for (size_t i = 0; i < N_GGML; i++)
        if (k_ggml[i].type == t)
            return k_ggml[i].weight;
    return 0;
}

static int bits_of(int p) { return p == KQ_ACT8 ? 8 : 16; }

Test(quant_traits, ggml_block_facts)
{
    for (size_t i = 0; i < N_GGML; i++) {
        const kq_type_traits *t = kq_type_traits_of(k_ggml[i].type);
        cr_assert_not_null(t, "%s has no entry", k_ggml[i].name);
        cr_assert_str_eq(t->name, k_ggml[i].name);
        cr_assert_eq(t->blk, k_ggml[i].blk, "%s", t->name);
        cr_assert_eq(t->bytes, k_ggml[i].bytes, "%s", t->name);
        cr_assert_eq(t->weight, k_ggml[i].weight, "%s", t->name);
    }
    /* no other id claims to be a weight, and ids past the table are unknown */
    for (uint32_t id = 0; id < KQ_TYPE_COUNT + 8; id++) {
        const kq_type_traits *t = kq_type_traits_of(id);
        cr_assert_eq(t && t->weight, is_listed_weight(id), "id %u", id);
        cr_assert_eq(kq_weight_supported(id), is_listed_weight(id), "id %u", id);
    }
    cr_assert_null(kq_type_traits_of(UINT32_MAX));
}

/* Complete entries: a dequantizer for every known type; for every weight
 * type an activation format per precision whose blocks tile its blocks and
 * which can be quantized to, and a scalar family per precision; at every
 * level a family is all-or-nothing (no multi or dot4 without a dot, no dot
 * without a multi). */
Test(quant_traits, entries_are_complete)
{
    int n_weights = 0;
    for (uint32_t id = 0; id < KQ_TYPE_COUNT; id++) {
        const kq_type_traits *t = kq_type_traits_of(id);
        if (!t)
            continue;
        cr_assert(t->blk > 0 && t->bytes > 0, "%s", t->name);
        cr_assert_not_null(t->dequantize, "%s", t->name);
        for (int p = 0; p < KQ_ACT_KINDS; p++)
            for (int l = 0; l < KQ_SIMD_LEVELS; l++) {
                const kq_dot_family *f = &t->dot[p][l];
                cr_assert(!t->weight ? !f->dot : (f->dot != NULL) == (f->multi != NULL),
                          "%s %d-bit level %d: incomplete family", t->name, bits_of(p), l);
                cr_assert(f->dot || !f->dot4, "%s %d-bit level %d: dot4 without dot", t->name,
                          bits_of(p), l);
            }
        if (!t->weight)
            continue;
        n_weights++;
        for (int p = 0; p < KQ_ACT_KINDS; p++) {
            const kq_type_traits *a = kq_type_traits_of(t->vec_dot_type[p]);
            cr_assert_not_null(a, "%s %d-bit: activation format", t->name, bits_of(p));
            cr_assert_eq(a->blk, t->blk, "%s: activation blocks must tile the weight's", t->name);
            cr_assert_not_null(a->quantize[KQ_SIMD_SCALAR], "%s: no quantizer to %s", t->name,
                               a->name);
            cr_assert_not_null(t->dot[p][KQ_SIMD_SCALAR].dot, "%s %d-bit: no scalar dot", t->name,
                               bits_of(p));
        }
    }
    cr_assert_eq(n_weights, 10);
}

/* kq_get_dot_family at level L is the best level <= L that has a family. */
Test(quant_traits, lookup_falls_back_by_level)
{
    int cpu = kq_simd_cpu_level();
    for (int cap = 0; cap <= cpu; cap++) {
        kq_set_simd_level(cap);
        for (uint32_t id = 0; id < KQ_TYPE_COUNT; id++) {
            const kq_type_traits *t = kq_type_traits_of(id);
            if (!t || !t->weight)
                continue;
            for (int p = 0; p < KQ_ACT_KINDS; p++) {
                int l = cap;
                while (l > 0 && !t->dot[p][l].dot)
                    l--;
                const kq_dot_family *f = kq_get_dot_family(id, bits_of(p));
                cr_assert_eq(f, &t->dot[p][l], "%s %d-bit cap %d", t->name, bits_of(p), cap);
                cr_assert_eq(kq_get_dot(id, bits_of(p)), f->dot);
                cr_assert_eq(kq_get_dot_multi(id, bits_of(p)), f->multi);
                cr_assert_eq(kq_get_dot4(id, bits_of(p)), f->dot4);
            }
        }
    }
    kq_set_simd_level(-1);
    cr_assert_null(kq_get_dot_family(KQ_Q4_1, 12));
    cr_assert_null(kq_get_dot_family(KQ_Q8_1, 8)); /* activation-only */
}

/* ---- random inputs ------------------------------------------------------------------ */

static uint64_t g_rng;
static uint32_t rnd(void)
{
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(g_rng >> 33);
}
static float rnd_sym(float amp) { return amp * ((float)rnd() / 1073741824.0f - 1.0f); } /* [-amp, amp) */

/* Where the fp16 scales sit in a block: random bytes there could be inf or
 * NaN, so they get sane values; every other byte (codes, packed sub-block
 * scales) stays random. */
static const struct {
    uint32_t type;
    size_t off[2];
    int n;
} k_scale_fields[] = {
    {KQ_Q4_0, {offsetof(kq_block_q4_0, d)}, 1},
    {KQ_Q5_0, {offsetof(kq_block_q5_0, d)}, 1},
    {KQ_Q8_0, {offsetof(kq_block_q8_0, d)}, 1},
    {KQ_Q4_1, {offsetof(kq_block_q4_1, d), offsetof(kq_block_q4_1, m)}, 2},
    {KQ_Q5_1, {offsetof(kq_block_q5_1, d), offsetof(kq_block_q5_1, m)}, 2},
    {KQ_Q4_K, {offsetof(kq_block_q4_K, d), offsetof(kq_block_q4_K, dmin)}, 2},
    {KQ_Q6_K, {offsetof(kq_block_q6_K, d)}, 1},
};

static void random_weights(uint32_t type, uint8_t *w, int64_t n)
{
    const kq_type_traits *t = kq_type_traits_of(type);
    size_t rb = kq_row_bytes(type, n);
    if (t->blk == 1) { /* float formats: values in [-1, 1) */
        for (int64_t i = 0; i < n; i++) {
            float f = rnd_sym(1.0f);
            uint32_t u;
            memcpy(&u, &f, 4);
            uint16_t h = type == KQ_F16 ? kq_fp32_to_fp16(f) : (uint16_t)(u >> 16);
            if (type == KQ_F32)
                memcpy(w + 4 * i, &f, 4);
            else
                memcpy(w + 2 * i, &h, 2);
        }
        return;
    }
    for (size_t i = 0; i < rb; i++)
        w[i] = (uint8_t)rnd();
    for (size_t k = 0; k < sizeof k_scale_fields / sizeof k_scale_fields[0]; k++) {
        if (k_scale_fields[k].type != type)
            continue;
        for (size_t o = 0; o < rb; o += t->bytes)
            for (int f = 0; f < k_scale_fields[k].n; f++) {
                uint16_t h = kq_fp32_to_fp16(0.001f + fabsf(rnd_sym(0.01f)));
                memcpy(w + o + k_scale_fields[k].off[f], &h, 2);
            }
        return;
    }
    cr_assert_fail("%s: no scale layout in the test", t->name);
}

/* Every quantizer the table lists at a level this CPU has writes the
 * scalar one's bytes. */
Test(quant_traits, quantizers_match_scalar)
{
    enum { N = 1024 };
    static float x[N];
    static uint8_t ref[N * 4], got[N * 4];
    g_rng = 7;
    for (int i = 0; i < N; i++)
        x[i] = rnd_sym(i % 97 == 0 ? 50.0f : 1.0f);
    for (uint32_t id = 0; id < KQ_TYPE_COUNT; id++) {
        const kq_type_traits *t = kq_type_traits_of(id);
        if (!t || !t->quantize[KQ_SIMD_SCALAR])
            continue;
        size_t rb = kq_row_bytes(id, N);
        cr_assert(rb > 0 && rb <= sizeof ref);
        t->quantize[KQ_SIMD_SCALAR](x, ref, N);
        for (int l = 1; l <= kq_simd_cpu_level(); l++) {
            if (!t->quantize[l])
                continue;
            memset(got, 0xA5, rb);
            t->quantize[l](x, got, N);
            cr_assert_eq(memcmp(ref, got, rb), 0, "%s level %d", t->name, l);
        }
    }
}

/* |a - b| within float rounding of the terms' magnitude */
static void assert_close(double a, double b, double mag, const char *what, int l)
{
    cr_assert_leq(fabs(a - b), 2e-5 * mag + 1e-6, "%s level %d: %.9g vs scalar %.9g (mag %g)", what, l,
                  a, b, mag);
}

/* One family against the scalar dot on 4 weight rows and 5 tokens. */
static void check_family(const kq_type_traits *t, int p, int l, const uint8_t *w, size_t wrb,
                         const uint8_t *xq, size_t xrb, int64_t n, const double *mag)
{
    const kq_dot_family *f = &t->dot[p][l], *s = &t->dot[p][KQ_SIMD_SCALAR];
    char what[48];
    snprintf(what, sizeof what, "%s %d-bit", t->name, bits_of(p));
    /* a family with its own activation layout reads the rows prepped */
    static uint8_t xp[5 * 4096];
    const uint8_t *fx = xq;
    size_t fxb = xrb;
    if (f->prep) {
        fxb = kq_prep_row_bytes(f, t->vec_dot_type[p], n);
        cr_assert(5 * fxb <= sizeof xp);
        for (int k = 0; k < 5; k++)
            f->prep(n, xq + k * xrb, xp + k * fxb);
        fx = xp;
    }
    float multi[4][5], d4[5][4];
    for (int r = 0; r < 4; r++)
        f->multi(n, w + r * wrb, fx, fxb, 5, multi[r], 1);
    for (int k = 0; k < 5 && f->dot4; k++)
        f->dot4(n, w, wrb, fx + k * fxb, d4[k]);
    for (int r = 0; r < 4; r++)
        for (int k = 0; k < 5; k++) {
            float one = f->dot(n, w + r * wrb, fx + k * fxb);
            float sc = s->dot(n, w + r * wrb, xq + k * xrb);
            assert_close(one, sc, mag[r * 5 + k], what, l);
            /* the family's forms agree bit for bit (quant_impl.h) */
            cr_assert(memcmp(&one, &multi[r][k], 4) == 0, "%s level %d: multi %.9g dot %.9g", what,
                      l, multi[r][k], one);
            cr_assert(!f->dot4 || memcmp(&one, &d4[k][r], 4) == 0, "%s level %d: dot4 %.9g dot %.9g",
                      what, l, d4[k][r], one);
        }
}

Test(quant_traits, every_level_agrees_with_scalar)
{
    enum { N = 512, ROWS = 4, TOK = 5 };
    static uint8_t w[ROWS * N * 4], xq[TOK * N * 4];
    static float x[TOK * N], wf[N], xf[N];
    double mag[ROWS * TOK];
    g_rng = 42;
    for (uint32_t id = 0; id < KQ_TYPE_COUNT; id++) {
        const kq_type_traits *t = kq_type_traits_of(id);
        if (!t || !t->weight)
            continue;
        size_t wrb = kq_row_bytes(id, N);
        for (int rep = 0; rep < 3; rep++) {
            for (int r = 0; r < ROWS; r++)
                random_weights(id, w + r * wrb, N);
            for (int i = 0; i < TOK * N; i++)
                x[i] = rnd_sym(rep == 2 ? 100.0f : 1.0f);
            for (int p = 0; p < KQ_ACT_KINDS; p++) {
                const kq_type_traits *a = kq_type_traits_of(t->vec_dot_type[p]);
                size_t xrb = kq_row_bytes(t->vec_dot_type[p], N);
                for (int k = 0; k < TOK; k++)
                    a->quantize[KQ_SIMD_SCALAR](x + k * N, xq + k * xrb, N);
                /* the magnitude sum|w x| the float rounding scales with */
                for (int r = 0; r < ROWS; r++) {
                    t->dequantize(w + r * wrb, wf, N);
                    for (int k = 0; k < TOK; k++) {
                        a->dequantize(xq + k * xrb, xf, N);
                        double m = 0;
                        for (int i = 0; i < N; i++)
                            m += fabs((double)wf[i] * xf[i]);
                        mag[r * TOK + k] = m;
                    }
                }
                for (int l = 0; l <= kq_simd_cpu_level(); l++)
                    if (t->dot[p][l].dot)
                        check_family(t, p, l, w, wrb, xq, xrb, N, mag);
            }
        }
    }
}
