/* kv_mixed_attend: the mixed cache's attention (see kv_mixed.c for the flow):
 * fold the queries into the balance statistics, encode the pending tokens
 * into the high tier, attend over both tiers (records are dequantized
 * inside the dot and axpy loops; prompt chunks through kv_mixed_blk), feed
 * the tracker, then demote (kv_mixed.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv_mixed_blk.h"
#include "kv_mixed_impl.h"
#include "kv_rot.h"
#include "kv_tracker.h"
#include "pverr.h"

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

/* Low-tier tokens a query at position p sees. The low tier is sorted by
 * position and, when it exists, holds every stored position the high tier
 * does not (nothing is dropped; pending tokens were just encoded high), so
 * the positions <= p are p + 1 - nhv of them, its first records. Demotion
 * runs after a call's queries, so in practice a query sees the whole tier. */
static int lo_visible(const head_t *hs, int p, int nhv) {
    int v = p + 1 - nhv;
    return v < 0 ? 0 : v < hs->lo.n ? v : hs->lo.n;
}

static size_t blk_bytes(const kv_shape *s) {
    size_t M = (size_t)s->max_ctx, hd = (size_t)s->head_dim, R = KVB_MAX_ROWS;
    return sizeof(float) * (2 * M * R + 2 * hd * R + KVL_PAGE * hd) + R * (sizeof(int32_t) + sizeof(float *)) +
           kvq_qprep_bytes(KVMX_RUN_ROWS, s->head_dim, 8) + 3 * 64;
}

size_t kvmx_scratch_bytes(const kv_shape *s, int gq, int blk) {
    size_t M = (size_t)s->max_ctx, hd = (size_t)s->head_dim;
    return sizeof(float) * (gq * M + gq * hd + 2 * hd + 2 * gq) + M * (4 + 4 + 4 + 4 + 16) +
           64 + kvq_qprep_bytes(gq, s->head_dim, 8) + (blk ? blk_bytes(s) : 0);
}

scratch_t kvmx_scratch_for(const mixed_cache *c, int thread) {
    uint8_t *b = c->scratch + (size_t)thread * c->scratch_per;
    size_t M = (size_t)c->s.max_ctx, hd = (size_t)c->s.head_dim;
    scratch_t s;
    s.pick = b; /* 16-byte entries first, for alignment */
    b += M * 16;
    s.sc = (float *)(void *)b;
    s.qb = s.sc + c->gq * M;
    s.tmp = s.qb + c->gq * hd;
    s.run = s.tmp + 2 * hd;
    s.csc = s.run + 2 * c->gq;
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
        uintptr_t sm = ((uintptr_t)(s.outp + KVB_MAX_ROWS) + 63) & ~(uintptr_t)63;
        s.sr = (float *)sm;
        uintptr_t pm = ((uintptr_t)(s.sr + M * KVB_MAX_ROWS) + 63) & ~(uintptr_t)63;
        kvq_qprep_init(&s.qpb, (void *)pm, KVMX_RUN_ROWS, c->s.head_dim, c->p.group);
    }
    return s;
}

/* Folds this call's queries and the pending keys into the running maxima
 * the balance factors come from; freezes them when INT8 keys need them now
 * (then the maxima are this call's alone, in tmp: 2 * head_dim floats). */
static int bal_observe(const mixed_cache *c, head_t *hs, const float *q, int n, int kvh, float *tmp) {
    int hd = c->s.head_dim, nh = c->s.n_heads;
    /* a head that drops (width 0) behind an FP16 high tier quantizes no key */
    if (!c->need_bal || hs->bal_frozen || (c->p.hi_bits == 16 && !lo_of(c, hs)->kbits)) return PV_OK;
    if (!hs->bal) {
        if (kv_pool_charge(c->s.pool, c->bal_bytes)) return PV_ENOMEM;
        if (!(hs->bal = calloc(1, c->bal_bytes))) {
            kv_pool_uncharge(c->s.pool, c->bal_bytes);
            return PV_ENOMEM;
        }
        hs->alloc += c->bal_bytes;
    }
    const int now = c->p.hi_bits == 8;
    float *qm = now ? tmp : hs->bal + hd, *km = qm + hd;
    if (now) memset(tmp, 0, sizeof(float) * 2 * (size_t)hd);
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
    if (now) kvmx_bal_freeze(hs, qm, km, hd);
    return PV_OK;
}

/* Moves the pending tokens into the high tier. pos0: position of the first
 * query of this call (tracker clock: a token is first seen by the query at
 * its own position). */

static int encode_pending(const mixed_cache *c, head_t *hs, int pos0, float *tmp) {
    if (!hs->n_pend) return PV_OK;
    int hd = c->s.head_dim, rc = kvmx_tier_reserve(c->s.pool, &hs->hi, hs->hi.n + hs->n_pend, c->hi_page, &hs->alloc);
    if (rc) return rc;
    for (int j = 0; j < hs->n_pend; j++) {
        const float *kv = hs->pend + (size_t)j * 2 * hd;
        int slot = hs->hi.n++, pos = hs->pend_pos0 + j;
        const float *kk = kv;
        if (c->p.hi_bits == 8) { /* INT8 keys are stored balanced: K·b */
            for (int d = 0; d < hd; d++) tmp[d] = kv[d] * hs->bal[d];
            kk = tmp;
        }
        kvq_encode(kk, hd, c->p.hi_bits, c->fhi.group, t_k(&hs->hi, &c->fhi, slot));
        kvq_encode(kv + hd, hd, c->p.hi_bits, c->fhi.group, t_v(&hs->hi, &c->fhi, slot));
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

/* The tracker after a block of nq queries (positions p0..p0+nq-1; pt holds
 * their probabilities of the high tokens, rows of rp): every token's state
 * sees the queries in order, with the persistence buckets rotated after
 * the same queries, exactly as a query-by-query walk over all tokens would
 * feed it. Tokens are independent (a rotation touches one token's state),
 * so the walk goes token by token: one row of pt and one state address per
 * token instead of per (query, token). Bit-identical to the query-by-query
 * walk (`pivot eval` JSON equal for mikv, accumulated, h2o, scissorhands);
 * its speed was within the noise (bench_attn 4096/8192 mikv prompt), the
 * bookkeeping is ~11% of a long mikv prefill either way (`perf`). So on
 * AVX-512 persistence takes a token's comparisons for 16 queries at once
 * (kvb_low_masks) and adds their count (kvt_persist_block): the same
 * divisions and comparisons, the same counts; `bench_attn 2048 mikv`
 * prompt 25.7-26.8 -> 21.2-21.6 us per token (docs/KV_CACHE.md). */
static void observe_block(const mixed_cache *c, head_t *hs, int p0, int nq, const float *pt, int rp) {
    const int gq = c->gq;
    const kv_select sel = c->p.select;
    const int half = c->p.window / 2 > 0 ? c->p.window / 2 : 1;
    const tier *hi = &hs->hi;
    int nhv[KVB_MAX_ROWS], rot[KVB_MAX_ROWS];
    float thr[KVB_MAX_ROWS];
    for (int qi = 0; qi < nq; qi++) {
        const int p = p0 + qi;
        nhv[qi] = c->fhi.sb ? hi_visible(hi, &c->fhi, p) : 0;
        thr[qi] = c->fhi.sb ? 1.0f / (float)(nhv[qi] + lo_visible(hs, p, nhv[qi])) : 0.0f;
        rot[qi] = sel == KV_SELECT_PERSISTENCE && (hs->steps + qi + 1) % half == 0;
    }
    if (sel == KV_SELECT_PERSISTENCE && c->blk_kind == KVB_AVX512) {
        /* the same counts, 16 queries' comparisons per instruction */
        uint32_t rotm = 0;
        for (int qi = 0; qi < nq; qi++) rotm |= (uint32_t)rot[qi] << qi;
        uint32_t low[256];
        for (int t0 = 0; t0 < hi->n; t0 += 256) {
            const int n = hi->n - t0 < 256 ? hi->n - t0 : 256;
            kvb_low_masks(pt + (size_t)t0 * rp, t0, n, rp, nq, gq, thr, nhv, low);
            for (int t = 0; t < n; t++)
                if (low[t] || rotm) kvt_persist_block(t_state(hi, &c->fhi, t0 + t), low[t], rotm, nq);
        }
        hs->steps += nq;
        return;
    }
    for (int t = 0; t < hi->n; t++) {
        uint8_t *st = t_state(hi, &c->fhi, t);
        const float *row = pt + (size_t)t * rp;
        for (int qi = 0; qi < nq; qi++) {
            if (t < nhv[qi]) {
                float agg = 0.0f;
                for (int g = 0; g < gq; g++) agg += row[qi * gq + g];
                kvt_observe(sel, st, agg / (float)gq, thr[qi]);
            }
            if (rot[qi]) kvt_rotate(sel, st);
        }
    }
    hs->steps += nq;
}

/* Prompt chunks: blocks of queries through kv_mixed_blk, then the tracker
 * (observe_block). */
static void attend_blocks(const mixed_cache *c, head_t *hs, int kvh, int pos0, int n,
                          const float *q, float *out, scratch_t *s) {
    const int hd = c->s.head_dim, nh = c->s.n_heads, gq = c->gq;
    const tier *hi = &hs->hi, *lo = &hs->lo;
    const lo_fmt *lf = lo_of(c, hs);
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
        const int lo_n = lf->kbits ? lo_visible(hs, pos0 + i0 + nq - 1, hi_visible(hi, &c->fhi, pos0 + i0 + nq - 1)) : 0;
        kvb_job j = {
            /* the high tier is sorted: past the block's last query nothing is visible */
            .tier = {{hi->pages, hi->n, c->p.hi_bits, c->p.hi_bits, c->fhi.krec, c->fhi.vrec, c->fhi.group, qhi,
                      hi_visible(hi, &c->fhi, pos0 + i0 + nq - 1), 1},
                     /* the low tier stores no positions; each query of the call
                      * sees its first lo_visible records, the same count for all
                      * (every low position is below pos0: the call's own tokens
                      * were encoded high) */
                     {lo->pages, lo_n, lf->kbits, lf->vbits, lf->f.krec, lf->f.vrec, lf->f.group, qlo, lo_n, 0}},
            .kind = c->blk_kind, .page = KVL_PAGE, .head_dim = hd,
            .rows = rows, .rpad = rp,
            .lim = s->lim, .scale = 1.0f / sqrtf((float)hd), .pt = s->pt, .kf = s->kf,
            .out = s->outp};
        kvb_attend(&j);
        observe_block(c, hs, pos0 + i0, nq, s->pt, rp);
    }
}

/* Asks for the bytes [p, p + n) in cache ahead of use: a tier's pages are
 * separate allocations of ~1-2 KB per kind of record, too short for the
 * hardware prefetcher to train on before the walk jumps to the next one
 * (decode over a batch reads the cache from DRAM). prefetch_bytes: NTA, for
 * the next kernel call; prefetch_l2: prefetcht1, for records read later
 * (L1 would lose them). Two functions, not one with a flag: with the flag
 * GCC 12 -O2 kept at most one of two inlined calls' loops (prefetches have
 * no semantics it must keep; `objdump -d` of tier_dotn showed it). */
static inline void prefetch_bytes(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i += 64) __builtin_prefetch(p + i, 0, 0);
}
static inline void prefetch_l2(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i += 64) __builtin_prefetch(p + i, 0, 2);
}

/* Records per key kernel call. The AVX-512 key kernel transposes 16 records
 * at a time, so calls of 16 cost it nothing, and the walk can ask for the
 * next page in slices of 16 between them instead of one page's burst: in a
 * served batch (workload c, decode only) the burst's prefetches stalled
 * with the line fill buffers full, ~18% of the step in `perf` (docs/
 * PERFORMANCE.md, "Issue 17, 2026-12-07 (12:00–14:00 UTC)"). */
#define KEY_RUN 16
_Static_assert(KVL_PAGE % KEY_RUN == 0, "a key run never crosses a page");
/* blocked keys (kv_kblk.h): every call starts at a block of its page */
_Static_assert(KEY_RUN % KVKB_TOKENS == 0 && KVL_PAGE % KVKB_TOKENS == 0, "a key run starts a block");

/* The first n records of a tier through a kernel set's run kernels:
 * scores sc[g*M + t] = q_g · key t, or out += Σ_t a[g*M + t]·value t
 * (tier_dotn_span: the records [from, to) of the n the walk reads). The
 * key walk asks, a slice at a time, for the next page's keys (NTA: read by
 * the next call) and values (into L2: the value kernel that reads them
 * after the scores, lo_walk's for the page or a whole tier's value walk,
 * then finds them there instead of waiting on DRAM a page at a time). Keys
 * into L2 as well measured no better (docs/PERFORMANCE.md). A whole tier's
 * value walk (tier_axpyn) still asks for its next page: cheap in L2. */
static void tier_dotn_span(const kvq_kernels *k, const tier *t, const tfmt *f, int from, int to, int n,
                           const float *q, const kvq_qprep *qp, int gq, const mixed_cache *c, float *sc) {
    for (int t0 = from; t0 < to; t0 += KEY_RUN) {
        const int ahead = n - t0 - KVL_PAGE; /* records of the next page's slice */
        if (ahead > 0) {
            const int m = ahead < KEY_RUN ? ahead : KEY_RUN;
            prefetch_bytes(t_k(t, f, t0 + KVL_PAGE), f->krec * m);
            prefetch_l2(t_v(t, f, t0 + KVL_PAGE), f->vrec * m);
        }
        k->dotn(t_k(t, f, t0), f->krec, to - t0 < KEY_RUN ? to - t0 : KEY_RUN, q, qp, gq, c->s.head_dim,
                f->group, sc + t0, c->s.max_ctx);
    }
}

static void tier_dotn(const kvq_kernels *k, const tier *t, const tfmt *f, int n, const float *q,
                      const kvq_qprep *qp, int gq, const mixed_cache *c, float *sc) {
    tier_dotn_span(k, t, f, 0, n, n, q, qp, gq, c, sc);
}

static void tier_axpyn(const kvq_kernels *k, const tier *t, const tfmt *f, int n, const float *a,
                       int gq, const mixed_cache *c, float *out) {
    for (int t0 = 0; t0 < n; t0 += KVL_PAGE) {
        if (t0 + KVL_PAGE < n) prefetch_bytes(t_v(t, f, t0 + KVL_PAGE), f->vrec * KVL_PAGE);
        k->axpyn(t_v(t, f, t0), f->vrec, n - t0 < KVL_PAGE ? n - t0 : KVL_PAGE, a + t0,
                 c->s.max_ctx, gq, c->s.head_dim, f->group, out);
    }
}

/* Prepares q for the run kernels (kvq_prep) with the softmax scale folded
 * into the query's scale and group sums, so their scores come out scaled. */
static void prep_scaled(const mixed_cache *c, const float *q, int gq, float scale, kvq_qprep *qp) {
    const int ng = c->s.head_dim / c->p.group;
    kvq_prep(q, gq, c->s.head_dim, c->p.group, qp);
    for (int g = 0; g < gq; g++) {
        qp->qs[g] *= scale;
        for (int k = 0; k < ng; k++) qp->qsum[(size_t)g * ng + k] *= scale;
    }
}

/* The high tier's scores for one query row into s->sc[g][0..nhv), scaled.
 * An INT8 high tier is read like the low tier, a page of records at a time
 * through the run kernels (int16 query, integer dot products, the scale in
 * the prepared query); FP16 records one at a time (their dot converts a
 * record once for all gq heads). Returns 1 when s->qp holds qhi prepared. */
static int hi_scores(const mixed_cache *c, const tier *hi, int nhv, const float *qhi, scratch_t *s,
                     float scale, float *dots) {
    const int hd = c->s.head_dim, gq = c->gq, M = c->s.max_ctx;
    if (c->p.hi_bits == 8) {
        const int prepped = c->khi.wants_prep && nhv;
        if (prepped) prep_scaled(c, qhi, gq, scale, &s->qp);
        tier_dotn(&c->khi, hi, &c->fhi, nhv, qhi, &s->qp, gq, c, s->sc);
        if (!c->khi.wants_prep) /* kernels without a prepared query: scale here */
            for (int g = 0; g < gq; g++)
                for (int t = 0; t < nhv; t++) s->sc[(size_t)g * M + t] *= scale;
        return prepped;
    }
    for (int t = 0; t < nhv; t++) {
        c->khi.dot(t_k(hi, &c->fhi, t), qhi, gq, hd, c->p.group, dots);
        for (int g = 0; g < gq; g++) s->sc[(size_t)g * M + t] = dots[g] * scale;
    }
    return 0;
}

/* The high tier's values weighted by the probabilities s->sc[g][0..nhv)
 * into oi: INT8 through the run kernels, FP16 a record at a time. */
static void hi_values(const mixed_cache *c, const tier *hi, int nhv, scratch_t *s, float *a,
                      float *oi) {
    const int gq = c->gq, M = c->s.max_ctx;
    if (c->p.hi_bits == 8) {
        tier_axpyn(&c->khi, hi, &c->fhi, nhv, s->sc, gq, c, oi);
        return;
    }
    for (int t = 0; t < nhv; t++) {
        for (int g = 0; g < gq; g++) a[g] = s->sc[(size_t)g * M + t];
        c->khi.axpy(t_v(hi, &c->fhi, t), a, gq, c->s.head_dim, c->p.group, oi);
    }
}

/* Prompt chunks through the run kernels where both tiers have the AVX-512
 * ones (an INT8 high tier; kvmx_blocks_run_ok): a block's rows (queries x query
 * heads) meet a page's records once per KVMX_RUN_ROWS rows with decode's
 * integer products, where the float block kernel (kv_mixed_blk) decodes
 * every record to fp32 and multiplies in float. Scores and probabilities
 * are row-major here (s->sr); the tracker reads the high tier's
 * token-major (s->pt), as after the block kernel. */

static void attend_blocks_run(const mixed_cache *c, head_t *hs, int kvh, int pos0, int n,
                              const float *q, float *out, scratch_t *s) {
    const int hd = c->s.head_dim, nh = c->s.n_heads, gq = c->gq, M = c->s.max_ctx, R = KVMX_RUN_ROWS;
    const tier *hi = &hs->hi, *lo = &hs->lo;
    const lo_fmt *lf = lo_of(c, hs);
    /* an INT8 high tier freezes the balance at once: both tiers' keys meet Q/b */
    float *qr = s->qt, *ob = s->qt + (size_t)hd * KVB_MAX_ROWS; /* [rows][hd] each */
    for (int i0 = 0; i0 < n; i0 += c->blk_q) {
        const int nq = n - i0 < c->blk_q ? n - i0 : c->blk_q, rows = nq * gq, rp = kvb_rpad(rows);
        const int nhv = hi_visible(hi, &c->fhi, pos0 + i0 + nq - 1);
        const int nl = lf->kbits ? lo_visible(hs, pos0 + i0 + nq - 1, nhv) : 0;
        for (int r = 0; r < rows; r++) {
            const float *qv = q + ((size_t)(i0 + r / gq) * nh + (size_t)kvh * gq + r % gq) * hd;
            for (int d = 0; d < hd; d++) qr[(size_t)r * hd + d] = hs->bal_frozen ? qv[d] / hs->bal[d] : qv[d];
        }
        for (int r0 = 0; r0 < rows; r0 += R) {
            const int nr = rows - r0 < R ? rows - r0 : R;
            float *sr = s->sr + (size_t)r0 * M;
            prep_scaled(c, qr + (size_t)r0 * hd, nr, 1.0f / sqrtf((float)hd), &s->qpb);
            tier_dotn(&c->khi, hi, &c->fhi, nhv, NULL, &s->qpb, nr, c, sr);
            tier_dotn(&lf->kk, lo, &lf->f, nl, NULL, &s->qpb, nr, c, sr + nhv);
        }
        float inv[KVB_MAX_ROWS];
        int vis = 0;
        for (int r = 0; r < rows; r++) { /* a query sees the high tokens up to its position */
            float *x = s->sr + (size_t)r * M;
            if (r % gq == 0) vis = hi_visible(hi, &c->fhi, pos0 + i0 + r / gq); /* once per query */
            for (int t = vis; t < nhv; t++) x[t] = -INFINITY;
            inv[r] = kvw_exp_row(&c->rows, x, nhv + nl);
        }
        /* as attend_query: the low tier's values with the unnormalized weights
         * and the sums scaled once; the high tier's normalized (the tracker) */
        memset(ob, 0, sizeof(float) * (size_t)rows * hd);
        for (int r0 = 0; r0 < rows; r0 += R)
            tier_axpyn(&lf->kv, lo, &lf->f, nl, s->sr + (size_t)r0 * M + nhv, rows - r0 < R ? rows - r0 : R, c,
                       ob + (size_t)r0 * hd);
        for (int r = 0; r < rows; r++) {
            if (nl) c->rows.scale_row(ob + (size_t)r * hd, hd, inv[r]);
            c->rows.scale_row(s->sr + (size_t)r * M, nhv, inv[r]);
        }
        for (int r0 = 0; r0 < rows; r0 += R)
            tier_axpyn(&c->khi, hi, &c->fhi, nhv, s->sr + (size_t)r0 * M, rows - r0 < R ? rows - r0 : R, c,
                       ob + (size_t)r0 * hd);
        for (int r = 0; r < rows; r++)
            memcpy(out + ((size_t)(i0 + r / gq) * nh + (size_t)kvh * gq + r % gq) * hd, ob + (size_t)r * hd,
                   sizeof(float) * hd);
        memset(s->pt, 0, sizeof(float) * (size_t)hi->n * rp); /* the tracker's view: token-major */
        for (int r = 0; r < rows; r++)
            for (int t = 0; t < nhv; t++) s->pt[(size_t)t * rp + r] = s->sr[(size_t)r * M + t];
        observe_block(c, hs, pos0 + i0, nq, s->pt, rp);
    }
}

/* The low tier's nl visible records a page at a time, a page's keys and
 * then its values before the next page (the online softmax of flash
 * decoding): scores through the run kernels into s->sc[g][nhv + t],
 * exponentiated against a running maximum mx[g] per query head (the high
 * tier's scores start it), their values weighted into oi and the weights
 * summed into sm[g], both rescaled when a page raises the maximum. With a
 * key walk and then a value walk, the next pages were asked for during the
 * key walk only, whose prefetches then waited for line fill buffers while
 * the value walk asked DRAM for nothing (docs/PERFORMANCE.md, "one walk
 * over the low tier's pages"); a page's keys and values together spread the
 * requests over all of the walk's arithmetic. */
static void lo_walk(const mixed_cache *c, const head_t *hs, int nhv, int nl, const float *qlo, scratch_t *s,
                    float scale, float *mx, float *sm, float *oi) {
    const lo_fmt *lf = lo_of(c, hs);
    const tier *lo = &hs->lo;
    const int hd = c->s.head_dim, gq = c->gq, M = c->s.max_ctx;
    float *sc = s->sc + nhv;
    for (int t0 = 0; t0 < nl; t0 += KVL_PAGE) {
        const int cnt = nl - t0 < KVL_PAGE ? nl - t0 : KVL_PAGE;
        tier_dotn_span(&lf->kk, lo, &lf->f, t0, t0 + cnt, nl, qlo, &s->qp, gq, c, sc);
        for (int g = 0; g < gq; g++) {
            float *x = sc + (size_t)g * M + t0;
            if (!lf->kk.wants_prep) c->rows.scale_row(x, cnt, scale);
            const float pm = c->rows.max_row(x, cnt);
            if (pm > mx[g]) { /* a new maximum: what was summed shrinks by e^(old - new) */
                const float r = expf(mx[g] - pm); /* 0 when mx[g] is -inf */
                c->rows.scale_row(oi + (size_t)g * hd, hd, r);
                sm[g] *= r;
                mx[g] = pm;
            }
            sm[g] += c->rows.exp_sum(x, cnt, mx[g]);
        }
        lf->kv.axpyn(t_v(lo, &lf->f, t0), lf->f.vrec, cnt, sc + t0, M, gq, hd, lf->f.group, oi);
    }
}

/* One query row (position p, the gq heads of KV head hs) over both tiers:
 * scores, softmax, the weighted values into oi, then the tracker. */
static void attend_query(const mixed_cache *c, head_t *hs, int p, const float *qi, float *oi,
                         scratch_t *s) {
    const int hd = c->s.head_dim, gq = c->gq, M = c->s.max_ctx;
    const float scale = 1.0f / sqrtf((float)hd);
    const kv_select sel = c->p.select;
    const int half = c->p.window / 2 > 0 ? c->p.window / 2 : 1;
    const tier *hi = &hs->hi;
    float *dots = s->tmp, *a = s->tmp + hd, *mx = s->run, *sm = s->run + gq;
    const float *qhi = qi, *qlo = qi;
    if (hs->bal_frozen) { /* balanced keys meet Q/b */
        for (int g = 0; g < gq; g++)
            for (int d = 0; d < hd; d++)
                s->qb[(size_t)g * hd + d] = qi[(size_t)g * hd + d] / hs->bal[d];
        qlo = s->qb;
        if (c->p.hi_bits == 8) qhi = s->qb;
    }
    const int nhv = hi_visible(hi, &c->fhi, p), nl = lo_visible(hs, p, nhv);
    const int n_vis = nhv + nl;
    const lo_fmt *lf = lo_of(c, hs);
    /* a rotated query is oi (rot_rows), which the walk writes while a key
     * kernel without a prepared query still reads it */
    if (qlo == oi && nl && !lf->kk.wants_prep) {
        memcpy(s->qb, qi, sizeof(float) * hd * gq);
        qlo = s->qb;
    }
    const int hi_prepped = hi_scores(c, hi, nhv, qhi, s, scale, dots);
    /* The low tier through the run kernels (prepared queries come out
     * scaled; the high tier's preparation is reused when both tiers meet
     * the same query and group) with the high tier's maximum to start;
     * c->rows is AVX-512, AVX2 or portable C */
    if (nl && lf->kk.wants_prep && !(hi_prepped && qhi == qlo)) prep_scaled(c, qlo, gq, scale, &s->qp);
    for (int g = 0; g < gq; g++) {
        mx[g] = c->rows.max_row(s->sc + (size_t)g * M, nhv);
        sm[g] = 0.0f;
    }
    memset(oi, 0, sizeof(float) * hd * gq);
    lo_walk(c, hs, nhv, nl, qlo, s, scale, mx, sm, oi);
    /* The high tier's weights against the final maximum, then the low
     * tier's sums scaled once per head (not every weight: only the high
     * tier's are normalized, for its values and the tracker) */
    for (int g = 0; g < gq; g++) {
        const float inv = 1.0f / (sm[g] + c->rows.exp_sum(s->sc + (size_t)g * M, nhv, mx[g]));
        if (nl) c->rows.scale_row(oi + (size_t)g * hd, hd, inv);
        c->rows.scale_row(s->sc + (size_t)g * M, nhv, inv);
    }
    hi_values(c, hi, nhv, s, a, oi);
    if (c->fhi.sb) { /* tracker: mean probability over the group's heads */
        float thr = 1.0f / (float)n_vis;
        for (int t = 0; t < nhv; t++) {
            float agg = 0.0f;
            for (int g = 0; g < gq; g++) agg += s->sc[(size_t)g * M + t];
            kvt_observe(sel, t_state(hi, &c->fhi, t), agg / (float)gq, thr);
        }
    }
    hs->steps++;
    if (sel == KV_SELECT_PERSISTENCE && hs->steps % half == 0)
        for (int t = 0; t < hi->n; t++) kvt_rotate(sel, t_state(hi, &c->fhi, t));
}

/* dst <- R·src (inverse: Rᵀ) on the gq rows of KV head kvh of n queries,
 * in the [n][nh][hd] layout of q and out. The rotated queries are written
 * into out itself, which is safe because every path reads a query row
 * before it writes the output row at the same place (attend_query copies
 * the query into scratch before its low-tier walk writes the output;
 * attend_blocks copies a block's queries out before the block kernel
 * writes that block), and it
 * keeps decode free of allocation. */
static void rot_rows(const float *rs, const float *src, float *dst, int n, int nh, int kvh, int gq,
                     int hd, int inverse) {
    for (int i = 0; i < n; i++)
        for (int g = 0; g < gq; g++) {
            size_t off = ((size_t)i * nh + (size_t)kvh * gq + g) * hd;
            if (dst != src) memcpy(dst + off, src + off, sizeof(float) * hd);
            if (inverse) kvr_inverse(rs, hd, dst + off);
            else kvr_forward(rs, hd, dst + off);
        }
}

int kvmx_attend(void *impl, int seq, int layer, int kvh, int pos0, int n, const float *q,
                float *out, int thread) {
    mixed_cache *c = impl;
    head_t *hs = head(c, seq, layer, kvh);
    int len = c->len[(size_t)seq * c->s.n_layers + layer];
    if (pos0 < 0 || n < 0 || (long)pos0 + n > len) return PV_EINVAL;
    scratch_t s = kvmx_scratch_for(c, thread);
    const int nh = c->s.n_heads, hd = c->s.head_dim, gq = c->gq;
    const float *rs = rot_signs(c, layer, kvh);
    if (rs) { /* the cache is in R's basis (kv_rot.h), so the queries must be */
        rot_rows(rs, q, out, n, nh, kvh, gq, hd, 0);
        q = out;
    }
    int rc;
    if ((rc = bal_observe(c, hs, q, n, kvh, s.tmp))) return rc;
    if ((rc = encode_pending(c, hs, pos0, s.tmp))) return rc;
    if (c->blk_q && n > 1) {
        if (kvmx_blocks_run_ok(c, lo_of(c, hs))) attend_blocks_run(c, hs, kvh, pos0, n, q, out, &s);
        else attend_blocks(c, hs, kvh, pos0, n, q, out, &s);
    } else {
        for (int i = 0; i < n; i++)
            attend_query(c, hs, pos0 + i, q + ((size_t)i * nh + (size_t)kvh * gq) * hd,
                         out + ((size_t)i * nh + (size_t)kvh * gq) * hd, &s);
    }
    if (rs) rot_rows(rs, out, out, n, nh, kvh, gq, hd, 1); /* Σ p·Rv back to Σ p·v */
    kv_policy sp = kvmx_seq_policy(c, seq);
    return kvmx_demote(c, &sp, hs, len, &s);
}
