/* Chat template tests. Expected renderings come from jinja2 running the
 * template texts (tests/fixtures/tokenizer/chat.json, written by
 * scripts/gen_tokenizer_fixtures.py): SmolLM2's real template and
 * hand-written minimal Llama-3 and Mistral templates. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat.h"
#include "gguf.h"
#include "pverr.h"

#define FIX PIVOT_SOURCE_ROOT "/tests/fixtures/tokenizer/chat.json"
#define MODEL PIVOT_SOURCE_ROOT "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define SMOL_SYSTEM "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

static cJSON *load_fixture(void) {
    FILE *f = fopen(FIX, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    cr_assert_not_null(j);
    return j;
}

static chat_template *parse(const char *src) {
    chat_template *t = NULL;
    cr_assert_eq(chat_template_parse(src, src ? strlen(src) : 0, &t), PV_OK);
    cr_assert_not_null(t);
    return t;
}

Test(chat, matches_jinja_renderings) {
    cJSON *j = load_fixture();
    cJSON *tpls = cJSON_GetObjectItem(j, "templates");
    cJSON *cases = cJSON_GetObjectItem(j, "cases");
    int total = cJSON_GetArraySize(cases), agree = 0;
    cr_assert_geq(total, 12);
    for (int i = 0; i < total; i++) {
        cJSON *c = cJSON_GetArrayItem(cases, i);
        const char *name = cJSON_GetObjectItem(c, "template")->valuestring;
        chat_template *t = parse(cJSON_GetObjectItem(tpls, name)->valuestring);
        cJSON *ms = cJSON_GetObjectItem(c, "messages");
        int n = cJSON_GetArraySize(ms);
        chat_msg msgs[8];
        for (int k = 0; k < n; k++) {
            cJSON *m = cJSON_GetArrayItem(ms, k);
            msgs[k].role = cJSON_GetObjectItem(m, "role")->valuestring;
            msgs[k].content = cJSON_GetObjectItem(m, "content")->valuestring;
        }
        int agp = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
        char *out = NULL;
        cr_assert_eq(chat_render(t, msgs, n, agp, &out), PV_OK, "case %d (%s)", i, name);
        const char *want = cJSON_GetObjectItem(c, "expected")->valuestring;
        if (strcmp(out, want) == 0)
            agree++;
        else
            fprintf(stderr, "case %d (%s): want\n%s\n---- got\n%s\n----\n", i, name, want, out);
        free(out);
        chat_template_free(t);
    }
    fprintf(stderr, "[chat] %d/%d renderings match jinja2\n", agree, total);
    cr_expect_eq(agree, total);
    cJSON_Delete(j);
}

Test(chat, recognizes_families_and_default_system) {
    cJSON *j = load_fixture();
    cJSON *tpls = cJSON_GetObjectItem(j, "templates");
    chat_template *t = parse(cJSON_GetObjectItem(tpls, "smollm2")->valuestring);
    cr_assert_eq(chat_template_kind(t), CHAT_CHATML);
    cr_assert_str_eq(chat_template_default_system(t), SMOL_SYSTEM);
    chat_template_free(t);
    t = parse(cJSON_GetObjectItem(tpls, "llama3")->valuestring);
    cr_assert_eq(chat_template_kind(t), CHAT_LLAMA3);
    cr_assert_null(chat_template_default_system(t));
    chat_template_free(t);
    t = parse(cJSON_GetObjectItem(tpls, "mistral")->valuestring);
    cr_assert_eq(chat_template_kind(t), CHAT_LLAMA2);
    chat_template_free(t);
    cJSON_Delete(j);

    /* Escaped "\n" form (Qwen2-style), and a system turn spliced from the
     * message: only the literal one is a default. */
    t = parse("{{ '<|im_start|>system\\nYou are Qwen.<|im_end|>\\n' }}");
    cr_assert_str_eq(chat_template_default_system(t), "You are Qwen.");
    chat_template_free(t);
    t = parse("{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>' }}");
    cr_assert_eq(chat_template_kind(t), CHAT_CHATML);
    cr_assert_null(chat_template_default_system(t));
    chat_template_free(t);

    t = parse(NULL);
    cr_assert_eq(chat_template_kind(t), CHAT_CHATML);
    cr_assert_null(chat_template_default_system(t));
    chat_template_free(t);
    t = parse("{% for m in messages %}{{ m.content }}{% endfor %}");
    cr_assert_eq(chat_template_kind(t), CHAT_UNKNOWN);
    chat_msg m = {"user", "x"};
    char *out = (char *)1;
    cr_assert_eq(chat_render(t, &m, 1, 1, &out), PV_EINVAL);
    cr_assert_null(out);
    chat_template_free(t);
    cr_assert_str_eq(chat_kind_name(CHAT_LLAMA3), "llama3");
}

Test(chat, real_model_template) {
    if (access(MODEL, R_OK) != 0)
        cr_skip_test("model file absent");
    gguf_file *g;
    char err[256];
    cr_assert_eq(gguf_open(MODEL, &g, err, sizeof err), PV_OK, "%s", err);
    gguf_str s;
    cr_assert_eq(gguf_get_str(g, "tokenizer.chat_template", &s), PV_OK);
    chat_template *t = NULL;
    cr_assert_eq(chat_template_parse(s.ptr, s.len, &t), PV_OK);
    gguf_close(g); /* the template keeps its own copy of what it needs */
    cr_assert_eq(chat_template_kind(t), CHAT_CHATML);
    cr_assert_str_eq(chat_template_default_system(t), SMOL_SYSTEM);
    chat_msg m[] = {{"user", "Hi"}};
    char *out;
    cr_assert_eq(chat_render(t, m, 1, 1, &out), PV_OK);
    cr_assert_str_eq(out, "<|im_start|>system\n" SMOL_SYSTEM "<|im_end|>\n"
                          "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    free(out);
    chat_template_free(t);
}

Test(chat, rejects_bad_input) {
    chat_template *t = parse("<|im_start|>");
    chat_msg bad[] = {{"tool", "x"}};
    char *out = NULL;
    cr_assert_eq(chat_render(t, bad, 1, 1, &out), PV_EINVAL);
    chat_msg nul[] = {{"user", NULL}};
    cr_assert_eq(chat_render(t, nul, 1, 1, &out), PV_EINVAL);
    cr_assert_eq(chat_render(t, NULL, 0, 1, &out), PV_OK);
    cr_assert_str_eq(out, "<|im_start|>assistant\n");
    free(out);
    chat_template_free(t);
    /* Mistral/Llama-2 accept a system message only in first position. */
    t = parse("[INST]");
    chat_msg late[] = {{"user", "a"}, {"system", "b"}};
    cr_assert_eq(chat_render(t, late, 2, 1, &out), PV_EINVAL);
    chat_template_free(t);
}

/* Llama-2 with <<SYS>>: hand-written from Meta's template semantics
 * (BOS before every later [INST], assistant text stripped and followed by
 * " </s>"). */
Test(chat, llama2_sys_block) {
    chat_template *t = parse("{{ bos_token + '[INST] ' + '<<SYS>>\\n' }}");
    chat_msg m[] = {{"system", "S"}, {"user", "U1"}, {"assistant", " A "}, {"user", "U2"}};
    char *out;
    cr_assert_eq(chat_render(t, m, 4, 1, &out), PV_OK);
    cr_assert_str_eq(out, "[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A </s><s>[INST] U2 [/INST]");
    free(out);
    chat_template_free(t);
}
