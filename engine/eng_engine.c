/* eng_engine: the engine's life — the decoder thread's start and stop, the
 * model load and the run state it builds (context, KV pool and router,
 * scratch buffers), and the read-only accessors.
 *
 * Per-job policies: on the CPU the cache is a kv_router over one kv_pool;
 * the scheduler gives each slot its job's policy before the first store. On
 * CUDA the GPU's own FP16 cache serves `full` only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_tier.h"
#include "eng_internal.h"
#include "kv_router.h"
#include "pverr.h"
#include "pvtime.h"

int eng_state(eng_engine *e) { return atomic_load(&e->state); }
const char *eng_error(eng_engine *e) { return e->err; }
const llm_model *eng_model(eng_engine *e) {
    return atomic_load(&e->state) == ENG_READY ? e->model : NULL;
}
int eng_max_ctx(eng_engine *e) { return e->max_ctx; }
const kv_policy *eng_policy(eng_engine *e) { return &e->policy; }

size_t eng_seq_bytes(eng_engine *e, const kv_policy *p, int n_tokens) {
    return kv_policy_seq_bytes(p ? p : &e->policy_run, &e->shape, n_tokens);
}

int eng_resolve_policy(eng_engine *e, kv_policy *p, char *err, size_t errlen) {
    return kv_policy_resolve_heads(p, e->head_rank, e->n_head_rank,
                                   llm_get_config(e->model)->n_kv_heads, err, errlen);
}

int eng_check_policy(eng_engine *e, const kv_policy *p, char *err, size_t errlen) {
    if (e->on_cuda && !kv_policy_is_plain(p)) {
        snprintf(err, errlen,
                 "this server runs on CUDA, where only the plain FP16 cache (kv_policy full) "
                 "exists so far");
        return PV_EUNSUPPORTED;
    }
    return kv_policy_check_shape(p, &e->shape, err, errlen);
}

/* The device: cuda only when asked and usable; auto takes the GPU only
 * when the default policy is full (the GPU has no other cache yet) and the
 * model runs there. */
static int pick_device(eng_engine *e) {
    llm_device dev = LLM_DEVICE_AUTO;
    if (e->cfg.device) llm_device_parse(e->cfg.device, &dev);
    int plain = kv_policy_is_plain(&e->policy);
    char why[256] = "";
    if (dev == LLM_DEVICE_CUDA && !llm_cuda_usable(e->model, 0, why, sizeof why)) {
        snprintf(e->err, sizeof e->err, "--device cuda: %s", why);
        return PV_ENODEV;
    }
    e->on_cuda = dev == LLM_DEVICE_CUDA ||
                 (dev == LLM_DEVICE_AUTO && plain && llm_cuda_usable(e->model, 0, NULL, 0));
    return 0;
}

/* The ranking of the KV heads, on the CPU (the only device whose caches
 * quantize), then the default policy resolved with it. A model the probe
 * cannot run (no vocabulary: a synthetic one) serves without a ranking. */
static int rank_heads(eng_engine *e) {
    const llm_config *cf = llm_get_config(e->model);
    char err[256] = "";
    int rc;
    if (!e->on_cuda && e->cfg.rank_heads) {
        double t0 = pv_now();
        int n = cf->n_layers * cf->n_kv_heads;
        if (!(e->head_rank = malloc(sizeof(int) * (size_t)n))) {
            snprintf(e->err, sizeof e->err, "out of memory");
            return PV_ENOMEM;
        }
        if (e->cfg.rank_heads(e->model, e->cfg.threads, e->head_rank, err, sizeof err)) {
            fprintf(stderr, "pivot serve: no KV head ranking (%s): the kv policies' heads knob "
                            "leaves the low tier uniform\n", err);
            free(e->head_rank);
            e->head_rank = NULL;
        } else {
            e->n_head_rank = n;
            fprintf(stderr, "pivot serve: ranked the KV heads in %.2f s (top: %d.%d)\n",
                    pv_now() - t0, e->head_rank[0] / cf->n_kv_heads, e->head_rank[0] % cf->n_kv_heads);
        }
    }
    e->policy_run = e->policy;
    if ((rc = eng_resolve_policy(e, &e->policy_run, err, sizeof err)))
        snprintf(e->err, sizeof e->err, "kv cache: %s", err);
    return rc;
}

/* The context and, on the CPU, the page pool and the per-slot router. */
static int make_ctx(eng_engine *e) {
    char err[400] = "";
    int rc;
    llm_ctx_params p = {.n_threads = e->cfg.threads, .max_seqs = e->cfg.max_seqs,
                        .max_ctx = e->max_ctx, .max_batch_tokens = e->cfg.max_batch_tokens,
                        .device = e->on_cuda ? LLM_DEVICE_CUDA : LLM_DEVICE_CPU,
                        .attn_split = e->cfg.attn_split};
    e->shape = llm_kv_shape(e->model, &p);
    kv_policy full;
    kv_policy_preset("full", &full);
    e->page_bytes = kv_policy_seq_bytes(&full, &e->shape, 1);
    /* tokens per FP16 page: the block size the metrics report */
    e->page_tokens = 1;
    while (e->page_tokens < 4096 &&
           kv_policy_seq_bytes(&full, &e->shape, e->page_tokens + 1) == e->page_bytes)
        e->page_tokens++;
    kv_cache *kv = NULL;
    if (!e->on_cuda) {
        size_t limit = e->cfg.kv_memory + kv_router_headroom(&e->shape, e->cfg.max_batch_tokens);
        if ((rc = kv_pool_create(limit, &e->pool))) {
            snprintf(e->err, sizeof e->err, "kv pool: %s", pv_strerror(rc));
            return rc;
        }
        e->shape.pool = e->pool;
        kv_shape routed = e->shape; /* slots take each request's own policy */
        routed.routed = 1;
        if ((rc = kv_create(&routed, &e->policy_run, &kv, err, sizeof err))) {
            snprintf(e->err, sizeof e->err, "kv cache: %s", err);
            return rc;
        }
    }
    if ((rc = llm_ctx_create(e->model, &p, kv, &e->ctx))) {
        snprintf(e->err, sizeof e->err, "cannot create the decoder context on %s: %s",
                 e->on_cuda ? "cuda" : "cpu", pv_strerror(rc));
        return rc;
    }
    return 0;
}

static int alloc_scratch(eng_engine *e) {
    const llm_config *cf = llm_get_config(e->model);
    int S = e->cfg.max_seqs;
    e->slot_free = malloc(sizeof(int) * S);
    e->logits = malloc(sizeof(float) * (size_t)S * cf->n_vocab);
    e->logits_rows = S;
    e->row_copy = malloc(sizeof(float) * cf->n_vocab);
    e->ent = malloc(sizeof *e->ent * S);
    e->ent_ch = malloc(sizeof *e->ent_ch * S);
    e->ent_job = malloc(sizeof *e->ent_job * S);
    e->eog = malloc(sizeof(int32_t) * 64);
    if (!e->slot_free || !e->logits || !e->row_copy || !e->ent || !e->ent_ch || !e->ent_job ||
        !e->eog) {
        snprintf(e->err, sizeof e->err, "out of memory");
        return PV_ENOMEM;
    }
    for (int s = 0; s < S; s++) e->slot_free[s] = 1;
    const tok_vocab *v = llm_get_vocab(e->model); /* NULL for a synthetic model */
    for (int32_t t = 0; v && t < cf->n_vocab && e->n_eog < 64; t++)
        if (tok_is_eog(v, t)) e->eog[e->n_eog++] = t;
    return 0;
}

int eng_load(eng_engine *e) {
    char err[400] = "";
    int rc;
    if (e->cfg.model) {
        e->model = e->cfg.model;
    } else if ((rc = llm_load(e->cfg.model_path, &e->owned_model, err, sizeof err))) {
        snprintf(e->err, sizeof e->err, "cannot load model %s: %s", e->cfg.model_path,
                 err[0] ? err : pv_strerror(rc));
        return rc;
    } else {
        e->model = e->owned_model;
    }
    const llm_config *cf = llm_get_config(e->model);
    e->max_ctx = e->cfg.ctx > 0 && e->cfg.ctx < cf->n_ctx_train ? e->cfg.ctx : cf->n_ctx_train;
    if ((rc = kv_policy_parse(e->cfg.kv_policy, &e->policy, err, sizeof err))) {
        snprintf(e->err, sizeof e->err, "kv cache: %s", err);
        return rc;
    }
    if ((rc = pick_device(e)) || (rc = rank_heads(e)) || (rc = make_ctx(e))) return rc;
    fprintf(stderr, "pivot serve: decoding on %s\n", e->on_cuda ? "cuda" : "cpu");
    return alloc_scratch(e);
}

void eng_unload(eng_engine *e) {
    llm_ctx_free(e->ctx);
    kv_pool_destroy(e->pool); /* after the caches that take pages from it */
    llm_free(e->owned_model);
    free(e->head_rank);
    free(e->slot_free);
    free(e->logits);
    free(e->row_copy);
    free(e->ent);
    free(e->ent_ch);
    free(e->ent_job);
    free(e->eog);
    gram_vocab_free(e->gv);
}

int eng_start(const eng_config *cfg, const eng_hooks *hooks, eng_engine **out) {
    eng_engine *e = calloc(1, sizeof *e);
    if (!e) return PV_ENOMEM;
    e->cfg = *cfg;
    /* vLLM's watermark: admission leaves 1% of the KV memory free for the
     * running sequences' next tokens, so a new job is not preempted at once */
    e->watermark = cfg->kv_memory / 100;
    if (hooks) e->hooks = *hooks;
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->out_mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (pthread_create(&e->th, NULL, eng_main, e)) {
        free(e);
        return PV_ENOMEM;
    }
    *out = e;
    return 0;
}

void eng_stop(eng_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->quit = 1;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->th, NULL);
    eng_unload(e);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->out_mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}
