/* pivot info: a model file's shape and this machine's compute devices. */
#include <stdio.h>

#include "chat.h"
#include "cli.h"
#include "device.h"
#include "llama.h"
#include "quant.h"

int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    const cli_opt opts[] = {CLI_OPT_MODEL(&model), {.name = NULL}};
    const cli_opt *const tables[] = {opts, NULL};
    int rc = cli_parse("info", argc, argv, tables);
    if (rc == CLI_HELP) {
        printf("usage: pivot info [--model PATH]\n  prints the model's shape and this machine's devices\n");
        return 0;
    }
    if (rc) return rc;
    char why[256] = "";
    int ngpu = pvdev_cuda_count(why, sizeof why);
    printf("cpu kernels: %s\ncuda: %d device(s)%s%s\n", kq_simd_name(), ngpu, ngpu ? "" : " — ", ngpu ? "" : why);
    for (int i = 0; i < ngpu; i++) {
        char name[256];
        if (pvdev_cuda_name(i, name, sizeof name) == 0) printf("  gpu %d: %s\n", i, name);
    }
    printf("cuda backend: %s\n", pvdev_cuda_built() ? "built (--device auto picks it when a GPU is present)"
                                                     : "not built (-Dcuda=disabled or no nvcc)");
    llm_model *m = cli_load_model("info", model, NULL, 0, LLM_DEVICE_CPU);
    if (!m) return 1;
    const llm_config *c = llm_get_config(m);
    printf("model: %s\narch: %s\nlayers: %d\nembd: %d\nffn: %d\nheads: %d (kv %d, dim %d)\n"
           "vocab: %d\ncontext: %d\nrope: %s, base %g, dims %d\ntied embeddings: %s\nchat template: %s\n",
           llm_get_name(m), c->arch == LLM_ARCH_QWEN2 ? "qwen2" : "llama", c->n_layers, c->n_embd,
           c->n_ff, c->n_heads, c->n_kv_heads, c->head_dim, c->n_vocab, c->n_ctx_train,
           c->rope_neox ? "neox" : "normal", c->rope_base, c->rope_dim, c->tied_embeddings ? "yes" : "no",
           chat_kind_name(chat_template_kind(llm_get_chat(m))));
    printf("kv bytes per token (fp16): %d\n", 2 * c->n_layers * c->n_kv_heads * c->head_dim * 2);
    llm_free(m);
    return 0;
}
