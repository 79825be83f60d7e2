/* pvdev: which compute devices this build and machine offer.
 *
 * Without CUDA in the build (-Dcuda=disabled or no nvcc) the CUDA queries
 * answer "none"; with it, they ask the driver and report its error text
 * instead of failing hard when no GPU or driver is present. */
#ifndef PIVOT_PVDEV_DEVICE_H
#define PIVOT_PVDEV_DEVICE_H

#include <stddef.h>

/* 1 when the binary was built with the CUDA backend. */
int pvdev_cuda_built(void);
/* Number of usable CUDA GPUs (0 without CUDA, driver or GPU). When 0 and
 * why != NULL, a reason is written there ("built without CUDA",
 * "no CUDA-capable device is detected", ...). */
int pvdev_cuda_count(char *why, size_t whylen);
/* Name of GPU i; PV_ENODEV if it does not exist. */
int pvdev_cuda_name(int i, char *name, size_t len);

#endif
