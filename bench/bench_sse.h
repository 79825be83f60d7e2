/* bench_sse: what `pivot bench` reads out of a response, without sockets —
 * the incremental parser of an OpenAI-style SSE stream (`data: {json}` lines,
 * `data: [DONE]`), and the interpretation of whole (non-streaming or error)
 * bodies. bench_http.c feeds it the decoded HTTP body as reads arrive; the
 * unit tests (tests/unit/test_bench_sse.c) feed it bytes split anywhere.
 *
 * Per chunk, as vLLM's client: the first chunk with non-empty `choices` sets
 * TTFT, every later one adds an ITL gap; chunks that arrived in one read
 * share that read's timestamp. `usage` (prompt/completion tokens) is taken
 * from whichever chunk carries it. Lines that are not `data:` (blank lines,
 * `:` comments, `event:`, `id:`, a line with no field name) are ignored, as
 * the SSE spec says; a line ends at LF, CR or CRLF.
 *
 * Failures (never aborts): a `data:` line that is not a JSON object
 * ("malformed SSE chunk: ..."), a chunk with an `error` member ("error in
 * stream: <message>"), a line over the limit ("SSE line too long"), a stream
 * that ends without any chunk with choices, out of memory. */
#ifndef PIVOT_BENCH_SSE_H
#define PIVOT_BENCH_SSE_H

#include <stddef.h>

#include "bench_stats.h"

typedef struct bench_sse bench_sse;

#define BENCH_SSE_MAX_LINE ((size_t)1 << 20)

/* A parser for one streamed response that fills res: ttft (relative to
 * res->t_send), itl (grown with realloc; owned by res), n_chunks,
 * n_text_chunks, text_len, prompt_tokens, completion_tokens. res is borrowed
 * and must outlive the parser; initialise it with bench_result_init. chat:
 * the text is choices[0].delta.content (or .message.content), else
 * choices[0].text. max_line: the longest line accepted in bytes (0: 1 MiB).
 * NULL when out of memory. */
bench_sse *bench_sse_new(bench_result *res, int chat, size_t max_line);
void bench_sse_free(bench_sse *p);

/* Body bytes that arrived at clock t (seconds, res->t_send's clock). Returns
 * 0, or -1 once the stream has failed (the reason: bench_sse_error); after a
 * failure, feeds and finish do nothing and return -1. */
int bench_sse_feed(bench_sse *p, const char *data, size_t len, double t);

/* The body ended: a last line without its terminator is parsed (at the last
 * feed's clock), then a stream without any chunk with choices fails.
 * 0 or -1. */
int bench_sse_finish(bench_sse *p);

/* The failure reason, "" while there is none. Owned by the parser. */
const char *bench_sse_error(const bench_sse *p);

/* The failure reason for a response with HTTP status other than 200:
 * "HTTP <status> <error.message>" when the body is JSON, else the body's
 * first 60 bytes. body may be NULL. */
void bench_http_error_reason(int status, const char *body, char *err, size_t errlen);

/* A whole 200 response body (--no-stream): counts one chunk when `choices`
 * is non-empty, its text length and usage. Returns 0, or -1 with
 * "malformed JSON response" in err when the body is not a JSON object. */
int bench_parse_body(bench_result *res, const char *body, int chat, char *err, size_t errlen);

#endif
