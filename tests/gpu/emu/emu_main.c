/* Runs the mixed cache's op checks (tests/gpu/gpu_mixed.c, gpu_mixed_layout.c)
 * against the kernels executed on the CPU by emu_cuda.h: their indexing,
 * barriers and numerics without a GPU. Exit 0 when every check passed.
 *   emu_ops [--junit FILE]   FILE: one JUnit testcase per check */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../gpu_check.h"

int main(int argc, char **argv) {
    const char *junit = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--junit") && i + 1 < argc) {
            junit = argv[++i];
        } else {
            fprintf(stderr, "usage: emu_ops [--junit FILE]\n");
            return 2;
        }
    }
    pvc_ctx *pc = NULL;
    char err[64];
    pvc_create(0, &pc, err, sizeof err);
    rng r = {.s = (uint64_t)time(NULL)};
    printf("emulated CUDA (tests/gpu/emu), seed %llu\n", (unsigned long long)r.s);
    run_ops_mixed(pc, &r);
    printf("emu ops: %d passed, %d failed\n", g_passed, g_failed);
    pvc_destroy(pc);
    if (junit && gpu_junit_write(junit, "gpu-emu-ops")) {
        fprintf(stderr, "emu_ops: cannot write %s\n", junit);
        return 1;
    }
    return g_failed ? 1 : 0;
}
