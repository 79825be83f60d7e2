/* kv_attn: blocked attention over FP16 pages, the plain cache's kernel.
 *
 * A page holds KVA_PAGE tokens. For one KV head its keys are stored
 * transposed ([head_dim][KVA_PAGE], so scores for a run of keys are one
 * vector per dimension) and its values in token order ([KVA_PAGE][head_dim]).
 *
 * One call computes the attention of the query rows of one KV head: n query
 * positions x `group` query heads, taken query-major (row r is query r/group,
 * head r%group). Each page is converted to fp32 once per call (not once per
 * query head) and every tile of rows that sees it takes its scores as a small
 * matrix product, updates a running max and sum (online softmax, as in
 * FlashAttention) and accumulates P.V into its output rows. The causal limit
 * of row r is key pos0 + r/group.
 *
 * Two implementations of the same per-row arithmetic: an AVX-512
 * register-tiled one (head_dim a multiple of 64, chosen at run time) and a
 * plain C one for every other case. Both are checked against a double
 * precision reference in tests/unit/test_kv_attn.c. */
#ifndef PIVOT_KV_ATTN_H
#define PIVOT_KV_ATTN_H

#include <stddef.h>
#include <stdint.h>

#ifndef KVA_PAGE
#define KVA_PAGE 64 /* 16, 32 or 64: the AVX-512 tile scores KVA_PAGE/16 vectors of keys */
#endif

/* Kernels: plain C with scalar or F16C page conversion, AVX-512 tiles. */
enum { KVA_SCALAR = 0, KVA_F16C = 1, KVA_AVX512 = 2 };

typedef struct {
    const uint16_t *const *pages; /* page p: tokens [p*KVA_PAGE, (p+1)*KVA_PAGE) */
    size_t k_off;   /* elements from a page's start to this head's key block */
    size_t v_off;   /* ... and to its value block */
    int len;        /* tokens stored (keys at or past len are never read) */
    int head_dim;
    int group;      /* query heads per KV head */
    int n_heads;    /* query heads in one q/out row */
    int kv_head;
} kva_src;

/* The fastest kernel for head_dim at the current SIMD level (kq_simd_level
 * caps it, so tests can compare both on one machine). */
int kva_pick(int head_dim);
/* Floats of per-thread scratch kva_attend needs for head_dim. */
size_t kva_scratch_floats(int head_dim);
/* Writes out rows of query positions pos0..pos0+n-1 (q/out rows are
 * [n][n_heads*head_dim]; only this KV head's query heads are touched).
 * The caller guarantees pos0 + n <= s->len. `scratch` is
 * kva_scratch_floats(head_dim) floats owned by the calling thread. */
void kva_attend(const kva_src *s, int kind, int pos0, int n, const float *q, float *out,
                float *scratch);
/* Split-K (kv_attend_part): the same rows over keys [t0, t1) only (t0 a
 * multiple of KVA_PAGE; t1 is capped at s->len), left unnormalized: out
 * rows get Σ e^(s-m)·v and m, l ([n][n_heads], this KV head's entries) the
 * row's largest scaled score and Σ e^(s-m); a row that sees no key of the
 * range gets m = -inf, l = 0 and a zero row. kva_attend is this over
 * [0, len) followed by out /= l. */
void kva_attend_part(const kva_src *s, int kind, int pos0, int n, int t0, int t1, const float *q,
                     float *out, float *m, float *l, float *scratch);

#endif
