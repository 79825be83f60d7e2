// emu_cuda.h: just enough of CUDA to run the mixed cache's kernels on the
// CPU (tests/gpu/emu/run.sh). Each CUDA thread of a block is a coroutine;
// __syncthreads, __syncwarp and warp shuffles are barriers, so a kernel whose
// threads do not all reach a barrier is reported (deadlock) as it would
// misbehave on a GPU. Blocks run one after another, so `__shared__` arrays can be function
// statics. Device allocations are filled with garbage (0xA5) to expose reads
// of memory nothing wrote. Not a performance or race detector.
#pragma once
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __align__(n) alignas(n)
#define __restrict__
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct emu_idx {
    unsigned x, y, z;
};
extern emu_idx threadIdx, blockIdx, blockDim, gridDim;
extern void *emu_dyn_smem;

// The threads of a block are coroutines (ucontext) switched at barriers:
// emu_barrier(0) is __syncthreads, emu_barrier(1) this thread's warp.
void emu_barrier(int warp);
extern uint64_t *emu_shfl_buf; // [threads] exchange slots of the running block

inline void __syncthreads() { emu_barrier(0); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu_barrier(1); }
template <class T> inline T __shfl_xor_sync(unsigned, T v, int o) {
    static_assert(sizeof(T) <= 8, "shuffle of a scalar");
    const unsigned t = threadIdx.x;
    memcpy(&emu_shfl_buf[t], &v, sizeof v);
    emu_barrier(1);
    T r;
    memcpy(&r, &emu_shfl_buf[(t & ~31u) | ((t & 31u) ^ (unsigned)o)], sizeof r);
    emu_barrier(1);
    return r;
}

// Runs fn for every thread of every block.
void emu_launch(dim3 grid, dim3 block, size_t smem, const std::function<void()> &fn);

// ---- half precision (binary16 bits; conversions round to nearest even) ----
struct __half {
    uint16_t x;
};
struct __half2 {
    __half x, y;
};
struct float2 {
    float x, y;
};
struct uint2 {
    unsigned x, y;
};
uint16_t emu_f2h(float f);
float emu_h2f(uint16_t h);
inline __half __float2half_rn(float f) { return __half{emu_f2h(f)}; }
inline float __half2float(__half h) { return emu_h2f(h.x); }
inline __half __ushort_as_half(unsigned short u) { return __half{u}; }
inline unsigned short __half_as_ushort(__half h) { return h.x; }
inline float2 __half22float2(__half2 h) { return float2{emu_h2f(h.x.x), emu_h2f(h.y.x)}; }

// ---- math intrinsics: the IEEE-rounded forms are plain float operations ----
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline unsigned __float_as_uint(float f) {
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}
inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
using std::isfinite;

// ---- runtime API: errors never happen here ----
typedef void *cudaStream_t;
typedef int cudaError_t;
#define cudaSuccess 0
#define cudaFuncAttributeMaxDynamicSharedMemorySize 0
inline cudaError_t cudaPeekAtLastError() { return cudaSuccess; }
template <class F> inline cudaError_t cudaFuncSetAttribute(F, int, int) { return cudaSuccess; }
