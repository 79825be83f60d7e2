/* pivot: one binary, several subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "device.h"
#include "quant.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: pivot <command> [options]\n"
            "\n"
            "Pivot serves Llama-family GGUF models; its KV cache keeps the tokens that matter.\n"
            "\n"
            "commands:\n"
            "  serve      OpenAI-compatible HTTP server with continuous batching\n"
            "  generate   generate text from a prompt (streams to stdout)\n"
            "  tokenize   print the token ids of a text\n"
            "  template   print the prompt a model's chat template renders for messages\n"
            "  logits     write the logits of every position of a token list (testing)\n"
            "  info       describe a model file and this machine's compute devices\n"
            "  eval       quality of KV cache policies at equal memory (ppl, copy, retrieval)\n"
            "  heads      rank the KV heads that copy (induction scores) for --kv-layer-bits\n"
            "  bench      load-test an OpenAI-compatible server (vLLM bench serve's metrics)\n"
            "\n"
            "options:\n"
            "  -h, --help     this help; `pivot <command> --help` for a command's options\n"
            "  --version      print the version\n"
            "\n"
            "Without --model, commands use $PIVOT_MODEL or\n"
            "models/SmolLM2-135M-Instruct.Q4_1.gguf (fetched by scripts/fetch-model.sh).\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("pivot 0.1.0 (kernels: %s, cuda: %s)\n", kq_simd_name(),
               pvdev_cuda_built() ? "built" : "not built");
        return 0;
    }
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "template")) return cmd_template(argc - 1, argv + 1);
    if (!strcmp(cmd, "logits")) return cmd_logits(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "heads")) return cmd_heads(argc - 1, argv + 1);
    fprintf(stderr, "pivot: unknown command '%s' (see pivot --help)\n", cmd);
    return 2;
}
