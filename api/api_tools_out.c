/* api_tools_out: the model's output -> OpenAI tool calls (see api_tools.h
 * for the forms accepted). Lenient by design: without a grammar, a small
 * model's call comes in whichever of the common wrappers it learned. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_tools.h"

static const char *const markers[] = {"<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "```", "{",
                                      "[", NULL};

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int api_tools_maybe_call(const char *text, size_t len) {
    while (len && is_ws(*text)) text++, len--;
    if (!len) return 1;
    for (int i = 0; markers[i]; i++) {
        size_t m = strlen(markers[i]), k = len < m ? len : m;
        if (!memcmp(text, markers[i], k)) return 1;
    }
    return 0;
}

static int tool_known(const cJSON *tools, const char *name) {
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) return 1;
    }
    return 0;
}

/* Appends the calls that value v holds to arr (borrowed references are
 * duplicated). 0, or -1 when v is not made of calls. */
static int collect(const cJSON *v, cJSON *arr, int depth) {
    if (depth > 3) return -1;
    if (cJSON_IsArray(v)) {
        const cJSON *x;
        if (!cJSON_GetArraySize(v)) return -1;
        cJSON_ArrayForEach(x, v) if (collect(x, arr, depth + 1)) return -1;
        return 0;
    }
    if (!cJSON_IsObject(v)) return -1;
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(v, "tool_call");
    const cJSON *many = cJSON_GetObjectItemCaseSensitive(v, "tool_calls");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(v, "function");
    if (one) return collect(one, arr, depth + 1);
    if (many) return collect(many, arr, depth + 1);
    if (cJSON_IsObject(fn) && !cJSON_GetObjectItemCaseSensitive(v, "name")) return collect(fn, arr, depth + 1);
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "name"))) return -1;
    cJSON_AddItemToArray(arr, cJSON_Duplicate(v, 1));
    return 0;
}

/* Parses one JSON value from [p, e) allowing surrounding whitespace. */
static cJSON *json_at(const char *p, const char *e) {
    while (p < e && is_ws(*p)) p++;
    while (e > p && is_ws(e[-1])) e--;
    if (p >= e) return NULL;
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(p, (size_t)(e - p), &end, 0);
    if (v && end != e) {
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}

static int starts(const char *p, const char *e, const char *m) {
    size_t n = strlen(m);
    return (size_t)(e - p) >= n && !memcmp(p, m, n);
}

static const char *find(const char *p, const char *e, const char *m) {
    for (; p < e; p++)
        if (starts(p, e, m)) return p;
    return NULL;
}

/* The calls of the text as a cJSON array of {name, arguments|parameters}
 * objects, or NULL. */
static cJSON *raw_calls(const char *p, const char *e) {
    cJSON *arr = cJSON_CreateArray();
    int ok = 1;
    while (p < e && is_ws(*p)) p++;
    if (starts(p, e, "<tool_call>")) {
        while (ok && p < e && starts(p, e, "<tool_call>")) {
            p += strlen("<tool_call>");
            const char *c = find(p, e, "</tool_call>");
            cJSON *v = json_at(p, c ? c : e);
            ok = v && !collect(v, arr, 0);
            cJSON_Delete(v);
            p = c ? c + strlen("</tool_call>") : e;
            while (p < e && is_ws(*p)) p++;
        }
        ok = ok && p >= e;
    } else {
        if (starts(p, e, "[TOOL_CALLS]")) p += strlen("[TOOL_CALLS]");
        else if (starts(p, e, "<|python_tag|>")) p += strlen("<|python_tag|>");
        else if (starts(p, e, "```")) {
            const char *nl = find(p, e, "\n");
            const char *close = nl ? find(nl, e, "```") : NULL;
            const char *q = close ? close + 3 : e;
            while (q < e && is_ws(*q)) q++;
            ok = close && q == e;
            if (ok) p = nl + 1, e = close;
        }
        cJSON *v = ok ? json_at(p, e) : NULL;
        ok = v && !collect(v, arr, 0);
        cJSON_Delete(v);
    }
    if (!ok || !cJSON_GetArraySize(arr)) {
        cJSON_Delete(arr);
        return NULL;
    }
    return arr;
}

/* splitmix64: ids only need to differ, not to be secret. */
static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void make_id(char *id, uint64_t *s) {
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    memcpy(id, "call_", 5);
    for (int i = 0; i < 24; i++) id[5 + i] = al[mix(s) % (sizeof al - 1)];
    id[29] = 0;
}

/* The arguments of one call as an object: "arguments" or "parameters",
 * an object or JSON text holding one; absent means {}. */
static cJSON *args_of(const cJSON *c) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(c, "arguments");
    if (!a) a = cJSON_GetObjectItemCaseSensitive(c, "parameters");
    if (!a || cJSON_IsNull(a)) return cJSON_CreateObject();
    if (cJSON_IsObject(a)) return cJSON_Duplicate(a, 1);
    if (cJSON_IsString(a)) {
        cJSON *p = cJSON_Parse(a->valuestring);
        if (cJSON_IsObject(p)) return p;
        cJSON_Delete(p);
    }
    return NULL;
}

void api_tool_calls_free(api_tool_call *c, int n) {
    for (int i = 0; c && i < n; i++) {
        free(c[i].name);
        free(c[i].arguments);
    }
    free(c);
}

int api_tools_parse_output(const char *text, size_t len, const api_tools *t, unsigned long long seed,
                           api_tool_call **calls) {
    *calls = NULL;
    if (!t->tools_json || t->choice == API_TOOL_NONE || !text) return 0;
    cJSON *tools = cJSON_Parse(t->tools_json), *arr = raw_calls(text, text + len);
    int n = arr ? cJSON_GetArraySize(arr) : 0, k = 0;
    if (n > 1 && !t->parallel) n = 1; /* one call asked for: the first counts */
    api_tool_call *out = n ? calloc((size_t)n, sizeof *out) : NULL;
    uint64_t s = seed;
    for (int i = 0; out && i < n; i++, k++) {
        const cJSON *c = cJSON_GetArrayItem(arr, i);
        const char *name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
        cJSON *args = tool_known(tools, name) &&
                      (t->choice != API_TOOL_NAMED || !strcmp(name, t->name)) ? args_of(c) : NULL;
        if (!args) break; /* not a call of one of the tools: the text is content */
        out[k].name = strdup(name);
        out[k].arguments = cJSON_PrintUnformatted(args);
        cJSON_Delete(args);
        make_id(out[k].id, &s);
        if (!out[k].name || !out[k].arguments) {
            k++;
            api_tool_calls_free(out, k);
            out = NULL;
            k = -1;
            break;
        }
    }
    cJSON_Delete(arr);
    cJSON_Delete(tools);
    if (k < 0) return -1;
    if (n && !out) return -1;
    if (k < n) {
        api_tool_calls_free(out, k);
        return 0;
    }
    *calls = out;
    return n;
}
