/* pivot logits: float32 logits of every position of a token list, the
 * reference tests' tool (tests/python/conftest.py). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"
#include "threadpool.h"
#include "kv_policy.h"
#include "llama.h"
#include "pverr.h"

/* Parses "1,2,3" into a malloc'ed array. */
static int32_t *parse_ids(const char *s, int *n_out) {
    int cap = 16, n = 0;
    int32_t *ids = malloc(sizeof(int32_t) * cap);
    while (ids && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(ids);
            return NULL;
        }
        if (n == cap) {
            int32_t *t = realloc(ids, sizeof(int32_t) * (cap *= 2));
            if (!t) {
                free(ids);
                return NULL;
            }
            ids = t;
        }
        ids[n++] = (int32_t)v;
        s = *end ? end + 1 : end;
    }
    *n_out = n;
    return ids;
}

static void logits_usage(void) {
    printf("usage: pivot logits --tokens 1,2,3 --out FILE [--model PATH] [--threads N] [--split K]\n"
           "  writes float32 logits [n_tokens][n_vocab] for every position to FILE\n"
           "  --split K   feed the tokens in chunks of K (exercises the KV cache)\n"
           "  --kv-policy P   KV cache policy, e.g. mikv,budget=0.25 (default full)\n"
           "  --device D      cpu (default), auto (CUDA when a GPU is present) or cuda\n"
           "  --synthetic SHAPE [--seed S]   random FP16 weights instead of a file: llama3-8b,\n"
           "                  smollm2-135m, tiny, ... or layers=N,embd=N,ff=N,heads=N,kv=N,vocab=N\n");
}

int cmd_logits(int argc, char **argv) {
    const char *model = NULL, *tokens = NULL, *outp = NULL, *kvspec = NULL, *synth = NULL;
    int threads = 0, split = 0;
    uint64_t seed = 1;
    /* The logits command is the reference tests' tool: CPU unless asked. */
    llm_device dev = LLM_DEVICE_CPU;
    const cli_opt opts[] = {
        CLI_OPT_MODEL(&model),
        {.name = "--tokens", .kind = CLI_STR, .dst = &tokens},
        {.name = "--out", .kind = CLI_STR, .dst = &outp},
        CLI_OPT_KV_POLICY(&kvspec),
        CLI_OPT_DEVICE(&dev),
        {.name = "--synthetic", .kind = CLI_STR, .dst = &synth},
        CLI_OPT_SEED(&seed),
        CLI_OPT_THREADS(&threads),
        {.name = "--split", .kind = CLI_INT, .dst = &split, .lo = 1, .hi = 1 << 20},
        {.name = NULL},
    };
    const cli_opt *const tables[] = {opts, NULL};
    int rc = cli_parse("logits", argc, argv, tables);
    if (rc == CLI_HELP) return logits_usage(), 0;
    kv_policy pol;
    if (rc || (rc = cli_kv_policy("logits", kvspec, NULL, &pol))) return rc;
    int n = 0;
    int32_t *ids = tokens ? parse_ids(tokens, &n) : NULL;
    if (!ids || n == 0 || !outp) {
        fprintf(stderr, "pivot logits: --tokens (comma-separated ids) and --out are required\n");
        free(ids);
        return 2;
    }
    llm_model *m = cli_load_model("logits", model, synth, seed, dev);
    if (!m) {
        free(ids);
        return 1;
    }
    const llm_config *cf = llm_get_config(m);
    kv_policy *pp = &pol;
    if ((rc = cli_resolve_heads("logits", m, dev, threads, &pp, 1))) { /* as generate and serve */
        free(ids);
        llm_free(m);
        return rc;
    }
    int chunk = split > 0 ? (int)split : n;
    if (threads <= 0) threads = tp_default_threads();
    llm_ctx_params cp = {.n_threads = threads, .max_seqs = 1, .max_ctx = n, .max_batch_tokens = chunk,
                         .device = dev};
    llm_ctx *ctx = NULL;
    kv_shape ks = llm_kv_shape(m, &cp);
    kv_cache *kv = NULL;
    float *lg = malloc(sizeof(float) * (size_t)n * cf->n_vocab);
    char kerr[256] = "";
    rc = lg ? kv_create(&ks, &pol, &kv, kerr, sizeof kerr) : PV_ENOMEM;
    if (!rc) rc = llm_ctx_create(m, &cp, kv, &ctx);
    for (int p = 0; !rc && p < n; p += chunk) {
        int k = n - p < chunk ? n - p : chunk;
        llm_batch_entry e = {.seq = 0, .pos = p, .n_tokens = k, .tokens = ids + p, .logits = LLM_LOGITS_ALL};
        rc = llm_decode(ctx, &e, 1, lg + (size_t)p * cf->n_vocab);
    }
    FILE *f = rc ? NULL : fopen(outp, "wb");
    int status = 0;
    if (rc) {
        fprintf(stderr, "pivot logits: %s\n", pv_strerror(rc));
        status = 1;
    } else if (!f || fwrite(lg, sizeof(float), (size_t)n * cf->n_vocab, f) != (size_t)n * cf->n_vocab) {
        fprintf(stderr, "pivot logits: cannot write %s\n", outp);
        status = 1;
    }
    if (f && fclose(f)) status = 1;
    free(lg);
    free(ids);
    llm_ctx_free(ctx);
    llm_free(m);
    return status;
}
