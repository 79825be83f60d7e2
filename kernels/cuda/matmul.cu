// Matrix products with FP16 weights: y[t][r] (+)= sum_c W[r][c] x[t][c].
//
// Decode at small batch is bound by reading W once per step, so for
// T <= PVC_MATVEC_MAX_T a matrix-vector kernel streams each weight row once
// with 16-byte loads and applies it to all T activation rows (they stay in
// L1/L2). Larger T is compute-bound and goes to cuBLAS (tensor cores, FP16
// inputs, FP32 accumulation). Both can add into y (beta = 1) so the residual
// add of the output projections costs no extra pass.
#include <cublas_v2.h>

#include "common.cuh"

#define MV_WARPS 8 // rows per block: one warp per row

template <int NT>
__global__ void __launch_bounds__(MV_WARPS * 32)
    matvec_kernel(const pvc_h8 *__restrict__ W, int rows, int cols8, const pvc_h8 *__restrict__ x,
                  float *__restrict__ y, int accumulate) {
    int lane = threadIdx.x & 31;
    int r = blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
    if (r >= rows) return;
    const pvc_h8 *wr = W + (size_t)r * cols8;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = 0.f;
    // Unrolled so each warp has several 512-byte loads in flight: one load
    // per warp at a time cannot cover HBM latency.
#pragma unroll 4
    for (int c = lane; c < cols8; c += 32) {
        pvc_h8 w = wr[c];
        float wf[8];
        pvc_h8_to_f(w, wf);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            pvc_h8 xv = x[(size_t)t * cols8 + c];
            float xf[8];
            pvc_h8_to_f(xv, xf);
#pragma unroll
            for (int j = 0; j < 8; j++) acc[t] = fmaf(wf[j], xf[j], acc[t]);
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        float s = pvc_warp_sum(acc[t]);
        if (lane == 0) {
            float *dst = y + (size_t)t * rows + r;
            *dst = accumulate ? *dst + s : s;
        }
    }
}

template <int NT>
static int launch_matvec(pvc_ctx *c, const uint16_t *W, int rows, int cols, const uint16_t *x,
                         float *y, int accumulate) {
    matvec_kernel<NT><<<pvc_blocks(rows, MV_WARPS), MV_WARPS * 32, 0, c->stream>>>(
        (const pvc_h8 *)W, rows, cols / 8, (const pvc_h8 *)x, y, accumulate);
    PVC_CHECK_LAUNCH("matvec");
    return PV_OK;
}

static int matvec(pvc_ctx *c, const uint16_t *W, int rows, int cols, const uint16_t *x, int T,
                  float *y, int accumulate) {
    switch (T) {
    case 1: return launch_matvec<1>(c, W, rows, cols, x, y, accumulate);
    case 2: return launch_matvec<2>(c, W, rows, cols, x, y, accumulate);
    case 3: return launch_matvec<3>(c, W, rows, cols, x, y, accumulate);
    case 4: return launch_matvec<4>(c, W, rows, cols, x, y, accumulate);
    case 5: return launch_matvec<5>(c, W, rows, cols, x, y, accumulate);
    case 6: return launch_matvec<6>(c, W, rows, cols, x, y, accumulate);
    case 7: return launch_matvec<7>(c, W, rows, cols, x, y, accumulate);
    case 8: return launch_matvec<8>(c, W, rows, cols, x, y, accumulate);
    default: return PV_EINVAL;
    }
}

static int gemm(pvc_ctx *c, const uint16_t *W, int rows, int cols, const uint16_t *x, int T,
                float *y, int accumulate) {
    // Row-major W [rows][cols] is column-major W^T (cols x rows, ld = cols);
    // x [T][cols] is column-major cols x T; y [T][rows] is column-major
    // rows x T. So y = op_T(W^T) * x with m = rows, n = T, k = cols.
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    cublasStatus_t s = cublasGemmEx((cublasHandle_t)c->cublas, CUBLAS_OP_T, CUBLAS_OP_N, rows, T,
                                    cols, &alpha, W, CUDA_R_16F, cols, x, CUDA_R_16F, cols, &beta,
                                    y, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) {
        pvc_set_error("cublasGemmEx(%d x %d x %d): %s", rows, T, cols, cublasGetStatusString(s));
        return s == CUBLAS_STATUS_ALLOC_FAILED ? PV_ENOMEM : PV_EIO;
    }
    return PV_OK;
}

extern "C" int pvc_matmul(pvc_ctx *c, const uint16_t *W, int rows, int cols, const uint16_t *x,
                          int T, float *y, int accumulate, pvc_mm_impl impl) {
    if (rows <= 0 || cols <= 0 || T <= 0 || !W || !x || !y) return PV_EINVAL;
    // 16-byte loads need cols % 8 == 0 and aligned rows; cudaMalloc
    // pointers are 256-byte aligned, sub-buffers are the caller's care.
    int mv_ok = T <= PVC_MATVEC_MAX_T && cols % 8 == 0 && ((uintptr_t)W & 15) == 0 &&
                ((uintptr_t)x & 15) == 0;
    if (impl == PVC_MM_MATVEC && !mv_ok) return PV_EINVAL;
    if (impl == PVC_MM_MATVEC || (impl == PVC_MM_AUTO && mv_ok))
        return matvec(c, W, rows, cols, x, T, y, accumulate);
    return gemm(c, W, rows, cols, x, T, y, accumulate);
}
