/* kq AVX2 kernels: compiled with -mavx2 -mfma -mf16c (kernels/meson.build)
 * and only called after quant.c's run-time CPU check.
 *
 * The integer dot products use the usual unsigned x signed byte multiply
 * (vpmaddubsw): weights that are unsigned nibbles go in directly; signed
 * weights are made unsigned with their own sign moved onto the activation
 * (|w| * sign(x, w)). Pair sums are at most 2*128*127 < 32767 so the
 * saturating 16-bit step never saturates. Per block the int32 sum is
 * converted to float and multiply-added with the block scales, which is the
 * arithmetic the scalar path does (only the summation order differs).
 *
 * kernels/meson.build compiles this file again with KQ_VNNI defined (names
 * kq_vnni_*): dot_us8 is then one vpdpbusd (u8 x s8, 4 products summed into
 * each int32 lane), the same lane integers as maddubs + madd(1), so the
 * results are bit-identical to the AVX2 build. */
#include "quant_avx2_util.h"

#ifdef KQ_VNNI
#define KQ_FN(name) kq_vnni_##name
#else
#define KQ_FN(name) kq_avx2_##name
#endif

/* sum of u[i]*s[i] over 32 bytes (u unsigned, s signed) as 8 int32 lanes */
static inline __m256i dot_us8(__m256i u, __m256i s)
{
#ifdef KQ_VNNI
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

/* ---- Q4_1 and Q8_0: the families of quant_avx2_tmpl.h -------------------------- */

/* Q4_1: the unsigned nibbles go in directly */
static inline __attribute__((always_inline)) kq_w2 q4_1_weights(const kq_block_q4_1 *a)
{
    kq_w2 w = {unpack_nibbles(a->qs), _mm256_setzero_si256()};
    return w;
}

static inline __attribute__((always_inline)) __m256i q4_1_idot(kq_w2 w, const kq_block_q8_1 *b)
{
    return dot_us8(w.a, _mm256_loadu_si256((const __m256i *)b->qs));
}

/* Q8_0: signed x signed as |w| x sign(y, w); a = w, b = |w| */
static inline __attribute__((always_inline)) kq_w2 q8_0_weights(const kq_block_q8_0 *a)
{
    __m256i q = _mm256_loadu_si256((const __m256i *)a->qs);
    kq_w2 w = {q, _mm256_sign_epi8(q, q)};
    return w;
}

static inline __attribute__((always_inline)) __m256i q8_0_idot(kq_w2 w, const kq_block_q8_0 *b)
{
    return dot_us8(w.b, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)b->qs), w.a));
}

#define KQT_FN(name) KQ_FN(name)
#define KQT_X1 kq_block_q8_1
#define KQT_X0 kq_block_q8_0
#define KQT_X0_D(b) h2f((b)->d)
#include "quant_avx2_tmpl.h"

/* ---- Q4_0 ------------------------------------------------------------------------ */

static inline __attribute__((always_inline)) void
multi_q4_0(int64_t n, const kq_block_q4_0 *a, const char *x, size_t xs, float *out, int64_t os,
           const int NX)
{
    __m256 acc[4];
    for (int r = 0; r < NX; r++)
        acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        __m256i q = _mm256_sub_epi8(unpack_nibbles(a[i].qs), _mm256_set1_epi8(8));
        __m256i qa = _mm256_sign_epi8(q, q);
        float dw = h2f(a[i].d);
        for (int r = 0; r < NX; r++) {
            const kq_block_q8_0 *b = (const kq_block_q8_0 *)(x + (size_t)r * xs) + i;
            __m256i y = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)b->qs), q);
            __m256 d = _mm256_set1_ps(dw * h2f(b->d));
            acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_us8(qa, y)), acc[r]);
        }
    }
    for (int r = 0; r < NX; r++)
        out[r * os] = hsum_ps(acc[r]);
}

/* one chain per row, like multi_q4_0 with NX = 1: bit-identical to it */
float KQ_FN(dot_q4_0)(int64_t n, const void *w, const void *x)
{
    float out;
    multi_q4_0(n, w, x, 0, &out, 1, 1);
    return out;
}

KQ_DEFINE_DOT_MULTI(KQ_FN(dot_multi_q4_0), multi_q4_0)

float KQ_FN(dot_q4_K)(int64_t n, const void *w, const void *x)
{
    const kq_block_q4_K *a = w;
    const kq_block_q8_K *b = x;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QKK; i++) {
        uint8_t sc[8], mn[8];
        kq_q4k_scales_mins(a[i].scales, sc, mn);
        /* |q*y| sums per sub-block <= 15*127*32; times a 6-bit scale and 8
         * sub-blocks this stays far below 2^31 */
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(a[i].qs + 32 * c));
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            __m256i y0 = _mm256_loadu_si256((const __m256i *)(b[i].qs + 64 * c));
            __m256i y1 = _mm256_loadu_si256((const __m256i *)(b[i].qs + 64 * c + 32));
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), _mm256_set1_epi16(sc[2 * c]));
            __m256i p1 =
                _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), _mm256_set1_epi16(sc[2 * c + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        int32_t summ = 0;
        for (int j = 0; j < 8; j++)
            summ += mn[j] * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
        sum += b[i].d * (h2f(a[i].d) * (float)hsum_epi32(sumi) - h2f(a[i].dmin) * (float)summ);
    }
    return sum;
}

float KQ_FN(dot_q6_K)(int64_t n, const void *w, const void *x)
{
    const kq_block_q6_K *a = w;
    const kq_block_q8_K *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QKK; i++) {
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = a[i].ql + 64 * h;
            const int8_t *sc = a[i].scales + 8 * h, *y = b[i].qs + 128 * h;
            __m256i q[4]; /* the four 32-value groups of this half */
            q6k_groups(ql, a[i].qh + 32 * h, q);
            for (int g = 0; g < 4; g++) {
                __m256i yy = _mm256_loadu_si256((const __m256i *)(y + 32 * g));
                /* int16 lanes 0..7 come from values 0..15 (scale 2g), 8..15
                 * from values 16..31 (scale 2g+1) */
                __m256i s = _mm256_set_m128i(_mm_set1_epi16(sc[2 * g + 1]), _mm_set1_epi16(sc[2 * g]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q[g], yy), s));
            }
        }
        /* fold the -32 offset in with the activation group sums */
        int32_t off = 0;
        for (int g = 0; g < 16; g++)
            off += a[i].scales[g] * b[i].bsums[g];
        sum += h2f(a[i].d) * b[i].d * (float)(hsum_epi32(sumi) - 32 * off);
    }
    return sum;
}

#ifndef KQ_VNNI /* float dots and quantizers have no integer dot: one (AVX2) copy */
float KQ_FN(dot_f16)(int64_t n, const void *w, const void *x)
{
    const uint16_t *a = w;
    const float *b = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8)));
        acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(b + i + 8), acc1);
    }
    float sum = hsum_ps(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++)
        sum += h2f(a[i]) * b[i];
    return sum;
}

float KQ_FN(dot_f32)(int64_t n, const void *w, const void *x)
{
    const float *a = w, *b = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    float sum = hsum_ps(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}

/* ---- activation quantizers ------------------------------------------------
 * Same recipe as the scalar ones (d = amax/127, q = nearest-even(x * (1/d)))
 * so both produce identical bytes. */

/* Quantizes 32 floats with inverse scale id into 32 int8 (in order). */
static inline __m256i quant32(const float *x, __m256 id)
{
    __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), id));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), id));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), id));
    /* packs work per 128-bit lane; the permute restores element order */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* sum of 32 int8 */
static inline int sum_i8(__m256i q)
{
    __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q);
    return hsum_epi32(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
}

void KQ_FN(quantize_q8_0)(const float *src, void *dst, int64_t n)
{
    kq_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++, src += KQ_QK) {
        float d = amax_n(src, KQ_QK) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = kq_fp32_to_fp16(d);
        _mm256_storeu_si256((__m256i *)b[i].qs, quant32(src, _mm256_set1_ps(id)));
    }
}

void KQ_FN(quantize_q8_1)(const float *src, void *dst, int64_t n)
{
    kq_block_q8_1 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++, src += KQ_QK) {
        float d = amax_n(src, KQ_QK) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        __m256i q = quant32(src, _mm256_set1_ps(id));
        _mm256_storeu_si256((__m256i *)b[i].qs, q);
        b[i].d = d;
        b[i].s = d * (float)sum_i8(q);
    }
}

void KQ_FN(quantize_q8_K)(const float *src, void *dst, int64_t n)
{
    kq_block_q8_K *b = dst;
    for (int64_t i = 0; i < n / KQ_QKK; i++, src += KQ_QKK) {
        float d = amax_n(src, KQ_QKK) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        b[i].d = d;
        for (int c = 0; c < 8; c++) {
            __m256i q = quant32(src + 32 * c, vid);
            _mm256_storeu_si256((__m256i *)(b[i].qs + 32 * c), q);
            /* two 16-value group sums: int16 pair sums, then per-lane totals */
            __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q),
                                            _mm256_set1_epi16(1));
            __m128i lo = _mm256_castsi256_si128(s32), hi = _mm256_extracti128_si256(s32, 1);
            lo = _mm_add_epi32(lo, _mm_shuffle_epi32(lo, _MM_SHUFFLE(1, 0, 3, 2)));
            lo = _mm_add_epi32(lo, _mm_shuffle_epi32(lo, _MM_SHUFFLE(2, 3, 0, 1)));
            hi = _mm_add_epi32(hi, _mm_shuffle_epi32(hi, _MM_SHUFFLE(1, 0, 3, 2)));
            hi = _mm_add_epi32(hi, _mm_shuffle_epi32(hi, _MM_SHUFFLE(2, 3, 0, 1)));
            b[i].bsums[2 * c] = (int16_t)_mm_cvtsi128_si32(lo);
            b[i].bsums[2 * c + 1] = (int16_t)_mm_cvtsi128_si32(hi);
        }
    }
}
#endif
