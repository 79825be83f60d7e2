/* router: method + path -> handler, and the checks every API route shares
 * (auth, readiness, draining, content type). Small handlers live here; the
 * generation endpoints are in completions.c. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "srv.h"
#include "unicode.h"

static void reply_json(srv_conn *c, int status, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) {
        api_error e;
        api_err_set(&e, 500, NULL, NULL, "out of memory");
        srv_conn_reply_error(c, &e, NULL);
        return;
    }
    srv_conn_reply(c, status, "application/json", s, strlen(s), NULL);
    free(s);
}

static void handle_health(srv_conn *c) {
    srv_server *s = srv_conn_server(c);
    int st = srv_engine_state(s->eng);
    const char *what = st == SRV_READY ? (s->draining ? "draining" : "ok")
                       : st == SRV_LOADING ? "loading" : "failed";
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", what);
    if (st == SRV_FAILED) cJSON_AddStringToObject(o, "error", srv_engine_error(s->eng));
    reply_json(c, st == SRV_READY && !s->draining ? 200 : 503, o);
}

static void handle_models(srv_conn *c) {
    srv_server *s = srv_conn_server(c);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", s->model_name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)time(NULL));
    cJSON_AddStringToObject(m, "owned_by", "pivot");
    cJSON_AddNumberToObject(m, "max_model_len", srv_engine_max_ctx(s->eng));
    cJSON_AddItemToArray(d, m);
    reply_json(c, 200, o);
}

static void handle_metrics(srv_conn *c) {
    srv_server *s = srv_conn_server(c);
    char *t = srv_metrics_render(s->met, s->model_name);
    const char *b = t ? t : "";
    srv_conn_reply(c, 200, "text/plain; version=0.0.4", b, strlen(b), NULL);
    free(t);
}

/* Renders chat messages with the model's template (shared with completions). */
int srv_render_chat(const llm_model *m, const api_message *msgs, int n, char **out, api_error *e) {
    const chat_template *t = llm_get_chat(m);
    if (chat_template_kind(t) == CHAT_UNKNOWN) {
        api_err_set(e, 400, "messages", "chat_template_unsupported",
                    "the model's chat template is not one Pivot recognizes (ChatML, Llama-3, "
                    "Llama-2/Mistral)");
        return -1;
    }
    chat_msg *cm = malloc(sizeof *cm * (n > 0 ? n : 1));
    if (!cm) {
        api_err_set(e, 500, NULL, NULL, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) cm[i] = (chat_msg){msgs[i].role, msgs[i].content};
    int rc = chat_render(t, cm, n, 1, out);
    free(cm);
    if (rc) {
        api_err_set(e, 400, "messages", "invalid_value", "cannot render the messages");
        return -1;
    }
    return 0;
}

/* Tokenizes text (special tokens parsed when `special`), BOS first when the
 * model wants it and add_bos. Returns a malloc'ed array or NULL. */
int32_t *srv_tokenize(const llm_model *m, const char *text, int special, int add_bos, int *n) {
    const tok_vocab *v = llm_get_vocab(m);
    int bos = add_bos && tok_add_bos(v) && tok_bos(v) >= 0;
    size_t len = strlen(text);
    int need = tok_encode(v, text, len, special, NULL, 0);
    if (need < 0) return NULL;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(need + bos + 1));
    if (!ids) return NULL;
    if (bos) ids[0] = tok_bos(v);
    tok_encode(v, text, len, special, ids + bos, need);
    *n = need + bos;
    return ids;
}

static void handle_tokenize(srv_conn *c) {
    srv_server *s = srv_conn_server(c);
    const llm_model *m = srv_engine_model(s->eng);
    size_t len;
    const char *body = srv_conn_body(c, &len);
    api_tok_request r;
    api_error e;
    if (api_parse_tokenize(body, len, &r, &e)) {
        srv_conn_reply_error(c, &e, NULL);
        return;
    }
    int special = 0;
    if (r.n_msgs) {
        if (srv_render_chat(m, r.msgs, r.n_msgs, &r.text, &e)) {
            api_tok_request_free(&r);
            srv_conn_reply_error(c, &e, NULL);
            return;
        }
        special = 1;
    }
    int n = 0;
    int32_t *ids = srv_tokenize(m, r.text, special, r.add_special, &n);
    api_tok_request_free(&r);
    cJSON *o = cJSON_CreateObject();
    cJSON *a = cJSON_AddArrayToObject(o, "tokens");
    for (int i = 0; ids && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    cJSON_AddNumberToObject(o, "count", n);
    cJSON_AddNumberToObject(o, "max_model_len", srv_engine_max_ctx(s->eng));
    free(ids);
    reply_json(c, 200, o);
}

static void handle_detokenize(srv_conn *c) {
    srv_server *s = srv_conn_server(c);
    const llm_model *m = srv_engine_model(s->eng);
    const tok_vocab *v = llm_get_vocab(m);
    size_t len;
    const char *body = srv_conn_body(c, &len);
    api_tok_request r;
    api_error e;
    if (api_parse_detokenize(body, len, &r, &e)) {
        srv_conn_reply_error(c, &e, NULL);
        return;
    }
    for (int i = 0; i < r.n_ids; i++)
        if (r.ids[i] >= tok_n_vocab(v)) {
            api_err_set(&e, 400, "tokens", "invalid_value", "token id %d is outside the vocabulary (%d)",
                        r.ids[i], tok_n_vocab(v));
            api_tok_request_free(&r);
            srv_conn_reply_error(c, &e, NULL);
            return;
        }
    srv_buf out = {0};
    tok_stream *ts = tok_stream_new(v, 0);
    char piece[512];
    for (int i = 0; ts && i < r.n_ids; i++) {
        int w = tok_stream_push(ts, r.ids[i], piece, sizeof piece);
        if (w > 0) srv_buf_add(&out, piece, (size_t)w);
    }
    int w = ts ? tok_stream_flush(ts, piece, sizeof piece) : 0;
    if (w > 0) srv_buf_add(&out, piece, (size_t)w);
    tok_stream_free(ts);
    api_tok_request_free(&r);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "prompt", out.p ? out.p : "");
    srv_buf_free(&out);
    reply_json(c, 200, o);
}

typedef struct {
    const char *path;
    int method; /* HTTP_GET / HTTP_POST */
    int api;    /* needs auth, a loaded model, JSON and not draining */
    void (*fn)(srv_conn *c);
} route;

static void h_cmpl(srv_conn *c) { srv_handle_completions(c, API_COMPLETIONS); }
static void h_chat(srv_conn *c) { srv_handle_completions(c, API_CHAT); }

static const route routes[] = {
    {"/health", HTTP_GET, 0, handle_health},
    {"/metrics", HTTP_GET, 0, handle_metrics},
    {"/v1/models", HTTP_GET, 1, handle_models},
    {"/v1/completions", HTTP_POST, 1, h_cmpl},
    {"/v1/chat/completions", HTTP_POST, 1, h_chat},
    {"/tokenize", HTTP_POST, 1, handle_tokenize},
    {"/detokenize", HTTP_POST, 1, handle_detokenize},
};

static int auth_ok(srv_conn *c, const char *key) {
    const char *h = srv_conn_header(c, "authorization");
    if (strncasecmp(h, "Bearer ", 7)) return 0;
    h += 7;
    while (*h == ' ') h++;
    /* constant-time compare: the key is a secret */
    size_t n = strlen(key), m = strlen(h);
    unsigned diff = (unsigned)(n ^ m);
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)key[i] ^ (unsigned char)(i < m ? h[i] : 0);
    return diff == 0;
}

void srv_route(srv_conn *c) {
    srv_server *s = srv_conn_server(c);
    char path[256];
    const char *url = srv_conn_url(c);
    /* Copy at most sizeof path - 1 bytes of the path part; every index below
     * uses the copied length, never the URL's (a long URL is just a 404). */
    size_t pl = strcspn(url, "?");
    if (pl > sizeof path - 1) pl = sizeof path - 1;
    memcpy(path, url, pl);
    path[pl] = 0;
    if (pl > 1 && path[pl - 1] == '/') path[pl - 1] = 0;
    api_error e;
    int method = srv_conn_method(c);
    const route *r = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
        if (!strcmp(routes[i].path, path)) r = &routes[i];
    if (!r) {
        api_err_set(&e, 404, NULL, "not_found", "no route for %s %.200s",
                    llhttp_method_name((llhttp_method_t)method), path);
        srv_conn_reply_error(c, &e, NULL);
        return;
    }
    if (method != r->method) {
        api_err_set(&e, 405, NULL, "method_not_allowed", "%s does not accept %s; use %s", path,
                    llhttp_method_name((llhttp_method_t)method),
                    llhttp_method_name((llhttp_method_t)r->method));
        srv_conn_reply_error(c, &e, r->method == HTTP_GET ? "Allow: GET\r\n" : "Allow: POST\r\n");
        return;
    }
    if (r->api) {
        if (s->cfg.api_key && !auth_ok(c, s->cfg.api_key)) {
            api_err_set(&e, 401, NULL, "invalid_api_key",
                        "missing or wrong API key: send 'Authorization: Bearer <key>'");
            srv_conn_reply_error(c, &e, "WWW-Authenticate: Bearer\r\n");
            return;
        }
        int st = srv_engine_state(s->eng);
        if (st != SRV_READY || s->draining) {
            api_err_set(&e, 503, NULL, st == SRV_LOADING ? "model_loading" : "unavailable", "%s",
                        st == SRV_LOADING ? "the model is loading; retry shortly"
                        : st == SRV_FAILED ? "the model failed to load"
                                           : "the server is shutting down");
            srv_conn_reply_error(c, &e, "Retry-After: 1\r\n");
            return;
        }
        const char *ct = srv_conn_header(c, "content-type");
        if (r->method == HTTP_POST && ct[0] && strncasecmp(ct, "application/json", 16)) {
            api_err_set(&e, 415, NULL, "unsupported_media_type",
                        "the request body must be application/json, got '%.64s'", ct);
            srv_conn_reply_error(c, &e, NULL);
            return;
        }
        /* JSON is UTF-8 (RFC 8259) and cJSON does not check it: text that is
         * not would reach the tokenizer and come back, echoed or detokenized,
         * inside responses that are then not valid JSON themselves. */
        size_t blen;
        const char *body = srv_conn_body(c, &blen);
        if (r->method == HTTP_POST && !uc_is_valid(body, blen)) {
            api_err_set(&e, 400, NULL, "invalid_json", "the request body is not valid UTF-8");
            srv_conn_reply_error(c, &e, NULL);
            return;
        }
    }
    r->fn(c);
}
