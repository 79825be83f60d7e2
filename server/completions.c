/* completions: /v1/completions and /v1/chat/completions on the loop side —
 * request -> job (tokenize, check against the model and the context), and
 * engine output -> JSON response or SSE chunks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv.h"

int srv_render_chat(const llm_model *m, const api_message *msgs, int n, char **out, api_error *e);
int32_t *srv_tokenize(const llm_model *m, const char *text, int special, int add_bos, int *n);

static int piece_fn(void *ctx, int32_t id, char *buf, int cap) {
    return tok_piece((const tok_vocab *)ctx, id, 0, buf, cap);
}

/* Prompt token lists for every prompt of the request (chat: one). */
static int build_prompts(srv_server *s, const llm_model *m, api_request *r, int32_t ***ids,
                         int **n, int *np, api_error *e) {
    const tok_vocab *v = llm_get_vocab(m);
    *np = r->kind == API_CHAT ? 1 : r->n_prompts;
    *ids = calloc(*np, sizeof **ids);
    *n = calloc(*np, sizeof **n);
    if (!*ids || !*n) goto oom;
    (void)s;
    if (r->kind == API_CHAT) {
        char *text = NULL;
        if (srv_render_chat(m, r->msgs, r->n_msgs, &text, e)) return -1;
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
            if ((*n)[i] == 0) {
                api_err_set(e, 400, "prompt", "invalid_value", "the prompt is empty");
                return -1;
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
static int resolve_policy(srv_server *s, const api_request *r, kv_policy *want, api_error *e) {
    char err[256] = "";
    const char *param = "kv_policy";
    *want = *srv_engine_policy(s->eng);
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
    if (srv_engine_check_policy(s->eng, want, err, sizeof err)) {
        api_err_set(e, 400, param, "invalid_value", "%s", err);
        return -1;
    }
    return 0;
}

/* Checks the fields that need the model; fills *j. */
static int make_job(srv_server *s, api_request *r, srv_job **out, api_error *e) {
    const llm_model *m = srv_engine_model(s->eng);
    const tok_vocab *v = llm_get_vocab(m);
    int max_ctx = srv_engine_max_ctx(s->eng);
    if (r->model && strcmp(r->model, s->model_name)) {
        api_err_set(e, 404, "model", "model_not_found", "the model '%.100s' does not exist; this server serves '%s'",
                    r->model, s->model_name);
        return -1;
    }
    kv_policy want;
    if (resolve_policy(s, r, &want, e)) return -1;
    for (int i = 0; i < r->n_stop_ids; i++)
        if (r->stop_ids[i] >= tok_n_vocab(v)) {
            api_err_set(e, 400, "stop_token_ids", "invalid_value",
                        "token id %d is outside the vocabulary (%d tokens)", r->stop_ids[i], tok_n_vocab(v));
            return -1;
        }
    int32_t **ids = NULL;
    int *n = NULL, np = 0, rc = -1;
    srv_job *j = NULL;
    if (build_prompts(s, m, r, &ids, &n, &np, e)) goto out;
    int total_prompt = 0;
    for (int i = 0; i < np; i++) {
        int want = r->max_tokens >= 0 ? r->max_tokens : r->kind == API_CHAT ? max_ctx - n[i] : 16;
        if (n[i] + (want > 0 ? want : 1) > max_ctx) {
            api_err_set(e, 400, r->kind == API_CHAT ? "messages" : "prompt", "context_length_exceeded",
                        "This model's maximum context length is %d tokens. However, you requested "
                        "%d tokens (%d in the %s, %d in the completion). Please reduce the length "
                        "of the %s or the completion.",
                        max_ctx, n[i] + (want > 0 ? want : 1), n[i],
                        r->kind == API_CHAT ? "messages" : "prompt", want > 0 ? want : 1,
                        r->kind == API_CHAT ? "messages" : "prompt");
            goto out;
        }
        total_prompt += n[i];
    }
    j = calloc(1, sizeof *j);
    if (!j || !(j->ch = calloc((size_t)np * r->n, sizeof *j->ch))) {
        api_err_set(e, 500, NULL, NULL, "out of memory");
        goto out;
    }
    j->n_choices = np * r->n;
    j->prompt_tokens = total_prompt;
    for (int i = 0; i < np; i++)
        for (int k = 0; k < r->n; k++) {
            srv_choice *c = &j->ch[i * r->n + k];
            c->index = i * r->n + k;
            c->n_prompt = n[i];
            c->max_new = r->max_tokens >= 0 ? r->max_tokens : r->kind == API_CHAT ? max_ctx - n[i] : 16;
            c->prompt = malloc(sizeof(int32_t) * n[i]);
            if (!c->prompt) {
                api_err_set(e, 500, NULL, NULL, "out of memory");
                goto out;
            }
            memcpy(c->prompt, ids[i], sizeof(int32_t) * n[i]);
            j->kv_reserve += srv_engine_seq_bytes(s->eng, &want, c->n_prompt + c->max_new);
            if (r->echo && r->kind == API_COMPLETIONS) {
                if (r->prompts[i].text) {
                    srv_buf_add(&c->got, r->prompts[i].text, strlen(r->prompts[i].text));
                } else {
                    char piece[256];
                    tok_stream *ts = tok_stream_new(v, 0);
                    for (int t = 0; ts && t < n[i]; t++) {
                        int w = tok_stream_push(ts, ids[i][t], piece, sizeof piece);
                        if (w > 0) srv_buf_add(&c->got, piece, (size_t)w);
                    }
                    int w = ts ? tok_stream_flush(ts, piece, sizeof piece) : 0;
                    if (w > 0) srv_buf_add(&c->got, piece, (size_t)w);
                    tok_stream_free(ts);
                }
                /* with logprobs the prompt's tokens lead the list, so the
                 * offsets count from the start of the echoed text */
                c->text_offset = r->logprobs ? 0 : c->got.len;
            }
        }
    j->req = *r; /* the job owns the request from here */
    memset(r, 0, sizeof *r);
    j->policy = want;
    snprintf(j->policy_name, sizeof j->policy_name, "%s", want.preset);
    kv_policy_describe(&want, j->policy_spec, sizeof j->policy_spec);
    snprintf(j->id, sizeof j->id, "%s-%llx%06llx", j->req.kind == API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)time(NULL), (unsigned long long)++s->next_id);
    *out = j;
    j = NULL;
    rc = 0;
out:
    for (int i = 0; i < np; i++) free(ids ? ids[i] : NULL);
    free(ids);
    free(n);
    srv_job_free(j);
    return rc;
}

void srv_handle_completions(srv_conn *c, api_kind kind) {
    srv_server *s = srv_conn_server(c);
    size_t len;
    const char *body = srv_conn_body(c, &len);
    api_request r;
    api_error e;
    srv_job *j = NULL;
    if (api_parse_request(kind, body, len, &r, &e)) {
        srv_conn_reply_error(c, &e, NULL);
        return;
    }
    if (make_job(s, &r, &j, &e)) {
        api_request_free(&r);
        srv_conn_reply_error(c, &e, NULL);
        return;
    }
    j->t_arrive = pv_now();
    char msg[256];
    int st = srv_engine_submit(s->eng, j, msg, sizeof msg);
    if (st) {
        api_err_set(&e, st, NULL, st == 429 ? "queue_full" : "kv_memory_exceeded", "%s", msg);
        srv_job_free(j);
        srv_conn_reply_error(c, &e, st == 429 ? "Retry-After: 1\r\n" : NULL);
        return;
    }
    j->conn = c;
    s->n_jobs++;
    srv_conn_set_job(c, j);
}

static void usage_of(const srv_job *j, api_usage *u) {
    *u = (api_usage){.prompt_tokens = j->prompt_tokens, .kv_policy = j->policy_name,
                     .kv_spec = j->policy_spec[0] ? j->policy_spec : NULL};
    for (int i = 0; i < j->n_choices; i++) {
        const srv_choice *c = &j->ch[i];
        u->completion_tokens += c->got_tokens;
        u->kv_bytes_stored += c->kv.bytes_stored;
        u->kv_bytes_fp16 += c->kv.bytes_fp16;
        u->kv_tokens_high += c->kv.n_high;
        u->kv_tokens_low += c->kv.n_low;
        u->kv_tokens_dropped += c->kv.n_dropped;
    }
}

static const char *public_finish(const char *f) {
    if (!f) return NULL;
    return !strcmp(f, "stop") ? "stop" : "length"; /* cancelled/error never reach a live client as such */
}

static void log_job(srv_conn *c, const srv_job *j) {
    api_usage u;
    usage_of(j, &u);
    srv_conn_log_info(c, j->id, u.prompt_tokens, u.completion_tokens,
                      j->t_first ? j->t_first - j->t_arrive : 0, u.kv_bytes_stored);
}

static void stream_job(srv_server *s, srv_conn *c, srv_job *j, const api_meta *m) {
    if (!j->started) {
        srv_conn_stream_begin(c);
        j->started = 1;
        if (j->req.kind == API_CHAT)
            for (int i = 0; i < j->n_choices; i++) {
                api_choice_out o = {.index = j->ch[i].index, .text = "", .len = 0};
                char *js = api_format_chunk(m, &o, 1, 1, NULL);
                size_t n;
                char *fr = js ? api_sse_frame(js, &n) : NULL;
                if (fr) srv_conn_stream_write(c, fr, n);
                free(js);
                free(fr);
            }
    }
    for (int i = 0; i < j->n_choices; i++) {
        srv_choice *ch = &j->ch[i];
        int fin = ch->got_finish && !ch->sent_finish;
        if (!ch->got.len && !ch->n_got_lp && !fin) continue;
        api_choice_out o = {.index = ch->index, .text = ch->got.p, .len = ch->got.len,
                            .finish_reason = fin ? public_finish(ch->got_finish) : NULL,
                            .lp = j->req.logprobs ? ch->got_lp : NULL, .n_lp = ch->n_got_lp,
                            .text_offset = ch->text_offset};
        char *js = api_format_chunk(m, &o, 1, 0, NULL);
        size_t n;
        char *fr = js ? api_sse_frame(js, &n) : NULL;
        if (fr) srv_conn_stream_write(c, fr, n);
        free(js);
        free(fr);
        ch->text_offset += ch->got.len;
        ch->got.len = 0;
        ch->n_got_lp = 0;
        ch->sent_finish |= fin;
    }
    if (!j->done_seen) return;
    if (j->req.include_usage) {
        api_usage u;
        usage_of(j, &u);
        char *js = api_format_chunk(m, NULL, 0, 0, &u);
        size_t n;
        char *fr = js ? api_sse_frame(js, &n) : NULL;
        if (fr) srv_conn_stream_write(c, fr, n);
        free(js);
        free(fr);
    }
    srv_conn_stream_write(c, API_SSE_DONE, strlen(API_SSE_DONE));
    log_job(c, j);
    (void)s;
    srv_conn_stream_end(c);
}

static void reply_job(srv_conn *c, srv_job *j, const api_meta *m) {
    static const api_logprob no_lp; /* logprobs asked for, none produced: an empty list */
    api_choice_out *o = calloc(j->n_choices, sizeof *o);
    char *js = NULL;
    if (o) {
        for (int i = 0; i < j->n_choices; i++) {
            srv_choice *ch = &j->ch[i];
            o[i] = (api_choice_out){.index = ch->index, .text = ch->got.p, .len = ch->got.len,
                                    .finish_reason = public_finish(ch->got_finish),
                                    .lp = j->req.logprobs ? (ch->got_lp ? ch->got_lp : &no_lp) : NULL,
                                    .n_lp = ch->n_got_lp, .text_offset = ch->text_offset};
        }
        api_usage u;
        usage_of(j, &u);
        js = api_format_response(m, o, j->n_choices, &u);
    }
    free(o);
    log_job(c, j);
    if (!js) {
        api_error e;
        api_err_set(&e, 500, NULL, NULL, "out of memory");
        srv_conn_reply_error(c, &e, NULL);
        return;
    }
    srv_conn_reply(c, 200, "application/json", js, strlen(js), NULL);
    free(js);
}

void srv_on_engine_output(srv_server *s) {
    srv_job *list = srv_engine_collect(s->eng);
    while (list) {
        srv_job *j = list;
        list = j->dirty_next;
        srv_conn *c = j->conn;
        if (c) {
            api_meta m = {.kind = j->req.kind, .id = j->id, .model = s->model_name,
                          .created = (long)time(NULL), .piece = piece_fn,
                          .piece_ctx = (void *)llm_get_vocab(srv_engine_model(s->eng))};
            if (j->done_seen && j->err_status && !j->started) {
                api_error e;
                api_err_set(&e, j->err_status, NULL, NULL, "%s", j->err_msg);
                log_job(c, j);
                srv_conn_reply_error(c, &e, NULL);
            } else if (j->req.stream) {
                stream_job(s, c, j, &m);
            } else if (j->done_seen) {
                reply_job(c, j, &m);
            }
        }
        if (j->done_seen) {
            s->n_jobs--;
            srv_job_free(j);
        }
    }
    srv_maybe_finish(s);
}

void srv_conn_detach_job(srv_conn *c, srv_job *j) {
    srv_server *s = srv_conn_server(c);
    j->conn = NULL;
    if (srv_engine_cancel(s->eng, j)) { /* it never reached the engine */
        s->n_jobs--;
        srv_job_free(j);
    }
}
