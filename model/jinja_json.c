/* jinja_json: JSON text -> template values, for the render context (the
 * model folder links no JSON library). Strict RFC 8259 apart from depth,
 * which is capped so hostile input cannot exhaust the stack. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"

#define JSON_MAX_DEPTH 64

typedef struct {
    jj_arena *a;
    const char *p, *end;
} jp;

static void ws(jp *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int lit(jp *s, const char *w) {
    size_t n = strlen(w);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n)) return 0;
    s->p += n;
    return 1;
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static void put_utf8(jj_buf *b, unsigned cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) u[0] = (char)cp, n = 1;
    else if (cp < 0x800) u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 63)), n = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 63)),
        u[2] = (char)(0x80 | (cp & 63)), n = 3;
    else
        u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 63)),
        u[2] = (char)(0x80 | ((cp >> 6) & 63)), u[3] = (char)(0x80 | (cp & 63)), n = 4;
    jj_put(b, u, n);
}

/* One escape after the backslash at s->p[-1]; -1 when malformed. */
static int escape(jp *s, jj_buf *b) {
    if (s->p >= s->end) return -1;
    char c = *s->p++;
    const char *map = "\"\"\\\\//b\bf\fn\nr\rt\t";
    for (const char *m = map; *m; m += 2)
        if (*m == c) {
            jj_put(b, m + 1, 1);
            return 0;
        }
    unsigned cp, lo;
    if (c != 'u' || s->end - s->p < 4 || hex4(s->p, &cp)) return -1;
    s->p += 4;
    if (cp >= 0xD800 && cp < 0xDC00 && s->end - s->p >= 6 && s->p[0] == '\\' && s->p[1] == 'u' &&
        !hex4(s->p + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        s->p += 6;
    }
    put_utf8(b, cp);
    return 0;
}

static jv *string(jp *s) {
    jj_buf b = {0};
    s->p++; /* the opening quote */
    while (s->p < s->end && *s->p != '"') {
        unsigned char c = (unsigned char)*s->p++;
        if (c < 0x20 || (c == '\\' && escape(s, &b))) {
            free(b.p);
            return NULL;
        }
        if (c != '\\') jj_put(&b, (const char *)&c, 1);
    }
    jv *v = NULL;
    if (s->p < s->end && !b.oom) {
        s->p++;
        v = jv_str(s->a, b.p ? b.p : "", b.n);
    }
    free(b.p);
    return v;
}

static jv *number(jp *s) {
    const char *st = s->p;
    int is_float = 0;
    if (s->p < s->end && *s->p == '-') s->p++;
    while (s->p < s->end && strchr("0123456789.eE+-", *s->p)) {
        if (strchr(".eE", *s->p)) is_float = 1;
        s->p++;
    }
    char buf[64];
    size_t n = (size_t)(s->p - st);
    if (!n || n >= sizeof buf) return NULL;
    memcpy(buf, st, n);
    buf[n] = 0;
    char *e;
    if (!is_float) {
        long long i = strtoll(buf, &e, 10);
        return *e ? NULL : jv_int(s->a, i);
    }
    double f = strtod(buf, &e);
    return *e || !isfinite(f) ? NULL : jv_float(s->a, f);
}

static jv *value(jp *s, int depth);

static jv *container(jp *s, int depth) {
    int obj = *s->p++ == '{';
    jv *v = obj ? jv_dict(s->a) : jv_list(s->a);
    ws(s);
    if (v && s->p < s->end && *s->p == (obj ? '}' : ']')) {
        s->p++;
        return v;
    }
    while (v) {
        ws(s);
        jv *k = NULL;
        if (obj) {
            if (s->p >= s->end || *s->p != '"' || !(k = string(s))) return NULL;
            ws(s);
            if (s->p >= s->end || *s->p++ != ':') return NULL;
        }
        jv *x = value(s, depth + 1);
        if (!x || (obj ? jv_dict_set(s->a, v, k, x) : jv_list_push(s->a, v, x))) return NULL;
        ws(s);
        if (s->p >= s->end) return NULL;
        char c = *s->p++;
        if (c == (obj ? '}' : ']')) return v;
        if (c != ',') return NULL;
    }
    return NULL;
}

static jv *value(jp *s, int depth) {
    ws(s);
    if (s->p >= s->end || depth > JSON_MAX_DEPTH) return NULL;
    char c = *s->p;
    if (c == '{' || c == '[') return container(s, depth);
    if (c == '"') return string(s);
    if (lit(s, "true")) return &jv_true;
    if (lit(s, "false")) return &jv_false;
    if (lit(s, "null")) return &jv_none;
    return number(s);
}

jv *jv_from_json(jj_arena *a, const char *text, size_t n) {
    jp s = {a, text, text + n};
    jv *v = value(&s, 0);
    ws(&s);
    return v && s.p == s.end ? v : NULL;
}
