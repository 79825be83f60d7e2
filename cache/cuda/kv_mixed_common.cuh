// kv_mixed_common: what the mixed cache's kernels share (kv_mixed.cu:
// attention, store, tracker, allocation; kv_mixed_demote.cu: demotion):
// launch shapes, the head index, the low tier's record arithmetic and
// dequantization, the demotion block's shared memory layout.
#ifndef PIVOT_KV_MIXED_COMMON_CUH
#define PIVOT_KV_MIXED_COMMON_CUH

#include "cuda/common.cuh"
#include "cuda/kv_mixed_cuda.h"

#define MX_THREADS 128
#define MX_TILE 128
#define MX_DEM_THREADS 256
#define MX_STAGE 32 // high-tier slots moved per compaction round

enum { SEL_NONE = 0, SEL_PERSIST = 1, SEL_ACCUM = 2, SEL_RECENT = 3 };

static __host__ __device__ inline size_t mx_head(const pvc_kv_mixed &kv, int seq, int layer,
                                                 int kvh) {
    return ((size_t)seq * kv.n_layers + layer) * kv.n_kv_heads + kvh;
}
static __host__ __device__ inline int mx_nb(int hd, int bits) { return hd * bits / 8; }

// Dequantizes the 8 channels c0..c0+7 (c0 % 8 == 0) of low-tier record `slot`:
// in the bit-plane layout they are 8 consecutive bytes under one shift, one
// 8-byte load (nb is a multiple of 8 for head_dim 64/128/256).
__device__ __forceinline__ void mx_deq8(const uint8_t *codes, const uint32_t *sz, int nb, int ng,
                                        int bits, int group, size_t slot, int c0, float *f) {
    const uint2 w = *(const uint2 *)(codes + slot * nb + (c0 % nb));
    const int sh = bits * (c0 / nb);
    const unsigned mask = (1u << bits) - 1u;
    const uint32_t m = sz[slot * ng + c0 / group];
    const float s = __half2float(__ushort_as_half((unsigned short)(m & 0xffffu)));
    const float z = __half2float(__ushort_as_half((unsigned short)(m >> 16)));
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f[i] = __fadd_rn(__fmul_rn((float)((w.x >> (8 * i + sh)) & mask), s), z);
        f[4 + i] = __fadd_rn(__fmul_rn((float)((w.y >> (8 * i + sh)) & mask), s), z);
    }
}

// Dynamic shared memory of one demotion block.
struct mx_dem_smem {
    size_t sc, ps, vic, cnd, xq, gs, stage_k, stage_v, stage_p, stage_s, total;
};
static __host__ __device__ inline mx_dem_smem mx_dem_layout(int hi_cap, int hd) {
    mx_dem_smem m;
    const int nw = MX_DEM_THREADS / 32;
    size_t o = 0;
    m.sc = o, o += sizeof(float) * hi_cap;           // demotion score
    m.ps = o, o += sizeof(int32_t) * hi_cap;         // position
    m.vic = o, o += sizeof(int32_t) * hi_cap;        // new high slot, or -1 - low slot / -1
    m.cnd = o, o += (hi_cap + 15) & ~15;             // candidate (unprotected) flag
    m.xq = o, o += sizeof(float) * nw * hd;          // a warp's record being quantized
    m.gs = o, o += sizeof(float) * nw * 2 * (hd / 8); // a warp's group scale, 1/scale
    m.stage_k = o, o += (size_t)2 * MX_STAGE * hd;
    m.stage_v = o, o += (size_t)2 * MX_STAGE * hd;
    m.stage_p = o, o += sizeof(int32_t) * MX_STAGE;
    m.stage_s = o, o += sizeof(uint32_t) * 2 * MX_STAGE;
    m.total = o;
    return m;
}

// Shared memory a demotion block may take (pvc_mixed_check).
#define MX_MAX_SMEM (200 * 1024)

#endif
