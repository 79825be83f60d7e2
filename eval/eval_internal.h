/* eval_internal (eval/ only): helpers the task builders share. */
#ifndef PIVOT_EVAL_INTERNAL_H
#define PIVOT_EVAL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "eval.h"

/* splitmix64 (reproducible across machines, unlike rand()). */
uint64_t ev_rng_next(uint64_t *s);
int ev_rng_below(uint64_t *s, int n);
/* snprintf(err, fmt, a, x, y); returns 1 (the builders' failure). */
int ev_set_err(char *err, size_t errlen, const char *fmt, const char *a, long x, long y);
/* Encodes text; malloc'ed ids with room for `extra` more (caller frees). */
int32_t *ev_encode(const tok_vocab *v, const char *text, size_t len, int *n, int extra);
/* Ids of the plain word tokens (" " + 3..10 lowercase letters); caller frees. */
int32_t *ev_word_tokens(const tok_vocab *v, int *n_out);

/* eval_lookup.c: the key-value lookup task. */
int ev_build_lookup(const llm_model *m, const ev_task_opts *o, ev_sample *s, char *err,
                    size_t errlen);

#endif
