/* structured: logit_bias ids and the output grammar (contract in
 * structured.h). */
#include "structured.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "pverr.h"

_Static_assert(API_TOOLS_EXACT_MAX <= GRAM_MAX_ALT,
               "the matcher must follow every tool's call schema at once");

static int oom(api_error *e) {
    api_err_set(e, 500, NULL, NULL, "out of memory");
    return -1;
}

/* One tool's parameters: absent or {} (any object), else a schema of type
 * "object" that the compiler takes with GRAM_LOOSE (narrowing keywords
 * such as minimum or maxLength pass unenforced, as OpenAI does outside
 * strict mode). The message and code follow OpenAI's. */
static int check_params(const cJSON *tool, int i, api_error *e) {
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tool, "function");
    const char *name = cJSON_GetObjectItemCaseSensitive(fn, "name")->valuestring;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
    if (!cJSON_IsObject(p) || !cJSON_GetArraySize(p)) return 0; /* api_tools checked the type */
    char param[64], err[320] = "";
    snprintf(param, sizeof param, "tools[%d].function.parameters", i);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "object")) {
        /* the arguments are an object: a schema of anything else can never match */
        api_err_set(e, 400, param, "invalid_function_parameters",
                    "Invalid schema for function '%s': schema must be a JSON Schema of "
                    "'type: \"object\"', got 'type: \"%.32s\"'", name,
                    cJSON_IsString(type) ? type->valuestring : "None");
        return -1;
    }
    gram *g = NULL;
    int rc = gram_from_schema(p, GRAM_LOOSE, &g, err, sizeof err);
    gram_free(g); /* only the verdict is wanted here */
    if (rc == PV_ENOMEM) return oom(e);
    if (rc) {
        api_err_set(e, 400, param, "invalid_function_parameters",
                    "Invalid schema for function '%s': the JSON schema %s at %s", name,
                    rc == PV_EUNSUPPORTED ? "uses what Pivot does not support" : "is invalid", err);
        return -1;
    }
    return 0;
}

/* Every tool's parameters are checked whatever tool_choice is, so a bad
 * tool is a 400 at once rather than only once a request forces a call. */
static int check_tools(const api_tools *t, api_error *e) {
    if (!t->tools_json) return 0;
    cJSON *tools = cJSON_Parse(t->tools_json); /* api_tools printed it: it parses */
    if (!tools) return oom(e);
    int i = 0, rc = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, tools) if ((rc = check_params(it, i++, e))) break;
    cJSON_Delete(tools);
    return rc;
}

/* tool_choice required / a named function: the output is held to the
 * generic call format with each allowed tool's parameters
 * (api_tools_output_schema), so even a small model returns a valid call. */
static int tool_grammar(const api_tools *t, gram **out, api_error *e) {
    char err[320] = "";
    cJSON *s = api_tools_output_schema(t);
    if (!s) return oom(e);
    int rc = gram_from_schema(s, GRAM_LOOSE, out, err, sizeof err);
    cJSON_Delete(s);
    if (rc == PV_ENOMEM) return oom(e);
    if (rc) { /* each tool compiled alone: what is left is a limit of the whole (e.g. too many tools) */
        api_err_set(e, 400, "tools", "invalid_function_parameters",
                    "the tools cannot be combined into one call grammar: %s", err);
        return -1;
    }
    return 0;
}

static int response_format_grammar(const api_request *r, gram **out, api_error *e) {
    int rc;
    char err[320] = "";
    if (r->rf_kind == API_RF_TEXT) return 0;
    if (r->rf_kind == API_RF_JSON_OBJECT) {
        rc = gram_json_object(out);
    } else {
        cJSON *schema = cJSON_Parse(r->rf_schema); /* api_rfmt printed it: it parses */
        int flags = r->rf_strict ? GRAM_STRICT : 0;
        rc = schema ? gram_from_schema(schema, flags, out, err, sizeof err) : PV_ENOMEM;
        cJSON_Delete(schema);
    }
    if (rc == PV_ENOMEM) return oom(e);
    if (rc) {
        api_err_set(e, 400, r->rf_param, rc == PV_EUNSUPPORTED ? "unsupported_schema" : "invalid_schema",
                    "'%s': the JSON schema %s at %s", r->rf_param,
                    rc == PV_EUNSUPPORTED ? "uses what Pivot does not support" : "is invalid", err);
        return -1;
    }
    return 0;
}

int srv_structured(const api_request *r, int n_vocab, gram **out, api_error *e) {
    *out = NULL;
    for (int i = 0; i < r->n_bias; i++)
        if (r->bias_ids[i] >= n_vocab) {
            api_err_set(e, 400, "logit_bias", "invalid_value",
                        "'logit_bias' token id %d is outside the vocabulary (%d tokens)",
                        r->bias_ids[i], n_vocab);
            return -1;
        }
    if (response_format_grammar(r, out, e) || check_tools(&r->tools, e)) goto fail;
    if (r->kind == API_CHAT &&
        (r->tools.choice == API_TOOL_REQUIRED || r->tools.choice == API_TOOL_NAMED)) {
        /* A forced call wins over response_format / guided_json, as in vLLM
         * (the tool's schema replaces guided_json) and OpenAI (response_format
         * shapes a text answer, and a forced call leaves none); the format
         * was still compiled above so that a bad one is a 400 either way. */
        gram_free(*out);
        *out = NULL;
        if (tool_grammar(&r->tools, out, e)) goto fail;
    }
    return 0;
fail:
    gram_free(*out);
    *out = NULL;
    return -1;
}
