/* kv_mixed: the importance-aware KV cache.
 *
 * Per (sequence, layer, KV head) two tiers of pages (layout in kv_layout.h):
 * the high tier (FP16, or INT8 with balanced keys) sorted by position, and
 * the low tier (INT4/INT2) in demotion order. Dropped tokens are counted
 * only. Every token keeps its original position; causal masking compares
 * positions, nothing is ever renumbered.
 *
 * Flow of one forward step for one layer:
 *   store   (decoder thread)  copies the new keys/values of every head into
 *           that head's pending buffer. Nothing is encoded yet because INT8
 *           keys need the balance factors, which need the queries, which
 *           only attend sees.
 *   attend  (one task per (seq, KV head), in parallel) folds the queries
 *           and keys into the balance statistics, encodes the pending
 *           tokens into the high tier, runs attention for the gq query heads
 *           over both tiers (records are dequantized inside the dot and
 *           axpy loops), feeds the averaged probabilities to the tracker,
 *           and finally demotes a chunk when the high tier is over budget.
 * An attend task touches only its own head's state and the scratch of its
 * thread index, which is what makes the parallel tasks safe. Demotion
 * counts depend only on lengths and the policy, so every head of every
 * layer holds the same number of high and low tokens (rectangular storage);
 * only which positions sit where differs per head. */
#include "kv_mixed.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv_internal.h"
#include "kv_layout.h"
#include "kv_mixed_blk.h"
#include "kv_pool.h"
#include "kv_quant.h"
#include "kv_tracker.h"
#include "pverr.h"

typedef struct {
    uint8_t **pages;
    int n_pages;
    int cap_pages; /* entries of `pages`, kept across resets and trims: a slot
                    * reused with pooled pages then allocates nothing */
    int n; /* tokens */
} tier;

/* Record sizes of one tier's pages: keys and values may differ in width
 * (the low tier's lo_bits/lo_v_bits), sb is the tracker state per token. */
typedef struct {
    size_t krec, vrec, sb;
} tfmt;

typedef struct {
    tier hi, lo;
    int n_dropped;
    int64_t steps;      /* queries served (tracker clock) */
    int32_t lo_max_pos; /* newest position in the low tier (-1: empty) */
    float *bal;         /* [3][hd] factors b, running max|q|, max|k|; NULL until needed */
    int bal_frozen;
    float *pend; /* [n_pend][2][hd] keys, values stored but not yet encoded:
                  * this head's slot of the cache's one-token arena while
                  * n_pend <= 1 (decode), a heap buffer beyond (prompts) */
    int n_pend, pend_pos0;
    int pend_cap;  /* tokens `pend` holds; 0 when NULL */
    int pend_heap; /* pend is a heap buffer (freed when encoded) */
    /* Bytes this head holds, counted where memory is obtained and released:
     * the accounting test checks kv_seq_usage (computed from counts) against
     * it. */
    size_t alloc;
} head_t;

typedef struct {
    kv_shape s;
    kv_policy p;
    int gq; /* query heads per KV head */
    tfmt fhi, flo;
    size_t hi_page, lo_page;
    kvq_kernels khi, klo, klov; /* high tier; low-tier keys, low-tier values */
    int need_bal;
    int *len;      /* [max_seqs][n_layers] tokens stored */
    head_t *heads; /* [max_seqs][n_layers][n_kv_heads] */
    uint8_t *scratch;
    size_t scratch_per; /* bytes per thread */
    float *pend1; /* [max_seqs][n_layers][n_kv_heads][2][hd]: one pending token
                   * per head, so a decode step stores without malloc */
    int blk_q;    /* queries per block for kv_mixed_blk (prompt chunks); 0: off */
} mixed_cache;

/* ---- tiers ---------------------------------------------------------------- */

/* A page: KVL_PAGE key records, KVL_PAGE value records, KVL_PAGE int32
 * positions, then (high tier) KVL_PAGE tracker states. Records of one kind
 * are contiguous so the run kernels stream a page's keys or values. */
static uint8_t *t_k(const tier *t, const tfmt *f, int i) {
    return t->pages[i / KVL_PAGE] + (size_t)(i % KVL_PAGE) * f->krec;
}
static uint8_t *t_v(const tier *t, const tfmt *f, int i) {
    return t->pages[i / KVL_PAGE] + (size_t)KVL_PAGE * f->krec + (size_t)(i % KVL_PAGE) * f->vrec;
}
static int32_t *t_pos(const tier *t, const tfmt *f, int i) {
    return (int32_t *)(void *)(t->pages[i / KVL_PAGE] + (size_t)KVL_PAGE * (f->krec + f->vrec)) +
           i % KVL_PAGE;
}
static uint8_t *t_state(const tier *t, const tfmt *f, int i) {
    return t->pages[i / KVL_PAGE] + (size_t)KVL_PAGE * (f->krec + f->vrec) + 4 * KVL_PAGE +
           (size_t)(i % KVL_PAGE) * f->sb;
}

/* Pages come from the shape's pool (kv_pool.h), which may refuse: PV_ENOMEM. */
static int tier_reserve(kv_pool *pool, tier *t, int n_total, size_t page_bytes, size_t *alloc) {
    int need = (n_total + KVL_PAGE - 1) / KVL_PAGE;
    if (need <= t->n_pages) return PV_OK;
    if (need > t->cap_pages) {
        int cap = t->cap_pages * 2 > need ? t->cap_pages * 2 : need;
        uint8_t **np = realloc(t->pages, sizeof *np * (size_t)cap);
        if (!np) return PV_ENOMEM;
        t->pages = np;
        t->cap_pages = cap;
    }
    for (; t->n_pages < need; t->n_pages++)
        if (!(t->pages[t->n_pages] = kv_pool_alloc(pool, page_bytes))) return PV_ENOMEM;
        else *alloc += page_bytes;
    return PV_OK;
}

/* Frees pages no token uses any more (after demotion shrank the tier), so
 * that reported bytes follow the tier's size. */
static void tier_trim(kv_pool *pool, tier *t, size_t page_bytes, size_t *alloc) {
    int need = (t->n + KVL_PAGE - 1) / KVL_PAGE;
    for (; t->n_pages > need; *alloc -= page_bytes)
        kv_pool_free(pool, t->pages[--t->n_pages], page_bytes);
}

/* Returns every page; the page table stays for the slot's next sequence. */
static void tier_release(kv_pool *pool, tier *t, size_t page_bytes) {
    for (int i = 0; i < t->n_pages; i++) kv_pool_free(pool, t->pages[i], page_bytes);
    t->n_pages = 0;
    t->n = 0;
}

/* ---- helpers -------------------------------------------------------------- */

static head_t *head(const mixed_cache *c, int seq, int layer, int h) {
    return &c->heads[((size_t)seq * c->s.n_layers + layer) * c->s.n_kv_heads + h];
}

static void pend_release(head_t *hs) {
    if (hs->pend_heap) free(hs->pend);
    hs->pend = NULL;
    hs->pend_cap = hs->pend_heap = hs->n_pend = 0;
}

static void head_reset(const mixed_cache *c, head_t *hs) {
    kv_pool *pool = c->s.pool;
    tier_release(pool, &hs->hi, c->hi_page);
    tier_release(pool, &hs->lo, c->lo_page);
    if (hs->bal) kv_pool_uncharge(pool, (size_t)3 * c->s.head_dim * sizeof(float));
    kv_pool_uncharge(pool, sizeof(float) * 2 * c->s.head_dim * (size_t)hs->n_pend);
    free(hs->bal);
    pend_release(hs);
    tier hi = hs->hi, lo = hs->lo; /* keep the page tables */
    memset(hs, 0, sizeof *hs);
    hs->hi = hi;
    hs->lo = lo;
    hs->lo_max_pos = -1;
}

/* Room for `need` pending tokens: the head's arena slot for one, a heap
 * buffer (keeping what is pending) beyond. */
static int pend_reserve(const mixed_cache *c, head_t *hs, int need) {
    size_t tok = sizeof(float) * 2 * (size_t)c->s.head_dim;
    if (need <= hs->pend_cap) return PV_OK;
    if (need == 1) {
        hs->pend = c->pend1 + (size_t)(hs - c->heads) * 2 * c->s.head_dim;
        hs->pend_cap = 1;
        return PV_OK;
    }
    float *np = hs->pend_heap ? realloc(hs->pend, tok * (size_t)need) : malloc(tok * (size_t)need);
    if (!np) return PV_ENOMEM;
    if (!hs->pend_heap && hs->n_pend) memcpy(np, hs->pend, tok * (size_t)hs->n_pend);
    hs->pend = np;
    hs->pend_cap = need;
    hs->pend_heap = 1;
    return PV_OK;
}

/* b = sqrt(max|q| / max|k|) per channel, from what was seen so far (the
 * prompt, in practice: the first quantized encode happens at the end of the
 * prefill or at its first chunk). A channel never seen keeps b = 1. */
static void bal_freeze(head_t *hs, int hd) {
    float *b = hs->bal, *qm = hs->bal + hd, *km = hs->bal + 2 * hd;
    for (int i = 0; i < hd; i++) {
        float r = qm[i] > 0 && km[i] > 0 ? sqrtf(qm[i] / km[i]) : 1.0f;
        b[i] = isfinite(r) && r > 0 ? r : 1.0f;
    }
    hs->bal_frozen = 1;
}

/* Slot of the first high token with position > p (the tier is sorted). */
static int hi_visible(const tier *t, const tfmt *rec, int p) {
    int lo = 0, hi = t->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (*t_pos(t, rec, mid) <= p) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

typedef struct {
    float *sc;   /* [gq][max_ctx] scores, then probabilities */
    float *qb;   /* [gq][hd] balanced queries */
    float *tmp;  /* [2][hd] a decoded record / dot results */
    int *cand;   /* [max_ctx] */
    float *csc;  /* [max_ctx] */
    int32_t *cpos;
    int *vict;
    void *pick;  /* [max_ctx] x 16 bytes */
    kvq_qprep qp; /* the query prepared for the low tier's run kernels */
    /* block attention (kv_mixed_blk.h), when c->blk_q */
    float *pt;      /* [max_ctx][KVB_MAX_ROWS] probabilities, token-major */
    float *qt;      /* [2][hd][KVB_MAX_ROWS] queries transposed (high, low tier) */
    float *kf;      /* [KVL_PAGE][hd] decoded records */
    int32_t *lim;   /* [KVB_MAX_ROWS] */
    float **outp;   /* [KVB_MAX_ROWS] */
} scratch_t;

static size_t blk_bytes(const kv_shape *s) {
    size_t M = (size_t)s->max_ctx, hd = (size_t)s->head_dim, R = KVB_MAX_ROWS;
    return sizeof(float) * (M * R + 2 * hd * R + KVL_PAGE * hd) + R * (sizeof(int32_t) + sizeof(float *)) + 64;
}

static size_t scratch_bytes(const kv_shape *s, int gq, int blk) {
    size_t M = (size_t)s->max_ctx, hd = (size_t)s->head_dim;
    return sizeof(float) * (gq * M + gq * hd + 2 * hd + (gq > 2 ? gq : 2)) + M * (4 + 4 + 4 + 4 + 16) +
           64 + kvq_qprep_bytes(gq, s->head_dim, 8) + (blk ? blk_bytes(s) : 0);
}

static scratch_t scratch_for(const mixed_cache *c, int thread) {
    uint8_t *b = c->scratch + (size_t)thread * c->scratch_per;
    size_t M = (size_t)c->s.max_ctx, hd = (size_t)c->s.head_dim;
    scratch_t s;
    s.pick = b; /* 16-byte entries first, for alignment */
    b += M * 16;
    s.sc = (float *)(void *)b;
    s.qb = s.sc + c->gq * M;
    s.tmp = s.qb + c->gq * hd;
    s.csc = s.tmp + 2 * hd + (c->gq > 2 ? c->gq : 2);
    s.cand = (int *)(void *)(s.csc + M);
    s.cpos = (int32_t *)(s.cand + M);
    s.vict = (int *)(s.cpos + M);
    uintptr_t qm = ((uintptr_t)(s.vict + M) + 31) & ~(uintptr_t)31;
    kvq_qprep_init(&s.qp, (void *)qm, c->gq, c->s.head_dim, c->p.group);
    if (c->blk_q) {
        uintptr_t bm = (qm + kvq_qprep_bytes(c->gq, c->s.head_dim, 8) + 63) & ~(uintptr_t)63;
        s.pt = (float *)bm;
        s.qt = s.pt + M * KVB_MAX_ROWS;
        s.kf = s.qt + 2 * hd * KVB_MAX_ROWS;
        s.lim = (int32_t *)(s.kf + KVL_PAGE * hd);
        s.outp = (float **)(void *)(s.lim + KVB_MAX_ROWS);
    }
    return s;
}

/* ---- store ---------------------------------------------------------------- */

static int mx_store(void *impl, int seq, int layer, int pos0, int n, const float *k,
                    const float *v) {
    mixed_cache *c = impl;
    int *len = &c->len[(size_t)seq * c->s.n_layers + layer];
    if (pos0 != *len || n < 0) return PV_EINVAL; /* contiguous, like the plain cache */
    if ((long)pos0 + n > c->s.max_ctx) return PV_ECTXFULL;
    if (n == 0) return PV_OK;
    int hd = c->s.head_dim, nkv = c->s.n_kv_heads;
    /* The pending copies count in the pool (and in bytes_stored) until
     * attend encodes them; charged for every head at once so a refusal
     * leaves nothing half-stored. */
    size_t per = sizeof(float) * 2 * hd * (size_t)n;
    if (kv_pool_charge(c->s.pool, per * nkv)) return PV_ENOMEM;
    for (int h = 0; h < nkv; h++) {
        head_t *hs = head(c, seq, layer, h);
        if (pend_reserve(c, hs, hs->n_pend + n)) {
            kv_pool_uncharge(c->s.pool, per * (size_t)(nkv - h));
            return PV_ENOMEM;
        }
        float *np = hs->pend;
        hs->alloc += sizeof(float) * 2 * hd * (size_t)n;
        if (hs->n_pend == 0) hs->pend_pos0 = pos0;
        for (int i = 0; i < n; i++) {
            float *dst = np + (size_t)(hs->n_pend + i) * 2 * hd;
            memcpy(dst, k + ((size_t)i * nkv + h) * hd, sizeof(float) * hd);
            memcpy(dst + hd, v + ((size_t)i * nkv + h) * hd, sizeof(float) * hd);
        }
        hs->n_pend += n;
    }
    *len += n;
    return PV_OK;
}

/* ---- attend --------------------------------------------------------------- */

/* Folds this call's queries and the pending keys into the running maxima
 * the balance factors come from; freezes them when INT8 keys need them now. */
static int bal_observe(const mixed_cache *c, head_t *hs, const float *q, int n, int kvh) {
    int hd = c->s.head_dim, nh = c->s.n_heads;
    if (!c->need_bal || hs->bal_frozen) return PV_OK;
    if (!hs->bal) {
        if (kv_pool_charge(c->s.pool, (size_t)3 * hd * sizeof(float))) return PV_ENOMEM;
        if (!(hs->bal = calloc((size_t)3 * hd, sizeof(float)))) {
            kv_pool_uncharge(c->s.pool, (size_t)3 * hd * sizeof(float));
            return PV_ENOMEM;
        }
        hs->alloc += (size_t)3 * hd * sizeof(float);
    }
    float *qm = hs->bal + hd, *km = hs->bal + 2 * hd;
    for (int i = 0; i < n; i++)
        for (int g = 0; g < c->gq; g++) {
            const float *qv = q + ((size_t)i * nh + (size_t)kvh * c->gq + g) * hd;
            for (int d = 0; d < hd; d++)
                if (fabsf(qv[d]) > qm[d]) qm[d] = fabsf(qv[d]);
        }
    for (int j = 0; j < hs->n_pend; j++) {
        const float *kv = hs->pend + (size_t)j * 2 * hd;
        for (int d = 0; d < hd; d++)
            if (fabsf(kv[d]) > km[d]) km[d] = fabsf(kv[d]);
    }
    if (c->p.hi_bits == 8) bal_freeze(hs, hd);
    return PV_OK;
}

/* Moves the pending tokens into the high tier. pos0: position of the first
 * query of this call (tracker clock: a token is first seen by the query at
 * its own position). */
static int encode_pending(const mixed_cache *c, head_t *hs, int pos0, float *tmp) {
    if (!hs->n_pend) return PV_OK;
    int hd = c->s.head_dim, rc = tier_reserve(c->s.pool, &hs->hi, hs->hi.n + hs->n_pend, c->hi_page, &hs->alloc);
    if (rc) return rc;
    for (int j = 0; j < hs->n_pend; j++) {
        const float *kv = hs->pend + (size_t)j * 2 * hd;
        int slot = hs->hi.n++, pos = hs->pend_pos0 + j;
        const float *kk = kv;
        if (c->p.hi_bits == 8) { /* INT8 keys are stored balanced: K·b */
            for (int d = 0; d < hd; d++) tmp[d] = kv[d] * hs->bal[d];
            kk = tmp;
        }
        kvq_encode(kk, hd, c->p.hi_bits, c->p.group, t_k(&hs->hi, &c->fhi, slot));
        kvq_encode(kv + hd, hd, c->p.hi_bits, c->p.group, t_v(&hs->hi, &c->fhi, slot));
        *t_pos(&hs->hi, &c->fhi, slot) = pos;
        if (c->fhi.sb)
            kvt_init(c->p.select, t_state(&hs->hi, &c->fhi, slot),
                     hs->steps + (pos > pos0 ? pos - pos0 : 0));
    }
    kv_pool_uncharge(c->s.pool, sizeof(float) * 2 * hd * (size_t)hs->n_pend);
    hs->alloc -= sizeof(float) * 2 * hd * (size_t)hs->n_pend;
    pend_release(hs);
    return PV_OK;
}

/* When the high tier is over budget: demote a chunk of the lowest-ranked
 * unprotected tokens to the low tier (or drop them), keeping the high tier
 * sorted by position. */
static int demote(const mixed_cache *c, head_t *hs, int len, scratch_t *s) {
    const kv_policy *p = &c->p;
    int b = kvl_budget(p, len);
    if (b < 0 || hs->hi.n <= b) return PV_OK;
    /* From b+1 tokens, a chunk of m leaves b+1-m: chunk 1 slides the tier
     * one token per step, larger chunks amortize the scoring. */
    int target = b + 1 - kvl_chunk(p, b), hd = c->s.head_dim, nc = 0;
    for (int t = 0; t < hs->hi.n; t++) {
        int32_t pos = *t_pos(&hs->hi, &c->fhi, t);
        if (pos < p->sinks || pos >= (int64_t)len - p->recent) continue; /* protected */
        s->cand[nc] = t;
        s->cpos[nc] = pos;
        s->csc[nc] = c->fhi.sb ? kvt_demote_score(p->select,
                                                 t_state(&hs->hi, &c->fhi, t),
                                                 hs->steps)
                              : 0.0f;
        nc++;
    }
    int k = kvt_pick(s->cand, s->csc, s->cpos, nc, hs->hi.n - (target > 0 ? target : 0), s->vict,
                     s->pick);
    if (k == 0) return PV_OK;
    if (p->lo_bits) {
        if (c->need_bal && !hs->bal_frozen) bal_freeze(hs, hd);
        int rc = tier_reserve(c->s.pool, &hs->lo, hs->lo.n + k, c->lo_page, &hs->alloc);
        if (rc) return rc;
        for (int i = 0; i < k; i++) {
            int t = s->vict[i], slot = hs->lo.n++;
            float *x = s->tmp;
            kvq_decode(t_k(&hs->hi, &c->fhi, t), hd, p->hi_bits, p->group, x);
            /* FP16 high keys are raw; INT8 ones are balanced already. */
            if (c->need_bal && p->hi_bits == 16)
                for (int d = 0; d < hd; d++) x[d] *= hs->bal[d];
            kvq_encode(x, hd, p->lo_bits, p->group, t_k(&hs->lo, &c->flo, slot));
            kvq_decode(t_v(&hs->hi, &c->fhi, t), hd, p->hi_bits, p->group, x);
            kvq_encode(x, hd, kv_policy_lo_v_bits(p), p->group, t_v(&hs->lo, &c->flo, slot));
            int32_t pos = *t_pos(&hs->hi, &c->fhi, t);
            *t_pos(&hs->lo, &c->flo, slot) = pos;
            if (pos > hs->lo_max_pos) hs->lo_max_pos = pos;
        }
    } else {
        hs->n_dropped += k;
    }
    /* Stable compaction keeps positions sorted (binary search on masking). */
    int w = 0, vi = 0;
    for (int t = 0; t < hs->hi.n; t++) {
        if (vi < k && s->vict[vi] == t) {
            vi++;
            continue;
        }
        if (w != t) {
            memcpy(t_k(&hs->hi, &c->fhi, w), t_k(&hs->hi, &c->fhi, t), c->fhi.krec);
            memcpy(t_v(&hs->hi, &c->fhi, w), t_v(&hs->hi, &c->fhi, t), c->fhi.vrec);
            *t_pos(&hs->hi, &c->fhi, w) = *t_pos(&hs->hi, &c->fhi, t);
            if (c->fhi.sb)
                memcpy(t_state(&hs->hi, &c->fhi, w),
                       t_state(&hs->hi, &c->fhi, t), c->fhi.sb);
        }
        w++;
    }
    hs->hi.n = w;
    tier_trim(c->s.pool, &hs->hi, c->hi_page, &hs->alloc);
    return PV_OK;
}

/* Prompt chunks: blocks of queries through kv_mixed_blk, then the tracker
 * query by query, in the order the per-query loop below would observe. */
static void attend_blocks(const mixed_cache *c, head_t *hs, int kvh, int pos0, int n,
                          const float *q, float *out, scratch_t *s) {
    const int hd = c->s.head_dim, nh = c->s.n_heads, gq = c->gq;
    const kv_select sel = c->p.select;
    const int half = c->p.window / 2 > 0 ? c->p.window / 2 : 1;
    const tier *hi = &hs->hi, *lo = &hs->lo;
    const int bal_hi = hs->bal_frozen && c->p.hi_bits == 8, bal_lo = hs->bal_frozen;
    for (int i0 = 0; i0 < n; i0 += c->blk_q) {
        const int nq = n - i0 < c->blk_q ? n - i0 : c->blk_q, rows = nq * gq, rp = kvb_rpad(rows);
        float *qhi = s->qt, *qlo = s->qt + (size_t)hd * KVB_MAX_ROWS;
        for (int r = 0; r < rp; r++) {
            const float *qv = NULL;
            if (r < rows) {
                int i = i0 + r / gq;
                qv = q + ((size_t)i * nh + (size_t)kvh * gq + r % gq) * hd;
                s->lim[r] = pos0 + i;
                s->outp[r] = out + ((size_t)i * nh + (size_t)kvh * gq + r % gq) * hd;
            } else {
                s->lim[r] = INT32_MAX; /* padding: sees everything, output unused */
            }
            for (int d = 0; d < hd; d++) {
                float x = qv ? qv[d] : 0.0f;
                qhi[(size_t)d * rp + r] = bal_hi ? x / hs->bal[d] : x;
                qlo[(size_t)d * rp + r] = bal_lo ? x / hs->bal[d] : x;
            }
        }
        const int lo_n = c->p.lo_bits ? lo->n : 0;
        kvb_job j = {
            /* the high tier is sorted: past the block's last query nothing is visible */
            .tier = {{hi->pages, hi->n, c->p.hi_bits, c->p.hi_bits, c->fhi.krec, c->fhi.vrec, qhi,
                      hi_visible(hi, &c->fhi, pos0 + i0 + nq - 1)},
                     {lo->pages, lo_n, c->p.lo_bits, kv_policy_lo_v_bits(&c->p), c->flo.krec,
                      c->flo.vrec, qlo, lo_n}},
            .page = KVL_PAGE, .head_dim = hd, .group = c->p.group, .rows = rows, .rpad = rp,
            .lim = s->lim, .scale = 1.0f / sqrtf((float)hd), .pt = s->pt, .kf = s->kf,
            .out = s->outp};
        kvb_attend(&j);
        for (int qi = 0; qi < nq; qi++) {
            const int p = pos0 + i0 + qi, nhv = hi_visible(hi, &c->fhi, p);
            if (c->fhi.sb) {
                int n_vis = nhv;
                if (hs->lo_max_pos <= p) n_vis += lo->n;
                else
                    for (int t = 0; t < lo->n; t++) n_vis += *t_pos(lo, &c->flo, t) <= p;
                float thr = 1.0f / (float)n_vis;
                for (int t = 0; t < nhv; t++) {
                    float agg = 0.0f;
                    for (int g = 0; g < gq; g++) agg += s->pt[(size_t)t * rp + qi * gq + g];
                    kvt_observe(sel, t_state(hi, &c->fhi, t), agg / (float)gq, thr);
                }
            }
            hs->steps++;
            if (sel == KV_SELECT_PERSISTENCE && hs->steps % half == 0)
                for (int t = 0; t < hi->n; t++) kvt_rotate(sel, t_state(hi, &c->fhi, t));
        }
    }
}

static int mx_attend(void *impl, int seq, int layer, int kvh, int pos0, int n, const float *q,
                     float *out, int thread) {
    mixed_cache *c = impl;
    head_t *hs = head(c, seq, layer, kvh);
    int len = c->len[(size_t)seq * c->s.n_layers + layer];
    if (pos0 < 0 || n < 0 || (long)pos0 + n > len) return PV_EINVAL;
    scratch_t s = scratch_for(c, thread);
    int rc;
    if ((rc = bal_observe(c, hs, q, n, kvh))) return rc;
    if ((rc = encode_pending(c, hs, pos0, s.tmp))) return rc;
    if (c->blk_q && n > 1) {
        attend_blocks(c, hs, kvh, pos0, n, q, out, &s);
        return demote(c, hs, len, &s);
    }

    const int hd = c->s.head_dim, nh = c->s.n_heads, gq = c->gq, M = c->s.max_ctx;
    const float scale = 1.0f / sqrtf((float)hd);
    const kv_select sel = c->p.select;
    const int half = c->p.window / 2 > 0 ? c->p.window / 2 : 1;
    const tier *hi = &hs->hi, *lo = &hs->lo;
    float *dots = s.tmp, *a = s.tmp + hd, inv[16];
    float *invp = gq <= 16 ? inv : s.tmp + hd + gq; /* gq > 16 borrows scratch */
    for (int i = 0; i < n; i++) {
        const int p = pos0 + i;
        const float *qi = q + ((size_t)i * nh + (size_t)kvh * gq) * hd;
        float *oi = out + ((size_t)i * nh + (size_t)kvh * gq) * hd;
        const float *qhi = qi, *qlo = qi;
        if (hs->bal_frozen) { /* balanced keys meet Q/b */
            for (int g = 0; g < gq; g++)
                for (int d = 0; d < hd; d++)
                    s.qb[(size_t)g * hd + d] = qi[(size_t)g * hd + d] / hs->bal[d];
            qlo = s.qb;
            if (c->p.hi_bits == 8) qhi = s.qb;
        }
        const int nhv = hi_visible(hi, &c->fhi, p), nl = lo->n;
        const int lo_all = hs->lo_max_pos <= p;
        int n_vis = nhv;
        for (int t = 0; t < nhv; t++) {
            c->khi.dot(t_k(hi, &c->fhi, t), qhi, gq, hd, c->p.group, dots);
            for (int g = 0; g < gq; g++) s.sc[(size_t)g * M + t] = dots[g] * scale;
        }
        /* The low tier a page at a time through the run kernels. */
        if (nl && c->klo.wants_prep) kvq_prep(qlo, gq, hd, c->p.group, &s.qp);
        for (int t0 = 0; t0 < nl; t0 += KVL_PAGE)
            c->klo.dotn(t_k(lo, &c->flo, t0), c->flo.krec, nl - t0 < KVL_PAGE ? nl - t0 : KVL_PAGE,
                        qlo, &s.qp, gq, hd, c->p.group, s.sc + nhv + t0, M);
        if (c->blk_q) { /* AVX-512: the same steps 16 tokens at a time */
            for (int g = 0; g < gq; g++)
                for (int t0 = 0; t0 < nl; t0 += KVL_PAGE) {
                    int v = kvb_mask_scale(s.sc + (size_t)g * M + nhv + t0, t_pos(lo, &c->flo, t0),
                                           nl - t0 < KVL_PAGE ? nl - t0 : KVL_PAGE, lo_all ? INT32_MAX : p,
                                           scale);
                    n_vis += g == 0 ? v : 0;
                }
            for (int g = 0; g < gq; g++) invp[g] = kvb_exp_row(s.sc + (size_t)g * M, nhv + nl);
        } else {
            for (int t = 0; t < nl; t++) {
                int masked = !lo_all && *t_pos(lo, &c->flo, t) > p;
                n_vis += !masked;
                for (int g = 0; g < gq; g++) {
                    float *x = s.sc + (size_t)g * M + nhv + t;
                    *x = masked ? -INFINITY : *x * scale;
                }
            }
        }
        /* Softmax per query head (portable path: expf, double sum). */
        for (int g = 0; g < gq && !c->blk_q; g++) {
            float *sc = s.sc + (size_t)g * M, mx = -INFINITY;
            for (int t = 0; t < nhv + nl; t++)
                if (sc[t] > mx) mx = sc[t];
            double sum = 0.0;
            for (int t = 0; t < nhv + nl; t++) {
                sc[t] = expf(sc[t] - mx);
                sum += sc[t];
            }
            invp[g] = (float)(1.0 / sum);
        }
        memset(oi, 0, sizeof(float) * hd * gq);
        for (int t = 0; t < nhv; t++) {
            for (int g = 0; g < gq; g++) a[g] = s.sc[(size_t)g * M + t] * invp[g];
            c->khi.axpy(t_v(hi, &c->fhi, t), a, gq, hd, c->p.group, oi);
        }
        for (int g = 0; g < gq && nl; g++) /* probabilities in place (masked: 0) */
            if (c->blk_q) kvb_scale_row(s.sc + (size_t)g * M + nhv, nl, invp[g]);
            else
                for (int t = 0; t < nl; t++) s.sc[(size_t)g * M + nhv + t] *= invp[g];
        for (int t0 = 0; t0 < nl; t0 += KVL_PAGE)
            c->klov.axpyn(t_v(lo, &c->flo, t0), c->flo.vrec, nl - t0 < KVL_PAGE ? nl - t0 : KVL_PAGE,
                         s.sc + nhv + t0, M, gq, hd, c->p.group, oi);
        if (c->fhi.sb) { /* tracker: mean probability over the group's heads */
            float thr = 1.0f / (float)n_vis;
            for (int t = 0; t < nhv; t++) {
                float agg = 0.0f;
                for (int g = 0; g < gq; g++) agg += s.sc[(size_t)g * M + t] * invp[g];
                kvt_observe(sel, t_state(hi, &c->fhi, t), agg / (float)gq, thr);
            }
        }
        hs->steps++;
        if (sel == KV_SELECT_PERSISTENCE && hs->steps % half == 0)
            for (int t = 0; t < hi->n; t++) kvt_rotate(sel, t_state(hi, &c->fhi, t));
    }
    return demote(c, hs, len, &s);
}

/* ---- bookkeeping ---------------------------------------------------------- */

static void mx_seq_reset(void *impl, int seq) {
    mixed_cache *c = impl;
    for (int L = 0; L < c->s.n_layers; L++) {
        c->len[(size_t)seq * c->s.n_layers + L] = 0;
        for (int h = 0; h < c->s.n_kv_heads; h++) head_reset(c, head(c, seq, L, h));
    }
}

static int mx_seq_pos(const void *impl, int seq) {
    const mixed_cache *c = impl;
    return c->len[(size_t)seq * c->s.n_layers];
}

static void mx_seq_usage(const void *impl, int seq, kv_usage *u) {
    const mixed_cache *c = impl;
    size_t bytes = 0, hd = (size_t)c->s.head_dim;
    long hi = 0, lo = 0, dr = 0, nheads = (long)c->s.n_layers * c->s.n_kv_heads;
    for (int L = 0; L < c->s.n_layers; L++)
        for (int h = 0; h < c->s.n_kv_heads; h++) {
            const head_t *hs = head(c, seq, L, h);
            bytes += (size_t)hs->hi.n_pages * c->hi_page + (size_t)hs->lo.n_pages * c->lo_page;
            if (hs->bal) bytes += 3 * hd * sizeof(float);
            bytes += (size_t)hs->n_pend * 2 * hd * sizeof(float);
            hi += hs->hi.n + hs->n_pend;
            lo += hs->lo.n;
            dr += hs->n_dropped;
        }
    int n = c->len[(size_t)seq * c->s.n_layers];
    u->bytes_stored = bytes;
    u->bytes_fp16 = (size_t)n * c->s.n_layers * c->s.n_kv_heads * hd * 2 * 2;
    u->n_tokens = n;
    u->n_high = (int)(hi / nheads);
    u->n_low = (int)(lo / nheads);
    u->n_dropped = (int)(dr / nheads);
}

static void mx_destroy(void *impl) {
    mixed_cache *c = impl;
    if (!c) return;
    if (c->heads && c->len)
        for (int s = 0; s < c->s.max_seqs; s++) mx_seq_reset(c, s);
    if (c->heads)
        for (size_t i = 0, nh = (size_t)c->s.max_seqs * c->s.n_layers * c->s.n_kv_heads; i < nh;
             i++) {
            free(c->heads[i].hi.pages);
            free(c->heads[i].lo.pages);
        }
    free(c->heads);
    free(c->len);
    free(c->scratch);
    free(c->pend1);
    free(c);
}

static const kv_vtable mixed_vt = {
    .name = "mixed",
    .store = mx_store,
    .attend_group = mx_attend,
    .seq_reset = mx_seq_reset,
    .seq_pos = mx_seq_pos,
    .seq_usage = mx_seq_usage,
    .destroy = mx_destroy,
};

int kv_create_mixed_opt(const kv_shape *s, const kv_policy *p, int force_scalar, kv_cache **out) {
    *out = NULL;
    if (!s || !p || s->n_layers <= 0 || s->n_heads <= 0 || s->n_kv_heads <= 0 ||
        s->head_dim <= 0 || s->head_dim % 4 || s->n_heads % s->n_kv_heads || s->max_seqs <= 0 ||
        s->max_ctx <= 0 || s->n_threads <= 0 || p->group <= 0 || s->head_dim % p->group)
        return PV_EINVAL;
    mixed_cache *c = calloc(1, sizeof *c);
    if (!c) return PV_ENOMEM;
    c->s = *s;
    c->p = *p;
    c->gq = s->n_heads / s->n_kv_heads;
    c->fhi.krec = c->fhi.vrec = kvl_rec_bytes(p->hi_bits, s->head_dim, p->group);
    c->fhi.sb = kvl_state_bytes(p->select);
    if (p->lo_bits) {
        c->flo.krec = kvl_rec_bytes(p->lo_bits, s->head_dim, p->group);
        c->flo.vrec = kvl_rec_bytes(kv_policy_lo_v_bits(p), s->head_dim, p->group);
    }
    c->hi_page = KVL_PAGE * kvl_hi_token_bytes(p, s->head_dim);
    c->lo_page = KVL_PAGE * kvl_lo_token_bytes(p, s->head_dim);
    c->need_bal = kvl_needs_balance(p);
    kvq_kernels_for(p->hi_bits, s->head_dim, p->group, force_scalar, &c->khi);
    kvq_kernels_for(p->lo_bits ? p->lo_bits : 16, s->head_dim, p->group, force_scalar, &c->klo);
    kvq_kernels_for(p->lo_bits ? kv_policy_lo_v_bits(p) : 16, s->head_dim, p->group, force_scalar,
                    &c->klov);
    size_t nh = (size_t)s->max_seqs * s->n_layers * s->n_kv_heads;
    c->len = calloc((size_t)s->max_seqs * s->n_layers, sizeof *c->len);
    c->heads = calloc(nh, sizeof *c->heads);
    /* Prompt chunks take the block kernel: up to KVB_MAX_ROWS rows = blocks
     * of queries x the query heads of a KV head. */
    c->blk_q = !force_scalar && c->gq <= KVB_MAX_ROWS && kvb_available(s->head_dim)
                   ? KVB_MAX_ROWS / c->gq
                   : 0;
    if (c->blk_q && p->lo_bits) { /* decode: the AVX-512 run kernels where they apply */
        kvq_dotn_fn dn = kvq_avx512_dotn(p->lo_bits, s->head_dim, p->group);
        kvq_axpyn_fn an = kvq_avx512_axpyn(kv_policy_lo_v_bits(p), s->head_dim, p->group);
        if (dn) {
            c->klo.dotn = dn;
            c->klo.wants_prep = 1;
        }
        if (an) c->klov.axpyn = an;
    }
    c->scratch_per = (scratch_bytes(s, c->gq, c->blk_q > 0) + 63) & ~(size_t)63;
    c->scratch = malloc(c->scratch_per * s->n_threads);
    c->pend1 = malloc(sizeof(float) * 2 * (size_t)s->head_dim * nh);
    if (!c->len || !c->heads || !c->scratch || !c->pend1) {
        mx_destroy(c);
        return PV_ENOMEM;
    }
    for (size_t i = 0; i < nh; i++) c->heads[i].lo_max_pos = -1;
    return kv_create_with(&mixed_vt, c, s, out);
}

int kv_create_mixed(const kv_shape *s, const kv_policy *p, kv_cache **out) {
    return kv_create_mixed_opt(s, p, 0, out);
}

/* ---- inspection (tests, diagnostics) --------------------------------------- */

static const head_t *inspect_head(const kv_cache *kc, int seq, int layer, int h,
                                  const mixed_cache **cp) {
    if (!kc || kv_vt(kc) != &mixed_vt) return NULL;
    const mixed_cache *c = kv_impl(kc);
    if (seq < 0 || seq >= c->s.max_seqs || layer < 0 || layer >= c->s.n_layers || h < 0 ||
        h >= c->s.n_kv_heads)
        return NULL;
    *cp = c;
    return head(c, seq, layer, h);
}

int kv_mixed_head_info(const kv_cache *kc, int seq, int layer, int h, kv_mixed_head *out) {
    const mixed_cache *c;
    const head_t *hs = inspect_head(kc, seq, layer, h, &c);
    if (!hs) return PV_EINVAL;
    out->n_high = hs->hi.n;
    out->n_low = hs->lo.n;
    out->n_dropped = hs->n_dropped;
    out->steps = hs->steps;
    out->balanced = hs->bal_frozen;
    return PV_OK;
}

int kv_mixed_token(const kv_cache *kc, int seq, int layer, int h, int low, int i,
                   kv_mixed_tok *out) {
    const mixed_cache *c;
    const head_t *hs = inspect_head(kc, seq, layer, h, &c);
    if (!hs) return PV_EINVAL;
    const tier *t = low ? &hs->lo : &hs->hi;
    if (i < 0 || i >= t->n) return PV_EINVAL;
    const tfmt *rec = low ? &c->flo : &c->fhi;
    int bits = low ? c->p.lo_bits : c->p.hi_bits, hd = c->s.head_dim;
    int vbits = low ? kv_policy_lo_v_bits(&c->p) : c->p.hi_bits;
    out->pos = *t_pos(t, rec, i);
    out->score = !low && c->fhi.sb ? kvt_demote_score(c->p.select,
                                                     t_state(t, rec, i), hs->steps)
                                  : 0.0f;
    if (out->k) kvq_decode(t_k(t, rec, i), hd, bits, c->p.group, out->k);
    if (out->v) kvq_decode(t_v(t, rec, i), hd, vbits, c->p.group, out->v);
    out->k_balanced = hs->bal_frozen && (low || c->p.hi_bits == 8);
    return PV_OK;
}

size_t kv_mixed_allocated(const kv_cache *kc, int seq) {
    const mixed_cache *c;
    size_t sum = 0;
    if (!inspect_head(kc, seq, 0, 0, &c)) return 0;
    for (int L = 0; L < c->s.n_layers; L++)
        for (int h = 0; h < c->s.n_kv_heads; h++) sum += head(c, seq, L, h)->alloc;
    return sum;
}

int kv_mixed_policy(const kv_cache *kc, kv_policy *out) {
    if (!kc || kv_vt(kc) != &mixed_vt) return PV_EINVAL;
    *out = ((const mixed_cache *)kv_impl(kc))->p;
    return PV_OK;
}

int kv_mixed_balance(const kv_cache *kc, int seq, int layer, int h, float *b) {
    const mixed_cache *c;
    const head_t *hs = inspect_head(kc, seq, layer, h, &c);
    if (!hs) return PV_EINVAL;
    for (int d = 0; d < c->s.head_dim; d++) b[d] = hs->bal_frozen ? hs->bal[d] : 1.0f;
    return PV_OK;
}
