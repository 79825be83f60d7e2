/* The Q4_1 and Q8_0 kernel families of quant_avx2.c (8-bit activations) and
 * quant_avx2_q16.c (16-bit), written once. A template: each file includes it
 * after defining
 *   KQT_FN(name)   the exported name of kernel `name`
 *   KQT_X1         the activation block of Q4_1 (Q8_1 / Q16_1: f32 d, s first)
 *   KQT_X0         the activation block of Q8_0 (Q8_0 / Q16_1)
 *   KQT_X0_D(b)    the scale of a KQT_X0 block *b as float
 * and the static inline hooks (the only part where the element width shows)
 *   kq_w2   q4_1_weights(const kq_block_q4_1 *a)    weight block, unpacked
 *   __m256i q4_1_idot(kq_w2 w, const KQT_X1 *b)     its int32 lane sums with b
 *   kq_w2   q8_0_weights(const kq_block_q8_0 *a)
 *   __m256i q8_0_idot(kq_w2 w, const KQT_X0 *b)
 * Each family's dot, dot4 and multi-token kernels run the same per-row
 * arithmetic, so their results are bit-identical (the consistency contract
 * in quant_impl.h). */

/* ---- Q4_1 ----------------------------------------------------------------------
 * One accumulator chain per row in block order and q4_1_finish4 at the end.
 * One chain is FMA-latency bound for a lone row; the 4-row and multi-token
 * kernels get their parallelism from the independent rows instead. */

static inline __attribute__((always_inline)) void q4_1_block(const kq_block_q4_1 *a, const KQT_X1 *b,
                                                             kq_w2 w, __m256 *acc, __m128 *ms)
{
    __m128 s = q4_1_scales(a, b);
    *acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(s), _mm256_cvtepi32_ps(q4_1_idot(w, b)), *acc);
    *ms = _mm_add_ps(*ms, s);
}

void KQT_FN(dot4_q4_1)(int64_t n, const void *w, size_t ws, const void *x, float *out)
{
    const kq_block_q4_1 *a[4];
    for (int r = 0; r < 4; r++)
        a[r] = (const kq_block_q4_1 *)((const char *)w + (size_t)r * ws);
    const KQT_X1 *b = x;
    __m256 acc[4];
    __m128 ms[4];
    for (int r = 0; r < 4; r++) {
        acc[r] = _mm256_setzero_ps();
        ms[r] = _mm_setzero_ps();
    }
    for (int64_t i = 0; i < n / KQ_QK; i++)
        for (int r = 0; r < 4; r++)
            q4_1_block(&a[r][i], &b[i], q4_1_weights(&a[r][i]), &acc[r], &ms[r]);
    q4_1_store(acc, ms, 4, out, 1);
}

/* Several activation rows against one weight row: the nibbles are unpacked
 * once per block and reused NX times (prefill / batched decode). NX is a
 * compile-time constant in every call so the accumulators stay in registers. */
static inline __attribute__((always_inline)) void
multi_q4_1(int64_t n, const kq_block_q4_1 *a, const char *x, size_t xs, float *out, int64_t os,
           const int NX)
{
    __m256 acc[4];
    __m128 ms[4];
    for (int r = 0; r < NX; r++) {
        acc[r] = _mm256_setzero_ps();
        ms[r] = _mm_setzero_ps();
    }
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        kq_w2 q = q4_1_weights(&a[i]);
        for (int r = 0; r < NX; r++)
            q4_1_block(&a[i], (const KQT_X1 *)(x + (size_t)r * xs) + i, q, &acc[r], &ms[r]);
    }
    q4_1_store(acc, ms, NX, out, os);
}

float KQT_FN(dot_q4_1)(int64_t n, const void *w, const void *x)
{
    float out;
    multi_q4_1(n, w, x, 0, &out, 1, 1);
    return out;
}

KQ_DEFINE_DOT_MULTI(KQT_FN(dot_multi_q4_1), multi_q4_1)

/* ---- Q8_0 ----------------------------------------------------------------------
 * One row against NX tokens, the weight block prepared once; per token two
 * chains (even / odd blocks, for FMA latency) and one final hsum, so the
 * single dot (NX = 1) and the multi-token form are bit-identical. */
static inline __attribute__((always_inline)) void
multi_q8_0(int64_t n, const kq_block_q8_0 *a, const char *x, size_t xs, float *out, int64_t os,
           const int NX)
{
    __m256 acc[4][2];
    for (int r = 0; r < NX; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        kq_w2 q = q8_0_weights(&a[i]);
        float dw = h2f(a[i].d);
        for (int r = 0; r < NX; r++) {
            const KQT_X0 *b = (const KQT_X0 *)(x + (size_t)r * xs) + i;
            __m256 d = _mm256_set1_ps(dw * KQT_X0_D(b));
            acc[r][i & 1] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q8_0_idot(q, b)), acc[r][i & 1]);
        }
    }
    for (int r = 0; r < NX; r++)
        out[r * os] = hsum_ps(_mm256_add_ps(acc[r][0], acc[r][1]));
}

float KQT_FN(dot_q8_0)(int64_t n, const void *w, const void *x)
{
    float out;
    multi_q8_0(n, w, x, 0, &out, 1, 1);
    return out;
}

KQ_DEFINE_DOT_MULTI(KQT_FN(dot_multi_q8_0), multi_q8_0)
