/* eng_job: the job API and the engine -> caller hand-over (eng_collect). */
#include <stdlib.h>
#include <string.h>

#include "eng_internal.h"
#include "pverr.h"

static void out_free(eng_out *o) {
    pv_buf_free(&o->text);
    free(o->lp);
    free(o->ids);
}

/* The job's own copies of what the caller's params borrow (the logit bias,
 * the stop ids and strings). j->p starts with none of them (eng_job_create),
 * so whatever fails part way, eng_job_free frees only the job's. */
static int own_bias(eng_job *j, const smp_params *from) {
    smp_params *sp = &j->p.sampling;
    int n = from->n_bias > 0 ? from->n_bias : 0;
    int32_t *own_ids = malloc(sizeof *own_ids * (size_t)(n + 1));
    float *own = malloc(sizeof *own * (size_t)(n + 1));
    sp->bias_ids = own_ids;
    sp->bias = own;
    if (!own_ids || !own) return PV_ENOMEM;
    if (n) {
        memcpy(own_ids, from->bias_ids, sizeof *own_ids * (size_t)n);
        memcpy(own, from->bias, sizeof *own * (size_t)n);
    }
    return 0;
}

static int own_stops(eng_job *j, const eng_params *from) {
    eng_params *p = &j->p;
    int32_t *own_ids = malloc(sizeof *own_ids * (size_t)(from->n_stop_ids + 1));
    char **own = calloc((size_t)from->n_stop + 1, sizeof *own);
    p->stop_ids = own_ids;
    p->stop = own;
    if (!own_ids || !own) return PV_ENOMEM;
    if (from->n_stop_ids) memcpy(own_ids, from->stop_ids, sizeof *own_ids * from->n_stop_ids);
    for (int i = 0; i < from->n_stop; i++)
        if (!(own[i] = strdup(from->stop[i]))) return PV_ENOMEM;
    return 0;
}

int eng_job_create(const eng_params *p, int n_prompts, const int32_t *const *prompts,
                   const int *n_prompt, const int *max_new, int n_per_prompt, eng_job **out) {
    *out = NULL;
    if (n_prompts < 1 || n_per_prompt < 1) return PV_EINVAL;
    for (int i = 0; i < n_prompts; i++)
        if (n_prompt[i] < 1) return PV_EINVAL;
    eng_job *j = calloc(1, sizeof *j);
    if (!j) return PV_ENOMEM;
    j->p = *p;
    j->p.stop = NULL, j->p.stop_ids = NULL; /* borrowed: the copies below replace them */
    j->p.sampling.bias_ids = NULL, j->p.sampling.bias = NULL;
    int n = n_prompts * n_per_prompt;
    int rc = own_stops(j, p);
    if (!rc) rc = own_bias(j, &p->sampling);
    if (!rc && !(j->ch = calloc((size_t)n, sizeof *j->ch))) rc = PV_ENOMEM;
    if (rc) {
        j->n_choices = 0;
        j->p.grammar = NULL; /* the caller's still */
        eng_job_free(j);
        return rc;
    }
    j->n_choices = n;
    j->n_per_prompt = n_per_prompt;
    for (int i = 0; i < n_prompts; i++) {
        j->prompt_tokens += n_prompt[i];
        for (int k = 0; k < n_per_prompt; k++) {
            eng_choice *c = &j->ch[i * n_per_prompt + k];
            c->slot = -1;
            c->n_prompt = c->cap_prompt = c->n_fill = n_prompt[i];
            c->max_new = max_new[i];
            if (!(c->prompt = malloc(sizeof(int32_t) * n_prompt[i]))) {
                j->p.grammar = NULL; /* the caller's still */
                eng_job_free(j);
                return PV_ENOMEM;
            }
            memcpy(c->prompt, prompts[i], sizeof(int32_t) * n_prompt[i]);
        }
    }
    j->ch[0].snap.policy = &j->p.policy; /* the KV map shows choice 0 (eng_snap.h) */
    *out = j;
    return 0;
}

void eng_job_free(eng_job *j) {
    if (!j) return;
    for (int i = 0; i < j->n_choices; i++) {
        eng_choice *c = &j->ch[i];
        free(c->prompt);
        smp_free(c->smp);
        tok_stream_free(c->ts);
        gram_state_free(c->gs);
        out_free(&c->out);
        out_free(&c->got);
    }
    eng_snap_job_free(j);
    free(j->ch);
    for (int i = 0; j->p.stop && i < j->p.n_stop; i++) free(j->p.stop[i]);
    free((void *)j->p.stop);
    free((void *)j->p.stop_ids);
    free((void *)j->p.sampling.bias_ids);
    free((void *)j->p.sampling.bias);
    gram_free(j->p.grammar);
    free(j);
}

void eng_job_set_user(eng_job *j, void *user) { j->user = user; }
void *eng_job_user(const eng_job *j) { return j->user; }
eng_job *eng_job_next(const eng_job *j) { return j->coll_next; }
int eng_job_n_choices(const eng_job *j) { return j->n_choices; }
int eng_job_prompt_tokens(const eng_job *j) { return j->prompt_tokens; }
size_t eng_job_kv_reserved(const eng_job *j) { return atomic_load(&((eng_job *)j)->commit); }
int eng_job_done(const eng_job *j) { return j->done_seen; }

int eng_job_error(const eng_job *j, const char **msg) {
    if (msg) *msg = j->err_msg;
    return j->err;
}

void eng_job_times(const eng_job *j, double *t_submit, double *t_first, double *t_end) {
    if (t_submit) *t_submit = j->t_submit;
    if (t_first) *t_first = atomic_load(&j->t_first);
    if (t_end) *t_end = j->t_end;
}

void eng_job_kv_usage(const eng_job *j, int i, kv_usage *u) { *u = j->ch[i].kv; }
void eng_job_relief(const eng_job *j, int i, eng_relief *r) { *r = j->ch[i].relief; }

int eng_job_cached_tokens(const eng_job *j) {
    int sum = 0;
    for (int i = 0; i < j->n_choices; i += j->n_per_prompt) {
        int best = 0; /* the choices of one prompt each looked it up */
        for (int k = 0; k < j->n_per_prompt; k++)
            if (j->ch[i + k].cached > best) best = j->ch[i + k].cached;
        sum += best;
    }
    return sum;
}

void eng_job_take(const eng_job *j, int i, eng_delta *d) {
    const eng_out *g = &j->ch[i].got;
    *d = (eng_delta){.text = g->text.p ? g->text.p : "", .len = g->text.len, .lp = g->lp,
                     .n_lp = g->n_lp, .ids = g->ids, .n_ids = g->n_ids, .tokens = g->tokens,
                     .finish = g->finish};
}

void eng_mark_dirty_locked(eng_engine *e, eng_job *j) {
    if (j->in_dirty) return;
    j->in_dirty = 1;
    j->dirty_next = e->dirty;
    e->dirty = j;
}

/* Swaps a choice's fresh output to the caller's side: what the caller took
 * last time is dropped, and the decoder's side starts empty again with the
 * old buffers (no allocation in the steady state). */
static void hand_over(eng_choice *c) {
    eng_out *o = &c->out, *g = &c->got;
    pv_buf t = g->text;
    api_logprob *lp = g->lp;
    int cap_lp = g->cap_lp, cap_ids = g->cap_ids;
    int32_t *ids = g->ids;
    *g = *o;
    o->text = t;
    o->text.len = 0;
    if (o->text.p) o->text.p[0] = 0;
    o->lp = lp;
    o->cap_lp = cap_lp;
    o->n_lp = 0;
    o->ids = ids;
    o->cap_ids = cap_ids;
    o->n_ids = 0;
}

eng_job *eng_collect(eng_engine *e) {
    pthread_mutex_lock(&e->out_mu);
    eng_job *list = e->dirty;
    e->dirty = NULL;
    for (eng_job *j = list; j; j = j->dirty_next) {
        j->coll_next = j->dirty_next;
        j->in_dirty = 0;
        for (int i = 0; i < j->n_choices; i++) hand_over(&j->ch[i]);
        if (j->engine_done) j->done_seen = 1;
    }
    pthread_mutex_unlock(&e->out_mu);
    return list;
}
