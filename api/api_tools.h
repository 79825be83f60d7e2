/* api_tools: OpenAI function calling over cJSON — the request's `tools`,
 * `tool_choice` and `parallel_tool_calls`, the tool fields of messages, the
 * generic tool format for templates that do not render tools, the parsing
 * of the model's output into tool calls, and the JSON Schema a constrained
 * decoder must hold the output to.
 *
 * The generic format (docs/API.md): a system prompt lists the tools as JSON
 * and asks for exactly
 *     {"tool_call": {"name": "<tool>", "arguments": {...}}}
 * or, when parallel calls are allowed,
 *     {"tool_calls": [{"name": "<tool>", "arguments": {...}}, ...]}
 * Earlier calls in the conversation are rendered the same way, and a
 * `role: "tool"` result as a user turn holding
 *     {"tool_response": {"tool_call_id": ..., "name": ..., "content": ...}}
 *
 * The output parser is lenient: besides the generic form it accepts
 * {"name": ..., "arguments"|"parameters": {...}} objects or arrays of them,
 * bare or wrapped in <tool_call>...</tool_call> (Qwen, Hermes, SmolLM),
 * [TOOL_CALLS] (Mistral), <|python_tag|> (Llama 3.1) or a ```json fence.
 * A call must name one of the request's tools; anything else is content. */
#ifndef PIVOT_API_TOOLS_H
#define PIVOT_API_TOOLS_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "api_err.h"

typedef enum { API_TOOL_AUTO = 0, API_TOOL_NONE, API_TOOL_REQUIRED, API_TOOL_NAMED } api_tool_choice;

#define API_MAX_TOOLS 128
#define API_TOOL_NAME_MAX 64

/* What a request asks of tools (part of api_request). */
typedef struct {
    char *tools_json; /* the validated `tools` array as JSON text (owned), NULL when absent/empty */
    int n_tools;
    api_tool_choice choice;   /* default auto (none when there are no tools) */
    char name[API_TOOL_NAME_MAX + 1]; /* API_TOOL_NAMED: the function */
    int parallel;             /* parallel_tool_calls, default 1 */
} api_tools;

/* Parses tools / tool_choice / parallel_tool_calls of the request object.
 * 0, or -1 with e filled (400, param e.g. "tools[0].function.name",
 * "tool_choice"); t is then freed. */
int api_tools_parse(const cJSON *root, api_tools *t, api_error *e);
void api_tools_free(api_tools *t);

/* Checks message i's tool fields (assistant tool_calls, tool's
 * tool_call_id) and returns them: *calls_json the normalized tool_calls
 * array as JSON text or NULL, *call_id the tool_call_id or NULL (both
 * malloc'ed). 0, or -1 with e filled (param "messages[i].tool_calls"...). */
int api_tools_parse_message(const cJSON *msg, int i, char **calls_json, char **call_id,
                            api_error *e);

/* The generic format's system prompt text (malloc'ed), NULL when out of
 * memory. */
char *api_tools_system_prompt(const api_tools *t);
/* An assistant turn's calls (tool_calls JSON text) in the generic format,
 * malloc'ed. */
char *api_tools_calls_text(const char *calls_json);
/* A tool result in the generic format, malloc'ed. */
char *api_tools_result_text(const char *call_id, const char *name, const char *content);

/* One call parsed from the model's output. */
typedef struct {
    char id[32];     /* "call_" + 24 random alphanumerics */
    char *name;      /* owned */
    char *arguments; /* owned: the arguments object as compact JSON text */
} api_tool_call;

/* Parses text as tool calls of t's tools (at most one unless t->parallel).
 * Returns the number of calls (*calls malloc'ed; free with
 * api_tool_calls_free), 0 when text is not a call (then it is content), or
 * -1 when out of memory. seed makes the ids (any value; the caller passes
 * something that differs per response). */
int api_tools_parse_output(const char *text, size_t len, const api_tools *t, unsigned long long seed,
                           api_tool_call **calls);
void api_tool_calls_free(api_tool_call *c, int n);
/* 1 while a streamed output that starts with text (len bytes so far) may
 * still turn out to be a tool call (it is held back), 0 once it cannot. */
int api_tools_maybe_call(const char *text, size_t len);

/* The JSON Schema the output must match when tool_choice is required or
 * names a function: the generic format with "name" a const per tool and
 * "arguments" that tool's parameters, an anyOf over the allowed tools
 *   {"type":"object","required":["tool_call"],"additionalProperties":false,
 *    "properties":{"tool_call":{"anyOf":[{"type":"object",
 *      "required":["name","arguments"],"additionalProperties":false,
 *      "properties":{"name":{"const":"f"},"arguments":<f's parameters>}}, ...]}}}
 * or, with parallel calls, either form of the generic format:
 *   {"anyOf":[{..."tool_call":{"$ref":"#/$defs/call"}},
 *             {..."tool_calls":{"type":"array","minItems":1,"items":{"$ref":"#/$defs/call"}}}],
 *    "$defs":{"call":{"anyOf":[...]}}}
 * A tool whose parameters use $ref gets a copy of them in the root's
 * $defs as "p<i>" (i: its place in the anyOf), and all of its local $refs
 * ("#", "#/$defs/x", ...) are rebased onto that copy, so they resolve as
 * in the tool's own schema and tools sharing $defs names do not clash.
 * Parameters absent or {} mean any object.
 * The alternatives of calls all start alike ({"name" or {"arguments"), and
 * the matcher follows at most GRAM_MAX_ALT of them at once: with more than
 * API_TOOLS_EXACT_MAX allowed tools the per-tool schemas are given up for
 * one call schema, "name" an enum of the names (any string past
 * API_TOOLS_ENUM_MAX names) and "arguments" any object.
 * NULL for auto/none (nothing to constrain) or out of memory; the caller
 * frees it with cJSON_Delete. For the constrained decoder (grammar/). */
cJSON *api_tools_output_schema(const api_tools *t);
#define API_TOOLS_EXACT_MAX 8 /* <= GRAM_MAX_ALT (grammar/gram.h) */
#define API_TOOLS_ENUM_MAX 32 /* the grammar's enum limit */

#endif
