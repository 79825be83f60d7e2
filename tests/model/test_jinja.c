/* Jinja interpreter tests: the built-in chat renderings (model/chat.c) are
 * reproduced byte for byte from the templates' Jinja sources, and the
 * language pieces behave as jinja2 does (the expected strings below were
 * produced by jinja2 3.1 in Hugging Face's configuration: trim_blocks,
 * lstrip_blocks, loopcontrols, tojson = json.dumps(ensure_ascii=False)). */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "jinja.h"
#include "pverr.h"

#define FIX PIVOT_SOURCE_ROOT "/tests/fixtures/tokenizer/chat.json"

/* Meta's Llama-2 chat template and the Llama-3 Instruct one (as shipped;
 * the fixture's llama3 template is a minimal variant). */
static const char LLAMA2[] =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
    "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set "
    "system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == "
    "'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != "
    "false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + "
    "message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif "
    "message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% "
    "endfor %}";
static const char LLAMA3[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim "
    "+ '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ "
    "content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static char *render_src(const char *src, const char *ctx, int *rc, char *err, size_t errlen) {
    jj_template *t = NULL;
    *rc = jj_compile(src, strlen(src), &t, err, errlen);
    if (*rc) return NULL;
    char *out = NULL;
    *rc = jj_render(t, ctx, strlen(ctx), &out, err, errlen);
    jj_free(t);
    return out;
}

/* Renders messages with the built-in renderer of src's family and with
 * the interpreter (BOS text "<s>" removed from the front, as the caller
 * does), and compares. */
static void same_as_builtin(const char *src, cJSON *msgs, int agp, const char *what) {
    chat_template *t = NULL;
    cr_assert_eq(chat_template_parse(src, strlen(src), &t), PV_OK);
    cr_assert_not_null(chat_template_jinja(t), "%s: %s", what, chat_template_jinja_error(t));
    int n = cJSON_GetArraySize(msgs);
    chat_msg cm[16];
    cr_assert_leq(n, 16);
    for (int i = 0; i < n; i++) {
        cJSON *m = cJSON_GetArrayItem(msgs, i);
        cm[i] = (chat_msg){cJSON_GetObjectItem(m, "role")->valuestring,
                           cJSON_GetObjectItem(m, "content")->valuestring};
    }
    char *want = NULL, *got = NULL, err[256] = "";
    cr_assert_eq(chat_render(t, cm, n, agp, &want), PV_OK, "%s", what);
    cJSON *ctx = cJSON_CreateObject();
    cJSON_AddItemToObject(ctx, "messages", cJSON_Duplicate(msgs, 1));
    cJSON_AddBoolToObject(ctx, "add_generation_prompt", agp);
    cJSON_AddStringToObject(ctx, "bos_token", "<s>");
    cJSON_AddStringToObject(ctx, "eos_token", "</s>");
    char *js = cJSON_PrintUnformatted(ctx);
    int rc = jj_render(chat_template_jinja(t), js, strlen(js), &got, err, sizeof err);
    cr_assert_eq(rc, 0, "%s: %s", what, err);
    const char *g = strncmp(got, "<s>", 3) ? got : got + 3;
    cr_expect_str_eq(g, want, "%s (agp %d)", what, agp);
    free(js);
    free(want);
    free(got);
    cJSON_Delete(ctx);
    chat_template_free(t);
}

Test(jinja, builtin_renderings_are_reproduced) {
    char *buf = slurp(FIX);
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    cr_assert_not_null(j);
    cJSON *tpls = cJSON_GetObjectItem(j, "templates"), *cases = cJSON_GetObjectItem(j, "cases");
    int checked = 0;
    for (int i = 0; i < cJSON_GetArraySize(cases); i++) {
        cJSON *c = cJSON_GetArrayItem(cases, i);
        const char *name = cJSON_GetObjectItem(c, "template")->valuestring;
        cJSON *msgs = cJSON_GetObjectItem(c, "messages");
        for (int agp = 0; agp < 2; agp++) {
            same_as_builtin(cJSON_GetObjectItem(tpls, name)->valuestring, msgs, agp, name);
            /* the shipped Llama-3 template, and Llama-2's for the [INST] cases */
            if (!strcmp(name, "llama3")) same_as_builtin(LLAMA3, msgs, agp, "llama3-shipped");
            checked++;
        }
    }
    cr_assert_geq(checked, 24);
    cJSON_Delete(j);
}

Test(jinja, llama2_template_matches_builtin) {
    const char *convs[] = {
        "[{\"role\":\"user\",\"content\":\"Hi\"}]",
        "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi\"},"
        "{\"role\":\"assistant\",\"content\":\"Hello!\"},{\"role\":\"user\",\"content\":\"Bye\"}]",
        "[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]",
    };
    for (size_t i = 0; i < sizeof convs / sizeof *convs; i++) {
        cJSON *m = cJSON_Parse(convs[i]);
        same_as_builtin(LLAMA2, m, 0, "llama2");
        cJSON_Delete(m);
    }
}

static const char *const cases[][3] = {
    {"{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ 7 % 3 }}|{{ -7 // 2 }}|{{ 2 ** 10 }}|{{ 7 / 2 }}",
     "{}",
     "7|9|3|1|-4|1024|3.5"},
    {"{{ 'a' ~ 1 ~ none }}|{{ 'x' * 3 }}|{{ [1, 2] + [3] }}|{{ 1 == 1.0 }}|{{ true and 'y' }}|{{ 0 or 'z' }}",
     "{}",
     "a1None|xxx|[1, 2, 3]|True|y|z"},
    {"{{ 'b' in 'abc' }}{{ 2 in [1, 2] }}{{ 'k' in {'k': 1} }}{{ 3 not in [1] }}{{ not 0 }}",
     "{}",
     "TrueTrueTrueTrueTrue"},
    {"{{ 'yes' if x > 1 else 'no' }}{{ 'only' if x > 5 }}|{{ x < 3 and x >= 2 }}",
     "{\"x\": 2}",
     "yes|True"},
    {"{{ s[1:3] }}|{{ s[::-1] }}|{{ s[-2:] }}|{{ l[1:] }}|{{ l[::-1] }}|{{ l[-1] }}|{{ s[0] }}",
     "{\"s\": \"hello\", \"l\": [1, 2, 3]}",
     "el|olleh|lo|[2, 3]|[3, 2, 1]|3|h"},
    {"{{ d.a }}{{ d['b'] }}{{ d.missing }}|{{ d.missing is defined }}|{{ d.get('a') }}{{ d.get('z', 9) }}",
     "{\"d\": {\"a\": 1, \"b\": \"two\"}}",
     "1two|False|19"},
    {"{{ '  pad  ' | trim }}|{{ 'ab' | upper }}{{ 'CD' | lower }}|{{ 'hello world' | title }}|{{ 'hi there' | capitalize }}|{{ l | length }}{{ 'héllo' | length }}",
     "{\"l\": [1, 2]}",
     "pad|ABcd|Hello World|Hi there|25"},
    {"{{ u | default('dflt') }}|{{ '' | default('e', true) }}|{{ l | first }}{{ l | last }}|{{ l | join(', ') }}|{{ 3 | string }}{{ '42' | int + 1 }}",
     "{\"l\": [\"a\", \"b\", \"c\"]}",
     "dflt|e|ac|a, b, c|343"},
    {"{{ d | tojson }}|{{ l | tojson }}|{{ 'é\"\\n' | tojson }}|{{ d | tojson(indent=2) }}",
     "{\"d\": {\"k\": [1, 2.5, null, true], \"z\": {}}, \"l\": []}",
     "{\"k\": [1, 2.5, null, true], \"z\": {}}|[]|\"é\\\"\\n\"|{\n  \"k\": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  \"z\": {}\n}"},
    {"{{ l }}|{{ d }}|{{ none }}|{{ true }}|{{ 1.0 }}|{{ 0.1 + 0.2 }}|{{ \"it's\" }}",
     "{\"l\": [\"a\", 1, null], \"d\": {\"k\": \"v\"}}",
     "['a', 1, None]|{'k': 'v'}|None|True|1.0|0.30000000000000004|it's"},
    {"{% for x in l %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }} {% endfor %}",
     "{\"l\": [\"a\", \"b\", \"c\"]}",
     "01TrueFalse33 12FalseFalse32 23FalseTrue31 "},
    {"{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %}|{% for k, v in d | items %}{{ v }}{% endfor %}",
     "{\"d\": {\"x\": 1, \"y\": 2}}",
     "x=1;y=2;|xy|12"},
    {"{% for x in l if x != 2 %}{{ x }}{{ loop.length }}{% else %}none{% endfor %}|{% for x in [] %}a{% else %}empty{% endfor %}",
     "{\"l\": [1, 2, 3]}",
     "1232|empty"},
    {"{% for x in l %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}",
     "{\"l\": [1, 2, 3, 4, 5]}",
     "13"},
    {"{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}|{% set ns = namespace(n=0) %}{% for i in [1, 2, 3] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}",
     "{}",
     "231|6"},
    {"{% if x == 1 %}one{% elif x == 2 %}two{% else %}other{% endif %}{% if not y %}!{% endif %}",
     "{\"x\": 2}",
     "two!"},
    {"{{ x is defined }}{{ y is undefined }}{{ none is none }}{{ 's' is string }}{{ d is mapping }}{{ 1 is number }}{{ l is iterable }}{{ 3 is odd }}{{ 2 is even }}{{ 1 is equalto 1 }}{{ x is not none }}",
     "{\"x\": 1, \"d\": {}, \"l\": []}",
     "TrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrue"},
    {"{{ s.startswith('ab') }}{{ s.endswith('x') }}|{{ '  t  '.strip() }}|{{ 'xxtxx'.lstrip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ s.replace('b', 'B') }}|{{ s.upper() }}|{{ '-'.join(['p', 'q']) }}",
     "{\"s\": \"abc\"}",
     "TrueFalse|t|txx|['a', 'b', '', 'c']|['a', 'b']|aBc|ABC|p-q"},
    {"{{ l | selectattr('role', 'equalto', 'user') | map(attribute='c') | join }}|{{ l | rejectattr('role', 'equalto', 'user') | list | length }}|{{ [1, 0, 2] | select | list }}|{{ ['a', 'b'] | reject('equalto', 'a') | list }}",
     "{\"l\": [{\"role\": \"user\", \"c\": \"x\"}, {\"role\": \"bot\", \"c\": \"y\"}, {\"role\": \"user\", \"c\": \"z\"}]}",
     "xz|1|[1, 2]|['b']"},
    {"{{ range(3) | list }}{{ range(1, 7, 2) | list }}|{{ [3, 1] | reverse | list }}|{{ 'abc' | reverse }}|{{ -3 | abs }}|{{ {'a': 1}.keys() | list }}",
     "{}",
     "[0, 1, 2][1, 3, 5]|[1, 3]|cba|3|['a']"},
    {"a\n  {% if true %}\n  b\n  {% endif %}\nc",
     "{}",
     "a\n  b\nc"},
    {"a  {%- if true -%}  b  {%- endif %}  c\n{{- ' d ' -}}\n e {# note #}\n f {#- g -#} h",
     "{}",
     "ab  c d e  fh"},
    {"{% for i in [1, 2] %}\n  x{{ i }}\n{% endfor %}\nend\n",
     "{}",
     "  x1\n  x2\nend"},
    {"  {%+ if true %}k{% endif %}|{{ 'v' }}\n  {{ 'w' }}",
     "{}",
     "  k|v\n  w"},
    {"{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} {{ greet(punct='.', name='C') }}",
     "{}",
     "Hi A! Hi B? Hi C."},
    {"{%- macro ty(s) -%}{%- if s.type == 'array' -%}list[{{ ty(s['items']) }}]{%- elif s.type == 'string' -%}str{%- else -%}{{ s.type }}{%- endif -%}{%- endmacro -%}{{ ty(x) }}",
     "{\"x\": {\"type\": \"array\", \"items\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}}}}",
     "list[list[str]]"},
    {"{% set g = 'top' %}{% macro m() %}{{ g }}{% for i in [1,2] %}{{ i }}{% endfor %}{% endmacro %}{{ m() | length }}{{ m() }}",
     "{}",
     "5top12"},
    {"{{ \"a\nb\n\nc\" | indent }}|{{ \"a\nb\" | indent(2, true) }}|{{ \"a\n\nb\" | indent(width=3, blank=true) }}|{{ \"x\" | indent(first=True) }}",
     "{}",
     "a\n    b\n\n    c|  a\n  b|a\n   \n   b|    x"},
};

Test(jinja, language_matches_jinja2) {
    int n = (int)(sizeof cases / sizeof *cases), ok = 0;
    for (int i = 0; i < n; i++) {
        char err[256] = "";
        int rc;
        char *out = render_src(cases[i][0], cases[i][1], &rc, err, sizeof err);
        cr_expect_eq(rc, 0, "case %d: %s", i, err);
        if (out && !strcmp(out, cases[i][2])) ok++;
        else fprintf(stderr, "case %d: %s\n want [%s]\n got  [%s]\n", i, cases[i][0], cases[i][2],
                     out ? out : "(error)");
        free(out);
    }
    cr_expect_eq(ok, n);
}

/* Unsupported constructs are refused when the template is compiled, with
 * a message that names the construct and its line. */
Test(jinja, unsupported_constructs_are_named) {
    static const char *const bad[][3] = {
        {"a\n{% call f() %}x{% endcall %}", "call", "line 2"},
        {"{% for m in l %}{{ loop.cycle('a', 'b') }}{% endfor %}", "cycle", "line 1"},
        {"{% macro f() %}{% endmacro %}\n{{ f() }}{{ g() }}", "'g'", "line 2"},
        {"{{ x | frobnicate }}", "frobnicate", "line 1"},
        {"{% if x is shiny %}{% endif %}", "shiny", "line 1"},
        {"\n\n{{ cycler(1) }}", "cycler", "line 3"},
        {"{{ 'a'.zfill(3) }}", "zfill", "line 1"},
        {"{% include 'x' %}", "include", "line 1"},
        {"{% set x %}y{% endset %}", "endset", "line 1"},
        {"{% for x in y recursive %}{% endfor %}", "recursive", "line 1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        jj_template *t = NULL;
        char err[256] = "";
        int rc = jj_compile(bad[i][0], strlen(bad[i][0]), &t, err, sizeof err);
        cr_expect_eq(rc, PV_EUNSUPPORTED, "%s -> %d (%s)", bad[i][0], rc, err);
        cr_expect_null(t);
        cr_expect(strstr(err, bad[i][1]) && strstr(err, bad[i][2]), "%s -> '%s'", bad[i][0], err);
    }
}

Test(jinja, syntax_errors_and_runtime_errors) {
    static const char *const bad[][2] = {
        {"{% if x %}never closed", "endif"},
        {"{% for x in y %}", "endfor"},
        {"{{ 'unterminated }}", "unterminated"},
        {"{{ x + }}", "line 1"},
        {"{# open comment", "comment"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        jj_template *t = NULL;
        char err[256] = "";
        cr_expect_eq(jj_compile(bad[i][0], strlen(bad[i][0]), &t, err, sizeof err), PV_EFORMAT,
                     "%s", bad[i][0]);
        cr_expect(strstr(err, bad[i][1]) != NULL, "%s -> '%s'", bad[i][0], err);
    }
    char err[256] = "";
    int rc;
    char *out = render_src("\n{{ raise_exception('roles must alternate') }}", "{}", &rc, err, sizeof err);
    cr_expect_null(out);
    cr_expect_eq(rc, PV_EINVAL);
    cr_expect(strstr(err, "roles must alternate") && strstr(err, "line 2"), "%s", err);
    out = render_src("{{ 'a' + 1 }}", "{}", &rc, err, sizeof err);
    cr_expect_eq(rc, PV_EINVAL);
    cr_expect(strstr(err, "string") && strstr(err, "int"), "%s", err);
    out = render_src("{{ x }}", "[1, 2]", &rc, err, sizeof err);
    cr_expect_eq(rc, PV_EINVAL, "a context that is not an object");
    out = render_src("{{ x }}", "{\"x\": ", &rc, err, sizeof err);
    cr_expect_eq(rc, PV_EINVAL, "a context that is not JSON");
    /* found by fuzz_jinja: 64-bit overflow is an error, not undefined behaviour */
    static const char *const big[] = {"{{ 9223372036854775807 + 1 }}", "{{ -9223372036854775807 - 2 }}",
                                      "{{ 4611686018427387904 * 2 }}", "{{ 2 ** 63 }}",
                                      "{{ 'ab' * 10000000 }}"};
    for (size_t i = 0; i < sizeof big / sizeof *big; i++) {
        out = render_src(big[i], "{}", &rc, err, sizeof err);
        cr_expect_null(out, "%s", big[i]);
        cr_expect_eq(rc, PV_EINVAL, "%s", big[i]);
        cr_expect(strstr(err, "overflow") || strstr(err, "repeated"), "%s -> '%s'", big[i], err);
    }
    out = render_src("{{ 1 // 9223372036854775807 }},{{ 1 % 9223372036854775807 }},{{ -7 // 2 }},"
                     "{{ -7 % 2 }},{{ 7 % -2 }}", "{}", &rc, err, sizeof err);
    cr_expect_str_eq(out, "0,1,-4,1,-1", "Python's floor division and modulo");
    free(out);
    out = render_src("{{ 9223372036854775806 + 1 }}", "{}", &rc, err, sizeof err);
    cr_expect_str_eq(out, "9223372036854775807");
    free(out);
    /* found by fuzz_jinja: an empty string repeated 10**11 times is empty
     * at once (the repetition loop ran 10**11 rounds before) */
    out = render_src("[{{ '' * 100000000000 }}][{{ 'ab' * 2 }}][{{ 'x' * -3 }}]", "{}", &rc, err, sizeof err);
    cr_expect_str_eq(out, "[][abab][]", "%s", err);
    free(out);
    /* range near the 64-bit ends: its length without overflow, its last step
     * not past hi */
    out = render_src("{{ range(9223372036854775800, 9223372036854775807, 5) | list }}"
                     "{{ range(5, 0, -2) | list }}{{ range(0, 5, -1) | list }}", "{}", &rc, err, sizeof err);
    cr_expect_str_eq(out, "[9223372036854775800, 9223372036854775805][5, 3, 1][]", "%s", err);
    free(out);
    out = render_src("{{ range(-2, 9223372036854775807) | list }}", "{}", &rc, err, sizeof err);
    cr_expect_null(out);
    cr_expect(strstr(err, "range too long"), "%s", err);
}

Test(jinja, uses_reports_variables_read) {
    jj_template *t = NULL;
    const char *src = "{% for m in messages %}{{ m.content }}{% endfor %}{% if tools %}T{% endif %}";
    cr_assert_eq(jj_compile(src, strlen(src), &t, NULL, 0), 0);
    cr_expect(jj_uses(t, "tools"));
    cr_expect(jj_uses(t, "messages"));
    cr_expect(!jj_uses(t, "bos_token"));
    jj_free(t);
}

Test(jinja, context_json_strings_and_numbers) {
    char err[256] = "";
    int rc;
    char *out = render_src("{{ s }}|{{ n }}|{{ f }}|{{ big }}|{{ e }}",
                           "{\"s\": \"\\u00e9\\ud83d\\ude00\\t\", \"n\": -12, \"f\": 2.50, "
                           "\"big\": 12345678901, \"e\": 1e3}", &rc, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_expect_str_eq(out, "\xc3\xa9\xf0\x9f\x98\x80\t|-12|2.5|12345678901|1000.0");
    free(out);
}

/* Deep nesting is refused, not a stack overflow (templates come from files). */
Test(jinja, nesting_is_limited) {
    enum { N = 5000 };
    char *src = malloc(N * 2 + 16), *o = src;
    o += sprintf(o, "{{ ");
    for (int i = 0; i < N; i++) *o++ = '(';
    *o++ = '1';
    for (int i = 0; i < N; i++) *o++ = ')';
    sprintf(o, " }}");
    jj_template *t = NULL;
    char err[256] = "";
    cr_expect_eq(jj_compile(src, strlen(src), &t, err, sizeof err), PV_EUNSUPPORTED);
    cr_expect(strstr(err, "nesting") != NULL, "%s", err);
    free(src);
    int rc;
    char *out = render_src("{{ ((((((((((1)))))))))) + -(-2) }}", "{}", &rc, err, sizeof err);
    cr_expect_str_eq(out, "3");
    free(out);
}

/* Found in review: values that contain themselves or nest deeply, and
 * templates that loop or grow without end, are errors naming the limit,
 * never a stack overflow, a hang or the server's memory (templates render on
 * the event loop for every chat request). */
Test(jinja, render_work_is_bounded) {
    static const char *const bad[][2] = {
        {"{% set x = [] %}{% set _ = x.append(x) %}{{ x }}", "nested deeper"},
        {"{% set x = [] %}{% set _ = x.append(x) %}{{ x | tojson }}", "nested deeper"},
        {"{% set x = [] %}{% set _ = x.append(x) %}{{ x | string | length }}", "nested deeper"},
        {"{% set ns = namespace(x=[]) %}{% for i in range(200) %}{% set ns.x = [ns.x] %}"
         "{% endfor %}{{ ns.x }}", "nested deeper"},
        {"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
         "MiB of values"}, /* each inner range is a new list: memory runs out first */
        {NULL, "steps"},    /* work that allocates little: STEPS, built below */
        {"{% set ns = namespace(s='abcdefgh') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
         "{% endfor %}{{ ns.s | length }}", "longer than"},
        {"{% set ns = namespace(l=[]) %}{% for i in range(30) %}{% set ns.l = ns.l + ns.l + [i] %}"
         "{% endfor %}", "MiB of values"},
    };
    /* 1,000 x 1,000 iterations of 60 empty ifs: 1.2e8 steps, ~1 KB per iteration */
    char steps[2048];
    int o = snprintf(steps, sizeof steps, "{%% set r = range(1000) %%}{%% for i in r %%}{%% for j in r %%}");
    for (int k = 0; k < 60; k++) o += snprintf(steps + o, sizeof steps - (size_t)o, "{%% if 0 %%}{%% endif %%}");
    snprintf(steps + o, sizeof steps - (size_t)o, "{%% endfor %%}{%% endfor %%}");
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *src = bad[i][0] ? bad[i][0] : steps;
        char err[256] = "";
        int rc;
        char *out = render_src(src, "{}", &rc, err, sizeof err);
        cr_expect_null(out, "%s", src);
        cr_expect_eq(rc, PV_EINVAL, "%s -> %d", src, rc);
        cr_expect(strstr(err, bad[i][1]) != NULL, "%.80s -> '%s'", src, err);
        free(out);
    }
    /* Python: a list holding itself equals itself (identity first); just
     * under the nesting limit prints as jinja2 would */
    char err[256] = "";
    int rc;
    char *out = render_src("{% set x = [1] %}{% set _ = x.append(x) %}{{ x == x }}", "{}", &rc, err,
                           sizeof err);
    cr_expect_str_eq(out, "True", "%s", err);
    free(out);
    out = render_src("{% set ns = namespace(x=1) %}{% for i in range(64) %}{% set ns.x = [ns.x] %}"
                     "{% endfor %}{{ ns.x | tojson | length }}", "{}", &rc, err, sizeof err);
    cr_expect_str_eq(out, "129", "64 levels print: %s", err);
    free(out);
}
