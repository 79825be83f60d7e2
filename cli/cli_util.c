/* Helpers several subcommands share: the --device and --kv-* option groups,
 * the KV policy they build, model loading, and finding files of the
 * repository the binary was built in. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "device.h"
#include "eval_heads.h"
#include "pverr.h"

#define DEFAULT_MODEL_REL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

/* CLI_CHOICE stores an int; the --device destinations are llm_device. */
_Static_assert(sizeof(llm_device) == sizeof(int), "llm_device must be int-sized");
const char *const cli_device_names[] = {"auto", "cpu", "cuda", NULL};
const int cli_device_values[] = {LLM_DEVICE_AUTO, LLM_DEVICE_CPU, LLM_DEVICE_CUDA};

/* The flags are "--kv-" + kv_policy_set's knob name. */
static const char *const kv_flags[CLI_KV_N_KNOBS] = {
    "--kv-budget", "--kv-hi-bits", "--kv-lo-bits", "--kv-lo-k-bits", "--kv-lo-v-bits",
    "--kv-recent", "--kv-sinks", "--kv-window", "--kv-chunk", "--kv-group", "--kv-select",
    "--kv-key-balance", "--kv-rotate", "--kv-clip", "--kv-clip-floor", "--kv-layer-bits", "--kv-heads",
    "--kv-scale-bits", "--kv-value-norm"};

int cli_attn_split(void *dst, const char *value) {
    long n;
    if (!strcmp(value, "off")) n = -1;
    else if (cli_parse_int(value, 1, INT_MAX, &n)) return -1;
    *(int *)dst = (int)n;
    return 0;
}

const cli_opt *cli_kv_table(cli_kv *kv) {
    kv->opts[0] = (cli_opt)CLI_OPT_KV_POLICY(&kv->policy);
    for (int k = 0; k < CLI_KV_N_KNOBS; k++)
        kv->opts[k + 1] = (cli_opt){.name = kv_flags[k], .kind = CLI_STR, .dst = &kv->vals[k]};
    kv->opts[CLI_KV_N_KNOBS + 1] = (cli_opt){.name = NULL};
    return kv->opts;
}

int cli_kv_policy(const char *cmd, const char *spec, const char *const *vals, kv_policy *p) {
    char err[256] = "";
    int rc = kv_policy_parse(spec ? spec : "full", p, err, sizeof err);
    for (int k = 0; !rc && vals && k < CLI_KV_N_KNOBS; k++)
        if (vals[k]) rc = kv_policy_set(p, kv_flags[k] + strlen("--kv-"), vals[k], err, sizeof err);
    if (!rc) rc = kv_policy_validate(p, err, sizeof err);
    if (!rc) return 0;
    fprintf(stderr, "pivot %s: %s\n", cmd, err);
    return 2;
}

int cli_resolve_heads(const char *cmd, const llm_model *m, llm_device dev, int threads,
                      kv_policy *const *p, int n) {
    int want = 0, n_rank = 0, *rank = NULL;
    char err[256] = "";
    if (dev == LLM_DEVICE_CUDA) return 0;
    for (int i = 0; i < n; i++) want |= p[i]->heads > 0 && p[i]->lo_bits > 0;
    if (want) {
        const llm_config *cf = llm_get_config(m);
        n_rank = cf->n_layers * cf->n_kv_heads;
        if (!(rank = malloc(sizeof(int) * (size_t)n_rank))) {
            fprintf(stderr, "pivot %s: out of memory\n", cmd);
            return 2;
        }
        if (ev_heads_rank(m, threads, rank, err, sizeof err)) {
            fprintf(stderr, "pivot %s: no KV head ranking (%s): the heads knob leaves the low tier "
                            "uniform\n", cmd, err);
            n_rank = 0;
        }
    }
    int rc = 0;
    for (int i = 0; !rc && i < n; i++)
        if ((rc = kv_policy_resolve_heads(p[i], rank, n_rank, llm_get_config(m)->n_kv_heads, err,
                                          sizeof err)))
            fprintf(stderr, "pivot %s: %s\n", cmd, err);
    free(rank);
    return rc ? 2 : 0;
}

llm_model *cli_load_model(const char *cmd, const char *path, const char *synth, uint64_t seed,
                          llm_device dev) {
    char err[512] = "", mbuf[4096];
    if (dev == LLM_DEVICE_CUDA && pvdev_cuda_count(err, sizeof err) == 0) {
        fprintf(stderr, "pivot %s: --device cuda: no usable CUDA device (%s)\n", cmd, err);
        return NULL;
    }
    llm_model *m = NULL;
    int rc;
    if (synth) {
        rc = llm_synthetic(synth, seed, dev != LLM_DEVICE_CUDA, &m, err, sizeof err);
        if (rc) fprintf(stderr, "pivot %s: %s\n", cmd, err[0] ? err : pv_strerror(rc));
    } else {
        if (!path) path = cli_default_model(mbuf, sizeof mbuf);
        rc = llm_load(path, &m, err, sizeof err);
        if (rc)
            fprintf(stderr, "pivot %s: cannot load model %s: %s\n", cmd, path,
                    err[0] ? err : pv_strerror(rc));
    }
    if (rc) return NULL;
    if (dev == LLM_DEVICE_CUDA && !llm_cuda_usable(m, 0, err, sizeof err)) {
        fprintf(stderr, "pivot %s: --device cuda: %s\n", cmd, err);
        llm_free(m);
        return NULL;
    }
    return m;
}

static int readable(const char *p) { return access(p, R_OK) == 0; }

const char *cli_find_rel(const char *rel, char *buf, size_t len) {
    snprintf(buf, len, "%s", rel);
    if (readable(buf)) return buf;
    /* The binary lives in <repo>/<builddir>/cli/pivot: look up to three
     * levels up so `build/cli/pivot generate ...` works from anywhere. */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return buf;
    exe[n] = 0;
    for (int up = 0; up < 3; up++) {
        char *s = strrchr(exe, '/');
        if (!s) break;
        *s = 0;
        char cand[PATH_MAX + 64];
        snprintf(cand, sizeof cand, "%s/%s", exe, rel);
        if (readable(cand)) {
            snprintf(buf, len, "%s", cand);
            return buf;
        }
    }
    return buf;
}

const char *cli_default_model(char *buf, size_t len) {
    const char *env = getenv("PIVOT_MODEL");
    if (env && *env) {
        snprintf(buf, len, "%s", env);
        return buf;
    }
    return cli_find_rel(DEFAULT_MODEL_REL, buf, len);
}
