/* api_fmt: OpenAI response bodies and Server-Sent Events framing.
 *
 * The server describes what it produced (choices, token log-probabilities,
 * usage) in the plain records below; these functions turn them into the JSON
 * that OpenAI clients expect:
 *   text_completion / chat.completion                 (stream false)
 *   text_completion / chat.completion.chunk in SSE    (stream true)
 * All returned strings are malloc'ed and NUL-terminated (caller frees); NULL
 * means out of memory. */
#ifndef PIVOT_API_FMT_H
#define PIVOT_API_FMT_H

#include <stddef.h>
#include <stdint.h>

#include "api_req.h"

typedef struct {
    int32_t id;
    float logprob; /* NaN: none (echo's first prompt token), written as null */
    int n_top;
    int32_t top_id[API_MAX_TOP_LOGPROBS];
    float top_lp[API_MAX_TOP_LOGPROBS];
} api_logprob;

/* Text of a token for logprobs output; returns bytes (may exceed cap). */
typedef int (*api_piece_fn)(void *ctx, int32_t id, char *buf, int cap);

typedef struct {
    int index;
    const char *text; /* the whole text (response) or the delta (chunk) */
    size_t len;
    const char *finish_reason; /* NULL while running: "stop", "length", "tool_calls" */
    const api_logprob *lp;     /* NULL: no logprobs field */
    int n_lp;
    size_t text_offset; /* completions logprobs: offset of the first token's text */
    /* chat tool calls. A response: calls[0..n_calls) in message.tool_calls
     * (content null when there is no text). A chunk: calls[0] alone in
     * delta.tool_calls with index call_index, headed by its id, type and
     * name when call_head, else with the argument fragment args_frag. */
    const api_tool_call *calls;
    int n_calls;
    int call_index, call_head;
    const char *args_frag;
} api_choice_out;

typedef struct {
    int prompt_tokens, completion_tokens;
    int cached_tokens; /* prompt tokens served from the prefix cache */
    const char *kv_policy;
    const char *kv_spec; /* every knob of the policy (kv_policy_describe), or NULL */
    size_t kv_bytes_stored, kv_bytes_fp16;
    long kv_tokens_high, kv_tokens_low, kv_tokens_dropped;
    /* memory pressure (KV on demand): times the request was preempted and
     * recomputed, elastic compressions and what they demoted and freed */
    int kv_preemptions, kv_compressions;
    long kv_tokens_demoted;
    size_t kv_bytes_saved;
} api_usage;

typedef struct {
    api_kind kind;
    const char *id;    /* "cmpl-..." / "chatcmpl-..." */
    const char *model;
    long created;      /* unix seconds */
    api_piece_fn piece;
    void *piece_ctx;
} api_meta;

char *api_format_response(const api_meta *m, const api_choice_out *c, int n, const api_usage *u);
/* One streamed chunk with choices c[0..n) (role: chat's first chunk carries
 * {"role":"assistant"}). With u set and n == 0: the usage chunk (empty
 * choices). */
char *api_format_chunk(const api_meta *m, const api_choice_out *c, int n, int role,
                       const api_usage *u);
/* "data: <json>\n\n" as a malloc'ed string; *len gets its length. */
char *api_sse_frame(const char *json, size_t *len);
#define API_SSE_DONE "data: [DONE]\n\n"

#endif
