/* Runs the mixed cache's op checks (tests/gpu/gpu_mixed.c) against the
 * kernels executed on the CPU by emu_cuda.h: their indexing, barriers and
 * numerics without a GPU. Exit 0 when every check passed. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "../gpu_check.h"

int g_failed, g_passed;
FILE *g_tsv;

void check(int ok, const char *name, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("%s  %-44s %s\n", ok ? "PASS" : "FAIL", name, buf);
    fflush(stdout);
    if (ok) g_passed++;
    else g_failed++;
}
void tsv(const char *key, const char *fmt, ...) { (void)key, (void)fmt; }
double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
float rng_uniform(rng *r) {
    r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((r->s >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}
int rng_int(rng *r, int n) { return (int)(((rng_uniform(r) + 1.0f) * 0.5f) * n) % n; }

int main(void) {
    pvc_ctx *pc = NULL;
    char err[64];
    pvc_create(0, &pc, err, sizeof err);
    rng r = {.s = (uint64_t)time(NULL)};
    printf("emulated CUDA (tests/gpu/emu), seed %llu\n", (unsigned long long)r.s);
    run_ops_mixed(pc, &r);
    printf("emu: %d passed, %d failed\n", g_passed, g_failed);
    pvc_destroy(pc);
    return g_failed ? 1 : 0;
}
