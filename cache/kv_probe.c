/* kv_probe: exact float attention for one sequence, with the induction
 * score of every (layer, KV head) measured on the way (kv_probe.h). */
#include "kv_probe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv_internal.h"
#include "pverr.h"

typedef struct {
    kv_shape s;
    int first, len;    /* the copy layout */
    int *n;            /* [n_layers] positions stored */
    float *k, *v;      /* [n_layers][n_kv_heads][max_ctx][head_dim] */
    double *p;         /* [n_threads][max_ctx + head_dim] one query's probabilities,
                          then its value sums */
    double *sum;       /* [n_layers * n_kv_heads] induction probabilities summed */
    long *cnt;         /* [n_layers * n_kv_heads] query heads x queries summed over */
} probe;

static size_t head_off(const probe *c, int layer, int h) {
    return (((size_t)layer * c->s.n_kv_heads + h) * c->s.max_ctx) * c->s.head_dim;
}

static int pr_store(void *impl, int seq, int layer, int pos0, int n, const float *k,
                    const float *v) {
    probe *c = impl;
    const int hd = c->s.head_dim, nkv = c->s.n_kv_heads;
    if (seq != 0 || pos0 != c->n[layer] || n < 0) return PV_EINVAL;
    if (pos0 + n > c->s.max_ctx) return PV_ECTXFULL;
    for (int i = 0; i < n; i++)
        for (int h = 0; h < nkv; h++) {
            size_t o = head_off(c, layer, h) + (size_t)(pos0 + i) * hd;
            memcpy(c->k + o, k + ((size_t)i * nkv + h) * hd, sizeof(float) * (size_t)hd);
            memcpy(c->v + o, v + ((size_t)i * nkv + h) * hd, sizeof(float) * (size_t)hd);
        }
    c->n[layer] = pos0 + n;
    return PV_OK;
}

/* One query row of one query head: softmax over positions 0..t, the
 * weighted values into o; returns the probability at `target` (-1: none).
 * Every sum runs in double in the order of a plain loop over j (then x);
 * four keys at a time and the value sums kept per channel only give the
 * CPU independent chains (the same results; `pivot heads --samples 2
 * --length 256`, the ranking the server runs at start, 1.39 -> 0.95 s on
 * two cores). acc holds head_dim doubles. */
static double attend_row(const probe *c, const float *K, const float *V, const float *q, int t,
                         int target, double *p, double *acc, float *o) {
    const int hd = c->s.head_dim;
    const double scale = 1.0 / sqrt((double)hd);
    double mx = -INFINITY, z = 0;
    int j = 0;
    for (; j + 3 <= t; j += 4) {
        const float *k0 = K + (size_t)j * hd;
        double d0 = 0, d1 = 0, d2 = 0, d3 = 0;
        for (int x = 0; x < hd; x++) {
            d0 += (double)q[x] * k0[x];
            d1 += (double)q[x] * k0[hd + x];
            d2 += (double)q[x] * k0[2 * hd + x];
            d3 += (double)q[x] * k0[3 * hd + x];
        }
        p[j] = d0 * scale, p[j + 1] = d1 * scale, p[j + 2] = d2 * scale, p[j + 3] = d3 * scale;
    }
    for (; j <= t; j++) {
        double d = 0;
        for (int x = 0; x < hd; x++) d += (double)q[x] * K[(size_t)j * hd + x];
        p[j] = d * scale;
    }
    for (j = 0; j <= t; j++)
        if (p[j] > mx) mx = p[j];
    for (j = 0; j <= t; j++) z += (p[j] = exp(p[j] - mx));
    for (int x = 0; x < hd; x++) acc[x] = 0;
    for (j = 0; j <= t; j++)
        for (int x = 0; x < hd; x++) acc[x] += p[j] * V[(size_t)j * hd + x];
    for (int x = 0; x < hd; x++) o[x] = (float)(acc[x] / z);
    return target >= 0 && target <= t ? p[target] / z : -1;
}

static int pr_attend(void *impl, int seq, int layer, int kv_head, int pos0, int n, const float *q,
                     float *out, int thread) {
    probe *c = impl;
    const int hd = c->s.head_dim, g = c->s.n_heads / c->s.n_kv_heads, qd = c->s.n_heads * hd;
    if (seq != 0 || pos0 < 0 || n < 0 || pos0 + n > c->n[layer]) return PV_EINVAL;
    const size_t ho = head_off(c, layer, kv_head);
    double *p = c->p + (size_t)thread * (c->s.max_ctx + hd);
    double sum = 0;
    long cnt = 0;
    for (int i = 0; i < n; i++) {
        int t = pos0 + i;
        /* the second copy's queries that have a next token to fetch */
        int probed = t >= c->first + c->len && t < c->first + 2 * c->len - 1;
        for (int r = 0; r < g; r++) {
            size_t qo = (size_t)i * qd + (size_t)(kv_head * g + r) * hd;
            double pt = attend_row(c, c->k + ho, c->v + ho, q + qo, t, probed ? t - c->len + 1 : -1,
                                   p, p + c->s.max_ctx, out + qo);
            if (probed) sum += pt, cnt++;
        }
    }
    /* only this task touches (layer, kv_head) while the layer runs */
    c->sum[(size_t)layer * c->s.n_kv_heads + kv_head] += sum;
    c->cnt[(size_t)layer * c->s.n_kv_heads + kv_head] += cnt;
    return PV_OK;
}

static void pr_reset(void *impl, int seq) {
    probe *c = impl;
    if (seq == 0) memset(c->n, 0, sizeof(int) * (size_t)c->s.n_layers);
}

static int pr_pos(const void *impl, int seq) {
    const probe *c = impl;
    return seq == 0 ? c->n[0] : 0;
}

static void pr_usage(const void *impl, int seq, kv_usage *u) {
    const probe *c = impl;
    memset(u, 0, sizeof *u);
    if (seq) return;
    u->n_tokens = u->n_high = c->n[0];
    u->bytes_fp16 = (size_t)c->n[0] * c->s.n_layers * c->s.n_kv_heads * c->s.head_dim * 4;
    u->bytes_stored = 2 * u->bytes_fp16; /* float keys and values */
}

static void pr_destroy(void *impl) {
    probe *c = impl;
    if (!c) return;
    free(c->n);
    free(c->k);
    free(c->v);
    free(c->p);
    free(c->sum);
    free(c->cnt);
    free(c);
}

static const kv_vtable probe_vt = {
    .name = "probe",
    .store = pr_store,
    .attend_group = pr_attend,
    .seq_reset = pr_reset,
    .seq_pos = pr_pos,
    .seq_usage = pr_usage,
    .destroy = pr_destroy,
};

int kv_create_probe(const kv_shape *s, int first, int len, kv_cache **out) {
    if (!out) return PV_EINVAL;
    *out = NULL;
    if (!s || s->max_seqs != 1 || s->n_layers <= 0 || s->n_kv_heads <= 0 || s->head_dim <= 0 ||
        s->n_heads % s->n_kv_heads || s->n_threads <= 0 || first < 0 || len < 2 ||
        first + 2 * (long)len > s->max_ctx)
        return PV_EINVAL;
    probe *c = calloc(1, sizeof *c);
    if (!c) return PV_ENOMEM;
    c->s = *s;
    c->first = first;
    c->len = len;
    size_t heads = (size_t)s->n_layers * s->n_kv_heads;
    size_t kvn = heads * s->max_ctx * s->head_dim;
    c->n = calloc((size_t)s->n_layers, sizeof *c->n);
    c->k = malloc(sizeof(float) * kvn);
    c->v = malloc(sizeof(float) * kvn);
    c->p = malloc(sizeof(double) * (size_t)s->n_threads * (s->max_ctx + (size_t)s->head_dim));
    c->sum = calloc(heads, sizeof *c->sum);
    c->cnt = calloc(heads, sizeof *c->cnt);
    if (!c->n || !c->k || !c->v || !c->p || !c->sum || !c->cnt) {
        pr_destroy(c);
        return PV_ENOMEM;
    }
    return kv_create_with(&probe_vt, c, s, out); /* frees c on failure */
}

long kv_probe_scores(const kv_cache *kc, double *out) {
    if (!kc || !out || kv_vt(kc) != &probe_vt) return PV_EINVAL;
    const probe *c = kv_impl(kc);
    size_t heads = (size_t)c->s.n_layers * c->s.n_kv_heads;
    long per = 0;
    for (size_t i = 0; i < heads; i++) {
        out[i] = c->cnt[i] ? c->sum[i] / (double)c->cnt[i] : 0;
        if (c->cnt[i] > per) per = c->cnt[i];
    }
    return per / (c->s.n_heads / c->s.n_kv_heads);
}
