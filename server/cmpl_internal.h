/* cmpl_internal (private to completions.c and cmpl_job.c): the state of
 * the completion handlers. completions.c answers (engine output -> JSON or
 * SSE, usage, the live list of the KV map); cmpl_job.c turns a parsed
 * request into its engine job (prompts, checks, policy, grammar, params). */
#ifndef PIVOT_CMPL_INTERNAL_H
#define PIVOT_CMPL_INTERNAL_H

#include <stdint.h>

#include "api_req.h"
#include "completions.h"
#include "eng.h"
#include "eng_job.h"
#include "pvbuf.h"
#include "srv_http.h"

struct srv_cmpl {
    eng_engine *eng;
    const char *model_name;
    int n_jobs;
    uint64_t next_id;
    struct cmpl_req *live_head, *live_tail; /* submitted, not yet done (the KV map's list) */
    srv_cmpl_done_fn on_done;
    void *on_done_arg;
};

/* What the client has been sent of one choice, and what it has not yet. */
typedef struct {
    pv_buf got; /* text not yet sent (all of it, for a plain response) */
    api_logprob *lp;
    int n_lp, cap_lp;
    int tokens;
    const char *finish;
    int sent_finish;
    size_t text_offset;
    int hold; /* tools: the text so far may be a tool call, so it is held back */
} cmpl_choice;

typedef struct cmpl_req {
    srv_cmpl *m;
    struct cmpl_req *live_prev, *live_next;
    int live;        /* in m's live list */
    int32_t *ids0;   /* choice 0: prompt then generated tokens (the KV map's text) */
    int n_ids0, cap_ids0, n_prompt0;
    eng_job *job;
    srv_conn *conn; /* NULL once the client went away */
    char id[48];
    api_request req;
    int n_choices;
    cmpl_choice *ch;
    char policy_name[24];  /* KV policy preset, for usage.kv_cache */
    char policy_spec[KV_POLICY_DESC_MAX]; /* kv_policy_describe, for usage.kv_cache.spec */
    int started;
    int tools_on; /* chat with tools and tool_choice other than none: outputs may be calls */
} cmpl_req;

/* cmpl_job.c: checks what needs the model and builds the request's job;
 * takes *r into the new request on success. 0, or -1 with *e filled. */
int cmpl_make_job(srv_cmpl *s, api_request *r, cmpl_req **out, api_error *e);
/* choice 0's tokens, for the KV map's text; out of memory loses them only */
void cmpl_keep_ids(cmpl_req *q, const int32_t *ids, int n);
/* completions.c: frees a request (and its job) and leaves the live list. */
void cmpl_req_free(cmpl_req *q);

#endif
