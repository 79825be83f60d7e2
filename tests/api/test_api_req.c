/* api_req: each field's good and bad values, as tables. A good value names
 * the field it must land in and that field's stored value as text (stored()
 * below renders it), so a parse that returns 0 but stores the wrong thing
 * fails; a bad value names the param and code of its 400. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "api_req.h"

typedef struct {
    const char *body;
    const char *param; /* expected param on failure, NULL = success expected */
    const char *code;
    const char *field; /* success: the field to check (see stored()) */
    const char *want;  /* success: its stored value as stored() writes it */
} case_t;
#define OK(body, field, want) {body, NULL, NULL, field, want}
#define BAD(body, param, code) {body, param, code, NULL, NULL}

/* Appends printf-formatted text to buf (size n, NUL-terminated). */
__attribute__((format(printf, 3, 4))) static void put(char *buf, size_t n, const char *fmt, ...) {
    size_t used = strlen(buf);
    if (used + 1 >= n) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, n - used, fmt, ap);
    va_end(ap);
}

static void put_ids(char *buf, size_t n, const int32_t *ids, int k) {
    for (int i = 0; i < k; i++) put(buf, n, "%s%d", i ? "," : "", (int)ids[i]);
}

/* One field of the record as text: numbers with %d / %g, strings as is
 * ("(null)" when absent), lists joined with '|'. "all" is every field, for
 * comparing whole records. Unknown names render as "?name" (fails). */
static void stored(const api_request *r, const char *f, char *buf, size_t n) {
    buf[0] = 0;
    if (!strcmp(f, "all")) {
        static const char *const every[] = {
            "prompt", "messages", "max_tokens", "min_tokens", "n", "temperature", "top_p",
            "min_p", "top_k", "repetition_penalty", "presence_penalty", "frequency_penalty",
            "seed", "stop", "stop_token_ids", "logprobs", "echo", "ignore_eos", "stream",
            "user", "model", "kv_policy", "kv"};
        char one[512];
        for (size_t i = 0; i < sizeof every / sizeof *every; i++) {
            stored(r, every[i], one, sizeof one);
            put(buf, n, "%s=%s ", every[i], one);
        }
        return;
    }
    if (!strcmp(f, "prompt")) {
        for (int i = 0; i < r->n_prompts; i++) {
            put(buf, n, "%s", i ? "|" : "");
            if (r->prompts[i].text) {
                put(buf, n, "%s", r->prompts[i].text);
            } else {
                put(buf, n, "[");
                put_ids(buf, n, r->prompts[i].ids, r->prompts[i].n_ids);
                put(buf, n, "]");
            }
        }
    } else if (!strcmp(f, "messages")) {
        for (int i = 0; i < r->n_msgs; i++)
            put(buf, n, "%s%s:%s", i ? "|" : "", r->msgs[i].role, r->msgs[i].content);
    } else if (!strcmp(f, "max_tokens")) put(buf, n, "%d", r->max_tokens);
    else if (!strcmp(f, "min_tokens")) put(buf, n, "%d", r->min_tokens);
    else if (!strcmp(f, "n")) put(buf, n, "%d", r->n);
    else if (!strcmp(f, "top_k")) put(buf, n, "%d", r->top_k);
    else if (!strcmp(f, "temperature")) put(buf, n, "%g", r->temperature);
    else if (!strcmp(f, "top_p")) put(buf, n, "%g", r->top_p);
    else if (!strcmp(f, "min_p")) put(buf, n, "%g", r->min_p);
    else if (!strcmp(f, "repetition_penalty")) put(buf, n, "%g", r->repetition_penalty);
    else if (!strcmp(f, "presence_penalty")) put(buf, n, "%g", r->presence_penalty);
    else if (!strcmp(f, "frequency_penalty")) put(buf, n, "%g", r->frequency_penalty);
    else if (!strcmp(f, "seed")) {
        if (r->has_seed) put(buf, n, "%" PRIu64, r->seed);
        else put(buf, n, "none");
    } else if (!strcmp(f, "stop")) {
        for (int i = 0; i < r->n_stop; i++) put(buf, n, "%s%s", i ? "|" : "", r->stop[i]);
    } else if (!strcmp(f, "stop_token_ids")) put_ids(buf, n, r->stop_ids, r->n_stop_ids);
    else if (!strcmp(f, "logprobs")) put(buf, n, "%d/%d", r->logprobs, r->top_logprobs);
    else if (!strcmp(f, "echo")) put(buf, n, "%d", r->echo);
    else if (!strcmp(f, "ignore_eos")) put(buf, n, "%d", r->ignore_eos);
    else if (!strcmp(f, "cache_prompt")) put(buf, n, "%d", r->cache_prompt);
    else if (!strcmp(f, "stream")) put(buf, n, "%d/%d", r->stream, r->include_usage);
    else if (!strcmp(f, "user")) put(buf, n, "%s", r->user ? r->user : "(null)");
    else if (!strcmp(f, "model")) put(buf, n, "%s", r->model ? r->model : "(null)");
    else if (!strcmp(f, "kv_policy")) put(buf, n, "%s", r->kv_policy ? r->kv_policy : "(null)");
    else if (!strcmp(f, "kv")) {
        for (int i = 0; i < r->n_kv_knobs; i++)
            put(buf, n, "%s%s=%s", i ? ";" : "", r->kv_knobs[i].knob, r->kv_knobs[i].value);
    } else put(buf, n, "?%s", f);
}

static void run_cases(api_kind kind, const case_t *cs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        api_request r;
        api_error e = {0};
        int rc = api_parse_request(kind, cs[i].body, strlen(cs[i].body), &r, &e);
        if (!cs[i].param && !cs[i].code) {
            cr_expect_eq(rc, 0, "expected success: %s (got %s)", cs[i].body, e.message);
            /* every good value says what it must store */
            cr_assert(cs[i].field && cs[i].want, "case %s names no field to check", cs[i].body);
            if (rc) continue;
            char got[2048];
            stored(&r, cs[i].field, got, sizeof got);
            cr_expect_str_eq(got, cs[i].want, "%s: stored %s", cs[i].body, cs[i].field);
            api_request_free(&r);
        } else {
            cr_expect_eq(rc, -1, "expected failure: %s", cs[i].body);
            cr_expect_eq(e.status, 400, "status for %s", cs[i].body);
            if (cs[i].param) cr_expect_str_eq(e.param, cs[i].param, "param for %s", cs[i].body);
            if (cs[i].code) cr_expect_str_eq(e.code, cs[i].code, "code for %s", cs[i].body);
        }
    }
}

#define P "\"prompt\":\"hi\""
Test(api_req, completion_fields) {
    static const case_t cs[] = {
        OK("{" P "}", "prompt", "hi"),
        OK("{" P ",\"unknown_field\":{\"x\":[1,2]}}", "prompt", "hi"),
        BAD("not json", NULL, "invalid_json"),
        BAD("[1,2]", NULL, "invalid_json"),
        BAD("{}", "prompt", "missing_required_parameter"),
        BAD("{\"prompt\":5}", "prompt", NULL),
        BAD("{\"prompt\":[]}", "prompt", NULL),
        OK("{\"prompt\":[\"a\",\"b\"]}", "prompt", "a|b"),
        OK("{\"prompt\":[1,2,3]}", "prompt", "[1,2,3]"),
        OK("{\"prompt\":[[1,2],[3]]}", "prompt", "[1,2]|[3]"),
        BAD("{\"prompt\":[1,-2]}", "prompt", NULL),
        BAD("{\"prompt\":[1.5]}", "prompt", NULL),
        BAD("{\"prompt\":[\"a\",3]}", "prompt", NULL),
        OK("{" P ",\"max_tokens\":16}", "max_tokens", "16"),
        BAD("{" P ",\"max_tokens\":0}", "max_tokens", "invalid_value"),
        BAD("{" P ",\"max_tokens\":\"16\"}", "max_tokens", NULL),
        BAD("{" P ",\"max_tokens\":1.5}", "max_tokens", NULL),
        OK("{" P ",\"max_completion_tokens\":8}", "max_tokens", "8"),
        BAD("{" P ",\"max_completion_tokens\":-1}", "max_completion_tokens", NULL),
        OK("{" P ",\"temperature\":0}", "temperature", "0"),
        OK("{" P ",\"temperature\":2}", "temperature", "2"),
        BAD("{" P ",\"temperature\":2.5}", "temperature", NULL),
        BAD("{" P ",\"temperature\":-0.1}", "temperature", NULL),
        BAD("{" P ",\"temperature\":\"hot\"}", "temperature", NULL),
        OK("{" P ",\"temperature\":null}", "temperature", "1"),
        OK("{" P ",\"top_p\":0.9}", "top_p", "0.9"),
        BAD("{" P ",\"top_p\":0}", "top_p", NULL),
        BAD("{" P ",\"top_p\":1.1}", "top_p", NULL),
        OK("{" P ",\"top_k\":40}", "top_k", "40"),
        OK("{" P ",\"top_k\":-1}", "top_k", "0"),
        BAD("{" P ",\"top_k\":-2}", "top_k", NULL),
        OK("{" P ",\"min_p\":0.05}", "min_p", "0.05"),
        BAD("{" P ",\"min_p\":1.5}", "min_p", NULL),
        OK("{" P ",\"seed\":42}", "seed", "42"),
        OK("{" P ",\"seed\":-1}", "seed", "18446744073709551615"),
        BAD("{" P ",\"seed\":1.5}", "seed", NULL),
        OK("{" P ",\"presence_penalty\":1}", "presence_penalty", "1"),
        BAD("{" P ",\"presence_penalty\":3}", "presence_penalty", NULL),
        OK("{" P ",\"frequency_penalty\":-2}", "frequency_penalty", "-2"),
        BAD("{" P ",\"frequency_penalty\":-2.1}", "frequency_penalty", NULL),
        OK("{" P ",\"repetition_penalty\":1.1}", "repetition_penalty", "1.1"),
        BAD("{" P ",\"repetition_penalty\":0}", "repetition_penalty", NULL),
        OK("{" P ",\"n\":2}", "n", "2"),
        BAD("{" P ",\"n\":0}", "n", NULL),
        BAD("{" P ",\"n\":17}", "n", NULL),
        OK("{" P ",\"stop\":\"\\n\"}", "stop", "\n"),
        OK("{" P ",\"stop\":[\"a\",\"b\"]}", "stop", "a|b"),
        BAD("{" P ",\"stop\":[\"a\",1]}", "stop", NULL),
        BAD("{" P ",\"stop\":3}", "stop", NULL),
        OK("{" P ",\"stop_token_ids\":[1,2]}", "stop_token_ids", "1,2"),
        BAD("{" P ",\"stop_token_ids\":\"x\"}", "stop_token_ids", NULL),
        OK("{" P ",\"logprobs\":3}", "logprobs", "1/3"),
        BAD("{" P ",\"logprobs\":21}", "logprobs", NULL),
        BAD("{" P ",\"logprobs\":true}", "logprobs", NULL),
        OK("{" P ",\"echo\":true}", "echo", "1"),
        BAD("{" P ",\"echo\":1}", "echo", NULL),
        OK("{" P ",\"ignore_eos\":true}", "ignore_eos", "1"),
        BAD("{" P ",\"ignore_eos\":\"yes\"}", "ignore_eos", NULL),
        OK("{" P ",\"cache_prompt\":false}", "cache_prompt", "0"),
        OK("{" P ",\"cache_prompt\":true}", "cache_prompt", "1"),
        BAD("{" P ",\"cache_prompt\":0}", "cache_prompt", NULL),
        OK("{" P ",\"min_tokens\":4,\"max_tokens\":8}", "min_tokens", "4"),
        BAD("{" P ",\"min_tokens\":9,\"max_tokens\":8}", "min_tokens", NULL),
        OK("{" P ",\"stream\":true}", "stream", "1/0"),
        BAD("{" P ",\"stream\":\"true\"}", "stream", NULL),
        OK("{" P ",\"stream\":true,\"stream_options\":{\"include_usage\":true}}", "stream", "1/1"),
        BAD("{" P ",\"stream_options\":{\"include_usage\":true}}", "stream_options", NULL),
        BAD("{" P ",\"stream\":true,\"stream_options\":{\"include_usage\":1}}",
            "stream_options.include_usage", NULL),
        OK("{" P ",\"user\":\"u1\"}", "user", "u1"),
        BAD("{" P ",\"user\":5}", "user", NULL),
        BAD("{" P ",\"model\":5}", "model", NULL),
        OK("{" P ",\"kv_policy\":\"full\"}", "kv_policy", "full"),
        BAD("{" P ",\"kv_policy\":[1]}", "kv_policy", NULL),
        OK("{" P ",\"kv_budget\":0.25,\"kv_lo_bits\":4,\"kv_select\":\"recent\"}", "kv", "select=recent;lo-bits=4;budget=0.25"),
        OK("{" P ",\"kv_key_balance\":true}", "kv", "key-balance=1"),
        OK("{" P ",\"kv_rotate\":true}", "kv", "rotate=1"),
        OK("{" P ",\"kv_value_norm\":true}", "kv", "value-norm=1"),
        OK("{" P ",\"kv_clip\":1}", "kv", "clip=1"),
        OK("{" P ",\"kv_clip\":\"values\",\"kv_clip_floor\":\"0-14:0.8+15-29:0.5\"}", "kv",
           "clip=values;clip-floor=0-14:0.8+15-29:0.5"),
        BAD("{" P ",\"kv_clip_floor\":[0.8]}", "kv_clip_floor", NULL),
        OK("{" P ",\"kv_scale_bits\":8}", "kv", "scale-bits=8"),
        BAD("{" P ",\"kv_scale_bits\":[8]}", "kv_scale_bits", NULL),
        BAD("{" P ",\"kv_budget\":[0.25]}", "kv_budget", NULL),
        BAD("{" P ",\"kv_recent\":{}}", "kv_recent", NULL),
    };
    run_cases(API_COMPLETIONS, cs, sizeof cs / sizeof *cs);
}

#define M "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
Test(api_req, chat_fields) {
    static const case_t cs[] = {
        OK("{" M "}", "messages", "user:hi"),
        BAD("{}", "messages", "missing_required_parameter"),
        BAD("{\"messages\":[]}", "messages", NULL),
        BAD("{\"messages\":\"hi\"}", "messages", NULL),
        BAD("{\"messages\":[{\"content\":\"hi\"}]}", "messages", NULL),
        BAD("{\"messages\":[{\"role\":\"robot\",\"content\":\"hi\"}]}", "messages", NULL),
        OK("{\"messages\":[{\"role\":\"developer\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"hi\"}]}", "messages", "system:be brief|user:hi"),
        OK("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}]}", "messages", "user:ab"),
        BAD("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "messages", NULL),
        OK("{\"messages\":[{\"role\":\"assistant\",\"content\":null},{\"role\":\"user\",\"content\":\"x\"}]}", "messages", "assistant:|user:x"),
        BAD("{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages", NULL),
        OK("{" M ",\"logprobs\":true,\"top_logprobs\":5}", "logprobs", "1/5"),
        BAD("{" M ",\"top_logprobs\":5}", "top_logprobs", NULL),
        BAD("{" M ",\"logprobs\":true,\"top_logprobs\":21}", "top_logprobs", NULL),
        BAD("{" M ",\"logprobs\":2}", "logprobs", NULL),
        BAD("{" M ",\"max_completion_tokens\":0}", "max_completion_tokens", NULL),
    };
    run_cases(API_CHAT, cs, sizeof cs / sizeof *cs);
}

/* Unknown fields are ignored: the whole record equals the plain one. */
Test(api_req, unknown_fields_change_nothing) {
    const char *plain = "{\"prompt\":\"hi\"}";
    const char *extra = "{\"prompt\":\"hi\",\"unknown_field\":{\"x\":[1,2]},\"best_of\":3,"
                        "\"logit_bias\":{\"2\":-100},\"suffix\":\"s\"}";
    api_request a, b;
    api_error e;
    cr_assert_eq(api_parse_request(API_COMPLETIONS, plain, strlen(plain), &a, &e), 0);
    cr_assert_eq(api_parse_request(API_COMPLETIONS, extra, strlen(extra), &b, &e), 0, "%s", e.message);
    char sa[4096], sb[4096];
    stored(&a, "all", sa, sizeof sa);
    stored(&b, "all", sb, sizeof sb);
    cr_expect_str_eq(sb, sa);
    cr_expect(strstr(sa, "?") == NULL, "a field stored() does not know: %s", sa);
    api_request_free(&a);
    api_request_free(&b);
}

Test(api_req, values_land_in_the_record) {
    const char *b = "{\"prompt\":[\"a\",\"bc\"],\"max_tokens\":7,\"temperature\":0.5,\"top_k\":-1,"
                    "\"stop\":[\"x\",\"\",\"yz\"],\"seed\":3,\"logprobs\":2,\"n\":3,"
                    "\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
    api_request r;
    api_error e;
    cr_assert_eq(api_parse_request(API_COMPLETIONS, b, strlen(b), &r, &e), 0, "%s", e.message);
    cr_expect_eq(r.n_prompts, 2);
    cr_expect_str_eq(r.prompts[1].text, "bc");
    cr_expect_eq(r.max_tokens, 7);
    cr_expect_float_eq(r.temperature, 0.5f, 1e-6);
    cr_expect_eq(r.top_k, 0);
    cr_expect_eq(r.n_stop, 2); /* empty stop strings are dropped */
    cr_expect_str_eq(r.stop[1], "yz");
    cr_expect(r.has_seed && r.seed == 3);
    cr_expect(r.logprobs && r.top_logprobs == 2);
    cr_expect_eq(r.n, 3);
    cr_expect(r.stream && r.include_usage);
    api_request_free(&r);
}

Test(api_req, defaults) {
    const char *b = "{\"prompt\":\"x\"}";
    api_request r;
    api_error e;
    cr_assert_eq(api_parse_request(API_COMPLETIONS, b, strlen(b), &r, &e), 0);
    cr_expect_eq(r.max_tokens, -1);
    cr_expect_eq(r.n, 1);
    cr_expect_float_eq(r.temperature, 1.0f, 1e-6);
    cr_expect_float_eq(r.top_p, 1.0f, 1e-6);
    cr_expect_float_eq(r.repetition_penalty, 1.0f, 1e-6);
    cr_expect(!r.stream && !r.logprobs && !r.has_seed);
    cr_expect_eq(r.cache_prompt, 1, "prefix caching is on unless a request opts out");
    api_request_free(&r);
}

Test(api_req, tokenize_bodies) {
    api_tok_request r;
    api_error e;
    const char *a = "{\"prompt\":\"hello\",\"add_special_tokens\":false}";
    cr_assert_eq(api_parse_tokenize(a, strlen(a), &r, &e), 0);
    cr_expect_str_eq(r.text, "hello");
    cr_expect_eq(r.add_special, 0);
    api_tok_request_free(&r);
    const char *b = "{\"tokens\":[1,2,3]}";
    cr_assert_eq(api_parse_detokenize(b, strlen(b), &r, &e), 0);
    cr_expect_eq(r.n_ids, 3);
    api_tok_request_free(&r);
    const char *c = "{\"tokens\":\"x\"}";
    cr_expect_eq(api_parse_detokenize(c, strlen(c), &r, &e), -1);
    cr_expect_str_eq(e.param, "tokens");
    cr_expect_eq(api_parse_tokenize("{}", 2, &r, &e), -1);
}

Test(api_req, kv_knob_fields_as_text) {
    const char *b = "{\"prompt\":\"a\",\"kv_policy\":\"mikv\",\"kv_budget\":0.25,"
                    "\"kv_lo_bits\":4,\"kv_key_balance\":false,\"kv_select\":\"accumulated\"}";
    api_request r;
    api_error e;
    cr_assert_eq(api_parse_request(API_COMPLETIONS, b, strlen(b), &r, &e), 0, "%s", e.message);
    cr_assert_eq(r.n_kv_knobs, 4);
    /* applied in the table's order: select, lo-bits, budget, key-balance */
    cr_expect_str_eq(r.kv_knobs[0].knob, "select");
    cr_expect_str_eq(r.kv_knobs[0].value, "accumulated");
    cr_expect_str_eq(r.kv_knobs[1].field, "kv_lo_bits");
    cr_expect_str_eq(r.kv_knobs[1].value, "4");
    cr_expect_str_eq(r.kv_knobs[2].knob, "budget");
    cr_expect_str_eq(r.kv_knobs[2].value, "0.25");
    cr_expect_str_eq(r.kv_knobs[3].value, "0");
    api_request_free(&r);
}
