/* bench_stats: see bench_stats.h. The statistics reproduce numpy's rounding,
 * not just its formulas, so that a figure printed here and one printed by
 * vLLM's client from the same latencies are the same number. */
#include "bench_stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void bench_result_init(bench_result *r) {
    memset(r, 0, sizeof *r);
    r->prompt_tokens = r->completion_tokens = -1;
}

void bench_result_release(bench_result *r) {
    free(r->itl);
    free(r->body);
    r->itl = NULL;
    r->body = NULL;
    r->n_itl = r->cap_itl = r->body_len = 0;
}

long bench_out_tokens(const bench_result *r) {
    return r->completion_tokens >= 0 ? r->completion_tokens : r->n_text_chunks;
}

long bench_in_tokens(const bench_result *r, long planned) {
    return r->prompt_tokens >= 0 ? r->prompt_tokens : planned;
}

double bench_tpot(const bench_result *r) {
    long out = bench_out_tokens(r);
    return out > 1 ? (r->latency - r->ttft) / (double)(out - 1) : 0;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_percentile(double *v, size_t n, double p) {
    if (n == 0) return 0;
    if (!(p >= 0)) p = 0; /* NaN too */
    if (p > 100) p = 100;
    qsort(v, n, sizeof *v, cmp_d);
    /* numpy's "linear" method: virtual index (n-1)*q with q = p/100, then
     * _lerp, which interpolates from the nearer end (b - d*(1-t) when
     * t >= 0.5) — the same formulas in the same order, hence the same bits */
    double k = (double)(n - 1) * (p / 100.0);
    double lo_f = floor(k);
    size_t lo = (size_t)lo_f;
    if (lo >= n - 1) return v[n - 1];
    double t = k - lo_f, a = v[lo], b = v[lo + 1], d = b - a;
    return t >= 0.5 ? b - d * (1 - t) : a + d * t;
}

/* numpy's pairwise_sum (umath loops_utils): 8 accumulators over blocks of up
 * to 128, halving above that at multiples of 8. */
static double pairwise(const double *a, size_t n) {
    if (n < 8) {
        double s = 0;
        for (size_t i = 0; i < n; i++) s += a[i];
        return s;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j];
        size_t i;
        for (i = 8; i < n - n % 8; i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + (size_t)j];
        double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) s += a[i];
        return s;
    }
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise(a, n2) + pairwise(a + n2, n - n2);
}

double bench_sum(const double *v, size_t n) { return 0.0 + pairwise(v, n); }

bench_dist bench_distribution(double *v, size_t n) {
    bench_dist d = {0};
    if (!n) return d;
    /* order matters for the sums' rounding: numpy sums the list as given,
     * so the mean and std are taken before the percentiles sort v */
    d.mean = bench_sum(v, n) / (double)n;
    /* np.std: sqrt(sum((x - mean)^2) / n), summed pairwise again */
    double *sq = malloc(n * sizeof *sq);
    if (sq) {
        for (size_t i = 0; i < n; i++) sq[i] = (v[i] - d.mean) * (v[i] - d.mean);
        d.std = sqrt(bench_sum(sq, n) / (double)n);
        free(sq);
    } else { /* out of memory: the same value up to rounding */
        double s2 = 0;
        for (size_t i = 0; i < n; i++) s2 += (v[i] - d.mean) * (v[i] - d.mean);
        d.std = sqrt(s2 / (double)n);
    }
    d.median = bench_percentile(v, n, 50);
    d.p90 = bench_percentile(v, n, 90);
    d.p99 = bench_percentile(v, n, 99);
    return d;
}

int bench_is_good(const bench_result *r, const bench_slo *slo) {
    /* vLLM: all(slo_ms / 1000 >= metric_s); TPOT of a one-token request is 0 */
    if (slo->ttft_ms >= 0 && !(slo->ttft_ms / 1000.0 >= r->ttft)) return 0;
    if (slo->tpot_ms >= 0 && !(slo->tpot_ms / 1000.0 >= bench_tpot(r))) return 0;
    if (slo->e2el_ms >= 0 && !(slo->e2el_ms / 1000.0 >= r->latency)) return 0;
    return 1;
}

int bench_metrics_compute(bench_metrics *m, const bench_result *res, size_t n,
                          long planned_input, double duration, const bench_slo *slo) {
    size_t n_itl = 0;
    for (size_t i = 0; i < n; i++) n_itl += res[i].ok ? res[i].n_itl : 0;
    /* +1: calloc(0) may return NULL, which is not a failure here */
    double *ttft = calloc(n + 1, sizeof *ttft), *tpot = calloc(n + 1, sizeof *tpot);
    double *e2el = calloc(n + 1, sizeof *e2el), *itl = calloc(n_itl + 1, sizeof *itl);
    if (!ttft || !tpot || !e2el || !itl) {
        free(ttft), free(tpot), free(e2el), free(itl);
        return -1;
    }
    bench_metrics z = {0};
    *m = z;
    size_t n_ok = 0, n_tpot = 0;
    n_itl = 0;
    for (size_t i = 0; i < n; i++) {
        const bench_result *r = &res[i];
        if (!r->ok) {
            m->failed++;
            int k = 0;
            while (k < m->n_reasons && strcmp(m->reasons[k].why, r->err)) k++;
            if (k == m->n_reasons && k < BENCH_MAX_REASONS) {
                m->reasons[k].why = r->err;
                m->reasons[k].n = 0;
                m->n_reasons++;
            }
            if (k < m->n_reasons) m->reasons[k].n++;
            continue;
        }
        long out = bench_out_tokens(r);
        m->total_input += bench_in_tokens(r, planned_input);
        m->total_output += out;
        ttft[n_ok] = r->ttft;
        e2el[n_ok++] = r->latency;
        if (out > 1) tpot[n_tpot++] = bench_tpot(r);
        for (size_t k = 0; k < r->n_itl; k++) itl[n_itl++] = r->itl[k];
        if (slo && bench_is_good(r, slo)) m->good++;
    }
    m->completed = n_ok;
    m->duration = duration > 0 ? duration : 1e-9;
    m->request_throughput = (double)n_ok / m->duration;
    m->request_goodput = (double)m->good / m->duration;
    m->output_throughput = (double)m->total_output / m->duration;
    m->total_token_throughput = (double)(m->total_input + m->total_output) / m->duration;
    m->ttft = bench_distribution(ttft, n_ok);
    m->tpot = bench_distribution(tpot, n_tpot);
    m->itl = bench_distribution(itl, n_itl);
    m->e2el = bench_distribution(e2el, n_ok);
    free(ttft), free(tpot), free(e2el), free(itl);
    return 0;
}
