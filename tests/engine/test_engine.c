/* The scheduler (engine/eng.h, eng_job.h) on a tiny synthetic model: KV-byte
 * admission, refusals, queueing order, cancelling, batching decisions, a
 * failed step, min_tokens with stop ids, and batched greedy output equal to
 * each job alone.
 *
 * The step hook sees every forward pass before it runs: it records what the
 * scheduler put in the batch, can hold the decoder thread there (so jobs
 * submitted meanwhile are decided while the first one is provably still
 * running) and can fail a chosen step. The synthetic model has no
 * vocabulary, so output is read as token ids. */
#include "eng_fixture.h"
#include "eng_internal.h" /* the hand-over test builds an engine by hand */

#include <stdlib.h>

/* ---- admission ---- */

Test(admission, waits_for_memory_then_runs) {
    start((setup){0});
    size_t r = eng_seq_bytes(E, NULL, 8 + 6);
    stop();
    start((setup){.kv_memory = r + r / 2}); /* room for one job at a time */
    eng_params p = greedy();
    rec ra, rb;
    eng_job *a = job_of(&p, 1, 8, 6, &ra), *b = job_of(&p, 2, 8, 6, &rb);
    eng_job *js[] = {a, b};
    submit_behind_first(js, 2);
    int waiting, running;
    counts(&waiting, &running);
    cr_expect_eq(waiting, 1, "b should wait for a's memory");
    cr_expect_eq(running, 1);
    set_hold(0);
    run_until_done(js, 2);
    cr_expect_eq(ra.n_ids, 6);
    cr_expect_eq(rb.n_ids, 6);
    cr_expect_str_eq(rb.finish, "length");
    cr_expect_geq(rb.t_first, ra.t_end, "b ran before a released its memory");
    counts(&waiting, &running);
    cr_expect_eq(waiting + running, 0);
    eng_job_free(a);
    eng_job_free(b);
    stop();
}

Test(admission, larger_than_all_memory_is_refused) {
    start((setup){0});
    int max_new = 200;
    size_t need = eng_seq_bytes(E, NULL, 8 + max_new);
    stop();
    start((setup){.kv_memory = need - 1});
    eng_params p = greedy();
    rec r;
    eng_job *j = job_of(&p, 1, 8, max_new, &r);
    char msg[256] = "";
    cr_expect_eq(eng_submit(E, j, msg, sizeof msg), PV_ETOOBIG);
    cr_expect(strstr(msg, "bytes of KV cache"), "message: %s", msg);
    int waiting, running;
    counts(&waiting, &running);
    cr_expect_eq(waiting + running, 0, "a refused job must not be queued");
    eng_job_free(j);
    /* more choices than sequences never fit either */
    int32_t pr[4] = {1, 2, 3, 4};
    const int32_t *pp[1] = {pr};
    int n = 4, mn = 2;
    cr_assert_eq(eng_job_create(&p, 1, pp, &n, &mn, 5, &j), PV_OK);
    cr_expect_eq(eng_submit(E, j, msg, sizeof msg), PV_ETOOBIG);
    eng_job_free(j);
    stop();
}

Test(admission, queue_full_is_busy_and_fifo) {
    start((setup){0});
    size_t r = eng_seq_bytes(E, NULL, 8 + 4);
    stop();
    start((setup){.kv_memory = r + r / 2, .max_queue = 2});
    eng_params p = greedy();
    rec rr[4];
    eng_job *js[4];
    for (int i = 0; i < 4; i++) js[i] = job_of(&p, 10 + i, 8, 4, &rr[i]);
    submit_behind_first(js, 3);
    char msg[256] = "";
    cr_expect_eq(eng_submit(E, js[3], msg, sizeof msg), PV_EBUSY);
    cr_expect(strstr(msg, "2 requests are waiting"), "message: %s", msg);
    set_hold(0);
    run_until_done(js, 3);
    for (int i = 0; i < 3; i++) cr_expect_eq(rr[i].n_ids, 4, "job %d", i);
    /* FIFO: each starts after the one before it ended (one fits at a time) */
    cr_expect_geq(rr[1].t_first, rr[0].t_end);
    cr_expect_geq(rr[2].t_first, rr[1].t_end);
    for (int i = 0; i < 4; i++) eng_job_free(js[i]);
    stop();
}

Test(admission, small_job_does_not_overtake_the_queue_head) {
    start((setup){0});
    size_t big = eng_seq_bytes(E, NULL, 120 + 4), small = eng_seq_bytes(E, NULL, 8 + 40);
    stop();
    cr_assert_lt(small * 3 / 2, big);
    start((setup){.kv_memory = big + small / 2});
    eng_params p = greedy();
    rec ra, rb, rc;
    eng_job *a = job_of(&p, 1, 8, 40, &ra), *b = job_of(&p, 2, 120, 4, &rb),
            *c = job_of(&p, 3, 4, 2, &rc);
    /* b waits: its prompt does not fit beside a's; c's would, but b is
     * first in line */
    eng_job *js[] = {a, b, c};
    submit_behind_first(js, 3);
    int waiting, running;
    counts(&waiting, &running);
    cr_expect_eq(waiting, 2);
    set_hold(0);
    run_until_done(js, 3);
    cr_expect_geq(rc.t_first, ra.t_end, "c overtook b");
    eng_job_free(a);
    eng_job_free(b);
    eng_job_free(c);
    stop();
}

/* ---- cancelling ---- */

Test(cancel, queued_job_never_runs) {
    start((setup){.max_seqs = 1});
    eng_params p = greedy();
    rec ra, rb;
    eng_job *a = job_of(&p, 1, 5, 4, &ra), *b = job_of(&p, 2, 7, 4, &rb);
    eng_job *both[] = {a, b};
    submit_behind_first(both, 2); /* b: no free sequence, waits */
    cr_expect_eq(eng_cancel(E, b), 1, "a waiting job is unlinked at once");
    eng_job_free(b);
    set_hold(0);
    eng_job *js[] = {a};
    run_until_done(js, 1);
    cr_expect_eq(ra.n_ids, 4);
    for (int i = 0; i < W.n_first; i++)
        cr_expect_neq(W.first_pos0[i], 7, "the cancelled job's prompt was decoded");
    int waiting, running;
    counts(&waiting, &running);
    cr_expect_eq(waiting + running, 0);
    eng_job_free(a);
    stop();
}

Test(cancel, running_job_stops_with_cancelled) {
    start((setup){0});
    eng_params p = greedy();
    rec r;
    eng_job *j = job_of(&p, 1, 5, 200, &r);
    W.hold_at = 6; /* prefill, then a few tokens, then hold (no thread yet: no lock) */
    submit(j);
    wait_held();
    cr_expect_eq(eng_cancel(E, j), 0, "a running job is finished by the engine");
    int before;
    pthread_mutex_lock(&W.mu);
    before = W.steps;
    pthread_mutex_unlock(&W.mu);
    set_hold(0);
    eng_job *js[] = {j};
    run_until_done(js, 1);
    cr_expect_str_eq(r.finish, "cancelled");
    cr_expect_eq(r.err, 0);
    /* the held step was the last: at most its one token after the cancel */
    cr_expect_eq(W.steps, before, "steps ran after the cancel");
    cr_expect_leq(r.n_ids, before, "tokens after the cancel");
    cr_expect_lt(r.n_ids, 200);
    eng_job_free(j);
    stop();
}

/* ---- batching ---- */

Test(batching, several_sequences_in_one_step) {
    start((setup){.max_seqs = 4, .prefill_chunk = 8, .max_batch_tokens = 32});
    eng_params p = greedy();
    rec rr[4];
    eng_job *js[4];
    for (int i = 0; i < 4; i++) js[i] = job_of(&p, 100 * i, 12 + i, 5, &rr[i]);
    submit_behind_first(js, 4);
    set_hold(0);
    run_until_done(js, 4);
    cr_expect_eq(W.max_entries, 4, "four sequences should share a step");
    cr_expect_leq(W.max_chunk, 8, "prefill_chunk");
    cr_expect_leq(W.max_tokens, 32, "max_batch_tokens");
    for (int i = 0; i < 4; i++) cr_expect_eq(rr[i].n_ids, 5);
    for (int i = 0; i < 4; i++) eng_job_free(js[i]);
    stop();
}

Test(batching, max_seqs_respected) {
    start((setup){.max_seqs = 2});
    eng_params p = greedy();
    rec rr[5];
    eng_job *js[5];
    for (int i = 0; i < 5; i++) js[i] = job_of(&p, 7 * i, 6, 6, &rr[i]);
    submit_behind_first(js, 5);
    int waiting, running;
    counts(&waiting, &running);
    cr_expect_eq(running, 2);
    cr_expect_eq(waiting, 3);
    set_hold(0);
    run_until_done(js, 5);
    cr_expect_eq(W.max_entries, 2);
    cr_expect_leq(W.max_seq, 1, "a slot beyond max_seqs");
    cr_expect_gt(W.multi_steps, 0, "the two slots were never decoded together");
    for (int i = 0; i < 5; i++) cr_expect_eq(rr[i].n_ids, 6);
    for (int i = 0; i < 5; i++) eng_job_free(js[i]);
    stop();
}

Test(batching, greedy_concurrent_equals_alone) {
    start((setup){.max_seqs = 4, .prefill_chunk = 5, .max_batch_tokens = 16});
    eng_params p = greedy();
    enum { N = 4, NEW = 12 };
    rec alone[N], together[N];
    for (int i = 0; i < N; i++) {
        run_alone(&p, 31 * i + 3, 6 + 3 * i, NEW, &alone[i]);
        cr_assert_eq(alone[i].n_ids, NEW);
    }
    eng_job *js[N];
    for (int i = 0; i < N; i++) js[i] = job_of(&p, 31 * i + 3, 6 + 3 * i, NEW, &together[i]);
    W.multi_steps = 0;
    submit_behind_first(js, N);
    set_hold(0);
    run_until_done(js, N);
    cr_expect_gt(W.multi_steps, 0);
    for (int i = 0; i < N; i++) {
        cr_expect_eq(together[i].n_ids, NEW);
        cr_expect_arr_eq(together[i].ids, alone[i].ids, sizeof(int32_t) * NEW,
                         "job %d differs when batched", i);
        eng_job_free(js[i]);
    }
    stop();
}

/* ---- a failed step ---- */

Test(fault, failed_step_errors_every_running_job) {
    start((setup){0});
    eng_params p = greedy();
    rec ra, rb;
    eng_job *a = job_of(&p, 1, 5, 50, &ra), *b = job_of(&p, 2, 6, 50, &rb);
    eng_job *js[] = {a, b};
    submit_behind_first(js, 2);
    pthread_mutex_lock(&W.mu);
    W.fail_at = 4; /* a later step, with both jobs in it */
    pthread_mutex_unlock(&W.mu);
    set_hold(0);
    run_until_done(js, 2);
    for (int k = 0; k < 2; k++) {
        rec *r = k ? &rb : &ra;
        cr_expect_eq(r->err, PV_EIO, "job %d: %s", k, pv_strerror(r->err));
        cr_expect_str_eq(r->finish, "error");
        cr_expect(strstr(r->msg, "decoding failed"), "message: %s", r->msg);
        cr_expect_lt(r->n_ids, 50);
    }
    /* the engine goes on: the next job runs normally */
    rec rc;
    run_alone(&p, 3, 5, 3, &rc);
    cr_expect_eq(rc.err, 0);
    cr_expect_eq(rc.n_ids, 3);
    cr_expect_str_eq(rc.finish, "length");
    eng_job_free(a);
    eng_job_free(b);
    stop();
}

/* ---- sampling limits ---- */

Test(sampling, min_tokens_suppresses_stop_ids) {
    start((setup){0});
    eng_params p = greedy();
    rec base, r0, r3;
    run_alone(&p, 5, 6, 8, &base);
    cr_assert_eq(base.n_ids, 8);
    int32_t stop_id = base.ids[0];
    p.stop_ids = &stop_id;
    p.n_stop_ids = 1;
    run_alone(&p, 5, 6, 8, &r0); /* the first token is the stop id: done at once */
    cr_expect_eq(r0.n_ids, 1);
    cr_expect_eq(r0.ids[0], stop_id);
    cr_expect_str_eq(r0.finish, "stop");
    p.min_tokens = 3;
    run_alone(&p, 5, 6, 8, &r3);
    cr_assert_geq(r3.n_ids, 3, "min_tokens 3 but %d tokens", r3.n_ids);
    for (int i = 0; i < 3; i++) cr_expect_neq(r3.ids[i], stop_id, "stop id at %d < min_tokens", i);
    if (!strcmp(r3.finish, "stop")) cr_expect_eq(r3.ids[r3.n_ids - 1], stop_id);
    else cr_expect_eq(r3.n_ids, 8);
    stop();
}

/* ---- hand-over ---- */

/* eng_collect's list stays the caller's: the decoder marking a collected
 * job dirty again (it produced more output right after the hand-over) must
 * not cut the list the caller is walking. Walking the decoder's dirty_next
 * instead lost every job behind the re-marked one: a finished job was then
 * never answered (the soak test's hung request). */
Test(collect, caller_list_survives_a_new_mark) {
    eng_engine *e = calloc(1, sizeof *e);
    cr_assert_not_null(e);
    pthread_mutex_init(&e->out_mu, NULL);
    eng_job jobs[3];
    memset(jobs, 0, sizeof jobs);
    pthread_mutex_lock(&e->out_mu);
    for (int i = 2; i >= 0; i--) eng_mark_dirty_locked(e, &jobs[i]);
    pthread_mutex_unlock(&e->out_mu);
    eng_job *list = eng_collect(e);
    cr_assert_eq(list, &jobs[0]);
    pthread_mutex_lock(&e->out_mu); /* the decoder, between the hand-over and the walk */
    eng_mark_dirty_locked(e, &jobs[0]);
    pthread_mutex_unlock(&e->out_mu);
    int n = 0;
    for (eng_job *j = list; j; j = eng_job_next(j)) cr_assert_eq(j, &jobs[n++]);
    cr_assert_eq(n, 3, "the caller's walk saw %d of 3 collected jobs", n);
    cr_assert_eq(eng_collect(e), &jobs[0]); /* the new mark is the next hand-over */
    pthread_mutex_destroy(&e->out_mu);
    free(e);
}
