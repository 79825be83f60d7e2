/* gram_close: how many bytes a matcher state is from a complete document —
 * what the budget-aware mask (gram_mask.h) needs to know so that an output
 * always fits a complete document into max_tokens.
 *
 * Every node knows its shortest complete value (minlen bytes, mindepth
 * frames; a fixpoint over the graph, so recursive schemas are priced too).
 * A stack's distance is then the sum, frame by frame from the top, of what
 * each frame still needs in its phase: the rest of a string, number,
 * literal or key, the colon and a shortest value, the required properties
 * not yet seen, the array items below minItems, the closing bracket. A set
 * is as close as its closest stack. Whitespace is never needed. The sum is
 * exact: the first byte of a shortest completion always leaves a state one
 * byte closer (tests/grammar/test_gram_close.c checks it against a
 * breadth-first search over bytes). */
#include <stddef.h>

#include "gram_internal.h"
#include "gram_match.h"

#define INF GRAM_CLOSE_INF

static int add(int a, int b) { return a >= INF || b >= INF || a + b >= INF ? INF : a + b; }
static int min2(int a, int b) { return a < b ? a : b; }
static int max2(int a, int b) { return a > b ? a : b; }
static int dec(int a) { return a >= INF ? INF : a - 1; }
static int times(int a, int m) { return a >= INF || (long long)a * m >= INF ? INF : a * m; }

/* ---- every node's shortest value ---- */

static void node_min(const gram *g, const gram_node *n, int *len, int *depth) {
    const gram_node *nd = g->nodes;
    *len = INF;
    *depth = INF;
    switch (n->kind) {
    case G_ANY:
    case G_NUM:
    case G_INT: *len = 1, *depth = 1; return;
    case G_STR: *len = 2, *depth = 1; return;
    case G_LIT:
        for (int i = 0; i < n->n_items; i++) *len = min2(*len, n->items[i].len);
        *depth = 1;
        return;
    case G_OBJ: {
        int l = 2, d = 1, k = 0;
        for (int i = 0; i < n->n_items; i++) {
            if (!(n->required >> i & 1)) continue;
            const gram_node *v = &nd[n->items[i].node];
            l = add(l, add(n->items[i].len + 3 + (k++ > 0), v->minlen)); /* ,"name": value */
            d = max2(d, add(v->mindepth, 1));
        }
        *len = l, *depth = d;
        return;
    }
    case G_ARR: { /* [v,v,...] */
        const gram_node *e = &nd[n->elem];
        *len = n->min ? add(1, times(add(e->minlen, 1), n->min)) : 2;
        *depth = n->min ? add(e->mindepth, 1) : 1;
        return;
    }
    case G_ANYOF:
        for (int i = 0; i < n->n_alts; i++) {
            *len = min2(*len, nd[n->alts[i]].minlen);
            *depth = min2(*depth, nd[n->alts[i]].mindepth);
        }
        return;
    case G_ROOT:
        *len = nd[g->root].minlen;
        *depth = add(nd[g->root].mindepth, 1);
        return;
    default: return;
    }
}

void gram_close_init(gram *g) {
    for (int i = 0; i < g->n_nodes; i++) g->nodes[i].minlen = g->nodes[i].mindepth = INF;
    /* each round settles at least one more node on every shortest chain */
    for (int round = 0, changed = 1; changed && round <= g->n_nodes; round++) {
        changed = 0;
        for (int i = 0; i < g->n_nodes; i++) {
            int l, d;
            node_min(g, &g->nodes[i], &l, &d);
            if (l < g->nodes[i].minlen || d < g->nodes[i].mindepth) {
                g->nodes[i].minlen = min2(l, g->nodes[i].minlen);
                g->nodes[i].mindepth = min2(d, g->nodes[i].mindepth);
                changed = 1;
            }
        }
    }
}

/* ---- what a frame still needs ---- */

/* A fresh value of node `node` as frame k of a stack. */
static int value(const gram *g, int node, int k) {
    const gram_node *n = &g->nodes[node];
    return k + n->mindepth <= GRAM_MAX_DEPTH ? n->minlen : INF;
}

/* The required properties not in `seen` (one ,"name":value each), then '}'. */
static int obj_tail(const gram *g, const gram_node *n, uint32_t seen, int k) {
    int c = 1;
    for (int i = 0; i < n->n_items; i++)
        if ((n->required & ~seen) >> i & 1)
            c = add(c, add(n->items[i].len + 4, value(g, n->items[i].node, k + 1)));
    return c;
}

/* After a ',': the shortest next member (a required one when some are
 * missing, else any unseen property or an additional one), then the rest. */
static int obj_comma(const gram *g, const gram_node *n, const gram_frame *f, int k) {
    if (n->required & ~f->seen) return dec(obj_tail(g, n, f->seen, k)); /* its ',' is written */
    int c = n->addl >= 0 ? add(3, value(g, n->addl, k + 1)) : INF;    /* "":value */
    for (int i = 0; i < n->n_items; i++)
        if (!(f->seen >> i & 1)) c = min2(c, add(n->items[i].len + 3, value(g, n->items[i].node, k + 1)));
    return add(c, 1);
}

/* Inside a key: finish the name of a property still matching, or (with
 * additional properties) close it as an additional one — one byte later
 * when the name so far is exactly a property's (closing would pick that
 * property, or be refused for a seen one). */
static int obj_key(const gram *g, const gram_node *n, const gram_frame *f, int k) {
    int c = INF, exact = 0;
    for (int i = 0; i < n->n_items && f->pos != KEY_FREE; i++) {
        if (!(f->cand >> i & 1) || n->items[i].len < f->pos) continue;
        exact |= n->items[i].len == f->pos;
        if (f->seen >> i & 1) continue; /* closing on it is refused */
        int rest = n->items[i].len - f->pos + 2; /* name bytes, '"', ':' */
        c = min2(c, add(rest, add(value(g, n->items[i].node, k + 1),
                                  obj_tail(g, n, f->seen | 1u << i, k))));
    }
    if (n->addl >= 0) /* UTF-8 bytes due, '"', ':' */
        c = min2(c, add((f->sub & 3) + 2 + exact,
                        add(value(g, n->addl, k + 1), obj_tail(g, n, f->seen, k))));
    return c;
}

static int obj_rest(const gram *g, const gram_node *n, const gram_frame *f, int k) {
    switch (f->ph) {
    case O_OPEN: return value(g, f->node, k);
    case O_FIRST: return n->required ? dec(obj_tail(g, n, 0, k)) : 1; /* no ',' before the first */
    case O_KEY: return obj_key(g, n, f, k);
    case O_COLON:
    case O_VAL: {
        int v = value(g, f->pos == KEY_ADDL ? n->addl : n->items[f->pos].node, k + 1);
        return add(f->ph == O_COLON, add(v, obj_tail(g, n, f->seen, k)));
    }
    case O_IN:
    case O_AFTER: return obj_tail(g, n, f->seen, k);
    default: return obj_comma(g, n, f, k);
    }
}

/* `more` items still owed below minItems, each ',' value, then ']'. */
static int arr_tail(const gram *g, const gram_node *n, int more, int k) {
    return more > 0 ? add(times(add(value(g, n->elem, k + 1), 1), more), 1) : 1;
}

static int arr_rest(const gram *g, const gram_node *n, const gram_frame *f, int k) {
    int seen = (int)f->seen;
    switch (f->ph) {
    case A_OPEN: return value(g, f->node, k);
    case A_FIRST: return n->min > 0 ? dec(arr_tail(g, n, n->min, k)) : 1;
    case A_IN: return arr_tail(g, n, n->min - seen - 1, k); /* the item under way counts */
    case A_AFTER: return arr_tail(g, n, n->min - seen, k);
    default: /* A_COMMA: an item must follow */
        return add(value(g, n->elem, k + 1), arr_tail(g, n, n->min - seen - 1, k));
    }
}

static int lit_rest(const gram_node *n, const gram_frame *f) {
    int c = INF;
    for (int i = 0; i < n->n_items; i++)
        if ((f->cand >> i & 1) && n->items[i].len >= f->pos) c = min2(c, n->items[i].len - f->pos);
    return c;
}

static int frame_rest(const gram *g, const gram_frame *f, int k) {
    const gram_node *n = &g->nodes[f->node];
    switch (n->kind) {
    case G_ROOT: return f->ph == R_START ? value(g, g->root, 1) : 0;
    case G_OBJ: return obj_rest(g, n, f, k);
    case G_ARR: return arr_rest(g, n, f, k);
    case G_STR:
        return f->ph == S_OPEN ? 2 : f->ph == S_IN ? (f->sub & 3) + 1 : f->ph == S_ESC ? 2 : 5 - f->pos;
    case G_NUM:
    case G_INT:
        return f->ph == N_ZERO || f->ph == N_INT || f->ph == N_FRAC || f->ph == N_EXP ? 0 : 1;
    case G_LIT: return lit_rest(n, f);
    default: return INF;
    }
}

int gram_set_close_len(const gram *g, const gram_set *s) {
    int best = INF, off = 0;
    for (int k = 0; k < s->n_stk; k++) {
        int c = 0;
        for (int i = s->len[k] - 1; i >= 0 && c < INF; i--) c = add(c, frame_rest(g, &s->fr[off + i], i));
        best = min2(best, c);
        off += s->len[k];
    }
    return best;
}

int gram_state_close_len(const gram_state *s) {
    return gram_set_close_len(s->g, &s->set);
}
