/* gram_mask: the vocabulary walk and the per-state mask cache (contract in
 * gram_mask.h). */
#include "gram_mask.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gram_internal.h"
#include "pverr.h"

#define CACHE_SLOTS 1024 /* a power of two; cleared when half full */

struct gram_vocab {
    int n_vocab;
    char *bytes;     /* every piece, end to end */
    uint32_t *off;   /* [n_vocab] where id's piece starts */
    int32_t *len;    /* [n_vocab] its length; 0: none */
    uint8_t *is_eog; /* [n_vocab] */
    uint8_t *plain;  /* [n_vocab] gram_plain_text of the piece */
    int32_t *order;  /* ids with bytes, sorted by bytes */
    uint16_t *lcp;   /* bytes order[i] shares with order[i - 1] */
    int n_sorted, max_len;
    gram_set *lv;    /* [max_len + 1] walk scratch: the state after each prefix */
    uint64_t *tight; /* [n_vocab / 64] scratch: a mask narrowed by the budget */
};

typedef struct {
    uint64_t h;
    size_t klen;
    uint8_t *key;   /* the state's bytes; NULL: empty slot */
    uint64_t *bits; /* allowed ids */
    int max_after;  /* the largest gram_set_close_len after an allowed token */
} centry;

struct gram_cache {
    const gram_vocab *v; /* the vocabulary the masks are for */
    int n;
    centry slot[CACHE_SLOTS];
};

typedef struct {
    const char *p;
    int len;
    int32_t id;
} sort_ent;

static int ent_cmp(const void *a, const void *b) {
    const sort_ent *x = a, *y = b;
    int n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, (size_t)n);
    if (c) return c;
    return x->len != y->len ? x->len - y->len : x->id - y->id;
}

/* Copies every piece; sizes are learned on the way (pieces are short). */
static int load_pieces(gram_vocab *v, gram_piece_fn piece, void *user) {
    size_t cap = 1 << 16, used = 0;
    if (!(v->bytes = malloc(cap))) return PV_ENOMEM;
    char buf[512];
    for (int32_t id = 0; id < v->n_vocab; id++) {
        int n = piece(user, id, buf, sizeof buf);
        if (n < 0 || v->is_eog[id]) n = 0;
        if (n > (int)sizeof buf) n = 0; /* longer than any real token: left out */
        if (used + (size_t)n > cap) {
            char *b = realloc(v->bytes, cap *= 2);
            if (!b) return PV_ENOMEM;
            v->bytes = b;
        }
        memcpy(v->bytes + used, buf, (size_t)n);
        v->off[id] = (uint32_t)used;
        v->len[id] = n;
        used += (size_t)n;
        if (n > v->max_len) v->max_len = n;
    }
    return 0;
}

static int sort_pieces(gram_vocab *v) {
    sort_ent *e = malloc(sizeof *e * (size_t)v->n_vocab);
    if (!e) return PV_ENOMEM;
    int m = 0;
    for (int32_t id = 0; id < v->n_vocab; id++)
        if (v->len[id] > 0) e[m++] = (sort_ent){v->bytes + v->off[id], v->len[id], id};
    qsort(e, (size_t)m, sizeof *e, ent_cmp);
    for (int i = 0; i < m; i++) {
        int k = 0;
        while (i > 0 && k < e[i].len && k < e[i - 1].len && e[i].p[k] == e[i - 1].p[k]) k++;
        v->order[i] = e[i].id;
        v->lcp[i] = (uint16_t)k;
    }
    v->n_sorted = m;
    free(e);
    return 0;
}

int gram_vocab_create(int n_vocab, gram_piece_fn piece, void *user, const int32_t *eog, int n_eog,
                      gram_vocab **out) {
    *out = NULL;
    if (n_vocab <= 0 || !piece || n_eog < 0) return PV_EINVAL;
    gram_vocab *v = calloc(1, sizeof *v);
    if (!v) return PV_ENOMEM;
    v->n_vocab = n_vocab;
    v->off = malloc(sizeof *v->off * n_vocab);
    v->len = malloc(sizeof *v->len * n_vocab);
    v->is_eog = calloc((size_t)n_vocab, 1);
    v->plain = calloc((size_t)n_vocab, 1);
    v->order = malloc(sizeof *v->order * n_vocab);
    v->lcp = malloc(sizeof *v->lcp * n_vocab);
    int rc = v->off && v->len && v->is_eog && v->plain && v->order && v->lcp ? 0 : PV_ENOMEM;
    for (int i = 0; !rc && i < n_eog; i++)
        if (eog[i] >= 0 && eog[i] < n_vocab) v->is_eog[eog[i]] = 1;
    if (!rc) rc = load_pieces(v, piece, user);
    if (!rc) rc = sort_pieces(v);
    for (int32_t id = 0; !rc && id < n_vocab; id++)
        v->plain[id] = v->len[id] > 0 && gram_plain_text(v->bytes + v->off[id], v->len[id]);
    if (!rc && !(v->lv = malloc(sizeof *v->lv * (size_t)(v->max_len + 1)))) rc = PV_ENOMEM;
    if (!rc && !(v->tight = malloc(((size_t)n_vocab + 63) / 64 * 8))) rc = PV_ENOMEM;
    if (rc) {
        gram_vocab_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

void gram_vocab_free(gram_vocab *v) {
    if (!v) return;
    free(v->bytes);
    free(v->off);
    free(v->len);
    free(v->is_eog);
    free(v->plain);
    free(v->order);
    free(v->lcp);
    free(v->lv);
    free(v->tight);
    free(v);
}

const char *gram_vocab_piece(const gram_vocab *v, int32_t id, int *len) {
    *len = id >= 0 && id < v->n_vocab ? v->len[id] : 0;
    return *len ? v->bytes + v->off[id] : NULL;
}

/* The walk: sets the bits of the tokens whose bytes state s accepts and
 * after which the document can still be completed within `limit` bytes
 * (gram_set_close_len), one automaton step per byte not shared with the
 * token before; a refused prefix skips every token that starts with it.
 * Inside string content, plain tokens (most of the vocabulary) are taken
 * without a walk, since they leave the state as it is; k then carries the
 * shortest shared prefix over the tokens passed by. Returns the count;
 * *max_after: the largest distance left after an allowed token. */
static int walk(gram_vocab *v, const gram *g, const gram_set *s, int limit, uint64_t *bits,
                int *max_after) {
    memcpy(&v->lv[0], s, gram_set_bytes(s));
    int valid = 0, dead = -1, n = 0, in_text = gram_set_in_text(g, s), run = 0xFFFF;
    int here = in_text ? gram_set_close_len(g, s) : GRAM_CLOSE_INF, most = 0;
    for (int i = 0; i < v->n_sorted; i++) {
        int k = v->lcp[i] < run ? v->lcp[i] : run;
        if (in_text && v->plain[v->order[i]]) {
            if (here <= limit) {
                bits[v->order[i] >> 6] |= 1ull << (v->order[i] & 63);
                n++;
                most = here > most ? here : most;
            }
            run = k;
            continue;
        }
        run = 0xFFFF;
        if (dead >= 0 && k >= dead) continue;
        int32_t id = v->order[i];
        const uint8_t *b = (const uint8_t *)v->bytes + v->off[id];
        int len = v->len[id], d = k < valid ? k : valid;
        dead = -1;
        for (; d < len; d++)
            if (!gram_set_step(g, &v->lv[d], b[d], &v->lv[d + 1])) {
                dead = d + 1;
                break;
            }
        valid = dead >= 0 ? dead - 1 : len;
        int left = dead < 0 ? gram_set_close_len(g, &v->lv[len]) : GRAM_CLOSE_INF;
        if (left <= limit) {
            bits[id >> 6] |= 1ull << (id & 63);
            n++;
            most = left > most ? left : most;
        }
    }
    if (gram_set_complete(g, s))
        for (int32_t id = 0; id < v->n_vocab; id++)
            if (v->is_eog[id]) {
                bits[id >> 6] |= 1ull << (id & 63);
                n++;
            }
    *max_after = most;
    return n;
}

static void cache_clear(gram_cache *c) {
    for (int i = 0; i < CACHE_SLOTS; i++) {
        free(c->slot[i].key);
        free(c->slot[i].bits);
        c->slot[i] = (centry){0};
    }
    c->n = 0;
}

void gram_cache_free(gram_cache *c) {
    if (!c) return;
    cache_clear(c);
    free(c);
}

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* The cache entry of state s, computed on a miss; NULL when out of memory. */
static const centry *lookup(gram_vocab *v, gram *g, const gram_set *s) {
    if (!g->cache && !(g->cache = calloc(1, sizeof *g->cache))) return NULL;
    gram_cache *c = g->cache;
    if (c->v != v || c->n >= CACHE_SLOTS / 2) cache_clear(c);
    c->v = v;
    size_t klen = gram_set_bytes(s);
    uint64_t h = hash_bytes((const uint8_t *)s, klen);
    size_t i = h & (CACHE_SLOTS - 1);
    for (; c->slot[i].key; i = (i + 1) & (CACHE_SLOTS - 1)) {
        const centry *e = &c->slot[i];
        if (e->h == h && e->klen == klen && !memcmp(e->key, s, klen)) return e;
    }
    size_t words = ((size_t)v->n_vocab + 63) / 64;
    centry e = {.h = h, .klen = klen, .key = malloc(klen), .bits = calloc(words, 8)};
    if (!e.key || !e.bits) {
        free(e.key);
        free(e.bits);
        return NULL;
    }
    memcpy(e.key, s, klen);
    /* every token that leaves the document completable: dead ends (a key
     * opened where its value has no frame left) are never allowed */
    walk(v, g, s, GRAM_CLOSE_INF - 1, e.bits, &e.max_after);
    c->slot[i] = e;
    c->n++;
    return &c->slot[i];
}

int gram_mask(gram_vocab *v, const gram_state *s, int left, float *logits) {
    const centry *e = lookup(v, s->g, &s->set);
    if (!e) return PV_ENOMEM;
    const uint64_t *bits = e->bits;
    int most;
    /* The token taken now and the end of generation leave left - 2 for the
     * rest. Once some allowed token would need more, the output only
     * closes: a token may not take the document further from complete
     * (strings and numbers may still go on), nor beyond what is left. That
     * mask is walked uncached (the budget changes every step); when
     * nothing fits (max_tokens too small from the start) the grammar alone
     * decides. */
    if (left < INT_MAX && e->max_after > left - 2) {
        size_t words = ((size_t)v->n_vocab + 63) / 64;
        int here = gram_set_close_len(s->g, &s->set);
        memset(v->tight, 0, words * 8);
        int m = walk(v, s->g, &s->set, here < left - 2 ? here : left - 2, v->tight, &most);
        if (m > 0) bits = v->tight;
    }
    /* a word at a time: all-allowed words (inside strings, most of them)
     * are only counted, all-refused ones (elsewhere) written without tests.
     * The count is of the logits still finite after this mask: the caller's
     * own masks (min_tokens sets end of generation to -INFINITY) may have
     * removed tokens the grammar allows, and a row with nothing finite
     * left would make the sampler pick a token nobody allowed. */
    int finite = 0;
    for (int w = 0; w * 64 < v->n_vocab; w++) {
        uint64_t b = bits[w];
        int lo = w * 64, hi = lo + 64 < v->n_vocab ? lo + 64 : v->n_vocab;
        if (b == ~0ull) {
            for (int id = lo; id < hi; id++) finite += logits[id] > -INFINITY;
            continue;
        }
        for (int id = lo; id < hi; id++) {
            if (!(b >> (id - lo) & 1)) logits[id] = -INFINITY;
            else finite += logits[id] > -INFINITY;
        }
    }
    return finite;
}

int gram_accept_token(const gram_vocab *v, gram_state *s, int32_t id) {
    if (id < 0 || id >= v->n_vocab) return PV_EINVAL;
    if (v->is_eog[id]) return gram_state_complete(s) ? GRAM_END : PV_EINVAL;
    if (!v->len[id]) return PV_EINVAL;
    return gram_state_advance(s, v->bytes + v->off[id], (size_t)v->len[id]);
}
