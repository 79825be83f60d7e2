/* libFuzzer target: the Jinja interpreter (model/jinja*.c) on arbitrary
 * template text. Whatever compiles is rendered twice: with a fixed chat
 * context (messages with tool calls, tools) and with the input itself as
 * the context's JSON, so the context reader is fuzzed too. Every call must
 * return a code, never crash or leak (ASan/LSan/UBSan check). Templates come
 * from model files, which Pivot loads from anywhere. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "jinja.h"

static const char ctx[] =
    "{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":\"hi\"},"
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"abcDEF123\",\"type\":"
    "\"function\",\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}]},{\"role\":\"tool\","
    "\"tool_call_id\":\"abcDEF123\",\"content\":\"r\"}],\"tools\":[{\"type\":\"function\","
    "\"function\":{\"name\":\"f\",\"description\":\"d\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"a\":{\"type\":\"integer\"}}}}}],\"add_generation_prompt\":true,"
    "\"bos_token\":\"<s>\",\"eos_token\":\"</s>\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    jj_template *t = NULL;
    char err[256];
    if (jj_compile((const char *)data, size, &t, err, sizeof err)) return 0;
    char *out = NULL;
    jj_render(t, ctx, sizeof ctx - 1, &out, err, sizeof err);
    free(out);
    out = NULL;
    jj_render(t, (const char *)data, size, &out, err, sizeof err);
    free(out);
    jj_free(t);
    return 0;
}
