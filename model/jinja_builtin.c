/* jinja_builtin: the filters, tests, global functions and methods of the
 * subset (jinja.h lists them), with Jinja2/Python behaviour on the values
 * chat templates pass around. Strings are treated as bytes except where
 * Python's answer differs for UTF-8 text in ways templates see (length). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jinja_internal.h"

enum { F_TRIM, F_TOJSON, F_LENGTH, F_COUNT, F_UPPER, F_LOWER, F_CAPITALIZE, F_TITLE, F_DEFAULT,
       F_D, F_ITEMS, F_FIRST, F_LAST, F_JOIN, F_STRING, F_INT, F_FLOAT, F_LIST, F_REVERSE,
       F_REPLACE, F_SAFE, F_SELECTATTR, F_REJECTATTR, F_MAP, F_ABS, F_SELECT, F_REJECT, F_INDENT };
static const char *const filter_names[] = {
    "trim", "tojson", "length", "count", "upper", "lower", "capitalize", "title", "default",
    "d", "items", "first", "last", "join", "string", "int", "float", "list", "reverse",
    "replace", "safe", "selectattr", "rejectattr", "map", "abs", "select", "reject", "indent", NULL};

enum { T_DEFINED, T_UNDEFINED, T_NONE, T_STRING, T_NUMBER, T_INTEGER, T_FLOAT, T_BOOLEAN,
       T_MAPPING, T_SEQUENCE, T_ITERABLE, T_TRUE, T_FALSE, T_EQUALTO, T_EQ, T_NE, T_ODD,
       T_EVEN, T_IN };
static const char *const test_names[] = {
    "defined", "undefined", "none", "string", "number", "integer", "float", "boolean",
    "mapping", "sequence", "iterable", "true", "false", "equalto", "eq", "ne", "odd",
    "even", "in", NULL};

enum { G_RANGE, G_NAMESPACE, G_RAISE, G_STRFTIME, G_DICT };
static const char *const global_names[] = {"range", "namespace", "raise_exception",
                                           "strftime_now", "dict", NULL};

/* methods: strings first (up to M_JOIN), then dicts, then lists */
enum { M_STARTSWITH, M_ENDSWITH, M_STRIP, M_LSTRIP, M_RSTRIP, M_SPLIT, M_REPLACE, M_UPPER,
       M_LOWER, M_TITLE, M_CAPITALIZE, M_JOIN, M_ITEMS, M_KEYS, M_VALUES, M_GET, M_APPEND };
static const char *const method_names[] = {
    "startswith", "endswith", "strip", "lstrip", "rstrip", "split", "replace", "upper",
    "lower", "title", "capitalize", "join", "items", "keys", "values", "get", "append", NULL};

static const char *const *const tables[] = {filter_names, test_names, global_names, method_names};

int jj_builtin_id(int cls, const char *name) {
    const char *const *t = tables[cls];
    for (int i = 0; t[i]; i++)
        if (!strcmp(t[i], name)) return i;
    if (cls == JB_TEST && (!strcmp(name, "==") || !strcmp(name, "sameas"))) return T_EQ;
    return -1;
}

jv *jj_method(jj_eval *ev, jv *v, const char *name) {
    int id = jj_builtin_id(JB_METHOD, name);
    int ok = id >= 0 && ((v->k == JV_STR && id <= M_JOIN) ||
                         (v->k == JV_DICT && !v->ns && id >= M_ITEMS && id <= M_GET) ||
                         (v->k == JV_LIST && id == M_APPEND));
    if (!ok) return NULL;
    jv *f = jj_alloc(jj_eval_arena(ev), sizeof *f);
    if (!f) return NULL;
    f->k = JV_FUNC;
    f->u.fn.id = id;
    f->u.fn.self = v;
    return f;
}

/* Argument `pos` or keyword `name`, NULL when not given. */
static jv *arg(jv **av, const char **kw, int n, int pos, const char *name) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (kw[i]) {
            if (name && !strcmp(kw[i], name)) return av[i];
        } else if (k++ == pos) {
            return av[i];
        }
    }
    return NULL;
}

static jv *str_of(jj_eval *ev, const jv *v) {
    if (v->k == JV_STR) return (jv *)v;
    jj_buf b = {0};
    jv_to_str(v, &b);
    return jj_take_buf(ev, &b);
}

static int in_set(char c, const jv *chars) {
    if (!chars || chars->k != JV_STR) return c == ' ' || (c >= '\t' && c <= '\r');
    return memchr(chars->u.s.p, c, chars->u.s.n) != NULL;
}

static jv *strip(jj_eval *ev, const jv *s, const jv *chars, int left, int right) {
    const char *p = s->u.s.p, *e = p + s->u.s.n;
    while (left && p < e && in_set(*p, chars)) p++;
    while (right && e > p && in_set(e[-1], chars)) e--;
    return jv_str(jj_eval_arena(ev), p, (size_t)(e - p));
}

/* upper (1), lower (0), title (2), capitalize (3) */
static jv *recase(jj_eval *ev, const jv *s, int how) {
    jv *r = jv_str(jj_eval_arena(ev), s->u.s.p, s->u.s.n);
    if (!r) return NULL;
    char *p = (char *)r->u.s.p;
    int prev_alpha = 0;
    for (size_t i = 0; i < r->u.s.n; i++) {
        unsigned char c = (unsigned char)p[i];
        int up = how == 1 || (how == 2 && !prev_alpha) || (how == 3 && i == 0);
        p[i] = (char)(up ? toupper(c) : tolower(c));
        prev_alpha = isalpha(c);
    }
    return r;
}

static jv *split(jj_eval *ev, const jv *s, const jv *sep) {
    jj_arena *A = jj_eval_arena(ev);
    jv *l = jv_list(A);
    const char *p = s->u.s.p, *e = p + s->u.s.n;
    if (!l) return NULL;
    if (!sep || sep->k != JV_STR) { /* runs of whitespace, no empty parts */
        while (p < e) {
            while (p < e && in_set(*p, NULL)) p++;
            const char *w = p;
            while (p < e && !in_set(*p, NULL)) p++;
            if (p > w && jv_list_push(A, l, jv_str(A, w, (size_t)(p - w)))) return NULL;
        }
        return l;
    }
    if (!sep->u.s.n) return jj_fail(ev, 0, "split: empty separator");
    for (;;) {
        const char *hit = NULL;
        for (const char *q = p; q + sep->u.s.n <= e && !hit; q++)
            if (!memcmp(q, sep->u.s.p, sep->u.s.n)) hit = q;
        const char *stop = hit ? hit : e;
        if (jv_list_push(A, l, jv_str(A, p, (size_t)(stop - p)))) return NULL;
        if (!hit) return l;
        p = hit + sep->u.s.n;
    }
}

static jv *replace(jj_eval *ev, const jv *s, const jv *old, const jv *new_) {
    if (!old || !new_ || old->k != JV_STR || new_->k != JV_STR)
        return jj_fail(ev, 0, "replace needs two strings");
    jj_buf b = {0};
    const char *p = s->u.s.p, *e = p + s->u.s.n;
    while (p < e) {
        if (old->u.s.n && (size_t)(e - p) >= old->u.s.n && !memcmp(p, old->u.s.p, old->u.s.n)) {
            jj_put(&b, new_->u.s.p, new_->u.s.n);
            p += old->u.s.n;
        } else {
            jj_put(&b, p++, 1);
        }
    }
    return jj_take_buf(ev, &b);
}

static jv *join(jj_eval *ev, const jv *l, const jv *sep, const jv *attr_name) {
    if (l->k != JV_LIST) return jj_fail(ev, 0, "join needs a list, got %s", jv_kind_name(l));
    jj_buf b = {0};
    for (int i = 0; i < l->u.l.n; i++) {
        if (i && sep && sep->k == JV_STR) jj_put(&b, sep->u.s.p, sep->u.s.n);
        const jv *x = l->u.l.v[i];
        if (attr_name && attr_name->k == JV_STR && x->k == JV_DICT) {
            x = jv_dict_get(x, attr_name->u.s.p, attr_name->u.s.n);
            if (!x) x = &jv_undef;
        }
        jv_to_str(x, &b);
    }
    return jj_take_buf(ev, &b);
}

static jv *pairs(jj_eval *ev, const jv *d, int what) { /* 0 items, 1 keys, 2 values */
    jj_arena *A = jj_eval_arena(ev);
    if (d->k != JV_DICT) return d->k == JV_UNDEF ? jv_list(A) : jj_fail(ev, 0, "items needs a dict");
    jv *l = jv_list(A);
    for (int i = 0; l && i < d->u.d.n; i++) {
        jv *x = what == 1 ? d->u.d.key[i] : d->u.d.val[i];
        if (what == 0) {
            x = jv_list(A);
            if (!x || jv_list_push(A, x, d->u.d.key[i]) || jv_list_push(A, x, d->u.d.val[i])) return NULL;
        }
        if (jv_list_push(A, l, x)) return NULL;
    }
    return l;
}

static long long utf8_len(const jv *s) {
    long long n = 0;
    for (size_t i = 0; i < s->u.s.n; i++) n += ((unsigned char)s->u.s.p[i] & 0xC0) != 0x80;
    return n;
}

static jv *test(jj_eval *ev, int id, jv *v, jv *a, int line);

/* selectattr/rejectattr(attr, test?, arg?) and map(attribute=..) / map(filter) */
static jv *select_attr(jj_eval *ev, int id, jv *l, jv **av, const char **kw, int n, int line) {
    jj_arena *A = jj_eval_arena(ev);
    if (l->k != JV_LIST) return jj_fail(ev, line, "%s needs a list", filter_names[id]);
    jv *name = arg(av, kw, n, 0, id == F_MAP ? "attribute" : NULL), *r = jv_list(A);
    int by_filter = id == F_MAP && !arg(av, kw, n, 99, "attribute") && name && name->k == JV_STR;
    int tid = -1, fid = -1;
    if (by_filter && (fid = jj_builtin_id(JB_FILTER, name->u.s.p)) < 0)
        return jj_fail(ev, line, "map: unsupported filter '%s'", name->u.s.p);
    if (id == F_MAP && !by_filter) name = arg(av, kw, n, 99, "attribute");
    if (!name || name->k != JV_STR) return jj_fail(ev, line, "%s needs a name", filter_names[id]);
    jv *tn = id != F_MAP ? arg(av, kw, n, 1, NULL) : NULL, *targ = id != F_MAP ? arg(av, kw, n, 2, NULL) : NULL;
    if (tn && (tn->k != JV_STR || (tid = jj_builtin_id(JB_TEST, tn->u.s.p)) < 0))
        return jj_fail(ev, line, "%s: unsupported test", filter_names[id]);
    for (int i = 0; r && i < l->u.l.n; i++) {
        jv *x = l->u.l.v[i], *y;
        if (by_filter) {
            if (!(y = jj_builtin_call(ev, JB_FILTER, fid, x, NULL, NULL, 0, line))) return NULL;
            if (jv_list_push(A, r, y)) return NULL;
            continue;
        }
        y = x->k == JV_DICT ? jv_dict_get(x, name->u.s.p, name->u.s.n) : NULL;
        if (!y) y = &jv_undef;
        if (id == F_MAP) {
            if (jv_list_push(A, r, y)) return NULL;
            continue;
        }
        jv *t = tid >= 0 ? test(ev, tid, y, targ, line) : jv_bool(jv_truthy(y));
        if (!t) return NULL;
        if (jv_truthy(t) == (id == F_SELECTATTR) && jv_list_push(A, r, x)) return NULL;
    }
    return r;
}

/* select/reject(test?, arg?): the items that pass (fail) the test, or
 * their truthiness without one. */
static jv *select_items(jj_eval *ev, int keep, jv *l, jv **av, const char **kw, int n, int line) {
    jj_arena *A = jj_eval_arena(ev);
    jv *tn = arg(av, kw, n, 0, NULL), *targ = arg(av, kw, n, 1, NULL), *r = jv_list(A);
    int tid = -1;
    if (l->k != JV_LIST) return jj_fail(ev, line, "select/reject need a list");
    if (tn && (tn->k != JV_STR || (tid = jj_builtin_id(JB_TEST, tn->u.s.p)) < 0))
        return jj_fail(ev, line, "select/reject: unsupported test");
    for (int i = 0; r && i < l->u.l.n; i++) {
        jv *t = tid >= 0 ? test(ev, tid, l->u.l.v[i], targ, line) : jv_bool(jv_truthy(l->u.l.v[i]));
        if (!t) return NULL;
        if (jv_truthy(t) == keep && jv_list_push(A, r, l->u.l.v[i])) return NULL;
    }
    return r;
}

/* indent(width=4, first=False, blank=False): spaces after each newline
 * (not before empty lines unless blank), and before the first line if first. */
static jv *indent(jj_eval *ev, jv *s, jv **av, const char **kw, int n) {
    jv *w = arg(av, kw, n, 0, "width"), *first = arg(av, kw, n, 1, "first");
    jv *blank = arg(av, kw, n, 2, "blank");
    long long width = w && w->k == JV_INT ? w->u.i : 4;
    if (width < 0 || width > 256) width = 4;
    jj_buf b = {0};
    const char *p = s->u.s.p, *e = p + s->u.s.n;
    for (int line = 0; p <= e; line++) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        const char *end = nl ? nl : e;
        int pad = (line > 0 || (first && jv_truthy(first))) &&
                  (end > p || (blank && jv_truthy(blank)));
        for (long long i = 0; pad && i < width; i++) jj_put(&b, " ", 1);
        jj_put(&b, p, (size_t)(end - p));
        if (!nl) break;
        jj_put(&b, "\n", 1);
        p = nl + 1;
    }
    return jj_take_buf(ev, &b);
}

static jv *to_number(jj_eval *ev, jv *v, int as_float) {
    jj_arena *A = jj_eval_arena(ev);
    double f = 0;
    if (v->k == JV_INT || v->k == JV_BOOL) f = v->k == JV_INT ? (double)v->u.i : v->u.b;
    else if (v->k == JV_FLOAT) f = v->u.f;
    else if (v->k == JV_STR) {
        char buf[64];
        size_t n = v->u.s.n < sizeof buf - 1 ? v->u.s.n : sizeof buf - 1;
        memcpy(buf, v->u.s.p, n);
        buf[n] = 0;
        f = strtod(buf, NULL);
    }
    if (as_float) return jv_float(A, f);
    return v->k == JV_INT ? v : jv_int(A, (long long)f);
}

static jv *seq_end(jj_eval *ev, jv *v, int last) {
    if (v->k == JV_LIST) return v->u.l.n ? v->u.l.v[last ? v->u.l.n - 1 : 0] : &jv_undef;
    if (v->k == JV_STR) return v->u.s.n ? jv_str(jj_eval_arena(ev), v->u.s.p + (last ? v->u.s.n - 1 : 0), 1) : &jv_undef;
    return &jv_undef;
}

static jv *reversed(jj_eval *ev, jv *v, int line) {
    jj_arena *A = jj_eval_arena(ev);
    if (v->k == JV_STR) {
        jv *r = jv_str(A, v->u.s.p, v->u.s.n);
        for (size_t i = 0; r && i < v->u.s.n; i++) ((char *)r->u.s.p)[i] = v->u.s.p[v->u.s.n - 1 - i];
        return r;
    }
    if (v->k != JV_LIST) return jj_fail(ev, line, "reverse needs a list or a string");
    jv *r = jv_list(A);
    for (int i = v->u.l.n - 1; r && i >= 0; i--)
        if (jv_list_push(A, r, v->u.l.v[i])) return NULL;
    return r;
}

static jv *filter(jj_eval *ev, int id, jv *v, jv **av, const char **kw, int n, int line) {
    jj_arena *A = jj_eval_arena(ev);
    jv *a0 = arg(av, kw, n, 0, NULL), *s;
    switch (id) {
    case F_TRIM: return (s = str_of(ev, v)) ? strip(ev, s, a0, 1, 1) : NULL;
    case F_TOJSON: {
        jv *ind = arg(av, kw, n, 0, "indent");
        jj_buf b = {0};
        jv_to_json(v, ind && ind->k == JV_INT ? (int)ind->u.i : -1, &b);
        return jj_take_buf(ev, &b);
    }
    case F_LENGTH: case F_COUNT:
        if (v->k == JV_STR) return jv_int(A, utf8_len(v));
        if (v->k == JV_LIST || v->k == JV_DICT) return jv_int(A, v->k == JV_LIST ? v->u.l.n : v->u.d.n);
        if (v->k == JV_UNDEF) return jv_int(A, 0);
        return jj_fail(ev, line, "a %s has no length", jv_kind_name(v));
    case F_UPPER: case F_LOWER: case F_TITLE: case F_CAPITALIZE:
        return (s = str_of(ev, v)) ? recase(ev, s, id == F_UPPER ? 1 : id == F_LOWER ? 0 : id == F_TITLE ? 2 : 3) : NULL;
    case F_DEFAULT: case F_D: {
        jv *b = arg(av, kw, n, 1, "boolean");
        int use = v->k == JV_UNDEF || (b && jv_truthy(b) && !jv_truthy(v));
        return use ? (a0 ? a0 : jv_cstr(A, "")) : v;
    }
    case F_ITEMS: return pairs(ev, v, 0);
    case F_FIRST: case F_LAST: return seq_end(ev, v, id == F_LAST);
    case F_JOIN: return join(ev, v, a0, arg(av, kw, n, 1, "attribute"));
    case F_STRING: return str_of(ev, v);
    case F_INT: case F_FLOAT: return to_number(ev, v, id == F_FLOAT);
    case F_LIST:
        if (v->k == JV_DICT) return pairs(ev, v, 1);
        if (v->k == JV_LIST) return reversed(ev, reversed(ev, v, line), line);
        return jj_fail(ev, line, "list needs a list or a dict");
    case F_REVERSE: return reversed(ev, v, line);
    case F_REPLACE: return (s = str_of(ev, v)) ? replace(ev, s, a0, arg(av, kw, n, 1, NULL)) : NULL;
    case F_SAFE: return v;
    case F_INDENT: return (s = str_of(ev, v)) ? indent(ev, s, av, kw, n) : NULL;
    case F_SELECTATTR: case F_REJECTATTR: case F_MAP: return select_attr(ev, id, v, av, kw, n, line);
    case F_SELECT: case F_REJECT: return select_items(ev, id == F_SELECT, v, av, kw, n, line);
    case F_ABS:
        if (v->k == JV_INT) return jv_int(A, v->u.i < 0 ? -v->u.i : v->u.i);
        if (v->k == JV_FLOAT) return jv_float(A, v->u.f < 0 ? -v->u.f : v->u.f);
        return jj_fail(ev, line, "abs needs a number");
    default: return jj_fail(ev, line, "unknown filter");
    }
}

static jv *test(jj_eval *ev, int id, jv *v, jv *a, int line) {
    int num = v->k == JV_INT || v->k == JV_FLOAT;
    switch (id) {
    case T_DEFINED: return jv_bool(v->k != JV_UNDEF);
    case T_UNDEFINED: return jv_bool(v->k == JV_UNDEF);
    case T_NONE: return jv_bool(v->k == JV_NONE);
    case T_STRING: return jv_bool(v->k == JV_STR);
    case T_NUMBER: return jv_bool(num || v->k == JV_BOOL);
    case T_INTEGER: return jv_bool(v->k == JV_INT);
    case T_FLOAT: return jv_bool(v->k == JV_FLOAT);
    case T_BOOLEAN: return jv_bool(v->k == JV_BOOL);
    case T_MAPPING: return jv_bool(v->k == JV_DICT);
    case T_SEQUENCE: case T_ITERABLE: return jv_bool(v->k == JV_LIST || v->k == JV_STR || v->k == JV_DICT);
    case T_TRUE: return jv_bool(v->k == JV_BOOL && v->u.b);
    case T_FALSE: return jv_bool(v->k == JV_BOOL && !v->u.b);
    case T_ODD: case T_EVEN:
        if (v->k != JV_INT) return jj_fail(ev, line, "odd/even need an integer");
        return jv_bool((v->u.i % 2 != 0) == (id == T_ODD));
    }
    if (!a) return jj_fail(ev, line, "test '%s' needs an argument", test_names[id]);
    if (id == T_IN) {
        if (a->k == JV_LIST)
            for (int i = 0; i < a->u.l.n; i++)
                if (jv_equal(v, a->u.l.v[i])) return &jv_true;
        return &jv_false;
    }
    return jv_bool(jv_equal(v, a) == (id != T_NE));
}

static jv *global(jj_eval *ev, int id, jv **av, const char **kw, int n, int line) {
    jj_arena *A = jj_eval_arena(ev);
    jv *a0 = arg(av, kw, n, 0, NULL), *r;
    switch (id) {
    case G_RANGE: {
        long long lo = 0, hi, st = 1;
        jv *a1 = arg(av, kw, n, 1, NULL), *a2 = arg(av, kw, n, 2, NULL);
        if (!a0 || a0->k != JV_INT || (a1 && a1->k != JV_INT) || (a2 && a2->k != JV_INT))
            return jj_fail(ev, line, "range needs integers");
        hi = a0->u.i;
        if (a1) lo = a0->u.i, hi = a1->u.i;
        if (a2) st = a2->u.i;
        /* count first, in 64 bits without overflow (range(-1, 2**63-1) must
         * not wrap); element k is lo + k*st, which lies between lo and hi */
        long long span;
        if (st == 0 || __builtin_sub_overflow(hi, lo, &span) || span / st > 1000000)
            return jj_fail(ev, line, "range too long");
        long long count = span / st + (span % st != 0);
        r = jv_list(A);
        for (long long k = 0; r && k < count; k++)
            if (jv_list_push(A, r, jv_int(A, lo + k * st))) return NULL;
        return r;
    }
    case G_NAMESPACE: case G_DICT:
        if (!(r = a0 && a0->k == JV_DICT ? pairs(ev, a0, 0) : jv_list(A))) return NULL;
        jv *d = jv_dict(A);
        for (int i = 0; d && i < r->u.l.n; i++)
            if (jv_dict_set(A, d, r->u.l.v[i]->u.l.v[0], r->u.l.v[i]->u.l.v[1])) return NULL;
        for (int i = 0; d && i < n; i++)
            if (kw[i] && jv_dict_set(A, d, jv_cstr(A, kw[i]), av[i])) return NULL;
        if (d) d->ns = id == G_NAMESPACE;
        return d;
    case G_RAISE: {
        jv *m = a0 ? str_of(ev, a0) : NULL;
        return jj_fail(ev, line, "raise_exception: %s", m ? m->u.s.p : "");
    }
    case G_STRFTIME: {
        char buf[128];
        time_t t = time(NULL);
        struct tm tm;
        if (!a0 || a0->k != JV_STR) return jj_fail(ev, line, "strftime_now needs a format");
        localtime_r(&t, &tm);
        size_t k = strftime(buf, sizeof buf, a0->u.s.p, &tm);
        return jv_str(A, buf, k);
    }
    default: return jj_fail(ev, line, "unknown function");
    }
}

static jv *method(jj_eval *ev, int id, jv *self, jv **av, const char **kw, int n, int line) {
    jv *a0 = arg(av, kw, n, 0, NULL);
    switch (id) {
    case M_STARTSWITH: case M_ENDSWITH: {
        if (!a0 || a0->k != JV_STR) return jj_fail(ev, line, "%s needs a string", method_names[id]);
        size_t k = a0->u.s.n, m = self->u.s.n;
        const char *p = self->u.s.p + (id == M_ENDSWITH && m >= k ? m - k : 0);
        return jv_bool(m >= k && !memcmp(p, a0->u.s.p, k));
    }
    case M_STRIP: return strip(ev, self, a0, 1, 1);
    case M_LSTRIP: return strip(ev, self, a0, 1, 0);
    case M_RSTRIP: return strip(ev, self, a0, 0, 1);
    case M_SPLIT: return split(ev, self, a0);
    case M_REPLACE: return replace(ev, self, a0, arg(av, kw, n, 1, NULL));
    case M_UPPER: return recase(ev, self, 1);
    case M_LOWER: return recase(ev, self, 0);
    case M_TITLE: return recase(ev, self, 2);
    case M_CAPITALIZE: return recase(ev, self, 3);
    case M_JOIN: return a0 ? join(ev, a0, self, NULL) : jj_fail(ev, line, "join needs a list");
    case M_ITEMS: case M_KEYS: case M_VALUES:
        return pairs(ev, self, id == M_ITEMS ? 0 : id == M_KEYS ? 1 : 2);
    case M_GET: {
        jv *v = a0 && a0->k == JV_STR ? jv_dict_get(self, a0->u.s.p, a0->u.s.n) : NULL;
        jv *d = arg(av, kw, n, 1, "default");
        return v ? v : d ? d : &jv_none;
    }
    case M_APPEND:
        if (!a0 || jv_list_push(jj_eval_arena(ev), self, a0)) return jj_fail(ev, line, "append failed");
        return &jv_none;
    default: return jj_fail(ev, line, "unknown method");
    }
}

jv *jj_builtin_call(jj_eval *ev, int cls, int id, jv *self, jv **args, const char **kw, int n,
                    int line) {
    jv *r;
    switch (cls) {
    case JB_FILTER: r = filter(ev, id, self, args, kw, n, line); break;
    case JB_TEST: r = test(ev, id, self, arg(args, kw, n, 0, NULL), line); break;
    case JB_GLOBAL: r = global(ev, id, args, kw, n, line); break;
    default: r = method(ev, id, self, args, kw, n, line); break;
    }
    return r ? r : jj_fail(ev, line, "out of memory");
}
