// The pvc runtime for emu_cuda.h: launches (a coroutine per CUDA thread,
// blocks in order), half conversions, and host memory standing in for device
// memory (filled with 0xA5 so reads of unwritten memory show up as garbage).
#include <cstdarg>
#include <cstdio>
#include <cstdlib>

#include "emu_cuda.h"
#include "common.cuh"

#include <ucontext.h>

emu_idx threadIdx, blockIdx, blockDim, gridDim;
void *emu_dyn_smem;
uint64_t *emu_shfl_buf;

// Coroutine scheduler of one block: threads run round-robin; a thread at a
// barrier yields until every participant (block, or its warp) has arrived.
namespace {
const size_t STACK = 256 * 1024;
struct cthread {
    ucontext_t ctx;
    bool done;
    char *stack;
};
struct bar {
    int arrived;
    unsigned gen;
};
std::vector<cthread> th;
std::vector<bar> bars; // [0] block, [1 + w] warp w
ucontext_t sched;
int cur, n_threads;
const std::function<void()> *body;

void entry() {
    (*body)();
    th[cur].done = true;
}
} // namespace

void emu_barrier(int warp) {
    bar &b = bars[warp ? 1 + cur / 32 : 0];
    const int need = warp ? 32 : n_threads;
    const unsigned gen = b.gen;
    if (++b.arrived == need) {
        b.arrived = 0;
        b.gen++;
        return;
    }
    while (b.gen == gen) {
        int me = cur;
        swapcontext(&th[me].ctx, &sched);
        cur = me;
        threadIdx = {(unsigned)me, 0, 0};
    }
}

void emu_launch(dim3 grid, dim3 block, size_t smem, const std::function<void()> &fn) {
    const int nt = (int)(block.x * block.y * block.z);
    if (nt % 32 || block.y != 1 || block.z != 1 || nt > 1024) {
        fprintf(stderr, "emu: block of %d threads (need a multiple of 32, 1-D, <= 1024)\n", nt);
        abort();
    }
    std::vector<unsigned char> dyn(smem + 16, 0xA5);
    std::vector<uint64_t> shfl(nt);
    emu_dyn_smem = (void *)(((uintptr_t)dyn.data() + 15) & ~(uintptr_t)15);
    emu_shfl_buf = shfl.data();
    if (th.size() < (size_t)nt) {
        size_t old = th.size();
        th.resize(nt);
        for (size_t i = old; i < th.size(); i++) th[i].stack = (char *)malloc(STACK);
    }
    n_threads = nt;
    body = &fn;
    blockDim = {block.x, 1, 1};
    gridDim = {grid.x, grid.y, grid.z};
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx = {x, y, z};
                bars.assign(1 + nt / 32, bar{0, 0});
                for (int t = 0; t < nt; t++) {
                    getcontext(&th[t].ctx);
                    th[t].ctx.uc_stack.ss_sp = th[t].stack;
                    th[t].ctx.uc_stack.ss_size = STACK;
                    th[t].ctx.uc_link = &sched;
                    th[t].done = false;
                    makecontext(&th[t].ctx, entry, 0);
                }
                for (int left = nt, rounds = 0; left; rounds++) {
                    int progressed = 0;
                    left = 0;
                    for (int t = 0; t < nt; t++) {
                        if (th[t].done) continue;
                        cur = t;
                        threadIdx = {(unsigned)t, 0, 0};
                        swapcontext(&sched, &th[t].ctx);
                        progressed = 1;
                        left += !th[t].done;
                    }
                    if (!progressed || rounds > 100000000) {
                        fprintf(stderr, "emu: deadlock in a block\n");
                        abort();
                    }
                }
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

// ---- the rest of device.cu, for the forward pass ----
extern "C" int pvcuda_device_count(char *why, size_t whylen) {
    (void)why, (void)whylen;
    return 1;
}
extern "C" int pvcuda_device_name(int i, char *name, size_t len) {
    (void)i;
    snprintf(name, len, "emulated (tests/gpu/emu)");
    return PV_OK;
}
extern "C" int pvc_mem_info(pvc_ctx *c, size_t *free_b, size_t *total_b) {
    (void)c;
    *free_b = *total_b = (size_t)1 << 34;
    return PV_OK;
}
extern "C" int pvc_host_alloc(size_t bytes, void **p) { return pvc_alloc(NULL, bytes, p); }
extern "C" void pvc_host_free(void *p) { free(p); }
extern "C" int pvc_d2d(pvc_ctx *c, void *dst, const void *src, size_t bytes) {
    return pvc_h2d(c, dst, src, bytes);
}
extern "C" int pvc_copy_bandwidth(pvc_ctx *c, size_t bytes, int iters, double *gbps) {
    (void)c, (void)bytes, (void)iters;
    *gbps = 0;
    return PV_EUNSUPPORTED; // nothing to measure on the CPU
}
