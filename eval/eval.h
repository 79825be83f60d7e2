/* eval: `pivot eval`, the quality protocol of docs/KV_CACHE.md ("pivot eval")
 * run through a real compressed decode.
 *
 * A task builds samples (token sequences); every policy under test decodes
 * each sample in its own llm_ctx whose KV cache kv_create built for that
 * policy, in lockstep with a `full` (FP16) reference so that agreement and KL
 * need no stored logits. The prefix is prefilled in one go (the cache demotes
 * down to its budget at the end of it); every later token goes through
 * llm_decode one at a time, so compression is active while scoring.
 *
 * Split: cmd_eval.c (options, orchestration, table, plot), eval_tasks.c
 * (samples), eval_run.c (budget solving, lockstep decode, metrics),
 * eval_report.c (JSON). */
#ifndef PIVOT_EVAL_H
#define PIVOT_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "kv_policy.h"
#include "llama.h"

typedef enum { EV_PPL = 0, EV_COPY, EV_RETRIEVAL, EV_LOOKUP } ev_task;

typedef struct {
    int32_t *tokens; /* the whole teacher-forced sequence */
    int n;
    int prefix;      /* tokens prefilled at once; tokens[prefix..n) are fed one by one */
    int score;       /* 1: predictions of tokens[prefix..n) are scored (ppl, copy, lookup) */
    uint8_t *mask;   /* NULL: every scored position counts; else only t with
                        mask[t] (lookup: the value tokens of the queries) */
    char answer[16]; /* retrieval: the number expected after the sequence */
    int gen_max;     /* retrieval: greedy tokens decoded after the sequence */
} ev_sample;

typedef struct {
    ev_task task;
    const char *text;   /* ppl: text file */
    int samples;
    uint64_t seed;
    int prefix;         /* ppl */
    int length;         /* ppl, copy: total tokens per sample (BOS included) */
    int lines;          /* retrieval: records per sample */
    int digits;         /* retrieval: digits of the numbers (LongEval: up to 5) */
    int threads;
    int attn_split;     /* llm_ctx_params.attn_split (--attn-split) */
    llm_device device;  /* where the runs' contexts decode (default CPU) */
    int copy_text;      /* copy: the first copy is a window of `text` instead of
                           random word tokens (a 135M model copies text far better) */
} ev_task_opts;

/* Builds opt->samples samples. Returns 0, or 1 with a one-line message in err. */
int ev_build_samples(const llm_model *m, const ev_task_opts *o, ev_sample **out, int *n_out,
                     char *err, size_t errlen);
void ev_free_samples(ev_sample *s, int n);

/* One policy at one memory target, with what it accumulated over samples. */
typedef struct {
    char spec[KV_POLICY_DESC_MAX]; /* as given on the command line */
    kv_policy pol;       /* parsed; budget overwritten per sample when solved */
    int budgeted;        /* the budget is solved for ratio_target */
    int prefix_cached;   /* --prefix-cached twin: the prompt's prefix up to its last
                            64-token boundary comes from the prefix cache (computed
                            by another sequence, published, attached) */
    double ratio_target; /* < 0: none (natural ratio) */
    int feasible;        /* 0: even the smallest budget exceeds the target */
    double min_ratio;    /* smallest reachable ratio when infeasible */
    char describe[KV_POLICY_DESC_MAX];  /* kv_policy_describe of the last sample's policy */
    int last_budget;     /* budget (tokens per head) used for the last sample */
    double reserved_max; /* kv_policy_seq_bytes / FP16 bytes: what admission reserves */
    int n_high, n_low, n_dropped; /* tier counts per head at the end of the last sample */
    /* accumulators over all samples */
    int samples;
    double nll_sum;
    long n_scored, n_agree, n_correct;
    double kl_sum;
    double ratio_max, ratio_sum; /* bytes_stored / bytes_fp16 at the end of each sample */
    double peak_ratio_max;       /* the most bytes_stored held at any step of a sample,
                                    over that sample's final FP16 bytes: what must be
                                    provisioned (kv_memory_ratio) */
    size_t bytes_stored_max, bytes_fp16_max;
    double *sample_acc;          /* per-sample accuracy (copy, retrieval) */
    double *sample_ppl;          /* per-sample perplexity (ppl) */
    double *sample_top1;         /* per-sample top-1 agreement with full (ppl, copy, lookup) */
    double seconds;              /* decode wall time spent in this run */
    /* per-sample state */
    llm_ctx *ctx;
    float *logits;
    double s_nll;
    long s_scored, s_correct, s_agree;
    size_t s_peak; /* most bytes_stored so far in this sample */
} ev_run;

/* Largest per-head high-tier budget (tokens) for which
 * kv_policy_seq_bytes(n_tokens) <= target x FP16 bytes. Returns the budget,
 * or -1 when none fits (then *min_ratio is the ratio of the smallest). */
int ev_solve_budget(const kv_policy *p, const kv_shape *s, int n_tokens, double target,
                    double *min_ratio);
/* FP16 bytes of n tokens: what kv_usage.bytes_fp16 reports. */
size_t ev_fp16_bytes(const kv_shape *s, int n_tokens);

/* Runs every sample through run[0] (the full reference, also scored) and the
 * other runs in lockstep. Progress on stderr. Returns 0 or 1 (message
 * printed). */
int ev_run_all(const llm_model *m, const ev_task_opts *o, ev_sample *smp, int n_smp, ev_run *runs,
               int n_runs);

/* Derived metrics of a run (ref = the full run). */
typedef struct {
    double ppl, delta_ppl_pct, top1_agreement, mean_kl, accuracy, kv_memory_ratio;
    /* half-widths of 95% intervals over samples (1.96 standard errors of the
     * per-sample values: a window's tokens are not independent, the windows
     * are), -1 when < 2 samples */
    double accuracy_ci95, delta_ppl_ci95, top1_ci95;
} ev_metrics;
void ev_metrics_of(const ev_run *r, const ev_run *ref, ev_task task, ev_metrics *out);

/* Writes the JSON report. 0 or 1 (message printed). */
int ev_write_json(const char *path, const char *model_name, const ev_task_opts *o,
                  double kv_ratio, const ev_run *runs, int n_runs);

const char *ev_task_name(ev_task t);

#endif
