/* Runs the mixed cache's op checks (tests/gpu/gpu_mixed.c) against the
 * kernels executed on the CPU by emu_cuda.h: their indexing, barriers and
 * numerics without a GPU. Exit 0 when every check passed. */
#include <stdio.h>
#include <time.h>

#include "../gpu_check.h"

int main(void) {
    pvc_ctx *pc = NULL;
    char err[64];
    pvc_create(0, &pc, err, sizeof err);
    rng r = {.s = (uint64_t)time(NULL)};
    printf("emulated CUDA (tests/gpu/emu), seed %llu\n", (unsigned long long)r.s);
    run_ops_mixed(pc, &r);
    printf("emu ops: %d passed, %d failed\n", g_passed, g_failed);
    pvc_destroy(pc);
    return g_failed ? 1 : 0;
}
