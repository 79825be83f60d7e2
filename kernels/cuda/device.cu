// CUDA device queries behind kernels/device.h (the C side calls these when
// PIVOT_HAVE_CUDA is defined). Errors come back as codes and text; nothing
// here aborts, so a machine without a driver still runs the CPU path.
#include <cuda_runtime.h>
#include <stdio.h>

extern "C" int pvcuda_device_count(char *why, size_t whylen) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why && whylen) snprintf(why, whylen, "%s", cudaGetErrorString(e));
        cudaGetLastError();  // clear the sticky error for later calls
        return 0;
    }
    if (n == 0 && why && whylen) snprintf(why, whylen, "no CUDA device");
    return n;
}

extern "C" int pvcuda_device_name(int i, char *name, size_t len) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
        cudaGetLastError();
        return -11;  // PV_ENODEV
    }
    snprintf(name, len, "%s", p.name);
    return 0;
}
