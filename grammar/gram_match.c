/* gram_match: the byte automaton. Each stack frame is a node of the gram
 * with a phase; a byte is offered to the top frame, which consumes it
 * (R_OK), consumes it and ends (R_DONE: closing quote, bracket, last byte
 * of a literal), asks for a child value to start with it (R_PUSH), or ends
 * without it (R_END: a number or literal that the byte cannot continue; the
 * byte goes to the parent). anyOf forks the stack, one copy per
 * alternative; copies that die are dropped, identical ones merged.
 *
 * The state holds no counter that grows with the text inside a string or a
 * free-form key, so the states of a long string are all the same state and
 * gram_mask's cache hits. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "gram_internal.h"
#include "gram_match.h"
#include "pverr.h"

enum { R_REJ, R_OK, R_DONE, R_PUSH, R_END };

static int is_ws(uint8_t c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

/* A whitespace byte in a gap: allowed while the gap is short. */
static int gap(gram_frame *f) {
    if (f->ws >= GRAM_MAX_WS) return R_REJ;
    f->ws++;
    return R_OK;
}

/* One byte of string content (not a quote or backslash): UTF-8 checked
 * with the continuation state in f->sub (low 2 bits: bytes still due; high
 * bits: the allowed range of the next one, which rules out overlong forms,
 * surrogates and code points above U+10FFFF). */
static int utf8_byte(gram_frame *f, uint8_t c) {
    static const uint8_t lo[5] = {0x80, 0xA0, 0x80, 0x90, 0x80};
    static const uint8_t hi[5] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};
    if (f->sub) {
        int rem = f->sub & 3, rng = f->sub >> 2;
        if (c < lo[rng] || c > hi[rng]) return R_REJ;
        f->sub = (uint8_t)(rem - 1);
        return R_OK;
    }
    if (c < 0x20) return R_REJ;
    if (c < 0x80) return R_OK;
    if (c >= 0xC2 && c <= 0xDF) f->sub = 1;
    else if (c == 0xE0) f->sub = 2 | 1 << 2;
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) f->sub = 2;
    else if (c == 0xED) f->sub = 2 | 2 << 2;
    else if (c == 0xF0) f->sub = 3 | 3 << 2;
    else if (c >= 0xF1 && c <= 0xF3) f->sub = 3;
    else if (c == 0xF4) f->sub = 3 | 4 << 2;
    else return R_REJ;
    return R_OK;
}

static int hexd(uint8_t c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int str_byte(gram_frame *f, uint8_t c) {
    switch (f->ph) {
    case S_OPEN:
        if (c != '"') return R_REJ;
        f->ph = S_IN;
        return R_OK;
    case S_IN:
        if (c == '"' && !f->sub) return R_DONE;
        if (c == '\\' && !f->sub) {
            f->ph = S_ESC;
            return R_OK;
        }
        return utf8_byte(f, c);
    case S_ESC:
        if (c == 'u') {
            f->ph = S_HEX;
            f->pos = 0;
            return R_OK;
        }
        if (!strchr("\"\\/bfnrt", c) || !c) return R_REJ;
        f->ph = S_IN;
        return R_OK;
    default: /* S_HEX */
        if (!hexd(c)) return R_REJ;
        if (++f->pos == 4) {
            f->ph = S_IN;
            f->pos = 0;
        }
        return R_OK;
    }
}

/* A digit of the current part, at most lim of them. */
static int more_digits(gram_frame *f, uint8_t c, int lim) {
    if (!is_digit(c)) return R_END;
    if (f->pos >= lim) return R_REJ;
    f->pos++;
    return R_OK;
}

static int to(gram_frame *f, int ph, int pos) {
    f->ph = (uint8_t)ph;
    f->pos = (uint16_t)pos;
    return R_OK;
}

static int num_byte(gram_frame *f, uint8_t c, int integer) {
    int frac_ok = !integer && c == '.', exp_ok = !integer && (c == 'e' || c == 'E');
    switch (f->ph) {
    case N_START:
        if (c == '-') return to(f, N_MINUS, 0);
        /* fall through */
    case N_MINUS:
        if (c == '0') return to(f, N_ZERO, 0);
        return c >= '1' && c <= '9' ? to(f, N_INT, 1) : R_REJ;
    case N_ZERO:
    case N_INT:
        if (frac_ok) return to(f, N_DOT, 0);
        if (exp_ok) return to(f, N_E, 0);
        return f->ph == N_ZERO ? (is_digit(c) ? R_REJ : R_END) : more_digits(f, c, GRAM_MAX_DIGITS);
    case N_DOT:
        return is_digit(c) ? to(f, N_FRAC, 1) : R_REJ;
    case N_FRAC:
        if (exp_ok) return to(f, N_E, 0);
        return more_digits(f, c, GRAM_MAX_DIGITS);
    case N_E:
        if (c == '+' || c == '-') return to(f, N_ESIGN, 0);
        /* fall through */
    case N_ESIGN:
        return is_digit(c) ? to(f, N_EXP, 1) : R_REJ;
    default: /* N_EXP */
        return more_digits(f, c, 3);
    }
}

static int lit_byte(const gram_node *n, gram_frame *f, uint8_t c) {
    uint32_t keep = 0, whole = 0, longer = 0;
    for (int i = 0; i < n->n_items; i++) {
        if (!(f->cand >> i & 1)) continue;
        const gram_item *it = &n->items[i];
        if (it->len == f->pos) whole = 1;
        if (it->len > f->pos && (uint8_t)it->text[f->pos] == c) {
            keep |= 1u << i;
            if (it->len > f->pos + 1) longer = 1;
        }
    }
    if (!keep) return whole ? R_END : R_REJ;
    f->cand = keep;
    f->pos++;
    return longer ? R_OK : R_DONE;
}

static int lit_can_end(const gram_node *n, const gram_frame *f) {
    for (int i = 0; i < n->n_items; i++)
        if ((f->cand >> i & 1) && n->items[i].len == f->pos) return 1;
    return 0;
}

static uint32_t all_props(const gram_node *n) {
    return n->n_items >= 32 ? 0xFFFFFFFFu : (1u << n->n_items) - 1;
}

static int more_keys(const gram_node *n, const gram_frame *f) {
    return n->addl >= 0 || (f->seen & all_props(n)) != all_props(n);
}

static int key_start(const gram_node *n, gram_frame *f) {
    f->ph = O_KEY;
    f->pos = 0;
    f->sub = 0;
    /* without additional properties only unseen names can start; with
     * them every name is tracked so that a repeated one is refused */
    f->cand = n->addl >= 0 ? all_props(n) : all_props(n) & ~f->seen;
    if (!f->cand) f->pos = KEY_FREE; /* free-form from the first byte: one state */
    return R_OK;
}

static int key_close(const gram_node *n, gram_frame *f) {
    int exact = -1;
    for (int i = 0; i < n->n_items && f->pos != KEY_FREE; i++)
        if ((f->cand >> i & 1) && n->items[i].len == f->pos) exact = i;
    if (exact >= 0) {
        if (f->seen >> exact & 1) return R_REJ;
        f->seen |= 1u << exact;
        f->pos = (uint16_t)exact;
    } else if (n->addl >= 0) {
        f->pos = KEY_ADDL;
    } else {
        return R_REJ;
    }
    f->ph = O_COLON;
    f->cand = 0;
    return R_OK;
}

static int key_byte(const gram_node *n, gram_frame *f, uint8_t c) {
    if (c == '"' && !f->sub) return key_close(n, f);
    if (n->addl >= 0 && (c == '\\' || utf8_byte(f, c) == R_REJ)) return R_REJ;
    uint32_t keep = 0;
    for (int i = 0; i < n->n_items && f->pos != KEY_FREE; i++)
        if ((f->cand >> i & 1) && n->items[i].len > f->pos && (uint8_t)n->items[i].text[f->pos] == c)
            keep |= 1u << i;
    if (!keep && n->addl < 0) return R_REJ;
    f->cand = keep;
    /* a free-form key keeps one state however long it grows */
    f->pos = keep ? (uint16_t)(f->pos + 1) : KEY_FREE;
    return R_OK;
}

static int obj_byte(const gram_node *n, gram_frame *f, uint8_t c, int *child) {
    int w = is_ws(c);
    if (f->ph != O_KEY && f->ph != O_OPEN && f->ph != O_COLON) {
        if (w) return gap(f);
        f->ws = 0;
    }
    switch (f->ph) {
    case O_OPEN:
        return c == '{' ? to(f, O_FIRST, 0) : R_REJ;
    case O_FIRST:
        if (c == '}' && !n->required) return R_DONE;
        return c == '"' && (n->n_items || n->addl >= 0) ? key_start(n, f) : R_REJ;
    case O_KEY:
        return key_byte(n, f, c);
    case O_COLON:
        return c == ':' ? (f->ph = O_VAL, R_OK) : R_REJ;
    case O_VAL:
        *child = f->pos == KEY_ADDL ? n->addl : n->items[f->pos].node;
        f->ph = O_IN;
        f->pos = 0;
        return R_PUSH;
    case O_AFTER:
        if (c == ',' && more_keys(n, f)) return to(f, O_COMMA, 0);
        return c == '}' && !(n->required & ~f->seen) ? R_DONE : R_REJ;
    case O_COMMA:
        return c == '"' ? key_start(n, f) : R_REJ;
    default:
        return R_REJ;
    }
}

static int arr_byte(const gram_node *n, gram_frame *f, uint8_t c, int *child) {
    if (f->ph == A_OPEN) return c == '[' ? to(f, A_FIRST, 0) : R_REJ;
    if (is_ws(c)) return gap(f);
    f->ws = 0;
    switch (f->ph) {
    case A_FIRST:
        if (c == ']') return n->min == 0 ? R_DONE : R_REJ;
        if (n->max == 0) return R_REJ;
        break;
    case A_AFTER:
        if (c == ',' && (n->max < 0 || (int)f->seen < n->max)) return to(f, A_COMMA, 0);
        return c == ']' && (int)f->seen >= n->min ? R_DONE : R_REJ;
    case A_COMMA:
        break;
    default:
        return R_REJ;
    }
    *child = n->elem;
    f->ph = A_IN;
    return R_PUSH;
}

static int frame_byte(const gram *g, gram_frame *f, uint8_t c, int *child) {
    const gram_node *n = &g->nodes[f->node];
    switch (n->kind) {
    case G_ROOT:
        if (f->ph != R_START) return R_REJ;
        if (is_ws(c)) return gap(f);
        f->ph = R_IN;
        *child = g->root;
        return R_PUSH;
    case G_OBJ: return obj_byte(n, f, c, child);
    case G_ARR: return arr_byte(n, f, c, child);
    case G_STR: return str_byte(f, c);
    case G_NUM: return num_byte(f, c, 0);
    case G_INT: return num_byte(f, c, 1);
    case G_LIT: return lit_byte(n, f, c);
    default: return R_REJ;
    }
}

/* The parent of a value that just ended moves past it. */
static void child_done(const gram *g, gram_frame *f) {
    const gram_node *n = &g->nodes[f->node];
    f->ws = 0;
    if (n->kind == G_ROOT) {
        f->ph = R_FULL;
    } else if (n->kind == G_OBJ) {
        f->ph = O_AFTER;
    } else if (n->kind == G_ARR) {
        int cap = n->max >= 0 ? n->max : n->min; /* counting further changes nothing */
        if ((int)f->seen < cap) f->seen++;
        f->ph = A_AFTER;
    }
}

static int can_end(const gram *g, const gram_frame *f) {
    const gram_node *n = &g->nodes[f->node];
    switch (n->kind) {
    case G_ROOT: return f->ph == R_FULL;
    case G_NUM:
    case G_INT: return f->ph == N_ZERO || f->ph == N_INT || f->ph == N_FRAC || f->ph == N_EXP;
    case G_LIT: return lit_can_end(n, f);
    default: return 0;
    }
}

/* Appends a stack to the set unless an identical one is there. A set that
 * is full drops the stack (ambiguity beyond GRAM_MAX_ALT alternatives). */
static void emit(gram_set *out, const gram_frame *st, int n) {
    int off = 0;
    for (int k = 0; k < out->n_stk; k++) {
        if (out->len[k] == n && !memcmp(out->fr + off, st, sizeof *st * n)) return;
        off += out->len[k];
    }
    if (out->n_stk == GRAM_MAX_ALT || out->n_fr + n > GRAM_MAX_FRAMES) return;
    memcpy(out->fr + out->n_fr, st, sizeof *st * n);
    out->len[out->n_stk++] = (uint8_t)n;
    out->n_fr = (uint16_t)(out->n_fr + n);
}

static void feed(const gram *g, gram_frame *st, int n, uint8_t c, gram_set *out, int hops);

/* Starts a value of node `node` with byte c on top of st[0..n). */
static void push(const gram *g, gram_frame *st, int n, int node, uint8_t c, gram_set *out,
                 int hops) {
    if (hops > GRAM_MAX_DEPTH) return; /* anyOf of anyOf of ...: a cycle without progress */
    const gram_node *nd = &g->nodes[node];
    if (nd->kind == G_ANYOF) {
        gram_frame alt[GRAM_MAX_DEPTH];
        for (int i = 0; i < nd->n_alts; i++) {
            memcpy(alt, st, sizeof *st * n);
            push(g, alt, n, nd->alts[i], c, out, hops + 1);
        }
        return;
    }
    if (nd->kind == G_ANY) {
        node = c == '{' ? GN_OBJ_ANY : c == '[' ? GN_ARR_ANY : c == '"' ? GN_STR
             : c == '-' || is_digit(c) ? GN_NUM : GN_TFN;
        nd = &g->nodes[node];
    }
    if (n >= GRAM_MAX_DEPTH) return;
    st[n] = (gram_frame){.node = (uint16_t)node, .cand = nd->kind == G_LIT ? 0xFFFFFFFFu : 0};
    feed(g, st, n + 1, c, out, hops + 1);
}

static void feed(const gram *g, gram_frame *st, int n, uint8_t c, gram_set *out, int hops) {
    while (n > 0) {
        int child = -1;
        switch (frame_byte(g, &st[n - 1], c, &child)) {
        case R_OK:
            emit(out, st, n);
            return;
        case R_DONE:
            child_done(g, &st[n - 2]);
            emit(out, st, n - 1);
            return;
        case R_PUSH:
            push(g, st, n, child, c, out, hops);
            return;
        case R_END: /* the value ended before c: its parent takes c */
            n--;
            child_done(g, &st[n - 1]);
            break;
        default:
            return;
        }
    }
}

void gram_set_init(const gram *g, gram_set *s) {
    (void)g;
    memset(s, 0, sizeof *s - sizeof s->fr);
    s->n_stk = 1;
    s->len[0] = 1;
    s->n_fr = 1;
    s->fr[0] = (gram_frame){.node = (uint16_t)(g->n_nodes - 1)}; /* the root node is last */
}

int gram_set_step(const gram *g, const gram_set *in, uint8_t c, gram_set *out) {
    memset(out, 0, sizeof *out - sizeof out->fr);
    gram_frame st[GRAM_MAX_DEPTH];
    int off = 0;
    for (int k = 0; k < in->n_stk; k++) {
        int n = in->len[k];
        memcpy(st, in->fr + off, sizeof *st * n);
        off += n;
        feed(g, st, n, c, out, 0);
    }
    return out->n_stk;
}

int gram_set_complete(const gram *g, const gram_set *s) {
    int off = 0;
    for (int k = 0; k < s->n_stk; k++) {
        const gram_frame *f = s->fr + off;
        if ((s->len[k] == 1 && can_end(g, &f[0])) || (s->len[k] == 2 && can_end(g, &f[1])))
            return 1;
        off += s->len[k];
    }
    return 0;
}

int gram_plain_text(const char *bytes, int n) {
    gram_frame f = {0};
    for (int i = 0; i < n; i++) {
        uint8_t c = (uint8_t)bytes[i];
        if (c == '"' || c == '\\' || utf8_byte(&f, c) == R_REJ) return 0;
    }
    return f.sub == 0;
}

int gram_set_in_text(const gram *g, const gram_set *s) {
    int off = 0;
    for (int k = 0; k < s->n_stk; k++) {
        const gram_frame *t = &s->fr[off + s->len[k] - 1];
        const gram_node *n = &g->nodes[t->node];
        off += s->len[k];
        if (t->sub) return 0;
        if (n->kind == G_STR && t->ph == S_IN) continue;
        if (n->kind == G_OBJ && t->ph == O_KEY && n->addl >= 0 && t->pos == KEY_FREE) continue;
        return 0;
    }
    return s->n_stk > 0;
}

size_t gram_set_bytes(const gram_set *s) {
    return offsetof(gram_set, fr) + sizeof(gram_frame) * s->n_fr;
}

int gram_state_new(gram *g, gram_state **out) {
    *out = NULL;
    if (!g) return PV_EINVAL;
    gram_state *s = malloc(sizeof *s);
    if (!s) return PV_ENOMEM;
    s->g = g;
    gram_set_init(g, &s->set);
    *out = s;
    return 0;
}

void gram_state_free(gram_state *s) { free(s); }
void gram_state_reset(gram_state *s) { gram_set_init(s->g, &s->set); }

/* Steps a copy through the bytes; *res holds the result when it returns 1. */
static int run(const gram_state *s, const char *bytes, size_t n, gram_set *a, gram_set *b,
               gram_set **res) {
    const gram_set *cur = &s->set;
    for (size_t i = 0; i < n; i++) {
        gram_set *nxt = (i & 1) ? b : a;
        if (!gram_set_step(s->g, cur, (uint8_t)bytes[i], nxt)) return 0;
        cur = nxt;
    }
    *res = (gram_set *)cur;
    return 1;
}

int gram_state_advance(gram_state *s, const char *bytes, size_t n) {
    gram_set *res = NULL;
    if (!run(s, bytes, n, &s->tmp[0], &s->tmp[1], &res)) return PV_EINVAL;
    if (res != &s->set) memcpy(&s->set, res, gram_set_bytes(res));
    return 0;
}

int gram_state_accepts(const gram_state *s, const char *bytes, size_t n) {
    gram_set *a = malloc(sizeof *a), *b = malloc(sizeof *b), *res;
    int ok = a && b && run(s, bytes, n, a, b, &res);
    free(a);
    free(b);
    return ok;
}

int gram_state_complete(const gram_state *s) { return gram_set_complete(s->g, &s->set); }
