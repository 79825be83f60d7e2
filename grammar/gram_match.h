/* gram_match: one sequence's position in a grammar — the bytes generated
 * so far as a set of pushdown stacks (more than one only while anyOf
 * alternatives are still ambiguous). Advancing by a token's bytes either
 * succeeds or leaves the state unchanged.
 *
 * Ownership: a gram_state borrows its gram, which must outlive it; the
 * state is freed with gram_state_free. Not thread-safe (one per sequence). */
#ifndef PIVOT_GRAM_MATCH_H
#define PIVOT_GRAM_MATCH_H

#include <stddef.h>

#include "gram.h"

typedef struct gram_state gram_state;

/* A state at the start of the document. 0, PV_EINVAL or PV_ENOMEM. */
int gram_state_new(gram *g, gram_state **out);
void gram_state_free(gram_state *s);
void gram_state_reset(gram_state *s);
/* Feeds n bytes. 0, or PV_EINVAL when they do not keep the output a valid
 * prefix (the state is then unchanged). */
int gram_state_advance(gram_state *s, const char *bytes, size_t n);
/* 1 when the bytes so far are a whole document (end of generation allowed). */
int gram_state_complete(const gram_state *s);
/* The fewest bytes after which the output is a complete document (0: it
 * is one already), or GRAM_CLOSE_INF when no bytes complete it. Exact for
 * every schema this module compiles, within the depth limit (an anyOf
 * whose shortest alternative is not its shallowest may be priced below
 * the truth at the limit). */
int gram_state_close_len(const gram_state *s);
/* 1 when gram_state_advance(s, bytes, n) would succeed; s is unchanged. */
int gram_state_accepts(const gram_state *s, const char *bytes, size_t n);

#endif
