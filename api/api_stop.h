/* api_stop: stop-string matching over streamed text.
 *
 * Text arrives in pieces (one per token, already UTF-8 complete). A stop
 * string may span pieces, so the matcher holds back the longest tail of the
 * text seen so far that is a prefix of some stop string, and releases it only
 * once it can no longer become a stop string. A partial stop string therefore
 * never reaches the client; on a match the text before it is released and the
 * stop string itself is dropped (as OpenAI does).
 *
 * The matcher borrows the stop strings; they must outlive it. */
#ifndef PIVOT_API_STOP_H
#define PIVOT_API_STOP_H

#include <stddef.h>

#include "api_req.h"

typedef struct {
    char *const *stops; /* borrowed */
    int n;
    char held[2 * API_STOP_MAXLEN];
    size_t n_held;
} api_stop;

void api_stop_init(api_stop *s, char *const *stops, int n);
/* Feeds len bytes. Writes the text that is now safe to emit to out (which
 * must hold n_held + len bytes; API_STOP_MAXLEN + len always suffices) and
 * sets *n_out. Returns 1 when a stop string matched (generation must end;
 * *out holds the text before it), 0 otherwise. */
int api_stop_push(api_stop *s, const char *text, size_t len, char *out, size_t *n_out);
/* At the end of generation: the held-back text (no stop string completed). */
size_t api_stop_flush(api_stop *s, char *out);

#endif
