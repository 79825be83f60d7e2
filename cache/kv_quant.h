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
 *
 * The kernels serve the gq query heads that share one KV head at once, so a
 * record is converted once per token however many heads read it. Queries
 * and outputs of those heads are gq consecutive rows of head_dim floats. */
#ifndef PIVOT_KV_QUANT_H
#define PIVOT_KV_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* Encodes x[0..d) into rec (kvl_rec_bytes(bits, d, group) bytes). */
void kvq_encode(const float *x, int d, int bits, int group, uint8_t *rec);
/* Decodes a record back to floats (what the kernels compute with). */
void kvq_decode(const uint8_t *rec, int d, int bits, int group, float *x);

/* out[g] = dot(q + g*d, record) for g < gq. */
typedef void (*kvq_dot_fn)(const uint8_t *rec, const float *q, int gq, int d, int group,
                           float *out);
/* out + g*d += a[g] * record for g < gq. */
typedef void (*kvq_axpy_fn)(const uint8_t *rec, const float *a, int gq, int d, int group,
                            float *out);

typedef struct {
    kvq_dot_fn dot;
    kvq_axpy_fn axpy;
    int simd; /* 1 when the AVX2 kernels were chosen */
} kvq_kernels;

/* Kernels for one record format. AVX2+FMA+F16C when the CPU has them, the
 * shape allows (8-channel chunks inside one bit plane and one group) and
 * force_scalar is 0; the portable ones otherwise. For bits 16 both produce
 * exactly what the plain FP16 cache computes, operation for operation. */
void kvq_kernels_for(int bits, int d, int group, int force_scalar, kvq_kernels *k);

#endif
