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
 * axpyn: each record is decoded to float once (code * scale + zero, one
 *   fused multiply-add per 16 channels) and added to every query head's
 *   output, which stays in registers for the whole run (6 heads x 64
 *   channels at a time). */
#include <immintrin.h>
#include <string.h>

#include "kv_quant.h"
#include "kv_simd.h"

/* VNNI too: the mixed cache takes these kernels only at the AVX512VNNI
 * level (kv_mixed.c: with the AVX-512 block kernel), and vpdpwssd is the
 * int16 multiply-add with the accumulate folded in. */
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")))
#define MAXD 512 /* head_dim the kernels take */
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

/* Group gi's scale and zero of 16 records (lane u: record t0 + u; lanes
 * from cnt on read nothing and are 0): one gather of their 4 bytes. */
AVX512 static inline void scale_zero16(const uint8_t *rec0, size_t stride, int cnt, int off, __m512 *s,
                                       __m512 *z) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32((int)stride));
    const __mmask16 live = (__mmask16)(cnt >= 16 ? 0xFFFF : (1u << cnt) - 1);
    __m512i sz = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, rec0 + off, 1);
    *s = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(sz));
    *z = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(sz, 16)));
}

AVX512 __attribute__((always_inline)) static inline void
dotn512(const uint8_t *rec0, size_t stride, int n, const kvq_qprep *qp, int gq, int d, int group,
        float *sc, size_t scs, const int bits) {
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
            scale_zero16(rec0 + (size_t)t0 * stride, stride, cnt, nb + 4 * gi, &s[gi], &z[gi]);
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
          int bits, int r0, int c0, float *out, const int NR) {
    const int nb = d * bits / 8;
    __m512 acc[ROWS][4];
    for (int r = 0; r < NR; r++)
        for (int j = 0; j < 4; j++) acc[r][j] = _mm512_loadu_ps(out + (size_t)(r0 + r) * d + c0 + 16 * j);
    for (int t = 0; t < n; t++) {
        const uint8_t *rec = rec0 + (size_t)t * stride;
        __m512 x[4];
        for (int j = 0; j < 4; j++) {
            int c = c0 + 16 * j, g = c / group;
            __m512i w = kvs_codes16(rec, bits, d, c);
            x[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(w), _mm512_set1_ps(kvs_h2f(rec + nb + 4 * g)),
                                   _mm512_set1_ps(kvs_h2f(rec + nb + 4 * g + 2)));
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
                            int gq, int d, int group, float *out, int bits) {
    for (int r0 = 0; r0 < gq; r0 += ROWS)
        for (int c0 = 0; c0 < d; c0 += 64) {
#define PASS(k) axpy_pass(rec0, stride, n, a, as, d, group, bits, r0, c0, out, k)
            KVS_SWITCH6(gq - r0, PASS)
#undef PASS
        }
}

/* Copies per shape (KVS_SHAPES): the channel loops unroll and the 16
 * per-token sums stay in registers (a run-time group left a loop per token). */
#define WRAP(B)                                                                                   \
    AVX512 static void dotn512_q##B(const uint8_t *rec0, size_t stride, int n, const float *q,    \
                                    const kvq_qprep *qp, int gq, int d, int group, float *sc,     \
                                    size_t scs) {                                                 \
        (void)q;                                                                                  \
        KVS_SHAPES(d, group, DOTN_##B);                                                           \
    }                                                                                             \
    AVX512 static void axpyn512_q##B(const uint8_t *rec0, size_t stride, int n, const float *a,   \
                                     size_t as, int gq, int d, int group, float *out) {           \
        KVS_SHAPES(d, group, AXPYN_##B);                                                          \
    }
#define DOTN_8(D, G) dotn512(rec0, stride, n, qp, gq, D, G, sc, scs, 8)
#define DOTN_4(D, G) dotn512(rec0, stride, n, qp, gq, D, G, sc, scs, 4)
#define DOTN_3(D, G) dotn512(rec0, stride, n, qp, gq, D, G, sc, scs, 3)
#define DOTN_2(D, G) dotn512(rec0, stride, n, qp, gq, D, G, sc, scs, 2)
#define AXPYN_8(D, G) axpyn512(rec0, stride, n, a, as, gq, D, G, out, 8)
#define AXPYN_4(D, G) axpyn512(rec0, stride, n, a, as, gq, D, G, out, 4)
#define AXPYN_3(D, G) axpyn512(rec0, stride, n, a, as, gq, D, G, out, 3)
#define AXPYN_2(D, G) axpyn512(rec0, stride, n, a, as, gq, D, G, out, 2)
WRAP(8)
WRAP(4)
WRAP(3)
WRAP(2)

static int cpu_ok(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
           __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

kvq_dotn_fn kvq_avx512_dotn(int bits, int d, int group) {
    /* 16 channels per plane step, 32 per madd inside one group */
    if (!cpu_ok() || d > MAXD || d % 32 || !kvs_codes16_ok(bits, d) || group % 32 || d / group > MAXG)
        return NULL;
    /* a group's dot is summed in int32: |q16| <= 32767 times codes <= 255
     * overflows past 257 channels (4- and 2-bit codes cannot) */
    if (bits == 8 && group > 256) return NULL;
    return bits == 8 ? dotn512_q8 : bits == 4 ? dotn512_q4 : bits == 3 ? dotn512_q3 : bits == 2 ? dotn512_q2 : NULL;
}

kvq_axpyn_fn kvq_avx512_axpyn(int bits, int d, int group) {
    if (!cpu_ok() || d % 64 || !kvs_codes16_ok(bits, d) || group % 16) return NULL;
    return bits == 8 ? axpyn512_q8 : bits == 4 ? axpyn512_q4 : bits == 3 ? axpyn512_q3 : bits == 2 ? axpyn512_q2 : NULL;
}
