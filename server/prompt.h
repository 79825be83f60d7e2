/* prompt: request text -> token ids with the model's own tokenizer and chat
 * template (shared by the completions and the tokenize handlers). */
#ifndef PIVOT_PROMPT_H
#define PIVOT_PROMPT_H

#include <stdint.h>

#include "api_err.h"
#include "api_req.h"
#include "llama.h"
#include "pvbuf.h"

/* Renders chat messages with the model's template into *out (malloc'ed).
 * 0, or -1 with *e filled. */
int srv_render_chat(const llm_model *m, const api_message *msgs, int n, char **out, api_error *e);
/* Tokenizes text (special tokens parsed when `special`), BOS first when the
 * model wants it and add_bos. Returns a malloc'ed array or NULL. */
int32_t *srv_tokenize(const llm_model *m, const char *text, int special, int add_bos, int *n);
/* Appends the text of ids to out (stream-decoded: whole UTF-8 only). */
void srv_detokenize(const tok_vocab *v, const int32_t *ids, int n, pv_buf *out);

#endif
