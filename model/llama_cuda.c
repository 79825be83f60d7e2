/* The forward pass on a CUDA GPU: the same math as llama_forward.c, with
 * the kernels of kernels/cuda (pvcuda.h).
 *
 * At creation every weight is dequantized to FP16 on the host
 * (kq_dequantize_row) and uploaded once, Q|K|V and gate|up fused into one
 * matrix each so a layer runs 4 matrix products; a synthetic model without
 * host weights is generated in place on the GPU instead. The KV cache is
 * the GPU cache of cache/kv_cuda.h (kv_create on this CUDA context): the
 * plain FP16 one or, with a compressing policy, the mixed one; its kv_cache
 * face (positions, reset, usage) keeps callers such as the server unchanged.
 *
 * Per step (T rows = all tokens of all entries):
 *   x[T][D] f32      = embed(ids)
 *   per layer: xn[T][D] half = rmsnorm(x); qkv[T][qd+2kvd] f32 = Wqkv xn (+b)
 *              rope(q,k), k,v -> cache, att[T][qd] half = attention
 *              (kv_cuda_layer)
 *              x += Wo att; xn = rmsnorm(x); gu[T][2ff] f32 = Wgu xn
 *              act[T][ff] half = swiglu(gu); x += Wdown act
 *   xn[nr] = rmsnorm(x[rows wanting logits]); logits[nr][V] f32 = Wout xn
 * Half activations feed the products (FP32 accumulation); the residual
 * stream, projection outputs and queries stay f32. After the layers the
 * cache's demotions (kv_cuda_end). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "kv.h"
#include "kv_cuda.h"
#include "llama_internal.h"
#include "pverr.h"

#ifdef PIVOT_HAVE_CUDA

#include "cuda/pvcuda.h"
#include "cuda/synth_hash.h"
#include "quant.h"

typedef struct {
    uint16_t *wqkv; /* [qd + 2 kvd][D] */
    uint16_t *wo;   /* [D][qd] */
    uint16_t *wgu;  /* [2 ff][D] */
    uint16_t *down; /* [D][ff] */
    float *attn_norm, *ffn_norm; /* [D] */
    float *bqkv;                 /* [qd + 2 kvd] or NULL */
} cu_layer;

struct llm_cuda {
    const llm_model *m;
    pvc_ctx *pc;
    int B, max_seqs, max_ctx;
    pvc_attn_shape as;
    uint16_t *tok_embd, *output; /* output == tok_embd when tied */
    float *output_norm;
    cu_layer *L;
    float *x, *qkv, *gu, *logits, *lse, *part;
    uint16_t *xn, *att, *act;
    size_t part_floats;
    int32_t *d_meta, *h_meta; /* [4][B]: ids, pos, seq, logit rows (pinned mirror) */
    int32_t *d_argmax;
    kv_cache *kv;          /* the GPU cache; owned by the caller (kv_destroy first) */
    int rows_per_seq;      /* kv_cuda_rows_per_pass: 0 = no limit */
    kv_cuda_call *calls;   /* [B] the cache's view of a pass */
    float *rb_logits;      /* host rows of one pass when a call is split */
    int32_t *rb_ids;
    llm_batch_entry *rb_sub; /* [B] a split call's passes: entries, their source, */
    int *rb_idx, *rb_out0;   /* and each source entry's first output row */
};

int llm_cuda_usable(const llm_model *m, int gpu, char *why, size_t whylen) {
    char buf[200] = "";
    const llm_config *c = &m->cfg;
    int n = pvdev_cuda_count(buf, sizeof buf);
    const char *msg = NULL;
    if (n <= 0) msg = buf;
    else if (gpu < 0 || gpu >= n) msg = "no such GPU index";
    else if (c->head_dim != 64 && c->head_dim != 128 && c->head_dim != 256)
        msg = "head_dim must be 64, 128 or 256 on CUDA";
    else if (c->n_heads / c->n_kv_heads > 8) msg = "more than 8 query heads per KV head";
    else if (c->rope_dim > 512) msg = "rope dims above 512";
    if (msg && why && whylen) snprintf(why, whylen, "%s", msg);
    return msg == NULL;
}

/* One weight into dst (FP16 [rows][cols]): straight copy for F16, host
 * dequantization in slabs for every other GGUF type, or in-place generation
 * for a synthetic model without host data. */
static int put_weight(llm_cuda *cu, const km_weight *w, uint16_t *dst, uint32_t tensor,
                      float *f32buf, uint16_t *hbuf, size_t slab) {
    size_t n = (size_t)w->rows * w->cols;
    if (!w->data) {
        if (!cu->m->synthetic) return PV_EINVAL;
        return pvc_fill_synth(cu->pc, dst, n, cu->m->synth_seed, tensor,
                              llm_synth_scale(tensor, w->cols));
    }
    if (w->type == KQ_F16) {
        int rc = pvc_h2d(cu->pc, dst, w->data, n * 2);
        return rc ? rc : pvc_sync(cu->pc);
    }
    size_t rb = kq_row_bytes(w->type, w->cols), rows_per = slab / (size_t)w->cols;
    if (!rb || !rows_per) return PV_EINVAL;
    for (int64_t r0 = 0; r0 < w->rows; r0 += (int64_t)rows_per) {
        int64_t nr = w->rows - r0 < (int64_t)rows_per ? w->rows - r0 : (int64_t)rows_per;
        for (int64_t r = 0; r < nr; r++) {
            const uint8_t *src = (const uint8_t *)w->data + (size_t)(r0 + r) * rb;
            float *f = f32buf + (size_t)r * w->cols;
            if (kq_dequantize_row(w->type, src, f, w->cols)) return PV_EUNSUPPORTED;
        }
        size_t cnt = (size_t)nr * w->cols;
        for (size_t i = 0; i < cnt; i++) hbuf[i] = kq_fp32_to_fp16(f32buf[i]);
        int rc = pvc_h2d(cu->pc, dst + (size_t)r0 * w->cols, hbuf, cnt * 2);
        if (!rc) rc = pvc_sync(cu->pc); /* hbuf is reused next slab */
        if (rc) return rc;
    }
    return PV_OK;
}

static int put_f32(llm_cuda *cu, float **dst, const float *src, size_t n) {
    int rc = pvc_alloc(cu->pc, n * sizeof(float), (void **)dst);
    if (!rc) rc = pvc_h2d(cu->pc, *dst, src, n * sizeof(float));
    return rc ? rc : pvc_sync(cu->pc);
}

static int upload(llm_cuda *cu) {
    const llm_model *m = cu->m;
    const llm_config *c = &m->cfg;
    const size_t D = (size_t)c->n_embd, qd = (size_t)c->n_heads * c->head_dim,
                 kvd = (size_t)c->n_kv_heads * c->head_dim, ff = (size_t)c->n_ff;
    /* Slab of at least one row of the widest matrix (vocab rows are D wide). */
    size_t slab = (size_t)1 << 22;
    if (slab < ff) slab = ff;
    if (slab < D) slab = D;
    float *f32buf = malloc(slab * sizeof(float));
    uint16_t *hbuf = NULL;
    int rc = f32buf ? pvc_host_alloc(slab * 2, (void **)&hbuf) : PV_ENOMEM;
    if (!rc) rc = pvc_alloc(cu->pc, (size_t)c->n_vocab * D * 2, (void **)&cu->tok_embd);
    if (!rc) rc = put_weight(cu, &m->tok_embd, cu->tok_embd, PVSYN_TOK_EMBD, f32buf, hbuf, slab);
    if (!rc && c->tied_embeddings) cu->output = cu->tok_embd;
    else if (!rc) {
        rc = pvc_alloc(cu->pc, (size_t)c->n_vocab * D * 2, (void **)&cu->output);
        if (!rc) rc = put_weight(cu, &m->output, cu->output, PVSYN_OUTPUT, f32buf, hbuf, slab);
    }
    if (!rc) rc = put_f32(cu, &cu->output_norm, m->output_norm, D);
    for (int l = 0; !rc && l < c->n_layers; l++) {
        const llm_layer *H = &m->layers[l];
        cu_layer *G = &cu->L[l];
        rc = pvc_alloc(cu->pc, (qd + 2 * kvd) * D * 2, (void **)&G->wqkv);
        if (!rc) rc = put_weight(cu, &H->wq, G->wqkv, pvsyn_tensor(l, PVSYN_WQ), f32buf, hbuf, slab);
        if (!rc)
            rc = put_weight(cu, &H->wk, G->wqkv + qd * D, pvsyn_tensor(l, PVSYN_WK), f32buf, hbuf,
                            slab);
        if (!rc)
            rc = put_weight(cu, &H->wv, G->wqkv + (qd + kvd) * D, pvsyn_tensor(l, PVSYN_WV), f32buf,
                            hbuf, slab);
        if (!rc) rc = pvc_alloc(cu->pc, D * qd * 2, (void **)&G->wo);
        if (!rc) rc = put_weight(cu, &H->wo, G->wo, pvsyn_tensor(l, PVSYN_WO), f32buf, hbuf, slab);
        if (!rc) rc = pvc_alloc(cu->pc, 2 * ff * D * 2, (void **)&G->wgu);
        if (!rc)
            rc = put_weight(cu, &H->gate, G->wgu, pvsyn_tensor(l, PVSYN_GATE), f32buf, hbuf, slab);
        if (!rc)
            rc = put_weight(cu, &H->up, G->wgu + ff * D, pvsyn_tensor(l, PVSYN_UP), f32buf, hbuf,
                            slab);
        if (!rc) rc = pvc_alloc(cu->pc, D * ff * 2, (void **)&G->down);
        if (!rc)
            rc = put_weight(cu, &H->down, G->down, pvsyn_tensor(l, PVSYN_DOWN), f32buf, hbuf, slab);
        if (!rc) rc = put_f32(cu, &G->attn_norm, H->attn_norm, D);
        if (!rc) rc = put_f32(cu, &G->ffn_norm, H->ffn_norm, D);
        if (!rc && H->bq) {
            float *b = malloc((qd + 2 * kvd) * sizeof(float));
            if (!b) rc = PV_ENOMEM;
            else {
                memcpy(b, H->bq, qd * sizeof(float));
                memcpy(b + qd, H->bk, kvd * sizeof(float));
                memcpy(b + qd + kvd, H->bv, kvd * sizeof(float));
                rc = put_f32(cu, &G->bqkv, b, qd + 2 * kvd);
                free(b);
            }
        }
    }
    if (!rc) rc = pvc_sync(cu->pc);
    free(f32buf);
    pvc_host_free(hbuf);
    return rc;
}

void llm_cuda_free(llm_cuda *cu) {
    if (!cu) return;
    pvc_ctx *pc = cu->pc;
    if (pc) {
        pvc_sync(pc);
        if (cu->L)
            for (int l = 0; l < cu->m->cfg.n_layers; l++) {
                cu_layer *G = &cu->L[l];
                void *p[] = {G->wqkv, G->wo, G->wgu, G->down, G->attn_norm, G->ffn_norm, G->bqkv};
                for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) pvc_free(pc, p[i]);
            }
        if (cu->output != cu->tok_embd) pvc_free(pc, cu->output);
        void *p[] = {cu->tok_embd, cu->output_norm, cu->x, cu->qkv, cu->gu, cu->logits, cu->lse,
                     cu->part, cu->xn, cu->att, cu->act, cu->d_meta, cu->d_argmax};
        for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) pvc_free(pc, p[i]);
        pvc_host_free(cu->h_meta);
        pvc_destroy(pc);
    }
    free(cu->L);
    free(cu->calls);
    free(cu->rb_logits);
    free(cu->rb_ids);
    free(cu->rb_sub);
    free(cu->rb_idx);
    free(cu->rb_out0);
    free(cu);
}

int llm_cuda_create(const llm_model *m, const llm_ctx_params *p, const kv_policy *pol,
                    llm_cuda **out, kv_cache **kvo) {
    *out = NULL;
    *kvo = NULL;
    const llm_config *c = &m->cfg;
    if (!llm_cuda_usable(m, p->gpu, NULL, 0)) return PV_ENODEV;
    llm_cuda *cu = calloc(1, sizeof *cu);
    if (!cu) return PV_ENOMEM;
    cu->m = m;
    cu->B = p->max_batch_tokens;
    cu->max_seqs = p->max_seqs;
    cu->max_ctx = p->max_ctx > 0 ? p->max_ctx : c->n_ctx_train;
    cu->as = (pvc_attn_shape){.n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
                              .head_dim = c->head_dim, .rope_dim = c->rope_dim,
                              .rope_neox = c->rope_neox, .rope_base = c->rope_base};
    char err[256];
    int rc = pvc_create(p->gpu, &cu->pc, err, sizeof err);
    if (!rc && !(cu->L = calloc((size_t)c->n_layers, sizeof *cu->L))) rc = PV_ENOMEM;
    if (!rc) rc = upload(cu);
    const size_t B = (size_t)cu->B, D = (size_t)c->n_embd, hd = (size_t)c->head_dim;
    const size_t qd = (size_t)c->n_heads * hd, kvd = (size_t)c->n_kv_heads * hd,
                 ff = (size_t)c->n_ff;
    int rows = cu->B > cu->max_seqs ? cu->B : cu->max_seqs;
    cu->part_floats = pvc_attention_part_floats(&cu->as, rows);
#define ALLOC(ptr, bytes) \
    if (!rc) rc = pvc_alloc(cu->pc, (bytes), (void **)&(ptr))
    ALLOC(cu->x, B * D * 4);
    ALLOC(cu->xn, B * D * 2);
    ALLOC(cu->qkv, B * (qd + 2 * kvd) * 4);
    ALLOC(cu->att, B * qd * 2);
    ALLOC(cu->gu, B * 2 * ff * 4);
    ALLOC(cu->act, B * ff * 2);
    ALLOC(cu->logits, B * (size_t)c->n_vocab * 4);
    ALLOC(cu->lse, B * (size_t)c->n_heads * 4);
    ALLOC(cu->part, cu->part_floats * 4);
    ALLOC(cu->d_meta, 4 * B * 4);
    ALLOC(cu->d_argmax, B * 4);
#undef ALLOC
    if (!rc) rc = pvc_host_alloc(4 * B * 4, (void **)&cu->h_meta);
    if (!rc && !(cu->calls = malloc(sizeof *cu->calls * B))) rc = PV_ENOMEM;
    kv_policy full;
    if (!pol) kv_policy_preset("full", &full);
    if (!rc) { /* last: the cache's device memory must go before llm_cuda_free */
        kv_shape s = llm_kv_shape(m, p);
        s.gpu = cu->pc;
        s.gpu_rows = cu->B;
        s.max_ctx = cu->max_ctx;
        s.n_threads = p->n_threads > 0 ? p->n_threads : 1;
        rc = kv_create(&s, pol ? pol : &full, kvo, err, sizeof err);
    }
    if (rc) {
        llm_cuda_free(cu);
        *kvo = NULL;
        return rc;
    }
    cu->kv = *kvo;
    cu->rows_per_seq = kv_cuda_rows_per_pass(cu->kv);
    *out = cu;
    return PV_OK;
}

static int decode_pass(llm_cuda *cu, const llm_batch_entry *e, int n, int T, float *logits,
                       int32_t *argmax) {
    const llm_config *c = &cu->m->cfg;
    const int B = cu->B, D = c->n_embd, hd = c->head_dim, ff = c->n_ff;
    const int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd, ld = qd + 2 * kvd;
    int32_t *ids = cu->h_meta, *pos = ids + B, *seq = pos + B, *lrows = seq + B;
    int max_keys = 0, nr = 0;
    for (int i = 0, r = 0; i < n; i++) {
        for (int j = 0; j < e[i].n_tokens; j++, r++) {
            ids[r] = e[i].tokens[j];
            pos[r] = e[i].pos + j;
            seq[r] = e[i].seq;
        }
        cu->calls[i] = (kv_cuda_call){.seq = e[i].seq, .pos = e[i].pos, .n_tokens = e[i].n_tokens};
        if (e[i].logits == LLM_LOGITS_NONE) continue;
        int first = e[i].logits == LLM_LOGITS_ALL ? 0 : e[i].n_tokens - 1;
        for (int j = first; j < e[i].n_tokens; j++) lrows[nr++] = r - e[i].n_tokens + j;
    }
    pvc_ctx *pc = cu->pc;
    const int32_t *d_ids = cu->d_meta, *d_pos = d_ids + B, *d_seq = d_pos + B,
                  *d_lrows = d_seq + B;
    int rc = pvc_h2d(pc, cu->d_meta, cu->h_meta, (size_t)4 * B * sizeof(int32_t));
    if (!rc) rc = kv_cuda_begin(cu->kv, cu->calls, n, &max_keys);
    if (!rc) rc = pvc_embed(pc, cu->tok_embd, d_ids, T, D, cu->x);
    for (int l = 0; !rc && l < c->n_layers; l++) {
        const cu_layer *G = &cu->L[l];
        rc = pvc_rmsnorm(pc, cu->x, NULL, G->attn_norm, T, D, c->norm_eps, cu->xn);
        if (!rc) rc = pvc_matmul(pc, G->wqkv, ld, D, cu->xn, T, cu->qkv, 0, PVC_MM_AUTO);
        if (!rc && G->bqkv) rc = pvc_add_bias(pc, cu->qkv, ld, G->bqkv, T, ld);
        if (!rc)
            rc = kv_cuda_layer(cu->kv, cu->qkv, ld, T, &cu->as, d_pos, d_seq, l, max_keys,
                               cu->part, cu->part_floats, cu->att, cu->lse);
        if (!rc) rc = pvc_matmul(pc, G->wo, D, qd, cu->att, T, cu->x, 1, PVC_MM_AUTO);
        if (!rc) rc = pvc_rmsnorm(pc, cu->x, NULL, G->ffn_norm, T, D, c->norm_eps, cu->xn);
        if (!rc) rc = pvc_matmul(pc, G->wgu, 2 * ff, D, cu->xn, T, cu->gu, 0, PVC_MM_AUTO);
        if (!rc) rc = pvc_swiglu(pc, cu->gu, T, ff, cu->act);
        if (!rc) rc = pvc_matmul(pc, G->down, D, ff, cu->act, T, cu->x, 1, PVC_MM_AUTO);
    }
    if (!rc) rc = kv_cuda_end(cu->kv);
    if (!rc && nr > 0 && (logits || argmax)) {
        rc = pvc_rmsnorm(pc, cu->x, d_lrows, cu->output_norm, nr, D, c->norm_eps, cu->xn);
        if (!rc) rc = pvc_matmul(pc, cu->output, c->n_vocab, D, cu->xn, nr, cu->logits, 0, PVC_MM_AUTO);
        if (!rc && argmax) rc = pvc_argmax(pc, cu->logits, nr, c->n_vocab, cu->d_argmax);
        if (!rc && argmax) rc = pvc_d2h(pc, argmax, cu->d_argmax, (size_t)nr * sizeof(int32_t));
        if (!rc && logits)
            rc = pvc_d2h(pc, logits, cu->logits, (size_t)nr * c->n_vocab * sizeof(float));
    }
    if (!rc) rc = pvc_sync(pc);
    if (rc) return rc;
    kv_cuda_commit(cu->kv, cu->calls, n);
    return PV_OK;
}

/* A call whose entries carry more rows than the mixed cache's high tier
 * takes per pass runs as passes of at most rows_per_seq rows per entry;
 * output rows are put back in the caller's order. */
int llm_cuda_decode(llm_cuda *cu, const llm_batch_entry *e, int n, int T, float *logits,
                    int32_t *argmax) {
    int maxn = 0;
    for (int i = 0; i < n; i++)
        if (e[i].n_tokens > maxn) maxn = e[i].n_tokens;
    if (!cu->rows_per_seq || maxn <= cu->rows_per_seq) return decode_pass(cu, e, n, T, logits, argmax);
    const int V = cu->m->cfg.n_vocab, R = cu->rows_per_seq;
    if ((logits && !cu->rb_logits &&
         !(cu->rb_logits = malloc(sizeof(float) * (size_t)cu->B * V))) ||
        (argmax && !cu->rb_ids && !(cu->rb_ids = malloc(sizeof(int32_t) * (size_t)cu->B))) ||
        (!cu->rb_sub && !(cu->rb_sub = malloc(sizeof *cu->rb_sub * (size_t)cu->B))) ||
        (!cu->rb_idx && !(cu->rb_idx = malloc(sizeof(int) * (size_t)cu->B))) ||
        (!cu->rb_out0 && !(cu->rb_out0 = malloc(sizeof(int) * (size_t)cu->B))))
        return PV_ENOMEM;
    llm_batch_entry *sub = cu->rb_sub; /* n <= B: every entry has a token */
    int *idx = cu->rb_idx, *out0 = cu->rb_out0;
    for (int i = 0, o = 0; i < n; i++) { /* caller's first output row of entry i */
        out0[i] = o;
        o += e[i].logits == LLM_LOGITS_ALL ? e[i].n_tokens : e[i].logits == LLM_LOGITS_LAST;
    }
    for (int r0 = 0; r0 < maxn; r0 += R) {
        int m = 0, t = 0;
        for (int i = 0; i < n; i++) {
            if (e[i].n_tokens <= r0) continue;
            int take = e[i].n_tokens - r0 < R ? e[i].n_tokens - r0 : R;
            int last = r0 + take == e[i].n_tokens;
            llm_logits_mode md = e[i].logits == LLM_LOGITS_ALL                 ? LLM_LOGITS_ALL
                                 : e[i].logits == LLM_LOGITS_LAST && last ? LLM_LOGITS_LAST
                                                                          : LLM_LOGITS_NONE;
            sub[m] = (llm_batch_entry){.seq = e[i].seq, .pos = e[i].pos + r0, .n_tokens = take,
                                       .tokens = e[i].tokens + r0, .logits = md};
            idx[m++] = i;
            t += take;
        }
        int rc = decode_pass(cu, sub, m, t, logits ? cu->rb_logits : NULL,
                             argmax ? cu->rb_ids : NULL);
        if (rc) return rc;
        for (int j = 0, row = 0; j < m; j++) { /* scatter this pass's rows */
            int nr = sub[j].logits == LLM_LOGITS_ALL ? sub[j].n_tokens : sub[j].logits == LLM_LOGITS_LAST;
            int dst = out0[idx[j]] + (e[idx[j]].logits == LLM_LOGITS_ALL ? r0 : 0);
            if (logits && nr)
                memcpy(logits + (size_t)dst * V, cu->rb_logits + (size_t)row * V,
                       sizeof(float) * (size_t)nr * V);
            if (argmax && nr) memcpy(argmax + dst, cu->rb_ids + row, sizeof(int32_t) * nr);
            row += nr;
        }
    }
    return PV_OK;
}

int llm_cuda_fill_random(llm_cuda *cu, int seq, int n_tokens, uint64_t seed) {
    return kv_cuda_fill_random(cu->kv, seq, n_tokens, seed);
}

#else /* no CUDA in this build: the CPU path only */

int llm_cuda_usable(const llm_model *m, int gpu, char *why, size_t whylen) {
    (void)m, (void)gpu;
    if (why && whylen) snprintf(why, whylen, "built without CUDA");
    return 0;
}
int llm_cuda_create(const llm_model *m, const llm_ctx_params *p, const kv_policy *pol,
                    llm_cuda **out, kv_cache **kv) {
    (void)m, (void)p, (void)pol;
    *out = NULL;
    *kv = NULL;
    return PV_ENODEV;
}
void llm_cuda_free(llm_cuda *cu) { (void)cu; }
int llm_cuda_decode(llm_cuda *cu, const llm_batch_entry *e, int n, int T, float *logits,
                    int32_t *argmax) {
    (void)cu, (void)e, (void)n, (void)T, (void)logits, (void)argmax;
    return PV_ENODEV;
}
int llm_cuda_fill_random(llm_cuda *cu, int seq, int n_tokens, uint64_t seed) {
    (void)cu, (void)seq, (void)n_tokens, (void)seed;
    return PV_ENODEV;
}

#endif
