/* jinja_internal: what the lexer, parser, values and evaluator of jinja.h
 * share. Everything is allocated in arenas: the template's (tokens, the
 * syntax tree, literal values) lives until jj_free; a render's (every value
 * made while rendering) is dropped at the end of jj_render, so values are
 * never freed one by one. */
#ifndef PIVOT_JINJA_INTERNAL_H
#define PIVOT_JINJA_INTERNAL_H

#include <stddef.h>

#include "jinja.h"

/* ---- arena ---- */
typedef struct jj_block jj_block;
typedef struct {
    jj_block *head;
    int oom;
    /* A render's arena has a limit (bytes; 0: none) so that a template
     * cannot take the server's memory; past it allocation fails as out of
     * memory does, with `over` set to say why. */
    size_t bytes, limit;
    int over;
} jj_arena;
void *jj_alloc(jj_arena *a, size_t n); /* zeroed; NULL (and a->oom) when out of memory */
char *jj_strndup(jj_arena *a, const char *s, size_t n);
void jj_arena_free(jj_arena *a);

/* ---- growable output buffer (malloc) ---- */
/* Bounds on what a template may build: no string over JJ_MAX_OUT bytes, no
 * value printed (str, tojson, ==) nested deeper than JJ_MAX_NEST (which also
 * ends a list that contains itself), at most JJ_MAX_ARENA bytes of values
 * and JJ_MAX_STEPS statements and expressions per render. Templates render
 * on the server's event loop for every chat request, so each of these is
 * what keeps one template (a GGUF's, or a crafted one) from hanging or
 * crashing it; real chat templates stay orders of magnitude below. */
#define JJ_MAX_OUT ((size_t)16 << 20)
#define JJ_MAX_NEST 64
#define JJ_MAX_ARENA ((size_t)256 << 20)
#define JJ_MAX_STEPS 10000000L
typedef struct {
    char *p;
    size_t n, cap;
    int oom;  /* set when anything went wrong; then `big`/`deep` say why */
    int big;  /* longer than JJ_MAX_OUT */
    int deep; /* a value nested deeper than JJ_MAX_NEST */
} jj_buf;
void jj_put(jj_buf *b, const char *s, size_t n);
void jj_puts(jj_buf *b, const char *s);

/* ---- values ---- */
typedef enum { JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT, JV_FUNC } jv_kind;
typedef struct jv jv;
struct jv {
    jv_kind k;
    int ns; /* a dict made by namespace(): attributes may be set */
    union {
        int b;
        long long i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        struct {
            jv **v;
            int n, cap;
        } l;
        struct {
            jv **key, **val;
            int n, cap;
        } d;
        struct {
            int id;   /* a method or global (jinja_builtin.c's ids) */
            jv *self; /* the receiver of a method, NULL for a global */
            const struct jj_node *macro; /* id -1: a {% macro %} */
        } fn;
    } u;
};

extern jv jv_undef, jv_none, jv_true, jv_false;
jv *jv_int(jj_arena *a, long long i);
jv *jv_float(jj_arena *a, double f);
jv *jv_str(jj_arena *a, const char *s, size_t n); /* copies s */
jv *jv_cstr(jj_arena *a, const char *s);
jv *jv_list(jj_arena *a);
jv *jv_dict(jj_arena *a);
jv *jv_bool(int b);
int jv_list_push(jj_arena *a, jv *l, jv *x);
jv *jv_dict_get(const jv *d, const char *k, size_t n); /* NULL when absent */
int jv_dict_set(jj_arena *a, jv *d, jv *k, jv *v);
int jv_truthy(const jv *v);
int jv_equal(const jv *a, const jv *b);
/* -1/0/1, or -2 when the two cannot be ordered (a type error). */
int jv_compare(const jv *a, const jv *b);
const char *jv_kind_name(const jv *v);
/* Python's str() of v (what {{ v }} prints). */
void jv_to_str(const jv *v, jj_buf *b);
/* json.dumps(v, ensure_ascii=False, indent=indent) (indent < 0: none). */
void jv_to_json(const jv *v, int indent, jj_buf *b);
/* Parses JSON text into values; NULL on a syntax error or out of memory. */
jv *jv_from_json(jj_arena *a, const char *s, size_t n);

/* ---- tokens ---- */
typedef enum {
    TK_TEXT, TK_VAR_BEGIN, TK_VAR_END, TK_BLOCK_BEGIN, TK_BLOCK_END,
    TK_NAME, TK_STR, TK_INT, TK_FLOAT, TK_OP, TK_EOF
} jj_tok_kind;
typedef struct {
    jj_tok_kind k;
    int line;
    const char *s; /* TEXT, NAME, STR (unescaped), OP: bytes (arena) */
    size_t n;
    long long i;
    double f;
} jj_tok;
/* Splits src into tokens (applying whitespace control); 0, PV_EFORMAT or
 * PV_ENOMEM with err filled. */
int jj_lex(jj_arena *a, const char *src, size_t len, jj_tok **toks, int *n, char *err,
           size_t errlen);

/* ---- syntax tree ---- */
typedef enum {
    /* statements */
    N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_BREAK, N_CONTINUE, N_MACRO,
    /* expressions */
    E_LIT, E_NAME, E_ATTR, E_INDEX, E_SLICE, E_CALL, E_FILTER, E_TEST, E_NEG, E_NOT,
    E_AND, E_OR, E_BIN, E_COND, E_LIST, E_DICT
} jj_node_kind;

/* E_BIN operators */
enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FDIV, OP_MOD, OP_POW, OP_CAT, OP_EQ, OP_NE, OP_LT,
       OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN };

typedef struct jj_node jj_node;
struct jj_node {
    jj_node_kind k;
    int line;
    int op;           /* E_BIN operator; E_TEST: 1 when negated; builtin id for calls (-1: a macro) */
    const char *name; /* E_NAME, E_ATTR, E_FILTER, E_TEST; N_SET/N_FOR target */
    const char *name2; /* N_SET: attribute of a namespace; N_FOR: second target */
    jj_node *a, *b, *c, *d; /* children, see the parser */
    jj_node **args;         /* call/filter/test arguments, list items, dict keys/values;
                             * N_MACRO: parameter defaults (NULL: none) */
    const char **kw;   /* keyword of each argument, NULL for positional; N_MACRO: parameter names */
    int nargs;
    jv *lit;           /* E_LIT, N_TEXT */
    jj_node *next;          /* the next statement of a body */
};

struct jj_template {
    jj_arena arena;
    jj_node *body;
    const char **names; /* top-level variables read (jj_uses) */
    int n_names;
};

/* Parses tokens into t->body. 0, PV_EFORMAT or PV_EUNSUPPORTED with err. */
int jj_parse(jj_template *t, const jj_tok *toks, int n, char *err, size_t errlen);

/* ---- builtins (filters, tests, methods, globals) ---- */
typedef struct jj_eval jj_eval;
/* The id of a builtin of the given class, or -1 when unknown. */
enum { JB_FILTER, JB_TEST, JB_GLOBAL, JB_METHOD };
int jj_builtin_id(int cls, const char *name);
/* Runs builtin `id` of class cls on self (NULL for globals) with arguments
 * args[0..n) (kw[i] their keywords or NULL). NULL after an error (ev's). */
jv *jj_builtin_call(jj_eval *ev, int cls, int id, jv *self, jv **args, const char **kw, int n,
                    int line);
/* The evaluator's services for builtins. */
jj_arena *jj_eval_arena(jj_eval *ev);
jv *jj_fail(jj_eval *ev, int line, const char *fmt, ...);
/* The text of b as a string value; frees b's memory either way. NULL after
 * recording why (out of memory, too long, nested too deep) in ev. */
jv *jj_take_buf(jj_eval *ev, jj_buf *b);
/* Method `name` of v bound to it, or NULL when v has none of that name. */
jv *jj_method(jj_eval *ev, jv *v, const char *name);

#endif
