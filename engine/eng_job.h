/* eng_job: what one request becomes inside the engine — one or more
 * prompts, n choices each, decoded under one set of sampling parameters,
 * one KV policy and per-prompt length limits.
 *
 * Ownership: the caller creates and frees a job, on one thread (the one
 * that submits and collects). Between eng_submit and the eng_collect that
 * reports it done, the engine reads it and writes its output; the caller
 * only reads what eng_job_take hands over. */
#ifndef PIVOT_ENG_JOB_H
#define PIVOT_ENG_JOB_H

#include <stdint.h>

#include "api_fmt.h"
#include "eng.h"
#include "gram.h"
#include "kv.h"
#include "kv_policy.h"
#include "sampler.h"

typedef struct {
    smp_params sampling; /* .seed counts only with has_seed: choice i takes seed + i;
                            .bias_ids / .bias (logit_bias) are copied */
    int has_seed;        /* 0: every choice draws a fresh seed */
    int min_tokens;      /* no end-of-generation or stop id before this many tokens */
    int ignore_eos;      /* the model's end-of-generation tokens do not stop */
    const int32_t *stop_ids; /* copied */
    int n_stop_ids;
    char *const *stop; /* stop strings (api_stop), copied */
    int n_stop;
    int logprobs;        /* logprobs of the sampled tokens */
    int top_logprobs;    /* alternatives per token (<= API_MAX_TOP_LOGPROBS) */
    int prompt_logprobs; /* the prompt's own logprobs lead each choice's list */
    kv_policy policy;
    int kv_elastic;      /* 1: under pressure the engine may lower this job's
                            high-tier budget down to policy.floor (for
                            kv_policy_elastic policies); 0: never; -1: the
                            engine's default (eng_config.kv_elastic) */
    /* Structured output: every choice's tokens are masked to keep the text
     * a prefix of a document of this grammar, and end-of-generation is
     * allowed only once it is whole. eng_job_create takes it: on success
     * the job owns it (freed with the job), on failure the caller keeps it.
     * NULL: free text. */
    gram *grammar;
    int no_prompt_cache; /* 1: neither use nor fill the prefix cache (cache_prompt: false) */
} eng_params;

/* A job of n_prompts prompts (copied) with n_per_prompt choices each;
 * choice i * n_per_prompt + k decodes prompt i for at most max_new[i]
 * tokens. 0, PV_EINVAL (an empty prompt, no prompts) or PV_ENOMEM. */
int eng_job_create(const eng_params *p, int n_prompts, const int32_t *const *prompts,
                   const int *n_prompt, const int *max_new, int n_per_prompt, eng_job **out);
void eng_job_free(eng_job *j);

void eng_job_set_user(eng_job *j, void *user); /* the caller's pointer, for its own bookkeeping */
void *eng_job_user(const eng_job *j);
eng_job *eng_job_next(const eng_job *j); /* the next job of eng_collect's list */
int eng_job_n_choices(const eng_job *j);
int eng_job_prompt_tokens(const eng_job *j); /* over all prompts, once each */
/* KV bytes the job counts for now (KV on demand: its prompts once admitted,
 * then what it can hold after the current step; 0 while waiting). */
size_t eng_job_kv_reserved(const eng_job *j);

/* What a choice produced since the job was last returned by eng_collect. */
typedef struct {
    const char *text; /* new text, stop strings already cut */
    size_t len;
    const api_logprob *lp; /* new logprobs entries (with logprobs / prompt_logprobs) */
    int n_lp;
    const int32_t *ids; /* new sampled token ids (a stop token included) */
    int n_ids;
    int tokens;         /* tokens generated so far */
    const char *finish; /* NULL while running; "stop", "length", "cancelled", "error" */
} eng_delta;
/* Valid until the next eng_collect. */
void eng_job_take(const eng_job *j, int i, eng_delta *d);
/* 1 once eng_collect has returned the job's last output: the engine is
 * done with it and the caller may free it. */
int eng_job_done(const eng_job *j);
/* 0, or the PV_* code that failed the job (with done) and a message. */
int eng_job_error(const eng_job *j, const char **msg);
/* pv_now() times: submitted, first token sampled (0: none), done. */
void eng_job_times(const eng_job *j, double *t_submit, double *t_first, double *t_end);
/* The KV cache choice i held when it finished (valid once done). */
void eng_job_kv_usage(const eng_job *j, int i, kv_usage *u);
/* Prompt tokens the job's prefills took from the prefix cache instead of
 * computing them (per prompt, its choice that reused most; a preemption's
 * recompute not counted); valid once done. */
int eng_job_cached_tokens(const eng_job *j);
/* What memory pressure did to choice i (valid once done). */
void eng_job_relief(const eng_job *j, int i, eng_relief *r);

#endif
