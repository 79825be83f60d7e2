/* kv_tracker: demotion choice. */
#include "kv_tracker.h"

#include <stdlib.h>

typedef struct {
    float score;
    int32_t pos;
    int slot;
    int pad;
} cand_t;

static int by_demotion(const void *a, const void *b) {
    const cand_t *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static int by_slot(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int kvt_pick(const int *cand, const float *score, const int32_t *pos, int n, int k, int *out,
             void *scratch) {
    if (k > n) k = n;
    if (k <= 0) return 0;
    cand_t *c = scratch;
    for (int i = 0; i < n; i++) c[i] = (cand_t){score[i], pos[i], cand[i], 0};
    /* Demotion runs once per chunk of steps, so a full sort is cheap enough
     * and keeps the tie rule exact. */
    qsort(c, (size_t)n, sizeof *c, by_demotion);
    for (int i = 0; i < k; i++) out[i] = c[i].slot;
    qsort(out, (size_t)k, sizeof *out, by_slot);
    return k;
}
