/* metrics: Prometheus counters, gauges and histograms, vLLM's names with the
 * `pivot:` prefix. Written by the decoder thread, read by the loop thread;
 * one mutex, held only to copy numbers. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "pvbuf.h"

#define MAX_BUCKETS 20

typedef struct {
    const char *name, *help;
    int n;
    double le[MAX_BUCKETS];
    unsigned long count[MAX_BUCKETS + 1]; /* per bucket, +Inf last (not cumulative) */
    double sum;
    unsigned long total;
} hist;

struct srv_metrics {
    pthread_mutex_t mu;
    unsigned long prompt_tokens, gen_tokens, req_ok, req_abort, req_error;
    hist ttft, tpot, e2e;
    eng_gauges g;
};

static void hist_init(hist *h, const char *name, const char *help, const double *le, int n) {
    h->name = name;
    h->help = help;
    h->n = n;
    memcpy(h->le, le, sizeof(double) * n);
}

static void hist_add(hist *h, double v) {
    int i = 0;
    while (i < h->n && v > h->le[i]) i++;
    h->count[i]++;
    h->sum += v;
    h->total++;
}

srv_metrics *srv_metrics_new(void) {
    srv_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    pthread_mutex_init(&m->mu, NULL);
    static const double ttft[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                                  0.75, 1.0, 2.5, 5.0, 7.5, 10.0};
    static const double tpot[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
                                  1.0, 2.5};
    static const double e2e[] = {0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
                                 40.0, 50.0, 60.0};
    hist_init(&m->ttft, "time_to_first_token_seconds", "Time from arrival to the first token.",
              ttft, (int)(sizeof ttft / sizeof *ttft));
    hist_init(&m->tpot, "time_per_output_token_seconds",
              "Mean time per output token after the first, per request.", tpot,
              (int)(sizeof tpot / sizeof *tpot));
    hist_init(&m->e2e, "e2e_request_latency_seconds", "Time from arrival to the last token.", e2e,
              (int)(sizeof e2e / sizeof *e2e));
    return m;
}

void srv_metrics_free(srv_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void srv_metrics_request(srv_metrics *m, int prompt_tokens, int gen_tokens, double ttft,
                         double e2e, const char *finish) {
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += prompt_tokens;
    m->gen_tokens += gen_tokens;
    if (!strcmp(finish, "ok")) m->req_ok++;
    else if (!strcmp(finish, "abort")) m->req_abort++;
    else m->req_error++;
    if (gen_tokens > 0) {
        hist_add(&m->ttft, ttft);
        hist_add(&m->e2e, e2e);
        if (gen_tokens > 1) hist_add(&m->tpot, (e2e - ttft) / (gen_tokens - 1));
    }
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_set_gauges(srv_metrics *m, const eng_gauges *g) {
    pthread_mutex_lock(&m->mu);
    m->g = *g;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_get_gauges(srv_metrics *m, eng_gauges *g) {
    pthread_mutex_lock(&m->mu);
    *g = m->g;
    pthread_mutex_unlock(&m->mu);
}

unsigned long srv_metrics_gen_tokens(srv_metrics *m) {
    pthread_mutex_lock(&m->mu);
    unsigned long n = m->gen_tokens;
    pthread_mutex_unlock(&m->mu);
    return n;
}

static void put_hist(pv_buf *b, const hist *h, const char *model) {
    char line[256];
    int n = snprintf(line, sizeof line, "# HELP pivot:%s %s\n# TYPE pivot:%s histogram\n", h->name,
                     h->help, h->name);
    pv_buf_add(b, line, n);
    unsigned long cum = 0;
    for (int i = 0; i <= h->n; i++) {
        cum += h->count[i];
        if (i < h->n)
            n = snprintf(line, sizeof line, "pivot:%s_bucket{model_name=\"%s\",le=\"%g\"} %lu\n",
                         h->name, model, h->le[i], cum);
        else
            n = snprintf(line, sizeof line, "pivot:%s_bucket{model_name=\"%s\",le=\"+Inf\"} %lu\n",
                         h->name, model, cum);
        pv_buf_add(b, line, n);
    }
    n = snprintf(line, sizeof line, "pivot:%s_sum{model_name=\"%s\"} %.6f\npivot:%s_count{model_name=\"%s\"} %lu\n",
                 h->name, model, h->sum, h->name, model, h->total);
    pv_buf_add(b, line, n);
}

static void put_ns(pv_buf *b, const char *ns, const char *type, const char *name,
                   const char *help, const char *model, const char *labels, double v) {
    char line[512];
    int n = snprintf(line, sizeof line, "# HELP %s:%s %s\n# TYPE %s:%s %s\n", ns, name, help, ns,
                     name, type);
    pv_buf_add(b, line, n);
    n = snprintf(line, sizeof line, "%s:%s{model_name=\"%s\"%s} %.17g\n", ns, name, model,
                 labels ? labels : "", v);
    pv_buf_add(b, line, n);
}

static void put(pv_buf *b, const char *type, const char *name, const char *help,
                const char *model, const char *labels, double v) {
    put_ns(b, "pivot", type, name, help, model, labels, v);
}

/* The fraction of the KV memory reserved (pivot: and vllm: the same number). */
static double usage_frac(const eng_gauges *g) {
    return g->kv_capacity ? (double)g->kv_reserved / g->kv_capacity : 0;
}

/* Automatic prefix caching, in Pivot's names. */
static void put_prefix(pv_buf *b, const eng_gauges *g, const char *model) {
    put(b, "counter", "prefix_cache_queries_total",
        "Prompt tokens looked up in the prefix cache (vLLM's meaning: tokens, not requests).",
        model, NULL, (double)g->prefix_queries);
    put(b, "counter", "prefix_cache_hits_total",
        "Prompt tokens found in the prefix cache (their prefill was skipped).", model, NULL,
        (double)g->prefix_hits);
    put(b, "gauge", "prefix_cache_bytes",
        "KV bytes of cached prefix blocks, in use or not (part of kv_pool_used_bytes).", model,
        NULL, (double)g->prefix_bytes);
    put(b, "gauge", "prefix_cache_bytes_in_use",
        "Bytes of cached prefix blocks running requests use (each counted once).", model, NULL,
        (double)g->prefix_bytes_used);
    put(b, "gauge", "prefix_cache_blocks", "Cached prefix blocks (block_size tokens each).", model,
        NULL, (double)g->prefix_blocks);
}

/* The names the Gateway API Inference Extension's endpoint picker (and
 * llm-d's router) read by default: vLLM's. Always on (docs/DEPLOY.md): the
 * values are Pivot's own, listed twice, so no flag has to match a router's
 * configuration, and a scrape costs a few more lines. */
static void put_vllm(pv_buf *b, const eng_gauges *g, const char *model) {
    put_ns(b, "vllm", "gauge", "num_requests_running",
           "Requests running (= pivot:num_requests_running).", model, NULL, g->running);
    put_ns(b, "vllm", "gauge", "num_requests_waiting",
           "Requests waiting (= pivot:num_requests_waiting).", model, NULL, g->waiting);
    put_ns(b, "vllm", "gauge", "kv_cache_usage_perc",
           "KV cache usage, 0-1 (= pivot:kv_cache_usage_perc).", model, NULL, usage_frac(g));
    put_ns(b, "vllm", "counter", "prefix_cache_queries_total",
           "Prompt tokens looked up (= pivot:prefix_cache_queries_total).", model, NULL,
           (double)g->prefix_queries);
    put_ns(b, "vllm", "counter", "prefix_cache_hits_total",
           "Prompt tokens found cached (= pivot:prefix_cache_hits_total).", model, NULL,
           (double)g->prefix_hits);
    char labels[200];
    snprintf(labels, sizeof labels,
             ",block_size=\"%d\",num_gpu_blocks=\"%zu\",enable_prefix_caching=\"%s\"",
             g->block_tokens, g->page_bytes ? g->kv_capacity / g->page_bytes : 0,
             g->prefix_on ? "True" : "False");
    put_ns(b, "vllm", "gauge", "cache_config_info",
           "KV cache configuration (labels; value 1): block_size tokens per block, "
           "num_gpu_blocks = --kv-memory / one FP16 block.",
           model, labels, 1);
}

char *srv_metrics_render(srv_metrics *m, const char *model) {
    srv_metrics c;
    pthread_mutex_lock(&m->mu);
    c = *m;
    pthread_mutex_unlock(&m->mu);
    pv_buf b = {0};
    const eng_gauges *g = &c.g;
    put(&b, "gauge", "num_requests_running", "Requests in the running batch.", model, NULL, g->running);
    put(&b, "gauge", "num_requests_waiting", "Requests waiting for KV memory.", model, NULL, g->waiting);
    put(&b, "gauge", "kv_cache_usage_perc", "Fraction of the KV pool reserved (1 = full).", model,
        NULL, usage_frac(g));
    put(&b, "gauge", "kv_cache_bytes_capacity", "KV pool size in bytes (--kv-memory).", model, NULL,
        (double)g->kv_capacity);
    put(&b, "gauge", "kv_cache_bytes_reserved", "KV bytes reserved by admitted requests.", model,
        NULL, (double)g->kv_reserved);
    put(&b, "gauge", "kv_cache_bytes_used", "KV bytes actually stored by running sequences.",
        model, NULL, (double)g->kv_stored);
    put(&b, "gauge", "kv_pool_used_bytes", "Bytes the KV page pool has handed out (live pages).",
        model, NULL, (double)g->pool_used);
    put(&b, "gauge", "kv_pool_peak_bytes", "Largest kv_pool_used_bytes since the start.", model,
        NULL, (double)g->pool_peak);
    put(&b, "gauge", "kv_pool_limit_bytes",
        "The pool's byte limit: --kv-memory plus one step's transient headroom (0 = none).", model,
        NULL, (double)g->pool_limit);
    put(&b, "gauge", "kv_cache_bytes_fp16", "What the running sequences' KV takes in FP16.", model,
        NULL, (double)g->kv_fp16);
    put(&b, "gauge", "kv_cache_bytes_saved", "FP16 bytes minus stored bytes (>= 0).", model, NULL,
        g->kv_fp16 > g->kv_stored ? (double)(g->kv_fp16 - g->kv_stored) : 0);
    put(&b, "gauge", "kv_cache_tokens_used", "Tokens held by running sequences.", model, NULL,
        (double)g->kv_tokens);
    put(&b, "counter", "num_preemptions_total",
        "Requests preempted (pages freed, recomputed later) for lack of KV memory.", model, NULL,
        (double)g->preemptions);
    put(&b, "counter", "kv_elastic_compressions_total",
        "Running sequences whose high-tier budget was lowered to their floor under pressure.",
        model, NULL, (double)g->elastic_compressions);
    put(&b, "counter", "kv_elastic_demoted_tokens_total",
        "Tokens (per KV head) elastic compression moved to the low tier.", model, NULL,
        (double)g->elastic_tokens);
    put(&b, "counter", "kv_elastic_saved_bytes_total",
        "Bytes elastic compression freed when it ran.", model, NULL, (double)g->elastic_bytes);
    put(&b, "counter", "prompt_tokens_total", "Prompt tokens processed.", model, NULL,
        (double)c.prompt_tokens);
    put(&b, "counter", "generation_tokens_total", "Tokens generated.", model, NULL,
        (double)c.gen_tokens);
    char line[256];
    int n = snprintf(line, sizeof line,
                     "# HELP pivot:request_success_total Finished requests by outcome.\n"
                     "# TYPE pivot:request_success_total counter\n");
    pv_buf_add(&b, line, n);
    const char *names[] = {"ok", "abort", "error"};
    unsigned long vals[] = {c.req_ok, c.req_abort, c.req_error};
    for (int i = 0; i < 3; i++) {
        n = snprintf(line, sizeof line, "pivot:request_success_total{model_name=\"%s\",outcome=\"%s\"} %lu\n",
                     model, names[i], vals[i]);
        pv_buf_add(&b, line, n);
    }
    put_prefix(&b, g, model);
    put_vllm(&b, g, model);
    put_hist(&b, &c.ttft, model);
    put_hist(&b, &c.tpot, model);
    put_hist(&b, &c.e2e, model);
    return b.p;
}
