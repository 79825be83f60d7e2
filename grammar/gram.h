/* gram: a grammar over bytes for constrained decoding — plain JSON or a
 * JSON-Schema subset compiled into a graph of nodes that the matcher
 * (gram_match.h) walks as a pushdown automaton, and that the mask
 * (gram_mask.h) walks over a whole vocabulary at once.
 *
 * The schema subset (anything else is an error naming the keyword):
 *   type (a name or an array of names): object, array, string, number,
 *     integer, boolean, null;
 *   object: properties, required, additionalProperties (false, true or a
 *     schema; ABSENT MEANS FALSE, as in OpenAI's strict mode and llama.cpp:
 *     the output is still valid for the schema, just without extra keys);
 *     properties may come in any order, each at most once;
 *   array: items, minItems, maxItems;
 *   enum, const (any JSON values, matched as their compact serialization);
 *   anyOf, oneOf (oneOf is matched as anyOf: exclusivity is not checked;
 *     nested ones expand to at most 64 alternatives, and one that reaches
 *     itself without a value in between is invalid),
 *     allOf with a single schema;
 *   $ref to "#", "#/$defs/NAME" or "#/definitions/NAME" (recursion allowed);
 *   annotations that constrain nothing are ignored: title, description,
 *     default, examples, $schema, $id, $comment, deprecated, readOnly,
 *     writeOnly, format (an annotation since draft 2019-09; not enforced).
 * Limits: 32 properties per object, 32 values per enum, GRAM_MAX_DEPTH - 1
 * levels of nesting in the output (a recursive schema may nest that deep,
 * no deeper: at the limit only values that open no container are allowed),
 * Flags: GRAM_STRICT additionally requires what OpenAI's strict mode
 * requires (every property listed in required, additionalProperties
 * false); GRAM_LOOSE ignores the keywords that only narrow values this
 * subset cannot express (minimum, maximum, exclusiveMinimum,
 * exclusiveMaximum, multipleOf, minLength, maxLength, pattern, uniqueItems,
 * minProperties, maxProperties) instead of refusing them: the output then
 * follows the rest of the schema and may break those (meant for tool
 * parameters, which OpenAI does not enforce outside strict mode either).
 *
 * The output grammar: JSON without whitespace except at most GRAM_MAX_WS
 * bytes of " \t\r\n" per gap (before the value, after { [ , :, before , } ]),
 * so a model cannot loop on whitespace; keys contain no escapes; numbers have
 * at most GRAM_MAX_DIGITS digits per part (integer, fraction) and 3 in the
 * exponent; strings are valid UTF-8 (escapes \" \\ \/ \b \f \n \r \t \uXXXX).
 * Nothing may follow the value.
 *
 * Ownership: gram_from_schema / gram_json_object return a gram the caller
 * frees with gram_free; it copies what it needs from the cJSON tree. After
 * creation a gram is read-only except for its mask cache, so it may be
 * handed to another thread but used by one thread at a time. */
#ifndef PIVOT_GRAM_H
#define PIVOT_GRAM_H

#include <stddef.h>

#include <cjson/cJSON.h>

#define GRAM_MAX_DEPTH 32 /* frames per stack: the document plus 31 nested values */
#define GRAM_MAX_WS 16    /* whitespace bytes per gap */
#define GRAM_MAX_DIGITS 16
/* Stacks alive at once: anyOf alternatives that all fit the text so far
 * beyond this many are dropped (the first ones kept), so a schema whose
 * alternatives only differ late (objects keyed alike) should have at most
 * this many. */
#define GRAM_MAX_ALT 8
/* "No number of bytes completes it" (gram_state_close_len). */
#define GRAM_CLOSE_INF (1 << 24)

typedef struct gram gram;

#define GRAM_STRICT 1
#define GRAM_LOOSE 2

/* Any JSON object (response_format json_object). 0 or PV_ENOMEM. */
int gram_json_object(gram **out);
/* Any JSON value. 0 or PV_ENOMEM. */
int gram_json_any(gram **out);
/* Compiles a JSON Schema (the subset above; flags: GRAM_STRICT,
 * GRAM_LOOSE or 0). 0, PV_EINVAL (invalid schema), PV_EUNSUPPORTED (a
 * keyword or a size outside the subset) or PV_ENOMEM, with a message in
 * err naming the place ("/properties/a: ..."). */
int gram_from_schema(const cJSON *schema, int flags, gram **out, char *err, size_t errlen);
void gram_free(gram *g);

#endif
