/* eval_heads: induction scores of every KV head on copy probes
 * (eval_heads.h): BOS, L random word tokens, the same L again, run through
 * a model whose KV cache is a probe cache (kv_probe.h). */
#include "eval_heads.h"

#include <stdlib.h>
#include <unistd.h>

#include "eval_internal.h"
#include "kv_probe.h"
#include "pverr.h"
#include "tokenizer.h"

/* One probe's tokens into tok (n of them): [BOS] w w, w random words. */
static int probe_tokens(const tok_vocab *v, const int32_t *words, int nw, int length, uint64_t *st,
                        int32_t *tok, int *first, int *len) {
    int bos = tok_add_bos(v) && tok_bos(v) >= 0, n = 0;
    *first = bos;
    *len = (length - bos) / 2;
    if (bos) tok[n++] = tok_bos(v);
    for (int j = 0; j < *len; j++) tok[n++] = words[ev_rng_below(st, nw)];
    for (int j = 0; j < *len; j++, n++) tok[n] = tok[n - *len];
    return n;
}

int ev_heads(const llm_model *m, const ev_heads_opts *o, double *scores, char *err, size_t errlen) {
    const tok_vocab *v = llm_get_vocab(m);
    int nw = 0, first = 0, len = 0, rc = 0;
    if (o->length < 5 || o->samples < 1)
        return ev_set_err(err, errlen, "--length must be >= 5 and --samples >= 1%s", "", 0, 0);
    int32_t *words = ev_word_tokens(v, &nw), *tok = malloc(sizeof(int32_t) * (size_t)o->length);
    if (!words || !tok || nw < 100) {
        free(words);
        free(tok);
        return ev_set_err(err, errlen, "%sthe vocabulary has only %ld plain word tokens", "", nw, 0);
    }
    int threads = o->threads;
    if (threads <= 0) { /* one per CPU, as the thread pool picks */
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        threads = ncpu > 0 ? (int)ncpu : 1;
    }
    llm_ctx_params cp = {.n_threads = threads, .max_seqs = 1, .max_ctx = o->length,
                         .max_batch_tokens = o->length, .device = LLM_DEVICE_CPU,
                         .attn_split = -1};
    kv_shape sh = llm_kv_shape(m, &cp);
    uint64_t st = o->seed;
    int n = probe_tokens(v, words, nw, o->length, &st, tok, &first, &len);
    if (o->first_probe && o->n_first_probe) {
        for (int i = 0; i < n; i++) o->first_probe[i] = tok[i];
        *o->n_first_probe = n;
    }
    kv_cache *kv = NULL;
    llm_ctx *ctx = NULL;
    if ((rc = kv_create_probe(&sh, first, len, &kv)) || (rc = llm_ctx_create(m, &cp, kv, &ctx))) {
        free(words);
        free(tok);
        ev_set_err(err, errlen, "cannot create the probe: %s", pv_strerror(rc), 0, 0);
        return rc;
    }
    for (int s = 0; s < o->samples && !rc; s++) {
        if (s) n = probe_tokens(v, words, nw, o->length, &st, tok, &first, &len);
        kv_seq_reset(llm_ctx_kv(ctx), 0);
        llm_batch_entry e = {.seq = 0, .pos = 0, .n_tokens = n, .tokens = tok,
                             .logits = LLM_LOGITS_NONE};
        rc = llm_decode(ctx, &e, 1, NULL);
    }
    if (!rc && kv_probe_scores(llm_ctx_kv(ctx), scores) <= 0) rc = PV_EINVAL; /* nothing probed */
    if (rc) ev_set_err(err, errlen, "the probe failed: %s", pv_strerror(rc), 0, 0);
    llm_ctx_free(ctx);
    free(words);
    free(tok);
    return rc;
}
