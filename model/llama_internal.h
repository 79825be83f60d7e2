/* Internal to the llm module (llama.c loads, llama_forward.c computes):
 * the model's read-only state. Not for other modules. */
#ifndef PIVOT_LLM_LLAMA_INTERNAL_H
#define PIVOT_LLM_LLAMA_INTERNAL_H

#include "gguf.h"
#include "kv_policy.h"
#include "llama.h"
#include "matmul.h"

typedef struct {
    km_weight wq, wk, wv, wo, gate, up, down;
    float *attn_norm, *ffn_norm; /* [n_embd], owned */
    float *bq, *bk, *bv;         /* qwen2 biases, owned; NULL for llama */
} llm_layer;

struct llm_model {
    gguf_file *g; /* owns the mapping every km_weight points into */
    llm_config cfg;
    km_weight tok_embd; /* ne = [n_embd, n_vocab] */
    km_weight output;   /* == tok_embd when tied */
    float *output_norm; /* [n_embd], owned */
    llm_layer *layers;  /* [n_layers] */
    tok_vocab *vocab;
    chat_template *chat;
    char name[128];
    /* Synthetic models (llama_synth.c): no file; weight data generated from
     * synth_seed into `owned` buffers, or NULL when only the GPU holds them. */
    int synthetic;
    uint64_t synth_seed;
    void **owned;
    int n_owned;
};

/* llama_synth.c */
int llm_synth_parse(const char *spec, llm_config *out, char *err, size_t errlen);
/* Scale of a synthetic tensor's uniform values (pvsyn_value's `scale`). */
float llm_synth_scale(uint32_t tensor, int64_t cols);

/* llama_cuda.c: the forward pass on the GPU (stubs without CUDA). */
typedef struct llm_cuda llm_cuda;
/* Uploads (or generates) the weights, allocates activations and the KV
 * cache (kv_create on the GPU, cache/kv_cuda.h): plain FP16 when pol is NULL
 * or plain, else the mixed cache of that policy (kv_get_policy's copy); *kv
 * receives the cache, to be destroyed before llm_cuda_free. */
int llm_cuda_create(const llm_model *m, const llm_ctx_params *p, const kv_policy *pol,
                    llm_cuda **out, kv_cache **kv);
void llm_cuda_free(llm_cuda *cu);
/* A batch already validated by llm_decode (T tokens in all). */
int llm_cuda_decode(llm_cuda *cu, const llm_batch_entry *e, int n, int T, float *logits,
                    int32_t *argmax);
int llm_cuda_fill_random(llm_cuda *cu, int seq, int n_tokens, uint64_t seed);

#endif
