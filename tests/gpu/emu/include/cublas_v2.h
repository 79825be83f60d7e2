// emu: the one cuBLAS call matmul.cu makes, as a plain loop (column-major).
#pragma once
typedef void *cublasHandle_t;
typedef int cublasStatus_t;
enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_ALLOC_FAILED = 3 };
enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum { CUDA_R_16F = 2, CUDA_R_32F = 0 };
enum { CUBLAS_COMPUTE_32F = 68 };
enum { CUBLAS_GEMM_DEFAULT = -1 };
inline const char *cublasGetStatusString(cublasStatus_t) { return "emu"; }
// C[m x n] = alpha op(A) op(B) + beta C, A and B half, C float.
inline cublasStatus_t cublasGemmEx(cublasHandle_t, int ta, int tb, int m, int n, int k,
                                   const float *alpha, const void *A, int, int lda, const void *B,
                                   int, int ldb, const float *beta, void *C, int, int ldc, int,
                                   int) {
    const uint16_t *a = (const uint16_t *)A, *b = (const uint16_t *)B;
    float *c = (float *)C;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float s = 0.f;
            for (int p = 0; p < k; p++) {
                float av = emu_h2f(ta ? a[p + (size_t)i * lda] : a[i + (size_t)p * lda]);
                float bv = emu_h2f(tb ? b[j + (size_t)p * ldb] : b[p + (size_t)j * ldb]);
                s += av * bv;
            }
            float &d = c[i + (size_t)j * ldc];
            d = *alpha * s + (*beta != 0.f ? *beta * d : 0.f);
        }
    return CUBLAS_STATUS_SUCCESS;
}
