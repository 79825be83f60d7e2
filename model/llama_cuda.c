/* The forward pass on a CUDA GPU: the same math as llama_forward.c, with
 * the kernels of kernels/cuda (pvcuda.h).
 *
 * At creation every weight is dequantized to FP16 on the host
 * (kq_dequantize_row) and uploaded once, Q|K|V and gate|up fused into one
 * matrix each so a layer runs 4 matrix products; a synthetic model without
 * host weights is generated in place on the GPU instead. The KV cache is the
 * plain FP16 layout of pvc_kv_fp16, allocated for max_seqs x max_ctx up
 * front; its kv_cache face (positions, reset, usage) keeps callers such as
 * the server unchanged.
 *
 * Per step (T rows = all tokens of all entries):
 *   x[T][D] f32      = embed(ids)
 *   per layer: xn[T][D] half = rmsnorm(x); qkv[T][qd+2kvd] f32 = Wqkv xn (+b)
 *              rope(q,k) and k,v -> cache; att[T][qd] half = attention
 *              x += Wo att; xn = rmsnorm(x); gu[T][2ff] f32 = Wgu xn
 *              act[T][ff] half = swiglu(gu); x += Wdown act
 *   xn[nr] = rmsnorm(x[rows wanting logits]); logits[nr][V] f32 = Wout xn
 * Half activations feed the products (FP32 accumulation); the residual
 * stream, projection outputs and queries stay f32. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
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

/* The kv_cache face of the GPU cache: host bookkeeping only. */
typedef struct {
    int max_seqs;
    size_t tok_bytes; /* FP16 bytes per token over all layers */
    int *len;         /* [max_seqs] tokens stored */
} gpu_kv;

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
    pvc_kv_fp16 kv;
    gpu_kv *gkv; /* owned by the kv_cache wrapper */
};

/* ---- the kv_cache face ---- */
static int gkv_store(void *impl, int seq, int layer, int pos0, int n, const float *k,
                     const float *v) {
    (void)impl, (void)seq, (void)layer, (void)pos0, (void)n, (void)k, (void)v;
    return PV_EUNSUPPORTED; /* the GPU forward pass writes the cache itself */
}
static int gkv_attend(void *impl, int seq, int layer, int kv_head, int pos0, int n, const float *q,
                      float *out, int thread) {
    (void)impl, (void)seq, (void)layer, (void)kv_head, (void)pos0, (void)n, (void)q, (void)out,
        (void)thread;
    return PV_EUNSUPPORTED;
}
/* Nothing to free on the GPU: slots are preallocated, a reset rewinds. */
static void gkv_reset(void *impl, int seq) { ((gpu_kv *)impl)->len[seq] = 0; }
static int gkv_pos(const void *impl, int seq) { return ((const gpu_kv *)impl)->len[seq]; }
static void gkv_usage(const void *impl, int seq, kv_usage *u) {
    const gpu_kv *g = impl;
    memset(u, 0, sizeof *u);
    u->n_tokens = u->n_high = g->len[seq];
    u->bytes_stored = u->bytes_fp16 = (size_t)g->len[seq] * g->tok_bytes;
}
static void gkv_destroy(void *impl) {
    gpu_kv *g = impl;
    if (g) free(g->len);
    free(g);
}
static const kv_vtable gkv_vt = {
    .name = "fp16-cuda",
    .store = gkv_store,
    .attend_group = gkv_attend,
    .seq_reset = gkv_reset,
    .seq_pos = gkv_pos,
    .seq_usage = gkv_usage,
    .destroy = gkv_destroy,
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
                     cu->part, cu->xn, cu->att, cu->act, cu->d_meta, cu->d_argmax, cu->kv.k,
                     cu->kv.v};
        for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) pvc_free(pc, p[i]);
        pvc_host_free(cu->h_meta);
        pvc_destroy(pc);
    }
    free(cu->L);
    free(cu);
}

int llm_cuda_create(const llm_model *m, const llm_ctx_params *p, llm_cuda **out, kv_cache **kvo) {
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
    cu->kv = (pvc_kv_fp16){.max_seqs = cu->max_seqs, .n_layers = c->n_layers,
                           .n_kv_heads = c->n_kv_heads, .head_dim = c->head_dim,
                           .max_ctx = cu->max_ctx};
    size_t kv_bytes = (size_t)cu->max_seqs * c->n_layers * kvd * (size_t)cu->max_ctx * 2;
    ALLOC(cu->kv.k, kv_bytes);
    ALLOC(cu->kv.v, kv_bytes);
#undef ALLOC
    if (!rc) rc = pvc_host_alloc(4 * B * 4, (void **)&cu->h_meta);
    gpu_kv *g = NULL;
    if (!rc) {
        g = calloc(1, sizeof *g);
        if (g) g->len = calloc((size_t)cu->max_seqs, sizeof(int));
        if (!g || !g->len) {
            gkv_destroy(g);
            rc = PV_ENOMEM;
        }
    }
    if (!rc) {
        g->max_seqs = cu->max_seqs;
        g->tok_bytes = (size_t)c->n_layers * kvd * 2 * 2;
        kv_shape s = {.n_layers = c->n_layers, .n_heads = c->n_heads,
                      .n_kv_heads = c->n_kv_heads, .head_dim = c->head_dim,
                      .max_seqs = cu->max_seqs, .max_ctx = cu->max_ctx,
                      .n_threads = p->n_threads > 0 ? p->n_threads : 1};
        cu->gkv = g;
        rc = kv_create_with(&gkv_vt, g, &s, kvo); /* frees g on failure */
    }
    if (rc) {
        llm_cuda_free(cu);
        *kvo = NULL;
        return rc;
    }
    *out = cu;
    return PV_OK;
}

int llm_cuda_decode(llm_cuda *cu, const llm_batch_entry *e, int n, int T, float *logits,
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
        if (e[i].pos + e[i].n_tokens > max_keys) max_keys = e[i].pos + e[i].n_tokens;
        if (e[i].logits == LLM_LOGITS_NONE) continue;
        int first = e[i].logits == LLM_LOGITS_ALL ? 0 : e[i].n_tokens - 1;
        for (int j = first; j < e[i].n_tokens; j++) lrows[nr++] = r - e[i].n_tokens + j;
    }
    pvc_ctx *pc = cu->pc;
    const int32_t *d_ids = cu->d_meta, *d_pos = d_ids + B, *d_seq = d_pos + B,
                  *d_lrows = d_seq + B;
    int rc = pvc_h2d(pc, cu->d_meta, cu->h_meta, (size_t)4 * B * sizeof(int32_t));
    if (!rc) rc = pvc_embed(pc, cu->tok_embd, d_ids, T, D, cu->x);
    for (int l = 0; !rc && l < c->n_layers; l++) {
        const cu_layer *G = &cu->L[l];
        rc = pvc_rmsnorm(pc, cu->x, NULL, G->attn_norm, T, D, c->norm_eps, cu->xn);
        if (!rc) rc = pvc_matmul(pc, G->wqkv, ld, D, cu->xn, T, cu->qkv, 0, PVC_MM_AUTO);
        if (!rc && G->bqkv) rc = pvc_add_bias(pc, cu->qkv, ld, G->bqkv, T, ld);
        if (!rc) rc = pvc_rope_store(pc, cu->qkv, ld, T, &cu->as, d_pos, d_seq, &cu->kv, l);
        if (!rc)
            rc = pvc_attention(pc, cu->qkv, ld, T, &cu->as, d_pos, d_seq, &cu->kv, l, max_keys,
                               cu->part, cu->part_floats, cu->att, cu->lse);
        if (!rc) rc = pvc_matmul(pc, G->wo, D, qd, cu->att, T, cu->x, 1, PVC_MM_AUTO);
        if (!rc) rc = pvc_rmsnorm(pc, cu->x, NULL, G->ffn_norm, T, D, c->norm_eps, cu->xn);
        if (!rc) rc = pvc_matmul(pc, G->wgu, 2 * ff, D, cu->xn, T, cu->gu, 0, PVC_MM_AUTO);
        if (!rc) rc = pvc_swiglu(pc, cu->gu, T, ff, cu->act);
        if (!rc) rc = pvc_matmul(pc, G->down, D, ff, cu->act, T, cu->x, 1, PVC_MM_AUTO);
    }
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
    for (int i = 0; i < n; i++) cu->gkv->len[e[i].seq] = e[i].pos + e[i].n_tokens;
    return PV_OK;
}

int llm_cuda_fill_random(llm_cuda *cu, int seq, int n_tokens, uint64_t seed) {
    if (seq < 0 || seq >= cu->max_seqs || n_tokens < 0 || n_tokens > cu->max_ctx) return PV_EINVAL;
    int rc = pvc_kv_fill_synth(cu->pc, &cu->kv, seq, n_tokens, seed);
    if (!rc) rc = pvc_sync(cu->pc);
    if (!rc) cu->gkv->len[seq] = n_tokens;
    return rc;
}

#else /* no CUDA in this build: the CPU path only */

int llm_cuda_usable(const llm_model *m, int gpu, char *why, size_t whylen) {
    (void)m, (void)gpu;
    if (why && whylen) snprintf(why, whylen, "built without CUDA");
    return 0;
}
int llm_cuda_create(const llm_model *m, const llm_ctx_params *p, llm_cuda **out, kv_cache **kv) {
    (void)m, (void)p;
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
