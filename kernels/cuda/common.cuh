// Shared by the backend's .cu files: error plumbing and half helpers.
//
// Kernels never abort. A launcher checks its arguments, launches, and turns
// any CUDA error into a PV_* code with PVC_CHECK / PVC_CHECK_LAUNCH, which
// also record the error text for pvc_last_error().
#ifndef PIVOT_PVCUDA_COMMON_CUH
#define PIVOT_PVCUDA_COMMON_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "pvcuda.h"
#include "pverr.h"

struct pvc_ctx {
    int device;
    int n_sm;
    cudaStream_t stream;
    void *cublas; // cublasHandle_t, kept opaque so only matmul.cu needs cublas_v2.h
};

// Records `what: text` for pvc_last_error and maps the CUDA error to a code.
int pvc_fail_cuda(cudaError_t e, const char *what);
void pvc_set_error(const char *fmt, ...);

#define PVC_CHECK(call)                                            \
    do {                                                           \
        cudaError_t pvc_e_ = (call);                               \
        if (pvc_e_ != cudaSuccess) return pvc_fail_cuda(pvc_e_, #call); \
    } while (0)

// After a <<<>>> launch: catches bad configurations (no sync, so cheap).
#define PVC_CHECK_LAUNCH(name) PVC_CHECK(cudaPeekAtLastError())

// attention.cu, shared with kv_mixed.cu's attention: the split count and
// chunk for T rows (returns n_split, or PV_ESPACE), and the log-sum-exp merge
// of the split partials ([T][n_heads][n_split][hd] then [..][2] max, sum).
int pvc_attn_splits(const pvc_ctx *c, int T, int n_kv, int n_heads, int hd, int max_keys,
                    size_t part_floats, int *chunk);
int pvc_attn_combine(pvc_ctx *c, const float *part_o, const float *part_ml, int T, int n_heads,
                     int n_split, int hd, uint16_t *out, float *lse);

static inline unsigned pvc_blocks(size_t n, unsigned threads) {
    return (unsigned)((n + threads - 1) / threads);
}

// 8 halves <-> 8 floats through one 16-byte access.
struct __align__(16) pvc_h8 {
    __half2 h[4];
};

__device__ __forceinline__ void pvc_h8_to_f(const pvc_h8 &v, float *f) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 t = __half22float2(v.h[i]);
        f[2 * i] = t.x;
        f[2 * i + 1] = t.y;
    }
}

__device__ __forceinline__ float pvc_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float pvc_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

#endif
