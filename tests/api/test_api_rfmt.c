/* api_rfmt (through api_parse_request): logit_bias and structured-output
 * fields land in the record, and bad forms get 400 with their param. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "api_req.h"

static int parse(const char *body, api_request *r, api_error *e) {
    memset(e, 0, sizeof *e);
    return api_parse_request(API_COMPLETIONS, body, strlen(body), r, e);
}

Test(api_rfmt, logit_bias_lands) {
    api_request r;
    api_error e;
    cr_assert_eq(parse("{\"prompt\":\"x\",\"logit_bias\":{\"28\":100,\"7\":-2.5,\"0\":0}}", &r, &e), 0,
                 "%s", e.message);
    cr_assert_eq(r.n_bias, 3);
    cr_expect_eq(r.bias_ids[0], 28);
    cr_expect_float_eq(r.bias[0], 100.0f, 1e-6);
    cr_expect_eq(r.bias_ids[1], 7);
    cr_expect_float_eq(r.bias[1], -2.5f, 1e-6);
    cr_expect_eq(r.bias_ids[2], 0);
    api_request_free(&r);
}

Test(api_rfmt, response_format_kinds) {
    api_request r;
    api_error e;
    cr_assert_eq(parse("{\"prompt\":\"x\",\"response_format\":{\"type\":\"text\"}}", &r, &e), 0);
    cr_expect_eq(r.rf_kind, API_RF_TEXT);
    api_request_free(&r);
    cr_assert_eq(parse("{\"prompt\":\"x\",\"response_format\":{\"type\":\"json_object\"}}", &r, &e), 0);
    cr_expect_eq(r.rf_kind, API_RF_JSON_OBJECT);
    api_request_free(&r);
    cr_assert_eq(parse("{\"prompt\":\"x\",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
                       "{\"name\":\"a-b_1\",\"strict\":true,\"schema\":{\"type\":\"object\"}}}}",
                       &r, &e), 0, "%s", e.message);
    cr_expect_eq(r.rf_kind, API_RF_JSON_SCHEMA);
    cr_expect_eq(r.rf_strict, 1);
    cr_expect_str_eq(r.rf_schema, "{\"type\":\"object\"}");
    cr_expect_str_eq(r.rf_param, "response_format");
    api_request_free(&r);
    cr_assert_eq(parse("{\"prompt\":\"x\",\"guided_json\":\"{\\\"enum\\\": [1]}\"}", &r, &e), 0);
    cr_expect_eq(r.rf_kind, API_RF_JSON_SCHEMA);
    cr_expect_str_eq(r.rf_schema, "{\"enum\":[1]}");
    cr_expect_str_eq(r.rf_param, "guided_json");
    api_request_free(&r);
    cr_assert_eq(parse("{\"prompt\":\"x\",\"structured_outputs\":{\"json\":{\"type\":\"string\"}}}", &r, &e), 0);
    cr_expect_str_eq(r.rf_param, "structured_outputs");
    api_request_free(&r);
}

Test(api_rfmt, bad_forms_name_their_param) {
    static const char *const bad[][2] = {
        {"{\"logit_bias\":{\"x1\":1}}", "logit_bias"},
        {"{\"logit_bias\":{\"1x\":1}}", "logit_bias"},
        {"{\"logit_bias\":{\"\":1}}", "logit_bias"},
        {"{\"logit_bias\":{\"+1\":1}}", "logit_bias"},
        {"{\"logit_bias\":{\"1\":-100.5}}", "logit_bias"},
        {"{\"logit_bias\":{\"1\":true}}", "logit_bias"},
        {"{\"logit_bias\":3}", "logit_bias"},
        {"{\"response_format\":{}}", "response_format"},
        {"{\"response_format\":{\"type\":\"json\"}}", "response_format"},
        {"{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"a b\"}}}", "response_format"},
        {"{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"a\",\"strict\":1}}}", "response_format"},
        {"{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"a\",\"schema\":[]}}}", "response_format"},
        {"{\"guided_json\":\"nope\"}", "guided_json"},
        {"{\"guided_choice\":[\"a\"]}", "guided_choice"},
        {"{\"structured_outputs\":{\"regex\":\"a\"}}", "structured_outputs"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char body[512];
        snprintf(body, sizeof body, "{\"prompt\":\"x\",%s", bad[i][0] + 1);
        api_request r;
        api_error e;
        cr_expect_eq(parse(body, &r, &e), -1, "%s should fail", body);
        cr_expect_eq(e.status, 400);
        cr_expect_str_eq(e.param, bad[i][1], "%s: param %s", body, e.param);
    }
}
