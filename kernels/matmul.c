/* km: y = W x with W in its GGUF format.
 *
 * Steps: (1) quantize every token's activations once into the scratch, in
 * the weight's vec_dot type (parallel over tokens when there are many),
 * and where the kernel family has its own layout (kq_dot_family.prep)
 * convert them once more, so no weight row pays for it;
 * (2) split W's rows into blocks, one pool task per block; a task walks the
 * tokens in tiles of KM_TILE and, per weight row, computes the tile's dots
 * with the multi-row kernel, which unpacks each weight block once for up to
 * 4 tokens. The row block (<= KM_BLOCK_BYTES of weights) stays in L1/L2
 * while the task sweeps the token tiles, so weights are read from memory
 * once per call whatever n_tok is. A matrix the model repacked 16 rows at a
 * time (km_repack16) goes through the 16-row kernel instead, on the plain
 * quantized activations, in tasks of whole 16-row groups. */
#include "matmul.h"

#include <stdlib.h>
#include <string.h>

#include "pverr.h"
#include "quant.h"
#include "quant_impl.h"

#define KM_TILE 8                /* tokens per tile: 8 quantized rows sit in L1 */
#define KM_BLOCK_BYTES (24 << 10) /* weight bytes per row block (fits L1/L2) */
#define KM_TASKS_PER_THREAD 8     /* enough tasks for dynamic load balance */
/* A matvec (decode) streams its weights from memory, and every task starts
 * a new stream the prefetchers meet cold: 16 tasks per matrix on 2 threads
 * ran decode at 247-260 tok/s, 4 at 285-330, 2 (static halves) at 288-329
 * (bench_decode --ctx 256, 2 threads, alternated; docs/PERFORMANCE.md).
 * Two per thread keep some dynamic balance on a shared machine. */
#define KM_TASKS_PER_THREAD_MATVEC 2
#define KM_DOT4_MAX_ROW_BYTES 512

struct km_scratch {
    void *buf;
    size_t cap;
    int act_bits; /* 8 or 16 */
    int prefetch; /* software prefetch in the matvec (decode) path */
};

km_scratch *km_scratch_new(void)
{
    km_scratch *s = calloc(1, sizeof(km_scratch));
    if (s) {
        s->act_bits = KQ_ACT_BITS_DEFAULT;
        /* PIVOT_PREFETCH=0 turns it off, for A/B benchmarks */
        const char *e = getenv("PIVOT_PREFETCH");
        s->prefetch = !(e && e[0] == '0');
    }
    return s;
}

int km_scratch_set_act_bits(km_scratch *s, int bits)
{
    if (!s || (bits != 8 && bits != 16))
        return PV_EINVAL;
    s->act_bits = bits;
    return PV_OK;
}

int km_scratch_act_bits(const km_scratch *s) { return s ? s->act_bits : KQ_ACT_BITS_DEFAULT; }

void km_scratch_free(km_scratch *s)
{
    if (!s)
        return;
    free(s->buf);
    free(s);
}

static int scratch_reserve(km_scratch *s, size_t bytes)
{
    if (bytes <= s->cap)
        return PV_OK;
    /* 64-byte aligned so quantized rows do not straddle extra cache lines;
     * grow geometrically so a prefill of increasing sizes reallocates rarely */
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < bytes)
        cap = cap > SIZE_MAX / 2 ? bytes : cap * 2;
    cap = (cap + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, cap);
    if (!p)
        return PV_ENOMEM;
    free(s->buf);
    s->buf = p;
    s->cap = cap;
    return PV_OK;
}

typedef struct {
    kq_quant_fn quant;
    kq_prep_fn prep; /* NULL: the kernels read xq */
    const float *x;
    int64_t cols;
    char *xq, *xp;   /* quantized rows; prepped rows (prep only) */
    size_t xrb, prb;
    int64_t tok_per_task;
    int64_t n_tok;
} quant_ctx;

static void quant_task(void *vctx, int task, int thread)
{
    (void)thread;
    quant_ctx *c = vctx;
    int64_t t0 = task * c->tok_per_task, t1 = t0 + c->tok_per_task;
    if (t1 > c->n_tok)
        t1 = c->n_tok;
    for (int64_t t = t0; t < t1; t++) {
        char *q = c->xq + (size_t)t * c->xrb;
        c->quant(c->x + t * c->cols, q, c->cols);
        if (c->prep)
            c->prep(c->cols, q, c->xp + (size_t)t * c->prb);
    }
}

typedef struct {
    kq_dot_fn dot;
    kq_dot4_fn dot4; /* optional */
    kq_dot_multi_fn multi;
    const char *w16; /* km_weight.r16 when the 16-row kernel runs, else NULL */
    kq_r16_kernel *k16;
    int t16; /* tokens per call of k16 */
    size_t bb16;     /* its bytes per group and block */
    const char *w;
    size_t wrb;
    int64_t cols, rows;
    const char *xq;
    size_t xrb;
    int64_t n_tok;
    int64_t rows_per_task;
    int prefetch; /* the weights are read once (a matvec, or a batch one 16-row call takes) */
    float *y;
} mm_ctx;

/* Decode streams each weight byte once, in short runs (a task's row block,
 * tens of KB) that the hardware prefetchers learn too late and do not carry
 * across 4 KB pages. Requesting the bytes KM_PREFETCH_BYTES ahead of the
 * rows being computed, while they are computed, keeps the loads in flight.
 * `cur`..`cur+len` are the rows about to be used; lines past `end` (another
 * task's rows) are not requested. */
#define KM_PREFETCH_BYTES 2048
static inline void prefetch_ahead(const char *cur, size_t len, const char *end)
{
    const char *p = cur + KM_PREFETCH_BYTES, *q = p + len;
    if (q > end)
        q = end;
    for (; p < q; p += 64)
        __builtin_prefetch(p, 0, 3);
}

static void mm_task(void *vctx, int task, int thread)
{
    (void)thread;
    const mm_ctx *c = vctx;
    int64_t r0 = task * c->rows_per_task, r1 = r0 + c->rows_per_task;
    if (r1 > c->rows)
        r1 = c->rows;
    if (c->w16) { /* groups of 16 rows (rows_per_task and rows are multiples of 16) */
        const char *wg = c->w16 + (size_t)(r0 / 16) * (size_t)(c->cols / 32) * c->bb16;
        for (int64_t t0 = 0; t0 < c->n_tok; t0 += c->t16) {
            int nt = (int)(c->n_tok - t0 < c->t16 ? c->n_tok - t0 : c->t16);
            c->k16(c->cols, wg, (r1 - r0) / 16, c->xq + (size_t)t0 * c->xrb, c->xrb, nt, c->y + t0 * c->rows + r0,
                   c->rows, c->prefetch);
        }
        return;
    }
    if (c->n_tok == 1) {
        int64_t r = r0;
        /* no prefetch: requests nothing past the task's own rows */
        const char *end = c->prefetch ? c->w + (size_t)r1 * c->wrb : c->w;
        if (c->dot4)
            for (; r + 4 <= r1; r += 4) {
                prefetch_ahead(c->w + (size_t)r * c->wrb, 4 * c->wrb, end);
                c->dot4(c->cols, c->w + (size_t)r * c->wrb, c->wrb, c->xq, c->y + r);
            }
        for (; r < r1; r++) {
            prefetch_ahead(c->w + (size_t)r * c->wrb, c->wrb, end);
            c->y[r] = c->dot(c->cols, c->w + (size_t)r * c->wrb, c->xq);
        }
        return;
    }
    for (int64_t t0 = 0; t0 < c->n_tok; t0 += KM_TILE) {
        int nt = (int)(c->n_tok - t0 < KM_TILE ? c->n_tok - t0 : KM_TILE);
        const char *xt = c->xq + (size_t)t0 * c->xrb;
        for (int64_t r = r0; r < r1; r++)
            c->multi(c->cols, c->w + (size_t)r * c->wrb, xt, c->xrb, nt, c->y + t0 * c->rows + r,
                     c->rows);
    }
}

static int weight_ok(const km_weight *w)
{
    return w && w->data && kq_weight_supported(w->type) && w->cols > 0 && w->rows > 0 &&
           kq_row_bytes(w->type, w->cols) > 0;
}

/* The 16-row kernel for `type` at SIMD level `level` (fn NULL if none) and
 * the most tokens one call takes: Q4_1 and Q8_0 at AVX512-VBMI (16 tokens:
 * 32 registers hold 16 accumulators; one unpack per step for all of them
 * was 1.11x two calls of 8 on a Xeon, bench_q41_rows16), Q4_1 also at AVX2
 * (quant_q41r16_avx2.c, the same bits; 8 tokens in 16 registers). At the
 * VNNI level the row kernels stay: their vpdpwssd forms were not measured
 * against the AVX2 16-row kernel. */
typedef struct {
    kq_r16_kernel *fn;
    int max_nt;
} r16_impl;

static r16_impl r16_kernel(uint32_t type, int level)
{
    if (level >= KQ_SIMD_AVX512VBMI)
        return (r16_impl){type == KQ_Q8_0   ? kq_vbmi_q80r16_rows
                          : type == KQ_Q4_1 ? kq_vbmi_q41r16_rows
                                            : NULL,
                          KQ_R16_MAX_NT_VBMI};
    return (r16_impl){level == KQ_SIMD_AVX2 && type == KQ_Q4_1 ? kq_avx2_q41r16_rows : NULL, KQ_R16_MAX_NT_AVX2};
}

/* The 16-row kernel takes w on this call: a repacked matrix, 16-bit
 * activations, and a level (which a SIMD cap may lower) with a kernel for
 * its type. */
static int r16_usable(const km_weight *w, const km_scratch *s)
{
    return w->r16 && w->rows % 16 == 0 && w->cols % 32 == 0 && s->act_bits == 16 &&
           r16_kernel(w->type, kq_simd_level()).fn;
}

size_t km_repack16_bytes(const km_weight *w)
{
    if (!weight_ok(w) || w->rows % 16 || w->cols % 32 || !r16_kernel(w->type, kq_simd_cpu_level()).fn)
        return 0;
    return (size_t)(w->rows / 16) * (size_t)(w->cols / 32) * (w->type == KQ_Q8_0 ? KQ_R16_BLOCK_Q8 : KQ_R16_BLOCK);
}

static int q41_code(const kq_block_q4_1 *b, int j) { return j < 16 ? b->qs[j] & 15 : b->qs[j - 16] >> 4; }

/* Row r's block (GGUF layout) into its group's record o (kernels/quant_q41r16.c
 * has the layouts): Q8_0 16 x 32 code bytes (row r: 2r, 2r+1), then 16 d;
 * Q4_1 16 x 16 bytes (row r: code 2k | 2k+1 << 4), then 16 d, 16 m. */
static void put_row16(uint32_t type, const void *blk, int r, uint8_t *o)
{
    if (type == KQ_Q8_0) {
        const kq_block_q8_0 *b = blk;
        for (int k = 0; k < 16; k++)
            memcpy(o + 32 * k + 2 * r, b->qs + 2 * k, 2);
        memcpy(o + 512 + 2 * r, &b->d, 2);
        return;
    }
    const kq_block_q4_1 *b = blk;
    for (int k = 0; k < 16; k++)
        o[16 * k + r] = (uint8_t)(q41_code(b, 2 * k) | q41_code(b, 2 * k + 1) << 4);
    memcpy(o + 256 + 2 * r, &b->d, 2);
    memcpy(o + 288 + 2 * r, &b->m, 2);
}

void km_repack16(const km_weight *w, void *dst)
{
    const int64_t nb = w->cols / 32;
    const size_t wrb = kq_row_bytes(w->type, w->cols), blkb = kq_block_bytes(w->type);
    const size_t bb = w->type == KQ_Q8_0 ? KQ_R16_BLOCK_Q8 : KQ_R16_BLOCK;
    for (int64_t g = 0; g < w->rows / 16; g++)
        for (int64_t b = 0; b < nb; b++)
            for (int r = 0; r < 16; r++)
                put_row16(w->type, (const char *)w->data + (size_t)(16 * g + r) * wrb + (size_t)b * blkb, r,
                          (uint8_t *)dst + ((size_t)g * nb + b) * bb);
}

/* x in the dot's format for weights of type `type`: x itself (F32 dots) or
 * quantized into the scratch, then converted by `prep` (the family's own
 * layout) when there is one. */
static int quantize_x(tp_pool *pool, km_scratch *s, uint32_t type, const kq_dot_family *fam,
                      const float *x, int64_t cols, int64_t n_tok, const char **xq, size_t *xrb_out)
{
    const uint32_t vdt = kq_vec_dot_type_bits(type, s->act_bits);
    const kq_prep_fn prep = fam->prep;
    const size_t xrb = kq_row_bytes(vdt, cols), prb = prep ? kq_prep_row_bytes(fam, vdt, cols) : 0;
    if (xrb == 0) /* e.g. Q4_K with cols not a multiple of 256 is caught above */
        return PV_EINVAL;
    if ((size_t)n_tok > SIZE_MAX / 2 / (xrb + prb))
        return PV_ENOMEM;
    *xrb_out = prep ? prb : xrb;
    if (vdt == KQ_F32) {
        *xq = (const char *)x; /* already in the dot's format: no copy */
        return PV_OK;
    }
    int rc = scratch_reserve(s, (size_t)n_tok * (xrb + prb));
    if (rc)
        return rc;
    const int nth = tp_size(pool);
    quant_ctx qc = {kq_get_quant(vdt), prep, x, cols, s->buf, (char *)s->buf + (size_t)n_tok * xrb,
                    xrb, prb, 1, n_tok};
    if (n_tok >= 2 * nth && nth > 1) {
        qc.tok_per_task = (n_tok + 4 * nth - 1) / (4 * nth);
        tp_run(pool, quant_task, &qc, (int)((n_tok + qc.tok_per_task - 1) / qc.tok_per_task));
    } else {
        qc.tok_per_task = n_tok;
        quant_task(&qc, 0, 0);
    }
    *xq = prep ? qc.xp : qc.xq;
    return PV_OK;
}

/* One matrix's task context; returns its task count. */
static int mm_setup(const km_scratch *s, const km_weight *w, const kq_dot_family *fam, int use16,
                    const char *xq, size_t xrb, int64_t n_tok, float *y, int nth, mm_ctx *c)
{
    const r16_impl k16 = r16_kernel(w->type, kq_simd_level());
    /* one pass over the weights (a token, or a batch one 16-row call takes):
     * streamed once, as a matvec (tasks, prefetch) */
    const int stream = n_tok == 1 || (use16 && n_tok <= k16.max_nt);
    *c = (mm_ctx){
        .w16 = use16 ? w->r16 : NULL,
        .k16 = use16 ? k16.fn : NULL,
        .t16 = k16.max_nt,
        .bb16 = w->type == KQ_Q8_0 ? KQ_R16_BLOCK_Q8 : KQ_R16_BLOCK,
        .dot = fam->dot,
        /* 4 rows at a time only for short rows: measured (bench_matmul) to
         * gain ~50% when the matrix is cache-resident, but with long rows
         * (960 B) streaming from DRAM the 4 interleaved streams ran at less
         * than half the speed of one sequential stream */
        .dot4 = kq_row_bytes(w->type, w->cols) <= KM_DOT4_MAX_ROW_BYTES ? fam->dot4 : NULL,
        .multi = fam->multi,
        .w = w->data,
        .wrb = kq_row_bytes(w->type, w->cols),
        .cols = w->cols,
        .rows = w->rows,
        .xq = xq,
        .xrb = xrb,
        .n_tok = n_tok,
        .prefetch = s->prefetch && stream,
        .y = y,
    };
    /* rows per task: small enough for load balance across threads, and for
     * prefill small enough that the block stays cached across token tiles */
    const int64_t tpt = stream ? KM_TASKS_PER_THREAD_MATVEC : KM_TASKS_PER_THREAD;
    int64_t rpt = (c->rows + (int64_t)nth * tpt - 1) / ((int64_t)nth * tpt);
    int64_t cap = (int64_t)(KM_BLOCK_BYTES / c->wrb);
    if (!stream && rpt > cap)
        rpt = cap;
    /* multiples of 4 always: the 4-row decode kernel then sees the same row
     * groups whatever the thread count, so results do not depend on it */
    rpt = rpt < 4 ? 4 : (rpt + 3) & ~(int64_t)3;
    if (use16) /* whole groups */
        rpt = (rpt + 15) & ~(int64_t)15;
    c->rows_per_task = rpt;
    return (int)((c->rows + rpt - 1) / rpt);
}

int km_matmul(tp_pool *pool, km_scratch *s, const km_weight *w, const float *x, int64_t n_tok,
              float *y)
{
    float *ys[1] = {y};
    return km_matmul_n(pool, s, &w, 1, x, n_tok, ys);
}

/* Tasks of several matrices numbered one after another. */
typedef struct {
    mm_ctx c[KM_MAX_N];
    int base[KM_MAX_N + 1];
    int n;
} mm_multi;

static void mm_multi_task(void *vctx, int task, int thread)
{
    const mm_multi *m = vctx;
    int i = 0;
    while (i + 1 < m->n && task >= m->base[i + 1])
        i++;
    mm_task((void *)&m->c[i], task - m->base[i], thread);
}

int km_matmul_n(tp_pool *pool, km_scratch *s, const km_weight *const *w, int nw, const float *x,
                int64_t n_tok, float *const *y)
{
    if (!s || !w || !y || !x || nw < 1 || nw > KM_MAX_N || n_tok < 1)
        return PV_EINVAL;
    for (int i = 0; i < nw; i++)
        if (!weight_ok(w[i]) || w[i]->rows > INT32_MAX || !y[i] || w[i]->cols != w[0]->cols)
            return PV_EINVAL;
    /* one activation format (and layout) for all, or one call per matrix.
     * The families are looked up once here and used for both the
     * activations' layout and the products (a SIMD cap changed in between
     * by another thread cannot mix two families' layouts). */
    const uint32_t vdt = kq_vec_dot_type_bits(w[0]->type, s->act_bits);
    const kq_dot_family *fam[KM_MAX_N];
    for (int i = 0; i < nw; i++)
        if (!(fam[i] = kq_get_dot_family(w[i]->type, s->act_bits)))
            return PV_EINVAL; /* cannot happen for a supported type and 8/16 bits */
    /* the 16-row kernel reads the plain 16-bit activations: no prep */
    int use16[KM_MAX_N];
    kq_dot_family plain = *fam[0];
    for (int i = 0; i < nw; i++)
        use16[i] = r16_usable(w[i], s);
    if (use16[0])
        plain.prep = NULL;
    const kq_dot_family *f0 = &plain;
    for (int i = 1; i < nw; i++)
        if (kq_vec_dot_type_bits(w[i]->type, s->act_bits) != vdt || use16[i] != use16[0] ||
            (!use16[i] && fam[i]->prep != f0->prep)) {
            for (int j = 0; j < nw; j++) {
                int rc = km_matmul_n(pool, s, &w[j], 1, x, n_tok, &y[j]);
                if (rc)
                    return rc;
            }
            return PV_OK;
        }
    const char *xq;
    size_t xrb;
    int rc = quantize_x(pool, s, w[0]->type, f0, x, w[0]->cols, n_tok, &xq, &xrb);
    if (rc)
        return rc;
    mm_multi m = {.n = nw};
    for (int i = 0; i < nw; i++) {
        m.base[i + 1] =
            m.base[i] + mm_setup(s, w[i], fam[i], use16[i], xq, xrb, n_tok, y[i], tp_size(pool), &m.c[i]);
    }
    if (nw == 1)
        tp_run(pool, mm_task, &m.c[0], m.base[1]);
    else
        tp_run(pool, mm_multi_task, &m, m.base[nw]);
    return PV_OK;
}

int km_get_row(const km_weight *w, int64_t r, float *out)
{
    if (!weight_ok(w) || !out || r < 0 || r >= w->rows)
        return PV_EINVAL;
    size_t rb = kq_row_bytes(w->type, w->cols);
    return kq_dequantize_row(w->type, (const char *)w->data + (size_t)r * rb, out, w->cols);
}
