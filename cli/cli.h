/* cli: the `pivot` command line — subcommands and their shared helpers.
 *
 * Each subcommand takes (argc, argv) after the subcommand name and returns the
 * process exit status: 0 ok, 1 runtime failure (model, I/O), 2 usage error.
 * Errors are one line on stderr prefixed with "pivot <cmd>: ". */
#ifndef PIVOT_CLI_H
#define PIVOT_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "cli_opt.h"
#include "gram_mask.h"
#include "kv_policy.h"
#include "llama.h"

int cmd_generate(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_heads(int argc, char **argv);

/* --device auto|cpu|cuda into an llm_device (an int-sized enum). */
extern const char *const cli_device_names[];
extern const int cli_device_values[];
#define CLI_OPT_DEVICE(d, ...)                                                        \
    {.name = "--device", .kind = CLI_CHOICE, .dst = (d), .choices = cli_device_names, \
     .values = cli_device_values, __VA_ARGS__}

/* --attn-split off|N into llm_ctx_params.attn_split (an int): split-K decode
 * attention from N context tokens, or never (-1). Not given: 0, the default. */
int cli_attn_split(void *dst, const char *value);
#define CLI_OPT_ATTN_SPLIT(d, ...)                                                     \
    {.name = "--attn-split", .kind = CLI_FN, .dst = (d), .fn = cli_attn_split,        \
     .what = "off or a token count", __VA_ARGS__}

/* --kv-policy and the --kv-<knob> flags (kv_policy_set's knobs), which
 * apply on top of the policy whatever their order on the command line. */
#define CLI_KV_N_KNOBS 19
typedef struct {
    const char *policy;                /* NULL: full */
    const char *vals[CLI_KV_N_KNOBS];  /* NULL: not given */
    cli_opt opts[CLI_KV_N_KNOBS + 2];  /* the table cli_kv_table returns */
} cli_kv;
/* The table of kv's options (valid while kv is). */
const cli_opt *cli_kv_table(cli_kv *kv);
/* The policy: spec (NULL: full), then the knob values of vals (NULL: none)
 * in the table's order, then the cross-knob checks. 0, or 2 after one line
 * "pivot <cmd>: ..." on stderr. */
int cli_kv_policy(const char *cmd, const char *spec, const char *const *vals, kv_policy *p);
/* Resolves the `heads` knob of *p[0..n) (kv_policy_resolve_heads) with m's
 * ranking (ev_heads_rank, run once, only when one of them asks; a model
 * the probe cannot run leaves them uniform after a note on stderr). On
 * --device cuda nothing is ranked or resolved: the GPU's cache does not
 * quantize. 0, or 2 after one line "pivot <cmd>: ..." on stderr. */
int cli_resolve_heads(const char *cmd, const llm_model *m, llm_device dev, int threads,
                      kv_policy *const *p, int n);

/* Loads the model for a run on dev: --device cuda is refused before any
 * loading when no GPU is usable, and after it when the model cannot run
 * there. path NULL: cli_default_model; synth non-NULL: llm_synthetic(synth,
 * seed) instead of a file (on cuda its weights exist on the GPU only).
 * The caller frees the model (llm_free). NULL after one line
 * "pivot <cmd>: ..." on stderr (exit status 1). */
llm_model *cli_load_model(const char *cmd, const char *path, const char *synth, uint64_t seed,
                          llm_device dev);

/* --json / --json-schema FILE (pivot generate): the grammar, the model's
 * vocabulary as bytes and a state at the document's start; all NULL when
 * neither option is given. 0, or 2 (a bad schema or file) / 1 (out of
 * memory) after one line "pivot <cmd>: ..." on stderr. cli_gram_close frees
 * what open made (the model must outlive it). */
typedef struct {
    gram *g;
    gram_vocab *v;
    gram_state *s;
} cli_gram;
int cli_gram_open(const char *cmd, int json, const char *schema_path, const llm_model *m,
                  cli_gram *out);
void cli_gram_close(cli_gram *cg);

/* rel in the current directory when readable there, else next to the
 * repository the binary was built in (<repo>/<builddir>/cli/pivot), else rel
 * as given. Writes into buf; returns buf. */
const char *cli_find_rel(const char *rel, char *buf, size_t len);

/* The model used when --model is absent: $PIVOT_MODEL, else
 * cli_find_rel("models/SmolLM2-135M-Instruct.Q4_1.gguf"). Returns buf. */
const char *cli_default_model(char *buf, size_t len);

#endif
