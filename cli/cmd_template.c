/* pivot template: the prompt a chat request renders to, as the server
 * builds it (server/prompt.c), printed as is (BOS text included when the
 * template writes it). For checking a model's template against a reference
 * renderer and for seeing what the model is actually given. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_req.h"
#include "cli.h"
#include "llama.h"
#include "prompt.h"

/* The whole file, NUL-terminated, or NULL after a message. */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "pivot template: cannot open %s\n", path);
        return NULL;
    }
    size_t cap = 4096, n = 0, k;
    char *buf = malloc(cap);
    while (buf && (k = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    fclose(f);
    if (buf) buf[n] = 0;
    return buf;
}

/* {"messages": <file>, "tools": <file>} as a chat request body, so the
 * messages and tools are checked exactly as the server checks them. */
static char *request_body(const char *msgs, const char *tools) {
    size_t n = strlen(msgs) + (tools ? strlen(tools) : 0) + 64;
    char *b = malloc(n);
    if (b) snprintf(b, n, "{\"messages\": %s%s%s}", msgs, tools ? ", \"tools\": " : "", tools ? tools : "");
    return b;
}

static void usage(FILE *f) {
    fprintf(f, "usage: pivot template --messages FILE [--model PATH] [--add-generation-prompt 0|1]\n"
               "                      [--tools FILE]\n"
               "  prints the prompt the model's chat template renders for the messages (a JSON\n"
               "  array of OpenAI chat messages), as the server renders it: the GGUF's Jinja\n"
               "  template when Pivot's interpreter supports it, else the built-in one\n"
               "  --tools FILE                a JSON array of OpenAI tools\n"
               "  --add-generation-prompt N   end with the assistant's header (default 1)\n");
}

int cmd_template(int argc, char **argv) {
    const char *model = NULL, *msgs_path = NULL, *tools_path = NULL;
    int agp = 1;
    const cli_opt opts[] = {
        CLI_OPT_MODEL(&model),
        {.name = "--messages", .kind = CLI_STR, .dst = &msgs_path},
        {.name = "--tools", .kind = CLI_STR, .dst = &tools_path},
        {.name = "--add-generation-prompt", .kind = CLI_INT, .dst = &agp, .lo = 0, .hi = 1},
        {.name = NULL},
    };
    const cli_opt *const tables[] = {opts, NULL};
    int rc = cli_parse("template", argc, argv, tables);
    if (rc == CLI_HELP) {
        usage(stdout);
        return 0;
    }
    if (rc) return rc;
    if (!msgs_path) {
        fprintf(stderr, "pivot template: --messages is required\n");
        return 2;
    }
    char *msgs = slurp(msgs_path), *tools = tools_path ? slurp(tools_path) : NULL;
    char *body = msgs && (tools || !tools_path) ? request_body(msgs, tools) : NULL;
    free(msgs);
    free(tools);
    if (!body) return 1;
    api_request r;
    api_error e;
    if (api_parse_request(API_CHAT, body, strlen(body), &r, &e)) {
        if (!strcmp(e.code, "invalid_json"))
            fprintf(stderr, "pivot template: --messages / --tools: not valid JSON\n");
        else
            fprintf(stderr, "pivot template: %s%s%s\n", e.param[0] ? e.param : "",
                    e.param[0] ? ": " : "", e.message);
        free(body);
        return 2;
    }
    free(body);
    llm_model *m = cli_load_model("template", model, NULL, 0, LLM_DEVICE_CPU);
    if (!m) {
        api_request_free(&r);
        return 1;
    }
    srv_template_warn(m, "pivot template");
    srv_chat_in in = {.msgs = r.msgs, .n = r.n_msgs, .tools = &r.tools,
                      .add_generation_prompt = agp, .keep_bos = 1};
    char *out = NULL;
    rc = srv_render_chat(m, &in, &out, NULL, &e) ? 1 : 0;
    if (rc) fprintf(stderr, "pivot template: %s\n", e.message);
    else fwrite(out, 1, strlen(out), stdout);
    free(out);
    api_request_free(&r);
    llm_free(m);
    return rc;
}
