/* Device selection and synthetic models. Everything here runs on the CPU;
 * the CUDA comparisons skip, visibly, where no GPU is found (the full GPU
 * check is tests/gpu/run.sh). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "llama.h"
#include "pverr.h"

static llm_model *synth(const char *spec, uint64_t seed, int host) {
    llm_model *m = NULL;
    char err[256] = "";
    cr_assert_eq(llm_synthetic(spec, seed, host, &m, err, sizeof err), 0, "%s", err);
    return m;
}

static float *logits_of(const llm_model *m, llm_device dev, const int32_t *ids, int n, int *rc) {
    llm_ctx_params p = {.n_threads = 2, .max_seqs = 2, .max_ctx = 64, .max_batch_tokens = 16, .device = dev};
    llm_ctx *c = NULL;
    int V = llm_get_config(m)->n_vocab;
    float *lg = malloc(sizeof(float) * n * V);
    *rc = llm_ctx_create(m, &p, NULL, &c);
    for (int i = 0; !*rc && i < n; i += 16) {
        int k = n - i < 16 ? n - i : 16;
        llm_batch_entry e = {.seq = 0, .pos = i, .n_tokens = k, .tokens = ids + i, .logits = LLM_LOGITS_ALL};
        *rc = llm_decode(c, &e, 1, lg + (size_t)i * V);
    }
    llm_ctx_free(c);
    return lg;
}

Test(device, parse_names) {
    llm_device d;
    cr_assert_eq(llm_device_parse("cpu", &d), 0);
    cr_assert_eq(d, LLM_DEVICE_CPU);
    cr_assert_eq(llm_device_parse("auto", &d), 0);
    cr_assert_eq(d, LLM_DEVICE_AUTO);
    cr_assert_eq(llm_device_parse("cuda", &d), 0);
    cr_assert_eq(d, LLM_DEVICE_CUDA);
    cr_assert_eq(llm_device_parse("gpu", &d), PV_EINVAL);
    cr_assert_str_eq(llm_device_name(LLM_DEVICE_CUDA), "cuda");
    llm_ctx_params p = {0};
    cr_assert_eq(p.device, LLM_DEVICE_CPU, "zero-initialized params must stay on the CPU");
}

Test(device, synthetic_shapes) {
    llm_model *m = synth("llama3-8b", 1, 0); /* no host weights: instant */
    const llm_config *c = llm_get_config(m);
    cr_assert_eq(c->n_layers, 32);
    cr_assert_eq(c->n_embd, 4096);
    cr_assert_eq(c->n_ff, 14336);
    cr_assert_eq(c->n_kv_heads, 8);
    cr_assert_eq(c->head_dim, 128);
    cr_assert_eq(c->n_vocab, 128256);
    cr_assert_eq(c->tied_embeddings, 0);
    cr_assert_null(llm_get_vocab(m));
    cr_assert(llm_is_synthetic(m));
    llm_free(m);
    m = synth("smollm2-135m,layers=2", 1, 0);
    cr_assert_eq(llm_get_config(m)->n_layers, 2);
    cr_assert_eq(llm_get_config(m)->n_heads, 9);
    cr_assert_eq(llm_get_config(m)->tied_embeddings, 1);
    llm_free(m);
    m = synth("layers=3,embd=128,ff=256,heads=4,kv=1,vocab=77,neox=1,bias=1", 1, 0);
    cr_assert_eq(llm_get_config(m)->head_dim, 32);
    cr_assert_eq(llm_get_config(m)->arch, LLM_ARCH_QWEN2);
    llm_free(m);
    char err[256] = "";
    cr_assert_eq(llm_synthetic("llama9-1t", 1, 0, &m, err, sizeof err), PV_ENOTFOUND);
    cr_assert(strstr(err, "unknown shape"), "%s", err);
    cr_assert_eq(llm_synthetic("tiny,heads=3,kv=2", 1, 0, &m, err, sizeof err), PV_EINVAL);
    cr_assert_eq(llm_synthetic("tiny,colour=7", 1, 0, &m, err, sizeof err), PV_EINVAL);
    cr_assert(strstr(err, "unknown key"), "%s", err);
}

Test(device, synthetic_forward_is_deterministic) {
    int32_t ids[24];
    for (int i = 0; i < 24; i++) ids[i] = (i * 37) % 1000;
    llm_model *a = synth("tiny", 5, 1), *b = synth("tiny", 5, 1), *c = synth("tiny", 6, 1);
    int rc, V = 1000;
    float *la = logits_of(a, LLM_DEVICE_CPU, ids, 24, &rc);
    cr_assert_eq(rc, 0);
    float *lb = logits_of(b, LLM_DEVICE_CPU, ids, 24, &rc);
    float *lc = logits_of(c, LLM_DEVICE_CPU, ids, 24, &rc);
    cr_assert_eq(memcmp(la, lb, sizeof(float) * 24 * V), 0, "same seed, same logits");
    cr_assert_neq(memcmp(la, lc, sizeof(float) * 24 * V), 0, "another seed, other weights");
    double ss = 0;
    for (int i = 0; i < 24 * V; i++) {
        cr_assert(isfinite(la[i]));
        ss += (double)la[i] * la[i];
    }
    cr_assert_gt(ss / (24.0 * V), 1e-3, "random weights keep activations alive");
    free(la), free(lb), free(lc);
    llm_free(a), llm_free(b), llm_free(c);
}

Test(device, greedy_and_fill_on_cpu) {
    llm_model *m = synth("tiny", 3, 1);
    llm_ctx_params p = {.n_threads = 2, .max_seqs = 2, .max_ctx = 64, .max_batch_tokens = 16};
    llm_ctx *c = NULL;
    cr_assert_eq(llm_ctx_create(m, &p, NULL, &c), 0);
    cr_assert_eq(llm_ctx_device(c), LLM_DEVICE_CPU);
    int32_t ids[4] = {1, 2, 3, 4}, tok = -1;
    float *lg = malloc(sizeof(float) * 1000);
    llm_batch_entry e = {.seq = 0, .pos = 0, .n_tokens = 4, .tokens = ids, .logits = LLM_LOGITS_LAST};
    cr_assert_eq(llm_decode_greedy(c, &e, 1, lg, &tok), 0);
    int best = 0;
    for (int i = 1; i < 1000; i++)
        if (lg[i] > lg[best]) best = i;
    cr_assert_eq(tok, best);
    cr_assert_eq(llm_ctx_fill_random(c, 1, 40, 9), 0);
    cr_assert_eq(kv_seq_pos(llm_ctx_kv(c), 1), 40);
    e = (llm_batch_entry){.seq = 1, .pos = 40, .n_tokens = 1, .tokens = ids, .logits = LLM_LOGITS_LAST};
    cr_assert_eq(llm_decode_greedy(c, &e, 1, NULL, &tok), 0); /* no caller buffer */
    cr_assert(tok >= 0 && tok < 1000);
    free(lg);
    llm_ctx_free(c);
    llm_free(m);
}

Test(device, cuda_refused_without_gpu) {
    char why[256] = "";
    if (pvdev_cuda_count(why, sizeof why) > 0) cr_skip_test("a GPU is present: see cuda_matches_cpu");
    llm_model *m = synth("tiny", 1, 1);
    llm_ctx_params p = {.n_threads = 1, .max_seqs = 1, .max_ctx = 16, .max_batch_tokens = 4,
                        .device = LLM_DEVICE_CUDA};
    llm_ctx *c = NULL;
    cr_assert_eq(llm_ctx_create(m, &p, NULL, &c), PV_ENODEV);
    cr_assert_null(c);
    cr_assert_eq(llm_cuda_usable(m, 0, why, sizeof why), 0);
    cr_assert_neq(why[0], 0, "a reason is given");
    p.device = LLM_DEVICE_AUTO; /* falls back to the CPU */
    cr_assert_eq(llm_ctx_create(m, &p, NULL, &c), 0);
    cr_assert_eq(llm_ctx_device(c), LLM_DEVICE_CPU);
    llm_ctx_free(c);
    llm_free(m);
    /* GPU-only weights cannot run on the CPU */
    m = synth("tiny", 1, 0);
    p.device = LLM_DEVICE_CPU;
    cr_assert_eq(llm_ctx_create(m, &p, NULL, &c), PV_EUNSUPPORTED);
    llm_free(m);
}

Test(device, cuda_matches_cpu) {
    char why[256] = "";
    if (!pvdev_cuda_built()) cr_skip_test("built without CUDA");
    if (pvdev_cuda_count(why, sizeof why) <= 0) cr_skip_test("no CUDA device (%s)", why);
    llm_model *m = synth("tiny", 11, 1);
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = (i * 53 + 7) % 1000;
    int rc;
    float *lc = logits_of(m, LLM_DEVICE_CPU, ids, 40, &rc);
    cr_assert_eq(rc, 0);
    float *lg = logits_of(m, LLM_DEVICE_CUDA, ids, 40, &rc);
    cr_assert_eq(rc, 0, "%s", pv_strerror(rc));
    double num = 0, den = 0;
    for (int i = 0; i < 40 * 1000; i++) num += (lg[i] - lc[i]) * (double)(lg[i] - lc[i]), den += (double)lc[i] * lc[i];
    cr_assert_lt(sqrt(num / den), 2e-2, "relative L2 %g", sqrt(num / den));
    free(lc), free(lg);
    llm_free(m);
}
