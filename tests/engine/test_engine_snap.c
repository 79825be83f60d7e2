/* KV map snapshots (engine/eng_snap.h) on a tiny synthetic model: a job's
 * final snapshot matches its usage tier for tier in every (layer, head); a
 * snapshot asked while the job decodes arrives before it ends and agrees
 * with its own usage; without kv_snapshots there is no final one. The step
 * hook holds the decoder so the ask provably happens mid-sequence. */
#include "eng_fixture.h"
#include "eng_snap.h"

static void start_snap(int snapshots) {
    start((setup){.max_seqs = 2, .prefill_chunk = 32, .max_queue = 4, .kv_snapshots = snapshots});
}

/* A greedy mikv job of n_prompt tokens, submitted. */
static eng_job *mikv_job(int n_prompt, int max_new, rec *r) {
    eng_params p = greedy();
    char err[256];
    p.ignore_eos = 1;
    cr_assert_eq(kv_policy_parse("mikv,budget=24,recent=4,sinks=2", &p.policy, err, sizeof err), 0);
    eng_job *j = job_of(&p, 5, n_prompt, max_new, r);
    submit(j);
    return j;
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
    start_snap(1);
    rec r;
    eng_job *j = mikv_job(80, 12, &r);
    run_until_done(&j, 1);
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
    stop();
}

Test(snap, asked_mid_sequence_arrives_while_it_runs) {
    start_snap(0);
    W.hold_at = 6; /* prompt in 3 chunks of 32, then decode steps; no job yet */
    rec r;
    eng_job *j = mikv_job(80, 40, &r);
    wait_held();
    eng_snap_ask(E, j); /* the decoder is inside step 6: honoured after it */
    set_hold(0);
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
    run_until_done(&j, 1);
    cr_assert_null(eng_snap_take_final(j), "a final snapshot without kv_snapshots");
    eng_job_free(j);
    stop();
}

/* kv_snapshot_cells caps the final snapshot (it holds a cell per layer, KV
 * head and position): a job over the cap keeps none, one within keeps it. */
Test(snap, final_snapshot_over_the_cell_cap_is_not_kept) {
    /* 2 layers x 2 KV heads x 47 stored positions (40 + 8, the last sampled
     * token is never stored) = 188 cells */
    start((setup){.max_seqs = 2, .prefill_chunk = 32, .max_queue = 4, .kv_snapshots = 1,
                  .kv_snapshot_cells = 187});
    rec r;
    eng_job *j = mikv_job(40, 8, &r);
    run_until_done(&j, 1);
    cr_expect_eq(r.err, 0, "%s", r.msg);
    cr_expect_null(eng_snap_take_final(j), "a 188-cell snapshot under a 187-cell cap");
    eng_job_free(j);
    stop();
    start((setup){.max_seqs = 2, .prefill_chunk = 32, .max_queue = 4, .kv_snapshots = 1,
                  .kv_snapshot_cells = 188});
    j = mikv_job(40, 8, &r);
    run_until_done(&j, 1);
    eng_snap *s = eng_snap_take_final(j);
    cr_expect_not_null(s, "a 188-cell snapshot under a 188-cell cap");
    eng_snap_free(s);
    eng_job_free(j);
    stop();
}
