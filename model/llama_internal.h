/* Internal to the llm module (llama.c loads, llama_forward.c computes):
 * the model's read-only state. Not for other modules. */
#ifndef PIVOT_LLM_LLAMA_INTERNAL_H
#define PIVOT_LLM_LLAMA_INTERNAL_H

#include "gguf.h"
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
};

#endif
