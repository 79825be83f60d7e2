// kv_mixed_demote: the mixed cache's demotion on the GPU (cache/kv_mixed.c's
// kvmx_demote): per (listed sequence, layer, KV head) one block picks the k
// unprotected high-tier tokens with the highest demotion score (older on
// ties, as kvt_pick), quantizes them into the low tier with the CPU's
// sequence of IEEE operations (or drops them) and compacts the high tier in
// position order. k comes from the host (the tier rule, kv_tier.h).
#include <float.h>
#include <math.h>

#include "cuda/kv_mixed_common.cuh"
#include "kv_tier.h"

__device__ __forceinline__ float mx_score(int sel, const uint32_t *st, int steps) {
    if (sel == SEL_PERSIST) return (float)(st[0] & 0xffffu) + (float)(st[0] >> 16);
    if (sel == SEL_ACCUM) {
        const int seen = steps - (int32_t)st[1];
        return seen > 0 ? -__uint_as_float(st[0]) / (float)seen : -FLT_MAX;
    }
    return 0.f;
}

// kvq_encode of x[0..hd) (shared memory, this warp's) into record `slot`.
// Lanes take groups (hd/group <= 32), then bytes.
__device__ void mx_encode_warp(const float *x, int hd, int bits, int group, float *gs,
                               uint8_t *codes, uint32_t *sz, size_t slot) {
    const int lane = threadIdx.x & 31, ng = hd / group, nb = mx_nb(hd, bits);
    const int qmax = (1 << bits) - 1;
    for (int g = lane; g < ng; g += 32) {
        const float *xg = x + g * group;
        float mn = xg[0], mx = xg[0];
        for (int i = 1; i < group; i++) {
            if (xg[i] < mn) mn = xg[i];
            if (xg[i] > mx) mx = xg[i];
        }
        float r = __fdiv_rn(__fsub_rn(mx, mn), (float)qmax);
        r = fminf(fmaxf(r, -65504.f), 65504.f);
        const float mnc = fminf(fmaxf(mn, -65504.f), 65504.f);
        const __half hs = __float2half_rn(r), hz = __float2half_rn(mnc);
        const float sf = __half2float(hs), zf = __half2float(hz);
        gs[2 * g] = zf;
        gs[2 * g + 1] = sf > 0.f ? __fdiv_rn(1.0f, sf) : 0.f;
        sz[slot * ng + g] =
            (uint32_t)__half_as_ushort(hs) | ((uint32_t)__half_as_ushort(hz) << 16);
    }
    __syncwarp();
    for (int j = lane; j < nb; j += 32) {
        unsigned byte = 0;
        for (int m = 0; m < 8 / bits; m++) {
            const int ch = j + m * nb, g = ch / group;
            const float inv = gs[2 * g + 1];
            int q = 0;
            if (inv > 0.f) q = __float2int_rn(__fmul_rn(__fsub_rn(x[ch], gs[2 * g]), inv));
            q = q < 0 ? 0 : q > qmax ? qmax : q;
            byte |= (unsigned)q << (bits * m);
        }
        codes[slot * nb + j] = (uint8_t)byte;
    }
    __syncwarp();
}

// Every victim's key (balanced) and value into its low-tier record, one warp
// per token; vic[t] < 0 marks a victim and names its low slot (-1 - vic[t]).
__device__ static void mx_demote_encode(const pvc_kv_mixed &kv, unsigned char *smem,
                                        const mx_dem_smem &L, const int32_t *vic, int nhi,
                                        size_t hh, const __half *HK, const __half *HV,
                                        const float *bal) {
    const int hd = kv.head_dim, tid = threadIdx.x;
    const int warp = tid >> 5, lane = tid & 31, nw = blockDim.x >> 5;
    float *x = (float *)(smem + L.xq) + (size_t)warp * hd;
    float *gs = (float *)(smem + L.gs) + (size_t)warp * 2 * (hd / 8);
    const size_t lo0 = hh * kv.lo_cap;
    for (int t = warp; t < nhi; t += nw) {
        if (vic[t] >= 0) continue;
        const size_t slot = lo0 + (size_t)(-1 - vic[t]);
        for (int c = lane; c < hd; c += 32) {
            const float v = __half2float(HK[(size_t)t * hd + c]);
            x[c] = kv.balance ? __fmul_rn(v, bal[c]) : v;
        }
        __syncwarp();
        mx_encode_warp(x, hd, kv.lo_kbits, kv.group, gs, kv.lk, kv.lksz, slot);
        for (int c = lane; c < hd; c += 32) x[c] = __half2float(HV[(size_t)t * hd + c]);
        __syncwarp();
        mx_encode_warp(x, hd, kv.lo_vbits, kv.group, gs, kv.lv, kv.lvsz, slot);
    }
}

// One block per (demotion, layer * n_kv + kvh). Order as cache/kv_mixed.c's
// demote(): choose victims among unprotected tokens, freeze the balance
// factors if asked, encode victims into the low tier in slot order, compact
// the high tier keeping position order.
__global__ void __launch_bounds__(MX_DEM_THREADS)
    mx_demote_kernel(pvc_kv_mixed kv, const int32_t *dem) {
    extern __shared__ __align__(16) unsigned char smem[];
    const int32_t *d = dem + (size_t)blockIdx.x * PVC_MXD_STRIDE;
    const int layer = blockIdx.y / kv.n_kv_heads, kvh = blockIdx.y % kv.n_kv_heads;
    const int hd = kv.head_dim, tid = threadIdx.x;
    const int seq = d[PVC_MXD_SEQ], k = d[PVC_MXD_K], len = d[PVC_MXD_LEN];
    const int steps = d[PVC_MXD_STEPS], nhi = d[PVC_MXD_HI], nlo = d[PVC_MXD_LO];
    if (k <= 0 || nhi > kv.hi_cap) return;
    const mx_dem_smem L = mx_dem_layout(kv.hi_cap, hd);
    float *sc = (float *)(smem + L.sc);
    int32_t *ps = (int32_t *)(smem + L.ps), *vic = (int32_t *)(smem + L.vic);
    uint8_t *cnd = smem + L.cnd;
    const size_t hh = mx_head(kv, seq, layer, kvh);
    __half *HK = (__half *)kv.hk + hh * kv.hi_cap * hd, *HV = (__half *)kv.hv + hh * kv.hi_cap * hd;
    int32_t *HP = kv.hpos + hh * kv.hi_cap;
    uint32_t *HS = kv.hst + hh * kv.hi_cap * 2;
    float *bal = kv.bal + hh * 3 * hd;

    for (int t = tid; t < nhi; t += blockDim.x) {
        const int32_t p = HP[t];
        ps[t] = p;
        cnd[t] = !kv_tier_pos_protected(kv.sinks, kv.recent, len, p);
        sc[t] = mx_score(kv.select, HS + (size_t)t * 2, steps);
    }
    __syncthreads();
    // Rank among candidates in kvt_pick's order (score desc, position asc):
    // a total order, so ranks are distinct and rank < k picks exactly k.
    for (int t = tid; t < nhi; t += blockDim.x) {
        int rank = 0;
        if (cnd[t]) {
            const float s = sc[t];
            const int32_t p = ps[t];
            for (int u = 0; u < nhi; u++)
                rank += cnd[u] && (sc[u] > s || (sc[u] == s && ps[u] < p));
        }
        vic[t] = cnd[t] && rank < k; // 1 = victim, for now
    }
    __syncthreads();
    // Destinations in slot order (victims go to the low tier in increasing
    // high-slot order, as kvt_pick's sorted output). Serial: this runs once
    // per chunk of steps, and keeps the order obviously right.
    if (tid == 0) {
        int nv = 0;
        for (int t = 0; t < nhi; t++) {
            if (vic[t]) {
                vic[t] = kv.lo_kbits ? -1 - (nlo + nv) : -1;
                nv++;
            } else {
                vic[t] = t - nv;
            }
        }
    }
    if (kv.lo_kbits && d[PVC_MXD_FREEZE] && kv.balance) { // bal_freeze
        for (int c = tid; c < hd; c += blockDim.x) {
            const float qm = bal[hd + c], km = bal[2 * hd + c];
            const float r = qm > 0.f && km > 0.f ? sqrtf(__fdiv_rn(qm, km)) : 1.0f;
            bal[c] = isfinite(r) && r > 0.f ? r : 1.0f;
        }
    }
    __syncthreads();
    if (kv.lo_kbits) mx_demote_encode(kv, smem, L, vic, nhi, hh, HK, HV, bal);
    __syncthreads();
    // Stable compaction in rounds of MX_STAGE slots: a round reads all its
    // slots into shared memory before writing any, and a survivor's new slot
    // is <= its old one, so no write lands on a slot still to be read.
    __half *sk = (__half *)(smem + L.stage_k), *sv = (__half *)(smem + L.stage_v);
    int32_t *sp = (int32_t *)(smem + L.stage_p);
    uint32_t *ss = (uint32_t *)(smem + L.stage_s);
    for (int t0 = 0; t0 < nhi; t0 += MX_STAGE) {
        const int nt = min(MX_STAGE, nhi - t0);
        for (int x = tid; x < nt * hd; x += blockDim.x) {
            sk[x] = HK[(size_t)t0 * hd + x];
            sv[x] = HV[(size_t)t0 * hd + x];
        }
        for (int j = tid; j < nt; j += blockDim.x) {
            sp[j] = ps[t0 + j];
            ss[2 * j] = HS[(size_t)(t0 + j) * 2];
            ss[2 * j + 1] = HS[(size_t)(t0 + j) * 2 + 1];
        }
        __syncthreads();
        for (int x = tid; x < nt * hd; x += blockDim.x) {
            const int j = x / hd, w = vic[t0 + j];
            if (w >= 0 && w != t0 + j) {
                HK[(size_t)w * hd + x % hd] = sk[x];
                HV[(size_t)w * hd + x % hd] = sv[x];
            }
        }
        for (int j = tid; j < nt; j += blockDim.x) {
            const int w = vic[t0 + j];
            if (w >= 0 && w != t0 + j) {
                HP[w] = sp[j];
                HS[(size_t)w * 2] = ss[2 * j];
                HS[(size_t)w * 2 + 1] = ss[2 * j + 1];
            }
        }
        __syncthreads();
    }
}

extern "C" int pvc_mixed_demote(pvc_ctx *c, const pvc_kv_mixed *kv, const int32_t *dem,
                                int n_dem) {
    if (n_dem <= 0) return PV_OK;
    const size_t smem = mx_dem_layout(kv->hi_cap, kv->head_dim).total;
    PVC_CHECK(cudaFuncSetAttribute(mx_demote_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   (int)smem));
    mx_demote_kernel<<<dim3(n_dem, kv->n_layers * kv->n_kv_heads), MX_DEM_THREADS, smem,
                       c->stream>>>(*kv, dem);
    PVC_CHECK_LAUNCH("mixed demote");
    return PV_OK;
}
