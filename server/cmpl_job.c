/* cmpl_job: a parsed completion request -> its engine job: prompt token
 * lists (chat rendered), the checks that need the model and the context,
 * the KV policy with its knob fields, the grammar (structured output,
 * forced tool calls), the sampling parameters, echo. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmpl_internal.h"
#include "prompt.h"
#include "pverr.h"
#include "structured.h"

/* choice 0's tokens, for the KV map's text; out of memory loses them only */
void cmpl_keep_ids(cmpl_req *q, const int32_t *ids, int n) {
    int32_t *p = n ? pv_grow(q->ids0, &q->cap_ids0, q->n_ids0 + n, sizeof *p) : NULL;
    if (!p) return;
    q->ids0 = p;
    memcpy(p + q->n_ids0, ids, sizeof *p * n);
    q->n_ids0 += n;
}

/* Prompt token lists for every prompt of the request (chat: one). */
static int build_prompts(const llm_model *m, api_request *r, int32_t ***ids,
                         int **n, int *np, api_error *e) {
    const tok_vocab *v = llm_get_vocab(m);
    *np = r->kind == API_CHAT ? 1 : r->n_prompts;
    *ids = calloc(*np, sizeof **ids);
    *n = calloc(*np, sizeof **n);
    if (!*ids || !*n) goto oom;
    if (r->kind == API_CHAT) {
        char *text = NULL;
        srv_chat_in in = {.msgs = r->msgs, .n = r->n_msgs, .tools = &r->tools,
                          .add_generation_prompt = 1};
        if (srv_render_chat(m, &in, &text, NULL, e)) return -1;
        (*ids)[0] = srv_tokenize(m, text, 1, 1, &(*n)[0]);
        free(text);
        if (!(*ids)[0]) goto oom;
    } else {
        for (int i = 0; i < *np; i++) {
            api_prompt *p = &r->prompts[i];
            if (p->text) {
                if (!((*ids)[i] = srv_tokenize(m, p->text, 0, 1, &(*n)[i]))) goto oom;
            } else {
                for (int k = 0; k < p->n_ids; k++)
                    if (p->ids[k] >= tok_n_vocab(v)) {
                        api_err_set(e, 400, "prompt", "invalid_value",
                                    "token id %d is outside the vocabulary (%d tokens)", p->ids[k],
                                    tok_n_vocab(v));
                        return -1;
                    }
                if (!((*ids)[i] = malloc(sizeof(int32_t) * (p->n_ids + 1)))) goto oom;
                memcpy((*ids)[i], p->ids, sizeof(int32_t) * p->n_ids);
                (*n)[i] = p->n_ids;
            }
            if ((*n)[i] == 0) { /* "": the model continues from BOS (OpenAI and vLLM accept it) */
                int32_t start = tok_bos(v) >= 0 ? tok_bos(v) : tok_eos(v);
                if (start < 0) {
                    api_err_set(e, 400, "prompt", "invalid_value",
                                "the prompt is empty and the model has no BOS token to start from");
                    return -1;
                }
                int32_t *one = realloc((*ids)[i], sizeof(int32_t));
                if (!one) goto oom;
                (*ids)[i] = one;
                one[0] = start;
                (*n)[i] = 1;
            }
        }
    }
    return 0;
oom:
    api_err_set(e, 500, NULL, NULL, "out of memory");
    return -1;
}

/* The request's KV policy: its kv_policy (a preset or a full spec) or the
 * server's, then the kv_* knob fields on top, each error naming its field. */
static int resolve_policy(srv_cmpl *s, const api_request *r, kv_policy *want, api_error *e) {
    char err[256] = "";
    const char *param = "kv_policy";
    *want = *eng_policy(s->eng);
    if (r->kv_policy && kv_policy_parse(r->kv_policy, want, err, sizeof err)) {
        api_err_set(e, 400, "kv_policy", "invalid_value", "%s", err);
        return -1;
    }
    for (int i = 0; i < r->n_kv_knobs; i++) {
        const api_kv_knob *k = &r->kv_knobs[i];
        param = k->field;
        if (kv_policy_set(want, k->knob, k->value, err, sizeof err)) {
            api_err_set(e, 400, k->field, "invalid_value", "%s: %s", k->field, err);
            return -1;
        }
    }
    /* The heads knob with the model's ranking, then cross-knob checks, the
     * shape (group | head_dim) and the device; the last knob given is the
     * likeliest culprit of a combination. */
    if (eng_resolve_policy(s->eng, want, err, sizeof err) ||
        eng_check_policy(s->eng, want, err, sizeof err)) {
        api_err_set(e, 400, param, "invalid_value", "%s", err);
        return -1;
    }
    return 0;
}

static int max_new_of(const api_request *r, int max_ctx, int n_prompt) {
    return r->max_tokens >= 0 ? r->max_tokens : r->kind == API_CHAT ? max_ctx - n_prompt : 16;
}

/* The checks that need the model (name, stop ids, context length). */
static int check_request(srv_cmpl *s, const api_request *r, api_error *e) {
    const tok_vocab *v = llm_get_vocab(eng_model(s->eng));
    if (r->model && strcmp(r->model, s->model_name)) {
        api_err_set(e, 404, "model", "model_not_found",
                    "the model '%.100s' does not exist; this server serves '%s'", r->model,
                    s->model_name);
        return -1;
    }
    for (int i = 0; i < r->n_stop_ids; i++)
        if (r->stop_ids[i] >= tok_n_vocab(v)) {
            api_err_set(e, 400, "stop_token_ids", "invalid_value",
                        "token id %d is outside the vocabulary (%d tokens)", r->stop_ids[i],
                        tok_n_vocab(v));
            return -1;
        }
    return 0;
}

static int check_context(const api_request *r, int max_ctx, const int *n, int np, api_error *e) {
    const char *what = r->kind == API_CHAT ? "messages" : "prompt";
    for (int i = 0; i < np; i++) {
        int want = max_new_of(r, max_ctx, n[i]);
        if (want < 1) want = 1;
        if (n[i] + want > max_ctx) {
            api_err_set(e, 400, what, "context_length_exceeded",
                        "This model's maximum context length is %d tokens. However, you requested "
                        "%d tokens (%d in the %s, %d in the completion). Please reduce the length "
                        "of the %s or the completion.",
                        max_ctx, n[i] + want, n[i], what, want, what);
            return -1;
        }
    }
    return 0;
}

static eng_params params_of(const api_request *r, const kv_policy *want) {
    eng_params p = {.sampling = smp_default_params(), .has_seed = r->has_seed,
                    .min_tokens = r->min_tokens, .ignore_eos = r->ignore_eos,
                    .stop_ids = r->stop_ids, .n_stop_ids = r->n_stop_ids, .stop = r->stop,
                    .n_stop = r->n_stop, .logprobs = r->logprobs, .top_logprobs = r->top_logprobs,
                    .prompt_logprobs = r->echo && r->logprobs && r->kind == API_COMPLETIONS,
                    .policy = *want, .kv_elastic = r->kv_elastic,
                    .no_prompt_cache = !r->cache_prompt};
    p.sampling.temperature = r->temperature;
    p.sampling.top_k = r->top_k;
    p.sampling.top_p = r->top_p;
    p.sampling.min_p = r->min_p;
    p.sampling.repetition_penalty = r->repetition_penalty;
    p.sampling.presence_penalty = r->presence_penalty;
    p.sampling.frequency_penalty = r->frequency_penalty;
    p.sampling.seed = r->seed;
    p.sampling.bias_ids = r->bias_ids;
    p.sampling.bias = r->bias;
    p.sampling.n_bias = r->n_bias;
    return p;
}

/* echo: the prompt's text leads each choice of prompt i. */
static void echo_prompt(cmpl_req *q, const tok_vocab *v, int i, const int32_t *ids, int n) {
    const api_request *r = &q->req;
    for (int k = 0; k < r->n; k++) {
        cmpl_choice *c = &q->ch[i * r->n + k];
        if (r->prompts[i].text) pv_buf_add(&c->got, r->prompts[i].text, strlen(r->prompts[i].text));
        else srv_detokenize(v, ids, n, &c->got);
        /* with logprobs the prompt's tokens lead the list, so the offsets
         * count from the start of the echoed text */
        c->text_offset = r->logprobs ? 0 : c->got.len;
    }
}

/* The request and its engine job, from the prompts' token lists; takes *r
 * and the grammar g (freed on failure). */
static int make_req(srv_cmpl *s, api_request *r, const kv_policy *want, gram *g, int32_t **ids,
                    const int *n, int np, cmpl_req **out, api_error *e) {
    int max_ctx = eng_max_ctx(s->eng), max_new[API_MAX_PROMPTS];
    for (int i = 0; i < np; i++) max_new[i] = max_new_of(r, max_ctx, n[i]);
    cmpl_req *q = calloc(1, sizeof *q);
    eng_params p = params_of(r, want);
    p.grammar = g;
    if (!q || !(q->ch = calloc((size_t)np * r->n, sizeof *q->ch)) ||
        eng_job_create(&p, np, (const int32_t *const *)ids, n, max_new, r->n, &q->job)) {
        if (!q || !q->job) gram_free(g); /* not taken by a job */
        cmpl_req_free(q);
        api_err_set(e, 500, NULL, NULL, "out of memory");
        return -1;
    }
    q->m = s;
    q->n_choices = np * r->n;
    cmpl_keep_ids(q, ids[0], n[0]);
    q->n_prompt0 = n[0];
    q->req = *r; /* the request is the job's from here */
    memset(r, 0, sizeof *r);
    q->tools_on = q->req.kind == API_CHAT && q->req.tools.tools_json &&
                  q->req.tools.choice != API_TOOL_NONE;
    for (int i = 0; i < q->n_choices; i++) q->ch[i].hold = q->tools_on;
    eng_job_set_user(q->job, q);
    if (q->req.echo && q->req.kind == API_COMPLETIONS)
        for (int i = 0; i < np; i++) echo_prompt(q, llm_get_vocab(eng_model(s->eng)), i, ids[i], n[i]);
    snprintf(q->policy_name, sizeof q->policy_name, "%s", want->preset);
    kv_policy_describe(want, q->policy_spec, sizeof q->policy_spec);
    snprintf(q->id, sizeof q->id, "%s-%llx%06llx", q->req.kind == API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)time(NULL), (unsigned long long)++s->next_id);
    *out = q;
    return 0;
}

/* Checks what needs the model and builds the request's job. The grammar
 * (srv_structured) is response_format's or, with tool_choice "required" or
 * a named function, the tool call's; the output is parsed into calls
 * either way (api_tools_parse_output), since with tool_choice auto the
 * model is free and its call may come in any of the common wrappers. */
int cmpl_make_job(srv_cmpl *s, api_request *r, cmpl_req **out, api_error *e) {
    kv_policy want;
    gram *g = NULL;
    if (check_request(s, r, e) || resolve_policy(s, r, &want, e) ||
        srv_structured(r, tok_n_vocab(llm_get_vocab(eng_model(s->eng))), &g, e))
        return -1;
    int32_t **ids = NULL;
    int *n = NULL, np = 0, rc = -1;
    if (!build_prompts(eng_model(s->eng), r, &ids, &n, &np, e) &&
        !check_context(r, eng_max_ctx(s->eng), n, np, e))
        rc = make_req(s, r, &want, g, ids, n, np, out, e);
    else
        gram_free(g);
    for (int i = 0; i < np; i++) free(ids ? ids[i] : NULL);
    free(ids);
    free(n);
    return rc;
}

