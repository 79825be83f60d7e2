/* eng_sample: a choice's logits row -> its next token, its text (through the
 * stream decoder and the stop-string matcher), its logprobs, and its end.
 * Decoder thread; everything that writes a choice's output runs under
 * out_mu. */
#include <math.h>
#include <string.h>

#include "eng_internal.h"
#include "pverr.h"
#include "pvtime.h"

static int is_eog(const eng_engine *e, int32_t t) {
    for (int i = 0; i < e->n_eog; i++)
        if (e->eog[i] == t) return 1;
    return 0;
}

static void emit_text(eng_choice *c, const char *s, size_t n) {
    if (n) pv_buf_add(&c->out.text, s, n); /* out of memory loses text, not the job */
}

/* Ends a choice: the held-back text is released (unless a stop string cut
 * it), usage recorded, the KV slot reset and freed. */
void eng_finish_choice(eng_engine *e, eng_choice *c, const char *reason, int flush) {
    if (c->finished) return;
    if (flush && c->ts) {
        char buf[API_STOP_MAXLEN + 64];
        int w = tok_stream_flush(c->ts, buf, sizeof buf);
        size_t n = 0;
        char out[2 * API_STOP_MAXLEN + 128];
        if (w > 0 && api_stop_push(&c->stop, buf, (size_t)w, out, &n)) {
            emit_text(c, out, n);
        } else {
            emit_text(c, out, n);
            n = api_stop_flush(&c->stop, out);
            emit_text(c, out, n);
        }
    }
    c->finished = 1;
    c->out.finish = reason;
    eng_snap_final(e, c); /* the KV map's last look, before the slot is freed */
    if (c->slot >= 0) {
        kv_seq_usage(llm_ctx_kv(e->ctx), c->slot, &c->kv);
        /* what it computed stays for later requests (not after a failed
         * step: its layers may be uneven) */
        if (strcmp(reason, "error")) eng_prefix_publish(e, c);
        kv_seq_reset(llm_ctx_kv(e->ctx), c->slot);
        e->slot_free[c->slot] = 1;
        c->slot = -1;
    }
}

/* log-softmax over the raw logits for the logprobs fields. */
static void fill_logprob(const float *row, int n_vocab, int32_t tok, int top, api_logprob *lp) {
    float mx = -INFINITY;
    for (int i = 0; i < n_vocab; i++) mx = row[i] > mx ? row[i] : mx;
    double s = 0;
    for (int i = 0; i < n_vocab; i++) s += exp((double)row[i] - mx);
    float lse = mx + (float)log(s);
    lp->id = tok;
    lp->logprob = row[tok] - lse;
    lp->n_top = 0;
    for (int i = 0; i < n_vocab && top > 0; i++) {
        if (row[i] == -INFINITY) continue; /* masked (grammar, min_tokens): not an alternative */
        int k = lp->n_top;
        if (k == top && row[i] - lse <= lp->top_lp[k - 1]) continue;
        if (k < top) lp->n_top++;
        else k--;
        while (k > 0 && lp->top_lp[k - 1] < row[i] - lse) {
            lp->top_lp[k] = lp->top_lp[k - 1];
            lp->top_id[k] = lp->top_id[k - 1];
            k--;
        }
        lp->top_lp[k] = row[i] - lse;
        lp->top_id[k] = i;
    }
}

/* A new entry at the end of a choice's logprobs, or NULL when out of memory
 * (the logprobs are lost rather than the text). */
static api_logprob *push_lp(eng_choice *c) {
    eng_out *o = &c->out;
    api_logprob *lp = pv_grow(o->lp, &o->cap_lp, o->n_lp + 1, sizeof *lp);
    if (!lp) return NULL;
    o->lp = lp;
    return &lp[o->n_lp++];
}

static void push_id(eng_choice *c, int32_t tok) {
    eng_out *o = &c->out;
    int32_t *ids = pv_grow(o->ids, &o->cap_ids, o->n_ids + 1, sizeof *ids);
    if (!ids) return; /* the ids are lost rather than the text */
    o->ids = ids;
    ids[o->n_ids++] = tok;
}

/* The prompt's own logprobs from a chunk prefilled with LLM_LOGITS_ALL.
 * rows[r] is the distribution after prompt[pos + r], so it scores
 * prompt[pos + r + 1]; the first prompt token has nothing before it and gets
 * a NaN logprob, which the formatter writes as null. */
void eng_prompt_logprobs(eng_engine *e, eng_job *j, eng_choice *c, int pos, int k,
                         const float *rows) {
    int n_vocab = llm_get_config(e->model)->n_vocab;
    if (pos == 0 && c->lp_next == 0) {
        api_logprob *lp = push_lp(c);
        if (lp) *lp = (api_logprob){.id = c->prompt[0], .logprob = NAN};
        c->lp_next = 1;
    }
    /* lp_next: a chunk prefilled again after a preemption emits nothing twice */
    for (int r = 0; r < k && pos + r + 1 < c->n_prompt; r++) {
        if (pos + r + 1 < c->lp_next) continue;
        c->lp_next = pos + r + 2;
        api_logprob *lp = push_lp(c);
        if (lp)
            fill_logprob(rows + (size_t)r * n_vocab, n_vocab, c->prompt[pos + r + 1],
                         j->p.top_logprobs, lp);
    }
}

static int piece_of(void *v, int32_t id, char *buf, int cap) {
    return tok_piece(v, id, 0, buf, cap);
}

/* The grammar's mask on a choice's row (after min_tokens, before the
 * sampler's logit bias and penalties, which cannot lift a -INFINITY). 1 when
 * the choice ended instead: nothing is left to sample ("stop": the grammar
 * cannot go on, e.g. a complete document whose end min_tokens holds back;
 * gram_mask.h has the rule), or no memory ("error"). */
static int apply_grammar(eng_engine *e, eng_job *j, eng_choice *c, float *row) {
    const tok_vocab *v = llm_get_vocab(e->model);
    int n = PV_ENOMEM;
    if (!e->gv && v)
        gram_vocab_create(tok_n_vocab(v), piece_of, (void *)v, e->eog, e->n_eog, &e->gv);
    if (c->gs && c->n_gen == 0) gram_state_reset(c->gs); /* a choice started over */
    /* tokens left, this one and the end of generation included: the
     * document is closed in time for max_tokens or the context's end */
    int left = c->max_new - c->n_gen, ctx_left = e->max_ctx - c->n_prompt - c->n_gen + 1;
    if (ctx_left < left) left = ctx_left;
    if (e->gv && (c->gs || !gram_state_new(j->p.grammar, &c->gs)))
        n = gram_mask(e->gv, c->gs, left, row);
    if (n > 0) return 0;
    eng_finish_choice(e, c, n < 0 ? "error" : "stop", 1);
    return 1;
}

static int is_stop_token(const eng_engine *e, const eng_params *p, int32_t tok) {
    if (!p->ignore_eos && is_eog(e, tok)) return 1;
    for (int i = 0; i < p->n_stop_ids; i++)
        if (p->stop_ids[i] == tok) return 1;
    return 0;
}

/* Samples the next token of a choice from its logits row and emits its
 * text. */
void eng_sample_choice(eng_engine *e, eng_job *j, eng_choice *c, float *row) {
    const eng_params *p = &j->p;
    int n_vocab = llm_get_config(e->model)->n_vocab;
    if (c->n_gen < p->min_tokens) { /* vLLM's min_tokens: no stop tokens before */
        if (!p->ignore_eos)
            for (int i = 0; i < e->n_eog; i++) row[e->eog[i]] = -INFINITY;
        for (int i = 0; i < p->n_stop_ids; i++) row[p->stop_ids[i]] = -INFINITY;
    }
    if (p->grammar && apply_grammar(e, j, c, row)) return;
    /* logprobs are of the masked distribution, before logit_bias and penalties */
    if (p->logprobs) memcpy(e->row_copy, row, sizeof(float) * n_vocab);
    int32_t tok = smp_sample(c->smp, row);
    smp_accept(c->smp, tok);
    /* kept after the prompt for a preemption's refill; without room the
     * choice simply finishes here ("length") rather than lose its text */
    int32_t *grown = pv_grow(c->prompt, &c->cap_prompt, c->n_prompt + c->n_gen + 1, sizeof *grown);
    if (grown) {
        c->prompt = grown;
        grown[c->n_prompt + c->n_gen] = tok;
    }
    /* allowed by the mask, so it succeeds; GRAM_END: the document is whole */
    int gram_end = c->gs && gram_accept_token(e->gv, c->gs, tok) == GRAM_END;
    c->n_gen++;
    c->out.tokens = c->n_gen;
    c->next_tok = tok;
    push_id(c, tok);
    if (!atomic_load(&j->t_first)) atomic_store(&j->t_first, pv_now());
    if (p->logprobs) {
        api_logprob *lp = push_lp(c);
        if (lp) fill_logprob(e->row_copy, n_vocab, tok, p->top_logprobs, lp);
    }
    if (is_stop_token(e, p, tok) || gram_end) {
        eng_finish_choice(e, c, "stop", 1);
        return;
    }
    char piece[256], out[API_STOP_MAXLEN + 256];
    int w = c->ts ? tok_stream_push(c->ts, tok, piece, sizeof piece) : 0;
    size_t n = 0;
    if (w > 0 && api_stop_push(&c->stop, piece, (size_t)w, out, &n)) {
        emit_text(c, out, n);
        eng_finish_choice(e, c, "stop", 0);
        return;
    }
    emit_text(c, out, n);
    int pos = c->n_prompt + c->n_gen - 1; /* position the sampled token would take */
    if (c->n_gen >= c->max_new || pos >= e->max_ctx || !grown) eng_finish_choice(e, c, "length", 1);
}
