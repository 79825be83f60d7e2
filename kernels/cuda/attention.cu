// The FP16 KV cache on the GPU and attention over it.
//
// Cache layout (pvc_kv_fp16): [slot][layer][kv_head][max_ctx][head_dim] for K
// and for V, so one head's tokens are contiguous and a block streams them
// with 16-byte loads.
//
// Attention (one kernel for decode and chunked prefill): a block takes one
// query row, one KV head (all `group` query heads that share it, so K/V are
// read once per group: GQA) and one split of the keys 0..pos. Inside a split
// it walks tiles of keys: scores for the tile into shared memory (lanes split
// head_dim 8 values each, a few lanes per key), an online-softmax update of
// the running max/sum, then the V accumulation. Splits are merged by a second
// kernel that also writes each head's log-sum-exp — the quantity an
// importance-tracking cache needs to turn recomputed scores into
// probabilities (p_i = exp(s_i - lse)). Flash-decoding: at batch 1 the splits
// put every SM to work on a long context; at large batch they go to 1-2.
// The loop inside a split is attn_body.cuh's, shared with the mixed cache.
#include <math.h>

#include "attn_body.cuh"
#include "common.cuh"
#include "synth_hash.h"

#define ATT_THREADS 128
#define ATT_TILE 128

struct att_args {
    const float *qkv;
    int ld, n_heads, n_kv, group;
    const int32_t *pos, *seq;
    const __half *kc, *vc;
    int n_layers, max_ctx, layer;
    int n_split, chunk;
    float *part_o;  // [T][n_heads][n_split][HD]
    float *part_ml; // [T][n_heads][n_split][2] running max, sum
};

// The FP16 cache's keys and values of one (slot, layer, KV head).
template <int HD>
struct att_fp16_src {
    const pvc_h8 *K, *V;
    __device__ void key(int key, int ln, float *f) const {
        pvc_h8_to_f(K[(size_t)key * (HD / 8) + ln], f);
    }
    __device__ void val(int key, int ln, float *f) const {
        pvc_h8_to_f(V[(size_t)key * (HD / 8) + ln], f);
    }
};

template <int HD, int GM>
__global__ void __launch_bounds__(ATT_THREADS) attn_split_kernel(att_args a) {
    const int row = blockIdx.z, kvh = blockIdx.y, sp = blockIdx.x;
    const int G = a.group;
    const int n_keys = a.pos[row] + 1;
    const int k0 = sp * a.chunk;
    const int k1 = min(k0 + a.chunk, n_keys);
    const size_t base =
        (((size_t)a.seq[row] * a.n_layers + a.layer) * a.n_kv + kvh) * (size_t)a.max_ctx * HD;
    const att_fp16_src<HD> src = {(const pvc_h8 *)(a.kc + base), (const pvc_h8 *)(a.vc + base)};
    const float *qrow = a.qkv + (size_t)row * a.ld + (size_t)(kvh * G) * HD;
    const size_t ph0 = ((size_t)row * a.n_heads + kvh * G) * a.n_split + sp;
    pvc_attn_split_body<HD, GM, ATT_THREADS, ATT_TILE>(src, qrow, G, k0, k1, ph0, a.n_split,
                                                       a.part_o, a.part_ml);
}

// One block per (head, row), one thread per output dim.
__global__ void attn_combine_kernel(const float *part_o, const float *part_ml, int n_heads,
                                    int n_split, int hd, __half *out, float *lse) {
    const int h = blockIdx.x, row = blockIdx.y, d = threadIdx.x;
    const size_t ph = ((size_t)row * n_heads + h) * n_split;
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++) M = fmaxf(M, part_ml[(ph + s) * 2]);
    float L = 0.f, o = 0.f;
    for (int s = 0; s < n_split; s++) {
        const float m = part_ml[(ph + s) * 2];
        if (m == -INFINITY) continue; // empty split
        const float w = expf(m - M);
        L += part_ml[(ph + s) * 2 + 1] * w;
        o += part_o[(ph + s) * hd + d] * w;
    }
    out[((size_t)row * n_heads + h) * hd + d] = __float2half_rn(o / L);
    if (d == 0 && lse) lse[(size_t)row * n_heads + h] = M + logf(L);
}

int pvc_attn_combine(pvc_ctx *c, const float *part_o, const float *part_ml, int T, int n_heads,
                     int n_split, int hd, uint16_t *out, float *lse) {
    attn_combine_kernel<<<dim3(n_heads, T), hd, 0, c->stream>>>(part_o, part_ml, n_heads, n_split,
                                                                hd, (__half *)out, lse);
    PVC_CHECK_LAUNCH("attention combine");
    return PV_OK;
}

int pvc_attn_splits(const pvc_ctx *c, int T, int n_kv, int n_heads, int hd, int max_keys,
                    size_t part_floats, int *chunk) {
    // Splits: aim for ~4 blocks per SM, keep >= 64 keys per split, and stay
    // within the scratch.
    const long base_blocks = (long)T * n_kv;
    long want = (4L * c->n_sm + base_blocks - 1) / base_blocks;
    long by_keys = (max_keys + 63) / 64;
    long by_space = (long)(part_floats / ((size_t)T * n_heads * (hd + 2)));
    long n_split = want < by_keys ? want : by_keys;
    if (n_split > by_space) n_split = by_space;
    if (n_split < 1) {
        if (by_space < 1) return PV_ESPACE;
        n_split = 1;
    }
    int ch = (int)((max_keys + n_split - 1) / n_split);
    ch = (ch + 31) & ~31;
    *chunk = ch;
    return (int)((max_keys + ch - 1) / ch);
}

// Row-splits the scratch holds: enough for every SM at batch 1 and for a
// split per row of a prefill chunk.
static size_t part_rows(int max_rows) { return (size_t)(max_rows * 2 > 2048 ? max_rows * 2 : 2048); }

extern "C" size_t pvc_attention_part_floats(const pvc_attn_shape *s, int max_rows) {
    return part_rows(max_rows) * s->n_heads * (size_t)(s->head_dim + 2);
}

extern "C" int pvc_attention(pvc_ctx *c, const float *qkv, int ld, int T, const pvc_attn_shape *s,
                             const int32_t *pos, const int32_t *seq, const pvc_kv_fp16 *kv,
                             int layer, int max_keys, float *part, size_t part_floats,
                             uint16_t *out, float *lse) {
    const int hd = s->head_dim;
    if (T <= 0 || T > 65535 || max_keys <= 0 || s->n_kv_heads <= 0 ||
        s->n_heads % s->n_kv_heads || layer < 0 || layer >= kv->n_layers || max_keys > kv->max_ctx)
        return PV_EINVAL;
    const int G = s->n_heads / s->n_kv_heads;
    pvc_attn_split sp;
    int rc = pvc_attn_plan(c, s, T, max_keys, part, part_floats, "attention", &sp);
    if (rc) return rc;

    att_args a;
    a.qkv = qkv;
    a.ld = ld;
    a.n_heads = s->n_heads;
    a.n_kv = s->n_kv_heads;
    a.group = G;
    a.pos = pos;
    a.seq = seq;
    a.kc = (const __half *)kv->k;
    a.vc = (const __half *)kv->v;
    a.n_layers = kv->n_layers;
    a.max_ctx = kv->max_ctx;
    a.layer = layer;
    a.n_split = sp.n_split;
    a.chunk = sp.chunk;
    a.part_o = sp.part_o;
    a.part_ml = sp.part_ml;
    const dim3 grid(a.n_split, a.n_kv, T);
    pvc_attn_for_shape(hd, G, [&](auto k) {
        attn_split_kernel<decltype(k)::hd, decltype(k)::gm><<<grid, ATT_THREADS, 0, c->stream>>>(a);
    });
    PVC_CHECK_LAUNCH("attention");
    return pvc_attn_combine(c, a.part_o, a.part_ml, T, s->n_heads, a.n_split, hd, out, lse);
}

// ---- RoPE + cache store ----
// One block per row: the row's cos/sin table first (double, as ko_rope, so
// long positions agree with the CPU), then the rotation of every q and k
// head in place, then k and v to the cache as half.
__global__ void rope_store_kernel(float *qkv, int ld, pvc_attn_shape s, const int32_t *pos,
                                  const int32_t *seq, const int32_t *slot, pvc_kv_fp16 kv,
                                  int layer) {
    __shared__ float s_cos[256], s_sin[256];
    const int t = blockIdx.x, hd = s.head_dim, half_r = s.rope_dim / 2;
    const int p = pos[t];
    for (int i = threadIdx.x; i < half_r; i += blockDim.x) {
        double ang = p * pow((double)s.rope_base, -2.0 * i / s.rope_dim);
        s_cos[i] = (float)cos(ang);
        s_sin[i] = (float)sin(ang);
    }
    __syncthreads();
    float *row = qkv + (size_t)t * ld;
    const int nh = s.n_heads + s.n_kv_heads; // q heads then k heads, contiguous
    for (int idx = threadIdx.x; idx < nh * half_r; idx += blockDim.x) {
        const int h = idx / half_r, i = idx % half_r;
        float *v = row + (size_t)h * hd;
        const int ia = s.rope_neox ? i : 2 * i, ib = s.rope_neox ? i + half_r : 2 * i + 1;
        const float x0 = v[ia], x1 = v[ib], cs = s_cos[i], sn = s_sin[i];
        v[ia] = x0 * cs - x1 * sn;
        v[ib] = x0 * sn + x1 * cs;
    }
    __syncthreads();
    const float *kr = row + (size_t)s.n_heads * hd;
    const float *vr = kr + (size_t)s.n_kv_heads * hd;
    const size_t hb = ((size_t)seq[t] * kv.n_layers + layer) * kv.n_kv_heads;
    const int at = slot ? slot[t] : p; // the mixed cache's high tier stores by slot
    for (int idx = threadIdx.x; idx < s.n_kv_heads * hd; idx += blockDim.x) {
        const int h = idx / hd, d = idx % hd;
        const size_t o = ((hb + h) * kv.max_ctx + at) * hd + d;
        ((__half *)kv.k)[o] = __float2half_rn(kr[idx]);
        ((__half *)kv.v)[o] = __float2half_rn(vr[idx]);
    }
}

static int rope_store(pvc_ctx *c, float *qkv, int ld, int T, const pvc_attn_shape *s,
                      const int32_t *pos, const int32_t *seq, const int32_t *slot,
                      const pvc_kv_fp16 *kv, int layer) {
    if (T <= 0 || s->rope_dim > s->head_dim || s->rope_dim % 2 || s->rope_dim > 512 ||
        kv->head_dim != s->head_dim || kv->n_kv_heads != s->n_kv_heads || layer < 0 ||
        layer >= kv->n_layers || ld < (s->n_heads + 2 * s->n_kv_heads) * s->head_dim)
        return PV_EINVAL;
    rope_store_kernel<<<T, 256, 0, c->stream>>>(qkv, ld, *s, pos, seq, slot, *kv, layer);
    PVC_CHECK_LAUNCH("rope_store");
    return PV_OK;
}

extern "C" int pvc_rope_store(pvc_ctx *c, float *qkv, int ld, int T, const pvc_attn_shape *s,
                              const int32_t *pos, const int32_t *seq, const pvc_kv_fp16 *kv,
                              int layer) {
    return rope_store(c, qkv, ld, T, s, pos, seq, NULL, kv, layer);
}

extern "C" int pvc_rope_store_slots(pvc_ctx *c, float *qkv, int ld, int T,
                                    const pvc_attn_shape *s, const int32_t *pos,
                                    const int32_t *seq, const int32_t *slot,
                                    const pvc_kv_fp16 *kv, int layer) {
    if (!slot) return PV_EINVAL;
    return rope_store(c, qkv, ld, T, s, pos, seq, slot, kv, layer);
}

// ---- benchmark fill ----
__global__ void kv_fill_kernel(pvc_kv_fp16 kv, int seq, int n, uint64_t seed) {
    const size_t per_head = (size_t)n * kv.head_dim;
    const size_t total = per_head * kv.n_layers * kv.n_kv_heads;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t lh = i / per_head, r = i % per_head; // (layer, head), offset
        const size_t o = ((size_t)seq * kv.n_layers * kv.n_kv_heads + lh) * kv.max_ctx * kv.head_dim + r;
        ((__half *)kv.k)[o] = __float2half_rn(pvsyn_value(seed, PVSYN_KV_FILL, i, 1.0f));
        ((__half *)kv.v)[o] = __float2half_rn(pvsyn_value(seed, PVSYN_KV_FILL + 1, i, 1.0f));
    }
}

extern "C" int pvc_kv_fill_synth(pvc_ctx *c, const pvc_kv_fp16 *kv, int seq, int n, uint64_t seed) {
    if (seq < 0 || seq >= kv->max_seqs || n < 0 || n > kv->max_ctx) return PV_EINVAL;
    if (!n) return PV_OK;
    kv_fill_kernel<<<4096, 256, 0, c->stream>>>(*kv, seq, n, seed + (uint64_t)seq * 0x9e37u);
    PVC_CHECK_LAUNCH("kv_fill");
    return PV_OK;
}
