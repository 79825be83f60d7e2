/* pivot heads: which KV heads copy — each (layer, KV head)'s induction
 * score on random-word copy probes (eval_heads.h), ranked, and the
 * layer-bits entries that give the top ones their own low-tier widths. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "cli.h"
#include "eval_heads.h"

static void help(void) {
    printf("usage: pivot heads [options]\n"
           "  Ranks the model's KV heads by induction score: the attention a query of a\n"
           "  repeated random-word sequence puts on the token that followed its first\n"
           "  occurrence (exact float attention, CPU). The top heads are what a copy or a\n"
           "  lookup reads, so they are worth more low-tier bits (docs/KV_CACHE.md,\n"
           "  \"Bits per head\"). Prints the ranking and a --kv-layer-bits value.\n"
           "  --model PATH       GGUF model (default: $PIVOT_MODEL or the SmolLM2 default)\n"
           "  --top N            heads in the layer-bits value (default 5)\n"
           "  --bits K/V         their low-tier widths (default 8: K8/V8)\n"
           "  --length N         tokens per probe: BOS + two copies (default 512)\n"
           "  --samples N        probes (default 4)\n"
           "  --seed S           the random words (default 1)\n"
           "  --threads N        CPU threads (default: all)\n"
           "  --json             one JSON object: every head's score (ranked), the value,\n"
           "                     the first probe's tokens\n");
}

int cmd_heads(int argc, char **argv) {
    const char *model = NULL, *bits = "8";
    int top = 5, json = 0;
    ev_heads_opts o = {.length = 512, .samples = 4, .seed = 1, .threads = 0};
    const cli_opt opts[] = {CLI_OPT_MODEL(&model),
                            {.name = "--top", .kind = CLI_INT, .dst = &top, .lo = 1, .hi = 12},
                            {.name = "--bits", .kind = CLI_STR, .dst = &bits},
                            {.name = "--length", .kind = CLI_INT, .dst = &o.length, .lo = 5, .hi = 65536},
                            {.name = "--samples", .kind = CLI_INT, .dst = &o.samples, .lo = 1, .hi = 1000},
                            {.name = "--seed", .kind = CLI_U64, .dst = &o.seed},
                            CLI_OPT_THREADS(&o.threads),
                            {.name = "--json", .kind = CLI_FLAG, .dst = &json},
                            {.name = NULL}};
    const cli_opt *const tables[] = {opts, NULL};
    int rc = cli_parse("heads", argc, argv, tables);
    if (rc == CLI_HELP) {
        help();
        return 0;
    }
    if (rc) return rc;
    /* the widths must be what layer-bits accepts: check them through it */
    kv_policy chk;
    char err[256] = "", val[32];
    snprintf(val, sizeof val, "0:%s", bits);
    if (strpbrk(bits, "+.") || bits[0] == '0' || kv_policy_preset("mikv", &chk) ||
        kv_policy_set(&chk, "layer-bits", val, err, sizeof err) || !chk.layer_bits[0].k) {
        fprintf(stderr, "pivot heads: --bits must be K/V or N of 2, 3, 4 or 8 bits, got '%s'\n", bits);
        return 2;
    }
    llm_model *m = cli_load_model("heads", model, NULL, 0, LLM_DEVICE_CPU);
    if (!m) return 1;
    const llm_config *c = llm_get_config(m);
    int nh = c->n_layers * c->n_kv_heads;
    double *sc = calloc((size_t)nh, sizeof *sc);
    int *r = calloc((size_t)nh, sizeof *r);
    int32_t *probe = malloc(sizeof(int32_t) * (size_t)o.length);
    int n_probe = 0;
    o.first_probe = probe, o.n_first_probe = &n_probe;
    if (!sc || !r || !probe || (rc = ev_heads(m, &o, sc, err, sizeof err))) {
        fprintf(stderr, "pivot heads: %s\n", sc && r && probe ? err : "out of memory");
        free(sc);
        free(r);
        free(probe);
        llm_free(m);
        return 1;
    }
    ev_heads_order(sc, nh, r); /* r[i]: layer * n_kv_heads + head */
    const int nkv = c->n_kv_heads;
    if (top > nh) top = nh;
    char spec[KV_POLICY_DESC_MAX] = "";
    for (int i = 0; i < top; i++) {
        size_t at = strlen(spec);
        snprintf(spec + at, sizeof spec - at, "%s%d.%d:%s", i ? "+" : "", r[i] / nkv, r[i] % nkv, bits);
    }
    if (json) {
        cJSON *o_ = cJSON_CreateObject(), *hs = NULL, *tk = NULL;
        cJSON_AddStringToObject(o_, "model", llm_get_name(m));
        cJSON_AddNumberToObject(o_, "length", o.length);
        cJSON_AddNumberToObject(o_, "samples", o.samples);
        cJSON_AddNumberToObject(o_, "seed", (double)o.seed);
        cJSON_AddStringToObject(o_, "layer_bits", spec);
        hs = cJSON_AddArrayToObject(o_, "heads"); /* ranked */
        for (int i = 0; hs && i < nh; i++) {
            cJSON *h = cJSON_CreateObject();
            cJSON_AddNumberToObject(h, "layer", r[i] / nkv);
            cJSON_AddNumberToObject(h, "head", r[i] % nkv);
            cJSON_AddNumberToObject(h, "score", sc[r[i]]);
            cJSON_AddItemToArray(hs, h);
        }
        tk = cJSON_AddArrayToObject(o_, "first_probe"); /* its tokens: a reference can rerun it */
        for (int i = 0; tk && i < n_probe; i++) cJSON_AddItemToArray(tk, cJSON_CreateNumber(probe[i]));
        char *txt = cJSON_PrintUnformatted(o_);
        if (txt) printf("%s\n", txt);
        free(txt);
        cJSON_Delete(o_);
    } else {
        printf("induction score per KV head (%s, %d probes of %d tokens, seed %llu):\n", llm_get_name(m),
               o.samples, o.length, (unsigned long long)o.seed);
        for (int i = 0; i < nh && i < 12; i++)
            printf("  %2d. layer %2d head %d  %.4f\n", i + 1, r[i] / nkv, r[i] % nkv, sc[r[i]]);
        printf("--kv-layer-bits %s\n", spec);
    }
    free(sc);
    free(r);
    free(probe);
    llm_free(m);
    return 0;
}
