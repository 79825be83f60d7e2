/* Helpers of the mixed cache's tests (test_kv_mixed*.c): random sequences
 * of keys, values and queries, a forward-like step over every layer and KV
 * head, a cache from a policy spec. Static inline: each test file takes
 * what it uses. */
#ifndef PIVOT_TEST_KV_MIXED_UTIL_H
#define PIVOT_TEST_KV_MIXED_UTIL_H

#include <criterion/criterion.h>
#include <stdlib.h>

#include "kv.h"
#include "kv_policy.h"
#include "../test_rand.h"

/* The mikv preset before 2026-12-02 (FP16 high tier, INT4 keys + INT2
 * values, fp16 scales, no rotation or clipping): what these tests were
 * written against; the current preset appears by name where a test covers
 * every preset. */
#define MIKV0 "mikv,hi-bits=16,lo-bits=4/2,rotate=0,clip=0,scale-bits=16"

typedef struct {
    int N, nkv, nh, hd, L;
    float *K, *V, *Q; /* [N][nkv*hd], [N][nkv*hd], [N][nh*hd] */
} seqdata;

/* Random keys/values/queries; key channel 3 is an outlier (x8) as in real
 * models, so key balancing has something to do. */
static inline seqdata make_seq(int N, int nkv, int nh, int hd, int L, unsigned seed) {
    seqdata d = {N, nkv, nh, hd, L, NULL, NULL, NULL};
    size_t kvn = (size_t)L * N * nkv * hd, qn = (size_t)L * N * nh * hd;
    d.K = malloc(sizeof(float) * kvn);
    d.V = malloc(sizeof(float) * kvn);
    d.Q = malloc(sizeof(float) * qn);
    for (size_t i = 0; i < kvn; i++) {
        d.K[i] = 2 * frand(&seed) * (i % hd == 3 ? 8.0f : 1.0f);
        d.V[i] = frand(&seed);
    }
    for (size_t i = 0; i < qn; i++) d.Q[i] = 2 * frand(&seed);
    return d;
}

static inline void free_seq(seqdata *d) {
    free(d->K);
    free(d->V);
    free(d->Q);
}

static inline const float *Kat(const seqdata *d, int l, int p) { return d->K + ((size_t)l * d->N + p) * d->nkv * d->hd; }
static inline const float *Vat(const seqdata *d, int l, int p) { return d->V + ((size_t)l * d->N + p) * d->nkv * d->hd; }
static inline const float *Qat(const seqdata *d, int l, int p) { return d->Q + ((size_t)l * d->N + p) * d->nh * d->hd; }

/* One forward-like step: every layer stores then attends every KV head. */
static inline void step(kv_cache *c, const seqdata *d, int seq, int p, int n, float *out) {
    for (int l = 0; l < d->L; l++) {
        cr_assert_eq(kv_store(c, seq, l, p, n, Kat(d, l, p), Vat(d, l, p)), 0);
        for (int h = 0; h < d->nkv; h++)
            cr_assert_eq(kv_attend_group(c, seq, l, h, p, n, Qat(d, l, p),
                                         out + ((size_t)l * d->N + p) * d->nh * d->hd, h % 2), 0);
    }
}

static inline kv_cache *make(const kv_shape *s, const char *spec) {
    kv_policy p;
    char err[256] = "";
    kv_cache *c = NULL;
    cr_assert_eq(kv_policy_parse(spec, &p, err, sizeof err), 0, "%s: %s", spec, err);
    cr_assert_eq(kv_create(s, &p, &c, err, sizeof err), 0, "%s: %s", spec, err);
    return c;
}

#endif
