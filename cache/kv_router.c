/* kv_router: per-slot KV policies over lazily created sub-caches. */
#include "kv_router.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_internal.h"
#include "kv_layout.h"
#include "pverr.h"

typedef struct {
    kv_cache *c;   /* NULL: unused entry */
    kv_policy p;
    char key[KV_POLICY_DESC_MAX]; /* the policy's knobs, for equivalence */
    int users;     /* slots routed here; 0: idle, kept for reuse */
} sub_t;

typedef struct {
    kv_shape s;
    kv_policy def;
    sub_t subs[KV_ROUTER_MAX_POLICIES];
    int *slot;     /* [max_seqs] sub index, -1: none yet */
} router;

/* Two policies are equivalent when they build the same cache: every plain
 * FP16 policy is `full`; otherwise all knobs match. The preset name is not
 * part of it (usage reports the request's own name). The description is
 * used rather than memcmp so that struct padding and future knobs cannot
 * make equal policies differ. */
static void policy_key(const kv_policy *p, char *buf, size_t len) {
    if (kv_policy_is_plain(p)) {
        snprintf(buf, len, "plain");
        return;
    }
    kv_policy q = *p;
    q.preset[0] = 0;
    kv_policy_describe(&q, buf, len);
}

static void release(router *r, int seq) {
    int i = r->slot[seq];
    if (i < 0) return;
    r->slot[seq] = -1;
    /* A sub-cache whose last slot left stays (its pages are back in the
     * pool; what remains is page tables and staging): the next request with
     * the same policy then decodes without allocating. route() reclaims idle
     * entries when a new policy needs one. */
    r->subs[i].users--;
}

/* Routes seq to the sub-cache for p, creating it if needed. */
static int route(router *r, int seq, const kv_policy *p, char *err, size_t errlen) {
    char key[KV_POLICY_DESC_MAX];
    policy_key(p, key, sizeof key);
    int free_i = -1, idle_i = -1;
    for (int i = 0; i < KV_ROUTER_MAX_POLICIES; i++) {
        if (r->subs[i].c && !strcmp(r->subs[i].key, key)) {
            r->subs[i].users++;
            r->slot[seq] = i;
            return PV_OK;
        }
        if (!r->subs[i].c && free_i < 0) free_i = i;
        if (r->subs[i].c && !r->subs[i].users && idle_i < 0) idle_i = i;
    }
    if (free_i < 0 && idle_i >= 0) { /* reclaim an idle sub-cache */
        kv_destroy(r->subs[idle_i].c);
        memset(&r->subs[idle_i], 0, sizeof r->subs[idle_i]);
        free_i = idle_i;
    }
    if (free_i < 0) {
        if (err && errlen)
            snprintf(err, errlen, "kv policy: %d different policies are in use; retry later",
                     KV_ROUTER_MAX_POLICIES);
        return PV_ESPACE;
    }
    sub_t *sb = &r->subs[free_i];
    int rc = kv_create(&r->s, p, &sb->c, err, errlen);
    if (rc) return rc;
    sb->p = *p;
    snprintf(sb->key, sizeof sb->key, "%s", key);
    sb->users = 1;
    r->slot[seq] = free_i;
    return PV_OK;
}

static kv_cache *sub_of(const router *r, int seq) {
    return r->slot[seq] < 0 ? NULL : r->subs[r->slot[seq]].c;
}

static int rt_store(void *impl, int seq, int layer, int pos0, int n, const float *k,
                    const float *v) {
    router *r = impl;
    if (r->slot[seq] < 0) { /* first store without a policy: the default one */
        int rc = route(r, seq, &r->def, NULL, 0);
        if (rc) return rc;
    }
    return kv_store(sub_of(r, seq), seq, layer, pos0, n, k, v);
}

/* Runs concurrently for different (seq, head): reads the routing only. */
static int rt_attend(void *impl, int seq, int layer, int kv_head, int pos0, int n, const float *q,
                     float *out, int thread) {
    router *r = impl;
    kv_cache *c = sub_of(r, seq);
    if (!c) return PV_EINVAL; /* queries must follow their own keys */
    return kv_attend_group(c, seq, layer, kv_head, pos0, n, q, out, thread);
}

static int rt_attend_splits(const void *impl, int seq) {
    kv_cache *c = sub_of(impl, seq);
    return c ? kv_attend_splits(c, seq) : 0;
}

static int rt_attend_parts(const void *impl, int seq) {
    kv_cache *c = sub_of(impl, seq);
    return c ? kv_attend_parts(c, seq) : 0;
}

/* Like rt_attend: concurrent for one seq, reads the routing only. */
static int rt_attend_part(void *impl, int seq, int layer, int kv_head, int pos0, int n, int t0,
                          int t1, const float *q, float *out, float *m, float *l, int thread) {
    kv_cache *c = sub_of(impl, seq);
    if (!c) return PV_EINVAL;
    return kv_attend_part(c, seq, layer, kv_head, pos0, n, t0, t1, q, out, m, l, thread);
}

/* Frees the slot's memory and its routing, so a sub-cache with no slot
 * left is destroyed. */
static void rt_reset(void *impl, int seq) {
    router *r = impl;
    kv_cache *c = sub_of(r, seq);
    if (c) kv_seq_reset(c, seq);
    release(r, seq);
}

static int rt_pos(const void *impl, int seq) {
    const router *r = impl;
    kv_cache *c = sub_of(r, seq);
    return c ? kv_seq_pos(c, seq) : 0;
}

static void rt_usage(const void *impl, int seq, kv_usage *u) {
    const router *r = impl;
    kv_cache *c = sub_of(r, seq);
    if (c) kv_seq_usage(c, seq, u);
}

static int rt_budget(void *impl, int seq, double budget) {
    kv_cache *c = sub_of(impl, seq);
    return c ? kv_seq_set_budget(c, seq, budget) : PV_EUNSUPPORTED;
}

static int rt_tiers(const void *impl, int seq, int layer, int kv_head, uint8_t *tier,
                    float *score, int n) {
    kv_cache *c = sub_of(impl, seq);
    if (c) return kv_seq_tiers(c, seq, layer, kv_head, tier, score, n);
    for (int p = 0; p < n; p++) { /* no policy yet: nothing stored */
        tier[p] = KV_TIER_NONE;
        if (score) score[p] = NAN;
    }
    return 0;
}

static int rt_attach(void *impl, int seq, const int32_t *tok, int n) {
    kv_cache *c = sub_of(impl, seq);
    return c ? kv_seq_prefix_attach(c, seq, tok, n) : 0;
}

static int rt_publish(void *impl, int seq, const int32_t *tok, int n, int latest) {
    kv_cache *c = sub_of(impl, seq);
    if (!c) return 0;
    return latest ? kv_seq_prefix_publish_latest(c, seq, tok, n) : kv_seq_prefix_publish(c, seq, tok, n);
}

static int rt_match(const void *impl, int seq, const int32_t *tok, int n) {
    kv_cache *c = sub_of(impl, seq);
    return c ? kv_prefix_match(c, seq, tok, n) : 0;
}

/* Every sub-cache's blocks, idle ones included (they keep theirs until the
 * entry is reclaimed for another policy, which frees them). */
static void rt_prefix_stats(const void *impl, kv_prefix_stats *st) {
    const router *r = impl;
    for (int i = 0; i < KV_ROUTER_MAX_POLICIES; i++)
        if (r->subs[i].c) {
            kv_prefix_stats one;
            kv_prefix_get_stats(r->subs[i].c, &one);
            st->bytes += one.bytes;
            st->bytes_referenced += one.bytes_referenced;
            st->bytes_evictable += one.bytes_evictable;
            st->blocks += one.blocks;
            st->blocks_referenced += one.blocks_referenced;
            st->evictions += one.evictions;
            if (!st->block_tokens) st->block_tokens = one.block_tokens;
        }
}

static size_t rt_prefix_evict(void *impl, size_t bytes) {
    router *r = impl;
    size_t freed = 0;
    for (int i = 0; i < KV_ROUTER_MAX_POLICIES && freed < bytes; i++)
        if (r->subs[i].c) freed += kv_prefix_evict(r->subs[i].c, bytes - freed);
    return freed;
}

static void rt_destroy(void *impl) {
    router *r = impl;
    if (!r) return;
    for (int i = 0; i < KV_ROUTER_MAX_POLICIES; i++) kv_destroy(r->subs[i].c);
    free(r->slot);
    free(r);
}

static const kv_vtable router_vt = {
    .name = "router",
    .store = rt_store,
    .attend_group = rt_attend,
    .attend_splits = rt_attend_splits,
    .attend_parts = rt_attend_parts,
    .attend_part = rt_attend_part,
    .seq_reset = rt_reset,
    .seq_pos = rt_pos,
    .seq_usage = rt_usage,
    .seq_budget = rt_budget,
    .seq_tiers = rt_tiers,
    .seq_attach = rt_attach,
    .seq_publish = rt_publish,
    .prefix_match = rt_match,
    .prefix_stats = rt_prefix_stats,
    .prefix_evict = rt_prefix_evict,
    .destroy = rt_destroy,
};

int kv_create_router(const kv_shape *s, const kv_policy *def, kv_cache **out, char *err,
                     size_t errlen) {
    if (out) *out = NULL;
    if (!s || !def || !out || s->max_seqs <= 0) {
        if (err && errlen) snprintf(err, errlen, "kv router: missing shape or policy");
        return PV_EINVAL;
    }
    int rc = kv_policy_check_shape(def, s, err, errlen);
    if (rc) return rc;
    router *r = calloc(1, sizeof *r);
    if (!r || !(r->slot = malloc(sizeof(int) * (size_t)s->max_seqs))) {
        free(r);
        return PV_ENOMEM;
    }
    r->s = *s;
    r->s.routed = 0; /* the sub-caches are plain or mixed caches of this shape */
    r->def = *def;
    for (int i = 0; i < s->max_seqs; i++) r->slot[i] = -1;
    return kv_create_with(&router_vt, r, s, out);
}

static router *as_router(const kv_cache *c) {
    return c && kv_vt(c) == &router_vt ? kv_impl(c) : NULL;
}

int kv_seq_set_policy(kv_cache *c, int seq, const kv_policy *p, char *err, size_t errlen) {
    router *r = as_router(c);
    if (!r || seq < 0 || seq >= r->s.max_seqs) {
        if (err && errlen) snprintf(err, errlen, "kv router: not a router or bad slot %d", seq);
        return PV_EINVAL;
    }
    kv_cache *cur = sub_of(r, seq);
    if (cur && kv_seq_pos(cur, seq) > 0) {
        /* Its tokens are encoded under the old policy. */
        if (err && errlen) snprintf(err, errlen, "kv router: slot %d holds tokens", seq);
        return PV_EINVAL;
    }
    if (!p) p = &r->def;
    int rc = kv_policy_check_shape(p, &r->s, err, errlen);
    if (rc) return rc;
    /* Take the new route before letting the old one go, so a slot moving
     * between two slots' worth of the same policy never frees it. */
    int old = r->slot[seq];
    r->slot[seq] = -1;
    rc = route(r, seq, p, err, errlen);
    if (old >= 0) {
        int now = r->slot[seq];
        r->slot[seq] = old;
        release(r, seq);
        r->slot[seq] = now;
    }
    return rc;
}

size_t kv_router_headroom(const kv_shape *s, int max_batch_tokens) {
    size_t hd = (size_t)s->head_dim, T = max_batch_tokens > 0 ? (size_t)max_batch_tokens : 1;
    size_t pend = T * s->n_kv_heads * 2 * hd * sizeof(float);
    /* A high-tier token at its largest: FP16 key and value, position, the
     * accumulated tracker's 8 bytes. */
    size_t hi_tok = 4 * hd + 4 + 8;
    size_t chunk = (T + 2 * KVL_PAGE) * hi_tok * (size_t)s->n_threads;
    return pend + chunk;
}

int kv_router_n_caches(const kv_cache *c) {
    router *r = as_router(c);
    int n = 0;
    for (int i = 0; r && i < KV_ROUTER_MAX_POLICIES; i++) n += r->subs[i].c && r->subs[i].users;
    return n;
}

const kv_cache *kv_router_slot_cache(const kv_cache *c, int seq) {
    router *r = as_router(c);
    return r && seq >= 0 && seq < r->s.max_seqs ? sub_of(r, seq) : NULL;
}
