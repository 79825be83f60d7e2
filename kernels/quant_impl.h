/* kq internals shared by the quant*.c files and matmul.c. Not part of
 * the public contract (kernels/quant.h): block layouts and per-type kernel
 * function pointers (the type traits table).
 *
 * The block layouts are GGML's on-disk formats (facts of the file format);
 * every half-precision field is stored as raw IEEE fp16 bits in a uint16_t
 * so the structs have no compiler-specific types. Struct sizes are checked
 * with static asserts because they must match the bytes in a GGUF file. */
#ifndef PIVOT_KQ_QUANT_IMPL_H
#define PIVOT_KQ_QUANT_IMPL_H

#include <math.h>
#include <stdint.h>

#include "quant.h"

#define KQ_QK 32   /* elements per block of the 32-wide formats */
#define KQ_QKK 256 /* elements per K-quant super-block */

typedef struct {
    uint16_t d;         /* fp16 scale */
    uint8_t qs[16];     /* nibbles: low = elements 0..15, high = 16..31 */
} kq_block_q4_0;        /* value = (q - 8) * d */

typedef struct {
    uint16_t d, m;      /* fp16 scale and minimum */
    uint8_t qs[16];
} kq_block_q4_1;        /* value = q * d + m */

typedef struct {
    uint16_t d;
    uint8_t qh[4];      /* bit j of the LE u32 = 5th bit of element j */
    uint8_t qs[16];
} kq_block_q5_0;        /* value = (q - 16) * d */

typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[16];
} kq_block_q5_1;        /* value = q * d + m */

typedef struct {
    uint16_t d;
    int8_t qs[32];
} kq_block_q8_0;        /* value = q * d */

/* Activation-only, never stored in files, so the layout is ours: f32 d and
 * s (as in early GGML; current GGML packs them as fp16, 36 bytes). f32 saves
 * two fp16 conversions per block in the hot Q4_1 loop and keeps s exact-ish;
 * d and s adjacent let the AVX2 kernel load both with one 8-byte load. */
typedef struct {
    float d;
    float s;            /* d * sum(qs): lets Q4_1/Q5_1 fold in their min */
    int8_t qs[32];
} kq_block_q8_1;

typedef struct {
    uint16_t d, dmin;   /* fp16 super-block scales for the 6-bit scales/mins */
    uint8_t scales[12]; /* 8 scales + 8 mins, 6 bits each, packed */
    uint8_t qs[128];    /* 4 chunks of 64 values: 32 low nibbles, 32 high */
} kq_block_q4_K;        /* value = d*sc[j]*q - dmin*m[j], j = sub-block of 32 */

typedef struct {
    uint8_t ql[128];    /* low 4 bits */
    uint8_t qh[64];     /* high 2 bits */
    int8_t scales[16];  /* one per 16 values */
    uint16_t d;         /* fp16 */
} kq_block_q6_K;        /* value = d * scales[i] * (q - 32) */

typedef struct {
    float d;
    int8_t qs[256];
    int16_t bsums[16];  /* sum of each 16 consecutive qs (K-quant min terms) */
} kq_block_q8_K;

/* Pivot's 16-bit activation blocks (layout ours). d = amax/32767, so
 * |q| <= 32767 and the int16 products with any weight code fit the int32
 * sums noted at each kernel. */
typedef struct {
    float d;
    float s;            /* d * sum(q): the min term of Q4_1/Q5_1 (unused by _0) */
    int16_t q[32];
} kq_block_q16_1;

typedef struct {
    float d;
    int32_t bsums[8];   /* sum of each 32 consecutive q (Q4_K min terms) */
    int16_t q[256];
} kq_block_q16_K;

_Static_assert(sizeof(kq_block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(kq_block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(kq_block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(kq_block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(kq_block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(kq_block_q8_1) == 40, "q8_1 layout");
_Static_assert(sizeof(kq_block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(kq_block_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(kq_block_q8_K) == 292, "q8_K layout");
_Static_assert(sizeof(kq_block_q16_1) == 72, "q16_1 layout");
_Static_assert(sizeof(kq_block_q16_K) == 548, "q16_K layout");

/* Kernel signatures, as function types so that the kernel lists below are
 * declarations of that type (`kq_dot_kernel kq_avx2_dot_q4_0;`) and the
 * pointer types are the ones the traits table and matmul.c hold.
 *
 * dot: n is a multiple of the weight type's block size; w and x are rows. */
typedef float kq_dot_kernel(int64_t n, const void *w, const void *x);
/* Dot of one weight row with nx activation rows (x + i*x_stride bytes),
 * out[i * out_stride]. Lets a kernel unpack a weight block once and use it
 * for several tokens (prefill). */
typedef void kq_dot_multi_kernel(int64_t n, const void *w, const void *x, size_t x_stride, int nx,
                                 float *out, int64_t out_stride);
/* Dots of 4 consecutive weight rows (w + i*w_stride bytes) with one
 * activation row into out[0..3]: the 4 reduction tails overlap and the
 * activation blocks are loaded once (decode matvec with short rows). */
typedef void kq_dot4_kernel(int64_t n, const void *w, size_t w_stride, const void *x, float *out);
/* n f32 activations -> n elements of an activation format */
typedef void kq_quant_kernel(const float *src, void *dst, int64_t n);
/* One activation row of n elements in the vec-dot format -> the layout a
 * family's kernels read instead (kq_dot_family.prep); dst holds
 * kq_prep_row_bytes(vec_dot_type, n). */
typedef void kq_prep_kernel(int64_t n, const void *x, void *dst);
/* n elements (a multiple of the block) of a format -> f32 */
typedef void kq_dequant_kernel(const void *src, float *dst, int64_t n);

typedef kq_dot_kernel *kq_dot_fn;
typedef kq_dot_multi_kernel *kq_dot_multi_fn;
typedef kq_dot4_kernel *kq_dot4_fn;
typedef kq_quant_kernel *kq_quant_fn;
typedef kq_prep_kernel *kq_prep_fn;
typedef kq_dequant_kernel *kq_dequant_fn;

/* ---- type traits (kernels/quant.c holds the table) ---------------------------
 * One entry per type id, as GGML's type_traits: the format's facts and every
 * kernel for it, per activation precision and SIMD level. */

/* Index of an activation precision in kq_type_traits.vec_dot_type / .dot */
enum { KQ_ACT8 = 0, KQ_ACT16 = 1, KQ_ACT_KINDS = 2 };
#define KQ_SIMD_LEVELS 4 /* KQ_SIMD_SCALAR, AVX2, AVX512VNNI, AVX512VBMI */

/* The kernels of one (weight type, activation precision, SIMD level).
 * Consistency contract (matmul relies on it): dot, multi and dot4 of one
 * family give bit-identical results for a given (weight row, activation
 * row): same per-block integer sums, same float accumulation order, same
 * final reduction. Then a token's output does not depend on how many tokens
 * share the call. Without it, float-rounding differences flip activation
 * rounding decisions in the next layer and grow layer by layer to the size
 * of the quantization noise itself. So the lookups take all three from one
 * family, never mix levels. */
typedef struct {
    kq_dot_fn dot;
    kq_dot_multi_fn multi; /* non-NULL when dot is */
    kq_dot4_fn dot4;       /* optional: NULL where there is none */
    /* optional: when set, the three read activation rows converted by it
     * (once per matmul call, not per weight row), not the vec-dot format;
     * a prepped row holds the row's blocks in pairs (a lone last block
     * padded), prep_pair_bytes per pair */
    kq_prep_fn prep;
    uint32_t prep_pair_bytes;
} kq_dot_family;

/* Bytes of one activation row of n elements as family f's kernels read it:
 * the vec-dot row, or its prepped form. */
size_t kq_prep_row_bytes(const kq_dot_family *f, uint32_t vec_dot_type, int64_t n);

/* The prepped layouts of quant_avx512.c (sizes checked there) */
#define KQ_VBMI_PAIR_BYTES 144  /* Q4_1: low and high bytes, dx and sx of two blocks */
#define KQ_VBMI_PAIR8_BYTES 208 /* Q8_0: the same and a per-lane correction */

typedef struct {
    const char *name;  /* NULL: no such type */
    uint32_t blk;      /* elements per block */
    uint32_t bytes;    /* bytes per block */
    int weight;        /* readable as a weight (else activation-only) */
    kq_dequant_fn dequantize;            /* every known type */
    kq_quant_fn quantize[KQ_SIMD_LEVELS]; /* activation formats (and F32, a copy) */
    /* the activation format of the dots, per precision (weights only) */
    uint32_t vec_dot_type[KQ_ACT_KINDS];
    /* [precision][level]. A level left empty (dot NULL) falls back to the
     * best level below it that has one; a weight type always has scalar. */
    kq_dot_family dot[KQ_ACT_KINDS][KQ_SIMD_LEVELS];
} kq_type_traits;

/* The table entry of `type`; NULL for ids no entry describes. */
const kq_type_traits *kq_type_traits_of(uint32_t type);

/* The kernels kq_vec_dot_bits would use now for weight type `type` with
 * `bits`-bit activations (honours kq_set_simd_level / PIVOT_SIMD): lookups
 * into the table. NULL for unsupported types or bits. matmul.c fetches them
 * once per call instead of dispatching per row. */
const kq_dot_family *kq_get_dot_family(uint32_t type, int bits); /* all three of one family */
kq_dot_fn kq_get_dot(uint32_t type, int bits);
kq_dot_multi_fn kq_get_dot_multi(uint32_t type, int bits); /* non-NULL when kq_get_dot is */
kq_quant_fn kq_get_quant(uint32_t vec_dot_type);
kq_dot4_fn kq_get_dot4(uint32_t type, int bits); /* NULL where there is none: use kq_get_dot */

/* Unpack the 6-bit scale and min of sub-block j (0..7) of a Q4_K block. */
static inline void kq_q4k_scale_min(const uint8_t *s, int j, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* The scale of one activation block for the portable quantizers (8- and
 * 16-bit): d = max|x[0..n)| / qmax (127 or 32767), *id = 1/d (0 when d is
 * 0). Inline so each quantizer gets it with its constant qmax. */
static inline float kq_block_scale(const float *x, int n, float qmax, float *id)
{
    float amax = 0.0f;
    for (int j = 0; j < n; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / qmax;
    *id = d != 0.0f ? 1.0f / d : 0.0f;
    return d;
}

/* All 8 scales and mins of a Q4_K block. */
static inline void kq_q4k_scales_mins(const uint8_t *s, uint8_t sc[8], uint8_t m[8])
{
    for (int j = 0; j < 8; j++)
        kq_q4k_scale_min(s, j, &sc[j], &m[j]);
}

/* ---- the kernels the table lists -------------------------------------------- */

/* Dequantizers (quant_dequant.c). */
kq_dequant_kernel kq_dequant_f32, kq_dequant_f16, kq_dequant_bf16, kq_dequant_q4_0,
    kq_dequant_q4_1, kq_dequant_q5_0, kq_dequant_q5_1, kq_dequant_q8_0, kq_dequant_q8_1,
    kq_dequant_q4_K, kq_dequant_q6_K, kq_dequant_q8_K, kq_dequant_q16_1, kq_dequant_q16_K;

/* Scalar, 8-bit activations and float weights (quant_scalar.c). */
kq_quant_kernel kq_scalar_quantize_q8_0, kq_scalar_quantize_q8_1, kq_scalar_quantize_q8_K,
    kq_scalar_quantize_f32;
kq_dot_kernel kq_scalar_dot_q4_0, kq_scalar_dot_q4_1, kq_scalar_dot_q5_0, kq_scalar_dot_q5_1,
    kq_scalar_dot_q8_0, kq_scalar_dot_q4_K, kq_scalar_dot_q6_K, kq_scalar_dot_f32,
    kq_scalar_dot_f16, kq_scalar_dot_bf16;

/* Scalar, 16-bit activations (quant_q16.c). */
kq_quant_kernel kq_q16_quantize_1, kq_q16_quantize_K;
kq_dot_kernel kq_scalar_q16_dot_q4_0, kq_scalar_q16_dot_q4_1, kq_scalar_q16_dot_q5_0,
    kq_scalar_q16_dot_q5_1, kq_scalar_q16_dot_q8_0, kq_scalar_q16_dot_q4_K, kq_scalar_q16_dot_q6_K;

/* AVX2+FMA+F16C kernels (quant_avx2.c, compiled with those flags; only called
 * after a run-time CPU check). */
kq_dot_kernel kq_avx2_dot_q4_0, kq_avx2_dot_q4_1, kq_avx2_dot_q8_0, kq_avx2_dot_q4_K,
    kq_avx2_dot_q6_K, kq_avx2_dot_f16, kq_avx2_dot_f32;
kq_dot_multi_kernel kq_avx2_dot_multi_q4_1, kq_avx2_dot_multi_q4_0, kq_avx2_dot_multi_q8_0;
kq_dot4_kernel kq_avx2_dot4_q4_1;
kq_quant_kernel kq_avx2_quantize_q8_0, kq_avx2_quantize_q8_1, kq_avx2_quantize_q8_K;

/* AVX2 kernels for 16-bit activations (quant_avx2_q16.c). */
kq_dot_kernel kq_avx2_q16_dot_q4_0, kq_avx2_q16_dot_q4_1, kq_avx2_q16_dot_q5_0,
    kq_avx2_q16_dot_q5_1, kq_avx2_q16_dot_q8_0, kq_avx2_q16_dot_q4_K, kq_avx2_q16_dot_q6_K;
kq_dot_multi_kernel kq_avx2_q16_dot_multi_q4_1, kq_avx2_q16_dot_multi_q8_0;
kq_dot4_kernel kq_avx2_q16_dot4_q4_1;
kq_quant_kernel kq_avx2_q16_quantize_1, kq_avx2_q16_quantize_K;

/* AVX512-VNNI builds of the integer dots above (quant_avx2.c and
 * quant_avx2_q16.c compiled again with KQ_VNNI, kernels/meson.build):
 * vpdpbusd / vpdpwssd on 256-bit vectors. Same lane integers and the same
 * float steps as the AVX2 kernels, so results are bit-identical to them. */
kq_dot_kernel kq_vnni_dot_q4_0, kq_vnni_dot_q4_1, kq_vnni_dot_q8_0;
kq_dot_multi_kernel kq_vnni_dot_multi_q4_1, kq_vnni_dot_multi_q4_0, kq_vnni_dot_multi_q8_0;
kq_dot4_kernel kq_vnni_dot4_q4_1;
kq_dot_kernel kq_vnni_q16_dot_q4_0, kq_vnni_q16_dot_q4_1, kq_vnni_q16_dot_q5_0,
    kq_vnni_q16_dot_q5_1, kq_vnni_q16_dot_q8_0, kq_vnni_q16_dot_q4_K, kq_vnni_q16_dot_q6_K;
kq_dot_multi_kernel kq_vnni_q16_dot_multi_q4_1, kq_vnni_q16_dot_multi_q8_0;
kq_dot4_kernel kq_vnni_q16_dot4_q4_1;

/* AVX512-VBMI Q4_1 x Q16_1 kernels (quant_avx512.c: the activations split
 * into bytes by kq_vbmi_q16_prep_pairs, vpdpbusd on 512-bit vectors, two
 * blocks per step): the same integer block dots, another float order than
 * the AVX2 ones. */
kq_dot_kernel kq_vbmi_q16_dot_q4_1;
kq_dot_multi_kernel kq_vbmi_q16_dot_multi_q4_1;
kq_dot4_kernel kq_vbmi_q16_dot4_q4_1;
kq_prep_kernel kq_vbmi_q16_prep_pairs;
kq_dot_kernel kq_vbmi_q16_dot_q8_0;
kq_dot_multi_kernel kq_vbmi_q16_dot_multi_q8_0;
kq_prep_kernel kq_vbmi_q16_prep_pairs8;

/* Q4_1 with 16 rows in the lanes of a register (quant_q41r16.c; the layout
 * km_repack16 writes: per 16 rows and 32 columns, 16 x 16 code bytes, then
 * 16 fp16 d and 16 fp16 m). y[t * ys + r] for the groups' 16 * groups rows
 * and nt tokens of kq_block_q16_1 rows xb bytes apart (nt <= 16 for the
 * VBMI kernels, <= 8 for the AVX2 one); prefetch: ask for the weights ~2 KB
 * ahead (a walk that reads them once: decode). Same result for a row
 * whatever nt. */
#define KQ_R16_BLOCK 320
#define KQ_R16_MAX_NT_VBMI 16
#define KQ_R16_MAX_NT_AVX2 8
typedef void kq_r16_kernel(int64_t cols, const void *w, int64_t groups, const void *x, size_t xb, int nt,
                           float *y, int64_t ys, int prefetch);
void kq_vbmi_q41r16_rows(int64_t cols, const void *w, int64_t groups, const void *x, size_t xb, int nt,
                         float *y, int64_t ys, int prefetch);
/* The same steps on AVX2, 8 rows a register (quant_q41r16_avx2.c): the same
 * bits as kq_vbmi_q41r16_rows. */
void kq_avx2_q41r16_rows(int64_t cols, const void *w, int64_t groups, const void *x, size_t xb, int nt,
                         float *y, int64_t ys, int prefetch);
/* The same for Q8_0 (16 x 32 code bytes, then 16 fp16 d per group and block). */
#define KQ_R16_BLOCK_Q8 544
void kq_vbmi_q80r16_rows(int64_t cols, const void *w, int64_t groups, const void *x, size_t xb, int nt,
                         float *y, int64_t ys, int prefetch);

#endif
