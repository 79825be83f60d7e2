/* The plain FP16 KV cache: every token of every head at half precision.
 *
 * Memory per (sequence, layer) is a list of pages of KV_PAGE tokens, laid
 * out [k|v][kv_head][token][head_dim] so that one head's keys are contiguous
 * within a page (the attention loop streams them). Pages are allocated as a
 * sequence grows and freed when it is reset, so a short request costs little
 * even when max_ctx is large. */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_pool.h"
#include "pverr.h"
#include "quant.h"

#define KV_PAGE 64

typedef float (*dot_fn)(const uint16_t *k, const float *q, int d);
typedef void (*axpy_fn)(float *out, float a, const uint16_t *v, int d);

typedef struct {
    uint16_t **pages; /* [n_pages] each [2][n_kv_heads][KV_PAGE][head_dim] */
    int n_pages;
    int cap_pages; /* entries of `pages`; kept across resets so that reusing a
                    * slot allocates nothing once its pages come from the pool */
    int len; /* tokens stored in this layer */
} layer_store;

typedef struct {
    kv_shape s;
    layer_store *ls; /* [max_seqs][n_layers] */
    float *scratch;  /* [n_threads][max_ctx] attention scores */
    dot_fn dot;
    axpy_fn axpy;
} fp16_cache;

static float dot_scalar(const uint16_t *k, const float *q, int d) {
    float s = 0.0f;
    for (int i = 0; i < d; i++) s += kq_fp16_to_fp32(k[i]) * q[i];
    return s;
}

static void axpy_scalar(float *out, float a, const uint16_t *v, int d) {
    for (int i = 0; i < d; i++) out[i] += a * kq_fp16_to_fp32(v[i]);
}

/* F16C converts 8 halves per instruction; without it the conversion, not
 * the arithmetic, would dominate attention time. */
__attribute__((target("avx2,fma,f16c"))) static float dot_f16c(const uint16_t *k, const float *q,
                                                                int d) {
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= d; i += 8) {
        __m256 kk = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i)));
        acc = _mm256_fmadd_ps(kk, _mm256_loadu_ps(q + i), acc);
    }
    __m128 lo = _mm256_castps256_ps128(acc), hi = _mm256_extractf128_ps(acc, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    float s = _mm_cvtss_f32(lo);
    for (; i < d; i++) s += kq_fp16_to_fp32(k[i]) * q[i];
    return s;
}

__attribute__((target("avx2,fma,f16c"))) static void axpy_f16c(float *out, float a,
                                                                const uint16_t *v, int d) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= d; i += 8) {
        __m256 vv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i)));
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(va, vv, _mm256_loadu_ps(out + i)));
    }
    for (; i < d; i++) out[i] += a * kq_fp16_to_fp32(v[i]);
}

static layer_store *get_ls(fp16_cache *c, int seq, int layer) {
    return &c->ls[(size_t)seq * c->s.n_layers + layer];
}

static size_t page_elems(const fp16_cache *c) {
    return (size_t)2 * c->s.n_kv_heads * KV_PAGE * c->s.head_dim;
}

/* Pointer to token t's key (kv=0) or value (kv=1) for one head. */
static uint16_t *slot(const fp16_cache *c, const layer_store *l, int kv, int head, int t) {
    uint16_t *p = l->pages[t / KV_PAGE];
    size_t hd = (size_t)c->s.head_dim;
    return p + (((size_t)kv * c->s.n_kv_heads + head) * KV_PAGE + (t % KV_PAGE)) * hd;
}

static int fp16_store(void *impl, int seq, int layer, int pos0, int n, const float *k,
                      const float *v) {
    fp16_cache *c = impl;
    layer_store *l = get_ls(c, seq, layer);
    /* The plain cache holds every position densely, so stores must be
     * contiguous; a gap would mean the caller lost track of the sequence. */
    if (pos0 != l->len) return PV_EINVAL;
    if (pos0 + n > c->s.max_ctx) return PV_ECTXFULL;
    int need_pages = (pos0 + n + KV_PAGE - 1) / KV_PAGE;
    if (need_pages > l->n_pages) {
        if (need_pages > l->cap_pages) {
            int cap = l->cap_pages * 2 > need_pages ? l->cap_pages * 2 : need_pages;
            uint16_t **np = realloc(l->pages, sizeof *np * (size_t)cap);
            if (!np) return PV_ENOMEM;
            l->pages = np;
            l->cap_pages = cap;
        }
        for (int p = l->n_pages; p < need_pages; p++) {
            l->pages[p] = kv_pool_alloc(c->s.pool, page_elems(c) * sizeof(uint16_t));
            if (!l->pages[p]) {
                l->n_pages = p;
                return PV_ENOMEM;
            }
        }
        l->n_pages = need_pages;
    }
    int hd = c->s.head_dim, nkv = c->s.n_kv_heads;
    for (int i = 0; i < n; i++) {
        for (int h = 0; h < nkv; h++) {
            const float *ks = k + (size_t)i * nkv * hd + (size_t)h * hd;
            const float *vs = v + (size_t)i * nkv * hd + (size_t)h * hd;
            uint16_t *kd = slot(c, l, 0, h, pos0 + i), *vd = slot(c, l, 1, h, pos0 + i);
            for (int d = 0; d < hd; d++) {
                kd[d] = kq_fp32_to_fp16(ks[d]);
                vd[d] = kq_fp32_to_fp16(vs[d]);
            }
        }
    }
    l->len = pos0 + n;
    return PV_OK;
}

static int fp16_attend(void *impl, int seq, int layer, int kv_head, int pos0, int n, const float *q,
                       float *out, int thread) {
    fp16_cache *c = impl;
    layer_store *l = get_ls(c, seq, layer);
    int hd = c->s.head_dim, nh = c->s.n_heads;
    int group = nh / c->s.n_kv_heads;
    float scale = 1.0f / sqrtf((float)hd);
    float *sc = c->scratch + (size_t)thread * c->s.max_ctx;
    if (pos0 + n > l->len) return PV_EINVAL; /* queries must follow their own keys */
    for (int i = 0; i < n; i++) {
        int n_keys = pos0 + i + 1; /* causal: positions 0..pos0+i */
        for (int g = 0; g < group; g++) {
            int h = kv_head * group + g;
            const float *qv = q + (size_t)i * nh * hd + (size_t)h * hd;
            float *o = out + (size_t)i * nh * hd + (size_t)h * hd;
            float mx = -INFINITY;
            for (int t = 0; t < n_keys; t++) {
                sc[t] = c->dot(slot(c, l, 0, kv_head, t), qv, hd) * scale;
                if (sc[t] > mx) mx = sc[t];
            }
            double sum = 0.0;
            for (int t = 0; t < n_keys; t++) {
                sc[t] = expf(sc[t] - mx);
                sum += sc[t];
            }
            float inv = (float)(1.0 / sum);
            memset(o, 0, sizeof(float) * hd);
            for (int t = 0; t < n_keys; t++) c->axpy(o, sc[t] * inv, slot(c, l, 1, kv_head, t), hd);
        }
    }
    return PV_OK;
}

static void fp16_seq_reset(void *impl, int seq) {
    fp16_cache *c = impl;
    for (int L = 0; L < c->s.n_layers; L++) {
        layer_store *l = get_ls(c, seq, L);
        for (int p = 0; p < l->n_pages; p++)
            kv_pool_free(c->s.pool, l->pages[p], page_elems(c) * sizeof(uint16_t));
        l->n_pages = 0;
        l->len = 0;
    }
}

static int fp16_seq_pos(const void *impl, int seq) {
    const fp16_cache *c = impl;
    return c->ls[(size_t)seq * c->s.n_layers].len;
}

static void fp16_seq_usage(const void *impl, int seq, kv_usage *u) {
    const fp16_cache *c = impl;
    size_t stored = 0;
    int n = c->ls[(size_t)seq * c->s.n_layers].len;
    for (int L = 0; L < c->s.n_layers; L++)
        stored += (size_t)c->ls[(size_t)seq * c->s.n_layers + L].n_pages * page_elems(c) * 2;
    u->bytes_stored = stored;
    u->bytes_fp16 = (size_t)n * c->s.n_layers * c->s.n_kv_heads * c->s.head_dim * 2 * 2;
    u->n_tokens = n;
    u->n_high = n;
}

static void fp16_destroy(void *impl) {
    fp16_cache *c = impl;
    if (!c) return;
    if (c->ls)
        for (int s = 0; s < c->s.max_seqs; s++) {
            fp16_seq_reset(c, s);
            for (int L = 0; L < c->s.n_layers; L++) free(get_ls(c, s, L)->pages);
        }
    free(c->ls);
    free(c->scratch);
    free(c);
}

static const kv_vtable fp16_vt = {
    .name = "fp16",
    .store = fp16_store,
    .attend_group = fp16_attend,
    .seq_reset = fp16_seq_reset,
    .seq_pos = fp16_seq_pos,
    .seq_usage = fp16_seq_usage,
    .destroy = fp16_destroy,
};

int kv_create_fp16(const kv_shape *s, kv_cache **out) {
    *out = NULL;
    if (!s || s->n_layers <= 0 || s->n_heads <= 0 || s->n_kv_heads <= 0 || s->head_dim <= 0 ||
        s->n_heads % s->n_kv_heads != 0 || s->max_seqs <= 0 || s->max_ctx <= 0 || s->n_threads <= 0)
        return PV_EINVAL;
    fp16_cache *c = calloc(1, sizeof *c);
    if (!c) return PV_ENOMEM;
    c->s = *s;
    c->ls = calloc((size_t)s->max_seqs * s->n_layers, sizeof *c->ls);
    c->scratch = malloc(sizeof(float) * (size_t)s->n_threads * s->max_ctx);
    if (!c->ls || !c->scratch) {
        fp16_destroy(c);
        return PV_ENOMEM;
    }
    int simd = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
    c->dot = simd ? dot_f16c : dot_scalar;
    c->axpy = simd ? axpy_f16c : axpy_scalar;
    return kv_create_with(&fp16_vt, c, s, out);
}
