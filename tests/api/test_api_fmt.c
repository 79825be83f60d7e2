/* api_fmt + api_err: SSE framing, chunk/response shapes, the error mapping. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_err.h"
#include "api_fmt.h"

static int piece(void *ctx, int32_t id, char *buf, int cap) {
    (void)ctx;
    return snprintf(buf, cap, "t%d", id);
}

static api_meta meta(api_kind k) {
    return (api_meta){.kind = k, .id = "cmpl-1", .model = "m", .created = 7, .piece = piece};
}

Test(api_fmt, sse_framing) {
    size_t n;
    char *f = api_sse_frame("{\"a\":1}", &n);
    cr_assert_str_eq(f, "data: {\"a\":1}\n\n");
    cr_expect_eq(n, strlen(f));
    free(f);
    cr_expect_str_eq(API_SSE_DONE, "data: [DONE]\n\n");
}

Test(api_fmt, chat_chunks) {
    api_meta m = meta(API_CHAT);
    api_choice_out c = {.index = 0, .text = "Hi", .len = 2};
    char *s = api_format_chunk(&m, &c, 1, 1, NULL);
    cJSON *o = cJSON_Parse(s);
    cr_assert(o);
    cr_expect_str_eq(cJSON_GetObjectItem(o, "object")->valuestring, "chat.completion.chunk");
    cr_expect_str_eq(cJSON_GetObjectItem(o, "id")->valuestring, "cmpl-1");
    cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    cJSON *d = cJSON_GetObjectItem(ch, "delta");
    cr_expect_str_eq(cJSON_GetObjectItem(d, "role")->valuestring, "assistant");
    cr_expect_str_eq(cJSON_GetObjectItem(d, "content")->valuestring, "Hi");
    cr_expect(cJSON_IsNull(cJSON_GetObjectItem(ch, "finish_reason")));
    cJSON_Delete(o);
    free(s);
    /* usage chunk: empty choices */
    api_usage u = {.prompt_tokens = 3, .completion_tokens = 4, .cached_tokens = 2, .kv_policy = "full",
                   .kv_spec = "full(select=none)", .kv_bytes_stored = 100, .kv_bytes_fp16 = 80, .kv_tokens_high = 7};
    s = api_format_chunk(&m, NULL, 0, 0, &u);
    o = cJSON_Parse(s);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(o, "choices")), 0);
    cJSON *us = cJSON_GetObjectItem(o, "usage");
    cr_expect_eq(cJSON_GetObjectItem(us, "total_tokens")->valueint, 7);
    cJSON *pd = cJSON_GetObjectItem(us, "prompt_tokens_details");
    cr_expect_eq(cJSON_GetObjectItem(pd, "cached_tokens")->valueint, 2);
    cJSON *kv = cJSON_GetObjectItem(us, "kv_cache");
    cr_expect_str_eq(cJSON_GetObjectItem(kv, "policy")->valuestring, "full");
    cr_expect_str_eq(cJSON_GetObjectItem(kv, "spec")->valuestring, "full(select=none)");
    cr_expect_eq(cJSON_GetObjectItem(kv, "bytes_stored")->valueint, 100);
    cr_expect_eq(cJSON_GetObjectItem(kv, "tokens_high")->valueint, 7);
    cr_expect_eq(cJSON_GetObjectItem(kv, "tokens_dropped")->valueint, 0);
    cJSON_Delete(o);
    free(s);
}

Test(api_fmt, completion_response_with_logprobs) {
    api_meta m = meta(API_COMPLETIONS);
    api_logprob lp[2] = {{.id = 5, .logprob = -0.5f, .n_top = 1, .top_id = {5}, .top_lp = {-0.5f}},
                         {.id = 6, .logprob = -1.0f}};
    api_choice_out c = {.index = 0, .text = "t5t6", .len = 4, .finish_reason = "length", .lp = lp,
                        .n_lp = 2, .text_offset = 3};
    api_usage u = {.prompt_tokens = 1, .completion_tokens = 2};
    char *s = api_format_response(&m, &c, 1, &u);
    cJSON *o = cJSON_Parse(s);
    cr_assert(o);
    cr_expect_str_eq(cJSON_GetObjectItem(o, "object")->valuestring, "text_completion");
    cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    cr_expect_str_eq(cJSON_GetObjectItem(ch, "text")->valuestring, "t5t6");
    cr_expect_str_eq(cJSON_GetObjectItem(ch, "finish_reason")->valuestring, "length");
    cJSON *l = cJSON_GetObjectItem(ch, "logprobs");
    cr_expect_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(l, "tokens"), 1)->valuestring, "t6");
    cr_expect_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(l, "text_offset"), 1)->valueint, 5);
    cJSON *top0 = cJSON_GetArrayItem(cJSON_GetObjectItem(l, "top_logprobs"), 0);
    cr_expect_float_eq(cJSON_GetObjectItem(top0, "t5")->valuedouble, -0.5, 1e-6);
    cJSON_Delete(o);
    free(s);
}

Test(api_fmt, chat_response_text_with_nul_free_utf8) {
    api_meta m = meta(API_CHAT);
    const char *t = "caf\xc3\xa9 \"q\"\n";
    api_choice_out c = {.index = 0, .text = t, .len = strlen(t), .finish_reason = "stop"};
    char *s = api_format_response(&m, &c, 1, NULL);
    cJSON *o = cJSON_Parse(s);
    cJSON *msg = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0), "message");
    cr_expect_str_eq(cJSON_GetObjectItem(msg, "content")->valuestring, t);
    cr_expect_str_eq(cJSON_GetObjectItem(msg, "role")->valuestring, "assistant");
    cJSON_Delete(o);
    free(s);
}

Test(api_err, envelope_and_mapping) {
    static const struct {
        int status;
        const char *type;
    } map[] = {{400, "invalid_request_error"}, {401, "authentication_error"},
               {404, "not_found_error"},       {405, "invalid_request_error"},
               {413, "invalid_request_error"}, {415, "invalid_request_error"},
               {429, "rate_limit_error"},      {503, "service_unavailable_error"},
               {500, "server_error"}};
    for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
        api_error e;
        api_err_set(&e, map[i].status, i % 2 ? "temperature" : NULL, i % 2 ? NULL : "some_code",
                    "problem %d", map[i].status);
        char *s = api_error_body(&e);
        cJSON *o = cJSON_Parse(s);
        cr_assert(o, "%s", s);
        cJSON *er = cJSON_GetObjectItem(o, "error");
        cr_expect_str_eq(cJSON_GetObjectItem(er, "type")->valuestring, map[i].type);
        char want[32];
        snprintf(want, sizeof want, "problem %d", map[i].status);
        cr_expect_str_eq(cJSON_GetObjectItem(er, "message")->valuestring, want);
        if (i % 2) {
            cr_expect_str_eq(cJSON_GetObjectItem(er, "param")->valuestring, "temperature");
            cr_expect(cJSON_IsNull(cJSON_GetObjectItem(er, "code")));
        } else {
            cr_expect(cJSON_IsNull(cJSON_GetObjectItem(er, "param")));
            cr_expect_str_eq(cJSON_GetObjectItem(er, "code")->valuestring, "some_code");
        }
        cJSON_Delete(o);
        free(s);
    }
    cr_expect_str_eq(api_status_text(429), "Too Many Requests");
}
