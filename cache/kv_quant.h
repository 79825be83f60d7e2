/* kv_quant (internal): one token's key or value vector as a record, and the
 * attention kernels that read records directly.
 *
 * A record of `bits` 16 is head_dim fp16 values. For bits 8/4/2 it is the
 * codes followed by one (fp16 scale, fp16 zero) pair per group of `group`
 * channels: per-token asymmetric round-to-nearest, scale = (max-min)/(2^b-1),
 * zero = min, computed in fp32; value = code*scale + zero. Codes are packed in
 * bit planes: with nb = head_dim*bits/8 bytes, channel c lives in byte
 * c % nb at bit offset bits*(c / nb). Eight consecutive channels are then
 * eight consecutive bytes under one shift, which AVX2 widens in one step.
 * Bits 3 (no whole number of codes per byte) is a 2-bit record's planes
 * (head_dim/4 bytes, the code's low two bits) followed by a bitmask of the
 * codes' third bit (head_dim/8 bytes, channel c at byte c/8, bit c%8):
 * 3·head_dim/8 bytes, and 16 channels' high bits are one 16-bit mask that
 * AVX-512 turns into a vector in one instruction.
 *
 * The kernels serve the gq query heads that share one KV head at once, so a
 * record is converted once per token however many heads read it. Queries
 * and outputs of those heads are gq consecutive rows of head_dim floats. */
#ifndef PIVOT_KV_QUANT_H
#define PIVOT_KV_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "kv_side.h"

/* The code of channel c (bits 8/4/3/2), and the bytes of the codes. */
static inline int kvq_code(const uint8_t *rec, int d, int bits, int c) {
    if (bits == 3) {
        int nb2 = d / 4;
        return ((rec[c % nb2] >> (2 * (c / nb2))) & 3) | (((rec[nb2 + c / 8] >> (c % 8)) & 1) << 2);
    }
    int nb = d * bits / 8;
    return (rec[c % nb] >> (bits * (c / nb))) & ((1 << bits) - 1);
}

/* Encodes x[0..d) into rec (kvl_rec_bytes(bits, d, group) bytes). */
void kvq_encode(const float *x, int d, int bits, int group, uint8_t *rec);
/* The same with clipped ranges: each group's range is the one, among the
 * full (min, max) and ranges shrunk about its middle by factors 0.95, 0.9,
 * ... down to floor (at least 0.5; KVQ_CLIP_FULL), whose codes give the
 * least squared error (values outside it saturate). floor >= 1 is min-max,
 * kvq_encode. At 2 bits a Gaussian-like group (rotated keys and values
 * are) loses ~40% less than with min-max; the full range is a candidate, so
 * the error is never larger. A higher floor trades some of that for the
 * extreme channels (the clip-floor knob, docs/KV_CACHE.md). The format and
 * the kernels are unchanged: only the scale and zero differ. */
void kvq_encode_clip(const float *x, int d, int bits, int group, float floor, uint8_t *rec);
#define KVQ_CLIP_FULL 0.5f /* the narrowest range the search tries */
/* Decodes a record back to floats (what the kernels compute with). */
void kvq_decode(const uint8_t *rec, int d, int bits, int group, float *x);
/* The same on AVX2 + FMA + F16C CPUs only (callers check): 8 channels at a
 * time, a group's scale and zero applied in one fused multiply-add (so the
 * last bit may differ from kvq_decode); shapes it cannot take in 8-channel
 * chunks (8 ∤ group, a chunk across planes) fall back to kvq_decode. */
void kvq_decode_avx2(const uint8_t *rec, int d, int bits, int group, float *x);
/* n records stride bytes apart into x[n][d], as kvq_decode_avx2 each. */
void kvq_decode_run_avx2(const uint8_t *rec0, size_t stride, int n, int d, int bits, int group,
                         float *x);

/* out[g] = dot(q + g*d, record) for g < gq. */
typedef void (*kvq_dot_fn)(const uint8_t *rec, const float *q, int gq, int d, int group,
                           float *out);
/* out + g*d += a[g] * record for g < gq. */
typedef void (*kvq_axpy_fn)(const uint8_t *rec, const float *a, int gq, int d, int group,
                            float *out);

/* A query prepared once for many records of a quantized tier: the query
 * as int16 (q ≈ q16·qs per head) and its float sum per channel group, so
 * that a record's dot is qs·Σ_g scale_g·(codes·q16)_g + Σ_g zero_g·qsum_g
 * with the code products in integer SIMD. */
typedef struct {
    int16_t *q16; /* [gq][d] */
    /* [gq][d] q16's bytes, q16 = 256·qhi + qlo (qhi signed, qlo unsigned):
     * the two byte roles of vpdpbusd for the AVX-512 key kernel */
    int8_t *qhi;
    uint8_t *qlo;
    float *qs;    /* [gq] */
    float *qsum;  /* [gq][d/group] */
} kvq_qprep;

size_t kvq_qprep_bytes(int gq, int d, int group);
/* Lays the buffers out in mem (kvq_qprep_bytes, 32-byte aligned). */
void kvq_qprep_init(kvq_qprep *p, void *mem, int gq, int d, int group);
void kvq_prep(const float *q, int gq, int d, int group, kvq_qprep *p);

/* n records `stride` bytes apart: sc[g*sc_stride + t] = dot(q_g, record t).
 * qp is used by kernels that want it (kvq_kernels.wants_prep). */
typedef void (*kvq_dotn_fn)(const uint8_t *rec0, size_t stride, int n, const float *q,
                            const kvq_qprep *qp, int gq, int d, int group, float *sc,
                            size_t sc_stride);
/* out + g*d += Σ_t a[g*a_stride + t] * record t. */
typedef void (*kvq_axpyn_fn)(const uint8_t *rec0, size_t stride, int n, const float *a,
                             size_t a_stride, int gq, int d, int group, float *out);

typedef struct {
    kvq_dot_fn dot;
    kvq_axpy_fn axpy;
    kvq_dotn_fn dotn;   /* runs of records (the low tier, a page at a time) */
    kvq_axpyn_fn axpyn;
    int wants_prep;     /* dotn reads a kvq_qprep */
    int dotn512, axpyn512; /* dotn / axpyn are the AVX-512 run kernels (any gq) */
    int simd;           /* 1 when the AVX2 kernels were chosen */
} kvq_kernels;

/* Kernels for one record format. AVX2+FMA+F16C when the CPU has them, the
 * shape allows (8-channel chunks inside one bit plane and one group) and
 * force_scalar is 0; the portable ones otherwise. (For bits 16 they once
 * matched the plain FP16 cache operation for operation; that cache now has
 * its own blocked kernel, kv_attn.c, and agrees within float rounding.) */
void kvq_kernels_for(int bits, int d, int group, int force_scalar, kvq_kernels *k);

/* AVX-512 run kernels (kv_quant_avx512.c), the same contracts as dotn
 * (wants_prep: reads the kvq_qprep) and axpyn; NULL when the CPU or the
 * shape does not allow them. Not bit-identical to the AVX2 ones (other
 * float summation order; axpyn rounds the weights times the records'
 * scales to int16 on a step of 1/32767 of a 32-token block's largest, like
 * the int16 query of dotn); the mixed cache uses them where it uses its
 * AVX-512 block kernel. */
kvq_dotn_fn kvq_avx512_dotn(int bits, int d, int group);
/* The same key kernel over blocked keys (kv_kblk.h; rec0 a block's first
 * record, stride the record bytes, n tokens of whole blocks from there),
 * bit-identical to kvq_avx512_dotn's over the same records; NULL where the
 * CPU, the shape (kvkb_ok) or gq query heads do not take it. */
kvq_dotn_fn kvq_avx512_dotb(int bits, int d, int group, int gq);
/* kvq_prep's rounding of one row (q16 = round(q·inv), its bytes) on
 * AVX-512, bit-identical; returns 0 (nothing written) when the CPU or d
 * (a multiple of 16) does not allow it. */
int kvq_avx512_prep_row(const float *qg, int d, float inv, int16_t *q16, int8_t *qhi, uint8_t *qlo);
kvq_axpyn_fn kvq_avx512_axpyn(int bits, int d, int group);

/* kv_quant_rec512.c: kvq_encode (no clipping) and kvq_decode of one record
 * on AVX-512, bit-identical to the portable loops except the sign of a zero
 * point of exactly ±0 (no decoded value differs); return 0 (nothing
 * written) when the CPU or the shape (bits 2, 3, 4, 8 with kvs_codes16's
 * planes and groups of a multiple of 16; decode also FP16) does not allow
 * it (checked here, below the AVX512VNNI level too). kvq_encode_clip and
 * kvq_decode try them first. */
int kvq_avx512_encode_row(const float *x, int d, int bits, int group, uint8_t *rec);
int kvq_avx512_decode_row(const uint8_t *rec, int d, int bits, int group, float *x);
/* A group's side bytes for [lo, hi] at `bits` in the format `group` names
 * (kvq_sz_bytes(group) bytes at side: an fp16 scale and zero, or
 * KVQ_SZ8's two bytes, the range widened to include 0 and the scale rounded
 * up so the grid covers it; kv_side.h), and the floats decoding will
 * read: the one rule both encoders use. */
void kvq_range_side(float lo, float hi, int bits, int group, uint8_t *side, float *s, float *z);

/* kv_quant_fast.c: AVX2 run kernels for quantized records; NULL when the
 * shape does not suit them (16-channel blocks inside one plane and group). */
kvq_dotn_fn kvq_fast_dotn(int bits, int d, int group);
kvq_axpyn_fn kvq_fast_axpyn(int bits, int d, int group);

#endif
