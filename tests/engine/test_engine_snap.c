/* KV map snapshots (engine/eng_snap.h) on a tiny synthetic model: a job's
 * final snapshot matches its usage tier for tier in every (layer, head); a
 * snapshot asked while the job decodes arrives before it ends and agrees
 * with its own usage; without kv_snapshots there is no final one. The step
 * hook holds the decoder so the ask provably happens mid-sequence. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "eng.h"
#include "eng_job.h"
#include "eng_snap.h"
#include "llama.h"
#include "pverr.h"
#include "pvtime.h"

static llm_model *M;
static eng_engine *E;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int steps, hold_at, held, release;

/* Holds the decoder at step hold_at until released. */
static int on_step(void *arg, const llm_batch_entry *ent, int n) {
    (void)arg, (void)ent, (void)n;
    pthread_mutex_lock(&mu);
    if (++steps == hold_at) {
        held = 1;
        pthread_cond_broadcast(&cv);
        while (!release) pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
    return 0;
}

static void start(int snapshots) {
    char err[256];
    steps = held = release = 0;
    cr_assert_eq(llm_synthetic("tiny", 7, 1, &M, err, sizeof err), PV_OK, "%s", err);
    eng_config c = {.model = M, .kv_policy = "full", .device = "cpu", .kv_memory = 64 << 20,
                    .max_seqs = 2, .max_batch_tokens = 64, .prefill_chunk = 32, .max_queue = 4,
                    .threads = 1, .ctx = 256, .kv_snapshots = snapshots};
    eng_hooks h = {.step = on_step};
    cr_assert_eq(eng_start(&c, &h, &E), PV_OK);
    double t0 = pv_now();
    while (eng_state(E) == ENG_LOADING && pv_now() - t0 < 20) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(eng_state(E), ENG_READY, "engine: %s", eng_error(E));
}

static eng_job *mikv_job(int n_prompt, int max_new) {
    eng_params p = {.sampling = smp_default_params(), .ignore_eos = 1};
    char err[256];
    p.sampling.temperature = 0;
    cr_assert_eq(kv_policy_parse("mikv,budget=24,recent=4,sinks=2", &p.policy, err, sizeof err), 0);
    int32_t prompt[128];
    for (int i = 0; i < n_prompt; i++) prompt[i] = (5 + 13 * i) % 200;
    const int32_t *pp[1] = {prompt};
    eng_job *j;
    cr_assert_eq(eng_job_create(&p, 1, pp, &n_prompt, &max_new, 1, &j), PV_OK);
    char msg[256];
    cr_assert_eq(eng_submit(E, j, msg, sizeof msg), PV_OK, "%s", msg);
    return j;
}

static void until_done(eng_job *j) {
    double t0 = pv_now();
    while (!eng_job_done(j)) {
        eng_collect(E);
        cr_assert(pv_now() - t0 < 60, "job not done in 60 s");
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

/* Every (layer, head) of s holds usage's counts. */
static void check(const eng_snap *s, const kv_usage *u) {
    cr_assert_eq(s->n_layers, 2);
    cr_assert_eq(s->n_kv_heads, 2);
    cr_assert_eq(s->n_pos, u->n_tokens);
    for (int r = 0; r < s->n_layers * s->n_kv_heads; r++) {
        int cnt[4] = {0};
        for (int p = 0; p < s->n_pos; p++) cnt[s->tier[(size_t)r * s->n_pos + p]]++;
        cr_assert_eq(cnt[KV_TIER_HIGH], u->n_high, "row %d", r);
        cr_assert_eq(cnt[KV_TIER_LOW], u->n_low, "row %d", r);
        cr_assert_eq(cnt[KV_TIER_DROPPED], u->n_dropped, "row %d", r);
    }
}

Test(snap, final_snapshot_matches_the_jobs_usage) {
    start(1);
    eng_job *j = mikv_job(80, 12);
    until_done(j);
    eng_snap *s = eng_snap_take_final(j);
    cr_assert_not_null(s);
    kv_usage u;
    eng_job_kv_usage(j, 0, &u);
    cr_assert_gt(u.n_low, 0, "mikv demoted nothing");
    cr_assert(s->finished);
    cr_assert_eq(s->n_prompt, 80);
    cr_assert_eq(s->lo_bits, 4);
    cr_assert_not_null(s->score);
    check(s, &s->usage);
    cr_assert_eq(s->usage.bytes_stored, u.bytes_stored);
    check(s, &u);
    cr_assert_null(eng_snap_take_final(j), "taken twice");
    eng_snap_free(s);
    eng_job_free(j);
    eng_stop(E);
    llm_free(M);
}

Test(snap, asked_mid_sequence_arrives_while_it_runs) {
    start(0);
    hold_at = 6; /* prompt in 3 chunks of 32, then decode steps */
    eng_job *j = mikv_job(80, 40);
    pthread_mutex_lock(&mu);
    while (!held) pthread_cond_wait(&cv, &mu);
    eng_snap_ask(E, j); /* the decoder is inside step 6: honoured after it */
    release = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    eng_snap *s = NULL;
    double t0 = pv_now();
    while (!s && pv_now() - t0 < 30) {
        s = eng_snap_take(E, j);
        eng_collect(E);
    }
    cr_assert_not_null(s, "no snapshot while the job ran");
    cr_assert(!s->finished);
    cr_assert_gt(s->n_pos, 80);
    cr_assert_lt(s->n_pos, 80 + 40);
    check(s, &s->usage);
    eng_snap_free(s);
    until_done(j);
    cr_assert_null(eng_snap_take_final(j), "a final snapshot without kv_snapshots");
    eng_job_free(j);
    eng_stop(E);
    llm_free(M);
}
