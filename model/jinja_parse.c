/* jinja_parse: tokens -> syntax tree, by recursive descent with Jinja2's
 * precedence (lowest first): `a if c else b`, or, and, not, comparisons and
 * `in`, + -, ~, * / // %, **, unary - +, then primary with postfix (. [] ())
 * and filters/tests (| and `is`). Names of filters, tests, functions and
 * methods are checked here, so an unsupported one fails at load time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"
#include "pverr.h"

#define MAX_MACROS 64

typedef struct {
    jj_template *t;
    const jj_tok *tk;
    int i, n;
    int rc;
    char *err;
    size_t errlen;
    /* calls of names that are no builtin: each must be a macro defined
     * somewhere in the template (checked at the end) */
    const char *calls[MAX_MACROS];
    int call_line[MAX_MACROS], n_calls;
    const char *macros[MAX_MACROS];
    int n_macros;
    int depth; /* nesting of expressions and blocks: a crafted file must not exhaust the stack */
} P;

#define MAX_DEPTH 200

static const jj_tok *cur(P *p) { return &p->tk[p->i]; }

static jj_node *fail(P *p, int rc, const char *fmt, const char *what) {
    if (!p->rc) {
        char msg[160];
        snprintf(msg, sizeof msg, fmt, what);
        p->rc = pv_fail(p->err, p->errlen, rc, "jinja: line %d: %s", cur(p)->line, msg);
    }
    return NULL;
}

static int is_op(P *p, const char *op) {
    return cur(p)->k == TK_OP && !strcmp(cur(p)->s, op);
}
static int is_name(P *p, const char *nm) {
    return cur(p)->k == TK_NAME && !strcmp(cur(p)->s, nm);
}
static int accept_op(P *p, const char *op) {
    if (!is_op(p, op)) return 0;
    p->i++;
    return 1;
}
static int accept_name(P *p, const char *nm) {
    if (!is_name(p, nm)) return 0;
    p->i++;
    return 1;
}
static int expect_op(P *p, const char *op) {
    if (accept_op(p, op)) return 1;
    fail(p, PV_EFORMAT, "expected '%s'", op);
    return 0;
}
static int expect(P *p, jj_tok_kind k, const char *what) {
    if (cur(p)->k == k) {
        p->i++;
        return 1;
    }
    fail(p, PV_EFORMAT, "expected %s", what);
    return 0;
}

static jj_node *node(P *p, jj_node_kind k) {
    jj_node *x = jj_alloc(&p->t->arena, sizeof *x);
    if (!x) return fail(p, PV_ENOMEM, "%s", "out of memory");
    x->k = k;
    x->line = cur(p)->line;
    return x;
}

static jj_node *bin(P *p, jj_node_kind k, int op, jj_node *a, jj_node *b) {
    if (!a || !b) return NULL;
    jj_node *x = node(p, k);
    if (x) x->op = op, x->a = a, x->b = b;
    return x;
}

static void note_name(P *p, const char *nm) {
    jj_template *t = p->t;
    for (int i = 0; i < t->n_names; i++)
        if (!strcmp(t->names[i], nm)) return;
    const char **nn = jj_alloc(&t->arena, sizeof *nn * (size_t)(t->n_names + 1));
    if (!nn) return;
    if (t->n_names) memcpy(nn, t->names, sizeof *nn * (size_t)t->n_names);
    nn[t->n_names++] = nm;
    t->names = nn;
}

static jj_node *expr(P *p);
static jj_node *or_expr(P *p);
static jj_node *unary(P *p, int with_filter);

/* (a, k=b, ...) after the '(' */
static int args(P *p, jj_node *x) {
    jj_node *av[32];
    const char *kw[32];
    int n = 0;
    while (!accept_op(p, ")")) {
        if (n && !expect_op(p, ",")) return -1;
        if (accept_op(p, ")")) break; /* a trailing comma */
        if (n == 32) return fail(p, PV_EUNSUPPORTED, "%s", "more than 32 arguments"), -1;
        kw[n] = NULL;
        if (cur(p)->k == TK_NAME && p->i + 1 < p->n && p->tk[p->i + 1].k == TK_OP &&
            !strcmp(p->tk[p->i + 1].s, "=")) {
            kw[n] = cur(p)->s;
            p->i += 2;
        }
        if (!(av[n++] = expr(p))) return -1;
    }
    x->nargs = n;
    x->args = jj_alloc(&p->t->arena, sizeof *x->args * (size_t)(n + 1));
    x->kw = jj_alloc(&p->t->arena, sizeof *x->kw * (size_t)(n + 1));
    if (!x->args || !x->kw) return fail(p, PV_ENOMEM, "%s", "out of memory"), -1;
    memcpy(x->args, av, sizeof *av * (size_t)n);
    memcpy(x->kw, kw, sizeof *kw * (size_t)n);
    return 0;
}

/* [a, b] / (a, b) / {k: v}: items in args (dicts: key, value, key, ...) */
static jj_node *collection(P *p, jj_node_kind k, const char *close, jj_node *first) {
    jj_node *x = node(p, k), *items[256];
    int n = 0;
    if (!x) return NULL;
    if (first) items[n++] = first;
    while (!accept_op(p, close)) {
        if (n && !expect_op(p, ",")) return NULL;
        if (accept_op(p, close)) break;
        if (n >= 254) return fail(p, PV_EUNSUPPORTED, "%s", "a literal with over 127 items");
        if (!(items[n++] = expr(p))) return NULL;
        if (k == E_DICT && (!expect_op(p, ":") || !(items[n++] = expr(p)))) return NULL;
    }
    x->nargs = n;
    x->args = jj_alloc(&p->t->arena, sizeof *x->args * (size_t)(n + 1));
    if (!x->args) return fail(p, PV_ENOMEM, "%s", "out of memory");
    memcpy(x->args, items, sizeof *items * (size_t)n);
    return x;
}

static jj_node *literal(P *p, jv *v) {
    jj_node *x = node(p, E_LIT);
    if (x) x->lit = v;
    p->i++;
    return v ? x : fail(p, PV_ENOMEM, "%s", "out of memory");
}

static jj_node *primary(P *p) {
    const jj_tok *t = cur(p);
    jj_arena *a = &p->t->arena;
    if (t->k == TK_NAME) {
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True")) return literal(p, &jv_true);
        if (!strcmp(t->s, "false") || !strcmp(t->s, "False")) return literal(p, &jv_false);
        if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) return literal(p, &jv_none);
        jj_node *x = node(p, E_NAME);
        if (x) x->name = t->s;
        note_name(p, t->s);
        p->i++;
        return x;
    }
    if (t->k == TK_STR) { /* adjacent literals concatenate */
        jj_buf b = {0};
        while (cur(p)->k == TK_STR) jj_put(&b, cur(p)->s, cur(p)->n), p->i++;
        p->i--;
        jj_node *x = literal(p, b.oom ? NULL : jv_str(a, b.p ? b.p : "", b.n));
        free(b.p);
        return x;
    }
    if (t->k == TK_INT) return literal(p, jv_int(a, t->i));
    if (t->k == TK_FLOAT) return literal(p, jv_float(a, t->f));
    if (accept_op(p, "(")) {
        jj_node *x = expr(p);
        if (x && accept_op(p, ",")) return collection(p, E_LIST, ")", x); /* a tuple */
        return x && expect_op(p, ")") ? x : NULL;
    }
    if (accept_op(p, "[")) return collection(p, E_LIST, "]", NULL);
    if (accept_op(p, "{")) return collection(p, E_DICT, "}", NULL);
    return fail(p, PV_EFORMAT, "unexpected %s", t->k == TK_OP ? t->s : "end of tag");
}

static jj_node *subscript(P *p, jj_node *obj) {
    jj_node *part[3] = {NULL, NULL, NULL};
    int k = 0;
    for (;;) {
        if (!is_op(p, ":") && !is_op(p, "]") && !(part[k] = expr(p))) return NULL;
        if (accept_op(p, "]")) break;
        if (!expect_op(p, ":")) return NULL;
        if (++k > 2) return fail(p, PV_EFORMAT, "%s", "bad slice");
    }
    jj_node *x = node(p, k ? E_SLICE : E_INDEX);
    if (!x) return NULL;
    x->a = obj, x->b = part[0], x->c = part[1], x->d = part[2];
    if (!k && !part[0]) return fail(p, PV_EFORMAT, "%s", "empty subscript");
    return x;
}

static jj_node *call(P *p, jj_node *callee) {
    jj_node *x = node(p, E_CALL);
    if (!x) return NULL;
    x->a = callee;
    if (callee->k == E_NAME) {
        if ((x->op = jj_builtin_id(JB_GLOBAL, callee->name)) < 0) {
            if (p->n_calls == MAX_MACROS) return fail(p, PV_EUNSUPPORTED, "%s", "over 64 macro calls");
            p->call_line[p->n_calls] = x->line;
            p->calls[p->n_calls++] = callee->name;
        }
    } else if (callee->k == E_ATTR) {
        if (jj_builtin_id(JB_METHOD, callee->name) < 0)
            return fail(p, PV_EUNSUPPORTED, "unsupported method '%s'", callee->name);
    } else {
        return fail(p, PV_EUNSUPPORTED, "%s", "a call of a computed value");
    }
    return args(p, x) ? NULL : x;
}

static jj_node *postfix(P *p, jj_node *x) {
    while (x) {
        if (accept_op(p, ".")) {
            jj_node *y = node(p, E_ATTR);
            if (!y) return NULL;
            if (cur(p)->k == TK_INT) { /* x.0 is x[0] */
                y->k = E_INDEX;
                y->b = literal(p, jv_int(&p->t->arena, cur(p)->i));
            } else {
                if (cur(p)->k != TK_NAME) return fail(p, PV_EFORMAT, "%s", "expected a name after '.'");
                y->name = cur(p)->s;
                p->i++;
            }
            y->a = x;
            x = y;
        } else if (accept_op(p, "[")) {
            x = subscript(p, x);
        } else if (accept_op(p, "(")) {
            x = call(p, x);
        } else {
            break;
        }
    }
    return x;
}

/* `is [not] name [arg | (args)]` */
static jj_node *test(P *p, jj_node *val) {
    jj_node *x = node(p, E_TEST);
    if (!x) return NULL;
    x->a = val;
    x->op = accept_name(p, "not");
    if (cur(p)->k != TK_NAME) return fail(p, PV_EFORMAT, "%s", "expected a test name after 'is'");
    x->name = cur(p)->s;
    p->i++;
    if (jj_builtin_id(JB_TEST, x->name) < 0)
        return fail(p, PV_EUNSUPPORTED, "unsupported test '%s'", x->name);
    if (accept_op(p, "(")) return args(p, x) ? NULL : x;
    const jj_tok *t = cur(p);
    int arg = t->k == TK_STR || t->k == TK_INT || t->k == TK_FLOAT ||
              (t->k == TK_NAME && strcmp(t->s, "and") && strcmp(t->s, "or") &&
               strcmp(t->s, "else") && strcmp(t->s, "if") && strcmp(t->s, "in") &&
               strcmp(t->s, "not") && strcmp(t->s, "is"));
    if (arg) {
        x->args = jj_alloc(&p->t->arena, sizeof *x->args);
        x->kw = jj_alloc(&p->t->arena, sizeof *x->kw);
        if (!x->args || !x->kw || !(x->args[0] = postfix(p, primary(p)))) return NULL;
        x->nargs = 1;
    }
    return x;
}

static jj_node *filters(P *p, jj_node *x) {
    while (x) {
        if (accept_op(p, "|")) {
            jj_node *f = node(p, E_FILTER);
            if (!f) return NULL;
            if (cur(p)->k != TK_NAME) return fail(p, PV_EFORMAT, "%s", "expected a filter name after '|'");
            f->name = cur(p)->s;
            p->i++;
            if ((f->op = jj_builtin_id(JB_FILTER, f->name)) < 0)
                return fail(p, PV_EUNSUPPORTED, "unsupported filter '%s'", f->name);
            f->a = x;
            if (accept_op(p, "(") && args(p, f)) return NULL;
            x = f;
        } else if (accept_name(p, "is")) {
            x = test(p, x);
        } else {
            break;
        }
    }
    return x;
}

static jj_node *unary(P *p, int with_filter) {
    jj_node *x;
    if ((is_op(p, "-") || is_op(p, "+")) && p->depth >= MAX_DEPTH)
        return fail(p, PV_EUNSUPPORTED, "%s", "nesting deeper than 200");
    if (accept_op(p, "-")) {
        p->depth++;
        if ((x = node(p, E_NEG))) x->a = unary(p, 0);
        p->depth--;
        if (x && !x->a) return NULL;
    } else if (accept_op(p, "+")) {
        p->depth++;
        x = unary(p, 0);
        p->depth--;
    } else {
        x = primary(p);
    }
    x = postfix(p, x);
    return with_filter ? filters(p, x) : x;
}

static jj_node *power(P *p) {
    jj_node *x = unary(p, 1);
    while (x && accept_op(p, "**")) x = bin(p, E_BIN, OP_POW, x, unary(p, 1));
    return x;
}

static jj_node *math2(P *p) {
    jj_node *x = power(p);
    for (;;) {
        int op = is_op(p, "*") ? OP_MUL : is_op(p, "/") ? OP_DIV : is_op(p, "//") ? OP_FDIV
               : is_op(p, "%") ? OP_MOD : -1;
        if (!x || op < 0) return x;
        p->i++;
        x = bin(p, E_BIN, op, x, power(p));
    }
}

static jj_node *concat(P *p) {
    jj_node *x = math2(p);
    while (x && accept_op(p, "~")) x = bin(p, E_BIN, OP_CAT, x, math2(p));
    return x;
}

static jj_node *math1(P *p) {
    jj_node *x = concat(p);
    for (;;) {
        int op = is_op(p, "+") ? OP_ADD : is_op(p, "-") ? OP_SUB : -1;
        if (!x || op < 0) return x;
        p->i++;
        x = bin(p, E_BIN, op, x, concat(p));
    }
}

static jj_node *compare(P *p) {
    static const char *const cmp[] = {"==", "!=", "<", "<=", ">", ">="};
    jj_node *x = math1(p);
    while (x) {
        int op = -1;
        for (int k = 0; k < 6 && op < 0; k++)
            if (is_op(p, cmp[k])) op = OP_EQ + k;
        if (op >= 0) {
            p->i++;
        } else if (accept_name(p, "in")) {
            op = OP_IN;
        } else if (is_name(p, "not") && p->i + 1 < p->n && p->tk[p->i + 1].k == TK_NAME &&
                   !strcmp(p->tk[p->i + 1].s, "in")) {
            p->i += 2;
            op = OP_NOTIN;
        } else {
            return x;
        }
        x = bin(p, E_BIN, op, x, math1(p));
    }
    return x;
}

static jj_node *not_expr(P *p) {
    if (!accept_name(p, "not")) return compare(p);
    jj_node *x = node(p, E_NOT);
    if (p->depth >= MAX_DEPTH) return fail(p, PV_EUNSUPPORTED, "%s", "nesting deeper than 200");
    p->depth++;
    if (x) x->a = not_expr(p);
    p->depth--;
    return x && x->a ? x : NULL;
}

static jj_node *and_expr(P *p) {
    jj_node *x = not_expr(p);
    while (x && accept_name(p, "and")) x = bin(p, E_AND, 0, x, not_expr(p));
    return x;
}

static jj_node *or_expr(P *p) {
    jj_node *x = and_expr(p);
    while (x && accept_name(p, "or")) x = bin(p, E_OR, 0, x, and_expr(p));
    return x;
}

static jj_node *expr_(P *p);

static jj_node *expr(P *p) {
    if (p->depth >= MAX_DEPTH) return fail(p, PV_EUNSUPPORTED, "%s", "nesting deeper than 200");
    p->depth++;
    jj_node *x = expr_(p);
    p->depth--;
    return x;
}

static jj_node *expr_(P *p) {
    jj_node *x = or_expr(p);
    while (x && accept_name(p, "if")) {
        jj_node *c = node(p, E_COND);
        if (!c || !(c->a = or_expr(p))) return NULL;
        c->b = x;
        if (accept_name(p, "else") && !(c->c = expr(p))) return NULL;
        x = c;
    }
    return x;
}

/* ---- statements ---- */

static jj_node *body(P *p, const char *const *stops, const char **which);

static int end_tag(P *p) { return expect(p, TK_BLOCK_END, "'%}'"); }

/* After `if` or `elif`: cond %} body, then elif (a nested N_IF in the else
 * branch), else or endif. */
static jj_node *if_rest(P *p) {
    static const char *const stops[] = {"elif", "else", "endif", NULL};
    jj_node *x = node(p, N_IF);
    const char *w = NULL;
    if (!x || !(x->a = expr(p)) || !end_tag(p)) return NULL;
    x->b = body(p, stops, &w);
    if (p->rc) return NULL;
    if (!strcmp(w, "elif")) return (x->c = if_rest(p)) ? x : NULL;
    if (!strcmp(w, "else")) {
        static const char *const end[] = {"endif", NULL};
        if (!end_tag(p)) return NULL;
        x->c = body(p, end, &w);
        if (p->rc) return NULL;
    }
    return end_tag(p) ? x : NULL;
}

static jj_node *for_stmt(P *p) {
    static const char *const stops[] = {"else", "endfor", NULL};
    jj_node *x = node(p, N_FOR);
    const char *w = NULL;
    if (!x) return NULL;
    if (cur(p)->k != TK_NAME) return fail(p, PV_EFORMAT, "%s", "expected a loop variable");
    x->name = cur(p)->s;
    p->i++;
    if (accept_op(p, ",")) {
        if (cur(p)->k != TK_NAME) return fail(p, PV_EFORMAT, "%s", "expected a loop variable");
        x->name2 = cur(p)->s;
        p->i++;
    }
    if (!accept_name(p, "in")) return fail(p, PV_EFORMAT, "%s", "expected 'in'");
    if (!(x->a = or_expr(p))) return NULL;
    if (accept_name(p, "if") && !(x->d = or_expr(p))) return NULL;
    if (is_name(p, "recursive")) return fail(p, PV_EUNSUPPORTED, "%s", "unsupported 'recursive' loop");
    if (!end_tag(p)) return NULL;
    x->b = body(p, stops, &w);
    if (p->rc) return NULL;
    if (!strcmp(w, "else")) {
        static const char *const end[] = {"endfor", NULL};
        if (!end_tag(p)) return NULL;
        x->c = body(p, end, &w);
        if (p->rc) return NULL;
    }
    return end_tag(p) ? x : NULL;
}

static jj_node *set_stmt(P *p) {
    jj_node *x = node(p, N_SET);
    if (!x) return NULL;
    if (cur(p)->k != TK_NAME) return fail(p, PV_EFORMAT, "%s", "expected a name after 'set'");
    x->name = cur(p)->s;
    p->i++;
    if (accept_op(p, ".")) {
        if (cur(p)->k != TK_NAME) return fail(p, PV_EFORMAT, "%s", "expected an attribute name");
        x->name2 = cur(p)->s;
        p->i++;
        note_name(p, x->name);
    }
    if (cur(p)->k == TK_BLOCK_END)
        return fail(p, PV_EUNSUPPORTED, "%s", "unsupported statement '{% set %}...{% endset %}'");
    if (is_op(p, ",")) return fail(p, PV_EUNSUPPORTED, "%s", "unsupported tuple assignment in 'set'");
    if (!expect_op(p, "=") || !(x->a = expr(p))) return NULL;
    return end_tag(p) ? x : NULL;
}

/* macro name(a, b=default) %} body {% endmacro */
static jj_node *macro_stmt(P *p) {
    static const char *const end[] = {"endmacro", NULL};
    jj_node *x = node(p, N_MACRO);
    const char *w = NULL;
    if (!x) return NULL;
    if (cur(p)->k != TK_NAME) return fail(p, PV_EFORMAT, "%s", "expected a macro name");
    x->name = cur(p)->s;
    p->i++;
    if (!expect_op(p, "(") || args(p, x)) return NULL;
    for (int i = 0; i < x->nargs; i++) { /* parameters: names, or name=default */
        if (x->kw[i]) continue;
        if (x->args[i]->k != E_NAME) return fail(p, PV_EFORMAT, "%s", "macro parameters must be names");
        x->kw[i] = x->args[i]->name;
        x->args[i] = NULL;
    }
    if (p->n_macros == MAX_MACROS) return fail(p, PV_EUNSUPPORTED, "%s", "over 64 macros");
    p->macros[p->n_macros++] = x->name;
    if (!end_tag(p)) return NULL;
    x->b = body(p, end, &w);
    return p->rc || !end_tag(p) ? NULL : x;
}

static jj_node *statement_(P *p, const char *kw);

static jj_node *statement(P *p, const char *kw) {
    if (p->depth >= MAX_DEPTH) return fail(p, PV_EUNSUPPORTED, "%s", "nesting deeper than 200");
    p->depth++;
    jj_node *x = statement_(p, kw);
    p->depth--;
    return x;
}

static jj_node *statement_(P *p, const char *kw) {
    jj_node *x;
    if (!strcmp(kw, "macro")) return macro_stmt(p);
    if (!strcmp(kw, "if")) return if_rest(p);
    if (!strcmp(kw, "for")) return for_stmt(p);
    if (!strcmp(kw, "set")) return set_stmt(p);
    if (!strcmp(kw, "break") || !strcmp(kw, "continue")) {
        x = node(p, kw[0] == 'b' ? N_BREAK : N_CONTINUE);
        return x && end_tag(p) ? x : NULL;
    }
    p->i--; /* report the line of the keyword */
    return fail(p, PV_EUNSUPPORTED, "unsupported statement '{%% %s %%}'", kw);
}

static int is_stop(const char *const *stops, const char *kw) {
    for (int i = 0; stops && stops[i]; i++)
        if (!strcmp(stops[i], kw)) return 1;
    return 0;
}

/* Statements up to one of the stop keywords (consumed; *which names it)
 * or the end of the template when stops is NULL. */
static jj_node *body(P *p, const char *const *stops, const char **which) {
    jj_node *head = NULL, **tail = &head;
    while (!p->rc) {
        const jj_tok *t = cur(p);
        jj_node *x = NULL;
        if (t->k == TK_EOF) {
            int last = 0;
            while (stops && stops[last + 1]) last++;
            if (stops) fail(p, PV_EFORMAT, "missing '{%% %s %%}'", stops[last]);
            break;
        }
        p->i++;
        if (t->k == TK_TEXT) {
            if ((x = node(p, N_TEXT)) && !(x->lit = jv_str(&p->t->arena, t->s, t->n)))
                fail(p, PV_ENOMEM, "%s", "out of memory");
        } else if (t->k == TK_VAR_BEGIN) {
            if ((x = node(p, N_OUT)) && (x->a = expr(p))) expect(p, TK_VAR_END, "'}}'");
        } else if (t->k == TK_BLOCK_BEGIN) {
            if (cur(p)->k != TK_NAME) {
                fail(p, PV_EFORMAT, "%s", "expected a statement name after '{%'");
                break;
            }
            const char *kw = cur(p)->s;
            p->i++;
            if (is_stop(stops, kw)) {
                *which = kw;
                break;
            }
            x = statement(p, kw);
        } else {
            fail(p, PV_EFORMAT, "%s", "unexpected token");
        }
        if (p->rc) break;
        *tail = x;
        tail = &x->next;
    }
    return p->rc ? NULL : head;
}

int jj_parse(jj_template *t, const jj_tok *toks, int n, char *err, size_t errlen) {
    P p = {.t = t, .tk = toks, .n = n, .err = err, .errlen = errlen};
    t->body = body(&p, NULL, NULL);
    for (int i = 0; !p.rc && i < p.n_calls; i++) {
        int k = 0;
        while (k < p.n_macros && strcmp(p.macros[k], p.calls[i])) k++;
        if (k == p.n_macros)
            p.rc = pv_fail(err, errlen, PV_EUNSUPPORTED, "jinja: line %d: unsupported function '%s'",
                           p.call_line[i], p.calls[i]);
    }
    return p.rc;
}
