#include "api_stop.h"

#include <string.h>

void api_stop_init(api_stop *s, char *const *stops, int n) {
    s->stops = stops;
    s->n = n;
    s->n_held = 0;
}

/* Length of the longest suffix of t[0..n) that is a proper prefix of a stop
 * string. */
static size_t partial_tail(const api_stop *s, const char *t, size_t n) {
    size_t best = 0;
    for (int i = 0; i < s->n; i++) {
        size_t sl = strlen(s->stops[i]);
        size_t k = sl - 1 < n ? sl - 1 : n;
        for (; k > best; k--)
            if (!memcmp(t + n - k, s->stops[i], k)) {
                best = k;
                break;
            }
    }
    return best;
}

int api_stop_push(api_stop *s, const char *text, size_t len, char *out, size_t *n_out) {
    /* pending = held + text, assembled in out (the caller sized it). */
    memcpy(out, s->held, s->n_held);
    memcpy(out + s->n_held, text, len);
    size_t n = s->n_held + len;
    s->n_held = 0;
    /* Earliest match wins: text after it was never meant to be produced. */
    size_t first = (size_t)-1;
    for (int i = 0; i < s->n; i++) {
        size_t sl = strlen(s->stops[i]);
        for (size_t p = 0; sl && p + sl <= n && p < first; p++)
            if (!memcmp(out + p, s->stops[i], sl)) {
                first = p;
                break;
            }
    }
    if (first != (size_t)-1) {
        *n_out = first;
        return 1;
    }
    size_t tail = partial_tail(s, out, n);
    if (tail > sizeof s->held) tail = sizeof s->held; /* cannot happen: stops are < MAXLEN */
    memcpy(s->held, out + n - tail, tail);
    s->n_held = tail;
    *n_out = n - tail;
    return 0;
}

size_t api_stop_flush(api_stop *s, char *out) {
    size_t n = s->n_held;
    memcpy(out, s->held, n);
    s->n_held = 0;
    return n;
}
