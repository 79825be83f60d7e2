/* router: method + path -> handler through one table, and the checks every
 * API route shares (auth, readiness, draining, content type, UTF-8). The
 * small handlers (health, models, metrics, tokenize) live here; the
 * generation endpoints are completions.c's, the KV map kvview.c's, the
 * server view srv_stats.c's; the web page (webui.h) is answered at "/". Loop thread only. */
#ifndef PIVOT_ROUTER_H
#define PIVOT_ROUTER_H

#include "completions.h"
#include "eng.h"
#include "kvview.h"
#include "metrics.h"
#include "srv_config.h"
#include "srv_http.h"
#include "srv_stats.h"

typedef struct srv_router srv_router;

typedef struct {
    const srv_config *cfg; /* borrowed; api_key is read per request */
    eng_engine *eng;
    srv_metrics *met;
    srv_cmpl *cmpl;
    srv_kvview *kv;
    srv_stats *stats;
    const char *model_name;
} srv_router_deps;

srv_router *srv_router_new(const srv_router_deps *d); /* NULL when out of memory */
void srv_router_free(srv_router *r);
void srv_router_set_draining(srv_router *r); /* API routes answer 503 from now on */
void srv_route(srv_router *r, srv_conn *c);

#endif
