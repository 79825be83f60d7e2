// The pvc runtime for emu_cuda.h: launches (a std::thread per CUDA thread,
// blocks in order), half conversions, and host memory standing in for device
// memory (filled with 0xA5 so reads of unwritten memory show up as garbage).
#include <cstdarg>
#include <cstdio>
#include <cstdlib>

#include "emu_cuda.h"
#include "common.cuh"

thread_local emu_idx threadIdx, blockIdx, blockDim, gridDim;
thread_local void *emu_dyn_smem;
thread_local emu_block *emu_cur;

void emu_launch(dim3 grid, dim3 block, size_t smem, const std::function<void()> &fn) {
    const int nt = (int)(block.x * block.y * block.z);
    if (nt % 32 || block.y != 1 || block.z != 1) {
        fprintf(stderr, "emu: block of %d threads (need a multiple of 32, 1-D)\n", nt);
        abort();
    }
    std::vector<unsigned char> dyn(smem + 16, 0xA5);
    void *dp = (void *)(((uintptr_t)dyn.data() + 15) & ~(uintptr_t)15);
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                emu_block b(nt);
                std::vector<std::thread> th;
                th.reserve(nt);
                for (int t = 0; t < nt; t++)
                    th.emplace_back([&, t] {
                        threadIdx = {(unsigned)t, 0, 0};
                        blockIdx = {x, y, z};
                        blockDim = {block.x, 1, 1};
                        gridDim = {grid.x, grid.y, grid.z};
                        emu_dyn_smem = dp;
                        emu_cur = &b;
                        fn();
                    });
                for (auto &t : th) t.join();
            }
}

uint16_t emu_f2h(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (x > 0x7f800000u ? 0x200u : 0));
    if (x < 0x38800000u) {
        uint32_t e = x >> 23;
        if (e < 102) return sign;
        uint32_t m = (x & 0x7fffffu) | 0x800000u, shift = 126 - e;
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t h = (x - (112u << 23)) >> 13, rem = x & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    if (h >= 0x7c00u) h = 0x7c00u;
    return (uint16_t)(sign | h);
}

float emu_h2f(uint16_t h) {
    uint32_t s = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, x;
    if (e == 0) {
        float f = ldexpf((float)m, -24);
        return s ? -f : f;
    }
    if (e == 31) x = s | 0x7f800000u | (m << 13);
    else x = s | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static thread_local char last_err[256];
void pvc_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_err, sizeof last_err, fmt, ap);
    va_end(ap);
}
int pvc_fail_cuda(cudaError_t e, const char *what) {
    pvc_set_error("%s: emu error %d", what, e);
    return PV_EIO;
}
extern "C" const char *pvc_last_error(void) { return last_err; }
extern "C" int pvc_create(int device, pvc_ctx **out, char *err, size_t errlen) {
    (void)err, (void)errlen;
    pvc_ctx *c = (pvc_ctx *)calloc(1, sizeof *c);
    c->device = device;
    c->n_sm = 2; // few splits: small grids run fast here
    *out = c;
    return PV_OK;
}
extern "C" void pvc_destroy(pvc_ctx *c) { free(c); }
extern "C" int pvc_sm_count(const pvc_ctx *c) { return c->n_sm; }
extern "C" int pvc_alloc(pvc_ctx *c, size_t bytes, void **p) {
    (void)c;
    *p = malloc(bytes ? bytes : 1);
    if (!*p) return PV_ENOMEM;
    memset(*p, 0xA5, bytes);
    return PV_OK;
}
extern "C" void pvc_free(pvc_ctx *c, void *p) { (void)c, free(p); }
extern "C" int pvc_memset(pvc_ctx *c, void *p, int byte, size_t bytes) {
    (void)c;
    memset(p, byte, bytes);
    return PV_OK;
}
extern "C" int pvc_h2d(pvc_ctx *c, void *dst, const void *src, size_t bytes) {
    (void)c;
    memcpy(dst, src, bytes);
    return PV_OK;
}
extern "C" int pvc_d2h(pvc_ctx *c, void *dst, const void *src, size_t bytes) {
    return pvc_h2d(c, dst, src, bytes);
}
extern "C" int pvc_sync(pvc_ctx *c) { return (void)c, PV_OK; }
