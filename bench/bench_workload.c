/* bench_workload: see bench_workload.h. */
#include "bench_workload.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *WORDS[] = {
    "the",   "of",    "and",   "to",    "in",    "is",    "that",  "for",   "it",    "as",
    "was",   "with",  "be",    "by",    "on",    "not",   "he",    "this",  "are",   "or",
    "his",   "from",  "at",    "which", "but",   "have",  "an",    "had",   "they",  "you",
    "were",  "their", "one",   "all",   "we",    "can",   "her",   "has",   "there", "been",
    "if",    "more",  "when",  "will",  "would", "who",   "so",    "no",    "time",  "people",
    "new",   "first", "also",  "after", "year",  "other", "some",  "water", "house", "world",
    "city",  "light", "story", "river", "music", "night", "small", "great", "work",  "day",
    "game",  "school", "house", "book", "place", "hand",  "life",  "old",   "good",  "long",
};
#define N_WORDS (sizeof WORDS / sizeof WORDS[0])

uint64_t bench_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double bench_rng_unit(uint64_t *s) { return (double)(bench_rng_next(s) >> 11) * 0x1.0p-53; }

size_t bench_n_words(void) { return N_WORDS; }
const char *bench_word(size_t i) { return i < N_WORDS ? WORDS[i] : NULL; }

char *bench_random_prompt(uint64_t *rng, long n) {
    if (n < 0) n = 0;
    /* the longest word is 6 bytes, plus its separator */
    size_t cap = (size_t)n * 8 + 1, len = 0;
    char *p = malloc(cap);
    if (!p) return NULL;
    p[0] = 0;
    for (long i = 0; i < n; i++) {
        const char *w = WORDS[bench_rng_next(rng) % N_WORDS];
        len += (size_t)snprintf(p + len, cap - len, "%s%s", i ? " " : "", w);
    }
    return p;
}

char *bench_prefixed_prompt(const char *prefix, uint64_t *rng, long n) {
    char *rest = bench_random_prompt(rng, n);
    if (!rest || !prefix || !*prefix) return rest;
    size_t lp = strlen(prefix), lr = strlen(rest);
    char *p = malloc(lp + 1 + lr + 1);
    if (p) {
        memcpy(p, prefix, lp);
        p[lp] = ' ';
        memcpy(p + lp + 1, rest, lr + 1);
    }
    free(rest);
    return p;
}

int bench_arrivals(double *out, size_t n, double rate, uint64_t seed) {
    if (!(rate > 0)) return -1;
    double t = 0;
    uint64_t rng = seed ^ 0x5eedf00dull;
    for (size_t i = 0; i < n; i++) {
        /* 1 - u is in (0, 1], so the log is finite */
        if (isfinite(rate)) t += -log(1.0 - bench_rng_unit(&rng)) / rate;
        out[i] = t;
    }
    return 0;
}

void bench_prompts_free(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* A dataset record's prompt: {"prompt": s} or ShareGPT's first turn. */
static const char *record_prompt(const cJSON *o) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    if (cJSON_IsString(p)) return p->valuestring;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "conversations");
    const cJSON *t = cJSON_IsArray(c) ? cJSON_GetArrayItem(c, 0) : NULL;
    const cJSON *v = t ? cJSON_GetObjectItemCaseSensitive(t, "value") : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

typedef struct {
    char **v;
    size_t n, cap;
} prompts;

/* Adds rec's prompt when it has one. -1 only when out of memory. */
static int add_record(prompts *ps, const cJSON *rec) {
    const char *p = rec ? record_prompt(rec) : NULL;
    if (!p || !*p) return 0;
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 64;
        char **nv = realloc(ps->v, cap * sizeof *nv);
        if (!nv) return -1;
        ps->v = nv;
        ps->cap = cap;
    }
    if (!(ps->v[ps->n] = strdup(p))) return -1;
    ps->n++;
    return 0;
}

int bench_dataset_parse(const char *text, size_t len, char ***out, size_t *n, char *err,
                        size_t errlen) {
    prompts ps = {0};
    int rc = 0;
    const char *s = text, *end = text + len;
    if (len >= 3 && !memcmp(s, "\xef\xbb\xbf", 3)) s += 3;
    while (s < end && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')) s++;
    if (s < end && *s == '[') {
        cJSON *arr = cJSON_ParseWithLength(s, (size_t)(end - s));
        for (const cJSON *it = cJSON_IsArray(arr) ? arr->child : NULL; it && !rc; it = it->next)
            rc = add_record(&ps, it);
        cJSON_Delete(arr);
    } else {
        while (s < end && !rc) {
            const char *nl = memchr(s, '\n', (size_t)(end - s));
            size_t ll = nl ? (size_t)(nl - s) : (size_t)(end - s);
            cJSON *o = ll ? cJSON_ParseWithLength(s, ll) : NULL;
            rc = add_record(&ps, o);
            cJSON_Delete(o);
            s += ll + (nl != NULL);
        }
    }
    if (rc || !ps.n) {
        snprintf(err, errlen, "%s", rc ? "out of memory" : "no prompts");
        bench_prompts_free(ps.v, ps.n);
        return -1;
    }
    *out = ps.v;
    *n = ps.n;
    return 0;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = (n + 65536 + 1) * 2;
            char *b = realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, 65536, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { /* a directory, an I/O error: not a dataset */
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

int bench_dataset_load(const char *path, char ***out, size_t *n, char *err, size_t errlen) {
    size_t len;
    char *text = read_file(path, &len);
    if (!text) {
        snprintf(err, errlen, "cannot read --dataset %s", path);
        return -1;
    }
    char why[64];
    int rc = bench_dataset_parse(text, len, out, n, why, sizeof why);
    free(text);
    if (rc) {
        if (!strcmp(why, "no prompts")) snprintf(err, errlen, "no prompts in --dataset %s", path);
        else snprintf(err, errlen, "%s", why);
    }
    return rc;
}
