#include "api_fmt.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cJSON wants NUL-terminated strings; choice texts are (ptr, len). */
static cJSON *str_n(const char *s, size_t n) {
    char *t = malloc(n + 1);
    if (!t) return NULL;
    memcpy(t, s ? s : "", n);
    t[n] = 0;
    cJSON *j = cJSON_CreateString(t);
    free(t);
    return j;
}

static void piece(const api_meta *m, int32_t id, char *buf, int cap) {
    int n = m->piece ? m->piece(m->piece_ctx, id, buf, cap - 1) : 0;
    if (n < 0) n = 0;
    if (n > cap - 1) n = cap - 1;
    buf[n] = 0;
}

static cJSON *bytes_array(const char *s) {
    cJSON *a = cJSON_CreateArray();
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(*p));
    return a;
}

static cJSON *chat_logprobs(const api_meta *m, const api_choice_out *c) {
    cJSON *o = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(o, "content");
    char buf[256];
    for (int i = 0; i < c->n_lp; i++) {
        const api_logprob *l = &c->lp[i];
        cJSON *t = cJSON_CreateObject();
        piece(m, l->id, buf, sizeof buf);
        cJSON_AddStringToObject(t, "token", buf);
        cJSON_AddNumberToObject(t, "logprob", l->logprob);
        cJSON_AddItemToObject(t, "bytes", bytes_array(buf));
        cJSON *tops = cJSON_AddArrayToObject(t, "top_logprobs");
        for (int k = 0; k < l->n_top; k++) {
            cJSON *x = cJSON_CreateObject();
            piece(m, l->top_id[k], buf, sizeof buf);
            cJSON_AddStringToObject(x, "token", buf);
            cJSON_AddNumberToObject(x, "logprob", l->top_lp[k]);
            cJSON_AddItemToObject(x, "bytes", bytes_array(buf));
            cJSON_AddItemToArray(tops, x);
        }
        cJSON_AddItemToArray(content, t);
    }
    cJSON_AddNullToObject(o, "refusal");
    return o;
}

static cJSON *cmpl_logprobs(const api_meta *m, const api_choice_out *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON *toks = cJSON_AddArrayToObject(o, "tokens");
    cJSON *lps = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs");
    cJSON *offs = cJSON_AddArrayToObject(o, "text_offset");
    char buf[256];
    size_t off = c->text_offset;
    for (int i = 0; i < c->n_lp; i++) {
        const api_logprob *l = &c->lp[i];
        piece(m, l->id, buf, sizeof buf);
        cJSON_AddItemToArray(toks, cJSON_CreateString(buf));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += strlen(buf);
        if (isnan(l->logprob)) { /* echo's first prompt token: nothing to score it from */
            cJSON_AddItemToArray(lps, cJSON_CreateNull());
            cJSON_AddItemToArray(tops, cJSON_CreateNull());
            continue;
        }
        cJSON_AddItemToArray(lps, cJSON_CreateNumber(l->logprob));
        cJSON *t = cJSON_CreateObject();
        for (int k = 0; k < l->n_top; k++) {
            piece(m, l->top_id[k], buf, sizeof buf);
            if (!cJSON_GetObjectItemCaseSensitive(t, buf)) cJSON_AddNumberToObject(t, buf, l->top_lp[k]);
        }
        cJSON_AddItemToArray(tops, t);
    }
    return o;
}

static cJSON *usage_json(const api_usage *u) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "prompt_tokens", u->prompt_tokens);
    cJSON_AddNumberToObject(o, "completion_tokens", u->completion_tokens);
    cJSON_AddNumberToObject(o, "total_tokens", u->prompt_tokens + u->completion_tokens);
    /* OpenAI's field: prompt tokens that came from the prefix cache */
    cJSON *pd = cJSON_AddObjectToObject(o, "prompt_tokens_details");
    cJSON_AddNumberToObject(pd, "cached_tokens", u->cached_tokens);
    cJSON *kv = cJSON_AddObjectToObject(o, "kv_cache");
    cJSON_AddStringToObject(kv, "policy", u->kv_policy ? u->kv_policy : "full");
    if (u->kv_spec) cJSON_AddStringToObject(kv, "spec", u->kv_spec);
    cJSON_AddNumberToObject(kv, "bytes_stored", (double)u->kv_bytes_stored);
    cJSON_AddNumberToObject(kv, "bytes_fp16", (double)u->kv_bytes_fp16);
    cJSON_AddNumberToObject(kv, "tokens_high", (double)u->kv_tokens_high);
    cJSON_AddNumberToObject(kv, "tokens_low", (double)u->kv_tokens_low);
    cJSON_AddNumberToObject(kv, "tokens_dropped", (double)u->kv_tokens_dropped);
    cJSON_AddNumberToObject(kv, "preemptions", u->kv_preemptions);
    cJSON_AddBoolToObject(kv, "compressed", u->kv_compressions > 0);
    cJSON_AddNumberToObject(kv, "elastic_compressions", u->kv_compressions);
    cJSON_AddNumberToObject(kv, "elastic_tokens_demoted", (double)u->kv_tokens_demoted);
    cJSON_AddNumberToObject(kv, "elastic_bytes_saved", (double)u->kv_bytes_saved);
    return o;
}

static cJSON *envelope(const api_meta *m, const char *object) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)m->created);
    cJSON_AddStringToObject(o, "model", m->model);
    return o;
}

static void add_finish(cJSON *o, const char *f) {
    if (f) cJSON_AddStringToObject(o, "finish_reason", f);
    else cJSON_AddNullToObject(o, "finish_reason");
}

static char *done(cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* One entry of tool_calls: the whole call (a response), or a streamed
 * piece (head: index, id, type, name and empty arguments; else index and
 * an argument fragment). */
static cJSON *call_json(const api_tool_call *c, int index, int stream, int head, const char *frag) {
    cJSON *o = cJSON_CreateObject(), *fn;
    if (stream) cJSON_AddNumberToObject(o, "index", index);
    if (!stream || head) {
        cJSON_AddStringToObject(o, "id", c->id);
        cJSON_AddStringToObject(o, "type", "function");
    }
    fn = cJSON_AddObjectToObject(o, "function");
    if (!stream || head) cJSON_AddStringToObject(fn, "name", c->name);
    cJSON_AddStringToObject(fn, "arguments", !stream ? c->arguments : head ? "" : frag);
    return o;
}

/* How a choice carries its text: a whole chat message, or a streamed delta
 * (the first one of a chat stream names the role). Completions always
 * carry "text". */
enum { CHOICE_MESSAGE, CHOICE_DELTA, CHOICE_DELTA_ROLE };

static cJSON *choice_json(const api_meta *m, const api_choice_out *c, int how) {
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", c->index);
    if (m->kind != API_CHAT) {
        cJSON_AddItemToObject(ch, "text", str_n(c->text, c->len));
    } else if (how == CHOICE_MESSAGE) {
        cJSON *msg = cJSON_AddObjectToObject(ch, "message");
        cJSON_AddStringToObject(msg, "role", "assistant");
        if (c->n_calls && !c->len) cJSON_AddNullToObject(msg, "content");
        else cJSON_AddItemToObject(msg, "content", str_n(c->text, c->len));
        if (c->n_calls) {
            cJSON *tc = cJSON_AddArrayToObject(msg, "tool_calls");
            for (int k = 0; k < c->n_calls; k++) cJSON_AddItemToArray(tc, call_json(&c->calls[k], k, 0, 0, NULL));
        }
    } else {
        cJSON *d = cJSON_AddObjectToObject(ch, "delta");
        if (how == CHOICE_DELTA_ROLE) cJSON_AddStringToObject(d, "role", "assistant");
        if (c->calls) {
            cJSON *tc = cJSON_AddArrayToObject(d, "tool_calls");
            cJSON_AddItemToArray(tc, call_json(c->calls, c->call_index, 1, c->call_head, c->args_frag));
        } else if (c->len || !c->finish_reason) {
            cJSON_AddItemToObject(d, "content", str_n(c->text, c->len));
        }
    }
    if (!c->lp) cJSON_AddNullToObject(ch, "logprobs");
    else if (m->kind == API_CHAT) cJSON_AddItemToObject(ch, "logprobs", chat_logprobs(m, c));
    else cJSON_AddItemToObject(ch, "logprobs", cmpl_logprobs(m, c));
    add_finish(ch, c->finish_reason);
    return ch;
}

char *api_format_response(const api_meta *m, const api_choice_out *c, int n, const api_usage *u) {
    int chat = m->kind == API_CHAT;
    cJSON *o = envelope(m, chat ? "chat.completion" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(choices, choice_json(m, &c[i], CHOICE_MESSAGE));
    if (u) cJSON_AddItemToObject(o, "usage", usage_json(u));
    return done(o);
}

char *api_format_chunk(const api_meta *m, const api_choice_out *c, int n, int role,
                       const api_usage *u) {
    int chat = m->kind == API_CHAT;
    cJSON *o = envelope(m, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(choices, choice_json(m, &c[i], role ? CHOICE_DELTA_ROLE : CHOICE_DELTA));
    if (u) cJSON_AddItemToObject(o, "usage", usage_json(u));
    else cJSON_AddNullToObject(o, "usage");
    return done(o);
}

char *api_sse_frame(const char *json, size_t *len) {
    size_t n = strlen(json);
    char *s = malloc(n + 9);
    if (!s) return NULL;
    memcpy(s, "data: ", 6);
    memcpy(s + 6, json, n);
    memcpy(s + 6 + n, "\n\n", 3);
    *len = n + 8;
    return s;
}
