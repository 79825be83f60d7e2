/* api_req: each field's good and bad values, as tables. */
#include <criterion/criterion.h>
#include <string.h>

#include "api_req.h"

typedef struct {
    const char *body;
    const char *param; /* expected param on failure, NULL = success expected */
    const char *code;
} case_t;

static void run_cases(api_kind kind, const case_t *cs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        api_request r;
        api_error e = {0};
        int rc = api_parse_request(kind, cs[i].body, strlen(cs[i].body), &r, &e);
        if (!cs[i].param && !cs[i].code) {
            cr_expect_eq(rc, 0, "expected success: %s (got %s)", cs[i].body, e.message);
            if (!rc) api_request_free(&r);
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
        {"{" P "}", NULL, NULL},
        {"{" P ",\"unknown_field\":{\"x\":[1,2]}}", NULL, NULL},
        {"not json", NULL, "invalid_json"},
        {"[1,2]", NULL, "invalid_json"},
        {"{}", "prompt", "missing_required_parameter"},
        {"{\"prompt\":5}", "prompt", NULL},
        {"{\"prompt\":[]}", "prompt", NULL},
        {"{\"prompt\":[\"a\",\"b\"]}", NULL, NULL},
        {"{\"prompt\":[1,2,3]}", NULL, NULL},
        {"{\"prompt\":[[1,2],[3]]}", NULL, NULL},
        {"{\"prompt\":[1,-2]}", "prompt", NULL},
        {"{\"prompt\":[1.5]}", "prompt", NULL},
        {"{\"prompt\":[\"a\",3]}", "prompt", NULL},
        {"{" P ",\"max_tokens\":16}", NULL, NULL},
        {"{" P ",\"max_tokens\":0}", "max_tokens", "invalid_value"},
        {"{" P ",\"max_tokens\":\"16\"}", "max_tokens", NULL},
        {"{" P ",\"max_tokens\":1.5}", "max_tokens", NULL},
        {"{" P ",\"max_completion_tokens\":8}", NULL, NULL},
        {"{" P ",\"max_completion_tokens\":-1}", "max_completion_tokens", NULL},
        {"{" P ",\"temperature\":0}", NULL, NULL},
        {"{" P ",\"temperature\":2}", NULL, NULL},
        {"{" P ",\"temperature\":2.5}", "temperature", NULL},
        {"{" P ",\"temperature\":-0.1}", "temperature", NULL},
        {"{" P ",\"temperature\":\"hot\"}", "temperature", NULL},
        {"{" P ",\"temperature\":null}", NULL, NULL},
        {"{" P ",\"top_p\":0.9}", NULL, NULL},
        {"{" P ",\"top_p\":0}", "top_p", NULL},
        {"{" P ",\"top_p\":1.1}", "top_p", NULL},
        {"{" P ",\"top_k\":40}", NULL, NULL},
        {"{" P ",\"top_k\":-1}", NULL, NULL},
        {"{" P ",\"top_k\":-2}", "top_k", NULL},
        {"{" P ",\"min_p\":0.05}", NULL, NULL},
        {"{" P ",\"min_p\":1.5}", "min_p", NULL},
        {"{" P ",\"seed\":42}", NULL, NULL},
        {"{" P ",\"seed\":-1}", NULL, NULL},
        {"{" P ",\"seed\":1.5}", "seed", NULL},
        {"{" P ",\"presence_penalty\":1}", NULL, NULL},
        {"{" P ",\"presence_penalty\":3}", "presence_penalty", NULL},
        {"{" P ",\"frequency_penalty\":-2}", NULL, NULL},
        {"{" P ",\"frequency_penalty\":-2.1}", "frequency_penalty", NULL},
        {"{" P ",\"repetition_penalty\":1.1}", NULL, NULL},
        {"{" P ",\"repetition_penalty\":0}", "repetition_penalty", NULL},
        {"{" P ",\"n\":2}", NULL, NULL},
        {"{" P ",\"n\":0}", "n", NULL},
        {"{" P ",\"n\":17}", "n", NULL},
        {"{" P ",\"stop\":\"\\n\"}", NULL, NULL},
        {"{" P ",\"stop\":[\"a\",\"b\"]}", NULL, NULL},
        {"{" P ",\"stop\":[\"a\",1]}", "stop", NULL},
        {"{" P ",\"stop\":3}", "stop", NULL},
        {"{" P ",\"stop_token_ids\":[1,2]}", NULL, NULL},
        {"{" P ",\"stop_token_ids\":\"x\"}", "stop_token_ids", NULL},
        {"{" P ",\"logprobs\":3}", NULL, NULL},
        {"{" P ",\"logprobs\":21}", "logprobs", NULL},
        {"{" P ",\"logprobs\":true}", "logprobs", NULL},
        {"{" P ",\"echo\":true}", NULL, NULL},
        {"{" P ",\"echo\":1}", "echo", NULL},
        {"{" P ",\"ignore_eos\":true}", NULL, NULL},
        {"{" P ",\"ignore_eos\":\"yes\"}", "ignore_eos", NULL},
        {"{" P ",\"min_tokens\":4,\"max_tokens\":8}", NULL, NULL},
        {"{" P ",\"min_tokens\":9,\"max_tokens\":8}", "min_tokens", NULL},
        {"{" P ",\"stream\":true}", NULL, NULL},
        {"{" P ",\"stream\":\"true\"}", "stream", NULL},
        {"{" P ",\"stream\":true,\"stream_options\":{\"include_usage\":true}}", NULL, NULL},
        {"{" P ",\"stream_options\":{\"include_usage\":true}}", "stream_options", NULL},
        {"{" P ",\"stream\":true,\"stream_options\":{\"include_usage\":1}}",
         "stream_options.include_usage", NULL},
        {"{" P ",\"user\":\"u1\"}", NULL, NULL},
        {"{" P ",\"user\":5}", "user", NULL},
        {"{" P ",\"model\":5}", "model", NULL},
        {"{" P ",\"kv_policy\":\"full\"}", NULL, NULL},
        {"{" P ",\"kv_policy\":[1]}", "kv_policy", NULL},
        {"{" P ",\"kv_budget\":0.25,\"kv_lo_bits\":4,\"kv_select\":\"recent\"}", NULL, NULL},
        {"{" P ",\"kv_key_balance\":true}", NULL, NULL},
        {"{" P ",\"kv_budget\":[0.25]}", "kv_budget", NULL},
        {"{" P ",\"kv_recent\":{}}", "kv_recent", NULL},
    };
    run_cases(API_COMPLETIONS, cs, sizeof cs / sizeof *cs);
}

#define M "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
Test(api_req, chat_fields) {
    static const case_t cs[] = {
        {"{" M "}", NULL, NULL},
        {"{}", "messages", "missing_required_parameter"},
        {"{\"messages\":[]}", "messages", NULL},
        {"{\"messages\":\"hi\"}", "messages", NULL},
        {"{\"messages\":[{\"content\":\"hi\"}]}", "messages", NULL},
        {"{\"messages\":[{\"role\":\"robot\",\"content\":\"hi\"}]}", "messages", NULL},
        {"{\"messages\":[{\"role\":\"developer\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"hi\"}]}", NULL, NULL},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}]}", NULL, NULL},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "messages", NULL},
        {"{\"messages\":[{\"role\":\"assistant\",\"content\":null},{\"role\":\"user\",\"content\":\"x\"}]}", NULL, NULL},
        {"{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages", NULL},
        {"{" M ",\"logprobs\":true,\"top_logprobs\":5}", NULL, NULL},
        {"{" M ",\"top_logprobs\":5}", "top_logprobs", NULL},
        {"{" M ",\"logprobs\":true,\"top_logprobs\":21}", "top_logprobs", NULL},
        {"{" M ",\"logprobs\":2}", "logprobs", NULL},
        {"{" M ",\"max_completion_tokens\":0}", "max_completion_tokens", NULL},
    };
    run_cases(API_CHAT, cs, sizeof cs / sizeof *cs);
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
