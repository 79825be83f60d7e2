/* completions: /v1/completions and /v1/chat/completions — request -> engine
 * job (tokenize, check against the model and the context), and engine output
 * -> JSON response or SSE chunks. Loop thread only. */
#ifndef PIVOT_COMPLETIONS_H
#define PIVOT_COMPLETIONS_H

#include "api_req.h"
#include "eng.h"
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

#endif
