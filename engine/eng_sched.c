/* eng_sched: admission and the continuous-batching loop.
 *
 * Each step is one llm_decode over every running sequence: one token for
 * each sequence that is decoding, then prompt chunks (at most prefill_chunk
 * tokens per sequence) for sequences still prefilling, until
 * max_batch_tokens. So a long prompt is spread over several steps while the
 * others keep decoding, and a new job joins at the next step. A finished or
 * cancelled sequence leaves at once and kv_seq_reset frees its pages.
 *
 * Accounting happens under `mu` at submit and release time, so the PV_EBUSY
 * decision is exact. The pool's limit is kv_memory plus kv_router_headroom
 * (what one step may hold above the admitted sizes), so a running batch
 * never hits it; if it did, the step fails with PV_ENOMEM and every running
 * job gets that error, nothing crashes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eng_internal.h"
#include "kv_router.h"
#include "pverr.h"
#include "pvtime.h"

/* ---- admission (under mu) ---- */

/* KV on demand: the job's prompts must fit beside what the running jobs
 * can hold after this step, leaving the watermark free for their growth
 * (vLLM's rule) unless nothing else holds memory (a job that fits alone
 * must not wait forever for a watermark it can never leave). */
static int fits_locked(eng_engine *e, const eng_job *j) {
    size_t need = e->committed + j->need_now;
    if (e->slots_used + j->n_choices > e->cfg.max_seqs || need > e->cfg.kv_memory) return 0;
    /* A preempted job comes back only when a page more than it needs is
     * free: with a 1% watermark smaller than a page it would be let in and
     * preempted again at the running jobs' next page, over and over. */
    size_t wm = e->watermark;
    if (j->preempted && e->page_bytes > wm) wm = e->page_bytes;
    return e->committed == 0 || need + wm <= e->cfg.kv_memory;
}

static void to_admitted_locked(eng_engine *e, eng_job *j) {
    e->committed += j->need_now;
    j->commit = j->need_now;
    e->slots_used += j->n_choices;
    j->where = ENG_J_ADMITTED;
    /* appended: the decoder starts admitted jobs in FIFO order */
    eng_job **pp = &e->admitted;
    while (*pp) pp = &(*pp)->next;
    j->next = NULL;
    *pp = j;
}

void eng_admit_locked(eng_engine *e) {
    while (e->wait_head && fits_locked(e, e->wait_head)) {
        eng_job *j = e->wait_head;
        e->wait_head = j->next;
        if (!e->wait_head) e->wait_tail = NULL;
        e->n_waiting--;
        to_admitted_locked(e, j);
    }
}

int eng_submit(eng_engine *e, eng_job *j, char *msg, size_t msglen) {
    if (j->p.kv_elastic < 0) j->p.kv_elastic = e->cfg.kv_elastic;
    j->kv_max = j->need_now = 0;
    for (int i = 0; i < j->n_choices; i++) {
        j->kv_max += eng_seq_bytes(e, &j->p.policy, j->ch[i].n_prompt + j->ch[i].max_new);
        j->need_now += eng_seq_bytes(e, &j->p.policy, j->ch[i].n_prompt);
    }
    if (j->kv_max > e->cfg.kv_memory || j->n_choices > e->cfg.max_seqs) {
        snprintf(msg, msglen,
                 "this request needs %zu bytes of KV cache in %d sequences; the server holds at "
                 "most %zu bytes and %d sequences",
                 j->kv_max, j->n_choices, e->cfg.kv_memory, e->cfg.max_seqs);
        return PV_ETOOBIG;
    }
    j->t_submit = pv_now();
    pthread_mutex_lock(&e->mu);
    if ((e->wait_head || !fits_locked(e, j)) && e->n_waiting >= e->cfg.max_queue) {
        int waiting = e->n_waiting;
        pthread_mutex_unlock(&e->mu);
        snprintf(msg, msglen, "the server is busy: %d requests are waiting; retry later", waiting);
        return PV_EBUSY;
    }
    j->next = NULL;
    j->where = ENG_J_WAITING;
    if (e->wait_tail) e->wait_tail->next = j;
    else e->wait_head = j;
    e->wait_tail = j;
    e->n_waiting++;
    eng_admit_locked(e);
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

int eng_cancel(eng_engine *e, eng_job *j) {
    pthread_mutex_lock(&e->mu);
    if (j->where == ENG_J_WAITING) {
        eng_job **pp = &e->wait_head, *prev = NULL;
        while (*pp && *pp != j) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp) *pp = j->next;
        if (e->wait_tail == j) e->wait_tail = prev;
        e->n_waiting--;
        j->where = ENG_J_NONE;
        if (j->preempted) { /* it has output and state: the decoder retires it */
            atomic_store(&j->cancelled, 1);
            j->need_now = 0;
            to_admitted_locked(e, j);
            pthread_cond_signal(&e->cv);
            pthread_mutex_unlock(&e->mu);
            return 0;
        }
        pthread_mutex_unlock(&e->mu);
        return 1;
    }
    atomic_store(&j->cancelled, 1);
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

void eng_cancel_all(eng_engine *e) {
    pthread_mutex_lock(&e->mu);
    /* waiting jobs too (preempted ones have output to finish): they pass
     * through the decoder, which retires them at once as cancelled */
    while (e->wait_head) {
        eng_job *j = e->wait_head;
        e->wait_head = j->next;
        e->n_waiting--;
        atomic_store(&j->cancelled, 1);
        j->need_now = 0;
        to_admitted_locked(e, j);
    }
    e->wait_tail = NULL;
    for (eng_job *j = e->admitted; j; j = j->next) atomic_store(&j->cancelled, 1);
    for (eng_job *j = e->running; j; j = j->next) atomic_store(&j->cancelled, 1);
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void eng_counts(eng_engine *e, int *waiting, int *running) {
    pthread_mutex_lock(&e->mu);
    *waiting = e->n_waiting;
    /* admitted but not yet started counts as running: it holds its memory */
    *running = e->n_running_jobs;
    for (eng_job *j = e->admitted; j; j = j->next) (*running)++;
    pthread_mutex_unlock(&e->mu);
}

/* ---- the decoder thread ---- */

static void fail_job(eng_job *j, int rc, const char *msg) {
    j->err = rc;
    snprintf(j->err_msg, sizeof j->err_msg, "%s", msg);
    atomic_store(&j->cancelled, 1);
}

/* Gives choice c a free slot under the job's policy. The slot is empty
 * (reset when it was freed), so its policy can be set before the first
 * store. */
static int take_slot(eng_engine *e, eng_job *j, eng_choice *c) {
    for (int s = 0; s < e->cfg.max_seqs; s++)
        if (e->slot_free[s]) {
            e->slot_free[s] = 0;
            c->slot = s;
            break;
        }
    if (c->slot < 0) return PV_ENOMEM;
    char err[256] = "";
    int rc = e->on_cuda ? 0
                        : kv_seq_set_policy(llm_ctx_kv(e->ctx), c->slot, &j->p.policy, err,
                                            sizeof err);
    if (rc) fail_job(j, rc, err);
    else eng_prefix_attach(e, j, c);
    return rc;
}

/* Gives choice c a slot and its sampler. */
static int start_choice(eng_engine *e, eng_job *j, eng_choice *c, int i) {
    smp_params p = j->p.sampling;
    /* Without a seed each choice draws differently; with one, choice i
     * uses seed + i so n > 1 still gives distinct samples. */
    p.seed = j->p.has_seed ? j->p.sampling.seed + (uint64_t)i
                           : (uint64_t)(pv_now() * 1e9) ^ ((uint64_t)(uintptr_t)c << 7);
    const tok_vocab *v = llm_get_vocab(e->model);
    if (smp_create(&p, llm_get_config(e->model)->n_vocab, &c->smp) ||
        (v && !(c->ts = tok_stream_new(v, 0))))
        return PV_ENOMEM;
    int rc = take_slot(e, j, c);
    if (rc) return rc;
    for (int k = 0; k < c->n_prompt; k++) smp_accept(c->smp, c->prompt[k]);
    api_stop_init(&c->stop, j->p.stop, j->p.n_stop);
    return 0;
}

/* Starts an admitted job: slots, samplers, stream decoders. A failure
 * cancels it with its error. A job resumed after a preemption keeps its
 * samplers, stop matchers and output; its unfinished choices only get
 * slots again (and prefill their n_fill tokens). */
static void start_job(eng_engine *e, eng_job *j) {
    if (atomic_load(&j->cancelled)) { /* cancelled while waiting: retire takes nothing */
        j->preempted = 0;
        return;
    }
    if (j->preempted) {
        j->preempted = 0;
        for (int i = 0; i < j->n_choices; i++)
            if (!j->ch[i].finished && take_slot(e, j, &j->ch[i])) return;
        return;
    }
    /* No slot yet for any choice: a failure part-way must not make
     * finish_choice reset a slot for the choices not reached. */
    for (int i = 0; i < j->n_choices; i++) j->ch[i].slot = -1;
    for (int i = 0; i < j->n_choices; i++) {
        int rc = start_choice(e, j, &j->ch[i], i);
        if (rc == PV_ENOMEM) fail_job(j, rc, "out of memory");
        if (rc) return;
    }
}

static void job_release(eng_engine *e, eng_job *j) {
    pthread_mutex_lock(&e->mu);
    e->committed -= j->commit;
    j->commit = 0;
    e->slots_used -= j->n_choices;
    e->n_running_jobs--;
    /* committed also holds the prefix blocks running jobs share (eng_relieve);
     * with no job left none is in use, and a job that only fits alone must
     * not wait for the next relieve, which would never come */
    if (!e->n_running_jobs && !e->admitted) e->committed = 0;
    j->where = ENG_J_NONE;
    eng_admit_locked(e);
    pthread_mutex_unlock(&e->mu);
}

/* Rows of logits an echo + logprobs chunk may take: each is n_vocab floats
 * (64 rows of a 128k vocab: 32 MiB), so such a prompt is prefilled in chunks
 * of at most this many tokens, one such chunk per step. */
#define ECHO_LP_CHUNK 64

static void add_entry(eng_engine *e, int *n, eng_job *j, eng_choice *c, llm_batch_entry ent) {
    e->ent[*n] = ent;
    e->ent_ch[*n] = c;
    e->ent_job[(*n)++] = j;
}

/* Fills e->ent for one step; returns the entry count and the logits rows
 * they ask for in *rows. */
static int plan_step(eng_engine *e, int *rows) {
    int n = 0, budget = e->cfg.max_batch_tokens, all_used = 0;
    /* decoding sequences first: one token each keeps their latency flat */
    for (eng_job *j = e->running; j; j = j->next)
        for (int i = 0; i < j->n_choices; i++) {
            eng_choice *c = &j->ch[i];
            if (c->finished || c->slot < 0 || c->n_fed < c->n_fill || budget < 1) continue;
            add_entry(e, &n, j, c,
                      (llm_batch_entry){.seq = c->slot, .pos = c->n_prompt + c->n_gen - 1,
                                        .n_tokens = 1, .tokens = &c->next_tok,
                                        .logits = LLM_LOGITS_LAST});
            budget--;
        }
    *rows = n;
    for (eng_job *j = e->running; j; j = j->next)
        for (int i = 0; i < j->n_choices; i++) {
            eng_choice *c = &j->ch[i];
            if (c->finished || c->slot < 0 || c->n_fed >= c->n_fill || budget < 1) continue;
            /* prompt logprobs need a logits row per prompt token: one such
             * chunk a step, at most ECHO_LP_CHUNK tokens, keeps the buffer
             * at max_seqs + ECHO_LP_CHUNK rows; others wait a step. A
             * refill (after a preemption) wants no logits at all: its
             * next token was sampled before. */
            int all = j->p.prompt_logprobs && !c->refill;
            if (all && all_used) continue;
            int k = eng_prefix_cut(e, j, c) - c->n_fed;
            if (k > e->cfg.prefill_chunk) k = e->cfg.prefill_chunk;
            if (all && k > ECHO_LP_CHUNK) k = ECHO_LP_CHUNK;
            if (k > budget) k = budget;
            llm_logits_mode lm = all                                        ? LLM_LOGITS_ALL
                                 : c->n_fed + k == c->n_fill && !c->refill ? LLM_LOGITS_LAST
                                                                            : LLM_LOGITS_NONE;
            all_used |= all;
            *rows += lm == LLM_LOGITS_ALL ? k : lm == LLM_LOGITS_LAST;
            add_entry(e, &n, j, c,
                      (llm_batch_entry){.seq = c->slot, .pos = c->n_fed, .n_tokens = k,
                                        .tokens = c->prompt + c->n_fed, .logits = lm});
            budget -= k;
        }
    return n;
}

/* Hands the step's logits rows to their choices. */
static void apply_step(eng_engine *e, int n) {
    int n_vocab = llm_get_config(e->model)->n_vocab, row = 0;
    pthread_mutex_lock(&e->out_mu);
    for (int i = 0; i < n; i++) {
        eng_choice *c = e->ent_ch[i];
        eng_job *j = e->ent_job[i];
        const llm_batch_entry *en = &e->ent[i];
        if (en->n_tokens > 1 || c->n_fed < c->n_fill) c->n_fed += en->n_tokens;
        if (c->refill && c->n_fed == c->n_fill) c->refill = 0; /* decodes next_tok next */
        if (en->logits == LLM_LOGITS_ALL) {
            eng_prompt_logprobs(e, j, c, en->pos, en->n_tokens, e->logits + (size_t)row * n_vocab);
            row += en->n_tokens;
            /* the last prompt chunk's last row is also the first sample's */
            if (c->n_fed == c->n_fill)
                eng_sample_choice(e, j, c, e->logits + (size_t)(row - 1) * n_vocab);
            eng_mark_dirty_locked(e, j);
            continue;
        }
        if (en->logits != LLM_LOGITS_LAST) continue;
        eng_sample_choice(e, j, c, e->logits + (size_t)row++ * n_vocab);
        eng_mark_dirty_locked(e, j);
    }
    pthread_mutex_unlock(&e->out_mu);
}

/* One scheduler step over the running list. Returns 0 or a PV_* error of the
 * forward pass (then every running job fails). */
static int step(eng_engine *e) {
    int rows, n = plan_step(e, &rows);
    if (!n) return 0;
    int n_vocab = llm_get_config(e->model)->n_vocab;
    if (rows > e->logits_rows) { /* grown once, on the first prompt-logprobs job */
        float *p = realloc(e->logits, sizeof(float) * (size_t)rows * n_vocab);
        if (!p) return PV_ENOMEM;
        e->logits = p;
        e->logits_rows = rows;
    }
    int rc = e->hooks.step ? e->hooks.step(e->hooks.arg, e->ent, n) : 0;
    if (!rc) rc = llm_decode(e->ctx, e->ent, n, e->logits);
    if (rc) return rc;
    apply_step(e, n);
    /* prefill chunks done this step: what the prefix cache can take goes
     * there now, so requests running beside them with the same prefix can
     * share it */
    for (int i = 0; i < n; i++)
        eng_prefix_chunk_done(e, e->ent_job[i], e->ent_ch[i], e->ent[i].pos + e->ent[i].n_tokens);
    return 0;
}

static void report_done(eng_engine *e, eng_job *j, int cancelled, int fail_rc) {
    if (!e->hooks.request_done) return;
    int gen = 0;
    for (int i = 0; i < j->n_choices; i++) gen += j->ch[i].n_gen;
    eng_request_stats st = {.prompt_tokens = j->prompt_tokens, .gen_tokens = gen,
                            .ttft = atomic_load(&j->t_first) ? atomic_load(&j->t_first) - j->t_submit : 0,
                            .e2e = j->t_end - j->t_submit,
                            .outcome = cancelled ? "abort" : fail_rc ? "error" : "ok"};
    e->hooks.request_done(e->hooks.arg, &st);
}

/* Retires finished and cancelled jobs; publishes their last output. The
 * engine_done flag goes last: once the caller sees it, it may free the job. */
static void retire(eng_engine *e, int fail_rc) {
    eng_job **pp = &e->running;
    while (*pp) {
        eng_job *j = *pp;
        int cancelled = atomic_load(&j->cancelled), all = 1;
        pthread_mutex_lock(&e->out_mu);
        for (int i = 0; i < j->n_choices; i++) {
            if (cancelled || fail_rc)
                eng_finish_choice(e, &j->ch[i], cancelled && !j->err ? "cancelled" : "error", 0);
            all &= j->ch[i].finished;
        }
        pthread_mutex_unlock(&e->out_mu);
        if (!all) {
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        j->t_end = pv_now();
        if (fail_rc && !cancelled) {
            j->err = fail_rc;
            snprintf(j->err_msg, sizeof j->err_msg, "decoding failed: %s", pv_strerror(fail_rc));
        }
        report_done(e, j, cancelled, fail_rc);
        job_release(e, j);
        pthread_mutex_lock(&e->out_mu);
        j->engine_done = 1;
        eng_mark_dirty_locked(e, j);
        pthread_mutex_unlock(&e->out_mu);
    }
}

static void publish_gauges(eng_engine *e) {
    if (!e->hooks.gauges) return;
    eng_gauges g = {0};
    for (eng_job *j = e->running; j; j = j->next)
        for (int i = 0; i < j->n_choices; i++) {
            const eng_choice *c = &j->ch[i];
            if (c->slot < 0) continue;
            kv_usage u;
            kv_seq_usage(llm_ctx_kv(e->ctx), c->slot, &u);
            g.kv_stored += u.bytes_stored - u.bytes_cached; /* shared blocks: below, once */
            g.kv_fp16 += u.bytes_fp16;
            g.kv_tokens += u.n_tokens;
        }
    kv_prefix_stats ps0;
    kv_prefix_get_stats(llm_ctx_kv(e->ctx), &ps0);
    g.kv_stored += ps0.bytes_referenced;
    g.prefix_queries = e->pfx_queries;
    g.prefix_hits = e->pfx_hits;
    g.prefix_blocks = ps0.blocks;
    g.prefix_bytes = ps0.bytes;
    g.prefix_bytes_used = ps0.bytes_referenced;
    g.block_tokens = e->page_tokens;
    g.page_bytes = e->page_bytes;
    g.prefix_on = !e->on_cuda && !e->cfg.prefix_cache_off;
    pthread_mutex_lock(&e->mu);
    g.running = e->n_running_jobs;
    g.waiting = e->n_waiting;
    g.kv_reserved = e->committed;
    pthread_mutex_unlock(&e->mu);
    g.kv_capacity = e->cfg.kv_memory;
    kv_pool_stats ps;
    kv_pool_get_stats(e->pool, &ps);
    g.pool_used = ps.used;
    g.pool_peak = ps.peak;
    g.pool_limit = ps.limit;
    g.preemptions = e->n_preempt;
    g.elastic_compressions = e->n_elastic;
    g.elastic_tokens = e->el_tokens;
    g.elastic_bytes = e->el_bytes;
    e->hooks.gauges(e->hooks.arg, &g);
}

static void wake(eng_engine *e) {
    if (e->hooks.wake) e->hooks.wake(e->hooks.arg);
}

void *eng_main(void *arg) {
    eng_engine *e = arg;
    int ok = eng_load(e) == 0;
    atomic_store(&e->state, ok ? ENG_READY : ENG_FAILED);
    wake(e);
    pthread_mutex_lock(&e->mu);
    while (ok && !e->quit) {
        eng_job *fresh = e->admitted;
        e->admitted = NULL;
        if (!fresh && !e->running) {
            if (atomic_load(&e->pfx_flush)) { /* idle: flush and show it */
                pthread_mutex_unlock(&e->mu);
                eng_prefix_service(e);
                publish_gauges(e);
                wake(e);
                pthread_mutex_lock(&e->mu);
                continue;
            }
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        for (eng_job *j = fresh; j; j = j->next) {
            j->where = ENG_J_RUNNING;
            e->n_running_jobs++;
        }
        pthread_mutex_unlock(&e->mu);
        eng_job **tail = &e->running;
        while (*tail) tail = &(*tail)->next;
        *tail = fresh; /* FIFO: the running list stays in admission order */
        for (eng_job *j = fresh; j; j = j->next) start_job(e, j);
        retire(e, 0);
        eng_prefix_service(e); /* a flush asked while busy */
        eng_relieve(e);
        int rc = step(e);
        retire(e, rc);
        publish_gauges(e);
        eng_snap_service(e); /* KV map snapshots asked for, between steps */
        wake(e);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}
