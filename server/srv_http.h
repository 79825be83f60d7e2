/* srv_http: HTTP/1.1 connections — libuv TCP + llhttp, keep-alive,
 * pipelining, limits, timeouts, and the response writers. It knows nothing
 * of routes or the engine: every complete request goes to hooks.request.
 *
 * Threads: the loop thread only. Lifetime: a connection is freed in its
 * handles' close callbacks; srv_conn_close is the one close path. A
 * srv_conn pointer is valid from hooks.request until the response ends or
 * the watch callback (srv_conn_watch) says the connection is gone. */
#ifndef PIVOT_SRV_HTTP_H
#define PIVOT_SRV_HTTP_H

#include <stddef.h>
#include <uv.h>

#include "api_err.h"

typedef struct srv_http srv_http;
typedef struct srv_conn srv_conn;

typedef struct {
    size_t max_body;
    int max_conns;
    double idle_timeout, request_timeout; /* seconds */
} srv_http_limits;

typedef struct {
    /* A complete request: answer it with exactly one of srv_conn_reply,
     * srv_conn_reply_error or stream_begin .. stream_end, now or later. */
    void (*request)(void *arg, srv_conn *c);
    /* A response ended or a connection was freed: drain may be over. */
    void (*changed)(void *arg);
    void *arg;
} srv_http_hooks;

/* limits and hooks are copied. NULL when out of memory. */
srv_http *srv_http_new(uv_loop_t *loop, const srv_http_limits *lim, const srv_http_hooks *hooks);
/* After the loop has run every close callback. */
void srv_http_free(srv_http *h);
/* 0 or a libuv error code. */
int srv_http_listen(srv_http *h, const struct sockaddr *addr);
int srv_http_port(srv_http *h); /* the bound port (0 given: the one the OS chose) */
void srv_http_stop_listening(srv_http *h);
/* From now on responses close their connection and new ones are refused. */
void srv_http_set_draining(srv_http *h);
void srv_http_close_idle(srv_http *h);
void srv_http_close_all(srv_http *h);
int srv_http_busy_count(srv_http *h); /* connections with a request in hand */
int srv_http_conn_count(srv_http *h);

/* Request accessors (valid while the request is being handled). */
const char *srv_conn_url(srv_conn *c);
int srv_conn_method(srv_conn *c); /* llhttp_method_t */
const char *srv_conn_body(srv_conn *c, size_t *len);
const char *srv_conn_header(srv_conn *c, const char *name); /* content-type, authorization */
/* gone(arg) is called once if the connection closes before the current
 * response ends (the client went away); the watch ends with the response. */
void srv_conn_watch(srv_conn *c, void (*gone)(void *arg), void *arg);

/* Responses. extra_headers: "Name: value\r\n" lines or NULL. */
void srv_conn_reply(srv_conn *c, int status, const char *ctype, const char *body, size_t len,
                    const char *extra_headers);
/* A JSON reply of o, which it takes (cJSON_Delete); NULL or out of memory:
 * a 500 error reply. */
struct cJSON;
void srv_conn_reply_json(srv_conn *c, int status, struct cJSON *o);
/* The single place error replies are made (OpenAI envelope). */
void srv_conn_reply_error(srv_conn *c, const api_error *e, const char *extra_headers);
void srv_conn_stream_begin(srv_conn *c);
void srv_conn_stream_write(srv_conn *c, const char *data, size_t len);
void srv_conn_stream_end(srv_conn *c);
/* What the per-request log line reports besides status and duration:
 * tokens, time to first token, KV bytes held, and memory pressure (times
 * preempted, elastic compressions). */
void srv_conn_log_info(srv_conn *c, const char *id, int tok_in, int tok_out, double ttft,
                       size_t kv_bytes, int preempted, int compressed);

#endif
