/* The check/report helpers of the GPU checks (gpu_check.h), shared by the
 * real GPU build (tests/gpu/run.sh) and the CPU emulator (tests/gpu/emu). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu_check.h"

int g_failed, g_passed;
FILE *g_tsv;

/* Every check's outcome, kept for gpu_junit_write. */
typedef struct {
    char name[128], msg[512];
    int ok;
} gcase;
static gcase *g_cases;
static int g_ncases, g_capcases;

static void record(int ok, const char *name, const char *msg) {
    if (g_ncases == g_capcases) {
        int cap = g_capcases ? 2 * g_capcases : 64;
        gcase *n = realloc(g_cases, sizeof *n * (size_t)cap);
        if (!n) return; /* the XML then lacks cases: the counts below still say so */
        g_cases = n, g_capcases = cap;
    }
    gcase *c = &g_cases[g_ncases++];
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    c->ok = ok;
}

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
    record(ok, name, buf);
}

static void xml_escaped(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            if ((unsigned char)*s >= 0x20) fputc(*s, f);
        }
    }
}

int gpu_junit_write(const char *path, const char *suite) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    /* tests/failures from the counters, so a case record() could not keep
     * still counts */
    fprintf(f, "<testsuite name=\"%s\" tests=\"%d\" failures=\"%d\">\n", suite,
            g_passed + g_failed, g_failed);
    for (int i = 0; i < g_ncases; i++) {
        fprintf(f, "  <testcase classname=\"%s\" name=\"", suite);
        xml_escaped(f, g_cases[i].name);
        if (g_cases[i].ok) {
            fputs("\"/>\n", f);
            continue;
        }
        fputs("\"><failure message=\"", f);
        xml_escaped(f, g_cases[i].msg);
        fputs("\"/></testcase>\n", f);
    }
    fputs("</testsuite>\n", f);
    return fclose(f) ? -1 : 0;
}

void *gpu_up(pvc_ctx *pc, const void *h, size_t bytes) {
    void *d = NULL;
    if (pvc_alloc(pc, bytes, &d)) return NULL;
    if (h && (pvc_h2d(pc, d, h, bytes) || pvc_sync(pc))) {
        pvc_free(pc, d);
        return NULL;
    }
    return d;
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
