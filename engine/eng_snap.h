/* eng_snap: copies of a sequence's KV tiers for the server's KV map, taken
 * on the decoder thread between steps (the thread that owns the cache), and
 * handed to the caller's thread.
 *
 * The caller asks (eng_snap_ask) and later takes what is ready
 * (eng_snap_take): the decoder honours every pending ask once per step, so
 * a watched sequence costs one walk of its tiers per ask, and an unwatched
 * one one atomic load per step. With eng_config.kv_snapshots the engine
 * also keeps a last snapshot of every job, taken just before its KV slot is
 * freed (eng_snap_take_final), so a finished request can still be looked at;
 * only for sequences of at most 2^20 (layer, KV head, position) cells, so
 * that the end of a long sequence costs the decoder no more than a short
 * one's. Only a job's first choice (index 0) is snapshotted.
 *
 * Ownership: a snapshot returned by a take is the caller's (eng_snap_free);
 * the job frees what was never taken. */
#ifndef PIVOT_ENG_SNAP_H
#define PIVOT_ENG_SNAP_H

#include <stdint.h>

#include "eng.h"
#include "kv.h"

typedef struct {
    int n_layers, n_kv_heads;
    int n_pos;            /* positions covered: the tokens the cache holds */
    int n_prompt, n_gen;  /* the choice's prompt and generated tokens so far */
    int hi_bits, lo_bits, lo_v_bits; /* the job's policy: tier widths */
    int8_t *lo_head_bits; /* [n_layers][n_kv_heads][2] each head's low-tier key and
                           * value widths (layer-bits may set them per layer or head) */
    int64_t step;         /* the engine's iteration when it was taken */
    int finished;         /* the final snapshot (the slot was freed right after) */
    kv_usage usage;       /* kv_seq_usage at the same moment */
    /* [n_layers][n_kv_heads][n_pos], position fastest: */
    uint8_t *tier;        /* KV_TIER_* (kv.h) */
    float *score;         /* demotion score of high tokens (NaN: none); NULL when
                           * the policy tracks no importance */
    int32_t *demoted_at;  /* sequence length at the first snapshot that saw the
                           * token out of the high tier; -1 unknown (demoted
                           * before anyone watched, or still high) */
} eng_snap;

void eng_snap_free(eng_snap *s);
/* Loop side: asks for a snapshot of j's first choice at the next step (no
 * effect once the job is done or while it waits for admission). */
void eng_snap_ask(eng_engine *e, eng_job *j);
/* The newest snapshot taken since the last take, or NULL; the caller owns it. */
eng_snap *eng_snap_take(eng_engine *e, eng_job *j);
/* Once the job is done (eng_job_done): its final snapshot, or NULL (no
 * kv_snapshots, never started, too long, out of memory, a cache that
 * cannot say). */
eng_snap *eng_snap_take_final(eng_job *j);

#endif
