/* gram_mask: which tokens of a vocabulary may come next in a grammar.
 *
 * gram_vocab holds every token's bytes sorted, with the length each shares
 * with the one before (a trie flattened in order): the mask walks the
 * tokens' bytes through the automaton once per shared prefix and drops a
 * whole subtree at its first refused byte. Masks are cached per automaton
 * state in the gram (states are plain bytes, hashed), so the walk is paid
 * once per distinct state — inside a string every byte leaves the same
 * state.
 *
 * End of generation: the EOG ids given at creation are allowed exactly when
 * the output is a complete document. Tokens with no bytes (control tokens)
 * are never allowed otherwise.
 *
 * Memory: a gram caches at most 512 masks (n_vocab / 8 bytes each: 3 MiB for
 * 49k tokens), then starts over; it is freed with the gram.
 *
 * Ownership: gram_vocab_create copies the pieces; the vocab holds scratch
 * space for the walk, so one thread uses it at a time (the decoder). */
#ifndef PIVOT_GRAM_MASK_H
#define PIVOT_GRAM_MASK_H

#include <stddef.h>
#include <stdint.h>

#include "gram_match.h"

typedef struct gram_vocab gram_vocab;

/* Writes token id's bytes to buf (at most cap) and returns how many it has
 * (more than cap: called again with a bigger buffer), or < 0 for none.
 * tok_piece(vocab, id, 0, buf, cap) has this shape. */
typedef int (*gram_piece_fn)(void *user, int32_t id, char *buf, int cap);

/* 0, PV_EINVAL or PV_ENOMEM. */
int gram_vocab_create(int n_vocab, gram_piece_fn piece, void *user, const int32_t *eog, int n_eog,
                      gram_vocab **out);
void gram_vocab_free(gram_vocab *v);
/* Token id's bytes as the vocab holds them (NULL, 0 for none). */
const char *gram_vocab_piece(const gram_vocab *v, int32_t id, int *len);

/* The rule of a constrained step, which the engine (eng_sample.c) and
 * `pivot generate` (cmd_generate.c) both follow through these two calls
 * rather than restating it:
 *   1. before sampling, gram_mask; when it returns 0 nothing may follow and
 *      the output ends there ("stop"): no token is sampled from a row with
 *      nothing finite left (the sampler would pick a token no mask allowed);
 *   2. after sampling, gram_accept_token; GRAM_END (an end-of-generation
 *      token on a complete document) ends the output, even with ignore_eos:
 *      the document is whole and nothing else may follow it. */
#define GRAM_END 1

/* Sets logits[id] = -INFINITY for every token that may not come next in
 * state s. Returns how many logits of the row are still finite afterwards
 * (not -INFINITY, not NaN): the tokens the grammar allows minus those the
 * caller had already set to -INFINITY (min_tokens' end of generation and
 * stop ids). 0: nothing may follow (the grammar cannot go on with this
 * vocabulary, or what it allows was masked before). A negative PV_* code
 * on failure (PV_ENOMEM: the logits are untouched).
 *
 * left: how many tokens may still be generated, this one and the
 * end-of-generation token included (INT_MAX: no limit). A token is allowed
 * only when the document can still be completed after it within the
 * tokens left, counting one token per byte of the shortest completion
 * (gram_state_close_len; byte-level vocabularies have a token for every
 * byte): so with left at least the shortest document plus one, the output
 * is always a complete document ended by end-of-generation. Once some token
 * the grammar allows would not fit, the output only closes: tokens that
 * take it further from complete are masked too (a string or number may go
 * on until exactly its closing bytes are left). A token that leads to a
 * dead end is never allowed. When no token fits left (it was too small
 * from the start), the grammar alone decides. */
int gram_mask(gram_vocab *v, const gram_state *s, int left, float *logits);
/* Advances s by token id's bytes: 0, or PV_EINVAL when the token is not
 * allowed (s unchanged). An EOG token leaves s unchanged, is allowed when s
 * is complete and then returns GRAM_END: the output ends with it. */
int gram_accept_token(const gram_vocab *v, gram_state *s, int32_t id);

#endif
