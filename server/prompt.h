/* prompt: request text -> token ids with the model's own tokenizer and chat
 * template (shared by the completions and the tokenize handlers, and by
 * `pivot template`). */
#ifndef PIVOT_PROMPT_H
#define PIVOT_PROMPT_H

#include <stdint.h>

#include "api_err.h"
#include "api_req.h"
#include "llama.h"
#include "pvbuf.h"

/* What a chat prompt is rendered from. */
typedef struct {
    const api_message *msgs;
    int n;
    const api_tools *tools; /* NULL: no tools */
    int add_generation_prompt;
    int keep_bos; /* 1: the text exactly as the template renders it (pivot template) */
} srv_chat_in;

/* Renders a conversation with the model's template into *out (malloc'ed):
 * the GGUF's Jinja template when it compiled (chat.h), else the built-in
 * rendering of its family. Tools (unless tool_choice is none) go to a
 * template that reads `tools`; otherwise the generic format of api_tools.h
 * describes them in the system prompt, and tool calls and results in the
 * conversation are rendered in that format too. Unless keep_bos, a leading
 * BOS text is removed when the tokenizer adds BOS itself (srv_tokenize).
 * *how (may be NULL) gets "jinja" or "builtin". 0, or -1 with *e filled
 * (400 naming "messages" when the template refuses the conversation). */
int srv_render_chat(const llm_model *m, const srv_chat_in *in, char **out, const char **how,
                    api_error *e);
/* One warning line on stderr ("<who>: warning: ...") when the model's
 * template is outside the Jinja subset, naming the construct and the
 * built-in rendering used instead; nothing otherwise. */
void srv_template_warn(const llm_model *m, const char *who);
/* Tokenizes text (special tokens parsed when `special`), BOS first when the
 * model wants it and add_bos. Returns a malloc'ed array or NULL. */
int32_t *srv_tokenize(const llm_model *m, const char *text, int special, int add_bos, int *n);
/* Appends the text of ids to out (stream-decoded: whole UTF-8 only). */
void srv_detokenize(const tok_vocab *v, const int32_t *ids, int n, pv_buf *out);

#endif
