/* kv_tracker: demotion choice. */
#include "kv_tracker.h"


typedef struct {
    float score;
    int32_t pos;
    int slot;
    int pad;
} cand_t;

/* Demotion order: highest score first, then oldest position. Positions are
 * unique within a head, so the order is total and any correct sort gives
 * the same result. */
static int before(const cand_t *x, const cand_t *y) {
    if (x->score != y->score) return x->score > y->score;
    return x->pos < y->pos;
}

/* In-place heaps, not qsort: glibc's qsort mallocs a merge buffer for arrays
 * over a few hundred bytes, and this runs inside decode steps, which must
 * not allocate (tests/unit/test_noalloc.c). sift_cand keeps the candidate
 * first in demotion order at the root. */
static void sift_cand(cand_t *a, int i, int n) {
    for (;;) {
        int m = i, l = 2 * i + 1, r = l + 1;
        if (l < n && before(&a[l], &a[m])) m = l;
        if (r < n && before(&a[r], &a[m])) m = r;
        if (m == i) return;
        cand_t t = a[i];
        a[i] = a[m];
        a[m] = t;
        i = m;
    }
}

/* The k candidates first in demotion order to a[n-k..n), in any order:
 * heapify (O(n)) and k pops (O(k log n)). Demotion runs every step with
 * small chunks (chunk=1: k = 1 of ~budget candidates), where a full sort
 * of the tier was most of its cost. The order is total, so the set equals
 * the full sort's first k. */
static void select_cand(cand_t *a, int n, int k) {
    for (int i = n / 2 - 1; i >= 0; i--) sift_cand(a, i, n);
    for (int e = n - 1; e >= n - k; e--) {
        cand_t t = a[0];
        a[0] = a[e];
        a[e] = t;
        sift_cand(a, 0, e);
    }
}

static void sift_int(int *a, int i, int n) {
    for (;;) {
        int m = i, l = 2 * i + 1, r = l + 1;
        if (l < n && a[m] < a[l]) m = l;
        if (r < n && a[m] < a[r]) m = r;
        if (m == i) return;
        int t = a[i];
        a[i] = a[m];
        a[m] = t;
        i = m;
    }
}

static void sort_int(int *a, int n) {
    for (int i = n / 2 - 1; i >= 0; i--) sift_int(a, i, n);
    for (int e = n - 1; e > 0; e--) {
        int t = a[0];
        a[0] = a[e];
        a[e] = t;
        sift_int(a, 0, e);
    }
}

int kvt_pick(const int *cand, const float *score, const int32_t *pos, int n, int k, int *out,
             void *scratch) {
    if (k > n) k = n;
    if (k <= 0) return 0;
    cand_t *c = scratch;
    for (int i = 0; i < n; i++) c[i] = (cand_t){score[i], pos[i], cand[i], 0};
    select_cand(c, n, k);
    for (int i = 0; i < k; i++) out[i] = c[n - 1 - i].slot;
    sort_int(out, k);
    return k;
}
