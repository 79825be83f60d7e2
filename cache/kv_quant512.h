/* kv_quant512 (internal to kv_quant_avx512.c and kv_quant_kblk512.c): what
 * the AVX-512 key kernels share: the CPU check, the shapes the transposed
 * and integer kernels take, and the per-head dot of 16 tokens whose codes
 * are already in lanes (dotn512t transposes records into that form,
 * dotn512b reads blocked keys that are stored in it). */
#ifndef PIVOT_KV_QUANT512_H
#define PIVOT_KV_QUANT512_H

#include <immintrin.h>
#include <string.h>

#include "kv_quant.h"

/* VNNI too: the mixed cache takes these kernels only at the AVX512VNNI
 * level (kv_mixed.c: with the AVX-512 block kernel), and vpdpwssd is the
 * int16 multiply-add with the accumulate folded in. */
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")))
#define MAXD 512 /* head_dim the kernels take */
/* groups per record the integer kernels take (axpyn512i keeps its weights as
 * IMAXG x IROWS x IB int16 on the stack) */
#define IMAXG 8

static inline int cpu_ok(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
           __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

/* The shapes codes64 (kv_quant_avx512.c) and the integer kernel take:
 * 64-channel passes, the plane sizes codes64 unpacks, and groups of a multiple of 32 channels (each accumulator
 * below holds channels of one 32-channel half, so of one group). */
static inline int axpy_int_ok(int bits, int d, int group) {
    const int pb = bits == 3 ? 2 : bits, nbp = d * pb / 8;
    return d % 64 == 0 && (nbp == 16 || nbp == 32 || nbp % 64 == 0) && group % 32 == 0 &&
           d % group == 0 && d / group <= IMAXG && (bits == 2 || bits == 3 || bits == 4 || bits == 8);
}

/* Where dotn512t is the faster (bench/bench_kq_dotn.c: one thread, best of
 * 201 alternated runs, head_dim and group constants as KVS_SHAPES makes
 * them): its transpose is shared by the query heads and saves dotn512 one
 * tree per group and head, so it wins with two or more groups per record
 * (64/32, 4-bit, three heads 2.3x; 128/64 1.4x at one head, 2.0x at four)
 * and at head_dim 64 with one group (mikv's 64/64: 1.42x over 1,000
 * records, 1.25x over a 32-token page), and loses with one 128-channel
 * group (0.9x at four heads, 0.8x at eight). */
/* Where dotn512t sums a group in 4 independent vpdpbusd chains
 * (group_dot4): one 64-channel group's 16 dependent ones wait on their
 * latency, but the extra accumulators spill next to head_dim 128's 32 dword
 * vectors and cost more than they save with two groups per record
 * (bench_kq_dotn, 3 heads, 1,000 records: 64/64 1.81 -> 1.46 us; 64/32
 * 2.98 -> 3.77 with 2 chains; 128/64 4.81 -> 9.19 with 4). */
#define CHAINS4(d, g) ((d) <= 64 && (g) >= 64)
#define TMAXQ 16 /* the most query heads per KV head the pick was measured with */
static inline int dotn_t_ok(int bits, int d, int group, int gq) {
    return bits != 8 && gq <= TMAXQ && axpy_int_ok(bits, d, group) && (d == 64 || group < d);
}

/* One group's integer sum over dwords k0..k1 of the transposed codes T,
 * 256·Σ code·hi + Σ lo·code, in 4 chains (CHAINS4); int32 sums are exact
 * in any order, so it equals the one-chain loop in dotn512t bit for bit. */
AVX512 __attribute__((always_inline)) static inline __m512i group_dot4(const __m512i *T, const int8_t *h,
                                                                      const uint8_t *l, int k0, int k1) {
    __m512i ah[4], al[4];
    for (int j = 0; j < 4; j++) ah[j] = al[j] = _mm512_setzero_si512();
    for (int k = k0; k < k1; k++) {
        int32_t bh, bl;
        memcpy(&bh, h + 4 * k, 4);
        memcpy(&bl, l + 4 * k, 4);
        ah[k % 4] = _mm512_dpbusd_epi32(ah[k % 4], T[k], _mm512_set1_epi32(bh));
        al[k % 4] = _mm512_dpbusd_epi32(al[k % 4], _mm512_set1_epi32(bl), T[k]);
    }
    const __m512i sh = _mm512_add_epi32(_mm512_add_epi32(ah[0], ah[1]), _mm512_add_epi32(ah[2], ah[3]));
    const __m512i sl = _mm512_add_epi32(_mm512_add_epi32(al[0], al[1]), _mm512_add_epi32(al[2], al[3]));
    return _mm512_add_epi32(_mm512_slli_epi32(sh, 8), sl);
}

/* The scores of gq query heads for 16 tokens (cnt of them stored, at t0 of
 * each head's row sc + r·scs) from their codes in lanes T (vector k: the
 * dword of channels 4k..4k+3 of every token) and their groups' scales s and
 * zeros z: per group 256·Σ code·hi + Σ lo·code (kvq_prep's byte split of
 * the int16 query, the same integer as the int16 product), then the floats
 * in the one order every key kernel keeps, so the scores are bit-identical
 * however T was formed. */
AVX512 __attribute__((always_inline)) static inline void heads_dot(const __m512i *T, const __m512 *s, const __m512 *z,
                                                                   const kvq_qprep *qp, int gq, int d, int group,
                                                                   float *sc, size_t scs, int t0, int cnt) {
    const int ng = d / group;
    for (int r = 0; r < gq; r++) {
        const int8_t *h = qp->qhi + (size_t)r * d; /* kvq_prep's byte split of q16 */
        const uint8_t *l = qp->qlo + (size_t)r * d;
        __m512 f = _mm512_setzero_ps();
        for (int gi = 0; gi < ng; gi++) {
            __m512i sum;
            if (CHAINS4(d, group)) {
                sum = group_dot4(T, h, l, gi * group / 4, (gi + 1) * group / 4);
            } else { /* one chain, spelled out: inside group_dot4's form GCC kept the arrays in memory */
                __m512i ah = _mm512_setzero_si512(), al = _mm512_setzero_si512();
                for (int k = gi * group / 4; k < (gi + 1) * group / 4; k++) {
                    int32_t bh, bl;
                    memcpy(&bh, h + 4 * k, 4);
                    memcpy(&bl, l + 4 * k, 4);
                    ah = _mm512_dpbusd_epi32(ah, T[k], _mm512_set1_epi32(bh));
                    al = _mm512_dpbusd_epi32(al, _mm512_set1_epi32(bl), T[k]);
                }
                sum = _mm512_add_epi32(_mm512_slli_epi32(ah, 8), al);
            }
            f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), s[gi], f);
        }
        __m512 res = _mm512_mul_ps(f, _mm512_set1_ps(qp->qs[r]));
        for (int gi = 0; gi < ng; gi++)
            res = _mm512_fmadd_ps(z[gi], _mm512_set1_ps(qp->qsum[(size_t)r * ng + gi]), res);
        _mm512_mask_storeu_ps(sc + (size_t)r * scs + t0, (__mmask16)((1u << cnt) - 1), res);
    }
}

#endif
