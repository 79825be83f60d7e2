/* completions: /v1/completions and /v1/chat/completions on the loop side —
 * request -> engine job (tokenize, check against the model and the context),
 * and engine output -> JSON response or SSE chunks.
 *
 * Ownership: a cmpl_req is made per accepted request and freed once the
 * engine reports its job done (or at once when the client goes away while
 * the job still waits). Its connection pointer is cleared when the client
 * goes away; the engine then finishes the job as cancelled. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "completions.h"
#include "eng_job.h"
#include "prompt.h"
#include "pverr.h"
#include "structured.h"

struct srv_cmpl {
    eng_engine *eng;
    const char *model_name;
    int n_jobs;
    uint64_t next_id;
    struct cmpl_req *live_head, *live_tail; /* submitted, not yet done (the KV map's list) */
    srv_cmpl_done_fn on_done;
    void *on_done_arg;
};

/* What the client has been sent of one choice, and what it has not yet. */
typedef struct {
    pv_buf got; /* text not yet sent (all of it, for a plain response) */
    api_logprob *lp;
    int n_lp, cap_lp;
    int tokens;
    const char *finish;
    int sent_finish;
    size_t text_offset;
    int hold; /* tools: the text so far may be a tool call, so it is held back */
} cmpl_choice;

typedef struct cmpl_req {
    srv_cmpl *m;
    struct cmpl_req *live_prev, *live_next;
    int live;        /* in m's live list */
    int32_t *ids0;   /* choice 0: prompt then generated tokens (the KV map's text) */
    int n_ids0, cap_ids0, n_prompt0;
    eng_job *job;
    srv_conn *conn; /* NULL once the client went away */
    char id[48];
    api_request req;
    int n_choices;
    cmpl_choice *ch;
    char policy_name[24];  /* KV policy preset, for usage.kv_cache */
    char policy_spec[320]; /* kv_policy_describe, for usage.kv_cache.spec */
    int started;
    int tools_on; /* chat with tools and tool_choice other than none: outputs may be calls */
} cmpl_req;

srv_cmpl *srv_cmpl_new(eng_engine *eng, const char *model_name) {
    srv_cmpl *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->eng = eng;
    m->model_name = model_name;
    return m;
}

void srv_cmpl_free(srv_cmpl *m) { free(m); }
int srv_cmpl_jobs(const srv_cmpl *m) { return m->n_jobs; }

/* The one place engine codes become HTTP statuses. */
static int http_status(int pv) {
    switch (pv) {
    case PV_EBUSY: return 429;   /* the queue is full: retry */
    case PV_ETOOBIG: return 400; /* never fits this server */
    case PV_ESPACE: return 503;  /* too many distinct KV policies in use: retry */
    default: return 500;
    }
}

static void live_add(srv_cmpl *m, cmpl_req *q) {
    q->live = 1;
    q->live_prev = m->live_tail;
    if (m->live_tail) m->live_tail->live_next = q;
    else m->live_head = q;
    m->live_tail = q;
}

static void live_remove(srv_cmpl *m, cmpl_req *q) {
    if (!q->live) return;
    if (q->live_prev) q->live_prev->live_next = q->live_next;
    else m->live_head = q->live_next;
    if (q->live_next) q->live_next->live_prev = q->live_prev;
    else m->live_tail = q->live_prev;
    q->live = 0;
}

static void info_of(const cmpl_req *q, srv_cmpl_info *o) {
    double t0, t1;
    eng_job_times(q->job, &t0, &t1, NULL);
    *o = (srv_cmpl_info){.id = q->id, .job = q->job, .policy = q->policy_name,
                         .spec = q->policy_spec, .ids = q->ids0, .n_ids = q->n_ids0,
                         .n_prompt = q->n_prompt0, .n_gen = q->n_choices ? q->ch[0].tokens : 0,
                         .kv_reserved = eng_job_kv_reserved(q->job),
                         .t_submit = t0, .t_first = t1};
}

int srv_cmpl_list(const srv_cmpl *m, srv_cmpl_info *out, int cap) {
    int n = 0;
    for (const cmpl_req *q = m->live_head; q; q = q->live_next, n++)
        if (n < cap) info_of(q, &out[n]);
    return n;
}

int srv_cmpl_find(const srv_cmpl *m, const char *id, srv_cmpl_info *out) {
    for (const cmpl_req *q = m->live_head; q; q = q->live_next)
        if (!strcmp(q->id, id)) {
            info_of(q, out);
            return 0;
        }
    return -1;
}

void srv_cmpl_on_done(srv_cmpl *m, srv_cmpl_done_fn fn, void *arg) {
    m->on_done = fn;
    m->on_done_arg = arg;
}

/* choice 0's tokens, for the KV map's text; out of memory loses them only */
static void keep_ids(cmpl_req *q, const int32_t *ids, int n) {
    int32_t *p = n ? pv_grow(q->ids0, &q->cap_ids0, q->n_ids0 + n, sizeof *p) : NULL;
    if (!p) return;
    q->ids0 = p;
    memcpy(p + q->n_ids0, ids, sizeof *p * n);
    q->n_ids0 += n;
}

static void req_free(cmpl_req *q) {
    if (!q) return;
    live_remove(q->m, q);
    free(q->ids0);
    for (int i = 0; i < q->n_choices; i++) {
        pv_buf_free(&q->ch[i].got);
        free(q->ch[i].lp);
    }
    free(q->ch);
    eng_job_free(q->job);
    api_request_free(&q->req);
    free(q);
}

static int piece_fn(void *ctx, int32_t id, char *buf, int cap) {
    return tok_piece((const tok_vocab *)ctx, id, 0, buf, cap);
}

/* Prompt token lists for every prompt of the request (chat: one). */
static int build_prompts(const llm_model *m, api_request *r, int32_t ***ids,
                         int **n, int *np, api_error *e) {
    const tok_vocab *v = llm_get_vocab(m);
    *np = r->kind == API_CHAT ? 1 : r->n_prompts;
    *ids = calloc(*np, sizeof **ids);
    *n = calloc(*np, sizeof **n);
    if (!*ids || !*n) goto oom;
    if (r->kind == API_CHAT) {
        char *text = NULL;
        srv_chat_in in = {.msgs = r->msgs, .n = r->n_msgs, .tools = &r->tools,
                          .add_generation_prompt = 1};
        if (srv_render_chat(m, &in, &text, NULL, e)) return -1;
        (*ids)[0] = srv_tokenize(m, text, 1, 1, &(*n)[0]);
        free(text);
        if (!(*ids)[0]) goto oom;
    } else {
        for (int i = 0; i < *np; i++) {
            api_prompt *p = &r->prompts[i];
            if (p->text) {
                if (!((*ids)[i] = srv_tokenize(m, p->text, 0, 1, &(*n)[i]))) goto oom;
            } else {
                for (int k = 0; k < p->n_ids; k++)
                    if (p->ids[k] >= tok_n_vocab(v)) {
                        api_err_set(e, 400, "prompt", "invalid_value",
                                    "token id %d is outside the vocabulary (%d tokens)", p->ids[k],
                                    tok_n_vocab(v));
                        return -1;
                    }
                if (!((*ids)[i] = malloc(sizeof(int32_t) * (p->n_ids + 1)))) goto oom;
                memcpy((*ids)[i], p->ids, sizeof(int32_t) * p->n_ids);
                (*n)[i] = p->n_ids;
            }
            if ((*n)[i] == 0) { /* "": the model continues from BOS (OpenAI and vLLM accept it) */
                int32_t start = tok_bos(v) >= 0 ? tok_bos(v) : tok_eos(v);
                if (start < 0) {
                    api_err_set(e, 400, "prompt", "invalid_value",
                                "the prompt is empty and the model has no BOS token to start from");
                    return -1;
                }
                int32_t *one = realloc((*ids)[i], sizeof(int32_t));
                if (!one) goto oom;
                (*ids)[i] = one;
                one[0] = start;
                (*n)[i] = 1;
            }
        }
    }
    return 0;
oom:
    api_err_set(e, 500, NULL, NULL, "out of memory");
    return -1;
}

/* The request's KV policy: its kv_policy (a preset or a full spec) or the
 * server's, then the kv_* knob fields on top, each error naming its field. */
static int resolve_policy(srv_cmpl *s, const api_request *r, kv_policy *want, api_error *e) {
    char err[256] = "";
    const char *param = "kv_policy";
    *want = *eng_policy(s->eng);
    if (r->kv_policy && kv_policy_parse(r->kv_policy, want, err, sizeof err)) {
        api_err_set(e, 400, "kv_policy", "invalid_value", "%s", err);
        return -1;
    }
    for (int i = 0; i < r->n_kv_knobs; i++) {
        const api_kv_knob *k = &r->kv_knobs[i];
        param = k->field;
        if (kv_policy_set(want, k->knob, k->value, err, sizeof err)) {
            api_err_set(e, 400, k->field, "invalid_value", "%s: %s", k->field, err);
            return -1;
        }
    }
    /* Cross-knob checks, the shape (group | head_dim) and the device; the
     * last knob given is the likeliest culprit of a combination. */
    if (eng_check_policy(s->eng, want, err, sizeof err)) {
        api_err_set(e, 400, param, "invalid_value", "%s", err);
        return -1;
    }
    return 0;
}

static int max_new_of(const api_request *r, int max_ctx, int n_prompt) {
    return r->max_tokens >= 0 ? r->max_tokens : r->kind == API_CHAT ? max_ctx - n_prompt : 16;
}

/* The checks that need the model (name, stop ids, context length). */
static int check_request(srv_cmpl *s, const api_request *r, api_error *e) {
    const tok_vocab *v = llm_get_vocab(eng_model(s->eng));
    if (r->model && strcmp(r->model, s->model_name)) {
        api_err_set(e, 404, "model", "model_not_found",
                    "the model '%.100s' does not exist; this server serves '%s'", r->model,
                    s->model_name);
        return -1;
    }
    for (int i = 0; i < r->n_stop_ids; i++)
        if (r->stop_ids[i] >= tok_n_vocab(v)) {
            api_err_set(e, 400, "stop_token_ids", "invalid_value",
                        "token id %d is outside the vocabulary (%d tokens)", r->stop_ids[i],
                        tok_n_vocab(v));
            return -1;
        }
    return 0;
}

static int check_context(const api_request *r, int max_ctx, const int *n, int np, api_error *e) {
    const char *what = r->kind == API_CHAT ? "messages" : "prompt";
    for (int i = 0; i < np; i++) {
        int want = max_new_of(r, max_ctx, n[i]);
        if (want < 1) want = 1;
        if (n[i] + want > max_ctx) {
            api_err_set(e, 400, what, "context_length_exceeded",
                        "This model's maximum context length is %d tokens. However, you requested "
                        "%d tokens (%d in the %s, %d in the completion). Please reduce the length "
                        "of the %s or the completion.",
                        max_ctx, n[i] + want, n[i], what, want, what);
            return -1;
        }
    }
    return 0;
}

static eng_params params_of(const api_request *r, const kv_policy *want) {
    eng_params p = {.sampling = smp_default_params(), .has_seed = r->has_seed,
                    .min_tokens = r->min_tokens, .ignore_eos = r->ignore_eos,
                    .stop_ids = r->stop_ids, .n_stop_ids = r->n_stop_ids, .stop = r->stop,
                    .n_stop = r->n_stop, .logprobs = r->logprobs, .top_logprobs = r->top_logprobs,
                    .prompt_logprobs = r->echo && r->logprobs && r->kind == API_COMPLETIONS,
                    .policy = *want, .kv_elastic = r->kv_elastic};
    p.sampling.temperature = r->temperature;
    p.sampling.top_k = r->top_k;
    p.sampling.top_p = r->top_p;
    p.sampling.min_p = r->min_p;
    p.sampling.repetition_penalty = r->repetition_penalty;
    p.sampling.presence_penalty = r->presence_penalty;
    p.sampling.frequency_penalty = r->frequency_penalty;
    p.sampling.seed = r->seed;
    p.sampling.bias_ids = r->bias_ids;
    p.sampling.bias = r->bias;
    p.sampling.n_bias = r->n_bias;
    return p;
}

/* echo: the prompt's text leads each choice of prompt i. */
static void echo_prompt(cmpl_req *q, const tok_vocab *v, int i, const int32_t *ids, int n) {
    const api_request *r = &q->req;
    for (int k = 0; k < r->n; k++) {
        cmpl_choice *c = &q->ch[i * r->n + k];
        if (r->prompts[i].text) pv_buf_add(&c->got, r->prompts[i].text, strlen(r->prompts[i].text));
        else srv_detokenize(v, ids, n, &c->got);
        /* with logprobs the prompt's tokens lead the list, so the offsets
         * count from the start of the echoed text */
        c->text_offset = r->logprobs ? 0 : c->got.len;
    }
}

/* The request and its engine job, from the prompts' token lists; takes *r
 * and the grammar g (freed on failure). */
static int make_req(srv_cmpl *s, api_request *r, const kv_policy *want, gram *g, int32_t **ids,
                    const int *n, int np, cmpl_req **out, api_error *e) {
    int max_ctx = eng_max_ctx(s->eng), max_new[API_MAX_PROMPTS];
    for (int i = 0; i < np; i++) max_new[i] = max_new_of(r, max_ctx, n[i]);
    cmpl_req *q = calloc(1, sizeof *q);
    eng_params p = params_of(r, want);
    p.grammar = g;
    if (!q || !(q->ch = calloc((size_t)np * r->n, sizeof *q->ch)) ||
        eng_job_create(&p, np, (const int32_t *const *)ids, n, max_new, r->n, &q->job)) {
        if (!q || !q->job) gram_free(g); /* not taken by a job */
        req_free(q);
        api_err_set(e, 500, NULL, NULL, "out of memory");
        return -1;
    }
    q->m = s;
    q->n_choices = np * r->n;
    keep_ids(q, ids[0], n[0]);
    q->n_prompt0 = n[0];
    q->req = *r; /* the request is the job's from here */
    memset(r, 0, sizeof *r);
    q->tools_on = q->req.kind == API_CHAT && q->req.tools.tools_json &&
                  q->req.tools.choice != API_TOOL_NONE;
    for (int i = 0; i < q->n_choices; i++) q->ch[i].hold = q->tools_on;
    eng_job_set_user(q->job, q);
    if (q->req.echo && q->req.kind == API_COMPLETIONS)
        for (int i = 0; i < np; i++) echo_prompt(q, llm_get_vocab(eng_model(s->eng)), i, ids[i], n[i]);
    snprintf(q->policy_name, sizeof q->policy_name, "%s", want->preset);
    kv_policy_describe(want, q->policy_spec, sizeof q->policy_spec);
    snprintf(q->id, sizeof q->id, "%s-%llx%06llx", q->req.kind == API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)time(NULL), (unsigned long long)++s->next_id);
    *out = q;
    return 0;
}

/* Checks what needs the model and builds the request's job. The grammar
 * (srv_structured) is response_format's or, with tool_choice "required" or
 * a named function, the tool call's; the output is parsed into calls
 * either way (api_tools_parse_output), since with tool_choice auto the
 * model is free and its call may come in any of the common wrappers. */
static int make_job(srv_cmpl *s, api_request *r, cmpl_req **out, api_error *e) {
    kv_policy want;
    gram *g = NULL;
    if (check_request(s, r, e) || resolve_policy(s, r, &want, e) ||
        srv_structured(r, tok_n_vocab(llm_get_vocab(eng_model(s->eng))), &g, e))
        return -1;
    int32_t **ids = NULL;
    int *n = NULL, np = 0, rc = -1;
    if (!build_prompts(eng_model(s->eng), r, &ids, &n, &np, e) &&
        !check_context(r, eng_max_ctx(s->eng), n, np, e))
        rc = make_req(s, r, &want, g, ids, n, np, out, e);
    else
        gram_free(g);
    for (int i = 0; i < np; i++) free(ids ? ids[i] : NULL);
    free(ids);
    free(n);
    return rc;
}

static void on_gone(void *arg) {
    cmpl_req *q = arg;
    q->conn = NULL;
    if (eng_cancel(q->m->eng, q->job)) { /* it never reached the decoder */
        q->m->n_jobs--;
        req_free(q);
    }
}

void srv_cmpl_handle(srv_cmpl *s, srv_conn *c, api_kind kind) {
    size_t len;
    const char *body = srv_conn_body(c, &len);
    api_request r;
    api_error e;
    cmpl_req *q = NULL;
    if (api_parse_request(kind, body, len, &r, &e)) {
        srv_conn_reply_error(c, &e, NULL);
        return;
    }
    if (make_job(s, &r, &q, &e)) {
        api_request_free(&r);
        srv_conn_reply_error(c, &e, NULL);
        return;
    }
    char msg[256];
    int rc = eng_submit(s->eng, q->job, msg, sizeof msg);
    if (rc) {
        int st = http_status(rc);
        api_err_set(&e, st, NULL, rc == PV_EBUSY ? "queue_full" : "kv_memory_exceeded", "%s", msg);
        req_free(q);
        srv_conn_reply_error(c, &e, st == 429 ? "Retry-After: 1\r\n" : NULL);
        return;
    }
    q->conn = c;
    s->n_jobs++;
    live_add(s, q);
    srv_conn_watch(c, on_gone, q);
}

static void usage_of(const cmpl_req *q, api_usage *u) {
    *u = (api_usage){.prompt_tokens = eng_job_prompt_tokens(q->job), .kv_policy = q->policy_name,
                     .kv_spec = q->policy_spec[0] ? q->policy_spec : NULL};
    for (int i = 0; i < q->n_choices; i++) {
        kv_usage kv;
        eng_job_kv_usage(q->job, i, &kv);
        u->completion_tokens += q->ch[i].tokens;
        u->kv_bytes_stored += kv.bytes_stored;
        u->kv_bytes_fp16 += kv.bytes_fp16;
        u->kv_tokens_high += kv.n_high;
        u->kv_tokens_low += kv.n_low;
        u->kv_tokens_dropped += kv.n_dropped;
        eng_relief rl;
        eng_job_relief(q->job, i, &rl);
        /* one preemption takes every choice of the job off the batch */
        if (rl.preemptions > u->kv_preemptions) u->kv_preemptions = rl.preemptions;
        u->kv_compressions += rl.compressions;
        u->kv_tokens_demoted += rl.tokens_demoted;
        u->kv_bytes_saved += rl.bytes_saved;
    }
}

static const char *public_finish(const char *f) {
    if (!f) return NULL;
    return !strcmp(f, "stop") ? "stop" : "length"; /* cancelled/error never reach a live client as such */
}

static void log_job(srv_conn *c, const cmpl_req *q) {
    api_usage u;
    usage_of(q, &u);
    double t0, t1;
    eng_job_times(q->job, &t0, &t1, NULL);
    srv_conn_log_info(c, q->id, u.prompt_tokens, u.completion_tokens, t1 ? t1 - t0 : 0,
                      u.kv_bytes_stored, u.kv_preemptions, u.kv_compressions);
}

/* One SSE event of a chunk (choice o, or usage u). */
static void send_chunk(srv_conn *c, const api_meta *m, const api_choice_out *o, int first,
                       const api_usage *u) {
    char *js = api_format_chunk(m, o, o ? 1 : 0, first, u);
    size_t n;
    char *fr = js ? api_sse_frame(js, &n) : NULL;
    if (fr) srv_conn_stream_write(c, fr, n);
    free(js);
    free(fr);
}

/* Different per response and per choice, for the calls' ids. */
static unsigned long long call_seed(const cmpl_req *q, int i) {
    unsigned long long h = 1469598103934665603ull;
    for (const char *p = q->id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h ^ ((unsigned long long)i << 32) ^ (unsigned long long)time(NULL);
}

/* The calls of choice i's held text, streamed: per call a head chunk (id,
 * name) and argument fragments, then the finish. 0 when the text is not a
 * call (it is then sent as content). */
static int stream_calls(srv_conn *c, const api_meta *m, cmpl_req *q, int i) {
    enum { FRAG = 24 }; /* bytes of arguments per chunk, cut between UTF-8 characters */
    cmpl_choice *ch = &q->ch[i];
    api_tool_call *calls = NULL;
    int n = api_tools_parse_output(ch->got.p, ch->got.len, &q->req.tools, call_seed(q, i), &calls);
    if (n <= 0) return 0;
    for (int k = 0; k < n; k++) {
        api_choice_out o = {.index = i, .calls = &calls[k], .call_index = k, .call_head = 1};
        send_chunk(c, m, &o, 0, NULL);
        o.call_head = 0;
        for (const char *a = calls[k].arguments; *a;) {
            size_t len = strnlen(a, FRAG);
            while (a[len] && ((unsigned char)a[len] & 0xC0) == 0x80) len++;
            char frag[FRAG + 8];
            memcpy(frag, a, len);
            frag[len] = 0;
            o.args_frag = frag;
            send_chunk(c, m, &o, 0, NULL);
            a += len;
        }
    }
    api_choice_out fin = {.index = i, .finish_reason = "tool_calls"};
    send_chunk(c, m, &fin, 0, NULL);
    api_tool_calls_free(calls, n);
    return 1;
}

static void stream_job(srv_conn *c, cmpl_req *q, const api_meta *m) {
    if (!q->started) {
        srv_conn_stream_begin(c);
        q->started = 1;
        if (q->req.kind == API_CHAT)
            for (int i = 0; i < q->n_choices; i++) {
                api_choice_out o = {.index = i, .text = "", .len = 0};
                send_chunk(c, m, &o, 1, NULL);
            }
    }
    for (int i = 0; i < q->n_choices; i++) {
        cmpl_choice *ch = &q->ch[i];
        int fin = ch->finish && !ch->sent_finish;
        if (!ch->got.len && !ch->n_lp && !fin) continue;
        if (ch->hold && !fin && api_tools_maybe_call(ch->got.p, ch->got.len)) continue;
        if (ch->hold && fin && stream_calls(c, m, q, i)) {
            ch->got.len = 0;
            ch->n_lp = 0;
            ch->sent_finish = 1;
            continue;
        }
        ch->hold = 0;
        api_choice_out o = {.index = i, .text = ch->got.p, .len = ch->got.len,
                            .finish_reason = fin ? public_finish(ch->finish) : NULL,
                            .lp = q->req.logprobs ? ch->lp : NULL, .n_lp = ch->n_lp,
                            .text_offset = ch->text_offset};
        send_chunk(c, m, &o, 0, NULL);
        ch->text_offset += ch->got.len;
        ch->got.len = 0;
        ch->n_lp = 0;
        ch->sent_finish |= fin;
    }
    if (!eng_job_done(q->job)) return;
    if (q->req.include_usage) {
        api_usage u;
        usage_of(q, &u);
        send_chunk(c, m, NULL, 0, &u);
    }
    srv_conn_stream_write(c, API_SSE_DONE, strlen(API_SSE_DONE));
    log_job(c, q);
    srv_conn_stream_end(c);
}

static void reply_job(srv_conn *c, cmpl_req *q, const api_meta *m) {
    static const api_logprob no_lp; /* logprobs asked for, none produced: an empty list */
    api_choice_out *o = calloc(q->n_choices, sizeof *o);
    char *js = NULL;
    if (o) {
        for (int i = 0; i < q->n_choices; i++) {
            cmpl_choice *ch = &q->ch[i];
            o[i] = (api_choice_out){.index = i, .text = ch->got.p, .len = ch->got.len,
                                    .finish_reason = public_finish(ch->finish),
                                    .lp = q->req.logprobs ? (ch->lp ? ch->lp : &no_lp) : NULL,
                                    .n_lp = ch->n_lp, .text_offset = ch->text_offset};
            api_tool_call *calls = NULL;
            int n = q->tools_on ? api_tools_parse_output(ch->got.p, ch->got.len, &q->req.tools,
                                                         call_seed(q, i), &calls) : 0;
            if (n > 0) { /* the whole text was the call: content null */
                o[i].calls = calls, o[i].n_calls = n, o[i].len = 0;
                o[i].finish_reason = "tool_calls";
            }
        }
        api_usage u;
        usage_of(q, &u);
        js = api_format_response(m, o, q->n_choices, &u);
        for (int i = 0; i < q->n_choices; i++)
            api_tool_calls_free((api_tool_call *)o[i].calls, o[i].n_calls);
    }
    free(o);
    log_job(c, q);
    if (!js) {
        api_error e;
        api_err_set(&e, 500, NULL, NULL, "out of memory");
        srv_conn_reply_error(c, &e, NULL);
        return;
    }
    srv_conn_reply(c, 200, "application/json", js, strlen(js), NULL);
    free(js);
}

/* Appends what the engine handed over to what the client has not seen. */
static void take_output(cmpl_req *q) {
    for (int i = 0; i < q->n_choices; i++) {
        cmpl_choice *ch = &q->ch[i];
        eng_delta d;
        eng_job_take(q->job, i, &d);
        if (i == 0) keep_ids(q, d.ids, d.n_ids);
        if (d.len) pv_buf_add(&ch->got, d.text, d.len);
        api_logprob *lp = d.n_lp ? pv_grow(ch->lp, &ch->cap_lp, ch->n_lp + d.n_lp, sizeof *lp) : NULL;
        if (lp) { /* else the logprobs are lost rather than the text */
            ch->lp = lp;
            memcpy(lp + ch->n_lp, d.lp, sizeof *d.lp * d.n_lp);
            ch->n_lp += d.n_lp;
        }
        ch->tokens = d.tokens;
        if (d.finish) ch->finish = d.finish;
    }
}

static void answer(srv_cmpl *s, cmpl_req *q) {
    srv_conn *c = q->conn;
    api_meta m = {.kind = q->req.kind, .id = q->id, .model = s->model_name,
                  .created = (long)time(NULL), .piece = piece_fn,
                  .piece_ctx = (void *)llm_get_vocab(eng_model(s->eng))};
    const char *msg;
    int err = eng_job_error(q->job, &msg);
    if (eng_job_done(q->job) && err && !q->started) {
        api_error e;
        api_err_set(&e, http_status(err), NULL, NULL, "%s", msg);
        log_job(c, q);
        srv_conn_reply_error(c, &e, NULL);
    } else if (q->req.stream) {
        stream_job(c, q, &m);
    } else if (eng_job_done(q->job)) {
        reply_job(c, q, &m);
    }
}

void srv_cmpl_on_output(srv_cmpl *s) {
    eng_job *list = eng_collect(s->eng);
    while (list) {
        eng_job *j = list;
        list = eng_job_next(j);
        cmpl_req *q = eng_job_user(j);
        take_output(q);
        if (q->conn) answer(s, q);
        if (eng_job_done(j)) {
            s->n_jobs--;
            if (s->on_done) {
                srv_cmpl_info info;
                info_of(q, &info);
                s->on_done(s->on_done_arg, &info, eng_snap_take_final(j));
            }
            req_free(q);
        }
    }
}
