/* srv_server: `pivot serve`'s life on the loop thread — the libuv loop, the
 * listener, the engine and its wake-up, signals, drain and shutdown.
 *
 * Threads: one loop thread does all I/O (srv_http), routing and JSON; the
 * engine's decoder thread (engine/eng.h) decodes. The engine's wake hook is
 * a uv_async_send; the loop then collects every job's output at once. */
#ifndef PIVOT_SRV_SERVER_H
#define PIVOT_SRV_SERVER_H

#include <uv.h>

#include "srv_config.h"

/* The whole server: runs until SIGTERM/SIGINT and the drain are over.
 * Returns the exit status: 0, 1 (runtime failure: listen, model load), 2
 * (a bad --host). */
int srv_run(const srv_config *cfg);

/* The pieces of srv_run for a harness that drives the loop itself
 * (tests/fuzz/fuzz_http.c). */
typedef struct srv_server srv_server;
/* Listens (port 0: any) and starts the engine on `loop`. cfg is borrowed
 * and read live (api_key per request). Returns the exit status srv_run
 * would give for a failed start, with *out NULL, or 0. */
int srv_server_open(const srv_config *cfg, uv_loop_t *loop, srv_server **out);
int srv_server_port(srv_server *s);
int srv_server_ready(srv_server *s); /* 0 loading, 1 ready, -1 failed */
const char *srv_server_error(srv_server *s);
typedef struct {
    int conns, busy_conns, jobs;       /* loop side */
    int running, waiting;              /* engine side (its last gauges) */
    size_t kv_reserved;
} srv_activity;
void srv_server_activity(srv_server *s, srv_activity *a);

#endif
