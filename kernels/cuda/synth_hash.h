/* pvsyn: the value generator of synthetic models, shared by the host
 * (model/llama_synth.c) and the GPU (kernels/cuda/elementwise.cu) so a model
 * generated in place on the GPU has exactly the weights the CPU generates.
 *
 * Value i of tensor `tensor` = scale * u, u uniform in [-1, 1) on a 2^-23
 * grid, from a stateless hash of (seed, tensor, i). Every step is exact in
 * float except the final multiply (one IEEE rounding on both sides), and the
 * half conversion is round-to-nearest-even on both sides, so the bits match. */
#ifndef PIVOT_PVSYN_HASH_H
#define PIVOT_PVSYN_HASH_H

#include <stdint.h>

#ifdef __CUDACC__
#define PVSYN_HD __host__ __device__
#else
#define PVSYN_HD
#endif

/* SplitMix64's finalizer: cheap and good enough that neighbouring indices
 * and tensors are uncorrelated. */
static inline PVSYN_HD uint64_t pvsyn_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline PVSYN_HD float pvsyn_uniform(uint64_t seed, uint32_t tensor, uint64_t i) {
    uint64_t h = pvsyn_mix(seed * 0x9e3779b97f4a7c15ULL + ((uint64_t)tensor << 40) + i);
    uint32_t u = (uint32_t)(h >> 40); /* 24 bits: exact in float */
    return (float)u * (1.0f / 8388608.0f) - 1.0f;
}

static inline PVSYN_HD float pvsyn_value(uint64_t seed, uint32_t tensor, uint64_t i, float scale) {
    return pvsyn_uniform(seed, tensor, i) * scale;
}

/* Tensor ids: model-level tensors, then 16 per layer. */
enum {
    PVSYN_TOK_EMBD = 1,
    PVSYN_OUTPUT = 2,
    PVSYN_OUTPUT_NORM = 3,
    PVSYN_KV_FILL = 4, /* benchmark cache contents: + seq * 4096 + layer * 2 + (k|v) */
    PVSYN_LAYER0 = 1 << 20,
};
enum {
    PVSYN_WQ = 0, PVSYN_WK, PVSYN_WV, PVSYN_WO, PVSYN_GATE, PVSYN_UP, PVSYN_DOWN,
    PVSYN_ATTN_NORM, PVSYN_FFN_NORM, PVSYN_BQ, PVSYN_BK, PVSYN_BV,
};
static inline PVSYN_HD uint32_t pvsyn_tensor(int layer, int kind) {
    return (uint32_t)PVSYN_LAYER0 + (uint32_t)layer * 16u + (uint32_t)kind;
}

#endif
