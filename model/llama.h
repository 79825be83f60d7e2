/* llm: Llama-family models (llama, qwen2) — loading and the batched forward
 * pass.
 *
 * llm_model is read-only after llm_load (weights point into the mmap'ed GGUF,
 * config, tokenizer, chat template) and may be shared. llm_ctx is the mutable
 * run state of one decoder thread: thread pool, scratch buffers and the KV
 * cache. One llm_decode call advances any number of sequences at once, each
 * with its own prompt chunk or next token: all their tokens go through the
 * matrix products together; attention runs per sequence against its cache. */
#ifndef PIVOT_LLM_LLAMA_H
#define PIVOT_LLM_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "kv.h"
#include "tokenizer.h"

typedef enum { LLM_ARCH_LLAMA = 0, LLM_ARCH_QWEN2 = 1 } llm_arch;

typedef struct {
    llm_arch arch;
    int n_layers;
    int n_embd;
    int n_ff;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int n_vocab;
    int n_ctx_train;
    int rope_dim;  /* rotated dims per head (<= head_dim) */
    int rope_neox; /* 1: rotate (x[i], x[i+d/2]); 0: adjacent pairs */
    float rope_base;
    float norm_eps;
    int has_qkv_bias;
    int tied_embeddings; /* no output.weight: token_embd.weight is reused */
} llm_config;

typedef struct llm_model llm_model;

/* Errors name the problem: "model: missing required key llama.block_count",
 * "model: tensor blk.3.attn_q.weight has shape [576,192], expected [576,576]". */
int llm_load(const char *path, llm_model **out, char *err, size_t errlen);
void llm_free(llm_model *m);
const llm_config *llm_get_config(const llm_model *m);
const tok_vocab *llm_get_vocab(const llm_model *m);
const chat_template *llm_get_chat(const llm_model *m);
const char *llm_get_name(const llm_model *m); /* general.name or file stem */

/* Synthetic model (model/llama_synth.c): random FP16 weights of a Llama
 * shape, no file, no tokenizer (llm_get_vocab returns NULL: pass token ids).
 * spec: a named shape ("llama3-8b", "llama2-7b", "smollm2-135m",
 * "smollm2-360m", "tiny"), optionally followed by overrides, or overrides
 * alone on the llama3-8b base: "layers=32,embd=4096,ff=14336,heads=32,kv=8,
 * vocab=128256" (keys: layers embd ff heads kv head_dim vocab ctx rope_dim
 * rope_base neox bias tied eps). host_weights = 0 generates nothing on the
 * host: such a model runs only on CUDA, which generates the same values in
 * place on the GPU. */
int llm_synthetic(const char *spec, uint64_t seed, int host_weights, llm_model **out, char *err,
                  size_t errlen);
int llm_is_synthetic(const llm_model *m);

/* Where a ctx runs. CPU is 0 so zero-initialized params keep the CPU path;
 * AUTO takes CUDA when the build has it, a GPU is present and the model's
 * shape and cache are supported there, else the CPU. */
typedef enum { LLM_DEVICE_CPU = 0, LLM_DEVICE_AUTO = 1, LLM_DEVICE_CUDA = 2 } llm_device;
/* 1 when this build has CUDA, GPU `gpu` is present and the model's shape is
 * one the CUDA kernels support; else 0 and why (may be NULL) says which. */
int llm_cuda_usable(const llm_model *m, int gpu, char *why, size_t whylen);
/* "cpu", "auto", "cuda" -> 0 and *out; PV_EINVAL otherwise. */
int llm_device_parse(const char *s, llm_device *out);
const char *llm_device_name(llm_device d);

typedef struct {
    int n_threads;        /* <= 0: one per CPU */
    int max_seqs;         /* KV slots */
    int max_ctx;          /* tokens per sequence (<= 0: n_ctx_train) */
    int max_batch_tokens; /* tokens one llm_decode call may carry */
    llm_device device;    /* LLM_DEVICE_CPU (default), _AUTO or _CUDA */
    int gpu;              /* CUDA device index with _CUDA/_AUTO */
    /* Split-K decode attention (CPU, llama_forward.c): a one-token entry
     * whose context holds at least this many tokens has each KV head's
     * attention cut into key ranges run on different threads and merged,
     * when the batch has fewer (entry, KV head) tasks than 2 x threads.
     * 0: the default (LLM_ATTN_SPLIT_DEFAULT); < 0: never (pivot serve,
     * generate and eval: --attn-split off|N, or $PIVOT_ATTN_SPLIT). */
    int attn_split;
} llm_ctx_params;

#define LLM_ATTN_SPLIT_DEFAULT 512

typedef struct llm_ctx llm_ctx;

/* kv: a cache built for this model's shape, owned by the ctx from now on;
 * NULL creates the plain FP16 cache. On CUDA the cache lives on the GPU: a
 * plain FP16 cache passed in is replaced by the GPU's own (same semantics),
 * any other cache type is PV_EUNSUPPORTED there for now. PV_ENODEV: CUDA
 * asked for but not built in or no usable GPU. */
int llm_ctx_create(const llm_model *m, const llm_ctx_params *p, kv_cache *kv, llm_ctx **out);
void llm_ctx_free(llm_ctx *c);
kv_cache *llm_ctx_kv(llm_ctx *c);
/* LLM_DEVICE_CPU or LLM_DEVICE_CUDA: where this ctx actually runs. */
llm_device llm_ctx_device(const llm_ctx *c);
/* The kv_shape a cache for this model and these params must have. */
kv_shape llm_kv_shape(const llm_model *m, const llm_ctx_params *p);

typedef enum { LLM_LOGITS_NONE = 0, LLM_LOGITS_LAST = 1, LLM_LOGITS_ALL = 2 } llm_logits_mode;

typedef struct {
    int seq;      /* KV slot */
    int pos;      /* position of tokens[0]; must equal kv_seq_pos(seq) */
    int n_tokens; /* >= 1 */
    const int32_t *tokens;
    llm_logits_mode logits;
} llm_batch_entry;

/* Runs the entries (total tokens <= max_batch_tokens). Logits rows are written
 * to `logits` ([rows][n_vocab]) in entry order: one row for LAST, n_tokens
 * rows for ALL, none for NONE. Returns 0, PV_EINVAL, PV_ERANGE (too many
 * tokens) or PV_ECTXFULL. */
int llm_decode(llm_ctx *c, const llm_batch_entry *e, int n, float *logits);
/* llm_decode plus greedy sampling: tokens[i] = argmax of logits row i (rows
 * as above; lowest id on ties). logits may be NULL; on CUDA only the ids then
 * leave the GPU. */
int llm_decode_greedy(llm_ctx *c, const llm_batch_entry *e, int n, float *logits, int32_t *tokens);

/* Benchmarks: resets slot `seq` and gives it n_tokens of random cache
 * contents at positions 0..n_tokens-1 in every layer, as if a prompt had been
 * evaluated, so decode speed at a long context is measured without the
 * prefill. */
int llm_ctx_fill_random(llm_ctx *c, int seq, int n_tokens, uint64_t seed);

#endif
