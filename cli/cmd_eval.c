/* pivot eval: quality of KV cache policies at equal memory (BRIEF.md §3).
 * Options, the run list (policy x memory target), the table on stdout, the
 * JSON and the plot. The decode itself is in eval_run.c. */
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "threadpool.h"
#include "device.h"
#include "eval.h"
#include "pverr.h"

extern char **environ;

#define DEFAULT_TEXT "/usr/share/common-licenses/GPL-3"
#define DEFAULT_POLICIES "full,scissorhands,mikv,quant2"
#define DEFAULT_RATIOS "0.5,0.33,0.25,0.2,0.125"
#define MAX_POLICIES 32
#define MAX_RATIOS 16

static void usage(FILE *f) {
    fprintf(f,
            "usage: pivot eval --task ppl|copy|lookup|retrieval [options]\n"
            "\n"
            "Runs each KV cache policy through a real compressed decode (prefix prefilled, then\n"
            "one token at a time) beside the full FP16 cache and reports quality vs KV memory.\n"
            "\n"
            "  --task T             ppl: teacher-forced perplexity, top-1 agreement and KL vs full\n"
            "                       copy: random word tokens twice; accuracy on the second copy\n"
            "                       lookup: records KEY: NUMBER, then every key again; accuracy\n"
            "                       on the number tokens (only the cache knows them)\n"
            "                       retrieval: LongEval-style lines; exact match on the number\n"
            "  --policies LIST      comma-separated presets, each optionally followed by its\n"
            "                       knobs: full,mikv,lo-bits=4,scissorhands (knob=value items\n"
            "                       belong to the policy before them; ';' also separates)\n"
            "                       (default " DEFAULT_POLICIES "; full is always run first as\n"
            "                       the reference)\n"
            "  --kv-ratio R         solve each budgeted policy's budget so that its stored KV\n"
            "                       bytes are <= R x FP16 bytes at the end of each sample\n"
            "                       (0 < R <= 1); policies without a budget (full, quant4,\n"
            "                       quant2) or with budget= given keep their natural ratio\n"
            "  --text FILE          ppl, copy --copy-text: the text (default " DEFAULT_TEXT ")\n"
            "  --copy-text          copy: the first copy is a window of --text (evenly spread\n"
            "                       over it) instead of random word tokens\n"
            "  --samples N          samples (default 4)\n"
            "  --seed S             seed for copy/lookup/retrieval samples (default 0)\n"
            "  --length N           ppl, copy, lookup: tokens per sample incl. BOS (default 512)\n"
            "  --prefix N           ppl: tokens prefilled before scoring (default 64)\n"
            "  --lines N            retrieval: records per sample (default 12)\n"
            "  --digits N           retrieval, lookup: digits of each record's number (default 3)\n"
            "  --threads N          CPU threads (default: all cores)\n"
            "  --attn-split off|N   split one sequence's decode attention across threads\n"
            "                       from N context tokens (default 512)\n"
            "  --device D           cpu (default), cuda, auto: where every run decodes (on\n"
            "                       cuda each policy runs in the GPU's own cache)\n"
            "  --model PATH         GGUF model (default: $PIVOT_MODEL or the SmolLM2 default)\n"
            "  --json OUT           write the results as JSON\n"
            "  --plot OUT.png       sweep --ratios and plot quality vs KV memory per policy\n"
            "                       (needs --json; runs scripts/plot_eval.py with $PIVOT_PYTHON,\n"
            "                       else <repo>/.venv/bin/python, else python3; matplotlib)\n"
            "  --ratios LIST        memory targets of the sweep (default " DEFAULT_RATIOS ");\n"
            "                       given without --plot, sweeps into the JSON only\n"
            "  --prefix-cached      each run also once more (\"POLICY +cached\") with the sample's\n"
            "                       prefix, up to its last 64-token boundary, computed by another\n"
            "                       sequence and taken from the prefix cache (the server's path\n"
            "                       for a shared prompt prefix); compare the two rows\n"
            "  -h, --help           this help\n");
}

typedef struct {
    ev_task_opts t;
    const char *task, *policies, *model, *json, *plot, *ratios;
    double kv_ratio;
    int ratios_given; /* --ratios alone sweeps too (JSON without a plot) */
    int prefix_cached; /* --prefix-cached: every run gets a twin whose prefix is attached */
} eval_opts;

static int bad(const char *msg, const char *arg) {
    fprintf(stderr, "pivot eval: %s%s%s\n", msg, arg ? " " : "", arg ? arg : "");
    return 2;
}

static int parse(int argc, char **argv, eval_opts *o) {
    *o = (eval_opts){.t = {.samples = 4, .length = 512, .prefix = 64, .lines = 12, .digits = 3},
                     .policies = DEFAULT_POLICIES, .kv_ratio = -1};
    ev_task_opts *t = &o->t;
    const cli_opt opts[] = {
        {.name = "--task", .kind = CLI_STR, .dst = &o->task},
        {.name = "--policies", .kind = CLI_STR, .dst = &o->policies},
        {.name = "--json", .kind = CLI_STR, .dst = &o->json},
        {.name = "--plot", .kind = CLI_STR, .dst = &o->plot},
        {.name = "--ratios", .kind = CLI_STR, .dst = &o->ratios},
        {.name = "--text", .kind = CLI_STR, .dst = &t->text},
        {.name = "--copy-text", .kind = CLI_FLAG, .dst = &t->copy_text},
        {.name = "--prefix-cached", .kind = CLI_FLAG, .dst = &o->prefix_cached},
        {.name = "--kv-ratio", .kind = CLI_DOUBLE, .dst = &o->kv_ratio,
         .lo = 0, .hi = 1, .open_lo = 1},
        {.name = "--samples", .kind = CLI_INT, .dst = &t->samples, .lo = 1, .hi = 100000},
        {.name = "--length", .kind = CLI_INT, .dst = &t->length, .lo = 4, .hi = 1 << 20},
        {.name = "--prefix", .kind = CLI_INT, .dst = &t->prefix, .lo = 1, .hi = 1 << 20},
        {.name = "--lines", .kind = CLI_INT, .dst = &t->lines, .lo = 1, .hi = 4096},
        {.name = "--digits", .kind = CLI_INT, .dst = &t->digits, .lo = 1, .hi = 8},
        CLI_OPT_MODEL(&o->model),
        CLI_OPT_DEVICE(&t->device),
        CLI_OPT_THREADS(&t->threads),
        CLI_OPT_ATTN_SPLIT(&t->attn_split, .env = "PIVOT_ATTN_SPLIT"),
        CLI_OPT_SEED(&t->seed),
        {.name = NULL},
    };
    const cli_opt *const tables[] = {opts, NULL};
    int rc = cli_parse("eval", argc, argv, tables);
    if (rc) return rc;
    o->ratios_given = o->ratios != NULL;
    if (!o->ratios) o->ratios = DEFAULT_RATIOS;
    if (!o->task) return bad("--task is required (ppl, copy, lookup or retrieval)", NULL);
    if (!strcmp(o->task, "ppl")) t->task = EV_PPL;
    else if (!strcmp(o->task, "copy")) t->task = EV_COPY;
    else if (!strcmp(o->task, "retrieval")) t->task = EV_RETRIEVAL;
    else if (!strcmp(o->task, "lookup")) t->task = EV_LOOKUP;
    else return bad("unknown task (ppl, copy, lookup or retrieval):", o->task);
    if (t->task == EV_PPL && t->prefix >= t->length)
        return bad("--prefix must be smaller than --length", NULL);
    if (o->plot && !o->json) return bad("--plot needs --json (the plot is drawn from it)", NULL);
    if (!t->text) t->text = DEFAULT_TEXT;
    if ((t->task == EV_PPL || (t->task == EV_COPY && t->copy_text)) && access(t->text, R_OK)) {
        fprintf(stderr, "pivot eval: cannot read text file '%s'\n", t->text);
        return 1;
    }
    if (t->threads <= 0) t->threads = tp_default_threads();
    return 0;
}

/* Splits a copy of list (in buf) at any of seps into item[]: the count, or
 * -1 when the list is too long or has more than max items. */
static int split_list(const char *list, const char *seps, char *buf, size_t len, char **item,
                      int max) {
    int n = 0;
    if (strlen(list) >= len) return -1;
    strcpy(buf, list);
    char *save = NULL;
    for (char *t = strtok_r(buf, seps, &save); t; t = strtok_r(NULL, seps, &save)) {
        if (n == max) return -1;
        item[n++] = t;
    }
    return n;
}

/* Splits --policies into specs: "full,mikv,lo-bits=4;quant2" ->
 * ["full", "mikv,lo-bits=4", "quant2"]. */
static int split_policies(const char *list, char specs[][256], int max) {
    char buf[2048], *item[512];
    int n = 0, n_items = split_list(list, ",;", buf, sizeof buf, item, 512);
    for (int i = 0; i < n_items; i++) {
        char *t = item[i];
        while (*t == ' ') t++;
        if (!*t) continue;
        if (strchr(t, '=')) {
            if (n == 0) return -1;
            size_t len = strlen(specs[n - 1]);
            if (len + strlen(t) + 2 > 256) return -1;
            snprintf(specs[n - 1] + len, 256 - len, ",%s", t);
        } else {
            if (n == max) return -1;
            snprintf(specs[n++], 256, "%s", t);
        }
    }
    return n_items < 0 ? -1 : n;
}

static int parse_ratios(const char *s, double *r, int max) {
    char buf[512], *item[MAX_RATIOS];
    int n = split_list(s, ",", buf, sizeof buf, item, max < MAX_RATIOS ? max : MAX_RATIOS);
    for (int i = 0; i < n; i++)
        if (cli_parse_float(item[i], 0, 1, &r[i]) || !(r[i] > 0)) return -1;
    return n;
}

/* Builds the run list: full first, then each policy once per memory target
 * when its budget is solved, once otherwise. */
static int build_runs(const eval_opts *o, ev_run **out, int *n_out) {
    char specs[MAX_POLICIES][256];
    int np = split_policies(o->policies, specs, MAX_POLICIES);
    if (np <= 0) return bad("bad --policies list:", o->policies);
    double targets[MAX_RATIOS + 1];
    int nt = 0;
    if (o->plot || o->ratios_given) {
        nt = parse_ratios(o->ratios, targets, MAX_RATIOS);
        if (nt <= 0) return bad("--ratios expects numbers in (0, 1], got", o->ratios);
    }
    if (o->kv_ratio > 0) {
        int dup = 0;
        for (int i = 0; i < nt; i++) dup |= fabs(targets[i] - o->kv_ratio) < 1e-9;
        if (!dup) targets[nt++] = o->kv_ratio;
    }
    ev_run *r = calloc((size_t)(np + 1) * (nt > 0 ? nt : 1), sizeof *r);
    if (!r) return 1;
    int n = 0;
    /* The reference is a plain `full` (the first one given, or an added one). */
    int ref = -1;
    for (int i = 0; i < np && ref < 0; i++)
        if (!strcmp(specs[i], "full")) ref = i;
    snprintf(r[n].spec, sizeof r[n].spec, "full");
    kv_policy_preset("full", &r[n].pol);
    r[n++].ratio_target = -1;
    for (int i = 0; i < np; i++) {
        if (i == ref) continue;
        kv_policy p;
        char err[256] = "";
        if (kv_policy_parse(specs[i], &p, err, sizeof err)) {
            fprintf(stderr, "pivot eval: policy '%s': %s\n", specs[i], err);
            free(r);
            return 2;
        }
        int solve = o->kv_ratio > 0 || o->plot || o->ratios_given;
        solve = solve && p.budget != 0 && !strstr(specs[i], "budget=");
        for (int j = 0; j < (solve ? nt : 1); j++) {
            snprintf(r[n].spec, sizeof r[n].spec, "%s", specs[i]);
            r[n].pol = p;
            r[n].budgeted = solve;
            r[n++].ratio_target = solve ? targets[j] : -1;
        }
    }
    if (o->prefix_cached) { /* each run, then its twin that takes the prefix from the cache */
        ev_run *t = calloc((size_t)2 * n, sizeof *t);
        if (!t) {
            free(r);
            return 1;
        }
        for (int k = 0; k < n; k++) {
            t[2 * k] = t[2 * k + 1] = r[k];
            t[2 * k + 1].prefix_cached = 1;
            size_t len = strlen(t[2 * k + 1].spec);
            snprintf(t[2 * k + 1].spec + len, sizeof t->spec - len, " +cached");
        }
        free(r);
        r = t;
        n *= 2;
    }
    *out = r;
    *n_out = n;
    return 0;
}

/* Each run's heads knob with the model's ranking, before the budget solver
 * counts its bytes. */
static int resolve_heads(const llm_model *m, ev_run *r, int n, const ev_task_opts *t) {
    kv_policy **p = malloc(sizeof *p * (size_t)(n > 0 ? n : 1));
    if (!p) return 1;
    for (int k = 0; k < n; k++) p[k] = &r[k].pol;
    int rc = cli_resolve_heads("eval", m, t->device, t->threads, p, n);
    free(p);
    return rc;
}

/* Refuses policies the cache cannot build before any time is spent. */
static int check_policies(const llm_model *m, const ev_run *r, int n, int threads) {
    llm_ctx_params cp = {.n_threads = threads, .max_seqs = 1, .max_ctx = 64,
                         .max_batch_tokens = 1};
    kv_shape sh = llm_kv_shape(m, &cp);
    for (int k = 0; k < n; k++) {
        if (k && !strcmp(r[k].spec, r[k - 1].spec)) continue;
        kv_cache *kv = NULL;
        char err[256] = "";
        if (kv_create(&sh, &r[k].pol, &kv, err, sizeof err)) {
            fprintf(stderr, "pivot eval: policy '%s': %s\n", r[k].spec, err);
            return 1;
        }
        kv_destroy(kv);
    }
    return 0;
}

static void fmt_or_dash(char *b, size_t n, const char *fmt, double v, int show) {
    if (show) snprintf(b, n, fmt, v);
    else snprintf(b, n, "-");
}

static void print_table(const eval_opts *o, const ev_run *r, int n) {
    int ppl = o->t.task != EV_RETRIEVAL, acc = o->t.task != EV_PPL;
    /* the policy column fits the longest spec: a cut one could hide what
     * two rows differ in (knobs past the 28th character) */
    int w = 28;
    for (int k = 0; k < n; k++) {
        const int len = (int)strlen(r[k].spec);
        if (len > w) w = len;
    }
    /* top-1 with its 95% interval over samples ("0.9504±0.0048"; the '±' is
     * two bytes of UTF-8, so that column's width is one more in bytes) */
    printf("%-*s %7s %7s %9s %8s %13s %8s %8s\n", w, "policy", "target", "kv mem", "ppl", "dppl%",
           "top1", "KL", "acc");
    for (int k = 0; k < n; k++) {
        char tgt[16], mem[16], p[16], dp[16], t1[32], kl[16], ac[16];
        fmt_or_dash(tgt, sizeof tgt, "%.3f", r[k].ratio_target, r[k].ratio_target > 0);
        if (!r[k].feasible || !r[k].samples) {
            printf("%-*s %7s  infeasible: needs >= %.3f of FP16\n", w, r[k].spec, tgt,
                   r[k].min_ratio);
            continue;
        }
        ev_metrics mt;
        ev_metrics_of(&r[k], &r[0], o->t.task, &mt);
        snprintf(mem, sizeof mem, "%.3f", mt.kv_memory_ratio);
        fmt_or_dash(p, sizeof p, "%.3f", mt.ppl, ppl);
        fmt_or_dash(dp, sizeof dp, "%+.2f", mt.delta_ppl_pct, ppl);
        int t1w = 13;
        if (ppl && mt.top1_ci95 >= 0) {
            snprintf(t1, sizeof t1, "%.4f\u00b1%.4f", mt.top1_agreement, mt.top1_ci95);
            t1w = 14;
        } else {
            fmt_or_dash(t1, sizeof t1, "%.4f", mt.top1_agreement, ppl);
        }
        fmt_or_dash(kl, sizeof kl, "%.4f", mt.mean_kl, ppl);
        fmt_or_dash(ac, sizeof ac, "%.4f", mt.accuracy, acc);
        printf("%-*s %7s %7s %9s %8s %*s %8s %8s\n", w, r[k].spec, tgt, mem, p, dp, t1w, t1, kl, ac);
    }
    fflush(stdout);
}

static int run_plot(const char *json, const char *png) {
    char script[4300], py[4300];
    cli_find_rel("scripts/plot_eval.py", script, sizeof script);
    const char *env = getenv("PIVOT_PYTHON");
    if (env && *env) snprintf(py, sizeof py, "%s", env);
    else {
        cli_find_rel(".venv/bin/python", py, sizeof py);
        if (access(py, X_OK)) snprintf(py, sizeof py, "python3");
    }
    char *args[] = {py, script, (char *)json, (char *)png, NULL};
    pid_t pid;
    int st = 0;
    if (posix_spawnp(&pid, py, NULL, NULL, args, environ) || waitpid(pid, &st, 0) < 0 ||
        !WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "pivot eval: plotting failed (%s %s); the JSON is in %s\n", py, script,
                json);
        return 1;
    }
    return 0;
}

int cmd_eval(int argc, char **argv) {
    eval_opts o;
    int rc = parse(argc, argv, &o);
    if (rc == CLI_HELP) return usage(stdout), 0;
    if (rc) return rc;
    ev_run *runs = NULL;
    int n_runs = 0;
    if ((rc = build_runs(&o, &runs, &n_runs))) return rc;
    char err[512] = "";
    ev_sample *smp = NULL;
    int n_smp = 0, status = 1;
    llm_model *m = cli_load_model("eval", o.model, NULL, 0, o.t.device);
    if (!m) goto out;
    if (resolve_heads(m, runs, n_runs, &o.t) || check_policies(m, runs, n_runs, o.t.threads)) goto out;
    if (ev_build_samples(m, &o.t, &smp, &n_smp, err, sizeof err)) {
        fprintf(stderr, "pivot eval: %s\n", err);
        goto out;
    }
    int longest = 0;
    for (int i = 0; i < n_smp; i++) longest = smp[i].n > longest ? smp[i].n : longest;
    if (longest + 9 > llm_get_config(m)->n_ctx_train) {
        fprintf(stderr, "pivot eval: samples of %d tokens exceed the model's context (%d)\n",
                longest, llm_get_config(m)->n_ctx_train);
        goto out;
    }
    fprintf(stderr, "pivot eval: task %s, %d samples of up to %d tokens, %d runs, %d threads\n",
            ev_task_name(o.t.task), n_smp, longest, n_runs, o.t.threads);
    if (ev_run_all(m, &o.t, smp, n_smp, runs, n_runs)) goto out;
    print_table(&o, runs, n_runs);
    if (o.json && ev_write_json(o.json, llm_get_name(m), &o.t, o.kv_ratio, runs, n_runs)) goto out;
    if (o.plot && run_plot(o.json, o.plot)) goto out;
    status = 0;
out:
    for (int k = 0; k < n_runs; k++) {
        free(runs[k].logits);
        free(runs[k].sample_acc);
        free(runs[k].sample_ppl);
        free(runs[k].sample_top1);
    }
    free(runs);
    ev_free_samples(smp, n_smp);
    llm_free(m);
    return status;
}
