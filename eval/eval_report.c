/* eval report: the JSON `pivot eval --json` writes (read by
 * scripts/plot_eval.py and the tests). One object per run under "results";
 * metrics that a task does not measure are absent rather than 0, and
 * infeasible targets are listed with "feasible": false and the smallest ratio
 * the policy can reach, so a sweep shows where a method stops. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "eval.h"

static void num(cJSON *o, const char *k, double v) { cJSON_AddNumberToObject(o, k, v); }

int ev_write_json(const char *path, const char *model_name, const ev_task_opts *o,
                  double kv_ratio, const ev_run *runs, int n_runs) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return 1;
    cJSON_AddStringToObject(root, "task", ev_task_name(o->task));
    cJSON_AddStringToObject(root, "model", model_name);
    if (kv_ratio > 0) num(root, "kv_ratio_target", kv_ratio);
    else cJSON_AddNullToObject(root, "kv_ratio_target");
    num(root, "samples", o->samples);
    num(root, "seed", (double)o->seed);
    if (o->task == EV_PPL) {
        cJSON_AddStringToObject(root, "text", o->text);
        num(root, "prefix", o->prefix);
    }
    if (o->task == EV_RETRIEVAL) num(root, "lines", o->lines);
    else num(root, "length", o->length);
    if (o->task == EV_RETRIEVAL || o->task == EV_LOOKUP) num(root, "digits", o->digits);
    cJSON *arr = cJSON_AddArrayToObject(root, "results");
    for (int k = 0; arr && k < n_runs; k++) {
        const ev_run *r = &runs[k];
        cJSON *e = cJSON_CreateObject();
        if (!e) break;
        cJSON_AddItemToArray(arr, e);
        cJSON_AddStringToObject(e, "policy", r->pol.preset);
        cJSON_AddStringToObject(e, "policy_spec", r->spec);
        if (r->ratio_target > 0) num(e, "kv_ratio_target", r->ratio_target);
        else cJSON_AddNullToObject(e, "kv_ratio_target");
        cJSON_AddBoolToObject(e, "budget_solved", r->budgeted);
        cJSON_AddBoolToObject(e, "prefix_cached", r->prefix_cached);
        cJSON_AddBoolToObject(e, "feasible", r->feasible && r->samples > 0);
        num(e, "samples", r->samples);
        if (!r->feasible || r->samples == 0) {
            if (r->min_ratio > 0) num(e, "min_kv_memory_ratio", r->min_ratio);
            continue;
        }
        ev_metrics mt;
        ev_metrics_of(r, &runs[0], o->task, &mt);
        cJSON_AddStringToObject(e, "policy_resolved", r->describe);
        if (r->budgeted) num(e, "budget_tokens", r->last_budget);
        num(e, "kv_memory_ratio", mt.kv_memory_ratio);
        num(e, "kv_memory_ratio_end", r->ratio_max);
        num(e, "kv_memory_ratio_mean", r->ratio_sum / r->samples);
        num(e, "kv_memory_ratio_reserved", r->reserved_max);
        num(e, "tokens_high", r->n_high);
        num(e, "tokens_low", r->n_low);
        num(e, "tokens_dropped", r->n_dropped);
        num(e, "kv_bytes_stored", (double)r->bytes_stored_max);
        num(e, "kv_bytes_fp16", (double)r->bytes_fp16_max);
        if (o->task != EV_RETRIEVAL) {
            num(e, "tokens_scored", (double)r->n_scored);
            num(e, "ppl", mt.ppl);
            num(e, "delta_ppl_pct", mt.delta_ppl_pct);
            if (mt.delta_ppl_ci95 >= 0) num(e, "delta_ppl_pct_ci95", mt.delta_ppl_ci95);
            num(e, "top1_agreement", mt.top1_agreement);
            if (mt.top1_ci95 >= 0) num(e, "top1_agreement_ci95", mt.top1_ci95);
            cJSON *st = cJSON_AddArrayToObject(e, "sample_top1");
            for (int i = 0; st && i < r->samples; i++)
                cJSON_AddItemToArray(st, cJSON_CreateNumber(r->sample_top1[i]));
            num(e, "mean_kl", mt.mean_kl);
        }
        if (o->task != EV_PPL) {
            num(e, "accuracy", mt.accuracy);
            if (mt.accuracy_ci95 >= 0) num(e, "accuracy_ci95", mt.accuracy_ci95);
            /* per sample, so runs with other seeds can be pooled into one interval */
            cJSON *sa = cJSON_AddArrayToObject(e, "sample_accuracy");
            for (int i = 0; sa && i < r->samples; i++)
                cJSON_AddItemToArray(sa, cJSON_CreateNumber(r->sample_acc[i]));
        }
        num(e, "decode_seconds", r->seconds);
    }
    char *txt = cJSON_Print(root);
    cJSON_Delete(root);
    if (!txt) return 1;
    FILE *f = fopen(path, "w");
    int ok = f && fputs(txt, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f)) ok = 0;
    free(txt);
    if (!ok) {
        fprintf(stderr, "pivot eval: cannot write %s\n", path);
        return 1;
    }
    return 0;
}
