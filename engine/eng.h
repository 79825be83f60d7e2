/* eng: the decoder thread and its continuous-batching scheduler, behind an
 * interface that knows nothing of HTTP.
 *
 * Threads. eng_start starts one decoder thread, which loads the model and
 * then owns the run state (llm_ctx, KV cache, samplers). Any other thread
 * (the server's loop) submits, cancels and collects jobs (eng_job.h); they
 * meet in two mutex-protected queues:
 *   caller -> engine   eng_submit / eng_cancel (a condvar wakes the thread)
 *   engine -> caller   per-job output and a "dirty" list; hooks.wake is the
 *                      wake-up only (it may coalesce: the caller drains the
 *                      whole list with eng_collect every time it wakes).
 *
 * Admission is by KV bytes on demand: a job is admitted, in FIFO order,
 * when the bytes of its prompts under its policy (kv_policy_seq_bytes:
 * exact, page-rounded) fit beside what the running jobs can hold after the
 * current step, leaving a watermark of 1% of kv_memory free, and it gets
 * enough sequence slots; max_new reserves nothing. Before every step the
 * engine makes the step fit: elastic compression of the jobs that allow it
 * (their high-tier budget lowered to the policy's floor), then preemption
 * of the most recently admitted jobs (recompute: their pages are freed,
 * they wait at the front of the queue and later prefill prompt + generated
 * tokens again; their output just pauses). A job is refused only when it
 * cannot fit even alone (PV_ETOOBIG). Errors are PV_* codes (pverr.h): the
 * caller maps them to whatever its protocol says. */
#ifndef PIVOT_ENG_H
#define PIVOT_ENG_H

#include <stddef.h>

#include "kv_policy.h"
#include "llama.h"

typedef struct eng_engine eng_engine;
typedef struct eng_job eng_job;

typedef struct {
    const char *model_path; /* loaded by the decoder thread, unless `model` */
    const llm_model *model; /* borrowed, must outlive the engine; NULL: load model_path */
    const char *kv_policy;  /* default policy spec (kv_policy_parse) */
    const char *device;     /* auto|cpu|cuda (NULL: auto) */
    size_t kv_memory;       /* bytes admitted jobs may reserve */
    int max_seqs;           /* sequences decoded together */
    int max_batch_tokens;   /* tokens per llm_decode step */
    int prefill_chunk;      /* prompt tokens one sequence adds per step */
    int max_queue;          /* waiting jobs before PV_EBUSY */
    int threads;            /* <= 0: all cores */
    int ctx;                /* tokens per sequence (0: the model's training context) */
    int kv_elastic;         /* default of eng_params.kv_elastic (-1 there) */
    int kv_snapshots;       /* keep each job's final KV snapshot (eng_snap.h) */
    long kv_snapshot_cells; /* ... only up to this many (layer, KV head, position)
                               cells; 0: 2^20 (eng_snap.h) */
    int prefix_cache_off;   /* 1: no automatic prefix caching (default: on, CPU only) */
    int attn_split;         /* llm_ctx_params.attn_split (0: default, < 0: off) */
    /* Ranks the model's KV heads for the policies' `heads` knob
     * (kv_policy_resolve_heads; ev_heads_rank has this shape): every
     * (layer * n_kv_heads + head) into rank, best first; 0 or nonzero with
     * err. Called once at load on the CPU; NULL: no ranking, `heads` leaves
     * the low tier uniform. */
    int (*rank_heads)(const llm_model *m, int threads, int *rank, char *err, size_t errlen);
} eng_config;

typedef struct {
    int running, waiting;
    /* kv_reserved: what running and admitted jobs can hold after the
     * current step (KV on demand: it grows with their tokens) */
    size_t kv_stored, kv_fp16, kv_reserved, kv_capacity;
    size_t pool_used, pool_peak, pool_limit; /* the KV page pool (kv_pool.h) */
    long kv_tokens;
    /* totals since start: jobs preempted, elastic compressions and the
     * tokens (per KV head) and bytes they demoted */
    long preemptions, elastic_compressions, elastic_tokens;
    size_t elastic_bytes;
    /* automatic prefix caching: prompt tokens looked up and found (totals,
     * vLLM's prefix_cache_queries/hits), the cached blocks (bytes, those in
     * use, blocks), tokens per block (an FP16 page) and whether it is on */
    long prefix_queries, prefix_hits, prefix_blocks;
    size_t prefix_bytes, prefix_bytes_used;
    int block_tokens, prefix_on;
    size_t page_bytes; /* one FP16 block of one sequence, every layer: kv_memory / it
                          is the capacity in blocks (vllm:cache_config_info) */
} eng_gauges;

/* What memory pressure did to one choice (eng_job_relief). */
typedef struct {
    int preemptions;    /* times its job was preempted and recomputed */
    int compressions;   /* elastic compressions (its budget lowered) */
    long tokens_demoted; /* tokens per KV head they moved to the low tier */
    size_t bytes_saved;  /* bytes they freed at the time */
    double budget;       /* the budget it ended with (0: its policy's) */
} eng_relief;

/* One finished job, for request metrics. outcome: "ok", "abort", "error". */
typedef struct {
    int prompt_tokens, gen_tokens;
    double ttft, e2e; /* seconds from submit */
    const char *outcome;
} eng_request_stats;

/* Callbacks, all called on the decoder thread; each may be NULL. */
typedef struct {
    void (*wake)(void *arg); /* state changed or output is ready: call eng_collect */
    void (*request_done)(void *arg, const eng_request_stats *st);
    void (*gauges)(void *arg, const eng_gauges *g); /* after every step */
    /* Tests only: called before each forward pass with its entries; a
     * nonzero PV_* return fails the step as if llm_decode had. */
    int (*step)(void *arg, const llm_batch_entry *ent, int n);
    void *arg;
} eng_hooks;

enum { ENG_LOADING = 0, ENG_READY = 1, ENG_FAILED = 2 };

/* Starts the decoder thread. cfg and hooks are copied (cfg's strings and
 * model are borrowed). 0, or PV_ENOMEM when no thread could start. */
int eng_start(const eng_config *cfg, const eng_hooks *hooks, eng_engine **out);
/* Tells the thread to finish and joins it; frees everything. Every job must
 * have been collected done (or cancelled while waiting) first. */
void eng_stop(eng_engine *e);

int eng_state(eng_engine *e);              /* ENG_* */
const char *eng_error(eng_engine *e);      /* why ENG_FAILED */
const llm_model *eng_model(eng_engine *e); /* NULL until READY */
/* The following are valid once READY. */
int eng_max_ctx(eng_engine *e);
/* The default policy as given (its heads knob unresolved): what a request
 * starts from before its own knobs and eng_resolve_policy. */
const kv_policy *eng_policy(eng_engine *e);
/* Bytes the cache holds for one sequence of n tokens under p (NULL: the
 * default policy): what a choice reserves at admission. */
size_t eng_seq_bytes(eng_engine *e, const kv_policy *p, int n_tokens);
/* Resolves p's `heads` knob with the model's ranking (kv_policy_resolve_heads;
 * the cache's default is resolved at load). 0, or a PV_* code with err. */
int eng_resolve_policy(eng_engine *e, kv_policy *p, char *err, size_t errlen);
/* Whether this engine can run a sequence under p (shape, device): 0, or a
 * PV_* code with the reason in err. */
int eng_check_policy(eng_engine *e, const kv_policy *p, char *err, size_t errlen);

/* Queues a job. 0; PV_EBUSY: max_queue jobs are already waiting; PV_ETOOBIG:
 * its reservation or its choices exceed the whole engine (it never fits).
 * msg gets a sentence for the client either way. The job stays the
 * caller's to free, but not before it is collected done (or cancelled while
 * waiting). */
int eng_submit(eng_engine *e, eng_job *j, char *msg, size_t msglen);
/* Cancels a job. 1: it was still waiting, is unlinked and never runs (the
 * caller may free it now); 0: the engine finishes it ("cancelled") and
 * reports it done through eng_collect. */
int eng_cancel(eng_engine *e, eng_job *j);
/* Cancels every job, waiting, admitted or running (a drain timeout): each is
 * reported done ("cancelled") through eng_collect. */
void eng_cancel_all(eng_engine *e);
/* Moves the output of every job that has news to the caller's side (see
 * eng_job_take) and returns them as a list (eng_job_next). */
eng_job *eng_collect(eng_engine *e);
/* Frees every prefix-cache block no running sequence uses, before the
 * decoder's next step (asynchronous: /metrics shows it once done). */
void eng_prefix_flush(eng_engine *e);
/* Jobs waiting for admission and jobs admitted or running. */
void eng_counts(eng_engine *e, int *waiting, int *running);

#endif
