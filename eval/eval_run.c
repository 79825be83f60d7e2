/* eval run: budget solving, the lockstep compressed decode, and metrics.
 *
 * Every run (a policy at a memory target) owns one llm_ctx whose cache
 * kv_create built for that policy; run 0 is `full`. Per sample all runs are
 * prefilled with the prefix, then each following token is fed to every run in
 * turn, and each run's next-token distribution is compared with run 0's at the
 * same position, so no logits need to be kept beyond the current step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv_tier.h"
#include "eval.h"
#include "pverr.h"
#include "pvtime.h"

#define EV_BATCH 256 /* prefill chunk: the forward pass' batch size */

size_t ev_fp16_bytes(const kv_shape *s, int n_tokens) {
    return (size_t)n_tokens * s->n_layers * s->n_kv_heads * s->head_dim * 2 * 2;
}

static double ratio_at(kv_policy *p, const kv_shape *s, int n, int budget) {
    p->budget = budget;
    return (double)kv_policy_seq_bytes(p, s, n) / (double)ev_fp16_bytes(s, n);
}

int ev_solve_budget(const kv_policy *pin, const kv_shape *s, int n_tokens, double target,
                    double *min_ratio) {
    kv_policy p = *pin;
    /* Below sinks + recent the cache keeps those anyway (kv_tier_budget clamps),
     * so the smallest meaningful budget is that, and at least one token. */
    int lo = p.sinks + p.recent;
    if (lo < 1) lo = 1;
    if (lo > n_tokens) lo = n_tokens;
    /* Bytes grow with the budget (a high token costs more than a low or a
     * dropped one) except for page rounding: one more high token can be one
     * low page fewer (at 512 tokens a budget of 20 needs more bytes than one
     * of 32), so no bisection: every budget, largest first (n_tokens
     * predictions of a few dozen page counts each). */
    double best = -1;
    for (int b = n_tokens; b >= lo; b--) {
        double r = ratio_at(&p, s, n_tokens, b);
        if (r <= target) return b;
        if (best < 0 || r < best) best = r;
    }
    if (min_ratio) *min_ratio = best;
    return -1;
}

/* log-softmax in place; returns the argmax. */
static int log_softmax(float *x, int n) {
    int am = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[am]) am = i;
    double mx = x[am], sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    double lse = mx + log(sum);
    for (int i = 0; i < n; i++) x[i] = (float)((double)x[i] - lse);
    return am;
}

/* Scores one position of run r against the reference distribution (already
 * log-softmaxed, argmax ref_top). r->logits is consumed. */
static void score_step(ev_run *r, const float *ref_lp, int ref_top, int is_ref, int target,
                       int n_vocab) {
    int top = is_ref ? ref_top : log_softmax(r->logits, n_vocab);
    const float *lp = is_ref ? ref_lp : r->logits;
    double kl = 0;
    if (!is_ref)
        for (int i = 0; i < n_vocab; i++) {
            double pf = exp((double)ref_lp[i]);
            if (pf > 0) kl += pf * ((double)ref_lp[i] - (double)lp[i]);
        }
    r->s_nll -= lp[target];
    r->s_scored++;
    r->s_correct += top == target;
    r->s_agree += top == ref_top;
    r->kl_sum += kl > 0 ? kl : 0; /* rounding can give -1e-9 for identical rows */
}

/* The cache's bytes after a call: the sample's peak is what a server must
 * provision for it, and what the budget solver bounds. */
static void track_peak(ev_run *r) {
    kv_usage u = {0};
    kv_seq_usage(llm_ctx_kv(r->ctx), 0, &u);
    if (u.bytes_stored > r->s_peak) r->s_peak = u.bytes_stored;
}

static int greedy_answer(const llm_model *m, ev_run *r, int pos, const ev_sample *s, int n_vocab) {
    const tok_vocab *v = llm_get_vocab(m);
    char text[128] = "";
    size_t len = 0;
    for (int g = 0; g < s->gen_max; g++) {
        int32_t tok = 0;
        for (int i = 1; i < n_vocab; i++)
            if (r->logits[i] > r->logits[tok]) tok = i;
        if (tok_is_eog(v, tok)) break;
        char piece[64];
        int w = tok_piece_str(v, tok, 0, piece, sizeof piece);
        if (w > 0 && len + (size_t)w < sizeof text) {
            memcpy(text + len, piece, (size_t)w);
            text[len += (size_t)w] = 0;
        }
        if (strpbrk(text, ".\n") || g + 1 == s->gen_max) break;
        llm_batch_entry e = {.seq = 0, .pos = pos++, .n_tokens = 1, .tokens = &tok,
                             .logits = LLM_LOGITS_LAST};
        int rc = llm_decode(r->ctx, &e, 1, r->logits);
        if (rc) return rc;
        track_peak(r);
    }
    if (getenv("PIVOT_EVAL_DEBUG"))
        fprintf(stderr, "pivot eval: %s: answer '%s', expected '%s'\n", r->spec, text, s->answer);
    /* Exact match: the first run of digits is the expected number, and it
     * ended within the tokens decoded (a longer number is wrong). */
    const char *d = text;
    while (*d == ' ') d++;
    size_t nd = strspn(d, "0123456789");
    if (!nd || !d[nd]) return 0;
    return nd == strlen(s->answer) && !strncmp(d, s->answer, nd);
}

static void free_ctx(ev_run *r) {
    llm_ctx_free(r->ctx);
    r->ctx = NULL;
}

/* Creates run r's context for one sample: solves the budget, builds the cache. */
static int open_run(const llm_model *m, const ev_task_opts *o, ev_run *r, int n_total) {
    llm_ctx_params cp = {.n_threads = o->threads, .max_seqs = r->prefix_cached ? 2 : 1,
                         .max_ctx = n_total + 1,
                         .max_batch_tokens = EV_BATCH, .device = o->device,
                         .attn_split = o->attn_split};
    kv_shape sh = llm_kv_shape(m, &cp);
    kv_policy p = r->pol;
    if (r->budgeted) {
        double minr = 0;
        int b = ev_solve_budget(&p, &sh, n_total, r->ratio_target, &minr);
        if (b < 0) {
            r->feasible = 0;
            if (minr > r->min_ratio) r->min_ratio = minr;
            return 0;
        }
        p.budget = b;
        r->last_budget = b;
    }
    kv_policy_describe(&p, r->describe, sizeof r->describe);
    double reserved = (double)kv_policy_seq_bytes(&p, &sh, n_total) / (double)ev_fp16_bytes(&sh, n_total);
    if (reserved > r->reserved_max) r->reserved_max = reserved;
    char err[256] = "";
    kv_cache *kv = NULL;
    int rc = kv_create(&sh, &p, &kv, err, sizeof err);
    if (rc) {
        fprintf(stderr, "pivot eval: policy %s: %s\n", r->spec, err[0] ? err : pv_strerror(rc));
        return 1;
    }
    rc = llm_ctx_create(m, &cp, kv, &r->ctx); /* owns kv, even on failure */
    if (rc) {
        fprintf(stderr, "pivot eval: policy %s: cannot create a context: %s\n", r->spec,
                pv_strerror(rc));
        return 1;
    }
    return 0;
}

static int decode1(ev_run *r, int pos, int32_t tok) {
    llm_batch_entry e = {.seq = 0, .pos = pos, .n_tokens = 1, .tokens = &tok,
                         .logits = LLM_LOGITS_LAST};
    int rc = llm_decode(r->ctx, &e, 1, r->logits);
    if (!rc) track_peak(r);
    return rc;
}

/* Prefills tokens[from, to) of sequence seq in chunks of EV_BATCH (logits of
 * the last token when `last`). */
static int prefill_range(ev_run *r, int seq, const int32_t *tok, int from, int to, int last) {
    for (int p = from; p < to; p += EV_BATCH) {
        int n = to - p < EV_BATCH ? to - p : EV_BATCH;
        llm_batch_entry e = {.seq = seq, .pos = p, .n_tokens = n, .tokens = tok + p,
                             .logits = last && p + n == to ? LLM_LOGITS_LAST : LLM_LOGITS_NONE};
        int rc = llm_decode(r->ctx, &e, 1, r->logits);
        if (rc) return rc;
        track_peak(r);
    }
    return 0;
}

/* The server's path for a prompt whose prefix another request computed:
 * sequence 1 prefills tokens[0, P) (P the last block boundary before the
 * prefix's end, a call ending there as the engine ends one) and publishes
 * it, is reset, and sequence 0 attaches it and computes only [P, prefix). */
static int prefill_cached(ev_run *r, const ev_sample *s) {
    kv_cache *kv = llm_ctx_kv(r->ctx);
    kv_prefix_stats st;
    kv_prefix_get_stats(kv, &st);
    if (st.block_tokens <= 0) return PV_EUNSUPPORTED; /* a cache without a prefix cache (GPU) */
    int P = (s->prefix - 1) / st.block_tokens * st.block_tokens;
    if (P > 0) {
        int rc = prefill_range(r, 1, s->tokens, 0, P, 0);
        if (rc) return rc;
        rc = kv_seq_prefix_publish(kv, 1, s->tokens, P);
        kv_seq_reset(kv, 1);
        if (rc != P) return rc < 0 ? rc : PV_ENOTFOUND;
        rc = kv_seq_prefix_attach(kv, 0, s->tokens, s->prefix);
        if (rc != P) return rc < 0 ? rc : PV_ENOTFOUND;
    }
    return prefill_range(r, 0, s->tokens, P, s->prefix, 1);
}

static int prefill(ev_run *r, const ev_sample *s) {
    if (r->prefix_cached) return prefill_cached(r, s);
    return prefill_range(r, 0, s->tokens, 0, s->prefix, 1);
}

static void end_sample(ev_run *r, const ev_sample *s, int task, int idx, int correct) {
    kv_usage u = {0};
    kv_seq_usage(llm_ctx_kv(r->ctx), 0, &u);
    double ratio = u.bytes_fp16 ? (double)u.bytes_stored / (double)u.bytes_fp16 : 0;
    if (ratio > r->ratio_max) r->ratio_max = ratio;
    r->ratio_sum += ratio;
    double peak = u.bytes_fp16 ? (double)r->s_peak / (double)u.bytes_fp16 : 0;
    if (peak > r->peak_ratio_max) r->peak_ratio_max = peak;
    if (u.bytes_stored > r->bytes_stored_max) r->bytes_stored_max = u.bytes_stored;
    if (u.bytes_fp16 > r->bytes_fp16_max) r->bytes_fp16_max = u.bytes_fp16;
    r->n_high = u.n_high, r->n_low = u.n_low, r->n_dropped = u.n_dropped;
    if (task == EV_RETRIEVAL) {
        r->n_correct += correct;
        r->sample_acc[idx] = correct;
    } else {
        r->nll_sum += r->s_nll;
        r->n_scored += r->s_scored;
        r->n_correct += r->s_correct;
        r->n_agree += r->s_agree;
        r->sample_top1[idx] = r->s_scored ? (double)r->s_agree / r->s_scored : 0;
        r->sample_ppl[idx] = r->s_scored ? exp(r->s_nll / r->s_scored) : 0;
        r->sample_acc[idx] = r->s_scored ? (double)r->s_correct / r->s_scored : 0;
    }
    (void)s;
    r->samples++;
}

/* Progress on stderr at most every 2 s (and at each sample's end): a bar
 * over all samples, the sample and step, time spent and an estimate of the
 * time left (from the fraction done, counting samples as equal). */
typedef struct {
    double t0, last;
} ev_progress;

static void progress(ev_progress *pg, int si, int ns, int step, int nsteps, int final) {
    double now = pv_now();
    if (!final && now - pg->last < 2.0) return;
    pg->last = now;
    double done = ((double)si + (nsteps ? (double)step / nsteps : 1.0)) / ns, spent = now - pg->t0;
    char bar[21];
    for (int i = 0; i < 20; i++) bar[i] = i < (int)(done * 20 + 1e-9) ? '#' : '.';
    bar[20] = 0;
    int tty = isatty(2);
    fprintf(stderr, "%spivot eval: [%s] sample %d/%d, step %d/%d, %.0f s, ~%.0f s left%s",
            tty ? "\r" : "", bar, si + 1, ns, step, nsteps, spent,
            done > 0 ? spent * (1 - done) / done : 0.0, tty && !final ? "   " : "\n");
    fflush(stderr);
}

int ev_run_all(const llm_model *m, const ev_task_opts *o, ev_sample *smp, int n_smp, ev_run *runs,
               int n_runs) {
    int n_vocab = llm_get_config(m)->n_vocab;
    for (int k = 0; k < n_runs; k++) {
        runs[k].feasible = 1;
        runs[k].logits = malloc(sizeof(float) * n_vocab);
        runs[k].sample_acc = calloc((size_t)n_smp, sizeof(double));
        runs[k].sample_ppl = calloc((size_t)n_smp, sizeof(double));
        runs[k].sample_top1 = calloc((size_t)n_smp, sizeof(double));
        if (!runs[k].logits || !runs[k].sample_acc || !runs[k].sample_ppl ||
            !runs[k].sample_top1) {
            fprintf(stderr, "pivot eval: out of memory\n");
            return 1;
        }
    }
    float *ref = malloc(sizeof(float) * n_vocab);
    if (!ref) return 1;
    ev_progress pg = {pv_now(), 0};
    int status = 1;
    for (int si = 0; si < n_smp; si++) {
        const ev_sample *s = &smp[si];
        int n_total = s->n + s->gen_max;
        for (int k = 0; k < n_runs; k++) {
            ev_run *r = &runs[k];
            r->s_nll = 0, r->s_scored = 0, r->s_correct = 0, r->s_agree = 0, r->s_peak = 0;
            if (!r->feasible) continue;
            if (open_run(m, o, r, n_total)) goto out;
            if (!r->ctx) continue; /* infeasible at this target */
            double ts = pv_now();
            int rc = prefill(r, s);
            r->seconds += pv_now() - ts;
            if (rc) {
                fprintf(stderr, "pivot eval: %s: prefill failed: %s\n", r->spec, pv_strerror(rc));
                goto out;
            }
        }
        int nsteps = s->n - s->prefix;
        for (int t = s->prefix; t < s->n; t++) {
            if (s->score && (!s->mask || s->mask[t])) {
                memcpy(ref, runs[0].logits, sizeof(float) * n_vocab);
                int ref_top = log_softmax(ref, n_vocab);
                for (int k = 0; k < n_runs; k++)
                    if (runs[k].ctx) score_step(&runs[k], ref, ref_top, k == 0, s->tokens[t], n_vocab);
            }
            /* The last token of a scored sample has nothing left to predict;
             * retrieval feeds it, since its logits start the answer. */
            if (t + 1 == s->n && s->score) break;
            for (int k = 0; k < n_runs; k++) {
                if (!runs[k].ctx) continue;
                double ts = pv_now();
                int rc = decode1(&runs[k], t, s->tokens[t]);
                runs[k].seconds += pv_now() - ts;
                if (rc) {
                    fprintf(stderr, "pivot eval: %s: decode failed at position %d: %s\n",
                            runs[k].spec, t, pv_strerror(rc));
                    goto out;
                }
            }
            progress(&pg, si, n_smp, t - s->prefix + 1, nsteps, 0);
        }
        for (int k = 0; k < n_runs; k++) {
            ev_run *r = &runs[k];
            if (!r->ctx) continue;
            int correct = 0;
            if (!s->score) {
                correct = greedy_answer(m, r, s->n, s, n_vocab);
                if (correct < 0) {
                    fprintf(stderr, "pivot eval: %s: decode failed: %s\n", r->spec,
                            pv_strerror(correct));
                    goto out;
                }
            }
            end_sample(r, s, o->task, si, correct);
            free_ctx(r);
        }
        progress(&pg, si, n_smp, nsteps, nsteps, 1);
    }
    status = 0;
out:
    for (int k = 0; k < n_runs; k++) free_ctx(&runs[k]);
    free(ref);
    return status;
}

static double ci95(const double *x, int n) {
    if (n < 2) return -1;
    double mean = 0, var = 0;
    for (int i = 0; i < n; i++) mean += x[i];
    mean /= n;
    for (int i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= n - 1;
    return 1.96 * sqrt(var / n);
}

void ev_metrics_of(const ev_run *r, const ev_run *ref, ev_task task, ev_metrics *out) {
    memset(out, 0, sizeof *out);
    out->kv_memory_ratio = r->peak_ratio_max;
    int n = r->samples;
    if (task == EV_RETRIEVAL) {
        out->accuracy = n ? (double)r->n_correct / n : 0;
        out->accuracy_ci95 = ci95(r->sample_acc, n);
        out->delta_ppl_ci95 = out->top1_ci95 = -1;
        return;
    }
    out->ppl = r->n_scored ? exp(r->nll_sum / r->n_scored) : 0;
    double ppl_ref = ref->n_scored ? exp(ref->nll_sum / ref->n_scored) : 0;
    out->delta_ppl_pct = ppl_ref > 0 ? 100.0 * (out->ppl / ppl_ref - 1.0) : 0;
    out->top1_agreement = r->n_scored ? (double)r->n_agree / r->n_scored : 0;
    out->mean_kl = r->n_scored ? r->kl_sum / r->n_scored : 0;
    out->accuracy = r->n_scored ? (double)r->n_correct / r->n_scored : 0;
    out->accuracy_ci95 = ci95(r->sample_acc, n);
    out->top1_ci95 = ci95(r->sample_top1, n);
    /* Per-sample relative change against the same sample under full. */
    if (n >= 2 && ref->samples == n) {
        double *d = malloc(sizeof(double) * n);
        if (d) {
            for (int i = 0; i < n; i++)
                d[i] = ref->sample_ppl[i] > 0 ? 100.0 * (r->sample_ppl[i] / ref->sample_ppl[i] - 1) : 0;
            out->delta_ppl_ci95 = ci95(d, n);
            free(d);
        }
    } else {
        out->delta_ppl_ci95 = -1;
    }
}
