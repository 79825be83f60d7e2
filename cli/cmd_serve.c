/* pivot serve: options (flags and PIVOT_* environment variables, the flag
 * wins), the loop thread's set-up, signals, drain and shutdown. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "srv.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: pivot serve [options]\n"
            "\n"
            "OpenAI-compatible HTTP server with continuous batching. Every option can also be\n"
            "set as an environment variable PIVOT_<NAME> (e.g. PIVOT_PORT=9000); a flag wins.\n"
            "\n"
            "  --model PATH           GGUF model (default: $PIVOT_MODEL or the SmolLM2 default)\n"
            "  --host ADDR            bind address (default 127.0.0.1)\n"
            "  --port N               TCP port (default 8080)\n"
            "  --api-key KEY          require 'Authorization: Bearer KEY' on /v1/* and\n"
            "                         /tokenize, /detokenize (health and metrics stay open)\n"
            "  --kv-policy SPEC       KV cache policy, PRESET[,knob=value...] (default full)\n"
            "  --kv-memory BYTES      KV memory: requests are admitted by it and the page pool\n"
            "                         is limited to it (plus one step's headroom) (default\n"
            "                         1073741824; K/M/G suffixes)\n"
            "  --device D             auto (CUDA when a GPU is usable and the policy is full),\n"
            "                         cpu, cuda (plain FP16 cache only: --kv-policy full)\n"
            "  --max-batch N          sequences decoded together (default 32)\n"
            "  --batch-tokens N       tokens per forward step (default 512)\n"
            "  --prefill-chunk N      prompt tokens one sequence adds per step (default 256)\n"
            "  --max-queue N          waiting requests before 429 (default 64)\n"
            "  --threads N            CPU threads (default: all cores)\n"
            "  --ctx N                tokens per sequence (default: the model's training context)\n"
            "  --drain-timeout S      on SIGTERM/SIGINT, seconds to finish running requests\n"
            "                         (default 30)\n"
            "  --max-body BYTES       request body limit (default 4M)\n"
            "  --max-connections N    open connections (default 1024)\n"
            "  --idle-timeout S       keep-alive idle timeout (default 60)\n"
            "  --request-timeout S    time for headers + body to arrive (default 30)\n"
            "  -h, --help             this help\n");
}

/* Fills c from the flags and the PIVOT_<NAME> environment variables (the
 * flag wins) and checks what can be checked before loading anything. */
static int parse(int argc, char **argv, srv_config *c) {
    *c = (srv_config){.host = "127.0.0.1", .port = 8080, .kv_policy = "full",
                      .kv_memory = (size_t)1 << 30, .max_seqs = 32, .max_batch_tokens = 512,
                      .prefill_chunk = 256, .max_queue = 64, .drain_timeout = 30,
                      .max_body = 4u << 20, .max_conns = 1024, .idle_timeout = 60,
                      .request_timeout = 30};
    int dev = -1; /* not given: the engine's auto */
    const cli_opt opts[] = {
        CLI_OPT_MODEL(&c->model_path, .env = "PIVOT_MODEL"),
        {.name = "--host", .kind = CLI_STR, .dst = &c->host, .env = "PIVOT_HOST"},
        {.name = "--port", .kind = CLI_INT, .dst = &c->port,
         .lo = 0, .hi = 65535, .env = "PIVOT_PORT"},
        {.name = "--api-key", .kind = CLI_STR, .dst = &c->api_key, .env = "PIVOT_API_KEY"},
        CLI_OPT_KV_POLICY(&c->kv_policy, .env = "PIVOT_KV_POLICY"),
        {.name = "--kv-memory", .kind = CLI_BYTES, .dst = &c->kv_memory,
         .lo = 1, .env = "PIVOT_KV_MEMORY"},
        CLI_OPT_DEVICE(&dev, .env = "PIVOT_DEVICE"),
        {.name = "--max-batch", .kind = CLI_INT, .dst = &c->max_seqs, .lo = 1, .hi = 1024,
         .env = "PIVOT_MAX_BATCH"},
        {.name = "--batch-tokens", .kind = CLI_INT, .dst = &c->max_batch_tokens,
         .lo = 1, .hi = 65536,
         .env = "PIVOT_BATCH_TOKENS"},
        {.name = "--prefill-chunk", .kind = CLI_INT, .dst = &c->prefill_chunk, .lo = 1, .hi = 65536,
         .env = "PIVOT_PREFILL_CHUNK"},
        {.name = "--max-queue", .kind = CLI_INT, .dst = &c->max_queue, .lo = 0, .hi = 1 << 20,
         .env = "PIVOT_MAX_QUEUE"},
        CLI_OPT_THREADS(&c->threads, .env = "PIVOT_THREADS"),
        CLI_OPT_CTX(&c->ctx, .env = "PIVOT_CTX"),
        {.name = "--drain-timeout", .kind = CLI_DOUBLE, .dst = &c->drain_timeout,
         .lo = 0, .hi = 86400,
         .env = "PIVOT_DRAIN_TIMEOUT"},
        {.name = "--max-body", .kind = CLI_BYTES, .dst = &c->max_body,
         .lo = 1, .env = "PIVOT_MAX_BODY"},
        {.name = "--max-connections", .kind = CLI_INT, .dst = &c->max_conns, .lo = 1, .hi = 1 << 20,
         .env = "PIVOT_MAX_CONNECTIONS"},
        {.name = "--idle-timeout", .kind = CLI_DOUBLE, .dst = &c->idle_timeout,
         .lo = 0.001, .hi = 86400,
         .env = "PIVOT_IDLE_TIMEOUT"},
        {.name = "--request-timeout", .kind = CLI_DOUBLE, .dst = &c->request_timeout, .lo = 0.001,
         .hi = 86400, .env = "PIVOT_REQUEST_TIMEOUT"},
        {.name = NULL},
    };
    const cli_opt *const tables[] = {opts, NULL};
    int rc = cli_parse("serve", argc, argv, tables);
    if (rc == CLI_HELP) { /* here, so that cmd_serve below stays as it was */
        usage(stdout);
        exit(0);
    }
    if (rc) return rc;
    kv_policy kp;
    if ((rc = cli_kv_policy("serve", c->kv_policy, NULL, &kp))) return rc;
    if (dev >= 0) c->device = llm_device_name((llm_device)dev);
    /* Checked before loading anything: the GPU has only the plain FP16
     * cache, so a compressed default policy (and per-request ones) cannot
     * run there. */
    if (dev == LLM_DEVICE_CUDA && !(kp.select == KV_SELECT_NONE && kp.hi_bits == 16)) {
        fprintf(stderr,
                "pivot serve: --device cuda supports only the plain FP16 KV cache; --kv-policy "
                "'%s' needs the CPU (use --device cpu, or --kv-policy full)\n",
                c->kv_policy);
        return 2;
    }
    if (c->api_key && !*c->api_key) c->api_key = NULL;
    return 0;
}

static void on_handle_closed(uv_handle_t *h) { (void)h; }

/* Ends the loop once draining is over: no running work, no busy
 * connection. Every handle is closed here, so uv_run returns. */
void srv_maybe_finish(srv_server *s) {
    if (!s->draining || s->closed) return;
    if (s->n_jobs > 0 || srv_conn_busy_count(s) > 0) return;
    s->closed = 1;
    srv_close_all_conns(s);
    if (s->listening) uv_close((uv_handle_t *)&s->listener, on_handle_closed);
    s->listening = 0;
    uv_close((uv_handle_t *)&s->wake, on_handle_closed);
    uv_close((uv_handle_t *)&s->sig_term, on_handle_closed);
    uv_close((uv_handle_t *)&s->sig_int, on_handle_closed);
    uv_close((uv_handle_t *)&s->drain_timer, on_handle_closed);
}

static void on_drain_timeout(uv_timer_t *t) {
    srv_server *s = t->data;
    fprintf(stderr, "pivot serve: drain timeout: cancelling %d requests\n", s->n_jobs);
    srv_engine_cancel_all(s->eng);
}

static void on_signal(uv_signal_t *h, int signum) {
    srv_server *s = h->data;
    if (s->draining) return;
    fprintf(stderr, "pivot serve: %s: draining (up to %.0f s)\n", signum == SIGTERM ? "SIGTERM" : "SIGINT",
            s->cfg.drain_timeout);
    s->draining = 1;
    if (s->listening) uv_close((uv_handle_t *)&s->listener, on_handle_closed);
    s->listening = 0;
    srv_close_idle_conns(s);
    uv_timer_start(&s->drain_timer, on_drain_timeout, (uint64_t)(s->cfg.drain_timeout * 1000), 0);
    srv_maybe_finish(s);
}

static void on_wake(uv_async_t *a) {
    srv_server *s = a->data;
    if (!s->announced && srv_engine_state(s->eng) != SRV_LOADING) {
        s->announced = 1;
        if (srv_engine_state(s->eng) == SRV_READY) {
            fprintf(stderr, "pivot serve: model %s ready on http://%s:%d\n", s->model_name,
                    s->cfg.host, s->cfg.port);
        } else { /* nothing to serve: exit 1 so a supervisor sees it */
            fprintf(stderr, "pivot serve: %s\n", srv_engine_error(s->eng));
            s->failed = 1;
            s->draining = 1;
            if (s->listening) uv_close((uv_handle_t *)&s->listener, on_handle_closed);
            s->listening = 0;
            srv_close_idle_conns(s);
        }
    }
    srv_on_engine_output(s);
}

static void model_name_from_path(const char *path, char *buf, size_t len) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 5 && !strcmp(b + n - 5, ".gguf")) n -= 5;
    snprintf(buf, len, "%.*s", (int)n, b);
}

int cmd_serve(int argc, char **argv) {
    srv_server s = {0};
    int rc = parse(argc, argv, &s.cfg);
    if (rc) return rc;
    char mbuf[4096];
    if (!s.cfg.model_path) s.cfg.model_path = cli_default_model(mbuf, sizeof mbuf);
    model_name_from_path(s.cfg.model_path, s.model_name, sizeof s.model_name);
    signal(SIGPIPE, SIG_IGN); /* a peer that vanishes must not kill the server */
    uv_loop_t loop;
    uv_loop_init(&loop);
    s.loop = &loop;
    srv_http_settings(&s.settings);
    if (!(s.met = srv_metrics_new())) return 1;
    uv_async_init(&loop, &s.wake, on_wake);
    uv_signal_init(&loop, &s.sig_term);
    uv_signal_init(&loop, &s.sig_int);
    uv_timer_init(&loop, &s.drain_timer);
    s.wake.data = s.sig_term.data = s.sig_int.data = s.drain_timer.data = &s;
    uv_tcp_init(&loop, &s.listener);
    s.listener.data = &s;
    s.listening = 1;
    struct sockaddr_storage addr;
    if (uv_ip4_addr(s.cfg.host, s.cfg.port, (struct sockaddr_in *)&addr) &&
        uv_ip6_addr(s.cfg.host, s.cfg.port, (struct sockaddr_in6 *)&addr)) {
        fprintf(stderr, "pivot serve: --host '%s' is not an IP address\n", s.cfg.host);
        rc = 2;
    } else if ((rc = uv_tcp_bind(&s.listener, (const struct sockaddr *)&addr, 0)) ||
               (rc = uv_listen((uv_stream_t *)&s.listener, 511, srv_on_connection))) {
        fprintf(stderr, "pivot serve: cannot listen on %s:%d: %s\n", s.cfg.host, s.cfg.port,
                uv_strerror(rc));
        rc = 1;
    }
    if (!rc && srv_engine_start(&s.cfg, s.met, &s.wake, &s.eng)) {
        fprintf(stderr, "pivot serve: cannot start the decoder thread\n");
        rc = 1;
    }
    if (rc) {
        s.draining = 1;
        srv_maybe_finish(&s);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        srv_metrics_free(s.met);
        return rc;
    }
    fprintf(stderr, "pivot serve: listening on http://%s:%d, loading %s\n", s.cfg.host, s.cfg.port,
            s.cfg.model_path);
    uv_signal_start(&s.sig_term, on_signal, SIGTERM);
    uv_signal_start(&s.sig_int, on_signal, SIGINT);
    uv_run(&loop, UV_RUN_DEFAULT);
    srv_engine_stop(s.eng);
    int lrc = uv_loop_close(&loop);
    srv_metrics_free(s.met);
    fprintf(stderr, "pivot serve: stopped%s\n", lrc ? " (loop not closed cleanly)" : "");
    return lrc || s.failed ? 1 : 0;
}
