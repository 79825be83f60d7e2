/* Llama-family model: loading (config + weight validation) and the batched
 * forward pass. The math follows the reference: pre-norm blocks of
 * RMSNorm -> GQA attention with RoPE -> residual, RMSNorm -> SwiGLU MLP ->
 * residual; final RMSNorm and the output projection (tied or not). */
#include "llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "llama_internal.h"
#include "matmul.h"
#include "ops.h"
#include "pverr.h"
#include "quant.h"
#include "threadpool.h"

/* Reads "<arch>.<suffix>" as an integer; def < 0 means required. */
static int get_arch_int(const gguf_file *g, const char *arch, const char *suffix, int64_t def,
                        int64_t *out, char *err, size_t errlen) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_int(g, key, out);
    if (rc == PV_ENOTFOUND && def >= 0) {
        *out = def;
        return PV_OK;
    }
    if (rc == PV_ENOTFOUND) return pv_fail(err, errlen, PV_EFORMAT, "model: missing required key %s", key);
    if (rc) return pv_fail(err, errlen, PV_EFORMAT, "model: key %s is not an integer", key);
    if (*out <= 0 || *out > (1 << 24))
        return pv_fail(err, errlen, PV_EFORMAT, "model: key %s has implausible value %lld", key,
                    (long long)*out);
    return PV_OK;
}

static int get_arch_float(const gguf_file *g, const char *arch, const char *suffix, double def,
                          double *out, char *err, size_t errlen) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_float(g, key, out);
    if (rc == PV_ENOTFOUND) {
        *out = def;
        return PV_OK;
    }
    if (rc || !isfinite(*out) || *out <= 0)
        return pv_fail(err, errlen, PV_EFORMAT, "model: key %s is not a positive number", key);
    return PV_OK;
}

static int read_config(const gguf_file *g, llm_config *c, char *err, size_t errlen) {
    gguf_str a;
    if (gguf_get_str(g, "general.architecture", &a))
        return pv_fail(err, errlen, PV_EFORMAT, "model: missing required key general.architecture");
    const char *arch;
    if (gguf_str_eq(a, "llama")) {
        c->arch = LLM_ARCH_LLAMA;
        arch = "llama";
    } else if (gguf_str_eq(a, "qwen2")) {
        c->arch = LLM_ARCH_QWEN2;
        arch = "qwen2";
    } else {
        int n = a.len > 64 ? 64 : (int)a.len;
        return pv_fail(err, errlen, PV_EUNSUPPORTED,
                    "model: unsupported architecture '%.*s' (supported: llama, qwen2)", n, a.ptr);
    }
    int64_t v;
    int rc;
#define REQ_INT(field, suffix)                                                   \
    if ((rc = get_arch_int(g, arch, suffix, -1, &v, err, errlen))) return rc; \
    c->field = (int)v;
    REQ_INT(n_layers, "block_count");
    REQ_INT(n_embd, "embedding_length");
    REQ_INT(n_ff, "feed_forward_length");
    REQ_INT(n_heads, "attention.head_count");
#undef REQ_INT
    if ((rc = get_arch_int(g, arch, "attention.head_count_kv", c->n_heads, &v, err, errlen)))
        return rc;
    c->n_kv_heads = (int)v;
    if ((rc = get_arch_int(g, arch, "context_length", 2048, &v, err, errlen))) return rc;
    c->n_ctx_train = (int)v;
    if (c->n_embd % c->n_heads)
        return pv_fail(err, errlen, PV_EFORMAT, "model: embedding_length %d not divisible by head_count %d",
                    c->n_embd, c->n_heads);
    if ((rc = get_arch_int(g, arch, "attention.key_length", c->n_embd / c->n_heads, &v, err, errlen)))
        return rc;
    c->head_dim = (int)v;
    if (c->n_heads % c->n_kv_heads)
        return pv_fail(err, errlen, PV_EFORMAT, "model: head_count %d not divisible by head_count_kv %d",
                    c->n_heads, c->n_kv_heads);
    if ((rc = get_arch_int(g, arch, "rope.dimension_count", c->head_dim, &v, err, errlen))) return rc;
    c->rope_dim = (int)v;
    if (c->rope_dim > c->head_dim || c->rope_dim % 2)
        return pv_fail(err, errlen, PV_EFORMAT, "model: rope.dimension_count %d invalid for head size %d",
                    c->rope_dim, c->head_dim);
    double f;
    if ((rc = get_arch_float(g, arch, "rope.freq_base", 10000.0, &f, err, errlen))) return rc;
    c->rope_base = (float)f;
    if ((rc = get_arch_float(g, arch, "attention.layer_norm_rms_epsilon", 1e-5, &f, err, errlen)))
        return rc;
    c->norm_eps = (float)f;
    /* Qwen2 and other NEOX-style architectures rotate halves; GGUF llama
     * files are permuted at conversion for the adjacent-pair variant. */
    c->rope_neox = c->arch == LLM_ARCH_QWEN2;
    c->has_qkv_bias = c->arch == LLM_ARCH_QWEN2;
    return PV_OK;
}

/* Looks up a 2-D weight and checks its shape [cols, rows]. */
static int get_weight(const gguf_file *g, const char *name, int64_t cols, int64_t rows, km_weight *w,
                      char *err, size_t errlen) {
    const gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t) return pv_fail(err, errlen, PV_EFORMAT, "model: missing tensor %s", name);
    if (t->n_dims > 2 || t->ne[0] != cols || t->ne[1] != rows)
        return pv_fail(err, errlen, PV_EFORMAT,
                    "model: tensor %s has shape [%lld,%lld], expected [%lld,%lld]", name,
                    (long long)t->ne[0], (long long)t->ne[1], (long long)cols, (long long)rows);
    if (!kq_weight_supported(t->type))
        return pv_fail(err, errlen, PV_EUNSUPPORTED, "model: unsupported tensor type %u in tensor %s",
                    t->type, name);
    w->type = t->type;
    w->cols = cols;
    w->rows = rows;
    w->data = t->data;
    return PV_OK;
}

/* Loads a 1-D tensor of n elements as owned f32 (norms and biases are tiny,
 * and a copy frees the forward pass from caring about their type). */
static int get_vec(const gguf_file *g, const char *name, int64_t n, int required, float **out,
                   char *err, size_t errlen) {
    *out = NULL;
    const gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t) return required ? pv_fail(err, errlen, PV_EFORMAT, "model: missing tensor %s", name) : PV_OK;
    if (t->n_dims != 1 || t->ne[0] != n)
        return pv_fail(err, errlen, PV_EFORMAT, "model: tensor %s has %lld elements, expected %lld", name,
                    (long long)t->ne[0], (long long)n);
    float *v = malloc(sizeof(float) * n);
    if (!v) return PV_ENOMEM;
    if (kq_dequantize_row(t->type, t->data, v, n)) {
        free(v);
        return pv_fail(err, errlen, PV_EUNSUPPORTED, "model: cannot read tensor %s", name);
    }
    *out = v;
    return PV_OK;
}

static int load_layers(llm_model *m, char *err, size_t errlen) {
    const llm_config *c = &m->cfg;
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    /* every layer needs its own tensors: a block_count beyond the file's
     * tensor count is corrupt (and would allocate for it first) */
    if (c->n_layers > gguf_n_tensors(m->g))
        return pv_fail(err, errlen, PV_EFORMAT, "model: block_count %d, but the file has %lld tensors",
                       c->n_layers, (long long)gguf_n_tensors(m->g));
    m->layers = calloc(c->n_layers, sizeof *m->layers);
    if (!m->layers) return PV_ENOMEM;
    for (int i = 0; i < c->n_layers; i++) {
        llm_layer *L = &m->layers[i];
        char nm[96];
        int rc;
#define W(field, suffix, cols, rows)                                                    \
    snprintf(nm, sizeof nm, "blk.%d.%s.weight", i, suffix);                             \
    if ((rc = get_weight(m->g, nm, cols, rows, &L->field, err, errlen))) return rc;
        W(wq, "attn_q", c->n_embd, qd);
        W(wk, "attn_k", c->n_embd, kvd);
        W(wv, "attn_v", c->n_embd, kvd);
        W(wo, "attn_output", qd, c->n_embd);
        W(gate, "ffn_gate", c->n_embd, c->n_ff);
        W(up, "ffn_up", c->n_embd, c->n_ff);
        W(down, "ffn_down", c->n_ff, c->n_embd);
#undef W
#define V(field, suffix, n, req)                                                        \
    snprintf(nm, sizeof nm, "blk.%d.%s", i, suffix);                                    \
    if ((rc = get_vec(m->g, nm, n, req, &L->field, err, errlen))) return rc;
        V(attn_norm, "attn_norm.weight", c->n_embd, 1);
        V(ffn_norm, "ffn_norm.weight", c->n_embd, 1);
        V(bq, "attn_q.bias", qd, c->has_qkv_bias);
        V(bk, "attn_k.bias", kvd, c->has_qkv_bias);
        V(bv, "attn_v.bias", kvd, c->has_qkv_bias);
#undef V
    }
    return PV_OK;
}

/* A Q4_1 or Q8_0 matrix the 16-row kernels can read, repacked once here
 * (kernels/quant_q41r16.c: ~1.9x the row kernels over 8 tokens on
 * AVX512-VBMI; quant_q41r16_avx2.c, Q4_1 only, 1.14-1.28x on AVX2): a second
 * copy of the matrix in memory, owned by the model; the mapped file's copy
 * stays for the embedding lookup and the GPU. PIVOT_R16=0 skips it, for A/B
 * measurements. */
static int repack16(llm_model *m, km_weight *w) {
    const size_t n = km_repack16_bytes(w);
    const char *e = getenv("PIVOT_R16");
    if (!n || (e && e[0] == '0')) return PV_OK;
    void **o = realloc(m->owned, sizeof *o * (size_t)(m->n_owned + 1));
    if (!o) return PV_ENOMEM;
    m->owned = o;
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) return PV_ENOMEM;
    m->owned[m->n_owned++] = p;
    km_repack16(w, p);
    w->r16 = p;
    return PV_OK;
}

static int repack_all(llm_model *m) {
    int rc = PV_OK;
    for (int i = 0; !rc && i < m->cfg.n_layers; i++) {
        llm_layer *L = &m->layers[i];
        km_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
        for (size_t k = 0; !rc && k < sizeof ws / sizeof *ws; k++) rc = repack16(m, ws[k]);
    }
    return rc ? rc : repack16(m, &m->output);
}

int llm_load(const char *path, llm_model **out, char *err, size_t errlen) {
    *out = NULL;
    llm_model *m = calloc(1, sizeof *m);
    if (!m) return PV_ENOMEM;
    int rc = gguf_open(path, &m->g, err, errlen);
    if (rc) goto fail;
    if ((rc = read_config(m->g, &m->cfg, err, errlen))) goto fail;
    llm_config *c = &m->cfg;
    const gguf_tensor *te = gguf_find_tensor(m->g, "token_embd.weight");
    if (!te) {
        rc = pv_fail(err, errlen, PV_EFORMAT, "model: missing tensor token_embd.weight");
        goto fail;
    }
    c->n_vocab = (int)te->ne[1];
    if ((rc = get_weight(m->g, "token_embd.weight", c->n_embd, c->n_vocab, &m->tok_embd, err, errlen)))
        goto fail;
    if (gguf_find_tensor(m->g, "output.weight")) {
        if ((rc = get_weight(m->g, "output.weight", c->n_embd, c->n_vocab, &m->output, err, errlen)))
            goto fail;
    } else {
        m->output = m->tok_embd;
        c->tied_embeddings = 1;
    }
    if ((rc = get_vec(m->g, "output_norm.weight", c->n_embd, 1, &m->output_norm, err, errlen)))
        goto fail;
    if ((rc = load_layers(m, err, errlen))) goto fail;
    if ((rc = repack_all(m))) goto fail;
    if ((rc = tok_load(m->g, &m->vocab, err, errlen))) goto fail;
    if (tok_n_vocab(m->vocab) > c->n_vocab) {
        rc = pv_fail(err, errlen, PV_EFORMAT, "model: tokenizer has %d tokens but token_embd has %d rows",
                  tok_n_vocab(m->vocab), c->n_vocab);
        goto fail;
    }
    gguf_str tmpl = {0};
    int has_tmpl = gguf_get_str(m->g, "tokenizer.chat_template", &tmpl) == PV_OK;
    if ((rc = chat_template_parse(has_tmpl ? tmpl.ptr : NULL, has_tmpl ? tmpl.len : 0, &m->chat)))
        goto fail;
    gguf_str nm;
    if (gguf_get_str(m->g, "general.name", &nm) == PV_OK) {
        size_t n = nm.len < sizeof m->name - 1 ? nm.len : sizeof m->name - 1;
        memcpy(m->name, nm.ptr, n);
    } else {
        const char *b = strrchr(path, '/');
        snprintf(m->name, sizeof m->name, "%s", b ? b + 1 : path);
    }
    *out = m;
    return PV_OK;
fail:
    llm_free(m);
    return rc;
}

void llm_free(llm_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int i = 0; i < m->cfg.n_layers; i++) {
            llm_layer *L = &m->layers[i];
            free(L->attn_norm);
            free(L->ffn_norm);
            free(L->bq);
            free(L->bk);
            free(L->bv);
        }
        free(m->layers);
    }
    free(m->output_norm);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    tok_free(m->vocab);
    chat_template_free(m->chat);
    gguf_close(m->g);
    free(m);
}

const llm_config *llm_get_config(const llm_model *m) { return &m->cfg; }
const tok_vocab *llm_get_vocab(const llm_model *m) { return m->vocab; }
const chat_template *llm_get_chat(const llm_model *m) { return m->chat; }
const char *llm_get_name(const llm_model *m) { return m->name; }
