/* kq AVX2 kernels for 16-bit activations (KQ_Q16_1 / KQ_Q16_K): compiled
 * with -mavx2 -mfma -mf16c (kernels/meson.build) and only called after
 * quant.c's run-time CPU check.
 *
 * kernels/meson.build compiles this file a second time with KQ_VNNI defined
 * (AVX512-VNNI/VL flags, names kq_vnni_*): dot32 then uses vpdpwssd, which
 * adds the second int16 pair product into the first's int32 lanes in one
 * instruction. The lane sums are the same integers, so both builds give
 * bit-identical results; only the instruction count differs.
 *
 * Weights are widened to int16 and multiplied with the int16 activations by
 * vpmaddwd (_mm256_madd_epi16: int16 x int16 pairs summed into int32). The
 * only pair that overflows vpmaddwd is (-32768)^2 * 2, impossible since
 * |q_x| <= 32767. Per-block int32 bounds are in quant_q16.c; the per-lane
 * bounds of the K-quant kernels are noted at each. Per block the int32 lanes
 * are converted to float and multiply-added with the block scales. */
#include "quant_avx2_util.h"

#ifdef KQ_VNNI
#define KQ_FN(name) kq_vnni_##name
#else
#define KQ_FN(name) kq_avx2_##name
#endif

/* 16 nibbles -> elements 0..15 (low nibbles) and 16..31 (high) as int16 */
static inline void nibbles16(const uint8_t *qs, __m256i *lo, __m256i *hi)
{
    /* the 16 bytes in both lanes (a load), byte j to int16 slot j in-lane (low
     * lane bytes 0..7, high lane 8..15; the zero byte above each from a
     * shuffle index with the top bit set): one in-lane shuffle instead of two
     * cross-lane widenings */
    const __m256i spread = _mm256_setr_epi8(0, -1, 1, -1, 2, -1, 3, -1, 4, -1, 5, -1, 6, -1, 7, -1,
                                            8, -1, 9, -1, 10, -1, 11, -1, 12, -1, 13, -1, 14, -1, 15, -1);
    const __m256i m = _mm256_set1_epi16(0x0F);
    __m256i v = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs)), spread);
    *lo = _mm256_and_si256(v, m);
    *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m);
}

/* int32 lanes of sum(w[j] * y[j]) over a 32-value block (w, y int16) */
static inline __m256i dot32(__m256i wlo, __m256i whi, const int16_t *y)
{
#ifdef KQ_VNNI
    /* madd for the first half, not dpwssd on zero: the two multiplies then
     * run in parallel instead of as a dependent chain */
    return _mm256_dpwssd_epi32(_mm256_madd_epi16(wlo, _mm256_loadu_si256((const __m256i *)y)), whi,
                               _mm256_loadu_si256((const __m256i *)(y + 16)));
#else
    return _mm256_add_epi32(_mm256_madd_epi16(wlo, _mm256_loadu_si256((const __m256i *)y)),
                            _mm256_madd_epi16(whi, _mm256_loadu_si256((const __m256i *)(y + 16))));
#endif
}

/* ---- Q4_1 and Q8_0: the families of quant_avx2_tmpl.h -------------------------- */

static inline __attribute__((always_inline)) kq_w2 q4_1_weights(const kq_block_q4_1 *a)
{
    kq_w2 w;
    nibbles16(a->qs, &w.a, &w.b);
    return w;
}

static inline __attribute__((always_inline)) __m256i q4_1_idot(kq_w2 w, const kq_block_q16_1 *b)
{
    return dot32(w.a, w.b, b->q);
}

/* Q8_0 (the output projection of SmolLM2's tied embedding): widened once */
static inline __attribute__((always_inline)) kq_w2 q8_0_weights(const kq_block_q8_0 *a)
{
    /* byte j into the high byte of int16 slot j in-lane (as nibbles16), then
     * an arithmetic shift sign-extends: in-lane work instead of two
     * cross-lane widenings */
    const __m256i hi8 = _mm256_setr_epi8(-1, 0, -1, 1, -1, 2, -1, 3, -1, 4, -1, 5, -1, 6, -1, 7,
                                         -1, 8, -1, 9, -1, 10, -1, 11, -1, 12, -1, 13, -1, 14, -1, 15);
    __m256i b0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)a->qs));
    __m256i b1 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(a->qs + 16)));
    kq_w2 w = {_mm256_srai_epi16(_mm256_shuffle_epi8(b0, hi8), 8),
               _mm256_srai_epi16(_mm256_shuffle_epi8(b1, hi8), 8)};
    return w;
}

static inline __attribute__((always_inline)) __m256i q8_0_idot(kq_w2 w, const kq_block_q16_1 *b)
{
    return dot32(w.a, w.b, b->q);
}

#define KQT_FN(name) KQ_FN(q16_##name)
#define KQT_X1 kq_block_q16_1
#define KQT_X0 kq_block_q16_1
#define KQT_X0_D(b) (b)->d
#include "quant_avx2_tmpl.h"

/* ---- the other 32-wide types -------------------------------------------------
 * Their multi-token form is one call of these per token (quant.c), so
 * they may use two accumulator chains (even/odd blocks) for latency. */

/* One block of a _0 weight (unsigned codes wlo/whi, offset off, fp16 scale
 * dw) into the even/odd chain i & 1 (Q4_0, Q5_0). */
static inline __attribute__((always_inline)) void x0_block(__m256 acc[2], int64_t i, __m256i wlo,
                                                           __m256i whi, __m256i off, uint16_t dw,
                                                           const kq_block_q16_1 *b)
{
    __m256i p = dot32(_mm256_sub_epi16(wlo, off), _mm256_sub_epi16(whi, off), b->q);
    __m256 d = _mm256_set1_ps(h2f(dw) * b->d);
    acc[i & 1] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[i & 1]);
}

float KQ_FN(q16_dot_q4_0)(int64_t n, const void *w, const void *x)
{
    const kq_block_q4_0 *a = w;
    const kq_block_q16_1 *b = x;
    const __m256i eight = _mm256_set1_epi16(8);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        __m256i wlo, whi;
        nibbles16(a[i].qs, &wlo, &whi);
        x0_block(acc, i, wlo, whi, eight, a[i].d, &b[i]);
    }
    return hsum_ps(_mm256_add_ps(acc[0], acc[1]));
}

/* 32 5-bit codes of a Q5 block as int16: nibbles | (bit j of qh) << 4 */
static inline void q5_codes16(const uint8_t *qs, const uint8_t *qhp, __m256i *lo, __m256i *hi)
{
    uint32_t qh;
    memcpy(&qh, qhp, 4);
    /* byte j (element j) of the 256-bit vector gets qh byte j/8, then keeps
     * bit j%8 of it: shuffle within lanes (low lane: qh bytes 0,1; high
     * lane: 2,3), test against the bit pattern 1,2,4,..,128 */
    const __m256i idx = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2,
                                         2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), idx);
    __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(v, bits), bits);
    __m256i q = _mm256_or_si256(unpack_nibbles(qs), _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
    *lo = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(q));
    *hi = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(q, 1));
}

float KQ_FN(q16_dot_q5_0)(int64_t n, const void *w, const void *x)
{
    const kq_block_q5_0 *a = w;
    const kq_block_q16_1 *b = x;
    const __m256i sixteen = _mm256_set1_epi16(16);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        __m256i wlo, whi;
        q5_codes16(a[i].qs, a[i].qh, &wlo, &whi);
        x0_block(acc, i, wlo, whi, sixteen, a[i].d, &b[i]);
    }
    return hsum_ps(_mm256_add_ps(acc[0], acc[1]));
}

float KQ_FN(q16_dot_q5_1)(int64_t n, const void *w, const void *x)
{
    const kq_block_q5_1 *a = w;
    const kq_block_q16_1 *b = x;
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    float msum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        __m256i wlo, whi;
        q5_codes16(a[i].qs, a[i].qh, &wlo, &whi);
        __m256 d = _mm256_set1_ps(h2f(a[i].d) * b[i].d);
        acc[i & 1] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot32(wlo, whi, b[i].q)), acc[i & 1]);
        msum += h2f(a[i].m) * b[i].s;
    }
    return hsum_ps(_mm256_add_ps(acc[0], acc[1])) + msum;
}

/* ---- K-quants ------------------------------------------------------------------ */

float KQ_FN(q16_dot_q4_K)(int64_t n, const void *w, const void *x)
{
    const kq_block_q4_K *a = w;
    const kq_block_q16_K *b = x;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QKK; i++) {
        uint8_t sc[8], mn[8];
        kq_q4k_scales_mins(a[i].scales, sc, mn);
        /* The sub-block scale (<= 63) is multiplied into the int16 codes
         * (<= 15 * 63 = 945). Each int32 lane then gets 4 products per
         * sub-block, <= 4 * 945 * 32767 = 123.9e6, and 8 sub-blocks make
         * <= 990.9e6 < 2^31: the super-block sums exactly in int32 lanes.
         * (Their total can exceed 2^31, so the lanes are summed in float.) */
        __m256i sumi = _mm256_setzero_si256();
        const int16_t *y = b[i].q;
        for (int c = 0; c < 4; c++, y += 64) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(a[i].qs + 32 * c));
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            __m256i s0 = _mm256_set1_epi16(sc[2 * c]), s1 = _mm256_set1_epi16(sc[2 * c + 1]);
            __m256i w0 = _mm256_mullo_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(lo)), s0);
            __m256i w1 = _mm256_mullo_epi16(_mm256_cvtepu8_epi16(_mm256_extracti128_si256(lo, 1)), s0);
            __m256i w2 = _mm256_mullo_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(hi)), s1);
            __m256i w3 = _mm256_mullo_epi16(_mm256_cvtepu8_epi16(_mm256_extracti128_si256(hi, 1)), s1);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(dot32(w0, w1, y), dot32(w2, w3, y + 32)));
        }
        /* min terms: 63 * 32 * 32767 * 8 = 528e6 < 2^31 */
        int32_t summ = 0;
        for (int j = 0; j < 8; j++)
            summ += mn[j] * b[i].bsums[j];
        float si = hsum_ps(_mm256_cvtepi32_ps(sumi));
        sum += b[i].d * (h2f(a[i].d) * si - h2f(a[i].dmin) * (float)summ);
    }
    return sum;
}

float KQ_FN(q16_dot_q6_K)(int64_t n, const void *w, const void *x)
{
    const kq_block_q6_K *a = w;
    const kq_block_q16_K *b = x;
    const __m256i off = _mm256_set1_epi16(32);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QKK; i++) {
        __m256 fsum = _mm256_setzero_ps();
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = a[i].ql + 64 * h;
            const int8_t *sc = a[i].scales + 8 * h;
            const int16_t *y = b[i].q + 128 * h;
            __m256i q[4]; /* the four 32-value groups of this half */
            q6k_groups(ql, a[i].qh + 32 * h, q);
            /* (q - 32) * scale fits int16 (|.| <= 32 * 128 = 4096); a lane
             * gets 4 products per 32-value group, <= 4 * 4096 * 32767 =
             * 536.8e6, so two groups (1.07e9 < 2^31) are summed in int32
             * before the conversion to float */
            for (int g = 0; g < 4; g += 2) {
                __m256i p = _mm256_setzero_si256();
                for (int k = g; k < g + 2; k++) {
                    __m256i wlo = _mm256_mullo_epi16(
                        _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(q[k])), off),
                        _mm256_set1_epi16(sc[2 * k]));
                    __m256i whi = _mm256_mullo_epi16(
                        _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm256_extracti128_si256(q[k], 1)), off),
                        _mm256_set1_epi16(sc[2 * k + 1]));
                    p = _mm256_add_epi32(p, dot32(wlo, whi, y + 32 * k));
                }
                fsum = _mm256_add_ps(fsum, _mm256_cvtepi32_ps(p));
            }
        }
        sum += h2f(a[i].d) * b[i].d * hsum_ps(fsum);
    }
    return sum;
}

#ifndef KQ_VNNI /* the quantizers have no dot products: one copy (AVX2) serves both */
/* ---- quantizers --------------------------------------------------------------
 * The scalar recipe (quant_q16.c): d = amax/32767, q = nearest-even(x*(1/d));
 * vcvtps2dq rounds to nearest even, so both give the same bytes. */

/* 16 floats times id -> 16 int16 in order (the saturating pack never
 * saturates: |x * id| <= 32767.5) */
static inline __m256i quant16(const float *x, __m256 id)
{
    __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), id));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id));
    /* packs works per 128-bit lane: [i0 0-3, i1 0-3 | i0 4-7, i1 4-7];
     * the 64-bit permute restores element order */
    return _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), 0xD8);
}

/* sum of the 32 int16 in a and b */
static inline int32_t sum32_i16(__m256i a, __m256i b)
{
    const __m256i one = _mm256_set1_epi16(1);
    return hsum_epi32(_mm256_add_epi32(_mm256_madd_epi16(a, one), _mm256_madd_epi16(b, one)));
}

void KQ_FN(q16_quantize_1)(const float *src, void *dst, int64_t n)
{
    kq_block_q16_1 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++, src += KQ_QK) {
        float d = amax_n(src, KQ_QK) / 32767.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i q0 = quant16(src, vid), q1 = quant16(src + 16, vid);
        _mm256_storeu_si256((__m256i *)b[i].q, q0);
        _mm256_storeu_si256((__m256i *)(b[i].q + 16), q1);
        b[i].d = d;
        b[i].s = d * (float)sum32_i16(q0, q1);
    }
}

void KQ_FN(q16_quantize_K)(const float *src, void *dst, int64_t n)
{
    kq_block_q16_K *b = dst;
    for (int64_t i = 0; i < n / KQ_QKK; i++, src += KQ_QKK) {
        float d = amax_n(src, KQ_QKK) / 32767.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        b[i].d = d;
        for (int g = 0; g < 8; g++) {
            __m256i q0 = quant16(src + 32 * g, vid), q1 = quant16(src + 32 * g + 16, vid);
            _mm256_storeu_si256((__m256i *)(b[i].q + 32 * g), q0);
            _mm256_storeu_si256((__m256i *)(b[i].q + 32 * g + 16), q1);
            b[i].bsums[g] = sum32_i16(q0, q1);
        }
    }
}
#endif
