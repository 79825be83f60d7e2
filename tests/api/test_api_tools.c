/* api_tools: request validation (param named), the generic format's texts,
 * the lenient output parser (every accepted wrapper, and what must stay
 * content), the streaming hold predicate and the output schema. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_fmt.h"
#include "api_tools.h"

#define TOOLS                                                                              \
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"w\"," \
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},"   \
    "\"required\":[\"city\"]}}},"                                                          \
    "{\"type\":\"function\",\"function\":{\"name\":\"add\"}}]"

static int parse(const char *body, api_tools *t, api_error *e) {
    cJSON *o = cJSON_Parse(body);
    cr_assert_not_null(o, "%s", body);
    int rc = api_tools_parse(o, t, e);
    cJSON_Delete(o);
    return rc;
}

static api_tools tools_with(const char *choice_and_more) {
    char body[2048];
    snprintf(body, sizeof body, "{\"tools\": " TOOLS "%s}", choice_and_more);
    api_tools t;
    api_error e;
    cr_assert_eq(parse(body, &t, &e), 0, "%s: %s", body, e.message);
    return t;
}

Test(api_tools, valid_requests) {
    api_tools t = tools_with("");
    cr_expect_eq(t.n_tools, 2);
    cr_expect_eq(t.choice, API_TOOL_AUTO);
    cr_expect_eq(t.parallel, 1);
    api_tools_free(&t);
    t = tools_with(", \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"add\"}},"
                   " \"parallel_tool_calls\": false");
    cr_expect_eq(t.choice, API_TOOL_NAMED);
    cr_expect_str_eq(t.name, "add");
    cr_expect_eq(t.parallel, 0);
    api_tools_free(&t);
    api_error e;
    cr_assert_eq(parse("{}", &t, &e), 0);
    cr_expect_eq(t.choice, API_TOOL_NONE);
    cr_expect_null(t.tools_json);
}

Test(api_tools, invalid_requests_name_the_param) {
    static const char *const bad[][2] = {
        {"{\"tools\": [{\"type\": \"function\", \"function\": {}}]}", "tools[0].function.name"},
        {"{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"a b\"}}]}", "tools[0].function.name"},
        {"{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"x\", \"parameters\": []}}]}",
         "tools[0].function.parameters"},
        {"{\"tools\": [{\"type\": \"code\", \"function\": {\"name\": \"x\"}}]}", "tools[0].type"},
        {"{\"tools\": 3}", "tools"},
        {"{\"tools\": " TOOLS ", \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"zz\"}}}",
         "tool_choice"},
        {"{\"tools\": " TOOLS ", \"tool_choice\": \"always\"}", "tool_choice"},
        {"{\"tool_choice\": \"required\"}", "tool_choice"},
        {"{\"tools\": " TOOLS ", \"parallel_tool_calls\": 1}", "parallel_tool_calls"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        api_tools t;
        api_error e;
        cr_expect_eq(parse(bad[i][0], &t, &e), -1, "%s", bad[i][0]);
        cr_expect_eq(e.status, 400);
        cr_expect_str_eq(e.param, bad[i][1], "%s", bad[i][0]);
    }
}

/* Parses text; returns the number of calls and checks each has a distinct
 * call_ id and arguments that are a JSON object. */
static int calls_of(const char *text, const api_tools *t, api_tool_call **c) {
    int n = api_tools_parse_output(text, strlen(text), t, 42, c);
    for (int i = 0; i < n; i++) {
        cr_expect_eq(strncmp((*c)[i].id, "call_", 5), 0);
        cr_expect_eq(strlen((*c)[i].id), 29);
        for (int k = 0; k < i; k++) cr_expect_str_neq((*c)[i].id, (*c)[k].id);
        cJSON *a = cJSON_Parse((*c)[i].arguments);
        cr_expect(cJSON_IsObject(a), "%s", (*c)[i].arguments);
        cJSON_Delete(a);
    }
    return n;
}

Test(api_tools, output_forms) {
    api_tools t = tools_with("");
    static const struct {
        const char *text;
        int n;
        const char *name0, *args0;
    } cases[] = {
        {"{\"tool_call\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}}", 1,
         "get_weather", "{\"city\":\"Paris\"}"},
        {"  {\"tool_calls\": [{\"name\": \"add\", \"arguments\": {\"a\": 1}}, {\"name\": "
         "\"get_weather\", \"arguments\": {}}]}\n", 2, "add", "{\"a\":1}"},
        {"<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2}}\n</tool_call>\n<tool_call>\n"
         "{\"name\": \"add\", \"arguments\": {\"a\": 3}}\n</tool_call>", 2, "add", "{\"a\":2}"},
        {"<tool_call>[{\"name\": \"add\", \"arguments\": {\"b\": 1}}]</tool_call>", 1, "add", "{\"b\":1}"},
        {"[TOOL_CALLS] [{\"name\": \"add\", \"arguments\": {\"a\": 1}, \"id\": \"abc123xyz\"}]", 1, "add",
         "{\"a\":1}"},
        {"<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}", 1,
         "get_weather", "{\"city\":\"Oslo\"}"},
        {"```json\n{\"name\": \"add\", \"arguments\": \"{\\\"a\\\": 5}\"}\n```", 1, "add", "{\"a\":5}"},
        {"{\"type\": \"function\", \"function\": {\"name\": \"add\", \"arguments\": {}}}", 1, "add", "{}"},
        {"{\"name\": \"add\"}", 1, "add", "{}"},
        /* content, not calls */
        {"Hello there", 0, NULL, NULL},
        {"{\"name\": \"unknown_tool\", \"arguments\": {}}", 0, NULL, NULL},
        {"{\"answer\": 42}", 0, NULL, NULL},
        {"{\"name\": \"add\", \"arguments\": {}} and some words", 0, NULL, NULL},
        {"{\"name\": \"add\", \"arguments\": [1]}", 0, NULL, NULL},
        {"<tool_call>{\"name\": \"add\"", 0, NULL, NULL},
        {"[]", 0, NULL, NULL},
        {"", 0, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        api_tool_call *c = NULL;
        int n = calls_of(cases[i].text, &t, &c);
        cr_expect_eq(n, cases[i].n, "case %zu: %s -> %d", i, cases[i].text, n);
        if (n > 0 && cases[i].name0) {
            cr_expect_str_eq(c[0].name, cases[i].name0, "case %zu", i);
            cr_expect_str_eq(c[0].arguments, cases[i].args0, "case %zu", i);
        }
        api_tool_calls_free(c, n > 0 ? n : 0);
    }
    api_tools_free(&t);
}

Test(api_tools, choice_limits_what_counts_as_a_call) {
    const char *two = "{\"tool_calls\": [{\"name\": \"add\", \"arguments\": {}}, {\"name\": \"add\", "
                      "\"arguments\": {\"a\": 1}}]}";
    api_tools t = tools_with(", \"parallel_tool_calls\": false");
    api_tool_call *c = NULL;
    cr_expect_eq(calls_of(two, &t, &c), 1, "one call when parallel calls are off");
    api_tool_calls_free(c, 1);
    api_tools_free(&t);
    t = tools_with(", \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"get_weather\"}}");
    cr_expect_eq(calls_of(two, &t, &c), 0, "a call of another function than the named one");
    api_tools_free(&t);
    t = tools_with(", \"tool_choice\": \"none\"");
    cr_expect_eq(calls_of(two, &t, &c), 0, "tool_choice none: never calls");
    api_tools_free(&t);
}

Test(api_tools, streaming_hold) {
    static const char *const hold[] = {"", "  \n", "{", " {\"tool", "<tool", "<tool_call>{", "[TOOL",
                                       "<|python", "```", "[{"};
    static const char *const release[] = {"Hello", " The", "<b>", "(x)", "`a`", "1"};
    for (size_t i = 0; i < sizeof hold / sizeof *hold; i++)
        cr_expect_eq(api_tools_maybe_call(hold[i], strlen(hold[i])), 1, "'%s'", hold[i]);
    for (size_t i = 0; i < sizeof release / sizeof *release; i++)
        cr_expect_eq(api_tools_maybe_call(release[i], strlen(release[i])), 0, "'%s'", release[i]);
}

Test(api_tools, generic_texts) {
    api_tools t = tools_with(", \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"add\"}}");
    char *s = api_tools_system_prompt(&t);
    cr_assert_not_null(s);
    cr_expect(strstr(s, "{\"name\":\"get_weather\",\"description\":\"w\",\"parameters\":") != NULL, "%s", s);
    cr_expect(strstr(s, "{\"tool_call\": {\"name\": \"<tool name>\"") != NULL);
    cr_expect(strstr(s, "You must call the tool \"add\".") != NULL, "%s", s);
    free(s);
    api_tools_free(&t);
    s = api_tools_calls_text("[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"add\","
                             "\"arguments\":\"{\\\"a\\\":1}\"}}]");
    cr_expect_str_eq(s, "{\"tool_call\":{\"name\":\"add\",\"arguments\":{\"a\":1}}}");
    free(s);
    s = api_tools_result_text("c1", "add", "3");
    cr_expect_str_eq(s, "{\"tool_response\":{\"tool_call_id\":\"c1\",\"name\":\"add\",\"content\":\"3\"}}");
    free(s);
}

Test(api_tools, output_schema) {
    api_tools t = tools_with("");
    cr_expect_null(api_tools_output_schema(&t), "auto: nothing to constrain");
    api_tools_free(&t);
    t = tools_with(", \"tool_choice\": \"required\", \"parallel_tool_calls\": false");
    cJSON *s = api_tools_output_schema(&t);
    cr_assert_not_null(s);
    cJSON *any = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "properties"), "tool_call"), "anyOf");
    cr_assert_eq(cJSON_GetArraySize(any), 2);
    cJSON *p0 = cJSON_GetObjectItem(cJSON_GetArrayItem(any, 0), "properties");
    cr_expect_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(p0, "name"), "const")->valuestring, "get_weather");
    cr_expect_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(p0, "arguments"), "required"), 0)->valuestring,
                     "city");
    cJSON_Delete(s);
    api_tools_free(&t);
    t = tools_with(", \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"add\"}}");
    s = api_tools_output_schema(&t);
    cJSON *alts = cJSON_GetObjectItem(s, "anyOf");
    cr_assert_eq(cJSON_GetArraySize(alts), 2, "parallel calls: one call or an array of calls");
    cJSON *single = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(alts, 0), "properties"), "tool_call");
    cr_expect_str_eq(cJSON_GetObjectItem(single, "$ref")->valuestring, "#/$defs/call");
    cJSON *arr = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(alts, 1), "properties"), "tool_calls");
    cr_assert_not_null(arr);
    cr_expect_eq(cJSON_GetObjectItem(arr, "minItems")->valueint, 1);
    cr_expect_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(arr, "items"), "$ref")->valuestring, "#/$defs/call");
    any = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "$defs"), "call"), "anyOf");
    cr_expect_eq(cJSON_GetArraySize(any), 1);
    cJSON_Delete(s);
    api_tools_free(&t);
}

/* A tool's $refs point into its own parameters, which the wrapper nests:
 * they are rebased onto a copy in the root's $defs ("p<i>"), per tool, so
 * two tools with the same $defs name do not clash; const/enum data is left
 * alone. */
Test(api_tools, output_schema_rebases_refs) {
    const char *body =
        "{\"tool_choice\": \"required\", \"parallel_tool_calls\": false, \"tools\": ["
        "{\"type\":\"function\",\"function\":{\"name\":\"plain\",\"parameters\":{}}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":{\"type\":\"object\","
        "\"$defs\":{\"x\":{\"type\":\"integer\"}},\"properties\":{\"v\":{\"$ref\":\"#/$defs/x\"},"
        "\"k\":{\"const\":{\"$ref\":\"#\"}},\"self\":{\"$ref\":\"#\"},"
        "\"default\":{\"$ref\":\"#/$defs/x\"},\"l\":{\"anyOf\":[{\"$ref\":\"#\"},{\"type\":\"null\"}]}}}}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"b\",\"parameters\":{\"type\":\"object\","
        "\"$defs\":{\"x\":{\"type\":\"string\"}},\"properties\":{\"v\":{\"$ref\":\"#/$defs/x\"}}}}}]}";
    api_tools t;
    api_error e;
    cr_assert_eq(parse(body, &t, &e), 0, "%s", e.message);
    cJSON *s = api_tools_output_schema(&t);
    cr_assert_not_null(s);
    cJSON *any = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "properties"), "tool_call"), "anyOf");
    cJSON *args0 = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(any, 0), "properties"), "arguments");
    cr_expect_str_eq(cJSON_GetObjectItem(args0, "type")->valuestring, "object", "{}: any object");
    cJSON *args1 = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(any, 1), "properties"), "arguments");
    cJSON *props1 = cJSON_GetObjectItem(args1, "properties");
    cr_expect_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(props1, "v"), "$ref")->valuestring,
                     "#/$defs/p1/$defs/x");
    cr_expect_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(props1, "self"), "$ref")->valuestring,
                     "#/$defs/p1");
    cr_expect_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(props1, "k"), "const"),
                                         "$ref")->valuestring, "#", "data is not rebased");
    /* review: a property named like a data keyword is a schema all the same */
    cr_expect_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(props1, "default"), "$ref")->valuestring,
                     "#/$defs/p1/$defs/x");
    cJSON *l0 = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(props1, "l"), "anyOf"), 0);
    cr_expect_str_eq(cJSON_GetObjectItem(l0, "$ref")->valuestring, "#/$defs/p1");
    cJSON *defs = cJSON_GetObjectItem(s, "$defs");
    cr_assert_not_null(cJSON_GetObjectItem(defs, "p1"));
    cr_expect_null(cJSON_GetObjectItem(defs, "p0"), "no $ref: no copy");
    cJSON *p2 = cJSON_GetObjectItem(defs, "p2");
    cr_assert_not_null(p2);
    cr_expect_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(p2, "$defs"), "x"), "type")->valuestring,
                     "string");
    cJSON_Delete(s);
    api_tools_free(&t);
}

/* More tools than the matcher follows as alternatives: one call schema,
 * the name an enum of them and any arguments object. */
Test(api_tools, output_schema_many_tools) {
    char body[4096];
    int n = snprintf(body, sizeof body, "{\"tool_choice\": \"required\", \"parallel_tool_calls\": false, \"tools\": [");
    for (int i = 0; i <= API_TOOLS_EXACT_MAX; i++)
        n += snprintf(body + n, sizeof body - n, "%s{\"type\":\"function\",\"function\":{\"name\":\"f%d\"}}",
                      i ? "," : "", i);
    snprintf(body + n, sizeof body - n, "]}");
    api_tools t;
    api_error e;
    cr_assert_eq(parse(body, &t, &e), 0, "%s", e.message);
    cJSON *s = api_tools_output_schema(&t);
    cJSON *any = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "properties"), "tool_call"), "anyOf");
    cr_assert_eq(cJSON_GetArraySize(any), 1);
    cJSON *props = cJSON_GetObjectItem(cJSON_GetArrayItem(any, 0), "properties");
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(props, "name"), "enum")),
                 API_TOOLS_EXACT_MAX + 1);
    cr_expect(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(props, "arguments"), "additionalProperties")));
    cJSON_Delete(s);
    api_tools_free(&t);
}

/* The response and chunk forms of tool calls (api_fmt). */
Test(api_tools, formatted_calls) {
    api_tool_call c = {.id = "call_abc", .name = "add", .arguments = "{\"a\":1}"};
    api_meta m = {.kind = API_CHAT, .id = "chatcmpl-1", .model = "m", .created = 1};
    api_choice_out o = {.index = 0, .finish_reason = "tool_calls", .calls = &c, .n_calls = 1};
    char *js = api_format_response(&m, &o, 1, NULL);
    cJSON *r = cJSON_Parse(js), *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "choices"), 0);
    cJSON *msg = cJSON_GetObjectItem(ch, "message");
    cr_expect(cJSON_IsNull(cJSON_GetObjectItem(msg, "content")), "%s", js);
    cr_expect_str_eq(cJSON_GetObjectItem(ch, "finish_reason")->valuestring, "tool_calls");
    cJSON *tc = cJSON_GetArrayItem(cJSON_GetObjectItem(msg, "tool_calls"), 0);
    cr_expect_str_eq(cJSON_GetObjectItem(tc, "id")->valuestring, "call_abc");
    cr_expect_str_eq(cJSON_GetObjectItem(tc, "type")->valuestring, "function");
    cr_expect_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(tc, "function"), "arguments")->valuestring, "{\"a\":1}");
    cr_expect_null(cJSON_GetObjectItem(tc, "index"), "no index outside streams");
    cJSON_Delete(r);
    free(js);
    /* a stream: the head (id, type, name, empty arguments), then a fragment */
    api_choice_out head = {.index = 0, .calls = &c, .call_index = 2, .call_head = 1};
    js = api_format_chunk(&m, &head, 1, 0, NULL);
    r = cJSON_Parse(js);
    cJSON *d = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "choices"), 0), "delta");
    tc = cJSON_GetArrayItem(cJSON_GetObjectItem(d, "tool_calls"), 0);
    cr_expect_eq(cJSON_GetObjectItem(tc, "index")->valueint, 2);
    cr_expect_str_eq(cJSON_GetObjectItem(tc, "id")->valuestring, "call_abc");
    cr_expect_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(tc, "function"), "name")->valuestring, "add");
    cr_expect_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(tc, "function"), "arguments")->valuestring, "");
    cr_expect_null(cJSON_GetObjectItem(d, "content"), "%s", js);
    cJSON_Delete(r);
    free(js);
    api_choice_out frag = {.index = 0, .calls = &c, .call_index = 2, .args_frag = "{\"a\""};
    js = api_format_chunk(&m, &frag, 1, 0, NULL);
    r = cJSON_Parse(js);
    d = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "choices"), 0), "delta");
    tc = cJSON_GetArrayItem(cJSON_GetObjectItem(d, "tool_calls"), 0);
    cr_expect_null(cJSON_GetObjectItem(tc, "id"));
    cr_expect_null(cJSON_GetObjectItem(cJSON_GetObjectItem(tc, "function"), "name"));
    cr_expect_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(tc, "function"), "arguments")->valuestring, "{\"a\"");
    cJSON_Delete(r);
    free(js);
}
