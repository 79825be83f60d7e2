/* kv: the kv_cache wrapper every implementation sits behind (kv.h). */
#include "kv.h"

#include <math.h>
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

/* The indices every attention entry point takes. */
static int bad_head(const kv_cache *c, int seq, int layer, int kv_head, int thread) {
    return bad_slot(c, seq) || layer < 0 || layer >= c->shape.n_layers || kv_head < 0 ||
           kv_head >= c->shape.n_kv_heads || thread < 0 || thread >= c->shape.n_threads;
}

int kv_store(kv_cache *c, int seq, int layer, int pos0, int n, const float *k, const float *v) {
    if (bad_slot(c, seq) || layer < 0 || layer >= c->shape.n_layers || n < 0) return PV_EINVAL;
    return c->vt->store(c->impl, seq, layer, pos0, n, k, v);
}

int kv_attend_group(kv_cache *c, int seq, int layer, int kv_head, int pos0, int n, const float *q,
                    float *out, int thread) {
    if (bad_head(c, seq, layer, kv_head, thread)) return PV_EINVAL;
    return c->vt->attend_group(c->impl, seq, layer, kv_head, pos0, n, q, out, thread);
}

int kv_attend_splits(const kv_cache *c, int seq) {
    if (bad_slot(c, seq) || !c->vt->attend_splits) return 0;
    return c->vt->attend_splits(c->impl, seq);
}

int kv_attend_parts(const kv_cache *c, int seq) {
    if (bad_slot(c, seq) || !c->vt->attend_parts || !c->vt->attend_part) return 0;
    return c->vt->attend_parts(c->impl, seq);
}

int kv_attend_part(kv_cache *c, int seq, int layer, int kv_head, int pos0, int n, int t0, int t1,
                   const float *q, float *out, float *m, float *l, int thread) {
    if (bad_head(c, seq, layer, kv_head, thread) || t0 < 0 || t1 <= t0) return PV_EINVAL;
    int a = kv_attend_parts(c, seq);
    if (a <= 0) return PV_EUNSUPPORTED;
    if (t0 % a) return PV_EINVAL;
    return c->vt->attend_part(c->impl, seq, layer, kv_head, pos0, n, t0, t1, q, out, m, l, thread);
}

/* Weights e^(m_p - M) <= 1 (the largest part's is exactly 1), so nothing
 * overflows whatever the parts' scales. */
void kv_attend_merge(int n_parts, int rows, int head_dim, const float *o, size_t o_stride,
                     const float *m, const float *l, size_t ml_stride, float *out) {
    for (int r = 0; r < rows; r++) {
        float M = -INFINITY;
        for (int p = 0; p < n_parts; p++)
            if (m[p * ml_stride + r] > M) M = m[p * ml_stride + r];
        float *dst = out + (size_t)r * head_dim, L = 0.0f;
        memset(dst, 0, sizeof(float) * head_dim);
        for (int p = 0; p < n_parts; p++) {
            float mp = m[p * ml_stride + r];
            if (mp == -INFINITY) continue; /* the part saw no key of this row */
            float w = expf(mp - M);
            const float *src = o + p * o_stride + (size_t)r * head_dim;
            L += w * l[p * ml_stride + r];
            for (int x = 0; x < head_dim; x++) dst[x] += w * src[x];
        }
        float inv = 1.0f / L;
        for (int x = 0; x < head_dim; x++) dst[x] *= inv;
    }
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

static int publish(kv_cache *c, int seq, const int32_t *tok, int n, int latest) {
    if (!c || bad_slot(c, seq) || n < 0 || (n && !tok)) return PV_EINVAL;
    return c->vt->seq_publish ? c->vt->seq_publish(c->impl, seq, tok, n, latest) : 0;
}

int kv_seq_prefix_publish(kv_cache *c, int seq, const int32_t *tok, int n) {
    return publish(c, seq, tok, n, 0);
}

int kv_seq_prefix_publish_latest(kv_cache *c, int seq, const int32_t *tok, int n) {
    return publish(c, seq, tok, n, 1);
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
