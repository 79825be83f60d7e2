/* srv_server: the loop thread's set-up, the engine's wake-up, signals, drain
 * and shutdown. The one file that knows every other server part; none of
 * them calls back into it except through the hooks it gives them. */
#include "srv_server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "completions.h"
#include "eng.h"
#include "kvview.h"
#include "metrics.h"
#include "prompt.h"
#include "router.h"
#include "srv_http.h"
#include "srv_stats.h"

struct srv_server {
    const srv_config *cfg;
    uv_loop_t *loop;
    uv_async_t wake;
    uv_signal_t sig_term, sig_int;
    uv_timer_t drain_timer;
    srv_http *http;
    eng_engine *eng;
    srv_metrics *met;
    srv_cmpl *cmpl;
    srv_kvview *kv;
    srv_stats *stats;
    srv_router *router;
    int draining, closed, announced, failed;
    char model_name[128];
};

static void on_handle_closed(uv_handle_t *h) { (void)h; }

/* Ends the loop once draining is over: no running work, no busy
 * connection. Every handle is closed here, so uv_run returns. */
static void maybe_finish(srv_server *s) {
    if (!s->draining || s->closed) return;
    if ((s->cmpl && srv_cmpl_jobs(s->cmpl) > 0) || srv_http_busy_count(s->http) > 0) return;
    s->closed = 1;
    srv_http_close_all(s->http);
    srv_http_stop_listening(s->http);
    uv_close((uv_handle_t *)&s->wake, on_handle_closed);
    uv_close((uv_handle_t *)&s->sig_term, on_handle_closed);
    uv_close((uv_handle_t *)&s->sig_int, on_handle_closed);
    uv_close((uv_handle_t *)&s->drain_timer, on_handle_closed);
    srv_kvview_close(s->kv);
    srv_stats_close(s->stats);
}

/* No new work from now on: the listener closes, idle connections go. */
static void start_draining(srv_server *s) {
    s->draining = 1;
    srv_http_set_draining(s->http);
    if (s->router) srv_router_set_draining(s->router);
    if (s->kv) srv_kvview_drain(s->kv); /* KV map streams would never end by themselves */
    srv_http_stop_listening(s->http);
    srv_http_close_idle(s->http);
}

static void on_drain_timeout(uv_timer_t *t) {
    srv_server *s = t->data;
    fprintf(stderr, "pivot serve: drain timeout: cancelling %d requests\n", srv_cmpl_jobs(s->cmpl));
    eng_cancel_all(s->eng);
}

static void on_signal(uv_signal_t *h, int signum) {
    srv_server *s = h->data;
    if (s->draining) return;
    fprintf(stderr, "pivot serve: %s: draining (up to %.0f s)\n", signum == SIGTERM ? "SIGTERM" : "SIGINT",
            s->cfg->drain_timeout);
    start_draining(s);
    uv_timer_start(&s->drain_timer, on_drain_timeout, (uint64_t)(s->cfg->drain_timeout * 1000), 0);
    maybe_finish(s);
}

static void on_wake(uv_async_t *a) {
    srv_server *s = a->data;
    if (!s->announced && eng_state(s->eng) != ENG_LOADING) {
        s->announced = 1;
        if (eng_state(s->eng) == ENG_READY) {
            fprintf(stderr, "pivot serve: model %s ready on http://%s:%d\n", s->model_name,
                    s->cfg->host, s->cfg->port);
            srv_template_warn(eng_model(s->eng), "pivot serve");
        } else { /* nothing to serve: exit 1 so a supervisor sees it */
            fprintf(stderr, "pivot serve: %s\n", eng_error(s->eng));
            s->failed = 1;
            start_draining(s);
        }
    }
    srv_cmpl_on_output(s->cmpl);
    maybe_finish(s);
}

/* ---- hooks: the HTTP side and the engine call in through these ---- */

static void http_request(void *arg, srv_conn *c) { srv_route(((srv_server *)arg)->router, c); }
static void http_changed(void *arg) { maybe_finish(arg); }
static void eng_wake(void *arg) { uv_async_send(&((srv_server *)arg)->wake); } /* any thread */

static void eng_request_done(void *arg, const eng_request_stats *st) {
    srv_metrics_request(((srv_server *)arg)->met, st->prompt_tokens, st->gen_tokens, st->ttft,
                        st->e2e, st->outcome);
}

static void eng_publish(void *arg, const eng_gauges *g) {
    srv_metrics_set_gauges(((srv_server *)arg)->met, g);
}

static void model_name_from_path(const char *path, char *buf, size_t len) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 5 && !strcmp(b + n - 5, ".gguf")) n -= 5;
    snprintf(buf, len, "%.*s", (int)n, b);
}

static int listen_on(srv_server *s) {
    struct sockaddr_storage addr;
    const srv_config *c = s->cfg;
    if (uv_ip4_addr(c->host, c->port, (struct sockaddr_in *)&addr) &&
        uv_ip6_addr(c->host, c->port, (struct sockaddr_in6 *)&addr)) {
        fprintf(stderr, "pivot serve: --host '%s' is not an IP address\n", c->host);
        return 2;
    }
    int rc = srv_http_listen(s->http, (const struct sockaddr *)&addr);
    if (rc) {
        fprintf(stderr, "pivot serve: cannot listen on %s:%d: %s\n", c->host, c->port,
                uv_strerror(rc));
        return 1;
    }
    return 0;
}

static int start_engine(srv_server *s) {
    const srv_config *c = s->cfg;
    eng_config ec = {.model_path = c->model_path, .kv_policy = c->kv_policy, .device = c->device,
                     .kv_memory = c->kv_memory, .max_seqs = c->max_seqs,
                     .kv_elastic = c->kv_elastic, .prefix_cache_off = !c->prefix_cache,
                     .max_batch_tokens = c->max_batch_tokens, .prefill_chunk = c->prefill_chunk,
                     .max_queue = c->max_queue, .ctx = c->ctx, .kv_snapshots = 1,
                     .attn_split = c->attn_split, .rank_heads = c->rank_heads,
                     .threads = c->threads > 0 ? c->threads : (int)uv_available_parallelism()};
    eng_hooks h = {.wake = eng_wake, .request_done = eng_request_done, .gauges = eng_publish,
                   .arg = s};
    if (eng_start(&ec, &h, &s->eng)) return 1;
    srv_router_deps d = {.cfg = c, .eng = s->eng, .met = s->met, .model_name = s->model_name};
    if (!(d.cmpl = s->cmpl = srv_cmpl_new(s->eng, s->model_name)) ||
        !(d.kv = s->kv = srv_kvview_new(s->loop, s->eng, s->cmpl, c->webui_show_text)) ||
        !(d.stats = s->stats = srv_stats_new(s->loop, s->met, s->cmpl)) ||
        !(s->router = srv_router_new(&d)))
        return 1;
    return 0;
}

/* Everything up to a running engine; on failure the handles made so far
 * are left for close_server. Returns an exit status. */
static int open_server(srv_server *s, const srv_config *cfg, uv_loop_t *loop) {
    s->cfg = cfg;
    s->loop = loop;
    model_name_from_path(cfg->model_path, s->model_name, sizeof s->model_name);
    srv_http_limits lim = {.max_body = cfg->max_body, .max_conns = cfg->max_conns,
                           .idle_timeout = cfg->idle_timeout,
                           .request_timeout = cfg->request_timeout};
    srv_http_hooks hh = {.request = http_request, .changed = http_changed, .arg = s};
    if (!(s->met = srv_metrics_new()) || !(s->http = srv_http_new(loop, &lim, &hh))) return 1;
    uv_async_init(loop, &s->wake, on_wake);
    uv_signal_init(loop, &s->sig_term);
    uv_signal_init(loop, &s->sig_int);
    uv_timer_init(loop, &s->drain_timer);
    s->wake.data = s->sig_term.data = s->sig_int.data = s->drain_timer.data = s;
    int rc = listen_on(s);
    if (!rc && start_engine(s)) {
        fprintf(stderr, "pivot serve: cannot start the decoder thread\n");
        rc = 1;
    }
    return rc;
}

/* After uv_run has returned: every handle is closed. */
static void close_server(srv_server *s) {
    eng_stop(s->eng);
    srv_router_free(s->router);
    srv_kvview_free(s->kv);
    srv_stats_free(s->stats);
    srv_cmpl_free(s->cmpl);
    srv_http_free(s->http);
    srv_metrics_free(s->met);
}

int srv_run(const srv_config *cfg) {
    srv_server s = {0};
    signal(SIGPIPE, SIG_IGN); /* a peer that vanishes must not kill the server */
    uv_loop_t loop;
    uv_loop_init(&loop);
    int rc = open_server(&s, cfg, &loop);
    if (rc && !s.http) {
        srv_metrics_free(s.met);
        uv_loop_close(&loop);
        return rc;
    }
    if (rc) {
        start_draining(&s);
        maybe_finish(&s);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        close_server(&s);
        return rc;
    }
    fprintf(stderr, "pivot serve: listening on http://%s:%d, loading %s\n", cfg->host, cfg->port,
            cfg->model_path);
    uv_signal_start(&s.sig_term, on_signal, SIGTERM);
    uv_signal_start(&s.sig_int, on_signal, SIGINT);
    uv_run(&loop, UV_RUN_DEFAULT);
    close_server(&s);
    int lrc = uv_loop_close(&loop);
    fprintf(stderr, "pivot serve: stopped%s\n", lrc ? " (loop not closed cleanly)" : "");
    return lrc || s.failed ? 1 : 0;
}

/* ---- for harnesses that drive the loop themselves ---- */

int srv_server_open(const srv_config *cfg, uv_loop_t *loop, srv_server **out) {
    *out = NULL;
    srv_server *s = calloc(1, sizeof *s);
    if (!s) return 1;
    int rc = open_server(s, cfg, loop);
    if (rc) return rc; /* the handles stay on the loop; a harness exits now */
    *out = s;
    return 0;
}

int srv_server_port(srv_server *s) { return srv_http_port(s->http); }

int srv_server_ready(srv_server *s) {
    int st = eng_state(s->eng);
    return st == ENG_READY ? 1 : st == ENG_LOADING ? 0 : -1;
}

const char *srv_server_error(srv_server *s) { return eng_error(s->eng); }

void srv_server_activity(srv_server *s, srv_activity *a) {
    eng_gauges g;
    srv_metrics_get_gauges(s->met, &g);
    *a = (srv_activity){.conns = srv_http_conn_count(s->http),
                        .busy_conns = srv_http_busy_count(s->http),
                        .jobs = srv_cmpl_jobs(s->cmpl), .running = g.running,
                        .waiting = g.waiting, .kv_reserved = g.kv_reserved};
}
