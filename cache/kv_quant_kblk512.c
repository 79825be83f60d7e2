/* kv_quant_kblk512: the low tier's key kernel over blocked 4-bit keys
 * (kv_kblk.h) on AVX-512: dotn512t's scores (kv_quant_avx512.c), bit for
 * bit, without its transpose and gather.
 *
 * Why: dotn512t forms "dword k of every token" vectors from 16 records with
 * codes64 and a four-stage transpose (~64 shuffles on the one shuffle port)
 * and gathers their scale/zero bytes; stored in that form, a vector is one
 * widening load and two bit operations and the scales one load.
 * bench/bench_kq_dotn (head_dim 64, one group, three heads, 2,048 records,
 * one thread): dotn512t 6.7-7.2 us, blocked 4.6-5.0 us (1.43-1.48x), the
 * scores bit-identical. */
#include "kv_kblk.h"
#include "kv_quant.h"
#include "kv_quant512.h"
#include "kv_side.h"
#include "kv_simd.h"

/* The kernel's constants (a vector's 16 lanes, 32 bytes of words per dword
 * of channels, 8·d bytes of codes) are kv_kblk.h's for blocks of 16. */
_Static_assert(KVKB_TOKENS == 16, "one block per 16-lane vector");

/* rec0 is a block's first record, stride the record size, n tokens from
 * there (whole blocks back to back, the last one partial). The scales and
 * zeros are scale_zero16's floats (kv_quant_avx512.c) from the same bytes.
 * Lanes past n read whatever the block holds there and are not stored. */
AVX512 __attribute__((always_inline)) static inline void
dotn512b(const uint8_t *rec0, size_t stride, int n, const kvq_qprep *qp, int gq, int d, int group,
         float *sc, size_t scs, int sz8) {
    const int ng = d / group, bits = 4;
    const __m512i m4 = _mm512_set1_epi32(0x0F0F0F0F);
    __m512i T[MAXD / 4];
    __m512 s[IMAXG], z[IMAXG];
    for (int t0 = 0; t0 < n; t0 += 16) {
        const int cnt = n - t0 < 16 ? n - t0 : 16;
        const uint8_t *blk = rec0 + (size_t)t0 * stride, *szp = blk + 8 * d;
        for (int k = 0; k < d / 4; k++) {
            const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 32 * k)));
            T[k] = _mm512_ternarylogic_epi32(w, _mm512_slli_epi32(w, 12), m4, 0xA8); /* (w | w << 12) & m4 */
        }
        for (int gi = 0; gi < ng; gi++) {
            if (sz8) { /* scale_zero16's floats from the bytes (scale, zero) */
                const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(szp + 32 * gi)));
                const __m512i scb = _mm512_and_si512(w, _mm512_set1_epi32(255));
                s[gi] = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_slli_epi32(scb, 19), _mm512_set1_epi32((int)KVQ_S8_BASE)));
                z[gi] = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(w, 8)), s[gi]),
                                      _mm512_set1_ps(-kvq_z8_step(bits)));
            } else {
                const __m512i w = _mm512_loadu_si512(szp + 64 * gi);
                s[gi] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(w));
                z[gi] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(w, 16)));
            }
        }
        heads_dot(T, s, z, qp, gq, d, group, sc, scs, t0, cnt);
    }
}

AVX512 static void dotn512b_q4(const uint8_t *rec0, size_t stride, int n, const float *q, const kvq_qprep *qp,
                               int gq, int d, int group, float *sc, size_t scs) {
    (void)q;
    const int sz8 = kvq_take_sz8(&group);
#define DOTNB(D, G) dotn512b(rec0, stride, n, qp, gq, D, G, sc, scs, sz8)
    KVS_SHAPES(d, group, DOTNB);
#undef DOTNB
}

kvq_dotn_fn kvq_avx512_dotb(int bits, int d, int group, int gq) {
    /* kvkb_ok: d <= MAXD; dotn_t_ok: gq <= TMAXQ and axpy_int_ok's shapes */
    if (!cpu_ok() || !kvkb_ok(bits, d, group) || !dotn_t_ok(bits, d, kvq_group(group), gq)) return NULL;
    return dotn512b_q4;
}
