// Small ops of the forward pass: embedding gather, RMSNorm, bias add,
// SwiGLU, synthetic fills. Each: kernel -> launcher (argument checks, launch
// shape) -> one extern "C" entry point returning a PV_* code.
//
// They are memory-bound and tiny next to the matrix products; the point is
// fusing the conversions to half into them so matmul inputs never take an
// extra pass.
#include "common.cuh"
#include "synth_hash.h"

// ---- embedding ----
__global__ void embed_kernel(const __half *table, const int32_t *ids, int D, float *x) {
    int t = blockIdx.y;
    const __half *row = table + (size_t)ids[t] * D;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < D; i += gridDim.x * blockDim.x)
        x[(size_t)t * D + i] = __half2float(row[i]);
}

extern "C" int pvc_embed(pvc_ctx *c, const uint16_t *table, const int32_t *ids, int T, int D,
                         float *x) {
    if (T <= 0 || D <= 0 || T > 65535) return PV_EINVAL;
    dim3 grid(pvc_blocks(D, 256) < 8 ? pvc_blocks(D, 256) : 8, T);
    embed_kernel<<<grid, 256, 0, c->stream>>>((const __half *)table, ids, D, x);
    PVC_CHECK_LAUNCH("embed");
    return PV_OK;
}

// ---- RMSNorm: one block per row, f32 sums (the CPU uses double; for
// hidden sizes of a few thousand the difference is far below half rounding).
__global__ void rmsnorm_kernel(const float *x, const int32_t *rows, const float *w, int D, float eps,
                               __half *out) {
    int t = blockIdx.x;
    const float *xr = x + (size_t)(rows ? rows[t] : t) * D;
    float ss = 0.f;
    for (int i = threadIdx.x; i < D; i += blockDim.x) ss += xr[i] * xr[i];
    __shared__ float red[32];
    ss = pvc_warp_sum(ss);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        float v = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.f;
        v = pvc_warp_sum(v);
        if (threadIdx.x == 0) red[0] = v;
    }
    __syncthreads();
    float scale = rsqrtf(red[0] / D + eps);
    for (int i = threadIdx.x; i < D; i += blockDim.x)
        out[(size_t)t * D + i] = __float2half_rn(xr[i] * scale * w[i]);
}

extern "C" int pvc_rmsnorm(pvc_ctx *c, const float *x, const int32_t *rows, const float *w, int T,
                           int D, float eps, uint16_t *out) {
    if (T <= 0 || D <= 0) return PV_EINVAL;
    rmsnorm_kernel<<<T, D >= 1024 ? 1024 : 256, 0, c->stream>>>(x, rows, w, D, eps, (__half *)out);
    PVC_CHECK_LAUNCH("rmsnorm");
    return PV_OK;
}

// ---- bias ----
__global__ void add_bias_kernel(float *y, int ld, const float *b, int T, int dim) {
    size_t n = (size_t)T * dim;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t t = i / dim, j = i % dim;
        y[t * ld + j] += b[j];
    }
}

extern "C" int pvc_add_bias(pvc_ctx *c, float *y, int ld, const float *b, int T, int dim) {
    if (T <= 0 || dim <= 0 || ld < dim) return PV_EINVAL;
    unsigned g = pvc_blocks((size_t)T * dim, 256);
    add_bias_kernel<<<g < 4096 ? g : 4096, 256, 0, c->stream>>>(y, ld, b, T, dim);
    PVC_CHECK_LAUNCH("add_bias");
    return PV_OK;
}

// ---- SwiGLU on the fused gate|up output ----
__global__ void swiglu_kernel(const float *gu, int T, int ff, __half *out) {
    size_t n = (size_t)T * ff;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t t = i / ff, j = i % ff;
        float g = gu[t * 2 * ff + j], u = gu[t * 2 * ff + ff + j];
        // expf, not __expf: the CPU reference uses expf and large |g| must
        // saturate the same way.
        out[i] = __float2half_rn(g / (1.0f + expf(-g)) * u);
    }
}

extern "C" int pvc_swiglu(pvc_ctx *c, const float *gu, int T, int ff, uint16_t *out) {
    if (T <= 0 || ff <= 0) return PV_EINVAL;
    unsigned g = pvc_blocks((size_t)T * ff, 256);
    swiglu_kernel<<<g < 8192 ? g : 8192, 256, 0, c->stream>>>(gu, T, ff, (__half *)out);
    PVC_CHECK_LAUNCH("swiglu");
    return PV_OK;
}

// ---- synthetic values, conversions ----
__global__ void fill_synth_kernel(__half *dst, size_t n, uint64_t seed, uint32_t tensor,
                                  float scale) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2half_rn(pvsyn_value(seed, tensor, i, scale));
}

extern "C" int pvc_fill_synth(pvc_ctx *c, uint16_t *dst, size_t n, uint64_t seed, uint32_t tensor,
                              float scale) {
    if (!n) return PV_OK;
    unsigned g = pvc_blocks(n, 256);
    fill_synth_kernel<<<g < 65536 ? g : 65536, 256, 0, c->stream>>>((__half *)dst, n, seed, tensor,
                                                                    scale);
    PVC_CHECK_LAUNCH("fill_synth");
    return PV_OK;
}

__global__ void f32_to_f16_kernel(const float *src, __half *dst, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2half_rn(src[i]);
}

extern "C" int pvc_f32_to_f16(pvc_ctx *c, const float *src, uint16_t *dst, size_t n) {
    if (!n) return PV_OK;
    unsigned g = pvc_blocks(n, 256);
    f32_to_f16_kernel<<<g < 65536 ? g : 65536, 256, 0, c->stream>>>(src, (__half *)dst, n);
    PVC_CHECK_LAUNCH("f32_to_f16");
    return PV_OK;
}
