/* bench: `pivot bench`, a load-testing client for OpenAI-compatible servers.
 *
 * cmd_bench.c owns the command line, the orchestration of the run and the
 * report; bench_http.c is the HTTP/1.1 client (libuv + llhttp, one TCP
 * connection per request, the per-read timestamps that TTFT/ITL are made of).
 * The pure logic, unit-tested without sockets, has its own modules:
 * bench_workload.h (RNG, prompts, arrivals, datasets), bench_sse.h (SSE
 * stream and response bodies), bench_stats.h (per-request record, metrics,
 * percentiles). Everything runs on one libuv loop thread, so no locking
 * anywhere.
 *
 * Metric definitions follow vLLM's `bench serve` (docs/BENCH.md, "Metrics"): a request's
 * clock starts just before its connection is opened (vLLM starts it just
 * before the aiohttp POST, which also connects); TTFT is the time to the first
 * SSE chunk whose "choices" is non-empty; ITL is every later gap between such
 * chunks; the server's usage.completion_tokens is the output count. */
#ifndef PIVOT_BENCH_H
#define PIVOT_BENCH_H

#include <stddef.h>
#include <uv.h>

#include "bench_stats.h"

typedef struct bench_req bench_req;

/* bench_result, one request's outcome: bench_stats.h. */

typedef void (*bench_done_cb)(bench_req *r, void *ud);

/* Target parsed from --url: http://host[:port][/prefix]. */
typedef struct {
    struct sockaddr_storage addr;
    char host[256];    /* for the Host header */
    char prefix[256];  /* path prefix without trailing '/', e.g. "" or "/v1" */
} bench_target;

/* Parse and resolve a URL (blocking getaddrinfo, once at start). 0 ok; -1
 * with a message in err. Only plain http:// (no TLS). */
int bench_target_parse(bench_target *t, const char *url, char *err, size_t errlen);

/* Start one request: method/path/body/headers; when stream is set, the
 * response body is parsed as SSE. `chat` picks where a chunk's text lives.
 * done_cb runs exactly once, never from inside this call; in it the caller
 * reads bench_req_result and takes ownership of its itl and body arrays (the
 * request frees itself after the callback). timeout_s bounds the whole
 * request. Returns NULL only on allocation failure. */
bench_req *bench_req_start(uv_loop_t *loop, const bench_target *t, const char *method,
                           const char *path, const char *body, const char *api_key, int stream,
                           int chat, double timeout_s, bench_done_cb cb, void *ud);
bench_result *bench_req_result(bench_req *r);

/* The loop clock in seconds (uv_hrtime). */
double bench_now(void);

#endif
