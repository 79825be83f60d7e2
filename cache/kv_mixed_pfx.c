/* kv_mixed_pfx: automatic prefix caching for the mixed cache (every policy
 * but plain FP16), by snapshots.
 *
 * The plain cache shares its pages by reference because a page, once
 * written, never changes. The mixed cache's state does: every attend
 * updates the tracker state of every high-tier token, demotion compacts the
 * high tier and appends to the low tier's last page, the balance factors
 * follow the maxima until they freeze. What can be reused exactly is the
 * whole state of one sequence between two calls, when nothing is pending:
 * a *snapshot*. A snapshot is taken only when the sequence's length is a
 * multiple of KVMX_PFX_BLOCK (the engine ends a prefill call there) and is
 * named by the hash chain of its tokens (kv_prefix.h's kv_pfx_hash, seeded
 * by the policy's description), so lookup walks the prompt's chain block by
 * block exactly like the plain cache and takes the longest match.
 *
 * Attach copies the snapshot into the sequence (pages, counters, balance
 * factors): the sequence then owns its state and may demote, compress or
 * be reset freely, and the snapshot is never written after it was taken.
 * What attention reads after an attach is therefore the very bytes the
 * publishing sequence held at that length, and the attached sequence
 * computes exactly what the publisher would have computed had it been
 * given the same suffix (tests/cache/test_kv_prefix_mixed.c checks it bit
 * for bit). A fresh run differs from both only in where its prefill calls
 * ended (demotion runs at the end of each call; the tracker has seen
 * different queries by then), which `pivot eval --prefix-cached` measures.
 *
 * Snapshots are stored compressed (the policy's own records), so the same
 * bytes hold ~3x more prefixes than the plain cache for mikv; they are
 * never referenced by a running sequence (attach copies), so all of them
 * are evictable, least recently used first. Their pages come from the
 * cache's pool and are freed there.
 *
 * Threads: the decoder thread, between steps (like every bookkeeping call). */
#include <stdlib.h>
#include <string.h>

#include "kv_internal.h"
#include "kv_mixed_impl.h"
#include "kv_prefix.h"
#include "kv_tier.h"
#include "pverr.h"

typedef struct {
    int hi_n, lo_n, n_dropped, bal_frozen;
    int64_t steps;
    float *bal;   /* [3][hd] or NULL */
    uint8_t **pg; /* high-tier pages, then low-tier pages */
} snap_head;

typedef struct kvmx_snap kvmx_snap;
struct kvmx_snap {
    kvmx_snap *older, *newer; /* LRU: newest = used or made last */
    uint64_t hash;
    int n_tok;
    int owner; /* the sequence whose next publish_latest may replace it, or -1 */
    int32_t *tok;
    size_t bytes; /* pool bytes: pages and balance factors */
    snap_head *h; /* [n_layers][n_kv_heads] */
};

struct kvmx_pfx {
    uint64_t seed;
    kvmx_snap *oldest, *newest;
    long n;
    size_t bytes;
    uint64_t evictions;
    kvmx_snap **latest; /* [max_seqs] the last publish_latest of each sequence, or NULL */
};

static int pages_of(int n) { return (n + KVL_PAGE - 1) / KVL_PAGE; }

static void lru_unlink(kvmx_pfx *x, kvmx_snap *s) {
    if (s->older) s->older->newer = s->newer;
    else x->oldest = s->newer;
    if (s->newer) s->newer->older = s->older;
    else x->newest = s->older;
    s->older = s->newer = NULL;
}

static void lru_push_newest(kvmx_pfx *x, kvmx_snap *s) {
    s->older = x->newest;
    s->newer = NULL;
    if (x->newest) x->newest->newer = s;
    else x->oldest = s;
    x->newest = s;
}

/* No sequence may replace s any more (it was attached, evicted or replaced). */
static void disown(kvmx_pfx *x, kvmx_snap *s) {
    if (s->owner >= 0 && x->latest[s->owner] == s) x->latest[s->owner] = NULL;
    s->owner = -1;
}

void kvmx_pfx_forget(mixed_cache *c, int seq) {
    if (c->pfx && c->pfx->latest[seq]) disown(c->pfx, c->pfx->latest[seq]);
}

/* Frees a snapshot that is not (or no longer) in the LRU. */
static void snap_free(const mixed_cache *c, kvmx_snap *s) {
    if (!s) return;
    kv_pool *pool = c->s.pool;
    if (s->h)
        for (int i = 0, nh = c->s.n_layers * c->s.n_kv_heads; i < nh; i++) {
            snap_head *sh = &s->h[i];
            if (sh->pg) {
                int nhi = pages_of(sh->hi_n), nlo = pages_of(sh->lo_n);
                size_t lo_page = c->lo[i].page; /* lo is per (layer, head), as h */
                for (int p = 0; p < nhi + nlo; p++)
                    if (sh->pg[p]) kv_pool_free(pool, sh->pg[p], p < nhi ? c->hi_page : lo_page);
                free(sh->pg);
            }
            if (sh->bal) {
                kv_pool_uncharge(pool, c->bal_bytes);
                free(sh->bal);
            }
        }
    free(s->h);
    free(s->tok);
    free(s);
}

int kvmx_pfx_create(mixed_cache *c) {
    c->pfx = calloc(1, sizeof *c->pfx);
    if (!c->pfx) return PV_ENOMEM;
    if (!(c->pfx->latest = calloc((size_t)c->s.max_seqs, sizeof *c->pfx->latest))) {
        free(c->pfx);
        c->pfx = NULL;
        return PV_ENOMEM;
    }
    char key[KV_POLICY_DESC_MAX];
    kv_policy_describe(&c->p, key, sizeof key);
    c->pfx->seed = kv_pfx_seed(key);
    return PV_OK;
}

void kvmx_pfx_destroy(mixed_cache *c) {
    if (!c->pfx) return;
    kvmx_pfx_evict(c, SIZE_MAX);
    free(c->pfx->latest);
    free(c->pfx);
    c->pfx = NULL;
}

/* The chain's hash after each of the first nb blocks of tok: h[b] names
 * tok[0 .. (b+1)*KVMX_PFX_BLOCK). */
static void chain(uint64_t seed, const int32_t *tok, int nb, uint64_t *h) {
    uint64_t prev = seed;
    for (int b = 0; b < nb; b++) h[b] = prev = kv_pfx_hash(prev, tok + (size_t)b * KVMX_PFX_BLOCK, KVMX_PFX_BLOCK);
}

/* A sequence that holds nothing at all (the only one attach may fill). */
static int seq_empty(const mixed_cache *c, int seq) {
    for (int L = 0; L < c->s.n_layers; L++) {
        if (c->len[(size_t)seq * c->s.n_layers + L]) return 0;
        for (int h = 0; h < c->s.n_kv_heads; h++) {
            const head_t *hs = head(c, seq, L, h);
            if (hs->hi.n || hs->lo.n || hs->n_dropped || hs->n_pend || hs->steps) return 0;
        }
    }
    return 1;
}

/* The length of a sequence whose state may be published: every layer at
 * the same length, a whole number of blocks, nothing pending, the cache's
 * own policy (an elastic budget is not part of the name); else 0. */
static int publishable(const mixed_cache *c, int seq) {
    int len = c->len[(size_t)seq * c->s.n_layers];
    if (len <= 0 || len % KVMX_PFX_BLOCK || c->seq_budget[seq] > 0) return 0;
    for (int L = 0; L < c->s.n_layers; L++) {
        if (c->len[(size_t)seq * c->s.n_layers + L] != len) return 0;
        for (int h = 0; h < c->s.n_kv_heads; h++)
            if (head(c, seq, L, h)->n_pend) return 0;
    }
    return len;
}

static kvmx_snap *find(const mixed_cache *c, uint64_t hash, const int32_t *tok, int n_tok) {
    for (kvmx_snap *s = c->pfx->newest; s; s = s->older)
        if (s->hash == hash && s->n_tok == n_tok &&
            !memcmp(s->tok, tok, sizeof *tok * (size_t)n_tok))
            return s;
    return NULL;
}

/* Copies n pages of `bytes` each from src into fresh pool pages at dst. */
static int copy_pages(kv_pool *pool, uint8_t **dst, uint8_t *const *src, int n, size_t bytes,
                      size_t *acc) {
    for (int p = 0; p < n; p++) {
        if (!(dst[p] = kv_pool_alloc(pool, bytes))) return PV_ENOMEM;
        memcpy(dst[p], src[p], bytes);
        *acc += bytes;
    }
    return PV_OK;
}

/* A copy of balance factors, charged to the pool (and added to *acc). */
static int bal_dup(const mixed_cache *c, const float *src, float **dst, size_t *acc) {
    if (kv_pool_charge(c->s.pool, c->bal_bytes)) return PV_ENOMEM;
    if (!(*dst = malloc(c->bal_bytes))) {
        kv_pool_uncharge(c->s.pool, c->bal_bytes);
        return PV_ENOMEM;
    }
    memcpy(*dst, src, c->bal_bytes);
    *acc += c->bal_bytes;
    return PV_OK;
}

static int snap_head_take(const mixed_cache *c, const head_t *hs, snap_head *sh, size_t *acc) {
    sh->hi_n = hs->hi.n;
    sh->lo_n = hs->lo.n;
    sh->n_dropped = hs->n_dropped;
    sh->bal_frozen = hs->bal_frozen;
    sh->steps = hs->steps;
    int nhi = pages_of(hs->hi.n), nlo = pages_of(hs->lo.n);
    if (nhi > hs->hi.n_pages || nlo > hs->lo.n_pages) return PV_EINVAL; /* cannot happen */
    if (nhi + nlo && !(sh->pg = calloc((size_t)(nhi + nlo), sizeof *sh->pg))) return PV_ENOMEM;
    int rc = copy_pages(c->s.pool, sh->pg, hs->hi.pages, nhi, c->hi_page, acc);
    if (!rc) rc = copy_pages(c->s.pool, sh->pg + nhi, hs->lo.pages, nlo, lo_of(c, hs)->page, acc);
    if (rc) return rc;
    return hs->bal ? bal_dup(c, hs->bal, &sh->bal, acc) : PV_OK;
}

/* With publish_latest: frees the sequence's previous such snapshot when
 * the new one (its first len tokens, chain h) extends it, first, so that
 * the pool's free lists hand its pages to the copy that follows instead of
 * fresh memory (a decode snapshot of 2k mikv tokens was ~8 ms, mostly page
 * faults: docs/PERFORMANCE.md). Should the copy then be refused, both are
 * gone: a cache entry lost, never a sequence's state. */
static void replace_latest(mixed_cache *c, int seq, const uint64_t *h, const int32_t *tok, int len) {
    kvmx_pfx *x = c->pfx;
    kvmx_snap *o = x->latest[seq];
    if (!o || o->n_tok >= len || h[o->n_tok / KVMX_PFX_BLOCK - 1] != o->hash ||
        memcmp(o->tok, tok, sizeof *tok * (size_t)o->n_tok))
        return;
    disown(x, o);
    lru_unlink(x, o);
    x->n--;
    x->bytes -= o->bytes;
    snap_free(c, o);
}

int kvmx_pfx_publish(void *impl, int seq, const int32_t *tok, int n, int latest) {
    mixed_cache *c = impl;
    kvmx_pfx *x = c->pfx;
    int len = publishable(c, seq);
    if (!len || n < len) return 0; /* not at a block boundary between calls */
    int nb = len / KVMX_PFX_BLOCK;
    uint64_t *h = malloc(sizeof *h * (size_t)nb);
    if (!h) return PV_ENOMEM;
    chain(x->seed, tok, nb, h);
    uint64_t hash = h[nb - 1];
    kvmx_snap *s = find(c, hash, tok, len);
    if (s) { /* the same prefix again: it is the newest now */
        free(h);
        if (!latest) disown(x, s); /* published plainly too: never replaced */
        lru_unlink(x, s);
        lru_push_newest(x, s);
        return len;
    }
    if (latest) replace_latest(c, seq, h, tok, len);
    free(h);
    int nh = c->s.n_layers * c->s.n_kv_heads;
    s = calloc(1, sizeof *s);
    if (!s || !(s->tok = malloc(sizeof *tok * (size_t)len)) || !(s->h = calloc((size_t)nh, sizeof *s->h))) {
        snap_free(c, s);
        return PV_ENOMEM;
    }
    memcpy(s->tok, tok, sizeof *tok * (size_t)len);
    s->hash = hash;
    s->n_tok = len;
    s->owner = -1;
    for (int L = 0; L < c->s.n_layers; L++)
        for (int hh = 0; hh < c->s.n_kv_heads; hh++) {
            int rc = snap_head_take(c, head(c, seq, L, hh), &s->h[L * c->s.n_kv_heads + hh],
                                    &s->bytes);
            if (rc) {
                snap_free(c, s);
                return rc;
            }
        }
    lru_push_newest(x, s);
    x->n++;
    x->bytes += s->bytes;
    if (latest) {
        s->owner = seq;
        x->latest[seq] = s;
    }
    return len;
}

/* Installs a snapshot head into an empty head of the sequence. */
static int head_install(const mixed_cache *c, const snap_head *sh, head_t *hs) {
    int nhi = pages_of(sh->hi_n), nlo = pages_of(sh->lo_n);
    int rc = kvmx_tier_reserve(c->s.pool, &hs->hi, sh->hi_n, c->hi_page, &hs->alloc);
    const size_t lo_page = lo_of(c, hs)->page;
    if (!rc) rc = kvmx_tier_reserve(c->s.pool, &hs->lo, sh->lo_n, lo_page, &hs->alloc);
    if (rc) return rc;
    for (int p = 0; p < nhi; p++) memcpy(hs->hi.pages[p], sh->pg[p], c->hi_page);
    for (int p = 0; p < nlo; p++) memcpy(hs->lo.pages[p], sh->pg[nhi + p], lo_page);
    if (sh->bal && (rc = bal_dup(c, sh->bal, &hs->bal, &hs->alloc))) return rc;
    hs->hi.n = sh->hi_n;
    hs->lo.n = sh->lo_n;
    hs->n_dropped = sh->n_dropped;
    hs->bal_frozen = sh->bal_frozen;
    hs->steps = sh->steps;
    return PV_OK;
}

int kvmx_pfx_attach(void *impl, int seq, const int32_t *tok, int n) {
    mixed_cache *c = impl;
    kvmx_pfx *x = c->pfx;
    if (!seq_empty(c, seq)) return PV_EINVAL;
    /* whole blocks only, and never the last token: its logits are wanted */
    int want = n > 0 ? (n - 1) / KVMX_PFX_BLOCK : 0;
    if (!want || !x->n) return 0;
    uint64_t *h = malloc(sizeof *h * (size_t)want);
    if (!h) return PV_ENOMEM;
    chain(x->seed, tok, want, h);
    kvmx_snap *best = NULL;
    for (kvmx_snap *s = x->newest; s; s = s->older) {
        int b = s->n_tok / KVMX_PFX_BLOCK;
        if (b > want || (best && s->n_tok <= best->n_tok) || s->hash != h[b - 1] ||
            memcmp(s->tok, tok, sizeof *tok * (size_t)s->n_tok))
            continue;
        best = s;
    }
    free(h);
    if (!best) return 0;
    for (int L = 0; L < c->s.n_layers; L++) {
        for (int hh = 0; hh < c->s.n_kv_heads; hh++) {
            int rc = head_install(c, &best->h[L * c->s.n_kv_heads + hh], head(c, seq, L, hh));
            if (rc) {
                kvmx_seq_reset(c, seq); /* nothing half-attached */
                return rc;
            }
        }
        c->len[(size_t)seq * c->s.n_layers + L] = best->n_tok;
    }
    disown(x, best); /* in use: the publisher's next snapshot must not replace it */
    lru_unlink(x, best);
    lru_push_newest(x, best);
    return best->n_tok;
}

int kvmx_pfx_match(const void *impl, int seq, const int32_t *tok, int n) {
    const mixed_cache *c = impl;
    (void)seq;
    int best = 0;
    for (const kvmx_snap *s = c->pfx->newest; s; s = s->older) {
        int m = s->n_tok < n - 1 ? s->n_tok : n - 1, i = 0;
        while (i < m && s->tok[i] == tok[i]) i++;
        i = i / KVMX_PFX_BLOCK * KVMX_PFX_BLOCK;
        if (i > best) best = i;
    }
    return best;
}

void kvmx_pfx_stats(const void *impl, kv_prefix_stats *st) {
    const mixed_cache *c = impl;
    st->bytes += c->pfx->bytes;
    st->bytes_evictable += c->pfx->bytes; /* attach copies: nothing is referenced */
    st->blocks += c->pfx->n;
    st->evictions += c->pfx->evictions;
    if (!st->block_tokens) st->block_tokens = KVMX_PFX_BLOCK;
}

size_t kvmx_pfx_evict(void *impl, size_t bytes) {
    mixed_cache *c = impl;
    kvmx_pfx *x = c->pfx;
    size_t freed = 0;
    while (x->oldest && freed < bytes) {
        kvmx_snap *s = x->oldest;
        lru_unlink(x, s);
        disown(x, s);
        freed += s->bytes;
        x->bytes -= s->bytes;
        x->n--;
        x->evictions++;
        snap_free(c, s);
    }
    return freed;
}
