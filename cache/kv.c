/* kv: the kv_cache wrapper every implementation sits behind (kv.h). */
#include "kv.h"

#include <stdlib.h>
#include <string.h>

#include "kv_internal.h"
#include "pverr.h"

struct kv_cache {
    const kv_vtable *vt;
    void *impl; /* owned; freed by vt->destroy */
    kv_shape shape;
};

int kv_create_with(const kv_vtable *vt, void *impl, const kv_shape *shape, kv_cache **out) {
    *out = NULL;
    if (!vt || !impl || !shape) return PV_EINVAL;
    kv_cache *c = calloc(1, sizeof *c);
    if (!c) {
        vt->destroy(impl);
        return PV_ENOMEM;
    }
    c->vt = vt;
    c->impl = impl;
    c->shape = *shape;
    *out = c;
    return PV_OK;
}

void kv_destroy(kv_cache *c) {
    if (!c) return;
    c->vt->destroy(c->impl);
    free(c);
}

const kv_shape *kv_get_shape(const kv_cache *c) { return &c->shape; }
const char *kv_name(const kv_cache *c) { return c->vt->name; }

int kv_get_policy(const kv_cache *c, kv_policy *out) {
    if (!c || !out) return PV_EINVAL;
    return c->vt->policy ? c->vt->policy(c->impl, out) : PV_EUNSUPPORTED;
}

static int bad_slot(const kv_cache *c, int seq) { return seq < 0 || seq >= c->shape.max_seqs; }

int kv_store(kv_cache *c, int seq, int layer, int pos0, int n, const float *k, const float *v) {
    if (bad_slot(c, seq) || layer < 0 || layer >= c->shape.n_layers || n < 0) return PV_EINVAL;
    return c->vt->store(c->impl, seq, layer, pos0, n, k, v);
}

int kv_attend_group(kv_cache *c, int seq, int layer, int kv_head, int pos0, int n, const float *q,
                    float *out, int thread) {
    if (bad_slot(c, seq) || layer < 0 || layer >= c->shape.n_layers || kv_head < 0 ||
        kv_head >= c->shape.n_kv_heads || thread < 0 || thread >= c->shape.n_threads)
        return PV_EINVAL;
    return c->vt->attend_group(c->impl, seq, layer, kv_head, pos0, n, q, out, thread);
}

int kv_attend_splits(const kv_cache *c, int seq) {
    if (bad_slot(c, seq) || !c->vt->attend_splits) return 0;
    return c->vt->attend_splits(c->impl, seq);
}

void kv_seq_reset(kv_cache *c, int seq) {
    if (!bad_slot(c, seq)) c->vt->seq_reset(c->impl, seq);
}

int kv_seq_pos(const kv_cache *c, int seq) {
    if (bad_slot(c, seq)) return PV_EINVAL;
    return c->vt->seq_pos(c->impl, seq);
}

void kv_seq_usage(const kv_cache *c, int seq, kv_usage *u) {
    memset(u, 0, sizeof *u);
    if (!bad_slot(c, seq)) c->vt->seq_usage(c->impl, seq, u);
}

int kv_seq_set_budget(kv_cache *c, int seq, double budget) {
    if (bad_slot(c, seq) || !(budget >= 0)) return PV_EINVAL;
    return c->vt->seq_budget ? c->vt->seq_budget(c->impl, seq, budget) : PV_EUNSUPPORTED;
}

int kv_seq_tiers(const kv_cache *c, int seq, int layer, int kv_head, uint8_t *tier, float *score,
                 int n) {
    if (!c || bad_slot(c, seq) || layer < 0 || layer >= c->shape.n_layers || kv_head < 0 ||
        kv_head >= c->shape.n_kv_heads || n < 0 || (n && !tier))
        return PV_EINVAL;
    if (!c->vt->seq_tiers) return PV_EUNSUPPORTED;
    return c->vt->seq_tiers(c->impl, seq, layer, kv_head, tier, score, n);
}

int kv_seq_prefix_attach(kv_cache *c, int seq, const int32_t *tok, int n) {
    if (!c || bad_slot(c, seq) || n < 0 || (n && !tok)) return PV_EINVAL;
    return c->vt->seq_attach ? c->vt->seq_attach(c->impl, seq, tok, n) : 0;
}

int kv_seq_prefix_publish(kv_cache *c, int seq, const int32_t *tok, int n) {
    if (!c || bad_slot(c, seq) || n < 0 || (n && !tok)) return PV_EINVAL;
    return c->vt->seq_publish ? c->vt->seq_publish(c->impl, seq, tok, n) : 0;
}

int kv_prefix_match(const kv_cache *c, int seq, const int32_t *tok, int n) {
    if (!c || bad_slot(c, seq) || n < 0 || (n && !tok)) return PV_EINVAL;
    return c->vt->prefix_match ? c->vt->prefix_match(c->impl, seq, tok, n) : 0;
}

void kv_prefix_get_stats(const kv_cache *c, kv_prefix_stats *st) {
    memset(st, 0, sizeof *st);
    if (c && c->vt->prefix_stats) c->vt->prefix_stats(c->impl, st);
}

size_t kv_prefix_evict(kv_cache *c, size_t bytes) {
    return c && c->vt->prefix_evict ? c->vt->prefix_evict(c->impl, bytes) : 0;
}

void *kv_impl(const kv_cache *c) { return c->impl; }
const kv_vtable *kv_vt(const kv_cache *c) { return c->vt; }
