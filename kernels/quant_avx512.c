/* kq AVX-512 kernels that are more than the AVX2 ones with vpdpwssd
 * (those are kernels/meson.build's KQ_VNNI build of quant_avx2*.c): Q4_1
 * weights with 16-bit activations, the default model's format. Compiled
 * with -mavx512f/bw/vl/vnni (the kq_vnni library); only called after
 * quant.c's run-time CPU check.
 *
 * Why: in the AVX2 kernel the integer part of a (block, token) step is two
 * multiplies, but the float part (int32 -> float, broadcast the block
 * scale, FMA, the min term) is six instructions and dominates prefill.
 * Here two consecutive blocks share one 512-bit float step: block i's 8
 * int32 lanes go to lanes 0-7, block i+1's to lanes 8-15, and one
 * conversion and one FMA with [s_i x8 | s_i+1 x8] handle both. The scales
 * of both blocks come from one 128-bit multiply [d_i dx_i, m_i sx_i,
 * d_i+1 dx_i+1, m_i+1 sx_i+1].
 *
 * Consistency contract (quant_impl.h): the single-row, 4-row and multi-token
 * kernels below all run q4_1_pair on the same block pairs (a lone last
 * block is a pair with zero scales and a zero product) and end with
 * pair_finish, so a row's result does not depend on which one computed it.
 * The float summation differs from the AVX2 kernels' (two blocks per
 * accumulator), so results match them within float rounding, not bitwise.
 *
 * Measured (docs/PERFORMANCE.md, "AVX-512 VNNI kernels"): on the 2-core
 * Zen 4 EPYC these are no faster than the AVX2 kernels for 8-token tiles
 * (0.99-1.01x) while the VNNI build of the AVX2 kernels is ~1.09x: Zen 4
 * runs 512-bit instructions as two 256-bit halves, so fewer, wider float
 * steps save nothing. quant.c's traits table therefore lists them only
 * when built with -DKQ_Q41_PAIRS=1 (for CPUs with full-width 512-bit
 * units); tests/kernels/test_quant_avx512.c tests them directly either way. */
#include "quant_avx2_util.h"

/* 16 nibbles -> elements 0..15 and 16..31 as int16 (as quant_avx2_q16.c) */
static inline void nib16(const uint8_t *qs, __m256i *lo, __m256i *hi)
{
    __m128i b = _mm_loadu_si128((const __m128i *)qs), m = _mm_set1_epi8(0x0F);
    *lo = _mm256_cvtepu8_epi16(_mm_and_si128(b, m));
    *hi = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(b, 4), m));
}

/* int32 lanes of a 32-value block's dot: lane k holds the products of
 * elements 2k, 2k+1, 16+2k, 17+2k (the AVX2 kernel's lanes) */
static inline __m256i blk_dot(__m256i wlo, __m256i whi, const int16_t *y)
{
    return _mm256_dpwssd_epi32(_mm256_madd_epi16(wlo, _mm256_loadu_si256((const __m256i *)y)), whi,
                               _mm256_loadu_si256((const __m256i *)(y + 16)));
}

/* The unpacked weights of blocks i and i+1 and their [d, m, d', m'] */
typedef struct {
    __m256i lo0, hi0, lo1, hi1;
    __m128 dm;
} wpair;

static inline __attribute__((always_inline)) wpair load_wpair(const kq_block_q4_1 *a, int64_t i, int two)
{
    wpair p;
    uint32_t d0, d1 = 0;
    memcpy(&d0, &a[i], 4); /* d and m, adjacent fp16 */
    nib16(a[i].qs, &p.lo0, &p.hi0);
    if (two) {
        memcpy(&d1, &a[i + 1], 4);
        nib16(a[i + 1].qs, &p.lo1, &p.hi1);
    } else {
        p.lo1 = p.hi1 = _mm256_setzero_si256();
    }
    p.dm = _mm_cvtph_ps(_mm_set_epi32(0, 0, (int)d1, (int)d0));
    return p;
}

/* One token's step over a block pair: acc lanes 0-7 += s_i * p_i, lanes
 * 8-15 += s_i+1 * p_i+1; ms += [.., m_i sx_i, .., m_i+1 sx_i+1]. For a lone
 * last block (two = 0) the second half's scale and product are 0, so it
 * adds exact zeros. */
static inline __attribute__((always_inline)) void q4_1_pair(const wpair *w, const kq_block_q16_1 *b,
                                                            int two, __m512 *acc, __m128 *ms)
{
    const __m512i bidx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    __m128d xs = _mm_load_sd((const double *)&b[0]); /* dx, sx */
    __m256i p0 = blk_dot(w->lo0, w->hi0, b[0].q), p1 = _mm256_setzero_si256();
    if (two) {
        xs = _mm_loadh_pd(xs, (const double *)&b[1]);
        p1 = blk_dot(w->lo1, w->hi1, b[1].q);
    }
    __m128 s = _mm_mul_ps(w->dm, _mm_castpd_ps(xs));
    __m512i p = _mm512_inserti64x4(_mm512_castsi256_si512(p0), p1, 1);
    __m512 sv = _mm512_permutexvar_ps(bidx, _mm512_castps128_ps512(s));
    *acc = _mm512_fmadd_ps(sv, _mm512_cvtepi32_ps(p), *acc);
    *ms = _mm_add_ps(*ms, s);
}

/* The one final reduction: fold the two halves (even + odd blocks) and the
 * two min lanes, then the AVX2 kernels' q4_1_finish4 order. */
static inline __attribute__((always_inline)) void pair_finish(const __m512 *acc, const __m128 *ms, int NX,
                                                              float *out, int64_t os)
{
    __m256 a[4];
    __m128 m[4];
    for (int r = 0; r < 4; r++) {
        int k = r < NX ? r : 0; /* unused slots: copies, as q4_1_store */
        /* 64x4 extract: the f32x8 one needs AVX512DQ, which we do not check */
        a[r] = _mm256_add_ps(_mm512_castps512_ps256(acc[k]),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[k]), 1)));
        m[r] = _mm_add_ps(ms[k], _mm_movehl_ps(ms[k], ms[k])); /* lane 1: m_even + m_odd */
    }
    float v[4];
    _mm_storeu_ps(v, q4_1_finish4(a[0], a[1], a[2], a[3], m[0], m[1], m[2], m[3]));
    for (int r = 0; r < NX; r++)
        out[r * os] = v[r];
}

static inline __attribute__((always_inline)) void
multi_q4_1(int64_t n, const kq_block_q4_1 *a, const char *x, size_t xs, float *out, int64_t os,
           const int NX)
{
    __m512 acc[4];
    __m128 ms[4];
    for (int r = 0; r < NX; r++) {
        acc[r] = _mm512_setzero_ps();
        ms[r] = _mm_setzero_ps();
    }
    const int64_t nb = n / KQ_QK;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        wpair w = load_wpair(a, i, 1); /* unpacked once, used for NX tokens */
        for (int r = 0; r < NX; r++)
            q4_1_pair(&w, (const kq_block_q16_1 *)(x + (size_t)r * xs) + i, 1, &acc[r], &ms[r]);
    }
    if (i < nb) {
        wpair w = load_wpair(a, i, 0);
        for (int r = 0; r < NX; r++)
            q4_1_pair(&w, (const kq_block_q16_1 *)(x + (size_t)r * xs) + i, 0, &acc[r], &ms[r]);
    }
    pair_finish(acc, ms, NX, out, os);
}

float kq_avx512_q16_dot_q4_1(int64_t n, const void *w, const void *x)
{
    float out;
    multi_q4_1(n, w, x, 0, &out, 1, 1);
    return out;
}

void kq_avx512_q16_dot_multi_q4_1(int64_t n, const void *w, const void *x, size_t xs, int nx,
                                  float *out, int64_t os)
{
    const char *xp = x;
    for (; nx >= 4; nx -= 4, xp += 4 * xs, out += 4 * os)
        multi_q4_1(n, w, xp, xs, out, os, 4);
    switch (nx) {
    case 3: multi_q4_1(n, w, xp, xs, out, os, 3); break;
    case 2: multi_q4_1(n, w, xp, xs, out, os, 2); break;
    case 1: multi_q4_1(n, w, xp, xs, out, os, 1); break;
    default: break;
    }
}

/* 4 weight rows, one token: the same q4_1_pair steps per row */
void kq_avx512_q16_dot4_q4_1(int64_t n, const void *w, size_t ws, const void *x, float *out)
{
    const kq_block_q4_1 *a[4];
    for (int r = 0; r < 4; r++)
        a[r] = (const kq_block_q4_1 *)((const char *)w + (size_t)r * ws);
    const kq_block_q16_1 *b = x;
    __m512 acc[4];
    __m128 ms[4];
    for (int r = 0; r < 4; r++) {
        acc[r] = _mm512_setzero_ps();
        ms[r] = _mm_setzero_ps();
    }
    const int64_t nb = n / KQ_QK;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2)
        for (int r = 0; r < 4; r++) {
            wpair wp = load_wpair(a[r], i, 1);
            q4_1_pair(&wp, b + i, 1, &acc[r], &ms[r]);
        }
    if (i < nb)
        for (int r = 0; r < 4; r++) {
            wpair wp = load_wpair(a[r], i, 0);
            q4_1_pair(&wp, b + i, 0, &acc[r], &ms[r]);
        }
    pair_finish(acc, ms, 4, out, 1);
}
