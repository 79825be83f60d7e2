/* kv_pool: limit enforcement, free-list reuse, and exact accounting: the
 * pool's in-use bytes equal the sum of kv_usage.bytes_stored of the live
 * sequences of FP16 and mixed caches, through store, attend (where the mixed
 * cache allocates), demotion and reset. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_policy.h"
#include "kv_pool.h"
#include "pverr.h"
#include "../test_rand.h"

static kv_shape shape(kv_pool *pool) {
    return (kv_shape){.n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 32,
                      .max_seqs = 3, .max_ctx = 256, .n_threads = 2, .pool = pool};
}

/* n tokens for slot seq from position pos0, one token at a time after the
 * first chunk of `first` (prefill, then decode). Returns the first error. */
static int feed(kv_cache *c, int seq, int pos0, int n, int first, unsigned seed) {
    const kv_shape *s = kv_get_shape(c);
    int kvd = s->n_kv_heads * s->head_dim, qd = s->n_heads * s->head_dim;
    float *k = malloc(sizeof(float) * (size_t)n * kvd), *v = malloc(sizeof(float) * (size_t)n * kvd);
    float *q = malloc(sizeof(float) * (size_t)n * qd), *o = malloc(sizeof(float) * (size_t)n * qd);
    for (int i = 0; i < n * kvd; i++) k[i] = frand(&seed), v[i] = frand(&seed);
    for (int i = 0; i < n * qd; i++) q[i] = frand(&seed);
    int rc = 0;
    for (int p = 0; p < n && !rc;) {
        int m = p == 0 ? (first < n ? first : n) : 1;
        for (int l = 0; l < s->n_layers && !rc; l++) {
            rc = kv_store(c, seq, l, pos0 + p, m, k + (size_t)p * kvd, v + (size_t)p * kvd);
            for (int h = 0; h < s->n_kv_heads && !rc; h++)
                rc = kv_attend_group(c, seq, l, h, pos0 + p, m, q + (size_t)p * qd, o + (size_t)p * qd, h % 2);
        }
        p += m;
    }
    free(k), free(v), free(q), free(o);
    return rc;
}

static size_t stored(kv_cache *const *cs, int n) {
    size_t sum = 0;
    for (int i = 0; i < n; i++)
        for (int s = 0; s < kv_get_shape(cs[i])->max_seqs; s++) {
            kv_usage u;
            kv_seq_usage(cs[i], s, &u);
            sum += u.bytes_stored;
        }
    return sum;
}

static kv_cache *make(const kv_shape *s, const char *spec) {
    kv_policy p;
    char err[256];
    cr_assert_eq(kv_policy_parse(spec, &p, err, sizeof err), 0, "%s", err);
    kv_cache *c = NULL;
    cr_assert_eq(kv_create(s, &p, &c, err, sizeof err), 0, "%s", err);
    return c;
}

Test(kv_pool, limit_free_list_and_trim) {
    kv_pool *p;
    cr_assert_eq(kv_pool_create(1000, &p), 0);
    void *a = kv_pool_alloc(p, 400), *b = kv_pool_alloc(p, 400);
    cr_assert(a && b);
    cr_assert_null(kv_pool_alloc(p, 400), "past the limit");
    cr_assert_eq(kv_pool_charge(p, 300), PV_ENOMEM);
    cr_assert_eq(kv_pool_charge(p, 200), 0);
    kv_pool_stats st;
    kv_pool_get_stats(p, &st);
    cr_assert_eq(st.used, 1000);
    cr_assert_eq(st.peak, 1000);
    cr_assert_eq(st.n_refused, 2);
    kv_pool_uncharge(p, 200);
    kv_pool_free(p, a, 400);
    void *c = kv_pool_alloc(p, 400);
    cr_assert_eq(c, a, "a freed page is handed out again");
    kv_pool_free(p, c, 400);
    kv_pool_free(p, b, 400);
    kv_pool_get_stats(p, &st);
    cr_assert_eq(st.used, 0);
    cr_assert_eq(st.cached, 800);
    cr_assert_eq(st.n_malloc, 2);
    cr_assert_eq(st.n_reused, 1);
    /* Another size: cached pages are released so held memory stays <= limit. */
    void *d = kv_pool_alloc(p, 900);
    cr_assert_not_null(d);
    kv_pool_get_stats(p, &st);
    cr_assert_leq(st.used + st.cached, 1000);
    kv_pool_free(p, d, 900);
    kv_pool_trim(p);
    kv_pool_get_stats(p, &st);
    cr_assert_eq(st.cached, 0);
    kv_pool_destroy(p);
    /* NULL pool: plain malloc */
    void *e = kv_pool_alloc(NULL, 64);
    cr_assert_not_null(e);
    kv_pool_free(NULL, e, 64);
    cr_assert_eq(kv_pool_charge(NULL, 1u << 30), 0);
}

static void accounting(const char *spec) {
    kv_pool *p;
    cr_assert_eq(kv_pool_create(0, &p), 0);
    kv_shape s = shape(p);
    kv_cache *c = make(&s, spec);
    cr_assert_eq(kv_pool_used(p), 0);
    cr_assert_eq(feed(c, 0, 0, 100, 70, 1), 0);
    cr_assert_eq(kv_pool_used(p), stored(&c, 1), "%s: %zu vs %zu", spec, kv_pool_used(p), stored(&c, 1));
    cr_assert_eq(feed(c, 2, 0, 40, 40, 2), 0);
    cr_assert_eq(kv_pool_used(p), stored(&c, 1), "%s", spec);
    cr_assert_gt(kv_pool_used(p), 0);
    kv_seq_reset(c, 0);
    cr_assert_eq(kv_pool_used(p), stored(&c, 1), "%s after reset", spec);
    kv_pool_stats st;
    kv_pool_get_stats(p, &st);
    uint64_t mallocs = st.n_malloc;
    /* reuse after reset: the same sequence again takes its pages back */
    cr_assert_eq(feed(c, 0, 0, 100, 70, 1), 0);
    kv_pool_get_stats(p, &st);
    cr_assert_gt(st.n_reused, 0, "%s: freed pages reused", spec);
    cr_assert_lt(st.n_malloc - mallocs, st.n_reused, "%s: mostly from the free list", spec);
    cr_assert_eq(kv_pool_used(p), stored(&c, 1), "%s", spec);
    kv_destroy(c);
    cr_assert_eq(kv_pool_used(p), 0, "%s: destroy returns everything", spec);
    kv_pool_destroy(p);
}

Test(kv_pool, accounting_equals_bytes_stored) {
    const char *specs[] = {"full", "mikv,budget=20,chunk=4", "scissorhands,budget=16",
                           "quant4", "h2o,budget=0.3", "mikv,hi-bits=8,budget=24",
                           "mikv,budget=20,layer-bits=0:2/4", "mikv,budget=20,layer-bits=1.1:8/4+0.0:2"};
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) accounting(specs[i]);
}

Test(kv_pool, limit_gives_enomem_not_a_crash) {
    const char *specs[] = {"full", "mikv,budget=20,chunk=4"};
    for (int i = 0; i < 2; i++) {
        kv_pool *p;
        /* Room for a short sequence, not for a long one. */
        cr_assert_eq(kv_pool_create(0, &p), 0);
        kv_shape s = shape(p);
        kv_cache *c = make(&s, specs[i]);
        cr_assert_eq(feed(c, 0, 0, 30, 30, 3), 0);
        size_t small = kv_pool_used(p);
        kv_destroy(c);
        kv_pool_destroy(p);
        cr_assert_eq(kv_pool_create(small * 2, &p), 0);
        s = shape(p);
        c = make(&s, specs[i]);
        int rc = feed(c, 0, 0, 250, 64, 4);
        cr_assert_eq(rc, PV_ENOMEM, "%s: %d", specs[i], rc);
        kv_pool_stats st;
        kv_pool_get_stats(p, &st);
        cr_assert_leq(st.peak, small * 2);
        cr_assert_gt(st.n_refused, 0);
        /* The cache is still consistent: reset frees all, a short sequence fits. */
        kv_seq_reset(c, 0);
        cr_assert_eq(kv_pool_used(p), 0, "%s", specs[i]);
        cr_assert_eq(feed(c, 1, 0, 30, 30, 3), 0);
        cr_assert_eq(kv_pool_used(p), stored(&c, 1));
        kv_destroy(c);
        kv_pool_destroy(p);
    }
}
