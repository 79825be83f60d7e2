/* jinja_value: arenas, the output buffer and the values of a render, with
 * Python's semantics where templates can observe them: str() of lists and
 * dicts (repr with single quotes), float repr, True/False/None, equality
 * across int/float/bool, and json.dumps for `tojson`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"

struct jj_block {
    jj_block *next;
    size_t used, cap;
    max_align_t data[];
};

#define JJ_BLOCK 65536

void *jj_alloc(jj_arena *a, size_t n) {
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (a->limit && (n > a->limit || a->bytes > a->limit - n)) {
        a->oom = a->over = 1;
        return NULL;
    }
    a->bytes += n;
    jj_block *b = a->head;
    if (!b || b->used + n > b->cap) {
        size_t cap = n > JJ_BLOCK ? n : JJ_BLOCK;
        b = malloc(sizeof *b + cap);
        if (!b) {
            a->oom = 1;
            return NULL;
        }
        b->used = 0, b->cap = cap;
        /* a big block goes behind the current one so the current keeps filling */
        if (a->head && cap > JJ_BLOCK) {
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

char *jj_strndup(jj_arena *a, const char *s, size_t n) {
    char *d = jj_alloc(a, n + 1);
    if (d && n) memcpy(d, s, n);
    return d;
}

void jj_arena_free(jj_arena *a) {
    for (jj_block *b = a->head, *nx; b; b = nx) {
        nx = b->next;
        free(b);
    }
    a->head = NULL;
}

void jj_put(jj_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (n > JJ_MAX_OUT - b->n) {
        b->oom = b->big = 1;
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np, b->cap = nc;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void jj_puts(jj_buf *b, const char *s) { jj_put(b, s, strlen(s)); }

jv jv_undef = {.k = JV_UNDEF}, jv_none = {.k = JV_NONE}, jv_true = {.k = JV_BOOL, .u.b = 1},
   jv_false = {.k = JV_BOOL, .u.b = 0};

static jv *mk(jj_arena *a, jv_kind k) {
    jv *v = jj_alloc(a, sizeof *v);
    if (v) v->k = k;
    return v;
}

jv *jv_int(jj_arena *a, long long i) {
    jv *v = mk(a, JV_INT);
    if (v) v->u.i = i;
    return v;
}

jv *jv_float(jj_arena *a, double f) {
    jv *v = mk(a, JV_FLOAT);
    if (v) v->u.f = f;
    return v;
}

jv *jv_str(jj_arena *a, const char *s, size_t n) {
    jv *v = mk(a, JV_STR);
    if (!v || !(v->u.s.p = jj_strndup(a, s, n))) return NULL;
    v->u.s.n = n;
    return v;
}

jv *jv_cstr(jj_arena *a, const char *s) { return jv_str(a, s, strlen(s)); }
jv *jv_list(jj_arena *a) { return mk(a, JV_LIST); }
jv *jv_dict(jj_arena *a) { return mk(a, JV_DICT); }
jv *jv_bool(int b) { return b ? &jv_true : &jv_false; }

/* Arena arrays grow by copying; the old copy stays in the arena until the
 * render ends, which costs little for template-sized data. */
static int grow(jj_arena *a, jv ***arr, int n, int *cap) {
    if (n < *cap) return 0;
    int nc = *cap ? *cap * 2 : 4;
    jv **na = jj_alloc(a, sizeof *na * (size_t)nc);
    if (!na) return -1;
    if (n) memcpy(na, *arr, sizeof *na * (size_t)n);
    *arr = na, *cap = nc;
    return 0;
}

int jv_list_push(jj_arena *a, jv *l, jv *x) {
    if (!x || grow(a, &l->u.l.v, l->u.l.n, &l->u.l.cap)) return -1;
    l->u.l.v[l->u.l.n++] = x;
    return 0;
}

jv *jv_dict_get(const jv *d, const char *k, size_t n) {
    for (int i = 0; i < d->u.d.n; i++) {
        const jv *key = d->u.d.key[i];
        if (key->k == JV_STR && key->u.s.n == n && !memcmp(key->u.s.p, k, n)) return d->u.d.val[i];
    }
    return NULL;
}

int jv_dict_set(jj_arena *a, jv *d, jv *k, jv *v) {
    if (!k || !v) return -1;
    for (int i = 0; i < d->u.d.n; i++)
        if (jv_equal(d->u.d.key[i], k)) {
            d->u.d.val[i] = v;
            return 0;
        }
    int cap = d->u.d.cap;
    if (grow(a, &d->u.d.key, d->u.d.n, &cap)) return -1;
    cap = d->u.d.cap;
    if (grow(a, &d->u.d.val, d->u.d.n, &cap)) return -1;
    d->u.d.cap = cap;
    d->u.d.key[d->u.d.n] = k;
    d->u.d.val[d->u.d.n++] = v;
    return 0;
}

int jv_truthy(const jv *v) {
    switch (v->k) {
    case JV_BOOL: return v->u.b;
    case JV_INT: return v->u.i != 0;
    case JV_FLOAT: return v->u.f != 0;
    case JV_STR: return v->u.s.n != 0;
    case JV_LIST: return v->u.l.n != 0;
    case JV_DICT: return v->ns || v->u.d.n != 0;
    case JV_FUNC: return 1;
    default: return 0;
    }
}

static int is_num(const jv *v) { return v->k == JV_INT || v->k == JV_FLOAT || v->k == JV_BOOL; }
static double num(const jv *v) {
    return v->k == JV_FLOAT ? v->u.f : v->k == JV_INT ? (double)v->u.i : v->u.b;
}

/* Python compares containers item by item, each item first by identity
 * (so a list that holds itself equals itself); past JJ_MAX_NEST levels two
 * values are taken as different rather than recursing on. */
static int equal(const jv *a, const jv *b, int depth) {
    if (a == b) return 1;
    if (depth > JJ_MAX_NEST) return 0;
    if (is_num(a) && is_num(b)) return num(a) == num(b);
    if (a->k != b->k) return 0;
    switch (a->k) {
    case JV_UNDEF: case JV_NONE: return 1;
    case JV_STR: return a->u.s.n == b->u.s.n && !memcmp(a->u.s.p, b->u.s.p, a->u.s.n);
    case JV_LIST:
        if (a->u.l.n != b->u.l.n) return 0;
        for (int i = 0; i < a->u.l.n; i++)
            if (!equal(a->u.l.v[i], b->u.l.v[i], depth + 1)) return 0;
        return 1;
    case JV_DICT:
        if (a->u.d.n != b->u.d.n) return 0;
        for (int i = 0; i < a->u.d.n; i++) {
            const jv *k = a->u.d.key[i];
            const jv *o = k->k == JV_STR ? jv_dict_get(b, k->u.s.p, k->u.s.n) : NULL;
            if (!o || !equal(a->u.d.val[i], o, depth + 1)) return 0;
        }
        return 1;
    default: return 0; /* functions: equal only to themselves (above) */
    }
}

int jv_equal(const jv *a, const jv *b) { return equal(a, b, 0); }

int jv_compare(const jv *a, const jv *b) {
    if (is_num(a) && is_num(b)) return num(a) < num(b) ? -1 : num(a) > num(b);
    if (a->k == JV_STR && b->k == JV_STR) {
        size_t n = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
        int c = memcmp(a->u.s.p, b->u.s.p, n);
        if (c) return c < 0 ? -1 : 1;
        return a->u.s.n < b->u.s.n ? -1 : a->u.s.n > b->u.s.n;
    }
    return -2;
}

const char *jv_kind_name(const jv *v) {
    static const char *const names[] = {"undefined", "none", "bool", "int", "float",
                                        "string", "list", "dict", "function"};
    return names[v->k];
}

/* Python's repr(float): the shortest %.*g that reads back, ".0" when it
 * looks like an integer. */
static void put_float(double f, jj_buf *b) {
    char s[40];
    if (isnan(f)) { jj_puts(b, "nan"); return; }
    if (isinf(f)) { jj_puts(b, f < 0 ? "-inf" : "inf"); return; }
    int p = 1;
    for (; p <= 17; p++) {
        snprintf(s, sizeof s, "%.*g", p, f);
        if (strtod(s, NULL) == f) break;
    }
    int exp = f == 0 ? 0 : (int)floor(log10(fabs(f)));
    if (strtod(s, NULL) == f && exp >= -4 && exp < 16) /* positional, as repr does there */
        snprintf(s, sizeof s, "%.*f", p - 1 - exp > 0 ? p - 1 - exp : 0, f);
    jj_puts(b, s);
    if (!strpbrk(s, ".en")) jj_puts(b, ".0");
}

static void put_repr_str(const jv *v, jj_buf *b) {
    const char *p = v->u.s.p;
    size_t n = v->u.s.n;
    /* Python picks double quotes when the text has ' but no " */
    char q = memchr(p, '\'', n) && !memchr(p, '"', n) ? '"' : '\'';
    jj_put(b, &q, 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        char e[8];
        if (c == '\\' || c == (unsigned char)q) snprintf(e, sizeof e, "\\%c", c);
        else if (c == '\n') snprintf(e, sizeof e, "\\n");
        else if (c == '\t') snprintf(e, sizeof e, "\\t");
        else if (c == '\r') snprintf(e, sizeof e, "\\r");
        else if (c < 0x20 || c == 0x7f) snprintf(e, sizeof e, "\\x%02x", c);
        else e[0] = (char)c, e[1] = 0;
        jj_puts(b, e);
    }
    jj_put(b, &q, 1);
}

/* Nesting past JJ_MAX_NEST (a self-containing list, or a crafted deep one)
 * fails the buffer instead of recursing on. */
static int too_deep(int depth, jj_buf *b) {
    if (depth <= JJ_MAX_NEST) return 0;
    b->oom = b->deep = 1;
    return 1;
}

static void to_str(const jv *v, jj_buf *b, int depth);

static void put_repr(const jv *v, jj_buf *b, int depth) {
    if (v->k == JV_STR) put_repr_str(v, b);
    else to_str(v, b, depth);
}

void jv_to_str(const jv *v, jj_buf *b) { to_str(v, b, 0); }

static void to_str(const jv *v, jj_buf *b, int depth) {
    char s[32];
    if (too_deep(depth, b)) return;
    switch (v->k) {
    case JV_UNDEF: return;
    case JV_NONE: jj_puts(b, "None"); return;
    case JV_BOOL: jj_puts(b, v->u.b ? "True" : "False"); return;
    case JV_INT: snprintf(s, sizeof s, "%lld", v->u.i); jj_puts(b, s); return;
    case JV_FLOAT: put_float(v->u.f, b); return;
    case JV_STR: jj_put(b, v->u.s.p, v->u.s.n); return;
    case JV_LIST:
        jj_puts(b, "[");
        for (int i = 0; i < v->u.l.n; i++) {
            if (i) jj_puts(b, ", ");
            put_repr(v->u.l.v[i], b, depth + 1);
        }
        jj_puts(b, "]");
        return;
    case JV_DICT:
        jj_puts(b, v->ns ? "<Namespace {" : "{");
        for (int i = 0; i < v->u.d.n; i++) {
            if (i) jj_puts(b, ", ");
            put_repr(v->u.d.key[i], b, depth + 1);
            jj_puts(b, ": ");
            put_repr(v->u.d.val[i], b, depth + 1);
        }
        jj_puts(b, v->ns ? "}>" : "}");
        return;
    default: jj_puts(b, "<function>"); return;
    }
}

static void put_json_str(const char *p, size_t n, jj_buf *b) {
    jj_puts(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        char e[8];
        if (c == '"' || c == '\\') snprintf(e, sizeof e, "\\%c", c);
        else if (c == '\n') snprintf(e, sizeof e, "\\n");
        else if (c == '\t') snprintf(e, sizeof e, "\\t");
        else if (c == '\r') snprintf(e, sizeof e, "\\r");
        else if (c == '\b') snprintf(e, sizeof e, "\\b");
        else if (c == '\f') snprintf(e, sizeof e, "\\f");
        else if (c < 0x20 || c == 0x7f) snprintf(e, sizeof e, "\\u%04x", c);
        else e[0] = (char)c, e[1] = 0;
        jj_puts(b, e);
    }
    jj_puts(b, "\"");
}

static void newline(int indent, int depth, jj_buf *b) {
    jj_puts(b, "\n");
    for (int i = 0; i < indent * depth; i++) jj_puts(b, " ");
}

static void to_json(const jv *v, int indent, int depth, jj_buf *b) {
    if (too_deep(depth, b)) return;
    int n = v->k == JV_LIST ? v->u.l.n : v->k == JV_DICT ? v->u.d.n : 0;
    switch (v->k) {
    case JV_STR: put_json_str(v->u.s.p, v->u.s.n, b); return;
    case JV_BOOL: jj_puts(b, v->u.b ? "true" : "false"); return;
    case JV_INT: case JV_FLOAT: jv_to_str(v, b); return;
    case JV_LIST: case JV_DICT: break;
    default: jj_puts(b, "null"); return;
    }
    jj_puts(b, v->k == JV_LIST ? "[" : "{");
    for (int i = 0; i < n; i++) {
        if (i) jj_puts(b, indent >= 0 ? "," : ", ");
        if (indent >= 0) newline(indent, depth + 1, b);
        if (v->k == JV_DICT) {
            const jv *k = v->u.d.key[i];
            if (k->k == JV_STR) put_json_str(k->u.s.p, k->u.s.n, b);
            else { jj_puts(b, "\""); jv_to_str(k, b); jj_puts(b, "\""); }
            jj_puts(b, ": ");
        }
        to_json(v->k == JV_LIST ? v->u.l.v[i] : v->u.d.val[i], indent, depth + 1, b);
    }
    if (n && indent >= 0) newline(indent, depth, b);
    jj_puts(b, v->k == JV_LIST ? "]" : "}");
}

void jv_to_json(const jv *v, int indent, jj_buf *b) { to_json(v, indent, 0, b); }
