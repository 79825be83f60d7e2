/* kq AVX512-VBMI kernels: Q4_1 and Q8_0 weights x 16-bit activations (the
 * default model's formats) with 8-bit integer dots on 512-bit vectors (the
 * Q8_0 variant at the end of the file). Compiled with
 * -mavx512f/bw/vl/vnni/vbmi (the kq_vbmi library); quant.c lists them at
 * the KQ_SIMD_AVX512VBMI level, which it reports only when the CPU has all
 * of those.
 *
 * Why: the AVX2/VNNI kernels widen every 4-bit code to int16 and multiply
 * int16 by int16 (vpdpwssd: 16 products per 256-bit instruction), so the
 * decode matvec is bound by instructions, not by memory (~20 GB/s per core
 * with the matrix in cache, docs/PERFORMANCE.md). Here a 16-bit activation
 * y is split into its bytes, y = 256 * hi + lo with hi signed and lo
 * unsigned, and a code w (0..15) fits either byte role of vpdpbusd
 * (unsigned x signed bytes, 64 products per 512-bit instruction):
 *     w . y = 256 * dpbusd(w as unsigned, hi as signed)
 *                 + dpbusd(lo as unsigned, w as signed).
 * Both are exact: per int32 lane 4 products, |256 * 4 * 15 * 128| +
 * 4 * 255 * 15 < 2^21, so a block's lane sums convert to float exactly,
 * and the integer dot of a block is the same number the other kernels
 * compute; only the float summation order differs (results match the
 * AVX2 ones within float rounding, not bitwise).
 *
 * Layout of one step (two consecutive blocks i, i+1): the 2 x 16 bytes of
 * codes become one 512-bit vector of 64 codes
 *     [i: e0..15 | i+1: e0..15 | i: e16..31 | i+1: e16..31]
 * (low nibbles, then high nibbles). The activations' low and high bytes in
 * the same order are picked (vpermt2b) once per matmul call by
 * kq_vbmi_q16_prep_pairs into q16_pair records, not per weight row: picking
 * them inside the kernels cost ~30% of the single-row and multi-token
 * kernels' time (bench/bench_kq_q4_1.c). int32 lanes 0-3 and 8-11 then
 * belong to block i, 4-7 and 12-15 to block i+1,
 * and one conversion and one FMA with [s_i x4 | s_i+1 x4 | s_i x4 |
 * s_i+1 x4] scale both blocks (s = d * dx). The min term m * sx is summed
 * separately, as in every Q4_1 kernel.
 *
 * Consistency contract (quant_impl.h): dot, dot4 and multi run the same
 * steps on the same block pairs (a lone last block pairs with zeros) and
 * end with the same reduction (pair_finish), so a row's result does not
 * depend on which of them computed it. */
#include "quant_avx2_util.h"

/* The activations' byte order of a step: position p of the 64 takes
 * element (p / 32) * 16 + p % 16 of block (p / 16) % 2, i.e. byte
 * 2 * element (+1 for the high byte) of that block's q (the second block
 * is vpermt2b's second table, +64). */
static inline __m512i lo_bytes_index(void)
{
    static const uint8_t idx[64] __attribute__((aligned(64))) = {
#define E(seg, e) (uint8_t)(((seg)&1 ? 64 : 0) + 2 * (((seg) >> 1) * 16 + (e)))
#define ROW(seg)                                                                                   \
    E(seg, 0), E(seg, 1), E(seg, 2), E(seg, 3), E(seg, 4), E(seg, 5), E(seg, 6), E(seg, 7),        \
        E(seg, 8), E(seg, 9), E(seg, 10), E(seg, 11), E(seg, 12), E(seg, 13), E(seg, 14), E(seg, 15)
        ROW(0), ROW(1), ROW(2), ROW(3)
#undef ROW
#undef E
    };
    return _mm512_load_si512(idx);
}

/* Two Q16_1 blocks (i, i+1) in the kernels' layout: the size of the two
 * blocks, so a prepped row of an even block count is the size of the row. A
 * lone last block is paired with zeros. */
typedef struct {
    uint8_t lo[64], hi[64]; /* the 64 values' low / high bytes, step order */
    float xs[4];            /* dx_i, sx_i, dx_i+1, sx_i+1 */
} q16_pair;
_Static_assert(sizeof(q16_pair) == KQ_VBMI_PAIR_BYTES, "quant_impl.h's size of the layout");

void kq_vbmi_q16_prep_pairs(int64_t n, const void *x, void *dst)
{
    const __m512i ilo = lo_bytes_index(), ihi = _mm512_add_epi8(ilo, _mm512_set1_epi8(1));
    const kq_block_q16_1 *b = x;
    q16_pair *p = dst;
    const int64_t nb = n / KQ_QK;
    for (int64_t i = 0; i < nb; i += 2, p++) {
        const int two = i + 1 < nb;
        __m512i q0 = _mm512_loadu_si512(b[i].q);
        __m512i q1 = two ? _mm512_loadu_si512(b[i + 1].q) : _mm512_setzero_si512();
        _mm512_storeu_si512(p->lo, _mm512_permutex2var_epi8(q0, ilo, q1));
        _mm512_storeu_si512(p->hi, _mm512_permutex2var_epi8(q0, ihi, q1));
        p->xs[0] = b[i].d;
        p->xs[1] = b[i].s;
        p->xs[2] = two ? b[i + 1].d : 0.0f;
        p->xs[3] = two ? b[i + 1].s : 0.0f;
    }
}

/* The activation side of one step */
typedef struct {
    __m512i lo, hi;
    __m128 xs;
} ypair;

static inline __attribute__((always_inline)) ypair load_ypair(const q16_pair *p)
{
    return (ypair){_mm512_loadu_si512(p->lo), _mm512_loadu_si512(p->hi), _mm_loadu_ps(p->xs)};
}

/* The codes of blocks i, i+1 in the step's order, and [d, m, d', m']. */
typedef struct {
    __m512i q;
    __m128 dm;
} wpair;

static inline __attribute__((always_inline)) wpair load_wpair(const kq_block_q4_1 *a, int two)
{
    wpair w;
    uint32_t d0, d1 = 0;
    memcpy(&d0, &a[0], 4); /* d and m, adjacent fp16 */
    __m128i c0 = _mm_loadu_si128((const __m128i *)a[0].qs), c1 = _mm_setzero_si128();
    if (two) {
        memcpy(&d1, &a[1], 4);
        c1 = _mm_loadu_si128((const __m128i *)a[1].qs);
    }
    __m256i c = _mm256_inserti128_si256(_mm256_castsi128_si256(c0), c1, 1);
    __m256i m = _mm256_set1_epi8(0x0F);
    __m256i lo = _mm256_and_si256(c, m), hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), m);
    w.q = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    w.dm = _mm_cvtph_ps(_mm_set_epi32(0, 0, (int)d1, (int)d0));
    return w;
}

/* One (row, token) step over a block pair: acc += s . p (lanes as in the
 * header), ms += [d dx, m sx, d' dx', m' sx']. A lone last block has zero
 * codes, activations and scales in its half: it adds exact zeros. */
static inline __attribute__((always_inline)) void step(const wpair *w, const ypair *y, __m512 *acc,
                                                       __m128 *ms)
{
    const __m512i bidx = _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2);
    __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w->q, y->hi);
    p = _mm512_dpbusd_epi32(_mm512_slli_epi32(p, 8), y->lo, w->q);
    __m128 s = _mm_mul_ps(w->dm, y->xs);
    __m512 sv = _mm512_permutexvar_ps(bidx, _mm512_castps128_ps512(s));
    *acc = _mm512_fmadd_ps(sv, _mm512_cvtepi32_ps(p), *acc);
    *ms = _mm_add_ps(*ms, s);
}

/* The one final reduction: fold the two 256-bit halves and the two min
 * lanes, then the AVX2 kernels' q4_1_finish4 order. Unused slots are
 * copies (as q4_1_store). */
static inline __attribute__((always_inline)) void pair_finish4(const __m512 *acc, const __m128 *ms, int NX,
                                                               float *out, int64_t os)
{
    __m256 a[4];
    __m128 m[4];
    for (int r = 0; r < 4; r++) {
        int k = r < NX ? r : 0;
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

/* pair_finish4 per group of 4 of NX (1..8) rows or tokens: each result's
 * reduction is the same whatever the group (the consistency contract). */
static inline __attribute__((always_inline)) void pair_finish(const __m512 *acc, const __m128 *ms, int NX,
                                                              float *out, int64_t os)
{
    for (int g = 0; g < NX; g += 4)
        pair_finish4(acc + g, ms + g, NX - g < 4 ? NX - g : 4, out + g * os, os);
}

/* Zeroed accumulators of n rows or tokens */
static inline __attribute__((always_inline)) void zero_acc(__m512 *acc, __m128 *ms, int n)
{
    for (int r = 0; r < n; r++) {
        acc[r] = _mm512_setzero_ps();
        ms[r] = _mm_setzero_ps();
    }
}

/* The walk every kernel here makes over a row of nb blocks: PAIR(i, 1) for
 * the full pairs, then PAIR(i, 0) for a lone last block (`two` a literal,
 * so each call site is specialized). */
#define FOR_BLOCK_PAIRS(nb, PAIR)                                                                  \
    do {                                                                                           \
        int64_t i_ = 0;                                                                            \
        for (; i_ + 2 <= (nb); i_ += 2)                                                            \
            PAIR(i_, 1);                                                                           \
        if (i_ < (nb))                                                                             \
            PAIR(i_, 0);                                                                           \
    } while (0)

/* One block pair (blocks i, i+1 of the row at a) for NX tokens: the codes
 * unpacked once. `two` is a literal at both call sites. */
static inline __attribute__((always_inline)) void multi_pair(const kq_block_q4_1 *a, const char *x,
                                                             size_t xs, int64_t i, int two,
                                                             __m512 *acc, __m128 *ms, const int NX)
{
    wpair w = load_wpair(a, two);
    for (int r = 0; r < NX; r++) {
        ypair y = load_ypair((const q16_pair *)(x + (size_t)r * xs) + i / 2);
        step(&w, &y, &acc[r], &ms[r]);
    }
}

/* NX (1..8) tokens, one weight row */
static inline __attribute__((always_inline)) void
multi_q4_1(int64_t n, const kq_block_q4_1 *a, const char *x, size_t xs, float *out, int64_t os,
           const int NX)
{
    __m512 acc[8];
    __m128 ms[8];
    zero_acc(acc, ms, NX);
#define PAIR(i, two) multi_pair(a + (i), x, xs, (i), (two), acc, ms, NX)
    FOR_BLOCK_PAIRS(n / KQ_QK, PAIR);
#undef PAIR
    pair_finish(acc, ms, NX, out, os);
}

float kq_vbmi_q16_dot_q4_1(int64_t n, const void *w, const void *x)
{
    float out;
    multi_q4_1(n, w, x, 0, &out, 1, 1);
    return out;
}

/* Tokens in groups of 8: a weight block pair unpacked once per 8 (4 before:
 * bench_kq_q4_1 multi x8 120 -> 96 us, bit-identical results,
 * docs/PERFORMANCE.md). */
KQ_DEFINE_DOT_MULTI_BY(kq_vbmi_q16_dot_multi_q4_1, multi_q4_1, 1)

/* Block pair i, i+1 of 4 rows, one token (`two` a literal at both calls) */
static inline __attribute__((always_inline)) void rows4_pair(const kq_block_q4_1 *const *a,
                                                             const q16_pair *b, int64_t i, int two,
                                                             __m512 *acc, __m128 *ms)
{
    ypair y = load_ypair(b + i / 2);
    for (int r = 0; r < 4; r++) {
        wpair wp = load_wpair(a[r] + i, two);
        step(&wp, &y, &acc[r], &ms[r]);
    }
}

/* 4 weight rows, one token (decode): the activation bytes of a block pair
 * are picked once for the 4 rows */
void kq_vbmi_q16_dot4_q4_1(int64_t n, const void *w, size_t ws, const void *x, float *out)
{
    const kq_block_q4_1 *a[4];
    for (int r = 0; r < 4; r++)
        a[r] = (const kq_block_q4_1 *)((const char *)w + (size_t)r * ws);
    const q16_pair *b = x;
    __m512 acc[4];
    __m128 ms[4];
    zero_acc(acc, ms, 4);
#define PAIR(i, two) rows4_pair(a, b, (i), (two), acc, ms)
    FOR_BLOCK_PAIRS(n / KQ_QK, PAIR);
#undef PAIR
    pair_finish(acc, ms, 4, out, 1);
}

/* ---- Q8_0 weights x 16-bit activations ----------------------------------------
 * The same byte split, with signed codes w (-127..127) on both sides of it:
 * the low bytes pair as dpbusd(lo unsigned, w signed); for the high bytes
 * (signed) the codes are made unsigned, w + 128, and the surplus
 * 128 * sum(hi) of each int32 lane is the accumulator's starting value
 * (prepped with the activations, q16_pair8.corr):
 *     w . y = 256 * (dpbusd(w + 128, hi) - 128 * sum hi) + dpbusd(lo, w),
 * exact per lane (|w . y| <= 4 * 127 * 32767 < 2^24, the intermediate
 * 256 * 4 * 255 * 128 < 2^31). A step is two blocks in element order:
 * int32 lanes 0-7 are block i, 8-15 block i+1. */

/* Two Q16_1 blocks for the Q8_0 kernels */
typedef struct {
    uint8_t lo[64], hi[64]; /* low / high bytes, element order, block i then i+1 */
    int32_t corr[16];       /* -128 * the sum of each lane's 4 high bytes */
    float xs[4];            /* dx_i, unused, dx_i+1, unused */
} q16_pair8;
_Static_assert(sizeof(q16_pair8) == KQ_VBMI_PAIR8_BYTES, "quant_impl.h's size of the layout");

void kq_vbmi_q16_prep_pairs8(int64_t n, const void *x, void *dst)
{
    static const uint8_t idx[64] __attribute__((aligned(64))) = {
#define B8(o) (o), (o) + 2, (o) + 4, (o) + 6, (o) + 8, (o) + 10, (o) + 12, (o) + 14
        B8(0), B8(16), B8(32), B8(48), B8(64), B8(80), B8(96), B8(112)
#undef B8
    };
    const __m512i ilo = _mm512_load_si512(idx), ihi = _mm512_add_epi8(ilo, _mm512_set1_epi8(1));
    const __m512i ones = _mm512_set1_epi8(1);
    const kq_block_q16_1 *b = x;
    q16_pair8 *p = dst;
    const int64_t nb = n / KQ_QK;
    for (int64_t i = 0; i < nb; i += 2, p++) {
        const int two = i + 1 < nb;
        __m512i q0 = _mm512_loadu_si512(b[i].q);
        __m512i q1 = two ? _mm512_loadu_si512(b[i + 1].q) : _mm512_setzero_si512();
        __m512i hi = _mm512_permutex2var_epi8(q0, ihi, q1);
        _mm512_storeu_si512(p->lo, _mm512_permutex2var_epi8(q0, ilo, q1));
        _mm512_storeu_si512(p->hi, hi);
        __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, hi);
        _mm512_storeu_si512(p->corr, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 7)));
        p->xs[0] = b[i].d;
        p->xs[1] = 0.0f;
        p->xs[2] = two ? b[i + 1].d : 0.0f;
        p->xs[3] = 0.0f;
    }
}

/* The codes of blocks i, i+1 (signed and +128), and [d, 0, d', 0] */
typedef struct {
    __m512i q, qu;
    __m128 d;
} wpair8;

static inline __attribute__((always_inline)) wpair8 load_wpair8(const kq_block_q8_0 *a, int two)
{
    wpair8 w;
    __m256i c0 = _mm256_loadu_si256((const __m256i *)a[0].qs);
    __m256i c1 = two ? _mm256_loadu_si256((const __m256i *)a[1].qs) : _mm256_setzero_si256();
    w.q = _mm512_inserti64x4(_mm512_castsi256_si512(c0), c1, 1);
    w.qu = _mm512_xor_si512(w.q, _mm512_set1_epi8((char)0x80));
    w.d = _mm_cvtph_ps(_mm_set_epi32(0, 0, two ? (int)a[1].d : 0, (int)a[0].d)); /* d, 0, d', 0 */
    return w;
}

/* One (row, token) step over a block pair of Q8_0: acc += s . p. A lone last
 * block's half has zero activations, correction and scale: it adds zeros
 * (its codes are zero too: w + 128 = 128 meets hi = 0). */
static inline __attribute__((always_inline)) void step8(const wpair8 *w, const q16_pair8 *y, __m512 *acc)
{
    const __m512i bidx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    __m512i p = _mm512_dpbusd_epi32(_mm512_loadu_si512(y->corr), w->qu, _mm512_loadu_si512(y->hi));
    p = _mm512_dpbusd_epi32(_mm512_slli_epi32(p, 8), _mm512_loadu_si512(y->lo), w->q);
    __m128 s = _mm_mul_ps(w->d, _mm_loadu_ps(y->xs));
    __m512 sv = _mm512_permutexvar_ps(bidx, _mm512_castps128_ps512(s));
    *acc = _mm512_fmadd_ps(sv, _mm512_cvtepi32_ps(p), *acc);
}

static inline __attribute__((always_inline)) void multi_pair8(const kq_block_q8_0 *a, const char *x,
                                                              size_t xs, int64_t i, int two,
                                                              __m512 *acc, const int NX)
{
    wpair8 w = load_wpair8(a, two);
    for (int r = 0; r < NX; r++)
        step8(&w, (const q16_pair8 *)(x + (size_t)r * xs) + i / 2, &acc[r]);
}

/* NX (1..8) tokens, one weight row; ends with pair_finish (no min term) */
static inline __attribute__((always_inline)) void
multi_q8_0(int64_t n, const kq_block_q8_0 *a, const char *x, size_t xs, float *out, int64_t os,
           const int NX)
{
    __m512 acc[8];
    __m128 ms[8]; /* stays zero: Q8_0 has no min term */
    zero_acc(acc, ms, NX);
#define PAIR(i, two) multi_pair8(a + (i), x, xs, (i), (two), acc, NX)
    FOR_BLOCK_PAIRS(n / KQ_QK, PAIR);
#undef PAIR
    pair_finish(acc, ms, NX, out, os);
}

float kq_vbmi_q16_dot_q8_0(int64_t n, const void *w, const void *x)
{
    float out;
    multi_q8_0(n, w, x, 0, &out, 1, 1);
    return out;
}

KQ_DEFINE_DOT_MULTI_BY(kq_vbmi_q16_dot_multi_q8_0, multi_q8_0, 1)
