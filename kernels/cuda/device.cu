// Devices, memory, streams and timing behind pvcuda.h / kernels/device.h.
// Errors come back as codes and text; nothing here aborts, so a machine
// without a driver still runs the CPU path.
#include <cublas_v2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.cuh"

static thread_local char last_err[256];

void pvc_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_err, sizeof last_err, fmt, ap);
    va_end(ap);
}

int pvc_fail_cuda(cudaError_t e, const char *what) {
    pvc_set_error("%s: %s", what, cudaGetErrorString(e));
    cudaGetLastError(); // clear non-sticky errors so the next call starts clean
    if (e == cudaErrorMemoryAllocation) return PV_ENOMEM;
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorInvalidDevice)
        return PV_ENODEV;
    if (e == cudaErrorInvalidValue || e == cudaErrorInvalidConfiguration) return PV_EINVAL;
    return PV_EIO;
}

extern "C" const char *pvc_last_error(void) { return last_err; }

extern "C" int pvcuda_device_count(char *why, size_t whylen) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why && whylen) snprintf(why, whylen, "%s", cudaGetErrorString(e));
        cudaGetLastError(); // clear the sticky error for later calls
        return 0;
    }
    if (n == 0 && why && whylen) snprintf(why, whylen, "no CUDA device");
    return n;
}

extern "C" int pvcuda_device_name(int i, char *name, size_t len) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
        cudaGetLastError();
        return PV_ENODEV;
    }
    snprintf(name, len, "%s", p.name);
    return 0;
}

extern "C" int pvc_create(int device, pvc_ctx **out, char *err, size_t errlen) {
    *out = NULL;
    char why[200] = "";
    int n = pvcuda_device_count(why, sizeof why);
    if (device < 0 || device >= n) {
        if (err && errlen)
            snprintf(err, errlen, "no CUDA device %d (%s)", device, n ? "out of range" : why);
        return PV_ENODEV;
    }
    pvc_ctx *c = (pvc_ctx *)calloc(1, sizeof *c);
    if (!c) return PV_ENOMEM;
    c->device = device;
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&c->n_sm, cudaDevAttrMultiProcessorCount, device);
    if (e != cudaSuccess) {
        int rc = pvc_fail_cuda(e, "cuda init");
        if (err && errlen) snprintf(err, errlen, "%s", last_err);
        pvc_destroy(c);
        return rc == PV_EIO ? PV_ENODEV : rc;
    }
    cublasHandle_t h;
    cublasStatus_t s = cublasCreate(&h);
    if (s != CUBLAS_STATUS_SUCCESS) {
        if (err && errlen) snprintf(err, errlen, "cublasCreate failed (status %d)", (int)s);
        pvc_destroy(c);
        return PV_ENODEV;
    }
    cublasSetStream(h, c->stream);
    c->cublas = h;
    *out = c;
    return PV_OK;
}

extern "C" void pvc_destroy(pvc_ctx *c) {
    if (!c) return;
    if (c->cublas) cublasDestroy((cublasHandle_t)c->cublas);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

extern "C" int pvc_sm_count(const pvc_ctx *c) { return c->n_sm; }

extern "C" int pvc_mem_info(pvc_ctx *c, size_t *free_b, size_t *total_b) {
    (void)c;
    PVC_CHECK(cudaMemGetInfo(free_b, total_b));
    return PV_OK;
}

extern "C" int pvc_alloc(pvc_ctx *c, size_t bytes, void **p) {
    (void)c;
    *p = NULL;
    if (bytes == 0) bytes = 16; // a valid, freeable pointer for empty buffers
    PVC_CHECK(cudaMalloc(p, bytes));
    return PV_OK;
}

extern "C" void pvc_free(pvc_ctx *c, void *p) {
    (void)c;
    if (p) cudaFree(p);
}

extern "C" int pvc_host_alloc(size_t bytes, void **p) {
    *p = NULL;
    PVC_CHECK(cudaMallocHost(p, bytes ? bytes : 16));
    return PV_OK;
}

extern "C" void pvc_host_free(void *p) {
    if (p) cudaFreeHost(p);
}

extern "C" int pvc_memset(pvc_ctx *c, void *p, int byte, size_t bytes) {
    PVC_CHECK(cudaMemsetAsync(p, byte, bytes, c->stream));
    return PV_OK;
}

extern "C" int pvc_h2d(pvc_ctx *c, void *dst, const void *src, size_t bytes) {
    PVC_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
    return PV_OK;
}

extern "C" int pvc_d2h(pvc_ctx *c, void *dst, const void *src, size_t bytes) {
    PVC_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    PVC_CHECK(cudaStreamSynchronize(c->stream));
    return PV_OK;
}

extern "C" int pvc_d2d(pvc_ctx *c, void *dst, const void *src, size_t bytes) {
    PVC_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
    return PV_OK;
}

extern "C" int pvc_sync(pvc_ctx *c) {
    PVC_CHECK(cudaStreamSynchronize(c->stream));
    return PV_OK;
}

struct pvc_timer {
    cudaEvent_t a, b;
};

extern "C" int pvc_timer_start(pvc_ctx *c, pvc_timer **t) {
    *t = (pvc_timer *)calloc(1, sizeof **t);
    if (!*t) return PV_ENOMEM;
    cudaError_t e = cudaEventCreate(&(*t)->a);
    if (e == cudaSuccess) e = cudaEventCreate(&(*t)->b);
    if (e == cudaSuccess) e = cudaEventRecord((*t)->a, c->stream);
    if (e != cudaSuccess) {
        free(*t);
        *t = NULL;
        return pvc_fail_cuda(e, "timer start");
    }
    return PV_OK;
}

extern "C" int pvc_timer_stop(pvc_ctx *c, pvc_timer *t, double *ms) {
    float f = 0;
    cudaError_t e = cudaEventRecord(t->b, c->stream);
    if (e == cudaSuccess) e = cudaEventSynchronize(t->b);
    if (e == cudaSuccess) e = cudaEventElapsedTime(&f, t->a, t->b);
    cudaEventDestroy(t->a);
    cudaEventDestroy(t->b);
    free(t);
    *ms = f;
    return e == cudaSuccess ? PV_OK : pvc_fail_cuda(e, "timer stop");
}

extern "C" int pvc_copy_bandwidth(pvc_ctx *c, size_t bytes, int iters, double *gbps) {
    void *a = NULL, *b = NULL;
    *gbps = 0;
    int rc = pvc_alloc(c, bytes, &a);
    if (!rc) rc = pvc_alloc(c, bytes, &b);
    if (!rc) rc = pvc_memset(c, a, 1, bytes);
    if (!rc) rc = pvc_d2d(c, b, a, bytes); // warm-up
    pvc_timer *t = NULL;
    if (!rc) rc = pvc_timer_start(c, &t);
    for (int i = 0; !rc && i < iters; i++) rc = pvc_d2d(c, i & 1 ? a : b, i & 1 ? b : a, bytes);
    double ms = 0;
    if (t) {
        int rc2 = pvc_timer_stop(c, t, &ms);
        if (!rc) rc = rc2;
    }
    if (!rc && ms > 0) *gbps = 2.0 * bytes * iters / (ms * 1e-3) / 1e9;
    pvc_free(c, a);
    pvc_free(c, b);
    return rc;
}
