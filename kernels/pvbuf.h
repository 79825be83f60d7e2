/* pvbuf: a growable byte buffer, always NUL-terminated once non-empty, and
 * the growth rule for other arrays.
 *
 * The caller owns the struct (zero-initialized is empty) and frees it with
 * pv_buf_free; p is NULL until the first add. */
#ifndef PIVOT_PVBUF_H
#define PIVOT_PVBUF_H

#include <stddef.h>

typedef struct {
    char *p;
    size_t len, cap;
} pv_buf;

/* Appends n bytes. 0, or PV_ENOMEM with the buffer unchanged. */
int pv_buf_add(pv_buf *b, const void *d, size_t n);
void pv_buf_free(pv_buf *b);

/* Grows a malloc'ed array (or NULL) of elt-byte elements, capacity *cap, to
 * hold at least need >= 1 (doubling, 16 first). Returns the array, maybe
 * moved, or NULL when out of memory (arr and *cap unchanged then). */
void *pv_grow(void *arr, int *cap, int need, size_t elt);

#endif
