/* kv_mixed_demote: the mixed cache's demotion (kv_mixed.c has the flow).
 *
 * When the high tier is over budget, the tracker's lowest-ranked
 * unprotected tokens (kv_tracker.h; how many: kv_tier.h) are re-encoded at
 * the head's low widths and merged into the low tier, which stays sorted
 * by position and stores no positions: they are the ones below the pending
 * tokens that the high tier does not hold. */
#include <math.h>
#include <string.h>

#include "kv_mixed_impl.h"
#include "kv_tier.h"
#include "kv_tracker.h"
#include "pverr.h"

/* The largest position below pos that no high token holds: the low record
 * before the one at pos. Every position below the pending tokens that is
 * not high is low (a head with a low tier drops nothing), so walking the
 * high tier backwards alongside (*h: its last slot not above pos) finds it. */
static int32_t prev_low(const mixed_cache *c, const head_t *hs, int32_t pos, int *h) {
    for (pos--;; pos--) {
        while (*h >= 0 && *t_pos(&hs->hi, &c->fhi, *h) > pos) (*h)--;
        if (*h < 0 || *t_pos(&hs->hi, &c->fhi, *h) != pos) return pos;
    }
}

int kvmx_lo_positions(const mixed_cache *c, const head_t *hs, int len, int32_t *out) {
    /* the same walk as a merge's, from the newest low record back */
    const int m = hs->lo.n;
    int32_t pos = hs->n_pend ? hs->pend_pos0 : len;
    int h = hs->hi.n - 1, n = 0;
    for (; n < m && (pos = prev_low(c, hs, pos, &h)) >= 0; n++) out[m - 1 - n] = pos;
    if (n < m) memmove(out, out + (m - n), sizeof *out * (size_t)n);
    return n;
}

/* High-tier slot t re-encoded into low-tier slot `slot`. */
static void demote_one(const mixed_cache *c, const kv_policy *p, head_t *hs, int t, int slot,
                       float *x) {
    int hd = c->s.head_dim;
    const lo_fmt *lf = lo_of(c, hs);
    kvq_decode(t_k(&hs->hi, &c->fhi, t), hd, p->hi_bits, c->fhi.group, x);
    /* FP16 high keys are raw; INT8 ones are balanced already. */
    if (c->need_bal && p->hi_bits == 16)
        for (int d = 0; d < hd; d++) x[d] *= hs->bal[d];
    lo_key_store(lf, &hs->lo, slot, x, hd);
    kvq_decode(t_v(&hs->hi, &c->fhi, t), hd, p->hi_bits, c->fhi.group, x);
    kvq_encode_clip(x, hd, lf->vbits, lf->f.group, lf->vfloor, t_v(&hs->lo, &lf->f, slot));
}

/* Merges the victims (high slots vict[0..k), ascending, so ascending in
 * position) into the low tier, which stays sorted by position: from the
 * end backwards, a low record moves up past every victim older than it. The
 * tier's positions are not stored (prev_low recovers them from the high
 * tier's), so this must run before the high tier is compacted. */
static int demote_merge(const mixed_cache *c, const kv_policy *p, head_t *hs, int len, int k,
                        scratch_t *s) {
    const lo_fmt *lf = lo_of(c, hs);
    int rc = kvmx_tier_reserve(c->s.pool, &hs->lo, hs->lo.n + k, lf->page, &hs->alloc);
    if (rc) return rc;
    /* The low records' positions from the newest back, only as far as the
     * oldest victim (prev_low), not all of them (kvmx_lo_positions): with
     * one-token chunks a walk over every position was most of a demotion. */
    int i = hs->lo.n - 1, h = hs->hi.n - 1;
    int32_t lpos = i >= 0 ? prev_low(c, hs, hs->n_pend ? hs->pend_pos0 : len, &h) : -1;
    int j = k - 1, w = hs->lo.n + k - 1;
    for (; j >= 0; w--) {
        if (i >= 0 && lpos > *t_pos(&hs->hi, &c->fhi, s->vict[j])) {
            lo_key_move(lf, &hs->lo, w, i, c->s.head_dim);
            memcpy(t_v(&hs->lo, &lf->f, w), t_v(&hs->lo, &lf->f, i), lf->f.vrec);
            if (--i >= 0) lpos = prev_low(c, hs, lpos, &h);
        } else {
            demote_one(c, p, hs, s->vict[j--], w, s->tmp);
        }
    }
    hs->lo.n += k;
    return PV_OK;
}

float kvmx_hi_score(const mixed_cache *c, const head_t *hs, int t, float *x) {
    if (!c->fhi.sb) return 0.0f; /* recent / none keep no state */
    float sc = kvt_demote_score(c->p.select, t_state(&hs->hi, &c->fhi, t), hs->steps);
    if (!kv_policy_value_norm(&c->p) || sc == -FLT_MAX) return sc; /* unseen tokens stay */
    const int hd = c->s.head_dim;
    kvq_decode(t_v(&hs->hi, &c->fhi, t), hd, c->p.hi_bits, c->fhi.group, x);
    /* four partial sums (head_dim % 4 == 0, kv_create): one chain of dependent
     * adds was most of a candidate's cost (the KV map's scores rank every high
     * token: bench_snap 2000 mikv 1.76 -> 1.38-1.41 ms). In double, so the float result
     * matches one chain's: the rankings the docs' tables came from stay. */
    double ss[4] = {0, 0, 0, 0};
    for (int d = 0; d < hd; d += 4)
        for (int j = 0; j < 4; j++) ss[j] += (double)x[d + j] * x[d + j];
    return sc * (float)sqrt((ss[0] + ss[1]) + (ss[2] + ss[3])); /* sc = -importance: stays <= 0 */
}

/* When the high tier is over budget: demote as many of the lowest-ranked
 * unprotected tokens as the tier rule says (kv_tier_demote) to the low tier
 * (or drop them), keeping both tiers sorted by position. */
int kvmx_demote(const mixed_cache *c, const kv_policy *p, head_t *hs, int len, scratch_t *s) {
    const int want = kv_tier_demote(p, len, hs->hi.n);
    if (want == 0) return PV_OK;
    int nc = 0;
    for (int t = 0; t < hs->hi.n; t++) {
        int32_t pos = *t_pos(&hs->hi, &c->fhi, t);
        if (kv_tier_pos_protected(p->sinks, p->recent, len, pos)) continue;
        s->cand[nc] = t;
        s->cpos[nc] = pos;
        s->csc[nc] = kvmx_hi_score(c, hs, t, s->tmp);
        nc++;
    }
    /* The rule counted the same unprotected tokens (every protected one is
     * high), so this picks exactly `want`. */
    int k = kvt_pick(s->cand, s->csc, s->cpos, nc, want, s->vict, s->pick);
    if (k == 0) return PV_OK;
    if (lo_of(c, hs)->kbits) { /* else this head drops (layer-bits width 0, or lo-bits=0) */
        if (c->need_bal && !hs->bal_frozen) {
            const int hd = c->s.head_dim; /* an FP16 high tier kept its maxima */
            kvmx_bal_freeze(hs, hs->bal + hd, hs->bal + 2 * hd, hd);
        }
        int rc = demote_merge(c, p, hs, len, k, s);
        if (rc) return rc;
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
    kvmx_tier_trim(c->s.pool, &hs->hi, c->hi_page, &hs->alloc);
    return PV_OK;
}

