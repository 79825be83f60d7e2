/* engine: the decoder thread and its continuous-batching scheduler.
 *
 * Each step is one llm_decode over every running sequence: one token for
 * each sequence that is decoding, then prompt chunks (at most prefill_chunk
 * tokens per sequence) for sequences still prefilling, until
 * max_batch_tokens. So a long prompt is spread over several steps while the
 * others keep decoding, and a new request joins at the next step. A finished
 * or cancelled sequence leaves at once and kv_seq_reset frees its pages.
 *
 * Admission is by KV bytes: a job reserves, per choice, the bytes its cache
 * will hold at prompt + max_tokens tokens under the request's own policy
 * (kv_policy_seq_bytes: exact, page-rounded), and is admitted when the
 * reservation fits --kv-memory and it gets enough sequence slots. Accounting
 * happens under `mu` at submit and release time, so the 429 decision is
 * exact.
 *
 * Per-request policies: on the CPU the cache is a kv_router over one
 * kv_pool; start_job gives each slot its request's policy before the first
 * store. The pool's limit is --kv-memory plus kv_router_headroom (what one
 * step may hold above the admitted sizes), so a running batch never hits it;
 * if it did, the step fails with PV_ENOMEM and the running requests get 500,
 * nothing crashes. On CUDA the GPU's own FP16 cache serves `full` only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_policy.h"
#include "kv_pool.h"
#include "kv_router.h"
#include "pverr.h"
#include "srv.h"


struct srv_engine {
    const srv_config *cfg;
    srv_metrics *met;
    uv_async_t *wake;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    srv_job *wait_head, *wait_tail, *admitted;
    int n_waiting, n_running_jobs, quit;
    size_t reserved;
    int slots_used;
    /* under out_mu */
    pthread_mutex_t out_mu;
    srv_job *dirty;
    /* published once by the engine thread (state is the release flag) */
    atomic_int state;
    char err[512];
    llm_model *model;
    int max_ctx;
    kv_policy policy;
    kv_shape shape;
    kv_pool *pool; /* pages of every CPU cache (NULL on CUDA) */
    int on_cuda;   /* GPU cache: plain FP16 only, no per-slot policies */
    /* engine thread only */
    llm_ctx *ctx;
    srv_job *running;
    int *slot_free;
    int32_t *eog; /* end-of-generation ids */
    int n_eog;
    float *logits, *row_copy;
    int logits_rows; /* rows e->logits holds: max_seqs, more once a prompt's logprobs are asked */
    llm_batch_entry *ent;
    srv_choice **ent_ch;
    srv_job **ent_job;
};

int srv_buf_add(srv_buf *b, const void *d, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return PV_ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

void srv_buf_free(srv_buf *b) {
    free(b->p);
    *b = (srv_buf){0};
}

void srv_job_free(srv_job *j) {
    if (!j) return;
    for (int i = 0; i < j->n_choices; i++) {
        srv_choice *c = &j->ch[i];
        free(c->prompt);
        smp_free(c->smp);
        tok_stream_free(c->ts);
        srv_buf_free(&c->out);
        srv_buf_free(&c->got);
        free(c->lp);
        free(c->got_lp);
    }
    free(j->ch);
    api_request_free(&j->req);
    free(j);
}

int srv_engine_state(srv_engine *e) { return atomic_load(&e->state); }
const char *srv_engine_error(srv_engine *e) { return e->err; }
const llm_model *srv_engine_model(srv_engine *e) {
    return atomic_load(&e->state) == SRV_READY ? e->model : NULL;
}
int srv_engine_max_ctx(srv_engine *e) { return e->max_ctx; }

const kv_policy *srv_engine_policy(srv_engine *e) { return &e->policy; }

size_t srv_engine_seq_bytes(srv_engine *e, const kv_policy *p, int n_tokens) {
    return kv_policy_seq_bytes(p ? p : &e->policy, &e->shape, n_tokens);
}

int srv_engine_check_policy(srv_engine *e, const kv_policy *p, char *err, size_t errlen) {
    if (e->on_cuda && !kv_policy_is_plain(p)) {
        snprintf(err, errlen,
                 "this server runs on CUDA, where only the plain FP16 cache (kv_policy full) "
                 "exists so far");
        return PV_EUNSUPPORTED;
    }
    return kv_policy_check_shape(p, &e->shape, err, errlen);
}

/* ---- admission (under mu) ---- */

static int fits_locked(srv_engine *e, const srv_job *j) {
    return e->reserved + j->kv_reserve <= e->cfg->kv_memory &&
           e->slots_used + j->n_choices <= e->cfg->max_seqs;
}

static void admit_locked(srv_engine *e) {
    while (e->wait_head && fits_locked(e, e->wait_head)) {
        srv_job *j = e->wait_head;
        e->wait_head = j->next;
        if (!e->wait_head) e->wait_tail = NULL;
        e->n_waiting--;
        e->reserved += j->kv_reserve;
        e->slots_used += j->n_choices;
        j->where = SRV_J_ADMITTED;
        j->next = e->admitted;
        e->admitted = j;
    }
}

int srv_engine_submit(srv_engine *e, srv_job *j, char *msg, size_t msglen) {
    if (j->kv_reserve > e->cfg->kv_memory || j->n_choices > e->cfg->max_seqs) {
        snprintf(msg, msglen,
                 "this request needs %zu bytes of KV cache in %d sequences; the server holds at "
                 "most %zu bytes and %d sequences",
                 j->kv_reserve, j->n_choices, e->cfg->kv_memory, e->cfg->max_seqs);
        return 400;
    }
    pthread_mutex_lock(&e->mu);
    if ((e->wait_head || !fits_locked(e, j)) && e->n_waiting >= e->cfg->max_queue) {
        pthread_mutex_unlock(&e->mu);
        snprintf(msg, msglen, "the server is busy: %d requests are waiting; retry later",
                 e->n_waiting);
        return 429;
    }
    j->next = NULL;
    j->where = SRV_J_WAITING;
    if (e->wait_tail) e->wait_tail->next = j;
    else e->wait_head = j;
    e->wait_tail = j;
    e->n_waiting++;
    admit_locked(e);
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

int srv_engine_cancel(srv_engine *e, srv_job *j) {
    pthread_mutex_lock(&e->mu);
    if (j->where == SRV_J_WAITING) {
        srv_job **pp = &e->wait_head, *prev = NULL;
        while (*pp && *pp != j) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp) *pp = j->next;
        if (e->wait_tail == j) e->wait_tail = prev;
        e->n_waiting--;
        j->where = SRV_J_NONE;
        pthread_mutex_unlock(&e->mu);
        return 1;
    }
    atomic_store(&j->cancelled, 1);
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

void srv_engine_cancel_all(srv_engine *e) {
    pthread_mutex_lock(&e->mu);
    for (srv_job *j = e->admitted; j; j = j->next) atomic_store(&j->cancelled, 1);
    for (srv_job *j = e->running; j; j = j->next) atomic_store(&j->cancelled, 1);
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* ---- engine -> loop output ---- */

static void mark_dirty_locked(srv_engine *e, srv_job *j) {
    if (j->in_dirty) return;
    j->in_dirty = 1;
    j->dirty_next = e->dirty;
    e->dirty = j;
}

static void move_lp(api_logprob **dst, int *n_dst, int *cap_dst, api_logprob *src, int n) {
    if (!n) return;
    if (*n_dst + n > *cap_dst) {
        int cap = *cap_dst ? *cap_dst : 16;
        while (cap < *n_dst + n) cap *= 2;
        api_logprob *p = realloc(*dst, sizeof *p * cap);
        if (!p) return; /* logprobs are lost rather than the text */
        *dst = p;
        *cap_dst = cap;
    }
    memcpy(*dst + *n_dst, src, sizeof *src * n);
    *n_dst += n;
}

srv_job *srv_engine_collect(srv_engine *e) {
    pthread_mutex_lock(&e->out_mu);
    srv_job *list = e->dirty;
    e->dirty = NULL;
    for (srv_job *j = list; j; j = j->dirty_next) {
        j->in_dirty = 0;
        for (int i = 0; i < j->n_choices; i++) {
            srv_choice *c = &j->ch[i];
            if (c->out.len) srv_buf_add(&c->got, c->out.p, c->out.len);
            c->out.len = 0;
            move_lp(&c->got_lp, &c->n_got_lp, &c->cap_got_lp, c->lp, c->n_lp);
            c->n_lp = 0;
            c->got_tokens = c->out_tokens;
            if (c->finish) c->got_finish = c->finish;
        }
        if (j->engine_done) j->done_seen = 1;
    }
    pthread_mutex_unlock(&e->out_mu);
    return list;
}

/* ---- the decoder thread ---- */

static int is_eog(const srv_engine *e, int32_t t) {
    for (int i = 0; i < e->n_eog; i++)
        if (e->eog[i] == t) return 1;
    return 0;
}

/* Starts an admitted job: slots, samplers, stream decoders. */
static int start_job(srv_engine *e, srv_job *j) {
    const tok_vocab *v = llm_get_vocab(e->model);
    const api_request *r = &j->req;
    /* No slot yet for any choice: a failure part-way must not make
     * finish_choice reset slot 0 for the choices not reached. */
    for (int i = 0; i < j->n_choices; i++) j->ch[i].slot = -1;
    for (int i = 0; i < j->n_choices; i++) {
        srv_choice *c = &j->ch[i];
        for (int s = 0; s < e->cfg->max_seqs; s++)
            if (e->slot_free[s]) {
                e->slot_free[s] = 0;
                c->slot = s;
                break;
            }
        smp_params p = smp_default_params();
        p.temperature = r->temperature;
        p.top_k = r->top_k;
        p.top_p = r->top_p;
        p.min_p = r->min_p;
        p.repetition_penalty = r->repetition_penalty;
        p.presence_penalty = r->presence_penalty;
        p.frequency_penalty = r->frequency_penalty;
        /* Without a seed each choice draws differently; with one, choice i
         * uses seed + i so n > 1 still gives distinct samples. */
        p.seed = r->has_seed ? r->seed + (uint64_t)i
                             : (uint64_t)(pv_now() * 1e9) ^ ((uint64_t)(uintptr_t)c << 7);
        if (c->slot < 0 || smp_create(&p, llm_get_config(e->model)->n_vocab, &c->smp) ||
            !(c->ts = tok_stream_new(v, 0)))
            return PV_ENOMEM;
        /* The slot is empty (reset when it was freed), so its policy can be
         * set before the first store. */
        char err[256] = "";
        int rc = e->on_cuda ? 0
                            : kv_seq_set_policy(llm_ctx_kv(e->ctx), c->slot, &j->policy, err,
                                                sizeof err);
        if (rc) {
            j->err_status = rc == PV_ESPACE ? 503 : 500;
            snprintf(j->err_msg, sizeof j->err_msg, "%s", err);
            return rc;
        }
        for (int k = 0; k < c->n_prompt; k++) smp_accept(c->smp, c->prompt[k]);
        api_stop_init(&c->stop, r->stop, r->n_stop);
    }
    return 0;
}

static void emit_text(srv_choice *c, const char *s, size_t n) {
    if (n) srv_buf_add(&c->out, s, n);
}

/* Ends a choice: the held-back text is released (unless a stop string cut
 * it), usage recorded, the KV slot reset and freed. Called under out_mu. */
static void finish_choice(srv_engine *e, srv_choice *c, const char *reason, int flush) {
    if (c->finished) return;
    if (flush) {
        char buf[API_STOP_MAXLEN + 64];
        int w = tok_stream_flush(c->ts, buf, sizeof buf);
        size_t n = 0;
        char out[2 * API_STOP_MAXLEN + 128];
        if (w > 0 && api_stop_push(&c->stop, buf, (size_t)w, out, &n)) {
            emit_text(c, out, n);
        } else {
            emit_text(c, out, n);
            n = api_stop_flush(&c->stop, out);
            emit_text(c, out, n);
        }
    }
    c->finished = 1;
    c->finish = reason;
    if (c->slot >= 0) {
        kv_seq_usage(llm_ctx_kv(e->ctx), c->slot, &c->kv);
        kv_seq_reset(llm_ctx_kv(e->ctx), c->slot);
        e->slot_free[c->slot] = 1;
        c->slot = -1;
    }
}

/* log-softmax over the raw logits for the logprobs fields. */
static void fill_logprob(const float *row, int n_vocab, int32_t tok, int top, api_logprob *lp) {
    float mx = -INFINITY;
    for (int i = 0; i < n_vocab; i++) mx = row[i] > mx ? row[i] : mx;
    double s = 0;
    for (int i = 0; i < n_vocab; i++) s += exp((double)row[i] - mx);
    float lse = mx + (float)log(s);
    lp->id = tok;
    lp->logprob = row[tok] - lse;
    lp->n_top = 0;
    for (int i = 0; i < n_vocab && top > 0; i++) {
        int k = lp->n_top;
        if (k == top && row[i] - lse <= lp->top_lp[k - 1]) continue;
        if (k < top) lp->n_top++;
        else k--;
        while (k > 0 && lp->top_lp[k - 1] < row[i] - lse) {
            lp->top_lp[k] = lp->top_lp[k - 1];
            lp->top_id[k] = lp->top_id[k - 1];
            k--;
        }
        lp->top_lp[k] = row[i] - lse;
        lp->top_id[k] = i;
    }
}

/* A new entry at the end of a choice's logprobs, or NULL when out of memory
 * (the logprobs are lost rather than the text). Called under out_mu. */
static api_logprob *push_lp(srv_choice *c) {
    if (c->n_lp == c->cap_lp) {
        int cap = c->cap_lp ? c->cap_lp * 2 : 16;
        api_logprob *p = realloc(c->lp, sizeof *p * cap);
        if (!p) return NULL;
        c->lp = p;
        c->cap_lp = cap;
    }
    return &c->lp[c->n_lp++];
}

/* echo + logprobs: the prompt's own logprobs from a chunk prefilled with
 * LLM_LOGITS_ALL. rows[r] is the distribution after prompt[pos + r], so it
 * scores prompt[pos + r + 1]; the first prompt token has nothing before it
 * and gets a NaN logprob, which the formatter writes as null. Called under
 * out_mu. */
static void prompt_logprobs(srv_engine *e, srv_job *j, srv_choice *c, int pos, int k,
                            const float *rows) {
    int n_vocab = llm_get_config(e->model)->n_vocab;
    if (pos == 0) {
        api_logprob *lp = push_lp(c);
        if (lp) *lp = (api_logprob){.id = c->prompt[0], .logprob = NAN};
    }
    for (int r = 0; r < k && pos + r + 1 < c->n_prompt; r++) {
        api_logprob *lp = push_lp(c);
        if (lp)
            fill_logprob(rows + (size_t)r * n_vocab, n_vocab, c->prompt[pos + r + 1],
                         j->req.top_logprobs, lp);
    }
}

/* Rows of logits an echo + logprobs chunk may take: each is n_vocab floats
 * (64 rows of a 128k vocab: 32 MiB), so such a prompt is prefilled in chunks
 * of at most this many tokens, one such chunk per step. */
#define ECHO_LP_CHUNK 64

/* Samples the next token of a choice from its logits row and emits its text.
 * Called under out_mu. */
static void sample_choice(srv_engine *e, srv_job *j, srv_choice *c, float *row) {
    const api_request *r = &j->req;
    int n_vocab = llm_get_config(e->model)->n_vocab;
    if (c->n_gen < r->min_tokens) { /* vLLM's min_tokens: no stop tokens before */
        if (!r->ignore_eos)
            for (int i = 0; i < e->n_eog; i++) row[e->eog[i]] = -INFINITY;
        for (int i = 0; i < r->n_stop_ids; i++) row[r->stop_ids[i]] = -INFINITY;
    }
    if (r->logprobs) memcpy(e->row_copy, row, sizeof(float) * n_vocab);
    int32_t tok = smp_sample(c->smp, row);
    smp_accept(c->smp, tok);
    c->n_gen++;
    c->out_tokens = c->n_gen;
    c->next_tok = tok;
    if (!j->t_first) j->t_first = pv_now();
    if (r->logprobs) {
        api_logprob *lp = push_lp(c);
        if (lp) fill_logprob(e->row_copy, n_vocab, tok, r->top_logprobs, lp);
    }
    int stop_tok = (!r->ignore_eos && is_eog(e, tok));
    for (int i = 0; i < r->n_stop_ids && !stop_tok; i++) stop_tok = r->stop_ids[i] == tok;
    if (stop_tok) {
        finish_choice(e, c, "stop", 1);
        return;
    }
    char piece[256], out[API_STOP_MAXLEN + 256];
    int w = tok_stream_push(c->ts, tok, piece, sizeof piece);
    size_t n = 0;
    if (w > 0 && api_stop_push(&c->stop, piece, (size_t)w, out, &n)) {
        emit_text(c, out, n);
        finish_choice(e, c, "stop", 0);
        return;
    }
    emit_text(c, out, n);
    int pos = c->n_prompt + c->n_gen - 1; /* position the sampled token would take */
    if (c->n_gen >= c->max_new || pos >= e->max_ctx) finish_choice(e, c, "length", 1);
}

static void job_release(srv_engine *e, srv_job *j) {
    pthread_mutex_lock(&e->mu);
    e->reserved -= j->kv_reserve;
    e->slots_used -= j->n_choices;
    e->n_running_jobs--;
    j->where = SRV_J_NONE;
    admit_locked(e);
    pthread_mutex_unlock(&e->mu);
}

/* One scheduler step over the running list. Returns 0 or a PV_* error of the
 * forward pass (then every running job fails). */
static int step(srv_engine *e) {
    int n = 0, budget = e->cfg->max_batch_tokens;
    int n_vocab = llm_get_config(e->model)->n_vocab;
    /* decoding sequences first: one token each keeps their latency flat */
    for (srv_job *j = e->running; j; j = j->next)
        for (int i = 0; i < j->n_choices; i++) {
            srv_choice *c = &j->ch[i];
            if (c->finished || c->n_fed < c->n_prompt || budget < 1) continue;
            e->ent[n] = (llm_batch_entry){.seq = c->slot, .pos = c->n_prompt + c->n_gen - 1,
                                          .n_tokens = 1, .tokens = &c->next_tok,
                                          .logits = LLM_LOGITS_LAST};
            e->ent_ch[n] = c;
            e->ent_job[n++] = j;
            budget--;
        }
    int rows = n, all_used = 0;
    for (srv_job *j = e->running; j; j = j->next)
        for (int i = 0; i < j->n_choices; i++) {
            srv_choice *c = &j->ch[i];
            if (c->finished || c->n_fed >= c->n_prompt || budget < 1) continue;
            /* echo + logprobs needs a logits row per prompt token: one such
             * chunk a step, at most ECHO_LP_CHUNK tokens, keeps the buffer
             * at max_seqs + ECHO_LP_CHUNK rows; others wait a step. */
            int all = j->req.echo && j->req.logprobs && j->req.kind == API_COMPLETIONS;
            if (all && all_used) continue;
            int k = c->n_prompt - c->n_fed;
            if (k > e->cfg->prefill_chunk) k = e->cfg->prefill_chunk;
            if (all && k > ECHO_LP_CHUNK) k = ECHO_LP_CHUNK;
            if (k > budget) k = budget;
            llm_logits_mode lm = all                        ? LLM_LOGITS_ALL
                                 : c->n_fed + k == c->n_prompt ? LLM_LOGITS_LAST
                                                               : LLM_LOGITS_NONE;
            all_used |= all;
            rows += lm == LLM_LOGITS_ALL ? k : lm == LLM_LOGITS_LAST;
            e->ent[n] = (llm_batch_entry){.seq = c->slot, .pos = c->n_fed, .n_tokens = k,
                                          .tokens = c->prompt + c->n_fed, .logits = lm};
            e->ent_ch[n] = c;
            e->ent_job[n++] = j;
            budget -= k;
        }
    if (!n) return 0;
    if (rows > e->logits_rows) { /* grown once, on the first echo + logprobs request */
        float *p = realloc(e->logits, sizeof(float) * (size_t)rows * n_vocab);
        if (!p) return PV_ENOMEM;
        e->logits = p;
        e->logits_rows = rows;
    }
    int rc = llm_decode(e->ctx, e->ent, n, e->logits);
    if (rc) return rc;
    int row = 0;
    pthread_mutex_lock(&e->out_mu);
    for (int i = 0; i < n; i++) {
        srv_choice *c = e->ent_ch[i];
        if (e->ent[i].n_tokens > 1 || c->n_fed < c->n_prompt) c->n_fed += e->ent[i].n_tokens;
        if (e->ent[i].logits == LLM_LOGITS_ALL) {
            int k = e->ent[i].n_tokens;
            prompt_logprobs(e, e->ent_job[i], c, e->ent[i].pos, k, e->logits + (size_t)row * n_vocab);
            row += k;
            /* the last prompt chunk's last row is also the first sample's */
            if (c->n_fed == c->n_prompt)
                sample_choice(e, e->ent_job[i], c, e->logits + (size_t)(row - 1) * n_vocab);
            mark_dirty_locked(e, e->ent_job[i]);
            continue;
        }
        if (e->ent[i].logits != LLM_LOGITS_LAST) continue;
        sample_choice(e, e->ent_job[i], c, e->logits + (size_t)row++ * n_vocab);
        mark_dirty_locked(e, e->ent_job[i]);
    }
    pthread_mutex_unlock(&e->out_mu);
    return 0;
}

/* Retires finished and cancelled jobs; publishes their last output. The
 * engine_done flag goes last: once the loop sees it, it may free the job. */
static void retire(srv_engine *e, int fail_rc) {
    srv_job **pp = &e->running;
    while (*pp) {
        srv_job *j = *pp;
        int cancelled = atomic_load(&j->cancelled), all = 1;
        pthread_mutex_lock(&e->out_mu);
        for (int i = 0; i < j->n_choices; i++) {
            if (cancelled || fail_rc) finish_choice(e, &j->ch[i], cancelled ? "cancelled" : "error", 0);
            all &= j->ch[i].finished;
        }
        pthread_mutex_unlock(&e->out_mu);
        if (!all) {
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        j->t_end = pv_now();
        int gen = 0;
        for (int i = 0; i < j->n_choices; i++) gen += j->ch[i].n_gen;
        srv_metrics_request(e->met, j->prompt_tokens, gen, j->t_first ? j->t_first - j->t_arrive : 0,
                            j->t_end - j->t_arrive, cancelled ? "abort" : fail_rc ? "error" : "ok");
        if (fail_rc && !cancelled) {
            j->err_status = 500;
            snprintf(j->err_msg, sizeof j->err_msg, "decoding failed: %s", pv_strerror(fail_rc));
        }
        job_release(e, j);
        pthread_mutex_lock(&e->out_mu);
        j->engine_done = 1;
        mark_dirty_locked(e, j);
        pthread_mutex_unlock(&e->out_mu);
    }
}

static void publish_gauges(srv_engine *e) {
    srv_gauges g = {0};
    for (srv_job *j = e->running; j; j = j->next)
        for (int i = 0; i < j->n_choices; i++) {
            const srv_choice *c = &j->ch[i];
            if (c->slot < 0) continue;
            kv_usage u;
            kv_seq_usage(llm_ctx_kv(e->ctx), c->slot, &u);
            g.kv_stored += u.bytes_stored;
            g.kv_fp16 += u.bytes_fp16;
            g.kv_tokens += u.n_tokens;
        }
    pthread_mutex_lock(&e->mu);
    g.running = e->n_running_jobs;
    g.waiting = e->n_waiting;
    g.kv_reserved = e->reserved;
    pthread_mutex_unlock(&e->mu);
    g.kv_capacity = e->cfg->kv_memory;
    kv_pool_stats ps;
    kv_pool_get_stats(e->pool, &ps);
    g.pool_used = ps.used;
    g.pool_peak = ps.peak;
    g.pool_limit = ps.limit;
    srv_metrics_set_gauges(e->met, &g);
}

static int load(srv_engine *e) {
    char err[400] = "";
    int rc = llm_load(e->cfg->model_path, &e->model, err, sizeof err);
    if (rc) {
        snprintf(e->err, sizeof e->err, "cannot load model %s: %s", e->cfg->model_path,
                 err[0] ? err : pv_strerror(rc));
        return rc;
    }
    const llm_config *cf = llm_get_config(e->model);
    e->max_ctx = e->cfg->ctx > 0 && e->cfg->ctx < cf->n_ctx_train ? e->cfg->ctx : cf->n_ctx_train;
    int threads = e->cfg->threads > 0 ? e->cfg->threads : (int)uv_available_parallelism();
    llm_ctx_params p = {.n_threads = threads, .max_seqs = e->cfg->max_seqs,
                        .max_ctx = e->max_ctx, .max_batch_tokens = e->cfg->max_batch_tokens};
    if ((rc = kv_policy_parse(e->cfg->kv_policy, &e->policy, err, sizeof err))) {
        snprintf(e->err, sizeof e->err, "kv cache: %s", err);
        return rc;
    }
    /* Device: cmd_serve already refused cuda with a compressed policy; auto
     * takes the GPU only when the default policy is full (the GPU has no
     * other cache yet) and the model runs there. */
    llm_device dev = LLM_DEVICE_AUTO;
    if (e->cfg->device) llm_device_parse(e->cfg->device, &dev);
    int plain = kv_policy_is_plain(&e->policy);
    char why[256] = "";
    if (dev == LLM_DEVICE_CUDA && !llm_cuda_usable(e->model, 0, why, sizeof why)) {
        snprintf(e->err, sizeof e->err, "--device cuda: %s", why);
        return PV_ENODEV;
    }
    e->on_cuda = dev == LLM_DEVICE_CUDA ||
                 (dev == LLM_DEVICE_AUTO && plain && llm_cuda_usable(e->model, 0, NULL, 0));
    p.device = e->on_cuda ? LLM_DEVICE_CUDA : LLM_DEVICE_CPU;
    e->shape = llm_kv_shape(e->model, &p);
    kv_cache *kv = NULL;
    if (!e->on_cuda) {
        size_t limit = e->cfg->kv_memory + kv_router_headroom(&e->shape, e->cfg->max_batch_tokens);
        if ((rc = kv_pool_create(limit, &e->pool))) {
            snprintf(e->err, sizeof e->err, "kv pool: %s", pv_strerror(rc));
            return rc;
        }
        e->shape.pool = e->pool;
        kv_shape routed = e->shape; /* slots take each request's own policy */
        routed.routed = 1;
        if ((rc = kv_create(&routed, &e->policy, &kv, err, sizeof err))) {
            snprintf(e->err, sizeof e->err, "kv cache: %s", err);
            return rc;
        }
    }
    if ((rc = llm_ctx_create(e->model, &p, kv, &e->ctx))) {
        snprintf(e->err, sizeof e->err, "cannot create the decoder context on %s: %s",
                 e->on_cuda ? "cuda" : "cpu", pv_strerror(rc));
        return rc;
    }
    fprintf(stderr, "pivot serve: decoding on %s\n", e->on_cuda ? "cuda" : "cpu");
    int S = e->cfg->max_seqs;
    e->slot_free = malloc(sizeof(int) * S);
    e->logits = malloc(sizeof(float) * (size_t)S * cf->n_vocab);
    e->logits_rows = S;
    e->row_copy = malloc(sizeof(float) * cf->n_vocab);
    e->ent = malloc(sizeof *e->ent * S);
    e->ent_ch = malloc(sizeof *e->ent_ch * S);
    e->ent_job = malloc(sizeof *e->ent_job * S);
    e->eog = malloc(sizeof(int32_t) * 64);
    if (!e->slot_free || !e->logits || !e->row_copy || !e->ent || !e->ent_ch || !e->ent_job || !e->eog) {
        snprintf(e->err, sizeof e->err, "out of memory");
        return PV_ENOMEM;
    }
    for (int s = 0; s < S; s++) e->slot_free[s] = 1;
    const tok_vocab *v = llm_get_vocab(e->model);
    for (int32_t t = 0; t < cf->n_vocab && e->n_eog < 64; t++)
        if (tok_is_eog(v, t)) e->eog[e->n_eog++] = t;
    return 0;
}

static void *engine_main(void *arg) {
    srv_engine *e = arg;
    int ok = load(e) == 0;
    atomic_store(&e->state, ok ? SRV_READY : SRV_FAILED);
    uv_async_send(e->wake);
    pthread_mutex_lock(&e->mu);
    while (ok && !e->quit) {
        srv_job *fresh = e->admitted;
        e->admitted = NULL;
        if (!fresh && !e->running) {
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        for (srv_job *j = fresh; j; j = j->next) {
            j->where = SRV_J_RUNNING;
            e->n_running_jobs++;
        }
        pthread_mutex_unlock(&e->mu);
        while (fresh) { /* admitted in LIFO order; order inside one step is irrelevant */
            srv_job *j = fresh;
            fresh = j->next;
            j->next = e->running;
            e->running = j;
            if (start_job(e, j)) atomic_store(&j->cancelled, 1);
        }
        retire(e, 0);
        int rc = step(e);
        retire(e, rc);
        publish_gauges(e);
        uv_async_send(e->wake);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

int srv_engine_start(const srv_config *cfg, srv_metrics *met, uv_async_t *wake, srv_engine **out) {
    srv_engine *e = calloc(1, sizeof *e);
    if (!e) return PV_ENOMEM;
    e->cfg = cfg;
    e->met = met;
    e->wake = wake;
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->out_mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (pthread_create(&e->th, NULL, engine_main, e)) {
        free(e);
        return PV_ENOMEM;
    }
    *out = e;
    return 0;
}

void srv_engine_stop(srv_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->quit = 1;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->th, NULL);
    llm_ctx_free(e->ctx);
    kv_pool_destroy(e->pool); /* after the caches that take pages from it */
    llm_free(e->model);
    free(e->slot_free);
    free(e->logits);
    free(e->row_copy);
    free(e->ent);
    free(e->ent_ch);
    free(e->ent_job);
    free(e->eog);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->out_mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}
