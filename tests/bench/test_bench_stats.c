/* bench_stats: `pivot bench`'s statistics and metric definitions, checked
 * against hand-computed values, numpy's own output (printed once, pasted
 * below) and properties that hold for any input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_stats.h"

/* Equal up to a few ulps: the implementation follows numpy's arithmetic step
 * by step, so the numbers agree to the last bit on x86-64; the slack only
 * covers a compiler that fuses a multiply-add. */
static void expect_close(double got, double want, const char *what) {
    double tol = 1e-14 * fmax(1.0, fabs(want));
    cr_expect(fabs(got - want) <= tol, "%s: got %.17g, want %.17g", what, got, want);
}

/* ---- percentiles ---- */

Test(bench_stats, percentile_hand_computed) {
    /* numpy: virtual index (n-1)*p/100, linear between its neighbours */
    double v[] = {4, 1, 3, 2};
    expect_close(bench_percentile(v, 4, 50), 2.5, "p50 1..4");   /* index 1.5 */
    expect_close(bench_percentile(v, 4, 90), 3.7, "p90 1..4");   /* index 2.7 */
    expect_close(bench_percentile(v, 4, 99), 3.97, "p99 1..4");  /* index 2.97 */
    expect_close(bench_percentile(v, 4, 0), 1, "p0");
    expect_close(bench_percentile(v, 4, 100), 4, "p100");
    double w[] = {3, 1, 2};
    const double ps[] = {0, 25, 50, 75, 100}, want[] = {1, 1.5, 2, 2.5, 3};
    for (int i = 0; i < 5; i++) expect_close(bench_percentile(w, 3, ps[i]), want[i], "1..3");
}

Test(bench_stats, percentile_empty_single_and_clamped) {
    cr_expect_eq(bench_percentile(NULL, 0, 50), 0.0);
    double one[] = {0.125};
    for (double p = 0; p <= 100; p += 12.5) cr_expect_eq(bench_percentile(one, 1, p), 0.125);
    double v[] = {5, 7};
    cr_expect_eq(bench_percentile(v, 2, -10), 5.0);
    cr_expect_eq(bench_percentile(v, 2, 250), 7.0);
    cr_expect_eq(bench_percentile(v, 2, NAN), 5.0);
}

Test(bench_stats, percentile_sorts_unsorted_input) {
    double v[] = {9, -1, 4, 4, 0, 12, 3};
    double m = bench_percentile(v, 7, 50);
    cr_expect_eq(m, 4.0);
    for (int i = 1; i < 7; i++) cr_expect_leq(v[i - 1], v[i], "sorted in place");
}

Test(bench_stats, percentile_properties) {
    static double v[401];
    for (size_t n = 1; n <= 400; n++) {
        /* 1..n, given in reverse: the median is (n+1)/2, p0 the min, p100 the max */
        for (size_t i = 0; i < n; i++) v[i] = (double)(n - i);
        cr_expect_eq(bench_percentile(v, n, 50), (double)(n + 1) / 2, "median of 1..%zu", n);
        cr_expect_eq(bench_percentile(v, n, 0), 1.0);
        cr_expect_eq(bench_percentile(v, n, 100), (double)n);
        /* monotone in p and inside [min, max] */
        double prev = 0;
        for (int p = 0; p <= 100; p++) {
            double x = bench_percentile(v, n, p);
            cr_expect_geq(x, prev, "n=%zu p=%d", n, p);
            cr_expect(x >= 1 && x <= (double)n);
            prev = x;
        }
    }
    /* 0..100: the p-th percentile is p itself (virtual index exactly p) */
    for (int i = 0; i <= 100; i++) v[i] = i;
    for (int p = 0; p <= 100; p++) expect_close(bench_percentile(v, 101, p), p, "0..100");
    /* a constant array: every percentile is the constant */
    for (int i = 0; i < 50; i++) v[i] = 0.3;
    for (int p = 0; p <= 100; p += 7) cr_expect_eq(bench_percentile(v, 50, p), 0.3);
}

/* ---- mean / std / median / p90 / p99 against numpy ---- */

/* numpy 2.4.6, printed with repr():
 *   a = [0.212, 0.05, 0.731, 0.118, 0.402, 0.0999, 0.315, 0.6, 0.027, 0.488, 0.173]
 *   np.mean(a)             0.2923545454545455
 *   np.std(a)              0.22465266671276576
 *   np.median(a)           0.212
 *   np.percentile(a, 90)   0.6
 *   np.percentile(a, 99)   0.7179 */
Test(bench_stats, distribution_matches_numpy_small) {
    double a[] = {0.212, 0.05, 0.731, 0.118, 0.402, 0.0999, 0.315, 0.6, 0.027, 0.488, 0.173};
    bench_dist d = bench_distribution(a, 11);
    expect_close(d.mean, 0.2923545454545455, "mean");
    expect_close(d.std, 0.22465266671276576, "std");
    expect_close(d.median, 0.212, "median");
    expect_close(d.p90, 0.6, "p90");
    expect_close(d.p99, 0.7179, "p99");
}

/* b = [math.fmod(i * 0.6180339887498949, 1.0) * 100 for i in range(1000)]:
 * 1000 values, so numpy's pairwise summation recurses (blocks of 128).
 *   np.sum(b)                49997.738057250404
 *   np.mean(b)               49.9977380572504
 *   np.std(b)                28.87046450808446
 *   np.median(b)             49.97734480731424
 *   np.percentile(b, 90)     89.94455790444817
 *   np.percentile(b, 99)     98.95087610778779
 *   np.percentile(b, 12.5)   12.525329275450625
 *   np.percentile(b, 99.9)   99.88144918478196 */
Test(bench_stats, distribution_matches_numpy_large) {
    static double b[1000];
    for (int i = 0; i < 1000; i++) b[i] = fmod(i * 0.6180339887498949, 1.0) * 100;
    expect_close(bench_sum(b, 1000), 49997.738057250404, "sum");
    bench_dist d = bench_distribution(b, 1000);
    expect_close(d.mean, 49.9977380572504, "mean");
    expect_close(d.std, 28.87046450808446, "std");
    expect_close(d.median, 49.97734480731424, "median");
    expect_close(d.p90, 89.94455790444817, "p90");
    expect_close(d.p99, 98.95087610778779, "p99");
    expect_close(bench_percentile(b, 1000, 12.5), 12.525329275450625, "p12.5");
    expect_close(bench_percentile(b, 1000, 99.9), 99.88144918478196, "p99.9");
}

Test(bench_stats, distribution_hand_and_empty) {
    double v[] = {1, 2, 3, 4};
    bench_dist d = bench_distribution(v, 4);
    cr_expect_eq(d.mean, 2.5);
    expect_close(d.std, sqrt(1.25), "population std"); /* numpy's ddof=0 */
    cr_expect_eq(d.median, 2.5);
    bench_dist z = bench_distribution(NULL, 0); /* vLLM: np.mean(x or 0) */
    cr_expect(z.mean == 0 && z.std == 0 && z.median == 0 && z.p90 == 0 && z.p99 == 0);
    double one[] = {0.75};
    bench_dist s = bench_distribution(one, 1);
    cr_expect(s.mean == 0.75 && s.std == 0 && s.median == 0.75 && s.p99 == 0.75);
}

/* ---- metric definitions from synthetic records ---- */

static bench_result rec(double ttft, double latency, long out, long in) {
    bench_result r;
    bench_result_init(&r);
    r.ok = 1;
    r.ttft = ttft;
    r.latency = latency;
    r.completion_tokens = out;
    r.prompt_tokens = in;
    return r;
}

static bench_result failed(const char *why) {
    bench_result r;
    bench_result_init(&r);
    snprintf(r.err, sizeof r.err, "%s", why);
    return r;
}

Test(bench_stats, tokens_and_tpot) {
    bench_result r = rec(0.2, 1.0, 5, 7);
    expect_close(bench_tpot(&r), 0.2, "(1.0 - 0.2) / (5 - 1)");
    cr_expect_eq(bench_out_tokens(&r), 5);
    cr_expect_eq(bench_in_tokens(&r, 99), 7);
    /* no usage: one token per chunk with text; input falls back to the plan */
    r.completion_tokens = r.prompt_tokens = -1;
    r.n_text_chunks = 3;
    cr_expect_eq(bench_out_tokens(&r), 3);
    cr_expect_eq(bench_in_tokens(&r, 99), 99);
    expect_close(bench_tpot(&r), 0.4, "(1.0 - 0.2) / 2");
    /* one output token (or none): TPOT undefined, 0 */
    bench_result one = rec(0.3, 0.3, 1, 1), none = rec(0.3, 0.3, 0, 1);
    cr_expect_eq(bench_tpot(&one), 0.0);
    cr_expect_eq(bench_tpot(&none), 0.0);
}

Test(bench_stats, metrics_from_known_timestamps) {
    double itl0[] = {0.05, 0.05, 0.10, 0.10}, itl1[] = {0.3};
    bench_result res[5];
    res[0] = rec(0.2, 0.5, 5, 10); /* TPOT (0.5-0.2)/4 = 0.075 */
    res[0].itl = itl0, res[0].n_itl = 4;
    res[1] = rec(0.4, 0.7, 2, 20); /* TPOT 0.3 */
    res[1].itl = itl1, res[1].n_itl = 1;
    res[2] = rec(0.1, 0.1, 1, 30); /* one token: no TPOT, no ITL */
    res[3] = failed("HTTP 500 boom");
    res[3].prompt_tokens = 40;     /* failed: counted nowhere but `failed` */
    res[4] = failed("HTTP 500 boom");
    bench_metrics m;
    cr_assert_eq(bench_metrics_compute(&m, res, 5, 0, 2.0, NULL), 0);
    cr_expect_eq(m.completed, 3);
    cr_expect_eq(m.failed, 2);
    cr_expect_eq(m.total_input, 60);
    cr_expect_eq(m.total_output, 8);
    expect_close(m.request_throughput, 1.5, "3 / 2 s");
    expect_close(m.output_throughput, 4.0, "8 / 2 s");
    expect_close(m.total_token_throughput, 34.0, "(60 + 8) / 2 s");
    cr_expect_eq(m.request_goodput, 0.0);
    /* TTFT over completed requests: 0.2 0.4 0.1 */
    expect_close(m.ttft.mean, (0.2 + 0.4 + 0.1) / 3, "mean ttft");
    expect_close(m.ttft.median, 0.2, "median ttft");
    expect_close(m.e2el.median, 0.5, "median e2el");
    /* TPOT only over requests with more than one token: 0.075 and 0.3 */
    expect_close(m.tpot.mean, (0.075 + 0.3) / 2, "mean tpot");
    expect_close(m.tpot.median, (0.075 + 0.3) / 2, "median tpot");
    /* ITL pooled over requests: 0.05 0.05 0.1 0.1 0.3 */
    expect_close(m.itl.mean, 0.12, "mean itl");
    expect_close(m.itl.median, 0.1, "median itl");
    expect_close(m.itl.p90, 0.22, "p90 itl"); /* index 3.6: 0.1 + 0.6 * 0.2 */
    cr_expect_eq(m.n_reasons, 1);
    cr_expect_str_eq(m.reasons[0].why, "HTTP 500 boom");
    cr_expect_eq(m.reasons[0].n, 2);
}

Test(bench_stats, usage_absent_falls_back) {
    bench_result res[2] = {rec(0.1, 0.4, -1, -1), rec(0.1, 0.4, 4, -1)};
    res[0].n_text_chunks = 3;
    bench_metrics m;
    cr_assert_eq(bench_metrics_compute(&m, res, 2, 16, 1.0, NULL), 0);
    cr_expect_eq(m.total_output, 7);
    cr_expect_eq(m.total_input, 32); /* --input-len for both */
}

Test(bench_stats, goodput_slos) {
    bench_result res[4] = {
        rec(0.10, 0.50, 5, 1), /* TPOT 0.1 */
        rec(0.30, 0.70, 5, 1), /* TPOT 0.1, slow first token */
        rec(0.10, 1.30, 5, 1), /* TPOT 0.3 */
        rec(0.10, 0.10, 1, 1), /* one token: TPOT 0 meets any TPOT SLO */
    };
    bench_metrics m;
    bench_slo ttft = {200, -1, -1}, tpot = {-1, 150, -1}, e2el = {-1, -1, 600};
    bench_slo all = {200, 150, 600}, none = {-1, -1, -1};
    cr_assert_eq(bench_metrics_compute(&m, res, 4, 0, 2.0, &ttft), 0);
    cr_expect_eq(m.good, 3);
    expect_close(m.request_goodput, 1.5, "3 / 2 s");
    cr_assert_eq(bench_metrics_compute(&m, res, 4, 0, 2.0, &tpot), 0);
    cr_expect_eq(m.good, 3);
    cr_assert_eq(bench_metrics_compute(&m, res, 4, 0, 2.0, &e2el), 0);
    cr_expect_eq(m.good, 2);
    cr_assert_eq(bench_metrics_compute(&m, res, 4, 0, 2.0, &all), 0);
    cr_expect_eq(m.good, 2);
    cr_assert_eq(bench_metrics_compute(&m, res, 4, 0, 2.0, &none), 0);
    cr_expect_eq(m.good, 4);
    /* the bound itself meets the SLO (vLLM: slo >= metric) */
    bench_result edge = rec(0.25, 0.5, 2, 1);
    bench_slo at = {250, 250, 500};
    cr_expect(bench_is_good(&edge, &at));
    at.e2el_ms = 499.999;
    cr_expect_not(bench_is_good(&edge, &at));
}

Test(bench_stats, failure_reasons_in_order_and_capped) {
    bench_result res[40];
    for (int i = 0; i < 40; i++) {
        char why[32];
        snprintf(why, sizeof why, "reason %d", i % 20); /* 20 distinct, each twice */
        res[i] = failed(why);
    }
    bench_metrics m;
    cr_assert_eq(bench_metrics_compute(&m, res, 40, 0, 1.0, NULL), 0);
    cr_expect_eq(m.failed, 40);
    cr_expect_eq(m.completed, 0);
    cr_expect_eq(m.n_reasons, BENCH_MAX_REASONS);
    for (int k = 0; k < BENCH_MAX_REASONS; k++) {
        char want[32];
        snprintf(want, sizeof want, "reason %d", k);
        cr_expect_str_eq(m.reasons[k].why, want);
        cr_expect_eq(m.reasons[k].n, 2);
    }
    /* nothing completed: every distribution is 0, nothing divides by zero */
    cr_expect(m.ttft.mean == 0 && m.tpot.p99 == 0 && m.itl.median == 0 && m.e2el.std == 0);
    cr_expect_eq(m.request_throughput, 0.0);
}

Test(bench_stats, empty_run_and_zero_duration) {
    bench_metrics m;
    cr_assert_eq(bench_metrics_compute(&m, NULL, 0, 0, 0.0, NULL), 0);
    cr_expect_eq(m.completed, 0);
    cr_expect_eq(m.duration, 1e-9); /* never a division by zero */
    bench_result r = rec(0.1, 0.2, 3, 1);
    cr_assert_eq(bench_metrics_compute(&m, &r, 1, 0, -5.0, NULL), 0);
    cr_expect(isfinite(m.request_throughput) && m.request_throughput > 0);
}

Test(bench_stats, result_release) {
    bench_result r;
    bench_result_init(&r);
    cr_expect_eq(r.prompt_tokens, -1);
    cr_expect_eq(r.completion_tokens, -1);
    r.itl = malloc(4 * sizeof *r.itl);
    r.body = strdup("{}");
    r.n_itl = 4;
    bench_result_release(&r);
    cr_expect(r.itl == NULL && r.body == NULL && r.n_itl == 0);
    bench_result_release(&r); /* twice is fine */
}
