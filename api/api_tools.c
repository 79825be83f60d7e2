/* api_tools: the request side of function calling, the generic format's
 * texts and the output schema (parsing the output: api_tools_out.c). */
#include "api_tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(api_error *e, const char *param, const char *code, const char *msg) {
    api_err_set(e, 400, param, code, "%s", msg);
    return -1;
}

/* OpenAI's rule for function names: a-z, A-Z, 0-9, '_' and '-', 1..64. */
static int valid_name(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > API_TOOL_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* One tool: {"type":"function","function":{"name","description"?,"parameters"?}} */
static int check_tool(const cJSON *t, int i, api_error *e) {
    char param[64];
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
    snprintf(param, sizeof param, "tools[%d]", i);
    if (!cJSON_IsObject(t)) return fail(e, param, "invalid_value", "each tool must be an object");
    snprintf(param, sizeof param, "tools[%d].type", i);
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "function"))
        return fail(e, param, "invalid_value", "tool 'type' must be \"function\"");
    snprintf(param, sizeof param, "tools[%d].function", i);
    if (!cJSON_IsObject(fn)) return fail(e, param, "missing_required_parameter", "tool 'function' must be an object");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(fn, "description");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
    snprintf(param, sizeof param, "tools[%d].function.name", i);
    if (!name) return fail(e, param, "missing_required_parameter", "a function needs a 'name'");
    if (!cJSON_IsString(name) || !valid_name(name->valuestring))
        return fail(e, param, "invalid_value",
                    "function names are 1 to 64 characters of a-z, A-Z, 0-9, '_' and '-'");
    snprintf(param, sizeof param, "tools[%d].function.description", i);
    if (desc && !cJSON_IsNull(desc) && !cJSON_IsString(desc))
        return fail(e, param, "invalid_value", "a function's 'description' must be a string");
    snprintf(param, sizeof param, "tools[%d].function.parameters", i);
    if (params && !cJSON_IsNull(params) && !cJSON_IsObject(params))
        return fail(e, param, "invalid_value", "a function's 'parameters' must be a JSON Schema object");
    return 0;
}

static const cJSON *find_tool(const cJSON *tools, const char *name) {
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) return t;
    }
    return NULL;
}

static int parse_choice(const cJSON *c, const cJSON *tools, api_tools *t, api_error *e) {
    if (!c || cJSON_IsNull(c)) {
        t->choice = t->n_tools ? API_TOOL_AUTO : API_TOOL_NONE;
        return 0;
    }
    if (cJSON_IsString(c)) {
        const char *s = c->valuestring;
        if (!strcmp(s, "none")) t->choice = API_TOOL_NONE;
        else if (!strcmp(s, "auto")) t->choice = API_TOOL_AUTO;
        else if (!strcmp(s, "required")) t->choice = API_TOOL_REQUIRED;
        else return fail(e, "tool_choice", "invalid_value",
                         "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                         "{\"type\": \"function\", \"function\": {\"name\": ...}}");
    } else {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(c, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if (!cJSON_IsObject(c) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") ||
            !cJSON_IsString(name))
            return fail(e, "tool_choice", "invalid_value",
                        "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                        "{\"type\": \"function\", \"function\": {\"name\": ...}}");
        if (!tools || !find_tool(tools, name->valuestring)) {
            api_err_set(e, 400, "tool_choice", "invalid_value",
                        "'tool_choice' names the function '%.64s', which is not in 'tools'",
                        name->valuestring);
            return -1;
        }
        t->choice = API_TOOL_NAMED;
        snprintf(t->name, sizeof t->name, "%s", name->valuestring);
    }
    if (t->choice >= API_TOOL_REQUIRED && !t->n_tools)
        return fail(e, "tool_choice", "invalid_value", "'tool_choice' requires a tool call but 'tools' is empty");
    return 0;
}

int api_tools_parse(const cJSON *root, api_tools *t, api_error *e) {
    memset(t, 0, sizeof *t);
    t->parallel = 1;
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    const cJSON *par = cJSON_GetObjectItemCaseSensitive(root, "parallel_tool_calls");
    if (tools && cJSON_IsNull(tools)) tools = NULL;
    if (tools) {
        if (!cJSON_IsArray(tools)) return fail(e, "tools", "invalid_value", "'tools' must be an array of tools");
        if (cJSON_GetArraySize(tools) > API_MAX_TOOLS)
            return fail(e, "tools", "invalid_value", "'tools' holds at most 128 tools");
        const cJSON *it;
        int i = 0;
        cJSON_ArrayForEach(it, tools) if (check_tool(it, i++, e)) return -1;
        t->n_tools = i;
        if (i && !(t->tools_json = cJSON_PrintUnformatted(tools)))
            return fail(e, "tools", "invalid_value", "out of memory");
    }
    if (par && !cJSON_IsNull(par)) {
        if (!cJSON_IsBool(par)) {
            api_tools_free(t);
            return fail(e, "parallel_tool_calls", "invalid_value", "'parallel_tool_calls' must be a boolean");
        }
        t->parallel = cJSON_IsTrue(par);
    }
    if (parse_choice(cJSON_GetObjectItemCaseSensitive(root, "tool_choice"), tools, t, e)) {
        api_tools_free(t);
        return -1;
    }
    return 0;
}

void api_tools_free(api_tools *t) {
    if (!t) return;
    free(t->tools_json);
    t->tools_json = NULL;
}

/* Normalizes one assistant tool call: {"id","type":"function","function":{"name","arguments"}}. */
static int check_call(const cJSON *c, const char *param, api_error *e) {
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
    if (!cJSON_IsObject(c) || !cJSON_IsObject(fn) || !cJSON_IsString(name) ||
        !(cJSON_IsString(args) || cJSON_IsObject(args)) || (id && !cJSON_IsString(id)))
        return fail(e, param, "invalid_value",
                    "each tool call must be {\"id\": ..., \"type\": \"function\", \"function\": "
                    "{\"name\": ..., \"arguments\": <JSON text>}}");
    return 0;
}

int api_tools_parse_message(const cJSON *msg, int i, char **calls_json, char **call_id,
                            api_error *e) {
    char param[64];
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "tool_call_id");
    *calls_json = *call_id = NULL;
    if (calls && !cJSON_IsNull(calls)) {
        snprintf(param, sizeof param, "messages[%d].tool_calls", i);
        if (strcmp(role->valuestring, "assistant"))
            return fail(e, param, "invalid_value", "only assistant messages carry 'tool_calls'");
        if (!cJSON_IsArray(calls)) return fail(e, param, "invalid_value", "'tool_calls' must be an array");
        const cJSON *c;
        cJSON_ArrayForEach(c, calls) if (check_call(c, param, e)) return -1;
        if (cJSON_GetArraySize(calls) && !(*calls_json = cJSON_PrintUnformatted(calls)))
            return fail(e, param, "invalid_value", "out of memory");
    }
    if (!strcmp(role->valuestring, "tool")) {
        snprintf(param, sizeof param, "messages[%d].tool_call_id", i);
        if (!cJSON_IsString(id))
            return fail(e, param, "missing_required_parameter",
                        "a message with role 'tool' needs a string 'tool_call_id'");
        if (!(*call_id = strdup(id->valuestring))) return fail(e, param, "invalid_value", "out of memory");
    }
    return 0;
}

static char *print_free(cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

char *api_tools_system_prompt(const api_tools *t) {
    cJSON *tools = t->tools_json ? cJSON_Parse(t->tools_json) : NULL;
    size_t cap = 1024 + (t->tools_json ? strlen(t->tools_json) * 2 : 0);
    char *out = malloc(cap);
    if (!out) {
        cJSON_Delete(tools);
        return NULL;
    }
    size_t n = (size_t)snprintf(out, cap, "You can call the following tools:\n");
    const cJSON *it;
    cJSON_ArrayForEach(it, tools) { /* one line per tool: its function object */
        char *s = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(it, "function"));
        if (s && n < cap) n += (size_t)snprintf(out + n, cap - n, "%s\n", s);
        free(s);
    }
    cJSON_Delete(tools);
    const char *one = "\nTo call a tool, answer with only this JSON object and nothing else:\n"
                      "{\"tool_call\": {\"name\": \"<tool name>\", \"arguments\": {<the arguments>}}}\n";
    const char *many = "To call several tools at once, answer with only:\n"
                       "{\"tool_calls\": [{\"name\": \"<tool name>\", \"arguments\": {...}}, ...]}\n";
    if (n < cap) n += (size_t)snprintf(out + n, cap - n, "%s%s", one, t->parallel ? many : "");
    if (n < cap && t->choice == API_TOOL_REQUIRED)
        n += (size_t)snprintf(out + n, cap - n, "You must call a tool.");
    else if (n < cap && t->choice == API_TOOL_NAMED)
        n += (size_t)snprintf(out + n, cap - n, "You must call the tool \"%s\".", t->name);
    else if (n < cap)
        n += (size_t)snprintf(out + n, cap - n, "If no tool is needed, answer normally.");
    return out;
}

/* {"name":..., "arguments":{...}} of an OpenAI call (arguments parsed
 * when they are JSON text, kept as a string otherwise). */
static cJSON *generic_call(const cJSON *c) {
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", cJSON_IsString(name) ? name->valuestring : "");
    cJSON *a = cJSON_IsString(args) ? cJSON_Parse(args->valuestring) : cJSON_Duplicate(args, 1);
    if (!a) a = cJSON_CreateString(cJSON_IsString(args) ? args->valuestring : "");
    cJSON_AddItemToObject(o, "arguments", a);
    return o;
}

char *api_tools_calls_text(const char *calls_json) {
    cJSON *calls = cJSON_Parse(calls_json), *o = cJSON_CreateObject();
    int n = cJSON_GetArraySize(calls);
    if (n == 1) {
        cJSON_AddItemToObject(o, "tool_call", generic_call(cJSON_GetArrayItem(calls, 0)));
    } else {
        cJSON *arr = cJSON_AddArrayToObject(o, "tool_calls");
        const cJSON *c;
        cJSON_ArrayForEach(c, calls) cJSON_AddItemToArray(arr, generic_call(c));
    }
    cJSON_Delete(calls);
    return print_free(o);
}

char *api_tools_result_text(const char *call_id, const char *name, const char *content) {
    cJSON *o = cJSON_CreateObject(), *r = cJSON_AddObjectToObject(o, "tool_response");
    cJSON_AddStringToObject(r, "tool_call_id", call_id ? call_id : "");
    if (name) cJSON_AddStringToObject(r, "name", name);
    cJSON_AddStringToObject(r, "content", content ? content : "");
    return print_free(o);
}

static int kw_in(const char *k, const char *const *list) {
    for (int i = 0; k && list[i]; i++)
        if (!strcmp(k, list[i])) return 1;
    return 0;
}

/* Points every local $ref of schema s ("#" or "#/...") at `base` instead
 * of the document root: a tool's parameters are nested in the wrapper, so
 * their "#/$defs/x" would otherwise resolve against the wrapper. Values
 * that are data, not schemas (const, enum, default, examples), are left
 * alone; the members of name maps (properties, $defs, ...) are schemas
 * whatever they are called, so a property named "default" is still walked
 * (review). Returns 1 when s holds a $ref (-1 out of memory), else 0. */
static int rebase_refs(cJSON *s, const char *base) {
    static const char *const data_kw[] = {"const", "enum", "default", "examples", NULL};
    static const char *const maps[] = {"properties", "patternProperties", "$defs", "definitions",
                                       "dependentSchemas", "dependencies", NULL};
    int found = 0;
    cJSON *kv, *x;
    cJSON_ArrayForEach(kv, s) {
        if (kw_in(kv->string, data_kw)) continue;
        if (kv->string && !strcmp(kv->string, "$ref") && cJSON_IsString(kv) && kv->valuestring[0] == '#') {
            size_t n = strlen(base) + strlen(kv->valuestring);
            char *ref = malloc(n);
            if (!ref) return -1;
            snprintf(ref, n, "%s%s", base, kv->valuestring + 1);
            int ok = cJSON_SetValuestring(kv, ref) != NULL;
            free(ref);
            if (!ok) return -1;
            found = 1;
            continue;
        }
        int r = 0;
        if (cJSON_IsArray(kv) || (cJSON_IsObject(kv) && kw_in(kv->string, maps))) {
            /* anyOf/allOf/prefixItems/items lists, or a name map: every
             * member that is an object is a schema */
            cJSON_ArrayForEach(x, kv) {
                int k = cJSON_IsObject(x) ? rebase_refs(x, base) : 0;
                if (k < 0) return -1;
                r |= k;
            }
        } else if (cJSON_IsObject(kv)) { /* a schema-valued keyword: items, not, ... */
            r = rebase_refs(kv, base);
        }
        if (r < 0) return -1;
        found |= r;
    }
    return found;
}

/* {"type":"object","properties":{"name":{"const":f},"arguments":P},...};
 * when P uses $ref, its refs are rebased onto a copy of P kept in the
 * wrapper's root $defs under "p<i>" (defs), so "#", "#/$defs/x" and
 * "#/definitions/x" of each tool resolve within that tool, with no clash
 * between tools that use the same $defs names. */
static cJSON *call_schema(const cJSON *tool, int i, cJSON *defs) {
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tool, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
    cJSON *s = cJSON_CreateObject(), *props, *req;
    cJSON_AddStringToObject(s, "type", "object");
    props = cJSON_AddObjectToObject(s, "properties");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(props, "name"), "const", name->valuestring);
    if (cJSON_IsObject(params) && cJSON_GetArraySize(params)) {
        cJSON *p = cJSON_Duplicate(params, 1);
        char base[32];
        snprintf(base, sizeof base, "#/$defs/p%d", i);
        if (p && rebase_refs(p, base) == 1) cJSON_AddItemToObject(defs, base + 8, cJSON_Duplicate(p, 1));
        cJSON_AddItemToObject(props, "arguments", p);
    } else { /* no schema given ({} or absent): no arguments, "{}" as OpenAI sends them */
        cJSON_AddStringToObject(cJSON_AddObjectToObject(props, "arguments"), "type", "object");
    }
    req = cJSON_AddArrayToObject(s, "required");
    cJSON_AddItemToArray(req, cJSON_CreateString("name"));
    cJSON_AddItemToArray(req, cJSON_CreateString("arguments"));
    cJSON_AddFalseToObject(s, "additionalProperties");
    return s;
}

/* One call of any of many tools (more than the matcher can follow as
 * alternatives, see api_tools.h): the name among theirs, any arguments
 * object; a call whose arguments do not fit its tool still parses. */
static cJSON *names_only(const cJSON *tools, int n_tools) {
    cJSON *s = cJSON_CreateObject(), *props, *req, *name;
    cJSON_AddStringToObject(s, "type", "object");
    props = cJSON_AddObjectToObject(s, "properties");
    name = cJSON_AddObjectToObject(props, "name");
    if (n_tools <= API_TOOLS_ENUM_MAX) {
        cJSON *names = cJSON_AddArrayToObject(name, "enum");
        const cJSON *it;
        cJSON_ArrayForEach(it, tools) {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(it, "function"), "name");
            cJSON_AddItemToArray(names, cJSON_CreateString(n->valuestring));
        }
    } else {
        cJSON_AddStringToObject(name, "type", "string"); /* an unknown name is then content */
    }
    cJSON *args = cJSON_AddObjectToObject(props, "arguments");
    cJSON_AddStringToObject(args, "type", "object");
    cJSON_AddTrueToObject(args, "additionalProperties"); /* absent would mean none (grammar/gram.h) */
    req = cJSON_AddArrayToObject(s, "required");
    cJSON_AddItemToArray(req, cJSON_CreateString("name"));
    cJSON_AddItemToArray(req, cJSON_CreateString("arguments"));
    cJSON_AddFalseToObject(s, "additionalProperties");
    return s;
}

/* {"type":"object","properties":{key:v},"required":[key],"additionalProperties":false} */
static cJSON *wrapper(const char *key, cJSON *v) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "type", "object");
    cJSON_AddItemToObject(cJSON_AddObjectToObject(s, "properties"), key, v);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(s, "required"), cJSON_CreateString(key));
    cJSON_AddFalseToObject(s, "additionalProperties");
    return s;
}

cJSON *api_tools_output_schema(const api_tools *t) {
    if (t->choice != API_TOOL_REQUIRED && t->choice != API_TOOL_NAMED) return NULL;
    cJSON *tools = t->tools_json ? cJSON_Parse(t->tools_json) : NULL;
    if (!tools) return NULL;
    cJSON *any = cJSON_CreateArray(), *defs = cJSON_CreateObject();
    const cJSON *it;
    int i = 0;
    if (t->choice == API_TOOL_REQUIRED && t->n_tools > API_TOOLS_EXACT_MAX) {
        cJSON_AddItemToArray(any, names_only(tools, t->n_tools));
    } else {
        cJSON_ArrayForEach(it, tools) {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(it, "function"), "name");
            if (t->choice == API_TOOL_NAMED && strcmp(n->valuestring, t->name)) continue;
            cJSON_AddItemToArray(any, call_schema(it, i++, defs));
        }
    }
    cJSON_Delete(tools);
    cJSON *one = cJSON_CreateObject();
    cJSON_AddItemToObject(one, "anyOf", any);
    cJSON *s;
    if (t->parallel) {
        /* Either form of the generic format, as its system prompt offers
         * both: a model that means one call writes "tool_call" and ends,
         * where an array alone would leave a small model repeating calls
         * until max_tokens. The call schema is compiled once, via $ref. */
        cJSON_AddItemToObject(defs, "call", one);
        cJSON *arr = cJSON_CreateObject();
        cJSON_AddStringToObject(arr, "type", "array");
        cJSON_AddNumberToObject(arr, "minItems", 1);
        cJSON_AddStringToObject(cJSON_AddObjectToObject(arr, "items"), "$ref", "#/$defs/call");
        cJSON *ref = cJSON_CreateObject();
        cJSON_AddStringToObject(ref, "$ref", "#/$defs/call");
        s = cJSON_CreateObject();
        cJSON *alts = cJSON_AddArrayToObject(s, "anyOf");
        cJSON_AddItemToArray(alts, wrapper("tool_call", ref));
        cJSON_AddItemToArray(alts, wrapper("tool_calls", arr));
    } else {
        s = wrapper("tool_call", one);
    }
    if (cJSON_GetArraySize(defs)) cJSON_AddItemToObject(s, "$defs", defs);
    else cJSON_Delete(defs);
    return s;
}
