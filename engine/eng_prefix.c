/* eng_prefix: automatic prefix caching as the scheduler sees it.
 *
 * The cache (kv.h, kv_seq_prefix_*) keeps whole pages of finished and
 * running sequences in blocks named by a hash chain of their tokens. The
 * engine decides when:
 *   - a choice that gets a slot attaches the longest cached prefix of what
 *     it must prefill (prompt, or after a preemption prompt + generated
 *     tokens) and prefills only the rest, always at least its last token;
 *   - a choice publishes its whole pages when its prefill is done (so
 *     concurrent requests with the same prefix find it), and again, with
 *     what it generated, just before its slot is freed (finish, cancel,
 *     preemption: its recompute may then hit its own pages);
 *   - memory: a block in use is counted once however many sequences share
 *     it (eng_prefix_shared), a block nobody uses counts as free and is
 *     evicted, least recently used first, as soon as what the running and
 *     admitted jobs can hold plus the cached blocks would exceed kv_memory
 *     (eng_prefix_trim), so admission never waits for it.
 * The plain FP16 cache shares whole pages by reference; a compressed policy
 * (the mixed cache) keeps snapshots of a sequence's whole state, which
 * exist only between calls at a block boundary: such a choice's prefill
 * ends one chunk at the last block boundary before its fill
 * (eng_prefix_cut) and publishes there (eng_prefix_chunk_done); while it
 * generates it publishes at every block boundary of its answer, each
 * snapshot replacing the one before (kv_seq_prefix_publish_latest).
 * Not on CUDA (the GPU cache has no blocks), not with --prefix-cache off,
 * not for requests with cache_prompt: false. */
#include <stdint.h>
#include <string.h>

#include "eng_internal.h"

/* Tokens per prefix block of the engine's cache (0: no prefix caching). */
static int pfx_block(eng_engine *e) {
    kv_prefix_stats st;
    kv_prefix_get_stats(llm_ctx_kv(e->ctx), &st);
    return st.block_tokens > 0 ? st.block_tokens : 0;
}

/* The longest block-aligned prefix (at most n_fill - 1 tokens) c's fill
 * shares with the fill of a running choice under the same policy: two
 * requests with one system prompt that start together cannot find each
 * other's snapshot yet (neither has published), so the later one splits
 * where they part and the third request finds the shared part. */
static int running_match(eng_engine *e, const eng_job *j, const eng_choice *c) {
    int bt = pfx_block(e);
    if (!bt) return 0;
    char mine[KV_POLICY_DESC_MAX], other[KV_POLICY_DESC_MAX];
    kv_policy_describe(&j->p.policy, mine, sizeof mine);
    int best = 0;
    for (const eng_job *o = e->running; o; o = o->next) {
        kv_policy_describe(&o->p.policy, other, sizeof other);
        if (strcmp(mine, other)) continue;
        for (int i = 0; i < o->n_choices; i++) {
            const eng_choice *oc = &o->ch[i];
            if (oc == c || oc->finished || oc->slot < 0) continue;
            int m = oc->n_fill < c->n_fill - 1 ? oc->n_fill : c->n_fill - 1, k = 0;
            while (k < m && oc->prompt[k] == c->prompt[k]) k++;
            k = k / bt * bt;
            if (k > best) best = k;
        }
    }
    return best;
}

void eng_prefix_attach(eng_engine *e, const eng_job *j, eng_choice *c) {
    c->pfx = !e->on_cuda && !e->cfg.prefix_cache_off && !j->p.no_prompt_cache;
    c->pfx_split = 0;
    /* prompt logprobs need a logits row for every prompt token */
    if (!c->pfx || (j->p.prompt_logprobs && !c->refill) || c->n_fed) return;
    int got = kv_seq_prefix_attach(llm_ctx_kv(e->ctx), c->slot, c->prompt, c->n_fill);
    if (got < 0) got = 0; /* nothing attached: the choice prefills everything */
    c->n_fed = got;
    if (!c->refill && !c->n_gen) c->cached = got;
    /* A compressed cache keeps a snapshot only where a sequence published
     * one (the end of its prompt's last block): a prompt that leaves a
     * cached one's path before that (another question after the same
     * system prompt) publishes where it leaves it, so the next such prompt
     * finds the shared part — a radix tree's split, made by the second
     * sequence that takes the branch. */
    if (!kv_policy_is_plain(&j->p.policy)) {
        int d = kv_prefix_match(llm_ctx_kv(e->ctx), c->slot, c->prompt, c->n_fill);
        int r = running_match(e, j, c);
        if (r > d) d = r;
        if (d > got) c->pfx_split = d;
    }
    e->pfx_queries += c->n_fill;
    e->pfx_hits += got;
}

/* latest: a decode boundary's, which replaces the choice's previous one
 * (kv_seq_prefix_publish_latest): the next turn resends the whole answer,
 * so only the newest matters. */
static void publish(eng_engine *e, eng_choice *c, int latest) {
    if (!c->pfx || c->slot < 0) return;
    kv_cache *kv = llm_ctx_kv(e->ctx);
    int n = kv_seq_pos(kv, c->slot);
    /* the tokens the cache holds: prompt + generated (c->prompt keeps every
     * sampled token after the prompt; the last one is not stored yet) */
    if (n > c->n_prompt + c->n_gen) n = c->n_prompt + c->n_gen;
    if (n > 0 && latest) kv_seq_prefix_publish_latest(kv, c->slot, c->prompt, n);
    else if (n > 0) kv_seq_prefix_publish(kv, c->slot, c->prompt, n);
}

/* At finish or preemption: past the prompt it is the answer's latest. */
void eng_prefix_publish(eng_engine *e, eng_choice *c) { publish(e, c, c->n_gen > 0); }

/* The block boundary a snapshot policy publishes at: the last one before
 * the fill (the last token is always computed, for its logits). */
static int snap_point(eng_engine *e, const eng_job *j, const eng_choice *c) {
    if (!c->pfx || kv_policy_is_plain(&j->p.policy) || c->n_fill < 2) return 0;
    int bt = pfx_block(e);
    return bt ? (c->n_fill - 1) / bt * bt : 0;
}

/* A decode step (it ends past the fill) that left the sequence at a block
 * boundary: a snapshot there holds part of the answer, which the next
 * turn of a chat resends. */
static int decode_boundary(eng_engine *e, const eng_choice *c, int end) {
    if (end <= c->n_fill) return 0;
    int bt = pfx_block(e);
    return bt && end % bt == 0;
}

int eng_prefix_cut(eng_engine *e, const eng_job *j, const eng_choice *c) {
    if (c->pfx_split > c->n_fed) return c->pfx_split; /* before the last boundary */
    int p = snap_point(e, j, c);
    return p > c->n_fed ? p : c->n_fill;
}

void eng_prefix_chunk_done(eng_engine *e, const eng_job *j, eng_choice *c, int end) {
    if (!c->pfx || c->finished) return;
    if (kv_policy_is_plain(&j->p.policy) ? end == c->n_fill && c->n_fed == c->n_fill
                                         : end > 0 && (end == snap_point(e, j, c) || end == c->pfx_split))
        publish(e, c, 0);
    else if (!kv_policy_is_plain(&j->p.policy) && decode_boundary(e, c, end))
        publish(e, c, 1);
}

size_t eng_prefix_shared(eng_engine *e) {
    kv_prefix_stats st;
    kv_prefix_get_stats(llm_ctx_kv(e->ctx), &st);
    return st.bytes_referenced;
}

void eng_prefix_trim(eng_engine *e, size_t committed) {
    kv_cache *kv = llm_ctx_kv(e->ctx);
    kv_prefix_stats st;
    kv_prefix_get_stats(kv, &st);
    if (st.bytes_evictable && committed + st.bytes_evictable > e->cfg.kv_memory)
        kv_prefix_evict(kv, committed + st.bytes_evictable - e->cfg.kv_memory);
}

void eng_prefix_flush(eng_engine *e) {
    atomic_store(&e->pfx_flush, 1);
    pthread_mutex_lock(&e->mu);
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

int eng_prefix_service(eng_engine *e) {
    if (!atomic_exchange(&e->pfx_flush, 0)) return 0;
    kv_prefix_evict(llm_ctx_kv(e->ctx), SIZE_MAX);
    return 1;
}
