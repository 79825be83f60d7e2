/* Request parsing: one small checker per field type, then a table-like
 * sequence of field checks so each field's rule sits on one line. */
#include "api_req.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dupstr(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static int bad(api_error *e, const char *param, const char *fmt, const char *what) {
    api_err_set(e, 400, param, "invalid_value", fmt, param, what);
    return -1;
}

/* Number field in [lo, hi]; absent or null leaves *out unchanged. */
static int get_num(const cJSON *o, const char *k, double lo, double hi, float *out, api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return bad(e, k, "'%s' must be a number%s", "");
    if (v->valuedouble < lo || v->valuedouble > hi) {
        api_err_set(e, 400, k, "invalid_value", "'%s' must be in [%g, %g], got %g", k, lo, hi,
                    v->valuedouble);
        return -1;
    }
    *out = (float)v->valuedouble;
    return 0;
}

static int is_int(const cJSON *v) {
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble);
}

static int get_int(const cJSON *o, const char *k, long lo, long hi, int *out, api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!is_int(v)) return bad(e, k, "'%s' must be an integer%s", "");
    if (v->valuedouble < lo || v->valuedouble > hi) {
        api_err_set(e, 400, k, "invalid_value", "'%s' must be in [%ld, %ld], got %.0f", k, lo, hi,
                    v->valuedouble);
        return -1;
    }
    *out = (int)v->valuedouble;
    return 0;
}

static int get_bool(const cJSON *o, const char *k, int *out, api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return bad(e, k, "'%s' must be a boolean%s", "");
    *out = cJSON_IsTrue(v);
    return 0;
}

static int get_str(const cJSON *o, const char *k, char **out, api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) return bad(e, k, "'%s' must be a string%s", "");
    if (!(*out = dupstr(v->valuestring))) return bad(e, k, "'%s': out of memory%s", "");
    return 0;
}

/* Array of integer token ids (each >= 0; the vocabulary bound is the
 * server's check). */
static int get_ids(const cJSON *a, const char *k, int32_t **out, int *n, api_error *e) {
    int m = cJSON_GetArraySize(a);
    *out = malloc(sizeof(int32_t) * (m > 0 ? m : 1));
    if (!*out) return bad(e, k, "'%s': out of memory%s", "");
    *n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        if (!is_int(it) || it->valuedouble < 0 || it->valuedouble > INT32_MAX)
            return bad(e, k, "'%s' token ids must be non-negative integers%s", "");
        (*out)[(*n)++] = (int32_t)it->valuedouble;
    }
    return 0;
}

static int parse_prompt(const cJSON *root, api_request *r, api_error *e) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!p || cJSON_IsNull(p)) {
        api_err_set(e, 400, "prompt", "missing_required_parameter", "'prompt' is required");
        return -1;
    }
    if (cJSON_IsString(p)) {
        r->prompts = calloc(1, sizeof *r->prompts);
        if (!r->prompts || !(r->prompts[0].text = dupstr(p->valuestring)))
            return bad(e, "prompt", "'%s': out of memory%s", "");
        r->n_prompts = 1;
        return 0;
    }
    if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) == 0)
        return bad(e, "prompt",
                   "'%s' must be a string, an array of strings, an array of token ids or an array "
                   "of token-id arrays, and not empty%s", "");
    const cJSON *first = cJSON_GetArrayItem(p, 0);
    if (cJSON_IsNumber(first)) { /* one prompt as token ids */
        r->prompts = calloc(1, sizeof *r->prompts);
        if (!r->prompts) return bad(e, "prompt", "'%s': out of memory%s", "");
        r->n_prompts = 1;
        return get_ids(p, "prompt", &r->prompts[0].ids, &r->prompts[0].n_ids, e);
    }
    int m = cJSON_GetArraySize(p);
    if (m > API_MAX_PROMPTS) {
        api_err_set(e, 400, "prompt", "invalid_value", "'prompt' holds %d prompts, at most %d",
                    m, API_MAX_PROMPTS);
        return -1;
    }
    r->prompts = calloc(m, sizeof *r->prompts);
    if (!r->prompts) return bad(e, "prompt", "'%s': out of memory%s", "");
    const cJSON *it;
    cJSON_ArrayForEach(it, p) {
        api_prompt *ap = &r->prompts[r->n_prompts++];
        if (cJSON_IsString(it)) {
            if (!(ap->text = dupstr(it->valuestring))) return bad(e, "prompt", "'%s': out of memory%s", "");
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) > 0) {
            if (get_ids(it, "prompt", &ap->ids, &ap->n_ids, e)) return -1;
        } else {
            return bad(e, "prompt", "'%s' array items must all be strings or non-empty token-id "
                                    "arrays%s", "");
        }
    }
    return 0;
}

/* Chat content: a string, or an array of {"type":"text","text":...} parts
 * joined; null is allowed (an assistant turn without text). */
static int parse_content(const cJSON *c, char **out, api_error *e) {
    if (!c || cJSON_IsNull(c)) {
        *out = dupstr(""); /* the caller notes that it was null */
    } else if (cJSON_IsString(c)) {
        *out = dupstr(c->valuestring);
    } else if (cJSON_IsArray(c)) {
        size_t total = 1;
        const cJSON *it;
        cJSON_ArrayForEach(it, c) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(it, "type");
            const cJSON *x = cJSON_GetObjectItemCaseSensitive(it, "text");
            if (!cJSON_IsString(t) || strcmp(t->valuestring, "text") || !cJSON_IsString(x)) {
                api_err_set(e, 400, "messages", "invalid_value",
                            "message content parts must be {\"type\": \"text\", \"text\": ...}; "
                            "other part types are not supported");
                return -1;
            }
            total += strlen(x->valuestring);
        }
        if ((*out = malloc(total))) {
            (*out)[0] = 0;
            cJSON_ArrayForEach(it, c) strcat(*out, cJSON_GetObjectItemCaseSensitive(it, "text")->valuestring);
        }
    } else {
        return bad(e, "messages", "'%s' content must be a string or an array of text parts%s", "");
    }
    if (!*out) return bad(e, "messages", "'%s': out of memory%s", "");
    return 0;
}

static int parse_messages(const cJSON *root, api_message **msgs, int *n, api_error *e) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!m || cJSON_IsNull(m)) {
        api_err_set(e, 400, "messages", "missing_required_parameter", "'messages' is required");
        return -1;
    }
    if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) == 0)
        return bad(e, "messages", "'%s' must be a non-empty array of messages%s", "");
    *msgs = calloc(cJSON_GetArraySize(m), sizeof **msgs);
    if (!*msgs) return bad(e, "messages", "'%s': out of memory%s", "");
    const cJSON *it;
    cJSON_ArrayForEach(it, m) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
        if (!cJSON_IsObject(it) || !cJSON_IsString(role))
            return bad(e, "messages", "each of '%s' must be an object with a string 'role'%s", "");
        const char *rs = role->valuestring;
        if (!strcmp(rs, "developer")) rs = "system";
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") &&
            strcmp(rs, "tool")) {
            api_err_set(e, 400, "messages", "invalid_value",
                        "message role must be system, developer, user, assistant or tool, got "
                        "'%.64s'", role->valuestring);
            return -1;
        }
        api_message *am = &(*msgs)[(*n)++];
        if (!(am->role = dupstr(rs))) return bad(e, "messages", "'%s': out of memory%s", "");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
        am->content_null = !c || cJSON_IsNull(c);
        if (parse_content(c, &am->content, e) ||
            api_tools_parse_message(it, *n - 1, &am->tool_calls, &am->tool_call_id, e))
            return -1;
        if (get_str(it, "name", &am->name, e)) {
            snprintf(e->param, sizeof e->param, "messages[%d].name", *n - 1);
            return -1;
        }
    }
    return 0;
}

static int parse_stop(const cJSON *root, api_request *r, api_error *e) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (!s || cJSON_IsNull(s)) return 0;
    if (cJSON_IsString(s)) {
        if (!s->valuestring[0]) return 0;
        if (strlen(s->valuestring) >= API_STOP_MAXLEN)
            return bad(e, "stop", "'%s' strings must be shorter than 256 bytes%s", "");
        if (!(r->stop[0] = dupstr(s->valuestring))) return bad(e, "stop", "'%s': out of memory%s", "");
        r->n_stop = 1;
        return 0;
    }
    if (!cJSON_IsArray(s)) return bad(e, "stop", "'%s' must be a string or an array of strings%s", "");
    if (cJSON_GetArraySize(s) > API_MAX_STOP)
        return bad(e, "stop", "'%s' holds at most 16 strings%s", "");
    const cJSON *it;
    cJSON_ArrayForEach(it, s) {
        if (!cJSON_IsString(it)) return bad(e, "stop", "'%s' must be a string or an array of strings%s", "");
        if (strlen(it->valuestring) >= API_STOP_MAXLEN)
            return bad(e, "stop", "'%s' strings must be shorter than 256 bytes%s", "");
        if (!it->valuestring[0]) continue;
        if (!(r->stop[r->n_stop++] = dupstr(it->valuestring)))
            return bad(e, "stop", "'%s': out of memory%s", "");
    }
    return 0;
}

const char *const api_kv_fields[API_KV_FIELDS + 1][2] = {
    {"kv_select", "select"},       {"kv_hi_bits", "hi-bits"},   {"kv_lo_bits", "lo-bits"},
    {"kv_lo_k_bits", "lo-k-bits"}, {"kv_lo_v_bits", "lo-v-bits"}, {"kv_budget", "budget"},
    {"kv_recent", "recent"},       {"kv_sinks", "sinks"},       {"kv_window", "window"},
    {"kv_chunk", "chunk"},         {"kv_group", "group"},       {"kv_key_balance", "key-balance"},
    {"kv_rotate", "rotate"},       {"kv_clip", "clip"},         {"kv_clip_floor", "clip-floor"}, {"kv_floor", "floor"},
    {"kv_layer_bits", "layer-bits"}, {"kv_heads", "heads"}, {"kv_scale_bits", "scale-bits"},
    {"kv_value_norm", "value-norm"},
    {NULL, NULL},
};

/* Only the JSON type is checked here; the values' ranges and combinations
 * are kv_policy_set's (the server applies them and names the field). */
static int parse_kv_knobs(const cJSON *o, api_request *r, api_error *e) {
    for (int i = 0; api_kv_fields[i][0]; i++) {
        const char *f = api_kv_fields[i][0];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, f);
        if (!v || cJSON_IsNull(v)) continue;
        api_kv_knob *k = &r->kv_knobs[r->n_kv_knobs];
        if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) {
            double d = v->valuedouble;
            if (d == floor(d) && fabs(d) < 1e15) snprintf(k->value, sizeof k->value, "%.0f", d);
            else snprintf(k->value, sizeof k->value, "%.17g", d);
        } else if (cJSON_IsBool(v)) {
            snprintf(k->value, sizeof k->value, "%d", cJSON_IsTrue(v) ? 1 : 0);
        } else if (cJSON_IsString(v) && strlen(v->valuestring) < sizeof k->value) {
            snprintf(k->value, sizeof k->value, "%s", v->valuestring);
        } else {
            return bad(e, f, "'%s' must be a number, a short string or a boolean%s", "");
        }
        k->field = f;
        k->knob = api_kv_fields[i][1];
        r->n_kv_knobs++;
    }
    return 0;
}

static int parse_fields(const cJSON *o, api_request *r, api_error *e) {
    const cJSON *v;
    if (get_str(o, "model", &r->model, e) || get_str(o, "user", &r->user, e) ||
        get_str(o, "kv_policy", &r->kv_policy, e) || parse_kv_knobs(o, r, e) ||
        get_bool(o, "kv_elastic", &r->kv_elastic, e) ||
        get_bool(o, "cache_prompt", &r->cache_prompt, e))
        return -1;
    if (r->kind == API_COMPLETIONS ? parse_prompt(o, r, e) : parse_messages(o, &r->msgs, &r->n_msgs, e))
        return -1;
    if (r->kind == API_CHAT && api_tools_parse(o, &r->tools, e)) return -1;
    if (get_int(o, "max_tokens", 1, 1 << 24, &r->max_tokens, e) ||
        get_int(o, "max_completion_tokens", 1, 1 << 24, &r->max_tokens, e) ||
        get_int(o, "min_tokens", 0, 1 << 24, &r->min_tokens, e) ||
        get_int(o, "n", 1, API_MAX_N, &r->n, e) ||
        get_num(o, "temperature", 0, 2, &r->temperature, e) ||
        get_num(o, "top_p", 1e-6, 1, &r->top_p, e) ||
        get_int(o, "top_k", -1, 1 << 20, &r->top_k, e) ||
        get_num(o, "min_p", 0, 1, &r->min_p, e) ||
        get_num(o, "repetition_penalty", 0.01, 10, &r->repetition_penalty, e) ||
        get_num(o, "presence_penalty", -2, 2, &r->presence_penalty, e) ||
        get_num(o, "frequency_penalty", -2, 2, &r->frequency_penalty, e) ||
        get_bool(o, "ignore_eos", &r->ignore_eos, e) || get_bool(o, "stream", &r->stream, e))
        return -1;
    if (r->top_k < 0) r->top_k = 0; /* -1 means off, as in vLLM */
    if (r->max_tokens >= 0 && r->min_tokens > r->max_tokens) {
        api_err_set(e, 400, "min_tokens", "invalid_value",
                    "'min_tokens' (%d) must not exceed 'max_tokens' (%d)", r->min_tokens, r->max_tokens);
        return -1;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "seed")) && !cJSON_IsNull(v)) {
        if (!is_int(v) || fabs(v->valuedouble) > 9007199254740992.0)
            return bad(e, "seed", "'%s' must be an integer%s", "");
        r->has_seed = 1;
        r->seed = (uint64_t)(int64_t)v->valuedouble;
    }
    if (parse_stop(o, r, e) || api_parse_structured(o, r, e)) return -1;
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "stop_token_ids")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > API_MAX_STOP_IDS)
            return bad(e, "stop_token_ids", "'%s' must be an array of at most 64 token ids%s", "");
        int32_t *ids = NULL;
        int rc = get_ids(v, "stop_token_ids", &ids, &r->n_stop_ids, e);
        if (!rc) memcpy(r->stop_ids, ids, sizeof(int32_t) * r->n_stop_ids);
        free(ids);
        if (rc) return -1;
    }
    if (r->kind == API_COMPLETIONS) {
        /* completions: logprobs is the number of alternatives (0..20) */
        int lp = -1;
        if (get_int(o, "logprobs", 0, API_MAX_TOP_LOGPROBS, &lp, e) || get_bool(o, "echo", &r->echo, e))
            return -1;
        if (lp >= 0) {
            r->logprobs = 1;
            r->top_logprobs = lp;
        }
    } else {
        if (get_bool(o, "logprobs", &r->logprobs, e) ||
            get_int(o, "top_logprobs", 0, API_MAX_TOP_LOGPROBS, &r->top_logprobs, e))
            return -1;
        if (r->top_logprobs > 0 && !r->logprobs) {
            api_err_set(e, 400, "top_logprobs", "invalid_value",
                        "'top_logprobs' needs 'logprobs' set to true");
            return -1;
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "stream_options")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsObject(v)) return bad(e, "stream_options", "'%s' must be an object%s", "");
        if (!r->stream) {
            api_err_set(e, 400, "stream_options", "invalid_value",
                        "'stream_options' is only allowed when 'stream' is true");
            return -1;
        }
        if (get_bool(v, "include_usage", &r->include_usage, e)) {
            snprintf(e->param, sizeof e->param, "stream_options.include_usage");
            return -1;
        }
    }
    return 0;
}

int api_parse_request(api_kind kind, const char *body, size_t len, api_request *r, api_error *e) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->max_tokens = -1;
    r->kv_elastic = -1;
    r->cache_prompt = 1;
    r->n = 1;
    r->temperature = 1.0f;
    r->top_p = 1.0f;
    r->repetition_penalty = 1.0f;
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root) {
        api_err_set(e, 400, NULL, "invalid_json", "the request body is not valid JSON");
        return -1;
    }
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        api_err_set(e, 400, NULL, "invalid_json", "the request body must be a JSON object");
        rc = -1;
    } else {
        rc = parse_fields(root, r, e);
    }
    cJSON_Delete(root);
    if (rc) api_request_free(r);
    return rc;
}

static void free_msgs(api_message *m, int n) {
    for (int i = 0; i < n; i++) {
        free(m[i].role);
        free(m[i].content);
        free(m[i].tool_calls);
        free(m[i].tool_call_id);
        free(m[i].name);
    }
    free(m);
}

void api_request_free(api_request *r) {
    if (!r) return;
    free(r->model);
    for (int i = 0; i < r->n_prompts; i++) {
        free(r->prompts[i].text);
        free(r->prompts[i].ids);
    }
    free(r->prompts);
    free_msgs(r->msgs, r->n_msgs);
    api_tools_free(&r->tools);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->user);
    free(r->kv_policy);
    free(r->bias_ids);
    free(r->bias);
    free(r->rf_schema);
    memset(r, 0, sizeof *r);
}

int api_parse_tokenize(const char *body, size_t len, api_tok_request *r, api_error *e) {
    memset(r, 0, sizeof *r);
    r->add_special = 1;
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        api_err_set(e, 400, NULL, "invalid_json", "the request body must be a JSON object");
        return -1;
    }
    int rc = get_bool(root, "add_special_tokens", &r->add_special, e);
    if (!rc && cJSON_GetObjectItemCaseSensitive(root, "messages"))
        rc = parse_messages(root, &r->msgs, &r->n_msgs, e);
    else if (!rc) {
        rc = get_str(root, "prompt", &r->text, e);
        if (!rc && !r->text) {
            api_err_set(e, 400, "prompt", "missing_required_parameter",
                        "'prompt' (a string) or 'messages' is required");
            rc = -1;
        }
    }
    cJSON_Delete(root);
    if (rc) api_tok_request_free(r);
    return rc;
}

int api_parse_detokenize(const char *body, size_t len, api_tok_request *r, api_error *e) {
    memset(r, 0, sizeof *r);
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        api_err_set(e, 400, NULL, "invalid_json", "the request body must be a JSON object");
        return -1;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "tokens");
    int rc;
    if (!cJSON_IsArray(t)) {
        api_err_set(e, 400, "tokens", "missing_required_parameter",
                    "'tokens' (an array of token ids) is required");
        rc = -1;
    } else {
        rc = get_ids(t, "tokens", &r->ids, &r->n_ids, e);
    }
    cJSON_Delete(root);
    if (rc) api_tok_request_free(r);
    return rc;
}

void api_tok_request_free(api_tok_request *r) {
    if (!r) return;
    free(r->text);
    free_msgs(r->msgs, r->n_msgs);
    free(r->ids);
    memset(r, 0, sizeof *r);
}
