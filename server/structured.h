/* structured: the request fields that need the model before a job can be
 * made of them — logit_bias ids against the vocabulary, and the grammar of
 * response_format / guided_json (compiled with grammar/).
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
