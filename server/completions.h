/* completions: /v1/completions and /v1/chat/completions — request -> engine
 * job (tokenize, check against the model and the context), and engine output
 * -> JSON response or SSE chunks. Loop thread only. */
#ifndef PIVOT_COMPLETIONS_H
#define PIVOT_COMPLETIONS_H

#include "api_req.h"
#include "eng.h"
#include "eng_snap.h"
#include "srv_http.h"

typedef struct srv_cmpl srv_cmpl;

/* eng and model_name are borrowed. NULL when out of memory. */
srv_cmpl *srv_cmpl_new(eng_engine *eng, const char *model_name);
/* Every job must be done (srv_cmpl_jobs == 0). */
void srv_cmpl_free(srv_cmpl *m);
void srv_cmpl_handle(srv_cmpl *m, srv_conn *c, api_kind kind);
/* Collects the engine's output and answers (the engine's wake-up). */
void srv_cmpl_on_output(srv_cmpl *m);
int srv_cmpl_jobs(const srv_cmpl *m); /* submitted, not yet done */

/* What the KV map (kvview.h) may know of a live request: borrowed, valid
 * until the request is done. ids: choice 0's tokens so far (prompt, then
 * what was generated and handed over). */
typedef struct {
    const char *id;
    eng_job *job;
    const char *policy, *spec;
    const int32_t *ids;
    int n_ids, n_prompt, n_gen; /* n_gen: choice 0's (the one the KV map shows) */
    long n_gen_all;             /* every choice's generated tokens */
    size_t kv_reserved; /* what its admission reserves in the KV pool */
    double t_submit, t_first; /* pv_now(); t_first 0 before the first token */
} srv_cmpl_info;
/* Live requests, oldest first: fills up to cap, returns how many there are.
 * The pages and stats list at most SRV_CMPL_LIST_MAX of them. */
#define SRV_CMPL_LIST_MAX 256
int srv_cmpl_list(const srv_cmpl *m, srv_cmpl_info *out, int cap);
/* The live request with this id: 0, or -1 when there is none. */
int srv_cmpl_find(const srv_cmpl *m, const char *id, srv_cmpl_info *out);
/* Called once per request as its job is done, before it is freed; *final
 * (eng_snap_take_final, may be NULL) becomes the callee's. */
typedef void (*srv_cmpl_done_fn)(void *arg, const srv_cmpl_info *info, eng_snap *final);
void srv_cmpl_on_done(srv_cmpl *m, srv_cmpl_done_fn fn, void *arg);

#endif
