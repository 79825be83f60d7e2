/* End to end with emulated CUDA: the `tiny` synthetic model (2 layers, GQA 2,
 * head_dim 64) through the GPU forward pass of model/llama_cuda.c with every
 * kernel executed on the CPU (emu_cuda.h), against the CPU forward pass, for
 * every cache preset: gpu_e2e.c's run_pair (chunked prompt, teacher-forced
 * greedy steps, three batched sequences) and the kv_usage comparison. */
#include "../gpu_e2e.c"

int main(void) {
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
    llm_free(m);
    printf("emu e2e: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
