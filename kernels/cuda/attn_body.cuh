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
        // Online softmax: one warp per query head.
        for (int g = tid >> 5; g < G; g += THREADS / 32) {
            const int lane = tid & 31;
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

#endif
