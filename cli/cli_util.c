#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define DEFAULT_MODEL_REL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

const char *cli_opt(int argc, char **argv, int *i, const char *name, int *missing) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n] != 0) return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    (*i)++;
    return argv[*i];
}

int cli_parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cli_parse_float(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cli_parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (*s == '-') return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

static int readable(const char *p) { return access(p, R_OK) == 0; }

const char *cli_default_model(char *buf, size_t len) {
    const char *env = getenv("PIVOT_MODEL");
    if (env && *env) {
        snprintf(buf, len, "%s", env);
        return buf;
    }
    snprintf(buf, len, "%s", DEFAULT_MODEL_REL);
    if (readable(buf)) return buf;
    /* The binary lives in <repo>/<builddir>/cli/pivot: look two levels up
     * so `build/cli/pivot generate ...` works from anywhere. */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        for (int up = 0; up < 3; up++) {
            char *s = strrchr(exe, '/');
            if (!s) break;
            *s = 0;
            char cand[PATH_MAX + 64];
            snprintf(cand, sizeof cand, "%s/%s", exe, DEFAULT_MODEL_REL);
            if (readable(cand)) {
                snprintf(buf, len, "%s", cand);
                return buf;
            }
        }
    }
    snprintf(buf, len, "%s", DEFAULT_MODEL_REL);
    return buf;
}

