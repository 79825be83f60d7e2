/* bench_workload: the seeded RNG, random prompts, Poisson arrivals (the gaps
 * are exponential with mean 1/rate: mean, coefficient of variation and a
 * Kolmogorov-Smirnov distance over 20k draws) and dataset parsing (JSONL,
 * ShareGPT; malformed files are errors, not crashes). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_workload.h"

Test(bench_workload, rng_is_deterministic_and_uniform) {
    uint64_t a = 42, b = 42, c = 43;
    for (int i = 0; i < 100; i++) {
        uint64_t x = bench_rng_next(&a);
        cr_expect_eq(x, bench_rng_next(&b));
        cr_expect_neq(x, bench_rng_next(&c));
    }
    /* splitmix64's first output for seed 0 (the published reference value) */
    uint64_t z = 0;
    cr_expect_eq(bench_rng_next(&z), 0xe220a8397b1dcdafull);
    uint64_t s = 7;
    double sum = 0;
    for (int i = 0; i < 100000; i++) {
        double u = bench_rng_unit(&s);
        cr_assert(u >= 0 && u < 1);
        sum += u;
    }
    cr_expect(fabs(sum / 100000 - 0.5) < 0.005, "mean %g", sum / 100000);
}

Test(bench_workload, random_prompts) {
    uint64_t r1 = 5, r2 = 5;
    char *a = bench_random_prompt(&r1, 50), *b = bench_random_prompt(&r2, 50);
    cr_assert(a && b);
    cr_expect_str_eq(a, b); /* one seed, one prompt */
    /* 50 words from the list, single spaces */
    int words = 0;
    char *save = NULL;
    for (char *w = strtok_r(a, " ", &save); w; w = strtok_r(NULL, " ", &save), words++) {
        int found = 0;
        for (size_t i = 0; i < bench_n_words(); i++) found |= !strcmp(w, bench_word(i));
        cr_expect(found, "'%s' is not a list word", w);
    }
    cr_expect_eq(words, 50);
    free(a);
    free(b);
    char *e = bench_random_prompt(&r1, 0);
    cr_assert(e);
    cr_expect_str_eq(e, "");
    free(e);
    cr_expect_eq(bench_word(bench_n_words()), NULL);
    /* the buffer is sized for the longest word: no truncation at large n */
    char *big = bench_random_prompt(&r1, 5000);
    cr_assert(big);
    int spaces = 0;
    for (char *p = big; *p; p++) spaces += *p == ' ';
    cr_expect_eq(spaces, 4999);
    free(big);
}

Test(bench_workload, prefixed_prompts_share_their_head_only) {
    uint64_t r = 9;
    char *head = bench_random_prompt(&r, 30);
    cr_assert(head);
    char *a = bench_prefixed_prompt(head, &r, 20), *b = bench_prefixed_prompt(head, &r, 20);
    cr_assert(a && b);
    size_t lh = strlen(head);
    cr_expect_eq(strncmp(a, head, lh), 0, "the head is not at the start");
    cr_expect_eq(strncmp(b, head, lh), 0);
    cr_expect_eq(a[lh], ' ');
    cr_expect_str_neq(a + lh, b + lh, "the tails are the same");
    int spaces = 0;
    for (char *p = a; *p; p++) spaces += *p == ' ';
    cr_expect_eq(spaces, 30 + 20 - 1, "not 50 words");
    char *c = bench_prefixed_prompt(NULL, &r, 5), *d = bench_prefixed_prompt("", &r, 5);
    cr_assert(c && d);
    cr_expect_neq(c[0], ' ', "no head, no leading space");
    cr_expect_neq(d[0], ' ');
    free(a), free(b), free(c), free(d), free(head);
}

#define N_ARR 20000

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

Test(bench_workload, poisson_gaps_are_exponential) {
    static double t[N_ARR], g[N_ARR];
    const double rate = 4.0;
    cr_assert_eq(bench_arrivals(t, N_ARR, rate, 1), 0);
    cr_expect_gt(t[0], 0, "the first request one gap after the start, as vLLM");
    double sum = 0, sum2 = 0;
    for (int i = 0; i < N_ARR; i++) {
        g[i] = t[i] - (i ? t[i - 1] : 0);
        cr_assert_geq(g[i], 0);
        sum += g[i];
    }
    double mean = sum / N_ARR;
    for (int i = 0; i < N_ARR; i++) sum2 += (g[i] - mean) * (g[i] - mean);
    double cv = sqrt(sum2 / N_ARR) / mean;
    /* standard errors over 20k draws: 0.7% for the mean, 1% for the CV */
    cr_expect(fabs(mean * rate - 1) < 0.03, "mean gap %g, want %g", mean, 1 / rate);
    cr_expect(fabs(cv - 1) < 0.04, "coefficient of variation %g, want 1", cv);
    /* Kolmogorov-Smirnov distance to the exponential CDF 1 - exp(-rate x);
     * 1.63/sqrt(n) is the 1% critical value */
    qsort(g, N_ARR, sizeof *g, cmp);
    double d = 0;
    for (int i = 0; i < N_ARR; i++) {
        double f = 1 - exp(-rate * g[i]);
        d = fmax(d, fmax(fabs(f - (double)i / N_ARR), fabs((double)(i + 1) / N_ARR - f)));
    }
    cr_expect(d < 1.63 / sqrt(N_ARR), "KS distance %g", d);
}

Test(bench_workload, arrivals_deterministic_and_scaled) {
    static double a[1000], b[1000], c[1000], h[1000];
    cr_assert_eq(bench_arrivals(a, 1000, 10, 99), 0);
    cr_assert_eq(bench_arrivals(b, 1000, 10, 99), 0);
    cr_assert_eq(bench_arrivals(c, 1000, 10, 100), 0);
    cr_assert_eq(bench_arrivals(h, 1000, 20, 99), 0);
    cr_expect_arr_eq(a, b, sizeof a, "one seed, one schedule");
    cr_expect_neq(a[0], c[0], "another seed, another schedule");
    for (int i = 0; i < 1000; i++) {
        if (i) cr_expect_geq(a[i], a[i - 1]);
        /* twice the rate: the same draws, half the times */
        cr_expect(fabs(h[i] - a[i] / 2) <= 1e-12 * a[i], "%d: %g vs %g", i, h[i], a[i] / 2);
    }
}

Test(bench_workload, arrivals_inf_and_bad_rates) {
    double t[64];
    for (int i = 0; i < 64; i++) t[i] = -1;
    cr_assert_eq(bench_arrivals(t, 64, INFINITY, 3), 0);
    for (int i = 0; i < 64; i++) cr_expect_eq(t[i], 0.0, "inf: everything at once");
    t[0] = -1;
    cr_expect_eq(bench_arrivals(t, 64, 0, 3), -1);
    cr_expect_eq(bench_arrivals(t, 64, -2, 3), -1);
    cr_expect_eq(bench_arrivals(t, 64, NAN, 3), -1);
    cr_expect_eq(t[0], -1.0, "untouched on error");
    cr_expect_eq(bench_arrivals(NULL, 0, 1, 3), 0);
}

/* ---- datasets ---- */

static int parse(const char *text, char ***v, size_t *n, char *err) {
    return bench_dataset_parse(text, strlen(text), v, n, err, 128);
}

Test(bench_workload, jsonl) {
    char **v = NULL, err[128] = "";
    size_t n = 0;
    const char *t = "{\"prompt\": \"one\"}\n"
                    "\n"
                    "{\"prompt\": \"two\", \"extra\": 1}\r\n"
                    "not json at all\n"
                    "{\"prompt\": \"\"}\n"   /* empty: skipped */
                    "{\"prompt\": 5}\n"      /* not a string: skipped */
                    "[1, 2]\n"
                    "{\"prompt\": \"three\"}"; /* no final newline */
    cr_assert_eq(parse(t, &v, &n, err), 0, "%s", err);
    cr_assert_eq(n, 3);
    cr_expect_str_eq(v[0], "one");
    cr_expect_str_eq(v[1], "two");
    cr_expect_str_eq(v[2], "three");
    bench_prompts_free(v, n);
    /* a JSONL line may also be a ShareGPT record */
    cr_assert_eq(parse("{\"conversations\": [{\"from\": \"human\", \"value\": \"q\"}]}\n", &v, &n,
                       err), 0);
    cr_expect_eq(n, 1);
    cr_expect_str_eq(v[0], "q");
    bench_prompts_free(v, n);
}

Test(bench_workload, sharegpt) {
    char **v = NULL, err[128] = "";
    size_t n = 0;
    const char *t = "\xef\xbb\xbf  \n[\n"
                    "  {\"conversations\": [{\"from\": \"human\", \"value\": \"first q\"},\n"
                    "                     {\"from\": \"gpt\", \"value\": \"an answer\"}]},\n"
                    "  {\"conversations\": []},\n"
                    "  {\"conversations\": [{\"from\": \"human\"}]},\n"
                    "  {\"id\": \"x\"},\n"
                    "  7,\n"
                    "  {\"prompt\": \"plain\"},\n"
                    "  {\"conversations\": [{\"value\": \"second q\"}]}\n"
                    "]\n";
    cr_assert_eq(parse(t, &v, &n, err), 0, "%s", err);
    cr_assert_eq(n, 3);
    cr_expect_str_eq(v[0], "first q");
    cr_expect_str_eq(v[1], "plain");
    cr_expect_str_eq(v[2], "second q");
    bench_prompts_free(v, n);
}

Test(bench_workload, malformed_is_an_error) {
    const char *bad[] = {"", "   \n\n", "[", "[{\"conversations\": [{\"value\": \"q\"}]}",
                         "[1, 2, 3]", "[]", "{}", "garbage\nmore garbage\n", "{\"prompt\": \"a\"",
                         "\xef\xbb\xbf", "{\"conversations\": {\"value\": \"q\"}}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char **v = (char **)&bad, err[128] = "";
        size_t n = 77;
        cr_expect_eq(parse(bad[i], &v, &n, err), -1, "case %zu", i);
        cr_expect_str_eq(err, "no prompts", "case %zu", i);
        cr_expect_eq(n, 77, "untouched on error");
    }
    /* a NUL inside the text: no crash (cJSON reads it as whitespace) */
    char **v = NULL, err[128];
    size_t n = 0;
    const char nul[] = "{\"prompt\": \"a\"}\n\0{\"prompt\": \"b\"}\n";
    cr_expect_eq(bench_dataset_parse(nul, sizeof nul - 1, &v, &n, err, sizeof err), 0);
    cr_expect(n >= 1 && !strcmp(v[0], "a"));
    bench_prompts_free(v, n);
}

Test(bench_workload, load_from_files) {
    char dir[] = "/tmp/pivot_bench_ds_XXXXXX";
    cr_assert(mkdtemp(dir));
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/ds.jsonl", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    /* large enough that the reader grows its buffer several times */
    for (int i = 0; i < 20000; i++) fprintf(f, "{\"prompt\": \"prompt number %d\"}\n", i);
    fclose(f);
    char **v = NULL;
    size_t n = 0;
    cr_assert_eq(bench_dataset_load(path, &v, &n, err, sizeof err), 0, "%s", err);
    cr_expect_eq(n, 20000);
    cr_expect_str_eq(v[19999], "prompt number 19999");
    bench_prompts_free(v, n);

    snprintf(path, sizeof path, "%s/missing.json", dir);
    cr_expect_eq(bench_dataset_load(path, &v, &n, err, sizeof err), -1);
    cr_expect(strstr(err, "cannot read --dataset") != NULL, "%s", err);
    cr_expect_eq(bench_dataset_load(dir, &v, &n, err, sizeof err), -1, "a directory");
    cr_expect(strstr(err, "cannot read --dataset") != NULL, "%s", err);

    snprintf(path, sizeof path, "%s/bad.json", dir);
    f = fopen(path, "w");
    cr_assert(f);
    fputs("[{\"conversations\": [", f);
    fclose(f);
    cr_expect_eq(bench_dataset_load(path, &v, &n, err, sizeof err), -1);
    char want[256];
    snprintf(want, sizeof want, "no prompts in --dataset %s", path);
    cr_expect_str_eq(err, want);
    unlink(path);
    snprintf(path, sizeof path, "%s/ds.jsonl", dir);
    unlink(path);
    rmdir(dir);
}
