/* kv_mixed: the importance-aware KV cache.
 *
 * Per (sequence, layer, KV head) two tiers of pages (layout in kv_layout.h):
 * the high tier (FP16, or INT8 with balanced keys) and the low tier (2-4
 * bits, or INT8), each sorted by position. Dropped tokens are counted
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
 *           and finally demotes what the tier rule says once over budget.
 * An attend task touches only its own head's state and the scratch of its
 * thread index, which is what makes the parallel tasks safe. Demotion
 * counts depend only on lengths and the policy, so every head of every
 * layer holds the same number of high and low tokens (rectangular storage);
 * only which positions sit where differs per head. How many are demoted is
 * the tier rule's (kv_tier.h); which ones, the tracker's (kv_tracker.h).
 * The attention itself is kv_mixed_attend.c, demotion kv_mixed_demote.c;
 * the state the files share is kv_mixed_impl.h. */
#include "kv_mixed.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv_internal.h"
#include "kv_mixed_blk.h"
#include "kv_mixed_impl.h"
#include "kv_rot.h"
#include "kv_tier.h"
#include "pverr.h"

/* ---- tiers ---------------------------------------------------------------- */

int kvmx_tier_reserve(kv_pool *pool, tier *t, int n_total, size_t page_bytes, size_t *alloc) {
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

/* Frees pages no token uses any more (kv_mixed_impl.h). */
void kvmx_tier_trim(kv_pool *pool, tier *t, size_t page_bytes, size_t *alloc) {
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

static void head_reset(const mixed_cache *c, head_t *hs) {
    kv_pool *pool = c->s.pool;
    tier_release(pool, &hs->hi, c->hi_page);
    tier_release(pool, &hs->lo, lo_of(c, hs)->page);
    if (hs->bal) kv_pool_uncharge(pool, c->bal_bytes);
    kv_pool_uncharge(pool, sizeof(float) * 2 * c->s.head_dim * (size_t)hs->n_pend);
    free(hs->bal);
    pend_release(hs);
    tier hi = hs->hi, lo = hs->lo; /* keep the page tables */
    memset(hs, 0, sizeof *hs);
    hs->hi = hi;
    hs->lo = lo;
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
void kvmx_bal_freeze(head_t *hs, const float *qm, const float *km, int hd) {
    float *b = hs->bal;
    for (int i = 0; i < hd; i++) {
        float r = qm[i] > 0 && km[i] > 0 ? sqrtf(qm[i] / km[i]) : 1.0f;
        b[i] = isfinite(r) && r > 0 ? r : 1.0f;
    }
    hs->bal_frozen = 1;
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
            const float *rs = rot_signs(c, layer, h);
            if (rs) { /* rotated once, here: every later step works in R's basis */
                kvr_forward(rs, hd, dst);
                kvr_forward(rs, hd, dst + hd);
            }
        }
        hs->n_pend += n;
    }
    *len += n;
    return PV_OK;
}

/* ---- bookkeeping ---------------------------------------------------------- */

void kvmx_seq_reset(void *impl, int seq) {
    mixed_cache *c = impl;
    c->seq_budget[seq] = 0;
    kvmx_pfx_forget(c, seq);
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
            bytes += (size_t)hs->hi.n_pages * c->hi_page + (size_t)hs->lo.n_pages * lo_of(c, hs)->page;
            if (hs->bal) bytes += c->bal_bytes;
            bytes += (size_t)hs->n_pend * 2 * hd * sizeof(float);
            hi += hs->hi.n + hs->n_pend;
            lo += hs->lo.n;
            dr += hs->n_dropped;
        }
    int n = c->len[(size_t)seq * c->s.n_layers];
    u->bytes_stored = bytes;
    u->bytes_fp16 = (size_t)n * c->s.n_layers * c->s.n_kv_heads * hd * 2 * 2;
    u->n_tokens = n;
    /* per KV head: every head holds the same high count; low and dropped
     * differ where layer-bits lets some heads drop (width 0), so they are
     * means, the dropped one taking the rounding (the three sum to n) */
    u->n_high = (int)(hi / nheads);
    u->n_low = (int)(lo / nheads);
    u->n_dropped = dr ? n - u->n_high - u->n_low : 0;
}

/* Dropped is the default: a position below the length that neither tier
 * holds was evicted (only counted). Pending tokens are high: attend encodes
 * them there. */
static int mx_seq_tiers(const void *impl, int seq, int layer, int kv_head, uint8_t *tier,
                        float *score, int n) {
    const mixed_cache *c = impl;
    int len = c->len[(size_t)seq * c->s.n_layers + layer];
    const head_t *hs = head(c, seq, layer, kv_head);
    for (int p = 0; p < n; p++) {
        tier[p] = p < len ? KV_TIER_DROPPED : KV_TIER_NONE;
        if (score) score[p] = NAN;
    }
    float *x = score && c->fhi.sb ? malloc(sizeof *x * (size_t)c->s.head_dim) : NULL;
    if (score && c->fhi.sb && !x) return PV_ENOMEM;
    for (int i = 0; i < hs->hi.n; i++) {
        int32_t p = *t_pos(&hs->hi, &c->fhi, i);
        if (p < 0 || p >= n) continue;
        tier[p] = KV_TIER_HIGH;
        if (x) score[p] = kvmx_hi_score(c, hs, i, x);
    }
    free(x);
    if (hs->lo.n) {
        int32_t *lp = malloc(sizeof *lp * (size_t)hs->lo.n);
        if (!lp) return PV_ENOMEM;
        int nl = kvmx_lo_positions(c, hs, len, lp);
        for (int i = 0; i < nl; i++)
            if (lp[i] < n) tier[lp[i]] = KV_TIER_LOW;
        free(lp);
    }
    for (int i = 0; i < hs->n_pend; i++)
        if (hs->pend_pos0 + i < n) tier[hs->pend_pos0 + i] = KV_TIER_HIGH;
    return len;
}

static void mx_destroy(void *impl) {
    mixed_cache *c = impl;
    if (!c) return;
    if (c->heads && c->len && c->seq_budget && c->lo)
        for (int s = 0; s < c->s.max_seqs; s++) kvmx_seq_reset(c, s);
    if (c->pfx) kvmx_pfx_destroy(c); /* after every sequence gave its pages back */
    if (c->heads)
        for (size_t i = 0, nh = (size_t)c->s.max_seqs * c->s.n_layers * c->s.n_kv_heads; i < nh;
             i++) {
            free(c->heads[i].hi.pages);
            free(c->heads[i].lo.pages);
        }
    free(c->heads);
    free(c->len);
    free(c->seq_budget);
    free(c->scratch);
    free(c->pend1);
    free(c->rot);
    free(c->lo);
    free(c);
}

/* Elastic compression: between steps nothing is pending and no attend runs,
 * so thread 0's scratch is free and every head demotes as at the end of an
 * attend call. */
static int mx_seq_budget(void *impl, int seq, double budget) {
    mixed_cache *c = impl;
    kv_policy p = c->p;
    p.budget = budget > 0 ? budget : c->p.budget;
    if ((p.budget >= 1 && p.budget != floor(p.budget)) || (!p.budget && p.select != KV_SELECT_RECENT))
        return PV_EINVAL;
    /* mid-step (keys stored, not yet attended): refused before anything changes */
    for (int L = 0; L < c->s.n_layers; L++)
        for (int h = 0; h < c->s.n_kv_heads; h++)
            if (head(c, seq, L, h)->n_pend) return PV_EINVAL;
    scratch_t s = kvmx_scratch_for(c, 0);
    for (int L = 0; L < c->s.n_layers; L++) {
        int len = c->len[(size_t)seq * c->s.n_layers + L];
        for (int h = 0; h < c->s.n_kv_heads; h++) {
            int rc = kvmx_demote(c, &p, head(c, seq, L, h), len, &s);
            if (rc) return rc; /* the budget stays: heads demoted so far hold less, never more */
        }
    }
    c->seq_budget[seq] = budget; /* only once every head is under it */
    return PV_OK;
}

static int mx_policy(const void *impl, kv_policy *out) {
    *out = ((const mixed_cache *)impl)->p;
    return PV_OK;
}

static const kv_vtable mixed_vt = {
    .name = "mixed",
    .store = mx_store,
    .attend_group = kvmx_attend,
    .seq_reset = kvmx_seq_reset,
    .seq_pos = mx_seq_pos,
    .seq_usage = mx_seq_usage,
    .seq_budget = mx_seq_budget,
    .seq_tiers = mx_seq_tiers,
    .seq_attach = kvmx_pfx_attach,
    .seq_publish = kvmx_pfx_publish,
    .prefix_match = kvmx_pfx_match,
    .prefix_stats = kvmx_pfx_stats,
    .prefix_evict = kvmx_pfx_evict,
    .policy = mx_policy,
    .destroy = mx_destroy,
};

/* Scores through kd and value sums through ka take the AVX-512 run kernels
 * for their widths where the CPU and the shape allow them. */
static void use_avx512_runs(kvq_kernels *kd, int dbits, kvq_kernels *ka, int abits, int d, int group) {
    kvq_dotn_fn dn = kvq_avx512_dotn(dbits, d, group);
    kvq_axpyn_fn an = kvq_avx512_axpyn(abits, d, group);
    if (dn) {
        kd->dotn = dn;
        kd->wants_prep = kd->dotn512 = 1;
    }
    if (an) {
        ka->axpyn = an;
        ka->axpyn512 = 1;
    }
}

/* The low tier of layer L's KV head h: widths, record and page sizes,
 * kernels (the AVX-512 run kernels where the block kernel is AVX-512, as for
 * the high tier). */
static void lo_fmt_init(mixed_cache *c, int L, int h, int force_scalar) {
    const kv_policy *p = &c->p;
    lo_fmt *lf = &c->lo[(size_t)L * c->s.n_kv_heads + h];
    int hd = c->s.head_dim;
    kv_policy_head_widths(p, L, h, &lf->kbits, &lf->vbits);
    kv_policy_clip_floors(p, L, &lf->kfloor, &lf->vfloor);
    lf->f.group = kvl_lo_group(p);
    if (lf->kbits) {
        lf->f.krec = kvl_rec_bytes(lf->kbits, hd, lf->f.group);
        lf->f.vrec = kvl_rec_bytes(lf->vbits, hd, lf->f.group);
    }
    lf->page = KVL_PAGE * kvl_lo_token_bytes(p, hd, L, h);
    kvq_kernels_for(lf->kbits ? lf->kbits : 16, hd, lf->f.group, force_scalar, &lf->kk);
    kvq_kernels_for(lf->kbits ? lf->vbits : 16, hd, lf->f.group, force_scalar, &lf->kv);
    if (c->blk_kind == KVB_AVX512 && lf->kbits) {
        use_avx512_runs(&lf->kk, lf->kbits, &lf->kv, lf->vbits, hd, lf->f.group);
        /* 4-bit keys the AVX-512 transposed kernel reads: stored transposed
         * in blocks of 16 (kv_kblk.h), 1.4x faster per record (bench/
         * bench_kq_dotn, bit-identical). Only where prompts take the run
         * kernels too: the block kernel would unpack every record a query
         * block reads (quant4's prompt +43% in bench_attn when it did). */
        kvq_dotn_fn db = kvmx_blocks_run_ok(c, lf) ? kvq_avx512_dotb(lf->kbits, hd, lf->f.group, c->gq) : NULL;
        if (db) {
            lf->kk.dotn = db;
            lf->kblk = 1;
        }
    }
}

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
    c->fhi.group = p->group;
    c->fhi.pb = sizeof(int32_t);
    c->fhi.sb = kvl_state_bytes(p->select);
    c->hi_page = KVL_PAGE * kvl_hi_token_bytes(p, s->head_dim);
    c->need_bal = kvl_needs_balance(p);
    c->bal_bytes = kvl_balance_bytes(p, s->head_dim);
    kvq_kernels_for(p->hi_bits, s->head_dim, p->group, force_scalar, &c->khi);
    size_t nh = (size_t)s->max_seqs * s->n_layers * s->n_kv_heads;
    c->len = calloc((size_t)s->max_seqs * s->n_layers, sizeof *c->len);
    c->seq_budget = calloc((size_t)s->max_seqs, sizeof *c->seq_budget);
    c->heads = calloc(nh, sizeof *c->heads);
    /* Prompt chunks take the block kernel: up to KVB_MAX_ROWS rows = blocks
     * of queries x the query heads of a KV head. */
    kvw_rows_for(force_scalar, &c->rows);
    c->blk_kind = force_scalar || c->gq > KVB_MAX_ROWS ? KVB_NONE : kvb_kind(s->head_dim);
    c->blk_q = c->blk_kind != KVB_NONE ? KVB_MAX_ROWS / c->gq : 0;
    /* decode: the AVX-512 run kernels where they apply (the INT8 high tier
     * is read a page at a time too; the low tier's: lo_fmt_init) */
    if (c->blk_kind == KVB_AVX512 && p->hi_bits == 8)
        use_avx512_runs(&c->khi, 8, &c->khi, 8, s->head_dim, p->group);
    if ((c->lo = calloc((size_t)s->n_layers * s->n_kv_heads, sizeof *c->lo)))
        for (int L = 0; L < s->n_layers; L++)
            for (int h = 0; h < s->n_kv_heads; h++) lo_fmt_init(c, L, h, force_scalar);
    c->scratch_per = (kvmx_scratch_bytes(s, c->gq, c->blk_q > 0) + 63) & ~(size_t)63;
    c->scratch = malloc(c->scratch_per * s->n_threads);
    c->pend1 = malloc(sizeof(float) * 2 * (size_t)s->head_dim * nh);
    if (kv_policy_rotates(p)) {
        if (!kvr_supported(s->head_dim)) {
            mx_destroy(c);
            return PV_EINVAL;
        }
        size_t nlh = (size_t)s->n_layers * s->n_kv_heads;
        if ((c->rot = malloc(sizeof(float) * s->head_dim * nlh)))
            for (size_t i = 0; i < nlh; i++)
                kvr_signs((int)(i / s->n_kv_heads), (int)(i % s->n_kv_heads), s->head_dim,
                          c->rot + i * s->head_dim);
    }
    if (!c->lo || !c->len || !c->seq_budget || !c->heads || !c->scratch || !c->pend1 ||
        (kv_policy_rotates(p) && !c->rot) || kvmx_pfx_create(c)) {
        mx_destroy(c);
        return PV_ENOMEM;
    }
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
    const lo_fmt *lf = lo_of(c, hs);
    const tfmt *rec = low ? &lf->f : &c->fhi;
    int bits = low ? lf->kbits : c->p.hi_bits, hd = c->s.head_dim;
    int vbits = low ? lf->vbits : c->p.hi_bits;
    if (low) { /* the i-th position the high tier does not hold (kv_layout.h) */
        int32_t *lp = malloc(sizeof *lp * (size_t)t->n);
        if (!lp) return PV_ENOMEM;
        int len = c->len[(size_t)seq * c->s.n_layers + layer];
        int nl = kvmx_lo_positions(c, hs, len, lp);
        out->pos = i < nl ? lp[i] : -1;
        free(lp);
    } else {
        out->pos = *t_pos(t, rec, i);
    }
    out->score = 0.0f;
    if (!low && c->fhi.sb) {
        float *x = malloc(sizeof *x * (size_t)hd);
        if (!x) return PV_ENOMEM;
        out->score = kvmx_hi_score(c, hs, i, x);
        free(x);
    }
    uint8_t kb[KVKB_REC_MAX];
    if (out->k) kvq_decode(low ? lo_key_rec(lf, t, i, kb, hd) : t_k(t, rec, i), hd, bits, rec->group, out->k);
    if (out->v) kvq_decode(t_v(t, rec, i), hd, vbits, rec->group, out->v);
    out->k_balanced = hs->bal_frozen && (low || c->p.hi_bits == 8);
    out->rotated = c->rot != NULL;
    return PV_OK;
}

int kv_mixed_unrotate(const kv_cache *kc, int layer, int h, float *x) {
    const mixed_cache *c;
    if (!inspect_head(kc, 0, layer, h, &c)) return PV_EINVAL;
    const float *rs = rot_signs(c, layer, h);
    if (rs) kvr_inverse(rs, c->s.head_dim, x);
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

int kv_mixed_balance(const kv_cache *kc, int seq, int layer, int h, float *b) {
    const mixed_cache *c;
    const head_t *hs = inspect_head(kc, seq, layer, h, &c);
    if (!hs) return PV_EINVAL;
    for (int d = 0; d < c->s.head_dim; d++) b[d] = hs->bal_frozen ? hs->bal[d] : 1.0f;
    return PV_OK;
}
