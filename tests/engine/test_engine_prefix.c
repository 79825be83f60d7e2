/* Automatic prefix caching in the engine (engine/eng_prefix.c) on the tiny
 * synthetic model: greedy output with a cached prefix equals the output
 * without the cache (repeated prompt, shared prefix with another suffix,
 * concurrent sharing under preemption, a cancelled sharer), hits are counted
 * in tokens, an opted-out job neither reads nor counts, and every page is
 * given back (flush). References come from an engine with the cache off. */
#include "eng_fixture.h"

#define PAGE 64

static void prompt_of(int32_t *t, int n, int salt, int shared) {
    for (int i = 0; i < n; i++) t[i] = ((i < shared ? 0 : salt) + 31 * i + 7) % 1000;
}

static eng_job *job_tokens(const eng_params *p, const int32_t *t, int n, int max_new, rec *r) {
    eng_job *j;
    cr_assert_eq(eng_job_create(p, 1, &t, &n, &max_new, 1, &j), PV_OK);
    memset(r, 0, sizeof *r);
    eng_job_set_user(j, r);
    return j;
}

/* Runs one job; returns the prompt tokens it took from the cache. */
static int run_tokens(const eng_params *p, const int32_t *t, int n, int max_new, rec *r) {
    eng_job *j = job_tokens(p, t, n, max_new, r);
    submit(j);
    run_until_done(&j, 1);
    cr_expect_eq(r->err, 0, "%s", r->msg);
    int cached = eng_job_cached_tokens(j);
    eng_job_free(j);
    return cached;
}

static void expect_same(const rec *a, const rec *b, const char *what) {
    cr_expect_eq(a->n_ids, b->n_ids, "%s: %d vs %d tokens", what, a->n_ids, b->n_ids);
    for (int i = 0; i < a->n_ids && i < b->n_ids; i++)
        if (a->ids[i] != b->ids[i]) {
            cr_expect_fail("%s: token %d differs (%d vs %d)", what, i, a->ids[i], b->ids[i]);
            return;
        }
}

Test(prefix, greedy_output_with_a_cached_prefix_equals_without) {
    int32_t a[200], b[200];
    prompt_of(a, 150, 1, 150);
    prompt_of(b, 170, 2, 140); /* shares a's first two pages */
    rec ra, rb, x;
    start((setup){.prefix_off = 1});
    eng_params p = greedy();
    run_tokens(&p, a, 150, 40, &ra);
    run_tokens(&p, b, 170, 40, &rb);
    cr_expect_eq(gauges().prefix_hits, 0, "a hit with the cache off");
    cr_expect_eq(gauges().pool_used, 0);
    stop();

    start((setup){0});
    p = greedy();
    run_tokens(&p, a, 150, 40, &x);
    expect_same(&ra, &x, "cold");
    cr_expect_eq(gauges().prefix_hits, 0);
    cr_expect_eq(gauges().prefix_queries, 150);
    /* two whole pages and the tail after them: all but the last token */
    cr_expect_eq(run_tokens(&p, a, 150, 40, &x), 149, "usage's cached_tokens");
    expect_same(&ra, &x, "the same prompt again");
    cr_expect_eq(gauges().prefix_hits, 149);
    /* b shares a's first 140 tokens: two pages and 12 tokens of the tail */
    cr_expect_eq(run_tokens(&p, b, 170, 40, &x), 140);
    expect_same(&rb, &x, "a shared prefix, another suffix");
    cr_expect_eq(gauges().prefix_hits, 149 + 140);
    cr_expect_eq(gauges().prefix_queries, 150 + 150 + 170);
    /* opted out: no lookup, no hit, the same tokens */
    eng_params q = p;
    q.no_prompt_cache = 1;
    run_tokens(&q, a, 150, 40, &x);
    expect_same(&ra, &x, "cache_prompt false");
    cr_expect_eq(gauges().prefix_hits, 149 + 140);
    cr_expect_eq(gauges().prefix_queries, 470);
    expect_only_cache_left();
    stop();
}

/* Two jobs share a 66-token prefix (one page) in 5 pages of memory: they
 * share its block, the younger is preempted once both grow (its pages
 * published, then recomputed with hits), and each gives what it gives
 * alone with the cache off. */
Test(prefix, sharing_under_preemption_keeps_each_output) {
    int32_t a[200], b[200];
    prompt_of(a, 70, 1, 66);
    prompt_of(b, 70, 2, 66);
    rec ra, rb, xa, xb;
    start((setup){.prefix_off = 1});
    size_t page = eng_seq_bytes(E, NULL, 1);
    eng_params p = greedy();
    run_tokens(&p, a, 70, 180, &ra);
    run_tokens(&p, b, 70, 180, &rb);
    stop();

    start((setup){.kv_memory = 5 * page});
    p = greedy();
    run_tokens(&p, a, 70, 1, &xa); /* a's first page, cached */
    eng_job *ja = job_tokens(&p, a, 70, 180, &xa), *jb = job_tokens(&p, b, 70, 180, &xb);
    eng_job *js[] = {ja, jb};
    submit_behind_first(js, 2);
    set_hold(0);
    run_until_done(js, 2);
    expect_same(&ra, &xa, "a");
    expect_same(&rb, &xb, "b");
    eng_gauges g = gauges();
    cr_expect_geq(g.preemptions, 1, "5 pages for 1 shared + 2 x 3 pages of growth must preempt: %ld",
                  (long)g.preemptions);
    cr_expect_geq(g.prefix_hits, 2 * PAGE, "both jobs should reuse the shared page");
    cr_expect_leq(g.pool_peak, g.pool_limit);
    expect_only_cache_left();
    eng_job_free(ja);
    eng_job_free(jb);
    stop();
}

Test(prefix, cancelling_one_sharer_leaves_the_other_intact) {
    int32_t a[200], b[200];
    prompt_of(a, 150, 1, 140);
    prompt_of(b, 150, 2, 140);
    rec ra, xa, xb;
    start((setup){.prefix_off = 1});
    eng_params p = greedy();
    run_tokens(&p, a, 150, 60, &ra);
    stop();

    start((setup){0});
    p = greedy();
    run_tokens(&p, b, 150, 1, &xb); /* the shared pages, cached by b's prompt */
    eng_job *ja = job_tokens(&p, a, 150, 60, &xa), *jb = job_tokens(&p, b, 150, 60, &xb);
    eng_job *js[] = {ja, jb};
    submit_behind_first(js, 2);
    pthread_mutex_lock(&W.mu);
    int at = W.hold_at = W.steps + 10;
    pthread_mutex_unlock(&W.mu);
    set_hold(0);
    double t0 = pv_now();
    for (;;) { /* held again at step `at`, both jobs decoding */
        pthread_mutex_lock(&W.mu);
        int there = W.held && W.steps >= at;
        pthread_mutex_unlock(&W.mu);
        if (there) break;
        cr_assert(pv_now() - t0 < 30, "the decoder never reached step %d", at);
        eng_collect(E);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    cr_expect_gt(gauges().prefix_bytes_used, 0, "nothing shared while both run");
    cr_expect_eq(eng_cancel(E, jb), 0);
    set_hold(0);
    run_until_done(js, 2);
    cr_expect_str_eq(xb.finish, "cancelled");
    /* ids taken while waiting for the hold were not recorded: the tail */
    cr_expect_eq(xa.tokens, 60);
    cr_expect_gt(xa.n_ids, 0);
    for (int i = 0; i < xa.n_ids; i++)
        cr_expect_eq(xa.ids[i], ra.ids[60 - xa.n_ids + i], "the sharer that kept running: "
                     "token %d differs", 60 - xa.n_ids + i);
    expect_only_cache_left();
    eng_job_free(ja);
    eng_job_free(jb);
    stop();
}

/* A compressed policy (mikv: the mixed cache's snapshots). Its prefill
 * ends a call at the last block boundary before the prompt's end, where
 * the snapshot is taken; a request whose own last boundary is the
 * snapshot's then computes exactly what a cold run computes (the same call
 * boundaries), so greedy outputs match token for token. One prefill call
 * of up to 256 tokens makes the cut itself matter. */
Test(prefix, compressed_policy_snapshots_reproduce_cold_runs) {
    const char *spec = "mikv,budget=0.25,recent=8,sinks=2";
    int32_t a[200], b[200];
    prompt_of(a, 150, 1, 150);
    prompt_of(b, 170, 2, 140); /* its last boundary, 128, is inside what it shares with a */
    rec ra, rb, x;
    start((setup){.prefix_off = 1, .policy = spec, .prefill_chunk = 256});
    eng_params p = greedy();
    run_tokens(&p, a, 150, 40, &ra);
    run_tokens(&p, b, 170, 40, &rb);
    cr_expect_eq(gauges().prefix_bytes, 0, "a snapshot with the cache off");
    stop();

    start((setup){.policy = spec, .prefill_chunk = 256});
    p = greedy();
    cr_expect_eq(run_tokens(&p, a, 150, 40, &x), 0);
    expect_same(&ra, &x, "cold, with the cut at 128");
    eng_gauges g = gauges();
    cr_expect_gt(g.prefix_bytes, 0, "no snapshot was taken");
    cr_expect_eq(g.prefix_bytes_used, 0, "a snapshot is copied, never referenced");
    cr_expect_eq(run_tokens(&p, a, 150, 40, &x), 2 * PAGE, "usage's cached_tokens");
    expect_same(&ra, &x, "the same prompt again");
    cr_expect_eq(run_tokens(&p, b, 170, 40, &x), 2 * PAGE);
    expect_same(&rb, &x, "a shared prefix, another suffix");
    cr_expect_eq(gauges().prefix_hits, 4 * PAGE);
    cr_expect_eq(gauges().prefix_queries, 150 + 150 + 170);
    /* three prompts share 140 tokens, then differ (a system prompt and
     * three questions): the first leaves a snapshot at its last boundary
     * (192), which the second cannot use; the second publishes where it
     * leaves the first's path (128), and the third starts there */
    int32_t s3[3][200];
    for (int k = 0; k < 3; k++) /* a head no earlier prompt had */
        for (int i = 0; i < 200; i++) s3[k][i] = i < 140 ? (500 + 13 * i) % 1000 : (37 * k + 31 * i) % 1000;
    long h0 = gauges().prefix_hits;
    cr_expect_eq(run_tokens(&p, s3[0], 200, 4, &x), 0);
    cr_expect_eq(run_tokens(&p, s3[1], 200, 4, &x), 0, "nothing to take yet");
    cr_expect_eq(run_tokens(&p, s3[2], 200, 4, &x), 2 * PAGE, "the split was not published");
    cr_expect_eq(gauges().prefix_hits - h0, 2 * PAGE);
    /* two such prompts that start together cannot see each other's
     * snapshot; the later one splits where it leaves the running one */
    int32_t s4[3][200];
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 200; i++) s4[k][i] = i < 140 ? (700 + 17 * i) % 1000 : (41 * k + 29 * i) % 1000;
    rec r0, r1;
    eng_job *j0 = job_tokens(&p, s4[0], 200, 8, &r0), *j1 = job_tokens(&p, s4[1], 200, 8, &r1);
    eng_job *js[] = {j0, j1};
    submit_behind_first(js, 2);
    set_hold(0);
    run_until_done(js, 2);
    cr_expect_eq(eng_job_cached_tokens(j0) + eng_job_cached_tokens(j1), 0);
    eng_job_free(j0);
    eng_job_free(j1);
    cr_expect_eq(run_tokens(&p, s4[2], 200, 4, &x), 2 * PAGE, "no split from the running prompt");
    /* the next turn of a chat: a decode step that ends on a block boundary
     * leaves a snapshot there, inside the answer */
    int32_t t5[256];
    for (int i = 0; i < 100; i++) t5[i] = (300 + 23 * i) % 1000;
    p.ignore_eos = 1;
    run_tokens(&p, t5, 100, 40, &x); /* decodes positions 100..138: crosses 128 */
    cr_assert_geq(x.n_ids, 29);
    for (int i = 0; i < 29; i++) t5[100 + i] = x.ids[i];
    for (int i = 129; i < 150; i++) t5[i] = (11 * i) % 1000;
    cr_expect_eq(run_tokens(&p, t5, 150, 2, &x), 2 * PAGE, "no snapshot inside the answer");
    expect_only_cache_left();
    stop();
}

/* mikv under preemption with snapshots: two jobs that share a prefix grow
 * past a tight kv_memory; the younger is preempted (its recompute may take
 * a snapshot), both finish with every token, the pool never passes its
 * limit, and once they are done only snapshots are left (flushed to 0). */
Test(prefix, compressed_policy_under_preemption_loses_nothing) {
    const char *spec = "mikv,budget=0.25,recent=8,sinks=2";
    int32_t a[200], b[200];
    prompt_of(a, 140, 1, 130);
    prompt_of(b, 140, 2, 130);
    rec xa, xb;
    start((setup){.policy = spec, .kv_memory = 1});
    eng_params p = greedy();
    size_t one = eng_seq_bytes(E, &p.policy, 140 + 100), prompt = eng_seq_bytes(E, &p.policy, 141);
    stop();

    /* both prompts fit (with room for a step's growth), both answers do not */
    size_t mem = 2 * prompt + prompt / 4;
    cr_assert_lt(mem, 2 * one);
    start((setup){.policy = spec, .kv_memory = mem, .prefill_chunk = 256});
    p = greedy();
    run_tokens(&p, a, 140, 1, &xa); /* a snapshot of the shared 128 tokens */
    eng_job *ja = job_tokens(&p, a, 140, 100, &xa), *jb = job_tokens(&p, b, 140, 100, &xb);
    run_two(ja, jb, &xa, &xb);
    cr_expect_eq(xa.tokens, 100);
    cr_expect_eq(xb.tokens, 100);
    eng_gauges g = gauges();
    cr_expect_geq(g.preemptions, 1, "two 240-token sequences in 2.25 prompts' memory: %ld (elastic %ld)",
                  (long)g.preemptions, (long)g.elastic_compressions);
    cr_expect_geq(g.prefix_hits, 2 * 2 * PAGE, "both jobs should start from the snapshot: %ld",
                  (long)g.prefix_hits);
    cr_expect_leq(g.pool_peak, g.pool_limit);
    expect_only_cache_left();
    eng_job_free(ja);
    eng_job_free(jb);
    stop();
}
