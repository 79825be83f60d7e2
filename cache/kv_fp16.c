/* The plain FP16 KV cache: every token of every head at half precision.
 *
 * Memory per (sequence, layer) is a list of pages of KV_PAGE tokens. A page
 * holds, per KV head, a key block [head_dim][KV_PAGE] (transposed: the
 * attention kernel scores 64 keys per vector op, kv_attn.h) and then, per KV
 * head, a value block [KV_PAGE][head_dim]. Pages are allocated as a
 * sequence grows and freed when it is reset, so a short request costs little
 * even when max_ctx is large. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_attn.h"
#include "kv_internal.h"
#include "kv_layout.h"
#include "kv_pool.h"
#include "kv_prefix.h"
#include "pverr.h"
#include "quant.h"

#define KV_PAGE KVA_PAGE
/* kv_policy_seq_bytes predicts this cache's pages with KVL_FP16_PAGE. */
_Static_assert(KVA_PAGE == KVL_FP16_PAGE, "plain cache page size differs from kv_layout.h");

typedef struct {
    uint16_t **pages; /* [n_pages] keys then values of every head, see above */
    int n_pages;
    int cap_pages; /* entries of `pages`; kept across resets so that reusing a
                    * slot allocates nothing once its pages come from the pool */
    int len; /* tokens stored in this layer */
} layer_store;

typedef struct {
    kv_shape s;
    layer_store *ls; /* [max_seqs][n_layers] */
    float *scratch;  /* [n_threads][kva_scratch_floats] attention scratch */
    size_t scratch_per_thread;
    int kind;        /* kv_attn kernel, picked at creation */
    /* Automatic prefix caching: a sequence's first n_blk[seq] pages of every
     * layer belong to blocks of the index (blk[seq][i], one reference each);
     * the rest are its own. */
    kv_pfx *pfx;
    kv_pfx_blk **blk; /* [max_seqs][max_blk] */
    int *n_blk;       /* [max_seqs] */
    int max_blk;
    void **tmp;       /* [n_layers] pages of one block being published */
} fp16_cache;

static layer_store *get_ls(fp16_cache *c, int seq, int layer) {
    return &c->ls[(size_t)seq * c->s.n_layers + layer];
}

static size_t page_elems(const fp16_cache *c) {
    return (size_t)2 * c->s.n_kv_heads * KV_PAGE * c->s.head_dim;
}

/* Element offsets of one head's key block and value block in a page. */
static size_t k_off(const fp16_cache *c, int head) {
    return (size_t)head * KV_PAGE * c->s.head_dim;
}
static size_t v_off(const fp16_cache *c, int head) {
    return (size_t)(c->s.n_kv_heads + head) * KV_PAGE * c->s.head_dim;
}

static int fp16_store(void *impl, int seq, int layer, int pos0, int n, const float *k,
                      const float *v) {
    fp16_cache *c = impl;
    layer_store *l = get_ls(c, seq, layer);
    /* The plain cache holds every position densely, so stores must be
     * contiguous; a gap would mean the caller lost track of the sequence. */
    if (pos0 != l->len) return PV_EINVAL;
    if (pos0 + n > c->s.max_ctx) return PV_ECTXFULL;
    int need_pages = (pos0 + n + KV_PAGE - 1) / KV_PAGE;
    if (need_pages > l->n_pages) {
        if (need_pages > l->cap_pages) {
            int cap = l->cap_pages * 2 > need_pages ? l->cap_pages * 2 : need_pages;
            uint16_t **np = realloc(l->pages, sizeof *np * (size_t)cap);
            if (!np) return PV_ENOMEM;
            l->pages = np;
            l->cap_pages = cap;
        }
        for (int p = l->n_pages; p < need_pages; p++) {
            l->pages[p] = kv_pool_alloc(c->s.pool, page_elems(c) * sizeof(uint16_t));
            if (!l->pages[p]) {
                l->n_pages = p;
                return PV_ENOMEM;
            }
            /* The kernel converts whole key blocks and masks the unused
             * tail; zeroing keeps what it reads defined. */
            memset(l->pages[p], 0, page_elems(c) * sizeof(uint16_t));
        }
        l->n_pages = need_pages;
    }
    int hd = c->s.head_dim, nkv = c->s.n_kv_heads;
    for (int i = 0; i < n; i++) {
        for (int h = 0; h < nkv; h++) {
            const float *ks = k + (size_t)i * nkv * hd + (size_t)h * hd;
            const float *vs = v + (size_t)i * nkv * hd + (size_t)h * hd;
            int t = pos0 + i;
            uint16_t *page = l->pages[t / KV_PAGE];
            uint16_t *kd = page + k_off(c, h) + t % KV_PAGE; /* column t of [hd][KV_PAGE] */
            uint16_t *vd = page + v_off(c, h) + (size_t)(t % KV_PAGE) * hd;
            kq_fp32_to_fp16_row(vs, vd, hd);
            for (int d0 = 0; d0 < hd; d0 += 64) { /* keys: converted, then one column */
                uint16_t kb[64];
                int nd = hd - d0 < 64 ? hd - d0 : 64;
                kq_fp32_to_fp16_row(ks + d0, kb, nd);
                for (int d = 0; d < nd; d++)
                    kd[(size_t)(d0 + d) * KV_PAGE] = kb[d];
            }
        }
    }
    l->len = pos0 + n;
    return PV_OK;
}

static kva_src src_of(const fp16_cache *c, const layer_store *l, int kv_head) {
    kva_src src = {.pages = (const uint16_t *const *)l->pages,
                   .k_off = k_off(c, kv_head),
                   .v_off = v_off(c, kv_head),
                   .len = l->len,
                   .head_dim = c->s.head_dim,
                   .group = c->s.n_heads / c->s.n_kv_heads,
                   .n_heads = c->s.n_heads,
                   .kv_head = kv_head};
    return src;
}

static int fp16_attend(void *impl, int seq, int layer, int kv_head, int pos0, int n, const float *q,
                       float *out, int thread) {
    fp16_cache *c = impl;
    layer_store *l = get_ls(c, seq, layer);
    if (pos0 < 0 || n < 0 || pos0 + n > l->len) return PV_EINVAL; /* queries follow their keys */
    if (n == 0) return PV_OK;
    kva_src src = src_of(c, l, kv_head);
    kva_attend(&src, c->kind, pos0, n, q, out, c->scratch + (size_t)thread * c->scratch_per_thread);
    return PV_OK;
}

/* Split-K: key ranges start on a page (the kernel walks whole pages). */
static int fp16_attend_parts(const void *impl, int seq) {
    (void)impl, (void)seq;
    return KV_PAGE;
}

static int fp16_attend_part(void *impl, int seq, int layer, int kv_head, int pos0, int n, int t0,
                            int t1, const float *q, float *out, float *m, float *lsum, int thread) {
    fp16_cache *c = impl;
    layer_store *l = get_ls(c, seq, layer);
    if (pos0 < 0 || n < 0 || pos0 + n > l->len || t0 >= l->len) return PV_EINVAL;
    if (n == 0) return PV_OK;
    kva_src src = src_of(c, l, kv_head);
    kva_attend_part(&src, c->kind, pos0, n, t0, t1, q, out, m, lsum,
                    c->scratch + (size_t)thread * c->scratch_per_thread);
    return PV_OK;
}

/* Attention only reads pages: disjoint query ranges of one head may run at once. */
static int fp16_attend_splits(const void *impl, int seq) {
    (void)impl, (void)seq;
    return 1;
}

static kv_pfx_blk **blocks_of(fp16_cache *c, int seq) {
    return c->blk + (size_t)seq * c->max_blk;
}

static void fp16_seq_reset(void *impl, int seq) {
    fp16_cache *c = impl;
    int nb = c->n_blk ? c->n_blk[seq] : 0;
    for (int L = 0; L < c->s.n_layers; L++) {
        layer_store *l = get_ls(c, seq, L);
        for (int p = nb; p < l->n_pages; p++) /* the first nb pages are the blocks' */
            kv_pool_free(c->s.pool, l->pages[p], page_elems(c) * sizeof(uint16_t));
        l->n_pages = 0;
        l->len = 0;
    }
    /* Last block first: a block's successors then sit older in the LRU than
     * the block itself and are evicted before it (a successor without its
     * predecessor can never be found again). */
    kv_pfx_blk **b = blocks_of(c, seq);
    for (int i = nb - 1; i >= 0; i--) kv_pfx_unref(c->pfx, b[i]);
    c->n_blk[seq] = 0;
}

static int grow_pages(layer_store *l, int need) {
    if (need <= l->cap_pages) return PV_OK;
    int cap = l->cap_pages * 2 > need ? l->cap_pages * 2 : need;
    uint16_t **np = realloc(l->pages, sizeof *np * (size_t)cap);
    if (!np) return PV_ENOMEM;
    l->pages = np;
    l->cap_pages = cap;
    return PV_OK;
}

/* After nb attached blocks, the last one's tail where the prompt
 * continues it (never its last token): copied into pages of the
 * sequence's own, which it then appends to. Returns the tokens it added
 * (0: no tail, no match, or no memory — the sequence computes them). */
static int attach_tail(fp16_cache *c, int seq, const kv_pfx_blk *last, const int32_t *tok, int n) {
    int nb = c->n_blk[seq], at = nb * KV_PAGE;
    int r = kv_pfx_tail_match(last, tok + at, n - 1 - at);
    if (r <= 0) return 0;
    size_t pb = page_elems(c) * sizeof(uint16_t);
    int L = 0;
    for (; L < c->s.n_layers; L++) {
        layer_store *l = get_ls(c, seq, L);
        if (grow_pages(l, nb + 1) || !(l->pages[nb] = kv_pool_alloc(c->s.pool, pb))) break;
        memcpy(l->pages[nb], kv_pfx_tail_page(last, L), pb);
    }
    if (L < c->s.n_layers) { /* give back what was copied */
        for (int i = 0; i < L; i++) kv_pool_free(c->s.pool, get_ls(c, seq, i)->pages[nb], pb);
        return 0;
    }
    for (L = 0; L < c->s.n_layers; L++) {
        layer_store *l = get_ls(c, seq, L);
        l->n_pages = nb + 1;
        l->len = at + r;
    }
    return r;
}

static int fp16_seq_attach(void *impl, int seq, const int32_t *tok, int n) {
    fp16_cache *c = impl;
    for (int L = 0; L < c->s.n_layers; L++)
        if (get_ls(c, seq, L)->len) return PV_EINVAL;
    /* whole blocks only, and never the last token: its logits are wanted */
    int want = n > 0 ? (n - 1) / KV_PAGE : 0, nb = 0;
    if (want > c->max_blk) want = c->max_blk;
    kv_pfx_blk **b = blocks_of(c, seq);
    for (const kv_pfx_blk *prev = NULL; nb < want; prev = b[nb++])
        if (!(b[nb] = kv_pfx_get(c->pfx, prev, tok + (size_t)nb * KV_PAGE))) break;
    for (int L = 0; L < c->s.n_layers; L++)
        if (grow_pages(get_ls(c, seq, L), nb)) {
            for (int i = nb - 1; i >= 0; i--) kv_pfx_unref(c->pfx, b[i]);
            return PV_ENOMEM;
        }
    for (int L = 0; L < c->s.n_layers; L++) {
        layer_store *l = get_ls(c, seq, L);
        for (int i = 0; i < nb; i++) l->pages[i] = kv_pfx_page(b[i], L);
        l->n_pages = nb;
        l->len = nb * KV_PAGE;
    }
    c->n_blk[seq] = nb;
    return nb * KV_PAGE + (nb ? attach_tail(c, seq, b[nb - 1], tok, n) : 0);
}

static int fp16_seq_publish(void *impl, int seq, const int32_t *tok, int n, int latest) {
    (void)latest; /* blocks are shared by reference: every one is kept */
    fp16_cache *c = impl;
    int len = n; /* every layer must hold a page whole (a failed step may leave them uneven) */
    for (int L = 0; L < c->s.n_layers; L++)
        if (get_ls(c, seq, L)->len < len) len = get_ls(c, seq, L)->len;
    int full = len / KV_PAGE, nb = c->n_blk[seq];
    kv_pfx_blk **b = blocks_of(c, seq);
    for (; nb < full && nb < c->max_blk; nb++) {
        for (int L = 0; L < c->s.n_layers; L++) c->tmp[L] = get_ls(c, seq, L)->pages[nb];
        int dup = 0;
        kv_pfx_blk *k = kv_pfx_put(c->pfx, nb ? b[nb - 1] : NULL, tok + (size_t)nb * KV_PAGE,
                                   c->tmp, &dup);
        if (!k) break;
        if (dup) {
            /* Another sequence computed the same block first. Ours stays
             * private (switching pages under a running sequence could change
             * its output by a rounding difference), and so does the rest. */
            kv_pfx_unref(c->pfx, k);
            break;
        }
        b[nb] = k;
        c->n_blk[seq] = nb + 1;
    }
    /* the tokens past the last whole block, when every block before them
     * is shared: the tail of that block (a copy; the sequence writes on) */
    nb = c->n_blk[seq];
    if (nb && nb == full && len % KV_PAGE) {
        for (int L = 0; L < c->s.n_layers; L++) c->tmp[L] = get_ls(c, seq, L)->pages[nb];
        kv_pfx_set_tail(c->pfx, b[nb - 1], tok + (size_t)nb * KV_PAGE, len % KV_PAGE, c->tmp);
    }
    return c->n_blk[seq] * KV_PAGE;
}

static void fp16_prefix_stats(const void *impl, kv_prefix_stats *st) {
    kv_pfx_add_stats(((const fp16_cache *)impl)->pfx, st);
}

static size_t fp16_prefix_evict(void *impl, size_t bytes) {
    return kv_pfx_evict(((fp16_cache *)impl)->pfx, bytes);
}

static int fp16_seq_pos(const void *impl, int seq) {
    const fp16_cache *c = impl;
    return c->ls[(size_t)seq * c->s.n_layers].len;
}

static void fp16_seq_usage(const void *impl, int seq, kv_usage *u) {
    const fp16_cache *c = impl;
    size_t stored = 0;
    int n = c->ls[(size_t)seq * c->s.n_layers].len;
    for (int L = 0; L < c->s.n_layers; L++)
        stored += (size_t)c->ls[(size_t)seq * c->s.n_layers + L].n_pages * page_elems(c) * 2;
    u->bytes_stored = stored;
    u->bytes_fp16 = (size_t)n * c->s.n_layers * c->s.n_kv_heads * c->s.head_dim * 2 * 2;
    u->n_tokens = n;
    u->n_high = n;
    u->bytes_cached = (size_t)c->n_blk[seq] * c->s.n_layers * page_elems(c) * 2;
}

/* The plain cache keeps every stored token at FP16 and tracks nothing. */
static int fp16_seq_tiers(const void *impl, int seq, int layer, int kv_head, uint8_t *tier,
                          float *score, int n) {
    const fp16_cache *c = impl;
    (void)kv_head;
    int len = c->ls[(size_t)seq * c->s.n_layers + layer].len;
    for (int p = 0; p < n; p++) {
        tier[p] = p < len ? KV_TIER_HIGH : KV_TIER_NONE;
        if (score) score[p] = NAN;
    }
    return len;
}

static void fp16_destroy(void *impl) {
    fp16_cache *c = impl;
    if (!c) return;
    if (c->ls)
        for (int s = 0; s < c->s.max_seqs; s++) {
            fp16_seq_reset(c, s);
            for (int L = 0; L < c->s.n_layers; L++) free(get_ls(c, s, L)->pages);
        }
    kv_pfx_destroy(c->pfx); /* after every sequence let its blocks go */
    free(c->blk);
    free(c->n_blk);
    free(c->tmp);
    free(c->ls);
    free(c->scratch);
    free(c);
}

static int fp16_policy(const void *impl, kv_policy *out) {
    (void)impl;
    return kv_policy_preset("full", out);
}

static const kv_vtable fp16_vt = {
    .name = "fp16",
    .store = fp16_store,
    .attend_group = fp16_attend,
    .attend_splits = fp16_attend_splits,
    .attend_parts = fp16_attend_parts,
    .attend_part = fp16_attend_part,
    .seq_reset = fp16_seq_reset,
    .seq_pos = fp16_seq_pos,
    .seq_usage = fp16_seq_usage,
    .seq_tiers = fp16_seq_tiers,
    .seq_attach = fp16_seq_attach,
    .seq_publish = fp16_seq_publish,
    .prefix_stats = fp16_prefix_stats,
    .prefix_evict = fp16_prefix_evict,
    .policy = fp16_policy,
    .destroy = fp16_destroy,
};

int kv_create_fp16(const kv_shape *s, kv_cache **out) {
    *out = NULL;
    if (!s || s->n_layers <= 0 || s->n_heads <= 0 || s->n_kv_heads <= 0 || s->head_dim <= 0 ||
        s->n_heads % s->n_kv_heads != 0 || s->max_seqs <= 0 || s->max_ctx <= 0 || s->n_threads <= 0)
        return PV_EINVAL;
    fp16_cache *c = calloc(1, sizeof *c);
    if (!c) return PV_ENOMEM;
    c->s = *s;
    c->ls = calloc((size_t)s->max_seqs * s->n_layers, sizeof *c->ls);
    c->scratch_per_thread = kva_scratch_floats(s->head_dim);
    c->scratch = malloc(sizeof(float) * (size_t)s->n_threads * c->scratch_per_thread);
    c->max_blk = (s->max_ctx + KV_PAGE - 1) / KV_PAGE;
    c->blk = calloc((size_t)s->max_seqs * c->max_blk, sizeof *c->blk);
    c->n_blk = calloc((size_t)s->max_seqs, sizeof *c->n_blk);
    c->tmp = calloc((size_t)s->n_layers, sizeof *c->tmp);
    if (!c->ls || !c->scratch || !c->blk || !c->n_blk || !c->tmp ||
        kv_pfx_create(s->pool, s->n_layers, page_elems(c) * sizeof(uint16_t), KV_PAGE,
                      kv_pfx_seed("plain"), &c->pfx)) {
        fp16_destroy(c);
        return PV_ENOMEM;
    }
    c->kind = kva_pick(s->head_dim);
    return kv_create_with(&fp16_vt, c, s, out);
}
