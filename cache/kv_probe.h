/* kv_probe: a diagnostic KV cache that measures which KV heads copy.
 *
 * It holds one sequence in plain float and attends exactly (softmax of
 * q.k / sqrt(head_dim) over every stored position <= the query's, in double
 * sums), so a model run on it computes what it would with the FP16 cache up
 * to rounding. On the way it measures each (layer, KV head)'s *induction
 * score* on a copy probe: the sequence holds `len` tokens starting at
 * position `first`, then the same `len` tokens again; a query of the second
 * copy at position t (whose token repeats position t - len) is scored by the
 * probability it puts on position t - len + 1, the token that followed last
 * time, which is what an induction ("retrieval") head fetches. The score of
 * a KV head is the mean over its query heads and those queries, summed over
 * every sequence run since creation (kv_seq_reset between probes keeps the
 * sums). A handful of heads carry the copy (docs/KV_CACHE.md, "Bits per
 * head"): `pivot heads` ranks them so that layer-bits can give them more bits.
 *
 * Not for serving: one slot, no prefix caching or tiers, O(n^2) per head. */
#ifndef PIVOT_KV_PROBE_H
#define PIVOT_KV_PROBE_H

#include "kv.h"

/* A probe cache for shape s (s->max_seqs must be 1) and the copy layout
 * (first >= 0, len >= 2, first + 2 * len <= s->max_ctx). The caller owns
 * *out (kv_destroy; an llm_ctx given it owns it). PV_EINVAL, PV_ENOMEM. */
int kv_create_probe(const kv_shape *s, int first, int len, kv_cache **out);

/* The mean induction score of every (layer, KV head), out[layer *
 * n_kv_heads + head], over the probe queries seen so far (0 before any).
 * Returns the number of queries each score averages, or PV_EINVAL when c
 * is not a probe cache. */
long kv_probe_scores(const kv_cache *c, double *out);

#endif
