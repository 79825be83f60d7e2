/* eng_snap: KV tier snapshots on the decoder thread (eng_snap.h).
 *
 * Cost: an unwatched step pays one atomic load (eng_snap_service). A
 * snapshot walks every (layer, KV head) of one sequence once through
 * kv_seq_tiers and copies the result into fresh buffers; nothing is
 * formatted here, the caller's thread turns it into JSON. Watching must not
 * slow decoding by more than a few percent, whatever the context length,
 * the number of watchers or how often they ask: after snapshots that took
 * d seconds none is taken for SNAP_DUTY * d seconds (asks stay pending), so
 * they use at most 1 / SNAP_DUTY of the decoder's time. */
#include <stdlib.h>
#include <string.h>

#include "eng_internal.h"
#include "pvtime.h"

#define SNAP_DUTY 25 /* snapshots take at most 4% of the decoder's time */
/* Final snapshots are taken for every job, watched or not, on the decoder
 * thread under out_mu: by default only up to this many (layer, KV head,
 * position) cells (at most ~9 MiB; SmolLM2-135M: 11k tokens, a Llama-3-8B
 * shape: 4k) so a long sequence's end costs no more than a short one's. */
#define SNAP_FINAL_CELLS (1L << 20)

void eng_snap_free(eng_snap *s) {
    if (!s) return;
    free(s->tier);
    free(s->score);
    free(s->demoted_at);
    free(s->lo_head_bits);
    free(s);
}

void eng_snap_ask(eng_engine *e, eng_job *j) {
    if (!j->n_choices) return;
    atomic_store(&j->ch[0].snap.ask, 1);
    atomic_store(&e->snap_asks, 1);
}

eng_snap *eng_snap_take(eng_engine *e, eng_job *j) {
    if (!j->n_choices) return NULL;
    pthread_mutex_lock(&e->out_mu);
    eng_snap *s = j->ch[0].snap.ready;
    j->ch[0].snap.ready = NULL;
    pthread_mutex_unlock(&e->out_mu);
    return s;
}

eng_snap *eng_snap_take_final(eng_job *j) {
    if (!j->n_choices || !eng_job_done(j)) return NULL;
    eng_snap *s = j->ch[0].snap.final;
    j->ch[0].snap.final = NULL;
    return s;
}

/* Grows the choice's demoted_at table to cap positions per (layer, head),
 * keeping what it knew; new entries are -1 (unknown). */
static int grow_demoted(eng_snap_slot *sl, int nlh, int cap) {
    if (cap <= sl->cap) return 0;
    int ncap = sl->cap * 2 > cap ? sl->cap * 2 : cap;
    int32_t *d = malloc(sizeof *d * (size_t)nlh * ncap);
    if (!d) return -1;
    for (size_t i = 0; i < (size_t)nlh * ncap; i++) d[i] = -1;
    for (int r = 0; r < nlh && sl->demoted_at; r++)
        memcpy(d + (size_t)r * ncap, sl->demoted_at + (size_t)r * sl->cap, sizeof *d * sl->cap);
    free(sl->demoted_at);
    sl->demoted_at = d;
    sl->cap = ncap;
    return 0;
}

/* Updates what the choice knows of demotions from one (layer, head)'s tiers
 * and copies it out: a token seen high before and out of it now was demoted
 * at this length. */
static void note_demotions(int32_t *known, const uint8_t *tier, int n, int32_t *out) {
    for (int p = 0; p < n; p++) {
        if (tier[p] == KV_TIER_HIGH) known[p] = -2;
        else if (known[p] == -2 && tier[p] != KV_TIER_NONE) known[p] = n;
        out[p] = known[p] < 0 ? -1 : known[p];
    }
}

static eng_snap *snap_take(eng_engine *e, eng_choice *c, int final) {
    const kv_policy *p = c->snap.policy;
    kv_cache *kv = llm_ctx_kv(e->ctx);
    const kv_shape *sh = kv_get_shape(kv);
    int n = kv_seq_pos(kv, c->slot), nlh = sh->n_layers * sh->n_kv_heads;
    if (n < 0 || grow_demoted(&c->snap, nlh, n)) return NULL;
    eng_snap *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    size_t cells = (size_t)nlh * n;
    int scored = p->select == KV_SELECT_PERSISTENCE || p->select == KV_SELECT_ACCUMULATED;
    s->tier = malloc(cells + 1);
    s->demoted_at = malloc(sizeof *s->demoted_at * (cells + 1));
    s->score = scored ? malloc(sizeof *s->score * (cells + 1)) : NULL;
    s->lo_head_bits = malloc((size_t)2 * nlh);
    if (!s->tier || !s->demoted_at || (scored && !s->score) || !s->lo_head_bits) goto fail;
    for (int r = 0; r < nlh; r++) {
        int kb, vb;
        kv_policy_head_widths(p, r / sh->n_kv_heads, r % sh->n_kv_heads, &kb, &vb);
        s->lo_head_bits[2 * r] = (int8_t)kb;
        s->lo_head_bits[2 * r + 1] = (int8_t)vb;
    }
    /* n == 0 (a choice ended before anything was stored): no cells, and
     * demoted_at may still be NULL, where even a zero offset is undefined */
    for (int r = 0; n > 0 && r < nlh; r++) {
        size_t off = (size_t)r * n;
        if (kv_seq_tiers(kv, c->slot, r / sh->n_kv_heads, r % sh->n_kv_heads, s->tier + off,
                         s->score ? s->score + off : NULL, n) < 0)
            goto fail; /* a cache that cannot say (GPU) */
        note_demotions(c->snap.demoted_at + (size_t)r * c->snap.cap, s->tier + off, n,
                       s->demoted_at + off);
    }
    s->n_layers = sh->n_layers;
    s->n_kv_heads = sh->n_kv_heads;
    s->n_pos = n;
    s->n_prompt = c->n_prompt;
    s->n_gen = c->n_gen;
    s->hi_bits = p->hi_bits;
    s->lo_bits = p->lo_bits;
    s->lo_v_bits = kv_policy_lo_v_bits(p);
    s->step = e->n_iter;
    s->finished = final;
    kv_seq_usage(kv, c->slot, &s->usage);
    return s;
fail:
    eng_snap_free(s);
    return NULL;
}

void eng_snap_service(eng_engine *e) {
    e->n_iter++;
    if (!atomic_load_explicit(&e->snap_asks, memory_order_relaxed)) return;
    double t0 = pv_now();
    if (t0 < e->snap_next) return; /* the asks wait for a later step */
    atomic_store(&e->snap_asks, 0);
    for (eng_job *j = e->running; j; j = j->next) {
        eng_choice *c = &j->ch[0];
        if (c->slot < 0 || !atomic_exchange(&c->snap.ask, 0)) continue;
        eng_snap *s = snap_take(e, c, 0);
        if (!s) continue;
        pthread_mutex_lock(&e->out_mu);
        eng_snap_free(c->snap.ready); /* not taken in time: the newer one wins */
        c->snap.ready = s;
        pthread_mutex_unlock(&e->out_mu);
    }
    e->snap_next = t0 + SNAP_DUTY * (pv_now() - t0);
}

void eng_snap_final(eng_engine *e, eng_choice *c) {
    if (!c->snap.policy || c->slot < 0) return;
    const kv_shape *sh = kv_get_shape(llm_ctx_kv(e->ctx));
    int n = kv_seq_pos(llm_ctx_kv(e->ctx), c->slot);
    size_t cells = (size_t)sh->n_layers * sh->n_kv_heads * (size_t)(n > 0 ? n : 0);
    long max = e->cfg.kv_snapshot_cells > 0 ? e->cfg.kv_snapshot_cells : SNAP_FINAL_CELLS;
    if (e->cfg.kv_snapshots && !c->snap.final && cells <= (size_t)max)
        c->snap.final = snap_take(e, c, 1);
    free(c->snap.demoted_at); /* the sequence is over: what it knew is in the snapshot */
    c->snap.demoted_at = NULL;
    c->snap.cap = 0;
}

void eng_snap_job_free(eng_job *j) {
    for (int i = 0; i < j->n_choices; i++) {
        eng_snap_slot *sl = &j->ch[i].snap;
        eng_snap_free(sl->ready);
        eng_snap_free(sl->final);
        free(sl->demoted_at);
    }
}
