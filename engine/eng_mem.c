/* eng_mem: KV on demand — what the running sequences need for the coming
 * step, and the relief when that exceeds kv_memory.
 *
 * Admission asks only for a job's prompts (eng_sched.c); the sequences then
 * grow a token per step. Before each step the decoder adds up, per running
 * choice, the bytes its cache can hold once the step is done
 * (kv_policy_seq_bytes at its length after the step, an exact bound that
 * includes page rounding). When the sum exceeds kv_memory, relief comes in
 * this order, and an admitted job is never failed for lack of memory:
 *   1. elastic compression: choices whose job allows it and whose policy
 *      demotes to a low tier (kv_policy_elastic) get their high-tier budget
 *      lowered to the policy's floor, largest first; the cache demotes at
 *      once (kv_seq_set_budget), nothing is recomputed and nothing dropped.
 *      From then on the choice's budget at each length is min(floor,
 *      budget), both in tokens at that length (either may be a fraction),
 *      set again before each step where it changes: never above the
 *      policy's own, so the sequence stays within the bytes it was
 *      admitted for;
 *   2. preemption (vLLM's recompute mode): the most recently admitted job is
 *      taken off the batch, its pages freed, and it waits at the front of
 *      the queue; resumed, it prefills its prompt + generated tokens again
 *      and carries on with the token it had sampled, so its output just
 *      pauses. It is let in again only when every choice fits at its
 *      fill + 1 token (what its first step after the refill holds), so it is
 *      not preempted again at that step. The oldest job is never
 *      preempted: it fits alone (eng_submit refuses any job that does not).
 * The pool's byte limit is kv_memory plus the step headroom
 * (kv_router_headroom), so a step that fits here never hits it. */
#include <stdio.h>

#include "eng_internal.h"
#include "kv_tier.h"
#include "pverr.h"

static kv_policy choice_policy(const eng_job *j, const eng_choice *c) {
    kv_policy p = j->p.policy;
    if (c->budget > 0) p.budget = c->budget;
    return p;
}

/* A choice's length once the coming step is done. Prefilling: the whole
 * fill (admission counted it); decoding: the token this step feeds at
 * position n_prompt + n_gen - 1. */
static int len_after_step(const eng_choice *c) {
    return c->n_fed < c->n_fill ? c->n_fill : c->n_prompt + c->n_gen;
}

size_t eng_choice_need(eng_engine *e, const eng_job *j, const eng_choice *c) {
    if (c->finished || c->slot < 0) return 0;
    int len = len_after_step(c);
    kv_policy p = choice_policy(j, c);
    size_t all = eng_seq_bytes(e, &p, len);
    /* pages in prefix-cache blocks are counted once for everyone
     * (eng_prefix_shared), not per sequence */
    kv_usage u;
    kv_seq_usage(llm_ctx_kv(e->ctx), c->slot, &u);
    return all > u.bytes_cached ? all - u.bytes_cached : 0;
}

/* The high-tier budget in tokens of a compressed sequence of len tokens:
 * the smaller of its policy's floor and its policy's budget, each taken at
 * that length by the tier rule (a fraction of len rounded up, or whole
 * tokens, never below the protected tokens). Comparing the two knobs as
 * numbers would mix units (floor 0.5 is not below budget 24 tokens past 48
 * tokens), and a floor above the budget would let the sequence grow past
 * the bytes its job was admitted for. Floor 0: the protected tokens (every
 * budget below them keeps exactly them). */
static int floor_tokens(const kv_policy *p, int len) {
    kv_policy f = *p;
    int prot = p->sinks + p->recent;
    f.budget = p->floor > 0 ? p->floor : prot > 0 ? prot : 1;
    int fb = kv_tier_budget(&f, len), b = kv_tier_budget(p, len);
    return b >= 0 && b < fb ? b : fb;
}

/* Bytes compressing c to its floor would save, 0 when it cannot be. */
static size_t elastic_gain(eng_engine *e, const eng_job *j, const eng_choice *c) {
    const kv_policy *p = &j->p.policy;
    if (!j->p.kv_elastic || !kv_policy_elastic(p) || c->finished || c->slot < 0 ||
        c->n_fed == 0 || c->elastic_done || e->on_cuda)
        return 0;
    int len = len_after_step(c);
    kv_policy q = *p;
    q.budget = floor_tokens(p, len);
    size_t after = eng_seq_bytes(e, &q, len);
    return after < c->need ? c->need - after : 0;
}

/* Lowers c's budget to its floor at its length after the step; returns the
 * bytes its need dropped by. */
static size_t compress(eng_engine *e, eng_job *j, eng_choice *c) {
    kv_cache *kv = llm_ctx_kv(e->ctx);
    kv_usage before, after;
    kv_seq_usage(kv, c->slot, &before);
    int fb = floor_tokens(&j->p.policy, len_after_step(c));
    c->elastic_done = 1; /* straight to the floor: one compression is all there is */
    if (kv_seq_set_budget(kv, c->slot, fb)) return 0; /* cannot: leave it to preemption */
    c->budget = fb;
    kv_seq_usage(kv, c->slot, &after);
    size_t old = c->need;
    c->need = eng_choice_need(e, j, c);
    long tok = after.n_low - before.n_low;
    size_t saved = before.bytes_stored > after.bytes_stored
                       ? before.bytes_stored - after.bytes_stored : 0;
    c->relief.compressions++;
    c->relief.tokens_demoted += tok;
    c->relief.bytes_saved += saved;
    c->relief.budget = fb;
    e->n_elastic++;
    e->el_tokens += tok;
    e->el_bytes += saved;
    return old > c->need ? old - c->need : 0;
}

/* Elastic compression, largest gain first, until total fits. */
static size_t elastic(eng_engine *e, size_t total) {
    while (total > e->cfg.kv_memory) {
        eng_job *bj = NULL;
        eng_choice *bc = NULL;
        size_t best = 0;
        for (eng_job *j = e->running; j; j = j->next)
            for (int i = 0; i < j->n_choices; i++) {
                size_t g = elastic_gain(e, j, &j->ch[i]);
                if (g > best) {
                    best = g;
                    bj = j;
                    bc = &j->ch[i];
                }
            }
        if (!bc) break;
        size_t got = compress(e, bj, bc);
        total -= got < total ? got : total;
    }
    return total;
}

/* Takes job j off the batch: pages freed, slots back, and it waits at the
 * front of the queue to prefill what it had again. Its samplers, stop
 * matchers, stream decoders and output stay as they are. */
static void preempt(eng_engine *e, eng_job *j) {
    eng_job **pp = &e->running;
    while (*pp != j) pp = &(*pp)->next;
    *pp = j->next;
    kv_cache *kv = llm_ctx_kv(e->ctx);
    size_t need_now = 0;
    for (int i = 0; i < j->n_choices; i++) {
        eng_choice *c = &j->ch[i];
        if (c->finished) continue;
        if (c->slot >= 0) {
            eng_prefix_publish(e, c); /* its recompute may find them again */
            kv_seq_reset(kv, c->slot);
            e->slot_free[c->slot] = 1;
            c->slot = -1;
        }
        c->budget = 0; /* the reset ended the cache's override too */
        c->elastic_done = 0;
        c->n_fed = 0;
        c->refill = c->n_gen > 0;
        c->n_fill = c->n_gen > 0 ? c->n_prompt + c->n_gen - 1 : c->n_prompt;
        c->need = 0;
        c->relief.preemptions++;
        /* what it holds once its first step after the refill is done: the
         * fill plus the token that step feeds (eng_choice_need of a
         * decoding choice). Only the fill would let a job whose choices
         * sit at a page boundary back in a page per choice short, to be
         * preempted again at that step, its refill wasted */
        need_now += eng_seq_bytes(e, &j->p.policy, c->n_fill + 1);
    }
    e->n_preempt++;
    pthread_mutex_lock(&e->mu);
    e->committed -= j->commit;
    j->commit = 0;
    j->need_now = need_now;
    e->slots_used -= j->n_choices;
    e->n_running_jobs--;
    j->where = ENG_J_WAITING;
    j->preempted = 1;
    j->next = e->wait_head; /* first in line: it was admitted before them */
    e->wait_head = j;
    if (!e->wait_tail) e->wait_tail = j;
    e->n_waiting++;
    pthread_mutex_unlock(&e->mu);
}

static size_t job_need(const eng_job *j) {
    size_t n = 0;
    for (int i = 0; i < j->n_choices; i++) n += j->ch[i].need;
    return n;
}

/* A compressed choice's budget follows its length (floor_tokens): set
 * again before the step where it changes. A cache that refuses keeps the
 * budget it had, which the need then counts. */
static void follow_floor(eng_engine *e, eng_job *j, eng_choice *c) {
    if (c->budget <= 0 || c->finished || c->slot < 0) return;
    int fb = floor_tokens(&j->p.policy, len_after_step(c));
    if (fb == (int)c->budget || kv_seq_set_budget(llm_ctx_kv(e->ctx), c->slot, fb)) return;
    c->budget = fb;
    c->relief.budget = fb;
}

void eng_relieve(eng_engine *e) {
    size_t shared = eng_prefix_shared(e), total = shared;
    for (eng_job *j = e->running; j; j = j->next)
        for (int i = 0; i < j->n_choices; i++) {
            follow_floor(e, j, &j->ch[i]);
            total += j->ch[i].need = eng_choice_need(e, j, &j->ch[i]);
        }
    if (total > e->cfg.kv_memory) total = elastic(e, total);
    while (total > e->cfg.kv_memory && e->running && e->running->next) {
        eng_job *last = e->running;
        while (last->next) last = last->next; /* the running list is in admission order */
        size_t n = job_need(last);
        preempt(e, last);
        /* blocks only it used are now unused: cached, evictable, free */
        size_t now = eng_prefix_shared(e);
        n += shared > now ? shared - now : 0;
        shared = now;
        total -= n < total ? n : total;
    }
    pthread_mutex_lock(&e->mu);
    size_t committed = shared;
    for (eng_job *j = e->running; j; j = j->next) {
        j->commit = job_need(j);
        committed += j->commit;
    }
    for (eng_job *j = e->admitted; j; j = j->next) committed += j->commit;
    e->committed = committed;
    eng_admit_locked(e);
    committed = e->committed; /* with what was admitted just now */
    pthread_mutex_unlock(&e->mu);
    eng_prefix_trim(e, committed);
}
