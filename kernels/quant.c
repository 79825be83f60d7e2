/* kq: type traits, dequantization, activation quantization and the portable
 * (scalar) dot products. SIMD variants live in quant_avx2*.c (built twice:
 * AVX2, and AVX512-VNNI as kq_vnni_*); this file picks them at run time.
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
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
            lvl = KQ_SIMD_AVX512VNNI;
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
    else if (e && (!strcmp(e, "avx512vnni") || !strcmp(e, "avx512")))
        cap = KQ_SIMD_AVX512VNNI;
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

static const char *const k_simd_names[] = {"scalar", "avx2", "avx512vnni"};

const char *kq_simd_name(void) { return k_simd_names[kq_simd_level()]; }

/* pick the kernel for level l among scalar / AVX2 / VNNI versions */
#define PICK(l, sc, avx2, vnni) ((l) >= KQ_SIMD_AVX512VNNI ? (vnni) : (l) == KQ_SIMD_AVX2 ? (avx2) : (sc))

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

float kq_bf16_to_fp32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

#define H2F(h) kq_fp16_to_fp32(h)

/* ---- type traits ---------------------------------------------------------- */

typedef struct {
    const char *name;
    uint32_t blk, bytes;
    uint32_t vec_dot_type;    /* with 8-bit activations */
    uint32_t vec_dot_type16;  /* with 16-bit activations */
    int weight; /* readable as a weight */
} kq_traits;

static const kq_traits k_traits[KQ_TYPE_COUNT] = {
    [KQ_F32] = {"F32", 1, 4, KQ_F32, KQ_F32, 1},
    [KQ_F16] = {"F16", 1, 2, KQ_F32, KQ_F32, 1},
    [KQ_BF16] = {"BF16", 1, 2, KQ_F32, KQ_F32, 1},
    [KQ_Q4_0] = {"Q4_0", KQ_QK, sizeof(kq_block_q4_0), KQ_Q8_0, KQ_Q16_1, 1},
    [KQ_Q4_1] = {"Q4_1", KQ_QK, sizeof(kq_block_q4_1), KQ_Q8_1, KQ_Q16_1, 1},
    [KQ_Q5_0] = {"Q5_0", KQ_QK, sizeof(kq_block_q5_0), KQ_Q8_0, KQ_Q16_1, 1},
    [KQ_Q5_1] = {"Q5_1", KQ_QK, sizeof(kq_block_q5_1), KQ_Q8_1, KQ_Q16_1, 1},
    [KQ_Q8_0] = {"Q8_0", KQ_QK, sizeof(kq_block_q8_0), KQ_Q8_0, KQ_Q16_1, 1},
    [KQ_Q8_1] = {"Q8_1", KQ_QK, sizeof(kq_block_q8_1), KQ_Q8_1, KQ_Q8_1, 0},
    [KQ_Q4_K] = {"Q4_K", KQ_QKK, sizeof(kq_block_q4_K), KQ_Q8_K, KQ_Q16_K, 1},
    [KQ_Q6_K] = {"Q6_K", KQ_QKK, sizeof(kq_block_q6_K), KQ_Q8_K, KQ_Q16_K, 1},
    [KQ_Q8_K] = {"Q8_K", KQ_QKK, sizeof(kq_block_q8_K), KQ_Q8_K, KQ_Q8_K, 0},
    [KQ_Q16_1] = {"Q16_1", KQ_QK, sizeof(kq_block_q16_1), KQ_Q16_1, KQ_Q16_1, 0},
    [KQ_Q16_K] = {"Q16_K", KQ_QKK, sizeof(kq_block_q16_K), KQ_Q16_K, KQ_Q16_K, 0},
};

static const kq_traits *traits(uint32_t type)
{
    if (type >= KQ_TYPE_COUNT || !k_traits[type].name)
        return NULL;
    return &k_traits[type];
}

int kq_known(uint32_t type) { return traits(type) != NULL; }
int kq_weight_supported(uint32_t type) { return traits(type) && traits(type)->weight; }
const char *kq_type_name(uint32_t type) { return traits(type) ? traits(type)->name : NULL; }
size_t kq_block_elems(uint32_t type) { return traits(type) ? traits(type)->blk : 0; }
size_t kq_block_bytes(uint32_t type) { return traits(type) ? traits(type)->bytes : 0; }

size_t kq_row_bytes(uint32_t type, int64_t n)
{
    const kq_traits *t = traits(type);
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
    return bits == 8 ? traits(type)->vec_dot_type : traits(type)->vec_dot_type16;
}

uint32_t kq_vec_dot_type(uint32_t type) { return kq_vec_dot_type_bits(type, 8); }

/* ---- dequantization -------------------------------------------------------- */

static uint32_t load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int kq_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n)
{
    const kq_traits *t = traits(type);
    if (!t || !src || !dst || n < 0 || n % t->blk)
        return PV_EINVAL;
    const int64_t nb = n / t->blk;
    switch (type) {
    case KQ_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case KQ_F16:
    case KQ_BF16: {
        const uint16_t *h = src;
        for (int64_t i = 0; i < n; i++)
            dst[i] = type == KQ_F16 ? H2F(h[i]) : kq_bf16_to_fp32(h[i]);
        break;
    }
    case KQ_Q4_0:
        for (int64_t i = 0; i < nb; i++) {
            const kq_block_q4_0 *b = (const kq_block_q4_0 *)src + i;
            float d = H2F(b->d), *y = dst + i * KQ_QK;
            for (int j = 0; j < 16; j++) {
                y[j] = ((b->qs[j] & 0xF) - 8) * d;
                y[j + 16] = ((b->qs[j] >> 4) - 8) * d;
            }
        }
        break;
    case KQ_Q4_1:
        for (int64_t i = 0; i < nb; i++) {
            const kq_block_q4_1 *b = (const kq_block_q4_1 *)src + i;
            float d = H2F(b->d), m = H2F(b->m), *y = dst + i * KQ_QK;
            for (int j = 0; j < 16; j++) {
                y[j] = (b->qs[j] & 0xF) * d + m;
                y[j + 16] = (b->qs[j] >> 4) * d + m;
            }
        }
        break;
    case KQ_Q5_0:
    case KQ_Q5_1:
        for (int64_t i = 0; i < nb; i++) {
            const uint8_t *qs, *qhp;
            float d, m;
            if (type == KQ_Q5_0) {
                const kq_block_q5_0 *b = (const kq_block_q5_0 *)src + i;
                d = H2F(b->d), m = -16.0f * d, qs = b->qs, qhp = b->qh;
            } else {
                const kq_block_q5_1 *b = (const kq_block_q5_1 *)src + i;
                d = H2F(b->d), m = H2F(b->m), qs = b->qs, qhp = b->qh;
            }
            uint32_t qh = load_u32le(qhp);
            float *y = dst + i * KQ_QK;
            for (int j = 0; j < 16; j++) {
                int q0 = (qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
                int q1 = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
                /* Q5_0: (q-16)*d, written as q*d + (-16d) like Q5_1 */
                y[j] = type == KQ_Q5_0 ? (q0 - 16) * d : q0 * d + m;
                y[j + 16] = type == KQ_Q5_0 ? (q1 - 16) * d : q1 * d + m;
            }
        }
        break;
    case KQ_Q8_0:
        for (int64_t i = 0; i < nb; i++) {
            const kq_block_q8_0 *b = (const kq_block_q8_0 *)src + i;
            float d = H2F(b->d);
            for (int j = 0; j < KQ_QK; j++)
                dst[i * KQ_QK + j] = b->qs[j] * d;
        }
        break;
    case KQ_Q8_1:
        for (int64_t i = 0; i < nb; i++) {
            const kq_block_q8_1 *b = (const kq_block_q8_1 *)src + i;
            float d = b->d;
            for (int j = 0; j < KQ_QK; j++)
                dst[i * KQ_QK + j] = b->qs[j] * d;
        }
        break;
    case KQ_Q8_K:
        for (int64_t i = 0; i < nb; i++) {
            const kq_block_q8_K *b = (const kq_block_q8_K *)src + i;
            for (int j = 0; j < KQ_QKK; j++)
                dst[i * KQ_QKK + j] = b->qs[j] * b->d;
        }
        break;
    case KQ_Q16_1:
        for (int64_t i = 0; i < nb; i++) {
            const kq_block_q16_1 *b = (const kq_block_q16_1 *)src + i;
            for (int j = 0; j < KQ_QK; j++)
                dst[i * KQ_QK + j] = b->q[j] * b->d;
        }
        break;
    case KQ_Q16_K:
        for (int64_t i = 0; i < nb; i++) {
            const kq_block_q16_K *b = (const kq_block_q16_K *)src + i;
            for (int j = 0; j < KQ_QKK; j++)
                dst[i * KQ_QKK + j] = b->q[j] * b->d;
        }
        break;
    case KQ_Q4_K:
        for (int64_t i = 0; i < nb; i++) {
            const kq_block_q4_K *b = (const kq_block_q4_K *)src + i;
            float d = H2F(b->d), dmin = H2F(b->dmin), *y = dst + i * KQ_QKK;
            for (int c = 0; c < 4; c++) { /* chunk of 64: sub-blocks 2c, 2c+1 */
                uint8_t sc0, m0, sc1, m1;
                kq_q4k_scale_min(b->scales, 2 * c, &sc0, &m0);
                kq_q4k_scale_min(b->scales, 2 * c + 1, &sc1, &m1);
                const uint8_t *q = b->qs + 32 * c;
                for (int l = 0; l < 32; l++) {
                    y[64 * c + l] = d * sc0 * (q[l] & 0xF) - dmin * m0;
                    y[64 * c + 32 + l] = d * sc1 * (q[l] >> 4) - dmin * m1;
                }
            }
        }
        break;
    case KQ_Q6_K:
        for (int64_t i = 0; i < nb; i++) {
            const kq_block_q6_K *b = (const kq_block_q6_K *)src + i;
            float d = H2F(b->d);
            for (int h = 0; h < 2; h++) { /* halves of 128 values */
                const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
                const int8_t *sc = b->scales + 8 * h;
                float *y = dst + i * KQ_QKK + 128 * h;
                for (int l = 0; l < 32; l++) {
                    int s = l / 16;
                    int q1 = ((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32;
                    int q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32;
                    int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                    int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                    y[l] = d * sc[s] * q1;
                    y[l + 32] = d * sc[s + 2] * q2;
                    y[l + 64] = d * sc[s + 4] * q3;
                    y[l + 96] = d * sc[s + 6] * q4;
                }
            }
        }
        break;
    default:
        return PV_EINVAL;
    }
    return PV_OK;
}

/* ---- activation quantization (scalar) -------------------------------------
 * Symmetric: d = amax/127, q = round-half-even(x / d) computed as x * (1/d)
 * so the SIMD versions can reproduce it bit for bit. */

static float block_scale(const float *x, int n, float *id)
{
    float amax = 0.0f;
    for (int j = 0; j < n; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f;
    *id = d != 0.0f ? 1.0f / d : 0.0f;
    return d;
}

static void quantize_q8_0(const float *src, void *dst, int64_t n)
{
    kq_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++, src += KQ_QK) {
        float id, d = block_scale(src, KQ_QK, &id);
        b[i].d = kq_fp32_to_fp16(d);
        for (int j = 0; j < KQ_QK; j++)
            b[i].qs[j] = (int8_t)lrintf(src[j] * id);
    }
}

static void quantize_q8_1(const float *src, void *dst, int64_t n)
{
    kq_block_q8_1 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++, src += KQ_QK) {
        float id, d = block_scale(src, KQ_QK, &id);
        int sum = 0;
        for (int j = 0; j < KQ_QK; j++) {
            b[i].qs[j] = (int8_t)lrintf(src[j] * id);
            sum += b[i].qs[j];
        }
        b[i].d = d;
        b[i].s = d * (float)sum;
    }
}

static void quantize_q8_K(const float *src, void *dst, int64_t n)
{
    kq_block_q8_K *b = dst;
    for (int64_t i = 0; i < n / KQ_QKK; i++, src += KQ_QKK) {
        float id;
        b[i].d = block_scale(src, KQ_QKK, &id);
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int j = 16 * g; j < 16 * g + 16; j++) {
                b[i].qs[j] = (int8_t)lrintf(src[j] * id);
                sum += b[i].qs[j];
            }
            b[i].bsums[g] = (int16_t)sum;
        }
    }
}

static void quantize_f32(const float *src, void *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

kq_quant_fn kq_get_quant(uint32_t vdt)
{
    /* no integer dots in the quantizers: the AVX2 ones serve both levels */
    int simd = kq_simd_level() >= KQ_SIMD_AVX2;
    switch (vdt) {
    case KQ_Q8_0: return simd ? kq_avx2_quantize_q8_0 : quantize_q8_0;
    case KQ_Q8_1: return simd ? kq_avx2_quantize_q8_1 : quantize_q8_1;
    case KQ_Q8_K: return simd ? kq_avx2_quantize_q8_K : quantize_q8_K;
    case KQ_Q16_1: return simd ? kq_avx2_q16_quantize_1 : kq_q16_quantize_1;
    case KQ_Q16_K: return simd ? kq_avx2_q16_quantize_K : kq_q16_quantize_K;
    case KQ_F32: return quantize_f32;
    default: return NULL;
    }
}

int kq_quantize_row(uint32_t vdt, const float *src, void *dst, int64_t n)
{
    kq_quant_fn f = kq_get_quant(vdt);
    if (!f || !src || !dst || n < 0 || n % (int64_t)kq_block_elems(vdt))
        return PV_EINVAL;
    f(src, dst, n);
    return PV_OK;
}

/* ---- scalar dot products ----------------------------------------------------
 * Integer sums inside a block, one float multiply-add per block: the same
 * arithmetic the SIMD paths do, so both agree to float rounding. */

static float dot_q4_0(int64_t n, const void *w, const void *x)
{
    const kq_block_q4_0 *a = w;
    const kq_block_q8_0 *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += ((a[i].qs[j] & 0xF) - 8) * b[i].qs[j] + ((a[i].qs[j] >> 4) - 8) * b[i].qs[j + 16];
        sum += H2F(a[i].d) * H2F(b[i].d) * (float)s;
    }
    return sum;
}

static float dot_q4_1(int64_t n, const void *w, const void *x)
{
    const kq_block_q4_1 *a = w;
    const kq_block_q8_1 *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += (a[i].qs[j] & 0xF) * b[i].qs[j] + (a[i].qs[j] >> 4) * b[i].qs[j + 16];
        /* sum((q*dw + m) * qx*dx) = dw*dx*sum(q*qx) + m * (dx*sum(qx)) */
        sum += H2F(a[i].d) * b[i].d * (float)s + H2F(a[i].m) * b[i].s;
    }
    return sum;
}

static int q5_isum(const uint8_t *qs, const uint8_t *qhp, const int8_t *x, int offset)
{
    uint32_t qh = load_u32le(qhp);
    int s = 0;
    for (int j = 0; j < 16; j++) {
        int q0 = ((qs[j] & 0xF) | (int)((qh >> j) & 1) << 4) - offset;
        int q1 = ((qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - offset;
        s += q0 * x[j] + q1 * x[j + 16];
    }
    return s;
}

static float dot_q5_0(int64_t n, const void *w, const void *x)
{
    const kq_block_q5_0 *a = w;
    const kq_block_q8_0 *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++)
        sum += H2F(a[i].d) * H2F(b[i].d) * (float)q5_isum(a[i].qs, a[i].qh, b[i].qs, 16);
    return sum;
}

static float dot_q5_1(int64_t n, const void *w, const void *x)
{
    const kq_block_q5_1 *a = w;
    const kq_block_q8_1 *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++)
        sum += H2F(a[i].d) * b[i].d * (float)q5_isum(a[i].qs, a[i].qh, b[i].qs, 0) +
               H2F(a[i].m) * b[i].s;
    return sum;
}

static float dot_q8_0(int64_t n, const void *w, const void *x)
{
    const kq_block_q8_0 *a = w;
    const kq_block_q8_0 *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        int s = 0;
        for (int j = 0; j < KQ_QK; j++)
            s += a[i].qs[j] * b[i].qs[j];
        sum += H2F(a[i].d) * H2F(b[i].d) * (float)s;
    }
    return sum;
}

static float dot_q4_K(int64_t n, const void *w, const void *x)
{
    const kq_block_q4_K *a = w;
    const kq_block_q8_K *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QKK; i++) {
        int32_t sumi = 0, summ = 0;
        for (int c = 0; c < 4; c++) {
            uint8_t sc0, m0, sc1, m1;
            kq_q4k_scale_min(a[i].scales, 2 * c, &sc0, &m0);
            kq_q4k_scale_min(a[i].scales, 2 * c + 1, &sc1, &m1);
            const uint8_t *q = a[i].qs + 32 * c;
            const int8_t *y = b[i].qs + 64 * c;
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; l++) {
                s0 += (q[l] & 0xF) * y[l];
                s1 += (q[l] >> 4) * y[l + 32];
            }
            sumi += sc0 * s0 + sc1 * s1;
            /* the min terms only need the activation sums per sub-block */
            summ += m0 * (b[i].bsums[4 * c] + b[i].bsums[4 * c + 1]) +
                    m1 * (b[i].bsums[4 * c + 2] + b[i].bsums[4 * c + 3]);
        }
        sum += b[i].d * (H2F(a[i].d) * (float)sumi - H2F(a[i].dmin) * (float)summ);
    }
    return sum;
}

static float dot_q6_K(int64_t n, const void *w, const void *x)
{
    const kq_block_q6_K *a = w;
    const kq_block_q8_K *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QKK; i++) {
        int32_t sumi = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = a[i].ql + 64 * h, *qh = a[i].qh + 32 * h;
            const int8_t *sc = a[i].scales + 8 * h, *y = b[i].qs + 128 * h;
            int s[8] = {0}; /* per 16-value group, unsigned q (offset folded below) */
            for (int l = 0; l < 32; l++) {
                int g = l / 16;
                s[g] += ((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) * y[l];
                s[g + 2] += ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) * y[l + 32];
                s[g + 4] += ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) * y[l + 64];
                s[g + 6] += ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) * y[l + 96];
            }
            for (int g = 0; g < 8; g++)
                sumi += sc[g] * (s[g] - 32 * b[i].bsums[8 * h + g]);
        }
        sum += H2F(a[i].d) * b[i].d * (float)sumi;
    }
    return sum;
}

static float dot_f32(int64_t n, const void *w, const void *x)
{
    const float *a = w, *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}

static float dot_f16(int64_t n, const void *w, const void *x)
{
    const uint16_t *a = w;
    const float *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        sum += H2F(a[i]) * b[i];
    return sum;
}

static float dot_bf16(int64_t n, const void *w, const void *x)
{
    const uint16_t *a = w;
    const float *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        sum += kq_bf16_to_fp32(a[i]) * b[i];
    return sum;
}

/* float weights: the same f32 dot at either activation precision */
static int float_weight(uint32_t type) { return type == KQ_F32 || type == KQ_F16 || type == KQ_BF16; }

kq_dot_fn kq_get_dot(uint32_t type, int bits)
{
    int lvl = kq_simd_level(), simd = lvl >= KQ_SIMD_AVX2;
    if (bits == 16 && !float_weight(type))
        return kq_q16_get_dot(type, lvl);
    if (bits != 8 && bits != 16)
        return NULL;
    switch (type) {
    case KQ_F32: return simd ? kq_avx2_dot_f32 : dot_f32;
    case KQ_F16: return simd ? kq_avx2_dot_f16 : dot_f16;
    case KQ_BF16: return dot_bf16;
    case KQ_Q4_0: return PICK(lvl, dot_q4_0, kq_avx2_dot_q4_0, kq_vnni_dot_q4_0);
    case KQ_Q4_1: return PICK(lvl, dot_q4_1, kq_avx2_dot_q4_1, kq_vnni_dot_q4_1);
    case KQ_Q5_0: return dot_q5_0;
    case KQ_Q5_1: return dot_q5_1;
    case KQ_Q8_0: return PICK(lvl, dot_q8_0, kq_avx2_dot_q8_0, kq_vnni_dot_q8_0);
    case KQ_Q4_K: return simd ? kq_avx2_dot_q4_K : dot_q4_K;
    case KQ_Q6_K: return simd ? kq_avx2_dot_q6_K : dot_q6_K;
    default: return NULL;
    }
}

/* Generic multi-row dot for types without a dedicated kernel: one row dot
 * per activation row (the weight row is still hot in L1 after the first). */
#define DEFINE_MULTI(name, dotfn)                                                             \
    static void name(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,  \
                     int64_t os)                                                              \
    {                                                                                         \
        for (int i = 0; i < nx; i++)                                                          \
            out[i * os] = dotfn(n, w, (const char *)x + (size_t)i * xs);                      \
    }
DEFINE_MULTI(multi_f32, dot_f32)
DEFINE_MULTI(multi_f16, dot_f16)
DEFINE_MULTI(multi_bf16, dot_bf16)
DEFINE_MULTI(multi_q4_0, dot_q4_0)
DEFINE_MULTI(multi_q4_1, dot_q4_1)
DEFINE_MULTI(multi_q5_0, dot_q5_0)
DEFINE_MULTI(multi_q5_1, dot_q5_1)
DEFINE_MULTI(multi_q8_0, dot_q8_0)
DEFINE_MULTI(multi_q4_K, dot_q4_K)
DEFINE_MULTI(multi_q6_K, dot_q6_K)
DEFINE_MULTI(multi_avx2_f32, kq_avx2_dot_f32)
DEFINE_MULTI(multi_avx2_f16, kq_avx2_dot_f16)
DEFINE_MULTI(multi_avx2_q4_K, kq_avx2_dot_q4_K)
DEFINE_MULTI(multi_avx2_q6_K, kq_avx2_dot_q6_K)

kq_dot_multi_fn kq_get_dot_multi(uint32_t type, int bits)
{
    int lvl = kq_simd_level(), simd = lvl >= KQ_SIMD_AVX2;
    if (bits == 16 && !float_weight(type))
        return kq_q16_get_dot_multi(type, lvl);
    if (bits != 8 && bits != 16)
        return NULL;
    switch (type) {
    case KQ_F32: return simd ? multi_avx2_f32 : multi_f32;
    case KQ_F16: return simd ? multi_avx2_f16 : multi_f16;
    case KQ_BF16: return multi_bf16;
    case KQ_Q4_0: return PICK(lvl, multi_q4_0, kq_avx2_dot_multi_q4_0, kq_vnni_dot_multi_q4_0);
    case KQ_Q4_1: return PICK(lvl, multi_q4_1, kq_avx2_dot_multi_q4_1, kq_vnni_dot_multi_q4_1);
    case KQ_Q5_0: return multi_q5_0;
    case KQ_Q5_1: return multi_q5_1;
    case KQ_Q8_0: return PICK(lvl, multi_q8_0, kq_avx2_dot_multi_q8_0, kq_vnni_dot_multi_q8_0);
    case KQ_Q4_K: return simd ? multi_avx2_q4_K : multi_q4_K;
    case KQ_Q6_K: return simd ? multi_avx2_q6_K : multi_q6_K;
    default: return NULL;
    }
}

kq_dot4_fn kq_get_dot4(uint32_t type, int bits)
{
    int lvl = kq_simd_level();
    if (bits == 16)
        return kq_q16_get_dot4(type, lvl);
    if (bits != 8 || type != KQ_Q4_1)
        return NULL;
    return PICK(lvl, NULL, kq_avx2_dot4_q4_1, kq_vnni_dot4_q4_1);
}

float kq_vec_dot_bits(uint32_t type, int bits, int64_t n, const void *w_row, const void *x_row)
{
    kq_dot_fn f = kq_get_dot(type, bits);
    /* NaN (not 0) for misuse: a silent zero would hide the bug downstream */
    if (!f || !w_row || !x_row || n < 0 || n % (int64_t)kq_block_elems(type))
        return NAN;
    return f(n, w_row, x_row);
}

float kq_vec_dot(uint32_t type, int64_t n, const void *w_row, const void *x_row)
{
    return kq_vec_dot_bits(type, 8, n, w_row, x_row);
}
