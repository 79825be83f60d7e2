/* srv_http: connections — libuv TCP + llhttp, keep-alive, pipelining, limits,
 * timeouts, and the response writers.
 *
 * Pipelining: when llhttp completes a message we pause the parser and route
 * the request; bytes that arrive meanwhile (the next requests, or EOF) are
 * kept in `pend`, and parsing resumes only once the response has been fully
 * queued. Reading continues while a request is handled so that a client
 * that goes away is noticed at once (its job is cancelled).
 *
 * Lifetime: srv_conn_close is the one close path; it closes both handles and
 * the conn is freed in the last close callback. Write requests own their
 * bytes and free them in the write callback. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <llhttp.h>

#include "pvbuf.h"
#include "pvtime.h"
#include "srv_http.h"

#define MAX_HEADER_BYTES (16 * 1024)
#define MAX_URL 8192
#define MAX_PEND (1 << 20)

struct srv_http {
    uv_loop_t *loop;
    uv_tcp_t listener;
    llhttp_settings_t settings;
    srv_http_limits lim;
    srv_http_hooks hooks;
    srv_conn *conns; /* all open connections */
    int n_conns;
    int draining, listening;
};

struct srv_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    srv_http *srv;
    srv_conn *prev, *next; /* srv->conns */
    llhttp_t parser;
    int handles_open;
    int closing, busy, in_process, in_message, keep_alive, eof, done;
    int parse_error; /* status to reply (400/413/414/431) once parsing stopped */
    /* current request */
    char url[MAX_URL + 1];
    size_t url_len;
    size_t header_bytes;
    char hname[64];
    size_t hname_len;
    char hval[1024];
    size_t hval_len;
    char ctype[128], auth[1024];
    pv_buf body;
    pv_buf pend; /* bytes received but not yet parsed */
    /* response */
    int streaming;
    int status;
    double t_start;
    /* log line */
    char log_id[48];
    int log_in, log_out;
    double log_ttft;
    size_t log_kv;
    int log_preempt, log_compress; /* KV pressure: preemptions, elastic compressions */
    void (*gone)(void *arg); /* srv_conn_watch */
    void *gone_arg;
};

typedef struct {
    uv_write_t req;
    srv_conn *c;
    int close_after;
    size_t len;
    char data[];
} wreq;

static void conn_process(srv_conn *c);
static void conn_timer_cb(uv_timer_t *t);

const char *srv_conn_url(srv_conn *c) { return c->url; }
int srv_conn_method(srv_conn *c) { return (int)llhttp_get_method(&c->parser); }
const char *srv_conn_body(srv_conn *c, size_t *len) {
    *len = c->body.len;
    return c->body.p ? c->body.p : "";
}
const char *srv_conn_header(srv_conn *c, const char *name) {
    if (!strcasecmp(name, "content-type")) return c->ctype;
    if (!strcasecmp(name, "authorization")) return c->auth;
    return "";
}

/* ---- close path ---- */

static void changed(srv_http *h) {
    if (h->hooks.changed) h->hooks.changed(h->hooks.arg);
}

static void on_handle_closed(uv_handle_t *h) {
    srv_conn *c = h->data;
    if (--c->handles_open > 0) return;
    srv_http *s = c->srv;
    pv_buf_free(&c->body);
    pv_buf_free(&c->pend);
    free(c);
    changed(s);
}

void srv_conn_close(srv_conn *c) {
    if (c->closing) return;
    c->closing = 1;
    void (*gone)(void *) = c->gone;
    c->gone = NULL;
    if (gone) gone(c->gone_arg);
    srv_http *s = c->srv;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->n_conns--;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

/* ---- writing ---- */

static void on_write(uv_write_t *req, int status) {
    wreq *w = (wreq *)req;
    srv_conn *c = w->c;
    if (status < 0 || w->close_after) srv_conn_close(c); /* no-op when already closing */
    free(w);
}

static void conn_write(srv_conn *c, const char *d1, size_t n1, const char *d2, size_t n2,
                       int close_after) {
    if (c->closing) return;
    wreq *w = malloc(sizeof *w + n1 + n2);
    if (!w) {
        srv_conn_close(c);
        return;
    }
    w->c = c;
    w->close_after = close_after;
    w->len = n1 + n2;
    memcpy(w->data, d1, n1);
    if (n2) memcpy(w->data + n1, d2, n2);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write)) {
        free(w);
        srv_conn_close(c);
    }
}

static void log_request(srv_conn *c) {
    double dt = pv_now() - c->t_start;
    const char *m = llhttp_method_name(llhttp_get_method(&c->parser));
    if (c->log_id[0])
        fprintf(stderr,
                "pivot: %s %s %s %d in=%d out=%d ttft=%.1fms dur=%.1fms kv=%zuB preempted=%d "
                "compressed=%d\n",
                c->log_id, m, c->url, c->status, c->log_in, c->log_out, c->log_ttft * 1e3,
                dt * 1e3, c->log_kv, c->log_preempt, c->log_compress);
    else
        fprintf(stderr, "pivot: - %s %s %d dur=%.1fms\n", m, c->url, c->status, dt * 1e3);
}

static int closes_after(srv_conn *c) { return !c->keep_alive || c->srv->draining || c->parse_error; }

/* The response has been queued: log, then either close or go on with the
 * next pipelined request. */
static void response_done(srv_conn *c) {
    log_request(c);
    c->busy = 0;
    c->streaming = 0;
    c->log_id[0] = 0;
    c->gone = NULL;
    if (c->closing) return;
    if (closes_after(c)) { /* the last write's callback closes it */
        c->done = 1;
        return;
    }
    llhttp_resume(&c->parser);
    if (!c->in_process) conn_process(c);
    changed(c->srv);
}

void srv_conn_reply(srv_conn *c, int status, const char *ctype, const char *body, size_t len,
                    const char *extra) {
    char head[1024];
    int close = closes_after(c);
    c->status = status;
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                     status, api_status_text(status), ctype, len, extra ? extra : "",
                     close ? "Connection: close\r\n" : "");
    conn_write(c, head, (size_t)n, body, len, close);
    response_done(c);
}

void srv_conn_reply_error(srv_conn *c, const api_error *e, const char *extra) {
    char *body = api_error_body(e);
    const char *b = body ? body : "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
    srv_conn_reply(c, e->status, "application/json", b, strlen(b), extra);
    free(body);
}

void srv_conn_reply_json(srv_conn *c, int status, cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
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

void srv_conn_stream_begin(srv_conn *c) {
    char head[256];
    int close = closes_after(c);
    c->status = 200;
    c->streaming = 1;
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     "Transfer-Encoding: chunked\r\n%s\r\n",
                     close ? "Connection: close\r\n" : "");
    conn_write(c, head, (size_t)n, NULL, 0, 0);
}

void srv_conn_stream_write(srv_conn *c, const char *data, size_t len) {
    if (!len) return;
    char head[32];
    int n = snprintf(head, sizeof head, "%zx\r\n", len);
    wreq *w = malloc(sizeof *w + (size_t)n + len + 2);
    if (!w || c->closing) {
        free(w);
        return;
    }
    w->c = c;
    w->close_after = 0;
    w->len = (size_t)n + len + 2;
    memcpy(w->data, head, n);
    memcpy(w->data + n, data, len);
    memcpy(w->data + n + len, "\r\n", 2);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write)) {
        free(w);
        srv_conn_close(c);
    }
}

void srv_conn_stream_end(srv_conn *c) {
    conn_write(c, "0\r\n\r\n", 5, NULL, 0, closes_after(c));
    response_done(c);
}

void srv_conn_log_info(srv_conn *c, const char *id, int tok_in, int tok_out, double ttft,
                       size_t kv_bytes, int preempted, int compressed) {
    c->log_preempt = preempted;
    c->log_compress = compressed;
    snprintf(c->log_id, sizeof c->log_id, "%s", id);
    c->log_in = tok_in;
    c->log_out = tok_out;
    c->log_ttft = ttft;
    c->log_kv = kv_bytes;
}

/* ---- llhttp callbacks ---- */

static int on_message_begin(llhttp_t *p) {
    srv_conn *c = p->data;
    c->url_len = 0;
    c->url[0] = 0;
    c->header_bytes = 0;
    c->hname_len = c->hval_len = 0;
    c->ctype[0] = c->auth[0] = 0;
    c->body.len = 0;
    c->in_message = 1;
    c->t_start = pv_now();
    /* header + body must arrive within the request timeout */
    uv_timer_stop(&c->timer);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
    srv_conn *c = p->data;
    if (c->url_len + len > MAX_URL) {
        c->parse_error = 414;
        return HPE_USER;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    c->url[c->url_len] = 0;
    return 0;
}

static int header_budget(srv_conn *c, size_t len) {
    c->header_bytes += len;
    if (c->header_bytes > MAX_HEADER_BYTES) {
        c->parse_error = 431;
        return HPE_USER;
    }
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
    srv_conn *c = p->data;
    if (header_budget(c, len)) return HPE_USER;
    size_t k = len < sizeof c->hname - 1 - c->hname_len ? len : sizeof c->hname - 1 - c->hname_len;
    memcpy(c->hname + c->hname_len, at, k);
    c->hname_len += k;
    c->hname[c->hname_len] = 0;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
    srv_conn *c = p->data;
    if (header_budget(c, len)) return HPE_USER;
    size_t k = len < sizeof c->hval - 1 - c->hval_len ? len : sizeof c->hval - 1 - c->hval_len;
    memcpy(c->hval + c->hval_len, at, k);
    c->hval_len += k;
    c->hval[c->hval_len] = 0;
    return 0;
}

static int on_header_value_complete(llhttp_t *p) {
    srv_conn *c = p->data;
    if (!strcasecmp(c->hname, "content-type"))
        snprintf(c->ctype, sizeof c->ctype, "%.*s", (int)sizeof c->ctype - 1, c->hval);
    else if (!strcasecmp(c->hname, "authorization")) snprintf(c->auth, sizeof c->auth, "%s", c->hval);
    c->hname_len = c->hval_len = 0;
    c->hname[0] = c->hval[0] = 0;
    return 0;
}

static int on_headers_complete(llhttp_t *p) {
    srv_conn *c = p->data;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->srv->lim.max_body) {
        c->parse_error = 413;
        return HPE_USER;
    }
    return 0;
}

/* A chunked body declares each chunk's size before its bytes: refuse as soon
 * as the declared size would pass the limit, as for Content-Length, rather
 * than wait (for the request timeout) for bytes that must be refused. */
static int on_chunk_header(llhttp_t *p) {
    srv_conn *c = p->data;
    if (p->content_length > c->srv->lim.max_body - c->body.len) {
        c->parse_error = 413;
        return HPE_USER;
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
    srv_conn *c = p->data;
    if (c->body.len + len > c->srv->lim.max_body) { /* chunked bodies have no length up front */
        c->parse_error = 413;
        return HPE_USER;
    }
    return pv_buf_add(&c->body, at, len) ? HPE_USER : 0;
}

static int on_message_complete(llhttp_t *p) {
    srv_conn *c = p->data;
    c->in_message = 0;
    c->keep_alive = llhttp_should_keep_alive(p);
    return HPE_PAUSED; /* route outside the parser; see conn_process */
}

static void parse_failed(srv_conn *c) {
    api_error e;
    int st = c->parse_error ? c->parse_error : 400;
    c->parse_error = st;
    c->busy = 1;
    if (!c->t_start) c->t_start = pv_now();
    if (st == 413)
        api_err_set(&e, 413, NULL, "request_too_large", "the request body exceeds %zu bytes",
                    c->srv->lim.max_body);
    else if (st == 414) api_err_set(&e, 414, NULL, "uri_too_long", "the URL exceeds %d bytes", MAX_URL);
    else if (st == 431)
        api_err_set(&e, 431, NULL, "headers_too_large", "the request headers exceed %d bytes",
                    MAX_HEADER_BYTES);
    else if (st == 408) api_err_set(&e, 408, NULL, "request_timeout", "the request did not arrive in time");
    else
        api_err_set(&e, 400, NULL, "bad_http", "malformed HTTP request: %s",
                    llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser) : "?");
    srv_conn_reply_error(c, &e, NULL);
}

/* Parses what is pending while no request is being handled; routes each
 * complete request. */
static void conn_process(srv_conn *c) {
    c->in_process = 1;
    while (!c->closing && !c->busy && !c->done && c->pend.len) {
        pv_buf data = c->pend;
        c->pend = (pv_buf){0};
        llhttp_errno_t rc = llhttp_execute(&c->parser, data.p, data.len);
        if (rc == HPE_PAUSED) {
            const char *pos = llhttp_get_error_pos(&c->parser);
            size_t used = pos ? (size_t)(pos - data.p) : data.len;
            if (used < data.len) pv_buf_add(&c->pend, data.p + used, data.len - used);
            pv_buf_free(&data);
            c->busy = 1;
            c->srv->hooks.request(c->srv->hooks.arg, c);
        } else if (rc != HPE_OK) {
            pv_buf_free(&data);
            parse_failed(c);
        } else {
            pv_buf_free(&data);
        }
    }
    c->in_process = 0;
    if (c->closing || c->busy || c->done) return;
    if (c->eof) {
        srv_conn_close(c);
        return;
    }
    /* The request timeout counts from the request's first byte: re-arming
     * it in full on every read would let a client that drips a byte at a
     * time (slowloris) hold the connection forever. */
    double t = c->srv->lim.idle_timeout;
    if (c->in_message) {
        t = c->srv->lim.request_timeout - (pv_now() - c->t_start);
        if (t < 0) t = 0;
    }
    uv_timer_start(&c->timer, conn_timer_cb, (uint64_t)(t * 1000), 0);
}

static void conn_timer_cb(uv_timer_t *t) {
    srv_conn *c = t->data;
    if (c->busy || c->closing) return;
    if (c->in_message) {
        c->parse_error = 408;
        parse_failed(c);
    } else {
        srv_conn_close(c); /* idle keep-alive connection */
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
    srv_conn *c = st->data;
    if (n < 0) {
        free(buf->base);
        /* EOF or error: a client that is gone cancels what it asked for. A
         * pipelined client that half-closes after its requests still gets
         * the responses already parsed, which is all HTTP/1.1 promises. */
        if (n == UV_EOF && !c->busy && c->pend.len) {
            c->eof = 1;
            conn_process(c);
        } else {
            srv_conn_close(c);
        }
        return;
    }
    if (n > 0) {
        if (c->pend.len + (size_t)n > MAX_PEND + c->srv->lim.max_body) {
            free(buf->base);
            srv_conn_close(c);
            return;
        }
        pv_buf_add(&c->pend, buf->base, (size_t)n);
    }
    free(buf->base);
    if (!c->busy) conn_process(c);
}

static void on_connection(uv_stream_t *listener, int status) {
    srv_http *s = listener->data;
    if (status < 0) return;
    srv_conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles_open = 2;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
    c->parser.data = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) || s->n_conns > s->lim.max_conns ||
        s->draining) {
        srv_conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_start(&c->timer, conn_timer_cb, (uint64_t)(s->lim.idle_timeout * 1000), 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void http_settings(llhttp_settings_t *st) {
    llhttp_settings_init(st);
    st->on_message_begin = on_message_begin;
    st->on_url = on_url;
    st->on_header_field = on_header_field;
    st->on_header_value = on_header_value;
    st->on_header_value_complete = on_header_value_complete;
    st->on_headers_complete = on_headers_complete;
    st->on_body = on_body;
    st->on_chunk_header = on_chunk_header;
    st->on_message_complete = on_message_complete;
}

srv_http *srv_http_new(uv_loop_t *loop, const srv_http_limits *lim, const srv_http_hooks *hooks) {
    srv_http *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->loop = loop;
    h->lim = *lim;
    h->hooks = *hooks;
    http_settings(&h->settings);
    uv_tcp_init(loop, &h->listener);
    h->listener.data = h;
    h->listening = 1; /* the handle is open: stop_listening closes it */
    return h;
}

void srv_http_free(srv_http *h) { free(h); }

int srv_http_listen(srv_http *h, const struct sockaddr *addr) {
    int rc = uv_tcp_bind(&h->listener, addr, 0);
    return rc ? rc : uv_listen((uv_stream_t *)&h->listener, 511, on_connection);
}

int srv_http_port(srv_http *h) {
    struct sockaddr_storage a;
    int len = sizeof a;
    if (uv_tcp_getsockname(&h->listener, (struct sockaddr *)&a, &len)) return 0;
    return a.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&a)->sin6_port)
                                   : ntohs(((struct sockaddr_in *)&a)->sin_port);
}

static void on_listener_closed(uv_handle_t *h) { (void)h; }

void srv_http_stop_listening(srv_http *h) {
    if (h->listening) uv_close((uv_handle_t *)&h->listener, on_listener_closed);
    h->listening = 0;
}

void srv_http_set_draining(srv_http *h) { h->draining = 1; }

void srv_http_close_idle(srv_http *s) {
    srv_conn *c = s->conns;
    while (c) {
        srv_conn *next = c->next;
        if (!c->busy) srv_conn_close(c);
        c = next;
    }
}

void srv_http_close_all(srv_http *s) {
    while (s->conns) srv_conn_close(s->conns);
}

int srv_http_busy_count(srv_http *s) {
    int n = 0;
    for (srv_conn *c = s->conns; c; c = c->next) n += c->busy;
    return n;
}

int srv_http_conn_count(srv_http *s) { return s->n_conns; }

void srv_conn_watch(srv_conn *c, void (*gone)(void *arg), void *arg) {
    c->gone = gone;
    c->gone_arg = arg;
}
