/* The check/report helpers of the GPU checks (gpu_check.h), shared by the
 * real GPU build (tests/gpu/run.sh) and the CPU emulator (tests/gpu/emu). */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "gpu_check.h"

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

void tsv(const char *key, const char *fmt, ...) {
    if (!g_tsv) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(g_tsv, "%s\t", key);
    vfprintf(g_tsv, fmt, ap);
    fprintf(g_tsv, "\n");
    va_end(ap);
    fflush(g_tsv);
}

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
