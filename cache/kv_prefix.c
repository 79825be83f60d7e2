/* kv_prefix: hash-chained prefix blocks, reference counts and an LRU. */
#include "kv_prefix.h"

#include <stdlib.h>
#include <string.h>

#include "pverr.h"

struct kv_pfx_blk {
    uint64_t hash;
    const kv_pfx_blk *parent; /* identity only (compared, never followed) */
    int refs;
    kv_pfx_blk *hnext;             /* hash bucket chain */
    kv_pfx_blk *lru_prev, *lru_next; /* while refs == 0 */
    int32_t *tok;  /* [block_tokens], compared on lookup */
    void **pages;  /* [n_pages] */
    /* the tail: tokens some sequence stored after this block without
     * filling the next one, and copies of their pages (NULL: none) */
    int tail_n;
    int32_t *tail_tok; /* [block_tokens] */
    void **tail_pages; /* [n_pages] */
};

struct kv_pfx {
    kv_pool *pool;
    int n_pages, block_tokens;
    size_t page_bytes;
    uint64_t seed;
    kv_pfx_blk **bucket;
    size_t n_bucket, n_blk, n_ref;
    size_t n_tail; /* blocks with a tail (never referenced: attach copies it) */
    kv_pfx_blk *lru_head, *lru_tail; /* head: released longest ago (evicted first) */
    uint64_t evictions;
};

/* splitmix64's finalizer: every input bit reaches every output bit. */
static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t kv_pfx_hash(uint64_t prev, const int32_t *tok, int n) {
    uint64_t h = mix(prev ^ 0x9e3779b97f4a7c15ull);
    for (int i = 0; i < n; i++) h = mix(h ^ (uint64_t)(uint32_t)tok[i] ^ ((uint64_t)i << 32));
    return mix(h ^ (uint64_t)n);
}

uint64_t kv_pfx_seed(const char *key) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over the description, then mixed */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    return mix(h);
}

uint64_t kv_pfx_root(const kv_pfx *x) { return x->seed; }

int kv_pfx_create(kv_pool *pool, int n_pages, size_t page_bytes, int block_tokens, uint64_t seed,
                  kv_pfx **out) {
    *out = NULL;
    if (n_pages <= 0 || !page_bytes || block_tokens <= 0) return PV_EINVAL;
    kv_pfx *x = calloc(1, sizeof *x);
    if (!x) return PV_ENOMEM;
    x->n_bucket = 256;
    if (!(x->bucket = calloc(x->n_bucket, sizeof *x->bucket))) {
        free(x);
        return PV_ENOMEM;
    }
    x->pool = pool;
    x->n_pages = n_pages;
    x->page_bytes = page_bytes;
    x->block_tokens = block_tokens;
    x->seed = seed;
    *out = x;
    return PV_OK;
}

static void lru_unlink(kv_pfx *x, kv_pfx_blk *b) {
    if (b->lru_prev) b->lru_prev->lru_next = b->lru_next;
    else x->lru_head = b->lru_next;
    if (b->lru_next) b->lru_next->lru_prev = b->lru_prev;
    else x->lru_tail = b->lru_prev;
    b->lru_prev = b->lru_next = NULL;
}

static void lru_push(kv_pfx *x, kv_pfx_blk *b) {
    b->lru_next = NULL;
    b->lru_prev = x->lru_tail;
    if (x->lru_tail) x->lru_tail->lru_next = b;
    else x->lru_head = b;
    x->lru_tail = b;
}

static void pages_free(kv_pfx *x, void **pages, int n) {
    for (int i = 0; i < n; i++) kv_pool_free(x->pool, pages[i], x->page_bytes);
}

/* Frees b's tail, if it has one (the block stays). */
static void tail_drop(kv_pfx *x, kv_pfx_blk *b) {
    if (!b->tail_pages) return;
    pages_free(x, b->tail_pages, x->n_pages);
    free(b->tail_pages);
    free(b->tail_tok);
    b->tail_pages = NULL;
    b->tail_tok = NULL;
    b->tail_n = 0;
    x->n_tail--;
}

static void blk_free(kv_pfx *x, kv_pfx_blk *b) {
    tail_drop(x, b);
    pages_free(x, b->pages, x->n_pages);
    free(b->pages);
    free(b->tok);
    free(b);
}

void kv_pfx_destroy(kv_pfx *x) {
    if (!x) return;
    for (size_t i = 0; i < x->n_bucket; i++)
        for (kv_pfx_blk *b = x->bucket[i], *nx; b; b = nx) {
            nx = b->hnext;
            blk_free(x, b);
        }
    free(x->bucket);
    free(x);
}

static kv_pfx_blk **slot_of(kv_pfx *x, uint64_t h) { return &x->bucket[h & (x->n_bucket - 1)]; }

static kv_pfx_blk *find(kv_pfx *x, uint64_t h, const kv_pfx_blk *parent, const int32_t *tok) {
    for (kv_pfx_blk *b = *slot_of(x, h); b; b = b->hnext)
        if (b->hash == h && b->parent == parent &&
            !memcmp(b->tok, tok, sizeof *tok * (size_t)x->block_tokens))
            return b;
    return NULL;
}

static void take_ref(kv_pfx *x, kv_pfx_blk *b) {
    if (b->refs++ == 0) {
        lru_unlink(x, b);
        x->n_ref++;
    }
}

static uint64_t chain(const kv_pfx *x, const kv_pfx_blk *prev, const int32_t *tok) {
    return kv_pfx_hash(prev ? prev->hash : x->seed, tok, x->block_tokens);
}

kv_pfx_blk *kv_pfx_get(kv_pfx *x, const kv_pfx_blk *prev, const int32_t *tok) {
    kv_pfx_blk *b = find(x, chain(x, prev, tok), prev, tok);
    if (b) take_ref(x, b);
    return b;
}

/* Doubles the buckets when blocks outnumber them (a failed grow only
 * lengthens chains). */
static void grow(kv_pfx *x) {
    if (x->n_blk < x->n_bucket) return;
    size_t n = x->n_bucket * 2;
    kv_pfx_blk **nb = calloc(n, sizeof *nb);
    if (!nb) return;
    for (size_t i = 0; i < x->n_bucket; i++)
        for (kv_pfx_blk *b = x->bucket[i], *nx; b; b = nx) {
            nx = b->hnext;
            b->hnext = nb[b->hash & (n - 1)];
            nb[b->hash & (n - 1)] = b;
        }
    free(x->bucket);
    x->bucket = nb;
    x->n_bucket = n;
}

kv_pfx_blk *kv_pfx_put(kv_pfx *x, const kv_pfx_blk *prev, const int32_t *tok, void *const *pages,
                       int *dup) {
    *dup = 0;
    uint64_t h = chain(x, prev, tok);
    kv_pfx_blk *b = find(x, h, prev, tok);
    if (b) {
        take_ref(x, b);
        *dup = 1;
        return b;
    }
    b = calloc(1, sizeof *b);
    if (!b || !(b->tok = malloc(sizeof *tok * (size_t)x->block_tokens)) ||
        !(b->pages = malloc(sizeof *b->pages * (size_t)x->n_pages))) {
        if (b) free(b->tok);
        free(b);
        return NULL;
    }
    memcpy(b->tok, tok, sizeof *tok * (size_t)x->block_tokens);
    memcpy(b->pages, pages, sizeof *pages * (size_t)x->n_pages);
    b->hash = h;
    b->parent = prev;
    b->refs = 1;
    grow(x);
    kv_pfx_blk **s = slot_of(x, h);
    b->hnext = *s;
    *s = b;
    x->n_blk++;
    x->n_ref++;
    return b;
}

void kv_pfx_unref(kv_pfx *x, kv_pfx_blk *b) {
    if (--b->refs == 0) {
        x->n_ref--;
        lru_push(x, b);
    }
}

int kv_pfx_set_tail(kv_pfx *x, kv_pfx_blk *b, const int32_t *tok, int n, void *const *pages) {
    if (n <= 0 || n >= x->block_tokens) return PV_EINVAL;
    if (!b->tail_pages) { /* pages of its own, kept for the next tail */
        void **tp = calloc((size_t)x->n_pages, sizeof *tp);
        int32_t *tt = malloc(sizeof *tt * (size_t)x->block_tokens);
        int i = 0;
        if (tp && tt)
            for (; i < x->n_pages; i++)
                if (!(tp[i] = kv_pool_alloc(x->pool, x->page_bytes))) break;
        if (!tp || !tt || i < x->n_pages) {
            if (tp) pages_free(x, tp, i);
            free(tp);
            free(tt);
            return PV_ENOMEM;
        }
        b->tail_pages = tp;
        b->tail_tok = tt;
        x->n_tail++;
    }
    for (int i = 0; i < x->n_pages; i++) memcpy(b->tail_pages[i], pages[i], x->page_bytes);
    memcpy(b->tail_tok, tok, sizeof *tok * (size_t)n);
    b->tail_n = n;
    return PV_OK;
}

int kv_pfx_tail_match(const kv_pfx_blk *b, const int32_t *tok, int n) {
    if (!b->tail_pages) return 0;
    int m = n < b->tail_n ? n : b->tail_n, i = 0;
    while (i < m && b->tail_tok[i] == tok[i]) i++;
    return i;
}

const void *kv_pfx_tail_page(const kv_pfx_blk *b, int i) { return b->tail_pages[i]; }

void *kv_pfx_page(const kv_pfx_blk *b, int i) { return b->pages[i]; }
int kv_pfx_refs(const kv_pfx_blk *b) { return b->refs; }

/* Unlinks b (unreferenced, in the LRU) from the index and frees it. A
 * cached child of b then can no longer be found (lookups walk the chain
 * from its start) and ages out of the LRU in turn; its parent pointer is
 * never followed, so it does not dangle in any harmful way, and a new
 * block at b's address cannot be taken for its parent: the hash differs
 * unless the tokens (and the chain before them) are the same. */
static void evict_one(kv_pfx *x, kv_pfx_blk *b) {
    lru_unlink(x, b);
    kv_pfx_blk **pp = slot_of(x, b->hash);
    while (*pp != b) pp = &(*pp)->hnext;
    *pp = b->hnext;
    x->n_blk--;
    x->evictions++;
    blk_free(x, b);
}

size_t kv_pfx_evict(kv_pfx *x, size_t bytes) {
    size_t freed = 0, per = x->page_bytes * (size_t)x->n_pages;
    while (freed < bytes && x->lru_head) {
        freed += per * (x->lru_head->tail_pages ? 2 : 1);
        evict_one(x, x->lru_head);
    }
    /* then the tails of blocks in use: only ever copied, so free to go */
    for (size_t i = 0; i < x->n_bucket && freed < bytes && x->n_tail; i++)
        for (kv_pfx_blk *b = x->bucket[i]; b && freed < bytes; b = b->hnext)
            if (b->tail_pages) {
                tail_drop(x, b);
                freed += per;
            }
    return freed;
}

void kv_pfx_add_stats(const kv_pfx *x, kv_prefix_stats *st) {
    size_t per = x->page_bytes * (size_t)x->n_pages;
    /* a tail counts as one more block (its pages are a block's), never in
     * use (attach copies it), so always evictable */
    size_t n = x->n_blk + x->n_tail, r = x->n_ref;
    st->blocks += (long)n;
    st->blocks_referenced += (long)r;
    st->bytes += n * per;
    st->bytes_referenced += r * per;
    st->bytes_evictable += (n - r) * per;
    st->evictions += x->evictions;
    if (!st->block_tokens) st->block_tokens = x->block_tokens;
}
