#include "cli_opt.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int cli_parse_bytes(const char *s, size_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0) return -1;
    double mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1024, end++;
    else if (*end == 'M' || *end == 'm') mul = 1024.0 * 1024, end++;
    else if (*end == 'G' || *end == 'g') mul = 1024.0 * 1024 * 1024, end++;
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (*end || v * mul >= 0x1p63) return -1;
    *out = (size_t)(v * mul);
    return 0;
}

static int choice_index(const cli_opt *o, const char *v) {
    for (int k = 0; o->choices[k]; k++)
        if (!strcmp(o->choices[k], v)) return k;
    return -1;
}

/* Stores v into o->dst: 0, or -1 when v is not a value of o's kind. */
static int store(const cli_opt *o, const char *v) {
    long l;
    double d;
    switch (o->kind) {
    case CLI_STR: *(const char **)o->dst = v; return 0;
    case CLI_FLAG: *(int *)o->dst = 1; return 0;
    case CLI_FLAG_OFF: *(int *)o->dst = 0; return 0;
    case CLI_INT:
        if (cli_parse_int(v, (long)o->lo, (long)o->hi, &l)) return -1;
        *(int *)o->dst = (int)l;
        return 0;
    case CLI_FLOAT:
    case CLI_DOUBLE:
        if (cli_parse_float(v, o->lo, o->hi, &d) || (o->open_lo && !(d > o->lo))) return -1;
        if (o->kind == CLI_FLOAT) *(float *)o->dst = (float)d;
        else *(double *)o->dst = d;
        return 0;
    case CLI_U64: return cli_parse_u64(v, (uint64_t *)o->dst);
    case CLI_BYTES: {
        size_t b;
        if (cli_parse_bytes(v, &b) || (double)b < o->lo) return -1;
        *(size_t *)o->dst = b;
        return 0;
    }
    case CLI_CHOICE: {
        int k = choice_index(o, v);
        if (k < 0) return -1;
        *(int *)o->dst = o->values ? o->values[k] : k;
        return 0;
    }
    case CLI_FN: return o->fn(o->dst, v) ? -1 : 0;
    }
    return -1;
}

/* "a, b or c" from a choice list. */
static void list_choices(const cli_opt *o, char *buf, size_t len) {
    size_t n = 0;
    buf[0] = 0;
    for (int k = 0; o->choices[k] && n < len; k++) {
        const char *sep = k == 0 ? "" : o->choices[k + 1] ? ", " : " or ";
        n += (size_t)snprintf(buf + n, len - n, "%s%s", sep, o->choices[k]);
    }
}

/* The one-line message for a refused value; from is the flag or the
 * environment variable the value came from. */
static int refuse(const char *cmd, const cli_opt *o, const char *from, const char *v) {
    char what[256];
    switch (o->kind) {
    case CLI_INT:
        snprintf(what, sizeof what, "an integer in [%ld, %ld]", (long)o->lo, (long)o->hi);
        break;
    case CLI_FLOAT:
    case CLI_DOUBLE:
        snprintf(what, sizeof what, "a number in %c%g, %g]", o->open_lo ? '(' : '[', o->lo, o->hi);
        break;
    case CLI_U64: snprintf(what, sizeof what, "a non-negative integer"); break;
    case CLI_BYTES: snprintf(what, sizeof what, "a size in bytes (e.g. 4M, 2G)"); break;
    case CLI_CHOICE: list_choices(o, what, sizeof what); break;
    case CLI_FN: snprintf(what, sizeof what, "%s", o->what ? o->what : "a valid value"); break;
    default: /* a flag: no value on the command line, 1/0 in its variable */
        snprintf(what, sizeof what, "%s", from == o->env ? "1, true, 0 or false" : "no value");
        break;
    }
    fprintf(stderr, "pivot %s: %s expects %s, got '%s'\n", cmd, from, what, v);
    return 2;
}

static const cli_opt *find(const cli_opt *const *tables, const char *a, size_t n) {
    for (int t = 0; tables[t]; t++)
        for (const cli_opt *o = tables[t]; o->name; o++)
            if (strlen(o->name) == n && !strncmp(o->name, a, n)) return o;
    return NULL;
}

static int is_flag(const cli_opt *o) { return o->kind == CLI_FLAG || o->kind == CLI_FLAG_OFF; }

/* A flag's variable says whether the flag is given: 1/true or 0/false. */
static int from_env(const char *cmd, const cli_opt *const *tables) {
    for (int t = 0; tables[t]; t++)
        for (const cli_opt *o = tables[t]; o->name; o++) {
            const char *v = o->env ? getenv(o->env) : NULL;
            if (!v || !*v) continue;
            if (is_flag(o) && (!strcmp(v, "0") || !strcmp(v, "false"))) continue;
            if (is_flag(o) && strcmp(v, "1") && strcmp(v, "true")) return refuse(cmd, o, o->env, v);
            if (store(o, v)) return refuse(cmd, o, o->env, v);
        }
    return 0;
}

/* One option at argv[*i] (already matched to o); advances *i past its
 * values. */
static int take(const char *cmd, const cli_opt *o, int argc, char **argv, int *i) {
    const char *eq = strchr(argv[*i], '=');
    if (is_flag(o)) {
        if (eq) {
            fprintf(stderr, "pivot %s: %s takes no value\n", cmd, o->name);
            return 2;
        }
        return store(o, NULL);
    }
    const char *v = eq ? eq + 1 : NULL;
    if (!v) {
        int next_ok = *i + 1 < argc && !(o->multi && !strncmp(argv[*i + 1], "--", 2));
        if (!next_ok) {
            fprintf(stderr, "pivot %s: %s needs a value\n", cmd, o->name);
            return 2;
        }
        v = argv[++*i];
    }
    if (store(o, v)) return refuse(cmd, o, o->name, v);
    while (o->multi && *i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0) {
        v = argv[++*i];
        if (store(o, v)) return refuse(cmd, o, o->name, v);
    }
    return 0;
}

int cli_parse(const char *cmd, int argc, char **argv, const cli_opt *const *tables) {
    int rc = from_env(cmd, tables);
    for (int i = 1; !rc && i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return CLI_HELP;
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        const cli_opt *o = strncmp(a, "--", 2) ? NULL : find(tables, a, n);
        if (!o) {
            fprintf(stderr, "pivot %s: unknown option '%s' (see pivot %s --help)\n", cmd, a, cmd);
            return 2;
        }
        rc = take(cmd, o, argc, argv, &i);
    }
    return rc;
}
