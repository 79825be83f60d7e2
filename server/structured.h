/* structured: the request fields that need the model before a job can be
 * made of them — logit_bias ids against the vocabulary, and the grammar of
 * response_format / guided_json or, with tool_choice "required" or a named
 * function, of the tool call (compiled with grammar/; the forced call wins
 * over response_format). Every tool's parameters are checked with the
 * compiler (GRAM_LOOSE) for any tool_choice: 400 naming
 * tools[i].function.parameters.
 *
 * Ownership: *out (NULL for free text) belongs to the caller, who hands it
 * to the job (eng_params.grammar) or frees it with gram_free. */
#ifndef PIVOT_SRV_STRUCTURED_H
#define PIVOT_SRV_STRUCTURED_H

#include "api_req.h"
#include "gram.h"

/* 0, or -1 with *e filled (400 with `param`, 500 out of memory). */
int srv_structured(const api_request *r, int n_vocab, gram **out, api_error *e);

#endif
