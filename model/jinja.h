/* jinja: the subset of Jinja2 that chat templates shipped in GGUF files
 * (tokenizer.chat_template) use, written for Pivot.
 *
 * The environment is the one Hugging Face's apply_chat_template builds:
 * trim_blocks and lstrip_blocks on, loop controls (break/continue), `tojson`
 * as Python's json.dumps(ensure_ascii=False) (keys in insertion order), the
 * globals raise_exception(msg) and strftime_now(fmt), and one trailing
 * newline of the source dropped. What is supported:
 *   statements  if/elif/else, for (loop.index0/index/revindex/first/last/
 *               length, `for k, v in d.items()`, `for x in xs if c`, else),
 *               set (names and namespace attributes), break, continue,
 *               macro (positional, keyword and default parameters; recursion)
 *   expressions literals, lists, dicts, tuples, and/or/not, comparisons,
 *               in / not in, ~ + - * / // % **, `a if c else b`, attributes,
 *               subscripts, slices (with steps, [::-1])
 *   filters     trim length count upper lower capitalize title default/d
 *               items first last join string int float list reverse replace
 *               tojson(indent=) safe abs select reject selectattr rejectattr
 *               map (attribute= or a filter name) indent
 *   tests       defined undefined none string number integer float boolean
 *               mapping sequence iterable true false equalto/eq/sameas ne
 *               odd even in
 *   methods     strings: startswith endswith strip lstrip rstrip split
 *               replace upper lower title capitalize join; dicts: items keys
 *               values get; lists: append
 *   globals     range namespace dict raise_exception strftime_now
 * Strings are indexed and sliced by bytes (templates do so on ASCII only);
 * `length` counts characters as Python does.
 * Anything else (call, filter blocks, include, an unknown filter, test, function or
 * method name) is refused by jj_compile with an error naming it and its
 * line, so a template either renders as jinja2 would or does not load.
 *
 * Values come in as one JSON object (the render context), so this module
 * needs no JSON library; the caller serializes messages/tools into it. */
#ifndef PIVOT_JINJA_H
#define PIVOT_JINJA_H

#include <stddef.h>

typedef struct jj_template jj_template;

/* Compiles src (len bytes) into *out (caller frees with jj_free). Returns 0,
 * PV_EUNSUPPORTED (a construct outside the subset), PV_EFORMAT (a syntax
 * error) with a message in err naming the construct and its line, or
 * PV_ENOMEM. */
int jj_compile(const char *src, size_t len, jj_template **out, char *err, size_t errlen);
void jj_free(jj_template *t);

/* 1 when the template reads the top-level variable `name` (e.g. "tools"). */
int jj_uses(const jj_template *t, const char *name);

/* Renders with the variables of ctx_json (a JSON object; its keys are the
 * template's variables: messages, tools, add_generation_prompt, bos_token,
 * eos_token, ...) into *out (malloc'ed, NUL-terminated, caller frees).
 * Returns 0, PV_EINVAL (ctx_json is not a JSON object, raise_exception was
 * called, or a type error such as adding a string to a list; err says
 * which) or PV_ENOMEM. The template may be shared by threads. */
int jj_render(const jj_template *t, const char *ctx_json, size_t len, char **out, char *err,
              size_t errlen);

#endif
