// attn_body: the split-attention loop of one block, shared by the FP16
// cache's kernel (attention.cu) and the mixed cache's (cache/cuda/
// kv_mixed.cu), which differ only in where a key's and a value's 8 channels
// come from.
//
// A block takes one query row, one KV head (all G query heads that share
// it) and the keys [k0, k1) of one split. It walks tiles of TILE keys:
// scores into shared memory (lanes split head_dim 8 values each, L = HD/8
// lanes per key, KP keys in flight), an online-softmax update of the running
// max/sum, then the V accumulation; finally it merges the KP key slots and
// writes the split's partial output and (max, sum) at ph0 + g * n_split.
//
// Src provides, for key index `key` and lane `ln` (channels ln*8..ln*8+7):
//   __device__ void key(int key, int ln, float f[8]) const;
//   __device__ void val(int key, int ln, float f[8]) const;
#ifndef PIVOT_ATTN_BODY_CUH
#define PIVOT_ATTN_BODY_CUH

#include <math.h>

#include "common.cuh"

// Online softmax over one tile of nt scores per query head (one warp per
// head): scores become exp(s - m_new), and the running max m, sum l and
// the factor that rescales earlier partials (corr) are updated.
template <int THREADS, int TILE>
__device__ __forceinline__ void pvc_attn_softmax_tile(float (*s_sc)[TILE], float *s_m, float *s_l,
                                                      float *s_corr, int G, int nt) {
    const int tid = threadIdx.x, lane = tid & 31;
    for (int g = tid >> 5; g < G; g += THREADS / 32) {
        float mt = -INFINITY;
        for (int j = lane; j < nt; j += 32) mt = fmaxf(mt, s_sc[g][j]);
        mt = pvc_warp_max(mt);
        const float m_old = s_m[g], m_new = fmaxf(m_old, mt);
        float sum = 0.f;
        for (int j = lane; j < nt; j += 32) {
            float p = __expf(s_sc[g][j] - m_new);
            s_sc[g][j] = p;
            sum += p;
        }
        sum = pvc_warp_sum(sum);
        if (lane == 0) {
            const float corr = __expf(m_old - m_new); // 0 on the first tile
            s_corr[g] = corr;
            s_l[g] = s_l[g] * corr + sum;
            s_m[g] = m_new;
        }
    }
}

template <int HD, int GM, int THREADS, int TILE, class Src>
__device__ __forceinline__ void pvc_attn_split_body(const Src &src, const float *qrow, int G,
                                                    int k0, int k1, size_t ph0, int n_split,
                                                    float *part_o, float *part_ml) {
    constexpr int L = HD / 8;          // lanes per key
    constexpr int KP = THREADS / L;    // keys in flight per pass
    __shared__ float s_sc[GM][TILE];   // scores, then probabilities
    __shared__ float s_m[GM], s_l[GM], s_corr[GM];
    __shared__ float s_red[KP][GM][HD];
    const int tid = threadIdx.x, sub = tid / L, ln = tid % L;

    // This lane's 8 dims of each query head, pre-scaled by 1/sqrt(hd).
    const float scale = rsqrtf((float)HD);
    float qf[GM][8];
#pragma unroll
    for (int g = 0; g < GM; g++) {
        const float *q = qrow + (size_t)g * HD + ln * 8;
#pragma unroll
        for (int i = 0; i < 8; i++) qf[g][i] = 0.f;
        if (g < G) // heads past the group would read the next KV head's queries
#pragma unroll
            for (int i = 0; i < 8; i++) qf[g][i] = q[i] * scale;
    }
    float acc[GM][8];
#pragma unroll
    for (int g = 0; g < GM; g++)
#pragma unroll
        for (int i = 0; i < 8; i++) acc[g][i] = 0.f;
    if (tid < GM) {
        s_m[tid] = -INFINITY;
        s_l[tid] = 0.f;
    }
    __syncthreads();

    for (int t0 = k0; t0 < k1; t0 += TILE) {
        const int nt = min(TILE, k1 - t0);
        // Scores. Trip count is uniform over the block so the shuffles below
        // always see whole warps.
        for (int j0 = 0; j0 < nt; j0 += KP) {
            const int j = j0 + sub;
            float kf[8];
            if (j < nt) {
                src.key(t0 + j, ln, kf);
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) kf[i] = 0.f;
            }
#pragma unroll
            for (int g = 0; g < GM; g++) {
                float p = 0.f;
#pragma unroll
                for (int i = 0; i < 8; i++) p = fmaf(qf[g][i], kf[i], p);
#pragma unroll
                for (int o = L / 2; o > 0; o >>= 1) p += __shfl_xor_sync(0xffffffffu, p, o);
                if (ln == 0 && j < nt && g < G) s_sc[g][j] = p;
            }
        }
        __syncthreads();
        pvc_attn_softmax_tile<THREADS, TILE>(s_sc, s_m, s_l, s_corr, G, nt);
        __syncthreads();
        // V accumulation: each lane keeps its 8 dims of every head.
#pragma unroll
        for (int g = 0; g < GM; g++) {
            const float corr = g < G ? s_corr[g] : 0.f;
#pragma unroll
            for (int i = 0; i < 8; i++) acc[g][i] *= corr;
        }
        for (int j = sub; j < nt; j += KP) {
            float vf[8];
            src.val(t0 + j, ln, vf);
#pragma unroll
            for (int g = 0; g < GM; g++) {
                const float p = g < G ? s_sc[g][j] : 0.f;
#pragma unroll
                for (int i = 0; i < 8; i++) acc[g][i] = fmaf(p, vf[i], acc[g][i]);
            }
        }
        __syncthreads();
    }

    // Merge the KP key slots of the block and write this split's partials.
#pragma unroll
    for (int g = 0; g < GM; g++)
#pragma unroll
        for (int i = 0; i < 8; i++) s_red[sub][g][ln * 8 + i] = acc[g][i];
    __syncthreads();
    for (int idx = tid; idx < G * HD; idx += THREADS) {
        const int g = idx / HD, d = idx % HD;
        float s = 0.f;
#pragma unroll
        for (int k = 0; k < KP; k++) s += s_red[k][g][d];
        const size_t ph = ph0 + (size_t)g * n_split;
        part_o[ph * HD + d] = s;
        if (d == 0) {
            part_ml[ph * 2] = s_m[g];
            part_ml[ph * 2 + 1] = s_l[g];
        }
    }
}

// Host side of both callers. Checks that the kernels have the shape
// (PV_EUNSUPPORTED, the reason under `what` in pvc_last_error), then the
// splits of T rows over max_keys keys and where their partials go in `part`
// (pvc_attn_splits; PV_ESPACE when the scratch is too small).
struct pvc_attn_split {
    int n_split, chunk;
    float *part_o, *part_ml;
};
static inline int pvc_attn_plan(pvc_ctx *c, const pvc_attn_shape *s, int T, int max_keys,
                                float *part, size_t part_floats, const char *what,
                                pvc_attn_split *sp) {
    const int hd = s->head_dim, G = s->n_heads / s->n_kv_heads;
    if ((hd != 64 && hd != 128 && hd != 256) || G > 8) {
        pvc_set_error("%s: head_dim %d / group %d not supported (64/128/256, <= 8)", what, hd, G);
        return PV_EUNSUPPORTED;
    }
    sp->n_split = pvc_attn_splits(c, T, s->n_kv_heads, s->n_heads, s->head_dim, max_keys,
                                  part_floats, &sp->chunk);
    if (sp->n_split < 0) return sp->n_split;
    sp->part_o = part;
    sp->part_ml = part + (size_t)T * s->n_heads * sp->n_split * s->head_dim;
    return PV_OK;
}

// The kernels' compile-time shape: head_dim HD (64, 128 or 256, checked by
// the caller) and the group rounded up to GM = 1, 2, 4 or 8 (register arrays
// are sized by it). pvc_attn_for_shape(hd, G, f) calls f(pvc_attn_ic<HD, GM>)
// once, so a caller writes its launch once:
//   pvc_attn_for_shape(hd, G, [&](auto k) {
//       kernel<decltype(k)::hd, decltype(k)::gm><<<grid, threads, 0, stream>>>(args);
//   });
template <int HD, int GM>
struct pvc_attn_ic {
    static constexpr int hd = HD, gm = GM;
};
template <int HD, class F>
static inline void pvc_attn_for_group(int G, F &&f) {
    if (G <= 1) f(pvc_attn_ic<HD, 1>{});
    else if (G <= 2) f(pvc_attn_ic<HD, 2>{});
    else if (G <= 4) f(pvc_attn_ic<HD, 4>{});
    else f(pvc_attn_ic<HD, 8>{});
}
template <class F>
static inline void pvc_attn_for_shape(int hd, int G, F &&f) {
    if (hd == 64) pvc_attn_for_group<64>(G, f);
    else if (hd == 128) pvc_attn_for_group<128>(G, f);
    else pvc_attn_for_group<256>(G, f);
}

#endif
