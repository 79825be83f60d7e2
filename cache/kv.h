/* kv: the KV cache as the forward pass sees it.
 *
 * The forward pass never touches cache memory: it hands each layer's new keys
 * and values (after RoPE) to kv_store and asks kv_attend_group for the
 * attention output. That keeps the representation (FP16 here; mixed
 * high/low-precision with importance tracking in a later cache) private to
 * the cache, which can then dequantize inside its own dot-product loops and
 * observe the attention probabilities it needs.
 *
 * Sequences live in slots 0..max_seqs-1. Each token keeps its original
 * position. A cache is used by one decoder thread; kv_attend_group may run
 * concurrently for *different* (seq, kv_head) pairs of the same layer (the
 * model parallelizes over them), with distinct `thread` indices.
 *
 * Layout of the float arrays (row-major):
 *   k, v : [n][n_kv_heads * head_dim]   new tokens, keys already rotated
 *   q    : [n][n_heads * head_dim]      rotated queries of the same tokens
 *   out  : [n][n_heads * head_dim]      attention output
 * Query head h uses KV head h / (n_heads / n_kv_heads). */
#ifndef PIVOT_KV_H
#define PIVOT_KV_H

#include <stddef.h>
#include <stdint.h>

/* What a cache keeps and at which precision (kv_policy.h). */
typedef struct kv_policy kv_policy;

typedef struct {
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int max_seqs;  /* sequence slots */
    int max_ctx;   /* tokens per sequence */
    int n_threads; /* distinct `thread` indices that may call attend */
    /* Where pages come from (kv_pool.h): shared by every cache of a server so
     * one byte limit covers them all. NULL: plain malloc, no limit. */
    struct kv_pool *pool;
    /* kv_create only. routed: a router (kv_router.h) whose slots may each
     * get their own policy (kv_seq_set_policy), the given one by default. */
    int routed;
    /* gpu: non-NULL puts the cache on this CUDA context (kv_cuda.h), where
     * the GPU forward pass fills it; gpu_rows: the most tokens one sequence
     * adds per pass (sizes the mixed cache's high tier). */
    struct pvc_ctx *gpu;
    int gpu_rows;
} kv_shape;

typedef struct {
    size_t bytes_stored; /* bytes this sequence's entries occupy (incl. metadata) */
    size_t bytes_fp16;   /* what the same tokens take in a plain FP16 cache */
    int n_tokens;        /* tokens the sequence has seen */
    /* Tokens per KV head in each tier (every head of every layer holds the
     * same counts: budgets are equal per head). The plain cache has every
     * token high. */
    int n_high;          /* FP16 (or INT8) tier */
    int n_low;           /* INT4/INT2 tier */
    int n_dropped;       /* evicted */
    /* Part of bytes_stored that sits in prefix-cache blocks (kv_prefix
     * below): shared with other sequences and the cache, so a sum over
     * sequences counts it once through kv_prefix_stats instead. */
    size_t bytes_cached;
} kv_usage;

/* Automatic prefix caching (the plain FP16 cache's shared blocks, the mixed
 * cache's snapshots — kv_mixed_pfx.c, one `block` each; the GPU cache
 * reports nothing).
 * Totals over every block the cache holds: `bytes_referenced` is in use by
 * at least one sequence (each block counted once), `bytes_evictable` is
 * held only for reuse and is freed by kv_prefix_evict. */
typedef struct {
    size_t bytes, bytes_referenced, bytes_evictable;
    long blocks, blocks_referenced;
    uint64_t evictions;
    int block_tokens; /* tokens per block (0: no prefix cache) */
} kv_prefix_stats;

/* Implementation hooks. A new cache type provides these, calls kv_create_with,
 * and is chosen by kv_create (kv_create.c). */
typedef struct {
    const char *name;
    int (*store)(void *impl, int seq, int layer, int pos0, int n, const float *k, const float *v);
    int (*attend_group)(void *impl, int seq, int layer, int kv_head, int pos0, int n,
                        const float *q, float *out, int thread);
    /* Optional: nonzero when attend_group may also run concurrently for
     * disjoint query ranges of one (seq, kv_head) (it only reads the cache).
     * NULL means no. */
    int (*attend_splits)(const void *impl, int seq);
    /* Optional split-K decode attention (kv_attend_part): the key-range
     * alignment for this sequence, 0 = unsupported; NULL: unsupported. */
    int (*attend_parts)(const void *impl, int seq);
    int (*attend_part)(void *impl, int seq, int layer, int kv_head, int pos0, int n, int t0, int t1,
                       const float *q, float *out, float *m, float *l, int thread);
    void (*seq_reset)(void *impl, int seq);
    int (*seq_pos)(const void *impl, int seq); /* next position to store */
    void (*seq_usage)(const void *impl, int seq, kv_usage *u);
    /* Optional: elastic compression (kv_seq_set_budget); NULL: unsupported. */
    int (*seq_budget)(void *impl, int seq, double budget);
    /* Optional (NULL: PV_EUNSUPPORTED): kv_seq_tiers for one (seq, layer,
     * head); indices are checked by the wrapper. */
    int (*seq_tiers)(const void *impl, int seq, int layer, int kv_head, uint8_t *tier,
                     float *score, int n);
    /* Optional prefix caching (NULL: none); see kv_seq_prefix_attach. */
    int (*seq_attach)(void *impl, int seq, const int32_t *tok, int n);
    int (*seq_publish)(void *impl, int seq, const int32_t *tok, int n, int latest);
    /* Optional (NULL: 0): kv_prefix_match. */
    int (*prefix_match)(const void *impl, int seq, const int32_t *tok, int n);
    void (*prefix_stats)(const void *impl, kv_prefix_stats *st); /* adds to *st */
    size_t (*prefix_evict)(void *impl, size_t bytes);
    /* Optional: the one policy every slot runs (NULL: none, e.g. a router). */
    int (*policy)(const void *impl, kv_policy *out);
    void (*destroy)(void *impl);
} kv_vtable;

typedef struct kv_cache kv_cache;

/* The one constructor of every cache: validates the policy against the
 * shape and builds what serves it — the plain FP16 cache when
 * kv_policy_is_plain (memory per sequence grows in pages as tokens arrive),
 * the mixed importance-aware cache otherwise, a router of such caches when
 * s->routed, the GPU cache when s->gpu. err (may be NULL) says what is
 * wrong. The caller owns *out (kv_destroy). */
int kv_create(const kv_shape *s, const kv_policy *p, kv_cache **out, char *err, size_t errlen);
/* Wraps an implementation; takes ownership of impl (vt->destroy frees it). */
int kv_create_with(const kv_vtable *vt, void *impl, const kv_shape *shape, kv_cache **out);
void kv_destroy(kv_cache *c);

const kv_shape *kv_get_shape(const kv_cache *c);
const char *kv_name(const kv_cache *c);
/* The policy the cache runs for every slot (group fitted to head_dim):
 * PV_EUNSUPPORTED when slots may differ (a router). */
int kv_get_policy(const kv_cache *c, kv_policy *out);

/* Appends n tokens at positions pos0.. for one layer. PV_ECTXFULL past
 * max_ctx, PV_EINVAL for bad slot/positions. */
int kv_store(kv_cache *c, int seq, int layer, int pos0, int n, const float *k, const float *v);
/* Attention for the query heads of one KV head. Query i (position pos0+i)
 * attends to every cached token of this seq/layer with position <= pos0+i,
 * softmax(q.k / sqrt(head_dim)) weighted sum of v. */
int kv_attend_group(kv_cache *c, int seq, int layer, int kv_head, int pos0, int n, const float *q,
                    float *out, int thread);
/* Nonzero when, for this sequence, kv_attend_group may run concurrently on
 * disjoint query ranges [pos0, pos0+n) of the same kv_head, once the keys of
 * all of them are stored (the model then splits long prompts across
 * threads). */
int kv_attend_splits(const kv_cache *c, int seq);

/* Split-K attention: one long sequence's attention cut along its keys, so
 * that the pieces of one (seq, kv_head) run on different threads and a
 * log-sum-exp merge (kv_attend_merge) puts them back together.
 * kv_attend_parts: 0 when this sequence's cache cannot (the mixed cache,
 * whose tracker must see every query's whole softmax; the GPU cache), else
 * the alignment a: kv_attend_part takes key ranges starting at multiples
 * of a (the plain cache: its page, 64). */
int kv_attend_parts(const kv_cache *c, int seq);
/* The attention of kv_attend_group restricted to the keys at positions
 * [t0, t1) (t0 a multiple of kv_attend_parts, t1 > t0; t1 past the stored
 * keys is capped), unnormalized. For query row i (position pos0+i) and
 * query head qh of this KV head: out row (same layout as kv_attend_group)
 * = Σ_j e^(s_j - m)·v_j over the range's keys j <= pos0+i, s_j = q·k_j /
 * sqrt(head_dim); m[i*n_heads + qh] = max_j s_j (-inf when no key is
 * visible: then l = 0 and the row is 0), l[i*n_heads + qh] = Σ_j
 * e^(s_j - m). Only this KV head's entries of out, m, l are written. May
 * run concurrently for different (kv_head, range) of one sequence (it only
 * reads the cache), with distinct `thread` indices. PV_EUNSUPPORTED where
 * kv_attend_parts is 0, PV_EINVAL for bad indices or ranges. */
int kv_attend_part(kv_cache *c, int seq, int layer, int kv_head, int pos0, int n, int t0, int t1,
                   const float *q, float *out, float *m, float *l, int thread);
/* Merges n_parts partial results of the same `rows` rows (head_dim floats
 * each) computed over disjoint key ranges that together cover the keys:
 * out_r = Σ_p e^(m_p,r - M_r)·o_p,r / Σ_p e^(m_p,r - M_r)·l_p,r with
 * M_r = max_p m_p,r. Part p's row r is at o + p*o_stride + r*head_dim, its
 * m and l at m[p*ml_stride + r], l[p*ml_stride + r]; out row r at out +
 * r*head_dim. Exact up to float rounding: the same softmax as one pass. */
void kv_attend_merge(int n_parts, int rows, int head_dim, const float *o, size_t o_stride,
                     const float *m, const float *l, size_t ml_stride, float *out);
void kv_seq_reset(kv_cache *c, int seq);
int kv_seq_pos(const kv_cache *c, int seq);
void kv_seq_usage(const kv_cache *c, int seq, kv_usage *u);
/* Elastic compression: gives one sequence its own high-tier budget (the
 * units of kv_policy.budget; 0: back to the policy's) and demotes at once,
 * in every layer and head, what the tier rule then says, so the sequence's
 * bytes drop before the next step and kv_policy_seq_bytes of the policy
 * with that budget bounds it from now on. Demotion is the cache's own
 * operation: nothing is recomputed, and a demoted token is never promoted
 * back, so raising the budget later only lets new tokens stay high. Call
 * between steps (decoder thread, no attend running). PV_EUNSUPPORTED for a
 * cache that never demotes (FP16, GPU), PV_EINVAL for a bad budget. The
 * override ends with kv_seq_reset. */
int kv_seq_set_budget(kv_cache *c, int seq, double budget);

/* Where each position of one (seq, layer, KV head) sits: introspection for
 * the server's KV map, taken by the thread that owns the cache between
 * steps (it reads what attend writes). */
enum { KV_TIER_NONE = 0, KV_TIER_HIGH = 1, KV_TIER_LOW = 2, KV_TIER_DROPPED = 3 };
/* tier[p] gets KV_TIER_* for positions p < n (KV_TIER_NONE past what is
 * stored); score (may be NULL) the tracker's demotion score of high-tier
 * tokens (higher = demoted sooner), NaN where there is none. Returns the
 * positions the sequence holds in that layer (may exceed n: the rest is not
 * written), PV_EINVAL for bad indices or n < 0, PV_EUNSUPPORTED when the
 * cache cannot say (the GPU cache), PV_ENOMEM when it cannot get the memory to
 * work the low tier's positions out (they are not stored) or to decode values
 * for value-norm scores. The counts agree
 * with kv_seq_usage. */
int kv_seq_tiers(const kv_cache *c, int seq, int layer, int kv_head, uint8_t *tier, float *score,
                 int n);

/* Automatic prefix caching. An empty sequence whose first tokens tok[0..n)
 * start with blocks the cache holds (finished or running sequences left
 * them, kv_seq_prefix_publish) takes them over instead of computing them:
 * returns the tokens now stored (a multiple of kv_prefix_stats.block_tokens,
 * at most n - 1, so the caller always computes at least the last token and
 * gets its logits); the caller then stores from that position on. 0 when
 * nothing matches or the cache has no prefix cache; PV_EINVAL for a bad
 * slot or a sequence that already holds tokens. The plain cache shares
 * blocks by reference, never copied; a shared block is never written (only
 * whole blocks are shared, and a sequence only appends). The mixed cache
 * copies the longest matching snapshot (its whole state at that length). */
int kv_seq_prefix_attach(kv_cache *c, int seq, const int32_t *tok, int n);
/* Offers the sequence's whole blocks among its first n tokens (tok are the
 * tokens it stored, in order) to the prefix cache, where later sequences
 * find them; the sequence keeps using them (by reference). kv_seq_reset
 * later releases its references; unreferenced blocks stay cached until
 * evicted. Returns the sequence's tokens now in shared blocks, 0 without a
 * prefix cache, PV_ENOMEM (nothing lost: the pages stay the sequence's).
 * The mixed cache snapshots the sequence's whole state only when it is at
 * a block boundary between calls (its length a multiple of block_tokens,
 * nothing pending, no elastic budget) and n covers it; else 0. */
int kv_seq_prefix_publish(kv_cache *c, int seq, const int32_t *tok, int n);
/* kv_seq_prefix_publish for a sequence that publishes as it generates (at
 * every block boundary of its answer, which the next turn of a chat
 * resends): where entries are copies (the mixed cache's snapshots), the new
 * one replaces the entry this sequence published last through this function
 * since its last reset, when the new one extends it and no sequence
 * attached it, so an answer leaves one snapshot (its latest), not one per
 * block, and the replaced one's pages go to the new one. Entries published
 * with kv_seq_prefix_publish (a prompt's) are never replaced. The replaced
 * entry is freed before the copy, so a copy the pool refuses loses both
 * (PV_ENOMEM; the sequence's own state is untouched). The plain cache
 * shares blocks by reference and keeps them all, as before. */
int kv_seq_prefix_publish_latest(kv_cache *c, int seq, const int32_t *tok, int n);
/* The longest run of whole blocks (at most n - 1 tokens) that tok[0..n)
 * shares with the tokens of any cached entry, whether or not that entry
 * can be attached — where a new prompt leaves a cached one. The mixed
 * cache keeps snapshots only where a sequence was published, so a
 * sequence that leaves another's path there is asked to publish at this
 * point too (eng_prefix.c): the third sequence with that prefix finds it.
 * 0 for caches that share every block anyway (plain) or keep none. */
int kv_prefix_match(const kv_cache *c, int seq, const int32_t *tok, int n);
void kv_prefix_get_stats(const kv_cache *c, kv_prefix_stats *st);
/* Frees unreferenced blocks, least recently used first, until `bytes` were
 * freed (SIZE_MAX: all of them, a flush); returns the bytes freed. Call
 * between steps. */
size_t kv_prefix_evict(kv_cache *c, size_t bytes);

#endif
