/* kv_attn: blocked attention over FP16 pages (see kv_attn.h).
 *
 * Per call: rows are processed in chunks of KVA_CHUNK (bounded scratch for
 * the running max/sum); for each chunk the pages are walked once, converted
 * to fp32 (keys [head_dim][64], values [64][head_dim]) and offered to the
 * row tiles that see them. A tile of rows computes its 64 scores per row,
 * masks keys past each row's causal limit, and folds them into the running
 * softmax: m' = max(m, max s), l' = l*e^(m-m') + sum e^(s-m'),
 * o' = o*e^(m-m') + sum e^(s-m') v. The rows are divided by l at the end. */
#include "kv_attn.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "quant.h"
#include "kv_simd.h"

#define KVA_TILE 6    /* rows per AVX-512 tile: 6 rows x 4 zmm accumulators */
#define KVA_CHUNK 192 /* rows per pass over the pages */

/* Scratch layout (floats): kt[hd*64] | vf[64*hd] | p[KVA_TILE*64] | m[CHUNK] | l[CHUNK] | corr[TILE] */
size_t kva_scratch_floats(int head_dim) {
    return (size_t)2 * KVA_PAGE * head_dim + KVA_TILE * KVA_PAGE + 2 * KVA_CHUNK + KVA_TILE;
}

static int cpu_avx512(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}

int kva_pick(int head_dim) {
    int lvl = kq_simd_level();
    if (lvl >= KQ_SIMD_AVX512VNNI && head_dim % 64 == 0 && cpu_avx512()) return KVA_AVX512;
    if (lvl >= KQ_SIMD_AVX2 && __builtin_cpu_supports("f16c")) return KVA_F16C;
    return KVA_SCALAR;
}

/* ---- page conversion ----------------------------------------------------- */

static void cvt_scalar(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = kq_fp16_to_fp32(src[i]);
}

__attribute__((target("avx2,f16c"))) static void cvt_f16c(float *dst, const uint16_t *src,
                                                           size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = kq_fp16_to_fp32(src[i]);
}

static void cvt(int kind, float *dst, const uint16_t *src, size_t n) {
    if (kind == KVA_SCALAR) cvt_scalar(dst, src, n);
    else cvt_f16c(dst, src, n); /* AVX-512 CPUs have F16C */
}

/* ---- one tile, plain C --------------------------------------------------- */

typedef struct {
    const float *kt, *vf; /* this page in fp32 */
    const uint16_t *kh, *vh; /* ... and as stored (AVX-512 direct tiles read these) */
    const uint16_t *next_k, *next_v; /* the next page's keys and values (direct tiles prefetch them), or NULL */
    float *p;             /* [KVA_TILE][64] probabilities of the tile */
    float *m, *l;         /* running max and sum of the tile's first row */
    float *corr;          /* [KVA_TILE] e^(m_old - m_new) per row */
    const float *q[KVA_TILE];
    float *o[KVA_TILE];
    int nvalid[KVA_TILE]; /* keys of this page each row may see (>= 1) */
    int nr, hd;
    float scale;
} tile_t;

static void tile_plain(tile_t *T) {
    const int hd = T->hd;
    for (int r = 0; r < T->nr; r++) {
        float *s = T->p + r * KVA_PAGE;
        const float *q = T->q[r];
        int nv = T->nvalid[r];
        for (int t = 0; t < KVA_PAGE; t++) s[t] = 0.0f;
        for (int d = 0; d < hd; d++) { /* inner loop over keys: vectorizes */
            float qd = q[d];
            const float *k = T->kt + (size_t)d * KVA_PAGE;
            for (int t = 0; t < KVA_PAGE; t++) s[t] += qd * k[t];
        }
        float mx = T->m[r];
        for (int t = 0; t < nv; t++) {
            s[t] *= T->scale;
            if (s[t] > mx) mx = s[t];
        }
        float corr = expf(T->m[r] - mx), sum = 0.0f;
        for (int t = 0; t < nv; t++) sum += (s[t] = expf(s[t] - mx));
        T->m[r] = mx;
        T->l[r] = T->l[r] * corr + sum;
        float *o = T->o[r];
        for (int x = 0; x < hd; x++) o[x] *= corr;
        for (int t = 0; t < nv; t++) {
            float pt = s[t];
            const float *v = T->vf + (size_t)t * hd;
            for (int x = 0; x < hd; x++) o[x] += pt * v[x];
        }
    }
}

/* ---- one tile, AVX2 ------------------------------------------------------ */

/* tile_plain's steps for AVX2-only CPUs (the F16C kind): a row's KVA_PAGE
 * scores in KVA_PAGE/8 registers (one broadcast of q[d] per key row of the
 * transposed page), the softmax with kvs_exp256 instead of a libm call per
 * key, values added 8 channels at a time. Rows one after another. */
#define KVA_V8 (KVA_PAGE / 8)
/* o = o*corr + Σ_t s[t]·v_t over 64 output dimensions at a time: the eight
 * accumulators stay in registers across the tokens, so each FMA costs one
 * load (the value row) plus one broadcast per token shared by eight, instead
 * of a broadcast and a load per FMA when the loop ran dimension-major. Each
 * output element still sums its tokens in ascending order with the same
 * FMAs, so the result is bit-identical to the dimension-major loop. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
pv_avx2(float *o, const float *s, int nv, const float *vf, int hd, float corr) {
    const __m256 cv = _mm256_set1_ps(corr);
    int x0 = 0;
    for (; x0 + 64 <= hd; x0 += 64) {
        __m256 ov[8];
        for (int j = 0; j < 8; j++) ov[j] = _mm256_mul_ps(_mm256_loadu_ps(o + x0 + 8 * j), cv);
        for (int t = 0; t < nv; t++) {
            const __m256 sb = _mm256_set1_ps(s[t]);
            const float *v = vf + (size_t)t * hd + x0;
            for (int j = 0; j < 8; j++) ov[j] = _mm256_fmadd_ps(sb, _mm256_loadu_ps(v + 8 * j), ov[j]);
        }
        for (int j = 0; j < 8; j++) _mm256_storeu_ps(o + x0 + 8 * j, ov[j]);
    }
    for (int x = x0; x < hd; x += 8) { /* head_dim not a multiple of 64: the rest, 8 at a time */
        __m256 ov = _mm256_mul_ps(_mm256_loadu_ps(o + x), cv);
        for (int t = 0; t < nv; t++)
            ov = _mm256_fmadd_ps(_mm256_set1_ps(s[t]), _mm256_loadu_ps(vf + (size_t)t * hd + x), ov);
        _mm256_storeu_ps(o + x, ov);
    }
}

__attribute__((target("avx2,fma"))) static void tile_avx2(tile_t *T) {
    const int hd = T->hd;
    const __m256 ninf = _mm256_set1_ps(-INFINITY), sc = _mm256_set1_ps(T->scale);
    for (int r = 0; r < T->nr; r++) {
        float *s = T->p + r * KVA_PAGE;
        const float *q = T->q[r];
        const int nv = T->nvalid[r];
        __m256 acc[KVA_V8];
        for (int j = 0; j < KVA_V8; j++) acc[j] = _mm256_setzero_ps();
        for (int d = 0; d < hd; d++) {
            const __m256 qd = _mm256_set1_ps(q[d]);
            const float *k = T->kt + (size_t)d * KVA_PAGE;
            for (int j = 0; j < KVA_V8; j++) acc[j] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 8 * j), acc[j]);
        }
        __m256 mv = _mm256_set1_ps(T->m[r]);
        for (int j = 0; j < KVA_V8; j++) { /* scale; keys past nv to -inf */
            __m256i idx = _mm256_add_epi32(_mm256_set1_epi32(8 * j), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            __m256 live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(nv), idx));
            acc[j] = _mm256_blendv_ps(ninf, _mm256_mul_ps(acc[j], sc), live);
            mv = _mm256_max_ps(mv, acc[j]);
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        const float mx = _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1)));
        const __m256 mxv = _mm256_set1_ps(mx);
        __m256 sum = _mm256_setzero_ps();
        for (int j = 0; j < KVA_V8; j++) {
            __m256 e = _mm256_and_ps(kvs_exp256(_mm256_sub_ps(acc[j], mxv)),
                                     _mm256_cmp_ps(acc[j], ninf, _CMP_NEQ_OQ));
            sum = _mm256_add_ps(sum, e);
            _mm256_storeu_ps(s + 8 * j, e);
        }
        __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
        s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        const float corr = T->m[r] == -INFINITY ? 0.0f : expf(T->m[r] - mx);
        T->m[r] = mx;
        T->l[r] = T->l[r] * corr + _mm_cvtss_f32(_mm_add_ss(s4, _mm_shuffle_ps(s4, s4, 1)));
        pv_avx2(T->o[r], s, nv, T->vf, hd, corr);
    }
}

/* ---- one tile, AVX-512 --------------------------------------------------- */

static inline __mmask16 lanes_below(int nv, int j) { /* lanes 16j.. that are < nv */
    int k = nv - 16 * j;
    return k >= 16 ? (__mmask16)0xFFFF : k <= 0 ? (__mmask16)0 : (__mmask16)((1u << k) - 1);
}

/* 16 floats of a page at element i: from the fp32 copy, or converted from
 * the stored halves (DIRECT: a page only one tile reads is not worth a copy). */
#define LD(DIRECT, f, hsrc, i)                                                                   \
    ((DIRECT) ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((hsrc) + (i))))          \
              : _mm512_loadu_ps((f) + (i)))

/* Key vectors of 16 per page; the P.V part below always works on 64 output
 * dimensions (4 vectors), whatever the page. */
#define KVA_NV (KVA_PAGE / 16)
_Static_assert(KVA_PAGE % 16 == 0 && KVA_PAGE <= 64, "KVA_PAGE must be 16, 32 or 64");

/* NR rows (a compile-time constant after inlining, so the 4*NR accumulators
 * live in registers). Scores: for each dimension d, 4 vectors of 16 keys are
 * loaded once and multiplied by each row's q[d]. */
__attribute__((target("avx512f,avx512bw"), always_inline)) static inline void
tile_avx512_n(tile_t *T, const int NR, const int DIRECT) {
    const int hd = T->hd;
    __m512 acc[KVA_TILE][4];
    for (int r = 0; r < NR; r++)
        for (int j = 0; j < 4; j++) acc[r][j] = _mm512_setzero_ps();
    for (int d = 0; d < hd; d++) {
        size_t o = (size_t)d * KVA_PAGE;
        /* Decode walks a sequence's pages, each a separate allocation the
         * hardware prefetcher meets cold: request the next page's keys and
         * values (2 x hd x 64 fp16) while this one is computed, a key row
         * and a value row per dimension (bench_decode, 2 threads: +5-8% at 256
         * tokens, +15% at 2,048; docs/PERFORMANCE.md). Into L2, not L1: the
         * 128 lines of a page outnumber the L1's miss buffers, and with T0
         * hints a decode over 30 layers of 2,048 tokens (BENCH_LAYERS=30
         * bench_attn) took 47-53 us per KV head against 28-31 with T1. */
        if (DIRECT && T->next_k) {
            const char *nk = (const char *)(T->next_k + o), *nvp = (const char *)(T->next_v + (size_t)d * hd);
            for (int b = 0; b < KVA_PAGE * 2; b += 64) _mm_prefetch(nk + b, _MM_HINT_T1);
            if (d < KVA_PAGE) /* value rows: one per token */
                for (int b = 0; b < hd * 2; b += 64) _mm_prefetch(nvp + b, _MM_HINT_T1);
        }
        __m512 kv[KVA_NV];
        for (int j = 0; j < KVA_NV; j++) kv[j] = LD(DIRECT, T->kt, T->kh, o + 16 * j);
        for (int r = 0; r < NR; r++) {
            __m512 b = _mm512_set1_ps(T->q[r][d]);
            for (int j = 0; j < KVA_NV; j++) acc[r][j] = _mm512_fmadd_ps(b, kv[j], acc[r][j]);
        }
    }
    const __m512 sc = _mm512_set1_ps(T->scale), ninf = _mm512_set1_ps(-INFINITY);
    int tmax = 0;
    for (int r = 0; r < NR; r++) {
        int nv = T->nvalid[r];
        if (nv > tmax) tmax = nv;
        __m512 s[KVA_NV];
        __m512 mv = ninf;
        for (int j = 0; j < KVA_NV; j++) {
            s[j] = _mm512_mask_mov_ps(ninf, lanes_below(nv, j), _mm512_mul_ps(acc[r][j], sc));
            mv = _mm512_max_ps(mv, s[j]);
        }
        float mx = _mm512_reduce_max_ps(mv);
        if (T->m[r] > mx) mx = T->m[r];
        __m512 mxv = _mm512_set1_ps(mx), sum = _mm512_setzero_ps();
        float *p = T->p + r * KVA_PAGE;
        for (int j = 0; j < KVA_NV; j++) {
            __m512 e = _mm512_maskz_mov_ps(lanes_below(nv, j), kvs_exp512(_mm512_sub_ps(s[j], mxv)));
            sum = _mm512_add_ps(sum, e);
            _mm512_storeu_ps(p + 16 * j, e);
        }
        float corr = expf(T->m[r] - mx);
        T->m[r] = mx;
        T->l[r] = T->l[r] * corr + _mm512_reduce_add_ps(sum);
        T->corr[r] = corr;
    }
    /* P.V, 64 output dimensions at a time; rows past their own limit have
     * p = 0 there, so every row can run to the tile's longest. */
    for (int dc = 0; dc < hd; dc += 64) {
        for (int r = 0; r < NR; r++) {
            __m512 c = _mm512_set1_ps(T->corr[r]);
            for (int j = 0; j < 4; j++)
                acc[r][j] = _mm512_mul_ps(_mm512_loadu_ps(T->o[r] + dc + 16 * j), c);
        }
        for (int t = 0; t < tmax; t++) {
            size_t o = (size_t)t * hd + dc;
            __m512 v0 = LD(DIRECT, T->vf, T->vh, o), v1 = LD(DIRECT, T->vf, T->vh, o + 16);
            __m512 v2 = LD(DIRECT, T->vf, T->vh, o + 32), v3 = LD(DIRECT, T->vf, T->vh, o + 48);
            for (int r = 0; r < NR; r++) {
                __m512 b = _mm512_set1_ps(T->p[r * KVA_PAGE + t]);
                acc[r][0] = _mm512_fmadd_ps(b, v0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(b, v1, acc[r][1]);
                acc[r][2] = _mm512_fmadd_ps(b, v2, acc[r][2]);
                acc[r][3] = _mm512_fmadd_ps(b, v3, acc[r][3]);
            }
        }
        for (int r = 0; r < NR; r++)
            for (int j = 0; j < 4; j++) _mm512_storeu_ps(T->o[r] + dc + 16 * j, acc[r][j]);
    }
}

/* direct: the page is read as stored (FP16), see LD. */
__attribute__((target("avx512f,avx512bw"))) static void tile_avx512(tile_t *T, int direct) {
#define COPY(k) tile_avx512_n(T, k, 0)
#define DIRECT(k) tile_avx512_n(T, k, 1)
    if (direct) KVS_SWITCH6(T->nr, DIRECT)
    else KVS_SWITCH6(T->nr, COPY)
#undef COPY
#undef DIRECT
}

/* ---- driver --------------------------------------------------------------- */

/* Keys [t0, t1) (t0 a multiple of KVA_PAGE) for query rows pos0..pos0+n-1.
 * m/l NULL: the rows are normalized (kva_attend); else they stay the raw
 * Σ e^(s-m)·v and each row's running max and sum go to m[i][head], l[i][head]
 * (kva_attend_part). The arithmetic per key is the same either way. */
static void attend_range(const kva_src *s, int kind, int pos0, int n, int t0, int t1,
                         const float *q, float *out, float *mo, float *lo, float *scratch) {
    const int hd = s->head_dim, G = s->group, R = n * G;
    const size_t row = (size_t)s->n_heads * hd;
    float *kt = scratch, *vf = kt + (size_t)KVA_PAGE * hd, *pb = vf + (size_t)KVA_PAGE * hd;
    float *m = pb + KVA_TILE * KVA_PAGE, *l = m + KVA_CHUNK, *corr = l + KVA_CHUNK;
    tile_t T = {.kt = kt, .vf = vf, .p = pb, .corr = corr, .hd = hd,
                .scale = 1.0f / sqrtf((float)hd)};
    if (t1 > s->len) t1 = s->len;
#define ROW_Q(r) (q + (size_t)((r) / G) * row + (size_t)(s->kv_head * G + (r) % G) * hd)
#define ROW_O(r) (out + (size_t)((r) / G) * row + (size_t)(s->kv_head * G + (r) % G) * hd)
#define ROW_ML(a, r) ((a) + (size_t)((r) / G) * s->n_heads + s->kv_head * G + (r) % G)
    for (int c0 = 0; c0 < R; c0 += KVA_CHUNK) {
        int c1 = R - c0 < KVA_CHUNK ? R : c0 + KVA_CHUNK;
        for (int r = c0; r < c1; r++) {
            m[r - c0] = -INFINITY;
            l[r - c0] = 0.0f;
            memset(ROW_O(r), 0, sizeof(float) * hd);
        }
        int last_key = pos0 + (c1 - 1) / G; /* the chunk's last row sees keys 0..last_key */
        for (int p0 = t0; p0 <= last_key && p0 < t1; p0 += KVA_PAGE) {
            const uint16_t *page = s->pages[p0 / KVA_PAGE];
            int nt = t1 - p0 < KVA_PAGE ? t1 - p0 : KVA_PAGE;
            if (last_key + 1 - p0 < nt) nt = last_key + 1 - p0;
            /* rows see the page once their limit pos0 + r/G reaches p0 */
            int r0 = p0 > pos0 ? (p0 - pos0) * G : 0;
            if (r0 < c0) r0 = c0;
            /* One tile (decode: n = 1) converts as it goes; more share a copy. */
            int direct = kind == KVA_AVX512 && c1 - r0 <= KVA_TILE;
            T.kh = page + s->k_off;
            T.vh = page + s->v_off;
            int more = p0 + KVA_PAGE <= last_key && p0 + KVA_PAGE < t1;
            T.next_k = more ? s->pages[p0 / KVA_PAGE + 1] + s->k_off : NULL;
            T.next_v = more ? s->pages[p0 / KVA_PAGE + 1] + s->v_off : NULL;
            if (!direct) {
                cvt(kind, kt, T.kh, (size_t)hd * KVA_PAGE);
                cvt(kind, vf, T.vh, (size_t)nt * hd);
            }
            for (int r1 = r0; r1 < c1; r1 += KVA_TILE) {
                T.nr = c1 - r1 < KVA_TILE ? c1 - r1 : KVA_TILE;
                T.m = m + (r1 - c0);
                T.l = l + (r1 - c0);
                for (int i = 0; i < T.nr; i++) {
                    int lim = pos0 + (r1 + i) / G - p0 + 1;
                    T.nvalid[i] = lim < nt ? lim : nt;
                    T.q[i] = ROW_Q(r1 + i);
                    T.o[i] = ROW_O(r1 + i);
                }
                if (kind == KVA_AVX512) tile_avx512(&T, direct);
                else if (kind == KVA_F16C && hd % 8 == 0) tile_avx2(&T);
                else tile_plain(&T);
            }
        }
        for (int r = c0; r < c1; r++) {
            if (mo) {
                *ROW_ML(mo, r) = m[r - c0];
                *ROW_ML(lo, r) = l[r - c0];
                continue;
            }
            float inv = 1.0f / l[r - c0], *o = ROW_O(r);
            for (int x = 0; x < hd; x++) o[x] *= inv;
        }
    }
#undef ROW_Q
#undef ROW_O
#undef ROW_ML
}

void kva_attend(const kva_src *s, int kind, int pos0, int n, const float *q, float *out,
                float *scratch) {
    attend_range(s, kind, pos0, n, 0, s->len, q, out, NULL, NULL, scratch);
}

void kva_attend_part(const kva_src *s, int kind, int pos0, int n, int t0, int t1, const float *q,
                     float *out, float *m, float *l, float *scratch) {
    attend_range(s, kind, pos0, n, t0, t1, q, out, m, l, scratch);
}
