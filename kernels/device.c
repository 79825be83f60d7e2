#include "device.h"

#include <stdio.h>

#include "pverr.h"

#ifdef PIVOT_HAVE_CUDA
int pvcuda_device_count(char *why, size_t whylen);
int pvcuda_device_name(int i, char *name, size_t len);

int pvdev_cuda_built(void) { return 1; }
int pvdev_cuda_count(char *why, size_t whylen) { return pvcuda_device_count(why, whylen); }
int pvdev_cuda_name(int i, char *name, size_t len) { return pvcuda_device_name(i, name, len); }
#else
int pvdev_cuda_built(void) { return 0; }
int pvdev_cuda_count(char *why, size_t whylen) {
    if (why && whylen) snprintf(why, whylen, "built without CUDA");
    return 0;
}
int pvdev_cuda_name(int i, char *name, size_t len) {
    (void)i;
    if (name && len) name[0] = 0;
    return PV_ENODEV;
}
#endif
