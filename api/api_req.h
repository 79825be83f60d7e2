/* api_req: parsing and validation of the OpenAI request bodies
 * (/v1/completions, /v1/chat/completions) into a plain record.
 *
 * Checks here are the ones that need no model: JSON syntax, field types and
 * value ranges. The server adds what needs the model (token ids within the
 * vocabulary, context length, the model name). Unknown fields are ignored.
 * Every failure fills an api_error with status 400, the field in `param`
 * and a message naming the expected type or range. */
#ifndef PIVOT_API_REQ_H
#define PIVOT_API_REQ_H

#include <stddef.h>
#include <stdint.h>

#include "api_err.h"
#include "api_tools.h"

typedef enum { API_COMPLETIONS = 0, API_CHAT = 1 } api_kind;

#define API_MAX_N 16          /* choices per prompt */
#define API_MAX_PROMPTS 64    /* prompts in one completions request */
#define API_MAX_STOP 16       /* stop strings */
#define API_STOP_MAXLEN 256   /* bytes per stop string */
#define API_MAX_STOP_IDS 64
#define API_MAX_TOP_LOGPROBS 20
#define API_MAX_LOGIT_BIAS 1024 /* entries of logit_bias */

/* response_format (and vLLM's guided_json / structured_outputs.json) */
typedef enum { API_RF_TEXT = 0, API_RF_JSON_OBJECT, API_RF_JSON_SCHEMA } api_rf_kind;

typedef struct {
    char *text;   /* prompt text (owned), or NULL when given as ids */
    int32_t *ids; /* prompt token ids (owned), or NULL when given as text */
    int n_ids;
} api_prompt;

/* A KV cache knob given as its own field: "kv_budget": 0.25 ->
 * {field "kv_budget", knob "budget", value "0.25"}. */
#define API_KV_FIELDS 20
typedef struct {
    const char *field; /* JSON field (static), the `param` of errors */
    const char *knob;  /* kv_policy_set's name (static) */
    char value[48];    /* the JSON value as text: numbers, strings, true -> 1 */
} api_kv_knob;
/* The knob fields in the order they are applied, NULL-terminated pairs
 * {field, knob}. */
extern const char *const api_kv_fields[API_KV_FIELDS + 1][2];

typedef struct {
    char *role;    /* "system", "user", "assistant", "tool" ("developer" maps to system) */
    char *content; /* text parts joined; "" when null or absent */
    int content_null;   /* content was null or absent (an assistant turn of only calls) */
    char *tool_calls;   /* assistant: its tool_calls array as JSON text (owned), or NULL */
    char *tool_call_id; /* tool: the call it answers (owned), or NULL */
    char *name;         /* the message's optional `name` (owned), or NULL */
} api_message;

typedef struct {
    api_kind kind;
    char *model; /* NULL when absent */
    /* completions: one or more prompts */
    api_prompt *prompts;
    int n_prompts;
    /* chat */
    api_message *msgs;
    int n_msgs;
    api_tools tools; /* tools, tool_choice, parallel_tool_calls (api_tools.h) */
    /* generation */
    int max_tokens; /* -1: not given (server default) */
    int min_tokens;
    int n;
    float temperature, top_p, min_p;
    int top_k; /* 0: off */
    float repetition_penalty, presence_penalty, frequency_penalty;
    int has_seed;
    uint64_t seed;
    char *stop[API_MAX_STOP]; /* owned */
    int n_stop;
    int32_t stop_ids[API_MAX_STOP_IDS];
    int n_stop_ids;
    int ignore_eos;
    int echo;
    int logprobs;     /* 1: return logprobs of sampled tokens */
    int top_logprobs; /* alternatives per token (0..20) */
    int stream;
    int include_usage;
    char *user;      /* owned, may be NULL */
    char *kv_policy; /* owned, may be NULL (server default) */
    /* Pivot's KV knob fields (kv_budget, kv_lo_bits, ...), in api_kv_fields
     * order, applied on top of kv_policy (or the server's policy) by the
     * server with kv_policy_set, which validates the values. */
    api_kv_knob kv_knobs[API_KV_FIELDS];
    int n_kv_knobs;
    int kv_elastic; /* kv_elastic: 1/0, -1 not given (the server's --kv-elastic) */
    int cache_prompt; /* cache_prompt (llama.cpp's name): 0 keeps the request out of the
                         prefix cache; default 1 */
    /* logit_bias: bias[i] (in [-100, 100]) added to token bias_ids[i]'s
     * logit (owned; ids < vocabulary size is the server's check) */
    int32_t *bias_ids;
    float *bias;
    int n_bias;
    /* structured output: the kind, the JSON Schema as compact JSON text
     * (owned, JSON_SCHEMA only; the server compiles it), strict, and the
     * field it came from (the `param` of compile errors) */
    api_rf_kind rf_kind;
    char *rf_schema;
    int rf_strict;
    const char *rf_param; /* static */
} api_request;

/* Parses body into *r (zeroed first). Returns 0, or -1 with *e filled (r is
 * then already freed). */
int api_parse_request(api_kind kind, const char *body, size_t len, api_request *r, api_error *e);
void api_request_free(api_request *r);
/* The structured-output fields of a parsed body (logit_bias,
 * response_format, guided_json, structured_outputs) into r (api_rfmt.c;
 * part of api_parse_request). 0, or -1 with *e filled. */
struct cJSON;
int api_parse_structured(const struct cJSON *o, api_request *r, api_error *e);

/* /tokenize and /detokenize bodies. */
typedef struct {
    char *text;     /* owned: the prompt, or the rendered chat when messages were given */
    api_message *msgs;
    int n_msgs;
    int add_special; /* add BOS per the model (default 1) */
    int32_t *ids;   /* detokenize */
    int n_ids;
} api_tok_request;

int api_parse_tokenize(const char *body, size_t len, api_tok_request *r, api_error *e);
int api_parse_detokenize(const char *body, size_t len, api_tok_request *r, api_error *e);
void api_tok_request_free(api_tok_request *r);

#endif
