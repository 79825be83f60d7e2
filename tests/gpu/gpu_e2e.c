/* End-to-end checks (CUDA logits vs the CPU forward pass on the same model)
 * and the decode benchmark of the GPU check. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_check.h"
#include "kv_mixed.h"
#include "kv_policy.h"
#include "llama.h"
#include "pverr.h"
#include "tokenizer.h"

/* The cache presets the end-to-end check runs, CUDA vs CPU. mikv in the
 * form the GPU cache serves: its rotation, 3-bit values, clipped ranges,
 * INT8 high tier and two-byte scales are CPU-only for now (docs/CUDA.md). */
#define MIKV_GPU "mikv,hi-bits=16,lo-bits=4/2,rotate=0,clip=0,scale-bits=16,value-norm=0"
static const char *presets[] = {"full", "scissorhands", MIKV_GPU, "h2o", "streaming", "quant4", "quant2"};
#define N_PRESETS (int)(sizeof presets / sizeof presets[0])

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

/* A ctx with the cache of `policy` (a kv_policy_parse spec): built on the
 * CPU and handed over, as pivot generate does; on CUDA the GPU takes the
 * policy over. The CPU side of a comparison runs the mixed cache's portable
 * kernels (force_scalar), which compute in float as the GPU does; the AVX2
 * kernels' int16 queries for the low tier (tested against them in
 * test_kv_quant) would add their own ~0.04 logit-sd differences. */
static int make_ctx_p(const llm_model *m, llm_device dev, int max_seqs, int max_ctx, int max_batch,
                      const char *policy, llm_ctx **c) {
    llm_ctx_params p = {.n_threads = 8, .max_seqs = max_seqs, .max_ctx = max_ctx,
                        .max_batch_tokens = max_batch, .device = dev};
    kv_cache *kv = NULL;
    *c = NULL;
    if (policy && strcmp(policy, "full")) {
        kv_policy pol;
        char err[256];
        kv_shape ks = llm_kv_shape(m, &p);
        if (kv_policy_parse(policy, &pol, err, sizeof err)) {
            printf("      %s\n", err);
            return PV_EINVAL;
        }
        if (pol.group > ks.head_dim) pol.group = ks.head_dim; /* as kv_create fits it */
        int r0 = dev == LLM_DEVICE_CPU && !(pol.select == KV_SELECT_NONE && pol.hi_bits == 16)
                     ? kv_create_mixed_opt(&ks, &pol, 1, &kv)
                     : kv_create(&ks, &pol, &kv, err, sizeof err);
        if (r0) {
            printf("      %s: cannot create the cache (%d)\n", policy, r0);
            return PV_EINVAL;
        }
    }
    int rc = llm_ctx_create(m, &p, kv, c);
    if (!rc && llm_ctx_device(*c) != dev) rc = PV_EINVAL;
    return rc;
}

static int make_ctx(const llm_model *m, llm_device dev, int max_ctx, const char *policy, llm_ctx **c) {
    return make_ctx_p(m, dev, 4, max_ctx, 64, policy, c);
}

/* kv_seq_usage of the GPU cache == the CPU cache's for every slot: the
 * accounting follows the same rules (and the tier counts the same plan). */
static int usage_equal(llm_ctx *cc, llm_ctx *gc, char *why, size_t len) {
    for (int s = 0; s < 4; s++) {
        kv_usage a, b;
        kv_seq_usage(llm_ctx_kv(cc), s, &a);
        kv_seq_usage(llm_ctx_kv(gc), s, &b);
        if (a.bytes_stored != b.bytes_stored || a.n_tokens != b.n_tokens || a.n_high != b.n_high ||
            a.n_low != b.n_low || a.n_dropped != b.n_dropped || a.bytes_fp16 != b.bytes_fp16) {
            snprintf(why, len, "slot %d: CPU %zu B (%d high, %d low, %d dropped), GPU %zu B (%d, %d, %d)",
                     s, a.bytes_stored, a.n_high, a.n_low, a.n_dropped, b.bytes_stored, b.n_high,
                     b.n_low, b.n_dropped);
            return 0;
        }
    }
    kv_usage a;
    kv_seq_usage(llm_ctx_kv(cc), 0, &a);
    snprintf(why, len, "slot 0: %zu B = %.2f of FP16, %d high, %d low, %d dropped", a.bytes_stored,
             a.bytes_fp16 ? (double)a.bytes_stored / a.bytes_fp16 : 0, a.n_high, a.n_low, a.n_dropped);
    return 1;
}

/* One sequence: prompt in chunks of 32 (all logits), then n_gen greedy steps
 * teacher-forced with the CPU's choice. Then 4 sequences of different prompt
 * lengths prefilled in one batch and decoded together for 16 steps.
 * gpu_logits (may be NULL) receives the GPU's prompt logits. */
static int run_pair(const llm_model *mc, const llm_model *mg, const char *policy,
                    const int32_t *prompt, int n_prompt, int n_gen, stats *st,
                    float *gpu_prompt_logits, char *out_text, size_t out_len, int *acct_ok,
                    char *acct, size_t acct_len) {
    const int V = llm_get_config(mc)->n_vocab;
    llm_ctx *cc = NULL, *gc = NULL;
    int rc = make_ctx(mc, LLM_DEVICE_CPU, n_prompt + n_gen + 24, policy, &cc);
    if (!rc) rc = make_ctx(mg, LLM_DEVICE_CUDA, n_prompt + n_gen + 24, policy, &gc);
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
    if (!rc && acct_ok) *acct_ok = usage_equal(cc, gc, acct, acct_len);
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
    printf("\n== end to end: synthetic smollm2-135m shape, CUDA vs CPU, every cache preset ==\n");
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
        rc = run_pair(m, m, "full", prompt, n_prompt, n_gen, &st, g1, NULL, 0, NULL, NULL, 0);
        if (rc) check(0, specs[k], "rc %d (%s): %s", rc, pv_strerror(rc), pvc_last_error());
        else report(specs[k], &st, 99.0, 0.25);
        /* every other preset: the mixed cache on the GPU vs kv_mixed.c. The
         * prompt (100) and generation (60) are long enough for every budget
         * to demote (mikv: 8% of 160 < 20 protected, so from token 21 on).
         * Pass: greedy agreement >= 99% (the bar); logits within 1.0
         * sd (a tracker decision taken on a probability within float
         * rounding of the threshold may demote a different token); the
         * kv_usage of every slot equal, byte for byte. */
        for (int pi = 1; pi < N_PRESETS; pi++) {
            /* the second shape (head_dim 128, GQA 4, NEOX, biases): two presets */
            if (k == 1 && strcmp(presets[pi], MIKV_GPU) && strcmp(presets[pi], "h2o")) continue;
            stats sp = {0};
            int acct_ok = 0;
            char acct[256] = "", nm[96];
            double t1 = now_s();
            int rp = run_pair(m, m, presets[pi], prompt, n_prompt, n_gen, &sp, NULL, NULL, 0,
                              &acct_ok, acct, sizeof acct);
            snprintf(nm, sizeof nm, "%s %s", specs[k], presets[pi]);
            if (rp) {
                check(0, nm, "rc %d (%s): %s", rp, pv_strerror(rp), pvc_last_error());
                continue;
            }
            report(nm, &sp, 99.0, 1.0);
            snprintf(nm, sizeof nm, "%s %s kv_usage == CPU", specs[k], presets[pi]);
            check(acct_ok, nm, "%s (%.1f s)", acct, now_s() - t1);
        }
        /* the same model generated on the GPU gives the same logits, bit for bit */
        stats st2 = {0};
        float *g2 = malloc(sizeof(float) * n_prompt * V);
        if (!rc) rc = run_pair(m, mg, "full", prompt, n_prompt, 0, &st2, g2, NULL, 0, NULL, NULL, 0);
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
    rc = run_pair(m, m, "full", ids, n + bos, 40, &st, NULL, gen, sizeof gen, NULL, NULL, 0);
    if (rc) check(0, "real model", "rc %d: %s", rc, pvc_last_error());
    else report("SmolLM2-135M Q4_1", &st, 95.0, 0.5);
    printf("      CPU greedy ids: %s\n", gen);
    free(ids);
    llm_free(m);
    return rc;
}

/* Timed greedy decode steps with `B` sequences at `ctx` tokens of random
 * cache (llm_ctx_fill_random: the mixed cache gets its budget high, the rest
 * low). Returns seconds per step (0 on failure). */
static double time_decode(llm_ctx *cx, int B, int ctx, int warm, int steps) {
    int32_t *toks = malloc(sizeof(int32_t) * B);
    llm_batch_entry *es = malloc(sizeof *es * B);
    int rc = toks && es ? PV_OK : PV_ENOMEM;
    for (int s = 0; s < B && !rc; s++) rc = llm_ctx_fill_random(cx, s, ctx, 1000 + s);
    for (int s = 0; s < B && !rc; s++) toks[s] = 1 + s % 1000;
    double tt = 0;
    for (int i = 0; !rc && i < warm + steps; i++) {
        for (int s = 0; s < B; s++)
            es[s] = (llm_batch_entry){.seq = s, .pos = ctx + i, .n_tokens = 1, .tokens = &toks[s],
                                      .logits = LLM_LOGITS_LAST};
        double a = now_s();
        rc = llm_decode_greedy(cx, es, B, NULL, toks);
        if (i >= warm) tt += now_s() - a;
    }
    free(toks);
    free(es);
    if (rc) {
        check(0, "bench decode", "batch %d: rc %d (%s): %s", B, rc, pv_strerror(rc), pvc_last_error());
        return 0;
    }
    return tt / steps;
}

/* Device bytes a sequence slot costs with `policy` at `ctx` tokens: the
 * difference in free memory between ctxs of 8 and 24 slots (weights,
 * activations and scratch cancel out), and the free memory left beside 8. */
static int slot_bytes(pvc_ctx *pc, const llm_model *m, const char *policy, int ctx, int max_batch,
                      double *per_seq, double *free_at8) {
    size_t f8 = 0, f24 = 0, tot = 0;
    llm_ctx *cx = NULL;
    int rc = make_ctx_p(m, LLM_DEVICE_CUDA, 8, ctx, max_batch, policy, &cx);
    if (!rc) rc = pvc_mem_info(pc, &f8, &tot);
    llm_ctx_free(cx);
    cx = NULL;
    if (!rc) rc = make_ctx_p(m, LLM_DEVICE_CUDA, 24, ctx, max_batch, policy, &cx);
    if (!rc) rc = pvc_mem_info(pc, &f24, &tot);
    llm_ctx_free(cx);
    if (rc) return rc;
    *per_seq = ((double)f8 - (double)f24) / 16.0;
    *free_at8 = (double)f8;
    return *per_seq > 0 ? PV_OK : PV_EIO;
}

/* Decode tokens/s of the Llama-3-8B shape (FP16 weights generated on the
 * GPU) with every sequence at a 2k context, FP16 (`full`) and `mikv` caches,
 * and the fraction of the measured copy bandwidth it reaches; then the
 * largest batch each cache fits at 4k context and the total throughput there. */
int run_bench(int quick) {
    printf("\n== decode benchmark: llama3-8b shape, FP16 weights, context 2048, full and mikv ==\n");
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
    const char *pols[2] = {"full", MIKV_GPU};
    for (int pi = 0; pi < 2 && pc; pi++) {
        llm_ctx *cx = NULL;
        double t0 = now_s();
        rc = make_ctx_p(m, LLM_DEVICE_CUDA, 64, ctx + warm + steps + 8, 64, pols[pi], &cx);
        if (rc) {
            check(0, "bench ctx", "%s: rc %d (%s): %s", pols[pi], rc, pv_strerror(rc), pvc_last_error());
            continue;
        }
        printf("%s: weights %.2f GB generated on the GPU, ctx for 64 x %d tokens: %.1f s\n",
               pols[pi], wbytes / 1e9, ctx + warm + steps + 8, now_s() - t0);
        printf("%6s %6s %12s %12s %10s %10s\n", "cache", "batch", "tokens/s", "ms/step", "GB/s",
               "of copy");
        for (int bi = 0; bi < 3; bi++) {
            int B = batches[bi];
            double step = time_decode(cx, B, ctx, warm, steps);
            if (step <= 0) break;
            /* bytes the step must read: weights + the cache as kv_usage counts it */
            kv_usage u;
            kv_seq_usage(llm_ctx_kv(cx), 0, &u);
            double bytes = wbytes + (double)B * u.bytes_stored;
            double gbs = bytes / step / 1e9;
            printf("%6s %6d %12.1f %12.2f %10.0f %9.0f%%\n", pols[pi], B, B / step, step * 1e3, gbs,
                   bw > 0 ? 100 * gbs / bw : 0);
            char key[64];
            snprintf(key, sizeof key, pi ? "pivot_mikv_b%d" : "pivot_b%d", B);
            tsv(key, "%.1f\t%.2f\t%.0f\t%.0f", B / step, step * 1e3, gbs, bw > 0 ? 100 * gbs / bw : 0);
        }
        llm_ctx_free(cx);
    }
    /* Largest batch at 4k: slot cost measured from free memory, 1 GiB kept
     * free for activations growing with the batch; then decode at that batch
     * (capped at 512 sequences to bound the run). */
    const int ctx4 = 4096, ctx4_alloc = 4096 + warm + 8 + 8;
    int cap[2] = {0, 0};
    double tps[2] = {0, 0};
    for (int pi = 0; pi < 2 && pc; pi++) {
        double per = 0, f8 = 0;
        int r2 = slot_bytes(pc, m, pols[pi], ctx4_alloc, 512, &per, &f8);
        if (r2) {
            check(0, "fit at 4k", "%s: rc %d (%s): %s", pols[pi], r2, pv_strerror(r2), pvc_last_error());
            continue;
        }
        cap[pi] = 8 + (int)((f8 - 1073741824.0) / per);
        if (cap[pi] > 512) cap[pi] = 512;
        printf("%s: %.1f MB per sequence slot at %d tokens; largest batch %d\n", pols[pi], per / 1e6,
               ctx4_alloc, cap[pi]);
        llm_ctx *cx = NULL;
        r2 = make_ctx_p(m, LLM_DEVICE_CUDA, cap[pi], ctx4_alloc, cap[pi], pols[pi], &cx);
        if (r2) {
            check(0, "fit at 4k", "%s: %d sequences do not fit after all: rc %d (%s): %s", pols[pi],
                  cap[pi], r2, pv_strerror(r2), pvc_last_error());
            continue;
        }
        double step = time_decode(cx, cap[pi], ctx4, warm, quick ? 2 : 6);
        llm_ctx_free(cx);
        if (step <= 0) continue;
        tps[pi] = cap[pi] / step;
        printf("%s: batch %d at 4k: %.1f tokens/s total (%.1f ms/step)\n", pols[pi], cap[pi], tps[pi],
               step * 1e3);
        tsv(pi ? "mikv_max_seqs_4k" : "full_max_seqs_4k", "%d\t%.1f\t%.2f\t%.1f", cap[pi], tps[pi],
            step * 1e3, per / 1e6);
    }
    if (cap[0] && cap[1]) {
        /* the goals, reported (not pass/fail: they are goals, not bars) */
        printf("goal: mikv fits %.2fx the sequences of full at 4k (goal >= 3x): %s\n",
               (double)cap[1] / cap[0], cap[1] >= 3 * cap[0] ? "met" : "NOT met");
        printf("goal: mikv total throughput at its largest batch %.2fx full's (goal > 1x): %s\n",
               tps[0] > 0 ? tps[1] / tps[0] : 0, tps[1] > tps[0] ? "met" : "NOT met");
        tsv("goal_fit_ratio", "%.2f", (double)cap[1] / cap[0]);
        tsv("goal_tps_ratio", "%.2f", tps[0] > 0 ? tps[1] / tps[0] : 0);
    }
    llm_free(m);
    pvc_destroy(pc);
    return rc;
}
