/* End-to-end checks (CUDA logits vs the CPU forward pass on the same model)
 * and the decode benchmark of the GPU check. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_check.h"
#include "llama.h"
#include "pverr.h"
#include "tokenizer.h"

typedef struct {
    long rows, agree;
    double max_err, sum_err; /* |gpu - cpu| / std(cpu row), per row max */
} stats;

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static void compare_rows(stats *st, const float *cpu, const float *gpu, int rows, int V) {
    for (int r = 0; r < rows; r++) {
        const float *c = cpu + (size_t)r * V, *g = gpu + (size_t)r * V;
        double mean = 0, var = 0, md = 0;
        for (int i = 0; i < V; i++) mean += c[i];
        mean /= V;
        for (int i = 0; i < V; i++) var += (c[i] - mean) * (c[i] - mean);
        double sd = sqrt(var / V) + 1e-12;
        for (int i = 0; i < V; i++) {
            double d = fabs((double)g[i] - c[i]);
            if (!(d == d)) d = INFINITY;
            if (d > md) md = d;
        }
        md /= sd;
        st->rows++;
        st->agree += argmax(c, V) == argmax(g, V);
        st->sum_err += md;
        if (md > st->max_err) st->max_err = md;
    }
}

static int make_ctx(const llm_model *m, llm_device dev, int max_ctx, llm_ctx **c) {
    llm_ctx_params p = {.n_threads = 0, .max_seqs = 4, .max_ctx = max_ctx, .max_batch_tokens = 64,
                        .device = dev};
    int rc = llm_ctx_create(m, &p, NULL, c);
    if (!rc && llm_ctx_device(*c) != dev) rc = PV_EINVAL;
    return rc;
}

/* One sequence: prompt in chunks of 32 (all logits), then n_gen greedy steps
 * teacher-forced with the CPU's choice. Then 4 sequences of different prompt
 * lengths prefilled in one batch and decoded together for 16 steps.
 * gpu_logits (may be NULL) receives the GPU's prompt logits. */
static int run_pair(const llm_model *mc, const llm_model *mg, const int32_t *prompt, int n_prompt,
                    int n_gen, stats *st, float *gpu_prompt_logits, char *out_text, size_t out_len) {
    const int V = llm_get_config(mc)->n_vocab;
    llm_ctx *cc = NULL, *gc = NULL;
    int rc = make_ctx(mc, LLM_DEVICE_CPU, n_prompt + n_gen + 24, &cc);
    if (!rc) rc = make_ctx(mg, LLM_DEVICE_CUDA, n_prompt + n_gen + 24, &gc);
    float *lc = malloc(sizeof(float) * 64 * V), *lg = malloc(sizeof(float) * 64 * V);
    if (!rc && (!lc || !lg)) rc = PV_ENOMEM;
    for (int p = 0; !rc && p < n_prompt; p += 32) {
        int n = n_prompt - p < 32 ? n_prompt - p : 32;
        llm_batch_entry e = {.seq = 0, .pos = p, .n_tokens = n, .tokens = prompt + p, .logits = LLM_LOGITS_ALL};
        rc = llm_decode(cc, &e, 1, lc);
        if (!rc) rc = llm_decode(gc, &e, 1, lg);
        if (!rc) compare_rows(st, lc, lg, n, V);
        if (!rc && gpu_prompt_logits) memcpy(gpu_prompt_logits + (size_t)p * V, lg, sizeof(float) * n * V);
    }
    int32_t tok = 0;
    size_t used = 0;
    if (!rc) tok = argmax(lc + (size_t)((n_prompt - 1) % 32) * V, V);
    for (int i = 0; !rc && i < n_gen; i++) {
        if (out_text && used + 12 < out_len) used += snprintf(out_text + used, out_len - used, "%d ", tok);
        llm_batch_entry e = {.seq = 0, .pos = n_prompt + i, .n_tokens = 1, .tokens = &tok, .logits = LLM_LOGITS_LAST};
        int32_t gt = -1;
        rc = llm_decode(cc, &e, 1, lc);
        if (!rc) rc = llm_decode_greedy(gc, &e, 1, lg, &gt);
        if (!rc) compare_rows(st, lc, lg, 1, V);
        if (!rc && gt != argmax(lg, V)) {
            printf("FAIL  GPU greedy id %d != argmax of its own logits %d\n", gt, argmax(lg, V));
            g_failed++;
        }
        tok = argmax(lc, V);
    }
    /* batched: seqs 1..3 of lengths 5, 13, 21 in one call, then decode together */
    int lens[3] = {5, 13, 21}, pos[3];
    int32_t toks[3];
    llm_batch_entry es[3];
    for (int s = 0; s < 3; s++) {
        int L = lens[s] < n_prompt ? lens[s] : n_prompt;
        es[s] = (llm_batch_entry){.seq = s + 1, .pos = 0, .n_tokens = L, .tokens = prompt + s, .logits = LLM_LOGITS_LAST};
        pos[s] = L;
    }
    if (!rc) rc = llm_decode(cc, es, 3, lc);
    if (!rc) rc = llm_decode(gc, es, 3, lg);
    if (!rc) compare_rows(st, lc, lg, 3, V);
    for (int i = 0; !rc && i < 16; i++) {
        for (int s = 0; s < 3; s++) {
            toks[s] = argmax(lc + (size_t)s * V, V);
            es[s] = (llm_batch_entry){.seq = s + 1, .pos = pos[s]++, .n_tokens = 1, .tokens = &toks[s], .logits = LLM_LOGITS_LAST};
        }
        rc = llm_decode(cc, es, 3, lc);
        if (!rc) rc = llm_decode(gc, es, 3, lg);
        if (!rc) compare_rows(st, lc, lg, 3, V);
    }
    free(lc);
    free(lg);
    llm_ctx_free(cc);
    llm_ctx_free(gc);
    return rc;
}

static void report(const char *what, const stats *st, double min_agree, double max_err) {
    double agree = st->rows ? 100.0 * st->agree / st->rows : 0;
    double mean = st->rows ? st->sum_err / st->rows : 0;
    check(agree >= min_agree && st->max_err <= max_err, what,
          "greedy agree %.1f%% of %ld rows (need >= %.0f%%), max|dlogit|/sd %.4f (tol %.2f), mean %.4f",
          agree, st->rows, min_agree, st->max_err, max_err, mean);
    char key[96];
    snprintf(key, sizeof key, "e2e %s", what);
    tsv(key, "agree %.1f%%, max err %.4f sd, mean %.4f sd", agree, st->max_err, mean);
}

int run_e2e_synthetic(void) {
    printf("\n== end to end: synthetic smollm2-135m shape, CUDA vs CPU ==\n");
    static const char *specs[] = {"smollm2-135m", "tiny,neox=1,bias=1,heads=8,kv=2,head_dim=128,embd=512"};
    for (int k = 0; k < 2; k++) {
        char err[256] = "";
        llm_model *m = NULL, *mg = NULL;
        double t0 = now_s();
        int rc = llm_synthetic(specs[k], 7, 1, &m, err, sizeof err);
        if (!rc) rc = llm_synthetic(specs[k], 7, 0, &mg, err, sizeof err);
        if (rc) {
            check(0, specs[k], "cannot create: %s", err);
            continue;
        }
        const int V = llm_get_config(m)->n_vocab, n_prompt = 100, n_gen = 60;
        int32_t *prompt = malloc(sizeof(int32_t) * n_prompt);
        rng r = {.s = 99};
        for (int i = 0; i < n_prompt; i++) prompt[i] = rng_int(&r, V);
        stats st = {0};
        float *g1 = malloc(sizeof(float) * n_prompt * V);
        rc = run_pair(m, m, prompt, n_prompt, n_gen, &st, g1, NULL, 0);
        if (rc) check(0, specs[k], "rc %d (%s): %s", rc, pv_strerror(rc), pvc_last_error());
        else report(specs[k], &st, 99.0, 0.25);
        /* the same model generated on the GPU gives the same logits, bit for bit */
        stats st2 = {0};
        float *g2 = malloc(sizeof(float) * n_prompt * V);
        if (!rc) rc = run_pair(m, mg, prompt, n_prompt, 0, &st2, g2, NULL, 0);
        char nm[128];
        snprintf(nm, sizeof nm, "%s generated on GPU == uploaded", specs[k]);
        check(!rc && !memcmp(g1, g2, sizeof(float) * n_prompt * V), nm, "rc %d", rc);
        printf("      (%.1f s)\n", now_s() - t0);
        free(g1), free(g2), free(prompt);
        llm_free(m);
        llm_free(mg);
    }
    return 0;
}

int run_e2e_model(const char *path) {
    printf("\n== end to end: %s, CUDA (FP16 dequantized) vs CPU (quantized kernels) ==\n", path);
    char err[256] = "";
    llm_model *m = NULL;
    int rc = llm_load(path, &m, err, sizeof err);
    if (rc) {
        check(0, "load model", "%s", err);
        return rc;
    }
    const char *text = "The capital of France is Paris. The capital of Germany is Berlin. "
                       "The capital of Italy is";
    const tok_vocab *v = llm_get_vocab(m);
    int n = tok_encode(v, text, strlen(text), 0, NULL, 0);
    int32_t *ids = malloc(sizeof(int32_t) * (n + 1));
    int bos = tok_add_bos(v) && tok_bos(v) >= 0;
    if (bos) ids[0] = tok_bos(v);
    tok_encode(v, text, strlen(text), 0, ids + bos, n);
    stats st = {0};
    char gen[1024] = "";
    rc = run_pair(m, m, ids, n + bos, 40, &st, NULL, gen, sizeof gen);
    if (rc) check(0, "real model", "rc %d: %s", rc, pvc_last_error());
    else report("SmolLM2-135M Q4_1", &st, 95.0, 0.5);
    printf("      CPU greedy ids: %s\n", gen);
    free(ids);
    llm_free(m);
    return rc;
}

/* Decode tokens/s of the Llama-3-8B shape (FP16 weights generated on the
 * GPU) with every sequence at a 2k context, and the fraction of the measured
 * copy bandwidth it reaches. */
int run_bench(int quick) {
    printf("\n== decode benchmark: llama3-8b shape, FP16 weights, FP16 KV, context 2048 ==\n");
    const int ctx = 2048, steps = quick ? 4 : 16, warm = 3, batches[3] = {1, 16, 64};
    pvc_ctx *pc = NULL;
    char err[256] = "";
    double bw = 0;
    if (pvc_create(0, &pc, err, sizeof err) || pvc_copy_bandwidth(pc, (size_t)1 << 30, 20, &bw)) {
        check(0, "copy bandwidth", "%s %s", err, pvc_last_error());
    } else {
        printf("device-to-device cudaMemcpy: %.0f GB/s (read + write)\n", bw);
        tsv("copy_bw_gbps", "%.0f", bw);
    }
    llm_model *m = NULL;
    int rc = llm_synthetic("llama3-8b", 1, 0, &m, err, sizeof err);
    if (rc) {
        check(0, "bench model", "%s", err);
        pvc_destroy(pc);
        return rc;
    }
    const llm_config *c = llm_get_config(m);
    const double D = c->n_embd, hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    double wbytes = 2.0 * (c->n_layers * ((qd + 2 * kvd) * D + D * qd + 3.0 * c->n_ff * D) +
                           (double)c->n_vocab * D);
    double kv_tok = 2.0 * 2 * c->n_layers * kvd; /* K and V, FP16 */
    llm_ctx *cx = NULL;
    llm_ctx_params p = {.max_seqs = 64, .max_ctx = ctx + warm + steps + 8, .max_batch_tokens = 64,
                        .device = LLM_DEVICE_CUDA};
    double t0 = now_s();
    rc = llm_ctx_create(m, &p, NULL, &cx);
    if (rc) {
        check(0, "bench ctx", "rc %d (%s): %s", rc, pv_strerror(rc), pvc_last_error());
        llm_free(m);
        pvc_destroy(pc);
        return rc;
    }
    printf("weights %.2f GB generated on the GPU, KV %.2f GB allocated: %.1f s\n", wbytes / 1e9,
           kv_tok * p.max_ctx * p.max_seqs / 1e9, now_s() - t0);
    size_t fr = 0, tot = 0;
    if (pc && !pvc_mem_info(pc, &fr, &tot)) {
        double cap = (fr + kv_tok * p.max_ctx * p.max_seqs - (1 << 30)) / (kv_tok * 4096);
        printf("largest batch at 4k context with the FP16 cache (from free memory): ~%.0f sequences\n", cap);
        tsv("full_max_seqs_4k", "%.0f", cap);
    }
    printf("%6s %12s %12s %10s %10s\n", "batch", "tokens/s", "ms/step", "GB/s", "of copy");
    int32_t toks[64];
    llm_batch_entry es[64];
    for (int bi = 0; bi < 3 && !rc; bi++) {
        int B = batches[bi];
        for (int s = 0; s < B && !rc; s++) rc = llm_ctx_fill_random(cx, s, ctx, 1000 + s);
        for (int s = 0; s < B; s++) toks[s] = 1 + s;
        double tt = 0;
        for (int i = 0; !rc && i < warm + steps; i++) {
            for (int s = 0; s < B; s++)
                es[s] = (llm_batch_entry){.seq = s, .pos = ctx + i, .n_tokens = 1, .tokens = &toks[s],
                                          .logits = LLM_LOGITS_LAST};
            double a = now_s();
            rc = llm_decode_greedy(cx, es, B, NULL, toks);
            if (i >= warm) tt += now_s() - a;
        }
        if (rc) {
            check(0, "bench decode", "batch %d: rc %d (%s): %s", B, rc, pv_strerror(rc), pvc_last_error());
            break;
        }
        double step = tt / steps, bytes = wbytes + B * (ctx + warm + steps / 2.0) * kv_tok;
        double gbs = bytes / step / 1e9;
        printf("%6d %12.1f %12.2f %10.0f %9.0f%%\n", B, B / step, step * 1e3, gbs, bw > 0 ? 100 * gbs / bw : 0);
        char key[64];
        snprintf(key, sizeof key, "pivot_b%d", B);
        tsv(key, "%.1f\t%.2f\t%.0f\t%.0f", B / step, step * 1e3, gbs, bw > 0 ? 100 * gbs / bw : 0);
    }
    llm_ctx_free(cx);
    llm_free(m);
    pvc_destroy(pc);
    return rc;
}
