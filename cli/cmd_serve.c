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

static int parse_bytes(const char *s, size_t *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return -1;
    double mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1024, end++;
    else if (*end == 'M' || *end == 'm') mul = 1024.0 * 1024, end++;
    else if (*end == 'G' || *end == 'g') mul = 1024.0 * 1024 * 1024, end++;
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (*end) return -1;
    *out = (size_t)(v * mul);
    return 0;
}

typedef struct {
    const char *flag, *env;
    char kind; /* s string, i int, b bytes, f seconds */
    void *dst;
    double lo, hi;
} opt;

static int set_opt(const opt *o, const char *v, const char *from) {
    long l;
    double d;
    size_t b;
    switch (o->kind) {
    case 's': *(const char **)o->dst = v; return 0;
    case 'i':
        if (cli_parse_int(v, (long)o->lo, (long)o->hi, &l)) break;
        *(int *)o->dst = (int)l;
        return 0;
    case 'f':
        if (cli_parse_float(v, o->lo, o->hi, &d)) break;
        *(double *)o->dst = d;
        return 0;
    case 'b':
        if (parse_bytes(v, &b) || b < (size_t)o->lo) break;
        *(size_t *)o->dst = b;
        return 0;
    }
    fprintf(stderr, "pivot serve: %s '%s' is not valid (%s)\n", from, v,
            o->kind == 'b' ? "bytes, e.g. 2G" : o->kind == 'i' ? "an integer in range" : "a number in range");
    return 2;
}

static int parse(int argc, char **argv, srv_config *c) {
    *c = (srv_config){.host = "127.0.0.1", .port = 8080, .kv_policy = "full",
                      .kv_memory = (size_t)1 << 30, .max_seqs = 32, .max_batch_tokens = 512,
                      .prefill_chunk = 256, .max_queue = 64, .drain_timeout = 30,
                      .max_body = 4u << 20, .max_conns = 1024, .idle_timeout = 60,
                      .request_timeout = 30};
    const opt opts[] = {
        {"--model", "PIVOT_MODEL", 's', &c->model_path, 0, 0},
        {"--host", "PIVOT_HOST", 's', &c->host, 0, 0},
        {"--port", "PIVOT_PORT", 'i', &c->port, 0, 65535},
        {"--api-key", "PIVOT_API_KEY", 's', &c->api_key, 0, 0},
        {"--kv-policy", "PIVOT_KV_POLICY", 's', &c->kv_policy, 0, 0},
        {"--kv-memory", "PIVOT_KV_MEMORY", 'b', &c->kv_memory, 1, 0},
        {"--device", "PIVOT_DEVICE", 's', &c->device, 0, 0},
        {"--max-batch", "PIVOT_MAX_BATCH", 'i', &c->max_seqs, 1, 1024},
        {"--batch-tokens", "PIVOT_BATCH_TOKENS", 'i', &c->max_batch_tokens, 1, 65536},
        {"--prefill-chunk", "PIVOT_PREFILL_CHUNK", 'i', &c->prefill_chunk, 1, 65536},
        {"--max-queue", "PIVOT_MAX_QUEUE", 'i', &c->max_queue, 0, 1 << 20},
        {"--threads", "PIVOT_THREADS", 'i', &c->threads, 1, 1024},
        {"--ctx", "PIVOT_CTX", 'i', &c->ctx, 1, 1 << 24},
        {"--drain-timeout", "PIVOT_DRAIN_TIMEOUT", 'f', &c->drain_timeout, 0, 86400},
        {"--max-body", "PIVOT_MAX_BODY", 'b', &c->max_body, 1, 0},
        {"--max-connections", "PIVOT_MAX_CONNECTIONS", 'i', &c->max_conns, 1, 1 << 20},
        {"--idle-timeout", "PIVOT_IDLE_TIMEOUT", 'f', &c->idle_timeout, 0.001, 86400},
        {"--request-timeout", "PIVOT_REQUEST_TIMEOUT", 'f', &c->request_timeout, 0.001, 86400},
    };
    int n_opts = (int)(sizeof opts / sizeof *opts), rc;
    /* environment first, flags override */
    for (int k = 0; k < n_opts; k++) {
        const char *v = getenv(opts[k].env);
        if (v && *v && (rc = set_opt(&opts[k], v, opts[k].env))) return rc;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            exit(0);
        }
        int found = 0, miss = 0;
        for (int k = 0; k < n_opts && !found; k++) {
            const char *v = cli_opt(argc, argv, &i, opts[k].flag, &miss);
            if (miss) {
                fprintf(stderr, "pivot serve: %s needs a value\n", opts[k].flag);
                return 2;
            }
            if (v) {
                found = 1;
                if ((rc = set_opt(&opts[k], v, opts[k].flag))) return rc;
            }
        }
        if (!found) {
            fprintf(stderr, "pivot serve: unknown option '%s' (see pivot serve --help)\n", argv[i]);
            return 2;
        }
    }
    kv_policy kp;
    char err[256] = "";
    if (kv_policy_parse(c->kv_policy, &kp, err, sizeof err) || kv_policy_validate(&kp, err, sizeof err)) {
        fprintf(stderr, "pivot serve: --kv-policy '%s': %s\n", c->kv_policy, err);
        return 2;
    }
    llm_device dev;
    if (c->device && llm_device_parse(c->device, &dev)) {
        fprintf(stderr, "pivot serve: --device expects auto, cpu or cuda, got '%s'\n", c->device);
        return 2;
    }
    /* Checked before loading anything: the GPU has only the plain FP16
     * cache, so a compressed default policy (and per-request ones) cannot
     * run there. */
    if (c->device && dev == LLM_DEVICE_CUDA && !kv_policy_is_plain(&kp)) {
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
