/* The batched forward pass (llm_ctx, llm_decode).
 *
 * All tokens of all batch entries are stacked as rows of one activation
 * matrix, so each weight matrix is streamed once per step for the whole batch
 * (the continuous-batching server depends on this). Only attention is per
 * sequence, and it is delegated to the KV cache (cache/kv.h). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/synth_hash.h"
#include "kv.h"
#include "llama_internal.h"
#include "ops.h"
#include "pverr.h"
#include "threadpool.h"

struct llm_ctx {
    const llm_model *m;
    llm_ctx_params p;
    tp_pool *pool;
    km_scratch *ks;
    kv_cache *kv;
    /* activations, B = max_batch_tokens rows */
    float *x;         /* [B][n_embd] residual stream */
    float *xn;        /* [B][n_embd] normalized input of a block */
    float *q;         /* [B][n_heads*head_dim] */
    float *k, *v;     /* [B][n_kv_heads*head_dim] */
    float *att;       /* [B][n_heads*head_dim] attention output */
    float *tmp;       /* [B][n_embd] projection output before the residual add */
    float *gate, *up; /* [B][n_ff] */
    int *pos;         /* [B] position of each row */
    float *rope;      /* [B][rope_dim] each row's RoPE cos/sin (ko_rope_angles), all layers */
    int *row0;        /* [max_seqs] first row of each batch entry (scratch) */
    int *blk0;        /* [max_seqs + 1] first attention query block of each entry */
    /* Split-K decode attention (attn_plan): per entry, its key-range length
     * (0: not split; its blocks are then query blocks) and its first row
     * of the part buffers; the parts' unnormalized outputs and their
     * softmax max and sum, merged into att after the pool run. */
    int split_min;    /* context from which a decode entry may split; INT_MAX: never */
    int *part_len;    /* [max_seqs] */
    int *part0;       /* [max_seqs] */
    int part_rows;    /* rows of the part buffers */
    float *part_o;    /* [part_rows][n_heads*head_dim] */
    float *part_m, *part_l; /* [part_rows][n_heads] */
    llm_cuda *cu;     /* non-NULL: the ctx runs on the GPU (llama_cuda.c) and
                         none of the CPU buffers above exist */
    float *greedy;    /* [rows][n_vocab] logits for llm_decode_greedy without
                         a caller buffer (CPU), grown on demand */
    int greedy_rows;
};

kv_shape llm_kv_shape(const llm_model *m, const llm_ctx_params *p) {
    const llm_config *c = &m->cfg;
    kv_shape s = {
        .n_layers = c->n_layers,
        .n_heads = c->n_heads,
        .n_kv_heads = c->n_kv_heads,
        .head_dim = c->head_dim,
        .max_seqs = p->max_seqs,
        .max_ctx = p->max_ctx > 0 ? p->max_ctx : c->n_ctx_train,
        .n_threads = p->n_threads,
    };
    return s;
}

void llm_ctx_free(llm_ctx *c) {
    if (!c) return;
    tp_destroy(c->pool);
    km_scratch_free(c->ks);
    kv_destroy(c->kv); /* the GPU cache's face goes before the GPU state */
    llm_cuda_free(c->cu);
    free(c->greedy);
    float *bufs[] = {c->x, c->xn, c->q, c->k, c->v, c->att, c->tmp, c->gate, c->up};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(c->pos);
    free(c->rope);
    free(c->row0);
    free(c->blk0);
    free(c->part_len);
    free(c->part0);
    free(c->part_o);
    free(c->part_m);
    free(c->part_l);
    free(c);
}

/* Split-K decode attention. A batch of one or a few decode entries has
 * fewer (entry, KV head) attention tasks than threads can balance (one
 * sequence of SmolLM2: 3 KV heads on 2 threads, so one thread does two
 * heads and the other waits). Such an entry's keys are then cut into
 * SPLIT_MAX_PARTS or fewer page-aligned ranges of at least
 * SPLIT_PART_MIN tokens, each (range, KV head) a task, and the ranges'
 * partial softmaxes merged (kv_attend_merge). */
#define SPLIT_MAX_PARTS 8
#define SPLIT_PART_MIN 64

/* The threshold (params, else the default) and
 * the part buffers, sized for the most parts attn_plan ever assigns:
 * it splits only while the unsplit tasks are < 2 x threads, and gives
 * each split entry at most ceil(4 x threads / tasks) parts. */
static int split_setup(llm_ctx *c) {
    int v = c->p.attn_split ? c->p.attn_split : LLM_ATTN_SPLIT_DEFAULT;
    c->split_min = v < 0 || c->p.n_threads < 2 ? INT_MAX : v;
    const llm_config *cf = &c->m->cfg;
    size_t qd = (size_t)cf->n_heads * cf->head_dim, T = (size_t)c->p.n_threads;
    c->part_rows = c->split_min == INT_MAX ? 0 : (int)(8 * T + SPLIT_MAX_PARTS);
    size_t R = c->part_rows ? (size_t)c->part_rows : 1;
    c->part_len = calloc((size_t)c->p.max_seqs, sizeof(int));
    c->part0 = calloc((size_t)c->p.max_seqs, sizeof(int));
    c->part_o = malloc(sizeof(float) * R * qd);
    c->part_m = malloc(sizeof(float) * R * cf->n_heads);
    c->part_l = malloc(sizeof(float) * R * cf->n_heads);
    return c->part_len && c->part0 && c->part_o && c->part_m && c->part_l ? PV_OK : PV_ENOMEM;
}

int llm_ctx_create(const llm_model *m, const llm_ctx_params *pin, kv_cache *kv, llm_ctx **out) {
    *out = NULL;
    if (!m || !pin || pin->max_seqs <= 0 || pin->max_batch_tokens <= 0) {
        kv_destroy(kv);
        return PV_EINVAL;
    }
    llm_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        kv_destroy(kv);
        return PV_ENOMEM;
    }
    c->m = m;
    c->p = *pin;
    c->kv = kv;
    int rc;
    /* Device choice. On the GPU a caller's cache is replaced by the GPU's own
     * with the same policy: the plain FP16 cache, or the mixed cache (its
     * policy read back from the CPU cache). AUTO picks the GPU for the plain
     * cache only until the mixed cache's GPU run is on record (docs/CUDA.md). */
    kv_policy pol;
    int known = kv ? kv_get_policy(kv, &pol) == PV_OK : kv_policy_preset("full", &pol) == PV_OK;
    int plain = known && kv_policy_is_plain(&pol), mixed = known && !plain;
    int on_cuda = pin->device == LLM_DEVICE_CUDA ||
                  (pin->device == LLM_DEVICE_AUTO && plain && llm_cuda_usable(m, pin->gpu, NULL, 0));
    if (on_cuda) {
        if (!plain && !mixed) {
            rc = PV_EUNSUPPORTED;
            goto fail;
        }
        kv_destroy(kv);
        c->kv = NULL;
        if (c->p.max_ctx <= 0) c->p.max_ctx = m->cfg.n_ctx_train;
        if ((rc = llm_cuda_create(m, &c->p, &pol, &c->cu, &c->kv))) goto fail;
        *out = c;
        return PV_OK;
    }
    if (!m->tok_embd.data) { /* a synthetic model generated on the GPU only */
        rc = PV_EUNSUPPORTED;
        goto fail;
    }
    rc = tp_create(pin->n_threads, &c->pool);
    if (rc) goto fail;
    c->p.n_threads = tp_size(c->pool);
    if (c->p.max_ctx <= 0) c->p.max_ctx = m->cfg.n_ctx_train;
    kv_shape want = llm_kv_shape(m, &c->p);
    if (!c->kv) {
        if ((rc = kv_create(&want, &pol, &c->kv, NULL, 0))) goto fail;
    } else {
        const kv_shape *s = kv_get_shape(c->kv);
        if (s->n_layers != want.n_layers || s->n_heads != want.n_heads ||
            s->n_kv_heads != want.n_kv_heads || s->head_dim != want.head_dim ||
            s->max_seqs < want.max_seqs || s->n_threads < want.n_threads) {
            rc = PV_EINVAL;
            goto fail;
        }
        c->p.max_ctx = s->max_ctx;
    }
    c->ks = km_scratch_new();
    if (!c->ks) {
        rc = PV_ENOMEM;
        goto fail;
    }
    const llm_config *cf = &m->cfg;
    size_t B = (size_t)pin->max_batch_tokens;
    size_t qd = (size_t)cf->n_heads * cf->head_dim, kvd = (size_t)cf->n_kv_heads * cf->head_dim;
    c->x = malloc(sizeof(float) * B * cf->n_embd);
    c->xn = malloc(sizeof(float) * B * cf->n_embd);
    c->q = malloc(sizeof(float) * B * qd);
    c->k = malloc(sizeof(float) * B * kvd);
    c->v = malloc(sizeof(float) * B * kvd);
    c->att = malloc(sizeof(float) * B * qd);
    c->tmp = malloc(sizeof(float) * B * cf->n_embd);
    c->gate = malloc(sizeof(float) * B * cf->n_ff);
    c->up = malloc(sizeof(float) * B * cf->n_ff);
    c->pos = malloc(sizeof(int) * B);
    c->rope = malloc(sizeof(float) * B * (size_t)(cf->rope_dim > 0 ? cf->rope_dim : 1));
    c->row0 = malloc(sizeof(int) * (size_t)pin->max_seqs);
    c->blk0 = malloc(sizeof(int) * ((size_t)pin->max_seqs + 1));
    if ((rc = split_setup(c))) goto fail;
    if (!c->x || !c->xn || !c->q || !c->k || !c->v || !c->att || !c->tmp || !c->gate || !c->up ||
        !c->pos || !c->rope || !c->row0 || !c->blk0) {
        rc = PV_ENOMEM;
        goto fail;
    }
    *out = c;
    return PV_OK;
fail:
    llm_ctx_free(c);
    return rc;
}

kv_cache *llm_ctx_kv(llm_ctx *c) { return c->kv; }

llm_device llm_ctx_device(const llm_ctx *c) { return c->cu ? LLM_DEVICE_CUDA : LLM_DEVICE_CPU; }

int llm_device_parse(const char *s, llm_device *out) {
    if (!s) return PV_EINVAL;
    if (!strcmp(s, "cpu")) *out = LLM_DEVICE_CPU;
    else if (!strcmp(s, "auto")) *out = LLM_DEVICE_AUTO;
    else if (!strcmp(s, "cuda")) *out = LLM_DEVICE_CUDA;
    else return PV_EINVAL;
    return PV_OK;
}

const char *llm_device_name(llm_device d) {
    return d == LLM_DEVICE_CUDA ? "cuda" : d == LLM_DEVICE_AUTO ? "auto" : "cpu";
}

/* Query positions per attention task when the cache lets one head's
 * queries be split (kv_attend_splits): a 256-token prompt chunk then gives
 * 4 tasks per KV head instead of 1, so 3 KV heads keep 2+ threads busy. */
#define ATTN_BLOCK 64

typedef struct {
    llm_ctx *c;
    const llm_batch_entry *e;
    int n;     /* batch entries */
    int layer;
    int rc; /* first error seen by any task (tasks only ever set it) */
} attn_job;

/* Task = (query block, KV head); an entry's blocks are numbered last first
 * so the longest (causal: latest queries see the most keys) start first. */
static void attn_task(void *ctx, int task, int thread) {
    attn_job *j = ctx;
    const llm_config *cf = &j->c->m->cfg;
    int b = task / cf->n_kv_heads, h = task % cf->n_kv_heads;
    int ei = 0;
    while (ei + 1 < j->n && j->c->blk0[ei + 1] <= b) ei++;
    const llm_batch_entry *e = &j->e[ei];
    if (j->c->part_len[ei]) { /* split-K: block = key range */
        llm_ctx *c = j->c;
        int pi = b - c->blk0[ei], t0 = pi * c->part_len[ei];
        size_t qd = (size_t)cf->n_heads * cf->head_dim, pr = (size_t)(c->part0[ei] + pi);
        int rc = kv_attend_part(c->kv, e->seq, j->layer, h, e->pos, 1, t0, t0 + c->part_len[ei],
                                c->q + (size_t)c->row0[ei] * qd, c->part_o + pr * qd,
                                c->part_m + pr * cf->n_heads, c->part_l + pr * cf->n_heads, thread);
        if (rc) j->rc = rc;
        return;
    }
    int nb = j->c->blk0[ei + 1] - j->c->blk0[ei];
    int bi = nb - 1 - (b - j->c->blk0[ei]);
    int i0 = nb == 1 ? 0 : bi * ATTN_BLOCK;
    int ni = nb == 1 ? e->n_tokens : (e->n_tokens - i0 < ATTN_BLOCK ? e->n_tokens - i0 : ATTN_BLOCK);
    size_t qd = (size_t)cf->n_heads * cf->head_dim;
    size_t r0 = (size_t)j->c->row0[ei] + (size_t)i0;
    int rc = kv_attend_group(j->c->kv, e->seq, j->layer, h, e->pos + i0, ni, j->c->q + r0 * qd,
                             j->c->att + r0 * qd, thread);
    if (rc) j->rc = rc;
}

/* The attention tasks of a batch: blk0 (query blocks per entry: a long
 * prompt chunk is cut into ATTN_BLOCK queries when the cache allows), then
 * split-K for the decode entries of a batch too small to keep the threads
 * busy (part_len, part0; see split_setup). */
static void attn_plan(llm_ctx *c, const llm_batch_entry *e, int n) {
    const int nkv = c->m->cfg.n_kv_heads, T = c->p.n_threads;
    c->blk0[0] = 0;
    for (int i = 0; i < n; i++) {
        int split = e[i].n_tokens > ATTN_BLOCK && kv_attend_splits(c->kv, e[i].seq);
        c->blk0[i + 1] = c->blk0[i] + (split ? (e[i].n_tokens + ATTN_BLOCK - 1) / ATTN_BLOCK : 1);
        c->part_len[i] = 0;
    }
    int tasks = c->blk0[n] * nkv;
    if (tasks >= 2 * T) return; /* enough tasks to balance already */
    /* parts per split entry: the first count >= 2 whose tasks fill every
     * thread evenly (3 KV heads, 2 threads: 2 parts, 3 + 3 tasks), else
     * about 4 tasks per thread */
    int want = 0;
    for (int p = 2; p <= SPLIT_MAX_PARTS && !want; p++)
        if (p * tasks >= 2 * T && p * tasks % T == 0) want = p;
    if (!want) want = (4 * T + tasks - 1) / tasks;
    if (want > SPLIT_MAX_PARTS) want = SPLIT_MAX_PARTS;
    int row = 0;
    for (int i = 0, add = 0; i < n; i++) {
        int len = e[i].pos + 1, a;
        c->blk0[i + 1] += add;
        if (e[i].n_tokens != 1 || len < c->split_min || (a = kv_attend_parts(c->kv, e[i].seq)) <= 0)
            continue;
        int parts = want, most = len / SPLIT_PART_MIN;
        if (parts > most) parts = most;
        if (parts < 2) continue;
        /* page-aligned ranges; the last may be shorter, none empty */
        int plen = ((len + parts - 1) / parts + a - 1) / a * a;
        parts = (len + plen - 1) / plen;
        if (parts < 2 || row + parts > c->part_rows) continue;
        c->part_len[i] = plen;
        c->part0[i] = row;
        row += parts;
        add += parts - 1;
        c->blk0[i + 1] += parts - 1;
    }
}

static int check_batch(llm_ctx *c, const llm_batch_entry *e, int n, int *total) {
    const llm_config *cf = &c->m->cfg;
    int t = 0;
    if (n <= 0 || n > c->p.max_seqs) return PV_EINVAL;
    for (int i = 0; i < n; i++) {
        if (e[i].seq < 0 || e[i].seq >= c->p.max_seqs || e[i].n_tokens <= 0 || !e[i].tokens)
            return PV_EINVAL;
        for (int j = 0; j < i; j++)
            if (e[j].seq == e[i].seq) return PV_EINVAL; /* one entry per sequence */
        if (e[i].pos != kv_seq_pos(c->kv, e[i].seq)) return PV_EINVAL;
        if ((int64_t)e[i].pos + e[i].n_tokens > c->p.max_ctx) return PV_ECTXFULL;
        for (int j = 0; j < e[i].n_tokens; j++)
            if (e[i].tokens[j] < 0 || e[i].tokens[j] >= cf->n_vocab) return PV_EINVAL;
        t += e[i].n_tokens;
    }
    if (t > c->p.max_batch_tokens) return PV_ERANGE;
    *total = t;
    return PV_OK;
}

static void add_bias(float *y, const float *b, int rows, int dim) {
    if (!b) return;
    for (int r = 0; r < rows; r++) ko_add(y + (size_t)r * dim, b, dim);
}

/* Packs the rows that produce logits to the front of att and x, in the
 * order the final norm takes them, and returns their count (0 without a
 * logits buffer). Called at the last layer after its attention: every
 * row's K and V are stored by then, and only these rows' output projection
 * and MLP reach a result, so a prompt chunk that wants no logits skips
 * them (llama.cpp does the same). Rows move only towards the front, in
 * increasing order, so no row is overwritten before it is read. */
static int pack_logit_rows(llm_ctx *c, const llm_batch_entry *e, int n, const float *logits, int D, int qd) {
    int nr = 0;
    for (int i = 0; i < n && logits; i++) {
        if (e[i].logits == LLM_LOGITS_NONE) continue;
        for (int j = e[i].logits == LLM_LOGITS_ALL ? 0 : e[i].n_tokens - 1; j < e[i].n_tokens; j++, nr++) {
            size_t r = (size_t)c->row0[i] + j;
            if (r == (size_t)nr) continue;
            memcpy(c->att + (size_t)nr * qd, c->att + r * qd, sizeof(float) * qd);
            memcpy(c->x + (size_t)nr * D, c->x + r * D, sizeof(float) * D);
        }
    }
    return nr;
}

int llm_decode(llm_ctx *c, const llm_batch_entry *e, int n, float *logits) {
    const llm_model *m = c->m;
    const llm_config *cf = &m->cfg;
    int T, rc;
    if ((rc = check_batch(c, e, n, &T))) return rc;
    if (c->cu) return llm_cuda_decode(c->cu, e, n, T, logits, NULL);
    const int D = cf->n_embd, hd = cf->head_dim;
    const int qd = cf->n_heads * hd, kvd = cf->n_kv_heads * hd;

    /* Embedding lookup and row bookkeeping. */
    for (int i = 0, r = 0; i < n; i++) {
        c->row0[i] = r;
        for (int j = 0; j < e[i].n_tokens; j++, r++) {
            if ((rc = km_get_row(&m->tok_embd, e[i].tokens[j], c->x + (size_t)r * D))) return rc;
            c->pos[r] = e[i].pos + j;
            ko_rope_angles(c->rope + (size_t)r * cf->rope_dim, cf->rope_dim, c->pos[r], cf->rope_base);
        }
    }

    for (int l = 0; l < cf->n_layers; l++) {
        const llm_layer *L = &m->layers[l];
        /* Attention block. */
        for (int r = 0; r < T; r++)
            ko_rmsnorm(c->xn + (size_t)r * D, c->x + (size_t)r * D, L->attn_norm, D, cf->norm_eps);
        { /* one pool run for the three products of xn (km_matmul_n) */
            const km_weight *w[3] = {&L->wq, &L->wk, &L->wv};
            float *y[3] = {c->q, c->k, c->v};
            if ((rc = km_matmul_n(c->pool, c->ks, w, 3, c->xn, T, y))) return rc;
        }
        add_bias(c->q, L->bq, T, qd);
        add_bias(c->k, L->bk, T, kvd);
        add_bias(c->v, L->bv, T, kvd);
        for (int r = 0; r < T; r++) {
            const float *cs = c->rope + (size_t)r * cf->rope_dim;
            ko_rope_cs(c->q + (size_t)r * qd, cf->n_heads, hd, cf->rope_dim, cs, cf->rope_neox);
            ko_rope_cs(c->k + (size_t)r * kvd, cf->n_kv_heads, hd, cf->rope_dim, cs, cf->rope_neox);
        }
        for (int i = 0; i < n; i++) {
            size_t r0 = (size_t)c->row0[i];
            rc = kv_store(c->kv, e[i].seq, l, e[i].pos, e[i].n_tokens, c->k + r0 * kvd,
                          c->v + r0 * kvd);
            if (rc) return rc;
        }
        if (l == 0) attn_plan(c, e, n); /* after the first store: a router knows each cache */
        attn_job job = {.c = c, .e = e, .n = n, .layer = l, .rc = 0};
        tp_run(c->pool, attn_task, &job, c->blk0[n] * cf->n_kv_heads);
        if (job.rc) return job.rc;
        for (int i = 0; i < n; i++) {
            if (!c->part_len[i]) continue;
            size_t pr = (size_t)c->part0[i];
            kv_attend_merge(c->blk0[i + 1] - c->blk0[i], cf->n_heads, hd, c->part_o + pr * qd,
                            (size_t)qd, c->part_m + pr * cf->n_heads, c->part_l + pr * cf->n_heads,
                            (size_t)cf->n_heads, c->att + (size_t)c->row0[i] * qd);
        }
        if (l == cf->n_layers - 1 && (T = pack_logit_rows(c, e, n, logits, D, qd)) == 0) break;
        if ((rc = km_matmul(c->pool, c->ks, &L->wo, c->att, T, c->tmp))) return rc;
        for (int r = 0; r < T; r++) ko_add(c->x + (size_t)r * D, c->tmp + (size_t)r * D, D);

        /* MLP block. */
        for (int r = 0; r < T; r++)
            ko_rmsnorm(c->xn + (size_t)r * D, c->x + (size_t)r * D, L->ffn_norm, D, cf->norm_eps);
        {
            const km_weight *w[2] = {&L->gate, &L->up};
            float *y[2] = {c->gate, c->up};
            if ((rc = km_matmul_n(c->pool, c->ks, w, 2, c->xn, T, y))) return rc;
        }
        for (int r = 0; r < T; r++) {
            size_t o = (size_t)r * cf->n_ff;
            ko_swiglu(c->gate + o, c->gate + o, c->up + o, cf->n_ff);
        }
        if ((rc = km_matmul(c->pool, c->ks, &L->down, c->gate, T, c->tmp))) return rc;
        for (int r = 0; r < T; r++) ko_add(c->x + (size_t)r * D, c->tmp + (size_t)r * D, D);
    }

    /* Final norm on the rows that want logits (packed to the front at the
     * last layer: T of them), so the vocabulary projection (the largest
     * matrix) runs once. */
    const int nr = cf->n_layers > 0 ? T : pack_logit_rows(c, e, n, logits, D, qd);
    for (int r = 0; r < nr; r++)
        ko_rmsnorm(c->xn + (size_t)r * D, c->x + (size_t)r * D, m->output_norm, D, cf->norm_eps);
    if (nr > 0 && logits) {
        if ((rc = km_matmul(c->pool, c->ks, &m->output, c->xn, nr, logits))) return rc;
    }
    return PV_OK;
}

static int logit_rows(const llm_batch_entry *e, int n) {
    int nr = 0;
    for (int i = 0; i < n; i++)
        nr += e[i].logits == LLM_LOGITS_ALL ? e[i].n_tokens : e[i].logits == LLM_LOGITS_LAST;
    return nr;
}

int llm_decode_greedy(llm_ctx *c, const llm_batch_entry *e, int n, float *logits, int32_t *tokens) {
    if (!tokens) return PV_EINVAL;
    if (c->cu) {
        int T, rc;
        if ((rc = check_batch(c, e, n, &T))) return rc;
        return llm_cuda_decode(c->cu, e, n, T, logits, tokens);
    }
    const int V = c->m->cfg.n_vocab, nr = logit_rows(e, n);
    if (!logits && nr > c->greedy_rows) {
        float *g = realloc(c->greedy, sizeof(float) * (size_t)nr * V);
        if (!g) return PV_ENOMEM;
        c->greedy = g;
        c->greedy_rows = nr;
    }
    float *lg = logits ? logits : c->greedy;
    int rc = llm_decode(c, e, n, lg);
    if (rc) return rc;
    for (int r = 0; r < nr; r++) {
        const float *x = lg + (size_t)r * V;
        int best = 0;
        for (int i = 1; i < V; i++)
            if (x[i] > x[best]) best = i;
        tokens[r] = best;
    }
    return PV_OK;
}

int llm_ctx_fill_random(llm_ctx *c, int seq, int n_tokens, uint64_t seed) {
    if (seq < 0 || seq >= c->p.max_seqs || n_tokens < 0 || n_tokens > c->p.max_ctx)
        return PV_EINVAL;
    kv_seq_reset(c->kv, seq);
    if (c->cu) return llm_cuda_fill_random(c->cu, seq, n_tokens, seed);
    if (!n_tokens) return PV_OK;
    const llm_config *cf = &c->m->cfg;
    size_t kvd = (size_t)cf->n_kv_heads * cf->head_dim, cnt = (size_t)n_tokens * kvd;
    float *k = malloc(sizeof(float) * cnt), *v = malloc(sizeof(float) * cnt);
    int rc = k && v ? PV_OK : PV_ENOMEM;
    for (int l = 0; !rc && l < cf->n_layers; l++) {
        /* Same value family as the GPU fill; the exact values do not matter. */
        for (size_t i = 0; i < cnt; i++) {
            k[i] = pvsyn_value(seed + (uint64_t)seq, PVSYN_KV_FILL, (uint64_t)l * cnt + i, 1.0f);
            v[i] = pvsyn_value(seed + (uint64_t)seq, PVSYN_KV_FILL + 1, (uint64_t)l * cnt + i, 1.0f);
        }
        rc = kv_store(c->kv, seq, l, 0, n_tokens, k, v);
    }
    free(k);
    free(v);
    return rc;
}
