/* bench: `pivot bench`, a load-testing client for OpenAI-compatible servers.
 *
 * cmd_bench.c owns the command line, the workload (prompts, arrivals), the
 * statistics and the report; bench_http.c is the HTTP/1.1 client (libuv +
 * llhttp, one TCP connection per request, SSE parsing and the per-chunk
 * timestamps that TTFT/ITL are made of). Everything runs on one libuv loop
 * thread, so no locking anywhere.
 *
 * Metric definitions follow vLLM's `bench serve` (BRIEF.md §5): a request's
 * clock starts just before its connection is opened (vLLM starts it just
 * before the aiohttp POST, which also connects); TTFT is the time to the first
 * SSE chunk whose "choices" is non-empty; ITL is every later gap between such
 * chunks; the server's usage.completion_tokens is the output count. */
#ifndef PIVOT_BENCH_H
#define PIVOT_BENCH_H

#include <stddef.h>
#include <uv.h>

typedef struct bench_req bench_req;

/* One request's outcome, filled by bench_http.c. */
typedef struct {
    int ok;
    char err[160];     /* failure reason when !ok */
    double t_send;     /* loop clock, seconds */
    double ttft;       /* seconds; streaming: first chunk with choices; else = latency */
    double latency;    /* send -> response complete */
    double *itl;       /* gaps between chunks with choices (streaming) */
    size_t n_itl, cap_itl;
    int n_chunks;      /* chunks with non-empty choices (TTFT/ITL, as vLLM) */
    int n_text_chunks; /* of those, chunks with non-empty text: the token count
                          when the server sends no usage */
    long prompt_tokens, completion_tokens; /* from usage; -1 when absent */
    size_t text_len;   /* generated characters */
    char *body;        /* non-streaming / probe: the whole response body */
    size_t body_len;
} bench_result;

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

/* Statistics (pure; also used by the report). Percentile with linear
 * interpolation between closest ranks, numpy's default, which vLLM uses.
 * Sorts v in place. n == 0 gives 0. */
double bench_percentile(double *v, size_t n, double p);

#endif
