/* pivot serve: options (flags and PIVOT_* environment variables, the flag
 * wins); the server itself is server/srv_server.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval_heads.h"
#include "kv_policy.h"
#include "llama.h"
#include "srv_server.h"

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
            "  --kv-policy SPEC       KV cache policy, PRESET[,knob=value...] (default full;\n"
            "                         ';' separates knobs too)\n"
            "  --kv-memory BYTES      KV memory: requests are admitted by it and the page pool\n"
            "                         is limited to it (plus one step's headroom) (default\n"
            "                         1073741824; K/M/G suffixes)\n"
            "  --kv-elastic 0|1       under memory pressure, lower the high-tier budget of\n"
            "                         running requests whose policy has a low tier (down to\n"
            "                         its floor) before preempting any (default 1; per\n"
            "                         request: kv_elastic)\n"
            "  --prefix-cache on|off  automatic prefix caching: requests reuse the KV of\n"
            "                         a prompt prefix an earlier one computed (default on;\n"
            "                         CPU, every policy; per request: cache_prompt)\n"
            "  --rank-heads on|off    rank the model's KV heads at start (a 2x256-token\n"
            "                         probe, ~1 s for SmolLM2-135M on 2 cores) so that the\n"
            "                         policies' heads knob (mikv: 5) finds the heads that\n"
            "                         copy; off: that knob leaves the low tier uniform\n"
            "                         (default on)\n"
            "  --device D             auto (CUDA when a GPU is usable and the policy is full),\n"
            "                         cpu, cuda (plain FP16 cache only: --kv-policy full)\n"
            "  --max-batch N          sequences decoded together (default 32)\n"
            "  --batch-tokens N       tokens per forward step (default 512)\n"
            "  --prefill-chunk N      prompt tokens one sequence adds per step (default 256)\n"
            "  --max-queue N          waiting requests before 429 (default 64)\n"
            "  --threads N            CPU threads (default: all cores)\n"
            "  --attn-split off|N     split one long sequence's decode attention across\n"
            "                         threads from N context tokens (default 512)\n"
            "  --ctx N                tokens per sequence (default: the model's training context)\n"
            "  --drain-timeout S      on SIGTERM/SIGINT, seconds to finish running requests\n"
            "                         (default 30)\n"
            "  --max-body BYTES       request body limit (default 4M)\n"
            "  --max-connections N    open connections (default 1024)\n"
            "  --idle-timeout S       keep-alive idle timeout (default 60)\n"
            "  --request-timeout S    time for headers + body to arrive (default 30)\n"
            "  --no-webui             no web page at / (the JSON endpoints it uses stay)\n"
            "  --webui-show-text      the KV map shows the text of every request (default:\n"
            "                         token positions only)\n"
            "  -h, --help             this help\n");
}

/* Fills c from the flags and the PIVOT_<NAME> environment variables (the
 * flag wins) and checks what can be checked before loading anything. */
static int parse(int argc, char **argv, srv_config *c) {
    *c = (srv_config){.host = "127.0.0.1", .port = 8080, .kv_policy = "full",
                      .kv_memory = (size_t)1 << 30, .max_seqs = 32, .max_batch_tokens = 512,
                      .prefill_chunk = 256, .max_queue = 64, .drain_timeout = 30,
                      .max_body = 4u << 20, .max_conns = 1024, .idle_timeout = 60,
                      .request_timeout = 30, .kv_elastic = 1, .prefix_cache = 1,
                      .rank_heads = ev_heads_rank};
    static const char *const on_off[] = {"off", "on", NULL};
    int dev = -1; /* not given: the engine's auto */
    int rank = 1; /* --rank-heads */
    const cli_opt opts[] = {
        CLI_OPT_MODEL(&c->model_path, .env = "PIVOT_MODEL"),
        {.name = "--host", .kind = CLI_STR, .dst = &c->host, .env = "PIVOT_HOST"},
        {.name = "--port", .kind = CLI_INT, .dst = &c->port,
         .lo = 0, .hi = 65535, .env = "PIVOT_PORT"},
        {.name = "--api-key", .kind = CLI_STR, .dst = &c->api_key, .env = "PIVOT_API_KEY"},
        CLI_OPT_KV_POLICY(&c->kv_policy, .env = "PIVOT_KV_POLICY"),
        {.name = "--kv-memory", .kind = CLI_BYTES, .dst = &c->kv_memory,
         .lo = 1, .env = "PIVOT_KV_MEMORY"},
        {.name = "--kv-elastic", .kind = CLI_INT, .dst = &c->kv_elastic, .lo = 0, .hi = 1,
         .env = "PIVOT_KV_ELASTIC"},
        {.name = "--prefix-cache", .kind = CLI_CHOICE, .dst = &c->prefix_cache,
         .choices = on_off, .env = "PIVOT_PREFIX_CACHE"},
        {.name = "--rank-heads", .kind = CLI_CHOICE, .dst = &rank, .choices = on_off,
         .env = "PIVOT_RANK_HEADS"},
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
        CLI_OPT_ATTN_SPLIT(&c->attn_split, .env = "PIVOT_ATTN_SPLIT"),
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
        {.name = "--no-webui", .kind = CLI_FLAG, .dst = &c->no_webui, .env = "PIVOT_NO_WEBUI"},
        {.name = "--webui-show-text", .kind = CLI_FLAG, .dst = &c->webui_show_text,
         .env = "PIVOT_WEBUI_SHOW_TEXT"},
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
    if (!rank) c->rank_heads = NULL;
    /* Checked before loading anything: the GPU has only the plain FP16
     * cache, so a compressed default policy (and per-request ones) cannot
     * run there. */
    if (dev == LLM_DEVICE_CUDA && !kv_policy_is_plain(&kp)) {
        fprintf(stderr,
                "pivot serve: --device cuda supports only the plain FP16 KV cache; --kv-policy "
                "'%s' needs the CPU (use --device cpu, or --kv-policy full)\n",
                c->kv_policy);
        return 2;
    }
    if (c->api_key && !*c->api_key) c->api_key = NULL;
    return 0;
}

int cmd_serve(int argc, char **argv) {
    srv_config cfg;
    int rc = parse(argc, argv, &cfg);
    if (rc) return rc;
    char mbuf[4096];
    if (!cfg.model_path) cfg.model_path = cli_default_model(mbuf, sizeof mbuf);
    return srv_run(&cfg);
}
