/* kvview: the KV map endpoints — GET /v1/kv/sequences (running and recently
 * finished requests), GET /v1/kv/sequences/{id} (one request's tiers per
 * layer and KV head) and GET /v1/kv/sequences/{id}/events (the same as an
 * SSE stream while it decodes). docs/API.md has the format.
 *
 * Snapshots are taken by the decoder thread between steps (eng_snap.h):
 * a request asks, a timer on the loop collects what is ready. The last
 * KVV_RING finished requests keep their final snapshot here.
 *
 * Threads: the loop thread only. Lifetime: srv_kvview_drain ends every
 * stream, srv_kvview_close closes the timer (before uv_run returns);
 * srv_kvview_free after the loop has run the close callbacks. */
#ifndef PIVOT_KVVIEW_H
#define PIVOT_KVVIEW_H

#include <uv.h>

#include "completions.h"
#include "eng.h"
#include "srv_http.h"

#define KVV_RING 16

typedef struct srv_kvview srv_kvview;

/* eng and cmpl are borrowed; show_text: answers carry the tokens' text
 * (--webui-show-text). Registers itself as cmpl's done hook. NULL when out
 * of memory. */
srv_kvview *srv_kvview_new(uv_loop_t *loop, eng_engine *eng, srv_cmpl *cmpl, int show_text);
void srv_kvview_drain(srv_kvview *v);
void srv_kvview_close(srv_kvview *v);
void srv_kvview_free(srv_kvview *v);

void srv_kvview_list(srv_kvview *v, srv_conn *c);
/* rest: the path after "/v1/kv/sequences/": "{id}" or "{id}/events". */
void srv_kvview_get(srv_kvview *v, srv_conn *c, const char *rest);

#endif
