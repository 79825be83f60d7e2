/* pivot bench: load-test an OpenAI-compatible server the way vLLM's
 * `bench serve` does, with the same metric definitions (BRIEF.md §5), so
 * that numbers from either client mean the same thing. This file is the
 * command line, the run on the libuv loop and the report; the workload
 * (bench_workload.c), the response parsing (bench_sse.c) and the arithmetic
 * (bench_stats.c) are pure modules with their own unit tests.
 *
 * Arrivals: --rate R draws exponential gaps with mean 1/R from a seeded RNG
 * (vLLM's gamma with burstiness 1); --rate inf sends all at once.
 * --concurrency C caps the requests in flight (with --rate inf that is a
 * closed loop of C clients). Requests start in order.
 *
 * Random prompts: --input-len N words drawn from a list of common English
 * words that are one token each (with their leading space) in the
 * GPT-2/Llama-style BPE vocabularies Pivot serves, so the server counts N
 * tokens, plus one for BOS where the model adds it (chat adds the template).
 * The report uses the server's usage.prompt_tokens, not N, whenever given. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "bench_workload.h"
#include "cli.h"

typedef struct {
    char *prompt;
    int input_len; /* planned: words, or 0 for dataset prompts */
    int output_len;
} bench_item;

typedef struct {
    /* options */
    const char *url, *model, *api_key, *dataset, *json_out, *kv_policy;
    cJSON *extra; /* --extra-body: merged into every request */
    int num_prompts, concurrency, input_len, output_len;
    int prefix_len; /* --prefix-len: words every random prompt starts with */
    double rate, timeout_s;
    int stream, ignore_eos, chat;
    uint64_t seed;
    bench_slo slo; /* ms; < 0 = not set */
    int goodput;
    /* run */
    bench_target target;
    char model_buf[256];
    bench_item *items;
    double *arrivals;
    bench_result *res;
    long n_arrived, n_started, n_done, n_failed, in_flight;
    double t0, t_end;
    uv_loop_t loop;
    uv_timer_t arrive_timer, progress_timer;
    int progress;
    char path[64];
} bench;

static int usage(FILE *f) {
    fprintf(f,
            "usage: pivot bench [options]\n"
            "Load-test an OpenAI-compatible server (vLLM bench serve's metrics).\n"
            "  --url URL             server, http://host:port[/v1] (default http://127.0.0.1:8080)\n"
            "  --endpoint E          completions (default) | chat\n"
            "  --model NAME          model field (default: first of GET /v1/models)\n"
            "  --num-prompts N       requests (default 100)\n"
            "  --rate R              Poisson arrivals per second, or inf (default inf)\n"
            "  --concurrency C       at most C requests in flight (default unlimited)\n"
            "  --input-len N         random prompt of N one-token words (default 128)\n"
            "  --prefix-len N        every random prompt starts with the same N words (a\n"
            "                        shared system prompt, vLLM's --random-prefix-len; default 0)\n"
            "  --output-len N        max_tokens per request (default 128)\n"
            "  --dataset FILE        prompts: JSONL {\"prompt\": ...} or ShareGPT JSON\n"
            "  --stream | --no-stream  SSE streaming (default) or whole responses\n"
            "  --seed N              prompts and arrivals (default 0)\n"
            "  --api-key KEY         Authorization: Bearer KEY (default $OPENAI_API_KEY)\n"
            "  --ignore-eos          ask for exactly --output-len tokens\n"
            "  --goodput ttft:MS tpot:MS e2el:MS   SLOs for goodput (any subset)\n"
            "  --kv-policy SPEC      sent as the request's kv_policy (Pivot extension)\n"
            "  --extra-body JSON     object merged into every request (e.g. logit_bias)\n"
            "  --timeout S           per-request timeout in seconds (default 600)\n"
            "  --json OUT            write the results as JSON\n");
    return f == stdout ? 0 : 2;
}

/* ---- workload ---- */

static int build_workload(bench *b) {
    uint64_t rng = b->seed;
    b->items = calloc((size_t)b->num_prompts, sizeof *b->items);
    b->arrivals = calloc((size_t)b->num_prompts, sizeof *b->arrivals);
    b->res = calloc((size_t)b->num_prompts, sizeof *b->res);
    if (!b->items || !b->arrivals || !b->res) return -1;
    for (long i = 0; i < b->num_prompts; i++) bench_result_init(&b->res[i]);
    char **ds = NULL;
    size_t n_ds = 0;
    char err[1024];
    if (b->dataset && bench_dataset_load(b->dataset, &ds, &n_ds, err, sizeof err)) {
        fprintf(stderr, "pivot bench: %s\n", err);
        return -1;
    }
    /* drawn first, from the same stream: one seed, one workload */
    char *head = !n_ds && b->prefix_len ? bench_random_prompt(&rng, b->prefix_len) : NULL;
    if (!n_ds && b->prefix_len && !head) return -1;
    for (long i = 0; i < b->num_prompts; i++) {
        bench_item *it = &b->items[i];
        it->output_len = (int)b->output_len;
        if (n_ds) {
            it->prompt = strdup(ds[(size_t)i % n_ds]);
        } else {
            it->prompt = bench_prefixed_prompt(head, &rng, b->input_len);
            it->input_len = (int)(b->prefix_len + b->input_len);
        }
        if (!it->prompt) {
            free(head);
            bench_prompts_free(ds, n_ds);
            return -1;
        }
    }
    free(head);
    bench_prompts_free(ds, n_ds);
    return bench_arrivals(b->arrivals, (size_t)b->num_prompts, b->rate, b->seed);
}

static char *request_body(const bench *b, const bench_item *it) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", b->model);
    if (b->chat) {
        cJSON *msgs = cJSON_AddArrayToObject(o, "messages");
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", it->prompt);
        cJSON_AddItemToArray(msgs, m);
    } else {
        cJSON_AddStringToObject(o, "prompt", it->prompt);
    }
    cJSON_AddNumberToObject(o, "max_tokens", it->output_len);
    cJSON_AddNumberToObject(o, "temperature", 0); /* vLLM's default: greedy */
    cJSON_AddBoolToObject(o, "stream", b->stream);
    if (b->stream) {
        cJSON *so = cJSON_AddObjectToObject(o, "stream_options");
        cJSON_AddBoolToObject(so, "include_usage", 1);
    }
    if (b->ignore_eos) cJSON_AddBoolToObject(o, "ignore_eos", 1);
    if (b->kv_policy) cJSON_AddStringToObject(o, "kv_policy", b->kv_policy);
    for (const cJSON *e = b->extra ? b->extra->child : NULL; e; e = e->next) {
        /* servers that ignore ignore_eos take other fields (logit_bias) */
        cJSON_DeleteItemFromObjectCaseSensitive(o, e->string);
        cJSON_AddItemToObject(o, e->string, cJSON_Duplicate(e, 1));
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* ---- the run ---- */

static void start_ready(bench *b);
static bench g_bench; /* one run per process; the loop's handles point into it */

static void print_progress(bench *b, int final) {
    fprintf(stderr, "\rpivot bench: %ld/%d done, %ld failed, %ld in flight, %.1f s%s",
            b->n_done, b->num_prompts, b->n_failed, b->in_flight, bench_now() - b->t0,
            final ? "\n" : "  ");
}

static void on_progress(uv_timer_t *t) { print_progress(t->data, 0); }

static void maybe_end(bench *b) {
    if (b->n_done == b->num_prompts) {
        uv_close((uv_handle_t *)&b->arrive_timer, NULL);
        if (b->progress) {
            uv_close((uv_handle_t *)&b->progress_timer, NULL);
            print_progress(b, 1);
        }
        return;
    }
    start_ready(b);
}

/* ud is the request's result slot in b->res. */
static void on_done(bench_req *r, void *ud) {
    bench *b = uv_loop_get_data(&g_bench.loop);
    bench_result *res = bench_req_result(r);
    *(bench_result *)ud = *res; /* takes the itl and body arrays */
    b->in_flight--;
    b->n_done++;
    if (!res->ok) b->n_failed++;
    b->t_end = bench_now();
    maybe_end(b);
}

static void start_one(bench *b, long i) {
    char *body = request_body(b, &b->items[i]);
    bench_result *slot = &b->res[i];
    slot->ok = 0;
    bench_req *r = body ? bench_req_start(&b->loop, &b->target, "POST", b->path, body,
                                          b->api_key, b->stream, b->chat, b->timeout_s,
                                          on_done, slot) : NULL;
    free(body);
    b->in_flight++;
    if (!r) { /* allocation failure: count it as a failed request */
        snprintf(slot->err, sizeof slot->err, "out of memory");
        b->in_flight--;
        b->n_done++;
        b->n_failed++;
        b->t_end = bench_now();
    }
}

static void start_ready(bench *b) {
    while (b->n_started < b->n_arrived && b->n_done < b->num_prompts &&
           (b->concurrency <= 0 || b->in_flight < b->concurrency)) {
        start_one(b, b->n_started++);
        if (b->n_done == b->num_prompts) { /* the last one failed to allocate */
            maybe_end(b);
            return;
        }
    }
}

static void on_arrive(uv_timer_t *t) {
    bench *b = t->data;
    double now = bench_now() - b->t0;
    while (b->n_arrived < b->num_prompts && b->arrivals[b->n_arrived] <= now) b->n_arrived++;
    start_ready(b);
    if (b->n_arrived < b->num_prompts) {
        double wait = b->arrivals[b->n_arrived] - now;
        uv_timer_start(&b->arrive_timer, on_arrive, (uint64_t)ceil(wait * 1e3), 0);
    }
}

/* GET /v1/models for the model name, when --model is absent. */
static bench_result g_probe;
static void on_probe(bench_req *r, void *ud) {
    (void)ud;
    g_probe = *bench_req_result(r);
}

static int probe_model(bench *b) {
    bench_req *r = bench_req_start(&b->loop, &b->target, "GET", "/v1/models", NULL, b->api_key,
                                   0, 0, b->timeout_s, on_probe, NULL);
    if (!r) return -1;
    uv_run(&b->loop, UV_RUN_DEFAULT);
    int rc = -1;
    if (g_probe.ok) {
        cJSON *o = cJSON_Parse(g_probe.body ? g_probe.body : "");
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(o, "data");
        const cJSON *m = cJSON_IsArray(d) ? cJSON_GetArrayItem(d, 0) : NULL;
        const cJSON *id = m ? cJSON_GetObjectItemCaseSensitive(m, "id") : NULL;
        if (cJSON_IsString(id)) {
            snprintf(b->model_buf, sizeof b->model_buf, "%s", id->valuestring);
            b->model = b->model_buf;
            rc = 0;
        }
        cJSON_Delete(o);
        if (rc) fprintf(stderr, "pivot bench: GET /v1/models: no model id; use --model\n");
    } else {
        fprintf(stderr, "pivot bench: GET /v1/models: %s (use --model)\n", g_probe.err);
    }
    bench_result_release(&g_probe);
    return rc;
}

/* ---- report: vLLM's calculate_metrics, field names as in its JSON ---- */

static void add_dist(cJSON *o, const char *name, bench_dist d) {
    char k[64];
    snprintf(k, sizeof k, "mean_%s_ms", name), cJSON_AddNumberToObject(o, k, d.mean * 1e3);
    snprintf(k, sizeof k, "median_%s_ms", name), cJSON_AddNumberToObject(o, k, d.median * 1e3);
    snprintf(k, sizeof k, "std_%s_ms", name), cJSON_AddNumberToObject(o, k, d.std * 1e3);
    snprintf(k, sizeof k, "p90_%s_ms", name), cJSON_AddNumberToObject(o, k, d.p90 * 1e3);
    snprintf(k, sizeof k, "p99_%s_ms", name), cJSON_AddNumberToObject(o, k, d.p99 * 1e3);
}

static void print_dist(const char *title, const char *name, bench_dist d) {
    printf("%-50s\n", title);
    printf("Mean %s (ms):%*s%.2f\n", name, (int)(40 - 11 - strlen(name)), "", d.mean * 1e3);
    printf("Median %s (ms):%*s%.2f\n", name, (int)(40 - 13 - strlen(name)), "", d.median * 1e3);
    printf("P90 %s (ms):%*s%.2f\n", name, (int)(40 - 10 - strlen(name)), "", d.p90 * 1e3);
    printf("P99 %s (ms):%*s%.2f\n", name, (int)(40 - 10 - strlen(name)), "", d.p99 * 1e3);
}

static int report(bench *b) {
    size_t n = (size_t)b->num_prompts;
    long planned = b->dataset ? 0 : (long)b->prefix_len + b->input_len;
    bench_metrics m;
    cJSON *o = cJSON_CreateObject();
    if (!o || bench_metrics_compute(&m, b->res, n, planned, b->t_end - b->t0,
                                    b->goodput ? &b->slo : NULL)) {
        fprintf(stderr, "pivot bench: out of memory\n");
        cJSON_Delete(o);
        return 1;
    }
    cJSON *in_lens = cJSON_CreateArray(), *out_lens = cJSON_CreateArray();
    cJSON *ttfts = cJSON_CreateArray(), *errors = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) {
        const bench_result *r = &b->res[i];
        cJSON_AddItemToArray(in_lens, cJSON_CreateNumber((double)bench_in_tokens(r, planned)));
        cJSON_AddItemToArray(out_lens, cJSON_CreateNumber(r->ok ? (double)bench_out_tokens(r) : 0));
        cJSON_AddItemToArray(ttfts, cJSON_CreateNumber(r->ok ? r->ttft : 0));
        cJSON_AddItemToArray(errors, cJSON_CreateString(r->ok ? "" : r->err));
    }
    size_t n_ok = m.completed;
    double dur = m.duration;
    bench_dist dt = m.ttft, dp = m.tpot, di = m.itl, de = m.e2el;

    printf("============ Serving Benchmark Result ============\n");
    printf("%-40s%-10zu\n", "Successful requests:", n_ok);
    printf("%-40s%-10ld\n", "Failed requests:", b->n_failed);
    if (b->concurrency > 0) printf("%-40s%-10d\n", "Maximum request concurrency:", b->concurrency);
    if (isfinite(b->rate)) printf("%-40s%-10.2f\n", "Request rate (req/s):", b->rate);
    else printf("%-40s%-10s\n", "Request rate (req/s):", "inf");
    printf("%-40s%-10.2f\n", "Benchmark duration (s):", dur);
    printf("%-40s%-10ld\n", "Total input tokens:", m.total_input);
    printf("%-40s%-10ld\n", "Total generated tokens:", m.total_output);
    printf("%-40s%-10.2f\n", "Request throughput (req/s):", m.request_throughput);
    if (b->goodput) printf("%-40s%-10.2f\n", "Request goodput (req/s):", m.request_goodput);
    printf("%-40s%-10.2f\n", "Output token throughput (tok/s):", m.output_throughput);
    printf("%-40s%-10.2f\n", "Total token throughput (tok/s):", m.total_token_throughput);
    print_dist("---------------Time to First Token----------------", "TTFT", dt);
    print_dist("-----Time per Output Token (excl. 1st token)------", "TPOT", dp);
    print_dist("---------------Inter-token Latency----------------", "ITL", di);
    print_dist("----------------End-to-end Latency----------------", "E2EL", de);
    printf("==================================================\n");
    for (int k = 0; k < m.n_reasons; k++)
        printf("failed x%ld: %s\n", m.reasons[k].n, m.reasons[k].why);
    fflush(stdout);

    cJSON_AddStringToObject(o, "backend", "pivot-bench");
    cJSON_AddStringToObject(o, "url", b->url);
    cJSON_AddStringToObject(o, "endpoint", b->chat ? "chat" : "completions");
    cJSON_AddStringToObject(o, "model_id", b->model);
    cJSON_AddNumberToObject(o, "num_prompts", (double)n);
    if (isfinite(b->rate)) cJSON_AddNumberToObject(o, "request_rate", b->rate);
    else cJSON_AddStringToObject(o, "request_rate", "inf");
    if (b->concurrency > 0) cJSON_AddNumberToObject(o, "max_concurrency", (double)b->concurrency);
    else cJSON_AddNullToObject(o, "max_concurrency");
    cJSON_AddBoolToObject(o, "stream", b->stream);
    cJSON_AddNumberToObject(o, "seed", (double)b->seed);
    cJSON_AddNumberToObject(o, "input_len", b->dataset ? 0 : (double)b->input_len);
    cJSON_AddNumberToObject(o, "prefix_len", b->dataset ? 0 : (double)b->prefix_len);
    cJSON_AddNumberToObject(o, "output_len", (double)b->output_len);
    cJSON_AddNumberToObject(o, "duration", dur);
    cJSON_AddNumberToObject(o, "completed", (double)n_ok);
    cJSON_AddNumberToObject(o, "failed", (double)b->n_failed);
    cJSON_AddNumberToObject(o, "total_input_tokens", (double)m.total_input);
    cJSON_AddNumberToObject(o, "total_output_tokens", (double)m.total_output);
    cJSON_AddNumberToObject(o, "request_throughput", m.request_throughput);
    if (b->goodput) cJSON_AddNumberToObject(o, "request_goodput", m.request_goodput);
    else cJSON_AddNullToObject(o, "request_goodput");
    cJSON_AddNumberToObject(o, "output_throughput", m.output_throughput);
    cJSON_AddNumberToObject(o, "total_token_throughput", m.total_token_throughput);
    add_dist(o, "ttft", dt);
    add_dist(o, "tpot", dp);
    add_dist(o, "itl", di);
    add_dist(o, "e2el", de);
    cJSON *fr = cJSON_AddObjectToObject(o, "failure_reasons");
    for (int k = 0; k < m.n_reasons; k++)
        cJSON_AddNumberToObject(fr, m.reasons[k].why, (double)m.reasons[k].n);
    cJSON_AddItemToObject(o, "input_lens", in_lens);
    cJSON_AddItemToObject(o, "output_lens", out_lens);
    cJSON_AddItemToObject(o, "ttfts", ttfts);
    cJSON_AddItemToObject(o, "errors", errors);
    int rc = n_ok ? 0 : 1; /* nothing completed: the run says nothing about the server */
    if (b->json_out) {
        char *s = cJSON_Print(o);
        FILE *f = fopen(b->json_out, "w");
        if (!s || !f || fputs(s, f) < 0 || fputc('\n', f) < 0) {
            fprintf(stderr, "pivot bench: cannot write --json %s\n", b->json_out);
            rc = 1;
        }
        if (f && fclose(f)) rc = 1;
        free(s);
    }
    cJSON_Delete(o);
    return rc;
}

/* --goodput ttft:MS tpot:MS e2el:MS, one item per call (any subset). */
static int set_goodput(void *dst, const char *s) {
    bench *b = dst;
    double ms;
    const char *c = strchr(s, ':');
    if (!c || cli_parse_float(c + 1, 0, 1e9, &ms)) return -1;
    if (!strncmp(s, "ttft:", 5)) b->slo.ttft_ms = ms;
    else if (!strncmp(s, "tpot:", 5)) b->slo.tpot_ms = ms;
    else if (!strncmp(s, "e2el:", 5)) b->slo.e2el_ms = ms;
    else return -1;
    b->goodput = 1;
    return 0;
}

static int set_extra_body(void *dst, const char *s) {
    cJSON **extra = dst;
    cJSON_Delete(*extra);
    *extra = cJSON_Parse(s);
    return cJSON_IsObject(*extra) ? 0 : -1;
}

static int set_rate(void *dst, const char *s) {
    if (strcmp(s, "inf") != 0) return cli_parse_float(s, 1e-6, 1e9, dst);
    *(double *)dst = INFINITY;
    return 0;
}

static const char *const endpoints[] = {"completions", "chat", "chat/completions", NULL};
static const int endpoint_is_chat[] = {0, 1, 1};

static int parse_args(bench *b, int argc, char **argv) {
    const cli_opt opts[] = {
        {.name = "--url", .kind = CLI_STR, .dst = &b->url},
        {.name = "--endpoint", .kind = CLI_CHOICE, .dst = &b->chat, .choices = endpoints,
         .values = endpoint_is_chat},
        {.name = "--model", .kind = CLI_STR, .dst = &b->model},
        {.name = "--api-key", .kind = CLI_STR, .dst = &b->api_key, .env = "OPENAI_API_KEY"},
        {.name = "--dataset", .kind = CLI_STR, .dst = &b->dataset},
        {.name = "--json", .kind = CLI_STR, .dst = &b->json_out},
        CLI_OPT_KV_POLICY(&b->kv_policy),
        CLI_OPT_SEED(&b->seed),
        {.name = "--num-prompts", .kind = CLI_INT, .dst = &b->num_prompts, .lo = 1, .hi = 10000000},
        {.name = "--concurrency", .kind = CLI_INT, .dst = &b->concurrency, .lo = 1, .hi = 100000},
        {.name = "--input-len", .kind = CLI_INT, .dst = &b->input_len, .lo = 1, .hi = 1000000},
        {.name = "--prefix-len", .kind = CLI_INT, .dst = &b->prefix_len, .lo = 0, .hi = 1000000},
        {.name = "--output-len", .kind = CLI_INT, .dst = &b->output_len, .lo = 1, .hi = 1000000},
        {.name = "--timeout", .kind = CLI_DOUBLE, .dst = &b->timeout_s, .lo = 1e-3, .hi = 1e7},
        {.name = "--rate", .kind = CLI_FN, .dst = &b->rate, .fn = set_rate,
         .what = "a number in [1e-06, 1e+09] or inf"},
        {.name = "--extra-body", .kind = CLI_FN, .dst = &b->extra, .fn = set_extra_body,
         .what = "a JSON object"},
        {.name = "--goodput", .kind = CLI_FN, .dst = b, .fn = set_goodput, .multi = 1,
         .what = "ttft:MS tpot:MS e2el:MS"},
        {.name = "--stream", .kind = CLI_FLAG, .dst = &b->stream},
        {.name = "--no-stream", .kind = CLI_FLAG_OFF, .dst = &b->stream},
        {.name = "--ignore-eos", .kind = CLI_FLAG, .dst = &b->ignore_eos},
        {.name = NULL},
    };
    const cli_opt *const tables[] = {opts, NULL};
    return cli_parse("bench", argc, argv, tables);
}

int cmd_bench(int argc, char **argv) {
    bench *b = &g_bench;
    memset(b, 0, sizeof *b);
    b->url = "http://127.0.0.1:8080";
    b->num_prompts = 100;
    b->input_len = 128;
    b->output_len = 128;
    b->rate = INFINITY;
    b->timeout_s = 600;
    b->stream = 1;
    b->slo.ttft_ms = b->slo.tpot_ms = b->slo.e2el_ms = -1;
    int rc = parse_args(b, argc, argv);
    char err[512];
    if (!rc && bench_target_parse(&b->target, b->url, err, sizeof err)) {
        fprintf(stderr, "pivot bench: %s\n", err);
        rc = 2;
    }
    if (rc) {
        cJSON_Delete(b->extra);
        return rc == CLI_HELP ? usage(stdout) : rc;
    }
    /* accept both http://h:p and http://h:p/v1 as the base */
    size_t pl = strlen(b->target.prefix);
    if (pl >= 3 && !strcmp(b->target.prefix + pl - 3, "/v1")) b->target.prefix[pl - 3] = 0;
    snprintf(b->path, sizeof b->path, "%s", b->chat ? "/v1/chat/completions" : "/v1/completions");
    if (uv_loop_init(&b->loop)) return 1;
    uv_loop_set_data(&b->loop, b);
    rc = 1;
    if (!b->model && probe_model(b)) goto out;
    if (build_workload(b)) {
        fprintf(stderr, "pivot bench: cannot build the workload\n");
        goto out;
    }
    b->progress = isatty(2);
    uv_timer_init(&b->loop, &b->arrive_timer);
    b->arrive_timer.data = b;
    if (b->progress) {
        uv_timer_init(&b->loop, &b->progress_timer);
        b->progress_timer.data = b;
        uv_timer_start(&b->progress_timer, on_progress, 250, 250);
    }
    b->t0 = bench_now();
    on_arrive(&b->arrive_timer);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    rc = report(b);
out:
    uv_run(&b->loop, UV_RUN_DEFAULT); /* close callbacks */
    uv_loop_close(&b->loop);
    if (b->items)
        for (long i = 0; i < b->num_prompts; i++) free(b->items[i].prompt);
    if (b->res)
        for (long i = 0; i < b->num_prompts; i++) bench_result_release(&b->res[i]);
    free(b->items);
    free(b->arrivals);
    free(b->res);
    cJSON_Delete(b->extra);
    return rc;
}
