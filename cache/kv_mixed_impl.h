/* kv_mixed_impl (internal to kv_mixed*.c): the mixed cache's state, shared
 * by its bookkeeping (kv_mixed.c) and its attention (kv_mixed_attend.c).
 * Layout of the pages in kv_layout.h; the design in kv_mixed.c. */
#ifndef PIVOT_KV_MIXED_IMPL_H
#define PIVOT_KV_MIXED_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_kblk.h"
#include "kv_layout.h"
#include "kv_mixed_blk.h"
#include "kv_pool.h"
#include "kv_quant.h"
#include "kv_rows.h"

typedef struct {
    uint8_t **pages;
    int n_pages;
    int cap_pages; /* entries of `pages`, kept across resets and trims: a slot
                    * reused with pooled pages then allocates nothing */
    int n; /* tokens */
} tier;

/* Record sizes of one tier's pages: keys and values may differ in width
 * (the low tier's lo_bits/lo_v_bits), pb is the position bytes per token (4
 * in the high tier, 0 in the low tier: kv_layout.h), sb the tracker state
 * per token, group the kernels' format argument. */
typedef struct {
    size_t krec, vrec, pb, sb;
    int group; /* the records' format argument (kv_side.h): the policy's
                  group, with KVQ_SZ8 in a low tier of scale-bits=8 */
} tfmt;

typedef struct {
    tier hi, lo;
    int n_dropped;
    int64_t steps; /* queries served (tracker clock) */
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

/* One (layer, KV head)'s low tier: its record sizes, page bytes and kernels
 * (they may differ in widths: kv_policy_head_widths). */
typedef struct {
    tfmt f;
    size_t page;
    int kbits, vbits; /* 0 without a low tier */
    float kfloor, vfloor; /* kvq_encode_clip's floors (kv_policy_clip_floors) */
    int kblk; /* the key records are stored in blocks of 16 (kv_kblk.h) for
               * kk.dotn = kvq_avx512_dotb: read and write them through
               * lo_key_rec / lo_key_store / lo_key_move */
    kvq_kernels kk, kv; /* keys, values */
} lo_fmt;

typedef struct {
    kv_shape s;
    kv_policy p;
    int gq; /* query heads per KV head */
    tfmt fhi;
    size_t hi_page;
    kvq_kernels khi; /* the high tier */
    lo_fmt *lo;      /* [n_layers * n_kv_heads], as heads of one sequence */
    int need_bal;
    size_t bal_bytes; /* a head's balance state (kvl_balance_bytes) */
    int *len;      /* [max_seqs][n_layers] tokens stored */
    double *seq_budget; /* [max_seqs] elastic budget (kv_seq_set_budget); 0: p.budget */
    head_t *heads; /* [max_seqs][n_layers][n_kv_heads] */
    uint8_t *scratch;
    size_t scratch_per; /* bytes per thread */
    float *pend1; /* [max_seqs][n_layers][n_kv_heads][2][hd]: one pending token
                   * per head, so a decode step stores without malloc */
    int blk_q;    /* queries per block for kv_mixed_blk (prompt chunks); 0: off */
    int blk_kind; /* its instruction set (KVB_AVX2/KVB_AVX512), KVB_NONE when off */
    kvw_rows rows; /* the decode path's softmax steps (kv_rows.h) */
    float *rot;   /* [n_layers][n_kv_heads][hd] kv_rot signs when p.rotate, else
                   * NULL: both tiers then hold R·k and R·v (kv_rot.h), the
                   * balance factors and every record live in that basis */
    struct kvmx_pfx *pfx; /* prefix-cache snapshots (kv_mixed_pfx.c) */
} mixed_cache;

/* Tokens per prefix-cache block: snapshots are taken at multiples of it. */
#define KVMX_PFX_BLOCK 64
typedef struct kvmx_pfx kvmx_pfx;


/* A page: KVL_PAGE key records, KVL_PAGE value records, then (high tier)
 * KVL_PAGE int32 positions and KVL_PAGE tracker states. Records of one kind
 * are contiguous so the run kernels stream a page's keys or values. t_pos is
 * for the high tier only (the low tier's positions: kvmx_lo_positions). */
static inline uint8_t *t_k(const tier *t, const tfmt *f, int i) {
    return t->pages[i / KVL_PAGE] + (size_t)(i % KVL_PAGE) * f->krec;
}
static inline uint8_t *t_v(const tier *t, const tfmt *f, int i) {
    return t->pages[i / KVL_PAGE] + (size_t)KVL_PAGE * f->krec + (size_t)(i % KVL_PAGE) * f->vrec;
}
static inline int32_t *t_pos(const tier *t, const tfmt *f, int i) {
    return (int32_t *)(void *)(t->pages[i / KVL_PAGE] + (size_t)KVL_PAGE * (f->krec + f->vrec)) +
           i % KVL_PAGE;
}
static inline uint8_t *t_state(const tier *t, const tfmt *f, int i) {
    return t->pages[i / KVL_PAGE] + (size_t)KVL_PAGE * (f->krec + f->vrec + f->pb) +
           (size_t)(i % KVL_PAGE) * f->sb;
}

/* Whether prompt chunks of a head with low tier lf take the run kernels
 * (kv_mixed_attend.c, attend_blocks_run) rather than the float block
 * kernel (kv_mixed_blk.c): both tiers have the AVX-512 ones, the high tier
 * is INT8. Blocked keys exist only where this holds, so the block kernel
 * reads plain records only. */
static inline int kvmx_blocks_run_ok(const mixed_cache *c, const lo_fmt *lf) {
    return c->blk_kind == KVB_AVX512 && c->p.hi_bits == 8 && c->khi.dotn512 && c->khi.axpyn512 &&
           (!lf->kbits || (lf->kk.dotn512 && lf->kv.axpyn512));
}

/* Token i's key block in a blocked low tier (kv_kblk.h). */
static inline uint8_t *lo_key_block(const lo_fmt *lf, const tier *t, int i) {
    return t->pages[i / KVL_PAGE] + kvkb_block_off(i % KVL_PAGE, lf->f.krec);
}
/* Low-tier key record i: in place, or with blocked keys copied out of its
 * block into buf (KVKB_REC_MAX bytes). */
static inline const uint8_t *lo_key_rec(const lo_fmt *lf, const tier *t, int i, uint8_t *buf, int hd) {
    if (!lf->kblk) return t_k(t, &lf->f, i);
    kvkb_get(lo_key_block(lf, t, i), i % KVKB_TOKENS, buf, hd, lf->f.group);
    return buf;
}
/* Encodes x (hd floats) as low-tier key record i (the tier's width and
 * clip floor), in place or into its block. */
static inline void lo_key_store(const lo_fmt *lf, tier *t, int i, const float *x, int hd) {
    uint8_t buf[KVKB_REC_MAX];
    kvq_encode_clip(x, hd, lf->kbits, lf->f.group, lf->kfloor, lf->kblk ? buf : t_k(t, &lf->f, i));
    if (lf->kblk) kvkb_put(lo_key_block(lf, t, i), i % KVKB_TOKENS, buf, hd, lf->f.group);
}
/* Low-tier key record i to slot w of the same tier (a demotion's merge),
 * blocked or not. */
static inline void lo_key_move(const lo_fmt *lf, tier *t, int w, int i, int hd) {
    if (lf->kblk)
        kvkb_move(lo_key_block(lf, t, w), w % KVKB_TOKENS, lo_key_block(lf, t, i), i % KVKB_TOKENS, hd, lf->f.group);
    else
        memcpy(t_k(t, &lf->f, w), t_k(t, &lf->f, i), lf->f.krec);
}

/* The rotation signs of (layer, KV head); NULL when the policy has none. */
static inline const float *rot_signs(const mixed_cache *c, int layer, int h) {
    return c->rot ? c->rot + ((size_t)layer * c->s.n_kv_heads + h) * c->s.head_dim : NULL;
}

static inline head_t *head(const mixed_cache *c, int seq, int layer, int h) {
    return &c->heads[((size_t)seq * c->s.n_layers + layer) * c->s.n_kv_heads + h];
}


/* The low tier of the (layer, KV head) hs belongs to. */
static inline const lo_fmt *lo_of(const mixed_cache *c, const head_t *hs) {
    size_t i = (size_t)(hs - c->heads);
    return &c->lo[i % ((size_t)c->s.n_layers * c->s.n_kv_heads)];
}

/* The policy sequence seq runs: the cache's, with its elastic budget. */
static inline kv_policy kvmx_seq_policy(const mixed_cache *c, int seq) {
    kv_policy p = c->p;
    if (c->seq_budget[seq] > 0) p.budget = c->seq_budget[seq];
    return p;
}

/* Frees the pending buffer (when it is the head's own) and forgets it. */
static inline void pend_release(head_t *hs) {
    if (hs->pend_heap) free(hs->pend);
    hs->pend = NULL;
    hs->pend_cap = hs->pend_heap = hs->n_pend = 0;
}

typedef struct {
    float *sc;   /* [gq][max_ctx] scores, then probabilities */
    float *qb;   /* [gq][hd] balanced queries */
    float *tmp;  /* [2][hd] a decoded record / dot results */
    float *run;  /* [2][gq] the decode walk's running maxima and sums */
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
    /* prompt blocks through the run kernels (kv_mixed_attend.c, blocks_run) */
    float *sr;      /* [KVB_MAX_ROWS][max_ctx] scores, then probabilities, row-major */
    kvq_qprep qpb;  /* KVMX_RUN_ROWS rows prepared for the run kernels */
} scratch_t;

/* Rows per call of the run kernels in a prompt block (dotn512t's measured
 * limit of query heads, kv_quant_avx512.c). */
#define KVMX_RUN_ROWS 16

/* kv_mixed.c */
/* Pages come from the shape's pool (kv_pool.h), which may refuse: PV_ENOMEM. */
int kvmx_tier_reserve(kv_pool *pool, tier *t, int n_total, size_t page_bytes, size_t *alloc);
/* Frees the pages past the tier's tokens (after demotion shrank it), so that
 * reported bytes follow the tier's size. */
void kvmx_tier_trim(kv_pool *pool, tier *t, size_t page_bytes, size_t *alloc);
/* Freezes the head's balance factors (hs->bal[0..hd)) from the maxima seen
 * so far, qm and km (hd each; they may live in hs->bal past the factors). */
void kvmx_bal_freeze(head_t *hs, const float *qm, const float *km, int hd);

/* kv_mixed_demote.c */
/* Demotes what the tier rule (kv_tier.h) says under p (the sequence's
 * policy, kvmx_seq_policy), once the call left the sequence at len tokens. */
int kvmx_demote(const mixed_cache *c, const kv_policy *p, head_t *hs, int len, scratch_t *s);
/* High-tier slot t's demotion score (kvt_demote_score; higher goes first),
 * times its value's L2 norm under value-norm. x: head_dim floats of scratch.
 * The one rule for demotion, the tier map and the token inspector. */
float kvmx_hi_score(const mixed_cache *c, const head_t *hs, int t, float *x);
/* The low tier's positions, ascending, into out[0..lo.n): the stored
 * positions (below the head's pending tokens, or below len, its layer's
 * length) that the high tier does not hold, found walking back from the
 * newest as a demotion's merge does (prev_low). Returns how many were found
 * (lo.n unless the head is inconsistent). */
int kvmx_lo_positions(const mixed_cache *c, const head_t *hs, int len, int32_t *out);

/* Empties sequence seq (every head's pages back to the pool). */
void kvmx_seq_reset(void *impl, int seq);

/* kv_mixed_pfx.c: prefix caching by snapshots (the vtable's prefix hooks). */
int kvmx_pfx_create(mixed_cache *c);
void kvmx_pfx_destroy(mixed_cache *c); /* frees every snapshot */
int kvmx_pfx_attach(void *impl, int seq, const int32_t *tok, int n);
int kvmx_pfx_publish(void *impl, int seq, const int32_t *tok, int n, int latest);
/* The sequence starts over (kvmx_seq_reset): what it published stays, but
 * its next publish_latest replaces nothing of its past. */
void kvmx_pfx_forget(mixed_cache *c, int seq);
int kvmx_pfx_match(const void *impl, int seq, const int32_t *tok, int n);
void kvmx_pfx_stats(const void *impl, kv_prefix_stats *st);
size_t kvmx_pfx_evict(void *impl, size_t bytes);

/* kv_mixed_attend.c */
/* Bytes of one thread's scratch, and its carving. */
size_t kvmx_scratch_bytes(const kv_shape *s, int gq, int blk);
/* Thread `thread`'s scratch, carved. */
scratch_t kvmx_scratch_for(const mixed_cache *c, int thread);
/* The vtable's attend_group. */
int kvmx_attend(void *impl, int seq, int layer, int kvh, int pos0, int n, const float *q,
                float *out, int thread);

#endif
