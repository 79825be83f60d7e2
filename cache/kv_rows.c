/* kv_rows: the decode path's softmax steps (see kv_rows.h). */
#include "kv_rows.h"

#include <immintrin.h>
#include <math.h>

#include "kv_mixed_blk.h"
#include "kv_simd.h"
#include "quant.h"

#define AVX2 __attribute__((target("avx2,fma")))

/* ---- portable ------------------------------------------------------------- */

static float max_row_c(const float *x, int n) {
    float mx = -INFINITY;
    for (int t = 0; t < n; t++)
        if (x[t] > mx) mx = x[t];
    return mx;
}

static float exp_sum_c(float *x, int n, float mx) {
    double sum = 0.0;
    for (int t = 0; t < n; t++) {
        x[t] = x[t] == -INFINITY ? 0.0f : expf(x[t] - mx);
        sum += x[t];
    }
    return (float)sum;
}

static void scale_row_c(float *x, int n, float a) {
    for (int t = 0; t < n; t++) x[t] *= a;
}

/* ---- AVX2 ----------------------------------------------------------------- */

AVX2 static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
}

AVX2 static float max_row_avx2(const float *x, int n) {
    __m256 mv = _mm256_set1_ps(-INFINITY);
    int t = 0;
    for (; t + 8 <= n; t += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + t));
    float mx = hmax8(mv);
    for (; t < n; t++) mx = x[t] > mx ? x[t] : mx;
    return mx;
}

AVX2 static float exp_sum_avx2(float *x, int n, float m) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY), mxv = _mm256_set1_ps(m);
    __m256 sum = _mm256_setzero_ps();
    int t = 0;
    for (; t + 8 <= n; t += 8) {
        __m256 s = _mm256_loadu_ps(x + t);
        __m256 e = _mm256_and_ps(kvs_exp256(_mm256_sub_ps(s, mxv)), _mm256_cmp_ps(s, ninf, _CMP_NEQ_OQ));
        sum = _mm256_add_ps(sum, e);
        _mm256_storeu_ps(x + t, e);
    }
    float tail = 0.0f;
    if (t < n) { /* the last < 8 through a padded vector */
        float buf[8];
        for (int u = 0; u < 8; u++) buf[u] = t + u < n ? x[t + u] : -INFINITY;
        __m256 s = _mm256_loadu_ps(buf);
        __m256 e = _mm256_and_ps(kvs_exp256(_mm256_sub_ps(s, mxv)), _mm256_cmp_ps(s, ninf, _CMP_NEQ_OQ));
        _mm256_storeu_ps(buf, e);
        for (int u = 0; t + u < n; u++) x[t + u] = buf[u], tail += buf[u];
    }
    return kvs_hsum256(sum) + tail;
}

AVX2 static void scale_row_avx2(float *x, int n, float a) {
    const __m256 av = _mm256_set1_ps(a);
    int t = 0;
    for (; t + 8 <= n; t += 8) _mm256_storeu_ps(x + t, _mm256_mul_ps(_mm256_loadu_ps(x + t), av));
    for (; t < n; t++) x[t] *= a;
}

void kvw_rows_for(int force_scalar, kvw_rows *r) {
    if (!force_scalar && kvb_kind(64) == KVB_AVX512) { /* the CPU test; head_dim does not matter here */
        *r = (kvw_rows){kvb_max_row, kvb_exp_sum, kvb_scale_row, "avx512"};
    } else if (!force_scalar && kq_simd_level() >= KQ_SIMD_AVX2 && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma")) {
        *r = (kvw_rows){max_row_avx2, exp_sum_avx2, scale_row_avx2, "avx2"};
    } else {
        *r = (kvw_rows){max_row_c, exp_sum_c, scale_row_c, "scalar"};
    }
}
