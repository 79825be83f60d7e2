/* kv_quant_avx512: AVX-512 run kernels for the mixed cache's quantized tier
 * (one query per call: decode). Same contracts as the AVX2 ones in
 * kv_quant_fast.c; what differs is where the time went there:
 *
 * dotn: the AVX2 kernel ends every (token, query head) with a horizontal
 *   sum. Here 16 tokens' codes are unpacked to int16 once, each query head
 *   multiplies them with vpdpwssd (32 channels per instruction, the add folded in),
 *   and the 16 per-token vectors are reduced together by a transpose-and-add
 *   tree (45 operations for 16 sums instead of ~8 per sum). Scales, zeros
 *   (one gather of 16 records' fp16 pairs per group) and the query's own
 *   scale are then applied to 16 tokens at once.
 *   Where it is the faster (dotn_t_ok), dotn512t transposes the 16 records
 *   instead, tokens in lanes, and needs no reduction (bit-identical).
 * axpyn: the weights a·scale are rounded to int16 per block of 32 tokens
 *   and two tokens' codes meet them in one vpdpwssd (axpyn512i, below:
 *   within half a step of 1/32767 of the block's largest weight per token;
 *   `bench_attn 2048 mikv` decode -10% per KV head, docs/PERFORMANCE.md).
 *   A call with more than one pass of query heads (prompt blocks) unpacks
 *   a block's codes into those int16 pairs once, not once per pass
 *   (prompt -6%, bit-identical).
 *   Shapes it does not take decode
 *   each record to float once (code * scale + zero, one fused multiply-add
 *   per 16 channels) and add it to every query head's output, which stays
 *   in registers for the whole run (6 heads x 64 channels at a time). */
#include <immintrin.h>
#include <string.h>

#include "kv_quant.h"
#include "kv_quant512.h"
#include "kv_simd.h"

#define MAXG 64  /* groups per record */
#define ROWS 6   /* query heads per register pass in axpyn */

/* Lane t of the result is the sum of the 16 lanes of v[t]. */
AVX512 static inline __m512i reduce16(const __m512i *v) {
    __m512i w[8], x[4];
    for (int k = 0; k < 8; k++) /* per 128-bit chunk: pairs of tokens, 2 partials each */
        w[k] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * k], v[2 * k + 1]),
                                _mm512_unpackhi_epi32(v[2 * k], v[2 * k + 1]));
    for (int k = 0; k < 4; k++) /* per chunk: 4 tokens' chunk totals */
        x[k] = _mm512_add_epi32(_mm512_unpacklo_epi64(w[2 * k], w[2 * k + 1]),
                                _mm512_unpackhi_epi64(w[2 * k], w[2 * k + 1]));
    __m512i y0 = _mm512_add_epi32(_mm512_shuffle_i32x4(x[0], x[1], 0x88),
                                  _mm512_shuffle_i32x4(x[0], x[1], 0xDD));
    __m512i y1 = _mm512_add_epi32(_mm512_shuffle_i32x4(x[2], x[3], 0x88),
                                  _mm512_shuffle_i32x4(x[2], x[3], 0xDD));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(y0, y1, 0x88), _mm512_shuffle_i32x4(y0, y1, 0xDD));
}

/* Codes of one record as int16 in channel order (kv_quant.h: channel c is
 * byte c % nb at bit bits * (c / nb)); 16 channels share a plane. */
AVX512 static inline void unpack16(const uint8_t *rec, int bits, int d, int16_t *out) {
    for (int c = 0; c < d; c += 16)
        _mm256_storeu_si256((__m256i *)(void *)(out + c), _mm512_cvtepi32_epi16(kvs_codes16(rec, bits, d, c)));
}

/* Codes of one record as int16 in channel order into out (64-byte aligned).
 * Planes of a multiple of 32 bytes (4-bit or 8-bit codes at head_dim 64):
 * 32 bytes widen to int16 once and each plane is a shift and a mask of
 * them; other shapes 16 channels at a time (unpack16). */
AVX512 __attribute__((always_inline)) static inline void unpack_rec(const uint8_t *rec, int bits, int d,
                                                                    int16_t *out) {
    const int nb = d * bits / 8;
    if (bits == 3 || nb % 32) {
        unpack16(rec, bits, d, out);
        return;
    }
    const __m512i mask = _mm512_set1_epi16((int16_t)((1 << bits) - 1));
    for (int j = 0; j < nb; j += 32) {
        __m512i w = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(rec + j)));
        for (int p = 0; p < 8 / bits; p++)
            _mm512_store_si512(out + p * nb + j, _mm512_and_si512(_mm512_srli_epi16(w, (unsigned)(p * bits)), mask));
    }
}

/* Group gi's scale and zero of 16 records whose codes take nb bytes (lane
 * u: record t0 + u; lanes from cnt on read nothing and are 0): one gather
 * of their 4 bytes, or with sz8 (KVQ_SZ8) of the dword that ends with
 * their 2 (the codes' last two bytes before them, so nothing past a record
 * is read); the same floats as kvs_sz. */
AVX512 static inline void scale_zero16(const uint8_t *rec0, size_t stride, int cnt, int nb, int gi, int sz8,
                                       int bits, __m512 *s, __m512 *z) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32((int)stride));
    const __mmask16 live = (__mmask16)(cnt >= 16 ? 0xFFFF : (1u << cnt) - 1);
    if (sz8) {
        __m512i w = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, rec0 + nb + 2 * gi - 2, 1);
        const __m512i sc = _mm512_and_si512(_mm512_srli_epi32(w, 16), _mm512_set1_epi32(255));
        *s = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_slli_epi32(sc, 19), _mm512_set1_epi32((int)KVQ_S8_BASE)));
        *z = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(w, 24)), *s),
                           _mm512_set1_ps(-kvq_z8_step(bits)));
        *s = _mm512_maskz_mov_ps(live, *s); /* dead lanes 0, as the fp16 path's */
        return;
    }
    __m512i sz = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, rec0 + nb + 4 * gi, 1);
    *s = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(sz));
    *z = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(sz, 16)));
}

AVX512 __attribute__((always_inline)) static inline void
dotn512(const uint8_t *rec0, size_t stride, int n, const kvq_qprep *qp, int gq, int d, int group,
        float *sc, size_t scs, const int bits, int sz8) {
    const int nb = d * bits / 8, ng = d / group;
    int16_t codes[16 * MAXD] __attribute__((aligned(64)));
    __m512 s[MAXG], z[MAXG];
    for (int t0 = 0; t0 < n; t0 += 16) {
        const int cnt = n - t0 < 16 ? n - t0 : 16;
        for (int u = 0; u < 16; u++) {
            if (u < cnt) unpack_rec(rec0 + (size_t)(t0 + u) * stride, bits, d, codes + (size_t)u * d);
            else memset(codes + (size_t)u * d, 0, sizeof(int16_t) * d); /* past the run: zero codes */
        }
        for (int gi = 0; gi < ng; gi++)
            scale_zero16(rec0 + (size_t)t0 * stride, stride, cnt, nb, gi, sz8, bits, &s[gi], &z[gi]);
        for (int r = 0; r < gq; r++) {
            const int16_t *q16 = qp->q16 + (size_t)r * d;
            __m512 f = _mm512_setzero_ps();
            for (int gi = 0; gi < ng; gi++) {
                __m512i v[16];
                for (int u = 0; u < 16; u++) {
                    __m512i acc = _mm512_setzero_si512();
                    for (int c = gi * group; c < (gi + 1) * group; c += 32)
                        acc = _mm512_dpwssd_epi32(acc, _mm512_load_si512(codes + (size_t)u * d + c),
                                                  _mm512_loadu_si512(q16 + c));
                    v[u] = acc;
                }
                f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(reduce16(v)), s[gi], f);
            }
            __m512 res = _mm512_mul_ps(f, _mm512_set1_ps(qp->qs[r]));
            for (int gi = 0; gi < ng; gi++)
                res = _mm512_fmadd_ps(z[gi], _mm512_set1_ps(qp->qsum[(size_t)r * ng + gi]), res);
            _mm512_mask_storeu_ps(sc + (size_t)r * scs + t0, (__mmask16)((1u << cnt) - 1), res);
        }
    }
}

/* NR query heads (constant after inlining) x 64 channels from c0. */
AVX512 __attribute__((always_inline)) static inline void
axpy_pass(const uint8_t *rec0, size_t stride, int n, const float *a, size_t as, int d, int group,
          int bits, int sz8, int r0, int c0, float *out, const int NR) {
    const int nb = d * bits / 8;
    __m512 acc[ROWS][4];
    for (int r = 0; r < NR; r++)
        for (int j = 0; j < 4; j++) acc[r][j] = _mm512_loadu_ps(out + (size_t)(r0 + r) * d + c0 + 16 * j);
    for (int t = 0; t < n; t++) {
        const uint8_t *rec = rec0 + (size_t)t * stride;
        __m512 x[4];
        for (int j = 0; j < 4; j++) {
            int c = c0 + 16 * j;
            float sg, zg;
            kvs_sz(rec, nb, bits, group | sz8, c / group, &sg, &zg);
            __m512i w = kvs_codes16(rec, bits, d, c);
            x[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(w), _mm512_set1_ps(sg), _mm512_set1_ps(zg));
        }
        for (int r = 0; r < NR; r++) {
            __m512 b = _mm512_set1_ps(a[(size_t)(r0 + r) * as + t]);
            for (int j = 0; j < 4; j++) acc[r][j] = _mm512_fmadd_ps(b, x[j], acc[r][j]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int j = 0; j < 4; j++) _mm512_storeu_ps(out + (size_t)(r0 + r) * d + c0 + 16 * j, acc[r][j]);
}

AVX512 __attribute__((always_inline)) static inline void axpyn512(const uint8_t *rec0, size_t stride, int n, const float *a, size_t as,
                            int gq, int d, int group, float *out, int bits, int sz8) {
    for (int r0 = 0; r0 < gq; r0 += ROWS)
        for (int c0 = 0; c0 < d; c0 += 64) {
#define PASS(k) axpy_pass(rec0, stride, n, a, as, d, group, bits, sz8, r0, c0, out, k)
            KVS_SWITCH6(gq - r0, PASS)
#undef PASS
        }
}

/* axpyn with integer products (axpyn512i below; kvq_avx512_axpyn takes it
 * where axpy_int_ok): out_c += Σ_t a_t·(s_t·code_tc + z_t) is computed as
 * Σ_t w_t·code_tc + Σ_t a_t·z_t with w_t = a_t·s_t rounded to int16 on a
 * step of max_t w_t / 32767 per block of IB tokens, so two tokens' codes
 * meet their two weights in one vpdpwssd (16 channels, the add folded in)
 * instead of a float conversion, a decode FMA and an FMA per query head
 * each. The rounding is half a step per token (~1.5e-5 of the block's
 * largest weight), far below the codes' own (half of s_t); the float
 * kernel above stays for the other shapes. IB = 32: codes <= 255 times
 * weights <= 32767 summed over 32 tokens stay inside int32. */
#define IB 32
#define IROWS 16 /* query heads whose weights are prepared at once */
#define STAGE_D 128 /* head_dim up to which axpyn512i stages a block's int16 pairs (8 KB) */

/* Codes of channels c0..c0+63 (c0 % 64 == 0) of one record as 64 bytes in
 * channel order: the low bits from planes of 16 or 32 bytes (broadcast,
 * one shift per 128-bit lane) or of a multiple of 64 (one load), then for
 * 3 bits the third from its mask (kv_quant.h's layout). A 64-bit lane shift
 * brings the next byte's bits into a byte's top, which the mask removes. */
AVX512 __attribute__((always_inline)) static inline __m512i codes64(const uint8_t *rec, int bits, int d, int c0) {
    const int pb = bits == 3 ? 2 : bits, nbp = d * pb / 8;
    __m512i w, cnt;
    if (nbp == 16) { /* lane k: channels c0+16k.., plane (c0 + 16k) / 16 */
        w = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)rec));
        const long long p = pb * (c0 / 16);
        cnt = _mm512_setr_epi64(p, p, p + pb, p + pb, p + 2 * pb, p + 2 * pb, p + 3 * pb, p + 3 * pb);
    } else if (nbp == 32) { /* lanes 0-1: plane c0 / 32, lanes 2-3 the next */
        w = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)rec));
        const long long p = pb * (c0 / 32);
        cnt = _mm512_setr_epi64(p, p, p, p, p + pb, p + pb, p + pb, p + pb);
    } else {
        w = _mm512_loadu_si512(rec + c0 % nbp);
        cnt = _mm512_set1_epi64(pb * (c0 / nbp));
    }
    w = _mm512_and_si512(_mm512_srlv_epi64(w, cnt), _mm512_set1_epi8((char)((1 << pb) - 1)));
    if (bits == 3) {
        uint64_t hb;
        memcpy(&hb, rec + d / 4 + c0 / 8, 8);
        w = _mm512_mask_add_epi8(w, (__mmask64)hb, w, _mm512_set1_epi8(4));
    }
    return w;
}

/* acc += vpdpwssd(P, x), the accumulator tied to the instruction's
 * destination. Through the intrinsic GCC copied every accumulator of
 * axpy_int_pass's loop into another register and back each iteration (24
 * moves beside 12 vpdpwssd at three heads); `perf annotate` showed them,
 * and without them the kernel runs 7% faster (same instructions otherwise,
 * same results). */
AVX512 __attribute__((always_inline)) static inline void dpwssd_tied(__m512i *acc, __m512i P, __m512i x) {
    __asm__("vpdpwssd %2, %1, %0" : "+v"(*acc) : "v"(P), "v"(x));
}

/* One pair of tokens (codes A, B: codes64) as the int16 pairs (token t,
 * token t+1) of channels c0 + 0-7 and 16-23 (P[0]), 32-39 and 48-55
 * (P[1]), 8-15 and 24-31 (P[2]), 40-47 and 56-63 (P[3]). */
AVX512 __attribute__((always_inline)) static inline void pair_P(__m512i A, __m512i B, __m512i *P) {
    const __m512i lo = _mm512_unpacklo_epi8(A, B), hi = _mm512_unpackhi_epi8(A, B);
    P[0] = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(lo));
    P[1] = _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(lo, 1));
    P[2] = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(hi));
    P[3] = _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(hi, 1));
}

/* A pair's int16 pairs P into the accumulators of NR query heads, against
 * the two tokens' weights (wa for the first 32 channels' group, wb for the
 * last 32's). */
AVX512 __attribute__((always_inline)) static inline void pair_acc(const __m512i *P, const int16_t *wa,
                                                                  const int16_t *wb, __m512i (*acc)[4], const int NR) {
    for (int r = 0; r < NR; r++) {
        int32_t pa, pb;
        memcpy(&pa, wa + (size_t)r * IB, 4);
        memcpy(&pb, wb + (size_t)r * IB, 4);
        const __m512i xa = _mm512_set1_epi32(pa), xb = _mm512_set1_epi32(pb);
        dpwssd_tied(&acc[r][0], P[0], xa);
        dpwssd_tied(&acc[r][2], P[2], xa);
        dpwssd_tied(&acc[r][1], P[1], xb);
        dpwssd_tied(&acc[r][3], P[3], xb);
    }
}

/* Token pair t / 2 of the block at channels c0: from the staged pairs
 * (stage: axpyn512i's buffer at c0, stage_at) or unpacked from the records
 * (an odd last token pairs with zero codes, and weighs 0). */
AVX512 __attribute__((always_inline)) static inline void pair_of(const uint8_t *rec0, size_t stride, int cnt, int t,
                                                                 int bits, int d, int c0, const __m512i *stage,
                                                                 __m512i *P) {
    if (stage) {
        for (int j = 0; j < 4; j++) P[j] = _mm512_load_si512(stage + (size_t)(t / 2) * 4 + j);
        return;
    }
    pair_P(codes64(rec0 + (size_t)t * stride, bits, d, c0),
           t + 1 < cnt ? codes64(rec0 + (size_t)(t + 1) * stride, bits, d, c0) : _mm512_setzero_si512(), P);
}

/* axpyn512i's staged pairs of channels c0.. (IB / 2 token pairs of 4). */
static inline __m512i *stage_at(__m512i *stage, int c0) { return stage + (size_t)(c0 / 64) * (IB / 2) * 4; }

/* NR query heads x channels c0..c0+63 over the block's cnt tokens: the
 * products in int32 (pairs of tokens), then scaled, put back in channel
 * order and added to out with the zero-point sums. w16[gi][r][t]: token t's
 * weight for head r0 + r in group gi; qs/zs[gi][r]: the step, Σ a·z. */
AVX512 __attribute__((always_inline)) static inline void
axpy_int_pass(const uint8_t *rec0, size_t stride, int cnt, const int16_t *w16, const float *qs,
              const float *zs, int d, int group, int bits, int r0, int c0, const __m512i *stage, float *out,
              const int NR) {
    const int ga = c0 / group, gb = (c0 + 32) / group;
    const int16_t *wa = w16 + ((size_t)ga * IROWS + r0) * IB, *wb = w16 + ((size_t)gb * IROWS + r0) * IB;
    __m512i acc[ROWS][4];
    for (int r = 0; r < NR; r++)
        for (int j = 0; j < 4; j++) acc[r][j] = _mm512_setzero_si512();
    for (int t = 0; t < cnt; t += 2) {
        __m512i P[4];
        pair_of(rec0, stride, cnt, t, bits, d, c0, stage, P);
        pair_acc(P, wa + t, wb + t, acc, NR);
    }
    for (int r = 0; r < NR; r++) {
        const __m512 sa = _mm512_set1_ps(qs[ga * IROWS + r0 + r]), sb = _mm512_set1_ps(qs[gb * IROWS + r0 + r]);
        const __m512 F0 = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][0]), sa);
        const __m512 F2 = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][2]), sa);
        const __m512 F1 = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][1]), sb);
        const __m512 F3 = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][3]), sb);
        const __m512 O[4] = {_mm512_shuffle_f32x4(F0, F2, 0x44), _mm512_shuffle_f32x4(F0, F2, 0xEE),
                             _mm512_shuffle_f32x4(F1, F3, 0x44), _mm512_shuffle_f32x4(F1, F3, 0xEE)};
        float *o = out + (size_t)(r0 + r) * d + c0;
        for (int k = 0; k < 4; k++) {
            const __m512 z = _mm512_set1_ps(zs[((c0 + 16 * k) / group) * IROWS + r0 + r]);
            _mm512_storeu_ps(o + 16 * k, _mm512_add_ps(_mm512_loadu_ps(o + 16 * k), _mm512_add_ps(O[k], z)));
        }
    }
}

/* Block weights of rows r0..r0+nr: w = a·s per group as int16 on a step of
 * the block's largest |w| (qs), and Σ a·z (zs). Tokens past cnt weigh 0. */
AVX512 static inline void axpy_int_weights(const uint8_t *rec0, size_t stride, int cnt, const float *a,
                                           size_t as, int r0, int nr, int d, int group, int bits,
                                           int sz8, int16_t *w16, float *qs, float *zs) {
    const int nb = d * bits / 8, ng = d / group;
    const __mmask16 m0 = (__mmask16)(cnt >= 16 ? 0xFFFF : (1u << cnt) - 1);
    const __mmask16 m1 = (__mmask16)(cnt <= 16 ? 0 : cnt >= 32 ? 0xFFFF : (1u << (cnt - 16)) - 1);
    for (int gi = 0; gi < ng; gi++) {
        __m512 s0, z0, s1, z1;
        scale_zero16(rec0, stride, cnt, nb, gi, sz8, bits, &s0, &z0);
        scale_zero16(rec0 + 16 * stride, stride, cnt > 16 ? cnt - 16 : 0, nb, gi, sz8, bits, &s1, &z1);
        for (int r = 0; r < nr; r++) {
            const float *ar = a + (size_t)(r0 + r) * as;
            const __m512 A0 = _mm512_maskz_loadu_ps(m0, ar), A1 = _mm512_maskz_loadu_ps(m1, ar + 16);
            const __m512 W0 = _mm512_mul_ps(A0, s0), W1 = _mm512_mul_ps(A1, s1);
            /* |w|: the contract allows any weights, softmax's are >= 0 */
            const float wmax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(W0), _mm512_abs_ps(W1)));
            const float inv = wmax > 0 ? 32767.0f / wmax : 0.0f;
            int16_t *w = w16 + ((size_t)gi * IROWS + r) * IB;
            _mm256_storeu_si256((__m256i *)(void *)w, _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(W0, _mm512_set1_ps(inv)))));
            _mm256_storeu_si256((__m256i *)(void *)(w + 16), _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(W1, _mm512_set1_ps(inv)))));
            qs[gi * IROWS + r] = wmax > 0 ? wmax / 32767.0f : 0.0f;
            zs[gi * IROWS + r] = _mm512_reduce_add_ps(_mm512_fmadd_ps(A1, z1, _mm512_mul_ps(A0, z0)));
        }
    }
}

AVX512 __attribute__((always_inline)) static inline void axpyn512i(const uint8_t *rec0, size_t stride, int n, const float *a,
                                                                   size_t as, int gq, int d, int group, float *out, int bits,
                                                                   int sz8) {
    int16_t w16[IMAXG * IROWS * IB] __attribute__((aligned(64)));
    float qs[IMAXG * IROWS], zs[IMAXG * IROWS];
    /* More than one pass of heads (prompt blocks: 16 rows a call) unpack a
     * block's codes once into its int16 pairs (STAGE_D channels at most,
     * 4 KB per 64) instead of once per pass. */
    __m512i stage[STAGE_D / 64 * IB / 2 * 4];
    const int staged = gq > 4 && d <= STAGE_D;
    for (int t0 = 0; t0 < n; t0 += IB) {
        const int cnt = n - t0 < IB ? n - t0 : IB;
        const uint8_t *rb = rec0 + (size_t)t0 * stride;
        if (staged)
            for (int c0 = 0; c0 < d; c0 += 64)
                for (int t = 0; t < cnt; t += 2)
                    pair_of(rb, stride, cnt, t, bits, d, c0, NULL, stage_at(stage, c0) + t / 2 * 4);
        for (int h0 = 0; h0 < gq; h0 += IROWS) {
            const int nr = gq - h0 < IROWS ? gq - h0 : IROWS;
            axpy_int_weights(rb, stride, cnt, a + t0, as, h0, nr, d, group, bits, sz8, w16, qs, zs);
            /* the weights sit at rows 0..nr of the arrays; out at h0 */
            for (int r0 = 0; r0 < nr; r0 += 4)
                for (int c0 = 0; c0 < d; c0 += 64) {
#define IPASS(k)                                                                                   \
    axpy_int_pass(rb, stride, cnt, w16, qs, zs, d, group, bits, r0, c0,                            \
                  staged ? stage_at(stage, c0) : NULL, out + (size_t)h0 * d, k)
                    KVS_SWITCH6(nr - r0 < 4 ? nr - r0 : 4, IPASS)
#undef IPASS
                }
        }
    }
}

/* dotn with tokens in lanes (dotn512t, below; kvq_avx512_dotn takes it for
 * 2-4-bit codes where axpy_int_ok): dotn512 reduces each
 * (token, query head) vector of channel sums with its share of a
 * 16-token tree (45 operations per group and head); here 16 records'
 * codes (codes64: bytes in channel order) are transposed once so that
 * vector k holds dword k (channels 4k..4k+3) of every token, and one
 * vpdpbusd per dword and query head adds the four products into each
 * token's lane: no reduction. vpdpbusd multiplies unsigned by signed
 * bytes, so it takes the int16 query split into bytes (kvq_prep: q16 =
 * 256·hi + lo, hi signed, lo unsigned), and a group's sum is 256·Σ code·hi + Σ lo·code:
 * the same integer as dotn512's (|sums| < 2^31 for codes <= 15 over 512
 * channels), scaled in the same order, so the scores are bit-identical. */

/* r[k] lane u <- dword k of r[u], 16 x 16 (four shuffle stages). */
AVX512 __attribute__((always_inline)) static inline void transpose16(__m512i *r) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; i++) { /* per 128-bit lane: [a0 b0 a1 b1], [a2 b2 a3 b3] */
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) { /* u[4i + j], lane L: dword 4L + j of records 4i..4i+3 */
        u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int j = 0; j < 4; j++) { /* dword 4L + j gathers lane L of u[j], u[4+j], u[8+j], u[12+j] */
        const __m512i a = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x44);
        const __m512i b = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x44);
        const __m512i c = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xEE);
        const __m512i e = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xEE);
        r[j] = _mm512_shuffle_i32x4(a, b, 0x88);
        r[4 + j] = _mm512_shuffle_i32x4(a, b, 0xDD);
        r[8 + j] = _mm512_shuffle_i32x4(c, e, 0x88);
        r[12 + j] = _mm512_shuffle_i32x4(c, e, 0xDD);
    }
}

AVX512 __attribute__((always_inline)) static inline void
dotn512t(const uint8_t *rec0, size_t stride, int n, const kvq_qprep *qp, int gq, int d, int group,
         float *sc, size_t scs, const int bits, int sz8) {
    const int nb = d * bits / 8, ng = d / group;
    __m512i T[MAXD / 4];
    __m512 s[IMAXG], z[IMAXG]; /* dotn_t_ok: axpy_int_ok's groups per record */
    for (int t0 = 0; t0 < n; t0 += 16) {
        const int cnt = n - t0 < 16 ? n - t0 : 16;
        for (int c0 = 0; c0 < d; c0 += 64) {
            __m512i *R = T + c0 / 4;
            for (int u = 0; u < 16; u++) /* past the run: zero codes */
                R[u] = u < cnt ? codes64(rec0 + (size_t)(t0 + u) * stride, bits, d, c0)
                               : _mm512_setzero_si512();
            transpose16(R);
        }
        for (int gi = 0; gi < ng; gi++)
            scale_zero16(rec0 + (size_t)t0 * stride, stride, cnt, nb, gi, sz8, bits, &s[gi], &z[gi]);
        heads_dot(T, s, z, qp, gq, d, group, sc, scs, t0, cnt);
    }
}

/* Copies per shape (KVS_SHAPES): the channel loops unroll and the 16
 * per-token sums stay in registers (a run-time group left a loop per token). */
#define WRAP(B)                                                                                   \
    AVX512 static void dotn512_q##B(const uint8_t *rec0, size_t stride, int n, const float *q,    \
                                    const kvq_qprep *qp, int gq, int d, int group, float *sc,     \
                                    size_t scs) {                                                 \
        (void)q;                                                                                  \
        const int sz8 = kvq_take_sz8(&group); /* KVS_SHAPES matches the bare group */             \
        /* B != 8: a constant, so the 8-bit copy has no transposed branch */                      \
        if (B != 8 && dotn_t_ok(B, d, group, gq))                                                 \
            KVS_SHAPES(d, group, DOTNT_##B);                                                      \
        else                                                                                      \
            KVS_SHAPES(d, group, DOTN_##B);                                                       \
    }                                                                                             \
    AVX512 static void axpyn512_q##B(const uint8_t *rec0, size_t stride, int n, const float *a,   \
                                     size_t as, int gq, int d, int group, float *out) {           \
        const int sz8 = kvq_take_sz8(&group); /* KVS_SHAPES matches the bare group */             \
        KVS_SHAPES(d, group, AXPYN_##B);                                                          \
    }                                                                                             \
    AVX512 static void axpyn512i_q##B(const uint8_t *rec0, size_t stride, int n, const float *a,  \
                                      size_t as, int gq, int d, int group, float *out) {          \
        const int sz8 = kvq_take_sz8(&group); /* KVS_SHAPES matches the bare group */             \
        KVS_SHAPES(d, group, AXPYNI_##B);                                                         \
    }
#define DOTN_8(D, G) dotn512(rec0, stride, n, qp, gq, D, G, sc, scs, 8, sz8)
/* never taken (8-bit codes do not fit vpdpbusd's signed side); spelled so WRAP(8) compiles */
#define DOTNT_8(D, G) DOTN_8(D, G)
#define DOTNT_4(D, G) dotn512t(rec0, stride, n, qp, gq, D, G, sc, scs, 4, sz8)
#define DOTNT_3(D, G) dotn512t(rec0, stride, n, qp, gq, D, G, sc, scs, 3, sz8)
#define DOTNT_2(D, G) dotn512t(rec0, stride, n, qp, gq, D, G, sc, scs, 2, sz8)
#define DOTN_4(D, G) dotn512(rec0, stride, n, qp, gq, D, G, sc, scs, 4, sz8)
#define DOTN_3(D, G) dotn512(rec0, stride, n, qp, gq, D, G, sc, scs, 3, sz8)
#define DOTN_2(D, G) dotn512(rec0, stride, n, qp, gq, D, G, sc, scs, 2, sz8)
#define AXPYN_8(D, G) axpyn512(rec0, stride, n, a, as, gq, D, G, out, 8, sz8)
#define AXPYN_4(D, G) axpyn512(rec0, stride, n, a, as, gq, D, G, out, 4, sz8)
#define AXPYN_3(D, G) axpyn512(rec0, stride, n, a, as, gq, D, G, out, 3, sz8)
#define AXPYN_2(D, G) axpyn512(rec0, stride, n, a, as, gq, D, G, out, 2, sz8)
#define AXPYNI_8(D, G) axpyn512i(rec0, stride, n, a, as, gq, D, G, out, 8, sz8)
#define AXPYNI_4(D, G) axpyn512i(rec0, stride, n, a, as, gq, D, G, out, 4, sz8)
#define AXPYNI_3(D, G) axpyn512i(rec0, stride, n, a, as, gq, D, G, out, 3, sz8)
#define AXPYNI_2(D, G) axpyn512i(rec0, stride, n, a, as, gq, D, G, out, 2, sz8)
WRAP(8)
WRAP(4)
WRAP(3)
WRAP(2)

/* kvq_prep's int16 query and its byte split, 16 channels per step: the
 * same product q·inv rounded to nearest even by vcvtps2dq as lrintf does
 * under the default rounding mode, so the same codes (test:
 * kv_quant_avx512::prep_matches_scalar). It was ~3% of a long mikv
 * prefill through the run kernels as 64 libm calls per row. */
AVX512 static void prep16(const float *qg, int d, float inv, int16_t *q16, int8_t *qhi, uint8_t *qlo) {
    const __m512 iv = _mm512_set1_ps(inv);
    for (int c = 0; c < d; c += 16) {
        const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(qg + c), iv));
        _mm256_storeu_si256((__m256i *)(void *)(q16 + c), _mm512_cvtepi32_epi16(v));
        _mm_storeu_si128((__m128i *)(void *)(qlo + c), _mm512_cvtepi32_epi8(_mm512_and_si512(v, _mm512_set1_epi32(255))));
        _mm_storeu_si128((__m128i *)(void *)(qhi + c), _mm512_cvtepi32_epi8(_mm512_srai_epi32(v, 8)));
    }
}

int kvq_avx512_prep_row(const float *qg, int d, float inv, int16_t *q16, int8_t *qhi, uint8_t *qlo) {
    if (d % 16 || !cpu_ok()) return 0;
    prep16(qg, d, inv, q16, qhi, qlo);
    return 1;
}

kvq_dotn_fn kvq_avx512_dotn(int bits, int d, int group) {
    group = kvq_group(group); /* either side format (kv_side.h) */
    /* 16 channels per plane step, 32 per madd inside one group */
    if (!cpu_ok() || d > MAXD || d % 32 || !kvs_codes16_ok(bits, d) || group % 32 || d / group > MAXG)
        return NULL;
    /* a group's dot is summed in int32: |q16| <= 32767 times codes <= 255
     * overflows past 257 channels (4- and 2-bit codes cannot) */
    if (bits == 8 && group > 256) return NULL;
    return bits == 8 ? dotn512_q8 : bits == 4 ? dotn512_q4 : bits == 3 ? dotn512_q3 : bits == 2 ? dotn512_q2 : NULL;
}

kvq_axpyn_fn kvq_avx512_axpyn(int bits, int d, int group) {
    group = kvq_group(group);
    if (!cpu_ok() || d % 64 || !kvs_codes16_ok(bits, d) || group % 16) return NULL;
    if (axpy_int_ok(bits, d, group))
        return bits == 8 ? axpyn512i_q8 : bits == 4 ? axpyn512i_q4 : bits == 3 ? axpyn512i_q3 : axpyn512i_q2;
    return bits == 8 ? axpyn512_q8 : bits == 4 ? axpyn512_q4 : bits == 3 ? axpyn512_q3 : bits == 2 ? axpyn512_q2 : NULL;
}
