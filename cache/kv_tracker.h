/* kv_tracker (internal): per-token importance state of the high tier and the
 * choice of which tokens to demote.
 *
 * Every query a KV head serves is one *step*. At each step the attention
 * probabilities of the query heads sharing the KV head are averaged per
 * token (GQA aggregation) and fed to kvt_observe with threshold
 * 1/n_visible (uniform attention over the tokens the query could see).
 *
 *   persistence  Scissorhands. Two u16 counters of steps with p < threshold:
 *                `cur` counts the current bucket of window/2 steps, `prev`
 *                the previous one; cur+prev is the count over the last
 *                window/2..window steps. Two counters instead of a window of
 *                bits keep the state at 4 bytes a token (it is part of the
 *                KV bytes we report). Demote the highest count first.
 *   accumulated  H2O. Sum of p and the step at which the token was first
 *                seen; importance = sum / (queries that saw it), lowest is
 *                demoted first (without the normalization old tokens win).
 *   recent       no state; the oldest unprotected token goes first.
 * Ties go to the older token. */
#ifndef PIVOT_KV_TRACKER_H
#define PIVOT_KV_TRACKER_H

#include <float.h>
#include <stdint.h>
#include <string.h>

#include "kv_policy.h"

typedef struct {
    uint16_t cur, prev;
} kvt_persist;

typedef struct {
    float sum;
    int32_t first; /* step of the first query that saw the token */
} kvt_accum;

/* first_step: the step index of the first query that will see the token. */
static inline void kvt_init(kv_select sel, uint8_t *st, int64_t first_step) {
    if (sel == KV_SELECT_PERSISTENCE) {
        kvt_persist s = {0, 0};
        memcpy(st, &s, sizeof s);
    } else if (sel == KV_SELECT_ACCUMULATED) {
        kvt_accum s = {0.0f, (int32_t)first_step};
        memcpy(st, &s, sizeof s);
    }
}

/* Persistence's two rules, for one query (kvt_observe, kvt_rotate) and for
 * a block of them (kvt_persist_block): k more low-attention steps, the
 * count saturating; a new bucket. */
static inline void kvt_persist_add(kvt_persist *s, unsigned k) {
    unsigned c = (unsigned)s->cur + k;
    s->cur = (uint16_t)(c < UINT16_MAX ? c : UINT16_MAX);
}
static inline void kvt_persist_rotate(kvt_persist *s) {
    s->prev = s->cur;
    s->cur = 0;
}

static inline void kvt_observe(kv_select sel, uint8_t *st, float p, float threshold) {
    if (sel == KV_SELECT_PERSISTENCE) {
        if (p < threshold) {
            kvt_persist s;
            memcpy(&s, st, sizeof s);
            kvt_persist_add(&s, 1);
            memcpy(st, &s, sizeof s);
        }
    } else if (sel == KV_SELECT_ACCUMULATED) {
        kvt_accum s;
        memcpy(&s, st, sizeof s);
        s.sum += p;
        memcpy(st, &s, sizeof s);
    }
}

/* Persistence: start a new bucket (every window/2 steps). */
static inline void kvt_rotate(kv_select sel, uint8_t *st) {
    if (sel != KV_SELECT_PERSISTENCE) return;
    kvt_persist s;
    memcpy(&s, st, sizeof s);
    kvt_persist_rotate(&s);
    memcpy(st, &s, sizeof s);
}

/* Persistence over a block of nq (<= 32) queries at once: bit qi of `low`
 * is kvt_observe's p < threshold for query qi (and the query saw the
 * token), bit qi of `rot` a kvt_rotate after it (bits from nq on are
 * ignored); the same counts as calling the two in query order. */
static inline void kvt_persist_block(uint8_t *st, uint32_t low, uint32_t rot, int nq) {
    const uint32_t live = nq < 32 ? (1u << nq) - 1 : ~0u;
    kvt_persist s;
    memcpy(&s, st, sizeof s);
    low &= live, rot &= live;
    if (!rot) { /* the common case: no bucket starts inside the block */
        kvt_persist_add(&s, (unsigned)__builtin_popcount(low));
    } else {
        for (int qi = 0; qi < nq; qi++) {
            kvt_persist_add(&s, low >> qi & 1u);
            if (rot >> qi & 1u) kvt_persist_rotate(&s);
        }
    }
    memcpy(st, &s, sizeof s);
}

/* Higher = demote sooner. steps: queries served so far by this head. */
static inline float kvt_demote_score(kv_select sel, const uint8_t *st, int64_t steps) {
    if (sel == KV_SELECT_PERSISTENCE) {
        kvt_persist s;
        memcpy(&s, st, sizeof s);
        return (float)s.cur + (float)s.prev;
    }
    if (sel == KV_SELECT_ACCUMULATED) {
        kvt_accum s;
        memcpy(&s, st, sizeof s);
        int64_t seen = steps - s.first;
        return seen > 0 ? -s.sum / (float)seen : -FLT_MAX; /* unseen: keep */
    }
    return 0.0f;
}

/* Chooses k of the n candidates to demote: highest score first, the lower
 * position on ties. cand[i] is a slot index, score[i] and pos[i] belong to
 * it. Writes the chosen slots to out[0..k) in increasing slot order.
 * scratch holds n entries of 16 bytes. Returns k clipped to n. */
int kvt_pick(const int *cand, const float *score, const int32_t *pos, int n, int k, int *out,
             void *scratch);

#endif
