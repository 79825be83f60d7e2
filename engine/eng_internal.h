/* eng_internal: the engine's and the job's structs, shared by the engine's
 * own files only (eng_engine.c loads and owns, eng_sched.c schedules,
 * eng_sample.c turns logits into tokens and text, eng_job.c holds the job
 * API and the engine -> caller hand-over). */
#ifndef PIVOT_ENG_INTERNAL_H
#define PIVOT_ENG_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "api_stop.h"
#include "eng.h"
#include "eng_job.h"
#include "gram_mask.h"
#include "eng_snap.h"
#include "kv_pool.h"
#include "pvbuf.h"
#include "tokenizer.h"

/* A choice's snapshots (eng_snap.h) on their way to the caller. */
typedef struct {
    atomic_int ask;      /* caller -> decoder: take one at the next step */
    eng_snap *ready;     /* decoder -> caller, under out_mu */
    eng_snap *final;     /* written by the decoder before engine_done */
    const kv_policy *policy; /* the job's; set for choice 0 only (eng_job_create) */
    int32_t *demoted_at; /* decoder only: [n_layers][n_kv_heads][cap]; -2 seen high */
    int cap;
} eng_snap_slot;

/* Output of one choice on one side of the hand-over. */
typedef struct {
    pv_buf text;
    api_logprob *lp;
    int n_lp, cap_lp;
    int32_t *ids;
    int n_ids, cap_ids;
    int tokens;
    const char *finish;
} eng_out;

typedef struct {
    /* set at creation; then the decoder thread appends every sampled token
     * after the prompt (prompt[n_prompt + k] is the k-th generated one), so
     * a preempted choice can prefill its whole text again */
    int32_t *prompt;
    int n_prompt, cap_prompt;
    int max_new;
    /* decoder thread only */
    int slot, n_fed, n_gen, finished;
    int n_fill;  /* tokens to prefill before decoding: n_prompt, or after a
                    preemption the prompt + every generated token but the
                    last (next_tok, already sampled, is fed by decoding) */
    int refill;  /* prefilling after a preemption: no logits are wanted */
    int lp_next; /* prompt logprobs emitted so far (none twice after a preemption) */
    double budget; /* elastic budget in force, whole tokens (kv_seq_set_budget,
                      following the length: eng_mem.c); 0: the policy's */
    int elastic_done; /* compressed (or tried) since its slot was last filled */
    size_t need;   /* KV bytes this choice can hold after the current step,
                      less what it shares through prefix-cache blocks */
    int pfx;       /* prefix caching applies to it (eng_prefix.c) */
    int cached;    /* prompt tokens its first prefill took from the prefix cache */
    int pfx_split; /* compressed policy: where its prompt leaves a cached
                    * snapshot's tokens; its prefill also publishes there */
    eng_relief relief;
    int32_t next_tok;
    smp_sampler *smp;
    tok_stream *ts; /* NULL when the model has no vocabulary (synthetic) */
    gram_state *gs; /* with a grammar: made at the first sample (eng_sample.c) */
    api_stop stop;
    kv_usage kv;
    eng_out out; /* decoder -> caller, under out_mu */
    eng_out got; /* caller only: what the last eng_collect took */
    eng_snap_slot snap; /* eng_snap.c; used for choice 0 only */
} eng_choice;

enum { ENG_J_NONE = 0, ENG_J_WAITING, ENG_J_ADMITTED, ENG_J_RUNNING };

struct eng_job {
    eng_job *next;       /* engine queues (under mu / decoder thread) */
    eng_job *dirty_next; /* under out_mu */
    /* The caller's copy of the list eng_collect handed over (eng_job_next):
     * once out_mu is released the decoder may mark the job dirty again and
     * rewrite dirty_next, and a caller walking dirty_next then followed the
     * decoder's new list and lost the rest of its own (a finished job never
     * answered: the soak test's hung request). Written only by eng_collect. */
    eng_job *coll_next;
    int in_dirty;        /* under out_mu */
    int where;           /* under mu: ENG_J_* */
    eng_params p;        /* stop_ids and stop strings point at owned copies */
    int n_choices, n_per_prompt;
    eng_choice *ch;
    int prompt_tokens;
    size_t kv_max;   /* bytes of every choice at prompt + max_new: set by eng_submit,
                        the "can never fit" test */
    size_t need_now; /* bytes admission asks for: every unfinished choice's n_fill */
    atomic_size_t commit; /* written under mu: what this job counts for in
                             e->committed; read by eng_job_kv_reserved */
    int preempted;   /* under mu: waiting again after a preemption */
    atomic_int cancelled;
    double t_submit;        /* caller, at submit */
    _Atomic double t_first; /* decoder; read by the loop while running (KV map, lists) */
    double t_end;           /* decoder; read by the caller once done */
    int engine_done;        /* under out_mu */
    int done_seen;          /* caller: eng_collect saw engine_done */
    int err;                /* PV_* failure (with engine_done) */
    char err_msg[200];
    void *user;
};

struct eng_engine {
    eng_config cfg;
    eng_hooks hooks;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    eng_job *wait_head, *wait_tail, *admitted;
    int n_waiting, n_running_jobs, quit;
    size_t committed; /* bytes running and admitted jobs can hold after this step */
    size_t watermark; /* free bytes a new job must leave while others run */
    size_t page_bytes; /* one FP16 page of one sequence (every layer and head) */
    int page_tokens;   /* tokens in that page */
    int slots_used;
    /* under out_mu */
    pthread_mutex_t out_mu;
    eng_job *dirty;
    /* published once by the decoder thread (state is the release flag) */
    atomic_int state;
    char err[512];
    llm_model *owned_model; /* loaded from model_path; NULL when borrowed */
    const llm_model *model;
    int max_ctx;
    kv_policy policy;     /* the default as given (requests start from it) */
    kv_policy policy_run; /* ... with its heads resolved: what the cache builds */
    int *head_rank; /* KV heads by induction score (cfg.rank_heads), or NULL */
    int n_head_rank;
    kv_shape shape;
    kv_pool *pool; /* pages of every CPU cache (NULL on CUDA) */
    int on_cuda;   /* GPU cache: plain FP16 only, no per-slot policies */
    atomic_int snap_asks; /* eng_snap_ask calls not yet honoured */
    /* decoder thread only */
    int64_t n_iter;   /* scheduler iterations (eng_snap_service counts them) */
    double snap_next; /* pv_now() before which no snapshot is taken (eng_snap.c) */
    llm_ctx *ctx;
    eng_job *running;
    int *slot_free;
    int32_t *eog; /* end-of-generation ids */
    int n_eog;
    float *logits, *row_copy;
    gram_vocab *gv; /* the vocabulary for grammar masks, built at the first grammar job */
    int logits_rows; /* rows logits holds: max_seqs, more once a prompt's logprobs are asked */
    llm_batch_entry *ent;
    eng_choice **ent_ch;
    eng_job **ent_job;
    /* decoder thread: totals for the gauges */
    long n_preempt, n_elastic, el_tokens;
    size_t el_bytes;
    long pfx_queries, pfx_hits; /* prompt tokens looked up / found cached */
    atomic_int pfx_flush;       /* eng_prefix_flush asked (any thread) */
};

/* eng_engine.c: the model and the run state, on the decoder thread. */
int eng_load(eng_engine *e);
void eng_unload(eng_engine *e);

/* eng_sched.c */
void *eng_main(void *arg);
/* Admits waiting jobs in FIFO order while they fit (under mu). */
void eng_admit_locked(eng_engine *e);

/* eng_mem.c: KV on demand (decoder thread) */
/* Makes the coming step fit kv_memory: every running choice's bytes after
 * the step, then elastic compression, then preemption of the most recently
 * admitted jobs; publishes the total as `committed` and admits what fits. */
void eng_relieve(eng_engine *e);
/* Bytes choice c of job j can hold once the coming step is done. */
size_t eng_choice_need(eng_engine *e, const eng_job *j, const eng_choice *c);

/* eng_prefix.c (decoder thread): automatic prefix caching */
/* After the choice got its slot: attach the cached prefix of its fill. */
void eng_prefix_attach(eng_engine *e, const eng_job *j, eng_choice *c);
/* Offers the choice's whole stored pages to the cache (prefill done, or its
 * slot about to be freed). */
void eng_prefix_publish(eng_engine *e, eng_choice *c);
/* Where the choice's next prefill chunk must end at the latest: its fill,
 * or for a compressed policy first the last block boundary before it (a
 * snapshot is only taken between calls, docs/KV_CACHE.md). */
int eng_prefix_cut(eng_engine *e, const eng_job *j, const eng_choice *c);
/* After a prefill chunk of c that ended at position `end`: publishes what
 * the cache can take there. */
void eng_prefix_chunk_done(eng_engine *e, const eng_job *j, eng_choice *c, int end);
/* Bytes of blocks in use by running sequences, each counted once. */
size_t eng_prefix_shared(eng_engine *e);
/* Evicts unused blocks until committed + cached fits kv_memory. */
void eng_prefix_trim(eng_engine *e, size_t committed);
/* A pending flush (eng_prefix_flush): done now; 1 if there was one. */
int eng_prefix_service(eng_engine *e);

/* eng_sample.c (decoder thread; the ones that write output under out_mu) */
void eng_finish_choice(eng_engine *e, eng_choice *c, const char *reason, int flush);
void eng_sample_choice(eng_engine *e, eng_job *j, eng_choice *c, float *row);
void eng_prompt_logprobs(eng_engine *e, eng_job *j, eng_choice *c, int pos, int k,
                         const float *rows);

/* eng_snap.c (decoder thread): honours pending asks, once per iteration;
 * the final snapshot of a choice about to free its slot; the job's leftovers. */
void eng_snap_service(eng_engine *e);
void eng_snap_final(eng_engine *e, eng_choice *c);
void eng_snap_job_free(eng_job *j);

/* eng_job.c */
void eng_mark_dirty_locked(eng_engine *e, eng_job *j); /* under out_mu */

#endif
