/* bench_http: the HTTP/1.1 client side of `pivot bench` — libuv TCP + llhttp
 * in response mode, per-read timestamps. What the body means (SSE chunks,
 * JSON bodies, error messages) is bench_sse.c's.
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
#include "bench_sse.h"

#define MAX_BODY (4u << 20) /* non-streaming bodies kept; beyond this is an error */

struct bench_req {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t conn;
    uv_write_t wr;
    llhttp_t parser;
    int handles_open, closing, done, pending_fail, stream, chat, msg_complete;
    double timeout_s;
    char *out; /* request bytes, alive until the write completes or the req closes */
    bench_sse *sse; /* streaming: the body's parser, filling res */
    double t_read; /* timestamp of the read being parsed */
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
    bench_sse_free(r->sse);
    bench_result_release(&r->res); /* nothing left when the caller took them */
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
    if (bench_sse_feed(r->sse, at, len, r->t_read)) {
        fail(r, "%s", bench_sse_error(r->sse));
        return -1;
    }
    return 0;
}

static void finish_body(bench_req *r) {
    int status = r->parser.status_code;
    if (status != 200) {
        char why[160];
        bench_http_error_reason(status, r->res.body, why, sizeof why);
        fail(r, "%s", why);
        return;
    }
    if (r->stream) {
        if (bench_sse_finish(r->sse)) {
            fail(r, "%s", bench_sse_error(r->sse));
            return;
        }
    } else {
        char why[160];
        if (bench_parse_body(&r->res, r->res.body, r->chat, why, sizeof why)) {
            fail(r, "%s", why);
            return;
        }
    }
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
        /* fail() formats into res.err: copy first, overlapping snprintf
         * arguments are undefined behaviour */
        char why[sizeof r->res.err];
        memcpy(why, r->res.err, sizeof why);
        fail(r, "%s", why);
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
    bench_result_init(&r->res);
    if (stream && !(r->sse = bench_sse_new(&r->res, chat, 0))) {
        free(r->out);
        free(r);
        return NULL;
    }
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
