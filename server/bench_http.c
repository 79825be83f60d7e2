/* bench_http: the HTTP/1.1 client side of `pivot bench` — libuv TCP + llhttp
 * in response mode, SSE chunk parsing, per-chunk timestamps.
 *
 * One TCP connection per request with "Connection: close": a benchmark
 * request then never queues behind another on a shared connection, and the
 * connect cost (tens of microseconds on loopback) is inside the request's
 * clock exactly as in vLLM's client, which starts its clock before the POST.
 *
 * Lifetime: req_close is the one close path; it closes the TCP handle and
 * the timer, and the request is freed in the last close callback. done_cb
 * runs exactly once, before the close, and never from inside
 * bench_req_start (a synchronous failure is reported from a 0 ms timer), so
 * the caller never sees a callback re-entering its own start call. */
#include <cjson/cJSON.h>
#include <llhttp.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bench.h"

#define MAX_BODY (4u << 20) /* non-streaming bodies kept; beyond this is an error */
#define MAX_LINE (1u << 20) /* one SSE line */

struct bench_req {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t conn;
    uv_write_t wr;
    llhttp_t parser;
    int handles_open, closing, done, pending_fail, stream, chat, msg_complete;
    double timeout_s;
    char *out; /* request bytes, alive until the write completes or the req closes */
    char *line;
    size_t line_len, line_cap;
    double t_read; /* timestamp of the read being parsed */
    double t_last; /* last chunk with choices */
    bench_done_cb cb;
    void *ud;
    bench_result res;
};

static llhttp_settings_t g_settings;
static int g_settings_init;

double bench_now(void) { return (double)uv_hrtime() * 1e-9; }

/* ---- close path ---- */

static void on_closed(uv_handle_t *h) {
    bench_req *r = h->data;
    if (--r->handles_open > 0) return;
    free(r->out);
    free(r->line);
    free(r->res.itl); /* NULL when the caller took them */
    free(r->res.body);
    free(r);
}

static void req_close(bench_req *r) {
    if (r->closing) return;
    r->closing = 1;
    uv_close((uv_handle_t *)&r->timer, on_closed);
    uv_close((uv_handle_t *)&r->tcp, on_closed);
}

/* Report and close. The callback takes ownership of res.itl and res.body. */
static void finish(bench_req *r) {
    if (r->done) return;
    r->done = 1;
    r->res.latency = bench_now() - r->res.t_send;
    if (r->res.ok && !r->stream) r->res.ttft = r->res.latency;
    r->cb(r, r->ud);
    r->res.itl = NULL;
    r->res.body = NULL;
    req_close(r);
}

static void fail(bench_req *r, const char *fmt, const char *detail) {
    if (r->done) return;
    r->res.ok = 0;
    snprintf(r->res.err, sizeof r->res.err, fmt, detail);
    finish(r);
}

bench_result *bench_req_result(bench_req *r) { return &r->res; }

/* ---- response body ---- */

static int push_itl(bench_result *res, double v) {
    if (res->n_itl == res->cap_itl) {
        size_t cap = res->cap_itl ? res->cap_itl * 2 : 64;
        double *p = realloc(res->itl, cap * sizeof *p);
        if (!p) return -1;
        res->itl = p;
        res->cap_itl = cap;
    }
    res->itl[res->n_itl++] = v;
    return 0;
}

static void read_usage(bench_result *res, const cJSON *o) {
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "usage");
    if (!cJSON_IsObject(u)) return;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(u, "completion_tokens");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens");
    if (cJSON_IsNumber(c)) res->completion_tokens = (long)c->valuedouble;
    if (cJSON_IsNumber(p)) res->prompt_tokens = (long)p->valuedouble;
}

static size_t choice_text_len(const cJSON *choice, int chat) {
    const cJSON *t;
    if (chat) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(choice, "delta");
        if (!d) d = cJSON_GetObjectItemCaseSensitive(choice, "message");
        t = cJSON_GetObjectItemCaseSensitive(d, "content");
    } else {
        t = cJSON_GetObjectItemCaseSensitive(choice, "text");
    }
    return cJSON_IsString(t) ? strlen(t->valuestring) : 0;
}

/* An error object's message, for failure reasons. */
static void error_message(const cJSON *o, char *buf, size_t len) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
    const cJSON *m = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "message") : e;
    snprintf(buf, len, "%s", cJSON_IsString(m) ? m->valuestring : "error object");
}

/* One SSE line. Returns -1 after failing the request. */
static int sse_line(bench_req *r, char *s) {
    if (strncmp(s, "data:", 5) != 0) return 0; /* blank, comment, event:, id: */
    s += 5;
    if (*s == ' ') s++;
    if (!strcmp(s, "[DONE]")) return 0;
    cJSON *o = cJSON_Parse(s);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        char snip[48];
        snprintf(snip, sizeof snip, "%.40s", s);
        fail(r, "malformed SSE chunk: %s", snip);
        return -1;
    }
    if (cJSON_GetObjectItemCaseSensitive(o, "error")) {
        char m[120];
        error_message(o, m, sizeof m);
        cJSON_Delete(o);
        fail(r, "error in stream: %s", m);
        return -1;
    }
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "choices");
    if (cJSON_IsArray(ch) && cJSON_GetArraySize(ch) > 0) {
        /* vLLM: the first chunk with choices is TTFT, every later one an ITL gap */
        if (r->res.n_chunks == 0) r->res.ttft = r->t_read - r->res.t_send;
        else if (push_itl(&r->res, r->t_read - r->t_last)) {
            cJSON_Delete(o);
            fail(r, "%s", "out of memory");
            return -1;
        }
        r->t_last = r->t_read;
        r->res.n_chunks++;
        size_t tl = choice_text_len(cJSON_GetArrayItem(ch, 0), r->chat);
        r->res.text_len += tl;
        r->res.n_text_chunks += tl > 0; /* a final chunk may carry only finish_reason */
    }
    read_usage(&r->res, o);
    cJSON_Delete(o);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
    bench_req *r = p->data;
    if (!r->stream || r->parser.status_code != 200) {
        if (r->res.body_len + len > MAX_BODY) {
            fail(r, "%s", "response body too large");
            return -1;
        }
        char *b = realloc(r->res.body, r->res.body_len + len + 1);
        if (!b) {
            fail(r, "%s", "out of memory");
            return -1;
        }
        memcpy(b + r->res.body_len, at, len);
        r->res.body = b;
        r->res.body_len += len;
        b[r->res.body_len] = 0;
        return 0;
    }
    /* Streaming: split into lines; a line may span reads. */
    for (size_t i = 0; i < len; i++) {
        char c = at[i];
        if (c == '\n') {
            if (r->line_len && r->line[r->line_len - 1] == '\r') r->line_len--;
            if (!r->line) continue; /* empty line before any byte */
            r->line[r->line_len] = 0;
            r->line_len = 0;
            if (sse_line(r, r->line)) return -1;
            continue;
        }
        if (r->line_len + 2 > r->line_cap) {
            size_t cap = r->line_cap ? r->line_cap * 2 : 1024;
            char *l = cap > MAX_LINE ? NULL : realloc(r->line, cap);
            if (!l) {
                fail(r, "%s", "SSE line too long");
                return -1;
            }
            r->line = l;
            r->line_cap = cap;
        }
        r->line[r->line_len++] = c;
    }
    return 0;
}

static void finish_body(bench_req *r) {
    int status = r->parser.status_code;
    cJSON *o = r->res.body ? cJSON_Parse(r->res.body) : NULL;
    if (status != 200) {
        char m[120], why[150];
        if (o) error_message(o, m, sizeof m);
        else snprintf(m, sizeof m, "%.60s", r->res.body ? r->res.body : "");
        snprintf(why, sizeof why, "%d %s", status, m);
        cJSON_Delete(o);
        fail(r, "HTTP %s", why);
        return;
    }
    if (r->stream) {
        cJSON_Delete(o);
        if (r->line_len) { /* a last line without its newline */
            r->line[r->line_len] = 0;
            r->line_len = 0;
            if (sse_line(r, r->line)) return;
        }
        if (r->res.n_chunks == 0) {
            fail(r, "%s", "stream ended without any chunk with choices");
            return;
        }
        r->res.ok = 1;
        finish(r);
        return;
    }
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        fail(r, "%s", "malformed JSON response");
        return;
    }
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "choices");
    if (cJSON_IsArray(ch) && cJSON_GetArraySize(ch) > 0) {
        r->res.n_chunks = r->res.n_text_chunks = 1;
        r->res.text_len = choice_text_len(cJSON_GetArrayItem(ch, 0), r->chat);
    }
    read_usage(&r->res, o);
    cJSON_Delete(o);
    r->res.ok = 1;
    finish(r);
}

static int on_message_complete(llhttp_t *p) {
    bench_req *r = p->data;
    r->msg_complete = 1;
    finish_body(r);
    return HPE_PAUSED; /* the request is over; ignore anything after */
}

/* ---- I/O ---- */

static void on_alloc(uv_handle_t *h, size_t sug, uv_buf_t *b) {
    (void)h;
    b->base = malloc(sug);
    b->len = b->base ? sug : 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    bench_req *r = s->data;
    r->t_read = bench_now();
    if (n > 0 && !r->done) {
        llhttp_errno_t e = llhttp_execute(&r->parser, b->base, (size_t)n);
        if (e != HPE_OK && e != HPE_PAUSED && !r->done)
            fail(r, "bad HTTP response: %s", llhttp_errno_name(e));
    } else if (n < 0 && !r->done) {
        if (n == UV_EOF) {
            /* a body delimited by close completes here */
            llhttp_errno_t e = llhttp_finish(&r->parser);
            if (!r->done && (e != HPE_OK || !r->msg_complete))
                fail(r, "%s", "connection closed before the response was complete");
        } else {
            fail(r, "read: %s", uv_strerror((int)n));
        }
    }
    free(b->base);
}

static void on_write(uv_write_t *w, int status) {
    bench_req *r = w->data;
    free(r->out);
    r->out = NULL;
    if (status < 0 && status != UV_ECANCELED) fail(r, "write: %s", uv_strerror(status));
}

static void on_connect(uv_connect_t *c, int status) {
    bench_req *r = c->data;
    if (r->done) return;
    if (status < 0) {
        fail(r, "connect: %s", uv_strerror(status));
        return;
    }
    uv_buf_t b = uv_buf_init(r->out, (unsigned)strlen(r->out));
    int e = uv_write(&r->wr, (uv_stream_t *)&r->tcp, &b, 1, on_write);
    if (!e) e = uv_read_start((uv_stream_t *)&r->tcp, on_alloc, on_read);
    if (e) fail(r, "write: %s", uv_strerror(e));
}

static void on_timer(uv_timer_t *t) {
    bench_req *r = t->data;
    if (r->pending_fail) {
        fail(r, "%s", r->res.err);
        return;
    }
    char d[32];
    snprintf(d, sizeof d, "%g s", r->timeout_s);
    fail(r, "timeout after %s", d);
}

bench_req *bench_req_start(uv_loop_t *loop, const bench_target *t, const char *method,
                           const char *path, const char *body, const char *api_key, int stream,
                           int chat, double timeout_s, bench_done_cb cb, void *ud) {
    if (!g_settings_init) {
        llhttp_settings_init(&g_settings);
        g_settings.on_body = on_body;
        g_settings.on_message_complete = on_message_complete;
        g_settings_init = 1;
    }
    bench_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    size_t blen = body ? strlen(body) : 0;
    size_t cap = blen + strlen(path) + strlen(t->prefix) + strlen(t->host) +
                 (api_key ? strlen(api_key) : 0) + 256;
    r->out = malloc(cap);
    if (!r->out) {
        free(r);
        return NULL;
    }
    int n = snprintf(r->out, cap, "%s %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: pivot-bench\r\n"
                     "Connection: close\r\nAccept: %s\r\n",
                     method, t->prefix, path, t->host,
                     stream ? "text/event-stream" : "application/json");
    if (api_key && *api_key)
        n += snprintf(r->out + n, cap - (size_t)n, "Authorization: Bearer %s\r\n", api_key);
    if (body)
        n += snprintf(r->out + n, cap - (size_t)n,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
    n += snprintf(r->out + n, cap - (size_t)n, "\r\n");
    if (body) memcpy(r->out + n, body, blen + 1);

    r->stream = stream;
    r->chat = chat;
    r->timeout_s = timeout_s;
    r->cb = cb;
    r->ud = ud;
    r->res.prompt_tokens = r->res.completion_tokens = -1;
    r->res.t_send = bench_now();
    llhttp_init(&r->parser, HTTP_RESPONSE, &g_settings);
    r->parser.data = r;
    uv_tcp_init(loop, &r->tcp);
    uv_timer_init(loop, &r->timer);
    r->handles_open = 2;
    r->tcp.data = r->timer.data = r->conn.data = r->wr.data = r;
    uv_tcp_nodelay(&r->tcp, 1);
    int e = uv_tcp_connect(&r->conn, &r->tcp, (const struct sockaddr *)&t->addr, on_connect);
    if (e) {
        r->pending_fail = 1;
        snprintf(r->res.err, sizeof r->res.err, "connect: %s", uv_strerror(e));
        uv_timer_start(&r->timer, on_timer, 0, 0);
    } else {
        uv_timer_start(&r->timer, on_timer, (uint64_t)(timeout_s * 1e3), 0);
    }
    return r;
}

/* ---- URL ---- */

int bench_target_parse(bench_target *t, const char *url, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    if (strncasecmp(url, "http://", 7) != 0) {
        snprintf(err, errlen, "--url must start with http:// (no TLS): '%s'", url);
        return -1;
    }
    const char *h = url + 7, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    if (hl == 0 || hl >= sizeof t->host) {
        snprintf(err, errlen, "bad host in --url '%s'", url);
        return -1;
    }
    memcpy(t->host, h, hl);
    snprintf(t->prefix, sizeof t->prefix, "%s", slash ? slash : "");
    size_t pl = strlen(t->prefix);
    while (pl && t->prefix[pl - 1] == '/') t->prefix[--pl] = 0;
    char name[256], port[16] = "80";
    if (t->host[0] == '[') { /* [v6]:port */
        const char *rb = strchr(t->host, ']');
        if (!rb) {
            snprintf(err, errlen, "bad host in --url '%s'", url);
            return -1;
        }
        size_t nl = (size_t)(rb - t->host - 1);
        memcpy(name, t->host + 1, nl);
        name[nl] = 0;
        if (rb[1] == ':') snprintf(port, sizeof port, "%s", rb + 2);
    } else {
        snprintf(name, sizeof name, "%s", t->host);
        char *colon = strrchr(name, ':');
        if (colon) {
            *colon = 0;
            snprintf(port, sizeof port, "%s", colon + 1);
        }
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int e = getaddrinfo(name, port, &hints, &ai);
    if (e || !ai) {
        snprintf(err, errlen, "cannot resolve '%s' port '%s': %s", name, port,
                 e ? gai_strerror(e) : "no address");
        return -1;
    }
    memcpy(&t->addr, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    return 0;
}

/* ---- statistics ---- */

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_percentile(double *v, size_t n, double p) {
    if (n == 0) return 0;
    qsort(v, n, sizeof *v, cmp_d);
    double k = (double)(n - 1) * p / 100.0;
    size_t lo = (size_t)k;
    if (lo + 1 >= n) return v[n - 1];
    return v[lo] + (v[lo + 1] - v[lo]) * (k - (double)lo);
}
