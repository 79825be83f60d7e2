/* chat: chat templates from tokenizer.chat_template.
 *
 * The template's Jinja source is compiled with jinja.h's interpreter when it
 * stays inside that subset (chat_template_jinja); the server renders with it.
 * Independently, the common families are recognized by their markers and
 * rendered with C code, the reference the interpreter is tested against and
 * the fallback when the source does not compile:
 *   ChatML       ("<|im_start|>")      — SmolLM2, Qwen2
 *   Llama-3      ("<|start_header_id|>")
 *   Llama-2/Mistral ("[INST]")
 * A default system prompt literally present in a ChatML template (SmolLM2's
 * "You are a helpful AI assistant named SmolLM, ...") is extracted and used
 * when the conversation has no system message, as the template would. */
#ifndef PIVOT_CHAT_CHAT_H
#define PIVOT_CHAT_CHAT_H

#include <stddef.h>

#include "jinja.h"

typedef enum { CHAT_UNKNOWN = 0, CHAT_CHATML, CHAT_LLAMA3, CHAT_LLAMA2 } chat_kind;

typedef struct chat_template chat_template;

/* src may be NULL (no template in the file): then CHAT_CHATML without a
 * default system prompt is assumed. Returns 0 or PV_ENOMEM; an unrecognized
 * template gives kind CHAT_UNKNOWN (callers turn that into an error). */
int chat_template_parse(const char *src, size_t len, chat_template **out);
void chat_template_free(chat_template *t);
chat_kind chat_template_kind(const chat_template *t);
const char *chat_kind_name(chat_kind k);
/* The compiled Jinja template (owned by t), or NULL: no template in the
 * file, or one outside the interpreter's subset; then
 * chat_template_jinja_error says why (a message naming the construct and
 * its line; NULL when there was no source). */
const jj_template *chat_template_jinja(const chat_template *t);
const char *chat_template_jinja_error(const chat_template *t);
/* The default system prompt extracted from a ChatML template, or NULL.
 * Owned by the template. */
const char *chat_template_default_system(const chat_template *t);

typedef struct {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} chat_msg;

/* Render messages (and the assistant header when add_generation_prompt) to
 * a malloc'ed NUL-terminated string in *out (caller frees). The result is
 * meant to be encoded with parse_special = 1. BOS is not included: callers
 * add it per tok_add_bos(). Returns 0, PV_EINVAL (unknown role, CHAT_UNKNOWN)
 * or PV_ENOMEM. */
int chat_render(const chat_template *t, const chat_msg *msgs, int n, int add_generation_prompt,
                char **out);

#endif
