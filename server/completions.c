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

#include "cmpl_internal.h"
#include "completions.h"
#include "eng_job.h"
#include "prompt.h"
#include "pverr.h"
#include "structured.h"

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
    long all = 0;
    for (int i = 0; i < q->n_choices; i++) all += q->ch[i].tokens;
    *o = (srv_cmpl_info){.id = q->id, .job = q->job, .policy = q->policy_name,
                         .spec = q->policy_spec, .ids = q->ids0, .n_ids = q->n_ids0,
                         .n_prompt = q->n_prompt0, .n_gen = q->n_choices ? q->ch[0].tokens : 0,
                         .kv_reserved = eng_job_kv_reserved(q->job),
                         .n_gen_all = all, .t_submit = t0, .t_first = t1};
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

void cmpl_req_free(cmpl_req *q) {
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

static void on_gone(void *arg) {
    cmpl_req *q = arg;
    q->conn = NULL;
    if (eng_cancel(q->m->eng, q->job)) { /* it never reached the decoder */
        q->m->n_jobs--;
        cmpl_req_free(q);
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
    if (cmpl_make_job(s, &r, &q, &e)) {
        api_request_free(&r);
        srv_conn_reply_error(c, &e, NULL);
        return;
    }
    char msg[256];
    int rc = eng_submit(s->eng, q->job, msg, sizeof msg);
    if (rc) {
        int st = http_status(rc);
        api_err_set(&e, st, NULL, rc == PV_EBUSY ? "queue_full" : "kv_memory_exceeded", "%s", msg);
        cmpl_req_free(q);
        srv_conn_reply_error(c, &e, st == 429 ? "Retry-After: 1\r\n" : NULL);
        return;
    }
    q->conn = c;
    s->n_jobs++;
    live_add(s, q);
    srv_conn_watch(c, on_gone, q);
}

static void usage_of(const cmpl_req *q, api_usage *u) {
    *u = (api_usage){.prompt_tokens = eng_job_prompt_tokens(q->job),
                     .cached_tokens = eng_job_cached_tokens(q->job), .kv_policy = q->policy_name,
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
        if (i == 0) cmpl_keep_ids(q, d.ids, d.n_ids);
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
            cmpl_req_free(q);
        }
    }
}
