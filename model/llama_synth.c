/* Synthetic models: a Llama-shaped llm_model with random FP16 weights and no
 * file, so throughput can be measured at real sizes on a machine that has
 * no network (and no 16 GB download).
 *
 * Values come from kernels/cuda/synth_hash.h, a stateless hash of (seed,
 * tensor, index): the CPU generates them into host memory, the CUDA backend
 * generates the same bits in place on the GPU. A model created without host
 * weights (host_weights = 0) therefore costs no host memory and runs only on
 * CUDA. There is no tokenizer or chat template: callers pass token ids. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/synth_hash.h"
#include "llama_internal.h"
#include "pverr.h"
#include "quant.h"

typedef struct {
    const char *name;
    llm_config c;
} synth_shape;

/* Shapes of the models people measure against (published configs). */
static const synth_shape shapes[] = {
    {"llama3-8b", {.n_layers = 32, .n_embd = 4096, .n_ff = 14336, .n_heads = 32, .n_kv_heads = 8,
                   .n_vocab = 128256, .n_ctx_train = 8192, .rope_base = 500000.f}},
    {"llama2-7b", {.n_layers = 32, .n_embd = 4096, .n_ff = 11008, .n_heads = 32, .n_kv_heads = 32,
                   .n_vocab = 32000, .n_ctx_train = 4096, .rope_base = 10000.f}},
    {"smollm2-135m", {.n_layers = 30, .n_embd = 576, .n_ff = 1536, .n_heads = 9, .n_kv_heads = 3,
                      .n_vocab = 49152, .n_ctx_train = 8192, .rope_base = 100000.f,
                      .tied_embeddings = 1}},
    {"smollm2-360m", {.n_layers = 32, .n_embd = 960, .n_ff = 2560, .n_heads = 15, .n_kv_heads = 5,
                      .n_vocab = 49152, .n_ctx_train = 8192, .rope_base = 100000.f,
                      .tied_embeddings = 1}},
    /* For tests: a few layers, GQA, head_dim 64, small vocab. */
    {"tiny", {.n_layers = 2, .n_embd = 256, .n_ff = 512, .n_heads = 4, .n_kv_heads = 2,
              .n_vocab = 1000, .n_ctx_train = 2048, .rope_base = 10000.f}},
};

/* Applies "key=value" to c. */
static int set_key(llm_config *c, const char *kv, char *err, size_t errlen) {
    const char *eq = strchr(kv, '=');
    if (!eq) return pv_fail(err, errlen, PV_EINVAL, "synthetic: expected key=value, got '%s'", kv);
    size_t kl = (size_t)(eq - kv);
    char *end;
    double v = strtod(eq + 1, &end);
    if (end == eq + 1 || *end || !isfinite(v) || v < 0)
        return pv_fail(err, errlen, PV_EINVAL, "synthetic: bad value in '%s'", kv);
    static const struct {
        const char *k;
        size_t off;
    } ints[] = {
        {"layers", offsetof(llm_config, n_layers)},  {"embd", offsetof(llm_config, n_embd)},
        {"ff", offsetof(llm_config, n_ff)},          {"heads", offsetof(llm_config, n_heads)},
        {"kv", offsetof(llm_config, n_kv_heads)},    {"head_dim", offsetof(llm_config, head_dim)},
        {"vocab", offsetof(llm_config, n_vocab)},    {"ctx", offsetof(llm_config, n_ctx_train)},
        {"rope_dim", offsetof(llm_config, rope_dim)}, {"neox", offsetof(llm_config, rope_neox)},
        {"bias", offsetof(llm_config, has_qkv_bias)}, {"tied", offsetof(llm_config, tied_embeddings)},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (strlen(ints[i].k) == kl && !strncmp(kv, ints[i].k, kl)) {
            if (v != floor(v) || v > (1 << 24))
                return pv_fail(err, errlen, PV_EINVAL, "synthetic: '%s' needs an integer", kv);
            *(int *)((char *)c + ints[i].off) = (int)v;
            return PV_OK;
        }
    }
    if (kl == 9 && !strncmp(kv, "rope_base", 9)) c->rope_base = (float)v;
    else if (kl == 3 && !strncmp(kv, "eps", 3)) c->norm_eps = (float)v;
    else
        return pv_fail(err, errlen, PV_EINVAL,
                    "synthetic: unknown key '%.*s' (layers, embd, ff, heads, kv, head_dim, vocab, "
                    "ctx, rope_dim, rope_base, neox, bias, tied, eps)",
                    (int)kl, kv);
    return PV_OK;
}

int llm_synth_parse(const char *spec, llm_config *out, char *err, size_t errlen) {
    llm_config c = shapes[0].c;
    char buf[512];
    if (!spec || !*spec || strlen(spec) >= sizeof buf)
        return pv_fail(err, errlen, PV_EINVAL, "synthetic: empty or too long shape");
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    int first = 1;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save), first = 0) {
        if (first && !strchr(tok, '=')) {
            size_t i;
            for (i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
                if (!strcmp(tok, shapes[i].name)) break;
            if (i == sizeof shapes / sizeof shapes[0])
                return pv_fail(err, errlen, PV_ENOTFOUND,
                            "synthetic: unknown shape '%s' (llama3-8b, llama2-7b, smollm2-135m, "
                            "smollm2-360m, tiny, or key=value,...)", tok);
            c = shapes[i].c;
            continue;
        }
        int rc = set_key(&c, tok, err, errlen);
        if (rc) return rc;
    }
    if (c.n_layers <= 0 || c.n_embd <= 0 || c.n_ff <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 ||
        c.n_vocab <= 0 || c.n_ctx_train <= 0)
        return pv_fail(err, errlen, PV_EINVAL, "synthetic: every dimension must be positive");
    if (c.n_heads % c.n_kv_heads)
        return pv_fail(err, errlen, PV_EINVAL, "synthetic: heads %d not divisible by kv %d", c.n_heads,
                    c.n_kv_heads);
    if (!c.head_dim) {
        if (c.n_embd % c.n_heads)
            return pv_fail(err, errlen, PV_EINVAL, "synthetic: embd %d not divisible by heads %d",
                        c.n_embd, c.n_heads);
        c.head_dim = c.n_embd / c.n_heads;
    }
    if (!c.rope_dim) c.rope_dim = c.head_dim;
    if (c.rope_dim > c.head_dim || c.rope_dim % 2)
        return pv_fail(err, errlen, PV_EINVAL, "synthetic: rope_dim %d invalid for head_dim %d",
                    c.rope_dim, c.head_dim);
    if (c.rope_base <= 0) c.rope_base = 10000.f;
    if (c.norm_eps <= 0) c.norm_eps = 1e-5f;
    c.rope_neox = c.rope_neox != 0;
    c.has_qkv_bias = c.has_qkv_bias != 0;
    c.tied_embeddings = c.tied_embeddings != 0;
    /* Biases and NEOX rotation are what distinguishes qwen2 for the forward pass. */
    c.arch = c.has_qkv_bias || c.rope_neox ? LLM_ARCH_QWEN2 : LLM_ARCH_LLAMA;
    *out = c;
    return PV_OK;
}

float llm_synth_scale(uint32_t tensor, int64_t cols) {
    /* Embedding/output rows U(-1,1); layer matrices U(-a,a) with a =
     * sqrt(3/cols), variance 1/cols, so every projection keeps activations
     * of unit scale and 32 random layers neither explode nor vanish. */
    if (tensor == PVSYN_TOK_EMBD || tensor == PVSYN_OUTPUT) return 1.0f;
    return sqrtf(3.0f / (float)cols);
}

static void *own(llm_model *m, size_t bytes) {
    void *p = malloc(bytes);
    if (!p) return NULL;
    void **o = realloc(m->owned, sizeof *o * (size_t)(m->n_owned + 1));
    if (!o) {
        free(p);
        return NULL;
    }
    m->owned = o;
    m->owned[m->n_owned++] = p;
    return p;
}

/* An F16 weight [rows][cols]; host data generated when asked. */
static int weight(llm_model *m, km_weight *w, int64_t cols, int64_t rows, uint32_t tensor,
                  int host) {
    w->type = KQ_F16;
    w->cols = cols;
    w->rows = rows;
    w->data = NULL;
    if (!host) return PV_OK;
    size_t n = (size_t)cols * rows;
    uint16_t *d = own(m, n * sizeof(uint16_t));
    if (!d) return PV_ENOMEM;
    float sc = llm_synth_scale(tensor, cols);
    for (size_t i = 0; i < n; i++) d[i] = kq_fp32_to_fp16(pvsyn_value(m->synth_seed, tensor, i, sc));
    w->data = d;
    return PV_OK;
}

/* f32 vectors (norms, biases) are always on the host: they are tiny and the
 * CUDA backend uploads them like a file model's. */
static int vec(llm_model *m, float **out, int64_t n, uint32_t tensor, float base, float amp) {
    float *v = malloc(sizeof(float) * (size_t)n);
    if (!v) return PV_ENOMEM;
    for (int64_t i = 0; i < n; i++) v[i] = base + pvsyn_value(m->synth_seed, tensor, (uint64_t)i, amp);
    *out = v;
    return PV_OK;
}

int llm_synthetic(const char *spec, uint64_t seed, int host_weights, llm_model **out, char *err,
                  size_t errlen) {
    *out = NULL;
    llm_config c;
    int rc = llm_synth_parse(spec, &c, err, errlen);
    if (rc) return rc;
    llm_model *m = calloc(1, sizeof *m);
    if (!m) return PV_ENOMEM;
    m->cfg = c;
    m->synthetic = 1;
    m->synth_seed = seed;
    snprintf(m->name, sizeof m->name, "synthetic:%.100s", spec);
    const int64_t D = c.n_embd, qd = (int64_t)c.n_heads * c.head_dim,
                  kvd = (int64_t)c.n_kv_heads * c.head_dim;
    rc = weight(m, &m->tok_embd, D, c.n_vocab, PVSYN_TOK_EMBD, host_weights);
    if (!rc && c.tied_embeddings) m->output = m->tok_embd;
    else if (!rc) rc = weight(m, &m->output, D, c.n_vocab, PVSYN_OUTPUT, host_weights);
    if (!rc) rc = vec(m, &m->output_norm, D, PVSYN_OUTPUT_NORM, 1.0f, 0.1f);
    if (!rc && !(m->layers = calloc((size_t)c.n_layers, sizeof *m->layers))) rc = PV_ENOMEM;
    for (int l = 0; !rc && l < c.n_layers; l++) {
        llm_layer *L = &m->layers[l];
#define WT(f, kind, cols, rows) \
    if (!rc) rc = weight(m, &L->f, cols, rows, pvsyn_tensor(l, kind), host_weights)
        WT(wq, PVSYN_WQ, D, qd);
        WT(wk, PVSYN_WK, D, kvd);
        WT(wv, PVSYN_WV, D, kvd);
        WT(wo, PVSYN_WO, qd, D);
        WT(gate, PVSYN_GATE, D, c.n_ff);
        WT(up, PVSYN_UP, D, c.n_ff);
        WT(down, PVSYN_DOWN, c.n_ff, D);
#undef WT
        if (!rc) rc = vec(m, &L->attn_norm, D, pvsyn_tensor(l, PVSYN_ATTN_NORM), 1.0f, 0.1f);
        if (!rc) rc = vec(m, &L->ffn_norm, D, pvsyn_tensor(l, PVSYN_FFN_NORM), 1.0f, 0.1f);
        if (!rc && c.has_qkv_bias) {
            rc = vec(m, &L->bq, qd, pvsyn_tensor(l, PVSYN_BQ), 0.0f, 0.1f);
            if (!rc) rc = vec(m, &L->bk, kvd, pvsyn_tensor(l, PVSYN_BK), 0.0f, 0.1f);
            if (!rc) rc = vec(m, &L->bv, kvd, pvsyn_tensor(l, PVSYN_BV), 0.0f, 0.1f);
        }
    }
    if (!rc && (rc = chat_template_parse(NULL, 0, &m->chat))) {
        /* an empty template: callers that ask for one get CHAT_UNKNOWN */
    }
    if (rc) {
        llm_free(m);
        if (rc == PV_ENOMEM) pv_fail(err, errlen, rc, "synthetic: out of host memory");
        return rc;
    }
    *out = m;
    return PV_OK;
}

int llm_is_synthetic(const llm_model *m) { return m->synthetic; }
