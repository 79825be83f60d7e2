/* router: method + path -> handler, and the checks every API route shares
 * (auth, readiness, draining, content type). Small handlers live here; the
 * generation endpoints are in completions.c. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <llhttp.h>

#include "prompt.h"
#include "router.h"
#include "unicode.h"
#include "webui.h"

struct srv_router {
    srv_router_deps d;
    int draining;
};

srv_router *srv_router_new(const srv_router_deps *d) {
    srv_router *r = calloc(1, sizeof *r);
    if (r) r->d = *d;
    return r;
}

void srv_router_free(srv_router *r) { free(r); }
void srv_router_set_draining(srv_router *r) { r->draining = 1; }

static void handle_health(srv_router *s, srv_conn *c) {
    int st = eng_state(s->d.eng);
    const char *what = st == ENG_READY ? (s->draining ? "draining" : "ok")
                       : st == ENG_LOADING ? "loading" : "failed";
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", what);
    if (st == ENG_FAILED) cJSON_AddStringToObject(o, "error", eng_error(s->d.eng));
    srv_conn_reply_json(c, st == ENG_READY && !s->draining ? 200 : 503, o);
}

static void handle_models(srv_router *s, srv_conn *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", s->d.model_name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)time(NULL));
    cJSON_AddStringToObject(m, "owned_by", "pivot");
    cJSON_AddNumberToObject(m, "max_model_len", eng_max_ctx(s->d.eng));
    cJSON_AddItemToArray(d, m);
    srv_conn_reply_json(c, 200, o);
}

static void handle_metrics(srv_router *s, srv_conn *c) {
    char *t = srv_metrics_render(s->d.met, s->d.model_name);
    const char *b = t ? t : "";
    srv_conn_reply(c, 200, "text/plain; version=0.0.4", b, strlen(b), NULL);
    free(t);
}

static void handle_tokenize(srv_router *s, srv_conn *c) {
    const llm_model *m = eng_model(s->d.eng);
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
        srv_chat_in in = {.msgs = r.msgs, .n = r.n_msgs, .add_generation_prompt = 1};
        if (srv_render_chat(m, &in, &r.text, NULL, &e)) {
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
    cJSON_AddNumberToObject(o, "max_model_len", eng_max_ctx(s->d.eng));
    free(ids);
    srv_conn_reply_json(c, 200, o);
}

static void handle_detokenize(srv_router *s, srv_conn *c) {
    const llm_model *m = eng_model(s->d.eng);
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
    pv_buf out = {0};
    srv_detokenize(v, r.ids, r.n_ids, &out);
    api_tok_request_free(&r);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "prompt", out.p ? out.p : "");
    pv_buf_free(&out);
    srv_conn_reply_json(c, 200, o);
}

typedef struct {
    const char *path;
    int method; /* HTTP_GET / HTTP_POST */
    int api;    /* needs auth, a loaded model, JSON and not draining */
    void (*fn)(srv_router *s, srv_conn *c);
    int prefix; /* path is a prefix: the rest goes to the handler (srv_conn_url) */
} route;

static void h_cmpl(srv_router *s, srv_conn *c) { srv_cmpl_handle(s->d.cmpl, c, API_COMPLETIONS); }
static void h_chat(srv_router *s, srv_conn *c) { srv_cmpl_handle(s->d.cmpl, c, API_CHAT); }

static void h_kv_list(srv_router *s, srv_conn *c) { srv_kvview_list(s->d.kv, c); }
static void h_kv_get(srv_router *s, srv_conn *c) {
    const char *url = srv_conn_url(c);
    char rest[128];
    size_t skip = strlen("/v1/kv/sequences/"), n = strcspn(url + skip, "?");
    snprintf(rest, sizeof rest, "%.*s", (int)n, url + skip);
    srv_kvview_get(s->d.kv, c, rest);
}
static void h_stats(srv_router *s, srv_conn *c) { srv_stats_handle(s->d.stats, c); }

/* Frees the prefix cache's unused blocks. The decoder does it before its
 * next step (it owns the cache), so the answer is 202 with what was cached
 * when asked; /metrics shows the result (pivot:prefix_cache_bytes). Blocks
 * running requests use stay until they finish. */
static void h_cache_flush(srv_router *s, srv_conn *c) {
    eng_gauges g;
    srv_metrics_get_gauges(s->d.met, &g);
    eng_prefix_flush(s->d.eng);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "prefix_cache.flush");
    cJSON_AddStringToObject(o, "status", "scheduled");
    cJSON_AddNumberToObject(o, "cached_bytes", (double)g.prefix_bytes);
    cJSON_AddNumberToObject(o, "in_use_bytes", (double)g.prefix_bytes_used);
    srv_conn_reply_json(c, 202, o);
}
static void h_presets(srv_router *s, srv_conn *c) { srv_presets_handle(s->d.eng, c); }

/* The embedded page (webui.h): its own origin only, nothing from outside. */
static void h_webui(srv_router *s, srv_conn *c, const srv_asset *a) {
    (void)s;
    srv_conn_reply(c, 200, a->ctype, (const char *)a->data, a->len,
                   "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
                   "Content-Security-Policy: default-src 'self'; img-src 'self' data:\r\n");
}

static const route routes[] = {
    {"/health", HTTP_GET, 0, handle_health, 0},
    {"/metrics", HTTP_GET, 0, handle_metrics, 0},
    {"/v1/models", HTTP_GET, 1, handle_models, 0},
    {"/v1/completions", HTTP_POST, 1, h_cmpl, 0},
    {"/v1/chat/completions", HTTP_POST, 1, h_chat, 0},
    {"/tokenize", HTTP_POST, 1, handle_tokenize, 0},
    {"/detokenize", HTTP_POST, 1, handle_detokenize, 0},
    {"/v1/kv/sequences", HTTP_GET, 1, h_kv_list, 0},
    {"/v1/kv/sequences/", HTTP_GET, 1, h_kv_get, 1},
    {"/v1/kv/presets", HTTP_GET, 1, h_presets, 0},
    {"/v1/server/stats", HTTP_GET, 1, h_stats, 0},
    {"/v1/cache/flush", HTTP_POST, 1, h_cache_flush, 0},
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

void srv_route(srv_router *s, srv_conn *c) {
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
        if (routes[i].prefix ? !strncmp(routes[i].path, path, strlen(routes[i].path)) &&
                                   path[strlen(routes[i].path)]
                             : !strcmp(routes[i].path, path))
            r = &routes[i];
    const srv_asset *page = s->d.cfg->no_webui ? NULL : srv_webui_find(path);
    if (page && method == HTTP_GET) { /* the page itself is public; what it calls is not */
        h_webui(s, c, page);
        return;
    }
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
        const char *key = s->d.cfg->api_key;
        if (key && !auth_ok(c, key)) {
            api_err_set(&e, 401, NULL, "invalid_api_key",
                        "missing or wrong API key: send 'Authorization: Bearer <key>'");
            srv_conn_reply_error(c, &e, "WWW-Authenticate: Bearer\r\n");
            return;
        }
        int st = eng_state(s->d.eng);
        if (st != ENG_READY || s->draining) {
            api_err_set(&e, 503, NULL, st == ENG_LOADING ? "model_loading" : "unavailable", "%s",
                        st == ENG_LOADING ? "the model is loading; retry shortly"
                        : st == ENG_FAILED ? "the model failed to load"
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
    r->fn(s, c);
}
