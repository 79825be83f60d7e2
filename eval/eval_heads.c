/* eval_heads: induction scores of every KV head on copy probes
 * (eval_heads.h): BOS, L random word tokens, the same L again, run through
 * a model whose KV cache is a probe cache (kv_probe.h). */
#include "eval_heads.h"

#include <stdlib.h>

#include "eval_internal.h"
#include "kv_probe.h"
#include "pverr.h"
#include "threadpool.h"

int ev_heads(const llm_model *m, const ev_heads_opts *o, double *scores, char *err, size_t errlen) {
    if (o->length < 5 || o->samples < 1)
        return ev_set_err(err, errlen, "--length must be >= 5 and --samples >= 1%s", "", 0, 0);
    /* the probes are `pivot eval --task copy`'s samples: [BOS] w w */
    ev_task_opts t = {.task = EV_COPY, .samples = o->samples, .seed = o->seed, .length = o->length};
    ev_sample *smp = NULL;
    int n_smp = 0, rc = 0;
    if (ev_build_samples(m, &t, &smp, &n_smp, err, errlen)) return 1;
    const int first = smp[0].n % 2, len = smp[0].n / 2; /* BOS or not, then two copies */
    if (o->first_probe && o->n_first_probe) {
        for (int i = 0; i < smp[0].n; i++) o->first_probe[i] = smp[0].tokens[i];
        *o->n_first_probe = smp[0].n;
    }
    llm_ctx_params cp = {.n_threads = o->threads > 0 ? o->threads : tp_default_threads(), .max_seqs = 1, .max_ctx = o->length,
                         .max_batch_tokens = o->length, .device = LLM_DEVICE_CPU,
                         .attn_split = -1};
    kv_shape sh = llm_kv_shape(m, &cp);
    kv_cache *kv = NULL;
    llm_ctx *ctx = NULL;
    if ((rc = kv_create_probe(&sh, first, len, &kv)) || (rc = llm_ctx_create(m, &cp, kv, &ctx))) {
        ev_free_samples(smp, n_smp);
        ev_set_err(err, errlen, "cannot create the probe: %s", pv_strerror(rc), 0, 0);
        return rc;
    }
    for (int s = 0; s < n_smp && !rc; s++) {
        kv_seq_reset(llm_ctx_kv(ctx), 0);
        llm_batch_entry e = {.seq = 0, .pos = 0, .n_tokens = smp[s].n, .tokens = smp[s].tokens,
                             .logits = LLM_LOGITS_NONE};
        rc = llm_decode(ctx, &e, 1, NULL);
    }
    if (!rc && kv_probe_scores(llm_ctx_kv(ctx), scores) <= 0) rc = PV_EINVAL; /* nothing probed */
    if (rc) ev_set_err(err, errlen, "the probe failed: %s", pv_strerror(rc), 0, 0);
    llm_ctx_free(ctx);
    ev_free_samples(smp, n_smp);
    return rc;
}

/* An insertion sort of the indices by score: qsort's comparator could not
 * see the scores without a global, ties keep the lower index first, and
 * n_layers * n_kv_heads is at most a few thousand. */
void ev_heads_order(const double *scores, int n, int *rank) {
    for (int i = 0; i < n; i++) {
        int j = i;
        for (; j > 0 && scores[rank[j - 1]] < scores[i]; j--) rank[j] = rank[j - 1];
        rank[j] = i;
    }
}

int ev_heads_rank(const llm_model *m, int threads, int *rank, char *err, size_t errlen) {
    const llm_config *c = llm_get_config(m);
    const int n = c->n_layers * c->n_kv_heads;
    double *sc = calloc((size_t)n, sizeof *sc);
    if (!sc) return ev_set_err(err, errlen, "out of memory%s", "", 0, 0);
    ev_heads_opts o = {.length = EV_HEADS_RANK_LENGTH, .samples = EV_HEADS_RANK_SAMPLES, .seed = 1,
                       .threads = threads};
    int rc = ev_heads(m, &o, sc, err, errlen);
    if (!rc) ev_heads_order(sc, n, rank);
    free(sc);
    return rc;
}
