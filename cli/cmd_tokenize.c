/* pivot tokenize: the token ids of a text, comma-separated on one line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "llama.h"
#include "tokenizer.h"

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL;
    int special = 0;
    const cli_opt opts[] = {
        CLI_OPT_MODEL(&model),
        {.name = "--prompt", .kind = CLI_STR, .dst = &prompt},
        {.name = "--special", .kind = CLI_FLAG, .dst = &special},
        {.name = NULL},
    };
    const cli_opt *const tables[] = {opts, NULL};
    int rc = cli_parse("tokenize", argc, argv, tables);
    if (rc == CLI_HELP) {
        printf("usage: pivot tokenize --prompt TEXT [--model PATH] [--special]\n"
               "  prints the token ids, comma-separated, on one line (no BOS added)\n"
               "  --special   parse special tokens such as <|im_start|> in TEXT\n");
        return 0;
    }
    if (rc) return rc;
    if (!prompt) {
        fprintf(stderr, "pivot tokenize: --prompt is required\n");
        return 2;
    }
    llm_model *m = cli_load_model("tokenize", model, NULL, 0, LLM_DEVICE_CPU);
    if (!m) return 1;
    const tok_vocab *v = llm_get_vocab(m);
    size_t len = strlen(prompt);
    int n = tok_encode(v, prompt, len, special, NULL, 0);
    int32_t *ids = n >= 0 ? malloc(sizeof(int32_t) * (n + 1)) : NULL;
    if (!ids) {
        fprintf(stderr, "pivot tokenize: tokenization failed\n");
        llm_free(m);
        return 1;
    }
    tok_encode(v, prompt, len, special, ids, n);
    for (int i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
    printf("\n");
    free(ids);
    llm_free(m);
    return 0;
}
