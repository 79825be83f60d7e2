/* Single-stream decode speed at a long context, split-K attention on and
 * off (model/llama_forward.c); not part of the test suite.
 *
 *   ninja -C build bench/bench_decode
 *   build/bench/bench_decode [--model PATH] [--ctx 2048] [--steps 64] [--threads 2]
 *                            [--split 512|off ...] [--rounds 3] [--kv-policy full]
 *
 * One sequence's cache is filled with `ctx` tokens of random keys and
 * values (llm_ctx_fill_random: the attention cost of a real prompt without
 * its prefill), one step runs untimed (a compressing cache encodes and
 * demotes the filled tokens there, as a prefill would), then `steps` greedy
 * decode steps are timed, wall clock.
 * Each --split value gets its own ctx (same model, same threads); the
 * rounds alternate between them so a shared machine's load falls on all
 * alike. Prints tok/s per round and the best per setting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv.h"
#include "kv_policy.h"
#include "llama.h"

#define MAX_SET 8

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *model = "models/SmolLM2-135M-Instruct.Q4_1.gguf", *policy = "full";
    int ctx = 2048, steps = 64, threads = 2, rounds = 3, nset = 0, split[MAX_SET];
    const char *split_name[MAX_SET];
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--model")) model = v;
        else if (!strcmp(k, "--ctx")) ctx = atoi(v);
        else if (!strcmp(k, "--steps")) steps = atoi(v);
        else if (!strcmp(k, "--threads")) threads = atoi(v);
        else if (!strcmp(k, "--rounds")) rounds = atoi(v);
        else if (!strcmp(k, "--kv-policy")) policy = v;
        else if (!strcmp(k, "--split") && nset < MAX_SET) {
            split_name[nset] = v;
            split[nset++] = !strcmp(v, "off") ? -1 : atoi(v);
        } else {
            fprintf(stderr, "bench_decode: unknown option %s\n", k);
            return 2;
        }
    }
    if (!nset) {
        split_name[0] = "off", split[0] = -1;
        split_name[1] = "512", split[1] = 512;
        nset = 2;
    }
    if (ctx < 1 || steps < 1 || threads < 1 || rounds < 1) {
        fprintf(stderr, "bench_decode: bad numbers\n");
        return 2;
    }
    llm_model *m = NULL;
    char err[256] = "";
    if (llm_load(model, &m, err, sizeof err)) {
        fprintf(stderr, "bench_decode: %s\n", err);
        return 1;
    }
    const int V = llm_get_config(m)->n_vocab;
    llm_ctx *c[MAX_SET];
    /* As written: a heads knob stays unresolved here (bench/ sits below
     * eval, whose probe ranks the heads), so the low tier is uniform; pass
     * the heads as layer-bits (`pivot heads` prints them) to time them. */
    kv_policy pol;
    if (kv_policy_parse(policy, &pol, err, sizeof err)) {
        fprintf(stderr, "bench_decode: %s\n", err);
        return 1;
    }
    for (int s = 0; s < nset; s++) {
        llm_ctx_params p = {.n_threads = threads, .max_seqs = 1, .max_ctx = ctx + steps + 1,
                            .max_batch_tokens = 1, .attn_split = split[s]};
        kv_cache *kv = NULL;
        kv_shape sh = llm_kv_shape(m, &p);
        if (kv_create(&sh, &pol, &kv, err, sizeof err) || llm_ctx_create(m, &p, kv, &c[s])) {
            fprintf(stderr, "bench_decode: %s\n", err[0] ? err : "cannot create the context");
            return 1;
        }
    }
    float *logits = malloc(sizeof(float) * V);
    double best[MAX_SET] = {0};
    printf("context %d, %d decode steps, %d threads, kv %s\n", ctx, steps, threads, policy);
    for (int r = 0; r < rounds; r++)
        for (int s = 0; s < nset; s++) {
            if (llm_ctx_fill_random(c[s], 0, ctx, 42)) return 1;
            int32_t tok = 1000;
            /* One step untimed: a compressing cache encodes the filled
             * tokens and demotes them to its budget on its first attend,
             * which a real prompt pays in its prefill, not in decode. */
            llm_batch_entry e0 = {0, ctx, 1, &tok, LLM_LOGITS_LAST};
            if (llm_decode_greedy(c[s], &e0, 1, logits, &tok)) return 1;
            double t0 = now();
            for (int i = 0; i < steps; i++) {
                llm_batch_entry e = {0, ctx + 1 + i, 1, &tok, LLM_LOGITS_LAST};
                if (llm_decode_greedy(c[s], &e, 1, logits, &tok)) return 1;
            }
            double tps = steps / (now() - t0);
            if (tps > best[s]) best[s] = tps;
            printf("round %d split %-5s %8.1f tok/s\n", r, split_name[s], tps);
        }
    for (int s = 0; s < nset; s++) printf("best split %-5s %8.1f tok/s\n", split_name[s], best[s]);
    free(logits);
    for (int s = 0; s < nset; s++) llm_ctx_free(c[s]);
    llm_free(m);
    return 0;
}
