// The mixed-precision KV cache on the GPU: cache/kv_mixed.c's tiers, tracker
// and demotion as kernels (layout in kv_mixed_cuda.h, design in docs/CUDA.md).
//
// What runs where. The host keeps the tier *counts* (cache/kv_mirror.c: they
// depend only on lengths and the policy, as in the CPU cache) and hands them
// to the kernels through cache/kv_cuda.c; the GPU keeps everything per token: values, positions,
// tracker state, and decides *which* tokens are demoted from that state. So
// a decode step needs no device-to-host traffic beyond the logits/ids.
//
// Per layer of a step: rope + store into the high tier at packed slots
// (attention.cu), post_store (positions, tracker init, balance maxima),
// attention over both tiers (split over keys, merged with log-sum-exp), the
// tracker (probabilities from the merged lse). After the step, one demotion
// launch for every (sequence that is over budget, layer, KV head).
//
// Numerics follow cache/kv_quant.c where codes are concerned: the
// quantization of a demoted token is the same sequence of IEEE operations
// (fp16 round-to-nearest-even metadata, codes chosen against the rounded
// scale/zero, round-half-even codes), so codes match the CPU's bit for bit
// given the same input; dequantization uses __fmul_rn/__fadd_rn so no FMA
// contraction changes the values relative to kvq_decode.
#include <float.h>
#include <math.h>

#include "cuda/attn_body.cuh"
#include "cuda/kv_mixed_common.cuh"
#include "cuda/synth_hash.h"

// ---- attention over both tiers ----
struct mx_att_args {
    const float *qkv;
    int ld, n_heads, group, layer;
    const int32_t *seq, *hslot, *nlo;
    pvc_kv_mixed kv;
    int n_split, chunk;
    float *part_o, *part_ml; // as attention.cu
};

// The keys and values of one (slot, layer, KV head) over both tiers: key
// index [0, nhv) are high-tier slots, [nhv, nhv + nlo) low-tier records.
// Low-tier keys are K*b, so a lane multiplies its 8 dequantized channels by
// 1/b (b = 1 until frozen): q.(Kb/b) = (q/b).Kb, the CPU's product, up to
// rounding.
template <int HD>
struct mx_src {
    const pvc_h8 *Kh, *Vh;
    const uint8_t *lk, *lv;       // the low tier's codes and scale|zero words
    const uint32_t *lksz, *lvsz;
    int kbits, vbits, group;
    int nhv, nbk, nbv, ng;
    size_t lo0;   // first low record of this head
    float ib[8];  // this lane's 1/b
    __device__ void key(int key, int ln, float *f) const {
        if (key < nhv) {
            pvc_h8_to_f(Kh[(size_t)key * (HD / 8) + ln], f);
            return;
        }
        mx_deq8(lk, lksz, nbk, ng, kbits, group, lo0 + (key - nhv), ln * 8, f);
#pragma unroll
        for (int i = 0; i < 8; i++) f[i] *= ib[i];
    }
    __device__ void val(int key, int ln, float *f) const {
        if (key < nhv) pvc_h8_to_f(Vh[(size_t)key * (HD / 8) + ln], f);
        else mx_deq8(lv, lvsz, nbv, ng, vbits, group, lo0 + (key - nhv), ln * 8, f);
    }
};

// attention.cu's split kernel (attn_body.cuh) over mx_src.
template <int HD, int GM>
__global__ void __launch_bounds__(MX_THREADS) mx_split_kernel(mx_att_args a) {
    const int row = blockIdx.z, kvh = blockIdx.y, sp = blockIdx.x;
    const int ln = threadIdx.x % (HD / 8);
    const int G = a.group;
    const pvc_kv_mixed &kv = a.kv;
    const int nhv = a.hslot[row] + 1, nl = a.nlo[row];
    const int k0 = sp * a.chunk;
    const int k1 = min(k0 + a.chunk, nhv + nl);
    const size_t hh = mx_head(kv, a.seq[row], a.layer, kvh);
    mx_src<HD> src;
    src.Kh = (const pvc_h8 *)(kv.hk + hh * kv.hi_cap * HD);
    src.Vh = (const pvc_h8 *)(kv.hv + hh * kv.hi_cap * HD);
    src.lk = kv.lk;
    src.lv = kv.lv;
    src.lksz = kv.lksz;
    src.lvsz = kv.lvsz;
    src.kbits = kv.lo_kbits;
    src.vbits = kv.lo_vbits;
    src.group = kv.group;
    src.nhv = nhv;
    src.nbk = mx_nb(HD, kv.lo_kbits);
    src.nbv = mx_nb(HD, kv.lo_vbits);
    src.ng = HD / kv.group;
    src.lo0 = hh * kv.lo_cap;
#pragma unroll
    for (int i = 0; i < 8; i++) src.ib[i] = 1.0f / kv.bal[hh * 3 * HD + ln * 8 + i];
    const float *qrow = a.qkv + (size_t)row * a.ld + (size_t)(kvh * G) * HD;
    const size_t ph0 = ((size_t)row * a.n_heads + kvh * G) * a.n_split + sp;
    pvc_attn_split_body<HD, GM, MX_THREADS, MX_TILE>(src, qrow, G, k0, k1, ph0, a.n_split,
                                                     a.part_o, a.part_ml);
}

extern "C" int pvc_mixed_attention(pvc_ctx *c, const float *qkv, int ld, int T,
                                   const pvc_attn_shape *s, const int32_t *seq,
                                   const int32_t *hslot, const int32_t *nlo,
                                   const pvc_kv_mixed *kv, int layer, int max_keys, float *part,
                                   size_t part_floats, uint16_t *out, float *lse) {
    const int hd = s->head_dim;
    if (T <= 0 || T > 65535 || max_keys <= 0 || s->n_kv_heads != kv->n_kv_heads ||
        s->n_heads % s->n_kv_heads || layer < 0 || layer >= kv->n_layers ||
        hd != kv->head_dim || max_keys > kv->hi_cap + kv->lo_cap)
        return PV_EINVAL;
    const int G = s->n_heads / s->n_kv_heads;
    pvc_attn_split sp;
    int rc = pvc_attn_plan(c, s, T, max_keys, part, part_floats, "mixed attention", &sp);
    if (rc) return rc;
    mx_att_args a;
    a.qkv = qkv;
    a.ld = ld;
    a.n_heads = s->n_heads;
    a.group = G;
    a.layer = layer;
    a.seq = seq;
    a.hslot = hslot;
    a.nlo = nlo;
    a.kv = *kv;
    // With no low tier the kernel never reads it; keep the bit widths sane
    // for the index arithmetic anyway.
    if (!a.kv.lo_kbits) a.kv.lo_kbits = a.kv.lo_vbits = 4;
    a.n_split = sp.n_split;
    a.chunk = sp.chunk;
    a.part_o = sp.part_o;
    a.part_ml = sp.part_ml;
    const dim3 grid(a.n_split, kv->n_kv_heads, T);
    pvc_attn_for_shape(hd, G, [&](auto k) {
        mx_split_kernel<decltype(k)::hd, decltype(k)::gm><<<grid, MX_THREADS, 0, c->stream>>>(a);
    });
    PVC_CHECK_LAUNCH("mixed attention");
    return pvc_attn_combine(c, a.part_o, a.part_ml, T, s->n_heads, a.n_split, hd, out, lse);
}

// ---- after the store: positions, tracker init, balance maxima ----
// One block per (entry, KV head).
__global__ void mx_post_store_kernel(const float *qkv, int ld, pvc_attn_shape s,
                                     const int32_t *pos, const int32_t *ent, pvc_kv_mixed kv,
                                     int layer) {
    const int32_t *e = ent + (size_t)blockIdx.x * PVC_MXE_STRIDE;
    const int kvh = blockIdx.y, hd = s.head_dim, G = s.n_heads / s.n_kv_heads;
    const int seq = e[PVC_MXE_SEQ], row0 = e[PVC_MXE_ROW0], n = e[PVC_MXE_N];
    const int hi0 = e[PVC_MXE_HI0], step0 = e[PVC_MXE_STEP0];
    const size_t hh = mx_head(kv, seq, layer, kvh);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const size_t slot = hh * kv.hi_cap + hi0 + i;
        kv.hpos[slot] = pos[row0 + i];
        // kvt_init: first step = steps + (pos - pos0) = step0 + i
        kv.hst[slot * 2] = kv.select == SEL_ACCUM ? __float_as_uint(0.f) : 0u;
        kv.hst[slot * 2 + 1] = kv.select == SEL_ACCUM ? (uint32_t)(step0 + i) : 0u;
    }
    if (!e[PVC_MXE_OBSERVE]) return;
    // bal_observe: max|q| over this call's queries of the group, max|k| over
    // its new keys. Maxima are exact, so the order does not matter.
    float *qm = kv.bal + hh * 3 * hd + hd, *km = qm + hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float mq = qm[d], mk = km[d];
        for (int i = 0; i < n; i++) {
            const float *r = qkv + (size_t)(row0 + i) * ld;
            for (int g = 0; g < G; g++) mq = fmaxf(mq, fabsf(r[(size_t)(kvh * G + g) * hd + d]));
            mk = fmaxf(mk, fabsf(r[(size_t)(s.n_heads + kvh) * hd + d]));
        }
        qm[d] = mq;
        km[d] = mk;
    }
}

extern "C" int pvc_mixed_post_store(pvc_ctx *c, const float *qkv, int ld,
                                    const pvc_attn_shape *s, const int32_t *pos,
                                    const int32_t *ent, int n_ent, const pvc_kv_mixed *kv,
                                    int layer) {
    if (n_ent <= 0 || layer < 0 || layer >= kv->n_layers || s->n_kv_heads != kv->n_kv_heads)
        return PV_EINVAL;
    mx_post_store_kernel<<<dim3(n_ent, s->n_kv_heads), 128, 0, c->stream>>>(qkv, ld, *s, pos, ent,
                                                                           *kv, layer);
    PVC_CHECK_LAUNCH("mixed post_store");
    return PV_OK;
}

// ---- tracker ----
// One block per (entry, KV head); the rows of the entry in order, as the CPU
// attend loop (each row is one step). A warp per high-tier token recomputes
// the group's scores and turns them into probabilities with the merged lse.
__global__ void mx_track_kernel(const float *qkv, int ld, pvc_attn_shape s, const int32_t *ent,
                                const float *lse, pvc_kv_mixed kv, int layer) {
    extern __shared__ float s_q[]; // [G][hd] then [G] lse
    const int32_t *e = ent + (size_t)blockIdx.x * PVC_MXE_STRIDE;
    const int kvh = blockIdx.y, hd = s.head_dim, G = s.n_heads / s.n_kv_heads;
    const int seq = e[PVC_MXE_SEQ], row0 = e[PVC_MXE_ROW0], n = e[PVC_MXE_N];
    const int hi0 = e[PVC_MXE_HI0], nlo = e[PVC_MXE_LO], step0 = e[PVC_MXE_STEP0];
    const int half = kv.window / 2 > 0 ? kv.window / 2 : 1;
    const size_t hh = mx_head(kv, seq, layer, kvh);
    const __half *K = (const __half *)kv.hk + hh * kv.hi_cap * hd;
    uint32_t *st = kv.hst + hh * kv.hi_cap * 2;
    float *s_lse = s_q + G * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int i = 0; i < n; i++) {
        const int row = row0 + i, nhv = hi0 + i + 1;
        const float thr = 1.0f / (float)(nhv + nlo);
        for (int x = threadIdx.x; x < G * hd; x += blockDim.x)
            s_q[x] = qkv[(size_t)row * ld + (size_t)kvh * G * hd + x];
        for (int g = threadIdx.x; g < G; g += blockDim.x)
            s_lse[g] = lse[(size_t)row * s.n_heads + kvh * G + g];
        __syncthreads();
        for (int t = warp; t < nhv; t += nw) {
            float agg = 0.f;
            for (int g = 0; g < G; g++) {
                float d = 0.f;
                for (int c = lane; c < hd; c += 32)
                    d = fmaf(s_q[g * hd + c], __half2float(K[(size_t)t * hd + c]), d);
                d = pvc_warp_sum(d);
                agg += expf(d * scale - s_lse[g]);
            }
            if (lane == 0) { // kvt_observe with the group mean
                const float p = agg / (float)G;
                if (kv.select == SEL_PERSIST) {
                    if (p < thr) {
                        uint32_t w = st[(size_t)t * 2];
                        if ((w & 0xffffu) < 0xffffu) w += 1u;
                        st[(size_t)t * 2] = w;
                    }
                } else {
                    st[(size_t)t * 2] = __float_as_uint(__uint_as_float(st[(size_t)t * 2]) + p);
                }
            }
        }
        __syncthreads();
        // kvt_rotate of every high token (visible or not) each window/2 steps
        if (kv.select == SEL_PERSIST && (step0 + i + 1) % half == 0) {
            for (int t = threadIdx.x; t < hi0 + n; t += blockDim.x)
                st[(size_t)t * 2] = (st[(size_t)t * 2] & 0xffffu) << 16; // prev = cur, cur = 0
        }
        __syncthreads();
    }
}

extern "C" int pvc_mixed_track(pvc_ctx *c, const float *qkv, int ld, const pvc_attn_shape *s,
                               const int32_t *ent, int n_ent, const float *lse,
                               const pvc_kv_mixed *kv, int layer) {
    if (kv->select != SEL_PERSIST && kv->select != SEL_ACCUM) return PV_OK; // no state
    if (n_ent <= 0 || layer < 0 || layer >= kv->n_layers || s->n_kv_heads != kv->n_kv_heads)
        return PV_EINVAL;
    const int G = s->n_heads / s->n_kv_heads;
    const size_t smem = sizeof(float) * (size_t)G * (s->head_dim + 1);
    mx_track_kernel<<<dim3(n_ent, s->n_kv_heads), 256, smem, c->stream>>>(qkv, ld, *s, ent, lse,
                                                                         *kv, layer);
    PVC_CHECK_LAUNCH("mixed track");
    return PV_OK;
}

// ---- allocation, reset, benchmark fill ----

extern "C" size_t pvc_mixed_seq_bytes(const pvc_kv_mixed *kv) {
    const size_t hd = kv->head_dim, heads = (size_t)kv->n_layers * kv->n_kv_heads;
    size_t hi = (size_t)kv->hi_cap * (2 * hd * 2 + 4 + 8);
    size_t lo = 0;
    if (kv->lo_kbits)
        lo = (size_t)kv->lo_cap * (mx_nb((int)hd, kv->lo_kbits) + mx_nb((int)hd, kv->lo_vbits) +
                                   2 * 4 * (hd / kv->group));
    return heads * (hi + lo + 3 * hd * sizeof(float));
}

extern "C" int pvc_mixed_check(const pvc_kv_mixed *kv) {
    const int hd = kv->head_dim;
    const char *why = NULL;
    if (hd != 64 && hd != 128 && hd != 256) why = "head_dim must be 64, 128 or 256";
    else if (kv->group < 8 || kv->group % 8 || hd % kv->group) why = "group must divide head_dim";
    else if (kv->lo_kbits && ((kv->lo_kbits != 2 && kv->lo_kbits != 4) ||
                              (kv->lo_vbits != 2 && kv->lo_vbits != 4)))
        why = "low-tier bits must be 2 or 4";
    else if (kv->hi_cap < 1 || kv->lo_cap < 0 || (kv->lo_kbits && kv->lo_cap < 1))
        why = "bad tier capacities";
    else if (mx_dem_layout(kv->hi_cap, hd).total > MX_MAX_SMEM)
        why = "high tier too large for the demotion kernel's shared memory (lower the budget or "
              "max_ctx)";
    if (why) {
        pvc_set_error("mixed cache: %s", why);
        return PV_EUNSUPPORTED;
    }
    return PV_OK;
}

extern "C" int pvc_mixed_alloc(pvc_ctx *c, pvc_kv_mixed *kv) {
    int rc = pvc_mixed_check(kv);
    if (rc) return rc;
    const size_t hd = kv->head_dim,
                 heads = (size_t)kv->max_seqs * kv->n_layers * kv->n_kv_heads;
    const size_t hi = heads * kv->hi_cap, lo = heads * kv->lo_cap;
    kv->hk = kv->hv = NULL;
    kv->hpos = NULL;
    kv->hst = kv->lksz = kv->lvsz = NULL;
    kv->lk = kv->lv = NULL;
    kv->bal = NULL;
    if (!rc) rc = pvc_alloc(c, hi * hd * 2, (void **)&kv->hk);
    if (!rc) rc = pvc_alloc(c, hi * hd * 2, (void **)&kv->hv);
    if (!rc) rc = pvc_alloc(c, hi * 4, (void **)&kv->hpos);
    if (!rc) rc = pvc_alloc(c, hi * 8, (void **)&kv->hst);
    if (!rc) rc = pvc_alloc(c, heads * 3 * hd * sizeof(float), (void **)&kv->bal);
    if (!rc && kv->lo_kbits && lo) {
        rc = pvc_alloc(c, lo * mx_nb((int)hd, kv->lo_kbits), (void **)&kv->lk);
        if (!rc) rc = pvc_alloc(c, lo * mx_nb((int)hd, kv->lo_vbits), (void **)&kv->lv);
        if (!rc) rc = pvc_alloc(c, lo * 4 * (hd / kv->group), (void **)&kv->lksz);
        if (!rc) rc = pvc_alloc(c, lo * 4 * (hd / kv->group), (void **)&kv->lvsz);
    }
    if (rc) pvc_mixed_free(c, kv);
    return rc;
}

extern "C" void pvc_mixed_free(pvc_ctx *c, pvc_kv_mixed *kv) {
    void *p[] = {kv->hk, kv->hv, kv->hpos, kv->hst, kv->bal, kv->lk, kv->lv, kv->lksz, kv->lvsz};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) pvc_free(c, p[i]);
    kv->hk = kv->hv = NULL;
    kv->hpos = NULL;
    kv->hst = kv->lksz = kv->lvsz = NULL;
    kv->lk = kv->lv = NULL;
    kv->bal = NULL;
}

// b = 1, max|q| = max|k| = 0 for every head of the slot.
__global__ void mx_reset_kernel(pvc_kv_mixed kv, int seq) {
    const int hd = kv.head_dim;
    const size_t n = (size_t)kv.n_layers * kv.n_kv_heads * 3 * hd;
    float *b = kv.bal + (size_t)seq * n;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        b[i] = (i / hd) % 3 == 0 ? 1.0f : 0.0f;
}

extern "C" int pvc_mixed_reset(pvc_ctx *c, const pvc_kv_mixed *kv, int seq) {
    if (seq < 0 || seq >= kv->max_seqs) return PV_EINVAL;
    const size_t n = (size_t)kv->n_layers * kv->n_kv_heads * 3 * kv->head_dim;
    mx_reset_kernel<<<pvc_blocks(n, 256) < 1024 ? pvc_blocks(n, 256) : 1024, 256, 0, c->stream>>>(
        *kv, seq);
    PVC_CHECK_LAUNCH("mixed reset");
    return PV_OK;
}

// Random contents for a slot (benchmarks): one thread per (layer, head,
// element) over the high tier, then the low tier's bytes and metadata.
__global__ void mx_fill_kernel(pvc_kv_mixed kv, int seq, int n, int n_hi, int n_lo,
                               uint64_t seed) {
    const int hd = kv.head_dim;
    const size_t heads = (size_t)kv.n_layers * kv.n_kv_heads;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    const size_t i0 = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    const size_t h0 = (size_t)seq * heads;
    for (size_t i = i0; i < heads * n_hi * hd; i += stride) {
        const size_t h = i / ((size_t)n_hi * hd), r = i % ((size_t)n_hi * hd);
        const size_t o = (h0 + h) * kv.hi_cap * hd + r;
        ((__half *)kv.hk)[o] = __float2half_rn(pvsyn_value(seed, PVSYN_KV_FILL, i, 1.0f));
        ((__half *)kv.hv)[o] = __float2half_rn(pvsyn_value(seed, PVSYN_KV_FILL + 1, i, 1.0f));
    }
    for (size_t i = i0; i < heads * n_hi; i += stride) {
        const size_t h = i / n_hi, t = i % n_hi;
        const size_t o = (h0 + h) * kv.hi_cap + t;
        const int sinks = kv.sinks < n_hi ? kv.sinks : n_hi;
        kv.hpos[o] = (int)t < sinks ? (int)t : n - n_hi + (int)t; // sinks, then the newest
        kv.hst[2 * o] = kv.hst[2 * o + 1] = 0u;
    }
    if (!kv.lo_kbits) return;
    const int nbk = mx_nb(hd, kv.lo_kbits), nbv = mx_nb(hd, kv.lo_vbits), ng = hd / kv.group;
    const uint32_t meta = (uint32_t)__half_as_ushort(__float2half_rn(0.125f)) |
                          ((uint32_t)__half_as_ushort(__float2half_rn(-1.0f)) << 16);
    for (size_t i = i0; i < heads * n_lo; i += stride) {
        const size_t h = i / n_lo, t = i % n_lo;
        const size_t o = (h0 + h) * kv.lo_cap + t;
        for (int j = 0; j < nbk; j += 8) {
            const uint64_t r = pvsyn_mix(seed ^ (i * 0x100000001b3ull + (uint64_t)j));
            for (int b = 0; b < 8 && j + b < nbk; b++) kv.lk[o * nbk + j + b] = (uint8_t)(r >> (8 * b));
        }
        for (int j = 0; j < nbv; j += 8) {
            const uint64_t r = pvsyn_mix(~seed ^ (i * 0x100000001b3ull + (uint64_t)j));
            for (int b = 0; b < 8 && j + b < nbv; b++) kv.lv[o * nbv + j + b] = (uint8_t)(r >> (8 * b));
        }
        for (int g = 0; g < ng; g++) kv.lksz[o * ng + g] = kv.lvsz[o * ng + g] = meta;
    }
}

extern "C" int pvc_mixed_fill_synth(pvc_ctx *c, const pvc_kv_mixed *kv, int seq, int n, int n_hi,
                                    int n_lo, uint64_t seed) {
    if (seq < 0 || seq >= kv->max_seqs || n_hi < 0 || n_hi > kv->hi_cap || n_lo < 0 ||
        n_lo > (kv->lo_kbits ? kv->lo_cap : 0) || n_hi + n_lo > n)
        return PV_EINVAL;
    int rc = pvc_mixed_reset(c, kv, seq);
    if (rc) return rc;
    mx_fill_kernel<<<2048, 256, 0, c->stream>>>(*kv, seq, n, n_hi, n_lo,
                                                seed + (uint64_t)seq * 0x9e37u);
    PVC_CHECK_LAUNCH("mixed fill");
    return PV_OK;
}
