/* srv_stats: the server-wide view the web page draws — GET /v1/server/stats
 * (running and waiting requests, tokens/s, the KV pool, and a history of the
 * last minutes sampled once a second) and GET /v1/kv/presets (the KV
 * policies this server knows, with their knobs). Loop thread only.
 * Lifetime as kvview.h: close (the timer) before uv_run returns, free after. */
#ifndef PIVOT_SRV_STATS_H
#define PIVOT_SRV_STATS_H

#include <uv.h>

#include "completions.h"
#include "eng.h"
#include "metrics.h"
#include "srv_http.h"

#define SRV_STATS_HISTORY 300 /* samples, one a second: five minutes */

typedef struct srv_stats srv_stats;

/* Everything borrowed. NULL when out of memory. */
srv_stats *srv_stats_new(uv_loop_t *loop, srv_metrics *met, srv_cmpl *cmpl);
void srv_stats_close(srv_stats *s);
void srv_stats_free(srv_stats *s);
void srv_stats_handle(srv_stats *s, srv_conn *c);
void srv_presets_handle(eng_engine *e, srv_conn *c);

#endif
