/* jinja_eval: runs the syntax tree over the render context. Scopes follow
 * Jinja: a for loop's body gets a fresh scope per iteration (a `set` there
 * does not leak out, which is why templates use namespace()); if bodies
 * share their enclosing scope. */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"
#include "pverr.h"

/* The longest string "s" * n may build. */
#define JJ_MAX_REPEAT (1 << 20)

typedef struct scope {
    jv *vars;
    struct scope *up;
} scope;

struct jj_eval {
    jj_arena a;
    jj_buf out;
    scope *sc;
    scope *top; /* the template's scope: what a macro's body sees besides its parameters */
    int depth;  /* macro calls in progress */
    int rc;
    int jump; /* J_BREAK / J_CONTINUE pending */
    long steps; /* statements and expressions run (JJ_MAX_STEPS) */
    char *err;
    size_t errlen;
};

enum { J_NONE, J_BREAK, J_CONTINUE };

jj_arena *jj_eval_arena(jj_eval *ev) { return &ev->a; }

jv *jj_fail(jj_eval *ev, int line, const char *fmt, ...) {
    if (ev->rc) return NULL;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ev->rc = pv_fail(ev->err, ev->errlen, PV_EINVAL, "jinja: line %d: %s", line, msg);
    return NULL;
}

static jv *oom(jj_eval *ev) {
    if (ev->rc) return NULL;
    if (ev->a.over) /* the render's own limit, not the machine's memory */
        return jj_fail(ev, 0, "the template built more than %zu MiB of values", JJ_MAX_ARENA >> 20);
    ev->rc = pv_fail(ev->err, ev->errlen, PV_ENOMEM, "jinja: out of memory");
    return NULL;
}

/* Why a buffer failed, in ev (jj_buf's flags). */
static jv *buf_fail(jj_eval *ev, const jj_buf *b) {
    if (b->deep)
        return jj_fail(ev, 0, "a value nested deeper than %d levels (or containing itself)",
                       JJ_MAX_NEST);
    if (b->big) return jj_fail(ev, 0, "a string longer than %zu MiB", JJ_MAX_OUT >> 20);
    return oom(ev);
}

jv *jj_take_buf(jj_eval *ev, jj_buf *b) {
    jv *r = b->oom ? NULL : jv_str(&ev->a, b->p ? b->p : "", b->n);
    if (!r) buf_fail(ev, b);
    free(b->p);
    *b = (jj_buf){0};
    return r;
}

/* One unit of work; false (and the error) once the render has done too much. */
static int step(jj_eval *ev, int line) {
    if (++ev->steps <= JJ_MAX_STEPS) return 1;
    jj_fail(ev, line, "the template ran more than %ld steps", JJ_MAX_STEPS);
    return 0;
}

static jv *lookup(jj_eval *ev, const char *name) {
    for (scope *s = ev->sc; s; s = s->up) {
        jv *v = jv_dict_get(s->vars, name, strlen(name));
        if (v) return v;
    }
    return &jv_undef;
}

static int assign(jj_eval *ev, const char *name, jv *v) {
    jv *k = jv_cstr(&ev->a, name);
    if (!k || jv_dict_set(&ev->a, ev->sc->vars, k, v)) return oom(ev), -1;
    return 0;
}

static jv *eval(jj_eval *ev, const jj_node *x);

static jv *attr(jj_eval *ev, jv *o, const char *name) {
    if (o->k == JV_DICT && !o->ns) {
        jv *m = jj_method(ev, o, name); /* Python's getattr first: d.items is the method */
        if (m) return m;
    }
    if (o->k == JV_DICT) {
        jv *v = jv_dict_get(o, name, strlen(name));
        return v ? v : &jv_undef;
    }
    jv *m = jj_method(ev, o, name);
    return m ? m : &jv_undef;
}

static long long norm_index(long long i, long long n) { return i < 0 ? i + n : i; }

static jv *index_of(jj_eval *ev, jv *o, jv *k, int line) {
    if (o->k == JV_DICT) {
        if (k->k != JV_STR) {
            for (int i = 0; i < o->u.d.n; i++)
                if (jv_equal(o->u.d.key[i], k)) return o->u.d.val[i];
            return &jv_undef;
        }
        jv *v = jv_dict_get(o, k->u.s.p, k->u.s.n);
        return v ? v : &jv_undef;
    }
    if ((o->k == JV_LIST || o->k == JV_STR) && (k->k == JV_INT || k->k == JV_BOOL)) {
        long long n = o->k == JV_LIST ? o->u.l.n : (long long)o->u.s.n;
        long long i = norm_index(k->k == JV_INT ? k->u.i : k->u.b, n);
        if (i < 0 || i >= n) return &jv_undef;
        return o->k == JV_LIST ? o->u.l.v[i] : jv_str(&ev->a, o->u.s.p + i, 1);
    }
    if (o->k == JV_STR && k->k == JV_STR) return attr(ev, o, k->u.s.p);
    if (o->k == JV_UNDEF || o->k == JV_NONE) return &jv_undef;
    return jj_fail(ev, line, "cannot index a %s with a %s", jv_kind_name(o), jv_kind_name(k));
}

/* Python slice semantics, step may be negative. */
static jv *slice(jj_eval *ev, const jj_node *x) {
    jv *o = eval(ev, x->a), *pt[3] = {NULL, NULL, NULL};
    const jj_node *part[3] = {x->b, x->c, x->d};
    if (!o) return NULL;
    long long v[3] = {0, 0, 1};
    for (int k = 0; k < 3; k++) {
        if (part[k] && !(pt[k] = eval(ev, part[k]))) return NULL;
        if (pt[k] && pt[k]->k != JV_NONE && pt[k]->k != JV_INT)
            return jj_fail(ev, x->line, "slice bounds must be integers");
        if (pt[k] && pt[k]->k == JV_INT) v[k] = pt[k]->u.i;
    }
    if (o->k != JV_LIST && o->k != JV_STR) return jj_fail(ev, x->line, "cannot slice a %s", jv_kind_name(o));
    long long n = o->k == JV_LIST ? o->u.l.n : (long long)o->u.s.n, st = v[2];
    if (st == 0) return jj_fail(ev, x->line, "slice step cannot be zero");
    int has_lo = pt[0] && pt[0]->k == JV_INT, has_hi = pt[1] && pt[1]->k == JV_INT;
    long long lo = has_lo ? norm_index(v[0], n) : (st > 0 ? 0 : n - 1);
    long long hi = has_hi ? norm_index(v[1], n) : (st > 0 ? n : -1);
    if (st > 0) {
        lo = lo < 0 ? 0 : lo > n ? n : lo;
        hi = hi < 0 ? 0 : hi > n ? n : hi;
    } else {
        lo = lo < -1 ? -1 : lo > n - 1 ? n - 1 : lo;
        hi = hi < -1 ? -1 : hi > n - 1 ? n - 1 : hi;
    }
    jv *r = o->k == JV_LIST ? jv_list(&ev->a) : NULL;
    jj_buf b = {0};
    for (long long i = lo; st > 0 ? i < hi : i > hi; i += st) {
        if (r) {
            if (jv_list_push(&ev->a, r, o->u.l.v[i])) return oom(ev);
        } else {
            jj_put(&b, o->u.s.p + i, 1);
        }
    }
    return r ? r : jj_take_buf(ev, &b);
}

static jv *call(jj_eval *ev, const jj_node *x, int cls, int id, jv *self) {
    jv *av[32];
    for (int i = 0; i < x->nargs; i++)
        if (!(av[i] = eval(ev, x->args[i]))) return NULL;
    return jj_builtin_call(ev, cls, id, self, av, x->kw, x->nargs, x->line);
}

static int exec_body(jj_eval *ev, const jj_node *x);

/* A macro call: its parameters bound in a scope over the template's, its
 * body rendered into a string of its own. */
static jv *call_macro(jj_eval *ev, const jj_node *x) {
    jv *f = lookup(ev, x->a->name);
    if (f->k != JV_FUNC || !f->u.fn.macro) return jj_fail(ev, x->line, "'%s' is not a macro", x->a->name);
    const jj_node *m = f->u.fn.macro;
    if (ev->depth >= 32) return jj_fail(ev, x->line, "macros nested too deep");
    scope s = {jv_dict(&ev->a), ev->top};
    if (!s.vars) return oom(ev);
    const jj_node *pos[32];
    int np = 0;
    for (int k = 0; k < x->nargs; k++)
        if (!x->kw[k]) pos[np++] = x->args[k];
    for (int i = 0; i < m->nargs; i++) { /* positional first, then by name, then the default */
        const jj_node *arg = i < np ? pos[i] : NULL;
        for (int k = 0; k < x->nargs && !arg; k++)
            if (x->kw[k] && !strcmp(x->kw[k], m->kw[i])) arg = x->args[k];
        if (!arg) arg = m->args[i];
        jv *v = arg ? eval(ev, arg) : &jv_undef, *k = jv_cstr(&ev->a, m->kw[i]);
        if (!v) return NULL;
        if (!k || jv_dict_set(&ev->a, s.vars, k, v)) return oom(ev);
    }
    jj_buf saved = ev->out;
    scope *up = ev->sc;
    ev->out = (jj_buf){0};
    ev->sc = &s;
    ev->depth++;
    exec_body(ev, m->b);
    ev->depth--;
    ev->sc = up;
    ev->jump = J_NONE;
    jv *r = NULL;
    if (ev->rc) free(ev->out.p);
    else r = jj_take_buf(ev, &ev->out);
    ev->out = saved;
    return r;
}

static jv *call_expr(jj_eval *ev, const jj_node *x) {
    if (x->a->k == E_NAME && x->op < 0) return call_macro(ev, x);
    if (x->a->k == E_NAME) return call(ev, x, JB_GLOBAL, x->op, NULL);
    jv *o = eval(ev, x->a->a);
    if (!o) return NULL;
    jv *m = jj_method(ev, o, x->a->name);
    if (!m) return jj_fail(ev, x->line, "a %s has no method '%s'", jv_kind_name(o), x->a->name);
    return call(ev, x, JB_METHOD, m->u.fn.id, o);
}

static int is_int(const jv *v) { return v->k == JV_INT || v->k == JV_BOOL; }
static long long ival(const jv *v) { return v->k == JV_INT ? v->u.i : v->u.b; }
static double fval(const jv *v) { return v->k == JV_FLOAT ? v->u.f : (double)ival(v); }

static jv *arith(jj_eval *ev, int op, jv *a, jv *b, int line) {
    jj_arena *A = &ev->a;
    int nums = (is_int(a) || a->k == JV_FLOAT) && (is_int(b) || b->k == JV_FLOAT);
    int ints = is_int(a) && is_int(b);
    if (op == OP_ADD && a->k == JV_STR && b->k == JV_STR) {
        jv *r = jj_alloc(A, sizeof *r);
        char *p = jj_alloc(A, a->u.s.n + b->u.s.n + 1);
        if (!r || !p) return oom(ev);
        r->k = JV_STR;
        r->u.s.n = a->u.s.n + b->u.s.n;
        memcpy(p, a->u.s.p, a->u.s.n);
        memcpy(p + a->u.s.n, b->u.s.p, b->u.s.n);
        r->u.s.p = p;
        return r;
    }
    if (op == OP_ADD && a->k == JV_LIST && b->k == JV_LIST) {
        jv *r = jv_list(A);
        for (int i = 0; r && i < a->u.l.n + b->u.l.n; i++)
            if (jv_list_push(A, r, i < a->u.l.n ? a->u.l.v[i] : b->u.l.v[i - a->u.l.n])) return oom(ev);
        return r ? r : oom(ev);
    }
    if (op == OP_MUL && a->k == JV_STR && is_int(b)) {
        /* a template has no use for megabytes of one string; a crafted one
         * must not make the server build it */
        if (ival(b) > 0 && (double)a->u.s.n * (double)ival(b) > (double)JJ_MAX_REPEAT)
            return jj_fail(ev, line, "string repeated past %d bytes", JJ_MAX_REPEAT);
        /* the byte bound does not bound the loop: "" * 10**11 is empty but
         * would still take 10**11 rounds */
        long long n = a->u.s.n ? ival(b) : 0;
        jj_buf s = {0};
        for (long long i = 0; i < n; i++) jj_put(&s, a->u.s.p, a->u.s.n);
        return jj_take_buf(ev, &s);
    }
    if (!nums) {
        static const char *const names[] = {"+", "-", "*", "/", "//", "%", "**"};
        return jj_fail(ev, line, "unsupported operand types for %s: %s and %s", names[op],
                       jv_kind_name(a), jv_kind_name(b));
    }
    long long x = ints ? ival(a) : 0, y = ints ? ival(b) : 0;
    double f = fval(a), g = fval(b);
    if ((op == OP_DIV || op == OP_FDIV || op == OP_MOD) && g == 0)
        return jj_fail(ev, line, "division by zero");
    /* Python's integers do not overflow; ours are 64-bit, so an overflow is
     * an error rather than undefined behaviour (no real template gets near) */
    long long r;
    if (ints && ((op == OP_ADD && __builtin_add_overflow(x, y, &r)) ||
                 (op == OP_SUB && __builtin_sub_overflow(x, y, &r)) ||
                 (op == OP_MUL && __builtin_mul_overflow(x, y, &r)) ||
                 ((op == OP_FDIV || op == OP_MOD) && x == LLONG_MIN && y == -1)))
        return jj_fail(ev, line, "integer overflow");
    if (ints && op == OP_POW && y >= 0 && fabs(pow((double)x, (double)y)) >= 9.2e18)
        return jj_fail(ev, line, "integer overflow");
    switch (op) {
    case OP_ADD: return ints ? jv_int(A, x + y) : jv_float(A, f + g);
    case OP_SUB: return ints ? jv_int(A, x - y) : jv_float(A, f - g);
    case OP_MUL: return ints ? jv_int(A, x * y) : jv_float(A, f * g);
    case OP_DIV: return jv_float(A, f / g);
    case OP_FDIV: /* Python's floor division and modulo, without (x % y + y) overflowing */
        return ints ? jv_int(A, x / y - (x % y != 0 && (x % y < 0) != (y < 0)))
                    : jv_float(A, floor(f / g));
    case OP_MOD:
        return ints ? jv_int(A, x % y + (x % y != 0 && (x % y < 0) != (y < 0) ? y : 0))
                    : jv_float(A, f - g * floor(f / g));
    default: return ints && y >= 0 ? jv_int(A, (long long)pow((double)x, (double)y)) : jv_float(A, pow(f, g));
    }
}

static jv *contains(jj_eval *ev, jv *needle, jv *hay, int line) {
    if (hay->k == JV_STR) {
        if (needle->k != JV_STR) return jj_fail(ev, line, "'in <string>' needs a string on the left");
        if (!needle->u.s.n) return &jv_true;
        for (size_t i = 0; i + needle->u.s.n <= hay->u.s.n; i++)
            if (!memcmp(hay->u.s.p + i, needle->u.s.p, needle->u.s.n)) return &jv_true;
        return &jv_false;
    }
    if (hay->k == JV_LIST || hay->k == JV_DICT) {
        int n = hay->k == JV_LIST ? hay->u.l.n : hay->u.d.n;
        for (int i = 0; i < n; i++)
            if (jv_equal(needle, hay->k == JV_LIST ? hay->u.l.v[i] : hay->u.d.key[i])) return &jv_true;
        return &jv_false;
    }
    if (hay->k == JV_UNDEF) return &jv_false;
    return jj_fail(ev, line, "'in' needs a string, list or dict on the right, got %s", jv_kind_name(hay));
}

static jv *binary(jj_eval *ev, const jj_node *x) {
    jv *a = eval(ev, x->a), *b = a ? eval(ev, x->b) : NULL;
    if (!b) return NULL;
    switch (x->op) {
    case OP_EQ: return jv_bool(jv_equal(a, b));
    case OP_NE: return jv_bool(!jv_equal(a, b));
    case OP_LT: case OP_LE: case OP_GT: case OP_GE: {
        int c = jv_compare(a, b);
        if (c == -2)
            return jj_fail(ev, x->line, "cannot compare %s with %s", jv_kind_name(a), jv_kind_name(b));
        int r = x->op == OP_LT ? c < 0 : x->op == OP_LE ? c <= 0 : x->op == OP_GT ? c > 0 : c >= 0;
        return jv_bool(r);
    }
    case OP_IN: return contains(ev, a, b, x->line);
    case OP_NOTIN: {
        jv *r = contains(ev, a, b, x->line);
        return r ? jv_bool(!r->u.b) : NULL;
    }
    case OP_CAT: {
        jj_buf s = {0};
        jv_to_str(a, &s);
        jv_to_str(b, &s);
        return jj_take_buf(ev, &s);
    }
    default: return arith(ev, x->op, a, b, x->line);
    }
}

static jv *collection(jj_eval *ev, const jj_node *x) {
    jv *r = x->k == E_LIST ? jv_list(&ev->a) : jv_dict(&ev->a);
    if (!r) return oom(ev);
    for (int i = 0; i < x->nargs; i += x->k == E_LIST ? 1 : 2) {
        jv *v = eval(ev, x->args[i]), *w = NULL;
        if (!v || (x->k == E_DICT && !(w = eval(ev, x->args[i + 1])))) return NULL;
        if (x->k == E_LIST ? jv_list_push(&ev->a, r, v) : jv_dict_set(&ev->a, r, v, w)) return oom(ev);
    }
    return r;
}

static jv *eval(jj_eval *ev, const jj_node *x) {
    jv *v;
    if (!step(ev, x->line)) return NULL;
    switch (x->k) {
    case E_LIT: return x->lit;
    case E_NAME: return lookup(ev, x->name);
    case E_ATTR: return (v = eval(ev, x->a)) ? attr(ev, v, x->name) : NULL;
    case E_INDEX: {
        jv *k;
        if (!(v = eval(ev, x->a)) || !(k = eval(ev, x->b))) return NULL;
        return index_of(ev, v, k, x->line);
    }
    case E_SLICE: return slice(ev, x);
    case E_CALL: return call_expr(ev, x);
    case E_FILTER: return (v = eval(ev, x->a)) ? call(ev, x, JB_FILTER, x->op, v) : NULL;
    case E_TEST:
        if (!(v = eval(ev, x->a)) || !(v = call(ev, x, JB_TEST, jj_builtin_id(JB_TEST, x->name), v)))
            return NULL;
        return jv_bool(jv_truthy(v) != x->op);
    case E_NEG:
        if (!(v = eval(ev, x->a))) return NULL;
        if (v->k == JV_FLOAT) return jv_float(&ev->a, -v->u.f);
        if (is_int(v)) return jv_int(&ev->a, -ival(v));
        return jj_fail(ev, x->line, "cannot negate a %s", jv_kind_name(v));
    case E_NOT: return (v = eval(ev, x->a)) ? jv_bool(!jv_truthy(v)) : NULL;
    case E_AND:
        if (!(v = eval(ev, x->a))) return NULL;
        return jv_truthy(v) ? eval(ev, x->b) : v;
    case E_OR:
        if (!(v = eval(ev, x->a))) return NULL;
        return jv_truthy(v) ? v : eval(ev, x->b);
    case E_COND:
        if (!(v = eval(ev, x->a))) return NULL;
        if (jv_truthy(v)) return eval(ev, x->b);
        return x->c ? eval(ev, x->c) : &jv_undef;
    case E_BIN: return binary(ev, x);
    case E_LIST: case E_DICT: return collection(ev, x);
    default: return jj_fail(ev, x->line, "not an expression");
    }
}

/* ---- statements ---- */

static int exec(jj_eval *ev, const jj_node *x);

static int exec_body(jj_eval *ev, const jj_node *x) {
    for (; x && !ev->rc && !ev->jump; x = x->next)
        if (exec(ev, x)) return -1;
    return ev->rc ? -1 : 0;
}

/* The items a for loop walks: a list's items, a dict's keys, a string's
 * bytes; undefined and none walk nothing. */
static jv *iterable(jj_eval *ev, jv *v, int line) {
    if (v->k == JV_LIST || v->k == JV_UNDEF || v->k == JV_NONE) return v;
    jv *l = jv_list(&ev->a);
    if (!l) return oom(ev);
    if (v->k == JV_DICT) {
        for (int i = 0; i < v->u.d.n; i++)
            if (jv_list_push(&ev->a, l, v->u.d.key[i])) return oom(ev);
    } else if (v->k == JV_STR) {
        for (size_t i = 0; i < v->u.s.n; i++)
            if (jv_list_push(&ev->a, l, jv_str(&ev->a, v->u.s.p + i, 1))) return oom(ev);
    } else {
        return jj_fail(ev, line, "cannot loop over a %s", jv_kind_name(v));
    }
    return l;
}

static int bind(jj_eval *ev, const jj_node *x, jv *item) {
    if (!x->name2) return assign(ev, x->name, item);
    if (item->k != JV_LIST || item->u.l.n != 2)
        return jj_fail(ev, x->line, "cannot unpack a %s into two loop variables", jv_kind_name(item)), -1;
    return assign(ev, x->name, item->u.l.v[0]) || assign(ev, x->name2, item->u.l.v[1]) ? -1 : 0;
}

static jv *loop_var(jj_eval *ev, int i, int n, jv **items) {
    static const char *const keys[] = {"index0", "index", "revindex0", "revindex", "length",
                                       "first", "last", "previtem", "nextitem"};
    jj_arena *A = &ev->a;
    jv *vals[] = {jv_int(A, i), jv_int(A, i + 1), jv_int(A, n - i - 1), jv_int(A, n - i),
                  jv_int(A, n), jv_bool(i == 0), jv_bool(i == n - 1),
                  i > 0 ? items[i - 1] : &jv_undef, i + 1 < n ? items[i + 1] : &jv_undef};
    jv *d = jv_dict(A);
    for (int k = 0; d && k < 9; k++)
        if (jv_dict_set(A, d, jv_cstr(A, keys[k]), vals[k])) return NULL;
    return d;
}

/* The items that pass the loop's `if` filter (evaluated with the loop
 * variable bound, before loop.* exists, as Jinja does). */
static jv *filtered(jj_eval *ev, const jj_node *x, jv *all) {
    jv *l = jv_list(&ev->a);
    if (!l) return oom(ev);
    for (int i = 0; i < all->u.l.n; i++) {
        scope s = {jv_dict(&ev->a), ev->sc};
        if (!s.vars) return oom(ev);
        ev->sc = &s;
        jv *c = bind(ev, x, all->u.l.v[i]) ? NULL : eval(ev, x->d);
        ev->sc = s.up;
        if (!c) return NULL;
        if (jv_truthy(c) && jv_list_push(&ev->a, l, all->u.l.v[i])) return oom(ev);
    }
    return l;
}

static int exec_for(jj_eval *ev, const jj_node *x) {
    jv *it = eval(ev, x->a);
    if (!it || !(it = iterable(ev, it, x->line))) return -1;
    if (it->k != JV_LIST || it->u.l.n == 0) return x->c ? exec_body(ev, x->c) : 0;
    if (x->d && !(it = filtered(ev, x, it))) return -1;
    int n = it->u.l.n;
    for (int i = 0; i < n; i++) {
        if (!step(ev, x->line)) return -1;
        scope s = {jv_dict(&ev->a), ev->sc};
        jv *loop = loop_var(ev, i, n, it->u.l.v);
        if (!s.vars || !loop) return oom(ev), -1;
        ev->sc = &s;
        int rc = bind(ev, x, it->u.l.v[i]) || assign(ev, "loop", loop) || exec_body(ev, x->b);
        ev->sc = s.up;
        if (rc) return -1;
        int j = ev->jump;
        ev->jump = J_NONE;
        if (j == J_BREAK) break;
    }
    if (n == 0 && x->c) return exec_body(ev, x->c);
    return 0;
}

static int exec_set(jj_eval *ev, const jj_node *x) {
    jv *v = eval(ev, x->a);
    if (!v) return -1;
    if (!x->name2) return assign(ev, x->name, v);
    jv *ns = lookup(ev, x->name);
    if (ns->k != JV_DICT || !ns->ns)
        return jj_fail(ev, x->line, "'%s' is not a namespace: cannot set '%s.%s'", x->name, x->name,
                       x->name2), -1;
    jv *k = jv_cstr(&ev->a, x->name2);
    if (!k || jv_dict_set(&ev->a, ns, k, v)) return oom(ev), -1;
    return 0;
}

static int exec(jj_eval *ev, const jj_node *x) {
    jv *v;
    if (!step(ev, x->line)) return -1;
    switch (x->k) {
    case N_TEXT: jj_put(&ev->out, x->lit->u.s.p, x->lit->u.s.n); return 0;
    case N_OUT:
        if (!(v = eval(ev, x->a))) return -1;
        jv_to_str(v, &ev->out);
        return 0;
    case N_IF:
        if (!(v = eval(ev, x->a))) return -1;
        return exec_body(ev, jv_truthy(v) ? x->b : x->c);
    case N_FOR: return exec_for(ev, x);
    case N_SET: return exec_set(ev, x);
    case N_MACRO: {
        jv *f = jj_alloc(&ev->a, sizeof *f);
        if (!f) return oom(ev), -1;
        f->k = JV_FUNC;
        f->u.fn.id = -1;
        f->u.fn.macro = x;
        return assign(ev, x->name, f);
    }
    case N_BREAK: ev->jump = J_BREAK; return 0;
    case N_CONTINUE: ev->jump = J_CONTINUE; return 0;
    default: return jj_fail(ev, x->line, "not a statement"), -1;
    }
}

int jj_render(const jj_template *t, const char *ctx_json, size_t len, char **out, char *err,
              size_t errlen) {
    if (!t || !out || (!ctx_json && len)) return PV_EINVAL;
    *out = NULL;
    jj_eval ev = {.err = err, .errlen = errlen, .a.limit = JJ_MAX_ARENA};
    jv *vars = ctx_json ? jv_from_json(&ev.a, ctx_json, len) : jv_dict(&ev.a);
    int rc;
    if (ev.a.oom) {
        rc = PV_ENOMEM;
    } else if (!vars || vars->k != JV_DICT) {
        rc = pv_fail(err, errlen, PV_EINVAL, "jinja: the render context is not a JSON object");
    } else {
        scope top = {vars, NULL};
        ev.sc = ev.top = &top;
        exec_body(&ev, t->body);
        if (!ev.rc && (ev.a.oom || ev.out.oom)) buf_fail(&ev, &ev.out);
        rc = ev.rc;
    }
    jj_arena_free(&ev.a);
    if (rc) {
        free(ev.out.p);
        return rc;
    }
    if (!ev.out.p) jj_put(&ev.out, "", 0);
    if (ev.out.oom) return PV_ENOMEM;
    *out = ev.out.p;
    return 0;
}
