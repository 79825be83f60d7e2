/* End to end with emulated CUDA: the `tiny` synthetic model (2 layers, GQA 2,
 * head_dim 64) through the GPU forward pass of model/llama_cuda.c with every
 * kernel executed on the CPU (emu_cuda.h), against the CPU forward pass, for
 * every cache preset: gpu_e2e.c's run_pair (chunked prompt, teacher-forced
 * greedy steps, three batched sequences) and the kv_usage comparison. */
#include "../gpu_e2e.c"

#include <string.h>

/* emu_e2e [NAME...]: only the named presets (and "split"); all by default.
 * A name matches a spec by its preset (the part before the first comma). */
static int want(int argc, char **argv, const char *name) {
    if (argc < 2) return 1;
    size_t n = strcspn(name, ",");
    for (int i = 1; i < argc; i++)
        if (strlen(argv[i]) == n && !strncmp(argv[i], name, n)) return 1;
    return 0;
}

int main(int argc, char **argv) {
    char err[256] = "";
    llm_model *m = NULL;
    if (llm_synthetic("tiny", 7, 1, &m, err, sizeof err)) {
        printf("FAIL  tiny model: %s\n", err);
        return 1;
    }
    const int V = llm_get_config(m)->n_vocab, n_prompt = 100, n_gen = 60;
    int32_t prompt[100];
    rng r = {.s = 99};
    for (int i = 0; i < n_prompt; i++) prompt[i] = rng_int(&r, V);
    for (int pi = 0; pi < N_PRESETS; pi++) {
        if (!want(argc, argv, presets[pi])) continue;
        stats st = {0};
        int acct_ok = 0;
        char acct[256] = "", nm[96];
        double t0 = now_s();
        int rc = run_pair(m, m, presets[pi], prompt, n_prompt, n_gen, &st, NULL, NULL, 0, &acct_ok,
                          acct, sizeof acct);
        snprintf(nm, sizeof nm, "emu tiny %s", presets[pi]);
        if (rc) {
            check(0, nm, "rc %d (%s): %s", rc, pv_strerror(rc), pvc_last_error());
            continue;
        }
        report(nm, &st, 99.0, pi ? 1.0 : 0.25);
        snprintf(nm, sizeof nm, "emu tiny %s kv_usage == CPU", presets[pi]);
        check(acct_ok, nm, "%s (%.1f s)", acct, now_s() - t0);
    }
    /* A call with more rows per sequence than the mixed cache's pass takes
     * (64) runs as several passes; with a budget no call reaches, the result
     * must be the CPU's. Two entries: 100 rows (all logits) + 70 (last). */
    if (want(argc, argv, "split")) {
        llm_ctx *cc = NULL, *gc = NULL;
        const char *pol = "h2o,budget=400";
        int rc = make_ctx_p(m, LLM_DEVICE_CPU, 2, 200, 192, pol, &cc);
        if (!rc) rc = make_ctx_p(m, LLM_DEVICE_CUDA, 2, 200, 192, pol, &gc);
        float *lc = malloc(sizeof(float) * 101 * V), *lg = malloc(sizeof(float) * 101 * V);
        int32_t ic[101], ig[101];
        llm_batch_entry es[2] = {
            {.seq = 0, .pos = 0, .n_tokens = 100, .tokens = prompt, .logits = LLM_LOGITS_ALL},
            {.seq = 1, .pos = 0, .n_tokens = 70, .tokens = prompt + 5, .logits = LLM_LOGITS_LAST}};
        if (!rc) rc = llm_decode_greedy(cc, es, 2, lc, ic);
        if (!rc) rc = llm_decode_greedy(gc, es, 2, lg, ig);
        stats st = {0};
        int ids_ok = 1;
        if (!rc) compare_rows(&st, lc, lg, 101, V);
        for (int i = 0; !rc && i < 101; i++) ids_ok &= ig[i] == argmax(lg + (size_t)i * V, V);
        if (rc) check(0, "emu split call", "rc %d (%s): %s", rc, pv_strerror(rc), pvc_last_error());
        else
            check(st.agree * 100 >= 99 * st.rows && st.max_err <= 0.25 && ids_ok,
                  "emu split call (100 + 70 rows, passes of 64)",
                  "101 rows, greedy agree %ld, max|dlogit|/sd %.4f, ids %s", st.agree, st.max_err,
                  ids_ok ? "== argmax" : "DIFFER");
        free(lc), free(lg);
        llm_ctx_free(cc);
        llm_ctx_free(gc);
    }
    llm_free(m);
    printf("emu e2e: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
