/* KV on demand (engine/eng_mem.c) on the tiny synthetic model: admission by
 * prompt bytes, preemption (recompute) with output equal to each job alone,
 * a preempted job let in again only when its first step fits, elastic
 * compression to the policy's floor and never below it nor above the
 * policy's budget, never for `full` or a job that opted out, and cancelling
 * a preempted job. */
#include "eng_fixture.h"
#include "kv_policy.h"
#include "kv_tier.h"

static size_t page_bytes(void) {
    start((setup){0});
    size_t b = eng_seq_bytes(E, NULL, 1); /* one FP16 page of every layer and head */
    stop();
    return b;
}

static void expect_same_ids(const rec *a, const rec *b, const char *what) {
    cr_expect_eq(a->n_ids, b->n_ids, "%s: %d vs %d tokens", what, a->n_ids, b->n_ids);
    for (int i = 0; i < a->n_ids && i < b->n_ids; i++)
        if (a->ids[i] != b->ids[i]) {
            cr_expect_fail("%s: token %d differs (%d vs %d)", what, i, a->ids[i], b->ids[i]);
            return;
        }
}

static eng_relief relief_of(const eng_job *j) {
    eng_relief r;
    eng_job_relief(j, 0, &r);
    return r;
}

Test(on_demand, admits_by_prompt_bytes_and_completes_every_job) {
    size_t page = page_bytes();
    /* each job can grow to 208 tokens = 4 pages; 4 of them reserve 16 pages,
     * the pool holds 6: admission by prompt lets all four run at once */
    start((setup){.kv_memory = 6 * page, .max_seqs = 4});
    eng_params p = greedy();
    rec r[4];
    eng_job *js[4];
    for (int i = 0; i < 4; i++) js[i] = job_of(&p, 20 + i, 8, 200, &r[i]);
    submit_behind_first(js, 4);
    int waiting, running;
    counts(&waiting, &running);
    cr_expect_eq(running, 4, "on demand: every prompt fits, so every job runs");
    cr_expect_eq(waiting, 0);
    set_hold(0);
    run_until_done(js, 4);
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(r[i].err, 0, "job %d failed: %s", i, r[i].msg);
        cr_expect_eq(r[i].n_ids, 200, "job %d", i);
    }
    cr_expect_geq(W.g.preemptions, 1, "16 pages of growth in 6 pages must preempt");
    expect_only_cache_left();
    cr_expect_leq(W.g.pool_peak, W.g.pool_limit);
    for (int i = 0; i < 4; i++) eng_job_free(js[i]);
    stop();
}

Test(preemption, greedy_output_equals_each_job_alone) {
    size_t page = page_bytes();
    start((setup){.kv_memory = 3 * page});
    eng_params p = greedy();
    p.kv_elastic = 1; /* full is never compressed, elastic or not */
    rec ra, rb, aa, ab;
    eng_job *a = job_of(&p, 1, 8, 100, &ra), *b = job_of(&p, 2, 8, 100, &rb);
    eng_job *js[] = {a, b};
    submit_behind_first(js, 2); /* both admitted: one page of prompt each */
    set_hold(0);
    run_until_done(js, 2);
    cr_expect_geq(W.g.preemptions, 1);
    cr_expect_eq(W.g.elastic_compressions, 0, "full was compressed");
    cr_expect_eq(relief_of(a).preemptions, 0, "the oldest job is never preempted");
    cr_expect_geq(relief_of(b).preemptions, 1);
    cr_expect_eq(relief_of(b).compressions, 0);
    run_alone(&p, 1, 8, 100, &aa);
    run_alone(&p, 2, 8, 100, &ab);
    expect_same_ids(&ra, &aa, "a");
    expect_same_ids(&rb, &ab, "b (preempted)");
    expect_only_cache_left();
    eng_job_free(a);
    eng_job_free(b);
    stop();
}

Test(preemption, cancelled_while_preempted_frees_everything) {
    size_t page = page_bytes();
    start((setup){.kv_memory = 3 * page});
    eng_params p = greedy();
    rec ra, rb;
    eng_job *a = job_of(&p, 1, 8, 100, &ra), *b = job_of(&p, 2, 8, 100, &rb);
    eng_job *js[] = {a, b};
    submit_behind_first(js, 2);
    /* both reach 64 tokens near step 57, where b is preempted; by step 75
     * b waits for a's memory */
    pthread_mutex_lock(&W.mu);
    W.hold_at = 75;
    pthread_mutex_unlock(&W.mu);
    set_hold(0);
    double t0 = pv_now();
    for (;;) { /* held at step 75 (not the first hold, still being left) */
        pthread_mutex_lock(&W.mu);
        int there = W.held && W.steps >= 75;
        pthread_mutex_unlock(&W.mu);
        if (there) break;
        cr_assert(pv_now() - t0 < 30, "the decoder never reached step 75");
        eng_collect(E); /* keep the hand-over moving; the records are not needed */
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    int waiting, running;
    counts(&waiting, &running);
    cr_assert_eq(waiting, 1, "b should be waiting after its preemption (waiting %d running %d preemptions %ld steps %d)", waiting, running, W.g.preemptions, W.steps);
    cr_expect_eq(eng_cancel(E, b), 0, "a preempted job is finished by the engine, not unlinked");
    set_hold(0);
    run_until_done(js, 2);
    cr_expect_str_eq(rb.finish, "cancelled");
    cr_expect_eq(ra.tokens, 100); /* ids taken while waiting for step 75 were not recorded */
    counts(&waiting, &running);
    cr_expect_eq(waiting + running, 0);
    expect_only_cache_left();
    cr_expect_eq(W.g.kv_reserved, 0, "committed bytes left behind");
    eng_job_free(a);
    eng_job_free(b);
    stop();
}

/* Two 208-token jobs under p: returns the pool size where both fit only
 * when one is compressed to its floor (and one fits alone uncompressed). */
static size_t elastic_memory(const char *spec, double *floor_out) {
    start((setup){.policy = spec});
    kv_policy pol = *eng_policy(E), fl = pol;
    fl.budget = pol.sinks + pol.recent;
    size_t full = eng_seq_bytes(E, &pol, 208), low = eng_seq_bytes(E, &fl, 208);
    stop();
    cr_assert_lt(low + low / 8, full, "the floor must save bytes at 208 tokens");
    *floor_out = fl.budget;
    return full + low + (full - low) / 4;
}

static void run_pair(const char *spec, int elastic, rec *ra, rec *rb, eng_relief *fa,
                     eng_relief *fb, kv_usage *ua, kv_usage *ub) {
    double fl;
    size_t mem = elastic_memory(spec, &fl);
    start((setup){.policy = spec, .kv_memory = mem});
    eng_params p = greedy();
    p.kv_elastic = elastic;
    eng_job *a = job_of(&p, 1, 8, 200, ra), *b = job_of(&p, 2, 8, 200, rb);
    eng_job *js[] = {a, b};
    submit_behind_first(js, 2);
    set_hold(0);
    run_until_done(js, 2);
    *fa = relief_of(a);
    *fb = relief_of(b);
    eng_job_kv_usage(a, 0, ua);
    eng_job_kv_usage(b, 0, ub);
    cr_expect_eq(ra->n_ids, 200);
    cr_expect_eq(rb->n_ids, 200);
    expect_only_cache_left();
    eng_job_free(a);
    eng_job_free(b);
    stop();
}

Test(elastic, compresses_to_the_floor_instead_of_preempting) {
    rec ra, rb;
    eng_relief fa, fb;
    kv_usage ua, ub;
    run_pair("mikv,budget=0.5", 1, &ra, &rb, &fa, &fb, &ua, &ub);
    cr_expect_eq(fa.preemptions + fb.preemptions, 0, "elastic should have avoided preemption");
    cr_expect_geq(fa.compressions + fb.compressions, 1);
    eng_relief *c = fa.compressions ? &fa : &fb;
    kv_usage *u = fa.compressions ? &ua : &ub;
    cr_expect_eq(c->budget, 20, "compressed to sinks + recent = 20");
    cr_expect_gt(c->tokens_demoted, 0);
    cr_expect_gt(c->bytes_saved, 0);
    /* never below the floor: the protected tokens all stay high */
    cr_expect_geq(u->n_high, 20, "below the floor: %d high tokens", u->n_high);
    cr_expect_leq(u->n_high, 20);
    cr_expect_eq(u->n_dropped, 0, "elastic compression dropped tokens");
}

Test(elastic, opted_out_job_is_preempted_not_compressed) {
    rec ra, rb;
    eng_relief fa, fb;
    kv_usage ua, ub;
    run_pair("mikv,budget=0.5", 0, &ra, &rb, &fa, &fb, &ua, &ub);
    cr_expect_eq(fa.compressions + fb.compressions, 0, "an opted-out job was compressed");
    cr_expect_geq(fb.preemptions, 1);
    cr_expect_gt(ua.n_high, 20, "the uncompressed job keeps its own budget");
}

Test(elastic, explicit_floor_is_respected) {
    rec ra, rb;
    eng_relief fa, fb;
    kv_usage ua, ub;
    run_pair("mikv,budget=0.5,floor=40", 1, &ra, &rb, &fa, &fb, &ua, &ub);
    eng_relief *c = fa.compressions ? &fa : &fb;
    kv_usage *u = fa.compressions ? &ua : &ub;
    cr_assert_geq(fa.compressions + fb.compressions, 1);
    cr_expect_eq(c->budget, 40);
    cr_expect_geq(u->n_high, 40 - 40 * 4 / 10, "below the floor's chunk: %d", u->n_high);
    cr_expect_leq(u->n_high, 40);
}

/* The floor as a fraction, the budget in tokens: "floor=0.5" is below
 * "budget=96" only while 0.5 of the length is (up to 192 tokens). a is
 * compressed early (at ~65 tokens, where the floor saves a high-tier page);
 * from then on its budget must be min(floor, budget) in tokens at each
 * length, never the bare fraction, which would let it reach 104 high tokens
 * at 208, past the bytes it was admitted for (kv_max: its policy's bytes at
 * prompt + max_tokens = the whole kv_memory here). b (not elastic) is
 * preempted for it and runs when a is done. */
Test(elastic, fraction_floor_never_lifts_a_token_budget) {
    /* chunk 1: the high tier is exactly the budget at every length, so the
     * last length shows the largest the budget ever was */
    const char *spec = "mikv,budget=96,floor=0.5,sinks=2,recent=2,chunk=1";
    start((setup){.policy = spec});
    kv_policy pol = *eng_policy(E), lo = pol;
    size_t bound = eng_seq_bytes(E, &pol, 208);
    lo.budget = 48;
    cr_assert_lt(eng_seq_bytes(E, &lo, 72), eng_seq_bytes(E, &pol, 72), "the floor saves at 72");
    lo.budget = 104;
    cr_assert_gt(eng_seq_bytes(E, &lo, 208), bound, "the bare fraction is over the bound at 208");
    stop();
    start((setup){.policy = spec, .kv_memory = bound});
    eng_params p = greedy();
    p.kv_elastic = 1;
    eng_params q = p;
    q.kv_elastic = 0;
    rec ra, rb;
    eng_job *a = job_of(&p, 1, 8, 200, &ra), *b = job_of(&q, 2, 8, 200, &rb);
    run_two(a, b, &ra, &rb);
    cr_expect_eq(ra.n_ids, 200);
    cr_expect_eq(rb.n_ids, 200);
    eng_relief fa = relief_of(a);
    kv_usage ua;
    eng_job_kv_usage(a, 0, &ua);
    cr_assert_geq(fa.compressions, 1, "a was never compressed");
    cr_expect_eq(fa.preemptions, 0);
    cr_expect_eq(fa.budget, 96, "a's budget at 208 tokens: min(104, 96) = 96, got %g", fa.budget);
    cr_expect_leq(ua.n_high, kv_tier_max_high(&pol, 208), "a holds %d high tokens", ua.n_high);
    cr_expect_leq(ua.bytes_stored, bound, "a holds %zu bytes, admitted for %zu", ua.bytes_stored,
                  bound);
    cr_expect_eq(ua.n_dropped, 0);
    cr_expect_leq(W.g.pool_peak, W.g.pool_limit);
    expect_only_cache_left();
    eng_job_free(a);
    eng_job_free(b);
    stop();
}

/* b (n=16) is preempted when its 16 sequences reach 65 tokens: 16 pages
 * more than the 33 pages hold beside a. It must not come back before its
 * first step fits: that step holds every choice at its fill + 1 token (two
 * pages each, 32), not its fill plus one page (16 + 1: that let it in
 * again at once, it recomputed 16 x 64 tokens, decoded one token and was
 * preempted again). So it is preempted once, waits for a, and then runs
 * to the end. Prefix caching is off: the 16 identical greedy choices would
 * otherwise share their first page after the preemption. */
Test(preemption, readmitted_job_with_16_choices_is_not_preempted_again) {
    size_t page = page_bytes();
    /* every prompt in one step: the 16 sequences grow in step */
    start((setup){.kv_memory = 33 * page, .max_seqs = 17, .max_batch_tokens = 256, .prefix_off = 1});
    eng_params p = greedy();
    rec ra, rb;
    eng_job *a = job_of(&p, 1, 8, 200, &ra), *b = job_of_n(&p, 3, 8, 100, 16, &rb);
    run_two(a, b, &ra, &rb);
    cr_expect_eq(ra.n_ids, 200);
    cr_expect_eq(relief_of(a).preemptions, 0);
    for (int i = 0; i < 16; i++) {
        eng_relief f;
        eng_job_relief(b, i, &f);
        cr_expect_eq(f.preemptions, 1, "choice %d preempted %d times", i, f.preemptions);
        eng_delta d;
        eng_job_take(b, i, &d);
        cr_expect_eq(d.tokens, 100, "choice %d: %d tokens", i, d.tokens);
    }
    cr_expect_eq(W.g.preemptions, 1, "%ld preemptions in all", W.g.preemptions);
    cr_expect_leq(W.g.pool_peak, W.g.pool_limit);
    expect_only_cache_left();
    eng_job_free(a);
    eng_job_free(b);
    stop();
}

Test(cancel_all, cancels_waiting_jobs_too) {
    start((setup){.max_seqs = 1});
    eng_params p = greedy();
    rec ra, rb;
    eng_job *a = job_of(&p, 1, 8, 200, &ra), *b = job_of(&p, 2, 7, 4, &rb);
    eng_job *js[] = {a, b};
    submit_behind_first(js, 2); /* b waits: one sequence slot */
    int waiting, running;
    counts(&waiting, &running);
    cr_assert_eq(waiting, 1);
    eng_cancel_all(E); /* a drain timeout */
    set_hold(0);
    run_until_done(js, 2);
    cr_expect_str_eq(ra.finish, "cancelled");
    cr_expect_str_eq(rb.finish, "cancelled");
    cr_expect_eq(rb.n_ids, 0, "the waiting job was decoded");
    counts(&waiting, &running);
    cr_expect_eq(waiting + running, 0);
    eng_job_free(a);
    eng_job_free(b);
    stop();
}
