/* gram_fixture: what the grammar suites share — a schema compiled or the
 * test failed, and a vocabulary made of a table of C strings (the empty
 * string stands for the end-of-sequence token). Static functions: each
 * suite is one translation unit. */
#ifndef PIVOT_TEST_GRAM_FIXTURE_H
#define PIVOT_TEST_GRAM_FIXTURE_H

#include <criterion/criterion.h>
#include <string.h>

#include "gram.h"
#include "gram_mask.h"

static inline gram *fx_schema(const char *json) {
    cJSON *j = cJSON_Parse(json);
    cr_assert_not_null(j, "bad test schema %s", json);
    gram *g = NULL;
    char err[256];
    int rc = gram_from_schema(j, 0, &g, err, sizeof err);
    cJSON_Delete(j);
    cr_assert_eq(rc, 0, "schema %s: %s", json, err);
    return g;
}

/* gram_piece_fn over user = const char *const pieces[]. */
static inline int fx_piece(void *user, int32_t id, char *buf, int cap) {
    const char *p = ((const char *const *)user)[id];
    int n = (int)strlen(p);
    if (n <= cap) memcpy(buf, p, (size_t)n);
    return n;
}

/* A vocabulary of n pieces; the table must outlive the call only. */
static inline gram_vocab *fx_vocab(const char *const *pieces, int n, int32_t eos) {
    gram_vocab *v = NULL;
    cr_assert_eq(gram_vocab_create(n, fx_piece, (void *)pieces, &eos, 1, &v), 0);
    return v;
}

#endif
