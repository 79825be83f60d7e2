/* smp: token sampling.
 *
 * Order (as llama.cpp and vLLM apply them): logit bias (OpenAI's
 * logit_bias: a value added to chosen ids' logits) -> penalties (repetition,
 * presence, frequency over the last penalty_last_n accepted tokens) ->
 * greedy if temperature <= 0 -> top-k -> temperature -> softmax -> top-p ->
 * min-p -> draw with the sampler's own seeded RNG. Same seed and same logits
 * give the same tokens. */
#ifndef PIVOT_SMP_SAMPLER_H
#define PIVOT_SMP_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temperature;        /* <= 0: greedy */
    int top_k;                /* <= 0: off */
    float top_p;              /* >= 1: off */
    float min_p;              /* <= 0: off */
    float repetition_penalty; /* 1: off (logit>0: /p, else *p) */
    float presence_penalty;   /* 0: off */
    float frequency_penalty;  /* 0: off */
    int penalty_last_n;       /* window of accepted tokens; <= 0: all */
    uint64_t seed;
    /* logit_bias: bias[i] is added to logits[bias_ids[i]] before anything
     * else (smp_create copies both; ids must be < n_vocab, values finite). */
    const int32_t *bias_ids;
    const float *bias;
    int n_bias;
} smp_params;

/* Defaults: temperature 1, top_k off, top_p 1, min_p 0, penalties off,
 * penalty_last_n 64, seed 0. */
smp_params smp_default_params(void);

typedef struct smp_sampler smp_sampler;

/* Returns 0, PV_EINVAL (bad params, a bias id outside the vocabulary) or
 * PV_ENOMEM. */
int smp_create(const smp_params *p, int n_vocab, smp_sampler **out);
void smp_free(smp_sampler *s);
/* Samples from logits[n_vocab] (modified in place). Returns a token id. */
int32_t smp_sample(smp_sampler *s, float *logits);
/* Records a token (prompt or generated) for the penalties. */
void smp_accept(smp_sampler *s, int32_t tok);
void smp_reset(smp_sampler *s); /* clears history, keeps RNG state */

/* The RNG (PCG32), exposed for tests. */
typedef struct {
    uint64_t state, inc;
} smp_rng;
void smp_rng_seed(smp_rng *r, uint64_t seed);
uint32_t smp_rng_u32(smp_rng *r);
double smp_rng_uniform(smp_rng *r); /* [0, 1) */

#endif
