#include "pvbuf.h"

#include <stdlib.h>
#include <string.h>

#include "pverr.h"

int pv_buf_add(pv_buf *b, const void *d, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return PV_ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

void pv_buf_free(pv_buf *b) {
    free(b->p);
    *b = (pv_buf){0};
}

void *pv_grow(void *arr, int *cap, int need, size_t elt) {
    if (need <= *cap) return arr;
    int c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *p = realloc(arr, elt * (size_t)c);
    if (p) *cap = c;
    return p;
}
