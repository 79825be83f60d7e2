/* eval_heads: which KV heads copy — the induction score of every (layer,
 * KV head) of a model on random-word copy probes (kv_probe.h), the ranking
 * `pivot heads` prints so that layer-bits can give those heads more bits
 * (docs/KV_CACHE.md, "Bits per head"). */
#ifndef PIVOT_EVAL_HEADS_H
#define PIVOT_EVAL_HEADS_H

#include <stddef.h>
#include <stdint.h>

#include "llama.h"

typedef struct {
    int length;    /* tokens per probe: BOS (when the model adds one) + two copies */
    int samples;   /* probes, each its own random words */
    uint64_t seed; /* the words (the same generator as pivot eval's tasks) */
    int threads;          /* <= 0: one per CPU */
    int32_t *first_probe; /* optional: the first probe's tokens (room for length) */
    int *n_first_probe;   /* ... and how many (with first_probe) */
} ev_heads_opts;

/* Runs the probes on the CPU with exact float attention; scores[layer *
 * n_kv_heads + head] gets each KV head's mean induction score (the caller
 * allocates n_layers * n_kv_heads). 0, or nonzero with err set. */
int ev_heads(const llm_model *m, const ev_heads_opts *o, double *scores, char *err, size_t errlen);

/* Indices 0..n of scores, highest score first (ties: lower index first),
 * into rank: the one order `pivot heads` prints and the heads knob takes. */
void ev_heads_order(const double *scores, int n, int *rank);

/* The probe that resolves a policy's `heads` knob (kv_policy_resolve_heads)
 * when a model is loaded: 2 probes of 256 tokens, seed 1 (0.9 s for
 * SmolLM2-135M on two cores, `pivot serve`'s log; every seed 1-5 ranks the
 * same five heads first there, as do 4 probes of 512 tokens,
 * docs/KV_CACHE.md). */
#define EV_HEADS_RANK_LENGTH 256
#define EV_HEADS_RANK_SAMPLES 2

/* Every KV head (layer * n_kv_heads + head), best induction score first
 * (ties: lower index first) into rank, which holds n_layers * n_kv_heads.
 * 0, or nonzero with err set (e.g. a model without a vocabulary). */
int ev_heads_rank(const llm_model *m, int threads, int *rank, char *err, size_t errlen);

#endif
