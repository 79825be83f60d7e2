/* eng_fixture: the engine test fixture shared by test_engine.c,
 * test_engine_mem.c and test_engine_snap.c — a tiny synthetic model, the step hook that watches
 * (and can hold or fail) every forward pass, jobs of token-id prompts and a
 * collector that records what each produced. Static (inline, so a file may
 * leave some unused) functions: each test file is its own executable. */
#ifndef PIVOT_TEST_ENG_FIXTURE_H
#define PIVOT_TEST_ENG_FIXTURE_H

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
    eng_gauges g; /* the last gauges published */
    int max_running; /* most jobs running at once (gauges) */
} watch;

static watch W;
static llm_model *M;
static eng_engine *E;

static inline void on_wake(void *arg) {
    (void)arg;
    pthread_mutex_lock(&W.mu);
    W.wakes++;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.mu);
}

static inline void on_gauges(void *arg, const eng_gauges *g) {
    (void)arg;
    pthread_mutex_lock(&W.mu);
    W.g = *g;
    if (g->running > W.max_running) W.max_running = g->running;
    pthread_mutex_unlock(&W.mu);
}

static inline int on_step(void *arg, const llm_batch_entry *ent, int n) {
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

static inline void set_hold(int on) {
    pthread_mutex_lock(&W.mu);
    W.hold = on;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.mu);
}

/* Waits (at most 20 s) until the decoder is blocked in the step hook. */
static inline void wait_held(void) {
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
    const char *policy; /* default "full" */
    int kv_snapshots;   /* eng_config.kv_snapshots */
    long kv_snapshot_cells; /* eng_config.kv_snapshot_cells (0: its default) */
    int prefix_off;     /* no automatic prefix caching (default: on, as in the server) */
} setup;

static inline void start(setup s) {
    memset(&W, 0, sizeof W);
    pthread_mutex_init(&W.mu, NULL);
    pthread_cond_init(&W.cv, NULL);
    char err[256];
    cr_assert_eq(llm_synthetic("tiny", 7, 1, &M, err, sizeof err), PV_OK, "%s", err);
    eng_config c = {.model = M, .kv_policy = s.policy ? s.policy : "full", .device = "cpu",
                    .kv_memory = s.kv_memory ? s.kv_memory : (size_t)64 << 20,
                    .max_seqs = s.max_seqs ? s.max_seqs : 4,
                    .max_batch_tokens = s.max_batch_tokens ? s.max_batch_tokens : 64,
                    .prefill_chunk = s.prefill_chunk ? s.prefill_chunk : 16,
                    .max_queue = s.max_queue ? s.max_queue : 8, .threads = 1, .ctx = 256,
                    .kv_snapshots = s.kv_snapshots, .kv_snapshot_cells = s.kv_snapshot_cells,
                    .prefix_cache_off = s.prefix_off};
    eng_hooks h = {.wake = on_wake, .step = on_step, .gauges = on_gauges};
    cr_assert_eq(eng_start(&c, &h, &E), PV_OK);
    double t0 = pv_now();
    while (eng_state(E) == ENG_LOADING && pv_now() - t0 < 20) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(eng_state(E), ENG_READY, "engine: %s", eng_error(E));
}

static inline void stop(void) {
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

static inline eng_params greedy(void) {
    eng_params p = {.sampling = smp_default_params(), .policy = *eng_policy(E)};
    p.sampling.temperature = 0;
    return p;
}

/* A job of n_choices choices of prompt [base, base + 13, ...] (n tokens). */
static inline eng_job *job_of_n(const eng_params *p, int base, int n, int max_new, int n_choices,
                                rec *r) {
    int32_t prompt[128];
    for (int i = 0; i < n; i++) prompt[i] = (base + 13 * i) % 1000;
    const int32_t *pp[1] = {prompt};
    eng_job *j;
    cr_assert_eq(eng_job_create(p, 1, pp, &n, &max_new, n_choices, &j), PV_OK);
    memset(r, 0, sizeof *r);
    eng_job_set_user(j, r);
    return j;
}

/* A one-choice job. */
static inline eng_job *job_of(const eng_params *p, int base, int n, int max_new, rec *r) {
    return job_of_n(p, base, n, max_new, 1, r);
}

static inline void submit(eng_job *j) {
    char msg[256];
    int rc = eng_submit(E, j, msg, sizeof msg);
    cr_assert_eq(rc, PV_OK, "submit: %s (%s)", pv_strerror(rc), msg);
}

/* Collects until every job in js is done (60 s at most), recording. */
static inline void run_until_done(eng_job **js, int n) {
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

static inline void counts(int *waiting, int *running) { eng_counts(E, waiting, running); }

/* Submits js[0], holds the decoder in its first step, then submits the
 * rest: every later job is decided while js[0] provably runs. The decoder
 * stays held until set_hold(0). */
static inline void submit_behind_first(eng_job **js, int n) {
    set_hold(1);
    submit(js[0]);
    wait_held();
    for (int i = 1; i < n; i++) submit(js[i]);
}

/* a, then b submitted behind it while the decoder is held, both run to
 * the end; neither may fail. */
static inline void run_two(eng_job *a, eng_job *b, const rec *ra, const rec *rb) {
    eng_job *js[] = {a, b};
    submit_behind_first(js, 2);
    set_hold(0);
    run_until_done(js, 2);
    cr_expect_eq(ra->err, 0, "the first job failed: %s", ra->msg);
    cr_expect_eq(rb->err, 0, "the second job failed: %s", rb->msg);
}

static inline eng_gauges gauges(void) {
    pthread_mutex_lock(&W.mu);
    eng_gauges g = W.g;
    pthread_mutex_unlock(&W.mu);
    return g;
}

/* Once every job is done: what the pool still holds is cached prefix
 * blocks nobody uses, and a flush gives every page back. */
static inline void expect_only_cache_left(void) {
    double t0 = pv_now();
    eng_gauges g = gauges();
    while ((g.pool_used != g.prefix_bytes || g.prefix_bytes_used) && pv_now() - t0 < 5) {
        struct timespec ts = {0, 2000000}; /* the last gauges may still be on their way */
        nanosleep(&ts, NULL);
        g = gauges();
    }
    cr_expect_eq(g.pool_used, g.prefix_bytes, "pages left besides the prefix cache: %zu of %zu",
                 g.pool_used, g.prefix_bytes);
    cr_expect_eq(g.prefix_bytes_used, 0, "a cached block is still referenced");
    eng_prefix_flush(E);
    t0 = pv_now();
    while ((g = gauges()).pool_used && pv_now() - t0 < 10) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    cr_expect_eq(g.pool_used, 0, "pages left after a flush");
    cr_expect_eq(g.prefix_bytes, 0);
    cr_expect_eq(g.prefix_blocks, 0);
}

/* One job alone, start to finish; freed. */
static inline void run_alone(const eng_params *p, int base, int n, int max_new, rec *r) {
    eng_job *j = job_of(p, base, n, max_new, r);
    submit(j);
    run_until_done(&j, 1);
    eng_job_free(j);
}

#endif
