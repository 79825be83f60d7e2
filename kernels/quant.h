/* kq: GGML tensor formats — type traits, dequantization, activation
 * quantization and the dot products used by the matrix kernels.
 *
 * Type ids are GGML's (they are what GGUF files store). Weights stay in their
 * GGUF format in memory; activations are quantized once per row to the
 * weight type's "vec_dot type" (16- or 8-bit blocks for the quantized
 * formats, see kq_vec_dot_type_bits; f32 for F32/F16/BF16) and the inner
 * loops are integer SIMD where the CPU has it.
 * SIMD paths (AVX2+FMA+F16C, and AVX512-VNNI/BW/VL on top of it, chosen at
 * run time with __builtin_cpu_supports; PIVOT_SIMD or kq_set_simd_level
 * cap the choice) and the portable scalar path must give the same results
 * within float rounding; tests compare them. */
#ifndef PIVOT_KQ_QUANT_H
#define PIVOT_KQ_QUANT_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    KQ_F32 = 0,
    KQ_F16 = 1,
    KQ_Q4_0 = 2,
    KQ_Q4_1 = 3,
    KQ_Q5_0 = 6,
    KQ_Q5_1 = 7,
    KQ_Q8_0 = 8,
    KQ_Q8_1 = 9, /* activation-only format (for Q4_1/Q5_1 dots) */
    KQ_Q4_K = 12,
    KQ_Q6_K = 14,
    KQ_Q8_K = 15, /* activation-only format (for K-quant dots) */
    KQ_BF16 = 30,
    /* Pivot's own activation-only formats, never in a file: ids far above
     * GGML's so a future GGML type cannot collide with them. 16-bit
     * activations keep the end-to-end logit error of small models well under
     * 1% where 8-bit ones reach several %. */
    KQ_Q16_1 = 100, /* 32 x int16 + f32 d, s: for every 32-wide weight type */
    KQ_Q16_K = 101, /* 256 x int16 + f32 d + sums per 32: for Q4_K/Q6_K */
    KQ_TYPE_COUNT = 102 /* one past the largest id any table covers */
} kq_type;

/* 1 when `type` is a weight format Pivot reads (F32, F16, BF16, Q8_0, Q4_0,
 * Q4_1, Q5_0, Q5_1, Q4_K, Q6_K); 0 otherwise (including unknown ids). */
int kq_weight_supported(uint32_t type);
/* 1 for any type this module knows (weights and activation-only formats). */
int kq_known(uint32_t type);
/* "Q4_1", ...; "type<N>" style static string for unknown ids is not
 * provided: returns NULL for unknown ids. */
const char *kq_type_name(uint32_t type);
/* Elements per block (1 for F32/F16/BF16), bytes per block. 0 if unknown. */
size_t kq_block_elems(uint32_t type);
size_t kq_block_bytes(uint32_t type);
/* Bytes of a row of n elements; 0 when n is not a multiple of the block. */
size_t kq_row_bytes(uint32_t type, int64_t n);

/* Dequantize n elements (multiple of the block size) to f32. Returns 0 or
 * PV_EINVAL. Works for every known type. */
int kq_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* Activation precision: the quantized weight types can be dotted with 8-bit
 * activations (GGML's Q8_0/Q8_1/Q8_K) or 16-bit ones (KQ_Q16_1/KQ_Q16_K).
 * The choice is the caller's (per km_scratch in matmul.h), not global.
 * F32/F16/BF16 weights always take f32 activations. */
#define KQ_ACT_BITS_DEFAULT 16

/* The format activations must be in for a dot with weights of `type` at
 * `bits` (8 or 16) of activation precision. KQ_F32 for float weights and for
 * unsupported weight types; UINT32_MAX (an unknown type, which every other
 * function rejects) when bits is neither 8 nor 16. */
uint32_t kq_vec_dot_type_bits(uint32_t type, int bits);
/* The 8-bit one: kq_vec_dot_type_bits(type, 8). */
uint32_t kq_vec_dot_type(uint32_t type);
/* Quantize n f32 activations into `vec_dot_type` (KQ_Q8_0, KQ_Q8_1, KQ_Q8_K,
 * KQ_Q16_1, KQ_Q16_K, or KQ_F32 which is a copy). dst holds
 * kq_row_bytes(vec_dot_type, n). Symmetric: d = max|x| / (2^(bits-1) - 1),
 * q = x / d rounded to nearest (ties to even). */
int kq_quantize_row(uint32_t vec_dot_type, const float *src, void *dst, int64_t n);
/* Dot product of one weight row (type `type`, n elements) with an activation
 * row already in kq_vec_dot_type_bits(type, bits). kq_vec_dot is bits = 8.
 * NaN on bad arguments (or, where the kernels want their own activation
 * layout, when the temporary for it cannot be allocated). */
float kq_vec_dot_bits(uint32_t type, int bits, int64_t n, const void *w_row, const void *x_row);
float kq_vec_dot(uint32_t type, int64_t n, const void *w_row, const void *x_row);

/* Scalar half/bfloat conversions (round-to-nearest-even for fp32->fp16). */
float kq_fp16_to_fp32(uint16_t h);
uint16_t kq_fp32_to_fp16(float f);
/* n of them at once (F16C where the CPU has it): the same bits as
 * kq_fp32_to_fp16 one by one. */
void kq_fp32_to_fp16_row(const float *src, uint16_t *dst, int64_t n);
float kq_bf16_to_fp32(uint16_t h);

/* SIMD levels, lowest first. Each level's kernels give the same results
 * as the scalar ones within float rounding (the AVX512-VNNI ones are even
 * bit-identical to the AVX2 ones: same integer lane sums, same float steps).
 * AVX512-VBMI adds only the Q4_1 x 16-bit kernels of quant_avx512.c (8-bit
 * dots on 512-bit vectors: another float order); every other format runs
 * its AVX512-VNNI kernels there. */
enum { KQ_SIMD_SCALAR = 0, KQ_SIMD_AVX2 = 1, KQ_SIMD_AVX512VNNI = 2, KQ_SIMD_AVX512VBMI = 3 };
/* Caps the level the kernels may use (tests and benchmarks compare levels
 * in one process); what is used is min(cap, what the CPU has). A negative
 * cap means auto (the default): the environment variable PIVOT_SIMD
 * (scalar, avx2, avx512vnni, avx512vbmi or avx512 = the highest; read once,
 * at the first kernel lookup) caps it,
 * else the CPU's best is used. */
void kq_set_simd_level(int max_level);
/* The level in use now (after the cap and the CPU check). */
int kq_simd_level(void);
/* The best level this CPU supports, ignoring caps. */
int kq_simd_cpu_level(void);
/* kq_set_simd_level(KQ_SIMD_SCALAR) when on, auto (-1) when off. */
void kq_set_force_scalar(int on);
/* "avx512vbmi", "avx512vnni", "avx2", or "scalar": what kq_vec_dot uses now. */
const char *kq_simd_name(void);

#endif
