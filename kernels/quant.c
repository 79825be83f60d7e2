/* kq: the type traits table (one entry per format: its block facts and
 * every kernel for it, per activation precision and SIMD level), the run-time
 * SIMD choice, the lookups into the table and half/bfloat conversions.
 * The kernels live in quant_dequant.c, quant_scalar.c (8-bit activations,
 * float weights), quant_q16.c (16-bit activations) and quant_avx2*.c (built
 * twice: AVX2, and AVX512-VNNI as kq_vnni_*), quant_avx512.c.
 *
 * Process-wide state (documented exception to "no global mutable state"):
 * the SIMD level cap (a test/benchmark switch) and two caches of facts that
 * do not change during a run (PIVOT_SIMD, the CPU's level). CPU features are queried
 * through __builtin_cpu_supports, whose cache belongs to libgcc. */
#include "quant.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "pverr.h"
#include "quant_impl.h"

/* The cap set by kq_set_simd_level; < 0 = auto. */
static atomic_int g_simd_cap = -1;
/* PIVOT_SIMD as a level, read once: -2 = not read yet, -1 = unset/unknown.
 * Two threads racing on the first read store the same value. */
static atomic_int g_env_cap = -2;
/* The CPU's best level, detected once: -1 = not yet. */
static atomic_int g_cpu_level = -1;

void kq_set_simd_level(int max_level)
{
    atomic_store_explicit(&g_simd_cap, max_level < 0 ? -1 : max_level, memory_order_relaxed);
}

void kq_set_force_scalar(int on) { kq_set_simd_level(on ? KQ_SIMD_SCALAR : -1); }

#if defined(__x86_64__) || defined(__i386__)
#define KQ_X86 1
#include <immintrin.h>
#endif

int kq_simd_cpu_level(void)
{
    int lvl = atomic_load_explicit(&g_cpu_level, memory_order_relaxed);
    if (lvl >= 0)
        return lvl;
    lvl = KQ_SIMD_SCALAR;
#ifdef KQ_X86
    /* Feature names both gcc 12 and clang 14 accept (clang 14 lacks "f16c",
     * which is why the fuzz build, tests/fuzz/run.sh, defines the builtin
     * to 0 and so runs the scalar kernels). The VNNI kernels are the AVX2
     * ones with vpdpwssd/vpdpbusd on 256-bit vectors: they need AVX2/FMA/
     * F16C too, plus VL (256-bit EVEX) and BW (the 16-bit element forms). */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c")) {
        lvl = KQ_SIMD_AVX2;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")) {
            lvl = KQ_SIMD_AVX512VNNI;
            if (__builtin_cpu_supports("avx512vbmi"))
                lvl = KQ_SIMD_AVX512VBMI;
        }
    }
#endif
    atomic_store_explicit(&g_cpu_level, lvl, memory_order_relaxed);
    return lvl;
}

static int env_cap(void)
{
    int cap = atomic_load_explicit(&g_env_cap, memory_order_relaxed);
    if (cap != -2)
        return cap;
    const char *e = getenv("PIVOT_SIMD");
    cap = -1; /* unset or unknown: no cap (a typo must not silently slow the server down) */
    if (e && !strcmp(e, "scalar"))
        cap = KQ_SIMD_SCALAR;
    else if (e && !strcmp(e, "avx2"))
        cap = KQ_SIMD_AVX2;
    else if (e && !strcmp(e, "avx512vnni"))
        cap = KQ_SIMD_AVX512VNNI;
    else if (e && (!strcmp(e, "avx512vbmi") || !strcmp(e, "avx512")))
        cap = KQ_SIMD_AVX512VBMI;
    atomic_store_explicit(&g_env_cap, cap, memory_order_relaxed);
    return cap;
}

int kq_simd_level(void)
{
    int lvl = kq_simd_cpu_level();
    int cap = atomic_load_explicit(&g_simd_cap, memory_order_relaxed);
    if (cap < 0)
        cap = env_cap();
    return cap >= 0 && cap < lvl ? cap : lvl;
}

static const char *const k_simd_names[] = {"scalar", "avx2", "avx512vnni", "avx512vbmi"};

const char *kq_simd_name(void) { return k_simd_names[kq_simd_level()]; }

/* ---- half / bfloat conversions ------------------------------------------ */

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float kq_fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ffu;
    if (e == 0) {
        if (m == 0)
            return bits_f32(sign);
        /* subnormal half: normalize into an f32 exponent (all are normal
         * in f32). 113 = 127 - 15 + 1, the exponent of 2^-14. */
        uint32_t fe = 113;
        while (!(m & 0x400u)) {
            m <<= 1;
            fe--;
        }
        return bits_f32(sign | (fe << 23) | ((m & 0x3ffu) << 13));
    }
    if (e == 31) /* inf / NaN, payload kept */
        return bits_f32(sign | 0x7f800000u | (m << 13));
    return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t kq_fp32_to_fp16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) /* inf, or NaN kept quiet with its top payload bits */
        return (uint16_t)(sign | 0x7c00u | (x > 0x7f800000u ? 0x200u | ((x >> 13) & 0x3ffu) : 0));
    if (x < 0x38800000u) { /* below 2^-14: half subnormal or zero */
        uint32_t e = x >> 23;
        if (e < 102) /* < 2^-25: rounds to zero */
            return sign;
        uint32_t m = (x & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* to units of 2^-24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1)))
            r++; /* may carry into the smallest normal: still the right bits */
        return (uint16_t)(sign | r);
    }
    /* normal: rebias 127 -> 15 and round the 13 dropped bits to nearest even;
     * a carry propagates into the exponent and overflows to inf correctly */
    uint32_t h = (x - (112u << 23)) >> 13, rem = x & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++;
    if (h >= 0x7c00u)
        h = 0x7c00u;
    return (uint16_t)(sign | h);
}

#ifdef KQ_X86
/* F16C rounds to nearest even and quiets NaNs keeping their top payload
 * bits, as kq_fp32_to_fp16 does: the same bits */
__attribute__((target("avx,f16c"))) static void fp16_row_f16c(const float *src, uint16_t *dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        dst[i] = kq_fp32_to_fp16(src[i]);
}
#endif

void kq_fp32_to_fp16_row(const float *src, uint16_t *dst, int64_t n)
{
#ifdef KQ_X86
    if (kq_simd_cpu_level() >= KQ_SIMD_AVX2) {
        fp16_row_f16c(src, dst, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++)
        dst[i] = kq_fp32_to_fp16(src[i]);
}

float kq_bf16_to_fp32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

/* ---- multi-row dots for the families without their own ----------------------
 * One row dot per activation row (the weight row is still hot in L1 after
 * the first): trivially bit-identical to the single dot, as the consistency
 * contract in quant_impl.h asks. */
#define DEFINE_MULTI(name, dotfn)                                                             \
    static void name(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,  \
                     int64_t os)                                                              \
    {                                                                                         \
        for (int i = 0; i < nx; i++)                                                          \
            out[i * os] = dotfn(n, w, (const char *)x + (size_t)i * xs);                      \
    }
DEFINE_MULTI(multi_scalar_f32, kq_scalar_dot_f32)
DEFINE_MULTI(multi_scalar_f16, kq_scalar_dot_f16)
DEFINE_MULTI(multi_scalar_bf16, kq_scalar_dot_bf16)
DEFINE_MULTI(multi_scalar_q4_0, kq_scalar_dot_q4_0)
DEFINE_MULTI(multi_scalar_q4_1, kq_scalar_dot_q4_1)
DEFINE_MULTI(multi_scalar_q5_0, kq_scalar_dot_q5_0)
DEFINE_MULTI(multi_scalar_q5_1, kq_scalar_dot_q5_1)
DEFINE_MULTI(multi_scalar_q8_0, kq_scalar_dot_q8_0)
DEFINE_MULTI(multi_scalar_q4_K, kq_scalar_dot_q4_K)
DEFINE_MULTI(multi_scalar_q6_K, kq_scalar_dot_q6_K)
DEFINE_MULTI(multi_avx2_f32, kq_avx2_dot_f32)
DEFINE_MULTI(multi_avx2_f16, kq_avx2_dot_f16)
DEFINE_MULTI(multi_avx2_q4_K, kq_avx2_dot_q4_K)
DEFINE_MULTI(multi_avx2_q6_K, kq_avx2_dot_q6_K)
DEFINE_MULTI(multi_scalar_q16_q4_0, kq_scalar_q16_dot_q4_0)
DEFINE_MULTI(multi_scalar_q16_q4_1, kq_scalar_q16_dot_q4_1)
DEFINE_MULTI(multi_scalar_q16_q5_0, kq_scalar_q16_dot_q5_0)
DEFINE_MULTI(multi_scalar_q16_q5_1, kq_scalar_q16_dot_q5_1)
DEFINE_MULTI(multi_scalar_q16_q8_0, kq_scalar_q16_dot_q8_0)
DEFINE_MULTI(multi_scalar_q16_q4_K, kq_scalar_q16_dot_q4_K)
DEFINE_MULTI(multi_scalar_q16_q6_K, kq_scalar_q16_dot_q6_K)
DEFINE_MULTI(multi_avx2_q16_q4_0, kq_avx2_q16_dot_q4_0)
DEFINE_MULTI(multi_avx2_q16_q5_0, kq_avx2_q16_dot_q5_0)
DEFINE_MULTI(multi_avx2_q16_q5_1, kq_avx2_q16_dot_q5_1)
DEFINE_MULTI(multi_avx2_q16_q4_K, kq_avx2_q16_dot_q4_K)
DEFINE_MULTI(multi_avx2_q16_q6_K, kq_avx2_q16_dot_q6_K)
DEFINE_MULTI(multi_vnni_q16_q4_0, kq_vnni_q16_dot_q4_0)
DEFINE_MULTI(multi_vnni_q16_q5_0, kq_vnni_q16_dot_q5_0)
DEFINE_MULTI(multi_vnni_q16_q5_1, kq_vnni_q16_dot_q5_1)
DEFINE_MULTI(multi_vnni_q16_q4_K, kq_vnni_q16_dot_q4_K)
DEFINE_MULTI(multi_vnni_q16_q6_K, kq_vnni_q16_dot_q6_K)

/* ---- the type traits table ----------------------------------------------------
 * Per weight type, .dot[precision][level] = {dot, multi, dot4}; {0} = none at
 * that level (the lookup falls back to the level below; entries list the
 * levels up to their last non-empty one). Float weights take
 * f32 activations whatever the precision, so both rows are the same. */
#define NONE {NULL, NULL, NULL, NULL, 0}
#define FLOAT_DOTS(sc, scm, avx2, avx2m)                                                      \
    {{{sc, scm, NULL}, {avx2, avx2m, NULL}, NONE}, {{sc, scm, NULL}, {avx2, avx2m, NULL}, NONE}}

static const kq_type_traits k_traits[KQ_TYPE_COUNT] = {
    [KQ_F32] = {"F32", 1, 4, 1, kq_dequant_f32, {kq_scalar_quantize_f32}, {KQ_F32, KQ_F32},
                FLOAT_DOTS(kq_scalar_dot_f32, multi_scalar_f32, kq_avx2_dot_f32, multi_avx2_f32)},
    [KQ_F16] = {"F16", 1, 2, 1, kq_dequant_f16, {NULL}, {KQ_F32, KQ_F32},
                FLOAT_DOTS(kq_scalar_dot_f16, multi_scalar_f16, kq_avx2_dot_f16, multi_avx2_f16)},
    [KQ_BF16] = {"BF16", 1, 2, 1, kq_dequant_bf16, {NULL}, {KQ_F32, KQ_F32},
                 FLOAT_DOTS(kq_scalar_dot_bf16, multi_scalar_bf16, NULL, NULL)},
    [KQ_Q4_0] = {"Q4_0", KQ_QK, sizeof(kq_block_q4_0), 1, kq_dequant_q4_0, {NULL}, {KQ_Q8_0, KQ_Q16_1},
                 {{{kq_scalar_dot_q4_0, multi_scalar_q4_0, NULL},
                   {kq_avx2_dot_q4_0, kq_avx2_dot_multi_q4_0, NULL},
                   {kq_vnni_dot_q4_0, kq_vnni_dot_multi_q4_0, NULL}},
                  {{kq_scalar_q16_dot_q4_0, multi_scalar_q16_q4_0, NULL},
                   {kq_avx2_q16_dot_q4_0, multi_avx2_q16_q4_0, NULL},
                   {kq_vnni_q16_dot_q4_0, multi_vnni_q16_q4_0, NULL}}}},
    [KQ_Q4_1] = {"Q4_1", KQ_QK, sizeof(kq_block_q4_1), 1, kq_dequant_q4_1, {NULL}, {KQ_Q8_1, KQ_Q16_1},
                 {{{kq_scalar_dot_q4_1, multi_scalar_q4_1, NULL},
                   {kq_avx2_dot_q4_1, kq_avx2_dot_multi_q4_1, kq_avx2_dot4_q4_1},
                   {kq_vnni_dot_q4_1, kq_vnni_dot_multi_q4_1, kq_vnni_dot4_q4_1}},
                  {{kq_scalar_q16_dot_q4_1, multi_scalar_q16_q4_1, NULL},
                   {kq_avx2_q16_dot_q4_1, kq_avx2_q16_dot_multi_q4_1, kq_avx2_q16_dot4_q4_1},
                   {kq_vnni_q16_dot_q4_1, kq_vnni_q16_dot_multi_q4_1, kq_vnni_q16_dot4_q4_1},
                   {kq_vbmi_q16_dot_q4_1, kq_vbmi_q16_dot_multi_q4_1, kq_vbmi_q16_dot4_q4_1,
                    kq_vbmi_q16_prep_pairs, KQ_VBMI_PAIR_BYTES}}}},
    [KQ_Q5_0] = {"Q5_0", KQ_QK, sizeof(kq_block_q5_0), 1, kq_dequant_q5_0, {NULL}, {KQ_Q8_0, KQ_Q16_1},
                 {{{kq_scalar_dot_q5_0, multi_scalar_q5_0, NULL}, NONE, NONE},
                  {{kq_scalar_q16_dot_q5_0, multi_scalar_q16_q5_0, NULL},
                   {kq_avx2_q16_dot_q5_0, multi_avx2_q16_q5_0, NULL},
                   {kq_vnni_q16_dot_q5_0, multi_vnni_q16_q5_0, NULL}}}},
    [KQ_Q5_1] = {"Q5_1", KQ_QK, sizeof(kq_block_q5_1), 1, kq_dequant_q5_1, {NULL}, {KQ_Q8_1, KQ_Q16_1},
                 {{{kq_scalar_dot_q5_1, multi_scalar_q5_1, NULL}, NONE, NONE},
                  {{kq_scalar_q16_dot_q5_1, multi_scalar_q16_q5_1, NULL},
                   {kq_avx2_q16_dot_q5_1, multi_avx2_q16_q5_1, NULL},
                   {kq_vnni_q16_dot_q5_1, multi_vnni_q16_q5_1, NULL}}}},
    /* Q8_0 is a weight format and the 8-bit activations of the _0 weights */
    [KQ_Q8_0] = {"Q8_0", KQ_QK, sizeof(kq_block_q8_0), 1, kq_dequant_q8_0,
                 {kq_scalar_quantize_q8_0, kq_avx2_quantize_q8_0}, {KQ_Q8_0, KQ_Q16_1},
                 {{{kq_scalar_dot_q8_0, multi_scalar_q8_0, NULL},
                   {kq_avx2_dot_q8_0, kq_avx2_dot_multi_q8_0, NULL},
                   {kq_vnni_dot_q8_0, kq_vnni_dot_multi_q8_0, NULL}},
                  {{kq_scalar_q16_dot_q8_0, multi_scalar_q16_q8_0, NULL},
                   {kq_avx2_q16_dot_q8_0, kq_avx2_q16_dot_multi_q8_0, NULL},
                   {kq_vnni_q16_dot_q8_0, kq_vnni_q16_dot_multi_q8_0, NULL},
                   {kq_vbmi_q16_dot_q8_0, kq_vbmi_q16_dot_multi_q8_0, NULL, kq_vbmi_q16_prep_pairs8,
                    KQ_VBMI_PAIR8_BYTES}}}},
    [KQ_Q4_K] = {"Q4_K", KQ_QKK, sizeof(kq_block_q4_K), 1, kq_dequant_q4_K, {NULL}, {KQ_Q8_K, KQ_Q16_K},
                 {{{kq_scalar_dot_q4_K, multi_scalar_q4_K, NULL},
                   {kq_avx2_dot_q4_K, multi_avx2_q4_K, NULL}, NONE},
                  {{kq_scalar_q16_dot_q4_K, multi_scalar_q16_q4_K, NULL},
                   {kq_avx2_q16_dot_q4_K, multi_avx2_q16_q4_K, NULL},
                   {kq_vnni_q16_dot_q4_K, multi_vnni_q16_q4_K, NULL}}}},
    [KQ_Q6_K] = {"Q6_K", KQ_QKK, sizeof(kq_block_q6_K), 1, kq_dequant_q6_K, {NULL}, {KQ_Q8_K, KQ_Q16_K},
                 {{{kq_scalar_dot_q6_K, multi_scalar_q6_K, NULL},
                   {kq_avx2_dot_q6_K, multi_avx2_q6_K, NULL}, NONE},
                  {{kq_scalar_q16_dot_q6_K, multi_scalar_q16_q6_K, NULL},
                   {kq_avx2_q16_dot_q6_K, multi_avx2_q16_q6_K, NULL},
                   {kq_vnni_q16_dot_q6_K, multi_vnni_q16_q6_K, NULL}}}},
    /* activation-only formats: no dots of their own. The quantizers have no
     * integer dot products, so the AVX2 ones serve the VNNI level too. */
    [KQ_Q8_1] = {"Q8_1", KQ_QK, sizeof(kq_block_q8_1), 0, kq_dequant_q8_1,
                 {kq_scalar_quantize_q8_1, kq_avx2_quantize_q8_1}, {0}, {{NONE}}},
    [KQ_Q8_K] = {"Q8_K", KQ_QKK, sizeof(kq_block_q8_K), 0, kq_dequant_q8_K,
                 {kq_scalar_quantize_q8_K, kq_avx2_quantize_q8_K}, {0}, {{NONE}}},
    [KQ_Q16_1] = {"Q16_1", KQ_QK, sizeof(kq_block_q16_1), 0, kq_dequant_q16_1,
                  {kq_q16_quantize_1, kq_avx2_q16_quantize_1}, {0}, {{NONE}}},
    [KQ_Q16_K] = {"Q16_K", KQ_QKK, sizeof(kq_block_q16_K), 0, kq_dequant_q16_K,
                  {kq_q16_quantize_K, kq_avx2_q16_quantize_K}, {0}, {{NONE}}},
};

const kq_type_traits *kq_type_traits_of(uint32_t type)
{
    if (type >= KQ_TYPE_COUNT || !k_traits[type].name)
        return NULL;
    return &k_traits[type];
}

static const kq_type_traits *traits(uint32_t type) { return kq_type_traits_of(type); }

int kq_known(uint32_t type) { return traits(type) != NULL; }
int kq_weight_supported(uint32_t type) { return traits(type) && traits(type)->weight; }
const char *kq_type_name(uint32_t type) { return traits(type) ? traits(type)->name : NULL; }
size_t kq_block_elems(uint32_t type) { return traits(type) ? traits(type)->blk : 0; }
size_t kq_block_bytes(uint32_t type) { return traits(type) ? traits(type)->bytes : 0; }

size_t kq_row_bytes(uint32_t type, int64_t n)
{
    const kq_type_traits *t = traits(type);
    if (!t || n < 0 || n % t->blk)
        return 0;
    return (size_t)(n / t->blk) * t->bytes;
}

uint32_t kq_vec_dot_type_bits(uint32_t type, int bits)
{
    if (bits != 8 && bits != 16)
        return UINT32_MAX;
    /* activation-only formats have no dot of their own: report F32 for them
     * and for unknown ids so callers size buffers sanely */
    if (!kq_weight_supported(type))
        return KQ_F32;
    return traits(type)->vec_dot_type[bits == 8 ? KQ_ACT8 : KQ_ACT16];
}

uint32_t kq_vec_dot_type(uint32_t type) { return kq_vec_dot_type_bits(type, 8); }

int kq_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n)
{
    const kq_type_traits *t = traits(type);
    if (!t || !src || !dst || n < 0 || n % t->blk)
        return PV_EINVAL;
    t->dequantize(src, dst, n);
    return PV_OK;
}

kq_quant_fn kq_get_quant(uint32_t vdt)
{
    const kq_type_traits *t = traits(vdt);
    for (int l = t ? kq_simd_level() : -1; l >= 0; l--)
        if (t->quantize[l])
            return t->quantize[l];
    return NULL;
}

int kq_quantize_row(uint32_t vdt, const float *src, void *dst, int64_t n)
{
    kq_quant_fn f = kq_get_quant(vdt);
    if (!f || !src || !dst || n < 0 || n % (int64_t)kq_block_elems(vdt))
        return PV_EINVAL;
    f(src, dst, n);
    return PV_OK;
}

const kq_dot_family *kq_get_dot_family(uint32_t type, int bits)
{
    const kq_type_traits *t = traits(type);
    if (!t || (bits != 8 && bits != 16))
        return NULL;
    const kq_dot_family *f = t->dot[bits == 8 ? KQ_ACT8 : KQ_ACT16];
    for (int l = kq_simd_level(); l >= 0; l--)
        if (f[l].dot)
            return &f[l];
    return NULL;
}

kq_dot_fn kq_get_dot(uint32_t type, int bits)
{
    const kq_dot_family *f = kq_get_dot_family(type, bits);
    return f ? f->dot : NULL;
}

kq_dot_multi_fn kq_get_dot_multi(uint32_t type, int bits)
{
    const kq_dot_family *f = kq_get_dot_family(type, bits);
    return f ? f->multi : NULL;
}

kq_dot4_fn kq_get_dot4(uint32_t type, int bits)
{
    const kq_dot_family *f = kq_get_dot_family(type, bits);
    return f ? f->dot4 : NULL;
}

size_t kq_prep_row_bytes(const kq_dot_family *f, uint32_t vdt, int64_t n)
{
    if (!f || !f->prep)
        return kq_row_bytes(vdt, n);
    int64_t pair = 2 * (int64_t)kq_block_elems(vdt);
    return pair > 0 && n >= 0 ? (size_t)((n + pair - 1) / pair) * f->prep_pair_bytes : 0;
}

float kq_vec_dot_bits(uint32_t type, int bits, int64_t n, const void *w_row, const void *x_row)
{
    const kq_dot_family *f = kq_get_dot_family(type, bits);
    /* NaN (not 0) for misuse: a silent zero would hide the bug downstream */
    if (!f || !w_row || !x_row || n < 0 || n % (int64_t)kq_block_elems(type))
        return NAN;
    if (!f->prep)
        return f->dot(n, w_row, x_row);
    /* a convenience for tests and one-off dots (matmul.c preps once per
     * call): the family's layout in a temporary */
    void *xp = malloc(kq_prep_row_bytes(f, kq_vec_dot_type_bits(type, bits), n) + 1);
    if (!xp)
        return NAN;
    f->prep(n, x_row, xp);
    float r = f->dot(n, w_row, xp);
    free(xp);
    return r;
}

float kq_vec_dot(uint32_t type, int64_t n, const void *w_row, const void *x_row)
{
    return kq_vec_dot_bits(type, 8, n, w_row, x_row);
}
