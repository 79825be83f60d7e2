/* kv_mixed_cuda: the mixed-precision KV cache's kernels (cache/cuda/
 * kv_mixed.cu), driven by the GPU cache (cache/kv_cuda.c). Built on the
 * CUDA backend of kernels/cuda (pvcuda.h). */
#ifndef PIVOT_KV_MIXED_CUDA_H
#define PIVOT_KV_MIXED_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "cuda/pvcuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The mixed-precision cache (cache/kv_mixed.c on the GPU).
 *
 * Per (sequence slot, layer, KV head) a high tier of hi_cap FP16 slots kept
 * sorted by position (as the CPU tier), with each slot's position and
 * tracker state, and a low tier of lo_cap records in demotion order: codes
 * in the bit planes of cache/kv_quant.h (channel c in byte c % nb at bit
 * bits*(c / nb), nb = head_dim*bits/8) and per group of `group` channels one
 * u32 = fp16 scale | fp16 zero << 16 (the CPU record's scale/zero bytes read
 * as a little-endian u32). Low-tier keys are balanced (K*b) when `balance`.
 * Which tokens sit where, and the tier counts, are decided exactly as
 * cache/kv_mixed.c does; the counts are kept on the host (cache/kv_mirror.h)
 * and handed to the kernels per row / entry. */
typedef struct {
    int max_seqs, n_layers, n_kv_heads, head_dim;
    int hi_cap, lo_cap;      /* slots per (seq, layer, KV head); lo_cap 0 when dropping */
    int lo_kbits, lo_vbits;  /* 4 or 2 (0: demoted tokens are dropped) */
    int group;               /* channels per scale/zero group (divides head_dim, %8 == 0) */
    int select;              /* kv_select of cache/kv_policy.h */
    int balance;             /* low-tier keys balanced per channel */
    int sinks, recent, window;
    uint16_t *hk, *hv;       /* [seq][layer][kvh][hi_cap][hd] half */
    int32_t *hpos;           /* [seq][layer][kvh][hi_cap] */
    uint32_t *hst;           /* [seq][layer][kvh][hi_cap][2] tracker state: persistence
                              * {cur | prev << 16, 0}; accumulated {f32 sum bits, i32 first} */
    uint8_t *lk, *lv;        /* [seq][layer][kvh][lo_cap][hd*bits/8] codes */
    uint32_t *lksz, *lvsz;   /* [seq][layer][kvh][lo_cap][hd/group] scale | zero << 16 */
    float *bal;              /* [seq][layer][kvh][3][hd]: b, running max|q|, max|k| */
} pvc_kv_mixed;

/* Fields of a batch entry (int32 [n][PVC_MXE_STRIDE]) for the store/track
 * kernels; rows of one entry are consecutive. */
enum {
    PVC_MXE_SEQ = 0,  /* sequence slot */
    PVC_MXE_ROW0,     /* first row in the batch */
    PVC_MXE_N,        /* rows (tokens) */
    PVC_MXE_HI0,      /* high-tier tokens before this call (new ones go to HI0 + i) */
    PVC_MXE_LO,       /* low-tier tokens (all visible: older than every row) */
    PVC_MXE_STEP0,    /* queries served before this call (tracker clock) */
    PVC_MXE_OBSERVE,  /* 1: fold |q|, |k| into the balance maxima (not frozen yet) */
    PVC_MXE_STRIDE = 8
};
/* Fields of one demotion (int32 [n][PVC_MXD_STRIDE]); applied to every
 * layer and KV head of the sequence. */
enum {
    PVC_MXD_SEQ = 0,
    PVC_MXD_K,        /* tokens to demote (kvt_pick's k, already clipped) */
    PVC_MXD_LEN,      /* sequence length (protection of the recent window) */
    PVC_MXD_STEPS,    /* tracker clock after the call */
    PVC_MXD_HI,       /* high-tier tokens now */
    PVC_MXD_LO,       /* low-tier tokens now (victims are appended) */
    PVC_MXD_FREEZE,   /* 1: freeze the balance factors first (b = sqrt(max|q|/max|k|)) */
    PVC_MXD_STRIDE = 8
};

/* Device bytes one sequence slot takes (all layers and heads). */
size_t pvc_mixed_seq_bytes(const pvc_kv_mixed *kv);
/* PV_EUNSUPPORTED when the shape/capacities do not suit the kernels (why in
 * pvc_last_error). */
int pvc_mixed_check(const pvc_kv_mixed *kv);
int pvc_mixed_alloc(pvc_ctx *c, pvc_kv_mixed *kv); /* fills the pointers */
void pvc_mixed_free(pvc_ctx *c, pvc_kv_mixed *kv);
/* Starts slot `seq` afresh: balance factors 1, maxima 0. */
int pvc_mixed_reset(pvc_ctx *c, const pvc_kv_mixed *kv, int seq);
/* After pvc_rope_store_slots of `layer`: positions and tracker state of the
 * new high-tier tokens, and the balance maxima of entries with OBSERVE. */
int pvc_mixed_post_store(pvc_ctx *c, const float *qkv, int ld, const pvc_attn_shape *s,
                         const int32_t *pos, const int32_t *ent, int n_ent,
                         const pvc_kv_mixed *kv, int layer);
/* Attention of each row over the visible high tier (slots 0..hslot[t]) and
 * the whole low tier (nlo[t] records, dequantized in registers, keys
 * divided by the balance factors), split over the keys and merged with
 * log-sum-exp as pvc_attention (same part scratch, same lse output).
 * max_keys = max over rows of hslot[t] + 1 + nlo[t]. */
int pvc_mixed_attention(pvc_ctx *c, const float *qkv, int ld, int T, const pvc_attn_shape *s,
                        const int32_t *seq, const int32_t *hslot, const int32_t *nlo,
                        const pvc_kv_mixed *kv, int layer, int max_keys, float *part,
                        size_t part_floats, uint16_t *out, float *lse);
/* The importance tracker (select persistence / accumulated): for each entry
 * and KV head, rows in order, p(token) = mean over the group's query heads of
 * exp(q.k/sqrt(hd) - lse), observed against 1/n_visible as kvt_observe; the
 * persistence buckets rotate every window/2 steps. lse from the attention. */
int pvc_mixed_track(pvc_ctx *c, const float *qkv, int ld, const pvc_attn_shape *s,
                    const int32_t *ent, int n_ent, const float *lse, const pvc_kv_mixed *kv,
                    int layer);
/* Demotion for every layer and KV head of each listed sequence: picks k of
 * the unprotected high-tier tokens (highest demotion score first, older on
 * ties: kvt_pick), quantizes them into the low tier (or drops them), and
 * compacts the high tier keeping position order. */
int pvc_mixed_demote(pvc_ctx *c, const pvc_kv_mixed *kv, const int32_t *dem, int n_dem);
/* Benchmarks: slot `seq` as if n tokens had been seen, n_hi of them high
 * (the first `sinks` positions and the newest ones) and n_lo low, random
 * values, balance factors 1. */
int pvc_mixed_fill_synth(pvc_ctx *c, const pvc_kv_mixed *kv, int seq, int n, int n_hi, int n_lo,
                         uint64_t seed);

#ifdef __cplusplus
}
#endif

#endif
