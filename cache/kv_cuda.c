/* kv_cuda: the GPU KV cache's host side (see kv_cuda.h): device allocation,
 * the kv_cache face, and the per-pass plan of the mixed cache's tier counts
 * (kv_mirror), committed only once the pass succeeded so kv_usage follows
 * the CPU cache's rules exactly. */
#include "kv_cuda.h"

#include <stdlib.h>
#include <string.h>

#include "kv_internal.h"
#include "kv_layout.h"
#include "kv_mirror.h"
#include "kv_policy.h"
#include "kv_tier.h"
#include "pverr.h"

#ifdef PIVOT_HAVE_CUDA

#include "cuda/kv_mixed_cuda.h"

/* Rows one sequence may add to the mixed cache's high tier per pass: sizes
 * the tier (budget + this); longer prompt chunks are run as several passes
 * (as if the caller had chunked them). */
#define MX_ROWS_PER_SEQ 64

typedef struct {
    pvc_ctx *pc;       /* borrowed: outlives the cache */
    kv_shape s;
    kv_policy pol;
    int B;             /* rows of a pass */
    int *len;          /* [max_seqs] tokens stored */
    size_t tok_bytes;  /* FP16 bytes per token over all layers */
    pvc_kv_fp16 kv;    /* the plain cache (mixed: NULL pointers) */
    /* the mixed cache */
    int mixed;
    pvc_kv_mixed mx;
    pvc_kv_fp16 hiview;    /* the high tier as pvc_rope_store_slots sees it */
    int rows_per_seq;
    kvm_seq *ms, *ms_next; /* [max_seqs] counts; planned counts of a pass */
    int32_t *d_mx, *h_mx;  /* [2][B] hslot, nlo; [B][8] entries; [B][8] demotions */
    int n_ent, n_dem;      /* of the pass being run */
} gpu_kv;

static const kv_vtable gkv_vt, gkv_mixed_vt;

static gpu_kv *as_gpu(const kv_cache *c) {
    return c && (kv_vt(c) == &gkv_vt || kv_vt(c) == &gkv_mixed_vt) ? kv_impl(c) : NULL;
}

static size_t meta_ints(const gpu_kv *g) { return 2 * (size_t)g->B + 2 * (size_t)g->B * 8; }

/* ---- the kv_cache face ---- */
static int gkv_store(void *impl, int seq, int layer, int pos0, int n, const float *k,
                     const float *v) {
    (void)impl, (void)seq, (void)layer, (void)pos0, (void)n, (void)k, (void)v;
    return PV_EUNSUPPORTED; /* the GPU forward pass writes the cache itself */
}
static int gkv_attend(void *impl, int seq, int layer, int kv_head, int pos0, int n, const float *q,
                      float *out, int thread) {
    (void)impl, (void)seq, (void)layer, (void)kv_head, (void)pos0, (void)n, (void)q, (void)out,
        (void)thread;
    return PV_EUNSUPPORTED;
}
/* Nothing to free on the GPU: slots are preallocated, a reset rewinds (the
 * mixed cache also restores its balance factors, queued on the stream). */
static void gkv_reset(void *impl, int seq) {
    gpu_kv *g = impl;
    g->len[seq] = 0;
    if (g->mixed) {
        memset(&g->ms[seq], 0, sizeof g->ms[seq]);
        (void)pvc_mixed_reset(g->pc, &g->mx, seq); /* a failure shows at the next step */
    }
}
static int gkv_pos(const void *impl, int seq) { return ((const gpu_kv *)impl)->len[seq]; }
static void gkv_usage(const void *impl, int seq, kv_usage *u) {
    const gpu_kv *g = impl;
    if (g->mixed) {
        kvm_usage(&g->pol, &g->s, &g->ms[seq], u);
        return;
    }
    memset(u, 0, sizeof *u);
    u->n_tokens = u->n_high = g->len[seq];
    /* as the CPU's plain cache reports it: whole pages of KVL_FP16_PAGE tokens */
    u->bytes_stored = (size_t)(g->len[seq] + KVL_FP16_PAGE - 1) / KVL_FP16_PAGE * KVL_FP16_PAGE *
                      g->tok_bytes;
    u->bytes_fp16 = (size_t)g->len[seq] * g->tok_bytes;
}
static int gkv_policy(const void *impl, kv_policy *out) {
    *out = ((const gpu_kv *)impl)->pol;
    return PV_OK;
}
static void gkv_destroy(void *impl) {
    gpu_kv *g = impl;
    if (!g) return;
    if (g->pc) {
        pvc_sync(g->pc);
        pvc_free(g->pc, g->kv.k);
        pvc_free(g->pc, g->kv.v);
        pvc_free(g->pc, g->d_mx);
        if (g->mixed) pvc_mixed_free(g->pc, &g->mx);
        pvc_host_free(g->h_mx);
    }
    free(g->len);
    free(g->ms);
    free(g->ms_next);
    free(g);
}
/* The plain and the mixed GPU cache differ in name only (kv_name). */
#define GKV_VTABLE(nm)                                                                    \
    {                                                                                     \
        .name = nm, .store = gkv_store, .attend_group = gkv_attend, .seq_reset = gkv_reset, \
        .seq_pos = gkv_pos, .seq_usage = gkv_usage, .policy = gkv_policy,                 \
        .destroy = gkv_destroy,                                                           \
    }
static const kv_vtable gkv_vt = GKV_VTABLE("fp16-cuda");
static const kv_vtable gkv_mixed_vt = GKV_VTABLE("mixed-cuda");

/* ---- creation ---- */

/* The mixed cache's device side, sized from the policy: the high tier holds
 * at most the budget at max_ctx after any step (demotion brings it there,
 * protected tokens count in the budget) plus one pass's new rows; the low
 * tier every unprotected token. */
static int mixed_setup(gpu_kv *g) {
    const kv_policy *pol = &g->pol;
    const kv_shape *s = &g->s;
    if (pol->hi_bits != 16 || pol->select == KV_SELECT_NONE || kv_policy_value_norm(pol)) {
        /* INT8 high tiers and value-norm scores are CPU-only for now;
         * select=none with FP16 is plain */
        return PV_EUNSUPPORTED;
    }
    g->mixed = 1;
    g->rows_per_seq = g->B < MX_ROWS_PER_SEQ ? g->B : MX_ROWS_PER_SEQ;
    int b = kv_tier_budget(pol, s->max_ctx);
    long hi_cap = (long)b + g->rows_per_seq;
    if (b < 0 || hi_cap > s->max_ctx) hi_cap = s->max_ctx;
    int lo_cap = s->max_ctx - kv_tier_protected(pol, s->max_ctx);
    g->mx = (pvc_kv_mixed){.max_seqs = s->max_seqs, .n_layers = s->n_layers,
                           .n_kv_heads = s->n_kv_heads, .head_dim = s->head_dim,
                           .hi_cap = (int)hi_cap, .lo_cap = pol->lo_bits ? (lo_cap > 1 ? lo_cap : 1) : 0,
                           .lo_kbits = pol->lo_bits, .lo_vbits = kv_policy_lo_v_bits(pol),
                           .group = pol->group, .select = (int)pol->select,
                           .balance = kvl_needs_balance(pol), .sinks = pol->sinks,
                           .recent = pol->recent, .window = pol->window};
    g->hiview = (pvc_kv_fp16){.max_seqs = s->max_seqs, .n_layers = s->n_layers,
                              .n_kv_heads = s->n_kv_heads, .head_dim = s->head_dim,
                              .max_ctx = (int)hi_cap};
    int rc = pvc_mixed_alloc(g->pc, &g->mx);
    if (rc) {
        g->mixed = 0; /* nothing to free */
        return rc;
    }
    g->hiview.k = g->mx.hk;
    g->hiview.v = g->mx.hv;
    size_t meta = meta_ints(g) * sizeof(int32_t);
    g->ms = calloc((size_t)s->max_seqs, sizeof *g->ms);
    g->ms_next = calloc((size_t)s->max_seqs, sizeof *g->ms_next);
    if (!g->ms || !g->ms_next) return PV_ENOMEM;
    if ((rc = pvc_alloc(g->pc, meta, (void **)&g->d_mx))) return rc;
    if ((rc = pvc_host_alloc(meta, (void **)&g->h_mx))) return rc;
    for (int q = 0; q < s->max_seqs && !rc; q++) rc = pvc_mixed_reset(g->pc, &g->mx, q);
    return rc ? rc : pvc_sync(g->pc);
}

int kv_cuda_create(const kv_shape *s, const kv_policy *p, kv_cache **out) {
    *out = NULL;
    if (!s || !s->gpu || !p || s->max_seqs <= 0 || s->max_ctx <= 0 || s->gpu_rows <= 0)
        return PV_EINVAL;
    gpu_kv *g = calloc(1, sizeof *g);
    if (!g) return PV_ENOMEM;
    g->pc = s->gpu;
    g->s = *s;
    g->pol = *p;
    g->B = s->gpu_rows;
    const size_t kvd = (size_t)s->n_kv_heads * s->head_dim;
    g->tok_bytes = (size_t)s->n_layers * kvd * 2 * 2;
    g->kv = (pvc_kv_fp16){.max_seqs = s->max_seqs, .n_layers = s->n_layers,
                          .n_kv_heads = s->n_kv_heads, .head_dim = s->head_dim,
                          .max_ctx = s->max_ctx};
    int rc = (g->len = calloc((size_t)s->max_seqs, sizeof(int))) ? PV_OK : PV_ENOMEM;
    if (!rc && kv_policy_is_plain(p)) {
        size_t bytes = (size_t)s->max_seqs * s->n_layers * kvd * (size_t)s->max_ctx * 2;
        rc = pvc_alloc(g->pc, bytes, (void **)&g->kv.k);
        if (!rc) rc = pvc_alloc(g->pc, bytes, (void **)&g->kv.v);
    } else if (!rc) {
        rc = mixed_setup(g);
    }
    if (rc) {
        gkv_destroy(g);
        return rc;
    }
    return kv_create_with(g->mixed ? &gkv_mixed_vt : &gkv_vt, g, s, out); /* frees g on failure */
}

int kv_cuda_rows_per_pass(const kv_cache *c) {
    const gpu_kv *g = as_gpu(c);
    return g && g->mixed ? g->rows_per_seq : 0;
}

/* ---- a pass ---- */

/* Call i's entry of h_mx and its demotion, from kvm_plan's description. */
static void put_entry(gpu_kv *g, int i, int row0, const kv_cuda_call *cl, const kvm_call *k) {
    int32_t *ent = g->h_mx + 2 * (size_t)g->B, *dem = ent + (size_t)g->B * 8;
    int32_t *en = ent + (size_t)i * PVC_MXE_STRIDE;
    memset(en, 0, sizeof(int32_t) * PVC_MXE_STRIDE);
    en[PVC_MXE_SEQ] = cl->seq;
    en[PVC_MXE_ROW0] = row0;
    en[PVC_MXE_N] = cl->n_tokens;
    en[PVC_MXE_HI0] = k->hi0;
    en[PVC_MXE_LO] = k->lo;
    en[PVC_MXE_STEP0] = (int32_t)k->step0;
    en[PVC_MXE_OBSERVE] = k->observe;
    if (!k->k) return;
    int32_t *d = dem + (size_t)g->n_dem++ * PVC_MXD_STRIDE;
    memset(d, 0, sizeof(int32_t) * PVC_MXD_STRIDE);
    d[PVC_MXD_SEQ] = cl->seq;
    d[PVC_MXD_K] = k->k;
    d[PVC_MXD_LEN] = k->len;
    d[PVC_MXD_STEPS] = (int32_t)k->steps;
    d[PVC_MXD_HI] = k->hi;
    d[PVC_MXD_LO] = k->lo;
    d[PVC_MXD_FREEZE] = k->freeze;
}

/* The mixed cache's part of a pass: plans every call on a copy of the counts
 * (kvm_plan), fills the per-row, per-entry and demotion arrays of h_mx, and
 * the largest key count of a row. Committed by kv_cuda_commit. */
static int mixed_plan(gpu_kv *g, const kv_cuda_call *cl, int n, int *max_keys) {
    int32_t *hslot = g->h_mx, *nlo = hslot + g->B;
    *max_keys = 0;
    g->n_dem = 0;
    for (int i = 0, r = 0; i < n; i++) {
        kvm_seq *q = &g->ms_next[cl[i].seq];
        *q = g->ms[cl[i].seq];
        kvm_call k;
        kvm_plan(&g->pol, q, cl[i].n_tokens, &k);
        if (k.hi > g->mx.hi_cap || k.lo + k.k > (g->mx.lo_kbits ? g->mx.lo_cap : k.lo + k.k))
            return PV_ERANGE; /* cannot happen with rows <= rows_per_seq */
        put_entry(g, i, r, &cl[i], &k);
        for (int j = 0; j < cl[i].n_tokens; j++, r++) {
            hslot[r] = k.hi0 + j;
            nlo[r] = k.lo;
        }
        if (k.hi + k.lo > *max_keys) *max_keys = k.hi + k.lo;
    }
    return pvc_h2d(g->pc, g->d_mx, g->h_mx, meta_ints(g) * sizeof(int32_t));
}

int kv_cuda_begin(kv_cache *c, const kv_cuda_call *calls, int n, int *max_keys) {
    gpu_kv *g = as_gpu(c);
    int rows = 0;
    for (int i = 0; i < n; i++) rows += calls[i].n_tokens;
    if (!g || n < 0 || rows > g->B) return PV_EINVAL;
    g->n_ent = n;
    g->n_dem = 0;
    if (g->mixed) return mixed_plan(g, calls, n, max_keys);
    *max_keys = 0;
    for (int i = 0; i < n; i++)
        if (calls[i].pos + calls[i].n_tokens > *max_keys) *max_keys = calls[i].pos + calls[i].n_tokens;
    return PV_OK;
}

int kv_cuda_layer(kv_cache *c, float *qkv, int ld, int T, const pvc_attn_shape *as,
                  const int32_t *d_pos, const int32_t *d_seq, int layer, int max_keys,
                  float *part, size_t part_floats, uint16_t *att, float *lse) {
    gpu_kv *g = as_gpu(c);
    if (!g) return PV_EINVAL;
    if (!g->mixed) {
        int rc = pvc_rope_store(g->pc, qkv, ld, T, as, d_pos, d_seq, &g->kv, layer);
        return rc ? rc
                  : pvc_attention(g->pc, qkv, ld, T, as, d_pos, d_seq, &g->kv, layer, max_keys,
                                  part, part_floats, att, lse);
    }
    const int B = g->B;
    const int32_t *d_hslot = g->d_mx, *d_nlo = d_hslot + B, *d_ent = d_nlo + B;
    int rc = pvc_rope_store_slots(g->pc, qkv, ld, T, as, d_pos, d_seq, d_hslot, &g->hiview, layer);
    if (!rc) rc = pvc_mixed_post_store(g->pc, qkv, ld, as, d_pos, d_ent, g->n_ent, &g->mx, layer);
    if (!rc)
        rc = pvc_mixed_attention(g->pc, qkv, ld, T, as, d_seq, d_hslot, d_nlo, &g->mx, layer,
                                 max_keys, part, part_floats, att, lse);
    if (!rc) rc = pvc_mixed_track(g->pc, qkv, ld, as, d_ent, g->n_ent, lse, &g->mx, layer);
    return rc;
}

/* Every layer's demotions at once: layer l's only matter from the next pass
 * on, as in the CPU cache, which demotes after attending l. */
int kv_cuda_end(kv_cache *c) {
    gpu_kv *g = as_gpu(c);
    if (!g) return PV_EINVAL;
    if (!g->mixed) return PV_OK;
    const int32_t *d_dem = g->d_mx + 2 * (size_t)g->B + (size_t)g->B * 8;
    return pvc_mixed_demote(g->pc, &g->mx, d_dem, g->n_dem);
}

void kv_cuda_commit(kv_cache *c, const kv_cuda_call *calls, int n) {
    gpu_kv *g = as_gpu(c);
    if (!g) return;
    for (int i = 0; i < n; i++) {
        g->len[calls[i].seq] = calls[i].pos + calls[i].n_tokens;
        if (g->mixed) g->ms[calls[i].seq] = g->ms_next[calls[i].seq];
    }
}

int kv_cuda_fill_random(kv_cache *c, int seq, int n_tokens, uint64_t seed) {
    gpu_kv *g = as_gpu(c);
    if (!g || seq < 0 || seq >= g->s.max_seqs || n_tokens < 0 || n_tokens > g->s.max_ctx)
        return PV_EINVAL;
    if (!g->mixed) {
        int rc = pvc_kv_fill_synth(g->pc, &g->kv, seq, n_tokens, seed);
        if (!rc) rc = pvc_sync(g->pc);
        if (!rc) g->len[seq] = n_tokens;
        return rc;
    }
    /* the state a decode reaches: the most the tier rule keeps high (sinks +
     * newest), the rest low or dropped */
    const kv_policy *p = &g->pol;
    int hi = kv_tier_max_high(p, n_tokens), lo = p->lo_bits ? n_tokens - hi : 0;
    int rc = pvc_mixed_fill_synth(g->pc, &g->mx, seq, n_tokens, hi, lo, seed);
    if (!rc) rc = pvc_sync(g->pc);
    if (rc) return rc;
    int bal = kvl_needs_balance(p) && n_tokens > 0;
    g->ms[seq] = (kvm_seq){.len = n_tokens, .n_hi = hi, .n_lo = lo, .n_drop = n_tokens - hi - lo,
                           .steps = n_tokens, .bal_alloc = bal, .frozen = bal};
    g->len[seq] = n_tokens;
    return PV_OK;
}

#else /* no CUDA in this build */

int kv_cuda_create(const kv_shape *s, const kv_policy *p, kv_cache **out) {
    (void)s, (void)p;
    *out = NULL;
    return PV_ENODEV;
}
int kv_cuda_rows_per_pass(const kv_cache *c) {
    (void)c;
    return 0;
}

#endif
