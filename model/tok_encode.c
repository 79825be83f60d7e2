/* tok_encode: text -> ids.
 *
 * 1. Special-token partition: the text is cut around occurrences of added
 *    tokens, longest token text first over the whole text (llama.cpp's and
 *    HF's order). Control/unknown tokens take part only with parse_special;
 *    user-defined tokens always do (they are ordinary added text in HF).
 * 2. Each remaining raw fragment is encoded:
 *    - BPE: pre-tokenized, then each piece merged pair by pair, lowest merge
 *      rank first (leftmost on ties), starting from one symbol per byte;
 *    - SPM: spaces become U+2581 (with a leading one when add_space_prefix,
 *      at the start and after each special token), then adjacent symbols
 *      merge when their concatenation is a token, highest score first;
 *      symbols that are not tokens fall back to <0xXX> byte tokens.
 * Both merge loops use a heap of candidate pairs with lazy invalidation so
 * that long pieces (runs of spaces, long words) stay O(n log n). */
#include <stdlib.h>
#include <string.h>

#include "pverr.h"
#include "tok_internal.h"
#include "unicode.h"

typedef struct {
    int prev, next;
    uint32_t off, len; /* bytes of the piece this symbol covers; len 0 = merged away */
    int32_t id;
} sym;

typedef struct {
    double prio; /* higher first */
    int l, r;
    uint32_t len; /* combined length when pushed: detects stale entries */
    int32_t id;
} bigram;

typedef struct {
    const tok_vocab *v;
    int32_t *out;
    int cap, n;
    sym *s;
    size_t s_cap;
    bigram *h;
    size_t h_n, h_cap;
    char *buf; /* scratch text (BPE mapped piece, SPM escaped fragment) */
    size_t buf_cap;
    int err;
} enc;

static void put(enc *e, int32_t id) {
    if (e->n < e->cap)
        e->out[e->n] = id;
    if (e->n < INT32_MAX)
        e->n++;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np)
        return PV_ENOMEM;
    *p = np, *cap = nc;
    return 0;
}

static int before(const bigram *a, const bigram *b) {
    return a->prio > b->prio || (a->prio == b->prio && a->l < b->l);
}

static void heap_push(enc *e, bigram b) {
    if (grow((void **)&e->h, &e->h_cap, e->h_n + 1, sizeof *e->h)) {
        e->err = PV_ENOMEM;
        return;
    }
    size_t i = e->h_n++;
    while (i > 0 && before(&b, &e->h[(i - 1) / 2])) {
        e->h[i] = e->h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    e->h[i] = b;
}

static bigram heap_pop(enc *e) {
    bigram top = e->h[0], last = e->h[--e->h_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= e->h_n)
            break;
        if (c + 1 < e->h_n && before(&e->h[c + 1], &e->h[c]))
            c++;
        if (!before(&e->h[c], &last))
            break;
        e->h[i] = e->h[c];
        i = c;
    }
    if (e->h_n)
        e->h[i] = last;
    return top;
}

/* Candidate merge of symbols l and r (adjacent), by the vocabulary's rule. */
static void try_pair(enc *e, const char *text, int l, int r) {
    if (l < 0 || r < 0)
        return;
    const tok_vocab *v = e->v;
    const sym *a = &e->s[l], *b = &e->s[r];
    bigram bg = {.l = l, .r = r, .len = a->len + b->len};
    if (v->kind == TOK_KIND_BPE) {
        if (a->id < 0 || b->id < 0)
            return;
        const tok_merge *m = tok_merge_find(v, a->id, b->id);
        if (!m)
            return;
        bg.prio = -(double)m->rank, bg.id = m->result;
    } else {
        int32_t id = tok_lookup(v, text + a->off, bg.len);
        if (id < 0 || (v->type[id] != TOK_TYPE_NORMAL && v->type[id] != TOK_TYPE_USER_DEFINED))
            return;
        bg.prio = v->score[id], bg.id = id;
    }
    heap_push(e, bg);
}

/* Runs the merge loop over e->s[0..n) (already linked) on text. */
static void merge_all(enc *e, const char *text, int n) {
    e->h_n = 0;
    for (int i = 0; i + 1 < n; i++)
        try_pair(e, text, i, i + 1);
    while (e->h_n && !e->err) {
        bigram bg = heap_pop(e);
        sym *a = &e->s[bg.l], *b = &e->s[bg.r];
        if (a->len == 0 || b->len == 0 || a->next != bg.r || a->len + b->len != bg.len)
            continue; /* one side changed since this pair was queued */
        a->len += b->len;
        a->id = bg.id;
        b->len = 0;
        a->next = b->next;
        if (b->next >= 0)
            e->s[b->next].prev = bg.l;
        try_pair(e, text, a->prev, bg.l);
        try_pair(e, text, bg.l, a->next);
    }
}

static void bpe_piece(enc *e, const unsigned char *p, size_t n) {
    const tok_vocab *v = e->v;
    if (v->ignore_merges) {
        /* Llama-3: a piece that is a whole token is that token, even when
         * the merges would not build it. */
        if (grow((void **)&e->buf, &e->buf_cap, 2 * n, 1)) {
            e->err = PV_ENOMEM;
            return;
        }
        size_t o = 0;
        for (size_t i = 0; i < n; i++)
            o += (size_t)uc_encode(uc_byte_to_cp(p[i]), e->buf + o);
        int32_t id = tok_lookup(v, e->buf, o);
        if (id >= 0) {
            put(e, id);
            return;
        }
    }
    if (grow((void **)&e->s, &e->s_cap, n, sizeof *e->s)) {
        e->err = PV_ENOMEM;
        return;
    }
    for (size_t i = 0; i < n; i++)
        e->s[i] = (sym){.prev = (int)i - 1, .next = i + 1 < n ? (int)i + 1 : -1,
                        .off = (uint32_t)i, .len = 1, .id = v->byte_tok[p[i]]};
    merge_all(e, (const char *)p, (int)n);
    for (int i = 0; i >= 0 && !e->err; i = e->s[i].next) {
        /* A byte without a token (GPT-2 vocabularies may lack 0xF5..0xFF,
         * which never occur in UTF-8) is dropped, as llama.cpp does: the
         * unknown token of such vocabularies is often a control token
         * (SmolLM2: <|endoftext|>) that would inject a document boundary. */
        if (e->s[i].id >= 0)
            put(e, e->s[i].id);
    }
}

static void bpe_fragment(enc *e, const char *t, size_t len) {
    tok_spans sp = {0};
    int rc = tok_pretokenize(e->v->pre, t, len, &sp);
    if (rc) {
        e->err = rc;
    } else {
        size_t start = 0;
        for (size_t i = 0; i < sp.n && !e->err; i++) {
            bpe_piece(e, (const unsigned char *)t + start, sp.end[i] - start);
            start = sp.end[i];
        }
    }
    free(sp.end);
}

static void spm_fragment(enc *e, const char *t, size_t len, int prefix) {
    const tok_vocab *v = e->v;
    if (grow((void **)&e->buf, &e->buf_cap, 3 * (len + 1), 1)) {
        e->err = PV_ENOMEM;
        return;
    }
    size_t o = 0;
    if (prefix)
        memcpy(e->buf, "\xE2\x96\x81", 3), o = 3;
    for (size_t i = 0; i < len; i++) {
        if (t[i] == ' ')
            memcpy(e->buf + o, "\xE2\x96\x81", 3), o += 3;
        else
            e->buf[o++] = t[i];
    }
    if (o == 0)
        return;
    if (grow((void **)&e->s, &e->s_cap, o, sizeof *e->s)) {
        e->err = PV_ENOMEM;
        return;
    }
    int n = 0;
    for (size_t i = 0; i < o;) {
        uint32_t cp;
        int k = uc_decode(e->buf + i, o - i, &cp);
        int32_t id = tok_lookup(v, e->buf + i, (size_t)k);
        if (id >= 0 && v->type[id] != TOK_TYPE_NORMAL && v->type[id] != TOK_TYPE_USER_DEFINED)
            id = -1;
        e->s[n] = (sym){.prev = n - 1, .next = -1, .off = (uint32_t)i, .len = (uint32_t)k, .id = id};
        if (n)
            e->s[n - 1].next = n;
        n++;
        i += (size_t)k;
    }
    merge_all(e, e->buf, n);
    for (int i = 0; i >= 0 && !e->err; i = e->s[i].next) {
        const sym *s = &e->s[i];
        if (s->id >= 0) {
            put(e, s->id);
            continue;
        }
        for (uint32_t j = 0; j < s->len; j++) {
            int32_t b = v->byte_tok[(unsigned char)e->buf[s->off + j]];
            if (b >= 0)
                put(e, b);
            else if (v->unk >= 0 && j == 0)
                put(e, v->unk); /* no byte fallback: one <unk> per character */
        }
    }
}

typedef struct {
    size_t off, len;
    int32_t tok; /* -1: raw text */
} frag;

static const char *find(const char *hay, size_t hl, const char *needle, size_t nl) {
    if (nl == 0 || hl < nl)
        return NULL;
    for (const char *p = hay, *last = hay + (hl - nl); p <= last; p++) {
        p = memchr(p, needle[0], (size_t)(last - p) + 1);
        if (!p)
            return NULL;
        if (memcmp(p, needle, nl) == 0)
            return p;
    }
    return NULL;
}

/* Cuts raw fragments around every occurrence of each special token. */
static int partition(const tok_vocab *v, const char *text, size_t len, int parse_special,
                     frag **out, size_t *n_out) {
    size_t n = 1, cap = 8;
    frag *f = malloc(cap * sizeof *f);
    if (!f)
        return PV_ENOMEM;
    f[0] = (frag){0, len, -1};
    for (int k = 0; k < v->n_special; k++) {
        int32_t id = v->special[k];
        if (!parse_special && v->type[id] != TOK_TYPE_USER_DEFINED)
            continue;
        size_t sl;
        const char *st = tok_text(v, id, &sl);
        for (size_t i = 0; i < n; i++) {
            if (f[i].tok >= 0 || f[i].len < sl)
                continue;
            const char *p = find(text + f[i].off, f[i].len, st, sl);
            if (!p)
                continue;
            /* Replace f[i] with [before] token [after]; the loop continues
             * with [after]. */
            if (n + 2 > cap) {
                frag *nf = realloc(f, (cap *= 2) * sizeof *f);
                if (!nf) {
                    free(f);
                    return PV_ENOMEM;
                }
                f = nf;
            }
            size_t at = (size_t)(p - text), end = f[i].off + f[i].len;
            size_t ins = at > f[i].off ? 2 : 1;
            memmove(f + i + ins + 1, f + i + 1, (n - i - 1) * sizeof *f);
            n += ins;
            if (ins == 2) {
                f[i].len = at - f[i].off;
                i++;
            }
            f[i] = (frag){at, sl, id};
            f[i + 1] = (frag){at + sl, end - at - sl, -1};
        }
    }
    *out = f, *n_out = n;
    return PV_OK;
}

int tok_encode(const tok_vocab *v, const char *text, size_t len, int parse_special, int32_t *out,
               int cap) {
    if (!v || (!text && len) || cap < 0 || (!out && cap))
        return PV_EINVAL;
    if (len == 0)
        return 0;
    frag *f;
    size_t nf;
    int rc = partition(v, text, len, parse_special, &f, &nf);
    if (rc)
        return rc;
    enc e = {.v = v, .out = out, .cap = cap};
    int prev_special = 1; /* SPM: the text start counts as after a special */
    for (size_t i = 0; i < nf && !e.err; i++) {
        if (f[i].tok >= 0) {
            put(&e, f[i].tok);
            prev_special = 1;
            continue;
        }
        if (f[i].len == 0)
            continue;
        if (v->kind == TOK_KIND_BPE)
            bpe_fragment(&e, text + f[i].off, f[i].len);
        else
            spm_fragment(&e, text + f[i].off, f[i].len, v->add_space_prefix && prev_special);
        prev_special = 0;
    }
    free(f), free(e.s), free(e.h), free(e.buf);
    return e.err ? e.err : e.n;
}
