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
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "eng.h"
#include "eng_job.h"
#include "llama.h"
#include "pverr.h"
#include "pvtime.h"

#define MAX_IDS 256

/* ---- the fixture: engine, hooks, and what they saw ---- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int wakes;
    /* step hook */
    int steps, max_entries, max_tokens, max_chunk, max_seq, multi_steps;
    int hold;       /* block the decoder in the hook while set */
    int held;       /* it is blocked there now */
    int hold_at;    /* set hold when the step count reaches this (0: never) */
    int fail_at;    /* fail this step (1-based; 0: never) */
    int first_pos0[64]; /* n_tokens of every entry at position 0, in order */
    int n_first;
    int dup_seq; /* a sequence appeared twice in one step */
} watch;

static watch W;
static llm_model *M;
static eng_engine *E;

static void on_wake(void *arg) {
    (void)arg;
    pthread_mutex_lock(&W.mu);
    W.wakes++;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.mu);
}

static int on_step(void *arg, const llm_batch_entry *ent, int n) {
    (void)arg;
    pthread_mutex_lock(&W.mu);
    int k = ++W.steps, tokens = 0;
    if (n > W.max_entries) W.max_entries = n;
    if (n > 1) W.multi_steps++;
    for (int i = 0; i < n; i++) {
        tokens += ent[i].n_tokens;
        if (ent[i].n_tokens > W.max_chunk) W.max_chunk = ent[i].n_tokens;
        if (ent[i].seq > W.max_seq) W.max_seq = ent[i].seq;
        for (int j = 0; j < i; j++) W.dup_seq |= ent[i].seq == ent[j].seq;
        if (ent[i].pos == 0 && W.n_first < 64) W.first_pos0[W.n_first++] = ent[i].n_tokens;
    }
    if (tokens > W.max_tokens) W.max_tokens = tokens;
    if (W.hold_at && k == W.hold_at) W.hold = 1;
    while (W.hold) {
        W.held = 1;
        pthread_cond_broadcast(&W.cv);
        pthread_cond_wait(&W.cv, &W.mu);
    }
    W.held = 0;
    int rc = W.fail_at && k == W.fail_at ? PV_EIO : 0;
    pthread_mutex_unlock(&W.mu);
    return rc;
}

static void set_hold(int on) {
    pthread_mutex_lock(&W.mu);
    W.hold = on;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.mu);
}

/* Waits (at most 20 s) until the decoder is blocked in the step hook. */
static void wait_held(void) {
    double t0 = pv_now();
    pthread_mutex_lock(&W.mu);
    while (!W.held && pv_now() - t0 < 20) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&W.cv, &W.mu, &ts);
    }
    int held = W.held;
    pthread_mutex_unlock(&W.mu);
    cr_assert(held, "the decoder never reached the step hook");
}

typedef struct {
    int max_seqs, max_queue, prefill_chunk, max_batch_tokens;
    size_t kv_memory;
} setup;

static void start(setup s) {
    memset(&W, 0, sizeof W);
    pthread_mutex_init(&W.mu, NULL);
    pthread_cond_init(&W.cv, NULL);
    char err[256];
    cr_assert_eq(llm_synthetic("tiny", 7, 1, &M, err, sizeof err), PV_OK, "%s", err);
    eng_config c = {.model = M, .kv_policy = "full", .device = "cpu",
                    .kv_memory = s.kv_memory ? s.kv_memory : (size_t)64 << 20,
                    .max_seqs = s.max_seqs ? s.max_seqs : 4,
                    .max_batch_tokens = s.max_batch_tokens ? s.max_batch_tokens : 64,
                    .prefill_chunk = s.prefill_chunk ? s.prefill_chunk : 16,
                    .max_queue = s.max_queue ? s.max_queue : 8, .threads = 1, .ctx = 256};
    eng_hooks h = {.wake = on_wake, .step = on_step};
    cr_assert_eq(eng_start(&c, &h, &E), PV_OK);
    double t0 = pv_now();
    while (eng_state(E) == ENG_LOADING && pv_now() - t0 < 20) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(eng_state(E), ENG_READY, "engine: %s", eng_error(E));
}

static void stop(void) {
    cr_expect_eq(W.dup_seq, 0, "a sequence twice in one step");
    eng_stop(E);
    llm_free(M);
}

/* ---- jobs and what they produced ---- */

typedef struct {
    int32_t ids[MAX_IDS];
    int n_ids, events, tokens;
    const char *finish;
    int err;
    char msg[200];
    double t_submit, t_first, t_end;
} rec;

static eng_params greedy(void) {
    eng_params p = {.sampling = smp_default_params(), .policy = *eng_policy(E)};
    p.sampling.temperature = 0;
    return p;
}

/* A one-choice job of prompt [base, base + 1, ...] (n tokens). */
static eng_job *job_of(const eng_params *p, int base, int n, int max_new, rec *r) {
    int32_t prompt[128];
    for (int i = 0; i < n; i++) prompt[i] = (base + 13 * i) % 1000;
    const int32_t *pp[1] = {prompt};
    eng_job *j;
    cr_assert_eq(eng_job_create(p, 1, pp, &n, &max_new, 1, &j), PV_OK);
    memset(r, 0, sizeof *r);
    eng_job_set_user(j, r);
    return j;
}

static void submit(eng_job *j) {
    char msg[256];
    int rc = eng_submit(E, j, msg, sizeof msg);
    cr_assert_eq(rc, PV_OK, "submit: %s (%s)", pv_strerror(rc), msg);
}

/* Collects until every job in js is done (60 s at most), recording. */
static void run_until_done(eng_job **js, int n) {
    double t0 = pv_now();
    for (;;) {
        for (eng_job *j = eng_collect(E); j; j = eng_job_next(j)) {
            rec *r = eng_job_user(j);
            eng_delta d;
            eng_job_take(j, 0, &d);
            cr_assert(!r->finish || (!d.n_ids && !d.len), "output after the finish");
            for (int i = 0; i < d.n_ids && r->n_ids < MAX_IDS; i++) r->ids[r->n_ids++] = d.ids[i];
            r->events++;
            r->tokens = d.tokens;
            /* a job's finish and its done flag may come in separate
             * collects (retire publishes the finish, then marks it done):
             * a later empty take must not erase the finish */
            if (d.finish) r->finish = d.finish;
            if (eng_job_done(j)) {
                const char *msg;
                r->err = eng_job_error(j, &msg);
                snprintf(r->msg, sizeof r->msg, "%s", msg);
                eng_job_times(j, &r->t_submit, &r->t_first, &r->t_end);
            }
        }
        int all = 1;
        for (int i = 0; i < n; i++) all &= eng_job_done(js[i]);
        if (all) return;
        cr_assert(pv_now() - t0 < 60, "jobs not done in 60 s");
        pthread_mutex_lock(&W.mu);
        int w = W.wakes;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 5 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        if (W.wakes == w) pthread_cond_timedwait(&W.cv, &W.mu, &ts);
        pthread_mutex_unlock(&W.mu);
    }
}

static void counts(int *waiting, int *running) { eng_counts(E, waiting, running); }

/* Submits js[0], holds the decoder in its first step, then submits the
 * rest: every later job is decided while js[0] provably runs. The decoder
 * stays held until set_hold(0). */
static void submit_behind_first(eng_job **js, int n) {
    set_hold(1);
    submit(js[0]);
    wait_held();
    for (int i = 1; i < n; i++) submit(js[i]);
}

/* One job alone, start to finish; freed. */
static void run_alone(const eng_params *p, int base, int n, int max_new, rec *r) {
    eng_job *j = job_of(p, base, n, max_new, r);
    submit(j);
    run_until_done(&j, 1);
    eng_job_free(j);
}

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
    size_t big = eng_seq_bytes(E, NULL, 8 + 200), small = eng_seq_bytes(E, NULL, 4 + 2);
    stop();
    cr_assert_lt(small * 2, big);
    start((setup){.kv_memory = big + small});
    eng_params p = greedy();
    rec ra, rb, rc;
    eng_job *a = job_of(&p, 1, 8, 200, &ra), *b = job_of(&p, 2, 8, 200, &rb),
            *c = job_of(&p, 3, 4, 2, &rc);
    /* b waits: a and b do not fit together; c would fit beside a, but b is
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
