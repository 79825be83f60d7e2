/* api_rfmt: the request fields that shape the output rather than the
 * sampling temperature — logit_bias and structured output
 * (response_format, vLLM's guided_json and structured_outputs.json). Only
 * their form is checked here; token ids against the vocabulary and the
 * schema itself are the server's (it compiles the schema with grammar/). */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api_req.h"

static int rf_bad(api_error *e, const char *param, const char *msg) {
    api_err_set(e, 400, param, "invalid_value", "%s", msg);
    return -1;
}

/* {"50256": -100, "28": 5.5}: keys are token ids written in decimal. */
static int parse_logit_bias(const cJSON *o, api_request *r, api_error *e) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "logit_bias");
    if (!b || cJSON_IsNull(b)) return 0;
    if (!cJSON_IsObject(b))
        return rf_bad(e, "logit_bias", "'logit_bias' must be an object mapping token ids to numbers");
    int n = cJSON_GetArraySize(b);
    if (n > API_MAX_LOGIT_BIAS) {
        api_err_set(e, 400, "logit_bias", "invalid_value", "'logit_bias' holds %d entries, at most %d",
                    n, API_MAX_LOGIT_BIAS);
        return -1;
    }
    r->bias_ids = malloc(sizeof *r->bias_ids * (n ? n : 1));
    r->bias = malloc(sizeof *r->bias * (n ? n : 1));
    if (!r->bias_ids || !r->bias) return rf_bad(e, "logit_bias", "out of memory");
    const cJSON *kv;
    cJSON_ArrayForEach(kv, b) {
        const char *k = kv->string;
        char *end = NULL;
        errno = 0;
        long id = isdigit((unsigned char)k[0]) ? strtol(k, &end, 10) : -1;
        if (id < 0 || *end || errno || id > INT32_MAX) {
            api_err_set(e, 400, "logit_bias", "invalid_value",
                        "'logit_bias' keys must be token ids (non-negative integers), got '%.40s'", k);
            return -1;
        }
        if (!cJSON_IsNumber(kv) || !isfinite(kv->valuedouble) || kv->valuedouble < -100 ||
            kv->valuedouble > 100) {
            api_err_set(e, 400, "logit_bias", "invalid_value",
                        "'logit_bias' values must be numbers in [-100, 100] (token %ld)", id);
            return -1;
        }
        r->bias_ids[r->n_bias] = (int32_t)id;
        r->bias[r->n_bias++] = (float)kv->valuedouble;
    }
    return 0;
}

static int take_schema(const cJSON *schema, api_request *r, api_error *e, const char *param) {
    if (!cJSON_IsObject(schema) && !cJSON_IsTrue(schema))
        return rf_bad(e, param, "the JSON schema must be an object");
    if (!(r->rf_schema = cJSON_PrintUnformatted(schema))) return rf_bad(e, param, "out of memory");
    r->rf_kind = API_RF_JSON_SCHEMA;
    r->rf_param = param;
    return 0;
}

static int name_ok(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > 64) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-') return 0;
    return 1;
}

/* OpenAI's {"type": "json_schema", "json_schema": {"name", "schema",
 * "strict", "description"}}. */
static int parse_json_schema(const cJSON *rf, api_request *r, api_error *e) {
    const char *P = "response_format";
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
    if (!cJSON_IsObject(js))
        return rf_bad(e, P, "'response_format' of type 'json_schema' needs a 'json_schema' object");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(js, "name");
    if (!cJSON_IsString(name) || !name_ok(name->valuestring))
        return rf_bad(e, P, "'response_format.json_schema.name' must be 1-64 characters of a-z, "
                            "A-Z, 0-9, '_' and '-'");
    const cJSON *strict = cJSON_GetObjectItemCaseSensitive(js, "strict");
    if (strict && !cJSON_IsNull(strict) && !cJSON_IsBool(strict))
        return rf_bad(e, P, "'response_format.json_schema.strict' must be a boolean");
    r->rf_strict = cJSON_IsTrue(strict);
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(js, "schema");
    if (!schema || cJSON_IsNull(schema)) { /* no schema: any JSON value, as OpenAI */
        r->rf_kind = API_RF_JSON_SCHEMA;
        r->rf_param = P;
        return (r->rf_schema = strdup("{}")) ? 0 : rf_bad(e, P, "out of memory");
    }
    return take_schema(schema, r, e, P);
}

static int parse_response_format(const cJSON *o, api_request *r, api_error *e) {
    const char *P = "response_format";
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(o, P);
    if (!rf || cJSON_IsNull(rf)) return 0;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rf, "type");
    if (!cJSON_IsObject(rf) || !cJSON_IsString(t))
        return rf_bad(e, P, "'response_format' must be an object with a string 'type'");
    if (!strcmp(t->valuestring, "text")) return 0;
    if (!strcmp(t->valuestring, "json_object")) {
        r->rf_kind = API_RF_JSON_OBJECT;
        r->rf_param = P;
        return 0;
    }
    if (!strcmp(t->valuestring, "json_schema")) return parse_json_schema(rf, r, e);
    api_err_set(e, 400, P, "invalid_value",
                "'response_format.type' must be 'text', 'json_object' or 'json_schema', got '%.40s'",
                t->valuestring);
    return -1;
}

/* vLLM: guided_json (a schema, or a string holding one) and
 * structured_outputs {"json": ...}; other guided_* modes are refused rather
 * than ignored. */
static int parse_vllm(const cJSON *o, api_request *r, api_error *e) {
    static const char *const refused[] = {"guided_regex", "guided_choice", "guided_grammar", NULL};
    for (int i = 0; refused[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, refused[i]);
        if (v && !cJSON_IsNull(v)) {
            api_err_set(e, 400, refused[i], "invalid_value",
                        "'%s' is not supported; use 'response_format' or 'guided_json'", refused[i]);
            return -1;
        }
    }
    const char *param = "guided_json";
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(o, param);
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(o, "structured_outputs");
    if ((!g || cJSON_IsNull(g)) && so && !cJSON_IsNull(so)) {
        param = "structured_outputs";
        if (!cJSON_IsObject(so) || cJSON_GetArraySize(so) != 1 ||
            !(g = cJSON_GetObjectItemCaseSensitive(so, "json")))
            return rf_bad(e, param, "'structured_outputs' is supported as {\"json\": SCHEMA} only");
    }
    if (!g || cJSON_IsNull(g)) return 0;
    if (r->rf_kind != API_RF_TEXT)
        return rf_bad(e, param, "give one of 'response_format' and 'guided_json'");
    if (!cJSON_IsString(g)) return take_schema(g, r, e, param);
    cJSON *parsed = cJSON_Parse(g->valuestring);
    if (!parsed) return rf_bad(e, param, "the JSON schema string is not valid JSON");
    int rc = take_schema(parsed, r, e, param);
    cJSON_Delete(parsed);
    return rc;
}

int api_parse_structured(const cJSON *o, api_request *r, api_error *e) {
    if (parse_logit_bias(o, r, e) || parse_response_format(o, r, e) || parse_vllm(o, r, e))
        return -1;
    return 0;
}
